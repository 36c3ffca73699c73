//! `TaskId`: every task that is running, or that a handle can still reach,
//! has an id no other such task has; a task's `JoinHandle`, its
//! `AbortHandle`s and `JoinSet::join_next_with_id` agree on it, on any
//! worker and for blocking jobs too.

mod util;

use std::collections::HashSet;
use std::future::pending;
use std::sync::{Arc, Mutex};

use cellio_runtime::{spawn, spawn_blocking, spawn_on, JoinError, JoinSet, TaskId};
use util::{quiet_panics_ending_with, run, run_on, ON_PURPOSE};

#[test]
fn tasks_alive_together_have_distinct_ids() {
    run(|| async {
        let handles: Vec<_> = (0..200).map(|_| spawn(pending::<()>())).collect();
        let ids: HashSet<TaskId> = handles.iter().map(|h| h.id()).collect();
        assert_eq!(ids.len(), handles.len());
        for handle in &handles {
            assert_eq!(handle.abort_handle().id(), handle.id());
            assert_eq!(handle.abort_handle().clone().id(), handle.id());
            handle.abort();
        }
    });
}

#[test]
fn a_handle_keeps_its_id_after_the_output() {
    run(|| async {
        let mut handle = spawn(async { 5 });
        let id = handle.id();
        assert_eq!((&mut handle).await.unwrap(), 5);
        assert_eq!(handle.id(), id);
        // An abort handle made now has nothing to stop, but the same id.
        let late = handle.abort_handle();
        assert!(late.is_finished());
        assert_eq!(late.id(), id);
        assert!(format!("{handle:?}").contains(&format!("{id:?}")));
    });
}

#[test]
fn join_next_with_id_names_each_member_whatever_its_end() {
    quiet_panics_ending_with(ON_PURPOSE);
    run_on(2, || async {
        let mut set = JoinSet::new();
        let fine = set.spawn(async { 1 }).id();
        let panicked = set.spawn(async { panic!("{}", ON_PURPOSE) }).id();
        let aborted = set.spawn(pending::<i32>());
        let elsewhere = set.spawn_on(1, async { 3 }).id();
        let blocking = set.spawn_blocking(|| 4).id();
        aborted.abort();
        let aborted = aborted.id();
        let ids = [fine, panicked, aborted, elsewhere, blocking];
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        let mut seen = HashSet::new();
        while let Some((id, output)) = set.join_next_with_id().await {
            match output {
                Ok(value) => assert_eq!(
                    id,
                    match value {
                        1 => fine,
                        3 => elsewhere,
                        4 => blocking,
                        other => panic!("unexpected output {other}"),
                    }
                ),
                Err(JoinError::Panicked(_)) => assert_eq!(id, panicked),
                Err(JoinError::Aborted) => assert_eq!(id, aborted),
                Err(other) => panic!("unexpected error {other}"),
            }
            assert!(seen.insert(id), "{id} joined twice");
        }
        assert_eq!(seen.len(), ids.len());
    });
}

#[test]
fn try_join_next_with_id_and_handles_spawned_elsewhere() {
    run_on(2, || async {
        let remote = spawn_on(1, async { "remote" });
        let job = spawn_blocking(|| "job");
        let (remote_id, job_id) = (remote.id(), job.id());
        assert_ne!(remote_id, job_id);
        let mut set = JoinSet::new();
        assert_eq!(set.insert(remote).id(), remote_id);
        assert_eq!(set.insert(job).id(), job_id);
        let mut joined = Vec::new();
        while joined.len() < 2 {
            match set.try_join_next_with_id() {
                Some((id, output)) => joined.push((id, output.unwrap())),
                None => cellio_runtime::yield_now().await,
            }
        }
        joined.sort_by_key(|&(_, name)| name);
        assert_eq!(joined, [(job_id, "job"), (remote_id, "remote")]);
    });
}

/// Records `TaskId::try_current()` where it is dropped.
struct RecordOnDrop(Arc<Mutex<Vec<Option<TaskId>>>>);

impl Drop for RecordOnDrop {
    fn drop(&mut self) {
        self.0.lock().unwrap().push(TaskId::try_current());
    }
}

#[test]
fn a_task_sees_its_own_id_on_every_worker_and_across_awaits() {
    run_on(2, || async {
        let handles: Vec<_> = (0..100)
            .map(|n| {
                let task = async {
                    let first = TaskId::current();
                    cellio_runtime::yield_now().await;
                    // Awaiting another task's handle leaves this task's id.
                    let inner = spawn(async { TaskId::current() });
                    let inner_id = inner.id();
                    let reported = inner.await.unwrap();
                    assert_eq!(reported, inner_id);
                    assert_ne!(reported, first);
                    assert_eq!(TaskId::try_current(), Some(first));
                    first
                };
                if n % 2 == 0 {
                    spawn(task)
                } else {
                    spawn_on(1, task)
                }
            })
            .collect();
        let mut seen = HashSet::new();
        for handle in handles {
            let id = handle.id();
            assert_eq!(handle.await.unwrap(), id);
            assert!(seen.insert(id));
        }
    });
}

#[test]
fn block_on_and_plain_threads_have_no_current_task() {
    run(|| async {
        assert_eq!(TaskId::try_current(), None, "block_on's future");
        cellio_runtime::yield_now().await;
        assert_eq!(TaskId::try_current(), None, "after a turn of the loop");
        spawn(async {}).await.unwrap();
        assert_eq!(TaskId::try_current(), None, "after a task ran");
    });
    let outside = std::thread::spawn(TaskId::try_current).join().unwrap();
    assert_eq!(outside, None, "a thread of no runtime");
    let panic = std::thread::spawn(TaskId::current).join().unwrap_err();
    let text = util::panic_text(&*panic);
    assert!(
        text.contains("outside a spawned task") && text.contains("try_current"),
        "{text}"
    );
}

#[test]
fn a_blocking_job_sees_its_own_id_and_its_thread_forgets_it() {
    // A thread's stop hook runs on it after its last job (or loop): it
    // must see no task.
    let at_stop = Arc::new(Mutex::new(Vec::new()));
    let record = at_stop.clone();
    let runtime = cellio_runtime::Builder::new()
        .workers(2)
        .on_thread_stop(move || {
            let name = std::thread::current().name().map(str::to_owned);
            record.lock().unwrap().push((name, TaskId::try_current()));
        })
        .build()
        .unwrap();
    runtime.block_on(async {
        for _ in 0..3 {
            let job = spawn_blocking(TaskId::try_current);
            let id = job.id();
            assert_eq!(job.await.unwrap(), Some(id));
        }
        let task = spawn_on(1, async { TaskId::current() });
        let id = task.id();
        assert_eq!(task.await.unwrap(), id);
    });
    drop(runtime);
    let at_stop = at_stop.lock().unwrap();
    assert!(
        at_stop.len() >= 2,
        "a worker and a blocking thread: {at_stop:?}"
    );
    for (name, id) in at_stop.iter() {
        assert_eq!(*id, None, "the stop hook of {name:?}");
    }
}

/// A blocking job that runs a runtime's `block_on`: its future is no
/// task (`None`), a task spawned there sees its own id, and the job sees
/// its id again once `block_on` returns. (The future used to see the
/// job's id; found by a review.)
#[test]
fn a_block_on_inside_a_blocking_job_has_no_current_task() {
    let (job, (in_block_on, task, spawned, after)) = run(|| async {
        let handle = spawn_blocking(|| {
            let inner = cellio_runtime::Builder::new().workers(1).build().unwrap();
            let (in_block_on, task, spawned) = inner.block_on(async {
                let task = spawn(async { TaskId::try_current() });
                let spawned = task.id();
                (TaskId::try_current(), task.await.unwrap(), spawned)
            });
            (in_block_on, task, spawned, TaskId::try_current())
        });
        let job = handle.id();
        (job, handle.await.unwrap())
    });
    assert_eq!(in_block_on, None, "block_on's future (the job is {job:?})");
    assert_eq!(task, Some(spawned), "a task in that block_on");
    assert_eq!(after, Some(job), "the job, after block_on");
}

#[test]
fn a_future_dropped_by_its_end_its_abort_or_the_shutdown_sees_its_id() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut expected = Vec::new();
    let runtime = cellio_runtime::Builder::new().workers(2).build().unwrap();
    runtime.block_on(async {
        let record = RecordOnDrop(log.clone());
        let finished = spawn(async move {
            let _held = record;
        });
        expected.push(Some(finished.id()));
        finished.await.unwrap();

        let record = RecordOnDrop(log.clone());
        let aborted = spawn(async move {
            let _held = record;
            pending::<()>().await
        });
        cellio_runtime::yield_now().await;
        expected.push(Some(aborted.id()));
        aborted.abort();
        assert!(matches!(aborted.await, Err(JoinError::Aborted)));

        for worker in [0, 1] {
            let record = RecordOnDrop(log.clone());
            let left = spawn_on(worker, async move {
                let _held = record;
                pending::<()>().await
            });
            expected.push(Some(left.id()));
        }
        cellio_runtime::yield_now().await;
    });
    assert_eq!(*log.lock().unwrap(), expected[..2], "before the shutdown");
    drop(runtime);
    let mut seen = log.lock().unwrap().clone();
    seen[2..].sort();
    expected[2..].sort();
    assert_eq!(seen, expected, "the shutdown cancelled the last two");
}

/// A task that drops another runtime (which cancels that runtime's tasks,
/// each tagged with its own slot) still sees its own id afterwards. (It
/// used to see the id of whatever task of its own runtime sat in the slot
/// the other runtime cancelled last; found by a review.)
#[test]
fn a_task_that_drops_another_runtime_keeps_its_id() {
    run(|| async {
        let others: Vec<_> = (0..3).map(|_| spawn(pending::<()>())).collect();
        let task = spawn(async {
            let before = TaskId::current();
            let inner = cellio_runtime::Builder::new().workers(1).build().unwrap();
            for _ in 0..3 {
                drop(inner.spawn(pending::<()>())); // slots 0, 1 and 2
            }
            drop(inner);
            (before, TaskId::current())
        });
        let own = task.id();
        let (before, after) = task.await.unwrap();
        drop(others);
        assert_eq!(before, own);
        assert_eq!(
            after, own,
            "another task's id after the other runtime's drop"
        );
    });
}
