//! Copying bytes from one stream to another: [`copy`] (one direction) and
//! [`copy_bidirectional`] (both at once, a proxy's core), over the
//! `futures-io` traits, so any pair of [`TcpIo`](crate::TcpIo),
//! [`UnixIo`](crate::unix::UnixIo) or other `AsyncRead + AsyncWrite` types
//! works, TCP to Unix included.
//!
//! tokio's `io::copy_bidirectional` allocates two 8 KiB buffers per call;
//! here the buffers are part of the future (8 KiB each by default: a
//! spawned proxy task's block, from the task pool) or the caller's own
//! (`*_with_buffer(s)`), and the bytes a proxy moves allocate nothing
//! (`tests/zero_alloc_copy.rs`).
//!
//! # Invariants
//!
//! * A direction's buffer holds the bytes it read and has not written yet,
//!   `buf[written..filled]`; it reads again only once they are all written,
//!   so bytes are neither lost nor reordered, and a slow writer holds the
//!   reader back (nothing queues without bound).
//! * When a direction reads end of stream, it writes what it holds, flushes
//!   and closes its writer (for a cellio stream: shuts down its sending
//!   side, so the peer reads end of stream; a TCP side the peer already
//!   reset counts as shut down while bytes from before the reset wait to
//!   be read, and is the reset's error when none do) once, and is done; the
//!   other direction goes on until it is done too, or reads those bytes and
//!   then the reset (also when the peer's end came before its reset, where
//!   Linux's receive alone would say a clean end: the stream keeps the
//!   error the shutdown took, `TakenError`). So whichever side is `a`, an
//!   upstream that threw away bytes sent to it ends the copy with
//!   `ConnectionReset`, after the bytes it sent.
//! * An error in either direction ends the copy with that error; what a
//!   direction held then is not written (the caller learns of it through
//!   the error, as with tokio's).
//! * A direction flushes its writer before it waits for its reader, so a
//!   buffering writer never holds bytes while the copy sleeps.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};

/// The size of each direction's buffer in [`copy`] and
/// [`copy_bidirectional`] (tokio's default).
pub const COPY_BUFFER_SIZE: usize = 8 * 1024;

/// Where one direction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Reading and writing.
    Copying,
    /// The reader ended; flushing and closing the writer.
    Closing,
    /// The writer is closed.
    Done,
}

/// One direction's state: its buffer and how far it got.
struct Direction<Buf> {
    buf: Buf,
    /// `buf[written..filled]` is read and not yet written.
    written: usize,
    filled: usize,
    /// Bytes written so far.
    total: u64,
    /// Bytes were written since the last flush.
    need_flush: bool,
    stage: Stage,
}

/// The counts, not the buffer's bytes.
impl<Buf> fmt::Debug for Direction<Buf> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Direction")
            .field("stage", &self.stage)
            .field("held", &(self.filled - self.written))
            .field("total", &self.total)
            .finish()
    }
}

impl<Buf: AsMut<[u8]>> Direction<Buf> {
    fn new(buf: Buf) -> Self {
        Direction {
            buf,
            written: 0,
            filled: 0,
            total: 0,
            need_flush: false,
            stage: Stage::Copying,
        }
    }

    /// Moves bytes from `reader` to `writer` until the reader waits, the
    /// writer waits, or the direction is done (then its total).
    fn poll_transfer<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            match self.stage {
                Stage::Copying => {
                    if self.written == self.filled {
                        let buf = self.buf.as_mut();
                        if buf.is_empty() {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::InvalidInput,
                                "cellio: copy needs a buffer of at least one byte",
                            )));
                        }
                        match reader.as_mut().poll_read(cx, buf) {
                            Poll::Ready(Ok(0)) => {
                                self.stage = Stage::Closing;
                                continue;
                            }
                            Poll::Ready(Ok(n)) => {
                                (self.written, self.filled) = (0, n);
                            }
                            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {
                                continue
                            }
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                            Poll::Pending => {
                                if self.need_flush {
                                    ready!(writer.as_mut().poll_flush(cx))?;
                                    self.need_flush = false;
                                }
                                return Poll::Pending;
                            }
                        }
                    }
                    while self.written < self.filled {
                        let pending = &self.buf.as_mut()[self.written..self.filled];
                        let n = match ready!(writer.as_mut().poll_write(cx, pending)) {
                            Ok(0) => {
                                return Poll::Ready(Err(io::Error::new(
                                    io::ErrorKind::WriteZero,
                                    "cellio: copy's writer accepted no bytes",
                                )))
                            }
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Poll::Ready(Err(e)),
                        };
                        self.written += n;
                        self.total += n as u64;
                        self.need_flush = true;
                    }
                }
                Stage::Closing => {
                    ready!(writer.as_mut().poll_flush(cx))?;
                    ready!(writer.as_mut().poll_close(cx))?;
                    self.need_flush = false;
                    self.stage = Stage::Done;
                }
                Stage::Done => return Poll::Ready(Ok(self.total)),
            }
        }
    }
}

/// Copies everything `reader` yields into `writer`, then closes `writer`
/// (a cellio stream's sending side shuts down: its peer reads end of
/// stream); resolves to the number of bytes copied. The buffer, of
/// [`COPY_BUFFER_SIZE`] bytes, is part of the future: nothing is
/// allocated.
///
/// Unlike tokio's `io::copy` (and `futures::io::copy`), which only flush
/// the writer at the end and leave it open: after this copy nothing more
/// can be written to `writer` (a write, or a second copy, fails with
/// `BrokenPipe`), so `copy` of a header then `copy` of a body into one
/// stream sends only the header, and the peer reads end of stream. The
/// close is what passes the end on: `copy(&mut stdout, &mut stdin)`
/// between two child processes ends the second one's input. To copy and
/// then keep writing, cellio has no copy of its own: use
/// `futures_util::io::copy` (it allocates its buffer) on the same
/// `TcpIo` or `UnixIo`, tokio's `io::copy` with the `tokio-io` feature,
/// or a loop of reads and `write_all`.
///
/// Not cancel-safe: if the future is dropped, bytes it had read and not
/// written yet are lost.
///
/// # Examples
///
/// ```
/// use cellio_net::{copy, TcpIo, TcpListener, TcpStream};
/// use futures_util::io::AsyncReadExt;
///
/// # cellio_runtime::Runtime::new()?.block_on(async {
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let sender = TcpStream::connect(listener.local_addr()?).await?;
/// let (receiver, _) = listener.accept().await?;
/// let copier = cellio_runtime::spawn_local(async move {
///     let mut from = &b"hello, cellio"[..];
///     copy(&mut from, &mut TcpIo::new(sender)).await
/// });
/// let mut got = String::new();
/// TcpIo::new(receiver).read_to_string(&mut got).await?;
/// assert_eq!(got, "hello, cellio");
/// assert_eq!(copier.await??, 13);
/// # Ok::<(), std::io::Error>(())
/// # })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn copy<'a, R, W>(reader: &'a mut R, writer: &'a mut W) -> OneWayCopy<'a, R, W>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    OneWayCopy::new(reader, writer, [0; COPY_BUFFER_SIZE])
}

/// [`copy`] through the caller's `buffer` (any length from one byte up),
/// which can be reused across copies or sized to the traffic.
///
/// # Errors
///
/// `InvalidInput` if `buffer` is empty; as [`copy`] otherwise.
pub fn copy_with_buffer<'a, R, W>(
    reader: &'a mut R,
    writer: &'a mut W,
    buffer: &'a mut [u8],
) -> OneWayCopy<'a, R, W, &'a mut [u8]>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    OneWayCopy::new(reader, writer, buffer)
}

/// Future of [`copy`] and [`copy_with_buffer`]: the bytes copied.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct OneWayCopy<'a, R: ?Sized, W: ?Sized, Buf = [u8; COPY_BUFFER_SIZE]> {
    reader: &'a mut R,
    writer: &'a mut W,
    direction: Direction<Buf>,
}

impl<'a, R: ?Sized, W: ?Sized, Buf: AsMut<[u8]>> OneWayCopy<'a, R, W, Buf> {
    fn new(reader: &'a mut R, writer: &'a mut W, buf: Buf) -> Self {
        OneWayCopy {
            reader,
            writer,
            direction: Direction::new(buf),
        }
    }
}

impl<R, W, Buf> Future for OneWayCopy<'_, R, W, Buf>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
    Buf: AsMut<[u8]> + Unpin,
{
    type Output = io::Result<u64>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (reader, writer) = (Pin::new(&mut *this.reader), Pin::new(&mut *this.writer));
        this.direction.poll_transfer(cx, reader, writer)
    }
}

/// Copies `a`'s bytes into `b` and `b`'s into `a` at once, until each has
/// reached end of stream, closing the other's sending side when one does
/// (so a half-close passes through); resolves to `(a_to_b, b_to_a)`, the
/// bytes copied each way. tokio's `io::copy_bidirectional`. The two
/// buffers, of [`COPY_BUFFER_SIZE`] bytes each, are part of the future:
/// nothing is allocated.
///
/// An error on either side ends both directions with it, when a direction
/// meets it: a read or a write of that side. A side that nothing reads any
/// more (its end has passed, or the bytes read from it wait for room on
/// the other side) is not watched: the copy sees only `AsyncRead` and
/// `AsyncWrite`, which have no way to ask for an error without reading.
/// So a client that half-closes and then is reset, or that gives up
/// (reset) while the upstream does not read, leaves the copy waiting on
/// the upstream until it sends, reads or closes; tokio's
/// `copy_bidirectional` waits the same way. Bound such a proxy with an
/// idle timeout, or, for two cellio streams on Linux, join them with
/// `splice_bidirectional_auto`, which watches a side whose end has passed
/// and ends with `ConnectionReset` when it is reset. (A side reset while
/// its bytes wait for room is left to wait by both joins: what it sent
/// before the reset is delivered first.)
///
/// With cellio's TCP streams, an upstream that answers, half-closes and
/// then resets (it closed with bytes the copy sent it unread) ends the
/// copy with `ConnectionReset` after its answer is delivered, whichever
/// side is `a`: the close of its sending side takes the reset and the
/// stream keeps it for the read that meets the answer's end (Linux's read
/// alone says a clean end there; tokio's copy ends `Ok`). A Unix stream's
/// close never reports a reset (Linux's shutdown of a Unix stream always
/// succeeds): a Unix side's reset is reported only by a read of it, so one
/// that comes after its end has passed goes unreported: the copy ends
/// `Ok`.
///
/// With cellio streams the copy yields to the worker's other tasks as any socket
/// operation does (the cooperative budget); a pair of other streams that
/// are always ready would keep it busy. The two directions take turns
/// going first at each poll, so with both busy neither takes the whole
/// budget: each gets a fair share of the throughput (tokio's polls `a`
/// to `b` first every time, which then takes most of it).
///
/// Not cancel-safe: if the future is dropped, bytes it had read and not
/// written yet are lost.
///
/// # Examples
///
/// A proxy: each client connection is joined to its own connection to an
/// upstream server.
///
/// ```no_run
/// use cellio_net::{copy_bidirectional, TcpIo, TcpListener, TcpStream};
/// use std::net::SocketAddr;
///
/// async fn proxy(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
///     let listener = TcpListener::bind(listen)?;
///     loop {
///         let (client, _) = listener.accept().await?;
///         cellio_runtime::spawn_local(async move {
///             let server = TcpStream::connect(upstream).await?;
///             let (mut client, mut server) = (TcpIo::new(client), TcpIo::new(server));
///             copy_bidirectional(&mut client, &mut server).await
///         });
///     }
/// }
/// ```
pub fn copy_bidirectional<'a, A, B>(a: &'a mut A, b: &'a mut B) -> TwoWayCopy<'a, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    TwoWayCopy::new(a, b, [0; COPY_BUFFER_SIZE], [0; COPY_BUFFER_SIZE])
}

/// [`copy_bidirectional`] through the caller's buffers, one per direction
/// (any length from one byte up): reuse them across connections, or size
/// each to its traffic.
///
/// # Errors
///
/// `InvalidInput` if a buffer is empty; as [`copy_bidirectional`]
/// otherwise.
pub fn copy_bidirectional_with_buffers<'a, A, B>(
    a: &'a mut A,
    b: &'a mut B,
    a_to_b: &'a mut [u8],
    b_to_a: &'a mut [u8],
) -> TwoWayCopy<'a, A, B, &'a mut [u8]>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    TwoWayCopy::new(a, b, a_to_b, b_to_a)
}

/// Future of [`copy_bidirectional`] and
/// [`copy_bidirectional_with_buffers`]: `(a_to_b, b_to_a)`, the bytes
/// copied each way.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct TwoWayCopy<'a, A: ?Sized, B: ?Sized, Buf = [u8; COPY_BUFFER_SIZE]> {
    a: &'a mut A,
    b: &'a mut B,
    a_to_b: Direction<Buf>,
    b_to_a: Direction<Buf>,
    /// `b_to_a` goes first at the next poll (flipped at each poll).
    b_first: bool,
}

impl<'a, A: ?Sized, B: ?Sized, Buf: AsMut<[u8]>> TwoWayCopy<'a, A, B, Buf> {
    fn new(a: &'a mut A, b: &'a mut B, a_to_b: Buf, b_to_a: Buf) -> Self {
        TwoWayCopy {
            a,
            b,
            a_to_b: Direction::new(a_to_b),
            b_to_a: Direction::new(b_to_a),
            b_first: false,
        }
    }
}

impl<A, B, Buf> Future for TwoWayCopy<'_, A, B, Buf>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
    Buf: AsMut<[u8]> + Unpin,
{
    type Output = io::Result<(u64, u64)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // The direction polled first can use up the task's cooperative
        // budget and leave the other nothing: each goes first in turn.
        let b_first = this.b_first;
        this.b_first = !b_first;
        let (a, b) = (&mut *this.a, &mut *this.b);
        let (a_to_b, b_to_a) = if b_first {
            let b_to_a = this
                .b_to_a
                .poll_transfer(cx, Pin::new(&mut *b), Pin::new(&mut *a))?;
            let a_to_b = this.a_to_b.poll_transfer(cx, Pin::new(a), Pin::new(b))?;
            (a_to_b, b_to_a)
        } else {
            let a_to_b = this
                .a_to_b
                .poll_transfer(cx, Pin::new(&mut *a), Pin::new(&mut *b))?;
            let b_to_a = this.b_to_a.poll_transfer(cx, Pin::new(b), Pin::new(a))?;
            (a_to_b, b_to_a)
        };
        match (a_to_b, b_to_a) {
            (Poll::Ready(a_to_b), Poll::Ready(b_to_a)) => Poll::Ready(Ok((a_to_b, b_to_a))),
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// A reader that yields its chunks one per poll, waiting (and waking)
    /// between them, then end of stream.
    struct Chunks<'a> {
        chunks: &'a [&'a [u8]],
        wait: bool,
    }

    impl AsyncRead for Chunks<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if std::mem::replace(&mut self.wait, false) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.wait = true;
            let Some((first, rest)) = self.chunks.split_first() else {
                return Poll::Ready(Ok(0));
            };
            let n = first.len().min(buf.len());
            buf[..n].copy_from_slice(&first[..n]);
            let leftover = &first[n..];
            assert!(leftover.is_empty(), "the test sizes buffers to the chunks");
            self.chunks = rest;
            Poll::Ready(Ok(n))
        }
    }

    /// A writer that takes at most `per_write` bytes a call, waits every
    /// other call, and records flushes and the close.
    #[derive(Default)]
    struct Slow {
        out: Vec<u8>,
        per_write: usize,
        wait: bool,
        flushes: usize,
        closed: bool,
    }

    impl AsyncWrite for Slow {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            assert!(!self.closed, "a write after the close");
            if std::mem::replace(&mut self.wait, false) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.wait = true;
            let n = buf.len().min(self.per_write);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            assert!(!self.closed, "closed twice");
            self.closed = true;
            Poll::Ready(Ok(()))
        }
    }

    fn drive<F: Future + Unpin>(mut future: F) -> F::Output {
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..10_000 {
            if let Poll::Ready(output) = Pin::new(&mut future).poll(&mut cx) {
                return output;
            }
        }
        panic!("the copy did not finish in 10 000 polls");
    }

    #[test]
    fn every_byte_arrives_in_order_through_short_writes_and_waits() {
        let chunks: [&[u8]; 3] = [b"hello", b", ", b"slow world"];
        let mut reader = Chunks {
            chunks: &chunks,
            wait: false,
        };
        let mut writer = Slow {
            per_write: 3,
            ..Slow::default()
        };
        let mut buffer = [0u8; 10];
        let copied = drive(copy_with_buffer(&mut reader, &mut writer, &mut buffer)).unwrap();
        assert_eq!(copied, 17);
        assert_eq!(writer.out, b"hello, slow world");
        assert!(writer.closed);
        assert!(
            writer.flushes >= 1,
            "flushed before waiting and before the close"
        );
    }

    #[test]
    fn an_empty_buffer_is_an_error_not_a_hang() {
        let mut reader = Chunks {
            chunks: &[b"x"],
            wait: false,
        };
        let mut writer = Slow {
            per_write: 1,
            ..Slow::default()
        };
        let error = drive(copy_with_buffer(&mut reader, &mut writer, &mut [])).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
