//! The futures returned by a stream's receive and send methods
//! ([`TcpStream`](crate::TcpStream)'s and
//! [`UnixStream`](crate::unix::UnixStream)'s).
//!
//! Each is a plain struct holding borrows and an [`OpState`] (two words):
//! creating one does nothing, polling it runs the cell protocol described in
//! `crate::op`, dropping it mid-flight releases its cell.

use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use cellio_reactor::CellError;

use crate::op::{fast_path, future_and_drop, OpState, Side};
use crate::stream::{Outgoing, StreamSocket, TakenError};
use crate::sys::{self, RecvBuf};

/// One receive: the bytes, and whether the socket is drained, so that the
/// next receive can park without a syscall that would only say `EAGAIN`.
/// Each stream type says when that holds (`Sealed::recv_once`), and, at
/// the end of the stream (0), reports instead the error a shutdown took
/// out of the socket, once (`TakenError`).
#[inline(always)]
pub(crate) fn recv_attempt<S: StreamSocket, B: ?Sized + RecvBuf>(
    stream: &S,
    buf: &mut B,
) -> io::Result<(usize, bool)> {
    stream.recv_once(buf)
}

/// [`recv_attempt`] for a stream whose receives return all that is queued
/// up to the buffer's size (TCP): a short read leaves it drained. 0 is
/// the end of the stream, or the error `taken` keeps for it (a branch in
/// place of the drained test's `n > 0`).
#[inline(always)]
pub(crate) fn recv_whole<B: ?Sized + RecvBuf>(
    fd: std::os::fd::RawFd,
    buf: &mut B,
    taken: &TakenError,
) -> io::Result<(usize, bool)> {
    let n = sys::recv(fd, buf)?;
    if n == 0 {
        // Only a buffer with room says the end: an empty one's 0 says
        // nothing (and must not take the kept error before queued bytes).
        return match buf.len() {
            0 => Ok((0, false)),
            _ => taken.report().map(|()| (0, false)),
        };
    }
    Ok((n, n < buf.len()))
}

/// A peek: the bytes stay queued, so however few came, the socket is not
/// drained (marking it would park the next receive on data that is there).
/// At the end, like a receive, it says a kept error (`TakenError`), which
/// stays for the receive.
#[inline]
pub(crate) fn peek_attempt<S: StreamSocket, B: ?Sized + RecvBuf>(
    stream: &S,
    buf: &mut B,
) -> io::Result<(usize, bool)> {
    match sys::peek(stream.as_raw_fd(), buf)? {
        // The end: a kept error (`TakenError`) is said, and stays for the
        // next receive.
        0 if buf.len() == 0 => Ok((0, false)),
        0 => stream.taken_error().peek().map(|()| (0, false)),
        n => Ok((n, false)),
    }
}

#[inline(always)]
pub(crate) fn send_attempt<S: StreamSocket>(stream: &S, buf: &[u8]) -> io::Result<(usize, bool)> {
    // MSG_NOSIGNAL, or SO_NOSIGPIPE on Apple's systems (`sys::no_sigpipe`):
    // a reset peer never raises SIGPIPE.
    match sys::send(stream.as_raw_fd(), buf) {
        Ok(n) if n == buf.len() => Ok((n, false)),
        short_or_failed => send_fell_short(stream, short_or_failed),
    }
}

/// [`send_attempt`] for a list of slices: one `sendmsg`, gathering them in
/// order. Called drained (see `send_fell_short`) only if the kernel took
/// less than the slices it was given (at most `sys::MAX_SLICES` of them:
/// a longer list is not a full send buffer).
#[inline]
pub(crate) fn send_vectored_attempt<S: StreamSocket>(
    stream: &S,
    bufs: &[IoSlice<'_>],
) -> io::Result<(usize, bool)> {
    let offered: usize = sys::sendable_slices(bufs).iter().map(|buf| buf.len()).sum();
    match sys::send_vectored(stream, bufs) {
        Ok(n) if n == offered => Ok((n, false)),
        short_or_failed => send_fell_short(stream, short_or_failed),
    }
}

/// Up to `len` bytes of `file` from `offset` (`sendfile(2)` on Linux).
/// Never called drained: a short send may mean the file ended, not that
/// the socket is full, so the next attempt finds out (`EAGAIN` parks it).
#[inline]
pub(crate) fn send_file_attempt<S: StreamSocket>(
    stream: &S,
    file: BorrowedFd<'_>,
    offset: u64,
    len: usize,
) -> io::Result<(usize, bool)> {
    match sys::send_file(stream.as_raw_fd(), file.as_raw_fd(), offset, len) {
        Ok(n) => Ok((n, false)),
        Err(e) => send_fell_short(stream, Err(e)),
    }
}

/// One file send now, for `try_send_file`.
pub(crate) fn try_send_file<S: StreamSocket>(
    stream: &S,
    file: BorrowedFd<'_>,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    crate::ready::try_now(stream.registration().tx(), || {
        send_file_attempt(stream, file, offset, len)
    })
}

/// A send that did not take the whole buffer: a partial write (the send
/// buffer is full) or an error. Either way the socket may now have to wait
/// for space, so write interest is armed first (see
/// `Registration::arm_writable`).
#[cold]
#[inline(never)]
fn send_fell_short<S: StreamSocket>(
    stream: &S,
    result: io::Result<usize>,
) -> io::Result<(usize, bool)> {
    match result {
        // `n` bytes are gone: they are reported whatever happens to the
        // arming (an error here would make a retrying caller send them
        // twice). If it failed, the socket is not called drained, so the
        // next attempt sees EAGAIN and arms (and reports) again.
        Ok(n) => Ok((n, stream.arm_writable().is_ok())),
        Err(e) => {
            if e.kind() == io::ErrorKind::WouldBlock {
                stream.arm_writable()?;
            }
            Err(e)
        }
    }
}

/// Future of [`TcpStream::recv`](crate::TcpStream::recv) (and of
/// `UnixStream`'s): resolves to the number of bytes received.
///
/// With `PEEK` (the [`Peek`] future of
/// [`TcpStream::peek`](crate::TcpStream::peek)), the bytes are copied but
/// stay queued for the next receive.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Recv<'a, S: StreamSocket, const PEEK: bool = false> {
    stream: &'a S,
    buf: &'a mut [u8],
    op: OpState,
}

/// Future of [`TcpStream::peek`](crate::TcpStream::peek) (and of
/// `UnixStream`'s): resolves to the number of bytes copied, which stay
/// queued.
pub type Peek<'a, S> = Recv<'a, S, true>;

impl<'a, S: StreamSocket, const PEEK: bool> Recv<'a, S, PEEK> {
    pub(crate) fn new(stream: &'a S, buf: &'a mut [u8]) -> Self {
        Self {
            stream,
            buf,
            op: OpState::new(),
        }
    }

    #[inline(always)]
    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<usize>> {
        if self.buf.is_empty() {
            return self.op.nothing_to_move();
        }
        let (stream, buf) = (self.stream, &mut *self.buf);
        self.op.poll(Side::rx(stream.registration()), waker, || {
            if PEEK {
                peek_attempt(stream, buf)
            } else {
                recv_attempt(stream, buf)
            }
        })
    }

    /// Attempts the receive now, without waiting: `Some(result)` if it
    /// completed on this first attempt (the `IsCompletedSuccessfully` fast
    /// path), `None` if it would have to wait — then `.await` the future.
    ///
    /// After `Some`, the future is finished; awaiting it yields a
    /// [`CellError::Consumed`] error.
    ///
    /// ```no_run
    /// # async fn f(stream: &cellio_net::TcpStream) -> std::io::Result<()> {
    /// let mut buf = [0u8; 1024];
    /// let mut op = stream.recv(&mut buf);
    /// let n = match op.try_complete() {
    ///     Some(result) => result?, // data was already buffered
    ///     None => op.await?,       // park until the reactor wakes us
    /// };
    /// # let _ = n; Ok(()) }
    /// ```
    pub fn try_complete(&mut self) -> Option<io::Result<usize>> {
        match self.poll_with(None) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        }
    }

    /// `true` once the future has delivered its result.
    pub fn is_terminated(&self) -> bool {
        self.op.is_done()
    }
}

impl<S: StreamSocket, const PEEK: bool> Future for Recv<'_, S, PEEK> {
    type Output = io::Result<usize>;

    // Always inlined into the awaiting `async fn`, like `SendAll::poll`:
    // out of line, the call with its register saves and reloads cost about
    // 30 instructions per echoed message (callgrind, docs/benchmarks.md).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_with(Some(cx.waker()))
    }
}

impl<S: StreamSocket, const PEEK: bool> Drop for Recv<'_, S, PEEK> {
    fn drop(&mut self) {
        self.op.cancel(|| self.stream.registration().rx());
    }
}

/// Future of [`TcpStream::send`](crate::TcpStream::send) (and of
/// `UnixStream`'s): resolves to the number of bytes sent.
///
/// With `B = [IoSlice]` (the [`SendVectored`] future of
/// [`TcpStream::send_vectored`](crate::TcpStream::send_vectored)), the
/// bytes are gathered from the slices in order, in one `sendmsg`.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Send<'a, S: StreamSocket, B: ?Sized + Outgoing = [u8]> {
    stream: &'a S,
    buf: &'a B,
    op: OpState,
}

/// Future of [`TcpStream::send_vectored`](crate::TcpStream::send_vectored)
/// (and of `UnixStream`'s): resolves to the number of bytes sent, gathered
/// from the slices in order.
pub type SendVectored<'a, S> = Send<'a, S, [IoSlice<'a>]>;

impl<'a, S: StreamSocket, B: ?Sized + Outgoing> Send<'a, S, B> {
    pub(crate) fn new(stream: &'a S, buf: &'a B) -> Self {
        Self {
            stream,
            buf,
            op: OpState::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<usize>> {
        if self.buf.is_empty() {
            return self.op.nothing_to_move();
        }
        let (stream, buf) = (self.stream, self.buf);
        self.op.poll(Side::tx(stream.registration()), waker, || {
            buf.attempt(stream)
        })
    }

    fast_path!(usize);
}

impl<S: StreamSocket, B: ?Sized + Outgoing> Future for Send<'_, S, B> {
    type Output = io::Result<usize>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_with(Some(cx.waker()))
    }
}

impl<S: StreamSocket, B: ?Sized + Outgoing> Drop for Send<'_, S, B> {
    fn drop(&mut self) {
        self.op.cancel(|| self.stream.registration().tx());
    }
}

/// Future of [`TcpStream::send_file`](crate::TcpStream::send_file) (and of
/// `UnixStream`'s): resolves to the number of bytes sent from the file, 0
/// at its end.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct SendFile<'a, S: StreamSocket> {
    stream: &'a S,
    file: BorrowedFd<'a>,
    offset: u64,
    len: usize,
    op: OpState,
}

impl<'a, S: StreamSocket> SendFile<'a, S> {
    pub(crate) fn new(stream: &'a S, file: BorrowedFd<'a>, offset: u64, len: usize) -> Self {
        Self {
            stream,
            file,
            offset,
            len,
            op: OpState::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<usize>> {
        if self.len == 0 {
            return self.op.nothing_to_move();
        }
        let (stream, file, offset, len) = (self.stream, self.file, self.offset, self.len);
        self.op.poll(Side::tx(stream.registration()), waker, || {
            send_file_attempt(stream, file, offset, len)
        })
    }

    fast_path!(usize);
}

future_and_drop!(SendFile<S: StreamSocket>, stream, usize, tx);

/// Future of [`TcpStream::send_all`](crate::TcpStream::send_all) (and of
/// `UnixStream`'s): sends the whole buffer.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct SendAll<'a, S: StreamSocket> {
    stream: &'a S,
    buf: &'a [u8],
    sent: usize,
    op: OpState,
    finished: bool,
}

impl<'a, S: StreamSocket> SendAll<'a, S> {
    pub(crate) fn new(stream: &'a S, buf: &'a [u8]) -> Self {
        Self {
            stream,
            buf,
            sent: 0,
            op: OpState::new(),
            finished: false,
        }
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> usize {
        self.sent
    }
}

impl<S: StreamSocket> Future for SendAll<'_, S> {
    type Output = io::Result<()>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(Err(CellError::Consumed.into()));
        }
        let stream = this.stream;
        let result = loop {
            let rest = &this.buf[this.sent..];
            if rest.is_empty() {
                break Ok(());
            }
            match this
                .op
                .poll(Side::tx(stream.registration()), Some(cx.waker()), || {
                    send_attempt(stream, rest)
                }) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => break Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    this.sent += n;
                    if this.sent == this.buf.len() {
                        break Ok(()); // the usual case: all of it at once
                    }
                    this.op = OpState::new();
                }
                Poll::Ready(Err(e)) => break Err(e),
            }
        };
        this.finished = true;
        Poll::Ready(result)
    }
}

impl<S: StreamSocket> Drop for SendAll<'_, S> {
    fn drop(&mut self) {
        self.op.cancel(|| self.stream.registration().tx());
    }
}

/// Future of [`TcpStream::recv_exact`](crate::TcpStream::recv_exact) (and of
/// `UnixStream`'s): fills the whole buffer.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct RecvExact<'a, S: StreamSocket> {
    stream: &'a S,
    buf: &'a mut [u8],
    filled: usize,
    op: OpState,
    finished: bool,
}

impl<'a, S: StreamSocket> RecvExact<'a, S> {
    pub(crate) fn new(stream: &'a S, buf: &'a mut [u8]) -> Self {
        Self {
            stream,
            buf,
            filled: 0,
            op: OpState::new(),
            finished: false,
        }
    }

    /// Bytes received so far.
    pub fn filled(&self) -> usize {
        self.filled
    }
}

impl<S: StreamSocket> Future for RecvExact<'_, S> {
    type Output = io::Result<()>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(Err(CellError::Consumed.into()));
        }
        let stream = this.stream;
        let result = loop {
            let rest = &mut this.buf[this.filled..];
            if rest.is_empty() {
                break Ok(());
            }
            match this
                .op
                .poll(Side::rx(stream.registration()), Some(cx.waker()), || {
                    recv_attempt(stream, rest)
                }) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => break Err(io::ErrorKind::UnexpectedEof.into()),
                Poll::Ready(Ok(n)) => {
                    this.filled += n;
                    if this.filled == this.buf.len() {
                        break Ok(());
                    }
                    this.op = OpState::new();
                }
                Poll::Ready(Err(e)) => break Err(e),
            }
        };
        this.finished = true;
        Poll::Ready(result)
    }
}

impl<S: StreamSocket> Drop for RecvExact<'_, S> {
    fn drop(&mut self) {
        self.op.cancel(|| self.stream.registration().rx());
    }
}
