//! Workers (thread-per-core): how many there are, which thread runs a task
//! spawned with `spawn_on`, that tasks stay on their worker, spawning from
//! plain threads, and wakes that cross threads.
//!
//! (Socket tests with one `SO_REUSEPORT` listener per worker live in
//! `net/tests/shutdown.rs`: this crate has no net dev-dependency.)

mod util;

use std::future::poll_fn;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread::ThreadId;
use std::time::Duration;

use cellio_runtime::{
    current_worker, spawn, spawn_local, spawn_on, yield_now, Builder, JoinHandle, Runtime,
    RuntimeHandle,
};
use util::{panic_text, run_on, scaled, with_timeout, LIMIT};

/// Where a task ran: its worker index, thread id and thread name.
fn whereami() -> (Option<usize>, ThreadId, Option<String>) {
    let thread = std::thread::current();
    (
        current_worker(),
        thread.id(),
        thread.name().map(str::to_owned),
    )
}

#[test]
fn builder_workers_gives_that_many_workers() {
    with_timeout(LIMIT, || {
        for n in [1usize, 2, 3, 5] {
            let rt = Builder::new().workers(n).build().unwrap();
            assert_eq!(rt.workers(), n);
            assert_eq!(rt.handle().workers(), n);
            let inside = rt.block_on(async { RuntimeHandle::current().map(|h| h.workers()) });
            assert_eq!(inside, Some(n));
        }
        // Zero is raised to one.
        let rt = Builder::new().workers(0).build().unwrap();
        assert_eq!(rt.workers(), 1);
        // The default: one per available core.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(Runtime::new().unwrap().workers(), cores);
        assert_eq!(Builder::default().build().unwrap().workers(), cores);
    });
}

#[test]
fn current_worker_is_none_outside_a_runtime_and_0_in_block_on() {
    assert_eq!(current_worker(), None);
    assert!(RuntimeHandle::current().is_none());
    run_on(2, || async {
        assert_eq!(current_worker(), Some(0));
        assert!(RuntimeHandle::current().is_some());
    });
}

#[test]
fn spawn_on_runs_each_task_on_its_worker_and_thread() {
    run_on(3, || async {
        let (main_worker, main_thread, _) = whereami();
        assert_eq!(main_worker, Some(0));
        let mut threads = Vec::new();
        for i in 0..3 {
            let (worker, thread, name) = spawn_on(i, async { whereami() }).await.unwrap();
            assert_eq!(worker, Some(i), "spawn_on({i}) ran on worker {worker:?}");
            if i == 0 {
                assert_eq!(thread, main_thread, "worker 0 is the block_on thread");
            } else {
                assert_ne!(thread, main_thread, "worker {i} shares the block_on thread");
                assert_eq!(name.as_deref(), Some(format!("cellio-worker-{i}").as_str()));
            }
            threads.push(thread);
        }
        threads.sort_by_key(|t| format!("{t:?}"));
        threads.dedup();
        assert_eq!(threads.len(), 3, "each worker has a thread of its own");

        // Through the handle as well.
        let handle = RuntimeHandle::current().unwrap();
        for i in 0..3 {
            let (worker, _, _) = handle.spawn_on(i, async { whereami() }).await.unwrap();
            assert_eq!(worker, Some(i));
        }
    });
}

#[test]
fn a_task_stays_on_its_worker_and_so_do_the_tasks_it_spawns() {
    run_on(3, || async {
        for i in 0..3 {
            let (outer, inner, local, after_yields) = spawn_on(i, async {
                let outer = whereami();
                let inner = spawn(async {
                    yield_now().await;
                    whereami()
                })
                .await
                .unwrap();
                let local = spawn_local(async { whereami() }).await.unwrap();
                for _ in 0..10 {
                    yield_now().await;
                }
                (outer, inner, local, whereami())
            })
            .await
            .unwrap();
            assert_eq!(outer.0, Some(i));
            assert_eq!(inner.0, Some(i), "spawn inside worker {i} left it");
            assert_eq!(local.0, Some(i), "spawn_local inside worker {i} left it");
            assert_eq!(after_yields.0, Some(i));
            assert_eq!(inner.1, outer.1);
            assert_eq!(local.1, outer.1);
            assert_eq!(after_yields.1, outer.1, "the task moved threads");
        }
    });
}

#[test]
fn spawn_on_from_a_plain_thread_through_a_runtime_handle() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let (tx, rx) = mpsc::channel::<Vec<JoinHandle<Option<usize>>>>();
        std::thread::spawn(move || {
            assert_eq!(current_worker(), None);
            let handles = (0..20)
                .map(|k| handle.spawn_on(k % 2, async { current_worker() }))
                .collect();
            tx.send(handles).unwrap();
        })
        .join()
        .unwrap();
        let handles = rx.recv().unwrap();
        // Worker 1's tasks run on their own; worker 0's wait for block_on.
        rt.block_on(async move {
            for (k, h) in handles.into_iter().enumerate() {
                assert_eq!(h.await.unwrap(), Some(k % 2));
            }
        });
    });
}

#[test]
fn worker_1_runs_tasks_from_a_plain_thread_without_block_on() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let ran = Arc::new(AtomicU64::new(0));
        std::thread::spawn({
            let ran = ran.clone();
            move || {
                for _ in 0..10 {
                    let ran = ran.clone();
                    drop(handle.spawn_on(1, async move {
                        ran.fetch_add(1, Ordering::SeqCst);
                    }));
                }
            }
        })
        .join()
        .unwrap();
        // Nobody is in block_on: worker 1 still runs them.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while ran.load(Ordering::SeqCst) < 10 {
            assert!(
                std::time::Instant::now() < deadline,
                "worker 1 did not run its tasks"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(rt);
    });
}

#[test]
fn spawn_on_an_out_of_range_worker_panics_clearly() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let err = catch_unwind(AssertUnwindSafe(|| handle.spawn_on(2, async {})))
            .expect_err("spawn_on(2) on 2 workers must panic");
        let text = panic_text(&*err);
        assert!(
            text.contains("spawn_on(2)") && text.contains("2 workers"),
            "unclear panic message: {text:?}"
        );
        // The free function, inside the runtime.
        let text = rt.block_on(async {
            let err = catch_unwind(AssertUnwindSafe(|| spawn_on(7, async {})))
                .expect_err("spawn_on(7) on 2 workers must panic");
            panic_text(&*err)
        });
        assert!(
            text.contains("spawn_on(7)"),
            "unclear panic message: {text:?}"
        );
        // Outside a runtime.
        let err = catch_unwind(|| spawn_on(0, async {})).expect_err("no runtime here");
        assert!(panic_text(&*err).contains("outside a runtime"));
        // The runtime is fine afterwards.
        assert_eq!(
            rt.block_on(async { spawn_on(1, async { 5 }).await.unwrap() }),
            5
        );
    });
}

#[test]
fn join_handles_wake_across_workers_for_many_tasks() {
    const TASKS: u64 = scaled(10_000);
    run_on(2, || async {
        // Tasks on worker 1, awaited on worker 0.
        let handles: Vec<_> = (0..TASKS)
            .map(|i| {
                spawn_on(1, async move {
                    if i % 2 == 0 {
                        yield_now().await;
                    }
                    (i, current_worker())
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.await.unwrap(), (i as u64, Some(1)));
        }
        // And the other way: tasks on worker 0, awaited on worker 1.
        let sum = spawn_on(1, async {
            let handles: Vec<_> = (0..TASKS)
                .map(|i| {
                    spawn_on(0, async move {
                        if i % 3 == 0 {
                            yield_now().await;
                        }
                        assert_eq!(current_worker(), Some(0));
                        i
                    })
                })
                .collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await.unwrap();
            }
            sum
        })
        .await
        .unwrap();
        assert_eq!(sum, TASKS * (TASKS - 1) / 2);
    });
}

/// A value handed from a plain thread to a task, one at a time: every step
/// needs a wake from that thread to the task on worker 1.
#[derive(Default)]
struct Mailbox {
    value: u64,
    waker: Option<Waker>,
}

#[test]
fn wakes_from_a_third_thread_reach_tasks_on_worker_1() {
    const ROUNDS: u64 = scaled(2_000);
    run_on(2, || async {
        let mailbox = Arc::new(Mutex::new(Mailbox::default()));
        let (ack_tx, ack_rx) = mpsc::channel::<u64>();
        let task = spawn_on(1, {
            let mailbox = mailbox.clone();
            async move {
                for expected in 1..=ROUNDS {
                    poll_fn(|cx| {
                        let mut m = mailbox.lock().unwrap();
                        if m.value >= expected {
                            Poll::Ready(())
                        } else {
                            m.waker = Some(cx.waker().clone());
                            Poll::Pending
                        }
                    })
                    .await;
                    assert_eq!(current_worker(), Some(1));
                    ack_tx.send(expected).unwrap();
                }
                "all received"
            }
        });
        let producer = std::thread::spawn(move || {
            for i in 1..=ROUNDS {
                let waker = {
                    let mut m = mailbox.lock().unwrap();
                    m.value = i;
                    m.waker.take()
                };
                if let Some(w) = waker {
                    w.wake();
                }
                let acked = ack_rx
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_else(|_| panic!("round {i}: the task on worker 1 was not woken"));
                assert_eq!(acked, i);
                if i % 200 == 0 {
                    // Let worker 1 fall asleep in its reactor now and then.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        assert_eq!(task.await.unwrap(), "all received");
        producer.join().unwrap();
    });
}

/// Worker 1's loop dies of a panic (a user's waker that panics when its
/// timer fires). Nothing may hang because of it: the tasks it held end as
/// cancelled, tasks sent there later are refused (cancelled), and the
/// other workers and the runtime's drop carry on.
#[test]
fn a_worker_whose_loop_panics_cancels_its_tasks_and_refuses_new_ones() {
    util::quiet_panics_ending_with(util::ON_PURPOSE);
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        rt.block_on(async {
            // A task on worker 1 that waits forever.
            let waiting = spawn_on(1, std::future::pending::<()>());
            // Another one arms a timer with the panicking waker (long
            // enough not to be over at its first poll under valgrind: a
            // sleep found over completes there, as tokio's).
            let armed = spawn_on(1, async {
                let mut sleep = std::pin::pin!(cellio_runtime::sleep(Duration::from_millis(200)));
                let waker = util::panicking_waker();
                let polled = sleep
                    .as_mut()
                    .poll(&mut std::task::Context::from_waker(&waker));
                assert!(polled.is_pending());
                std::future::pending::<()>().await
            });
            let waiting = waiting.await;
            assert!(
                matches!(waiting, Err(cellio_runtime::JoinError::Cancelled)),
                "{waiting:?}"
            );
            let armed = armed.await;
            assert!(
                matches!(armed, Err(cellio_runtime::JoinError::Cancelled)),
                "{armed:?}"
            );
            let later = spawn_on(1, async { 1 }).await;
            assert!(
                matches!(later, Err(cellio_runtime::JoinError::Cancelled)),
                "{later:?}"
            );
            // Worker 0 is unaffected.
            assert_eq!(spawn(async { 2 }).await.unwrap(), 2);
        });
    });
}
