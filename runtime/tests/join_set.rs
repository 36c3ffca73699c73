//! `JoinSet`: every member's output is returned exactly once, in the order
//! the members finish; dropping the set aborts its members; `abort_all`,
//! `detach_all`, `shutdown`, `try_join_next` and `poll_join_next` do what
//! tokio's do; members may run on other workers; a `join_next` dropped
//! while it waits loses no output; `join_all` collects every output or
//! resumes a member's panic; and an output spends a unit of the task's
//! budget, so a loop over finished members yields to the worker's other
//! tasks.

mod util;

use std::cell::{Cell, RefCell};
use std::future::{pending, poll_fn};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use cellio_runtime::{
    current_worker, sleep, spawn, timeout, yield_now, JoinError, JoinSet, Runtime,
};
use util::{
    quiet_panics_ending_with, run, run_on, scaled, with_timeout, Signal, LIMIT, ON_PURPOSE,
};

/// Counts its drops: how many members' futures are gone.
struct CountDrop(Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Yields `n` times: a member that finishes after `n` turns of the worker.
async fn after_turns(n: usize) {
    for _ in 0..n {
        yield_now().await;
    }
}

#[test]
fn outputs_come_back_once_each_in_the_order_members_finish() {
    run(|| async {
        let mut set = JoinSet::new();
        assert!(set.is_empty());
        // Spawned in one order, finishing in the reverse one.
        for i in 0..50usize {
            set.spawn(async move {
                after_turns(3 * (50 - i)).await;
                i
            });
        }
        assert_eq!(set.len(), 50);
        let mut order = Vec::new();
        while let Some(output) = set.join_next().await {
            order.push(output.unwrap());
        }
        assert_eq!(order, (0..50).rev().collect::<Vec<_>>());
        assert!(set.is_empty());
        assert!(set.join_next().await.is_none(), "empty stays empty");
    });
}

#[test]
fn a_big_set_where_members_finish_one_at_a_time() {
    run(|| async {
        let members = scaled(2000);
        let mut set = JoinSet::new();
        for i in 0..members {
            set.spawn(async move {
                sleep(Duration::from_micros(10 * (i % 7))).await;
                i
            });
        }
        let mut sum = 0;
        let mut count = 0;
        while let Some(output) = set.join_next().await {
            sum += output.unwrap();
            count += 1;
        }
        assert_eq!(count, members);
        assert_eq!(sum, (members - 1) * members / 2);
    });
}

#[test]
fn members_on_other_workers_and_not_send_ones() {
    run_on(2, || async {
        let mut set = JoinSet::new();
        for i in 0..20usize {
            set.spawn_on(i % 2, async move {
                after_turns(i % 5).await;
                (i, current_worker())
            });
        }
        // Built on worker 1, holding an `Rc` across its await.
        set.spawn_local_on(1, || async {
            let shared = Rc::new(RefCell::new(0usize));
            yield_now().await;
            *shared.borrow_mut() += 100;
            let n = *shared.borrow();
            (n, current_worker())
        });
        let mut seen = Vec::new();
        while let Some(output) = set.join_next().await {
            let (i, worker) = output.unwrap();
            if i < 100 {
                assert_eq!(worker, Some(i % 2), "member {i} ran where it was sent");
            } else {
                assert_eq!(worker, Some(1));
            }
            seen.push(i);
        }
        seen.sort_unstable();
        let mut expected: Vec<usize> = (0..20).collect();
        expected.push(100);
        assert_eq!(seen, expected);
    });
}

#[test]
fn spawn_local_members_may_hold_what_is_not_send() {
    run(|| async {
        let counter = Rc::new(RefCell::new(0));
        let mut set = JoinSet::new();
        for _ in 0..10 {
            let counter = counter.clone();
            set.spawn_local(async move {
                yield_now().await;
                *counter.borrow_mut() += 1;
                counter
            });
        }
        while let Some(output) = set.join_next().await {
            drop(output.unwrap());
        }
        assert_eq!(*counter.borrow(), 10);
    });
}

#[test]
fn dropping_the_set_aborts_every_member() {
    run(|| async {
        let dropped = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        let mut stoppers = Vec::new();
        for _ in 0..10 {
            let (guard, finished) = (CountDrop(dropped.clone()), finished.clone());
            stoppers.push(set.spawn(async move {
                let _guard = guard;
                sleep(Duration::from_secs(3600)).await;
                finished.fetch_add(1, Ordering::SeqCst);
            }));
        }
        yield_now().await; // every member sleeps
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        drop(set);
        while !stoppers.iter().all(|stopper| stopper.is_finished()) {
            yield_now().await;
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 10, "every future dropped");
        assert_eq!(finished.load(Ordering::SeqCst), 0, "none ran on");
    });
}

#[test]
fn abort_all_reports_aborted_and_keeps_outputs_of_members_that_finished() {
    run(|| async {
        let mut set = JoinSet::new();
        for i in 0..6u32 {
            set.spawn(async move {
                if i % 2 == 1 {
                    pending::<()>().await;
                }
                i
            });
        }
        // The even ones finish on their first poll.
        after_turns(2).await;
        set.abort_all();
        assert_eq!(set.len(), 6, "aborted members stay until joined");
        let (mut finished, mut aborted) = (Vec::new(), 0);
        while let Some(output) = set.join_next().await {
            match output {
                Ok(i) => finished.push(i),
                Err(JoinError::Aborted) => aborted += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        finished.sort_unstable();
        assert_eq!(finished, [0, 2, 4]);
        assert_eq!(aborted, 3);
    });
}

#[test]
fn each_spawn_returns_an_abort_handle_for_that_member() {
    run(|| async {
        let mut set = JoinSet::new();
        let stop_me = set.spawn(async {
            pending::<()>().await;
            "never"
        });
        set.spawn(async { "done" });
        stop_me.abort();
        let mut outputs: Vec<String> = Vec::new();
        while let Some(output) = set.join_next().await {
            outputs.push(match output {
                Ok(text) => text.to_string(),
                Err(error) => error.to_string(),
            });
        }
        outputs.sort();
        assert_eq!(outputs, ["done", "task was aborted through its JoinHandle"]);
    });
}

#[test]
fn detach_all_lets_the_members_run_on() {
    run(|| async {
        let finished = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for _ in 0..5 {
            let finished = finished.clone();
            set.spawn(async move {
                after_turns(5).await;
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        set.detach_all();
        assert!(set.is_empty());
        drop(set); // aborts nothing: it holds nothing
        after_turns(20).await;
        assert_eq!(finished.load(Ordering::SeqCst), 5);
    });
}

#[test]
fn shutdown_waits_until_every_member_is_stopped() {
    run(|| async {
        let dropped = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for _ in 0..8 {
            let guard = CountDrop(dropped.clone());
            set.spawn(async move {
                let _guard = guard;
                pending::<()>().await
            });
        }
        yield_now().await;
        set.shutdown().await;
        assert!(set.is_empty());
        assert_eq!(dropped.load(Ordering::SeqCst), 8);
        // The set can be used again.
        set.spawn(async {});
        assert!(set.join_next().await.unwrap().is_ok());
    });
}

#[test]
fn try_join_next_never_waits() {
    run(|| async {
        let mut set = JoinSet::new();
        assert!(set.try_join_next().is_none(), "empty");
        set.spawn(async {
            after_turns(3).await;
            9
        });
        assert!(set.try_join_next().is_none(), "not finished yet");
        after_turns(10).await;
        assert_eq!(set.try_join_next().unwrap().unwrap(), 9);
        assert!(set.try_join_next().is_none());
        assert!(set.is_empty());
    });
}

#[test]
fn a_join_next_dropped_while_waiting_loses_no_output() {
    run(|| async {
        let release = Signal::new();
        let mut set = JoinSet::new();
        let wait = release.wait();
        set.spawn(async move {
            wait.await;
            "late"
        });
        // Given up after 1 ms: the member cannot have finished.
        assert!(timeout(Duration::from_millis(1), set.join_next())
            .await
            .is_err());
        assert_eq!(set.len(), 1);
        release.fire();
        assert_eq!(set.join_next().await.unwrap().unwrap(), "late");
    });
}

#[test]
fn poll_join_next_in_a_hand_written_future() {
    run(|| async {
        let mut set = JoinSet::new();
        for i in 0..3u8 {
            set.spawn(async move {
                after_turns(usize::from(i)).await;
                i
            });
        }
        let mut got = Vec::new();
        poll_fn(|cx| loop {
            match set.poll_join_next(cx) {
                Poll::Ready(Some(output)) => got.push(output.unwrap()),
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await;
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2]);
    });
}

#[test]
fn join_all_returns_every_output_in_finish_order() {
    let outputs = run(|| async {
        let mut set = JoinSet::new();
        for i in 0..50usize {
            set.spawn(async move {
                after_turns(50 - i).await;
                i
            });
        }
        set.join_all().await
    });
    assert_eq!(outputs, (0..50).rev().collect::<Vec<_>>());
}

/// A member's panic resumes out of `join_all`, and the members still
/// running are aborted (their futures dropped, never finished).
#[test]
fn join_all_resumes_a_members_panic_and_aborts_the_rest() {
    quiet_panics_ending_with(ON_PURPOSE);
    let dropped = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::new().unwrap();
    let (d, f) = (dropped.clone(), finished.clone());
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async move {
            let mut set = JoinSet::new();
            for _ in 0..3 {
                let (guard, finished) = (CountDrop(d.clone()), f.clone());
                set.spawn(async move {
                    let _guard = guard;
                    pending::<()>().await;
                    finished.fetch_add(1, Ordering::SeqCst);
                });
            }
            set.spawn(async {
                yield_now().await;
                panic!("the member that fails, {ON_PURPOSE}");
            });
            set.join_all().await
        })
    }));
    let payload = caught.expect_err("join_all resumed the panic");
    assert!(util::panic_text(&*payload).ends_with(ON_PURPOSE));
    // Aborted members drop their futures when the worker next runs.
    rt.block_on(async {
        until(|| dropped.load(Ordering::SeqCst) == 3).await;
    });
    assert_eq!(finished.load(Ordering::SeqCst), 0);
}

/// Yields until `done` holds.
async fn until(done: impl Fn() -> bool) {
    while !done() {
        yield_now().await;
    }
}

#[test]
fn a_join_error_gives_its_panic_back() {
    quiet_panics_ending_with(ON_PURPOSE);
    run(|| async {
        let error = spawn(async { panic!("payload, {ON_PURPOSE}") })
            .await
            .unwrap_err();
        assert!(util::panic_text(&*error.into_panic()).ends_with(ON_PURPOSE));
        let handle = spawn(pending::<()>());
        handle.abort();
        let error = handle.await.unwrap_err();
        let error = error.try_into_panic().unwrap_err();
        assert!(matches!(error, JoinError::Aborted));
    });
}

#[test]
fn a_panicking_member_is_reported_and_the_others_are_not_disturbed() {
    quiet_panics_ending_with(ON_PURPOSE);
    run(|| async {
        let mut set = JoinSet::new();
        set.spawn(async {
            yield_now().await;
            panic!("a member that panics, {ON_PURPOSE}");
        });
        for _ in 0..3 {
            set.spawn(async { after_turns(2).await });
        }
        let (mut ok, mut panicked) = (0, 0);
        while let Some(output) = set.join_next().await {
            match output {
                Ok(()) => ok += 1,
                Err(error) => {
                    assert!(error.is_panic());
                    assert!(error.to_string().ends_with(ON_PURPOSE));
                    panicked += 1;
                }
            }
        }
        assert_eq!((ok, panicked), (3, 1));
    });
}

#[test]
fn insert_adopts_a_task_spawned_elsewhere() {
    with_timeout(LIMIT, || {
        let runtime = Runtime::new().unwrap();
        let handle = runtime.handle();
        let outside = handle.spawn_on(0, async { 5 });
        runtime.block_on(async move {
            let mut set = JoinSet::new();
            set.insert(outside);
            set.insert(spawn(async { 6 }));
            let mut sum = 0;
            while let Some(output) = set.join_next().await {
                sum += output.unwrap();
            }
            assert_eq!(sum, 11);
            // A handle that already gave its output: a member that says so.
            let mut spent = spawn(async { 7 });
            assert_eq!((&mut spent).await.unwrap(), 7);
            let stopper = set.insert(spent);
            assert!(stopper.is_finished(), "nothing left to stop");
            assert!(matches!(
                set.join_next().await,
                Some(Err(JoinError::Consumed))
            ));
            assert!(set.is_empty());
        });
    });
}

#[test]
fn members_cancelled_by_the_runtime_shutting_down_say_so() {
    let outputs = with_timeout(LIMIT, || {
        let runtime = cellio_runtime::Builder::new().workers(2).build().unwrap();
        // The set lives on a plain thread; its member sleeps on worker 1.
        let mut set = JoinSet::new();
        let member = runtime.handle().spawn_on(1, async {
            sleep(Duration::from_secs(3600)).await;
        });
        set.insert(member);
        drop(runtime);
        let mut outputs = Vec::new();
        while let Some(output) = set.try_join_next() {
            outputs.push(output);
        }
        outputs
    });
    assert_eq!(outputs.len(), 1);
    assert!(matches!(outputs[0], Err(JoinError::Cancelled)));
}

#[test]
fn a_set_is_send_when_its_outputs_are() {
    fn is_send<T: Send>() {}
    is_send::<JoinSet<u64>>();
    let set: JoinSet<()> = JoinSet::default();
    assert_eq!(format!("{set:?}"), "JoinSet { len: 0 }");
}

/// A loop of `join_next` over members that have all finished gives way to
/// the other tasks of its worker after a budget's worth of outputs, as
/// tokio's does, and still returns every output once. (It took all 1000
/// in one poll: only a member still running made it wait; found by a
/// review of a port from tokio.)
#[test]
fn a_join_next_loop_over_finished_members_yields_to_the_other_tasks() {
    const MEMBERS: usize = 1000;
    let (seen, mut got) = run_on(1, || async {
        cellio_runtime::spawn_local(async {
            let finished = Arc::new(AtomicUsize::new(0));
            let mut set = JoinSet::new();
            for i in 0..MEMBERS {
                let finished = finished.clone();
                set.spawn(async move {
                    finished.fetch_add(1, Ordering::SeqCst);
                    i
                });
            }
            while finished.load(Ordering::SeqCst) < MEMBERS {
                yield_now().await;
            }
            // Spawned before the loop: it runs when the loop yields.
            let done = Rc::new(Cell::new(0));
            let seen = Rc::new(Cell::new(None));
            cellio_runtime::spawn_local({
                let (done, seen) = (done.clone(), seen.clone());
                async move { seen.set(Some(done.get())) }
            });
            let mut got = Vec::new();
            while let Some(output) = set.join_next().await {
                got.push(output.unwrap());
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
        "the other task ran after {seen:?} of {MEMBERS} outputs"
    );
    got.sort_unstable();
    assert_eq!(got, (0..MEMBERS).collect::<Vec<_>>());
}

/// With the task's budget spent, `poll_join_next` returns `Pending` (its
/// task woken) and leaves the finished member in the set; the next poll
/// takes its output. An empty set says `None` even then.
#[test]
fn with_the_budget_spent_join_next_waits_and_keeps_the_output() {
    run(|| async {
        let mut set = JoinSet::new();
        let member = set.spawn(async { 7 });
        while !member.is_finished() {
            yield_now().await;
        }
        cellio_reactor::budget::consume(u32::MAX);
        assert!(poll_fn(|cx| Poll::Ready(set.poll_join_next(cx)))
            .await
            .is_pending());
        assert_eq!(set.len(), 1, "the member is still there");
        assert_eq!(set.join_next().await.unwrap().unwrap(), 7);
        cellio_reactor::budget::consume(u32::MAX);
        assert!(set.join_next().await.is_none());
    });
}
