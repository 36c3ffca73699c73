//! A waker that outlives its runtime must not reach a task of a later
//! runtime that reuses the same worker number (the waker module's docs:
//! such a wake lands "into a later worker that drops it because the epoch
//! or the task generation does not match").
//!
//! This file holds a single test on purpose: worker numbers are process
//! global and reused last-in first-out, so with no other test running in
//! this process the second runtime reliably gets the first one's number.

mod util;

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use cellio_runtime::{spawn, yield_now, Runtime};
use util::{with_timeout, Signal, LIMIT};

/// Returns the waker it was polled with.
async fn own_waker() -> Waker {
    poll_fn(|cx| Poll::Ready(cx.waker().clone())).await
}

#[test]
fn a_waker_from_a_dropped_runtime_does_not_poll_a_task_of_the_next_one() {
    with_timeout(LIMIT, || {
        // Task slot 0, generation 0 of the first runtime.
        let rt1 = Runtime::new().unwrap();
        let stale = rt1.block_on(async { spawn(own_waker()).await.unwrap() });
        drop(rt1);

        // The next runtime on this thread reuses the worker number (with a
        // new epoch); its first task again sits in slot 0, generation 0.
        let rt2 = Runtime::new().unwrap();
        let polls = Arc::new(AtomicUsize::new(0));
        let release = Signal::new();
        let counted = {
            let polls = polls.clone();
            let release = release.clone();
            async move {
                let mut wait = std::pin::pin!(release.wait());
                poll_fn(|cx| {
                    polls.fetch_add(1, Ordering::SeqCst);
                    wait.as_mut().poll(cx)
                })
                .await
            }
        };
        rt2.block_on(async {
            let task = spawn(counted);
            for _ in 0..3 {
                yield_now().await;
            }
            assert_eq!(polls.load(Ordering::SeqCst), 1, "polled once, then parked");

            // The stale waker fires, from another thread.
            std::thread::spawn(move || stale.wake()).join().unwrap();
            for _ in 0..5 {
                yield_now().await;
            }
            let spurious = polls.load(Ordering::SeqCst) - 1;
            release.fire();
            task.await.unwrap();
            assert_eq!(
                spurious, 0,
                "a waker of a dropped runtime polled a task of a later runtime \
                 (the worker epoch is not checked when a wake is scheduled)"
            );
        });
    });
}
