//! `AbortHandle`: an abort that does not need the `JoinHandle`. It stops
//! the task from another task or a plain thread, outlives the
//! `JoinHandle` (a detached task can still be stopped), clones freely, and
//! keeps only the task's header alive: the block goes back to the pool
//! when the last handle of any kind is dropped.

mod util;

use std::future::pending;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cellio_runtime::{sleep, spawn, spawn_on, yield_now, JoinError, Runtime};
use util::{run, run_on, with_timeout, LIMIT};

/// Sets its flag when dropped: the task's future is gone.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn dropped_flag() -> (SetOnDrop, Arc<AtomicBool>) {
    let flag = Arc::new(AtomicBool::new(false));
    (SetOnDrop(flag.clone()), flag)
}

#[test]
fn an_abort_handle_stops_the_task_and_its_join_handle_says_aborted() {
    run(|| async {
        let handle = spawn(async {
            sleep(Duration::from_secs(3600)).await;
            1
        });
        let stopper = handle.abort_handle();
        assert!(!stopper.is_finished());
        // From another task.
        spawn(async move { stopper.abort() }).await.unwrap();
        assert!(matches!(handle.await, Err(JoinError::Aborted)));
    });
}

#[test]
fn a_detached_task_can_still_be_stopped() {
    run(|| async {
        let (guard, dropped) = dropped_flag();
        let handle = spawn(async move {
            let _guard = guard;
            pending::<()>().await
        });
        let stopper = handle.abort_handle();
        drop(handle); // detached: runs on
        yield_now().await;
        assert!(!dropped.load(Ordering::SeqCst));
        assert!(!stopper.is_finished());
        stopper.abort();
        while !stopper.is_finished() {
            yield_now().await;
        }
        assert!(dropped.load(Ordering::SeqCst), "the future was dropped");
    });
}

#[test]
fn clones_abort_from_plain_threads_and_across_workers() {
    run_on(2, || async {
        let (guard, dropped) = dropped_flag();
        let handle = spawn_on(1, async move {
            let _guard = guard;
            pending::<()>().await
        });
        let stopper = handle.abort_handle();
        let clones: Vec<_> = (0..4).map(|_| stopper.clone()).collect();
        drop(stopper);
        let threads: Vec<_> = clones
            .into_iter()
            .map(|clone| std::thread::spawn(move || clone.abort()))
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(matches!(handle.await, Err(JoinError::Aborted)));
        assert!(dropped.load(Ordering::SeqCst));
    });
}

#[test]
fn a_task_that_finished_keeps_its_output() {
    run(|| async {
        let mut handle = spawn(async { 42 });
        let stopper = handle.abort_handle();
        while !stopper.is_finished() {
            yield_now().await;
        }
        stopper.abort();
        assert_eq!((&mut handle).await.unwrap(), 42);
        // Made after the output was returned: nothing left to stop.
        let late = handle.abort_handle();
        assert!(late.is_finished());
        late.abort();
        assert!(matches!(handle.await, Err(JoinError::Consumed)));
        assert!(stopper.is_finished());
    });
}

#[test]
fn the_block_goes_back_to_the_pool_only_when_the_last_handle_goes() {
    with_timeout(LIMIT, || {
        let runtime = Runtime::new().unwrap();
        let kept = runtime.block_on(async {
            let handle = spawn(async { [7u8; 512] });
            let kept = handle.abort_handle();
            let output = handle.await.unwrap();
            assert_eq!(output, [7u8; 512]);
            kept
        });
        // `kept` still holds the first task's block.
        let (_, allocated, pooled) = runtime.task_pool_stats();
        assert_eq!(pooled as u64, allocated - 1, "one block is held");
        assert!(kept.is_finished());
        drop(kept);
        let (_, allocated, pooled) = runtime.task_pool_stats();
        assert_eq!(pooled as u64, allocated, "every block is back");
    });
}

#[test]
fn a_handle_outlives_its_runtime() {
    let stopper = with_timeout(LIMIT, || {
        let runtime = Runtime::new().unwrap();
        runtime.block_on(async { spawn(pending::<()>()).abort_handle() })
    });
    // The runtime is gone, and the task with it (cancelled).
    assert!(stopper.is_finished());
    stopper.abort(); // nothing to wake; does nothing
    let again = stopper.clone();
    drop(stopper);
    drop(again);
}

#[test]
fn abort_handles_are_send_sync_and_debug() {
    fn is_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
    is_send_sync::<cellio_runtime::AbortHandle>();
    run(|| async {
        let handle = spawn(async {});
        let stopper = handle.abort_handle();
        let id = handle.id();
        assert_eq!(
            format!("{stopper:?}"),
            format!("AbortHandle {{ id: {id:?}, finished: false }}")
        );
        handle.await.unwrap();
        assert_eq!(
            format!("{stopper:?}"),
            format!("AbortHandle {{ id: {id:?}, finished: true }}")
        );
    });
}

/// A value that is not `Send` (like an `Rc`) and records the thread that
/// drops it.
struct NotSend {
    dropped_on: Arc<std::sync::Mutex<Option<std::thread::ThreadId>>>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for NotSend {
    fn drop(&mut self) {
        *self.dropped_on.lock().unwrap() = Some(std::thread::current().id());
    }
}

/// `spawn_local`'s output need not be `Send`, so only its worker (or its
/// `JoinHandle`, which is then not `Send`) may drop it. A detached task's
/// output is dropped on the worker when the task ends, not by the
/// `AbortHandle` that outlives it, which may be dropped on any thread.
/// (The block's last reference dropped the output: an `AbortHandle` moved
/// to another thread dropped a `!Send` value there. Found by a review.)
#[test]
fn an_abort_handle_never_drops_a_non_send_output() {
    with_timeout(LIMIT, an_abort_handle_never_drops_a_non_send_output_body);
}

fn an_abort_handle_never_drops_a_non_send_output_body() {
    let dropped_on = Arc::new(std::sync::Mutex::new(None));
    let worker_thread = std::thread::current().id();
    let rt = Runtime::new().unwrap();
    let abort = rt.block_on({
        let dropped_on = dropped_on.clone();
        async move {
            let handle = cellio_runtime::spawn_local(async move {
                NotSend {
                    dropped_on,
                    _not_send: std::marker::PhantomData,
                }
            });
            let abort = handle.abort_handle();
            drop(handle); // detached: nobody takes the output
            while !abort.is_finished() {
                yield_now().await;
            }
            abort
        }
    });
    assert_eq!(
        *dropped_on.lock().unwrap(),
        Some(worker_thread),
        "the worker drops the output when the task ends"
    );
    // The `AbortHandle` is `Send`: its drop elsewhere touches no payload.
    std::thread::spawn(move || drop(abort)).join().unwrap();
    assert_eq!(*dropped_on.lock().unwrap(), Some(worker_thread));
}

/// Thousands of `AbortHandle`s of one task may be alive at once (up to
/// 4 095; more abort the process, as `Arc` does on overflow). (The owners'
/// count of the task-owner fix took two bits of the reference count, and
/// the 2 046th handle aborted the process; found by a review.)
#[test]
fn thousands_of_abort_handles_of_one_task() {
    run(|| async {
        let handle = spawn(std::future::pending::<()>());
        let first = handle.abort_handle();
        let clones: Vec<_> = (0..3000).map(|_| first.clone()).collect();
        clones[2999].abort();
        assert!(matches!(handle.await, Err(JoinError::Aborted)));
        assert!(clones.iter().all(|clone| clone.is_finished()));
    });
}
