//! Once the blocking pool has its thread and its queue has room, a
//! `spawn_blocking` job allocates nothing: its block comes from the
//! spawning worker's pool and goes back there through the worker's inbox,
//! the queue keeps its room, and the idle thread is woken through a
//! condition variable.
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use std::hint::black_box;

use cellio::runtime::spawn_blocking;
use cellio::{Builder, Runtime};

#[path = "util/blocks_home.rs"]
mod blocks_home;
#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use blocks_home::blocks_home;
use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

/// `n` jobs, each awaited, with a buffer of their own.
async fn jobs(runtime: &Runtime, n: usize) {
    for i in 0..n {
        let buf = [i as u8; 256];
        let got = spawn_blocking(move || black_box(&buf)[i % 256] as usize)
            .await
            .expect("job ran");
        assert_eq!(got, i % 256);
        blocks_home(runtime).await;
    }
}

#[test]
fn blocking_jobs_allocate_nothing_after_warm_up() {
    assert_counter_works();
    let runtime = Builder::new().workers(1).build().unwrap();
    runtime.block_on(async {
        jobs(&runtime, 50).await;
        // The pool may start a second thread during a count (a job queued
        // before the thread that ran the last one is back waiting: the
        // pool's module docs), and a thread start allocates: such a count
        // says nothing of the jobs' own and is taken again, up to three
        // times. A clean count is one the pool's threads did alone.
        let mut clean = None;
        for _ in 0..3 {
            let threads = runtime.blocking_pool_stats().0;
            start_counting();
            jobs(&runtime, 300).await;
            let allocations = stop_counting();
            if runtime.blocking_pool_stats().0 == threads {
                clean = Some(allocations);
                break;
            }
        }
        let allocations = clean.expect("the pool started a thread during each of three counts");
        assert_eq!(
            allocations,
            0,
            "300 blocking jobs allocated (sizes {:?})",
            recorded_sizes()
        );
    });
}
