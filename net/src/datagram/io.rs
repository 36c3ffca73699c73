//! [`DatagramIo`] ([`UdpIo`](crate::udp::UdpIo),
//! [`UnixDatagramIo`](crate::unix::UnixDatagramIo)): a datagram socket that
//! one task drives alone, keeping its cells reserved between operations (as
//! [`TcpIo`](crate::TcpIo) does for a stream; `crate::held` explains the
//! protocol).

use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::datagram::backoff::{is_no_room_event, target_key, Backoff};
use crate::datagram::{
    after_send, recv, recv_from, send, send_queued, send_to, try_recv_many, DatagramSocket,
    RecvBatch, SendBatch,
};
use crate::held::HeldCell;
use crate::op::Attempt;
use crate::unix::UnixDatagram;
use crate::UdpSocket;

/// A datagram socket used through `&mut self`, named
/// [`UdpIo`](crate::udp::UdpIo) for a [`UdpSocket`] and
/// [`UnixDatagramIo`](crate::unix::UnixDatagramIo) for a [`UnixDatagram`]
/// (what follows says `UdpIo`, and holds for both): poll methods and futures that
/// keep each direction's cell reserved from one operation to the next,
/// instead of reserving and releasing it per datagram as the socket's own
/// futures do.
///
/// It stays on the thread that made it (it is neither `Send` nor `Sync`):
/// spawn its task with `spawn_local`, or build it on another worker with
/// `spawn_local_on`. In return, on the worker whose reactor owns the
/// socket (it was bound there, or registered with
/// `from_std` there), its cells are *confined* to
/// that thread, and a datagram's receive, park and wake-up take no locked
/// instruction; [`is_confined`](Self::is_confined) says whether that
/// applies. docs/benchmarks.md ("UDP") has the figures.
///
/// While it holds a direction, that direction's futures on the socket
/// (through [`get_ref`](Self::get_ref)) fail with `ErrorKind::ResourceBusy`;
/// [`into_inner`](Self::into_inner) gives the cells and the socket back.
///
/// ```compile_fail,E0277
/// fn needs_send<T: Send>(_: T) {}
/// # fn f(socket: cellio_net::UdpSocket) {
/// needs_send(cellio_net::udp::UdpIo::new(socket)); // a UdpIo stays on its thread
/// # }
/// ```
///
/// # Examples
///
/// An echo server:
///
/// ```no_run
/// use cellio_net::udp::{UdpIo, UdpSocket, MAX_DATAGRAM};
///
/// async fn echo(socket: UdpSocket) -> std::io::Result<()> {
///     let mut io = UdpIo::new(socket);
///     let mut buf = vec![0u8; MAX_DATAGRAM];
///     loop {
///         let (n, from) = io.recv_from(&mut buf).await?;
///         io.send_to(&buf[..n], from).await?;
///     }
/// }
/// ```
pub struct DatagramIo<S: DatagramSocket> {
    socket: S,
    rx: HeldCell,
    tx: HeldCell,
    /// When a send that found its peer full tries again (see `backoff`).
    backoff: Backoff,
    /// Where the send cell may be parked ([`ROOM_MAY_GO_UNANNOUNCED`]
    /// sockets only): the destination key ([`target_key`]) of the last
    /// send that returned `Pending` from the cell, `None` once a send
    /// completed. A send to another key does not keep sleeping on that
    /// wait (a Unix peer's full queue is that peer's, not the socket's).
    ///
    /// [`ROOM_MAY_GO_UNANNOUNCED`]: super::sealed::Sealed::ROOM_MAY_GO_UNANNOUNCED
    parked_for: Option<u64>,
    /// Neither `Send` nor `Sync`: confined reservations must not leave this
    /// thread.
    _confined: PhantomData<*const ()>,
}

impl<S: DatagramSocket> DatagramIo<S> {
    /// Wraps `socket`. Nothing is reserved until the first operation in
    /// each direction.
    pub fn new(socket: S) -> Self {
        Self {
            socket,
            rx: HeldCell::default(),
            tx: HeldCell::default(),
            backoff: Backoff::new(),
            parked_for: None,
            _confined: PhantomData,
        }
    }

    /// `true` when a direction this `UdpIo` holds is confined to this
    /// thread: it was reserved on the thread that turns the socket's
    /// reactor. `false` before the first operation.
    pub fn is_confined(&self) -> bool {
        let registration = self.socket.registration();
        self.rx.is_confined(registration.rx()) || self.tx.is_confined(registration.tx())
    }

    /// Receives one datagram and its sender, or `Pending` with the task to
    /// be woken when one arrives. A datagram longer than `buf` fails with
    /// `ErrorKind::InvalidData`, as the socket's `recv_from` does.
    #[inline(always)]
    pub fn poll_recv_from(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, S::Addr)>> {
        self.poll_rx(cx, |socket| recv_from(socket, buf))
    }

    /// Receives one datagram from the connected peer; as
    /// [`poll_recv_from`](Self::poll_recv_from) otherwise.
    #[inline(always)]
    pub fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.poll_rx(cx, |socket| recv(socket, buf))
    }

    /// Sends `buf` as one datagram to `target` (as the socket keeps a
    /// destination), or `Pending` with the task to be woken when the
    /// socket's buffer has room: the family's `poll_send_to` below.
    #[inline(always)]
    fn poll_send_to_target(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: &S::Target,
    ) -> Poll<io::Result<usize>> {
        self.poll_tx(
            cx,
            || target_key(target),
            |socket| after_send(socket, send_to(socket, buf, target), true),
        )
    }

    /// Sends `buf` as one datagram to the connected peer; as
    /// [`poll_send_to`](Self::poll_send_to) otherwise.
    #[inline(always)]
    pub fn poll_send(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // The connected peer: key 0.
        self.poll_tx(
            cx,
            || 0,
            |socket| after_send(socket, send(socket, buf), false),
        )
    }

    /// Receives as many datagrams as are queued, up to the batch's
    /// capacity, into `batch` (one `recvmmsg` on Linux): how many, or
    /// `Pending` with the task to be woken when one arrives. See
    /// [`UdpSocket::recv_many`](crate::UdpSocket::recv_many).
    #[inline]
    pub fn poll_recv_many(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut RecvBatch<S>,
    ) -> Poll<io::Result<usize>> {
        self.poll_rx(cx, |socket| try_recv_many(socket, batch))
    }

    /// Sends the datagrams queued in `batch` (`sendmmsg` on Linux) until
    /// it is empty, or `Pending` with the task to be woken when the
    /// socket's buffer has room; what went is gone from the batch. On an
    /// error, the datagram it belongs to is the batch's first. A batch
    /// that takes several calls may also return `Pending` with part of it
    /// sent, when it spent the task's budget, with the task woken at once:
    /// call again with the same batch. See
    /// [`UdpSocket::send_many`](crate::UdpSocket::send_many).
    #[inline]
    pub fn poll_send_many(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut SendBatch<S>,
    ) -> Poll<io::Result<()>> {
        // The destination of the batch's next datagram is the key (only
        // where a wait is a peer's: `poll_tx`): a batch refilled for
        // another peer after a given-up send (`clear`, `skip_next`) is
        // another destination, and tries at once. Taken as the call
        // begins: if a part goes before the send parks, the next call's
        // key differs, which costs one attempt, never a wait.
        let key = if S::ROOM_MAY_GO_UNANNOUNCED {
            batch.next_target_key()
        } else {
            0
        };
        let waker = cx.waker();
        let polled = self.poll_tx(
            cx,
            move || key,
            |socket| {
                let sent = send_queued(socket, batch, Some(waker)).map(|()| 0);
                // What failed, if anything, is the batch's next datagram.
                after_send(socket, sent, batch.next_has_address())
            },
        );
        match polled {
            // Datagrams still queued after a success: the attempt stopped
            // for the budget, the task is woken, and the next call sends
            // on (see `send_queued`).
            Poll::Ready(Ok(_)) if !batch.is_empty() => Poll::Pending,
            polled => polled.map_ok(drop),
        }
    }

    /// One receive through the held receive cell. A datagram never proves
    /// the socket drained, so there is no early park.
    #[inline(always)]
    fn poll_rx<R>(
        &mut self,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut(&S) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let socket = &self.socket;
        let registration = socket.registration();
        self.rx.poll(
            registration.rx(),
            registration.rx_completions(),
            cx.waker(),
            || registration.is_bound_here(),
            || attempt(socket).map(|got| (got, false)),
        )
    }

    /// One send through the held send cell; a full buffer arms write
    /// interest before the send parks. A send to a full peer that no event
    /// will announce room in tries again after a delay, the cell still
    /// held (see `backoff`). On such a socket, a send parked for one
    /// destination (then given up) does not hold back a send to another:
    /// that one attempts at once (`parked_for`).
    #[inline(always)]
    fn poll_tx(
        &mut self,
        cx: &Context<'_>,
        target: impl Fn() -> u64,
        mut attempt: impl FnMut(&S) -> Attempt<usize>,
    ) -> Poll<io::Result<usize>> {
        let socket = &self.socket;
        let registration = socket.registration();
        if !S::ROOM_MAY_GO_UNANNOUNCED {
            return self.tx.poll(
                registration.tx(),
                registration.tx_completions(),
                cx.waker(),
                || registration.is_bound_here(),
                || attempt(socket),
            );
        }
        loop {
            if self
                .backoff
                .poll_for(Some(cx.waker()), &target)
                .is_pending()
            {
                return Poll::Pending;
            }
            let polled = match self.parked_for {
                Some(key) if key != target() => self.tx.poll_attempting(
                    registration.tx(),
                    registration.tx_completions(),
                    cx.waker(),
                    || registration.is_bound_here(),
                    || attempt(socket),
                ),
                _ => self.tx.poll(
                    registration.tx(),
                    registration.tx_completions(),
                    cx.waker(),
                    || registration.is_bound_here(),
                    || attempt(socket),
                ),
            };
            match polled {
                Poll::Ready(Err(e)) if is_no_room_event(&e) => {
                    self.parked_for = None;
                    self.backoff.wait_for(target());
                }
                Poll::Ready(Ok(n)) => {
                    self.parked_for = None;
                    self.backoff.reset();
                    return Poll::Ready(Ok(n));
                }
                Poll::Ready(Err(e)) => {
                    self.parked_for = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    self.parked_for = Some(target());
                    return Poll::Pending;
                }
            }
        }
    }

    /// [`poll_recv_from`](Self::poll_recv_from) as a future.
    pub fn recv_from<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, S::Addr)>> + 'a {
        IoOp::new(self, move |io, cx| io.poll_recv_from(cx, buf))
    }

    /// [`poll_recv`](Self::poll_recv) as a future.
    pub fn recv<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        IoOp::new(self, move |io, cx| io.poll_recv(cx, buf))
    }

    /// [`poll_send`](Self::poll_send) as a future.
    pub fn send<'a>(&'a mut self, buf: &'a [u8]) -> impl Future<Output = io::Result<usize>> + 'a {
        IoOp::new(self, move |io, cx| io.poll_send(cx, buf))
    }

    /// [`poll_recv_many`](Self::poll_recv_many) as a future.
    pub fn recv_many<'a>(
        &'a mut self,
        batch: &'a mut RecvBatch<S>,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        IoOp::new(self, move |io, cx| io.poll_recv_many(cx, batch))
    }

    /// [`poll_send_many`](Self::poll_send_many) as a future: how many
    /// datagrams were sent (all that were queued).
    pub fn send_many<'a>(
        &'a mut self,
        batch: &'a mut SendBatch<S>,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        let queued = batch.len();
        IoOp::new(self, move |io, cx| {
            io.poll_send_many(cx, batch).map_ok(|()| queued)
        })
    }

    /// The socket (for its addresses, options, statistics, `connect`).
    pub fn get_ref(&self) -> &S {
        &self.socket
    }

    /// Releases both cells and returns the socket, whose futures can then
    /// use them again. A parked receive is abandoned; no datagram is lost
    /// (it stays queued in the kernel).
    pub fn into_inner(mut self) -> S {
        let registration = self.socket.registration();
        self.rx.release(registration.rx());
        self.tx.release(registration.tx());
        let DatagramIo { socket, .. } = self;
        socket
    }
}

impl DatagramIo<UdpSocket> {
    /// Sends `buf` as one datagram to `target`, or `Pending` with the task
    /// to be woken when the socket's buffer has room.
    #[inline(always)]
    pub fn poll_send_to(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.poll_send_to_target(cx, buf, &target)
    }

    /// [`poll_send_to`](Self::poll_send_to) as a future.
    pub fn send_to<'a>(
        &'a mut self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        IoOp::new(self, move |io, cx| io.poll_send_to(cx, buf, target))
    }
}

impl DatagramIo<UnixDatagram> {
    /// Sends `buf` as one datagram to the socket bound at `path`, or
    /// `Pending` with the task to be woken when there is room (a Unix
    /// datagram is never dropped: a full peer makes the send wait). A path
    /// that cannot be a socket address (too long, or with a NUL byte) fails
    /// with `InvalidInput`.
    pub fn poll_send_to(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        path: &Path,
    ) -> Poll<io::Result<usize>> {
        self.poll_send_to_target(cx, buf, &crate::unix::path_target(path))
    }

    /// [`poll_send_to`](Self::poll_send_to) as a future; the path is made
    /// a socket address once.
    pub fn send_to<'a, P: AsRef<Path>>(
        &'a mut self,
        buf: &'a [u8],
        path: P,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        let target = crate::unix::path_target(path.as_ref());
        IoOp::new(self, move |io, cx| io.poll_send_to_target(cx, buf, &target))
    }
}

impl<S: DatagramSocket> From<S> for DatagramIo<S> {
    fn from(socket: S) -> Self {
        Self::new(socket)
    }
}

impl<S: DatagramSocket> fmt::Debug for DatagramIo<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramIo")
            .field("socket", &self.socket)
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .finish()
    }
}

/// The future of every operation above: one of `UdpIo`'s poll methods,
/// called on each poll. A plain struct whose poll is always inlined into
/// the awaiting task (see `TcpIo`'s futures).
struct IoOp<'a, S: DatagramSocket, F> {
    io: &'a mut DatagramIo<S>,
    poll: F,
}

impl<'a, S: DatagramSocket, F, R> IoOp<'a, S, F>
where
    F: FnMut(&mut DatagramIo<S>, &mut Context<'_>) -> Poll<R>,
{
    fn new(io: &'a mut DatagramIo<S>, poll: F) -> Self {
        Self { io, poll }
    }
}

impl<S: DatagramSocket, F, R> Future for IoOp<'_, S, F>
where
    F: FnMut(&mut DatagramIo<S>, &mut Context<'_>) -> Poll<R> + Unpin,
{
    type Output = R;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let this = self.get_mut();
        (this.poll)(this.io, cx)
    }
}
