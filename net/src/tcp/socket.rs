//! [`TcpSocket`]: a TCP socket set up before it connects or listens
//! (tokio's `TcpSocket`): a local address to send from, buffer sizes that
//! must be in place before the handshake, `SO_REUSEPORT` on a client.
//!
//! # Invariants
//!
//! * The socket is non-blocking from creation, so `connect` never blocks
//!   the worker: `EINPROGRESS` is the expected answer, and the stream it
//!   becomes waits for the handshake on its send cell, as
//!   [`TcpStream::connect`] does.
//! * Creating and configuring it needs no runtime; `connect` and `listen`
//!   register with the current worker's reactor.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::tcp::{TcpListener, TcpStream};

/// A TCP socket not yet connected or listening, for the options that must
/// be set before: tokio's `TcpSocket`.
///
/// # Examples
///
/// A client that sends from a chosen local address, with a receive buffer
/// in place before the handshake (so the window scale fits it):
///
/// ```
/// use cellio_net::{TcpListener, TcpSocket};
///
/// # cellio_runtime::Runtime::new()?.block_on(async {
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let socket = TcpSocket::new_v4()?;
/// socket.set_recv_buffer_size(1 << 20)?;
/// socket.bind("127.0.0.1:0".parse().unwrap())?;
/// let from = socket.local_addr()?;
/// let stream = socket.connect(listener.local_addr()?).await?;
/// let (_, peer) = listener.accept().await?;
/// assert_eq!(peer, from);
/// assert_eq!(stream.local_addr()?, from);
/// # Ok::<(), std::io::Error>(())
/// # })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TcpSocket {
    socket: Socket,
    /// The family it was made for (kept: only Linux can ask the kernel).
    domain: Domain,
}

impl TcpSocket {
    /// A new IPv4 TCP socket (non-blocking, close-on-exec).
    pub fn new_v4() -> io::Result<TcpSocket> {
        Self::new(Domain::IPV4)
    }

    /// A new IPv6 TCP socket (non-blocking, close-on-exec).
    pub fn new_v6() -> io::Result<TcpSocket> {
        Self::new(Domain::IPV6)
    }

    /// A new socket of `addr`'s family: [`new_v4`](Self::new_v4) or
    /// [`new_v6`](Self::new_v6).
    pub fn new_for(addr: SocketAddr) -> io::Result<TcpSocket> {
        Self::new(Domain::for_address(addr))
    }

    fn new(domain: Domain) -> io::Result<TcpSocket> {
        let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        Ok(TcpSocket { socket, domain })
    }

    /// `SO_REUSEADDR`: bind while old connections on the address linger in
    /// `TIME_WAIT`.
    pub fn set_reuseaddr(&self, reuse: bool) -> io::Result<()> {
        self.socket.set_reuse_address(reuse)
    }

    /// `SO_REUSEADDR`'s value.
    pub fn reuseaddr(&self) -> io::Result<bool> {
        self.socket.reuse_address()
    }

    /// `SO_REUSEPORT`: let several sockets bind the same address and port.
    pub fn set_reuseport(&self, reuse: bool) -> io::Result<()> {
        self.socket.set_reuse_port(reuse)
    }

    /// `SO_REUSEPORT`'s value.
    pub fn reuseport(&self) -> io::Result<bool> {
        self.socket.reuse_port()
    }

    /// `SO_RCVBUF`, in bytes (the kernel doubles it and caps it at
    /// `net.core.rmem_max`; a size beyond `i32::MAX`, the option being a C
    /// `int`, counts as `i32::MAX`). Set before `connect` or `listen`, it
    /// also decides the window scale offered in the handshake.
    pub fn set_recv_buffer_size(&self, bytes: u32) -> io::Result<()> {
        self.socket
            .set_recv_buffer_size(crate::sys::buffer_size_option(bytes as usize))
    }

    /// `SO_RCVBUF`'s value, as the kernel reports it.
    pub fn recv_buffer_size(&self) -> io::Result<u32> {
        self.socket.recv_buffer_size().map(saturate)
    }

    /// `SO_SNDBUF`, in bytes (the kernel doubles it and caps it at
    /// `net.core.wmem_max`; a size beyond `i32::MAX` counts as
    /// `i32::MAX`).
    pub fn set_send_buffer_size(&self, bytes: u32) -> io::Result<()> {
        self.socket
            .set_send_buffer_size(crate::sys::buffer_size_option(bytes as usize))
    }

    /// `SO_SNDBUF`'s value, as the kernel reports it.
    pub fn send_buffer_size(&self) -> io::Result<u32> {
        self.socket.send_buffer_size().map(saturate)
    }

    /// `TCP_NODELAY`: send small segments at once instead of waiting to
    /// gather them (Nagle's algorithm off).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.socket.set_tcp_nodelay(nodelay)
    }

    /// `TCP_NODELAY`'s value.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.socket.tcp_nodelay()
    }

    /// `SO_KEEPALIVE`: probe an idle connection so that a peer that
    /// vanished is noticed (after the kernel's `tcp_keepalive_time`).
    pub fn set_keepalive(&self, keepalive: bool) -> io::Result<()> {
        self.socket.set_keepalive(keepalive)
    }

    /// `SO_KEEPALIVE`'s value.
    pub fn keepalive(&self) -> io::Result<bool> {
        self.socket.keepalive()
    }

    /// `SO_LINGER`: `Some(Duration::ZERO)` makes closing reset the
    /// connection instead of ending it in order.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.socket.set_linger(linger)
    }

    /// `SO_LINGER`'s value.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        self.socket.linger()
    }

    /// Binds the socket to `addr`: the local address a connection is made
    /// from, or the address to listen on. Port 0 takes a free port.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if another socket holds it (without `SO_REUSEADDR` or
    /// `SO_REUSEPORT` on both), `InvalidInput` if `addr` is of the other
    /// address family than the socket.
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        self.check_family(addr, "bind")?;
        self.socket.bind(&addr.into())
    }

    /// The local address, once bound (or once connecting chose one).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket address"))
    }

    /// Connects to `addr`, registering the socket with the current
    /// worker's reactor, and waits for the handshake as
    /// [`TcpStream::connect`] does.
    ///
    /// # Errors
    ///
    /// `ConnectionRefused` when nothing listens there, `InvalidInput` for
    /// an address of the other family, and an error outside a cellio
    /// runtime.
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        self.check_family(addr, "connect")?;
        match self.socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let std: std::net::TcpStream = self.socket.into();
        TcpStream::connecting(mio::net::TcpStream::from_std(std)).await
    }

    /// Starts listening, with a queue of `backlog` connections (capped by
    /// `net.core.somaxconn`), and registers the listener with the current
    /// worker's reactor. Bind first ([`bind`](Self::bind)); an unbound
    /// socket listens on a port the kernel picks.
    pub fn listen(self, backlog: u32) -> io::Result<TcpListener> {
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        self.socket.listen(backlog)?;
        TcpListener::from_std(self.socket.into())
    }

    /// An address of the other family is refused here with a message,
    /// rather than by the kernel with `EAFNOSUPPORT` or `EINVAL`.
    fn check_family(&self, addr: SocketAddr, what: &str) -> io::Result<()> {
        let ours = self.domain;
        if ours == Domain::for_address(addr) {
            return Ok(());
        }
        let (have, asked) = if ours == Domain::IPV6 {
            ("an IPv6", "an IPv4")
        } else {
            ("an IPv4", "an IPv6")
        };
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot {what} {have} socket to {asked} address ({addr})"),
        ))
    }
}

/// A size the kernel reports as `usize`, as `u32` (they never exceed it).
fn saturate(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

impl AsRawFd for TcpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for TcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl fmt::Debug for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpSocket")
            .field("fd", &self.as_raw_fd())
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}
