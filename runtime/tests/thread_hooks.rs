//! `Builder::on_thread_start` and `on_thread_stop`: each runs once on every
//! thread the runtime starts (workers 1 and up, blocking threads), not on
//! the caller's; the start hooks have run when `build` returns (workers)
//! and the stop hooks when the runtime's drop returns; a panicking hook is
//! caught and the thread goes on.

mod util;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cellio_runtime::{spawn_blocking, spawn_on, Builder, Runtime, RuntimeHandle};
use util::{quiet_panics_ending_with, with_timeout, LIMIT, ON_PURPOSE};

/// What the hooks saw: per thread name, `(starts, stops)`.
type Seen = Arc<Mutex<BTreeMap<String, (u32, u32)>>>;

fn record(seen: &Seen, stop: bool) {
    let name = std::thread::current().name().unwrap_or("?").to_string();
    let mut seen = seen.lock().unwrap();
    let entry = seen.entry(name).or_default();
    if stop {
        entry.1 += 1;
    } else {
        entry.0 += 1;
    }
}

fn builder_recording(seen: &Seen) -> Builder {
    let (on_start, on_stop) = (Arc::clone(seen), Arc::clone(seen));
    Builder::new()
        .workers(3)
        .on_thread_start(move || record(&on_start, false))
        .on_thread_stop(move || record(&on_stop, true))
}

fn snapshot(seen: &Seen) -> Vec<(String, (u32, u32))> {
    seen.lock().unwrap().clone().into_iter().collect()
}

#[test]
fn every_runtime_thread_starts_and_stops_once() {
    with_timeout(LIMIT, || {
        let seen = Seen::default();
        let rt = builder_recording(&seen).build().unwrap();
        assert_eq!(
            snapshot(&seen),
            [
                ("cellio-worker-1".to_string(), (1, 0)),
                ("cellio-worker-2".to_string(), (1, 0)),
            ],
            "the workers' start hooks ran before build returned; worker 0's never"
        );
        rt.block_on(async {
            // A task on a worker and a blocking job: the job's thread is new.
            let name = spawn_on(2, async {
                std::thread::current().name().map(str::to_string)
            });
            assert_eq!(name.await.unwrap().as_deref(), Some("cellio-worker-2"));
            spawn_blocking(|| ()).await.unwrap();
        });
        drop(rt);
        assert_eq!(
            snapshot(&seen),
            [
                ("cellio-blocking-1".to_string(), (1, 1)),
                ("cellio-worker-1".to_string(), (1, 1)),
                ("cellio-worker-2".to_string(), (1, 1)),
            ],
            "every stop hook ran by the time the drop returned"
        );
    });
}

#[test]
fn a_blocking_thread_that_leaves_after_its_keep_alive_runs_its_stop_hook() {
    with_timeout(LIMIT, || {
        let seen = Seen::default();
        let rt = builder_recording(&seen)
            .workers(1)
            .blocking_keep_alive(Duration::from_millis(10))
            .build()
            .unwrap();
        rt.block_on(rt.spawn_blocking(|| ())).unwrap();
        while rt.blocking_pool_stats().0 > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The count falls before the hook runs; wait for the hook.
        while snapshot(&seen).first().map(|(_, counts)| counts.1) != Some(1) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(snapshot(&seen), [("cellio-blocking-1".to_string(), (1, 1))]);
    });
}

#[test]
fn a_panicking_hook_is_caught_and_the_thread_goes_on() {
    quiet_panics_ending_with(ON_PURPOSE);
    with_timeout(LIMIT, || {
        let rt = Builder::new()
            .workers(2)
            .on_thread_start(|| panic!("{}", ON_PURPOSE))
            .on_thread_stop(|| panic!("{}", ON_PURPOSE))
            .build()
            .unwrap();
        let (on_one, job) = rt.block_on(async {
            (
                spawn_on(1, async { 1 }).await.unwrap(),
                spawn_blocking(|| 2).await.unwrap(),
            )
        });
        assert_eq!((on_one, job), (1, 2));
        drop(rt);
    });
}

/// In a hook, the runtime that runs it is current, as tokio's runtime is
/// in its `on_thread_start` and `on_thread_stop`: `RuntimeHandle::current()`
/// returns it, on workers and on blocking threads, at start and at stop (it
/// was `None`, so a ported hook's `current().unwrap()` panicked and was
/// only logged; found by a review).
#[test]
fn a_hook_finds_its_runtime_current() {
    with_timeout(LIMIT, || {
        // Per thread name and hook, the workers the current runtime had.
        let (rt, found) =
            runtime_noting_in_hooks(|| RuntimeHandle::current().map(|handle| handle.workers()));
        rt.block_on(rt.spawn_blocking(|| ())).unwrap();
        drop(rt);
        let mut found = found.lock().unwrap().clone();
        found.sort();
        let expected = |name: &str, hook| (name.to_string(), hook, Some(2));
        assert_eq!(
            found,
            [
                expected("cellio-blocking-1", "start"),
                expected("cellio-blocking-1", "stop"),
                expected("cellio-worker-1", "start"),
                expected("cellio-worker-1", "stop"),
            ]
        );
        // And none is left current on the thread once its hook is done.
        assert!(RuntimeHandle::current().is_none());
    });
}

/// `spawn` in a hook panics (the thread runs no task yet) with a message
/// that names the thread hook and says to use `spawn_on`, on workers and
/// blocking threads, at start and at stop; in a job on the same blocking
/// thread afterwards, the message names the job again. (The hook's said
/// "called in a spawn_blocking job: it runs on a blocking thread", also
/// on a worker; found by a review.)
#[test]
fn spawn_in_a_hook_panics_naming_the_hook() {
    quiet_panics_ending_with("spawn_on)");
    quiet_panics_ending_with("awaits the job");
    let spawn_panic = || {
        let caught = std::panic::catch_unwind(|| drop(cellio_runtime::spawn(async {})));
        util::panic_text(&*caught.expect_err("spawn outside a task panics"))
    };
    with_timeout(LIMIT, move || {
        let (rt, found) = runtime_noting_in_hooks(spawn_panic);
        let in_job = rt.block_on(rt.spawn_blocking(spawn_panic)).unwrap();
        assert!(
            in_job.contains("called in a spawn_blocking job"),
            "{in_job}"
        );
        drop(rt);
        let found = found.lock().unwrap().clone();
        assert_eq!(found.len(), 4, "{found:?}");
        for (name, hook, text) in found {
            assert!(
                text.contains("spawn called in a thread hook") && text.contains("spawn_on"),
                "{name}, {hook}: {text:?}"
            );
        }
    });
}

/// What each thread hook saw: per thread name and hook, what `what`
/// returned there.
type Noted<T> = Arc<Mutex<Vec<(String, &'static str, T)>>>;

/// A two-worker runtime whose thread hooks note what `what` returns in
/// them (one blocking thread starts on the first job).
fn runtime_noting_in_hooks<T: Send + 'static>(
    what: impl Fn() -> T + Send + Sync + Copy + 'static,
) -> (Runtime, Noted<T>) {
    let noted: Noted<T> = Arc::default();
    let note = move |noted: &Noted<T>, hook: &'static str| {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        noted.lock().unwrap().push((name, hook, what()));
    };
    let (on_start, on_stop) = (Arc::clone(&noted), Arc::clone(&noted));
    let rt = Builder::new()
        .workers(2)
        .on_thread_start(move || note(&on_start, "start"))
        .on_thread_stop(move || note(&on_stop, "stop"))
        .build()
        .unwrap();
    (rt, noted)
}
