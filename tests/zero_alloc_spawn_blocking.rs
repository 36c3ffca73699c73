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
use counting_alloc::{assert_counter_works, count_while_the_pool_stays, recorded_sizes};

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
        // Taken again if the blocking pool started a thread meanwhile.
        let allocations = count_while_the_pool_stays!(runtime, jobs(&runtime, 300).await);
        assert_eq!(
            allocations,
            0,
            "300 blocking jobs allocated (sizes {:?})",
            recorded_sizes()
        );
    });
}
