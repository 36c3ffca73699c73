//! Once the blocking pool has its thread and its queue has room, a
//! `spawn_blocking` job allocates nothing: its block comes from the
//! spawning worker's pool and goes back there through the worker's inbox,
//! the queue keeps its room, and the thread is woken through a condition
//! variable or takes the job as it comes back from the last one.
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use std::hint::black_box;

use cellio::runtime::{spawn_blocking, JoinHandle};
use cellio::{Builder, Runtime};

#[path = "util/blocks_home.rs"]
mod blocks_home;
#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use blocks_home::blocks_home;
use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

/// Job `i`, with a buffer of its own; returns `i % 256`.
fn job(i: usize) -> JoinHandle<usize> {
    let buf = [i as u8; 256];
    spawn_blocking(move || black_box(&buf)[i % 256] as usize)
}

/// `n` jobs, one at a time.
async fn jobs(runtime: &Runtime, n: usize) {
    for i in 0..n {
        assert_eq!(job(i).await.expect("job ran"), i % 256);
        blocks_home(runtime).await;
    }
}

#[test]
fn blocking_jobs_allocate_nothing_after_warm_up() {
    assert_counter_works();
    // One pool thread: a chain of jobs then has at most two blocks in
    // flight (the last job's, which its thread may still hold after the
    // result is out, and the next one's).
    let runtime = Builder::new()
        .workers(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    runtime.block_on(async {
        // The warm-up puts two blocks in the pool (two jobs at once), so
        // that the count does not depend on the pool thread's timing.
        let (first, second) = (job(1), job(2));
        assert_eq!((first.await.unwrap(), second.await.unwrap()), (1, 2));
        jobs(&runtime, 50).await;
        start_counting();
        jobs(&runtime, 300).await;
        let allocations = stop_counting();
        assert_eq!(
            allocations,
            0,
            "300 blocking jobs allocated (sizes {:?})",
            recorded_sizes()
        );
    });
}
