//! Restarting a server without refusing a connection (`#[path]`-included:
//! `echo_server`): the running server hands its listening sockets to its
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

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cellio::runtime::{sleep, timeout, until_shutdown, RuntimeHandle};
use cellio::unix::{UnixListener, UnixStream};
use cellio::TcpListener;

/// Duplicates of this process's listening sockets, offered to a successor.
static LISTENERS: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

/// The most listening sockets one hand-over carries (one per worker).
const MAX_LISTENERS: usize = 64;

/// Keeps a duplicate of `listener`'s descriptor to offer a successor.
pub fn keep(listener: &TcpListener) -> io::Result<()> {
    let fd = listener.as_fd().try_clone_to_owned()?;
    LISTENERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(fd);
    Ok(())
}

/// Listens at `path` for a successor (a stale socket file left by a server
/// that is gone is replaced; a live one, or anything but a socket, is an
/// error).
pub fn listen(path: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        if !metadata.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "something that is not a socket is there",
            ));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another server is listening there",
                ))
            }
            Err(_) => std::fs::remove_file(path)?,
        }
    }
    UnixListener::bind(path)
}

/// Serves the restart socket until a successor has taken the listeners
/// (then shuts the runtime down) or the runtime shuts down otherwise.
/// `listeners` is how many the server has: a successor that comes before
/// all of them are kept waits for them.
pub async fn offer(program: &'static str, restart: UnixListener, path: PathBuf, listeners: usize) {
    while let Some(accepted) = until_shutdown(restart.accept()).await {
        let successor = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("{program}: restart socket: accept failed: {e}");
                continue;
            }
        };
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
pub async fn take(path: &Path) -> io::Result<(Vec<std::net::TcpListener>, UnixStream)> {
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
pub async fn serving(predecessor: UnixStream) -> io::Result<()> {
    predecessor.send_all(b"serving").await?;
    let mut rest = [0u8; 16];
    while predecessor.recv(&mut rest).await? > 0 {}
    Ok(())
}
