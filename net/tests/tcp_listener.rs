//! `TcpListener`: binding, address errors, accept, options, use outside a
//! runtime and the cancel-safety of `accept`.

mod util;

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use cellio_net::{ListenOptions, TcpListener, TcpStream};
use util::{poll_once, run};

#[test]
fn bind_port_zero_gets_a_real_port() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_ne!(addr.port(), 0, "the kernel should pick a port");
        // And it really listens there.
        let client = std::net::TcpStream::connect(addr)?;
        let (_stream, peer) = listener.accept().await?;
        assert_eq!(peer, client.local_addr()?);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn bind_to_an_address_in_use_fails_with_addr_in_use() {
    run(|| async {
        let first = TcpListener::bind("127.0.0.1:0")?;
        let addr = first.local_addr()?;
        let err = TcpListener::bind(addr).expect_err("second bind must fail");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err:?}");

        // Also when the port is held by a plain std listener.
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let err = TcpListener::bind(std_listener.local_addr()?).expect_err("bind must fail");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err:?}");

        // The failed binds did not disturb the first listener.
        let client = std::net::TcpStream::connect(addr)?;
        let (_s, peer) = first.accept().await?;
        assert_eq!(peer, client.local_addr()?);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn accepted_stream_peer_addr_is_the_clients_local_addr() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let client = TcpStream::connect(addr).await?;
        let (server, peer) = listener.accept().await?;
        assert_eq!(peer, client.local_addr()?);
        assert_eq!(server.peer_addr()?, client.local_addr()?);
        assert_eq!(server.local_addr()?, addr);
        assert_eq!(client.peer_addr()?, addr);

        // Several clients are told apart.
        let clients: Vec<std::net::TcpStream> = (0..5)
            .map(|_| std::net::TcpStream::connect(addr))
            .collect::<io::Result<_>>()?;
        for c in &clients {
            let (s, peer) = listener.accept().await?;
            assert_eq!(peer, c.local_addr()?, "accept order follows connect order");
            assert_eq!(s.peer_addr()?, c.local_addr()?);
        }
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn listen_options_backlog_and_reuse_port_are_accepted() {
    run(|| async {
        let defaults = ListenOptions::default();
        assert_eq!(defaults.backlog, 1024);
        assert!(defaults.reuse_address);
        assert!(!defaults.reuse_port);

        let small = TcpListener::bind_with(
            "127.0.0.1:0",
            ListenOptions {
                backlog: 1,
                ..Default::default()
            },
        )?;
        let c = std::net::TcpStream::connect(small.local_addr()?)?;
        let (_s, peer) = small.accept().await?;
        assert_eq!(peer, c.local_addr()?);

        // SO_REUSEPORT: two listeners on one port.
        let options = ListenOptions {
            backlog: 64,
            reuse_port: true,
            ..Default::default()
        };
        let a = TcpListener::bind_with("127.0.0.1:0", options)?;
        let addr = a.local_addr()?;
        let b = TcpListener::bind_with(addr, options)?;
        assert_eq!(b.local_addr()?, addr);

        // Without reuse_port on the second, the port is taken.
        let err = TcpListener::bind_with(addr, ListenOptions::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);

        // The kernel spreads connections over both; every connection is
        // accepted by one of them.
        let clients: Vec<std::net::TcpStream> = (0..16)
            .map(|_| std::net::TcpStream::connect(addr))
            .collect::<io::Result<_>>()?;
        let mut accepted = Vec::new();
        let mut budget = 0;
        while accepted.len() < clients.len() {
            budget += 1;
            assert!(budget < 10_000, "connections were lost between listeners");
            for l in [&a, &b] {
                let mut fut = pin!(l.accept());
                if let Poll::Ready(r) = poll_once(fut.as_mut()).await {
                    accepted.push(r?.1);
                }
            }
            cellio_runtime::yield_now().await;
        }
        let mut expected: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        expected.sort();
        accepted.sort();
        assert_eq!(accepted, expected);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn creating_sockets_outside_a_runtime_is_an_error_not_a_panic() {
    let result = std::panic::catch_unwind(|| TcpListener::bind("127.0.0.1:0"));
    let err = result
        .expect("bind outside a runtime must not panic")
        .expect_err("bind outside a runtime must fail");
    assert!(
        err.to_string().to_lowercase().contains("runtime"),
        "the message should say why: {err}"
    );

    let result = std::panic::catch_unwind(|| {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        TcpListener::from_std(std_listener)
    });
    assert!(result.expect("from_std must not panic").is_err());

    // Connecting outside a runtime fails on the first poll.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let result = std::panic::catch_unwind(|| {
        let mut connect = pin!(TcpStream::connect(addr));
        connect
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    });
    match result.expect("connect outside a runtime must not panic") {
        Poll::Ready(Err(_)) => {}
        Poll::Ready(Ok(_)) => panic!("connect outside a runtime succeeded"),
        Poll::Pending => panic!("connect outside a runtime parked (would hang)"),
    }

    let result = std::panic::catch_unwind(|| {
        let client = std::net::TcpStream::connect(addr).unwrap();
        TcpStream::from_std(client)
    });
    assert!(result.expect("from_std must not panic").is_err());
}

#[test]
fn a_dropped_accept_leaves_the_connection_for_a_later_accept() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;

        // An accept parks (nothing pending), then is dropped after the
        // connection arrived and the reactor saw it.
        {
            let mut accept = Box::pin(listener.accept());
            assert!(poll_once(accept.as_mut()).await.is_pending());
            let client = std::net::TcpStream::connect(addr)?;
            // Let the reactor turn so the readiness reaches the cell (and
            // wakes us) while the accept is still parked.
            cellio_runtime::yield_now().await;
            cellio_runtime::yield_now().await;
            drop(accept);
            let (_s, peer) = listener.accept().await?;
            assert_eq!(peer, client.local_addr()?);
        }

        // A dropped accept that never saw the connection.
        {
            let mut accept = Box::pin(listener.accept());
            assert!(poll_once(accept.as_mut()).await.is_pending());
            drop(accept);
            let client = std::net::TcpStream::connect(addr)?;
            let (_s, peer) = listener.accept().await?;
            assert_eq!(peer, client.local_addr()?);
        }

        // Two pending connections, accept dropped in between: both arrive.
        {
            let c1 = std::net::TcpStream::connect(addr)?;
            let c2 = std::net::TcpStream::connect(addr)?;
            let (_s1, p1) = listener.accept().await?;
            let dropped = listener.accept();
            drop(dropped);
            let (_s2, p2) = listener.accept().await?;
            assert_eq!(p1, c1.local_addr()?);
            assert_eq!(p2, c2.local_addr()?);
        }
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn accept_parks_and_is_woken_by_a_later_connection() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let connector = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            std::net::TcpStream::connect(addr)
        });
        let (_s, peer) = listener.accept().await?;
        let client = connector.join().unwrap()?;
        assert_eq!(peer, client.local_addr()?);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn ttl_is_set_and_read_back_and_accepted_streams_inherit_it() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_ttl(77)?;
        assert_eq!(listener.ttl()?, 77);
        let _client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (stream, _) = listener.accept().await?;
        assert_eq!(stream.ttl()?, 77);
        io::Result::Ok(())
    })
    .unwrap();
}

/// `into_std` gives the descriptor back, non-blocking, with its backlog:
/// another worker wraps it with `from_std` and accepts the connection
/// that waited there.
#[test]
fn into_std_hands_the_listener_and_its_backlog_to_another_worker() {
    util::run_with(cellio_runtime::Builder::new().workers(2), || async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let client = std::net::TcpStream::connect(addr)?; // in the backlog
        let std_listener = listener.into_std()?;
        assert_eq!(std_listener.local_addr()?, addr);
        let accepted = cellio_runtime::spawn_on(1, async move {
            let listener = TcpListener::from_std(std_listener)?;
            let (_stream, peer) = listener.accept().await?;
            let std_listener = listener.into_std()?;
            // Non-blocking still: nothing waits, so `WouldBlock`, not a hang.
            let idle = std_listener.accept().map(|(_, peer)| peer);
            assert_eq!(idle.map_err(|e| e.kind()), Err(io::ErrorKind::WouldBlock));
            io::Result::Ok(peer)
        });
        assert_eq!(accepted.await.unwrap()?, client.local_addr()?);
        io::Result::Ok(())
    })
    .unwrap();
}

/// `poll_accept` takes a queued connection at once, and one that comes
/// while it waits (the accept kept in the listener between the calls).
#[test]
fn poll_accept_takes_a_queued_connection_and_waits_for_the_next() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let first = std::net::TcpStream::connect(addr)?;
        let (_s, peer) = std::future::poll_fn(|cx| listener.poll_accept(cx)).await?;
        assert_eq!(peer, first.local_addr()?);

        let once = std::future::poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await;
        assert!(once.is_pending(), "nothing queued yet");
        let second = std::net::TcpStream::connect(addr)?;
        let (_s, peer) = std::future::poll_fn(|cx| listener.poll_accept(cx)).await?;
        assert_eq!(peer, second.local_addr()?);
        io::Result::Ok(())
    })
    .unwrap();
}

/// `poll_accept` and an `Accept` at once: whichever waits holds the
/// listener's receive cell and the other is refused with `ResourceBusy`;
/// the connection goes to the one that waits, and none is lost.
#[test]
fn poll_accept_and_an_accept_at_once_refuse_each_other_and_lose_nothing() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;

        // A polled accept waits: `accept()` is busy.
        let once = std::future::poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await;
        assert!(once.is_pending());
        let busy = listener.accept().await.map(|(_, peer)| peer);
        assert_eq!(busy.map_err(|e| e.kind()), Err(io::ErrorKind::ResourceBusy));
        let client = std::net::TcpStream::connect(addr)?;
        let (_s, peer) = std::future::poll_fn(|cx| listener.poll_accept(cx)).await?;
        assert_eq!(peer, client.local_addr()?);

        // An `Accept` waits: `poll_accept` is busy, and the next call
        // starts afresh once the `Accept` is done.
        let mut accept = pin!(listener.accept());
        assert!(poll_once(accept.as_mut()).await.is_pending());
        let busy = std::future::poll_fn(|cx| listener.poll_accept(cx))
            .await
            .map(|(_, peer)| peer);
        assert_eq!(busy.map_err(|e| e.kind()), Err(io::ErrorKind::ResourceBusy));
        let client = std::net::TcpStream::connect(addr)?;
        let (_s, peer) = accept.await?;
        assert_eq!(peer, client.local_addr()?);
        let client = std::net::TcpStream::connect(addr)?;
        let (_s, peer) = std::future::poll_fn(|cx| listener.poll_accept(cx)).await?;
        assert_eq!(peer, client.local_addr()?);
        io::Result::Ok(())
    })
    .unwrap();
}

/// A socket cannot be made in a `spawn_blocking` job (its thread has no
/// reactor): the error says what to do, and doing it works: the job makes
/// a `std` listener, the task that awaits it wraps it with `from_std`.
#[test]
fn a_socket_made_in_a_blocking_job_is_an_error_that_says_to_wrap_a_std_one_in_a_task() {
    run(|| async {
        let err = cellio_runtime::spawn_blocking(|| {
            let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            TcpListener::from_std(std_listener).map(drop)
        })
        .await?
        .expect_err("a job's thread has no reactor");
        let message = err.to_string();
        for says in ["no cellio reactor", "spawn_blocking", "from_std"] {
            assert!(message.contains(says), "{says:?} not in {message:?}");
        }

        let std_listener =
            cellio_runtime::spawn_blocking(|| std::net::TcpListener::bind("127.0.0.1:0")).await??;
        let listener = TcpListener::from_std(std_listener)?;
        let client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (_s, peer) = listener.accept().await?;
        assert_eq!(peer, client.local_addr()?);
        io::Result::Ok(())
    })
    .unwrap();
}
