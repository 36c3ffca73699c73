//! Restarting a server without refusing a connection (`#[path]`-included:
//! `echo_server`, `http_server`, `proxy`): the running server hands its listening sockets to its
//! successor over a Unix socket (`SCM_RIGHTS`), the successor serves them,
//! and the old server stops accepting and lets its connections finish.
//!
//! The protocol, its guarantees and its gates are `handover.rs`'s: the
//! listening sockets are the same kernel sockets in both processes, so a
//! connection waiting in their backlog is accepted by one or the other,
//! never refused.
//!
//! A server calls [`listeners`] in place of binding: it binds (or takes
//! over) every worker's listener and runs the restart socket. Started by
//! systemd socket activation (`LISTEN_FDS`, read by the `listenfd` crate),
//! it serves the sockets systemd passed instead of binding. The includer
//! also includes `worker_listeners.rs` (as `worker_listeners`) and
//! `cli.rs` (as `cli`). UDP servers use `restart_udp.rs`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use cellio::{ListenOptions, TcpListener};

use super::cli::context;
use super::worker_listeners;

#[path = "handover.rs"]
mod handover;
use handover::Kind;
pub use handover::{check_systemd_passed, handed_over, Restart};

/// The flag error of a server with `listening` listeners that offers
/// restarts: more than one hand-over message carries (see
/// `handover::too_many_to_offer`). Check it in `main`.
pub fn too_many_to_offer(restart: &Restart, listening: usize) -> Option<String> {
    handover::too_many_to_offer(restart, Kind::TcpListeners, listening)
}

/// Binds `addr` with `options` on worker 0 and on each of workers
/// `1..listening` (or, with `take_over`, takes the predecessor's
/// listeners, or those systemd passed: the first for worker 0, the others
/// round-robin over `workers`), runs `serve` on each listener but worker
/// 0's, which is returned; and with `restart_socket`, offers them all to a
/// successor (claiming that socket first: a start refused for it binds
/// nothing).
pub async fn listeners<S, F>(
    program: &'static str,
    restart: &Restart,
    addr: SocketAddr,
    options: ListenOptions,
    listening: usize,
    workers: usize,
    serve: S,
) -> io::Result<TcpListener>
where
    S: Fn(TcpListener) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let keep = handover::keeper::<TcpListener>(program, restart);
    let serve_kept = move |listener: TcpListener| {
        keep(&listener);
        serve(listener)
    };
    let (inherited, predecessor, from) = match &restart.take_over {
        Some(path) => {
            let (taken, predecessor) = handover::take(path, Kind::TcpListeners).await?;
            let taken = taken.into_iter().map(std::net::TcpListener::from).collect();
            (
                taken,
                Some((predecessor, path.clone())),
                path.display().to_string(),
            )
        }
        None => {
            let passed = systemd_listeners()
                .map_err(|e| context("cannot use the sockets systemd passed (LISTEN_FDS)", e))?;
            (passed, None, "systemd (LISTEN_FDS)".to_string())
        }
    };
    let count = match inherited.len() {
        0 => listening,
        taken => taken,
    };
    // Before binding anything: a start refused here (a live server's
    // restart socket) must not join that server's `SO_REUSEPORT` group.
    let restart_socket = handover::claim(
        program,
        restart.restart_socket.clone(),
        predecessor,
        Kind::TcpListeners,
        count,
    )?;
    let listener = match inherited.len() {
        0 => {
            let listener = TcpListener::bind_with(addr, options)
                .map_err(|e| context(&format!("cannot listen on {addr}"), e))?;
            let addr = listener.local_addr()?;
            worker_listeners::listen_on_other_workers(
                program,
                addr,
                options,
                listening,
                serve_kept.clone(),
            );
            listener
        }
        count => {
            let mut taken = inherited.into_iter();
            let listener = TcpListener::from_std(taken.next().expect("at least one"))?;
            // The others round-robin over the workers (worker 0 has the
            // first), each registered there before any is served.
            handover::register_then_serve(
                taken,
                workers,
                TcpListener::from_std,
                serve_kept.clone(),
                &from,
            )
            .await?;
            eprintln!("{program}: took over {count} listener(s) from {from}");
            if count < listening {
                eprintln!(
                    "{program}: workers {count} to {} have no listener (only {count} came \
                     from {from})",
                    listening - 1
                );
            }
            listener
        }
    };
    keep(&listener);
    restart_socket.run();
    Ok(listener)
}

/// The TCP listening sockets systemd passed (`LISTEN_FDS`, for this
/// process: `LISTEN_PID`), in order; none if it passed none. Anything
/// else among them is an error, a TCP socket that is not listening too.
fn systemd_listeners() -> io::Result<Vec<std::net::TcpListener>> {
    let mut passed = handover::systemd_passed();
    let mut listeners = Vec::new();
    for i in 0..passed.len() {
        if let Some(listener) = passed.take_tcp_listener(i)? {
            ensure_listening(&listener, 3 + i)?;
            listeners.push(listener);
        }
    }
    Ok(listeners)
}

/// An error unless the TCP socket passed as descriptor `fd` listens
/// (`SO_ACCEPTCONN`): an accept on a connected or only bound socket fails
/// every time (`EINVAL`), and the server would spin saying so. (Not
/// checked where socket2 cannot ask: macOS.)
fn ensure_listening(socket: &std::net::TcpListener, fd: usize) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    if !socket2::SockRef::from(socket).is_listener()? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "fd {fd} is a TCP socket that is not listening (a .socket unit with \
                 Accept=yes passes connections; this server needs Accept=no)"
            ),
        ));
    }
    let _ = (socket, fd);
    Ok(())
}
