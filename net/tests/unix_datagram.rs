//! `UnixDatagram`: pairs, bound and unbound sockets and their addresses,
//! abstract names, a datagram too long for the buffer (an error, and the
//! next one whole), a receive that parks, a send that waits for a full peer
//! (Unix datagrams are never dropped), the errors of a bad destination (a
//! path with a NUL byte among them; and of an empty path to bind), and
//! moving a socket to another worker.

mod util;

use std::io;
use std::pin::pin;

use cellio_net::unix::UnixDatagram;
use cellio_runtime::{spawn_on, Builder};
use util::{
    fill_datagram_queue, join2, pattern, poll_once, recv_numbered, run, run_with, SocketDir,
};

#[test]
fn a_pair_carries_datagrams_of_every_size_whole() {
    run(|| async {
        let (a, b) = UnixDatagram::pair()?;
        let mut buf = vec![0u8; 100_000];
        for size in [0usize, 1, 100, 10_000, 60_000] {
            let msg: Vec<u8> = (0..size).map(|i| pattern(i + size)).collect();
            assert_eq!(a.send(&msg).await?, size);
            let n = b.recv(&mut buf).await?;
            assert_eq!(n, size);
            assert!(buf[..n] == msg[..], "datagram of {size} bytes differs");
        }
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_bound_server_answers_a_bound_client_by_its_path() {
    let dir = SocketDir::new();
    let (server_path, client_path) = (dir.path("server.sock"), dir.path("client.sock"));
    run(move || async move {
        let server = UnixDatagram::bind(&server_path)?;
        let client = UnixDatagram::bind(&client_path)?;
        client.send_to(b"ping", &server_path).await?;
        let mut buf = [0u8; 16];
        let (n, from) = server.recv_from(&mut buf).await?;
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from.as_pathname(), Some(client_path.as_path()));
        server.send_to_addr(b"pong", &from).await?;
        let (n, from) = client.recv_from(&mut buf).await?;
        assert_eq!(&buf[..n], b"pong");
        assert_eq!(from.as_pathname(), Some(server_path.as_path()));
        assert_eq!(
            server.local_addr()?.as_pathname(),
            Some(server_path.as_path())
        );
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn an_unbound_sender_is_unnamed_and_cannot_be_answered_by_address() {
    let dir = SocketDir::new();
    let path = dir.path("server.sock");
    run(move || async move {
        let server = UnixDatagram::bind(&path)?;
        let client = UnixDatagram::unbound()?;
        for round in 0..3u8 {
            client.send_to(&[round; 5], &path).await?;
            let mut buf = [0u8; 8];
            let (n, from) = server.recv_from(&mut buf).await?;
            assert_eq!(&buf[..n], &[round; 5]);
            assert!(from.is_unnamed(), "{from:?}");
            let err = server.send_to_addr(b"reply", &from).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        }
        // Connected, the unbound client stays unnamed: its peer still has
        // no address to answer it at (the docs of `unbound` said it could
        // receive from the peer it connected to; found by a review).
        client.connect(&path)?;
        assert_eq!(client.peer_addr()?.as_pathname(), Some(path.as_path()));
        assert!(client.local_addr()?.is_unnamed());
        client.send(b"ping").await?;
        let mut buf = [0u8; 8];
        let (n, from) = server.recv_from(&mut buf).await?;
        assert_eq!((&buf[..n], from.is_unnamed()), (&b"ping"[..], true));
        let err = server.send_to_addr(b"pong", &from).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

/// A sender bound to a path of all 108 bytes of `sun_path` (Linux takes it
/// with no NUL after it, and C or Python clients bind one): its datagrams
/// are delivered, by `recv_from`, `peek_sender` and a batch, its address
/// reported unnamed (`std`'s type cannot hold the path). (The receive used
/// to fail with `InvalidInput`, "path must be shorter than SUN_LEN", after
/// the kernel had dequeued the datagram: each one was lost; found by a
/// review.)
#[test]
fn a_sender_bound_to_a_108_byte_path_is_received() {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let dir = SocketDir::new();
    let server_path = dir.path("s.sock");
    let fill = 108 - dir.path("").as_os_str().len();
    let long = dir.path(&"c".repeat(fill));
    assert_eq!(long.as_os_str().len(), 108);
    run(move || async move {
        let server = UnixDatagram::bind(&server_path)?;
        let client = std::os::unix::net::UnixDatagram::unbound()?;
        // SAFETY: all-zero is a valid `sockaddr_un`.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (to, from) in addr.sun_path.iter_mut().zip(long.as_os_str().as_bytes()) {
            *to = *from as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // SAFETY: `addr` is a valid `sockaddr_un` of `len` bytes.
        let bound =
            unsafe { libc::bind(client.as_raw_fd(), std::ptr::from_ref(&addr).cast(), len) };
        assert_eq!(bound, 0, "{}", io::Error::last_os_error());
        for round in 0..3u8 {
            client.send_to(&[round; 5], &server_path)?;
        }
        let mut buf = [0u8; 16];
        assert!(server.peek_sender().await?.is_unnamed());
        let (n, from) = server.recv_from(&mut buf).await?;
        assert_eq!((&buf[..n], from.is_unnamed()), (&[0u8; 5][..], true));
        let mut batch = cellio_net::unix::RecvBatch::new(4, 16);
        assert_eq!(server.recv_many(&mut batch).await?, 2);
        for (round, got) in (1u8..).zip(batch.iter()) {
            let (bytes, from) = got?;
            assert_eq!((bytes, from.is_unnamed()), (&[round; 5][..], true));
        }
        io::Result::Ok(())
    })
    .unwrap();
}

/// CPU time the calling thread has used so far.
fn thread_cpu() -> std::time::Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid `timespec` for the call to write.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) },
        0
    );
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A send by address to a bound peer whose queue is full waits without
/// spinning, through `send_to`, a batch's `send_many` and a
/// `UnixDatagramIo`, and completes once the peer drains. Linux gives no
/// wake-up for that case (only for a connected peer), so it retries on a
/// delay. (Each failed send raised a write-space event on the sender, the
/// send took it for room, failed again, and so on: 100% of the worker's
/// CPU while it waited; found by a review.)
#[test]
fn a_send_by_address_to_a_full_peer_waits_without_spinning() {
    use cellio_net::unix::{SendBatch, UnixDatagramIo};
    use cellio_runtime::{sleep, spawn_local, timeout};
    use std::time::Duration;
    let dir = SocketDir::new();
    let path = dir.path("server.sock");
    // One worker: the waiting send runs on this thread, whose CPU time is
    // measured.
    run_with(Builder::new().workers(1), move || async move {
        let server = UnixDatagram::bind(&path)?;
        let filler = UnixDatagram::unbound()?;
        filler.connect(&path)?;
        let mut buf = [0u8; 8];
        let mut used = Vec::new();
        for way in ["send_to", "send_many", "UnixDatagramIo::send_to"] {
            let filled = fill_datagram_queue(&filler)?;
            let client = UnixDatagram::unbound()?;
            let to = path.clone();
            let sender = spawn_local(async move {
                match way {
                    "send_to" => client.send_to(b"mine", &to).await.map(drop),
                    "send_many" => {
                        let mut batch = SendBatch::new();
                        batch.push(b"mine", std::os::unix::net::SocketAddr::from_pathname(&to)?)?;
                        client.send_many(&mut batch).await.map(drop)
                    }
                    _ => UnixDatagramIo::new(client)
                        .send_to(b"mine", &to)
                        .await
                        .map(drop),
                }
            });
            let before = thread_cpu();
            sleep(Duration::from_millis(300)).await;
            let busy = thread_cpu() - before;
            assert!(
                !sender.is_finished(),
                "{way}: the queue is full: the send waits"
            );
            for _ in 0..filled {
                server.recv(&mut buf).await?;
            }
            timeout(Duration::from_secs(5), sender)
                .await
                .expect("the send completes once the peer drained")
                .unwrap()?;
            let n = timeout(Duration::from_secs(5), server.recv(&mut buf)).await??;
            assert_eq!(&buf[..n], b"mine", "{way}");
            used.push((way, busy));
        }
        assert!(
            used.iter()
                .all(|(_, busy)| *busy < Duration::from_millis(50)),
            "CPU the worker used while each send waited 300 ms: {used:?}"
        );
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_datagram_longer_than_the_buffer_is_an_error_and_the_next_arrives_whole() {
    run(|| async {
        let (a, b) = UnixDatagram::pair()?;
        let long: Vec<u8> = (0..1000).map(pattern).collect();
        a.send(&long).await?;
        a.send(b"short").await?;
        let mut buf = [0u8; 100];
        let err = b.recv(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err:?}");
        assert!(err.to_string().contains("SO_SNDBUF"), "{err}");
        assert_eq!(buf[..], long[..100], "the first bytes are in the buffer");
        let (n, _) = b.recv_from(&mut buf).await?;
        assert_eq!(&buf[..n], b"short");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_receive_parks_until_a_datagram_comes() {
    run(|| async {
        let (a, b) = UnixDatagram::pair()?;
        let mut buf = [0u8; 16];
        {
            let mut recv = pin!(b.recv(&mut buf));
            assert!(poll_once(recv.as_mut()).await.is_pending());
            a.send(b"late").await?;
            assert_eq!(recv.await?, 4);
        }
        assert_eq!(&buf[..4], b"late");
        let stats = b.stats();
        assert_eq!((stats.recv_parked, stats.recv_sync), (1, 0), "{stats:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

/// A Unix datagram socket never drops for lack of room: a sender to a full
/// peer waits, and every datagram arrives, in order. (The kernel reports the
/// sender writable again only once most of its buffered bytes are read, so
/// the parked send completes while the receiver drains, not after one
/// read.)
#[test]
fn a_send_to_a_full_peer_waits_and_nothing_is_lost() {
    run(|| async {
        let (a, b) = UnixDatagram::pair()?;
        let sent = fill_datagram_queue(&a)?;
        let next = sent.to_le_bytes();
        let mut send = pin!(a.send(&next));
        assert!(
            poll_once(send.as_mut()).await.is_pending(),
            "the queue is full"
        );
        let (sent_late, received) = join2(send, recv_numbered(&b, sent)).await;
        assert_eq!(sent_late?, 4);
        received?;
        assert_eq!(a.stats().send_parked, 1, "{:?}", a.stats());
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn bad_destinations_and_no_peer_are_clear_errors() {
    let dir = SocketDir::new();
    let missing = dir.path("nobody.sock");
    let too_long = dir.path(&"z".repeat(200));
    run(move || async move {
        let socket = UnixDatagram::unbound()?;
        let err = socket.send(b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected, "{err:?}");
        assert!(err.to_string().contains("send_to"), "{err}");
        let err = socket.send_to(b"x", &missing).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err:?}");
        let err = socket.send_to(b"x", &too_long).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        let err = UnixDatagram::bind(&too_long).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        let err = socket.connect(&missing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err:?}");
        io::Result::Ok(())
    })
    .unwrap();
    assert!(
        UnixDatagram::unbound().is_err(),
        "outside a runtime: an error"
    );
}

/// A path with a NUL byte is refused by `send_to` and `try_send_to` with
/// `InvalidInput`, as `bind`, `connect` and `std` refuse it: the kernel
/// reads a path only up to its first NUL, so `dir/a\0b` would go to the
/// socket at `dir/a`, and on Linux `\0name` to the abstract name `name`.
/// (Both were sent there; found by a review.)
#[test]
fn a_path_with_a_nul_byte_is_refused_not_sent_to_another_socket() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = SocketDir::new();
    let a = dir.path("a");
    let mut with_nul = a.clone().into_os_string();
    with_nul.push(OsStr::from_bytes(b"\0b"));
    run(move || async move {
        let server = UnixDatagram::bind(&a)?;
        let client = UnixDatagram::unbound()?;
        let std_client = std::os::unix::net::UnixDatagram::unbound()?;
        #[cfg_attr(
            not(any(target_os = "linux", target_os = "android")),
            allow(unused_mut)
        )]
        let mut paths = vec![std::path::PathBuf::from(with_nul)];
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let _abstract_server = {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("cellio-nul-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name)?;
            paths.push(OsStr::from_bytes(format!("\0{name}").as_bytes()).into());
            UnixDatagram::bind_addr(&addr)?
        };
        for path in &paths {
            let std_err = std_client.send_to(b"std", path).unwrap_err();
            assert_eq!(std_err.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(
                client.connect(path).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
            let sent = client.send_to(b"future", path).await;
            assert!(
                matches!(&sent, Err(e) if e.kind() == io::ErrorKind::InvalidInput),
                "send_to {path:?}: {sent:?}"
            );
            let tried = client.try_send_to(b"try", path);
            assert!(
                matches!(&tried, Err(e) if e.kind() == io::ErrorKind::InvalidInput),
                "try_send_to {path:?}: {tried:?}"
            );
        }
        assert_eq!(
            server.try_recv(&mut [0u8; 16]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(
            _abstract_server
                .try_recv(&mut [0u8; 16])
                .unwrap_err()
                .kind(),
            io::ErrorKind::WouldBlock
        );
        io::Result::Ok(())
    })
    .unwrap();
}

/// Binding an empty path is an error that says so, not a random autobound
/// abstract name nobody can send to.
#[test]
fn binding_an_empty_path_is_refused_not_autobound() {
    run(|| async {
        let err = UnixDatagram::bind("").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        let message = err.to_string();
        assert!(message.contains("empty Unix socket path"), "{message}");
        assert!(message.contains("UnixDatagram::bind_addr"), "{message}");
        io::Result::Ok(())
    })
    .unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn abstract_names_send_and_report_their_sender() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let pid = std::process::id();
    run(move || async move {
        let server_addr = SocketAddr::from_abstract_name(format!("cellio-dg-s-{pid}"))?;
        let client_addr = SocketAddr::from_abstract_name(format!("cellio-dg-c-{pid}"))?;
        let server = UnixDatagram::bind_addr(&server_addr)?;
        let client = UnixDatagram::bind_addr(&client_addr)?;
        client.send_to_addr(b"abstract", &server_addr).await?;
        let mut buf = [0u8; 16];
        let (n, from) = server.recv_from(&mut buf).await?;
        assert_eq!(&buf[..n], b"abstract");
        assert_eq!(from.as_abstract_name(), client_addr.as_abstract_name());
        server.send_to_addr(b"back", &from).await?;
        assert_eq!(client.recv(&mut buf).await?, 4);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_socket_moves_to_another_worker() {
    run_with(Builder::new().workers(2), || async {
        let (a, b) = UnixDatagram::pair()?;
        a.send(b"queued before the move").await?;
        let moved = b.into_std()?;
        let got = spawn_on(1, async move {
            let b = UnixDatagram::from_std(moved)?;
            let mut buf = [0u8; 32];
            let first = b.recv(&mut buf).await?;
            let mut out = buf[..first].to_vec();
            let second = b.recv(&mut buf).await?;
            out.extend_from_slice(&buf[..second]);
            io::Result::Ok(out)
        });
        a.send(b", and after").await?;
        assert_eq!(got.await.unwrap()?, b"queued before the move, and after");
        io::Result::Ok(())
    })
    .unwrap();
}

/// A socket connected to a peer X whose queue is full sends by address
/// to another peer Y, full too, which drains 100 ms later (X never reads):
/// through `send_to`, a batch's `send_many` and a `UnixDatagramIo`, the
/// send goes once Y has room. (Linux's `POLLOUT` on a connected socket is
/// X's room, so the send took "not writable" for "room will be
/// announced", parked on write interest, which only X's room raises, and
/// waited for X for ever; now a send by address on a connected socket
/// retries on the backoff, as an unconnected one does; found by a review.)
#[test]
fn a_send_by_address_from_a_socket_connected_to_a_full_peer_waits_for_its_own_peer() {
    use cellio_net::unix::{SendBatch, UnixDatagramIo};
    use cellio_runtime::{sleep, spawn_local, timeout};
    use std::time::Duration;
    let dir = SocketDir::new();
    let (x_path, y_path) = (dir.path("x.sock"), dir.path("y.sock"));
    for way in ["send_to", "send_many", "UnixDatagramIo::send_to"] {
        let (x_path, y_path) = (x_path.clone(), y_path.clone());
        let _ = std::fs::remove_file(&x_path);
        let _ = std::fs::remove_file(&y_path);
        run(move || async move {
            let _x = UnixDatagram::bind(&x_path)?;
            let y = UnixDatagram::bind(&y_path)?;
            let filler = UnixDatagram::unbound()?;
            filler.connect(&y_path)?;
            fill_datagram_queue(&filler)?;
            let client = UnixDatagram::unbound()?;
            client.connect(&x_path)?;
            fill_datagram_queue(&client)?;
            let drain = spawn_local(async move {
                sleep(Duration::from_millis(100)).await;
                let mut buf = [0u8; 16];
                while y.try_recv(&mut buf).is_ok() {}
                y
            });
            let send = async {
                match way {
                    "send_to" => client.send_to(b"to y", &y_path).await.map(drop),
                    "send_many" => {
                        let mut batch = SendBatch::new();
                        let to = std::os::unix::net::SocketAddr::from_pathname(&y_path)?;
                        batch.push(b"to y", to)?;
                        client.send_many(&mut batch).await.map(drop)
                    }
                    _ => {
                        let mut io = UnixDatagramIo::new(client);
                        io.send_to(b"to y", &y_path).await.map(drop)
                    }
                }
            };
            let sent = timeout(Duration::from_secs(3), send).await;
            let y = drain.await.unwrap();
            assert!(
                matches!(sent, Ok(Ok(()))),
                "{way}: after Y drained: {sent:?}"
            );
            let mut buf = [0u8; 16];
            assert_eq!(y.try_recv(&mut buf)?, 4, "{way}");
            io::Result::Ok(())
        })
        .unwrap();
    }
}

/// A buffer size of 4 GiB or more gets the kernel's cap, as `usize::MAX`
/// does: the option is a C `int`, and socket2's `as` kept the low 32 bits
/// (4 GiB set the minimum buffer; found by a review).
#[cfg(target_pointer_width = "64")]
#[test]
fn a_huge_buffer_size_gets_the_cap_not_its_low_bits() {
    run(|| async {
        let (a, _b) = UnixDatagram::pair()?;
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

/// The caller's own send by address (`sendto` through
/// `try_io(Interest::WRITABLE, ..)`) that found its destination `q` full
/// records nothing, as `try_send_to`'s `WouldBlock` does not: no event
/// would announce `q`'s room. So `writable()` completes at once (the docs:
/// a loop backs off itself), and a `send()` to the connected peer `p`,
/// which has room, goes at once. (`try_io` marked the send cell full, and
/// the send waited until `q` read; found by a review.)
#[test]
fn a_connected_send_is_not_held_up_by_try_io_sending_by_address_to_a_full_peer() {
    use std::os::fd::{AsRawFd, RawFd};
    use std::time::Duration;

    use cellio_net::Interest;

    fn own_send_to(fd: RawFd, buf: &[u8], to: &socket2::SockAddr) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of its length, `to` is a valid
        // address of `to.len()` bytes, and `fd` is open while the caller's
        // socket lives.
        let n = unsafe {
            libc::sendto(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
                to.as_ptr().cast(),
                to.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    run(|| async {
        let dir = SocketDir::new();
        let (p_path, q_path) = (dir.path("p"), dir.path("q"));
        let p = UnixDatagram::bind(&p_path)?;
        let _q = UnixDatagram::bind(&q_path)?;
        let q_addr = socket2::SockAddr::unix(&q_path)?;
        let ours = UnixDatagram::unbound()?;
        ours.connect(&p_path)?;
        let fd = ours.as_raw_fd();
        // Datagrams large enough that `q`'s full queue holds more than a
        // quarter of our send buffer (so the kernel says we are not
        // writable), small enough that our own buffer does not fill first.
        let qlen: usize = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")?
            .trim()
            .parse()
            .unwrap();
        let big = vec![1u8; ours.send_buffer_size()? / (2 * (qlen + 1))];
        let mut sent = 0;
        loop {
            match ours.try_io(Interest::WRITABLE, || own_send_to(fd, &big, &q_addr)) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        assert!(sent > 0);
        assert!(
            poll_once(pin!(ours.writable())).await.is_ready(),
            "writable() waits for q's room, which no event announces"
        );
        let sent_to_p = cellio_runtime::timeout(Duration::from_secs(5), ours.send(b"to p"))
            .await
            .expect("send() to the connected peer, which has room, goes at once")?;
        assert_eq!(sent_to_p, 4);
        let mut buf = [0u8; 8];
        assert_eq!(p.recv(&mut buf).await?, 4);
        io::Result::Ok(())
    })
    .unwrap();
}

/// One task's send is parked on a socket connected to a full peer;
/// another task shuts the socket's writing side down. The parked send ends
/// with `BrokenPipe`, as a send made now would. (It stayed parked until the
/// peer read: Linux raises no event for a socket's own shutdown; found by a
/// review.)
#[test]
fn a_parked_send_ends_with_broken_pipe_when_its_socket_shuts_down_writing() {
    use std::cell::Cell;
    use std::net::Shutdown;
    use std::rc::Rc;
    use std::time::Duration;
    let dir = SocketDir::new();
    let path = dir.path("full.sock");
    run(move || async move {
        let _full = UnixDatagram::bind(&path)?;
        let a = Rc::new(UnixDatagram::unbound()?);
        a.connect(&path)?;
        assert!(fill_datagram_queue(&a)? > 0);
        let parked = Rc::new(Cell::new(false));
        let (sender, told) = (a.clone(), parked.clone());
        let send = cellio_runtime::spawn_local(async move {
            let mut send = pin!(sender.send(b"one more"));
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

/// One task's receive is parked; another task shuts the socket's receiving
/// side down. The receive ends with 0, as `std`'s blocking receive returns
/// at once on such a socket (checked first), and so does every receive
/// after it, once what was queued before the shutdown is taken: `recv`,
/// `recv_from` and `peek_sender` (an unnamed sender), `recv_with_fds`, and
/// `recv_many` (no datagram). (The receive stayed parked for ever: Linux's
/// non-blocking receive says `EAGAIN` there, and no event follows the
/// shutdown's; found by a review.)
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn a_parked_receive_ends_with_0_when_its_socket_shuts_down_reading() {
    use std::cell::Cell;
    use std::net::Shutdown;
    use std::rc::Rc;
    use std::time::Duration;
    let (s, _t) = std::os::unix::net::UnixDatagram::pair().unwrap();
    s.shutdown(Shutdown::Read).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(s.recv(&mut [0u8; 8]).unwrap(), 0, "std's blocking recv");
    run(|| async {
        let limit = Duration::from_secs(5);
        let (a, _b) = UnixDatagram::pair()?;
        let a = Rc::new(a);
        let parked = Rc::new(Cell::new(false));
        let (receiver, told) = (a.clone(), parked.clone());
        let recv = cellio_runtime::spawn_local(async move {
            let mut buf = [0u8; 8];
            let mut recv = pin!(receiver.recv(&mut buf));
            assert!(poll_once(recv.as_mut()).await.is_pending());
            told.set(true);
            recv.await
        });
        while !parked.get() {
            cellio_runtime::yield_now().await;
        }
        a.shutdown(Shutdown::Read)?;
        match cellio_runtime::timeout(limit, recv).await {
            Ok(Ok(Ok(0))) => {}
            other => panic!("the parked recv after shutdown(Read): {other:?}"),
        }

        // A datagram queued before the shutdown comes first.
        let (c, d) = UnixDatagram::pair()?;
        d.send(b"before").await?;
        c.shutdown(Shutdown::Read)?;
        let mut buf = [0u8; 8];
        let n = cellio_runtime::timeout(limit, c.recv(&mut buf)).await??;
        assert_eq!(&buf[..n], b"before");
        for socket in [&*a, &c] {
            let n = cellio_runtime::timeout(limit, socket.recv(&mut buf)).await??;
            assert_eq!(n, 0);
            let (n, from) = cellio_runtime::timeout(limit, socket.recv_from(&mut buf)).await??;
            assert_eq!((n, from.is_unnamed()), (0, true));
            let from = cellio_runtime::timeout(limit, socket.peek_sender()).await??;
            assert!(from.is_unnamed());
            let mut fds = Vec::new();
            let got =
                cellio_runtime::timeout(limit, socket.recv_with_fds(&mut buf, &mut fds)).await??;
            assert_eq!((got.bytes, got.fds), (0, 0));
            let mut batch = cellio_net::unix::RecvBatch::new(4, 16);
            let n = cellio_runtime::timeout(limit, socket.recv_many(&mut batch)).await??;
            assert_eq!((n, batch.iter().count()), (0, 0));
        }
        io::Result::Ok(())
    })
    .unwrap();
}
