//! The futures of a datagram socket's receives and sends ([`UdpSocket`]'s
//! and [`UnixDatagram`]'s), and the syscall attempts they (and the `try_`
//! methods, and `UdpIo`) make.
//!
//! Each future is a plain struct holding borrows and an [`OpState`] (two
//! words; a send's also a `Backoff`, see `backoff`), as the stream ones are: creating one does nothing, polling it
//! runs the cell protocol of `crate::op`, dropping it mid-flight releases
//! its cell. No attempt ever reports the socket drained (see the
//! [module docs](crate::datagram)).
//!
//! [`UdpSocket`]: crate::UdpSocket
//! [`UnixDatagram`]: crate::unix::UnixDatagram

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::datagram::backoff::{is_no_room_event, no_room_event, Backoff};
use crate::datagram::{or_end_of_reading, DatagramSocket};
use crate::op::{fast_path, future_and_drop, Attempt, OpState, Side};
use crate::sys;

/// One datagram from the connected peer (or, unconnected, from anyone).
#[inline(always)]
pub(crate) fn recv<S: DatagramSocket>(socket: &S, buf: &mut [u8]) -> io::Result<usize> {
    if socket.receives_merged() {
        return Err(merged_refused());
    }
    let got = sys::recv_datagram(socket.as_raw_fd(), buf);
    match or_end_of_reading(socket, got, || Ok((0, false)))? {
        (n, false) => Ok(n),
        (_, true) => Err(truncated::<S>(buf.len())),
    }
}

/// One datagram and its sender.
#[inline(always)]
pub(crate) fn recv_from<S: DatagramSocket>(
    socket: &S,
    buf: &mut [u8],
) -> io::Result<(usize, S::Addr)> {
    if socket.receives_merged() {
        return Err(merged_refused());
    }
    let (n, cut, from) = match sys::recv_datagram_from(socket.as_raw_fd(), buf) {
        Ok(got) => got,
        Err(e) => return or_end_of_reading(socket, Err(e), || Ok((0, S::no_sender()?))),
    };
    if cut {
        return Err(truncated::<S>(buf.len()));
    }
    Ok((n, S::sender(from)?))
}

/// A look at the next datagram and its sender; the datagram stays queued.
/// One longer than `buf` is an error, as for a receive, but nothing was
/// discarded: a receive with a larger buffer gets it whole.
#[inline]
pub(crate) fn peek_from<S: DatagramSocket>(
    socket: &S,
    buf: &mut [u8],
) -> io::Result<(usize, S::Addr)> {
    if socket.receives_merged() {
        return Err(merged_refused());
    }
    let (n, cut, from) = match sys::peek_datagram_from(socket.as_raw_fd(), buf) {
        Ok(got) => got,
        Err(e) => return or_end_of_reading(socket, Err(e), || Ok((0, S::no_sender()?))),
    };
    if cut {
        return Err(peeked_too_long::<S>(buf.len()));
    }
    Ok((n, S::sender(from)?))
}

/// The sender of the next datagram, which stays queued.
#[inline]
pub(crate) fn peek_sender<S: DatagramSocket>(socket: &S) -> io::Result<S::Addr> {
    match sys::peek_datagram_from(socket.as_raw_fd(), &mut []) {
        Ok((_, _, from)) => S::sender(from),
        Err(e) => or_end_of_reading(socket, Err(e), S::no_sender),
    }
}

/// A single receive on a socket whose datagrams the kernel may merge.
#[cold]
fn merged_refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "receive offload (UDP_GRO) is on: the kernel may merge datagrams, which only recv_many \
         splits; receive with recv_many",
    )
}

/// A peeked datagram that did not fit: still queued, whole.
#[cold]
fn peeked_too_long<S: DatagramSocket>(len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the next datagram is longer than the {len}-byte buffer: its first {len} bytes are \
             in the buffer, and it is still queued, whole ({})",
            S::FITS_ANY
        ),
    )
}

/// One datagram to `target`.
#[inline(always)]
pub(crate) fn send_to<S: DatagramSocket>(
    socket: &S,
    buf: &[u8],
    target: &S::Target,
) -> io::Result<usize> {
    socket.send_to_target(buf, target)
}

/// One datagram to the connected peer.
#[inline(always)]
pub(crate) fn send<S: DatagramSocket>(socket: &S, buf: &[u8]) -> io::Result<usize> {
    not_connected_if_no_peer(sys::send(socket.as_raw_fd(), buf))
}

/// A datagram that did not fit: the kernel discarded its tail.
#[cold]
pub(crate) fn truncated<S: DatagramSocket>(len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "a datagram longer than the {len}-byte receive buffer arrived: its first {len} bytes \
             are in the buffer, the rest was discarded ({})",
            S::FITS_ANY
        ),
    )
}

/// A send with no destination on a socket never connected: the kernel's
/// `EDESTADDRREQ` (or, for a Unix socket, `ENOTCONN`), which `std` leaves
/// uncategorised or bare, as `NotConnected` with what to do about it.
pub(crate) fn not_connected_if_no_peer(result: io::Result<usize>) -> io::Result<usize> {
    match result {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EDESTADDRREQ | libc::ENOTCONN)) => {
            Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "send on a datagram socket with no peer: connect it first, or use send_to",
            ))
        }
        other => other,
    }
}

/// A send that found the buffer full arms write interest before it
/// parks, as a stream's send does; one that waits for room no event will
/// announce ends with [`no_room_event`] instead, for its future to try
/// again after a delay (see `backoff`). `by_address`: the send named its
/// destination (`room_raises_no_event`).
pub(crate) fn after_send<S: DatagramSocket>(
    socket: &S,
    result: io::Result<usize>,
    by_address: bool,
) -> Attempt<usize> {
    match result {
        Ok(n) => Ok((n, false)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            if S::ROOM_MAY_GO_UNANNOUNCED && socket.room_raises_no_event(by_address) {
                return Err(no_room_event());
            }
            socket.arm_writable()?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Drives a send future's operation (`poll`), which ends with
/// [`no_room_event`] when its peer is full and no event will say when it
/// has room: the operation then starts afresh after the backoff's delay,
/// for which the task sleeps (see `backoff`). On a socket of type `S`
/// whose room is always announced (UDP), just `poll`.
#[inline(always)]
pub(crate) fn poll_backing_off<S: DatagramSocket, R>(
    op: &mut OpState,
    backoff: &mut Backoff,
    waker: Option<&Waker>,
    mut poll: impl FnMut(&mut OpState) -> Poll<io::Result<R>>,
) -> Poll<io::Result<R>> {
    if !S::ROOM_MAY_GO_UNANNOUNCED {
        return poll(op);
    }
    loop {
        if backoff.poll(waker).is_pending() {
            return Poll::Pending;
        }
        match poll(op) {
            Poll::Ready(Err(e)) if is_no_room_event(&e) => {
                // The operation failed, so it holds no reservation.
                *op = OpState::new();
                backoff.wait();
            }
            other => return other,
        }
    }
}

/// Future of [`UdpSocket::recv_from`](crate::UdpSocket::recv_from) (and
/// `UnixDatagram`'s): one datagram and its sender.
///
/// With `PEEK` (the [`PeekFrom`] future of
/// [`UdpSocket::peek_from`](crate::UdpSocket::peek_from)), the datagram is
/// copied but stays queued.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct RecvFrom<'a, S: DatagramSocket, const PEEK: bool = false> {
    socket: &'a S,
    buf: &'a mut [u8],
    op: OpState,
}

/// Future of [`UdpSocket::peek_from`](crate::UdpSocket::peek_from) (and
/// `UnixDatagram`'s): the next datagram and its sender, left queued.
pub type PeekFrom<'a, S> = RecvFrom<'a, S, true>;

impl<'a, S: DatagramSocket, const PEEK: bool> RecvFrom<'a, S, PEEK> {
    pub(crate) fn new(socket: &'a S, buf: &'a mut [u8]) -> Self {
        Self {
            socket,
            buf,
            op: OpState::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<(usize, S::Addr)>> {
        let (socket, buf) = (self.socket, &mut *self.buf);
        self.op.poll(Side::rx(socket.registration()), waker, || {
            let got = if PEEK {
                peek_from(socket, buf)
            } else {
                recv_from(socket, buf)
            };
            got.map(|got| (got, false))
        })
    }

    fast_path!((usize, S::Addr));
}

/// Future of [`UdpSocket::peek_sender`](crate::UdpSocket::peek_sender)
/// (and `UnixDatagram`'s): the next datagram's sender, the datagram left
/// queued.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct PeekSender<'a, S: DatagramSocket> {
    socket: &'a S,
    op: OpState,
}

impl<'a, S: DatagramSocket> PeekSender<'a, S> {
    pub(crate) fn new(socket: &'a S) -> Self {
        Self {
            socket,
            op: OpState::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<S::Addr>> {
        let socket = self.socket;
        self.op.poll(Side::rx(socket.registration()), waker, || {
            peek_sender(socket).map(|from| (from, false))
        })
    }

    fast_path!(S::Addr);
}

impl<S: DatagramSocket, const PEEK: bool> Future for RecvFrom<'_, S, PEEK> {
    type Output = io::Result<(usize, S::Addr)>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_with(Some(cx.waker()))
    }
}

impl<S: DatagramSocket, const PEEK: bool> Drop for RecvFrom<'_, S, PEEK> {
    fn drop(&mut self) {
        self.op.cancel(|| self.socket.registration().rx());
    }
}

/// Future of [`UdpSocket::recv`](crate::UdpSocket::recv) (and
/// `UnixDatagram`'s): one datagram's length.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Recv<'a, S: DatagramSocket> {
    socket: &'a S,
    buf: &'a mut [u8],
    op: OpState,
}

impl<'a, S: DatagramSocket> Recv<'a, S> {
    pub(crate) fn new(socket: &'a S, buf: &'a mut [u8]) -> Self {
        Self {
            socket,
            buf,
            op: OpState::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<usize>> {
        let (socket, buf) = (self.socket, &mut *self.buf);
        self.op.poll(Side::rx(socket.registration()), waker, || {
            recv(socket, buf).map(|n| (n, false))
        })
    }

    fast_path!(usize);
}

/// Future of [`UdpSocket::send_to`](crate::UdpSocket::send_to) (and
/// `UnixDatagram`'s): the datagram's length, once sent.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct SendTo<'a, S: DatagramSocket> {
    socket: &'a S,
    buf: &'a [u8],
    target: S::Target,
    op: OpState,
    backoff: Backoff,
}

impl<'a, S: DatagramSocket> SendTo<'a, S> {
    pub(crate) fn new(socket: &'a S, buf: &'a [u8], target: S::Target) -> Self {
        Self {
            socket,
            buf,
            target,
            op: OpState::new(),
            backoff: Backoff::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<usize>> {
        let (socket, buf, target) = (self.socket, self.buf, &self.target);
        poll_backing_off::<S, _>(&mut self.op, &mut self.backoff, waker, |op| {
            let side = Side::tx(socket.registration());
            let attempt = || after_send(socket, send_to(socket, buf, target), true);
            if S::ROOM_MAY_GO_UNANNOUNCED {
                // A Unix socket's full cell may be another peer's.
                op.poll_attempting(side, waker, attempt)
            } else {
                op.poll(side, waker, attempt)
            }
        })
    }

    fast_path!(usize);
}

/// Future of [`UdpSocket::send`](crate::UdpSocket::send) (and
/// `UnixDatagram`'s): the datagram's length, once sent.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Send<'a, S: DatagramSocket> {
    socket: &'a S,
    buf: &'a [u8],
    op: OpState,
    backoff: Backoff,
}

impl<'a, S: DatagramSocket> Send<'a, S> {
    pub(crate) fn new(socket: &'a S, buf: &'a [u8]) -> Self {
        Self {
            socket,
            buf,
            op: OpState::new(),
            backoff: Backoff::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<usize>> {
        let (socket, buf) = (self.socket, self.buf);
        poll_backing_off::<S, _>(&mut self.op, &mut self.backoff, waker, |op| {
            op.poll(Side::tx(socket.registration()), waker, || {
                after_send(socket, send(socket, buf), false)
            })
        })
    }

    fast_path!(usize);
}

future_and_drop!(PeekSender<S: DatagramSocket>, socket, S::Addr, rx);
future_and_drop!(Recv<S: DatagramSocket>, socket, usize, rx);
future_and_drop!(SendTo<S: DatagramSocket>, socket, usize, tx);
future_and_drop!(Send<S: DatagramSocket>, socket, usize, tx);
