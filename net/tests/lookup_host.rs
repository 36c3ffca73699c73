//! `lookup_host` and `TcpStream::connect`'s addresses: host names resolve
//! (on a thread of their own), addresses given as such are used as they
//! are, and a name that cannot resolve is an error, not a panic.

mod util;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use cellio_net::{lookup_host, TcpListener, TcpStream};
use util::run;

#[test]
fn localhost_resolves_to_loopback_addresses_with_the_port() {
    run(|| async {
        for found in [
            lookup_host("localhost:7000").await?.collect::<Vec<_>>(),
            lookup_host(("localhost", 7000)).await?.collect(),
            lookup_host(("localhost".to_string(), 7000))
                .await?
                .collect(),
        ] {
            assert!(!found.is_empty());
            assert!(
                found
                    .iter()
                    .all(|a| a.ip().is_loopback() && a.port() == 7000),
                "{found:?}"
            );
        }
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn addresses_given_as_such_come_back_as_they_are() {
    run(|| async {
        let v4 = SocketAddr::from(([127, 0, 0, 1], 80));
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        assert_eq!(lookup_host("127.0.0.1:80").await?.collect::<Vec<_>>(), [v4]);
        assert_eq!(lookup_host("[::1]:443").await?.collect::<Vec<_>>(), [v6]);
        assert_eq!(lookup_host(("::1", 443)).await?.collect::<Vec<_>>(), [v6]);
        assert_eq!(
            lookup_host((IpAddr::V4(Ipv4Addr::LOCALHOST), 80))
                .await?
                .collect::<Vec<_>>(),
            [v4]
        );
        assert_eq!(lookup_host(v4).await?.collect::<Vec<_>>(), [v4]);
        let both = [v4, v6];
        assert_eq!(lookup_host(&both[..]).await?.collect::<Vec<_>>(), both);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn connect_resolves_a_host_name_and_tries_each_address() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let accepting = cellio_runtime::spawn(async move { listener.accept().await.map(|_| ()) });
        // "localhost" may list ::1 first, where nothing listens: the
        // connect goes on to 127.0.0.1.
        let stream = TcpStream::connect(("localhost", port)).await?;
        assert_eq!(stream.peer_addr()?.port(), port);
        accepting.await.unwrap()?;
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_name_without_a_port_is_an_error() {
    run(|| async {
        let error = TcpStream::connect("localhost").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        let error = lookup_host("not an address").await.err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        io::Result::Ok(())
    })
    .unwrap();
}
