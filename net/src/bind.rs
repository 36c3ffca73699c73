//! Creating a socket and binding it with the options set first: shared by
//! [`TcpListener::bind_with`](crate::TcpListener::bind_with) and
//! [`UdpSocket::bind_with`](crate::UdpSocket::bind_with).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// A non-blocking socket of `kind` bound to `addr`, with `SO_REUSEADDR`
/// and `SO_REUSEPORT` set first where asked.
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
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}
