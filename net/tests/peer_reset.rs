//! A peer that resets the connection: operations fail (or see end of
//! stream) instead of hanging, writes never raise `SIGPIPE` (`send_file`
//! and the splices can: see their docs), and the runtime keeps serving
//! other connections.
//!
//! Every test first restores `SIGPIPE`'s default action (terminate): Rust
//! binaries ignore it, which would hide a write that raises it. If any
//! write here raised `SIGPIPE`, the whole test binary would die.

mod util;

use std::io::{self, Read, Write};
use std::time::Duration;

use cellio_net::TcpStream;
use util::{
    default_sigpipe, fill_send_buffer, poll_once, run, run_within, spawn_echo_server, std_peer,
};

fn reset(peer: std::net::TcpStream) {
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(peer); // close with linger 0: the kernel sends RST
}

fn is_reset_kind(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// An echo round trip on a fresh connection: the runtime still serves.
async fn echo_still_works(addr: std::net::SocketAddr) -> io::Result<()> {
    let client = TcpStream::connect(addr).await?;
    let msg: Vec<u8> = (0..50_000).map(util::pattern).collect();
    let mut back = vec![0u8; msg.len()];
    let (sent, got) = util::join2(client.send_all(&msg), client.recv_exact(&mut back)).await;
    sent?;
    got?;
    assert!(back == msg, "echo after a reset differs");
    Ok(())
}

#[test]
fn reset_while_parked_in_recv_fails_the_recv_and_later_sends_without_sigpipe() {
    default_sigpipe();
    run(|| async {
        let echo = spawn_echo_server()?;
        let (ours, peer) = std_peer().await?;
        let resetter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            reset(peer);
        });
        let mut buf = [0u8; 64];
        match ours.recv(&mut buf).await {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e:?}"),
            Ok(n) => assert_eq!(n, 0, "a reset peer sent nothing"),
        }
        resetter.join().unwrap();

        // Writing to the reset connection fails, and (SIGPIPE is at its
        // default action) does not kill the process.
        let err = ours
            .send(b"after the reset")
            .await
            .expect_err("peer is gone");
        assert!(is_reset_kind(err.kind()), "{err:?}");
        let err = ours
            .send_all(&[7u8; 100_000])
            .await
            .expect_err("peer is gone");
        assert!(is_reset_kind(err.kind()), "{err:?}");
        // try_send too.
        let err = ours.try_send(b"x").expect_err("peer is gone");
        assert!(is_reset_kind(err.kind()), "{err:?}");

        // Reads after the reset do not hang either.
        match ours.recv(&mut buf).await {
            Ok(0) => {}
            Ok(n) => panic!("read {n} bytes from a reset connection"),
            Err(e) => assert!(is_reset_kind(e.kind()), "{e:?}"),
        }

        echo_still_works(echo).await
    })
    .unwrap();
}

#[test]
fn reset_while_parked_in_send_fails_the_send() {
    default_sigpipe();
    run(|| async {
        let echo = spawn_echo_server()?;
        let (ours, peer) = std_peer().await?;
        fill_send_buffer(&ours);
        let more = vec![1u8; 1 << 20];
        let mut op = Box::pin(ours.send_all(&more));
        assert!(poll_once(op.as_mut()).await.is_pending(), "buffer is full");
        let resetter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            reset(peer);
        });
        let err = op.as_mut().await.expect_err("peer reset");
        drop(op);
        assert!(is_reset_kind(err.kind()), "{err:?}");
        resetter.join().unwrap();
        echo_still_works(echo).await
    })
    .unwrap();
}

#[test]
fn peer_closing_with_unread_data_resets_and_recv_fails() {
    default_sigpipe();
    run(|| async {
        let (ours, peer) = std_peer().await?;
        // The peer never reads this; closing with unread data makes the
        // kernel answer with RST instead of FIN.
        ours.send_all(&[9u8; 10_000]).await?;
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            drop(peer);
        });
        let mut buf = [0u8; 64];
        match ours.recv(&mut buf).await {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e:?}"),
            Ok(n) => assert_eq!(n, 0),
        }
        closer.join().unwrap();
        let mut failures = 0;
        for _ in 0..3 {
            if ours.send(b"more").await.is_err() {
                failures += 1;
            }
        }
        assert!(failures > 0, "sending to a reset peer kept succeeding");
        io::Result::Ok(())
    })
    .unwrap();
}

/// The peer sends a little, then resets; both have reached our socket and
/// the reactor has already reported them before we read. The first read is
/// short (or the reset); the next operation must see the reset (or end of
/// stream), not park waiting for an event that already came.
#[test]
fn reset_already_reported_after_a_short_read_is_still_seen() {
    default_sigpipe();
    run_within(Duration::from_secs(3), || async {
        let (ours, mut peer) = std_peer().await?;
        peer.write_all(b"hi")?;
        util::wait_buffered(&ours, 2);
        reset(peer);
        util::wait_read_closed(&ours);
        cellio_runtime::yield_now().await;
        cellio_runtime::yield_now().await;
        let mut buf = [0u8; 64];
        let mut saw_end = false;
        for _ in 0..3 {
            match ours.recv(&mut buf).await {
                Ok(0) | Err(_) => {
                    saw_end = true;
                    break;
                }
                Ok(n) => assert_eq!(&buf[..n], b"hi"),
            }
        }
        assert!(saw_end, "the reset was never reported");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn many_resets_in_a_row_leave_the_runtime_serving() {
    default_sigpipe();
    run(|| async {
        let echo = spawn_echo_server()?;
        for round in 0..20 {
            // Reset echo connections from the std side mid-stream.
            let mut peer = std::net::TcpStream::connect(echo)?;
            peer.set_read_timeout(Some(Duration::from_secs(5)))?;
            peer.write_all(&[round as u8; 1000])?;
            let mut some = [0u8; 10];
            // Wait until the echo server has answered (so it is mid-loop,
            // maybe with more to send), then reset under it. The std read
            // blocks this thread; the echo task runs once we yield.
            let reader = std::thread::spawn(move || peer.read_exact(&mut some).map(|_| peer));
            let peer = loop {
                cellio_runtime::yield_now().await;
                if reader.is_finished() {
                    break reader.join().unwrap()?;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            reset(peer);
        }
        echo_still_works(echo).await
    })
    .unwrap();
}
