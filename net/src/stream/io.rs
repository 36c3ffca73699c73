//! [`StreamIo`] ([`TcpIo`](crate::TcpIo), [`UnixIo`](crate::unix::UnixIo)):
//! a stream behind poll methods and the `futures-io` traits, keeping its
//! cells reserved between operations.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::held::HeldCell;
use crate::stream::ops::{peek_attempt, recv_attempt};
use crate::stream::{
    io_traits, Outgoing, OwnedRecvHalf, OwnedSendHalf, RecvHalf, SendHalf, StreamSocket,
};
use crate::sys::RecvBuf;

/// A stream used through poll methods, named [`TcpIo`](crate::TcpIo) for a
/// [`TcpStream`](crate::TcpStream) and [`UnixIo`](crate::unix::UnixIo) for a
/// [`UnixStream`](crate::unix::UnixStream); what follows says `TcpIo`, and
/// holds for both. [`poll_recv`](Self::poll_recv)
/// and [`poll_send`](Self::poll_send), and through them
/// [`futures_io::AsyncRead`] and [`futures_io::AsyncWrite`] (and, with the
/// `tokio-io` feature, tokio's `AsyncRead` and `AsyncWrite`) — for code
/// written against those traits (codecs, `copy`, TLS wrappers), or for a
/// connection that one task drives alone.
///
/// It owns its stream, so it keeps each direction's cell reserved from one
/// operation to the next instead of reserving and releasing it per
/// operation as the stream's futures do: a receive is a snapshot and the
/// syscall, and one that drains the socket parks the task's waker in the
/// cell before returning (one store), so that the next receive waits without
/// a syscall and without writing anything. The figures are in
/// `docs/benchmarks.md`.
///
/// To receive and send at the same time (in a `join`, a `select`, a
/// proxy's two copies), [`split`](Self::split) it into a
/// [`RecvHalf`] and a [`SendHalf`]; for a task each,
/// [`into_split`](Self::into_split) it into an [`OwnedRecvHalf`] and an
/// [`OwnedSendHalf`].
///
/// While it holds a direction, that direction's futures on the same
/// stream (through [`get_ref`](Self::get_ref)) fail with
/// `ErrorKind::ResourceBusy`; [`into_inner`](Self::into_inner) gives the
/// cells and the stream back.
///
/// # Confined to its thread
///
/// A `TcpIo` is neither `Send` nor `Sync`: it stays on the thread that made
/// it, like the runtime's tasks, which never move between workers. Spawn
/// the task that owns one with [`spawn_local`] (or create the `TcpIo`
/// inside a task, as below, and spawn that with `spawn_local`). To move a
/// connection elsewhere, move its stream ([`into_inner`](Self::into_inner)),
/// and to start its task on another worker, build it there with
/// [`spawn_local_on`].
///
/// In return, on a runtime worker whose reactor owns the stream (a stream
/// accepted, connected or [`from_std`](crate::TcpStream::from_std)-registered on
/// that worker), the reservations are *confined* to the thread: the early
/// park and the reactor's notifications are plain stores instead of locked
/// compare-and-swaps. On the benchmark VM that took an echo's user time per
/// message from 44.5 to 27.1 ns (a raw mio loop: 17.7 in the same rounds;
/// `docs/benchmarks.md`, "Confined cells").
/// [`is_confined`](Self::is_confined) says whether that applies. A stream
/// that belongs to another thread's reactor works too, with the
/// compare-and-swaps.
///
/// ```compile_fail,E0277
/// fn needs_send<T: Send>(_: T) {}
/// # fn f(stream: cellio_net::TcpStream) {
/// needs_send(cellio_net::TcpIo::new(stream)); // a TcpIo stays on its thread
/// # }
/// ```
///
/// [`spawn_local`]: ../cellio_runtime/fn.spawn_local.html
/// [`spawn_local_on`]: ../cellio_runtime/fn.spawn_local_on.html
///
/// # Examples
///
/// An echo loop:
///
/// ```no_run
/// use cellio_net::{TcpIo, TcpStream};
///
/// async fn echo(stream: TcpStream) -> std::io::Result<()> {
///     let mut io = TcpIo::new(stream);
///     let mut buf = [0u8; 4096];
///     loop {
///         let n = io.recv(&mut buf).await?;
///         if n == 0 {
///             return Ok(()); // the peer closed
///         }
///         io.send_all(&buf[..n]).await?;
///     }
/// }
/// ```
///
/// With the `futures-io` traits (here through the extension traits of
/// `futures-util`, which the `futures` crate re-exports):
///
/// ```no_run
/// use futures_util::io::{AsyncReadExt, AsyncWriteExt};
///
/// # async fn f(stream: cellio_net::TcpStream) -> std::io::Result<()> {
/// let mut io = cellio_net::TcpIo::new(stream);
/// io.write_all(b"ping").await?;
/// let mut reply = [0u8; 4];
/// io.read_exact(&mut reply).await?;
/// io.close().await?; // shuts down the sending side
/// # Ok(()) }
/// ```
pub struct StreamIo<S: StreamSocket> {
    stream: S,
    rx: HeldCell,
    tx: HeldCell,
    /// Neither `Send` nor `Sync`: confined reservations (see above) must
    /// not leave this thread.
    _confined: PhantomData<*const ()>,
}

impl<S: StreamSocket> StreamIo<S> {
    /// Wraps `stream`. Nothing is reserved until the first operation in
    /// each direction.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            rx: HeldCell::default(),
            tx: HeldCell::default(),
            _confined: PhantomData,
        }
    }

    /// `true` when a direction this `TcpIo` holds is confined to this
    /// thread (see [Confined to its thread](#confined-to-its-thread)): it
    /// was reserved on the thread that turns the stream's reactor. `false`
    /// before the first operation, and always for a stream of another
    /// thread's reactor.
    ///
    /// ```no_run
    /// # async fn f(stream: cellio_net::TcpStream) -> std::io::Result<()> {
    /// let mut io = cellio_net::TcpIo::new(stream);
    /// let mut buf = [0u8; 64];
    /// io.recv(&mut buf).await?;
    /// // On the worker that accepted the stream:
    /// assert!(io.is_confined());
    /// # Ok(()) }
    /// ```
    pub fn is_confined(&self) -> bool {
        let registration = self.stream.registration();
        self.rx.is_confined(registration.rx()) || self.tx.is_confined(registration.tx())
    }

    /// Receives into `buf`: `Ready(Ok(n))` with the bytes received (0: the
    /// peer closed its side, or `buf` is empty), or `Pending` with the task
    /// to be woken when data arrives.
    ///
    /// A receive that leaves the socket drained (it got less than `buf`
    /// holds) parks the task's waker in the cell before returning, so that
    /// the next receive waits without a syscall; data that arrives before
    /// that next receive wakes the task once (a spurious wake-up, as
    /// futures allow).
    ///
    /// Fails with `ErrorKind::ResourceBusy` if one of the stream's receive
    /// futures is in flight.
    #[inline(always)]
    pub fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        poll_recv_on(&self.stream, &mut self.rx, cx, buf)
    }

    /// [`poll_recv`](Self::poll_recv) into memory not initialized yet
    /// (tokio's `ReadBuf`), which the kernel fills without it being zeroed
    /// first.
    #[cfg(feature = "tokio-io")]
    #[inline(always)]
    pub(crate) fn poll_recv_uninit(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        poll_recv_on(&self.stream, &mut self.rx, cx, buf)
    }

    /// Copies what has arrived into `buf` without taking it (`MSG_PEEK`):
    /// the next receive gets the same bytes. `Ready(Ok(n))` (0 at the end
    /// of the stream, or for an empty `buf`), or `Pending` with the task to
    /// be woken when something arrives. For looking at a connection's first
    /// bytes before deciding how to serve it. tokio's `poll_peek`.
    ///
    /// Fails with `ErrorKind::ResourceBusy` if one of the stream's receive
    /// futures is in flight.
    #[inline]
    pub fn poll_peek(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        poll_peek_on(&self.stream, &mut self.rx, cx, buf)
    }

    /// [`poll_peek`](Self::poll_peek) as a future: resolves to the bytes
    /// copied, which stay queued.
    ///
    /// ```
    /// use cellio_net::unix::{UnixIo, UnixStream};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// cellio_runtime::Runtime::new()?.block_on(async {
    ///     let (a, b) = UnixStream::pair()?;
    ///     a.send_all(b"GET /").await?;
    ///     let mut io = UnixIo::new(b);
    ///     let mut first = [0u8; 3];
    ///     assert_eq!(io.peek(&mut first).await?, 3);
    ///     let mut all = [0u8; 5];
    ///     assert_eq!(io.recv(&mut all).await?, 5); // the peeked bytes too
    ///     assert_eq!((&first, &all), (b"GET", b"GET /"));
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn peek<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        std::future::poll_fn(move |cx| self.poll_peek(cx, buf))
    }

    /// Sends from `buf`: `Ready(Ok(n))` with the bytes the kernel took (at
    /// least 1 for a non-empty `buf`), or `Pending` with the task to be
    /// woken when there is room. A partial send parks the waker for the next
    /// one, like a draining receive.
    ///
    /// Fails with `ErrorKind::ResourceBusy` if one of the stream's send
    /// futures is in flight.
    #[inline(always)]
    pub fn poll_send(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        poll_send_on(&self.stream, &mut self.tx, cx, buf)
    }

    /// [`poll_send`](Self::poll_send) from several buffers at once, in
    /// order, in one `sendmsg`: `Ready(Ok(n))` with the bytes the kernel
    /// took (which may end part-way through any slice), or `Pending`. At
    /// most 1024 slices go in one call, empty ones at the start of a longer
    /// list skipped: `Ok(0)` only when every slice is empty. What the
    /// `AsyncWrite` traits' `poll_write_vectored` calls.
    #[inline]
    pub fn poll_send_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_send_on(&self.stream, &mut self.tx, cx, bufs)
    }

    /// Receives into `buf`; resolves to the bytes received (0: the peer
    /// closed its side). [`poll_recv`](Self::poll_recv) as a future.
    pub fn recv<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        IoRecv { io: self, buf }
    }

    /// Sends the whole of `buf`, in as many sends as the kernel needs.
    /// Fails with `ErrorKind::WriteZero` if a send takes nothing.
    ///
    /// Like tokio's `write_all`, it is not cancel-safe: dropped (or failed)
    /// part-way, an unknown prefix of `buf` has been sent. Loop over
    /// [`poll_send`](Self::poll_send) to know exactly how much.
    pub fn send_all<'a>(&'a mut self, buf: &'a [u8]) -> impl Future<Output = io::Result<()>> + 'a {
        IoSendAll {
            io: self,
            buf,
            sent: 0,
        }
    }

    /// The stream, for its addresses, options and stats. Its receive and
    /// send futures fail with `ResourceBusy` in a direction this `TcpIo`
    /// holds.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Splits this into its receiving and its sending half, borrowed: a
    /// task can then receive and send at the same time (in a `join` or a
    /// `select`, or two copies of a proxy), each half with its own cell.
    /// Both stay on this thread, like the `TcpIo`; the cells stay held by
    /// the `TcpIo` when the halves are dropped.
    ///
    /// With `futures_util::io::AsyncReadExt` in scope, `io.split()` means
    /// that trait's `split`, which takes the `TcpIo` by value and returns
    /// lock-guarded halves (method resolution tries by-value methods
    /// first): write `TcpIo::split(&mut io)` there.
    ///
    /// ```no_run
    /// use futures_util::future::try_join;
    ///
    /// # async fn f(stream: cellio_net::TcpStream) -> std::io::Result<()> {
    /// let mut io = cellio_net::TcpIo::new(stream);
    /// let (mut rx, mut tx) = io.split();
    /// let request = vec![7u8; 1 << 20]; // more than the socket buffers hold
    /// let mut reply = vec![0u8; request.len()];
    /// // Sending all of it before reading would stall against an echo peer.
    /// try_join(tx.send_all(&request), async {
    ///     let mut got = 0;
    ///     while got < reply.len() {
    ///         match rx.recv(&mut reply[got..]).await? {
    ///             0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
    ///             n => got += n,
    ///         }
    ///     }
    ///     Ok(())
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn split(&mut self) -> (RecvHalf<'_, S>, SendHalf<'_, S>) {
        (
            RecvHalf::new(&self.stream, &mut self.rx),
            SendHalf::new(&self.stream, &mut self.tx),
        )
    }

    /// Splits the `TcpIo` into halves that own what they use, for two tasks
    /// (tokio's `into_split`): an [`OwnedRecvHalf`] and an
    /// [`OwnedSendHalf`], sharing the stream, each with its direction's
    /// reservation. They stay on this thread (spawn their tasks with
    /// `spawn_local`); [`OwnedRecvHalf::reunite`] makes the `TcpIo` again.
    /// As with tokio's, dropping the [`OwnedSendHalf`] shuts down the
    /// sending side (the peer reads the end of the stream; the receive half
    /// goes on), unless it is reunited or
    /// [`forget`](OwnedSendHalf::forget)-ten.
    ///
    /// ```no_run
    /// use cellio_runtime::spawn_local;
    ///
    /// # async fn f(stream: cellio_net::TcpStream) -> std::io::Result<()> {
    /// let (mut rx, mut tx) = cellio_net::TcpIo::new(stream).into_split();
    /// // One task receives and prints; this one sends.
    /// let printer = spawn_local(async move {
    ///     let mut buf = [0u8; 1024];
    ///     while let Ok(n @ 1..) = rx.recv(&mut buf).await {
    ///         println!("{}", String::from_utf8_lossy(&buf[..n]));
    ///     }
    ///     rx
    /// });
    /// tx.send_all(b"hello").await?;
    /// let rx = printer.await.expect("the printer did not panic");
    /// let io = rx.reunite(tx).expect("halves of one TcpIo");
    /// # drop(io); Ok(()) }
    /// ```
    pub fn into_split(self) -> (OwnedRecvHalf<S>, OwnedSendHalf<S>) {
        crate::stream::io_owned_halves::split(self)
    }

    /// The stream and its two reservations, for the owned halves.
    pub(crate) fn into_parts(self) -> (S, HeldCell, HeldCell) {
        let StreamIo { stream, rx, tx, .. } = self;
        (stream, rx, tx)
    }

    /// A `TcpIo` from the parts [`into_parts`](Self::into_parts) gave.
    pub(crate) fn from_parts(stream: S, rx: HeldCell, tx: HeldCell) -> Self {
        Self {
            stream,
            rx,
            tx,
            _confined: PhantomData,
        }
    }

    /// Releases both cells and returns the stream, whose futures can then
    /// use them again. A parked operation is abandoned (nothing was moved,
    /// so nothing is lost).
    pub fn into_inner(mut self) -> S {
        let registration = self.stream.registration();
        self.rx.release(registration.rx());
        self.tx.release(registration.tx());
        let StreamIo { stream, .. } = self;
        stream
    }
}

/// [`TcpIo::poll_recv`](StreamIo::poll_recv) on a stream and its receive reservation: shared
/// with [`RecvHalf`](crate::tcp::RecvHalf).
#[inline(always)]
pub(crate) fn poll_recv_on<S: StreamSocket, B: ?Sized + RecvBuf>(
    stream: &S,
    rx: &mut HeldCell,
    cx: &mut Context<'_>,
    buf: &mut B,
) -> Poll<io::Result<usize>> {
    poll_rx_on::<S, B, false>(stream, rx, cx, buf)
}

/// [`TcpIo::poll_peek`](StreamIo::poll_peek) on a stream and its receive reservation: shared
/// with the receiving halves. A peek never leaves the socket drained (the
/// bytes stay queued).
#[inline]
pub(crate) fn poll_peek_on<S: StreamSocket>(
    stream: &S,
    rx: &mut HeldCell,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    poll_rx_on::<S, [u8], true>(stream, rx, cx, buf)
}

/// A receive (`PEEK`: a peek) through the held receive cell.
#[inline(always)]
fn poll_rx_on<S: StreamSocket, B: ?Sized + RecvBuf, const PEEK: bool>(
    stream: &S,
    rx: &mut HeldCell,
    cx: &mut Context<'_>,
    buf: &mut B,
) -> Poll<io::Result<usize>> {
    if buf.len() == 0 {
        return Poll::Ready(Ok(0));
    }
    let registration = stream.registration();
    rx.poll(
        registration.rx(),
        registration.rx_completions(),
        cx.waker(),
        || registration.is_bound_here(),
        || {
            if PEEK {
                peek_attempt(stream, buf)
            } else {
                recv_attempt(stream, buf)
            }
        },
    )
}

/// [`TcpIo::poll_send`](StreamIo::poll_send) (and
/// [`TcpIo::poll_send_vectored`](StreamIo::poll_send_vectored)) on a stream
/// and its send reservation: shared with [`SendHalf`](crate::tcp::SendHalf).
#[inline(always)]
pub(crate) fn poll_send_on<S: StreamSocket, B: ?Sized + Outgoing>(
    stream: &S,
    tx: &mut HeldCell,
    cx: &mut Context<'_>,
    buf: &B,
) -> Poll<io::Result<usize>> {
    if buf.is_empty() {
        return Poll::Ready(Ok(0));
    }
    let registration = stream.registration();
    tx.poll(
        registration.tx(),
        registration.tx_completions(),
        cx.waker(),
        || registration.is_bound_here(),
        || buf.attempt(stream),
    )
}

/// What can receive as [`TcpIo::poll_recv`](StreamIo::poll_recv) does: a `TcpIo` or its
/// [`RecvHalf`].
pub(crate) trait PollRecv {
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
}

/// What can send as [`TcpIo::poll_send`](StreamIo::poll_send) does: a `TcpIo` or its
/// [`SendHalf`].
pub(crate) trait PollSend {
    fn poll_send(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
}

impl<S: StreamSocket> PollRecv for StreamIo<S> {
    #[inline(always)]
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        StreamIo::poll_recv(self, cx, buf)
    }
}

impl<S: StreamSocket> PollSend for StreamIo<S> {
    #[inline(always)]
    fn poll_send(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        StreamIo::poll_send(self, cx, buf)
    }
}

// The futures of `recv` and `send_all` (of a `TcpIo` and of its halves):
// plain structs whose polls are always inlined into the awaiting task. As
// `async fn`s (or `poll_fn` closures) they were functions of their own,
// called once per message (about 100 instructions per echoed message
// more, in callgrind). They hold one reference, to the `TcpIo` (or the
// half), not its stream and cell apart: a connection task's state stays
// as small as before the halves existed.

pub(crate) struct IoRecv<'a, T> {
    pub(crate) io: &'a mut T,
    pub(crate) buf: &'a mut [u8],
}

impl<T: PollRecv> Future for IoRecv<'_, T> {
    type Output = io::Result<usize>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.io.poll_recv(cx, this.buf)
    }
}

pub(crate) struct IoSendAll<'a, T> {
    pub(crate) io: &'a mut T,
    pub(crate) buf: &'a [u8],
    pub(crate) sent: usize,
}

impl<T: PollSend> Future for IoSendAll<'_, T> {
    type Output = io::Result<()>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        while this.sent < this.buf.len() {
            match this.io.poll_send(cx, &this.buf[this.sent..]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => this.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: StreamSocket> From<S> for StreamIo<S> {
    fn from(stream: S) -> Self {
        Self::new(stream)
    }
}

impl<S: StreamSocket> fmt::Debug for StreamIo<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamIo")
            .field("stream", &self.stream)
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .finish()
    }
}

io_traits::async_read!(StreamIo<S>);
io_traits::async_write!(StreamIo<S>);
