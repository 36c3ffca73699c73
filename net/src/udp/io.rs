//! [`UdpIo`]: a [`UdpSocket`] that one task drives alone, keeping its cells
//! reserved between operations (as [`TcpIo`](crate::TcpIo) does for a
//! stream; `crate::held` explains the protocol).

use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::datagram::sealed::Sealed;
use crate::datagram::{after_send, recv, recv_from, send, send_to};
use crate::held::HeldCell;
use crate::udp::UdpSocket;

/// A [`UdpSocket`] used through `&mut self`: poll methods and futures that
/// keep each direction's cell reserved from one operation to the next,
/// instead of reserving and releasing it per datagram as the socket's own
/// futures do.
///
/// It stays on the thread that made it (it is neither `Send` nor `Sync`):
/// spawn its task with `spawn_local`, or build it on another worker with
/// `spawn_local_on`. In return, on the worker whose reactor owns the
/// socket (it was bound there, or registered with
/// [`from_std`](UdpSocket::from_std) there), its cells are *confined* to
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
pub struct UdpIo {
    socket: UdpSocket,
    rx: HeldCell,
    tx: HeldCell,
    /// Neither `Send` nor `Sync`: confined reservations must not leave this
    /// thread.
    _confined: PhantomData<*const ()>,
}

impl UdpIo {
    /// Wraps `socket`. Nothing is reserved until the first operation in
    /// each direction.
    pub fn new(socket: UdpSocket) -> Self {
        Self {
            socket,
            rx: HeldCell::default(),
            tx: HeldCell::default(),
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
    /// `ErrorKind::InvalidData`, as [`UdpSocket::recv_from`] does.
    #[inline(always)]
    pub fn poll_recv_from(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        self.poll_rx(cx, |socket| recv_from(socket, buf))
    }

    /// Receives one datagram from the connected peer; as
    /// [`poll_recv_from`](Self::poll_recv_from) otherwise.
    #[inline(always)]
    pub fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.poll_rx(cx, |socket| recv(socket, buf))
    }

    /// Sends `buf` as one datagram to `target`, or `Pending` with the task
    /// to be woken when the socket's buffer has room.
    #[inline(always)]
    pub fn poll_send_to(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.poll_tx(cx, |socket| send_to(socket, buf, &target))
    }

    /// Sends `buf` as one datagram to the connected peer; as
    /// [`poll_send_to`](Self::poll_send_to) otherwise.
    #[inline(always)]
    pub fn poll_send(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_tx(cx, |socket| send(socket, buf))
    }

    /// One receive through the held receive cell. A datagram never proves
    /// the socket drained, so there is no early park.
    #[inline(always)]
    fn poll_rx<R>(
        &mut self,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut(&UdpSocket) -> io::Result<R>,
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
    /// interest before the send parks.
    #[inline(always)]
    fn poll_tx(
        &mut self,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut(&UdpSocket) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let socket = &self.socket;
        let registration = socket.registration();
        self.tx.poll(
            registration.tx(),
            registration.tx_completions(),
            cx.waker(),
            || registration.is_bound_here(),
            || after_send(socket, attempt(socket)),
        )
    }

    /// [`poll_recv_from`](Self::poll_recv_from) as a future.
    pub fn recv_from<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + 'a {
        IoOp::new(self, move |io, cx| io.poll_recv_from(cx, buf))
    }

    /// [`poll_recv`](Self::poll_recv) as a future.
    pub fn recv<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        IoOp::new(self, move |io, cx| io.poll_recv(cx, buf))
    }

    /// [`poll_send_to`](Self::poll_send_to) as a future.
    pub fn send_to<'a>(
        &'a mut self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        IoOp::new(self, move |io, cx| io.poll_send_to(cx, buf, target))
    }

    /// [`poll_send`](Self::poll_send) as a future.
    pub fn send<'a>(&'a mut self, buf: &'a [u8]) -> impl Future<Output = io::Result<usize>> + 'a {
        IoOp::new(self, move |io, cx| io.poll_send(cx, buf))
    }

    /// The socket (for its addresses, options, statistics, `connect`).
    pub fn get_ref(&self) -> &UdpSocket {
        &self.socket
    }

    /// Releases both cells and returns the socket, whose futures can then
    /// use them again. A parked receive is abandoned; no datagram is lost
    /// (it stays queued in the kernel).
    pub fn into_inner(mut self) -> UdpSocket {
        let registration = self.socket.registration();
        self.rx.release(registration.rx());
        self.tx.release(registration.tx());
        let UdpIo { socket, .. } = self;
        socket
    }
}

impl From<UdpSocket> for UdpIo {
    fn from(socket: UdpSocket) -> Self {
        Self::new(socket)
    }
}

impl fmt::Debug for UdpIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpIo")
            .field("socket", &self.socket)
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .finish()
    }
}

/// The future of every operation above: one of `UdpIo`'s poll methods,
/// called on each poll. A plain struct whose poll is always inlined into
/// the awaiting task (see `TcpIo`'s futures).
struct IoOp<'a, F> {
    io: &'a mut UdpIo,
    poll: F,
}

impl<'a, F, R> IoOp<'a, F>
where
    F: FnMut(&mut UdpIo, &mut Context<'_>) -> Poll<R>,
{
    fn new(io: &'a mut UdpIo, poll: F) -> Self {
        Self { io, poll }
    }
}

impl<F, R> Future for IoOp<'_, F>
where
    F: FnMut(&mut UdpIo, &mut Context<'_>) -> Poll<R> + Unpin,
{
    type Output = R;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let this = self.get_mut();
        (this.poll)(this.io, cx)
    }
}
