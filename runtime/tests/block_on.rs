//! `Runtime::block_on`: returns the future's output, refuses to nest,
//! drives the runtime's spawned tasks, and survives a panic out of worker
//! 0's loop.

mod util;

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use cellio_runtime::{spawn, yield_now, Builder, Runtime};
use util::{panic_text, run, with_timeout, LIMIT};

#[test]
fn returns_the_output() {
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        assert_eq!(rt.block_on(async { 6 * 7 }), 42);
        assert_eq!(rt.block_on(async { String::from("hi") }), "hi");
        let r: Result<u8, &str> = rt.block_on(async { Err("nope") });
        assert_eq!(r, Err("nope"));
        // A future that awaits before finishing.
        let v = rt.block_on(async {
            yield_now().await;
            yield_now().await;
            vec![1, 2, 3]
        });
        assert_eq!(v, [1, 2, 3]);
    });
}

#[test]
fn block_on_can_be_called_again_and_runtimes_can_follow_each_other() {
    with_timeout(LIMIT, || {
        for i in 0..5 {
            let rt = Builder::new()
                .event_capacity(8)
                .event_interval(2)
                .build()
                .unwrap();
            for j in 0..5 {
                assert_eq!(rt.block_on(async move { i * 10 + j }), i * 10 + j);
            }
        }
    });
}

#[test]
fn nested_block_on_panics_with_a_clear_message() {
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let other = Runtime::new().unwrap();
        let (same, different) = rt.block_on(async {
            let same = catch_unwind(AssertUnwindSafe(|| rt.block_on(async { 1 })));
            let different = catch_unwind(AssertUnwindSafe(|| other.block_on(async { 2 })));
            (same, different)
        });
        for (what, result) in [("same runtime", same), ("another runtime", different)] {
            let payload = result.expect_err(what);
            let text = panic_text(&*payload);
            assert!(
                text.contains("block_on") && text.contains("inside a runtime"),
                "{what}: unclear message: {text:?}"
            );
        }
        // Both runtimes still work.
        assert_eq!(rt.block_on(async { spawn(async { 5 }).await.unwrap() }), 5);
        assert_eq!(other.block_on(async { 6 }), 6);
    });
}

#[test]
fn nested_block_on_from_a_spawned_task_panics_too() {
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let err = rt.block_on(async {
            spawn(async {
                let inner = Runtime::new().unwrap();
                inner.block_on(async {});
            })
            .await
            .expect_err("the task must panic")
        });
        assert!(err.is_panic());
        assert!(err.to_string().contains("block_on"), "{err}");
    });
}

#[test]
fn a_panic_in_the_main_future_propagates_and_the_runtime_survives() {
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async {
                yield_now().await;
                panic!("main future failed");
            })
        }));
        assert_eq!(panic_text(&*result.unwrap_err()), "main future failed");
        assert_eq!(rt.block_on(async { spawn(async { 3 }).await.unwrap() }), 3);
        // And the thread is no longer considered inside a runtime.
        let rt2 = Runtime::new().unwrap();
        assert_eq!(rt2.block_on(async { 4 }), 4);
    });
}

/// A panic in the `block_on` future leaves no spent budget behind: outside
/// every poll, a budgeted operation on this thread proceeds. (It used to
/// stay at what the future left, here 0, so every socket operation polled
/// on this thread outside the runtime returned `Pending` forever; found by
/// a review.)
#[test]
fn a_panic_in_the_main_future_leaves_no_budget_behind() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(1).budget(3).build().unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async {
                for _ in 0..3 {
                    // Each spends a unit.
                    cellio_runtime::sleep(Duration::ZERO).await;
                }
                panic!("main future failed");
            })
        }));
        assert_eq!(panic_text(&*result.unwrap_err()), "main future failed");
        assert!(
            cellio_reactor::budget::has_remaining(),
            "outside every poll, this thread's budget is spent"
        );
        rt.block_on(yield_now());
        assert!(cellio_reactor::budget::has_remaining());
    });
}

#[test]
fn block_on_drives_spawned_tasks_it_does_not_await() {
    run(|| async {
        let counter = Arc::new(AtomicUsize::new(0));
        for _ in 0..10 {
            let counter = counter.clone();
            // Detached: the handle is dropped at once.
            drop(spawn(async move {
                yield_now().await;
                counter.fetch_add(1, Ordering::SeqCst);
            }));
        }
        let mut rounds = 0;
        while counter.load(Ordering::SeqCst) < 10 {
            rounds += 1;
            assert!(rounds < 1_000, "spawned tasks were not driven");
            yield_now().await;
        }
    });
}

#[test]
fn unfinished_tasks_run_again_in_the_next_block_on() {
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let signal = util::Signal::new();
        let counter = Arc::new(AtomicUsize::new(0));
        let handle = {
            let counter = counter.clone();
            let signal = signal.clone();
            rt.spawn(async move {
                counter.fetch_add(1, Ordering::SeqCst);
                signal.wait().await;
                counter.fetch_add(1, Ordering::SeqCst);
                "done"
            })
        };
        // Spawned from outside: starts at the next block_on.
        assert_eq!(counter.load(Ordering::SeqCst), 0);
        assert_eq!(rt.live_tasks(), 1);
        rt.block_on(async {
            for _ in 0..3 {
                yield_now().await;
            }
        });
        assert_eq!(counter.load(Ordering::SeqCst), 1, "ran up to its wait");
        assert_eq!(rt.live_tasks(), 1);
        signal.fire(); // from outside any block_on
        assert_eq!(rt.block_on(handle).unwrap(), "done");
        assert_eq!(counter.load(Ordering::SeqCst), 2);
        assert_eq!(rt.live_tasks(), 0);
    });
}

#[test]
fn runtimes_on_several_threads_run_independently() {
    with_timeout(LIMIT, || {
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                std::thread::spawn(move || {
                    let rt = Runtime::new().unwrap();
                    rt.block_on(async move {
                        let handles: Vec<_> = (0..100u64)
                            .map(|i| {
                                spawn(async move {
                                    yield_now().await;
                                    t * 1000 + i
                                })
                            })
                            .collect();
                        let mut sum = 0;
                        for h in handles {
                            sum += h.await.unwrap();
                        }
                        sum
                    })
                })
            })
            .collect();
        for (t, thread) in threads.into_iter().enumerate() {
            let t = t as u64;
            assert_eq!(thread.join().unwrap(), t * 100_000 + 4950);
        }
    });
}

/// A waker that panics when worker 0 wakes it (here: its timer fires)
/// unwinds out of `block_on`, which is where worker 0's loop runs. The
/// runtime stays usable: tasks spawned before still run, timers still
/// fire.
#[test]
fn a_waker_panic_in_worker_0s_loop_leaves_the_runtime_usable() {
    util::quiet_panics_ending_with(util::ON_PURPOSE);
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let waiting = rt.spawn(std::future::pending::<()>());
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async {
                let mut timer = std::pin::pin!(cellio_runtime::sleep(Duration::from_millis(5)));
                let waker = util::panicking_waker();
                let polled = timer.as_mut().poll(&mut Context::from_waker(&waker));
                assert!(polled.is_pending());
                cellio_runtime::sleep(Duration::from_millis(100)).await;
            })
        }));
        let panic = outcome.expect_err("the waker's panic reaches block_on's caller");
        assert_eq!(panic_text(&*panic), "a waker that panics, on purpose");
        let out = rt.block_on(async {
            cellio_runtime::sleep(Duration::from_millis(5)).await;
            spawn(async { 5 }).await.unwrap()
        });
        assert_eq!(out, 5);
        waiting.abort();
        assert!(matches!(
            rt.block_on(waiting),
            Err(cellio_runtime::JoinError::Aborted)
        ));
        assert_eq!(rt.live_tasks(), 0);
    });
}
