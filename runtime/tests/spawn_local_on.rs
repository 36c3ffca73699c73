//! `spawn_local_on`: a future that is not `Send`, built by a `Send` closure
//! on the worker it runs on. Where the closure runs, that the future never
//! leaves that worker's thread (not even to be dropped at shutdown), what
//! happens when the runtime has stopped, and panics.

mod util;

use std::cell::Cell;
use std::future::pending;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::ThreadId;
use std::time::Duration;

use cellio_runtime::{
    current_worker, spawn_local_on, spawn_on, yield_now, Builder, JoinError, JoinHandle,
};
use util::{panic_text, run_on, with_timeout, LIMIT};

/// Where this code runs: worker index and thread.
fn here() -> (Option<usize>, ThreadId) {
    (current_worker(), std::thread::current().id())
}

/// The thread of each of `workers` workers, asked with `spawn_on`.
async fn worker_threads(workers: usize) -> Vec<ThreadId> {
    let mut threads = Vec::new();
    for index in 0..workers {
        let (worker, thread) = spawn_on(index, async { here() }).await.unwrap();
        assert_eq!(worker, Some(index));
        threads.push(thread);
    }
    threads
}

/// A future that is not `Send` (it holds an `Rc` across its awaits) and
/// reports where it was built, polled after each yield, and finished.
async fn rooted(made: (Option<usize>, ThreadId), yields: usize) -> Vec<(Option<usize>, ThreadId)> {
    let seen = Rc::new(Cell::new(0));
    let mut trail = vec![made, here()];
    for _ in 0..yields {
        yield_now().await;
        seen.set(seen.get() + 1);
        trail.push(here());
    }
    assert_eq!(seen.get(), yields);
    trail
}

#[test]
fn the_future_is_built_and_run_on_the_worker_it_names() {
    run_on(3, || async {
        let threads = worker_threads(3).await;
        for index in [1, 2, 0] {
            let trail = spawn_local_on(index, move || rooted(here(), 5))
                .await
                .unwrap();
            assert_eq!(trail.len(), 7);
            for (step, (worker, thread)) in trail.into_iter().enumerate() {
                assert_eq!(worker, Some(index), "worker {index}, step {step}");
                assert_eq!(thread, threads[index], "worker {index}, step {step}");
            }
        }
    });
}

#[test]
fn a_runtime_handle_on_a_plain_thread_spawns_local_tasks_on_any_worker() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let (tx, rx) = mpsc::channel::<Vec<JoinHandle<Vec<(Option<usize>, ThreadId)>>>>();
        std::thread::spawn(move || {
            let handles = (0..10)
                .map(|k| handle.spawn_local_on(k % 2, || rooted(here(), 2)))
                .collect();
            tx.send(handles).unwrap();
        })
        .join()
        .unwrap();
        let handles = rx.recv().unwrap();
        rt.block_on(async move {
            let threads = worker_threads(2).await;
            for (k, h) in handles.into_iter().enumerate() {
                for (worker, thread) in h.await.unwrap() {
                    assert_eq!((worker, thread), (Some(k % 2), threads[k % 2]));
                }
            }
        });
    });
}

/// Records the thread it is dropped on.
struct DropsOn(mpsc::Sender<ThreadId>, PhantomData<*const ()>);

impl Drop for DropsOn {
    fn drop(&mut self) {
        let _ = self.0.send(std::thread::current().id());
    }
}

/// A task that never ends is cancelled when the runtime stops: its future,
/// which is not `Send`, is dropped on its own worker's thread, never on the
/// thread that stops the runtime.
#[test]
fn an_unfinished_local_task_is_dropped_on_its_worker_at_shutdown() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let (tx, rx) = mpsc::channel();
        let (threads, handle) = rt.block_on(async move {
            let threads = worker_threads(2).await;
            let handle = spawn_local_on(1, move || async move {
                let _guard = DropsOn(tx, PhantomData);
                pending::<()>().await;
            });
            // It has started (it holds its guard) before the runtime stops.
            yield_now().await;
            (threads, handle)
        });
        assert_eq!(rt.shutdown_timeout(Duration::from_millis(50)), 1);
        let dropped_on = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the future was never dropped");
        assert_eq!(dropped_on, threads[1], "dropped off its worker's thread");
        assert_ne!(dropped_on, std::thread::current().id());
        let result = Builder::new().workers(1).build().unwrap().block_on(handle);
        assert!(matches!(result, Err(JoinError::Cancelled)), "{result:?}");
    });
}

/// Counts its drops; `Send`, as `make`'s captures must be.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn on_a_stopped_runtime_make_is_dropped_uncalled_and_the_handle_reports_cancelled() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        drop(rt);
        for worker in 0..2 {
            let drops = Arc::new(AtomicUsize::new(0));
            let calls = Arc::new(AtomicUsize::new(0));
            let captured = Counted(drops.clone());
            let late = handle.spawn_local_on(worker, {
                let calls = calls.clone();
                move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async move { drop(captured) }
                }
            });
            let result = Builder::new()
                .workers(1)
                .build()
                .unwrap()
                .block_on(async { cellio_runtime::timeout(Duration::from_secs(1), late).await })
                .expect("the handle of a task refused by a stopped runtime hangs");
            assert!(matches!(result, Err(JoinError::Cancelled)), "{result:?}");
            assert_eq!(calls.load(Ordering::SeqCst), 0, "worker {worker}: make ran");
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "worker {worker}: make not dropped"
            );
        }
    });
}

#[test]
fn a_panic_in_make_is_the_tasks_panic() {
    run_on(2, || async {
        let err = spawn_local_on(1, || -> std::future::Ready<()> {
            panic!("make failed on purpose")
        })
        .await
        .expect_err("the task must report the panic");
        assert!(err.is_panic(), "{err:?}");
        // The worker is fine afterwards.
        let after = spawn_local_on(1, || async { current_worker() }).await;
        assert_eq!(after.unwrap(), Some(1));
    });
}

#[test]
fn an_out_of_range_worker_or_no_runtime_panics_clearly() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let err = catch_unwind(AssertUnwindSafe(|| {
            handle.spawn_local_on(2, || async {});
        }))
        .expect_err("spawn_local_on(2) on 2 workers must panic");
        let text = panic_text(&*err);
        assert!(
            text.contains("spawn_local_on(2)") && text.contains("2 workers"),
            "unclear panic message: {text:?}"
        );
        let err = catch_unwind(|| {
            spawn_local_on(0, || async {});
        })
        .expect_err("no runtime here");
        let text = panic_text(&*err);
        assert!(
            text.contains("spawn_local_on") && text.contains("outside a runtime"),
            "unclear panic message: {text:?}"
        );
    });
}
