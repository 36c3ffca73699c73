//! Once a worker has reached a peak of live tasks and timers, the wave of
//! endings that follows — every timer firing, every task finishing, every
//! task block going back to the pool — makes no heap allocation, even the
//! first time the worker sees that many end.
//!
//! The runtime's free lists (the timer table's free entries and heap, the
//! task table's free slots, the task pool's blocks) are reserved when their
//! storage grows, not when something is freed: an allocation on the way
//! out would otherwise hit the first connection burst that closes after a
//! new peak, long after any warm-up. This file holds a single test so that
//! nothing else runs in the process while it counts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cellio::runtime::sleep;
use cellio::{spawn, yield_now, Builder, JoinHandle};

#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

/// Live tasks (each with an armed timer) at the peak.
const PEAK: usize = 100;
/// Tasks of the warm-up round, well below the peak.
const WARM_UP: usize = 4;

static STARTED: AtomicUsize = AtomicUsize::new(0);
static FINISHED: AtomicUsize = AtomicUsize::new(0);

/// `count` tasks that each sleep (deadlines spread over 10 ms, so they fire
/// over several turns) and return their index.
fn spawn_sleepers(count: usize) -> Vec<JoinHandle<usize>> {
    (0..count)
        .map(|i| {
            spawn(async move {
                STARTED.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_millis(20 + (i % 10) as u64)).await;
                FINISHED.fetch_add(1, Ordering::SeqCst);
                i
            })
        })
        .collect()
}

/// Yields until `n` tasks have started (armed their timers).
async fn until_started(n: usize) {
    while STARTED.load(Ordering::SeqCst) < n {
        yield_now().await;
    }
}

async fn join_all(handles: Vec<JoinHandle<usize>>) -> usize {
    let mut sum = 0;
    for h in handles {
        sum += h.await.expect("a sleeper failed");
    }
    sum
}

#[test]
fn the_first_wave_of_endings_after_a_peak_allocates_nothing() {
    assert_counter_works();
    let rt = Builder::new().workers(1).build().unwrap();
    let (allocations, sizes, sum, finished_before) = rt.block_on(async {
        // Warm-up: every code path runs once, with a few tasks.
        let warm = spawn_sleepers(WARM_UP);
        until_started(WARM_UP).await;
        assert_eq!(join_all(warm).await, (0..WARM_UP).sum());

        // The peak: the tables and the pool grow here, uncounted.
        let peak = spawn_sleepers(PEAK);
        until_started(WARM_UP + PEAK).await;

        start_counting();
        // (An atomic load: allocates nothing.)
        let finished_before = FINISHED.load(Ordering::SeqCst) - WARM_UP;
        let sum = join_all(peak).await;
        (stop_counting(), recorded_sizes(), sum, finished_before)
    });
    assert_eq!(sum, (0..PEAK).sum());
    // Every peak task ended inside the counted window (else it checked less).
    assert_eq!(finished_before, 0, "peak tasks ended before counting began");
    assert_eq!(
        allocations, 0,
        "heap allocations while {PEAK} timers fired and {PEAK} tasks ended; \
         sizes of the first ones: {sizes:?}"
    );
}
