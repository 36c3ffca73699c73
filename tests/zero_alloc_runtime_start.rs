//! `Runtime::new` returns only once every background worker is set up: from
//! then on an idle runtime makes no heap allocation, and no worker's
//! start-up (its thread name, its run queue) lands in the caller's later
//! work, such as a zero-allocation window.
//!
//! Before the workers reported their start-up, this raced: on a busy
//! machine a worker thread still starting could allocate inside another
//! test's counting window. This file holds a single test so that nothing
//! else runs in the process while it counts.

use std::time::Duration;

use cellio::Builder;

#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

/// Background workers per runtime (worker 0 is the caller's thread).
const WORKERS: usize = 4;

#[test]
fn an_idle_runtime_allocates_nothing_after_new_returns() {
    assert_counter_works();

    // Several runtimes in a row: each one's threads get the whole window to
    // start, if they were still starting.
    for round in 0..5 {
        let runtime = Builder::new().workers(WORKERS).build().unwrap();
        start_counting();
        std::thread::sleep(Duration::from_millis(20));
        let allocations = stop_counting();
        assert_eq!(
            allocations,
            0,
            "round {round}: an idle runtime with {WORKERS} workers allocated after `build` \
             returned (sizes {:?})",
            recorded_sizes()
        );
        assert_eq!(runtime.workers(), WORKERS);
    }
}
