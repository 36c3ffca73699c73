//! `TaskId`: every task that is running, or that a handle can still reach,
//! has an id no other such task has; a task's `JoinHandle`, its
//! `AbortHandle`s and `JoinSet::join_next_with_id` agree on it, on any
//! worker and for blocking jobs too.

mod util;

use std::collections::HashSet;
use std::future::pending;

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
