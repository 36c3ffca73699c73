//! `UnixListener`: binding (and the errors of a path in use, too long,
//! empty, or in a missing directory; autobind only when asked for), accepting many clients, an accept that parks
//! and one dropped while parked, `poll_accept`, `from_std` and `into_std`, the socket file a dropped
//! listener leaves, and the peer address an accept reports (unnamed, a
//! path, a path of all of `sun_path`, an abstract name).

mod util;

use std::io::{self, Read, Write};
use std::pin::pin;
use std::time::Duration;

use cellio_net::unix::{UnixListener, UnixStream};
use cellio_runtime::spawn;
use util::{pattern, poll_once, run, SocketDir};

#[test]
fn many_blocking_clients_are_each_served_byte_exact() {
    const CLIENTS: usize = 64;
    let dir = SocketDir::new();
    let path = dir.path("many.sock");
    run(move || async move {
        let listener = UnixListener::bind(&path)?;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let path = path.clone();
                std::thread::spawn(move || -> io::Result<()> {
                    let mut stream = std::os::unix::net::UnixStream::connect(&path)?;
                    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let msg: Vec<u8> = (0..1000 + c).map(|i| pattern(i * 7 + c)).collect();
                    stream.write_all(&msg)?;
                    let mut back = vec![0u8; msg.len()];
                    stream.read_exact(&mut back)?;
                    assert!(back == msg, "client {c}: the echo differs");
                    Ok(())
                })
            })
            .collect();
        let mut served = Vec::new();
        for _ in 0..CLIENTS {
            let (stream, _) = listener.accept().await?;
            served.push(spawn(async move {
                let mut buf = [0u8; 512];
                loop {
                    match stream.recv(&mut buf).await? {
                        0 => return io::Result::Ok(()),
                        n => stream.send_all(&buf[..n]).await?,
                    }
                }
            }));
        }
        // Each task ends when its client, done, closes (joining a client
        // first would block the thread the tasks run on).
        for task in served {
            task.await.unwrap()?;
        }
        for client in clients {
            client.join().unwrap()?;
        }
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn an_accept_parks_until_a_client_connects() {
    let dir = SocketDir::new();
    let path = dir.path("park.sock");
    run(move || async move {
        let listener = UnixListener::bind(&path)?;
        let mut accept = pin!(listener.accept());
        assert!(poll_once(accept.as_mut()).await.is_pending());
        let client = UnixStream::connect(&path).await?;
        let (server, _) = accept.await?;
        client.send_all(b"x").await?;
        let mut buf = [0u8; 1];
        server.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"x");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn an_accept_dropped_while_parked_leaves_the_connection_queued() {
    let dir = SocketDir::new();
    let path = dir.path("cancel.sock");
    run(move || async move {
        let listener = UnixListener::bind(&path)?;
        {
            let mut accept = pin!(listener.accept());
            assert!(poll_once(accept.as_mut()).await.is_pending());
        }
        let client = UnixStream::connect(&path).await?;
        client.send_all(b"queued").await?;
        let (server, _) = listener.accept().await?;
        let mut buf = [0u8; 6];
        server.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"queued");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn binding_errors_say_what_is_wrong() {
    let dir = SocketDir::new();
    let taken = dir.path("taken.sock");
    let too_long = dir.path(&"y".repeat(200));
    let no_dir = dir.path("missing-dir").join("x.sock");
    run(move || async move {
        let first = UnixListener::bind(&taken)?;
        let err = UnixListener::bind(&taken).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err:?}");
        // Dropping the listener leaves its file, so the path stays taken...
        drop(first);
        assert!(taken.exists(), "the socket file was removed");
        let err = UnixListener::bind(&taken).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err:?}");
        // ...until it is removed.
        std::fs::remove_file(&taken)?;
        let again = UnixListener::bind(&taken)?;
        assert_eq!(again.local_addr()?.as_pathname(), Some(taken.as_path()));

        let err = UnixListener::bind(&too_long).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        let err = UnixListener::bind(&no_dir).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

/// An empty path (a setting left unset) is an error that says so: the
/// kernel would take its address as a request to autobind a random abstract
/// name, and the listener would listen where nobody can find it. Asked for
/// through `bind_addr` with an unnamed address, autobind still happens.
#[test]
fn an_empty_path_is_refused_not_autobound() {
    run(|| async {
        let err = UnixListener::bind("").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        let message = err.to_string();
        assert!(message.contains("empty Unix socket path"), "{message}");
        assert!(message.contains("UnixListener::bind_addr"), "{message}");

        let unnamed = std::os::unix::net::UnixDatagram::unbound()?.local_addr()?;
        assert!(unnamed.is_unnamed());
        let autobound = UnixListener::bind_addr(&unnamed)?;
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = autobound.local_addr()?;
            assert!(name.as_abstract_name().is_some(), "{name:?}");
        }
        drop(autobound);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn outside_a_runtime_binding_errs_instead_of_panicking() {
    let dir = SocketDir::new();
    let err = UnixListener::bind(dir.path("none.sock")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Other, "{err:?}");
}

#[test]
fn a_std_listener_is_adopted() {
    let dir = SocketDir::new();
    let path = dir.path("std.sock");
    let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    run(move || async move {
        let listener = UnixListener::from_std(std_listener)?;
        assert!(format!("{listener:?}").starts_with("UnixListener"));
        let client = UnixStream::connect(&path).await?;
        let (server, _) = listener.accept().await?;
        server.send_all(b"adopted").await?;
        let mut buf = [0u8; 7];
        client.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"adopted");
        assert!(listener.take_error()?.is_none());
        io::Result::Ok(())
    })
    .unwrap();
}

/// A raw `sockaddr_un` holding `bytes` in `sun_path` as a C client fills
/// it (no NUL after a path that fills it, none after an abstract name),
/// and its length.
fn raw_unix_addr(bytes: &[u8]) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: all-zero is a valid `sockaddr_un`.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    assert!(bytes.len() <= addr.sun_path.len());
    for (to, from) in addr.sun_path.iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    let nul = usize::from(bytes.len() < addr.sun_path.len() && bytes.first() != Some(&0));
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + nul;
    (addr, len as libc::socklen_t)
}

/// A blocking Unix stream socket bound to the raw `sun_path` bytes `bind`
/// (as a C or Python client may bind them) and connected to `to`.
fn raw_client_bound_to(bind: &[u8], to: &std::path::Path) -> std::os::unix::net::UnixStream {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: a new socket, which we own at once.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0, "{}", io::Error::last_os_error());
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (addr, len) = raw_unix_addr(bind);
    // SAFETY: `addr` is a valid `sockaddr_un` of at least `len` bytes.
    let bound = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&addr).cast(), len) };
    assert_eq!(bound, 0, "bind: {}", io::Error::last_os_error());
    let (addr, len) = raw_unix_addr(to.as_os_str().as_bytes());
    // SAFETY: as above.
    let connected = unsafe { libc::connect(fd.as_raw_fd(), std::ptr::from_ref(&addr).cast(), len) };
    assert_eq!(connected, 0, "connect: {}", io::Error::last_os_error());
    fd.into()
}

/// A local client bound to a path of all 108 bytes of `sun_path` (Linux
/// binds one with no NUL after it; C and Python clients can): its
/// connection is accepted, its peer reported by that path, as the stream's
/// `peer_addr` reports it. (mio's accept, which cellio's used to be,
/// panicked on it, `sun_path[..109]` for the length 111 the kernel
/// reports: any local client could end the accepting task, and with it
/// `unix_echo_server`; found by a review.)
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn a_client_bound_to_a_path_of_all_of_sun_path_is_accepted_by_that_path() {
    use std::os::unix::ffi::OsStrExt;
    let dir = SocketDir::new();
    let server_path = dir.path("s.sock");
    // `SocketDir` leaves `ROOM` bytes for names, whatever TMPDIR is (a
    // long one made this overflow; found by a review).
    let fill = 108usize
        .checked_sub(dir.path("").as_os_str().len())
        .filter(|&fill| fill >= 2)
        .unwrap_or_else(|| panic!("no room for a name in {:?}", dir.path("")));
    let long = dir.path(&"c".repeat(fill));
    assert_eq!(long.as_os_str().len(), 108);
    run(move || async move {
        let listener = UnixListener::bind(&server_path)?;
        let mut client = raw_client_bound_to(long.as_os_str().as_bytes(), &server_path);
        let (server, peer) = listener.accept().await?;
        assert_eq!(peer.as_pathname(), Some(long.as_path()), "{peer:?}");
        assert_eq!(format!("{peer:?}"), format!("{:?}", server.peer_addr()?));
        client.write_all(b"hi")?;
        let mut buf = [0u8; 2];
        server.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"hi");
        // The listener goes on accepting.
        let _next = UnixStream::connect(&server_path).await?;
        assert!(listener.accept().await?.1.is_unnamed());
        io::Result::Ok(())
    })
    .unwrap();
}

/// An accept reports the client's address as the accepted stream's
/// `peer_addr` does: unnamed for a client that bound nothing, its path,
/// and on Linux its abstract name (NUL bytes in it included). (An
/// abstract name was reported unnamed, mio's accept taking any address
/// that starts with NUL for one; found by a review.)
#[test]
fn accept_reports_each_client_by_its_address_as_peer_addr_does() {
    use std::os::unix::ffi::OsStrExt;
    let dir = SocketDir::new();
    let server_path = dir.path("s.sock");
    let client_path = dir.path("client.sock");
    run(move || async move {
        let listener = UnixListener::bind(&server_path)?;
        let mut clients = vec![
            std::os::unix::net::UnixStream::connect(&server_path)?,
            raw_client_bound_to(client_path.as_os_str().as_bytes(), &server_path),
        ];
        let abstract_name = format!("\0cellio-accept-{}\0x", std::process::id());
        if cfg!(any(target_os = "linux", target_os = "android")) {
            clients.push(raw_client_bound_to(abstract_name.as_bytes(), &server_path));
        }
        let mut reported = Vec::new();
        for _ in &clients {
            let (server, peer) = listener.accept().await?;
            assert_eq!(format!("{peer:?}"), format!("{:?}", server.peer_addr()?));
            reported.push(peer);
        }
        assert!(reported[0].is_unnamed(), "{:?}", reported[0]);
        assert_eq!(reported[1].as_pathname(), Some(client_path.as_path()));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use std::os::linux::net::SocketAddrExt;
            assert_eq!(
                reported[2].as_abstract_name(),
                Some(&abstract_name.as_bytes()[1..])
            );
        }
        io::Result::Ok(())
    })
    .unwrap();
}

/// `poll_accept` (tokio's, which tokio-stream's `UnixListenerStream`
/// uses) takes a queued connection at once and waits for the next; while
/// it waits, `accept()` is busy, and no connection is lost.
#[test]
fn poll_accept_takes_a_queued_connection_and_waits_for_the_next() {
    let dir = SocketDir::new();
    let path = dir.path("poll.sock");
    run(move || async move {
        use std::future::poll_fn;
        use std::task::Poll;
        let listener = UnixListener::bind(&path)?;
        let first = UnixStream::connect(&path).await?;
        let (server, _) = poll_fn(|cx| listener.poll_accept(cx)).await?;
        first.send_all(b"1").await?;
        let mut buf = [0u8; 1];
        server.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"1");

        let once = poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await;
        assert!(once.is_pending(), "nothing queued yet");
        let busy = listener.accept().await.map(|(_, peer)| peer);
        assert_eq!(
            busy.map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::ResourceBusy)
        );
        let second = UnixStream::connect(&path).await?;
        let (server, _) = poll_fn(|cx| listener.poll_accept(cx)).await?;
        second.send_all(b"2").await?;
        server.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"2");
        io::Result::Ok(())
    })
    .unwrap();
}

/// `into_std` gives the descriptor back, non-blocking, with its backlog:
/// another worker wraps it with `from_std` and accepts the connection
/// that waited there.
#[test]
fn into_std_hands_the_listener_and_its_backlog_to_another_worker() {
    let dir = SocketDir::new();
    let path = dir.path("move.sock");
    util::run_with(
        cellio_runtime::Builder::new().workers(2),
        move || async move {
            let listener = UnixListener::bind(&path)?;
            let client = std::os::unix::net::UnixStream::connect(&path)?; // in the backlog
            let std_listener = listener.into_std()?;
            assert_eq!(
                std_listener.local_addr()?.as_pathname(),
                Some(path.as_path())
            );
            let accepted = cellio_runtime::spawn_on(1, async move {
                let listener = UnixListener::from_std(std_listener)?;
                let (server, _) = listener.accept().await?;
                server.send_all(b"moved").await?;
                let std_listener = listener.into_std()?;
                // Non-blocking still: nothing waits, so `WouldBlock`, not a hang.
                let idle = std_listener.accept().map(|_| ());
                assert_eq!(idle.map_err(|e| e.kind()), Err(io::ErrorKind::WouldBlock));
                io::Result::Ok(())
            });
            accepted.await.unwrap()?;
            let mut buf = [0u8; 5];
            (&client).read_exact(&mut buf)?;
            assert_eq!(&buf, b"moved");
            io::Result::Ok(())
        },
    )
    .unwrap();
}
