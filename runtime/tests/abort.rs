//! `JoinHandle::abort`: the task's future is dropped on its worker instead
//! of being polled again, wherever the abort comes from and whenever it
//! comes (before the task's first poll, while it sleeps, while another
//! worker takes it in, from the task itself), and the handle reports
//! `JoinError::Aborted`. A task that finished first keeps its output.

mod util;

use std::cell::{Cell, RefCell};
use std::future::pending;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use cellio_runtime::{sleep, spawn, spawn_local, spawn_on, yield_now, JoinError, JoinHandle};
use util::{run, run_on, scaled};

/// Records the thread its drop runs on.
struct DropProbe(Arc<Mutex<Option<ThreadId>>>);

impl DropProbe {
    fn new() -> (Self, Arc<Mutex<Option<ThreadId>>>) {
        let dropped_on = Arc::new(Mutex::new(None));
        (DropProbe(dropped_on.clone()), dropped_on)
    }
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(thread::current().id());
    }
}

fn assert_aborted<T: std::fmt::Debug>(result: Result<T, JoinError>) {
    match result {
        Err(error @ JoinError::Aborted) => {
            assert!(error.is_cancelled());
            assert!(!error.is_panic());
            assert_eq!(error.to_string(), "task was aborted through its JoinHandle");
        }
        other => panic!("expected Aborted, got {other:?}"),
    }
}

#[test]
fn an_aborted_sleeping_task_is_dropped_on_its_worker() {
    run(|| async {
        let (probe, dropped_on) = DropProbe::new();
        let handle = spawn(async move {
            let _probe = probe;
            sleep(Duration::from_secs(3600)).await;
        });
        yield_now().await;
        assert!(!handle.is_finished(), "the task sleeps");
        assert!(dropped_on.lock().unwrap().is_none());
        handle.abort();
        assert_aborted(handle.await);
        assert_eq!(
            *dropped_on.lock().unwrap(),
            Some(thread::current().id()),
            "dropped on its worker (this one)"
        );
    });
}

#[test]
fn a_task_aborted_before_its_first_poll_never_runs() {
    run(|| async {
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = ran.clone();
        let handle = spawn(async move {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        handle.abort();
        assert_aborted(handle.await);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_task_that_finished_keeps_its_output() {
    run(|| async {
        let handle = spawn(async { 7 });
        while !handle.is_finished() {
            yield_now().await;
        }
        handle.abort();
        handle.abort();
        assert_eq!(handle.await.unwrap(), 7);
    });
}

#[test]
fn abort_after_the_output_was_returned_does_nothing() {
    run(|| async {
        let mut handle = spawn(async { 7 });
        assert_eq!((&mut handle).await.unwrap(), 7);
        handle.abort();
        assert!(matches!((&mut handle).await, Err(JoinError::Consumed)));
    });
}

#[test]
fn an_abort_from_a_plain_thread_wakes_a_sleeping_worker() {
    run(|| async {
        let (probe, dropped_on) = DropProbe::new();
        let handle = spawn(async move {
            let _probe = probe;
            pending::<()>().await;
        });
        yield_now().await;
        // The worker sleeps in its reactor (nothing else to do) when the
        // abort comes: the wake must reach it through its inbox.
        let aborter = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            handle.abort();
            handle
        });
        let handle = loop {
            if aborter.is_finished() {
                break aborter.join().unwrap();
            }
            sleep(Duration::from_millis(1)).await;
        };
        assert_aborted(handle.await);
        assert_eq!(*dropped_on.lock().unwrap(), Some(thread::current().id()));
    });
}

#[test]
fn an_abort_reaches_a_task_on_another_worker() {
    run_on(2, || async {
        let (probe, dropped_on) = DropProbe::new();
        let worker_1 = Arc::new(Mutex::new(None));
        let seen = worker_1.clone();
        let handle = spawn_on(1, async move {
            let _probe = probe;
            *seen.lock().unwrap() = Some(thread::current().id());
            pending::<()>().await;
        });
        while worker_1.lock().unwrap().is_none() {
            yield_now().await;
        }
        // Worker 1 goes to sleep in its reactor.
        sleep(Duration::from_millis(20)).await;
        handle.abort();
        assert_aborted(handle.await);
        let worker_1 = worker_1.lock().unwrap().expect("ran on worker 1");
        assert_ne!(worker_1, thread::current().id());
        assert_eq!(*dropped_on.lock().unwrap(), Some(worker_1));
    });
}

/// `spawn_on` then `abort` at once: the abort races with worker 1 taking
/// the task in (the handle may find no address to wake yet, and then the
/// task's first poll must see the request). None may be lost: every
/// handle reports `Aborted` and every future is dropped.
#[test]
fn aborts_racing_with_another_worker_taking_the_task_in_are_never_lost() {
    let rounds = scaled(600) as usize;
    let (started, dropped) = run_on(2, move || async move {
        let started = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        for round in 0..rounds {
            let (started_here, dropped_here) = (started.clone(), dropped.clone());
            let started_before = started.load(Ordering::SeqCst);
            let handle = spawn_on(1, async move {
                struct Counted(Arc<AtomicUsize>);
                impl Drop for Counted {
                    fn drop(&mut self) {
                        self.0.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let _counted = Counted(dropped_here);
                started_here.fetch_add(1, Ordering::SeqCst);
                pending::<()>().await;
            });
            // Let worker 1 get further first by a varying amount: not at
            // all, a spin of up to a few µs, or until the task ran.
            match round % 3 {
                0 => {}
                1 => {
                    for _ in 0..(round * 7919) % 2_000 {
                        std::hint::spin_loop();
                    }
                }
                _ => {
                    while started.load(Ordering::SeqCst) == started_before {
                        thread::yield_now();
                    }
                }
            }
            handle.abort();
            assert_aborted(handle.await);
        }
        (
            started.load(Ordering::SeqCst),
            dropped.load(Ordering::SeqCst),
        )
    });
    assert!(
        started >= rounds / 3,
        "a third of the tasks ran before the abort"
    );
    // A future never polled still owns its captures (the `Counted` lives
    // inside it only once it ran), so count the ones that ran.
    assert_eq!(dropped, started, "every future that ran was dropped");
}

#[test]
fn a_task_that_aborts_itself_stops_at_its_next_poll() {
    run(|| async {
        let own_handle: Rc<RefCell<Option<JoinHandle<()>>>> = Rc::default();
        let reached = Rc::new(Cell::new(0));
        let (handle_cell, steps) = (own_handle.clone(), reached.clone());
        let handle = spawn_local(async move {
            yield_now().await;
            steps.set(1);
            handle_cell
                .borrow()
                .as_ref()
                .expect("handle stored")
                .abort();
            steps.set(2);
            yield_now().await;
            steps.set(3);
        });
        *own_handle.borrow_mut() = Some(handle);
        loop {
            let finished = own_handle.borrow().as_ref().unwrap().is_finished();
            if finished {
                break;
            }
            yield_now().await;
        }
        let handle = own_handle.borrow_mut().take().unwrap();
        assert_aborted(handle.await);
        assert_eq!(reached.get(), 2, "the poll that aborted ran to its end");
    });
}

#[test]
fn aborting_many_tasks_leaves_no_live_task_behind() {
    util::with_timeout(util::LIMIT, || {
        let runtime = cellio_runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let handles: Vec<_> = (0..scaled(1_000))
                .map(|i| {
                    spawn(async move {
                        sleep(Duration::from_millis(i % 50 + 1)).await;
                        pending::<()>().await;
                    })
                })
                .collect();
            yield_now().await;
            for handle in &handles {
                handle.abort();
            }
            for handle in handles {
                assert_aborted(handle.await);
            }
        });
        assert_eq!(runtime.live_tasks(), 0);
        assert_eq!(
            runtime.shutdown_timeout(Duration::ZERO),
            0,
            "nothing to cancel"
        );
    });
}
