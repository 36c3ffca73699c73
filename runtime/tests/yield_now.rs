//! `yield_now`: a task that yields goes behind every task already queued,
//! so tasks that yield alternately interleave.

mod util;

use std::cell::RefCell;
use std::rc::Rc;

use cellio_runtime::{spawn, spawn_local, yield_now};
use util::run;

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
        let mut n = 0u32;
        for _ in 0..10_000 {
            yield_now().await;
            n += 1;
        }
        assert_eq!(n, 10_000);
        // Inside Send tasks too.
        spawn(async {
            for _ in 0..1_000 {
                yield_now().await;
            }
        })
        .await
        .unwrap();
    });
}
