//! `task_local!`: a scoped value is seen by its own future across awaits,
//! on whichever worker polls it, and by no other task; scopes nest; a
//! panic or a drop leaves no value behind; reading outside a scope is an
//! error, or a panic that says why.

mod util;

use std::sync::{Arc, Mutex};

use cellio_runtime::task_local::AccessError;
use cellio_runtime::{spawn, spawn_on, task_local, yield_now};
use util::{panic_text, quiet_panics_ending_with, run, run_on, ON_PURPOSE};

task_local! {
    static NUMBER: u32;
    /// A second key, to show keys are independent.
    pub(crate) static NAME: &'static str;
}

#[test]
fn interleaved_tasks_each_see_only_their_own_value() {
    run(|| async {
        let tasks: Vec<_> = (0..50u32)
            .map(|n| {
                spawn(NUMBER.scope(n, async move {
                    for _ in 0..10 {
                        assert_eq!(NUMBER.get(), n);
                        // Every other task runs between these two reads.
                        yield_now().await;
                    }
                    NUMBER.get()
                }))
            })
            .collect();
        for (n, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.unwrap(), n as u32);
        }
        assert_eq!(
            NUMBER.try_get(),
            Err(AccessError),
            "nothing left on the worker"
        );
    });
}

#[test]
fn a_scope_travels_with_its_future_to_another_worker() {
    run_on(2, || async {
        let task = spawn_on(
            1,
            NUMBER.scope(7, async {
                yield_now().await;
                (
                    NUMBER.get(),
                    cellio_runtime::RuntimeHandle::current().is_some(),
                )
            }),
        );
        assert_eq!(task.await.unwrap(), (7, true));
        assert!(NUMBER.try_get().is_err());
    });
}

#[test]
fn scopes_nest_and_keys_are_independent() {
    run(|| async {
        NUMBER
            .scope(1, async {
                NAME.scope("outer", async {
                    NUMBER
                        .scope(2, async {
                            yield_now().await;
                            assert_eq!((NUMBER.get(), NAME.get()), (2, "outer"));
                        })
                        .await;
                    assert_eq!(NUMBER.get(), 1, "the outer value is back");
                    let len = NAME.with(|name| name.len());
                    assert_eq!(len, 5);
                })
                .await;
                assert_eq!(NAME.try_get(), Err(AccessError));
                assert_eq!(NUMBER.sync_scope(3, || NUMBER.get()), 3);
                assert_eq!(NUMBER.get(), 1);
            })
            .await;
    });
}

#[test]
fn a_panicking_poll_leaves_no_value_behind() {
    quiet_panics_ending_with(ON_PURPOSE);
    run(|| async {
        let task = spawn(NUMBER.scope(9, async {
            yield_now().await;
            panic!("{}", ON_PURPOSE);
        }));
        assert!(task.await.unwrap_err().is_panic());
        // The same worker, the next task: no value.
        let after = spawn(async { NUMBER.try_get() });
        assert_eq!(after.await.unwrap(), Err(AccessError));
    });
}

/// Records the key's value where it is dropped.
struct RecordOnDrop(Arc<Mutex<Vec<Result<u32, AccessError>>>>);

impl Drop for RecordOnDrop {
    fn drop(&mut self) {
        self.0.lock().unwrap().push(NUMBER.try_get());
    }
}

#[test]
fn the_inner_future_is_dropped_in_scope_whether_it_ends_or_not() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let shared = log.clone();
    run(move || async move {
        let log = shared;
        let record = RecordOnDrop(log.clone());
        NUMBER
            .scope(4, async move {
                let _held = record;
            })
            .await;
        let record = RecordOnDrop(log.clone());
        let never = spawn(NUMBER.scope(5, async move {
            let _held = record;
            std::future::pending::<()>().await
        }));
        yield_now().await;
        never.abort();
        assert!(never.await.unwrap_err().is_cancelled());
        // Never polled at all: dropped in scope too.
        let record = RecordOnDrop(log.clone());
        drop(NUMBER.scope(6, async move {
            let _held = record;
        }));
    });
    assert_eq!(*log.lock().unwrap(), [Ok(4), Ok(5), Ok(6)]);
}

#[test]
fn reading_outside_a_scope_says_so() {
    assert_eq!(NUMBER.try_with(|n| *n), Err(AccessError));
    let panic = std::thread::spawn(|| NUMBER.get()).join().unwrap_err();
    let text = panic_text(&*panic);
    assert!(text.contains("outside any `scope`"), "{text}");
    // A new scope of the key from inside `with` of it: refused clearly.
    let panic = std::thread::spawn(|| {
        NUMBER.sync_scope(1, || NUMBER.with(|_| NUMBER.sync_scope(2, || ())))
    })
    .join()
    .unwrap_err();
    let text = panic_text(&*panic);
    assert!(text.contains("inside `with`"), "{text}");
}
