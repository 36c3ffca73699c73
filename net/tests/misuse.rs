//! Misuse is reported, never silently wrong: a second operation in a busy
//! direction (`Busy`), polling a finished future (`Consumed`), a stale token
//! on the cell itself (`Stale`), and a `JoinHandle` polled after it
//! returned. A waker that panics when the reactor wakes it ends its worker,
//! and nothing hangs for it.

mod util;

#[path = "../../runtime/tests/util/panics.rs"]
mod panics;

use std::future::Future;
use std::io::{self, Read, Write};
use std::task::Waker;
use std::time::Duration;

use cellio_reactor::{CellError, OpCell, Park};
use cellio_runtime::JoinError;
use util::{fill_send_buffer, poll_once, run, std_peer};

#[test]
fn a_second_recv_while_one_is_parked_is_busy_and_the_first_still_completes() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut first_buf = [0u8; 64];
        let mut second_buf = [0u8; 64];
        let mut first = Box::pin(ours.recv(&mut first_buf));
        assert!(
            poll_once(first.as_mut()).await.is_pending(),
            "nothing sent yet"
        );

        let mut second = Box::pin(ours.recv(&mut second_buf));
        let err = match poll_once(second.as_mut()).await {
            std::task::Poll::Ready(Err(e)) => e,
            other => panic!("second recv should fail at once, got {other:?}"),
        };
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
        assert_eq!(CellError::of(&err), Some(CellError::Busy));
        assert!(second.is_terminated());
        drop(second);

        // try_recv does not go through the cell, so it is not Busy: it
        // just finds nothing.
        let mut scratch = [0u8; 8];
        assert_eq!(
            ours.try_recv(&mut scratch).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );

        peer.write_all(b"for the first")?;
        let n = first.as_mut().await?;
        drop(first);
        assert_eq!(&first_buf[..n], b"for the first");
        assert_eq!(second_buf, [0u8; 64], "the failed recv wrote nothing");

        // With the first finished, the direction is free again.
        peer.write_all(b"next")?;
        let n = ours.recv(&mut second_buf).await?;
        assert_eq!(&second_buf[..n], b"next");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_second_send_while_one_is_parked_is_busy_and_the_first_still_completes() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let filled = fill_send_buffer(&ours);
        let first_data: Vec<u8> = (filled..filled + 1000).map(util::pattern).collect();
        let mut first = Box::pin(ours.send(&first_data));
        assert!(
            poll_once(first.as_mut()).await.is_pending(),
            "buffer is full"
        );

        let other = [0xEEu8; 10];
        let mut second = Box::pin(ours.send(&other));
        let err = match poll_once(second.as_mut()).await {
            std::task::Poll::Ready(Err(e)) => e,
            other => panic!("second send should fail at once, got {other:?}"),
        };
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
        assert_eq!(CellError::of(&err), Some(CellError::Busy));
        drop(second);

        // send_all is refused the same way.
        let err = ours.send_all(&other).await.unwrap_err();
        assert_eq!(CellError::of(&err), Some(CellError::Busy));

        let reader = std::thread::spawn(move || util::drain_checking(&mut peer));
        let n = first.as_mut().await?;
        drop(first);
        assert!(n > 0 && n <= first_data.len());
        // Finish the pattern and close; the peer must see exactly the
        // filled bytes, then the first send's bytes, and none of `other`.
        ours.send_all(&first_data[n..]).await?;
        ours.shutdown(std::net::Shutdown::Write)?;
        assert_eq!(reader.join().unwrap()?, filled + first_data.len());
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_busy_recv_direction_does_not_block_the_send_direction() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut buf = [0u8; 16];
        let mut parked = Box::pin(ours.recv(&mut buf));
        assert!(poll_once(parked.as_mut()).await.is_pending());
        ours.send_all(b"sending while a recv is parked").await?;
        let mut got = [0u8; 30];
        peer.read_exact(&mut got)?;
        assert_eq!(&got, b"sending while a recv is parked");
        peer.write_all(b"done")?;
        let n = parked.as_mut().await?;
        drop(parked);
        assert_eq!(&buf[..n], b"done");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn polling_a_recv_again_after_it_completed_is_consumed() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        peer.write_all(b"once")?;
        let mut buf = [0u8; 16];
        let mut op = ours.recv(&mut buf);
        let n = (&mut op).await?;
        assert_eq!(n, 4);
        assert!(op.is_terminated());
        peer.write_all(b"more")?;
        for _ in 0..2 {
            let err = (&mut op).await.expect_err("already completed");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(CellError::of(&err), Some(CellError::Consumed));
        }
        drop(op);
        // The Consumed polls did not read (or lose) the new data.
        let n = ours.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"more");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn polling_send_all_and_recv_exact_again_is_consumed() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut op = ours.send_all(b"abc");
        (&mut op).await?;
        let err = (&mut op).await.unwrap_err();
        assert_eq!(CellError::of(&err), Some(CellError::Consumed));
        drop(op);
        let mut got = [0u8; 3];
        peer.read_exact(&mut got)?;
        assert_eq!(&got, b"abc");

        peer.write_all(b"xyz")?;
        let mut buf = [0u8; 3];
        let mut op = ours.recv_exact(&mut buf);
        (&mut op).await?;
        let err = (&mut op).await.unwrap_err();
        assert_eq!(CellError::of(&err), Some(CellError::Consumed));
        drop(op);
        assert_eq!(&buf, b"xyz");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn polling_a_join_handle_after_it_returned_is_consumed() {
    run(|| async {
        let mut handle = cellio_runtime::spawn(async { 7 });
        assert_eq!((&mut handle).await.unwrap(), 7);
        assert!(handle.is_finished());
        match (&mut handle).await {
            Err(JoinError::Consumed) => {}
            other => panic!("expected Consumed, got {other:?}"),
        }
        // And again.
        assert!(matches!((&mut handle).await, Err(JoinError::Consumed)));
    });
}

#[test]
fn op_cell_refuses_a_stale_token() {
    let cell = OpCell::new();
    let seen = cell.observe().unwrap();
    let old = cell.reserve().unwrap();
    assert_eq!(cell.reserve(), Err(CellError::Busy));
    assert_eq!(cell.observe(), Err(CellError::Busy));
    assert_eq!(cell.park(old, seen, Waker::noop()), Ok(Park::Parked));
    cell.release(old).unwrap();

    // Every use of the released token is refused.
    assert_eq!(cell.release(old), Err(CellError::Stale));
    assert_eq!(cell.observe_reserved(old), Err(CellError::Stale));
    let seen = cell.observe().unwrap();
    assert_eq!(cell.park(old, seen, Waker::noop()), Err(CellError::Stale));

    // Also once the cell is reserved again by someone else: the old token
    // must not reach the new operation.
    let new = cell.reserve().unwrap();
    assert_ne!(new, old);
    assert_eq!(new.generation(), old.generation().wrapping_add(1));
    assert_eq!(cell.park(old, seen, Waker::noop()), Err(CellError::Stale));
    assert_eq!(cell.release(old), Err(CellError::Stale));
    assert_eq!(cell.observe_reserved(old), Err(CellError::Stale));
    // ...and the new holder is undisturbed.
    assert_eq!(cell.park(new, seen, Waker::noop()), Ok(Park::Parked));
    assert!(cell.observe_reserved(new).is_ok());
    cell.release(new).unwrap();

    // reset() makes every outstanding token stale as well.
    let held = cell.reserve().unwrap();
    cell.reset();
    assert_eq!(cell.release(held), Err(CellError::Stale));
    assert!(cell.reserve().is_ok());
}

#[test]
fn op_cell_park_retries_when_readiness_moved_and_close_is_reported() {
    let cell = OpCell::new();
    let seen = cell.observe().unwrap();
    cell.notify(); // readiness arrived between the snapshot and the park
    let token = cell.reserve().unwrap();
    assert_eq!(cell.park(token, seen, Waker::noop()), Ok(Park::Retry));
    let fresh = cell.observe_reserved(token).unwrap();
    assert_eq!(cell.park(token, fresh, Waker::noop()), Ok(Park::Parked));
    cell.close();
    let after = cell.observe_reserved(token).unwrap();
    assert_eq!(
        cell.park(token, after, Waker::noop()),
        Err(CellError::Closed)
    );
    assert_eq!(
        io::Error::from(CellError::Closed).kind(),
        io::ErrorKind::NotConnected
    );
    cell.release(token).unwrap();
}

#[test]
fn a_stream_outliving_its_runtime_reports_closed_instead_of_hanging() {
    // A stream made on one runtime, whose runtime (and reactor) is then
    // dropped: its cells are closed, and a recv that would have to wait
    // reports it instead of parking forever.
    util::with_timeout(util::LIMIT, || {
        let rt = cellio_runtime::Runtime::new().unwrap();
        let (ours, peer) = rt.block_on(std_peer()).unwrap();
        drop(rt);
        let rt2 = cellio_runtime::Runtime::new().unwrap();
        let mut buf = [0u8; 8];
        let result = rt2.block_on(async {
            let op = ours.recv(&mut buf);
            let timeout = std::pin::pin!(async {
                // Bounded: if the recv parks forever on the dead reactor
                // we fail instead of hanging.
                for _ in 0..200 {
                    cellio_runtime::yield_now().await;
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            let mut op = Box::pin(op);
            let mut timeout = timeout;
            std::future::poll_fn(|cx| {
                if let std::task::Poll::Ready(r) = op.as_mut().poll(cx) {
                    return std::task::Poll::Ready(Some(r));
                }
                if timeout.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(None);
                }
                std::task::Poll::Pending
            })
            .await
        });
        drop(peer);
        let err = result
            .expect("a recv on a stream whose reactor is gone must not park forever")
            .expect_err("its reactor is gone");
        assert_eq!(CellError::of(&err), Some(CellError::Closed), "{err:?}");
    });
}

/// A receive parked with a waker that panics: when data arrives, worker
/// 1's reactor wakes it and its loop dies of the panic. Nothing may hang:
/// worker 1's tasks end as cancelled, and their sockets are closed (the
/// peers read end-of-stream, or a reset where their bytes went unread)
/// rather than left open.
#[test]
fn a_waker_that_panics_in_the_reactor_ends_its_worker_cleanly() {
    panics::quiet_panics_ending_with(panics::ON_PURPOSE);
    let builder = cellio_runtime::Builder::new().workers(2);
    util::run_with(builder, || async {
        // On worker 1: a connection whose receive parks with the panicking
        // waker, and one that waits normally. Each peer, on a plain thread,
        // reads until end-of-stream.
        let (peers_tx, peers_rx) = std::sync::mpsc::channel();
        let task = move |panics: bool| {
            let peers_tx = peers_tx.clone();
            cellio_runtime::spawn_on(1, async move {
                let (ours, mut peer) = std_peer().await.unwrap();
                peers_tx
                    .send(std::thread::spawn(move || -> io::Result<usize> {
                        if panics {
                            std::thread::sleep(Duration::from_millis(20));
                            peer.write_all(b"wake it")?;
                        }
                        let mut sink = Vec::new();
                        peer.read_to_end(&mut sink)
                    }))
                    .unwrap();
                let mut buf = [0u8; 64];
                let mut recv = Box::pin(ours.recv(&mut buf));
                if panics {
                    let waker = panics::panicking_waker();
                    let polled = recv
                        .as_mut()
                        .poll(&mut std::task::Context::from_waker(&waker));
                    assert!(polled.is_pending());
                    std::future::pending::<()>().await;
                }
                recv.await.map(|_| ())
            })
        };
        let (waiting, panicking) = (task(false), task(true));
        assert!(matches!(waiting.await, Err(JoinError::Cancelled)));
        assert!(matches!(panicking.await, Err(JoinError::Cancelled)));
        for peer in [peers_rx.recv().unwrap(), peers_rx.recv().unwrap()] {
            // Closed: end-of-stream, or a reset where the peer's bytes
            // were still unread (the panicking side's).
            match peer.join().unwrap() {
                Ok(0) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                other => panic!("the peer saw {other:?}, not a closed connection"),
            }
        }
        io::Result::Ok(())
    })
    .unwrap();
}

/// The same on worker 0, where the loop runs inside `block_on`: the panic
/// reaches `block_on`'s caller, and readiness that arrived in the same
/// reactor turn, after the panicking waker's, is not lost: a later
/// `block_on` finds the task waiting on it woken.
#[test]
fn a_waker_that_panics_in_worker_0s_reactor_loses_no_other_readiness() {
    panics::quiet_panics_ending_with(panics::ON_PURPOSE);
    util::with_timeout(util::LIMIT, || {
        let rt = cellio_runtime::Runtime::new().unwrap();
        let (ours_a, mut peer_a) = rt.block_on(std_peer()).unwrap();
        let (ours_c, mut peer_c) = rt.block_on(std_peer()).unwrap();
        // A task waits for a message on connection A.
        let waiting = rt.spawn(async move {
            let mut buf = [0u8; 64];
            let n = ours_a.recv(&mut buf).await?;
            io::Result::Ok(buf[..n].to_vec())
        });
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(async {
                cellio_runtime::yield_now().await; // the task parks
                let mut buf = [0u8; 64];
                let mut recv = Box::pin(ours_c.recv(&mut buf));
                let waker = panics::panicking_waker();
                let polled = recv
                    .as_mut()
                    .poll(&mut std::task::Context::from_waker(&waker));
                assert!(polled.is_pending());
                // Both arrive before the worker turns its reactor again:
                // one batch, connection C's event first.
                peer_c.write_all(b"to c").unwrap();
                peer_a.write_all(b"to a").unwrap();
                util::wait_buffered(&ours_c, 4);
                cellio_runtime::yield_now().await;
                std::future::pending::<()>().await
            })
        }));
        let panic = outcome.expect_err("the waker's panic reaches block_on's caller");
        assert_eq!(
            panics::panic_text(&*panic),
            "a waker that panics, on purpose"
        );
        let got = rt.block_on(waiting).unwrap().unwrap();
        assert_eq!(got, b"to a");
    });
}
