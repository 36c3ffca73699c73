//! Half close: `shutdown(Write)` sends FIN; the other side reads everything,
//! then 0 (end of stream), and can still answer.

mod util;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use cellio_net::TcpStream;
use util::{cellio_pair, pattern, run_within, std_peer, wait_buffered, wait_read_closed};

/// A test that is expected to finish in milliseconds; a hang shows quickly.
const SHORT: Duration = Duration::from_secs(3);

/// Reads until 0, returning everything read.
async fn read_to_end(stream: &TcpStream, chunk: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = stream.recv(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn server_reads_everything_then_eof_and_can_still_reply() {
    run_within(SHORT, || async {
        let (client, server) = cellio_pair().await?;
        let request: Vec<u8> = (0..300_000).map(pattern).collect();
        let server_task = async {
            let got = read_to_end(&server, 8192).await?;
            // The client's write side is closed; ours is open: reply.
            let reply = format!("got {} bytes", got.len());
            server.send_all(reply.as_bytes()).await?;
            server.shutdown(Shutdown::Write)?;
            io::Result::Ok(got)
        };
        let client_task = async {
            client.send_all(&request).await?;
            client.shutdown(Shutdown::Write)?;
            read_to_end(&client, 8192).await
        };
        let (got, reply) = util::join2(server_task, client_task).await;
        let got = got?;
        assert_eq!(got.len(), request.len());
        assert!(got == request, "request bytes differ");
        assert_eq!(reply?, b"got 300000 bytes");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn std_client_half_closes_and_reads_the_full_reply() {
    run_within(SHORT, || async {
        let (server, mut client) = std_peer().await?;
        let peer = std::thread::spawn(move || -> io::Result<Vec<u8>> {
            client.write_all(b"request body")?;
            client.shutdown(Shutdown::Write)?;
            let mut reply = Vec::new();
            client.read_to_end(&mut reply)?;
            Ok(reply)
        });
        let got = read_to_end(&server, 4096).await?;
        assert_eq!(got, b"request body");
        let reply: Vec<u8> = (0..1_000_000).map(pattern).collect();
        server.send_all(&reply).await?;
        drop(server);
        let back = peer.join().unwrap()?;
        assert_eq!(back.len(), reply.len());
        assert!(back == reply);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn recv_after_eof_keeps_returning_zero() {
    run_within(SHORT, || async {
        let (client, server) = cellio_pair().await?;
        client.shutdown(Shutdown::Write)?;
        let mut buf = [0u8; 64];
        for round in 0..5 {
            assert_eq!(server.recv(&mut buf).await?, 0, "round {round}");
            // Also after the reactor had a chance to run.
            cellio_runtime::yield_now().await;
        }
        // And the server can still send.
        server.send_all(b"still here").await?;
        let mut got = [0u8; 10];
        client.recv_exact(&mut got).await?;
        assert_eq!(&got, b"still here");
        io::Result::Ok(())
    })
    .unwrap();
}

/// The peer's data and its FIN are both already in the kernel, and the
/// reactor has already reported them (the event was consumed with nobody
/// parked), before we read. The first read is short (5 bytes into a 64-byte
/// buffer); the next one must see end of stream. No further readiness event
/// will ever come for this socket, so an operation that parks instead of
/// reading hangs forever.
#[test]
fn eof_already_reported_after_a_short_read_is_still_seen() {
    run_within(SHORT, || async {
        let (ours, mut peer) = std_peer().await?;
        peer.write_all(b"hello")?;
        peer.shutdown(Shutdown::Write)?;
        wait_buffered(&ours, 5);
        wait_read_closed(&ours);
        // Let the reactor turn: it delivers the (single, edge-triggered)
        // readiness event for the data and the FIN.
        cellio_runtime::yield_now().await;
        cellio_runtime::yield_now().await;

        let mut buf = [0u8; 64];
        let n = ours.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(
            ours.recv(&mut buf).await?,
            0,
            "end of stream after a short read"
        );
        io::Result::Ok(())
    })
    .unwrap();
}

/// The same as seen through `recv_exact`: a peer that sends less than asked
/// and closes must produce `UnexpectedEof`, not a hang.
#[test]
fn recv_exact_sees_eof_that_arrived_with_the_data() {
    run_within(SHORT, || async {
        let (ours, mut peer) = std_peer().await?;
        peer.write_all(b"12345")?;
        drop(peer);
        wait_read_closed(&ours);
        cellio_runtime::yield_now().await;
        let mut buf = [0u8; 10];
        let err = ours
            .recv_exact(&mut buf)
            .await
            .expect_err("the peer sent only 5 bytes");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(&buf[..5], b"12345");
        io::Result::Ok(())
    })
    .unwrap();
}

/// The typical echo loop: the peer sends one request and closes at once, so
/// data and FIN arrive together while our recv is parked. The woken recv
/// reads the request (a short read); the loop's next recv must return 0.
#[test]
fn echo_loop_ends_when_the_peer_sends_and_closes_at_once() {
    run_within(SHORT, || async {
        let (ours, mut peer) = std_peer().await?;
        let sender = std::thread::spawn(move || -> io::Result<Vec<u8>> {
            std::thread::sleep(Duration::from_millis(30));
            peer.write_all(b"one request")?;
            peer.shutdown(Shutdown::Write)?;
            let mut back = Vec::new();
            peer.read_to_end(&mut back)?;
            Ok(back)
        });
        let echoed = util::echo(ours).await?;
        assert_eq!(echoed, 11);
        assert_eq!(sender.join().unwrap()?, b"one request");
        io::Result::Ok(())
    })
    .unwrap();
}
