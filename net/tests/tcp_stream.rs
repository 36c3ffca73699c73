//! `TcpStream`: connect, round trips, options, addresses, the non-waiting
//! `try_*` calls, the tokio-named aliases and a large two-way transfer.

mod util;

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use cellio_net::{TcpListener, TcpStream};
use util::{cellio_pair, fill_send_buffer, join2, pattern, run, spawn_echo_server, std_peer};

#[test]
fn connect_and_round_trip_through_an_echo_server() {
    run(|| async {
        let addr = spawn_echo_server()?;
        let stream = TcpStream::connect(addr).await?;
        for size in [1usize, 7, 100, 1500, 4096, 65_536, 200_000] {
            let msg: Vec<u8> = (0..size).map(|i| pattern(i + size)).collect();
            let mut back = vec![0u8; size];
            join2(stream.send_all(&msg), stream.recv_exact(&mut back))
                .await
                .0?;
            // recv_exact's result is checked through the buffer.
            assert!(back == msg, "echo of {size} bytes differs");
        }
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn connect_accepts_a_host_string() {
    run(|| async {
        let addr = spawn_echo_server()?;
        let stream = TcpStream::connect(format!("127.0.0.1:{}", addr.port())).await?;
        stream.send_all(b"ping").await?;
        let mut buf = [0u8; 4];
        stream.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn connect_to_a_closed_port_is_refused_promptly() {
    run(|| async {
        // Take a free port, then close it.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?
        };
        let started = Instant::now();
        let err = TcpStream::connect(addr)
            .await
            .expect_err("nobody listens there");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "refusal took too long"
        );

        // The runtime is fine afterwards.
        let (a, b) = cellio_pair().await?;
        a.send_all(b"ok").await?;
        let mut buf = [0u8; 2];
        b.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"ok");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn nodelay_can_be_set_and_read_back() {
    run(|| async {
        let (client, server) = cellio_pair().await?;
        for s in [&client, &server] {
            s.set_nodelay(true)?;
            assert!(s.nodelay()?);
            s.set_nodelay(false)?;
            assert!(!s.nodelay()?);
        }
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_zero_linger_resets_the_connection_on_drop() {
    run(|| async {
        let (ours, mut peer) = std_peer().await.unwrap();
        assert_eq!(ours.linger().unwrap(), None, "off by default");
        ours.set_linger(Some(Duration::ZERO)).unwrap();
        assert_eq!(ours.linger().unwrap(), Some(Duration::ZERO));
        ours.send_all(b"last words").await.unwrap();
        drop(ours);
        // The peer reads what arrived, then the reset (not a clean end
        // of stream: that would be Ok(0)).
        let mut buf = [0u8; 64];
        let mut result = peer.read(&mut buf);
        if let Ok(n) = result {
            assert_eq!(&buf[..n], b"last words");
            result = peer.read(&mut buf);
        }
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    });
}

#[test]
fn ttl_can_be_set_and_read_back() {
    run(|| async {
        let (client, _server) = cellio_pair().await.unwrap();
        client.set_ttl(7).unwrap();
        assert_eq!(client.ttl().unwrap(), 7);
    });
}

#[test]
fn buffer_sizes_can_be_set_and_read_back() {
    run(|| async {
        let (client, _server) = cellio_pair().await?;
        // Linux doubles what it is given (and caps it at rmem_max/wmem_max,
        // 208 KiB by default: above what is asked here).
        client.set_recv_buffer_size(64 << 10)?;
        client.set_send_buffer_size(96 << 10)?;
        let (recv, send) = (client.recv_buffer_size()?, client.send_buffer_size()?);
        assert!((64 << 10..=128 << 10).contains(&recv), "{recv}");
        assert!((96 << 10..=192 << 10).contains(&send), "{send}");
        io::Result::Ok(())
    })
    .unwrap();
}

/// A reset that `TcpIo`'s close took out of the socket (bytes that came
/// before it waited to be read) is the pending error `take_error` gives,
/// and takes: the receives then deliver those bytes and a plain end, as
/// after std's and tokio's `take_error`. (It said no error while cellio
/// kept the reset for the next receive.)
#[test]
fn take_error_gives_and_takes_the_reset_a_close_kept() {
    run(|| async {
        use futures_util::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, mut peer) = std_peer().await?;
        peer.write_all(b"tail")?;
        socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO))?;
        drop(peer); // a reset, with "tail" queued here
        util::wait_polled(&ours, libc::POLLERR);
        let mut io = cellio_net::TcpIo::new(ours);
        io.close().await?; // Ok: "tail" waits; the reset is kept
        let pending = io.get_ref().take_error()?.expect("the kept reset");
        assert_eq!(pending.kind(), io::ErrorKind::ConnectionReset);
        assert!(io.get_ref().take_error()?.is_none(), "taken once");
        let mut buf = [0u8; 16];
        let n = io.read(&mut buf).await?;
        assert_eq!(&buf[..n], b"tail");
        assert_eq!(io.read(&mut buf).await?, 0, "the reset was taken");
        io::Result::Ok(())
    })
    .unwrap();
}

/// `try_recv_vectored` fills its buffers in order, says `WouldBlock`
/// with nothing buffered (and `readable()` then waits), and 0 at the end.
#[test]
fn try_recv_vectored_fills_the_buffers_in_order() {
    run(|| async {
        use std::io::IoSliceMut;
        let (ours, mut peer) = std_peer().await?;
        let (mut head, mut body) = ([0u8; 4], [0u8; 16]);
        let err = ours
            .try_recv_vectored(&mut [IoSliceMut::new(&mut head)])
            .expect_err("nothing was sent");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let mut readable = std::pin::pin!(ours.readable());
        assert!(util::poll_once(readable.as_mut()).await.is_pending());
        peer.write_all(b"headbody")?;
        readable.await?;
        let n =
            ours.try_recv_vectored(&mut [IoSliceMut::new(&mut head), IoSliceMut::new(&mut body)])?;
        assert_eq!(n, 8);
        assert_eq!((&head, &body[..4]), (b"head", &b"body"[..]));
        drop(peer);
        ours.readable().await?;
        assert_eq!(
            ours.try_recv_vectored(&mut [IoSliceMut::new(&mut body)])?,
            0
        );
        io::Result::Ok(())
    })
    .unwrap();
}

/// With more than `IOV_MAX` (1024) buffers, `try_recv_vectored` fills the
/// first 1024, as std's and tokio's do, and the bytes still queued keep
/// `readable()` ready (the room of the buffers the kernel never saw made
/// the full read look like one that drained the socket, and `readable()`
/// then waited for ever). A call whose first 1024 buffers have no room
/// returns 0 and leaves the bytes, and the readiness, as they were.
#[test]
fn try_recv_vectored_past_iov_max_fills_1024_and_stays_readable() {
    run(|| async {
        use std::io::IoSliceMut;
        let (ours, mut peer) = std_peer().await?;
        // Make the receive cell wait for the reactor, so that readable()
        // below completes on the data's event, already consumed.
        let err = ours.try_recv(&mut [0u8; 1]).expect_err("nothing was sent");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        peer.write_all(&[7u8; 1500])?;
        util::wait_buffered(&ours, 1500);
        ours.readable().await?;
        let mut storage = vec![0u8; 2000];
        let mut bufs: Vec<IoSliceMut<'_>> = storage.chunks_mut(1).map(IoSliceMut::new).collect();
        assert_eq!(ours.try_recv_vectored(&mut bufs)?, 1024);
        drop(bufs);
        assert!(storage[..1024].iter().all(|&b| b == 7));
        assert!(storage[1024..].iter().all(|&b| b == 0), "past the 1024th");
        // 476 bytes are queued: readable() completes at once.
        cellio_runtime::timeout(Duration::from_secs(5), ours.readable())
            .await
            .expect("readable() with 476 bytes queued")?;
        // 1024 empty buffers, then one with room: 0, the bytes still there.
        let mut tail = [0u8; 1000];
        let mut empties = [[0u8; 0]; 1024];
        let mut bufs: Vec<IoSliceMut<'_>> = empties
            .iter_mut()
            .map(|e| IoSliceMut::new(&mut e[..]))
            .collect();
        bufs.push(IoSliceMut::new(&mut tail));
        assert_eq!(ours.try_recv_vectored(&mut bufs)?, 0);
        cellio_runtime::timeout(Duration::from_secs(5), ours.readable())
            .await
            .expect("readable() after an empty vectored receive")?;
        assert_eq!(ours.try_recv(&mut tail)?, 476);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn local_and_peer_addresses_mirror_each_other() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let client = TcpStream::connect(listener.local_addr()?).await?;
        let (server, _) = listener.accept().await?;
        assert_eq!(client.local_addr()?, server.peer_addr()?);
        assert_eq!(client.peer_addr()?, server.local_addr()?);
        assert_eq!(client.peer_addr()?, listener.local_addr()?);
        assert_ne!(client.local_addr()?.port(), 0);
        assert!(client.take_error()?.is_none());
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn try_recv_says_would_block_when_nothing_is_buffered() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut buf = [0u8; 16];
        let err = ours.try_recv(&mut buf).expect_err("nothing was sent");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

        peer.write_all(b"hello")?;
        util::wait_buffered(&ours, 5);
        assert_eq!(ours.try_recv(&mut buf)?, 5);
        assert_eq!(&buf[..5], b"hello");
        let err = ours.try_recv(&mut buf).expect_err("drained");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

        // try_send goes straight through.
        assert_eq!(ours.try_send(b"back")?, 4);
        let mut got = [0u8; 4];
        peer.read_exact(&mut got)?;
        assert_eq!(&got, b"back");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn write_all_and_read_exact_aliases_work() {
    run(|| async {
        let (a, b) = cellio_pair().await?;
        let msg: Vec<u8> = (0..10_000).map(pattern).collect();
        a.write_all(&msg).await?;
        let mut got = vec![0u8; msg.len()];
        b.read_exact(&mut got).await?;
        assert!(got == msg);

        // read_exact reports a premature end of stream.
        a.write_all(b"abc").await?;
        a.shutdown(std::net::Shutdown::Write)?;
        let mut four = [0u8; 4];
        let err = b
            .read_exact(&mut four)
            .await
            .expect_err("only 3 bytes left");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(&four[..3], b"abc");
        io::Result::Ok(())
    })
    .unwrap();
}

/// 8 MiB each way at once, against a blocking std peer (one thread writing,
/// one reading): exercises partial writes, the send cell parking while the
/// peer is slow, and receives racing with sends on one stream.
#[test]
fn large_transfer_both_directions_concurrently_is_byte_exact() {
    const SIZE: usize = 8 << 20;
    run(|| async {
        let (ours, peer) = std_peer().await?;
        let mut peer_reader = peer.try_clone()?;
        let mut peer_writer = peer;

        let writer = std::thread::spawn(move || -> io::Result<()> {
            let data: Vec<u8> = (0..SIZE).map(|i| pattern(i + 3)).collect();
            // Odd-sized chunks so the boundaries never line up.
            for chunk in data.chunks(99_991) {
                peer_writer.write_all(chunk)?;
            }
            peer_writer.shutdown(std::net::Shutdown::Write)?;
            Ok(())
        });
        let reader = std::thread::spawn(move || -> io::Result<usize> {
            let mut buf = vec![0u8; 128 * 1024];
            let mut total = 0;
            loop {
                let n = peer_reader.read(&mut buf)?;
                if n == 0 {
                    return Ok(total);
                }
                for (k, &b) in buf[..n].iter().enumerate() {
                    if b != pattern(total + k) {
                        return Err(io::Error::other(format!(
                            "peer got a bad byte at {}",
                            total + k
                        )));
                    }
                }
                total += n;
            }
        });

        let outgoing: Vec<u8> = (0..SIZE).map(pattern).collect();
        let mut incoming = vec![0u8; SIZE];
        let (sent, received) = join2(
            async {
                ours.send_all(&outgoing).await?;
                ours.shutdown(std::net::Shutdown::Write)
            },
            ours.recv_exact(&mut incoming),
        )
        .await;
        sent?;
        received?;
        let mut tail = [0u8; 1];
        assert_eq!(ours.recv(&mut tail).await?, 0, "peer sent more than {SIZE}");
        for (i, &b) in incoming.iter().enumerate() {
            assert_eq!(b, pattern(i + 3), "we got a bad byte at {i}");
        }
        writer.join().unwrap()?;
        assert_eq!(reader.join().unwrap()?, SIZE);
        let stats = ours.stats();
        assert!(
            stats.send_parked > 0,
            "8 MiB to a slow peer should have parked the send cell at least once: {stats:?}"
        );
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn streams_moved_into_spawned_tasks_work() {
    run(|| async {
        let (a, b) = cellio_pair().await?;
        let task = cellio_runtime::spawn(async move {
            let mut buf = [0u8; 5];
            b.recv_exact(&mut buf).await?;
            b.send_all(&buf).await?;
            io::Result::Ok(buf)
        });
        a.send_all(b"hello").await?;
        let mut back = [0u8; 5];
        a.recv_exact(&mut back).await?;
        assert_eq!(&back, b"hello");
        assert_eq!(&task.await.unwrap()?, b"hello");
        io::Result::Ok(())
    })
    .unwrap();
}

/// A peer's urgent byte (`MSG_OOB`) ends a receive short with more data
/// queued behind it: the receive after it must get that data. (It used to
/// wait for another event: the short read was taken for a drained socket,
/// and the next receive parked without a syscall on data already there;
/// found by a review.)
#[test]
fn a_peers_urgent_byte_does_not_hang_the_next_receive() {
    run(|| async {
        let (ours, peer) = std_peer().await?;
        assert!(util::send_around_an_urgent_byte(&peer)?);
        // Let the reactor see the arrivals before the receives.
        cellio_runtime::time::sleep(Duration::from_millis(50)).await;
        let mut buf = [0u8; 64];
        let n = ours.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"abc", "a receive stops at the urgent mark");
        let n = cellio_runtime::time::timeout(Duration::from_secs(2), ours.recv(&mut buf))
            .await
            .expect("the bytes after the urgent one are queued: the receive must not wait")?;
        assert_eq!(&buf[..n], b"def");
        io::Result::Ok(())
    })
    .unwrap();
}

/// A receive or peek into an empty buffer completes with 0 at once, as
/// `recv` documents: on an idle socket, and after a short read marked the
/// socket drained. (Both used to wait for data: the drained mark parked
/// them, and on an idle socket the kernel answers an empty read with
/// `EAGAIN`; found by a review.)
#[test]
fn a_receive_into_an_empty_buffer_returns_zero_at_once() {
    run(|| async {
        let (client, server) = cellio_pair().await?;
        let wait = Duration::from_secs(2);
        let idle = cellio_runtime::time::timeout(wait, server.recv(&mut [])).await;
        assert!(
            matches!(idle, Ok(Ok(0))),
            "recv(&mut []) on an idle socket: {idle:?}"
        );
        client.send_all(b"hello").await?;
        let mut buf = [0u8; 64];
        assert_eq!(server.recv(&mut buf).await?, 5); // short: drained
        let drained = cellio_runtime::time::timeout(wait, server.recv(&mut [])).await;
        assert!(
            matches!(drained, Ok(Ok(0))),
            "recv(&mut []) once drained: {drained:?}"
        );
        let peeked = cellio_runtime::time::timeout(wait, server.peek(&mut [])).await;
        assert!(
            matches!(peeked, Ok(Ok(0))),
            "peek(&mut []) once drained: {peeked:?}"
        );
        // The receive after them gets what comes next.
        client.send_all(b"more").await?;
        let n = server.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"more");
        io::Result::Ok(())
    })
    .unwrap();
}

/// A send of nothing (an empty buffer, empty slices, a file range of 0
/// bytes) completes with 0 at once, even when the send buffer was found
/// full. (It used to wait for the peer to make room; found by a review.)
#[test]
fn a_send_of_nothing_returns_zero_at_once_on_a_full_socket() {
    run(|| async {
        let (client, _server) = cellio_pair().await?;
        fill_send_buffer(&client);
        // Let late ACKs land (each a writable event), then find the socket
        // full again: that WouldBlock marks the send cell.
        std::thread::sleep(Duration::from_millis(100));
        fill_send_buffer(&client);
        let wait = Duration::from_secs(2);
        let sent = cellio_runtime::time::timeout(wait, client.send(&[])).await;
        assert!(matches!(sent, Ok(Ok(0))), "send(&[]): {sent:?}");
        let slices = [io::IoSlice::new(&[]), io::IoSlice::new(&[])];
        let sent = cellio_runtime::time::timeout(wait, client.send_vectored(&slices)).await;
        assert!(
            matches!(sent, Ok(Ok(0))),
            "send_vectored of empty slices: {sent:?}"
        );
        let file = std::fs::File::open("/proc/self/exe")?;
        let sent = cellio_runtime::time::timeout(wait, client.send_file(&file, 0, 0)).await;
        assert!(matches!(sent, Ok(Ok(0))), "send_file of 0 bytes: {sent:?}");
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
        let (ours, _peer) = cellio_pair().await?;
        util::assert_huge_buffer_sizes_capped(
            "SO_RCVBUF",
            |bytes| ours.set_recv_buffer_size(bytes),
            || ours.recv_buffer_size(),
        )?;
        util::assert_huge_buffer_sizes_capped(
            "SO_SNDBUF",
            |bytes| ours.set_send_buffer_size(bytes),
            || ours.send_buffer_size(),
        )
    })
    .unwrap();
}
