//! The futures of [`UdpSocket`]'s receives and sends, and the syscall
//! attempts they (and the `try_` methods) make.
//!
//! Each future is a plain struct holding borrows and an [`OpState`] (two
//! words), as the TCP ones are: creating one does nothing, polling it runs
//! the cell protocol of `crate::op`, dropping it mid-flight releases its
//! cell. No attempt ever reports the socket drained (see the
//! [module docs](crate::udp)).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use socket2::SockAddr;

use crate::op::{Attempt, OpState, Side};
use crate::sys;
use crate::udp::UdpSocket;

/// One datagram from the connected peer (or, unconnected, from anyone).
#[inline]
pub(crate) fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<usize> {
    match sys::recv_datagram(socket.as_raw_fd(), buf)? {
        (n, false) => Ok(n),
        (_, true) => Err(truncated(buf.len())),
    }
}

/// One datagram and its sender.
#[inline]
pub(crate) fn recv_from(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    let (n, cut, from) = sys::recv_datagram_from(socket.as_raw_fd(), buf)?;
    if cut {
        return Err(truncated(buf.len()));
    }
    let from = from.as_socket().ok_or_else(|| {
        io::Error::other("a datagram from a sender that is not an IP socket address")
    })?;
    Ok((n, from))
}

/// One datagram to `target`.
#[inline]
pub(crate) fn send_to(socket: &UdpSocket, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
    sys::send_to(socket.as_raw_fd(), buf, &SockAddr::from(target))
}

/// One datagram to the connected peer.
#[inline]
pub(crate) fn send(socket: &UdpSocket, buf: &[u8]) -> io::Result<usize> {
    not_connected_if_no_peer(sys::send(socket.as_raw_fd(), buf))
}

/// A datagram that did not fit: the kernel discarded its tail.
#[cold]
fn truncated(len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "a datagram longer than the {len}-byte receive buffer arrived: its first {len} bytes \
             are in the buffer, the rest was discarded (a buffer of cellio_net::udp::MAX_DATAGRAM \
             bytes holds any datagram)"
        ),
    )
}

/// A send with no destination on a socket never connected: the kernel's
/// `EDESTADDRREQ`, which `std` leaves uncategorised, as `NotConnected`.
fn not_connected_if_no_peer(result: io::Result<usize>) -> io::Result<usize> {
    match result {
        Err(e) if e.raw_os_error() == Some(libc::EDESTADDRREQ) => Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "send on a UDP socket with no peer: connect it first, or use send_to",
        )),
        other => other,
    }
}

/// A send that found the buffer full arms write interest before it
/// parks, as a TCP send does (`TcpStream::arm_writable`).
pub(crate) fn after_send(socket: &UdpSocket, result: io::Result<usize>) -> Attempt<usize> {
    match result {
        Ok(n) => Ok((n, false)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            socket.arm_writable()?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Generates the `try_complete`/`is_terminated` pair every future here has.
macro_rules! fast_path {
    ($output:ty) => {
        /// Attempts the operation now, without waiting: `Some(result)` if
        /// it completed on this first attempt, `None` if it would have to
        /// wait (then `.await` the future). After `Some`, the future is
        /// finished. See [`crate::tcp::Recv::try_complete`].
        pub fn try_complete(&mut self) -> Option<io::Result<$output>> {
            match self.poll_with(None) {
                Poll::Ready(result) => Some(result),
                Poll::Pending => None,
            }
        }

        /// `true` once the future has delivered its result.
        pub fn is_terminated(&self) -> bool {
            self.op.is_done()
        }
    };
}

/// Future of [`UdpSocket::recv_from`]: one datagram and its sender.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct RecvFrom<'a> {
    socket: &'a UdpSocket,
    buf: &'a mut [u8],
    op: OpState,
}

impl<'a> RecvFrom<'a> {
    pub(crate) fn new(socket: &'a UdpSocket, buf: &'a mut [u8]) -> Self {
        Self {
            socket,
            buf,
            op: OpState::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<(usize, SocketAddr)>> {
        let (socket, buf) = (self.socket, &mut *self.buf);
        self.op.poll(Side::rx(socket.registration()), waker, || {
            recv_from(socket, buf).map(|got| (got, false))
        })
    }

    fast_path!((usize, SocketAddr));
}

/// Future of [`UdpSocket::recv`]: one datagram's length.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Recv<'a> {
    socket: &'a UdpSocket,
    buf: &'a mut [u8],
    op: OpState,
}

impl<'a> Recv<'a> {
    pub(crate) fn new(socket: &'a UdpSocket, buf: &'a mut [u8]) -> Self {
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

/// Future of [`UdpSocket::send_to`]: the datagram's length, once sent.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct SendTo<'a> {
    socket: &'a UdpSocket,
    buf: &'a [u8],
    target: SocketAddr,
    op: OpState,
}

impl<'a> SendTo<'a> {
    pub(crate) fn new(socket: &'a UdpSocket, buf: &'a [u8], target: SocketAddr) -> Self {
        Self {
            socket,
            buf,
            target,
            op: OpState::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<usize>> {
        let (socket, buf, target) = (self.socket, self.buf, self.target);
        self.op.poll(Side::tx(socket.registration()), waker, || {
            after_send(socket, send_to(socket, buf, target))
        })
    }

    fast_path!(usize);
}

/// Future of [`UdpSocket::send`]: the datagram's length, once sent.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Send<'a> {
    socket: &'a UdpSocket,
    buf: &'a [u8],
    op: OpState,
}

impl<'a> Send<'a> {
    pub(crate) fn new(socket: &'a UdpSocket, buf: &'a [u8]) -> Self {
        Self {
            socket,
            buf,
            op: OpState::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<usize>> {
        let (socket, buf) = (self.socket, self.buf);
        self.op.poll(Side::tx(socket.registration()), waker, || {
            after_send(socket, send(socket, buf))
        })
    }

    fast_path!(usize);
}

/// The `Future` and `Drop` of each future: poll with the task's waker,
/// release the cell when dropped unfinished.
macro_rules! future_and_drop {
    ($name:ident, $output:ty, $side:ident) => {
        impl Future for $name<'_> {
            type Output = io::Result<$output>;

            #[inline]
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                self.get_mut().poll_with(Some(cx.waker()))
            }
        }

        impl Drop for $name<'_> {
            fn drop(&mut self) {
                self.op.cancel(|| self.socket.registration().$side());
            }
        }
    };
}

future_and_drop!(RecvFrom, (usize, SocketAddr), rx);
future_and_drop!(Recv, usize, rx);
future_and_drop!(SendTo, usize, tx);
future_and_drop!(Send, usize, tx);
