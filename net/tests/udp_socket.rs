//! `UdpSocket`: datagrams both ways through the synchronous and the parked
//! path, connected sockets, datagrams that do not fit, misuse, cancellation,
//! and many datagrams of varied sizes checked byte for byte.

mod util;

use std::io;
use std::net::SocketAddr;

use cellio_net::udp::{UdpSocket, MAX_DATAGRAM};
use cellio_reactor::CellError;
use cellio_runtime::spawn;
use util::{pattern, poll_once, run};

/// A bound pair on 127.0.0.1: `(a, b)`.
fn pair() -> io::Result<(UdpSocket, UdpSocket)> {
    Ok((
        UdpSocket::bind("127.0.0.1:0")?,
        UdpSocket::bind("127.0.0.1:0")?,
    ))
}

/// Datagram `seq` of `len` bytes: a pattern that depends on both.
fn datagram(seq: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern(seq * 7 + i)).collect()
}

#[test]
fn datagrams_go_both_ways_through_the_parked_and_the_synchronous_path() {
    run(|| async {
        let (a, b) = pair()?;
        let (a_addr, b_addr) = (a.local_addr()?, b.local_addr()?);
        let mut buf = [0u8; 64];

        // Nothing queued: the receive parks, and the send wakes it.
        let mut pending = Box::pin(b.recv_from(&mut buf));
        assert!(poll_once(pending.as_mut()).await.is_pending());
        assert_eq!(a.send_to(b"parked", b_addr).await?, 6);
        let (n, from) = pending.await?;
        assert_eq!((&buf[..n], from), (&b"parked"[..], a_addr));
        let stats = b.stats();
        assert_eq!((stats.recv_sync, stats.recv_parked), (0, 1), "{stats:?}");

        // Queued first: the receive completes on its first poll.
        b.send_to(b"queued", a_addr).await?;
        while a.peek_queued()? == 0 {
            std::thread::yield_now();
        }
        let mut op = a.recv_from(&mut buf);
        let (n, from) = op.try_complete().expect("a datagram was queued")?;
        drop(op);
        assert_eq!((&buf[..n], from), (&b"queued"[..], b_addr));
        let stats = a.stats();
        assert_eq!((stats.recv_sync, stats.recv_parked), (1, 0), "{stats:?}");
        assert_eq!(stats.send_sync, 1, "{stats:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

/// How many bytes the next queued datagram holds (0: none), without taking
/// it: `FIONREAD` on a UDP socket.
trait PeekQueued {
    fn peek_queued(&self) -> io::Result<usize>;
}

impl PeekQueued for UdpSocket {
    fn peek_queued(&self) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer, which is
        // valid for that write.
        if unsafe { libc::ioctl(self.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

#[test]
fn a_connected_socket_sends_to_its_peer_and_hears_only_from_it() {
    run(|| async {
        let (a, b) = pair()?;
        let stranger = UdpSocket::bind("127.0.0.1:0")?;
        a.connect(b.local_addr()?)?;
        b.connect(a.local_addr()?)?;
        assert_eq!(a.peer_addr()?, b.local_addr()?);
        // The stranger's datagram is not delivered to a connected socket.
        stranger.send_to(b"noise", a.local_addr()?).await?;
        b.send(b"from b").await?;
        let mut buf = [0u8; 16];
        let n = a.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"from b");
        a.send(b"from a").await?;
        let n = b.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"from a");
        assert!(matches!(a.try_recv(&mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock));
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_datagram_longer_than_the_buffer_is_an_error_and_the_next_arrives_whole() {
    run(|| async {
        let (a, b) = pair()?;
        let to = b.local_addr()?;
        let long = datagram(1, 100);
        a.send_to(&long, to).await?;
        a.send_to(b"next", to).await?;
        let mut small = [0u8; 10];
        let err = b
            .recv_from(&mut small)
            .await
            .expect_err("100 bytes into 10");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("10-byte"), "{err}");
        assert_eq!(small[..], long[..10], "the first bytes are in the buffer");
        let (n, _) = b.recv_from(&mut small).await?;
        assert_eq!(&small[..n], b"next");
        // The same through a connected socket's recv, and an exact fit is
        // no error.
        b.connect(a.local_addr()?)?;
        a.send_to(&long, to).await?;
        let err = b.recv(&mut small).await.expect_err("100 bytes into 10");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        a.send_to(&long[..10], to).await?;
        assert_eq!(b.recv(&mut small).await?, 10);
        assert_eq!(small[..], long[..10]);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn misuse_gets_clear_errors() {
    // Outside a runtime.
    let err = UdpSocket::bind("127.0.0.1:0").expect_err("no reactor here");
    assert!(err.to_string().contains("no cellio reactor"), "{err}");
    run(|| async {
        let (a, b) = pair()?;
        // A send with no peer.
        let err = a.send(b"x").await.expect_err("not connected");
        assert_eq!(err.kind(), io::ErrorKind::NotConnected, "{err}");
        assert_eq!(
            a.try_send(b"x").unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );
        assert_eq!(
            a.peer_addr().unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );
        // A second receive while one is parked.
        let mut one = [0u8; 8];
        let mut two = [0u8; 8];
        let mut first = Box::pin(a.recv_from(&mut one));
        assert!(poll_once(first.as_mut()).await.is_pending());
        let err = second_receive_error(&a, &mut two).await;
        assert_eq!(CellError::of(&err), Some(CellError::Busy), "{err}");
        // The first still completes.
        b.send_to(b"ok", a.local_addr()?).await?;
        let (n, _) = first.await?;
        assert_eq!(&one[..n], b"ok");
        // A finished future polled again.
        b.send_to(b"again", a.local_addr()?).await?;
        let mut op = Box::pin(a.recv_from(&mut one));
        op.as_mut().await?;
        let err = op.as_mut().await.expect_err("consumed");
        assert_eq!(CellError::of(&err), Some(CellError::Consumed), "{err}");
        // An address with no port.
        let err = UdpSocket::bind("127.0.0.1").expect_err("no port");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        io::Result::Ok(())
    })
    .unwrap();
}

/// A receive on `socket` while another is parked: its error.
async fn second_receive_error(socket: &UdpSocket, buf: &mut [u8]) -> io::Error {
    match socket.recv_from(buf).await {
        Err(e) => e,
        Ok(got) => panic!("a second receive got {got:?}"),
    }
}

/// A connected socket whose peer has no socket on its port: the kernel's
/// ICMP report fails the waiting receive with `ConnectionRefused` (it does
/// not hang), and the socket goes on working.
#[test]
fn a_refused_peer_fails_the_parked_receive_and_the_socket_goes_on() {
    run(|| async {
        let (a, b) = pair()?;
        let gone = UdpSocket::bind("127.0.0.1:0")?;
        let gone_addr = gone.local_addr()?;
        drop(gone);
        a.connect(gone_addr)?;
        let mut buf = [0u8; 16];
        let mut parked = Box::pin(a.recv(&mut buf));
        assert!(poll_once(parked.as_mut()).await.is_pending());
        a.send(b"anyone there?").await?;
        let err = parked.await.expect_err("nobody listens on that port");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        // Still usable: connected to a live peer now.
        a.connect(b.local_addr()?)?;
        b.send_to(b"here", a.local_addr()?).await?;
        let n = a.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"here");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_dropped_parked_receive_loses_no_datagram() {
    run(|| async {
        let (a, b) = pair()?;
        let mut buf = [0u8; 16];
        for round in 0..50usize {
            {
                let mut parked = Box::pin(b.recv_from(&mut buf));
                assert!(poll_once(parked.as_mut()).await.is_pending());
            } // dropped while parked
            let msg = datagram(round, 16);
            a.send_to(&msg, b.local_addr()?).await?;
            let (n, from) = b.recv_from(&mut buf).await?;
            assert_eq!(
                (&buf[..n], from),
                (&msg[..], a.local_addr()?),
                "round {round}"
            );
        }
        io::Result::Ok(())
    })
    .unwrap();
}

/// Echoes datagrams to their senders until one of 0 bytes arrives.
async fn echo(socket: UdpSocket) -> io::Result<u64> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut echoed = 0;
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        if n == 0 {
            return Ok(echoed);
        }
        socket.send_to(&buf[..n], from).await?;
        echoed += 1;
    }
}

#[test]
fn many_datagrams_of_varied_sizes_come_back_byte_for_byte() {
    run(|| async {
        let server = UdpSocket::bind("127.0.0.1:0")?;
        let to: SocketAddr = server.local_addr()?;
        let echoing = spawn(echo(server));
        let client = UdpSocket::bind("127.0.0.1:0")?;
        client.connect(to)?;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let rounds = 2_000usize;
        for seq in 0..rounds {
            // Mostly small, some large, up to 60 000 bytes.
            let len = match seq % 10 {
                0 => 60_000 - seq,
                1..=3 => 1 + seq % 1_500,
                _ => 1 + seq % 64,
            };
            let msg = datagram(seq, len);
            assert_eq!(client.send(&msg).await?, len);
            let n = client.recv(&mut buf).await?;
            assert_eq!(n, len, "datagram {seq}");
            assert!(buf[..n] == msg[..], "datagram {seq} corrupted");
        }
        client.send(&[]).await?; // ends the echo
        assert_eq!(echoing.await.expect("echo task")?, rounds as u64);
        io::Result::Ok(())
    })
    .unwrap();
}

/// `SO_REUSEPORT`: two sockets on one port, and the kernel spreads the
/// senders over them (by a hash of the sender's address and port: with 32
/// senders, all on one socket has a chance of 2 in 2^32). Without the
/// option, the port is taken.
/// The receive buffer bounds what the kernel queues: a burst of 100
/// datagrams that a default buffer holds whole overflows one of 4 KiB,
/// and the sizes read back as set (Linux doubles them).
#[test]
fn the_receive_buffer_size_bounds_what_is_queued() {
    run(|| async {
        let burst = |small: bool| async move {
            let (a, b) = pair()?;
            if small {
                b.set_recv_buffer_size(4 << 10)?;
                let size = b.recv_buffer_size()?;
                assert!((4 << 10..=8 << 10).contains(&size), "{size}");
            }
            let to = b.local_addr()?;
            for seq in 0..100 {
                a.send_to(&datagram(seq, 64), to).await?;
            }
            let mut queued = 0;
            let mut buf = [0u8; 128];
            while b.try_recv_from(&mut buf).is_ok() {
                queued += 1;
            }
            io::Result::Ok(queued)
        };
        assert_eq!(burst(false).await?, 100);
        let queued = burst(true).await?;
        assert!(queued < 100, "{queued} of 100 queued in a 4 KiB buffer");
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_send_buffer_size(96 << 10)?;
        let send = socket.send_buffer_size()?;
        assert!((96 << 10..=192 << 10).contains(&send), "{send}");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn reuse_port_lets_sockets_share_a_port_and_spreads_senders_over_them() {
    use cellio_net::udp::BindOptions;

    run(|| async {
        let options = BindOptions {
            reuse_port: true,
            ..BindOptions::default()
        };
        let first = UdpSocket::bind_with("127.0.0.1:0", options)?;
        let port = first.local_addr()?;
        let second = UdpSocket::bind_with(port, options)?;
        let err = UdpSocket::bind(port).expect_err("the port is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        let senders: Vec<UdpSocket> = (0..32)
            .map(|_| UdpSocket::bind("127.0.0.1:0"))
            .collect::<io::Result<_>>()?;
        for sender in &senders {
            sender.send_to(b"spread", port).await?;
        }
        let mut buf = [0u8; 16];
        let mut counts = [0usize; 2];
        for (i, socket) in [&first, &second].into_iter().enumerate() {
            while let Ok((n, _)) = socket.try_recv_from(&mut buf) {
                assert_eq!(&buf[..n], b"spread");
                counts[i] += 1;
            }
        }
        assert_eq!(counts[0] + counts[1], 32, "{counts:?}");
        assert!(counts[0] > 0 && counts[1] > 0, "not spread: {counts:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

/// `BindOptions::reuse_address` on Linux, as its docs say: a second socket
/// with the option binds the same unicast address (a socket without it
/// still gets `AddrInUse`), and it is not shared: every datagram, from
/// whichever sender, goes to one socket, the one bound last, and the first
/// gets none (so a server started twice takes the running one's traffic).
#[cfg(target_os = "linux")]
#[test]
fn reuse_address_lets_a_second_socket_take_a_unicast_address() {
    use cellio_net::udp::BindOptions;

    run(|| async {
        let options = BindOptions {
            reuse_address: true,
            ..BindOptions::default()
        };
        let first = UdpSocket::bind_with("127.0.0.1:0", options)?;
        let addr = first.local_addr()?;
        let err = UdpSocket::bind(addr).expect_err("the address is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        let second = UdpSocket::bind_with(addr, options)?;
        let senders: Vec<UdpSocket> = (0..10)
            .map(|_| UdpSocket::bind("127.0.0.1:0"))
            .collect::<io::Result<_>>()?;
        for sender in &senders {
            sender.send_to(b"taken", addr).await?;
        }
        // Loopback delivers within the send.
        let mut buf = [0u8; 16];
        let mut counts = [0usize; 2];
        for (i, socket) in [&first, &second].into_iter().enumerate() {
            while let Ok((n, _)) = socket.try_recv_from(&mut buf) {
                assert_eq!(&buf[..n], b"taken");
                counts[i] += 1;
            }
        }
        assert_eq!(counts, [0, 10], "[first, second]");
        io::Result::Ok(())
    })
    .unwrap();
}

/// A buffer size of 4 GiB or more gets the kernel's cap, as `usize::MAX`
/// does: the option is a C `int`, and socket2's `as` kept the low 32 bits
/// (4 GiB set the minimum buffer; found by a review).
#[cfg(target_pointer_width = "64")]
#[test]
fn a_huge_buffer_size_gets_the_cap_not_its_low_bits() {
    run(|| async {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        util::assert_huge_buffer_sizes_capped(
            "SO_RCVBUF",
            |bytes| socket.set_recv_buffer_size(bytes),
            || socket.recv_buffer_size(),
        )?;
        util::assert_huge_buffer_sizes_capped(
            "SO_SNDBUF",
            |bytes| socket.set_send_buffer_size(bytes),
            || socket.send_buffer_size(),
        )
    })
    .unwrap();
}
