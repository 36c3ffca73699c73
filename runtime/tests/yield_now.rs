//! `yield_now`: a task that yields goes behind every task already queued,
//! so tasks that yield alternately interleave.

mod util;

use std::cell::RefCell;
use std::rc::Rc;

use cellio_runtime::{spawn, spawn_local, yield_now};
use util::{run, scaled};

#[test]
fn two_yielding_tasks_interleave() {
    run(|| async {
        let log: Rc<RefCell<Vec<String>>> = Rc::default();
        let task = |name: &'static str| {
            let log = log.clone();
            spawn_local(async move {
                for i in 0..5 {
                    log.borrow_mut().push(format!("{name}{i}"));
                    yield_now().await;
                }
            })
        };
        let a = task("a");
        let b = task("b");
        a.await.unwrap();
        b.await.unwrap();
        let expected: Vec<String> = (0..5)
            .flat_map(|i| [format!("a{i}"), format!("b{i}")])
            .collect();
        assert_eq!(*log.borrow(), expected);
    });
}

#[test]
fn three_tasks_round_robin() {
    run(|| async {
        let log: Rc<RefCell<Vec<(usize, usize)>>> = Rc::default();
        let handles: Vec<_> = (0..3)
            .map(|t| {
                let log = log.clone();
                spawn_local(async move {
                    for i in 0..4 {
                        log.borrow_mut().push((t, i));
                        yield_now().await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let expected: Vec<(usize, usize)> =
            (0..4).flat_map(|i| (0..3).map(move |t| (t, i))).collect();
        assert_eq!(*log.borrow(), expected);
    });
}

#[test]
fn a_task_that_never_yields_runs_to_completion_before_the_other() {
    run(|| async {
        let log: Rc<RefCell<Vec<&'static str>>> = Rc::default();
        let l1 = log.clone();
        let greedy = spawn_local(async move {
            for _ in 0..3 {
                l1.borrow_mut().push("greedy");
            }
        });
        let l2 = log.clone();
        let polite = spawn_local(async move {
            l2.borrow_mut().push("polite");
            yield_now().await;
            l2.borrow_mut().push("polite");
        });
        greedy.await.unwrap();
        polite.await.unwrap();
        assert_eq!(
            *log.borrow(),
            ["greedy", "greedy", "greedy", "polite", "polite"]
        );
    });
}

#[test]
fn yield_in_the_main_future_lets_spawned_tasks_run() {
    run(|| async {
        let flag = Rc::new(RefCell::new(false));
        let f = flag.clone();
        let _task = spawn_local(async move {
            *f.borrow_mut() = true;
        });
        assert!(!*flag.borrow(), "the task has not run before we yield");
        yield_now().await;
        assert!(*flag.borrow(), "one yield lets queued tasks run");
    });
}

#[test]
fn yield_now_completes_on_its_second_poll() {
    run(|| async {
        // Used in a loop, it makes progress and never hangs.
        let mut n = 0;
        for _ in 0..scaled(10_000) {
            yield_now().await;
            n += 1;
        }
        assert_eq!(n, scaled(10_000));
        // Inside Send tasks too.
        spawn(async {
            for _ in 0..scaled(1_000) {
                yield_now().await;
            }
        })
        .await
        .unwrap();
    });
}

/// A task type of its own: each `async fn` is a distinct future type.
async fn alpha(log: Rc<RefCell<Vec<String>>>, name: &'static str) {
    for i in 0..4 {
        log.borrow_mut().push(format!("{name}{i}"));
        yield_now().await;
    }
}

/// Another task type, doing the same.
async fn beta(log: Rc<RefCell<Vec<String>>>, name: &'static str) {
    for i in 0..4 {
        log.borrow_mut().push(format!("{name}{i}"));
        yield_now().await;
    }
}

#[test]
fn tasks_of_different_types_run_in_queue_order() {
    // The worker polls a run of same-type tasks in one loop per type; that
    // must not reorder the queue: the types alternate here, and so do the
    // polls, round after round.
    run(|| async {
        let log: Rc<RefCell<Vec<String>>> = Rc::default();
        let handles = [
            spawn_local(alpha(log.clone(), "a")),
            spawn_local(beta(log.clone(), "b")),
            spawn_local(alpha(log.clone(), "c")),
            spawn_local(alpha(log.clone(), "d")),
            spawn_local(beta(log.clone(), "e")),
        ];
        for h in handles {
            h.await.unwrap();
        }
        let expected: Vec<String> = (0..4)
            .flat_map(|i| ["a", "b", "c", "d", "e"].map(|t| format!("{t}{i}")))
            .collect();
        assert_eq!(*log.borrow(), expected);
    });
}

#[test]
fn a_run_of_same_type_tasks_ends_the_batch_at_the_event_interval() {
    // Six tasks of one type keep yielding; between two polls of the main
    // future the worker runs one batch, which must stop after
    // `event_interval` polls even though the next queued task is always of
    // the same type (the reactor and the timers are due).
    let seen = util::with_timeout(util::LIMIT, || {
        let rt = cellio_runtime::Builder::new()
            .event_interval(3)
            .build()
            .expect("runtime");
        rt.block_on(async {
            let polls = Rc::new(std::cell::Cell::new(0u32));
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    let polls = polls.clone();
                    spawn_local(async move {
                        for _ in 0..20 {
                            polls.set(polls.get() + 1);
                            yield_now().await;
                        }
                    })
                })
                .collect();
            let mut seen = Vec::new();
            while handles.iter().any(|h| !h.is_finished()) {
                seen.push(polls.get());
                yield_now().await;
            }
            seen
        })
    });
    let steps: Vec<u32> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        !steps.is_empty(),
        "the tasks ran between the main future's polls"
    );
    assert!(
        steps.iter().all(|&s| s <= 3),
        "a batch polled more than event_interval tasks: {steps:?}"
    );
    assert_eq!(steps.iter().max(), Some(&3), "steps: {steps:?}");
}
