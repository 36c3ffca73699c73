//! The hand-over of a server's sockets to its successor (`#[path]`-included
//! by `restart.rs`, for TCP listeners, and `restart_udp.rs`, for UDP
//! sockets): the protocol on the restart socket, and the flags that ask
//! for it.
//!
//! The protocol, on a Unix stream socket at a path both are given:
//!
//! 1. the old server (`--restart-socket PATH`) listens at `PATH`; the new
//!    one (`--take-over PATH`) connects, and says nothing;
//! 2. the old one sends `cellio-listeners N` (TCP listeners) or
//!    `cellio-udp-sockets N` with its `N` sockets attached; a successor
//!    that serves the other kind refuses them with an error that says so;
//! 3. the new one registers them with its workers, and once every one is
//!    registered starts serving them and sends `serving` (if one cannot
//!    be, it exits with an error instead, having served none: a connection
//!    or datagram waiting for them is left to the old server);
//! 4. the old one removes `PATH`, closes the connection and shuts down:
//!    no more accepts or receives, open connections get the grace period.
//!    The new one sees the close and may now listen at `PATH` itself, for
//!    the next restart.
//!
//! A server claims its restart socket (a live server's there refuses the
//! start) before it binds or serves any socket: a refused start has then
//! joined no other server's `SO_REUSEPORT` group, where it would have
//! taken connections or datagrams only to drop them as it exits.
//!
//! A server offering restarts keeps a duplicate of each of its sockets to
//! send (`KEPT`). Once a successor has taken them (step 4), when its
//! shutdown begins otherwise (a signal, with no hand-over under way; one
//! under way finishes first), or when it cannot listen at `PATH`, it
//! closes them: its sockets then close with its workers' loops, as without
//! `--restart-socket`. A connection attempt during the grace period is
//! then refused, not queued for nobody, and the port is free for the next
//! server; after a hand-over, the successor holds the sockets, and once it
//! stops, the old server draining its connections holds none.
//!
//! The sockets are the same kernel sockets in both processes, so a
//! connection waiting in a listener's backlog, or a datagram waiting in a
//! UDP socket's queue, is taken by one or the other, never lost. If the
//! successor fails before step 3 (it exits, or says anything else, or
//! does not answer within 10 s), the old server keeps serving and keeps
//! offering. A successor whose `serving` the old server did not take (it
//! had given up on it: the connection closed with the word unread, or
//! before it went) and that then still finds it listening at `PATH` stops
//! as it would for a signal (no more accepts; its connections get the
//! grace period) and exits with an error: exactly one server serves. One
//! that finds nobody there (the old server died) serves on.
//!
//! A start that checks whether a server listens at `PATH` (the stale-file
//! check, `stale_socket.rs`: every server offering restarts makes it, and
//! finds this one there when it is refused) connects too, says
//! `cellio-probe` and closes. The old server tells it from a successor by
//! those words, before step 2 or in place of step 3's answer, and lets it
//! go without a word; a peer that speaks before step 2, or has closed, is
//! no successor either.
//!
//! Whoever can connect to the restart socket can take the sockets: its
//! file's permissions (the umask's: with `022`, only the server's user may
//! connect) are the first gate, and the peer's credentials (`SO_PEERCRED`:
//! the server's user, or root) the second. A successor checks its
//! predecessor the same way before it takes anything: whoever listens at
//! `PATH` (free whenever no server offers restarts, and maybe in a
//! directory every user may write to) could otherwise hand it a listener
//! that process keeps accepting on (`peer_user.rs`).

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cellio::runtime::{sleep, spawn_local_on, timeout, until_shutdown, JoinHandle, RuntimeHandle};
use cellio::spawn_local;
use cellio::unix::{UnixListener, UnixStream};
use futures_channel::oneshot;

// The including server's (`#[path]`-included at its root).
use crate::accept_backoff;

#[path = "peer_user.rs"]
mod peer_user;
#[path = "stale_socket.rs"]
mod stale_socket;

/// Where a server's sockets come from and go to: its flags
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

/// What a server hands over: the first word of step 2's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// TCP listening sockets.
    TcpListeners,
    /// UDP sockets.
    UdpSockets,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::TcpListeners => "cellio-listeners",
            Kind::UdpSockets => "cellio-udp-sockets",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::TcpListeners => "TCP listeners",
            Kind::UdpSockets => "UDP sockets",
        }
    }
}

/// The descriptors systemd passed this process (`LISTEN_FDS`), or none:
/// as systemd's own `sd_listen_fds`, only if `LISTEN_PID` names this
/// process (the `listenfd` crate alone also takes them without it).
pub fn systemd_passed() -> listenfd::ListenFd {
    if passed_to_us() {
        listenfd::ListenFd::from_env()
    } else {
        listenfd::ListenFd::empty()
    }
}

/// Whether `LISTEN_PID` names this process.
fn passed_to_us() -> bool {
    std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id())
}

/// An error if a descriptor systemd says it passed (`LISTEN_FDS`, from 3)
/// is not open. Call it before the server opens anything: a closed one's
/// number goes to the next descriptor opened (the runtime's epoll), which
/// would then be taken for the passed socket ("not a socket").
pub fn check_systemd_passed() -> io::Result<()> {
    // Read without `listenfd`, which takes the variables out of the
    // environment.
    let passed = match std::env::var("LISTEN_FDS") {
        Ok(fds) if passed_to_us() => fds.trim().parse::<i32>().unwrap_or(0).max(0),
        _ => 0,
    };
    for fd in 3..passed.saturating_add(3) {
        // SAFETY: `F_GETFD` only reads the descriptor's flags; an unopened
        // number is an `EBADF` error, not undefined behaviour.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "LISTEN_FDS={passed} passes descriptors 3 to {}, but fd {fd} is not open",
                    passed.saturating_add(2)
                ),
            ));
        }
    }
    Ok(())
}

/// Registers each of `taken` with a worker (`register`, round-robin from
/// worker 1: worker 0 has the server's first socket), and once every one
/// is registered, runs `serve` on each there; an error names the first
/// that could not be registered, and then none is served (each is closed,
/// unserved, on its worker). A server awaits this before it announces
/// anything, so that a successor never says `serving` (and its
/// predecessor never stops) while a socket is served by nobody, and a
/// successor that fails has taken nothing from the sockets' queues.
pub async fn register_then_serve<Std, Socket, R, S, F>(
    taken: impl Iterator<Item = Std>,
    workers: usize,
    register: R,
    serve: S,
    from: &str,
) -> io::Result<()>
where
    Std: Send + 'static,
    Socket: 'static,
    R: Fn(Std) -> io::Result<Socket> + Clone + Send + 'static,
    S: Fn(Socket) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let (registered, go): (Vec<JoinHandle<io::Result<()>>>, Vec<oneshot::Sender<()>>) = taken
        .enumerate()
        .map(|(i, std)| {
            let (register, serve) = (register.clone(), serve.clone());
            let (go, told) = oneshot::channel();
            let registered = spawn_local_on((i + 1) % workers, move || async move {
                let socket = register(std)?;
                // Dropped unserved if the sender is (a socket failed).
                spawn_local(async move {
                    if told.await.is_ok() {
                        serve(socket).await;
                    }
                });
                Ok(())
            });
            (registered, go)
        })
        .unzip();
    for adopted in registered {
        adopted.await.map_err(io::Error::from)?.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot serve a socket from {from}: {e}"))
        })?;
    }
    for go in go {
        // A worker whose task is gone (the runtime stopping) serves nothing.
        let _ = go.send(());
    }
    Ok(())
}

/// Duplicates of this process's sockets, offered to a successor; `None`
/// once it no longer offers them ([`stop_offering`]), when a socket's
/// duplicate is closed at once.
static KEPT: Mutex<Option<Vec<OwnedFd>>> = Mutex::new(Some(Vec::new()));

/// Room reserved for the received descriptors (one per worker, usually);
/// more grow the vector.
const USUAL_SOCKETS: usize = 64;

/// The most descriptors one message can carry on Linux (`SCM_MAX_FD`): a
/// server with more sockets cannot hand them over in one message, so it
/// refuses `--restart-socket` at start.
const MAX_HANDED_OVER: usize = 253;

/// How long a successor waits for the predecessor's message, and a
/// predecessor for the successor's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Keeps a duplicate of `socket`'s descriptor to offer a successor (none
/// once the server no longer offers them).
fn keep(socket: BorrowedFd<'_>) -> io::Result<()> {
    let fd = socket.try_clone_to_owned()?;
    if let Some(kept) = KEPT.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
        kept.push(fd);
    }
    Ok(())
}

/// Closes the duplicates kept for a successor, and those kept from now
/// on: the server's sockets close when its own loops drop them.
fn stop_offering() {
    let kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner).take();
    drop(kept);
}

/// How many duplicates are kept for a successor.
fn kept_count() -> usize {
    KEPT.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map_or(0, Vec::len)
}

/// What a server calls with each of its sockets as it starts serving it:
/// keeps it for a successor if the flags offer restarts, and says so if it
/// cannot (the socket is served all the same).
pub fn keeper<T: AsFd + 'static>(
    program: &'static str,
    restart: &Restart,
) -> impl Fn(&T) + Copy + Send + 'static {
    let offering = restart.restart_socket.is_some();
    move |socket: &T| {
        if offering {
            if let Err(e) = keep(socket.as_fd()) {
                eprintln!("{program}: a socket cannot be offered for restarts: {e}");
            }
        }
    }
}

/// The flag error of a server whose flags have it offer `count` sockets of
/// `kind` of its own, more than one message carries, with
/// `--restart-socket` (a successor offers those it takes, which fit): for
/// `main`, before the runtime starts (`cli::flag_conflict`, exit status
/// 2). [`claim`] refuses the same with what it counts at start (the
/// sockets systemd passed, say).
pub fn too_many_to_offer(restart: &Restart, kind: Kind, count: usize) -> Option<String> {
    (restart.restart_socket.is_some() && restart.take_over.is_none() && count > MAX_HANDED_OVER)
        .then(|| too_many(kind, count))
}

/// Why a server with `count` sockets of `kind` cannot offer restarts.
fn too_many(kind: Kind, count: usize) -> String {
    format!(
        "--restart-socket hands over at most {MAX_HANDED_OVER} {} in one message, and this \
         server has {count} (fewer --workers)",
        kind.what()
    )
}

/// A server's restart socket, claimed before the server binds or serves
/// anything ([`claim`]) and run once every socket is served
/// ([`RestartSocket::run`]). Dropped without running (the server failed
/// to start), it removes the file it bound.
pub struct RestartSocket {
    program: &'static str,
    /// `--restart-socket`, if given.
    path: Option<PathBuf>,
    /// Listening at `path` already: a server that takes over from nobody.
    listener: Option<UnixListener>,
    /// The connection a successor took its sockets over, and the path it
    /// took them from (its `--take-over`).
    predecessor: Option<(UnixStream, PathBuf)>,
    kind: Kind,
    count: usize,
}

/// Claims the restart socket of a server that has `count` sockets of
/// `kind`: listens at `restart_path` at once or, for a successor
/// (`predecessor`: the connection it took them over), checks only what it
/// can before its predecessor gives the path up. An error (a live server
/// at the path, more sockets than one message carries) refuses the start:
/// call this before binding anything, so that a refused start never joins
/// another server's `SO_REUSEPORT` group.
pub fn claim(
    program: &'static str,
    restart_path: Option<PathBuf>,
    predecessor: Option<(UnixStream, PathBuf)>,
    kind: Kind,
    count: usize,
) -> io::Result<RestartSocket> {
    if restart_path.is_some() && count > MAX_HANDED_OVER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            too_many(kind, count),
        ));
    }
    let listener = match (&restart_path, &predecessor) {
        (Some(path), None) => Some(listen(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot offer restarts at {}: {e}", path.display()),
            )
        })?),
        _ => None,
    };
    Ok(RestartSocket {
        program,
        path: restart_path,
        listener,
        predecessor,
        kind,
        count,
    })
}

impl RestartSocket {
    /// Runs the restart socket (its sockets kept with [`keep`] as the
    /// server's workers start): at once, or, for a successor, once the
    /// predecessor has given the path up. A successor first confirms that
    /// it serves ([`serving`]): call this once every socket is served.
    pub fn run(mut self) {
        let (program, kind, count) = (self.program, self.kind, self.count);
        let (restart_path, predecessor) = (self.path.take(), self.predecessor.take());
        let restart_socket = self.listener.take();
        spawn_local(async move {
            let restart_socket = match predecessor {
                None => restart_socket,
                Some((predecessor, from)) => {
                    // It stops serving when told, and closes once its
                    // restart socket's path is free.
                    match serving(predecessor).await {
                        Ok(()) => {}
                        // It gave up on this server before it took the
                        // word, and serves on: this one must not.
                        Err(e) if still_offered(&from) => {
                            eprintln!(
                                "{program}: the predecessor at {} did not take this server's \
                                 `serving` ({e}) and serves on: stopping",
                                from.display()
                            );
                            *NOT_HANDED_OVER
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner) = Some(format!(
                                "the predecessor at {} kept its sockets: this server stopped",
                                from.display()
                            ));
                            stop_offering();
                            if let Some(runtime) = RuntimeHandle::current() {
                                runtime.shutdown();
                            }
                            return;
                        }
                        Err(e) => {
                            eprintln!(
                                "{program}: the predecessor did not finish the hand-over: {e}"
                            )
                        }
                    }
                    match restart_path.as_deref() {
                        None => None,
                        Some(path) => listen(path)
                            .map_err(|e| {
                                eprintln!(
                                    "{program}: cannot offer restarts at {}: {e}",
                                    path.display()
                                )
                            })
                            .ok(),
                    }
                }
            };
            let (Some(socket), Some(path)) = (restart_socket, restart_path) else {
                stop_offering();
                return;
            };
            offer(program, socket, path, kind, count).await;
        });
    }
}

impl Drop for RestartSocket {
    fn drop(&mut self) {
        // Not run: the file is this server's (its listener still holds
        // it), and nobody will serve it.
        if let (Some(listener), Some(path)) = (self.listener.take(), &self.path) {
            let _ = std::fs::remove_file(path);
            drop(listener);
        }
    }
}

/// Listens at `path` for a successor (a stale socket file left by a server
/// that is gone is replaced; a live one, or anything but a socket, is an
/// error; two starts on one path are serialized by `PATH.lock`, which
/// blocks the thread for another start's check and bind:
/// `stale_socket.rs`).
fn listen(path: &Path) -> io::Result<UnixListener> {
    stale_socket::bind_clearing_stale(path, |path| UnixListener::bind(path))
}

/// Serves the restart socket until a successor has taken the sockets
/// (then shuts the runtime down) or the runtime shuts down otherwise.
/// `count` is how many the server has: a successor that comes before all
/// of them are kept waits for them.
async fn offer(
    program: &'static str,
    restart: UnixListener,
    path: PathBuf,
    kind: Kind,
    count: usize,
) {
    let mut starved = accept_backoff::Starved::of(program, "restart socket: ");
    while let Some(accepted) = until_shutdown(restart.accept()).await {
        let successor = match accepted {
            Ok((stream, _)) => {
                starved.recovered();
                stream
            }
            // Out of descriptors, the successor waits in the backlog and
            // the next accept would fail at once: pause, as the servers'
            // own accept loops do.
            Err(e) if accept_backoff::out_of_resources(&e) => {
                if until_shutdown(sleep(starved.failed(&e))).await.is_none() {
                    break;
                }
                continue;
            }
            Err(e) => {
                eprintln!("{program}: restart socket: accept failed: {e}");
                continue;
            }
        };
        // The socket file's permissions decide who may connect; a
        // successor must also run as this server's user (or root).
        match successor.peer_cred() {
            Ok(cred) if peer_user::trusted(cred.uid, peer_user::euid()) => {}
            Ok(cred) => {
                eprintln!(
                    "{program}: refused a successor of user {} (this server runs as {}); \
                     still serving",
                    cred.uid,
                    peer_user::euid()
                );
                continue;
            }
            Err(e) => {
                eprintln!("{program}: restart socket: no peer credentials ({e}); refused");
                continue;
            }
        }
        // A successor says nothing before the hand-over message.
        if !silent(&successor) {
            tracing::debug!("restart socket: a peer that spoke first, or closed: no successor");
            continue;
        }
        match hand_over(&successor, kind, count).await {
            Ok(n) => {
                // Only now: the successor serves every socket. It holds
                // its own copies: this server's close with its loops.
                stop_offering();
                let _ = std::fs::remove_file(&path);
                drop(successor);
                eprintln!(
                    "{program}: a successor took over {n} {}; no longer serving them",
                    kind.what()
                );
                if let Some(runtime) = RuntimeHandle::current() {
                    runtime.shutdown();
                }
                return;
            }
            Err(NotTaken::Probe) => {
                tracing::debug!("restart socket: a start's probe of the path, no successor");
            }
            Err(NotTaken::Failed(e)) => {
                eprintln!("{program}: a successor failed to take over ({e}); still serving")
            }
        }
    }
    // The shutdown began, and no hand-over is under way: the sockets close
    // with the loops that serve them.
    stop_offering();
    let _ = std::fs::remove_file(&path);
}

/// Why the peer on the restart socket did not take the sockets.
enum NotTaken {
    /// It was a start's probe of the path (`stale_socket.rs`), no successor.
    Probe,
    /// A successor that failed (it says why in its own log), or a peer
    /// that did not follow the protocol.
    Failed(io::Error),
}

/// Whether `peer` has neither said anything nor closed: a successor waits
/// for the hand-over message.
fn silent(peer: &UnixStream) -> bool {
    matches!(peer.try_peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Whether `peer` said [`stale_socket::PROBE`] (and left it unread here).
fn probed(peer: &UnixStream) -> bool {
    let mut said = [0u8; stale_socket::PROBE.len()];
    matches!(peer.try_peek(&mut said), Ok(n) if said[..n] == *stale_socket::PROBE)
}

/// Steps 2 and 3 with one successor: how many sockets it took.
async fn hand_over(successor: &UnixStream, kind: Kind, count: usize) -> Result<usize, NotTaken> {
    // The other workers bind theirs as they start: wait for them (briefly).
    for _ in 0..1000 {
        if kept_count() >= count {
            break;
        }
        sleep(Duration::from_millis(1)).await;
    }
    // Out of the lock while they are sent (and back if this successor
    // fails, for the next).
    let kept = KEPT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let answered = send_and_hear(successor, kind, &kept).await;
    let n = kept.len();
    if let Some(kept_now) = KEPT.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
        kept_now.extend(kept);
    }
    // A probe that spoke after the check in `offer` has its words read as
    // the answer, or, if it closed before the message went, waiting.
    match answered {
        Ok(Some(answer)) if answer == "serving" => Ok(n),
        Ok(Some(answer)) if answer.as_bytes() == stale_socket::PROBE => Err(NotTaken::Probe),
        Ok(Some(answer)) => Err(NotTaken::Failed(io::Error::other(format!(
            "it answered {answer:?}"
        )))),
        Ok(None) => Err(NotTaken::Failed(io::Error::other(
            "it closed the connection",
        ))),
        Err(_) if probed(successor) => Err(NotTaken::Probe),
        Err(e) => Err(NotTaken::Failed(e)),
    }
}

/// Sends the sockets in one message with their kind and count, and returns
/// the successor's answer (`None`: it closed the connection). A successor
/// that does not answer within `ANSWER_WITHIN` fails.
async fn send_and_hear(
    successor: &UnixStream,
    kind: Kind,
    kept: &[OwnedFd],
) -> io::Result<Option<String>> {
    let fds: Vec<BorrowedFd<'_>> = kept.iter().map(|fd| fd.as_fd()).collect();
    let header = format!("{} {}", kind.word(), fds.len());
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
/// takes its sockets, which must be of `kind`, if the server there runs
/// as this process's user or as root; pass the connection to
/// [`claim`], and run its [`RestartSocket`] once they are registered and
/// served (which confirms it). Errors say `cannot take over from PATH:
/// ...`; a predecessor that sends nothing within `ANSWER_WITHIN`
/// (stopped, wedged, or not a cellio server) is one, and a shutdown signal
/// ends the wait.
pub async fn take(path: &Path, kind: Kind) -> io::Result<(Vec<OwnedFd>, UnixStream)> {
    let taken = match until_shutdown(timeout(ANSWER_WITHIN, take_from(path, kind))).await {
        Some(Ok(taken)) => taken,
        Some(Err(_elapsed)) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no hand-over message within {} s (is the server there stopped, or not \
                 a cellio server?)",
                ANSWER_WITHIN.as_secs()
            ),
        )),
        None => Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "stopped by a signal before the hand-over",
        )),
    };
    taken.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot take over from {}: {e}", path.display()),
        )
    })
}

async fn take_from(path: &Path, kind: Kind) -> io::Result<(Vec<OwnedFd>, UnixStream)> {
    let predecessor = UnixStream::connect(path).await?;
    // Before anything is received: another user's sockets are never ours.
    let cred = predecessor.peer_cred().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("no credentials for the server there ({e}); refused"),
        )
    })?;
    if !peer_user::trusted(cred.uid, peer_user::euid()) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the server there runs as user {} and this one as {}: refused (only a \
                 server of the same user, or root, may hand over its sockets)",
                cred.uid,
                peer_user::euid()
            ),
        ));
    }
    let mut header = [0u8; 64];
    let mut fds = Vec::with_capacity(USUAL_SOCKETS);
    let got = predecessor.recv_with_fds(&mut header, &mut fds).await?;
    if got.bytes == 0 && got.fds == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server there closed the connection without handing over (its log says why)",
        ));
    }
    let text = std::str::from_utf8(&header[..got.bytes]).unwrap_or("");
    let (word, count) = text.split_once(' ').unwrap_or((text, ""));
    let other = [Kind::TcpListeners, Kind::UdpSockets]
        .into_iter()
        .find(|other| *other != kind && other.word() == word);
    if let Some(other) = other {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "that server hands over {}, and this one serves {}",
                other.what(),
                kind.what()
            ),
        ));
    }
    let count = (word == kind.word())
        .then(|| count.parse::<usize>().ok())
        .flatten()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a cellio server's restart socket (it sent {text:?})"),
            )
        })?;
    if got.truncated || got.fds != count || count == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected {count} {}, received {}", kind.what(), got.fds),
        ));
    }
    Ok((fds, predecessor))
}

/// Why this successor stopped: its predecessor did not take its `serving`
/// and serves on ([`RestartSocket::run`]).
static NOT_HANDED_OVER: Mutex<Option<String>> = Mutex::new(None);

/// An error if this server, a successor, stopped because its predecessor
/// did not take its `serving` and serves on: for the end of `main`, so
/// that it exits with a failing status.
pub fn handed_over() -> io::Result<()> {
    match NOT_HANDED_OVER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        Some(why) => Err(io::Error::other(why)),
        None => Ok(()),
    }
}

/// Whether a live server listens at `path` (a predecessor that gave up on
/// a hand-over offers restarts there still; one that died left nothing
/// there, or a stale file, removed here), checked under the path's lock
/// as a start checks it (`stale_socket.rs`).
fn still_offered(path: &Path) -> bool {
    let _lock = stale_socket::PathLock::acquire(path);
    matches!(
        stale_socket::clear_stale_socket(path),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse
    )
}

/// Step 3: tells the predecessor this process is serving, then waits for
/// it to close the connection (it has removed its restart socket by then).
/// An error if it closed without taking the word (`ECONNRESET`: closed
/// with it unread; `EPIPE`: closed before it went): it gave up on this
/// server.
async fn serving(predecessor: UnixStream) -> io::Result<()> {
    predecessor.send_all(b"serving").await?;
    let mut rest = [0u8; 16];
    while predecessor.recv(&mut rest).await? > 0 {}
    Ok(())
}
