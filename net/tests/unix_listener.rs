//! `UnixListener`: binding (and the errors of a path in use, too long,
//! empty, or in a missing directory; autobind only when asked for), accepting many clients, an accept that parks
//! and one dropped while parked, `from_std`, and the socket file a dropped
//! listener leaves.

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
