//! A sleep that outlives its runtime must never touch a timer of a later
//! runtime that reuses the same worker number, however many runtimes came
//! between: dropping it or polling it then does nothing to the later
//! runtime's timers.
//!
//! This file holds a single test on purpose (as `stale_wakers.rs`): worker
//! numbers are process global and reused last-in first-out, so with no
//! other test running in this process every runtime here gets the same
//! number.

mod util;

use std::time::Duration;

use cellio_runtime::{sleep, spawn, yield_now};
use util::{one_worker, one_worker_after, poll_once, with_timeout, LIMIT};

/// 256 runtimes later the worker's 8-bit epoch is the first runtime's
/// again, and a new timer gets the stale sleep's slot and generation: a
/// sleep that trusted `(worker, epoch, key)` cancelled it, and its task
/// never woke.
#[test]
fn a_sleep_from_a_runtime_256_claims_ago_leaves_the_new_timers_alone() {
    with_timeout(LIMIT, || {
        let first = one_worker();
        // Timer slot 0, generation 0 of the first runtime's table.
        let mut stale = sleep(Duration::from_secs(3600));
        first.block_on(async { assert!(poll_once(&mut stale).await.is_pending()) });
        drop(first);
        let last = one_worker_after(255);
        last.block_on(async move {
            // Slot 0, generation 0 again, in the last runtime's table.
            let woken = spawn(sleep(Duration::from_millis(50)));
            yield_now().await;
            drop(stale);
            woken.await.unwrap();
        });
    });
}
