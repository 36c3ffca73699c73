//! Restarting a server without refusing a connection (`#[path]`-included:
//! `echo_server`, `http_server`, `proxy`): the running server hands its listening sockets to its
//! successor over a Unix socket (`SCM_RIGHTS`), the successor serves them,
//! and the old server stops accepting and lets its connections finish.
//!
//! The protocol, on a Unix stream socket at a path both are given:
//!
//! 1. the old server (`--restart-socket PATH`) listens at `PATH`; the new
//!    one (`--take-over PATH`) connects;
//! 2. the old one sends `cellio-listeners N` with its `N` listening sockets
//!    attached;
//! 3. the new one registers them with its workers, starts accepting, and
//!    sends `serving`;
//! 4. the old one removes `PATH`, closes the connection and shuts down:
//!    no more accepts, open connections get the grace period. The new one
//!    sees the close and may now listen at `PATH` itself, for the next
//!    restart.
//!
//! The listening sockets are the same kernel sockets in both processes, so
//! a connection waiting in their backlog is accepted by one or the other,
//! never refused. If the successor fails before step 3 (it exits, or says
//! anything else), the old server keeps serving and keeps offering.
//!
//! Whoever can connect to the restart socket can take the listening
//! sockets: its file's permissions (the umask's: with `022`, only the
//! server's user may connect) are the first gate, and the peer's
//! credentials (`SO_PEERCRED`: the server's user, or root) the second.
//!
//! A server calls [`listeners`] in place of binding: it binds (or takes
//! over) every worker's listener and runs the restart socket. Started by
//! systemd socket activation (`LISTEN_FDS`, read by the `listenfd` crate),
//! it serves the sockets systemd passed instead of binding. The includer
//! also includes `worker_listeners.rs` (as `worker_listeners`) and
//! `cli.rs` (as `cli`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cellio::runtime::{sleep, spawn_local_on, timeout, until_shutdown, RuntimeHandle};
use cellio::unix::{UnixListener, UnixStream};
use cellio::{spawn_local, ListenOptions, TcpListener};

use super::cli::context;
use super::worker_listeners;

#[path = "stale_socket.rs"]
mod stale_socket;

/// Where a server's listeners come from and go to: its flags
/// (`#[command(flatten)]` into the server's own).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Restart {
    /// Offer this server's listening sockets to a successor at this Unix
    /// socket path (started with `--take-over PATH`); once it serves them,
    /// stop accepting and finish within the grace period.
    #[arg(long, value_name = "PATH")]
    pub restart_socket: Option<PathBuf>,
    /// Serve the listening sockets of the server offering them at this
    /// path (its `--restart-socket`) instead of binding `--addr`.
    #[arg(long, value_name = "PATH")]
    pub take_over: Option<PathBuf>,
}

/// Binds `addr` with `options` on worker 0 and on each of workers
/// `1..listening` (or, with `take_over`, takes the predecessor's
/// listeners, or those systemd passed: the first for worker 0, the others
/// round-robin over `workers`), runs `serve` on each listener but worker
/// 0's, which is returned; and with `restart_socket`, offers them all to a
/// successor.
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
    let offering = restart.restart_socket.is_some();
    let keep = move |listener: &TcpListener| {
        if offering {
            if let Err(e) = keep(listener) {
                eprintln!("{program}: a listener cannot be offered for restarts: {e}");
            }
        }
    };
    let serve_kept = move |listener: TcpListener| {
        keep(&listener);
        serve(listener)
    };
    let (inherited, predecessor, from) = match &restart.take_over {
        Some(path) => {
            let (taken, predecessor) = take(path)
                .await
                .map_err(|e| context(&format!("cannot take over from {}", path.display()), e))?;
            (taken, Some(predecessor), path.display().to_string())
        }
        None => {
            let passed = systemd_listeners()
                .map_err(|e| context("cannot use the sockets systemd passed (LISTEN_FDS)", e))?;
            (passed, None, "systemd (LISTEN_FDS)".to_string())
        }
    };
    let (listener, offered) = match inherited.len() {
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
            (listener, listening)
        }
        count => {
            let mut taken = inherited.into_iter();
            let listener = TcpListener::from_std(taken.next().expect("at least one"))?;
            // The others round-robin over the workers (worker 0 has the first).
            for (i, std) in taken.enumerate() {
                let serve_kept = serve_kept.clone();
                spawn_local_on((i + 1) % workers, move || async move {
                    match TcpListener::from_std(std) {
                        Ok(listener) => serve_kept(listener).await,
                        Err(e) => eprintln!("{program}: a listener taken over: {e}"),
                    }
                });
            }
            eprintln!("{program}: took over {count} listener(s) from {from}");
            if count < listening {
                eprintln!(
                    "{program}: workers {count} to {} have no listener (only {count} came \
                     from {from})",
                    listening - 1
                );
            }
            (listener, count)
        }
    };
    keep(&listener);
    // The restart socket: at once, or (taking over) once the predecessor
    // has given up the path.
    let restart_socket = match (&restart.restart_socket, &predecessor) {
        (Some(path), None) => Some(
            listen(path)
                .map_err(|e| context(&format!("cannot offer restarts at {}", path.display()), e))?,
        ),
        _ => None,
    };
    let restart_path = restart.restart_socket.clone();
    spawn_local(async move {
        let restart_socket = match predecessor {
            None => restart_socket,
            Some(predecessor) => {
                // It stops accepting when told, and closes once its
                // restart socket's path is free.
                if let Err(e) = serving(predecessor).await {
                    eprintln!("{program}: the predecessor did not finish the hand-over: {e}");
                }
                let path = restart_path.as_deref()?;
                listen(path)
                    .map_err(|e| {
                        eprintln!(
                            "{program}: cannot offer restarts at {}: {e}",
                            path.display()
                        )
                    })
                    .ok()
            }
        };
        let (socket, path) = (restart_socket?, restart_path?);
        offer(program, socket, path, offered).await;
        Some(())
    });
    Ok(listener)
}

/// The TCP listening sockets systemd passed (`LISTEN_FDS`, for this
/// process: `LISTEN_PID`), in order; none if it passed none. Anything
/// else among them is an error.
fn systemd_listeners() -> io::Result<Vec<std::net::TcpListener>> {
    let mut passed = listenfd::ListenFd::from_env();
    (0..passed.len())
        .filter_map(|i| passed.take_tcp_listener(i).transpose())
        .collect()
}

/// Duplicates of this process's listening sockets, offered to a successor.
static LISTENERS: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

/// The most listening sockets one hand-over carries (one per worker).
const MAX_LISTENERS: usize = 64;

/// Keeps a duplicate of `listener`'s descriptor to offer a successor.
fn keep(listener: &TcpListener) -> io::Result<()> {
    let fd = listener.as_fd().try_clone_to_owned()?;
    LISTENERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(fd);
    Ok(())
}

/// Listens at `path` for a successor (a stale socket file left by a server
/// that is gone is replaced; a live one, or anything but a socket, is an
/// error: `stale_socket.rs`).
fn listen(path: &Path) -> io::Result<UnixListener> {
    stale_socket::clear_stale_socket(path)?;
    UnixListener::bind(path)
}

/// Serves the restart socket until a successor has taken the listeners
/// (then shuts the runtime down) or the runtime shuts down otherwise.
/// `listeners` is how many the server has: a successor that comes before
/// all of them are kept waits for them.
async fn offer(program: &'static str, restart: UnixListener, path: PathBuf, listeners: usize) {
    while let Some(accepted) = until_shutdown(restart.accept()).await {
        let successor = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("{program}: restart socket: accept failed: {e}");
                continue;
            }
        };
        // The socket file's permissions decide who may connect; a
        // successor must also run as this server's user (or root).
        match successor.peer_cred() {
            Ok(cred) if cred.uid == 0 || cred.uid == euid() => {}
            Ok(cred) => {
                eprintln!(
                    "{program}: refused a successor of user {} (this server runs as {}); \
                     still serving",
                    cred.uid,
                    euid()
                );
                continue;
            }
            Err(e) => {
                eprintln!("{program}: restart socket: no peer credentials ({e}); refused");
                continue;
            }
        }
        match hand_over(&successor, listeners).await {
            Ok(n) => {
                // Only now: the successor accepts on every listener.
                let _ = std::fs::remove_file(&path);
                drop(successor);
                eprintln!("{program}: a successor took over {n} listener(s); no longer accepting");
                if let Some(runtime) = RuntimeHandle::current() {
                    runtime.shutdown();
                }
                return;
            }
            Err(e) => eprintln!("{program}: a successor failed to take over ({e}); still serving"),
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// This process's effective user id.
fn euid() -> u32 {
    // SAFETY: `geteuid` reads the process's credentials; it cannot fail.
    unsafe { libc::geteuid() }
}

/// Steps 2 and 3 with one successor: how many listeners it took.
async fn hand_over(successor: &UnixStream, listeners: usize) -> io::Result<usize> {
    // The other workers bind theirs as they start: wait for them (briefly).
    for _ in 0..1000 {
        if LISTENERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            >= listeners
        {
            break;
        }
        sleep(Duration::from_millis(1)).await;
    }
    // Out of the lock while they are sent (and back if this successor
    // fails, for the next).
    let kept = std::mem::take(&mut *LISTENERS.lock().unwrap_or_else(PoisonError::into_inner));
    let answered = send_and_hear(successor, &kept).await;
    let n = kept.len();
    LISTENERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(kept);
    match answered? {
        Some(answer) if answer == "serving" => Ok(n),
        Some(answer) => Err(io::Error::other(format!("it answered {answer:?}"))),
        None => Err(io::Error::other("it closed the connection")),
    }
}

/// Sends the listeners in one message with their count, and returns the
/// successor's answer (`None`: it closed the connection). A successor
/// that does not answer within `ANSWER_WITHIN` fails.
async fn send_and_hear(successor: &UnixStream, kept: &[OwnedFd]) -> io::Result<Option<String>> {
    const ANSWER_WITHIN: Duration = Duration::from_secs(10);
    let fds: Vec<BorrowedFd<'_>> = kept.iter().map(|fd| fd.as_fd()).collect();
    let header = format!("cellio-listeners {}", fds.len());
    // One message: the successor receives header and descriptors together.
    let sent = successor.send_with_fds(header.as_bytes(), &fds).await?;
    if sent != header.len() {
        return Err(io::Error::other("the hand-over message went out in part"));
    }
    let mut answer = [0u8; 16];
    let got = timeout(ANSWER_WITHIN, successor.recv(&mut answer)).await??;
    Ok((got > 0).then(|| String::from_utf8_lossy(&answer[..got]).into_owned()))
}

/// Step 2 from the successor's side: connects to the server at `path` and
/// takes its listening sockets. Confirm with [`serving`] once they are
/// registered and accepting.
async fn take(path: &Path) -> io::Result<(Vec<std::net::TcpListener>, UnixStream)> {
    let predecessor = UnixStream::connect(path).await?;
    let mut header = [0u8; 64];
    let mut fds = Vec::with_capacity(MAX_LISTENERS);
    let got = predecessor.recv_with_fds(&mut header, &mut fds).await?;
    let text = std::str::from_utf8(&header[..got.bytes]).unwrap_or("");
    let count = text
        .strip_prefix("cellio-listeners ")
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a cellio server's restart socket (it sent {text:?})"),
            )
        })?;
    if got.truncated || got.fds != count || count == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected {count} listening sockets, received {}", got.fds),
        ));
    }
    let listeners = fds.into_iter().map(std::net::TcpListener::from).collect();
    Ok((listeners, predecessor))
}

/// Step 3: tells the predecessor this process is accepting, then waits for
/// it to close the connection (it has removed its restart socket by then).
async fn serving(predecessor: UnixStream) -> io::Result<()> {
    predecessor.send_all(b"serving").await?;
    let mut rest = [0u8; 16];
    while predecessor.recv(&mut rest).await? > 0 {}
    Ok(())
}
