//! Pooled task storage: blocks of finished tasks are reused by new ones,
//! the pool can be capped, trimmed and turned off, and a `JoinHandle` stays
//! tied to its own task whatever happens to the slot and the block.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cellio_runtime::{
    spawn, spawn_on, yield_now, Builder, JoinError, JoinHandle, Runtime, DEFAULT_TASK_POOL_CAP,
};
use util::{with_timeout, Signal, LIMIT};

/// Counts its drops.
struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn one_worker(pooling: bool) -> Runtime {
    Builder::new()
        .workers(1)
        .task_pooling(pooling)
        .build()
        .unwrap()
}

/// A task whose future is small (one size class)...
async fn small(i: u64) -> u64 {
    yield_now().await;
    i
}

/// ...and one whose future holds 2 KiB across an await (a bigger class).
async fn large(i: u64) -> u64 {
    let buf = [i as u8; 2048];
    yield_now().await;
    std::hint::black_box(&buf)[100] as u64
}

#[test]
fn sequential_tasks_reuse_one_block() {
    with_timeout(LIMIT, || {
        let rt = one_worker(true);
        assert_eq!(rt.task_pool_stats(), (0, 0, 0));
        rt.block_on(async {
            for i in 0..1_000u64 {
                assert_eq!(spawn(small(i)).await.unwrap(), i);
            }
        });
        let (reused, allocated, pooled) = rt.task_pool_stats();
        assert!(reused >= 990, "only {reused} of 1000 spawns reused a block");
        assert!(allocated <= 10, "{allocated} blocks freshly allocated");
        assert_eq!(reused + allocated, 1_000, "every spawn counted once");
        assert!(pooled >= 1 && pooled as u64 <= allocated);
        assert_eq!(rt.live_tasks(), 0);
    });
}

#[test]
fn without_pooling_nothing_is_reused() {
    with_timeout(LIMIT, || {
        let rt = one_worker(false);
        rt.block_on(async {
            for i in 0..1_000u64 {
                assert_eq!(spawn(small(i)).await.unwrap(), i);
            }
        });
        let (reused, _allocated, pooled) = rt.task_pool_stats();
        assert_eq!(reused, 0);
        assert_eq!(pooled, 0);
        assert_eq!(rt.trim_task_pool(), 0);
    });
}

#[test]
fn the_cap_holds_per_class_and_trim_frees_the_pool() {
    with_timeout(LIMIT, || {
        const { assert!(DEFAULT_TASK_POOL_CAP > 2) };
        let rt = Builder::new().workers(1).task_pool_cap(2).build().unwrap();
        rt.block_on(async {
            // Ten of each class alive at once, then all finished.
            let smalls: Vec<_> = (0..10).map(|i| spawn(small(i))).collect();
            let larges: Vec<_> = (0..10).map(|i| spawn(large(i))).collect();
            for (i, h) in smalls.into_iter().enumerate() {
                assert_eq!(h.await.unwrap(), i as u64);
            }
            for (i, h) in larges.into_iter().enumerate() {
                assert_eq!(h.await.unwrap(), i as u64);
            }
        });
        let (_, allocated, pooled) = rt.task_pool_stats();
        assert_eq!(allocated, 20);
        assert_eq!(pooled, 4, "2 blocks kept for each of 2 classes");

        assert_eq!(rt.trim_task_pool(), 4);
        assert_eq!(rt.task_pool_stats().2, 0);
        assert_eq!(rt.trim_task_pool(), 0);

        // The pool refills after a trim, and the next spawn allocates.
        rt.block_on(async { spawn(small(1)).await.unwrap() });
        let (_, allocated_after, pooled_after) = rt.task_pool_stats();
        assert_eq!(allocated_after, allocated + 1);
        assert_eq!(pooled_after, 1);
    });
}

#[test]
fn an_old_join_handle_keeps_its_own_output_after_its_slot_is_reused() {
    with_timeout(LIMIT, || {
        let rt = one_worker(true);
        rt.block_on(async {
            let old = spawn(async { String::from("old output") });
            while !old.is_finished() {
                yield_now().await;
            }
            // The old task's slot is free; new tasks take it (and blocks
            // from the pool), many times over.
            let mut last = 0;
            for i in 0..100u64 {
                let new = spawn(async move {
                    yield_now().await;
                    i * 3
                });
                last = new.await.unwrap();
            }
            assert_eq!(last, 99 * 3);
            let newest = spawn(async { String::from("new output") });
            assert!(old.is_finished());
            assert_eq!(old.await.unwrap(), "old output");
            assert_eq!(newest.await.unwrap(), "new output");
        });
        assert_eq!(rt.live_tasks(), 0);
    });
}

#[test]
fn a_join_handle_polled_after_its_output_reports_consumed() {
    with_timeout(LIMIT, || {
        let rt = one_worker(true);
        rt.block_on(async {
            let mut h = spawn(async { 5 });
            assert_eq!((&mut h).await.unwrap(), 5);
            assert!(h.is_finished());
            let err = (&mut h).await.expect_err("the output was taken already");
            assert!(matches!(err, JoinError::Consumed), "got {err:?}");
            assert!(!err.is_cancelled() && !err.is_panic());
            assert!(err.to_string().contains("after it returned the output"));
            // And again.
            assert!(matches!((&mut h).await, Err(JoinError::Consumed)));
        });
    });
}

/// Waits (yielding) until `cond` holds, for up to 5 s.
async fn until(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        yield_now().await;
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn a_join_handle_dropped_on_another_thread_before_completion() {
    with_timeout(LIMIT, || {
        let rt = one_worker(true);
        let drops = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let signal = Signal::new();
            let h = spawn({
                let signal = signal.clone();
                let guard = DropGuard(drops.clone());
                async move {
                    signal.wait().await;
                    guard // the output
                }
            });
            yield_now().await;
            std::thread::spawn(move || drop(h)).join().unwrap();
            assert_eq!(drops.load(Ordering::SeqCst), 0);
            signal.fire();
            // The detached task finishes; its output is dropped with the
            // block, which goes back to this worker's pool.
            until(|| drops.load(Ordering::SeqCst) == 1, "the output's drop").await;
        });
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(rt.live_tasks(), 0);
        assert_eq!(rt.task_pool_stats().2, 1, "the block returned to the pool");
    });
}

#[test]
#[allow(clippy::async_yields_async)] // the block hands the JoinHandle out on purpose
fn a_join_handle_dropped_on_another_thread_after_completion() {
    with_timeout(LIMIT, || {
        let rt = one_worker(true);
        let drops = Arc::new(AtomicUsize::new(0));
        let h = rt.block_on(async {
            let guard = DropGuard(drops.clone());
            let h = spawn(async move { guard });
            while !h.is_finished() {
                yield_now().await;
            }
            h
        });
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "the output waits for its handle"
        );
        std::thread::spawn(move || drop(h)).join().unwrap();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the output was not dropped"
        );
        // Sent home from there: back in this worker's pool.
        assert_eq!(rt.task_pool_stats().2, 1, "the block came back");
        // The worker carries on.
        assert_eq!(rt.block_on(async { spawn(small(9)).await.unwrap() }), 9);
    });
}

#[test]
fn join_handles_of_remote_tasks_dropped_on_third_threads() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let handles: Vec<JoinHandle<DropGuard>> = rt.block_on(async {
            let mut handles = Vec::new();
            for i in 0..200 {
                let guard = DropGuard(drops.clone());
                handles.push(spawn_on(1, async move {
                    if i % 2 == 0 {
                        yield_now().await;
                    }
                    guard
                }));
            }
            handles
        });
        // Half dropped while (maybe) still running, half after.
        let (first, second): (Vec<_>, Vec<_>) = handles
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        std::thread::spawn(move || drop(first)).join().unwrap();
        rt.block_on(async {
            for (_, h) in &second {
                while !h.is_finished() {
                    yield_now().await;
                }
            }
        });
        std::thread::spawn(move || drop(second)).join().unwrap();
        rt.block_on(async {
            until(
                || drops.load(Ordering::SeqCst) == 200,
                "every output's drop",
            )
            .await;
        });
        assert_eq!(
            drops.load(Ordering::SeqCst),
            200,
            "an output was dropped twice or never"
        );
    });
}

#[test]
fn blocks_of_tasks_sent_to_another_worker_come_back_to_the_sender() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            for i in 0..20 {
                let finished = done.clone();
                // Detached: the task's last reference goes on worker 1.
                drop(spawn_on(1, async move {
                    small(i).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                }));
                until(|| done.load(Ordering::SeqCst) == i as usize + 1, "the task").await;
                // The block is freed on worker 1 after the task ended, and
                // then travels: wait until it is home (pooled again).
                until(|| rt.task_pool_stats().2 == 1, "the block's return").await;
            }
        });
        let (reused, allocated, pooled) = rt.task_pool_stats();
        assert_eq!(
            (allocated, pooled),
            (1, 1),
            "one block, taken from worker 0's pool and back in it"
        );
        assert_eq!(reused, 19, "every later hand-off reused it");
        assert_eq!(rt.trim_task_pool(), 1);
    });
}
