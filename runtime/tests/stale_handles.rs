//! A `RuntimeHandle` that outlives its runtime must never reach a later
//! runtime that reuses the same worker number, however many runtimes came
//! between: a task spawned through it is cancelled, never run elsewhere.
//!
//! This file holds a single test on purpose (as `stale_timers.rs`): worker
//! numbers are process global and reused last-in first-out, so with no
//! other test running in this process every runtime here gets the same
//! number.

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cellio_runtime::JoinError;
use util::{one_worker, one_worker_after, with_timeout, LIMIT};

/// 256 runtimes later the worker's 8-bit epoch is the first runtime's
/// again. (A `spawn_on` through the first runtime's handle, checked by
/// `(worker, epoch)` only, then ran its task on the unrelated last runtime;
/// found by a review.)
#[test]
fn spawn_on_through_the_handle_of_a_runtime_256_claims_ago_is_cancelled() {
    with_timeout(LIMIT, || {
        let first = one_worker();
        let stale = first.handle();
        drop(first);
        let refused = stale.spawn_on(0, async {});
        let next = one_worker();
        assert!(matches!(next.block_on(refused), Err(JoinError::Cancelled)));
        drop(next);
        let last = one_worker_after(254);
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let task = stale.spawn_on(0, async move { flag.store(true, Ordering::SeqCst) });
        let result = last.block_on(cellio_runtime::timeout(Duration::from_secs(2), task));
        assert!(
            !ran.load(Ordering::SeqCst),
            "a task spawned through a dropped runtime's handle ran on another runtime"
        );
        assert!(
            matches!(result, Ok(Err(JoinError::Cancelled))),
            "{:?}",
            result.map(|r| r.map_err(|e| e.to_string()))
        );
    });
}
