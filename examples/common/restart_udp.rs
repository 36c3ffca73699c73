//! Restarting a UDP server without losing a datagram (`#[path]`-included:
//! `udp_echo_server`): the running server hands its sockets to its
//! successor over a Unix socket (`SCM_RIGHTS`, `handover.rs`'s protocol),
//! the successor receives on them, and the old server stops receiving.
//!
//! Both processes hold the same kernel sockets, so a datagram queued when
//! the old server stops is there for the new one, and one the old server
//! has received it still answers (its loops stop receiving at shutdown,
//! not halfway through a datagram). Only what the kernel drops for want
//! of buffer room is lost, as at any other time.
//!
//! A server calls [`sockets`] in place of binding. Started by systemd
//! socket activation (`LISTEN_FDS`, read by the `listenfd` crate), it
//! serves the sockets systemd passed instead of binding, as the TCP
//! servers do (`restart.rs`). The includer also includes `cli.rs` (as
//! `cli`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use cellio::net::udp::{BindOptions, UdpSocket};
use cellio::runtime::{spawn_local_on, RuntimeHandle};

use super::cli::context;

#[path = "handover.rs"]
mod handover;
use handover::Kind;
pub use handover::{check_systemd_passed, Restart};

/// Set when a worker could not bind: the server shuts down and [`failed`]
/// says so.
static WORKER_FAILED: AtomicBool = AtomicBool::new(false);

/// The flag error of a server with `workers` sockets that offers
/// restarts: more than one hand-over message carries (see
/// `handover::too_many_to_offer`). Check it in `main`.
pub fn too_many_to_offer(restart: &Restart, workers: usize) -> Option<String> {
    handover::too_many_to_offer(restart, Kind::UdpSockets, workers)
}

/// Binds `addr` with `options` (then `prepare`: socket options) on worker
/// 0 and on each of workers `1..workers`, or, with `take_over`, takes the
/// predecessor's sockets, or those systemd passed (then `prepare`s them
/// too; the first for worker 0, the others round-robin over the workers);
/// runs `serve` on each socket but worker 0's, which is returned; and with
/// `restart_socket`, offers them all to a successor (claiming that socket
/// first: a start refused for it binds nothing). A worker that cannot
/// bind says so and shuts the runtime down.
pub async fn sockets<P, S, F>(
    program: &'static str,
    restart: &Restart,
    addr: SocketAddr,
    options: BindOptions,
    prepare: P,
    workers: usize,
    serve: S,
) -> io::Result<UdpSocket>
where
    P: Fn(&UdpSocket) -> io::Result<()> + Clone + Send + 'static,
    S: Fn(UdpSocket) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let keep = handover::keeper::<UdpSocket>(program, restart);
    let serve_kept = move |socket: UdpSocket| {
        keep(&socket);
        serve(socket)
    };
    let (inherited, predecessor, from) = match &restart.take_over {
        Some(path) => {
            let (taken, predecessor) = handover::take(path, Kind::UdpSockets).await?;
            let taken = taken.into_iter().map(std::net::UdpSocket::from).collect();
            (
                taken,
                Some((predecessor, path.clone())),
                path.display().to_string(),
            )
        }
        None => {
            let passed = systemd_sockets()
                .map_err(|e| context("cannot use the sockets systemd passed (LISTEN_FDS)", e))?;
            (passed, None, "systemd (LISTEN_FDS)".to_string())
        }
    };
    let count = match inherited.len() {
        0 => workers,
        taken => taken,
    };
    // Before binding anything: a start refused here (a live server's
    // restart socket) must not join that server's `SO_REUSEPORT` group.
    let restart_socket = handover::claim(
        program,
        restart.restart_socket.clone(),
        predecessor,
        Kind::UdpSockets,
        count,
    )?;
    let socket = match inherited.len() {
        0 => {
            let bind = move |addr| {
                let socket = UdpSocket::bind_with(addr, options)?;
                prepare(&socket)?;
                Ok::<_, io::Error>(socket)
            };
            let socket = bind(addr).map_err(|e| context(&format!("cannot bind {addr}"), e))?;
            // The port bound, if `addr` asked the kernel to pick one.
            let addr = socket.local_addr()?;
            // Each other worker binds its own socket there, so that its
            // reactor owns it.
            for worker in 1..workers {
                let (bind, serve_kept) = (bind.clone(), serve_kept.clone());
                spawn_local_on(worker, move || async move {
                    match bind(addr) {
                        Ok(socket) => serve_kept(socket).await,
                        Err(e) => {
                            eprintln!("{program}: worker {worker} cannot bind {addr}: {e}");
                            WORKER_FAILED.store(true, Ordering::SeqCst);
                            if let Some(runtime) = RuntimeHandle::current() {
                                runtime.shutdown();
                            }
                        }
                    }
                });
            }
            socket
        }
        count => {
            // This server's flags apply to every socket it serves, a
            // predecessor's too (a restart is how new flags take effect);
            // `prepare` leaves alone what they do not set.
            let adopt = move |std| {
                let socket = UdpSocket::from_std(std)?;
                prepare(&socket)?;
                Ok::<_, io::Error>(socket)
            };
            let mut taken = inherited.into_iter();
            let socket = adopt(taken.next().expect("at least one"))
                .map_err(|e| context(&format!("cannot serve a socket from {from}"), e))?;
            // The others round-robin over the workers (worker 0 has the
            // first), each registered there before any is served.
            handover::register_then_serve(taken, workers, adopt, serve_kept.clone(), &from).await?;
            eprintln!("{program}: took over {count} UDP socket(s) from {from}");
            if count < workers {
                eprintln!(
                    "{program}: workers {count} to {} have no socket (only {count} came from \
                     {from})",
                    workers - 1
                );
            }
            socket
        }
    };
    keep(&socket);
    restart_socket.run();
    Ok(socket)
}

/// An error if a worker could not bind its socket (the runtime was shut
/// down then), or if this server, a successor, stopped because its
/// predecessor serves on (`handover::handed_over`): for the end of `main`.
pub fn failed() -> io::Result<()> {
    if WORKER_FAILED.load(Ordering::SeqCst) {
        return Err(io::Error::other("a worker failed to start"));
    }
    handover::handed_over()
}

/// The UDP sockets systemd passed (`LISTEN_FDS`, for this process:
/// `LISTEN_PID`), in order; none if it passed none. Anything else among
/// them is an error.
fn systemd_sockets() -> io::Result<Vec<std::net::UdpSocket>> {
    let mut passed = handover::systemd_passed();
    (0..passed.len())
        .filter_map(|i| passed.take_udp_socket(i).transpose())
        .collect()
}
