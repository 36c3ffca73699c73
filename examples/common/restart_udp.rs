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
//! A server calls [`sockets`] in place of binding. The includer also
//! includes `cli.rs` (as `cli`).

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
pub use handover::Restart;

/// Set when a worker could not bind: the server shuts down and [`failed`]
/// says so.
static WORKER_FAILED: AtomicBool = AtomicBool::new(false);

/// Binds `addr` with `options` (then `prepare`: socket options) on worker
/// 0 and on each of workers `1..workers`, or, with `take_over`, takes the
/// predecessor's sockets (the first for worker 0, the others round-robin
/// over the workers); runs `serve` on each socket but worker 0's, which is
/// returned; and with `restart_socket`, offers them all to a successor. A
/// worker that cannot bind says so and shuts the runtime down.
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
    let (socket, predecessor, offered) = match &restart.take_over {
        Some(path) => {
            let (taken, predecessor) = handover::take(path, Kind::UdpSockets).await?;
            let count = taken.len();
            let mut taken = taken.into_iter().map(std::net::UdpSocket::from);
            let socket = UdpSocket::from_std(taken.next().expect("at least one"))?;
            for (i, std) in taken.enumerate() {
                let serve_kept = serve_kept.clone();
                spawn_local_on((i + 1) % workers, move || async move {
                    match UdpSocket::from_std(std) {
                        Ok(socket) => serve_kept(socket).await,
                        Err(e) => eprintln!("{program}: a socket taken over: {e}"),
                    }
                });
            }
            eprintln!(
                "{program}: took over {count} UDP socket(s) from {}",
                path.display()
            );
            (socket, Some(predecessor), count)
        }
        None => {
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
            (socket, None, workers)
        }
    };
    keep(&socket);
    handover::run(
        program,
        restart.restart_socket.clone(),
        predecessor,
        Kind::UdpSockets,
        offered,
    )?;
    Ok(socket)
}

/// An error if a worker could not bind its socket (the runtime was shut
/// down then): for the end of `main`.
pub fn failed() -> io::Result<()> {
    if WORKER_FAILED.load(Ordering::SeqCst) {
        return Err(io::Error::other("a worker failed to start"));
    }
    Ok(())
}
