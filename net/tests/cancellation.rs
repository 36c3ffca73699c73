//! Dropping an operation future cancels it: the cell is released, the
//! stream stays usable, (for `recv` and `send`) no byte is lost or
//! duplicated, and a pending `connect` closes its half-open socket. So
//! does aborting the task that runs it (`JoinHandle::abort`).

mod util;

use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use cellio_runtime::yield_now;
use util::{drain_checking, fill_send_buffer, pattern, poll_once, run, std_peer};

/// Races `op` against `other`; whichever finishes first wins and the other
/// is dropped. `Ok` is `op`'s output, `Err` is `other`'s.
async fn select<A: Future, B: Future>(op: A, other: B) -> Result<A::Output, B::Output> {
    let mut op = pin!(op);
    let mut other = pin!(other);
    poll_fn(|cx| {
        if let Poll::Ready(v) = op.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if let Poll::Ready(v) = other.as_mut().poll(cx) {
            return Poll::Ready(Err(v));
        }
        Poll::Pending
    })
    .await
}

/// The peer sends round `round`'s message (its length and bytes vary with
/// the round); `ours` must receive exactly it.
async fn peer_sends_and_every_byte_arrives(
    ours: &cellio_net::TcpStream,
    peer: &mut std::net::TcpStream,
    round: usize,
) -> io::Result<()> {
    let msg: Vec<u8> = (0..100 + round).map(|i| pattern(i * (round + 1))).collect();
    peer.write_all(&msg)?;
    let mut got = vec![0u8; msg.len()];
    ours.recv_exact(&mut got).await?;
    assert!(got == msg, "round {round}: bytes lost or changed");
    Ok(())
}

/// Completes after `n` yields: a deadline measured in scheduler rounds.
async fn after_yields(n: usize) {
    for _ in 0..n {
        yield_now().await;
    }
}

#[test]
fn a_parked_recv_dropped_loses_no_byte() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut buf = [0u8; 4096];
        for round in 0..20 {
            {
                let mut op = Box::pin(ours.recv(&mut buf));
                assert!(poll_once(op.as_mut()).await.is_pending(), "round {round}");
                // Dropped while parked.
            }
            peer_sends_and_every_byte_arrives(&ours, &mut peer, round).await?;
        }
        io::Result::Ok(())
    })
    .unwrap();
}

/// A task parked in `recv` is aborted through its `JoinHandle`: its worker
/// drops the future, which gives the cell back; the stream, shared with
/// the task, then receives every byte the peer sends.
#[test]
fn a_task_aborted_while_its_recv_is_parked_loses_no_byte() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let ours = std::rc::Rc::new(ours);
        for round in 0..20usize {
            let stream = ours.clone();
            let task = cellio_runtime::spawn_local(async move {
                let mut buf = [0u8; 4096];
                stream.recv(&mut buf).await
            });
            yield_now().await;
            assert!(!task.is_finished(), "round {round}: nothing was sent yet");
            task.abort();
            assert!(
                matches!(task.await, Err(cellio_runtime::JoinError::Aborted)),
                "round {round}"
            );
            peer_sends_and_every_byte_arrives(&ours, &mut peer, round).await?;
        }
        io::Result::Ok(())
    })
    .unwrap();
}

/// `abort` only asks: until the aborted task's future is dropped, the recv
/// it was parked in still holds the receive direction, so a recv made
/// right after `abort` is refused with `ResourceBusy`, and the error says
/// why (an aborted task) and what to do (await its handle). Once the
/// handle has been awaited, the stream receives. (tokio has no such wait:
/// there "abort the reader, then read" reads at once; found by a review.)
#[test]
fn a_recv_right_after_aborting_the_reader_is_busy_until_the_handle_is_awaited() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let ours = std::rc::Rc::new(ours);
        let reader = cellio_runtime::spawn_local({
            let stream = ours.clone();
            async move {
                let mut buf = [0u8; 16];
                stream.recv(&mut buf).await
            }
        });
        yield_now().await;
        assert!(!reader.is_finished(), "nothing was sent yet");
        reader.abort();
        let mut buf = [0u8; 16];
        let refused = ours.recv(&mut buf).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ResourceBusy);
        let message = refused.to_string();
        assert!(
            message.contains("aborted task") && message.contains("JoinHandle"),
            "the error does not name the cause: {message}"
        );
        assert!(matches!(
            reader.await,
            Err(cellio_runtime::JoinError::Aborted)
        ));
        peer.write_all(b"hi")?;
        let n = ours.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"hi");
        io::Result::Ok(())
    })
    .unwrap();
}

/// The data arrives and the reactor notifies the parked recv, but the
/// future is dropped before it is polled again: the data must still be
/// there for the next recv.
#[test]
fn a_recv_dropped_after_being_woken_loses_no_byte() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut buf = [0u8; 64];
        {
            let mut op = Box::pin(ours.recv(&mut buf));
            assert!(poll_once(op.as_mut()).await.is_pending());
            peer.write_all(b"arrived while parked")?;
            util::wait_buffered(&ours, 20);
            // The reactor turns and wakes us; we drop instead of polling.
            yield_now().await;
            yield_now().await;
        }
        let mut got = [0u8; 20];
        ours.recv_exact(&mut got).await?;
        assert_eq!(&got, b"arrived while parked");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_recv_that_loses_a_race_is_cancelled_cleanly() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut buf = [0u8; 256];

        // Timeout-like: the other future finishes first, many times over.
        for round in 0..50 {
            let outcome = select(ours.recv(&mut buf), after_yields(1 + round % 3)).await;
            assert!(outcome.is_err(), "round {round}: nothing was sent");
        }

        // Then the peer sends in several pieces, racing a thread that
        // writes while we are cancelling and re-issuing receives.
        let writer = std::thread::spawn(move || -> io::Result<std::net::TcpStream> {
            for i in 0..50usize {
                let piece: Vec<u8> = (i * 100..(i + 1) * 100).map(pattern).collect();
                peer.write_all(&piece)?;
                if i % 7 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(peer)
        });
        let mut received = Vec::new();
        let mut timeouts = 0;
        while received.len() < 5000 {
            match select(ours.recv(&mut buf), after_yields(2)).await {
                Ok(n) => {
                    let n = n?;
                    assert!(n > 0, "unexpected EOF");
                    received.extend_from_slice(&buf[..n]);
                }
                Err(()) => {
                    timeouts += 1;
                    assert!(timeouts < 1_000_000, "data never arrived");
                }
            }
        }
        let _peer = writer.join().unwrap()?;
        assert_eq!(received.len(), 5000, "no byte duplicated");
        for (i, &b) in received.iter().enumerate() {
            assert_eq!(b, pattern(i), "byte {i} lost or reordered");
        }
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_parked_send_dropped_leaves_the_stream_usable() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let filled = fill_send_buffer(&ours);
        {
            let junk = [0xAAu8; 4096];
            let mut op = Box::pin(ours.send(&junk));
            assert!(poll_once(op.as_mut()).await.is_pending(), "buffer is full");
            // Dropped while parked: a parked send moved no byte.
        }
        let reader = std::thread::spawn(move || drain_checking(&mut peer));
        let rest: Vec<u8> = (filled..filled + 100_000).map(pattern).collect();
        ours.send_all(&rest).await?;
        ours.shutdown(std::net::Shutdown::Write)?;
        assert_eq!(
            reader.join().unwrap()?,
            filled + rest.len(),
            "the cancelled send must not have written anything"
        );
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_send_all_dropped_part_way_sent_exactly_what_it_reported() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let big: Vec<u8> = (0..16 << 20).map(pattern).collect();
        let sent = {
            let mut op = Box::pin(ours.send_all(&big));
            assert!(
                poll_once(op.as_mut()).await.is_pending(),
                "16 MiB does not fit in the socket buffers"
            );
            op.sent()
        };
        assert!(sent > 0 && sent < big.len(), "sent {sent}");
        let reader = std::thread::spawn(move || drain_checking(&mut peer));
        // Continue the stream where the cancelled send_all stopped.
        ours.send_all(&big[sent..sent + 1000]).await?;
        ours.shutdown(std::net::Shutdown::Write)?;
        assert_eq!(reader.join().unwrap()?, sent + 1000);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_send_dropped_after_being_woken_leaves_the_stream_usable() {
    run(|| async {
        let (ours, peer) = std_peer().await?;
        let filled = fill_send_buffer(&ours);
        let mut peer_reader = peer.try_clone()?;
        let reader = {
            let junk = [0xAAu8; 10];
            let mut op = Box::pin(ours.send(&junk));
            assert!(
                poll_once(op.as_mut()).await.is_pending(),
                "the buffer is full: the send should park"
            );
            // Now the peer drains, space frees up, the reactor wakes the
            // parked send; we drop it without polling it again.
            let reader = std::thread::spawn(move || drain_checking(&mut peer_reader));
            std::thread::sleep(Duration::from_millis(20));
            yield_now().await;
            yield_now().await;
            reader
        };
        let rest: Vec<u8> = (filled..filled + 1000).map(pattern).collect();
        ours.send_all(&rest).await?;
        ours.shutdown(std::net::Shutdown::Write)?;
        assert_eq!(reader.join().unwrap()?, filled + rest.len());
        drop(peer);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_recv_cancelled_while_sending_keeps_both_directions_working() {
    // A recv parked while a send runs in the other direction, then
    // dropped: neither direction is disturbed.
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut buf = [0u8; 8];
        {
            let mut op = Box::pin(ours.recv(&mut buf));
            assert!(poll_once(op.as_mut()).await.is_pending());
            ours.send_all(b"ping").await?;
        }
        let mut got = [0u8; 4];
        peer.read_exact(&mut got)?;
        assert_eq!(&got, b"ping");
        peer.write_all(b"pong")?;
        let n = ours.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"pong");
        io::Result::Ok(())
    })
    .unwrap();
}

/// Sockets of this machine in `SYN_SENT` towards 127.0.0.1:`port` (from
/// `/proc/net/tcp`: state `02`, remote address `0100007F:PORT` in hex).
fn syn_sent_to(addr: std::net::SocketAddr) -> usize {
    let std::net::SocketAddr::V4(addr) = addr else {
        panic!("an IPv4 address: {addr}");
    };
    // /proc/net/tcp writes the address as the 32-bit word in host order.
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(addr.ip().octets()),
        addr.port()
    );
    // Counted by local address: the file is read in several `read`s, and
    // a socket another thread opens or closes meanwhile may make the
    // kernel list one twice (CI once read 2 for one pending connect;
    // that is the likely cause, not a proven one).
    std::fs::read_to_string("/proc/net/tcp")
        .expect("/proc/net/tcp")
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let to_addr_syn_sent =
                fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"02");
            to_addr_syn_sent.then(|| fields[1].to_owned())
        })
        .collect::<std::collections::HashSet<String>>()
        .len()
}

/// A `connect` dropped while its handshake is pending closes its socket.
/// On loopback the handshake completes inside `connect(2)`, so the
/// listener's queue is filled first (backlog 1, never accepted): the
/// kernel then drops the SYNs, and the connect waits.
#[test]
#[cfg_attr(miri, ignore = "no TCP under Miri")]
fn a_pending_connect_dropped_closes_its_socket() {
    run(|| async {
        // An address of its own in 127/8 (Linux's loopback takes them all):
        // another test's stale connect to a port this one reused (tests run
        // in parallel) cannot reach it and count as a SYN_SENT here.
        let listener = cellio_net::TcpListener::bind_with(
            "127.13.37.1:0",
            cellio_net::ListenOptions {
                backlog: 1,
                ..Default::default()
            },
        )?;
        let addr = listener.local_addr()?;
        // Fill the queue: connects complete until it is full, then time out.
        let mut queued = Vec::new();
        while queued.len() < 16 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(stream) => queued.push(stream),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                Err(e) => return Err(e),
            }
        }
        assert!(queued.len() < 16, "the listener's queue never filled");
        // The timed-out std connect's socket is closed already.
        assert_eq!(syn_sent_to(addr), 0);
        {
            let mut connect = pin!(cellio_net::TcpStream::connect(addr));
            assert!(
                poll_once(connect.as_mut()).await.is_pending(),
                "the connect completed"
            );
            assert_eq!(
                syn_sent_to(addr),
                1,
                "the pending connect is not in SYN_SENT"
            );
            // Dropped while pending.
        }
        assert_eq!(
            syn_sent_to(addr),
            0,
            "the abandoned connect's socket is still open"
        );
        drop(listener);
        io::Result::Ok(())
    })
    .unwrap();
}
