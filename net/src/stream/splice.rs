//! [`splice_bidirectional`]: a proxy's two directions moved by the kernel
//! (Linux `splice(2)`), socket → pipe → socket, so the bytes are never
//! copied into user space; and [`splice_bidirectional_auto`], which copies
//! small reads and splices large ones (HAProxy's `option splice-auto`).
//!
//! A splicing direction owns a pipe. It splices what the source has into
//! the pipe (waiting on the source's receive cell when it has nothing),
//! then splices the pipe into the destination (waiting on the
//! destination's send cell while it is full), and only then reads again.
//! A copying direction does the same through its buffer with `recv` and
//! `send`.
//!
//! # Invariants
//!
//! * `in_pipe` is exactly what the direction spliced into its pipe and has
//!   not spliced out: the pipe is the direction's own, so its contents are
//!   known without asking. Nothing is read while it is not empty, so an
//!   `EAGAIN` from the splice in means the source is drained (the pipe has
//!   room), and one from the splice out means the destination is full (the
//!   pipe has bytes): each waits on the right cell. Except at TCP's urgent
//!   mark, where a splice in says `EAGAIN` for good: once the reactor has
//!   reported urgent data, an `EAGAIN` asks `SIOCATMARK`, and at the mark
//!   one `recv` steps over it (`past_urgent_mark`).
//! * A direction has at most one read in flight (a receive or a splice in,
//!   on the source's receive cell) and one write (a send or a splice out,
//!   on the destination's send cell), never both at once; the two
//!   directions use the other two cells, so they never meet on one.
//! * While the join waits and a direction is done (its source's end has
//!   passed), the direction holds the source's receive cell itself, as a
//!   watch (`watch_source`): a reset there (a client that half-closed and
//!   then gave up) is no read's error, and without the watch nothing would
//!   wake the join for it. Nothing can be queued behind an end, so the
//!   watch's report loses no byte. A direction that waits to write what it
//!   holds does not watch: its source may still hold bytes received before
//!   a reset, which must be delivered first (as `copy_bidirectional`
//!   delivers them), and its next read, once the destination took what it
//!   holds, reports the reset after them. A wake-up of the watch costs a
//!   load; only after a hang-up (`HUP`) does it ask `SO_ERROR`. It gives
//!   the cell back when the join ends or is dropped, with a plain release:
//!   the watch proves nothing about what is queued, so it must not mark
//!   the socket drained.
//! * A direction switches between copying and splicing only with its
//!   buffer and its pipe empty, so bytes keep their order.
//! * At the source's end of stream, with nothing held, the destination's
//!   sending side is shut down once (a destination its peer already reset
//!   counts as shut down while bytes from before the reset wait there: the
//!   other direction reads them and the reset, kept by the stream when the
//!   shutdown took it, so also after a FIN, where Linux's receive alone
//!   says a clean end; with none, the reset is the shutdown's error), and
//!   the direction is done.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use cellio_reactor::{Park, Token};

use crate::op::{Attempt, OpState, Side};
use crate::stream::ops::{recv_attempt, send_attempt};
use crate::stream::StreamSocket;

/// The most one splice moves into a pipe: a default pipe's capacity.
const CHUNK: usize = 64 * 1024;

/// An error opening a pipe that says the process (`EMFILE`) or the system
/// (`ENFILE`) has no descriptor left.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// A pipe's two ends, non-blocking and close-on-exec.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors `pipe2` writes.
        let result = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        // `pipe2` succeeded: both descriptors are new and nothing else
        // owns them.
        // SAFETY: as just said, each `OwnedFd` becomes its only owner.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe { read, write })
    }
}

/// `splice(2)` of up to `len` bytes from `from` to `to`, without blocking
/// on the pipe (the socket's own `O_NONBLOCK` covers the socket).
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // Null offsets: pipes and sockets have no position to read from.
    // SAFETY: no memory is passed, only descriptors, which the caller
    // holds open; a bad one is an error, not undefined behaviour.
    let moved = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if moved < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(moved as usize)
    }
}

/// `SIOCATMARK` (not in `libc`): whether a socket's next byte is TCP's
/// urgent mark. `asm-generic/sockios.h`; MIPS has `_IOR('s', 7, int)`.
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const SIOCATMARK: u32 = 0x8905;
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const SIOCATMARK: u32 = 0x4004_7307;

/// A splice in that said `EAGAIN` or 0: does the source really have
/// nothing, or has it ended? `None` if so; else the bytes moved.
///
/// Not at TCP's urgent mark: `splice(2)` from TCP (`tcp_read_sock`) stops
/// before the urgent byte and never passes it, so at the mark it says
/// `EAGAIN` for good, however much arrives behind it, and 0 once the FIN
/// is queued too (which is not the end: the bytes after the mark are
/// still there). Only `recv` steps
/// over the mark: one `recv` into `scratch`, written into the direction's
/// pipe (empty: invariants), moves the bytes after it as a splice would
/// have (the urgent byte itself is dropped, as a `recv` drops it for
/// `copy_bidirectional`).
///
/// Only after the reactor reported urgent data (`HUP` in the receive cell,
/// which a stream's urgent data sets) does it cost the `ioctl`: an `EAGAIN`
/// otherwise costs one load more.
#[cold]
#[inline(never)]
fn past_urgent_mark<S: StreamSocket>(source: &S, pipe_write: RawFd) -> io::Result<Option<usize>> {
    if !source.registration().rx().peek().is_hung_up() {
        return Ok(None);
    }
    let from = source.as_raw_fd();
    let mut at_mark: libc::c_int = 0;
    // SAFETY: `SIOCATMARK` writes one `c_int` through the pointer, which
    // points at one; on a socket without urgent data (a Unix stream) it
    // fails, which means "not at a mark".
    if unsafe { libc::ioctl(from, SIOCATMARK as _, &mut at_mark) } != 0 || at_mark == 0 {
        return Ok(None);
    }
    let mut scratch = [0u8; 4096];
    // EAGAIN here (only the urgent byte was queued, and the recv dropped
    // it): nothing after the mark yet, and the next arrival is an event.
    // 0: the FIN came right after the urgent byte.
    let n = crate::sys::recv(from, &mut scratch[..])?;
    // SAFETY: `scratch[..n]` is initialized memory the write only reads.
    let written = unsafe { libc::write(pipe_write, scratch.as_ptr().cast(), n) };
    // The pipe is empty and `n` is at most `PIPE_BUF`: all or an error.
    if written != n as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(Some(n))
}

/// Where one direction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Reading into the buffer and writing from it.
    Copying,
    /// Splicing through the pipe.
    Splicing,
    /// The source ended; the destination's sending side is shut down.
    Done,
}

/// The copy buffer of [`splice_bidirectional_auto`], per direction. A read
/// that fills it switches the direction to splicing: more is likely
/// queued.
const COPY_BUFFER: usize = 8 * 1024;

/// Splices in of fewer bytes than this, [`SMALL_IN_A_ROW`] in a row,
/// switch an adapting direction back to copying (small reads are cheaper
/// copied: docs/benchmarks.md, "Proxying").
const COPY_BELOW: usize = 4096;

/// How many small splices in a row switch back to copying: one is often
/// the tail of a large message, and the next message would then start
/// copied.
const SMALL_IN_A_ROW: u8 = 2;

/// One direction: its buffer (empty: splice only), its pipe, and the
/// operations in flight.
struct Direction<B> {
    buf: B,
    /// `buf[written..filled]` is read and not yet written.
    written: usize,
    filled: usize,
    /// Made when the direction first splices (so a failure is the
    /// future's error).
    pipe: Option<Pipe>,
    /// Bytes in the pipe (module invariants).
    in_pipe: usize,
    /// Bytes delivered to the destination.
    total: u64,
    /// Of those, bytes spliced (the rest were copied).
    spliced: u64,
    /// Splices in under [`COPY_BELOW`] bytes since the last larger one.
    small_splices: u8,
    /// The read (a receive or a splice in), on the source's receive cell.
    reading: OpState,
    /// The write (a send or a splice out), on the destination's send cell.
    writing: OpState,
    /// While the direction is done: its reservation of the source's
    /// receive cell, where it waits for an error (`watch_source`).
    watch: Option<Token>,
    stage: Stage,
}

impl<B> std::fmt::Debug for Direction<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direction")
            .field("stage", &self.stage)
            .field("held", &(self.filled - self.written + self.in_pipe))
            .field("total", &self.total)
            .field("spliced", &self.spliced)
            .finish()
    }
}

impl<B: AsMut<[u8]>> Direction<B> {
    fn new(mut buf: B) -> Self {
        let stage = if buf.as_mut().is_empty() {
            Stage::Splicing
        } else {
            Stage::Copying
        };
        Direction {
            buf,
            written: 0,
            filled: 0,
            pipe: None,
            in_pipe: 0,
            total: 0,
            spliced: 0,
            small_splices: 0,
            reading: OpState::new(),
            writing: OpState::new(),
            watch: None,
            stage,
        }
    }

    fn poll_transfer<S: StreamSocket, D: StreamSocket>(
        &mut self,
        cx: &mut Context<'_>,
        source: &S,
        destination: &D,
    ) -> Poll<io::Result<u64>> {
        loop {
            match self.stage {
                Stage::Copying => ready!(self.poll_copy(cx, source, destination))?,
                Stage::Splicing => ready!(self.poll_splice(cx, source, destination))?,
                Stage::Done => return Poll::Ready(Ok(self.total)),
            }
        }
    }

    /// One read into the buffer and the writes that empty it; then the
    /// direction splices if the read filled the buffer, or is done at the
    /// end of the stream.
    fn poll_copy<S: StreamSocket, D: StreamSocket>(
        &mut self,
        cx: &mut Context<'_>,
        source: &S,
        destination: &D,
    ) -> Poll<io::Result<()>> {
        let waker = Some(cx.waker());
        if self.written == self.filled {
            self.unwatch(source);
            let buf = self.buf.as_mut();
            let received =
                ready!(self
                    .reading
                    .poll(Side::rx(source.registration()), waker, || recv_attempt(
                        source, buf
                    ),));
            self.reading = OpState::new();
            let n = received?;
            if n == 0 {
                return Poll::Ready(self.finish(destination));
            }
            (self.written, self.filled) = (0, n);
        }
        while self.written < self.filled {
            let pending = &self.buf.as_mut()[self.written..self.filled];
            let sent =
                ready!(self
                    .writing
                    .poll(
                        Side::tx(destination.registration()),
                        waker,
                        || send_attempt(destination, pending),
                    ));
            self.writing = OpState::new();
            let n = sent?;
            self.written += n;
            self.total += n as u64;
        }
        if self.filled == self.buf.as_mut().len() {
            self.stage = Stage::Splicing;
        }
        Poll::Ready(Ok(()))
    }

    /// One splice into the pipe and the splices that empty it; then an
    /// adapting direction copies again if that splice was small, and any
    /// is done at the end of the stream.
    fn poll_splice<S: StreamSocket, D: StreamSocket>(
        &mut self,
        cx: &mut Context<'_>,
        source: &S,
        destination: &D,
    ) -> Poll<io::Result<()>> {
        if self.pipe.is_none() {
            match Pipe::new() {
                Ok(pipe) => self.pipe = Some(pipe),
                // Out of descriptors, an adapting direction (nothing held:
                // it switches only then) copies on, and tries again at its
                // next full read; one that only splices has no other way.
                Err(e) if !self.buf.as_mut().is_empty() && out_of_descriptors(&e) => {
                    self.stage = Stage::Copying;
                    return Poll::Ready(Ok(()));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let (pipe_read, pipe_write) = match &self.pipe {
            Some(pipe) => (pipe.read.as_raw_fd(), pipe.write.as_raw_fd()),
            None => unreachable!("made above"),
        };
        let (from, to) = (source.as_raw_fd(), destination.as_raw_fd());
        let waker = Some(cx.waker());
        let mut spliced_in = None;
        if self.in_pipe == 0 {
            self.unwatch(source);
            let spliced = ready!(self.reading.poll(
                Side::rx(source.registration()),
                waker,
                || -> Attempt<usize> {
                    match splice(from, pipe_write, CHUNK) {
                        // 0 at the urgent mark with the FIN queued is not
                        // yet the end (`past_urgent_mark`).
                        Ok(0) => Ok((past_urgent_mark(source, pipe_write)?.unwrap_or(0), false)),
                        Ok(n) => Ok((n, false)),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            match past_urgent_mark(source, pipe_write)? {
                                Some(n) => Ok((n, false)),
                                None => Err(e),
                            }
                        }
                        Err(e) => Err(e),
                    }
                },
            ));
            self.reading = OpState::new();
            match spliced? {
                // The end, or the error a shutdown took (`TakenError`).
                0 => {
                    let end = source.taken_error().report();
                    return Poll::Ready(end.and_then(|()| self.finish(destination)));
                }
                n => {
                    self.in_pipe = n;
                    spliced_in = Some(n);
                }
            }
        }
        while self.in_pipe > 0 {
            let left = self.in_pipe;
            let spliced = ready!(self.writing.poll(
                Side::tx(destination.registration()),
                waker,
                || -> Attempt<usize> {
                    // splice(2) takes no MSG_NOSIGNAL: into a socket that can
                    // no longer send it raises SIGPIPE (`cellio_reactor::sigpipe`).
                    match cellio_reactor::sigpipe::around(|| splice(pipe_read, to, left)) {
                        Ok(n) => Ok((n, false)),
                        Err(e) => {
                            if e.kind() == io::ErrorKind::WouldBlock {
                                // The destination is full (the pipe is not
                                // empty): wait for room, which needs write
                                // interest.
                                destination.arm_writable()?;
                            }
                            Err(e)
                        }
                    }
                },
            ));
            self.writing = OpState::new();
            let n = spliced?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "cellio: splice moved no bytes to the destination",
                )));
            }
            self.in_pipe -= n;
            self.total += n as u64;
            self.spliced += n as u64;
        }
        let adapts = !self.buf.as_mut().is_empty();
        if let Some(n) = spliced_in.filter(|_| adapts) {
            self.small_splices = if n < COPY_BELOW {
                self.small_splices + 1
            } else {
                0
            };
            if self.small_splices >= SMALL_IN_A_ROW {
                self.small_splices = 0;
                self.stage = Stage::Copying;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// End of stream with nothing held: passes it on, once.
    fn finish<D: StreamSocket>(&mut self, destination: &D) -> io::Result<()> {
        self.stage = Stage::Done;
        // A destination its peer already reset counts as shut down while
        // bytes wait to be read from it (`shut_down`): the other direction
        // reads them and then the reset, which is the error the join
        // reports; with nothing queued the reset is this error.
        destination.shut_down(Shutdown::Write)
    }
}

impl<B> Direction<B> {
    /// Releases the reservation of an operation dropped in flight, and the
    /// watch.
    fn cancel<S: StreamSocket, D: StreamSocket>(&mut self, source: &S, destination: &D) {
        self.reading.cancel(|| source.registration().rx());
        self.writing.cancel(|| destination.registration().tx());
        self.unwatch(source);
    }

    /// While the join waits: if this direction is done (its source's end
    /// has passed, so nothing is queued there), watches the source for an
    /// error, which nothing else would see (module invariants). Not while
    /// it waits to write what it holds: the source may hold bytes received
    /// before a reset, and the direction's next read delivers them, then
    /// reports the reset.
    fn poll_source_error<S: StreamSocket>(&mut self, waker: &Waker, source: &S) -> io::Result<()> {
        if self.stage == Stage::Done {
            watch_source(&mut self.watch, source, waker)
        } else {
            Ok(())
        }
    }

    /// Gives the source's receive cell back (before a read, and at the
    /// end): a plain release, which records nothing about the socket (the
    /// watch proved nothing drained).
    #[inline]
    fn unwatch<S: StreamSocket>(&mut self, source: &S) {
        if let Some(token) = self.watch.take() {
            let _ = source.registration().rx().release(token);
        }
    }
}

/// Waits, with `waker` parked on `source`'s receive cell (reserved into
/// `watch` the first time), for an error on a source that nobody reads
/// any more, its end having passed: the reset of a client that had
/// half-closed. Each wake-up costs a load; only
/// once the reactor has reported a hang-up (`HUP`: the end, an error, or
/// urgent data) does it ask the socket (`SO_ERROR`, which takes the
/// error). A plain end (a half-close) is no error: the watch goes on.
///
/// If another operation holds the cell (the caller reads the source
/// elsewhere at the same time), there is no watch: that operation meets
/// the error.
#[inline(never)]
fn watch_source<S: StreamSocket>(
    watch: &mut Option<Token>,
    source: &S,
    waker: &Waker,
) -> io::Result<()> {
    let cell = source.registration().rx();
    let token = match *watch {
        // Woken for something else, and nothing has arrived: sleep on.
        Some(token) if cell.still_parked(token, waker) => return Ok(()),
        Some(token) => token,
        None => match cell.reserve() {
            Ok(token) => *watch.insert(token),
            Err(_) => return Ok(()),
        },
    };
    let watched = watch_until_parked(source, token, waker);
    if watched.is_err() {
        *watch = None;
        let _ = cell.release(token);
    }
    watched
}

/// [`watch_source`]'s loop, under its reservation `token`: snapshot, look
/// for an error if the source hung up, park unless readiness moved since
/// the snapshot.
fn watch_until_parked<S: StreamSocket>(source: &S, token: Token, waker: &Waker) -> io::Result<()> {
    let cell = source.registration().rx();
    loop {
        let seen = cell.observe_reserved(token)?;
        if seen.is_hung_up() {
            // A client that half-closed and then gave up: its reset
            // (`EPIPE` to Linux in `CLOSE_WAIT`) is `ConnectionReset`.
            if let Some(error) = crate::stream::take_error(source)? {
                return Err(error);
            }
        }
        if cell.park(token, seen, waker)? == Park::Parked {
            return Ok(());
        }
    }
}

/// Moves `a`'s bytes to `b` and `b`'s to `a` through the kernel
/// (`splice(2)` through a pipe per direction: no copy into user space),
/// until each has reached end of stream, shutting down the other's sending
/// side when one does; resolves to `(a_to_b, b_to_a)`, the bytes moved
/// each way. Linux only.
///
/// It is [`copy_bidirectional`](crate::copy_bidirectional) for large
/// transfers: per byte, it saves the two copies through user memory; per
/// chunk, it makes the same two syscalls (a splice in, a splice out, where
/// the copy makes a `recv` and a `send`). Each call holds two pipes (four
/// descriptors) while it runs: count them against the open-file limit. It
/// uses each stream's receive and send cells, as a `recv` and a `send`
/// would: other operations of the same direction on the streams meanwhile
/// fail with `ResourceBusy`.
///
/// An error on either side ends both directions with it. That includes a
/// reset of a side that nothing reads any more, its end having passed (a
/// client that half-closed, then was killed): while it waits, the join
/// watches such a side's receive cell, and ends with `ConnectionReset`
/// when the reactor reports the reset (a plain end is no error: a
/// half-close passes through, and the other direction goes on). tokio's
/// `copy_bidirectional` (and [`copy_bidirectional`](crate::copy_bidirectional)
/// here, over the traits) would wait for the other side instead. A side
/// reset while the bytes it sent before wait for room on the other side
/// is not cut short: those bytes are delivered first (as by
/// `copy_bidirectional`), then the join ends with the reset; so while the
/// other side does not read, the join waits on it (give such a proxy an
/// idle timeout). A TCP side that sent its end, then reset (it threw away
/// bytes sent to it), ends the join with `ConnectionReset` after what it
/// sent, whichever side it is (the shutdown that took the reset keeps it
/// for the direction reading that side). A Unix side's shutdown never
/// reports a reset (Linux's shutdown of a Unix stream always succeeds): a
/// Unix upstream that answers, half-closes, then closes with the request
/// unread leaves the join ending `Ok` once the client ends.
///
/// The two directions take turns going first at each poll, so with both
/// busy neither takes the whole cooperative budget: each gets a fair
/// share of the throughput.
///
/// Not cancel-safe: bytes already in a pipe when the future is dropped
/// (read, not yet written: up to 64 KiB per direction) are lost.
///
/// A splice into a stream that can no longer send (reset, or shut down for
/// writing; a Unix stream's peer closed) fails with `BrokenPipe`, and like a
/// `send` raises no `SIGPIPE`: `splice(2)` takes no `MSG_NOSIGNAL`, so the
/// signal is kept blocked on a runtime's threads (the guide, "Errors you
/// can get").
///
/// # Examples
///
/// ```no_run
/// use cellio_net::{splice_bidirectional, TcpListener, TcpStream};
///
/// async fn proxy(listener: TcpListener, upstream: std::net::SocketAddr) -> std::io::Result<()> {
///     loop {
///         let (client, _) = listener.accept().await?;
///         cellio_runtime::spawn(async move {
///             let server = TcpStream::connect(upstream).await?;
///             splice_bidirectional(&client, &server).await
///         });
///     }
/// }
/// ```
pub fn splice_bidirectional<'a, A: StreamSocket, B: StreamSocket>(
    a: &'a A,
    b: &'a B,
) -> SpliceBidirectional<'a, A, B> {
    SpliceBidirectional {
        a,
        b,
        a_to_b: Direction::new([]),
        b_to_a: Direction::new([]),
        b_first: false,
    }
}

/// [`splice_bidirectional`] that copies small reads and splices large
/// ones, per direction (HAProxy's `splice-auto`): each direction starts
/// copying through an 8 KiB buffer inside the future, switches to
/// splicing when a read fills the buffer (more is likely queued), and back
/// to copying after two splices in a row that bring less than 4 KiB each
/// (one is often the tail of a large message). Switches happen only
/// with nothing held, so bytes keep their order. Measured through a proxy,
/// it keeps the copy's cost on small messages and the splice's on large
/// ones (docs/benchmarks.md, "Proxying"). Linux only.
///
/// A direction that never reads a full buffer never makes its pipe, and
/// one that cannot make it (the process or the system is out of
/// descriptors) keeps copying, trying again at its next full read. No
/// `SIGPIPE`, and a reset of a side nothing reads any more ends it, as
/// with [`splice_bidirectional`].
///
/// Not cancel-safe: bytes in a direction's copy buffer or its pipe when
/// the future is dropped (read, not yet written) are lost.
///
/// # Examples
///
/// ```no_run
/// use cellio_net::{splice_bidirectional_auto, TcpStream};
///
/// async fn join(client: TcpStream, server: TcpStream) -> std::io::Result<(u64, u64)> {
///     splice_bidirectional_auto(&client, &server).await
/// }
/// ```
pub fn splice_bidirectional_auto<'a, A: StreamSocket, B: StreamSocket>(
    a: &'a A,
    b: &'a B,
) -> SpliceBidirectional<'a, A, B, [u8; COPY_BUFFER]> {
    SpliceBidirectional {
        a,
        b,
        a_to_b: Direction::new([0; COPY_BUFFER]),
        b_to_a: Direction::new([0; COPY_BUFFER]),
        b_first: false,
    }
}

/// Future of [`splice_bidirectional`] and [`splice_bidirectional_auto`]:
/// `(a_to_b, b_to_a)`, the bytes moved each way.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct SpliceBidirectional<'a, A: StreamSocket, B: StreamSocket, Buf = [u8; 0]> {
    a: &'a A,
    b: &'a B,
    a_to_b: Direction<Buf>,
    b_to_a: Direction<Buf>,
    /// `b_to_a` goes first at the next poll (flipped at each poll).
    b_first: bool,
}

impl<A: StreamSocket, B: StreamSocket, Buf> SpliceBidirectional<'_, A, B, Buf> {
    /// Of the bytes moved so far, how many were spliced each way,
    /// `(a_to_b, b_to_a)` (the rest were copied): all of them with
    /// [`splice_bidirectional`], those of large reads with
    /// [`splice_bidirectional_auto`].
    pub fn spliced(&self) -> (u64, u64) {
        (self.a_to_b.spliced, self.b_to_a.spliced)
    }
}

impl<A: StreamSocket, B: StreamSocket, Buf: AsMut<[u8]> + Unpin> Future
    for SpliceBidirectional<'_, A, B, Buf>
{
    type Output = io::Result<(u64, u64)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let result = this.poll_both(cx);
        if result.is_ready() {
            // Ended: the source cells are the caller's again.
            this.a_to_b.unwatch(this.a);
            this.b_to_a.unwatch(this.b);
        }
        result
    }
}

impl<A: StreamSocket, B: StreamSocket, Buf: AsMut<[u8]>> SpliceBidirectional<'_, A, B, Buf> {
    /// Both directions, then, while the join waits, the watch of each
    /// source whose direction is done.
    fn poll_both(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(u64, u64)>> {
        // The direction polled first can use up the task's cooperative
        // budget and leave the other nothing: each goes first in turn.
        let b_first = self.b_first;
        self.b_first = !b_first;
        let (a_to_b, b_to_a) = if b_first {
            let b_to_a = self.b_to_a.poll_transfer(cx, self.b, self.a)?;
            (self.a_to_b.poll_transfer(cx, self.a, self.b)?, b_to_a)
        } else {
            let a_to_b = self.a_to_b.poll_transfer(cx, self.a, self.b)?;
            (a_to_b, self.b_to_a.poll_transfer(cx, self.b, self.a)?)
        };
        if let (Poll::Ready(a_to_b), Poll::Ready(b_to_a)) = (a_to_b, b_to_a) {
            return Poll::Ready(Ok((a_to_b, b_to_a)));
        }
        self.a_to_b.poll_source_error(cx.waker(), self.a)?;
        self.b_to_a.poll_source_error(cx.waker(), self.b)?;
        Poll::Pending
    }
}

impl<A: StreamSocket, B: StreamSocket, Buf> Drop for SpliceBidirectional<'_, A, B, Buf> {
    fn drop(&mut self) {
        self.a_to_b.cancel(self.a, self.b);
        self.b_to_a.cancel(self.b, self.a);
    }
}
