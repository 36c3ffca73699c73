//! `TcpSocket`: options set before the handshake are in place on the
//! stream, a client connects from the address it bound, two listeners
//! share a port with `SO_REUSEPORT`, and bad input (the wrong address
//! family, an address in use, nothing listening, no runtime) is a clear
//! error.

mod util;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use cellio_net::{TcpListener, TcpSocket};
use util::run;

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn options_set_before_connecting_are_on_the_stream() {
    run(|| async {
        let listener = TcpListener::bind(any_port())?;
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(256 * 1024)?;
        socket.set_send_buffer_size(128 * 1024)?;
        socket.set_nodelay(true)?;
        socket.set_keepalive(true)?;
        socket.set_linger(Some(Duration::from_secs(3)))?;
        assert!(socket.nodelay()? && socket.keepalive()?);
        assert_eq!(socket.linger()?, Some(Duration::from_secs(3)));
        let asked = socket.recv_buffer_size()?;
        assert!(asked >= 256 * 1024, "the kernel doubles it: {asked}");
        let stream = socket.connect(listener.local_addr()?).await?;
        let (server, _) = listener.accept().await?;
        assert!(stream.nodelay()?);
        assert_eq!(stream.linger()?, Some(Duration::from_secs(3)));
        assert!(stream.recv_buffer_size()? >= 256 * 1024);
        assert!(stream.send_buffer_size()? >= 128 * 1024);
        // And it is an ordinary stream.
        stream.send_all(b"ping").await?;
        let mut buf = [0u8; 4];
        server.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_client_connects_from_the_address_it_bound() {
    run(|| async {
        let listener = TcpListener::bind(any_port())?;
        let socket = TcpSocket::new_for(any_port())?;
        socket.set_reuseaddr(true)?;
        assert!(socket.reuseaddr()?);
        socket.bind(any_port())?;
        let from = socket.local_addr()?;
        assert_ne!(from.port(), 0);
        let stream = socket.connect(listener.local_addr()?).await?;
        let (_, peer) = listener.accept().await?;
        assert_eq!(peer, from);
        assert_eq!(stream.local_addr()?, from);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn two_listeners_share_a_port_with_reuseport() {
    run(|| async {
        let first = TcpSocket::new_v4()?;
        first.set_reuseport(true)?;
        first.bind(any_port())?;
        let addr = first.local_addr()?;
        let first = first.listen(128)?;
        let second = TcpSocket::new_v4()?;
        second.set_reuseport(true)?;
        assert!(second.reuseport()?);
        second.bind(addr)?;
        let second = second.listen(128)?;
        assert_eq!(second.local_addr()?, first.local_addr()?);
        // Without it, the port is taken.
        let third = TcpSocket::new_v4()?;
        let error = third.bind(addr).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn bad_input_is_a_clear_error() {
    run(|| async {
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        let error = TcpSocket::new_v4()?.bind(v6).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(
            error.to_string().contains("IPv4 socket to an IPv6"),
            "{error}"
        );
        let error = TcpSocket::new_v4()?.connect(v6).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);

        // Nothing listens on a port just freed.
        let port = std::net::TcpListener::bind(any_port())?.local_addr()?;
        let error = TcpSocket::new_v4()?.connect(port).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        io::Result::Ok(())
    })
    .unwrap();
    // Set-up needs no runtime; connecting does, and says so.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(any_port()).unwrap();
    let error = socket.listen(16).unwrap_err();
    assert!(error.to_string().contains("no cellio reactor"), "{error}");
}
