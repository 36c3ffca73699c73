//! `JoinHandle`: what its waker may do. A waker that panics when the task
//! it waits for finishes is ignored, as tokio ignores it: the task is
//! freed as any finished task is, a graceful shutdown does not wait for it,
//! and a runtime's drop cancels every other task. Taking an output spends a
//! unit of the awaiting task's budget, so a loop over the handles of
//! finished tasks yields to the worker's other tasks.

mod util;

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cellio_runtime::{sleep, spawn, spawn_local, yield_now, JoinHandle, Runtime};
use util::{run, run_on, with_timeout, LIMIT};

/// Polls `handle` once inside `rt`'s `block_on` with a waker that panics
/// when woken, then lets the task run to its end.
fn park_a_panicking_waker_on<T>(rt: &Runtime, handle: &mut JoinHandle<T>) {
    rt.block_on(async {
        let waker = util::panicking_waker();
        let polled = Pin::new(&mut *handle).poll(&mut Context::from_waker(&waker));
        assert!(polled.is_pending());
        sleep(Duration::from_millis(50)).await;
    });
}

#[test]
fn a_join_waker_that_panics_when_its_task_finishes_is_ignored_and_the_task_freed() {
    util::quiet_panics_ending_with(util::ON_PURPOSE);
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let mut handle = rt.spawn(async {
            yield_now().await;
            7u32
        });
        park_a_panicking_waker_on(&rt, &mut handle);
        assert_eq!(rt.block_on(&mut handle).unwrap(), 7);
        drop(handle);
        rt.block_on(sleep(Duration::from_millis(20)));
        assert_eq!(
            rt.live_tasks(),
            0,
            "the finished task is still counted live"
        );
        let started = Instant::now();
        let cancelled = rt.shutdown_timeout(Duration::from_secs(3));
        let took = started.elapsed();
        assert!(
            cancelled == 0 && took < Duration::from_secs(1),
            "shutdown_timeout took {took:?} and cancelled {cancelled} task(s), all finished"
        );
    });
}

#[test]
fn a_join_waker_that_panics_at_the_runtimes_drop_leaves_no_task_undropped() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    util::quiet_panics_ending_with(util::ON_PURPOSE);
    with_timeout(LIMIT, || {
        let dropped = Arc::new(AtomicUsize::new(0));
        let rt = Runtime::new().unwrap();
        let mut first = rt.spawn(std::future::pending::<()>());
        let guard = Counted(dropped.clone());
        let _second = rt.spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        });
        rt.block_on(async {
            let waker = util::panicking_waker();
            let _ = Pin::new(&mut first).poll(&mut Context::from_waker(&waker));
            yield_now().await;
        });
        let outcome = catch_unwind(AssertUnwindSafe(move || drop(rt)));
        assert!(outcome.is_ok(), "the runtime's drop panicked");
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "the second task's future was not dropped"
        );
    });
}

/// A loop awaiting the handles of tasks that have all finished gives way
/// to the other tasks of its worker after a budget's worth of outputs, as
/// tokio's does, and gets every output. (It took them all in one poll;
/// found by a review of a port from tokio.)
#[test]
fn a_loop_over_handles_of_finished_tasks_yields_to_the_other_tasks() {
    const TASKS: usize = 1000;
    let (seen, got) = run_on(1, || async {
        spawn_local(async {
            let handles: Vec<_> = (0..TASKS).map(|i| spawn(async move { i })).collect();
            while !handles.iter().all(JoinHandle::is_finished) {
                yield_now().await;
            }
            // Spawned before the loop: it runs when the loop yields.
            let done = Rc::new(Cell::new(0));
            let seen = Rc::new(Cell::new(None));
            spawn_local({
                let (done, seen) = (done.clone(), seen.clone());
                async move { seen.set(Some(done.get())) }
            });
            let mut got = Vec::new();
            for handle in handles {
                got.push(handle.await.unwrap());
                done.set(got.len());
            }
            (seen.get(), got)
        })
        .await
        .unwrap()
    });
    let budget = cellio_reactor::budget::DEFAULT_BUDGET as usize;
    assert!(
        seen.is_some_and(|n| (1..=2 * budget).contains(&n)),
        "the other task ran after {seen:?} of {TASKS} outputs"
    );
    assert_eq!(got, (0..TASKS).collect::<Vec<_>>());
}

/// With the task's budget spent, a handle whose task has finished returns
/// `Pending` (its task woken) and keeps the output for the next poll.
#[test]
fn with_the_budget_spent_a_finished_handle_waits_and_keeps_the_output() {
    run(|| async {
        let mut handle = spawn(async { 7 });
        while !handle.is_finished() {
            yield_now().await;
        }
        cellio_reactor::budget::consume(u32::MAX);
        assert!(poll_fn(|cx| Poll::Ready(Pin::new(&mut handle).poll(cx)))
            .await
            .is_pending());
        assert_eq!(handle.await.unwrap(), 7, "the output waited");
    });
}
