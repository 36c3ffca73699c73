//! The two completion paths, made visible through `TcpStream::stats()`:
//! an operation whose data (or buffer space) is already there completes on
//! its first poll (`*_sync`); one that must wait parks on the cell and is
//! woken by the reactor (`*_parked`). Also `try_complete`, the check that
//! never parks.

mod util;

use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use cellio_net::OpStats;
use util::{fill_send_buffer, poll_once, run, std_peer, wait_buffered};

fn delta(after: OpStats, before: OpStats) -> OpStats {
    OpStats {
        recv_sync: after.recv_sync - before.recv_sync,
        recv_parked: after.recv_parked - before.recv_parked,
        send_sync: after.send_sync - before.send_sync,
        send_parked: after.send_parked - before.send_parked,
    }
}

#[test]
fn a_fresh_accepted_stream_has_zero_stats() {
    run(|| async {
        let (ours, _peer) = std_peer().await?;
        assert_eq!(ours.stats(), OpStats::default());
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn connect_counts_as_one_send_direction_completion() {
    run(|| async {
        let listener = cellio_net::TcpListener::bind("127.0.0.1:0")?;
        let client = cellio_net::TcpStream::connect(listener.local_addr()?).await?;
        let stats = client.stats();
        assert_eq!(stats.send_sync + stats.send_parked, 1, "{stats:?}");
        assert_eq!(stats.recv_sync + stats.recv_parked, 0, "{stats:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn recv_with_data_already_buffered_completes_synchronously() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut buf = [0u8; 1024];
        for round in 0..3u8 {
            let msg = [round; 100];
            peer.write_all(&msg)?;
            wait_buffered(&ours, msg.len());
            // One reactor turn, so the readiness for this data has been
            // recorded before we ask.
            cellio_runtime::yield_now().await;
            let before = ours.stats();
            let n = ours.recv(&mut buf).await?;
            assert_eq!(&buf[..n], &msg[..], "round {round}");
            let d = delta(ours.stats(), before);
            assert_eq!(
                d,
                OpStats {
                    recv_sync: 1,
                    ..Default::default()
                },
                "round {round}: buffered data must not park"
            );
        }
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn recv_with_nothing_buffered_parks_and_is_woken() {
    run(|| async {
        let (ours, peer) = std_peer().await?;
        let mut buf = [0u8; 64];
        let writer = std::thread::spawn(move || -> io::Result<std::net::TcpStream> {
            let mut peer = peer;
            for round in 0..3u8 {
                std::thread::sleep(Duration::from_millis(20));
                peer.write_all(&[round; 10])?;
                // Wait for the ack byte before the next round, so each
                // recv starts with an empty receive buffer.
                let mut ack = [0u8; 1];
                peer.read_exact(&mut ack)?;
            }
            Ok(peer)
        });
        for round in 0..3u8 {
            assert_eq!(util::bytes_buffered(&ours), 0);
            let before = ours.stats();
            let n = ours.recv(&mut buf).await?;
            assert_eq!(&buf[..n], &[round; 10][..]);
            let d = delta(ours.stats(), before);
            assert_eq!(d.recv_parked, 1, "round {round}: {d:?}");
            assert_eq!(d.recv_sync, 0, "round {round}: {d:?}");
            ours.send_all(b"k").await?;
        }
        writer.join().unwrap()?;
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn try_complete_is_some_when_data_is_buffered() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        peer.write_all(b"ready")?;
        wait_buffered(&ours, 5);
        cellio_runtime::yield_now().await;
        let before = ours.stats();
        let mut buf = [0u8; 32];
        let mut op = ours.recv(&mut buf);
        match op.try_complete() {
            Some(Ok(5)) => {}
            other => panic!("expected Some(Ok(5)), got {other:?}"),
        }
        assert!(op.is_terminated());
        // Finished: awaiting it now is a misuse, reported, not a re-read.
        let err = op.await.expect_err("already completed");
        assert_eq!(
            cellio_reactor::CellError::of(&err),
            Some(cellio_reactor::CellError::Consumed)
        );
        assert_eq!(&buf[..5], b"ready");
        let d = delta(ours.stats(), before);
        assert_eq!(
            d,
            OpStats {
                recv_sync: 1,
                ..Default::default()
            }
        );
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn try_complete_is_none_when_empty_and_the_future_still_awaits_later_data() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut buf = [0u8; 32];
        let before = ours.stats();
        let mut op = ours.recv(&mut buf);
        assert!(op.try_complete().is_none(), "nothing was sent yet");
        assert!(!op.is_terminated());
        // A second check does not change anything either.
        assert!(op.try_complete().is_none());
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            peer.write_all(b"later").unwrap();
            peer
        });
        let n = op.await?;
        assert_eq!(&buf[..n], b"later");
        let _peer = writer.join().unwrap();
        let d = delta(ours.stats(), before);
        assert_eq!(
            d,
            OpStats {
                recv_parked: 1,
                ..Default::default()
            }
        );
        // try_complete never reserved the cell: the next operation is free.
        ours.send_all(b"x").await?;
        io::Result::Ok(())
    })
    .unwrap();
}

/// `try_complete` on a receive that already parked leaves it parked: the
/// data that arrives next wakes the waker the receive parked with. (It
/// used to take the cell back from that waker and leave it so: the data's
/// notification woke nobody, and only the timeout's timer woke the task;
/// found by a review.)
#[test]
fn try_complete_after_a_park_keeps_the_task_waiting_for_the_data() {
    /// Records a wake before passing it on to the task.
    struct Recording(AtomicBool, Waker);
    impl Wake for Recording {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
            self.1.wake_by_ref();
        }
    }
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut buf = [0u8; 32];
        let mut op = pin!(ours.recv(&mut buf));
        let mut recording: Option<Arc<Recording>> = None;
        let got = cellio_runtime::time::timeout(
            Duration::from_secs(2),
            poll_fn(|cx| {
                let first = recording.is_none();
                let recording = recording
                    .get_or_insert_with(|| {
                        Arc::new(Recording(AtomicBool::new(false), cx.waker().clone()))
                    })
                    .clone();
                let waker = Waker::from(recording);
                let polled = op.as_mut().poll(&mut Context::from_waker(&waker));
                if first {
                    // Parked, with the recording waker in the cell.
                    assert!(polled.is_pending());
                    assert!(op.try_complete().is_none(), "nothing was sent yet");
                    // The data comes after: its notification must wake it.
                    peer.write_all(b"wake up").unwrap();
                }
                polled
            }),
        )
        .await;
        let woken = recording.is_some_and(|r| r.0.load(Ordering::SeqCst));
        assert!(
            woken && matches!(got, Ok(Ok(7))),
            "not woken by the data (woken: {woken}): {got:?}"
        );
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn send_with_space_is_sync_and_send_into_a_full_buffer_parks() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let before = ours.stats();
        assert_eq!(ours.send(b"hello").await?, 5);
        let d = delta(ours.stats(), before);
        assert_eq!(
            d,
            OpStats {
                send_sync: 1,
                ..Default::default()
            }
        );
        let mut got = [0u8; 5];
        peer.read_exact(&mut got)?;

        let filled = fill_send_buffer(&ours);
        assert!(filled > 0);
        let before = ours.stats();
        let tail = vec![util::pattern(filled); 1];
        let mut op = Box::pin(ours.send(&tail));
        assert!(op.try_complete().is_none(), "the send buffer is full");
        assert!(poll_once(op.as_mut()).await.is_pending());
        let reader = std::thread::spawn(move || util::drain_checking(&mut peer));
        assert_eq!(op.as_mut().await?, 1);
        drop(op);
        let d = delta(ours.stats(), before);
        assert_eq!(
            d,
            OpStats {
                send_parked: 1,
                ..Default::default()
            }
        );
        ours.shutdown(std::net::Shutdown::Write)?;
        assert_eq!(reader.join().unwrap()?, filled + 1);
        io::Result::Ok(())
    })
    .unwrap();
}
