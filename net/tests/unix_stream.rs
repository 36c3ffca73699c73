//! `UnixStream`: pairs and connections through a path or an abstract name,
//! round trips, a receive that parks, end of stream, a closed peer (no
//! `SIGPIPE`), the connect errors (nothing there, nobody listening, a full
//! accept queue, an empty path), moving a stream to another worker, options, addresses and
//! the peer's credentials, a large two-way transfer, and a parked send ended by the stream's
//! own shutdown.

mod util;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use cellio_net::unix::{UnixListener, UnixStream};
use cellio_reactor::CellError;
use cellio_runtime::{spawn, spawn_on, Builder};
use util::{default_sigpipe, join2, pattern, poll_once, run, run_with, SocketDir};

/// Echoes until the peer closes; returns the bytes echoed.
async fn echo(stream: UnixStream) -> io::Result<u64> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = stream.recv(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        stream.send_all(&buf[..n]).await?;
        total += n as u64;
    }
}

#[test]
fn a_pair_carries_every_size_byte_exact() {
    run(|| async {
        let (a, b) = UnixStream::pair()?;
        let echoer = spawn(echo(b));
        for size in [1usize, 7, 100, 1500, 4096, 65_536, 500_000] {
            let msg: Vec<u8> = (0..size).map(|i| pattern(i + size)).collect();
            let mut back = vec![0u8; size];
            let (sent, received) = join2(a.send_all(&msg), a.recv_exact(&mut back)).await;
            sent?;
            received?;
            assert!(back == msg, "echo of {size} bytes differs");
        }
        a.shutdown(Shutdown::Write)?;
        let mut tail = [0u8; 1];
        assert_eq!(a.recv(&mut tail).await?, 0, "the echo closes after us");
        assert_eq!(
            echoer.await.unwrap()?,
            [1u64, 7, 100, 1500, 4096, 65_536, 500_000]
                .iter()
                .sum::<u64>()
        );
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn connect_through_a_path_reaches_the_listener_and_its_address() {
    let dir = SocketDir::new();
    let path = dir.path("echo.sock");
    run(move || async move {
        let listener = UnixListener::bind(&path)?;
        let client = UnixStream::connect(&path).await?;
        let (server, peer) = listener.accept().await?;
        // The client bound no address; the server's side is the path.
        assert!(peer.is_unnamed(), "{peer:?}");
        assert!(client.local_addr()?.is_unnamed());
        assert_eq!(client.peer_addr()?.as_pathname(), Some(path.as_path()));
        assert_eq!(server.local_addr()?.as_pathname(), Some(path.as_path()));
        spawn(echo(server));
        client.send_all(b"hello").await?;
        let mut buf = [0u8; 5];
        client.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"hello");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_receive_parks_until_the_peer_sends() {
    run(|| async {
        let (a, b) = UnixStream::pair()?;
        let mut buf = [0u8; 16];
        {
            let mut recv = pin!(a.recv(&mut buf));
            assert!(
                poll_once(recv.as_mut()).await.is_pending(),
                "nothing sent yet"
            );
            b.send_all(b"late").await?;
            let n = recv.await?;
            assert_eq!(n, 4);
        }
        assert_eq!(&buf[..4], b"late");
        let stats = a.stats();
        assert_eq!((stats.recv_parked, stats.recv_sync), (1, 0), "{stats:?}");
        // The short read said the socket is drained, so the next receive
        // parks without a syscall until the reactor reports the new bytes;
        // it fills its buffer, and the one after finds the rest buffered.
        b.send_all(b"12345678").await?;
        let mut half = [0u8; 4];
        a.recv_exact(&mut half).await?;
        assert_eq!(&half, b"1234");
        assert_eq!(a.recv(&mut half).await?, 4);
        assert_eq!(&half, b"5678");
        let stats = a.stats();
        assert_eq!((stats.recv_parked, stats.recv_sync), (2, 1), "{stats:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_receive_dropped_while_parked_loses_nothing() {
    run(|| async {
        let (a, b) = UnixStream::pair()?;
        for round in 0..20u8 {
            let mut buf = [0u8; 8];
            {
                let mut recv = pin!(a.recv(&mut buf));
                assert!(poll_once(recv.as_mut()).await.is_pending());
            } // dropped while parked
            b.send_all(&[round; 3]).await?;
            let n = a.recv(&mut buf).await?;
            assert_eq!(&buf[..n], &[round; 3], "round {round}");
        }
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_closed_peer_reads_as_end_of_stream_and_sends_fail_without_sigpipe() {
    default_sigpipe(); // a SIGPIPE now kills the test process
    run(|| async {
        let (a, b) = UnixStream::pair()?;
        b.send_all(b"last").await?;
        drop(b);
        let mut buf = [0u8; 8];
        assert_eq!(a.recv(&mut buf).await?, 4, "buffered bytes come first");
        assert_eq!(a.recv(&mut buf).await?, 0, "then end of stream");
        let err = a.send_all(b"anyone?").await.expect_err("the peer is gone");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn shutting_down_the_write_side_keeps_the_read_side() {
    run(|| async {
        let (a, b) = UnixStream::pair()?;
        a.send_all(b"request").await?;
        a.shutdown(Shutdown::Write)?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4];
        loop {
            match b.recv(&mut buf).await? {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        assert_eq!(got, b"request");
        b.send_all(b"reply").await?;
        let mut reply = [0u8; 5];
        a.recv_exact(&mut reply).await?;
        assert_eq!(&reply, b"reply");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn connect_errors_say_what_is_wrong() {
    let dir = SocketDir::new();
    let missing = dir.path("nothing-here.sock");
    let plain_file = dir.path("plain-file");
    std::fs::write(&plain_file, b"not a socket").unwrap();
    let stale = dir.path("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap()); // the file stays
    let too_long = dir.path(&"x".repeat(200));
    let datagram = dir.path("datagram.sock");
    let _datagram = std::os::unix::net::UnixDatagram::bind(&datagram).unwrap();
    run(move || async move {
        let err = UnixStream::connect(&missing).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err:?}");
        let err = UnixStream::connect(&plain_file).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");
        let err = UnixStream::connect(&stale).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");
        let err = UnixStream::connect(&too_long).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        let err = UnixStream::connect(&datagram).await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPROTOTYPE), "{err:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

/// An empty path is an error that says so, and where an abstract name goes
/// (`connect(2)` itself would say only "Invalid argument").
#[test]
fn connecting_to_an_empty_path_says_so() {
    run(|| async {
        let err = UnixStream::connect("").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        let message = err.to_string();
        assert!(message.contains("empty Unix socket path"), "{message}");
        assert!(message.contains("UnixStream::connect_addr"), "{message}");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn outside_a_runtime_the_constructors_err_instead_of_panicking() {
    let err = UnixStream::pair().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Other, "{err:?}");
    let (std_a, _std_b) = std::os::unix::net::UnixStream::pair().unwrap();
    assert!(UnixStream::from_std(std_a).is_err());
}

/// Linux refuses a non-blocking Unix connect to a full accept queue with
/// `EAGAIN`, and gives it no readiness to wait for: the error says so, and
/// the next connect succeeds once the server accepts.
#[cfg(target_os = "linux")]
#[test]
fn a_full_accept_queue_is_a_clear_error_until_the_server_accepts() {
    let dir = SocketDir::new();
    let path = dir.path("busy.sock");
    // A listener with a backlog of 1 (the kernel then queues 2).
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&socket2::SockAddr::unix(&path).unwrap())
        .unwrap();
    socket.listen(1).unwrap();
    let listener: std::os::unix::net::UnixListener = socket.into();
    run(move || async move {
        let mut queued = Vec::new();
        let err = loop {
            match UnixStream::connect(&path).await {
                Ok(stream) => queued.push(stream),
                Err(e) => break e,
            }
            assert!(queued.len() < 64, "the queue never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err:?}");
        assert!(err.to_string().contains("retry"), "{err}");
        let (mut accepted, _) = listener.accept()?;
        let late = UnixStream::connect(&path).await?;
        late.send_all(b"in").await?;
        // The first queued client was the one accepted.
        queued[0].send_all(b"first").await?;
        let mut buf = [0u8; 5];
        accepted.read_exact(&mut buf)?;
        assert_eq!(&buf, b"first");
        io::Result::Ok(())
    })
    .unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn an_abstract_name_needs_no_file() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let name = format!("cellio-test-abstract-{}", std::process::id());
    run(move || async move {
        let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
        let listener = UnixListener::bind_addr(&addr)?;
        assert_eq!(
            listener.local_addr()?.as_abstract_name(),
            Some(name.as_bytes())
        );
        let client = UnixStream::connect_addr(&addr).await?;
        let (server, _) = listener.accept().await?;
        client.send_all(b"abstract").await?;
        let mut buf = [0u8; 8];
        server.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"abstract");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_stream_moves_to_another_worker_without_losing_bytes() {
    run_with(Builder::new().workers(2), || async {
        let (a, b) = UnixStream::pair()?;
        a.send_all(b"before the move").await?;
        let moved = b.into_std()?;
        let echoed = spawn_on(1, async move {
            let b = UnixStream::from_std(moved)?;
            echo(b).await
        });
        a.send_all(b", after").await?;
        let mut buf = [0u8; 22];
        a.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"before the move, after");
        a.shutdown(Shutdown::Write)?;
        assert_eq!(echoed.await.unwrap()?, 22);
        io::Result::Ok(())
    })
    .unwrap();
}

/// A peer's out-of-band byte (`MSG_OOB`, Linux 5.15+) ends a receive
/// short with data queued behind it: the receive after it must get that
/// data. (It used to wait for another event, the short read taken for a
/// drained socket; found by a review.)
#[test]
fn a_peers_out_of_band_byte_does_not_hang_the_next_receive() {
    run(|| async {
        let (ours, peer) = UnixStream::pair()?;
        if !util::send_around_an_urgent_byte(&peer)? {
            eprintln!("skipped: this kernel has no MSG_OOB on Unix streams");
            return Ok(());
        }
        // Let the reactor see the arrivals before the receives.
        cellio_runtime::time::sleep(Duration::from_millis(50)).await;
        let mut buf = [0u8; 64];
        let n = ours.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"abc", "a receive stops at the out-of-band byte");
        let n = cellio_runtime::time::timeout(Duration::from_secs(2), ours.recv(&mut buf))
            .await
            .expect("the bytes after the out-of-band one are queued: the receive must not wait")?;
        assert_eq!(&buf[..n], b"def");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn try_calls_do_not_wait() {
    run(|| async {
        let (a, b) = UnixStream::pair()?;
        let mut buf = [0u8; 8];
        let err = a.try_recv(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(b.try_send(b"abc")?, 3);
        assert_eq!(a.try_recv(&mut buf)?, 3);
        assert_eq!(&buf[..3], b"abc");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn buffer_sizes_can_be_set_and_read_back() {
    run(|| async {
        let (a, _b) = UnixStream::pair()?;
        a.set_send_buffer_size(64 * 1024)?;
        a.set_recv_buffer_size(64 * 1024)?;
        // Linux doubles what it is given.
        assert!(a.send_buffer_size()? >= 64 * 1024);
        assert!(a.recv_buffer_size()? >= 64 * 1024);
        assert!(a.take_error()?.is_none());
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn the_peer_credentials_are_this_process() {
    run(|| async {
        let (a, _b) = UnixStream::pair()?;
        let cred = a.peer_cred()?;
        // Only Linux and macOS report the peer's process.
        let pid_reported = cfg!(any(
            target_os = "linux",
            target_os = "android",
            target_os = "macos",
            target_os = "ios"
        ));
        let expected_pid = if pid_reported {
            std::process::id() as i32
        } else {
            0
        };
        assert_eq!(cred.pid, expected_pid);
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        assert_eq!((cred.uid, cred.gid), (uid, gid));
        io::Result::Ok(())
    })
    .unwrap();
}

/// 8 MiB each way at once against a blocking peer with a small send buffer:
/// sends park on the send cell (write interest armed on the way) and every
/// byte arrives in order.
#[test]
fn a_large_transfer_both_ways_at_once_is_byte_exact() {
    const SIZE: usize = 8 << 20;
    run(|| async {
        let (ours, peer) = std::os::unix::net::UnixStream::pair()?;
        let ours = UnixStream::from_std(ours)?;
        ours.set_send_buffer_size(16 * 1024)?;
        peer.set_read_timeout(Some(Duration::from_secs(5)))?;
        peer.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut peer_reader = peer.try_clone()?;
        let mut peer_writer = peer;
        let writer = std::thread::spawn(move || -> io::Result<()> {
            let data: Vec<u8> = (0..SIZE).map(|i| pattern(i + 5)).collect();
            for chunk in data.chunks(99_991) {
                peer_writer.write_all(chunk)?;
            }
            peer_writer.shutdown(Shutdown::Write)
        });
        let reader = std::thread::spawn(move || -> io::Result<usize> {
            let mut buf = vec![0u8; 100_003];
            let mut total = 0;
            loop {
                let n = peer_reader.read(&mut buf)?;
                if n == 0 {
                    return Ok(total);
                }
                for (k, &byte) in buf[..n].iter().enumerate() {
                    if byte != pattern(total + k) {
                        return Err(io::Error::other(format!("bad byte at {}", total + k)));
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
                ours.shutdown(Shutdown::Write)
            },
            ours.recv_exact(&mut incoming),
        )
        .await;
        sent?;
        received?;
        let mut tail = [0u8; 1];
        assert_eq!(
            ours.recv(&mut tail).await?,
            0,
            "the peer sent more than {SIZE}"
        );
        for (i, &byte) in incoming.iter().enumerate() {
            assert_eq!(byte, pattern(i + 5), "we got a bad byte at {i}");
        }
        writer.join().unwrap()?;
        assert_eq!(reader.join().unwrap()?, SIZE);
        let stats = ours.stats();
        assert!(stats.send_parked > 0, "no send waited: {stats:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn debug_names_the_stream_and_a_finished_future_polled_again_errs() {
    run(|| async {
        let (a, _b) = UnixStream::pair()?;
        let text = format!("{a:?}");
        assert!(text.starts_with("UnixStream"), "{text}");
        assert!(text.contains("fd"), "{text}");
        let mut send = pin!(a.send(b"x"));
        assert!(matches!(poll_once(send.as_mut()).await, Poll::Ready(Ok(1))));
        match poll_once(send.as_mut()).await {
            Poll::Ready(Err(e)) => {
                assert_eq!(CellError::of(&e), Some(CellError::Consumed), "{e:?}")
            }
            other => panic!("expected an error, got {other:?}"),
        }
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
        let (a, _b) = UnixStream::pair()?;
        util::assert_huge_buffer_sizes_capped(
            "SO_RCVBUF",
            |bytes| a.set_recv_buffer_size(bytes),
            || a.recv_buffer_size(),
        )?;
        util::assert_huge_buffer_sizes_capped(
            "SO_SNDBUF",
            |bytes| a.set_send_buffer_size(bytes),
            || a.send_buffer_size(),
        )
    })
    .unwrap();
}

/// One task's send is parked on a full stream whose peer reads nothing;
/// another task shuts the stream's writing side down (`shutdown` takes
/// `&self`). The parked send ends with `BrokenPipe`, as on a `TcpStream`.
/// (It stayed parked until the peer read, for ever here: Linux raises no
/// event on a Unix stream for its own shutdown, where TCP reports it
/// writable; found by a review.)
#[test]
fn a_parked_send_ends_with_broken_pipe_when_its_stream_shuts_down_writing() {
    use std::cell::Cell;
    use std::rc::Rc;
    run(|| async {
        let (a, _b) = UnixStream::pair()?;
        let a = Rc::new(a);
        let chunk = vec![7u8; 64 * 1024];
        loop {
            match a.try_send(&chunk) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let parked = Rc::new(Cell::new(false));
        let (sender, told) = (a.clone(), parked.clone());
        let send = cellio_runtime::spawn_local(async move {
            let mut send = pin!(sender.send(&[1u8; 4096]));
            assert!(poll_once(send.as_mut()).await.is_pending(), "not full");
            told.set(true);
            send.await
        });
        while !parked.get() {
            cellio_runtime::yield_now().await;
        }
        a.shutdown(Shutdown::Write)?;
        match cellio_runtime::timeout(Duration::from_secs(5), send).await {
            Ok(Ok(Err(e))) if e.kind() == io::ErrorKind::BrokenPipe => {}
            other => panic!("the parked send after shutdown(Write): {other:?}"),
        }
        io::Result::Ok(())
    })
    .unwrap();
}

/// `try_recv_vectored` (tokio's `try_read_vectored`) fills its buffers in
/// order, says `WouldBlock` with nothing buffered, fills only the first
/// `IOV_MAX` (1024) buffers of a longer list with `readable()` still ready
/// for the rest, stops at bytes that came with descriptors (closed) with
/// `readable()` ready for what follows them, and says 0 at the end.
#[test]
fn try_recv_vectored_fills_the_buffers_in_order() {
    run(|| async {
        use std::io::IoSliceMut;
        let (ours, peer) = UnixStream::pair()?;
        let (mut head, mut body) = ([0u8; 4], [0u8; 16]);
        let err = ours
            .try_recv_vectored(&mut [IoSliceMut::new(&mut head)])
            .expect_err("nothing was sent");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        peer.send_all(b"headbody").await?;
        ours.readable().await?;
        let n =
            ours.try_recv_vectored(&mut [IoSliceMut::new(&mut head), IoSliceMut::new(&mut body)])?;
        assert_eq!((n, &head, &body[..4]), (8, b"head", &b"body"[..]));

        // Past IOV_MAX: 1024 bytes, and readable() ready for the rest.
        let err = ours.try_recv(&mut body).expect_err("nothing was sent");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        peer.send_all(&[7u8; 1500]).await?;
        ours.readable().await?;
        let mut storage = vec![0u8; 2000];
        let mut bufs: Vec<IoSliceMut<'_>> = storage.chunks_mut(1).map(IoSliceMut::new).collect();
        assert_eq!(ours.try_recv_vectored(&mut bufs)?, 1024);
        cellio_runtime::timeout(Duration::from_secs(5), ours.readable())
            .await
            .expect("readable() with 476 bytes queued")?;
        let mut rest = [0u8; 1000];
        assert_eq!(ours.try_recv(&mut rest)?, 476);

        // Bytes with descriptors: the receive stops after them.
        let err = ours.try_recv(&mut body).expect_err("nothing was sent");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let file = std::fs::File::open("/dev/null")?;
        use std::os::fd::AsFd;
        peer.send_with_fds(b"fds", &[file.as_fd()]).await?;
        peer.send_all(b"after").await?;
        ours.readable().await?;
        let n = ours.try_recv_vectored(&mut [IoSliceMut::new(&mut body)])?;
        assert_eq!(&body[..n], b"fds");
        cellio_runtime::timeout(Duration::from_secs(5), ours.readable())
            .await
            .expect("readable() with the bytes after the descriptors queued")?;
        let n = ours.try_recv_vectored(&mut [IoSliceMut::new(&mut body)])?;
        assert_eq!(&body[..n], b"after");

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
