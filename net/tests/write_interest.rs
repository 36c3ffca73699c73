//! Write interest on demand: accepted streams are registered for reading
//! only, and write interest is added the first time a send finds the socket
//! full. These tests check that this first wait (and every later one) is
//! woken, on fresh streams of every origin, with every byte intact.

mod util;

use std::io::{self, Read};
use std::pin::pin;
use std::time::Duration;

use cellio_net::{TcpListener, TcpStream};
use util::{drain_checking, fill_send_buffer, pattern, poll_once, run, std_peer};

/// Reads slowly, so that the sender fills its buffer and parks many times.
fn drain_slowly(peer: &mut std::net::TcpStream) -> io::Result<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = peer.read(&mut buf)?;
        if n == 0 {
            return Ok(all);
        }
        all.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn an_accepted_streams_first_full_send_is_woken_when_the_peer_drains() {
    run(|| async {
        // Each round is a fresh accepted stream whose first ever wait is on
        // a full send buffer.
        for round in 0..20 {
            let (ours, mut peer) = std_peer().await?;
            let filled = fill_send_buffer(&ours);
            assert!(filled > 0, "round {round}");
            let before = ours.stats().send_parked;
            let tail: Vec<u8> = (filled..filled + 4096).map(pattern).collect();
            let mut send = pin!(ours.send_all(&tail));
            // Parked on the full buffer before the peer starts reading.
            assert!(poll_once(send.as_mut()).await.is_pending(), "round {round}");
            let reader = std::thread::spawn(move || drain_checking(&mut peer));
            send.await?;
            assert!(ours.stats().send_parked > before, "round {round}");
            ours.shutdown(std::net::Shutdown::Write)?;
            assert_eq!(reader.join().unwrap()?, filled + 4096, "round {round}");
        }
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_bulk_send_to_a_slow_reader_arrives_intact() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        // Small fixed buffers on both sides: loopback autotuning can grow
        // them to hold all 4 MiB at once (receive up to tcp_rmem's 32 MiB),
        // and then the sender never has to wait, which is what this test
        // is about.
        socket2::SockRef::from(&peer).set_recv_buffer_size(64 * 1024)?;
        ours.set_send_buffer_size(64 * 1024)?;
        let data: Vec<u8> = (0..4 * 1024 * 1024).map(pattern).collect();
        let reader = std::thread::spawn(move || drain_slowly(&mut peer));
        ours.send_all(&data).await?;
        ours.shutdown(std::net::Shutdown::Write)?;
        let got = reader.join().unwrap()?;
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes corrupted or reordered");
        assert!(ours.stats().send_parked > 0, "the sender never waited");
        io::Result::Ok(())
    })
    .unwrap();
}

/// Fills `from`'s send buffer, then sends a tail (which must wait) while
/// `to` receives everything; checks the bytes and that the tail parked.
async fn fill_then_drain(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
    let filled = fill_send_buffer(from);
    let before = from.stats().send_parked;
    let tail: Vec<u8> = (filled..filled + 4096).map(pattern).collect();
    let mut got = vec![0u8; filled + tail.len()];
    let mut send = pin!(from.send_all(&tail));
    assert!(
        poll_once(send.as_mut()).await.is_pending(),
        "the buffer is full"
    );
    let (sent, received) = util::join2(send, to.recv_exact(&mut got)).await;
    sent?;
    received?;
    for (i, &byte) in got.iter().enumerate() {
        assert_eq!(byte, pattern(i), "byte {i} corrupted");
    }
    assert!(from.stats().send_parked > before, "the tail never waited");
    Ok(())
}

#[test]
fn connected_and_accepted_cellio_streams_both_wait_for_space() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (connected, accepted) = util::join2(TcpStream::connect(addr), listener.accept()).await;
        let (connected, (accepted, _)) = (connected?, accepted?);
        fill_then_drain(&connected, &accepted).await?;
        fill_then_drain(&accepted, &connected).await?;
        io::Result::Ok(())
    })
    .unwrap();
}
