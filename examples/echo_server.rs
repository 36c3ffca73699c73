//! A TCP echo server: every byte a client sends comes back, exactly.
//!
//! ```text
//! cargo run --release --example echo_server -- --addr 127.0.0.1:7000 --workers 2
//! ```
//!
//! * One task per connection, each with its own buffer inside the task; the
//!   runtime reuses a finished connection's task memory for the next one, so
//!   in steady state neither a message nor a whole connection allocates.
//! * `--workers N`: thread-per-core; each worker has its own listener on the
//!   same port (`SO_REUSEPORT`), and the kernel spreads connections. With
//!   `--accept handoff`, worker 0 accepts and deals connections round-robin
//!   (each hand-off costs a `dup(2)`; the task's block comes back to worker
//!   0's pool, so it allocates nothing either). Out of descriptors for the
//!   `dup`, worker 0 serves the connection itself.
//! * `--idle-timeout-ms MS`: a connection that makes no progress that long
//!   (nothing received, and no echo taken by the peer) is closed. A peer
//!   that reads its echoes makes progress as its kernel acknowledges them:
//!   when the timer fires with nothing received, the kernel is asked
//!   whether the peer took bytes since the last such look (on Linux the
//!   count of bytes it acknowledged, `TCP_INFO`'s `tcpi_bytes_acked`,
//!   which only grows; elsewhere whether the send queue's length changed:
//!   `FIONWRITE` on FreeBSD, `SO_NWRITE` on macOS; elsewhere an echo must
//!   be taken whole within `MS`). What the peer's application reads is not
//!   seen: once its receive buffer is full, its kernel reopens the window
//!   (and acknowledges more) only when the room is worth announcing, on
//!   Linux a sixteenth or more of that buffer, which autotunes up to
//!   megabytes: on loopback a peer reading 100 KB every 300 ms can show no
//!   progress for over 700 ms. Pick `MS` above the longest such pause for
//!   the slowest reader to keep. A peer that stops reading is closed `MS`
//!   to twice `MS` after its last progress (later where its kernel still
//!   acknowledges into its receive buffer).
//! * SIGINT/SIGTERM: stop accepting, give open connections `--grace-ms` to
//!   finish, then exit 0. A second signal during the grace period, 500 ms
//!   or more after the first, ends the process at once, as the signal's
//!   default action would (a shell sees status 130 or 143), closing the
//!   connections still open; one sooner is taken for the same one
//!   delivered twice (a Ctrl-C reaches a forwarding wrapper such as
//!   `timeout --foreground` and the server both). After a hand-over
//!   (`--take-over`), the predecessor finishing its connections began its
//!   grace period without a signal: the first signal it gets then does
//!   nothing visible, and a second, 500 ms or more later, ends it.
//! * `--no-task-pool`: allocate each connection's task afresh (to measure
//!   what pooling buys).
//! * `--api poll`: serve connections through `TcpIo` (poll methods that keep
//!   the socket's cells reserved between operations) instead of the
//!   stream's `recv`/`send_all` futures (`--api futures`, the default).
//!   `--api readiness`: wait with `readable()` and receive with `try_recv`
//!   into one buffer per worker, so a connection holds no buffer while it
//!   waits (a few hundred bytes of task instead of 16 KiB: for many idle
//!   connections; the guide's "Many idle connections").
//! * `--restart-socket PATH`: a successor started with `--take-over PATH`
//!   takes this server's listening sockets (over the Unix socket at
//!   `PATH`), and this server then stops accepting and lets its
//!   connections finish within `--grace-ms`: a restart (a new binary, new
//!   flags) that refuses no connection (`common/restart.rs`).
//! * `--metrics-ms MS`: every `MS` milliseconds, a line per worker on
//!   stderr from the runtime's metrics (`RuntimeMetrics`, read by a thread
//!   of its own): live tasks, queued tasks, the share of the interval the
//!   worker was busy, and polls, loop turns, sleeps and reactor events per
//!   second.
//!
//! With `--workers` above 1 the listeners use `SO_REUSEPORT`, so another
//! process of the same user listening on the port with `SO_REUSEPORT` too
//! is not detected: the two would share connections.
//!
//! A connection's error ends that connection only. At start the soft limit
//! on open files is raised to the hard limit (each connection is an open
//! file). Out of file descriptors all the same (or out of another resource
//! every accept needs), the accept loop backs off, 10 ms doubling up to
//! 1 s, instead of spinning, and says so at most once a second; the waiting
//! connections are accepted as soon as some close.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::process::ExitCode;

use std::task::Poll;
use std::time::{Duration, Instant};

use accept_backoff::accept_until_shutdown;
use cellio::runtime::{sleep, spawn_local_on, spawn_on, RuntimeHandle, Sleep, WorkerMetrics};
use cellio::{spawn, spawn_local, Builder, ListenOptions, TcpIo, TcpListener, TcpStream};
use clap::Parser;
use cli::context;
use worker_listeners::Open;

#[derive(Parser, Debug)]
#[command(about = "cellio echo server: echoes every byte back to its sender")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7000")]
    addr: SocketAddr,
    /// Worker threads (each with its own reactor and listener).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: u16,
    /// Close a connection after this many milliseconds without progress:
    /// nothing received, and none of the echoes taken by the peer (0:
    /// never). A peer that stops reading is closed within twice that.
    #[arg(long, default_value_t = 0)]
    idle_timeout_ms: u64,
    /// On SIGINT/SIGTERM, how long open connections may take to finish (a
    /// second signal, 500 ms or more after the first, ends the process at
    /// once).
    #[arg(long, default_value_t = 1000)]
    grace_ms: u64,
    /// Allocate every connection's task afresh instead of reusing finished
    /// ones (to measure what task pooling buys).
    #[arg(long)]
    no_task_pool: bool,
    /// How connections reach the workers: `reuseport` (a listener per
    /// worker, the kernel spreads connections) or `handoff` (worker 0
    /// accepts and deals connections round-robin to every worker: with
    /// `--workers` 2 or more, an error with one).
    #[arg(long, value_enum, default_value_t = Accept::Reuseport)]
    accept: Accept,
    /// How connections are served: `futures` (the stream's `recv` and
    /// `send_all` futures), `poll` (through `TcpIo`, which keeps its cells
    /// reserved between operations) or `readiness` (`readable()` and
    /// `try_recv` into one buffer per worker: no buffer per connection).
    #[arg(long, value_enum, default_value_t = Api::Futures)]
    api: Api,
    /// Print each worker's runtime metrics on stderr every this many
    /// milliseconds (0: never).
    #[arg(long, default_value_t = 0)]
    metrics_ms: u64,
    #[command(flatten)]
    restart: restart::Restart,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Futures,
    Poll,
    Readiness,
}

/// How every connection is served.
#[derive(Clone, Copy, Debug)]
struct Serving {
    idle: Option<Duration>,
    api: Api,
}

/// A connection as its task receives it: accepted on the task's own worker,
/// or handed off by worker 0 as a `std` stream, which the task registers
/// with its worker's reactor when it first runs.
///
/// One type for both, so that each serving loop is one future type, spawned
/// the same way from every place: its state machine then has a single
/// caller, the task's poll function, and the compiler inlines it there.
/// With a second caller (an `async` block around it for the hand-off) it
/// stays a function of its own, and every message pays the call and its
/// layout: 21% more user time per message on the futures path and 23%
/// through `TcpIo` (user time between syscalls, docs/benchmarks.md).
enum Incoming {
    Accepted(TcpStream),
    HandedOff(std::net::TcpStream),
}

impl Incoming {
    /// The stream, registered with this worker's reactor.
    fn into_stream(self) -> std::io::Result<TcpStream> {
        match self {
            Incoming::Accepted(stream) => Ok(stream),
            Incoming::HandedOff(stream) => TcpStream::from_std(stream),
        }
    }
}

/// Starts serving a connection: on this worker (`worker: None`), or on
/// worker `worker`.
fn start(incoming: Incoming, serving: Serving, worker: Option<usize>) {
    fn spawn_there<F: Future<Output = ()> + Send + 'static>(worker: Option<usize>, task: F) {
        match worker {
            None => drop(spawn(task)),
            Some(worker) => drop(spawn_on(worker, task)),
        }
    }
    // Counted as closed by the shutdown if its task is cancelled.
    let open = Open::new();
    // Two separate tasks rather than one `async fn` with a branch: each
    // loop keeps its own small state machine.
    match serving.api {
        Api::Futures => spawn_there(worker, connection(incoming, serving.idle, open)),
        Api::Readiness => spawn_there(
            worker,
            connection_by_readiness(incoming, serving.idle, open),
        ),
        // A `TcpIo` never leaves its thread (that is what lets its cells
        // skip the locked instructions), so its task is built where it
        // runs: on a hand-off, `spawn_local_on` sends the makings there.
        Api::Poll => match worker {
            None => drop(spawn_local(connection_io(incoming, serving.idle, open))),
            Some(worker) => {
                let idle = serving.idle;
                drop(spawn_local_on(worker, move || {
                    connection_io(incoming, idle, open)
                }));
            }
        },
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Accept {
    Reuseport,
    Handoff,
}

/// Receive buffer per connection. It lives inside the connection's task,
/// whose memory the runtime reuses from one connection to the next.
const BUFFER: usize = 16 * 1024;

/// Serves one connection to its end: echoes until the peer closes, an
/// error, or `idle` passes without data. Errors end only this connection.
/// `_open` (no bytes) tells [`worker_listeners::finish`] whether the
/// shutdown cancelled it.
///
/// The plain loop is written out here rather than in a nested `async fn`:
/// every message resumes the task's state machine, and each level of
/// nesting adds its own state check (and, here, a cache line) to that.
///
/// Each message touches three lines of the task's memory: the header's,
/// the stream's, and the loop state's, which the compiler puts after the
/// 16 KiB buffer (callgrind's cache model, `echo_compare --cache-misses`,
/// 100 connections: 2.3–2.5 L1 data misses per echoed message in all).
async fn connection(incoming: Incoming, idle: Option<Duration>, _open: Open) {
    let stream = match incoming.into_stream() {
        Ok(stream) => stream,
        Err(e) => return eprintln!("echo_server: hand-off failed: {e}"),
    };
    // Small replies go out at once instead of waiting for ACKs.
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; BUFFER];
    let ended = match idle {
        None => loop {
            let n = match stream.recv(&mut buf).await {
                Ok(0) => break Ok(()), // the client closed its side: done
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            if let Err(e) = stream.send_all(&buf[..n]).await {
                break Err(e);
            }
        },
        Some(idle) => echo_until_idle(&stream, &mut buf, idle).await,
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The echo loop of a connection that closes once it has made no progress
/// for `idle`: nothing received, and none of its echoes taken by the peer
/// (a peer that sends but never reads).
async fn echo_until_idle(
    stream: &TcpStream,
    buf: &mut [u8],
    idle: Duration,
) -> std::io::Result<()> {
    // One timer per connection, re-armed only when it fires: a message
    // costs a clock read, not a timer update.
    let socket = stream.as_fd().as_raw_fd();
    let mut last_data = Instant::now();
    let mut limit = IdleLimit::new(idle);
    loop {
        let Some(received) = unless_idle(stream.recv(buf), &mut limit, last_data, socket).await
        else {
            return Ok(()); // idle too long: close
        };
        let n = received?;
        if n == 0 {
            return Ok(());
        }
        last_data = Instant::now();
        let echo = stream.send_all(&buf[..n]);
        let Some(sent) = unless_idle(echo, &mut limit, last_data, socket).await else {
            return Ok(()); // the peer stopped reading: close
        };
        sent?;
    }
}

/// A connection's idle limit: its one timer, re-armed only when it fires,
/// and what the last look at the peer's progress found.
///
/// Data received is progress, and so is an echo the peer takes. The loop
/// notes only the first (a clock read per message); the second is looked
/// for only when the timer finds no data for `idle` ([`peer_progress`]):
/// on Linux, bytes the peer acknowledged since the last look (a count
/// that only grows); elsewhere a send queue that changed since the last
/// look (the queue holds what was sent but not yet acknowledged, and what
/// waits to be sent; a send adds to it only where the peer made room). The
/// queue alone misses a peer that reads: its kernel reopens its window
/// only once the room is worth announcing, and a refill can bring the
/// queue back to the same length, so two looks an idle period apart can
/// find the same length while the peer read hundreds of kilobytes. A pending send's own
/// wake-up is no measure: the kernel reports room only once a third or
/// more of the send buffer (autotuned, up to megabytes) has drained, which
/// a peer reading steadily but slowly can take longer than `idle` to do.
struct IdleLimit {
    timer: Sleep,
    idle: Duration,
    /// [`peer_progress`] at the last look.
    progress: u64,
    /// When a look last found [`peer_progress`] changed (the start, before).
    peer_moved: Instant,
}

impl IdleLimit {
    fn new(idle: Duration) -> Self {
        IdleLimit {
            timer: sleep(idle),
            idle,
            progress: 0,
            peer_moved: Instant::now(),
        }
    }

    /// The timer fired: `true` if the connection has made no progress for
    /// `idle`, else the timer is re-armed for the end of the new period.
    /// Called only when the timer fires, never per message.
    fn expired(&mut self, last_data: Instant, socket: RawFd) -> bool {
        let progress = last_data.max(self.peer_moved);
        if progress.elapsed() < self.idle {
            self.timer.reset(progress + self.idle);
            return false;
        }
        match peer_progress(socket) {
            Some(progress) if progress != self.progress => {
                let now = Instant::now();
                (self.progress, self.peer_moved) = (progress, now);
                self.timer.reset(now + self.idle);
                false
            }
            _ => true,
        }
    }
}

/// A number that changes when the peer takes bytes: on Linux the bytes it
/// has acknowledged (`TCP_INFO`'s `tcpi_bytes_acked`, Linux 4.1 and
/// later), which only grow; elsewhere, or on an older kernel,
/// [`send_queue`]'s length.
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
fn peer_progress(socket: RawFd) -> Option<u64> {
    // SAFETY: `tcp_info` is plain integers, for which all zeroes is valid.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` outlive the call, and `len` is `info`'s
    // size (the kernel writes at most that); `socket` is a descriptor
    // number, not memory.
    let done = unsafe {
        libc::getsockopt(
            socket,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    let acked_end = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + 8;
    if done == 0 && len as usize >= acked_end {
        Some(info.tcpi_bytes_acked)
    } else {
        send_queue(socket).map(|queued| queued as u64)
    }
}

/// [`peer_progress`] where `TCP_INFO`'s byte counts are not at hand: the
/// send queue's length.
#[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
fn peer_progress(socket: RawFd) -> Option<u64> {
    send_queue(socket).map(|queued| queued as u64)
}

/// Bytes in `socket`'s send queue (sent but not yet acknowledged by the
/// peer, or not sent yet), where the system tells: `SIOCOUTQ` (Linux),
/// `FIONWRITE` (FreeBSD), `SO_NWRITE` (macOS, iOS).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn send_queue(socket: RawFd) -> Option<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let request = libc::TIOCOUTQ; // = SIOCOUTQ
    #[cfg(target_os = "freebsd")]
    let request = libc::FIONWRITE;
    let mut queued: libc::c_int = 0;
    // SAFETY: the request writes one `c_int`, to `queued`, which outlives
    // the call; `socket` is a descriptor number (the connection's, whose
    // stream the caller borrows), not memory.
    let done = unsafe { libc::ioctl(socket, request, &mut queued) };
    (done == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

/// [`send_queue`] through `SO_NWRITE`.
#[cfg(target_vendor = "apple")]
fn send_queue(socket: RawFd) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `queued` and `len` outlive the call, and `len` is `queued`'s
    // size; `socket` is a descriptor number, not memory.
    let done = unsafe {
        libc::getsockopt(
            socket,
            libc::SOL_SOCKET,
            libc::SO_NWRITE,
            (&mut queued as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (done == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

/// [`send_queue`] where the system does not tell: an echo must then be
/// taken whole within the idle limit.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_vendor = "apple"
)))]
fn send_queue(_socket: RawFd) -> Option<usize> {
    None
}

/// `op`'s output, or `None` once the connection has made no progress for
/// its idle limit with `op` still pending (`op` is then dropped, which
/// cancels it). `last_data`: when data last came; `socket`: the
/// connection's, whose progress [`IdleLimit::expired`] looks at.
async fn unless_idle<F: Future>(
    op: F,
    limit: &mut IdleLimit,
    last_data: Instant,
    socket: RawFd,
) -> Option<F::Output> {
    let mut op = std::pin::pin!(op);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = op.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        while Pin::new(&mut limit.timer).poll(cx).is_ready() {
            if limit.expired(last_data, socket) {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    })
    .await
}

/// [`connection`] through [`TcpIo`] (`--api poll`): the same echo, with
/// the receive and send cells reserved once for the connection's life.
///
/// The `TcpIo` is made inside the task, from the incoming stream. Where the
/// compiler puts it in the task's state moves the cache lines a message
/// touches (callgrind's cache model, `echo_compare --cache-misses`: 3.4 L1
/// data misses per message when the `TcpIo` was a captured argument, 4.8
/// made inside), but one future type spawned from every place (see
/// [`Incoming`]) is worth more in time than that layout. Measure after
/// changing this.
async fn connection_io(incoming: Incoming, idle: Option<Duration>, _open: Open) {
    let mut io = match incoming.into_stream() {
        Ok(stream) => TcpIo::new(stream),
        Err(e) => return eprintln!("echo_server: hand-off failed: {e}"),
    };
    let _ = io.get_ref().set_nodelay(true);
    let mut buf = [0u8; BUFFER];
    let ended = match idle {
        None => loop {
            let n = match io.recv(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            if let Err(e) = io.send_all(&buf[..n]).await {
                break Err(e);
            }
        },
        Some(idle) => io_until_idle(&mut io, &mut buf, idle).await,
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// [`echo_until_idle`] through [`TcpIo`].
async fn io_until_idle(io: &mut TcpIo, buf: &mut [u8], idle: Duration) -> std::io::Result<()> {
    let socket = io.get_ref().as_fd().as_raw_fd();
    let mut last_data = Instant::now();
    let mut limit = IdleLimit::new(idle);
    loop {
        let Some(received) = unless_idle(io.recv(buf), &mut limit, last_data, socket).await else {
            return Ok(()); // idle too long: close
        };
        let n = received?;
        if n == 0 {
            return Ok(());
        }
        last_data = Instant::now();
        let Some(sent) = unless_idle(io.send_all(&buf[..n]), &mut limit, last_data, socket).await
        else {
            return Ok(()); // the peer stopped reading: close
        };
        sent?;
    }
}

thread_local! {
    /// `--api readiness`: the worker's one receive buffer, lent to a
    /// connection between two awaits.
    static SHARED: RefCell<[u8; BUFFER]> = const { RefCell::new([0; BUFFER]) };
}

/// What one turn of [`connection_by_readiness`] found.
enum Turn {
    /// The peer closed its side.
    Closed,
    /// Nothing to receive after all (the next `readable()` waits).
    Nothing,
    /// Received and sent back whole.
    Echoed,
    /// Received, but the send buffer took only part: the rest, to be sent
    /// when there is room (a copy that lives only while the peer is not
    /// reading).
    Unsent(Vec<u8>),
}

/// [`connection`] with no buffer of its own (`--api readiness`): it waits
/// with `readable()`, receives with `try_recv` into the worker's buffer and
/// sends back with `try_send` before the next await. Only an echo the send
/// buffer cannot take at once is copied out, until the peer reads it.
async fn connection_by_readiness(incoming: Incoming, idle: Option<Duration>, _open: Open) {
    let stream = match incoming.into_stream() {
        Ok(stream) => stream,
        Err(e) => return eprintln!("echo_server: hand-off failed: {e}"),
    };
    let _ = stream.set_nodelay(true);
    let mut limit = idle.map(IdleLimit::new);
    let mut last_data = Instant::now();
    let ended = loop {
        let Some(ready) =
            maybe_unless_idle(stream.readable(), &mut limit, last_data, &stream).await
        else {
            break Ok(()); // idle too long: close
        };
        if let Err(e) = ready {
            break Err(e);
        }
        let turn = SHARED.with_borrow_mut(|buf| -> std::io::Result<Turn> {
            let n = match stream.try_recv(buf) {
                Ok(0) => return Ok(Turn::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Turn::Nothing),
                Err(e) => return Err(e),
            };
            let sent = match stream.try_send(&buf[..n]) {
                Ok(sent) => sent,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            if sent == n {
                Ok(Turn::Echoed)
            } else {
                Ok(Turn::Unsent(buf[sent..n].to_vec()))
            }
        });
        match turn {
            Ok(Turn::Closed) => break Ok(()),
            Ok(Turn::Nothing) => {}
            Ok(Turn::Echoed) => {
                // A clock read only where the idle limit needs it.
                if limit.is_some() {
                    last_data = Instant::now();
                }
            }
            Ok(Turn::Unsent(rest)) => {
                last_data = Instant::now();
                let echo = stream.send_all(&rest);
                match maybe_unless_idle(echo, &mut limit, last_data, &stream).await {
                    None => break Ok(()), // the peer stopped reading: close
                    Some(Err(e)) => break Err(e),
                    Some(Ok(())) => {}
                }
            }
            Err(e) => break Err(e),
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// [`unless_idle`] where there is an idle limit, else `op`'s output.
async fn maybe_unless_idle<F: Future>(
    op: F,
    limit: &mut Option<IdleLimit>,
    last_data: Instant,
    stream: &TcpStream,
) -> Option<F::Output> {
    match limit {
        Some(limit) => unless_idle(op, limit, last_data, stream.as_fd().as_raw_fd()).await,
        None => Some(op.await),
    }
}

/// Accepts until shutdown begins, one task per connection. With `deal_to`
/// workers (hand-off mode) connections are dealt round-robin to them.
async fn serve(listener: TcpListener, serving: Serving, deal_to: usize) {
    let mut next = 0;
    let deal = |(stream, _peer): (TcpStream, SocketAddr)| {
        if deal_to > 1 {
            next = (next + 1) % deal_to;
        }
        if next == 0 {
            return start(Incoming::Accepted(stream), serving, None);
        }
        // Leave this reactor (`into_std`'s `dup`, the stream kept if it
        // fails); the chosen worker registers it with its own. Accepted
        // with the last descriptor, it has none to be handed off with: it
        // is served here instead of closed.
        match stream.as_fd().try_clone_to_owned() {
            Ok(duplicate) => {
                drop(stream);
                start(Incoming::HandedOff(duplicate.into()), serving, Some(next))
            }
            Err(e) if accept_backoff::out_of_resources(&e) => {
                start(Incoming::Accepted(stream), serving, None)
            }
            Err(e) => eprintln!("echo_server: hand-off failed: {e}"),
        }
    };
    accept_until_shutdown("echo_server", || listener.accept(), deal).await;
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.accept == Accept::Handoff && args.workers < 2 {
        cli::flag_conflict::<Args>(
            "echo_server",
            "--accept handoff needs --workers 2 or more (one worker has no one to hand off to)",
        );
    }
    let listening = if args.accept == Accept::Handoff {
        1
    } else {
        usize::from(args.workers)
    };
    if let Some(message) = restart::too_many_to_offer(&args.restart, listening) {
        cli::flag_conflict::<Args>("echo_server", &message);
    }
    cli::exit_code("echo_server", run(&args))
}

#[path = "common/accept_backoff.rs"]
mod accept_backoff;
#[path = "common/cli.rs"]
mod cli;
#[path = "common/open_files.rs"]
mod open_files;
#[path = "common/restart.rs"]
mod restart;
#[path = "common/shutdown_signals.rs"]
mod shutdown_signals;
#[path = "common/worker_listeners.rs"]
mod worker_listeners;

fn run(args: &Args) -> std::io::Result<()> {
    // Before anything opens a descriptor: one systemd says it passed must be open.
    restart::check_systemd_passed()?;
    // Every connection is an open file: take what the hard limit allows
    // (a common soft limit, 1024, is far below it).
    open_files::raise_open_files(None);
    let workers = usize::from(args.workers);
    let serving = Serving {
        idle: (args.idle_timeout_ms > 0).then(|| Duration::from_millis(args.idle_timeout_ms)),
        api: args.api,
    };
    let runtime = Builder::new()
        .workers(workers)
        .task_pooling(!args.no_task_pool)
        .build()
        .map_err(|e| context("cannot start the cellio runtime", e))?;

    if args.metrics_ms > 0 {
        let (handle, every) = (runtime.handle(), Duration::from_millis(args.metrics_ms));
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || report_metrics(&handle, every))
            .map_err(|e| context("cannot start the metrics thread", e))?;
    }

    runtime.block_on(async {
        spawn(shutdown_signals::shut_down_on_signals()?);
        let handoff = args.accept == Accept::Handoff;
        let options = ListenOptions {
            reuse_port: workers > 1 && !handoff,
            ..ListenOptions::default()
        };
        let listening = if handoff { 1 } else { workers };
        let serve_there = move |listener| serve(listener, serving, 1);
        let listener = restart::listeners(
            "echo_server",
            &args.restart,
            args.addr,
            options,
            listening,
            workers,
            serve_there,
        )
        .await?;
        println!("listening on {}", listener.local_addr()?);
        serve(listener, serving, if handoff { workers } else { 1 }).await;
        Ok::<(), std::io::Error>(())
    })?;

    worker_listeners::finish("echo_server", runtime, Duration::from_millis(args.grace_ms))?;
    restart::handed_over()
}

/// Prints a line per worker every `every` until the runtime shuts down:
/// levels as they are, counts as rates over the interval.
fn report_metrics(runtime: &RuntimeHandle, every: Duration) {
    let metrics = runtime.metrics();
    let mut last: Vec<WorkerMetrics> = metrics.each_worker().collect();
    let mut last_time = Instant::now();
    while !runtime.is_shutting_down() {
        std::thread::sleep(every);
        let now = Instant::now();
        let seconds = now.duration_since(last_time).as_secs_f64().max(1e-9);
        let per_second = |to: u64, from: u64| (to - from) as f64 / seconds;
        for (worker, (figures, before)) in metrics.each_worker().zip(&mut last).enumerate() {
            let busy = figures.busy_time.saturating_sub(before.busy_time);
            eprintln!(
                "metrics: worker {worker}: {} tasks alive, {} queued; {:.2}% busy; per second: \
                 {:.0} polls, {:.0} turns, {:.0} sleeps, {:.0} reactor events",
                figures.alive_tasks,
                figures.queued_tasks,
                100.0 * busy.as_secs_f64() / seconds,
                per_second(figures.polls, before.polls),
                per_second(figures.turns, before.turns),
                per_second(figures.sleeps, before.sleeps),
                per_second(figures.io_events, before.io_events),
            );
            *before = figures;
        }
        last_time = now;
    }
}
