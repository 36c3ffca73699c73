//! [`splice_bidirectional`]: a proxy's two directions moved by the kernel
//! (Linux `splice(2)`), socket → pipe → socket, so the bytes are never
//! copied into user space: HAProxy's `option splice-auto`, for a cellio
//! stream pair.
//!
//! Each direction owns a pipe. It splices what the source has into the
//! pipe (waiting on the source's receive cell when it has nothing), then
//! splices the pipe into the destination (waiting on the destination's send
//! cell while it is full), and only then reads again.
//!
//! # Invariants
//!
//! * `in_pipe` is exactly what the direction spliced into its pipe and has
//!   not spliced out: the pipe is the direction's own, so its contents are
//!   known without asking. Nothing is read while it is not empty, so an
//!   `EAGAIN` from the splice in means the source is drained (the pipe has
//!   room), and one from the splice out means the destination is full (the
//!   pipe has bytes): each waits on the right cell.
//! * A direction has at most one operation in flight (in or out), on the
//!   source's receive cell or the destination's send cell; the two
//!   directions use the other two cells, so they never meet on one.
//! * At the source's end of stream, with the pipe empty, the destination's
//!   sending side is shut down once, and the direction is done.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use crate::op::{Attempt, OpState, Side};
use crate::stream::StreamSocket;

/// The most one splice moves into a pipe: a default pipe's capacity.
const CHUNK: usize = 64 * 1024;

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

/// Where one direction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Moving,
    Done,
}

/// One direction: its pipe and the operation in flight.
#[derive(Debug)]
struct Direction {
    /// Made at the first poll (so a failure is the future's error).
    pipe: Option<Pipe>,
    /// Bytes in the pipe (module invariants).
    in_pipe: usize,
    /// Bytes delivered to the destination.
    total: u64,
    /// The splice into the pipe, on the source's receive cell.
    splice_in: OpState,
    /// The splice out of the pipe, on the destination's send cell.
    splice_out: OpState,
    stage: Stage,
}

impl Direction {
    fn new() -> Self {
        Direction {
            pipe: None,
            in_pipe: 0,
            total: 0,
            splice_in: OpState::new(),
            splice_out: OpState::new(),
            stage: Stage::Moving,
        }
    }

    fn poll_transfer<S: StreamSocket, D: StreamSocket>(
        &mut self,
        cx: &mut Context<'_>,
        source: &S,
        destination: &D,
    ) -> Poll<io::Result<u64>> {
        if self.stage == Stage::Done {
            return Poll::Ready(Ok(self.total));
        }
        if self.pipe.is_none() {
            self.pipe = Some(Pipe::new()?);
        }
        let (pipe_read, pipe_write) = match &self.pipe {
            Some(pipe) => (pipe.read.as_raw_fd(), pipe.write.as_raw_fd()),
            None => unreachable!("made above"),
        };
        let (from, to) = (source.as_raw_fd(), destination.as_raw_fd());
        let waker = Some(cx.waker());
        loop {
            if self.in_pipe == 0 {
                let spliced = ready!(self.splice_in.poll(
                    Side::rx(source.registration()),
                    waker,
                    || -> Attempt<usize> { splice(from, pipe_write, CHUNK).map(|n| (n, false)) },
                ));
                self.splice_in = OpState::new();
                match spliced? {
                    0 => {
                        // End of stream, and the pipe is empty: pass it on.
                        destination.shutdown_socket(Shutdown::Write)?;
                        self.stage = Stage::Done;
                        return Poll::Ready(Ok(self.total));
                    }
                    n => self.in_pipe = n,
                }
            }
            while self.in_pipe > 0 {
                let left = self.in_pipe;
                let spliced = ready!(self.splice_out.poll(
                    Side::tx(destination.registration()),
                    waker,
                    || -> Attempt<usize> {
                        match splice(pipe_read, to, left) {
                            Ok(n) => Ok((n, false)),
                            Err(e) => {
                                if e.kind() == io::ErrorKind::WouldBlock {
                                    // The destination is full (the pipe is
                                    // not empty): wait for room, which
                                    // needs write interest.
                                    destination.arm_writable()?;
                                }
                                Err(e)
                            }
                        }
                    },
                ));
                self.splice_out = OpState::new();
                let n = spliced?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "cellio: splice moved no bytes to the destination",
                    )));
                }
                self.in_pipe -= n;
                self.total += n as u64;
            }
        }
    }

    /// Releases the reservation of an operation dropped in flight.
    fn cancel<S: StreamSocket, D: StreamSocket>(&mut self, source: &S, destination: &D) {
        self.splice_in.cancel(|| source.registration().rx());
        self.splice_out.cancel(|| destination.registration().tx());
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
/// Not cancel-safe: bytes already in a pipe when the future is dropped are
/// lost.
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
        a_to_b: Direction::new(),
        b_to_a: Direction::new(),
    }
}

/// Future of [`splice_bidirectional`]: `(a_to_b, b_to_a)`, the bytes moved
/// each way.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct SpliceBidirectional<'a, A: StreamSocket, B: StreamSocket> {
    a: &'a A,
    b: &'a B,
    a_to_b: Direction,
    b_to_a: Direction,
}

impl<A: StreamSocket, B: StreamSocket> Future for SpliceBidirectional<'_, A, B> {
    type Output = io::Result<(u64, u64)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let a_to_b = this.a_to_b.poll_transfer(cx, this.a, this.b)?;
        let b_to_a = this.b_to_a.poll_transfer(cx, this.b, this.a)?;
        match (a_to_b, b_to_a) {
            (Poll::Ready(a_to_b), Poll::Ready(b_to_a)) => Poll::Ready(Ok((a_to_b, b_to_a))),
            _ => Poll::Pending,
        }
    }
}

impl<A: StreamSocket, B: StreamSocket> Drop for SpliceBidirectional<'_, A, B> {
    fn drop(&mut self) {
        self.a_to_b.cancel(self.a, self.b);
        self.b_to_a.cancel(self.b, self.a);
    }
}
