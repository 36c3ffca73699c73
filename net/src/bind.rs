//! Creating a socket and binding it with the options set first, and trying
//! each address a name resolves to: shared by
//! [`TcpListener::bind_with`](crate::TcpListener::bind_with) and
//! [`UdpSocket::bind_with`](crate::UdpSocket::bind_with) (and `bind`,
//! `connect`).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

/// A non-blocking socket of `kind` bound to `addr`, with `SO_REUSEADDR`
/// and `SO_REUSEPORT` (on FreeBSD also `SO_REUSEPORT_LB`) set first where
/// asked.
pub(crate) fn bound_socket(
    addr: SocketAddr,
    kind: Type,
    protocol: Protocol,
    reuse_address: bool,
    reuse_port: bool,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    socket.set_nonblocking(true)?;
    if reuse_address {
        socket.set_reuse_address(true)?;
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
        // FreeBSD spreads connections among the sockets of a port only
        // with its load-balancing variant (macOS has none).
        #[cfg(target_os = "freebsd")]
        socket.set_reuse_port_lb(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Runs `f` on each address of `addr` until one succeeds; the last error
/// if none does.
pub(crate) fn each_address<A: ToSocketAddrs, T>(
    addr: A,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        match f(addr) {
            Ok(value) => return Ok(value),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}
