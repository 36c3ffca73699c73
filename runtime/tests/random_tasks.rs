//! Tasks spawned, woken, joined and abandoned every which way at once, at
//! random: per seed, a runtime drawn as in the other random tests (workers,
//! event capacity, budget, event interval, and here task pooling and the
//! pool's cap too) runs trees of tasks. Each task draws what it does:
//!
//! * spawn up to three children, each with `spawn` (its own worker),
//!   `spawn_on` or `spawn_local_on` (a drawn worker), some carrying a 4 KiB
//!   array so the task blocks come in two size classes;
//! * for each child: await its handle, poll the handle once and drop it,
//!   drop it at once (the child runs on, detached), or abort it (at once
//!   or after a yield) and then await it;
//! * yield, sleep up to a millisecond, or wait for a wake from a plain
//!   thread;
//! * now and then panic instead of returning.
//!
//! What must hold, whatever the draw:
//! * an awaited handle gives its own child's output (the child's number),
//!   or `Panicked` exactly when that child panicked, or (only after an
//!   abort) `Aborted`;
//! * every task spawned runs to its end or is aborted, detached or not
//!   (counted);
//! * the runtime then shuts down with nothing left to cancel.
//!
//! `CELLIO_STRESS_SEEDS=N` runs seeds `0..N` (default 6, one under Miri);
//! `CELLIO_STRESS_SEED=S` runs one.

mod util;

#[path = "../../net/tests/util/random.rs"]
#[allow(dead_code)]
mod random;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cellio_runtime::{
    sleep, spawn, spawn_local_on, spawn_on, yield_now, JoinError, JoinHandle, RuntimeHandle,
};
use random::{draw_builder, seeds_from_env, Rng};
use util::{poll_once, with_timeout, Signal};

/// Root tasks per seed (a fiftieth, at least two, under Miri).
const ROOTS: u64 = util::scaled(48);
/// How deep a tree of tasks goes.
const DEPTH: u32 = 3;

/// What a seed's tasks count, shared by all of them.
#[derive(Default)]
struct Tally {
    /// Tasks spawned (roots included); also gives each its number.
    spawned: AtomicU64,
    /// Tasks that returned.
    returned: AtomicU64,
    /// Tasks that panicked (on purpose).
    panicked: AtomicU64,
    /// Tasks whose future was dropped before it returned or panicked:
    /// aborted (counted by [`Unfinished`], so that a task aborted before
    /// its first poll, or whose parent was aborted before it saw the
    /// child's `Aborted`, counts too).
    aborted: AtomicU64,
    /// What went wrong, as seen by the tasks (a detached task's failure
    /// would otherwise go unseen).
    failures: Mutex<Vec<String>>,
}

impl Tally {
    /// A new task's number.
    fn spawn(&self) -> u64 {
        self.spawned.fetch_add(1, Ordering::Relaxed)
    }

    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

/// Lives in a task's future from its creation; counts the task aborted
/// if the future is dropped before [`finished`](Unfinished::finished).
struct Unfinished {
    tally: Arc<Tally>,
    finished: bool,
}

impl Unfinished {
    fn finished(&mut self) {
        self.finished = true;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.finished {
            self.tally.aborted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A child's handle, and whether the child will panic.
struct Child {
    number: u64,
    panics: bool,
    handle: JoinHandle<u64>,
}

/// One task: pauses, spawns and handles its children, and returns its
/// number (or panics, if `panics`).
fn task(
    number: u64,
    depth: u32,
    panics: bool,
    mut rng: Rng,
    tally: Arc<Tally>,
) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    let unfinished = Unfinished {
        tally: tally.clone(),
        finished: false,
    };
    Box::pin(async move {
        let mut unfinished = unfinished;
        let workers = RuntimeHandle::current().expect("in a runtime").workers();
        match rng.below(4) {
            0 => yield_now().await,
            1 => sleep(Duration::from_micros(rng.below(1_000))).await,
            2 => {
                let woken = Signal::new();
                woken.fire_after(Duration::from_micros(rng.below(200)));
                woken.wait().await
            }
            _ => {}
        }
        let children = if depth < DEPTH { rng.below(4) } else { 0 };
        let mut handles = Vec::new();
        for _ in 0..children {
            let number = tally.spawn();
            let panics = rng.percent(5);
            let (child_rng, worker) = (rng.fork(), rng.below(workers as u64) as usize);
            let child = task(number, depth + 1, panics, child_rng, tally.clone());
            let handle = match rng.below(4) {
                0 => spawn(child),
                1 => spawn_on(worker, child),
                2 => spawn_local_on(worker, move || child),
                _ => {
                    // A bigger future: a 4 KiB array kept across an await.
                    let ballast = [number as u8; 4096];
                    let tally = tally.clone();
                    spawn_on(worker, async move {
                        let output = child.await;
                        if ballast.iter().any(|&b| b != number as u8) {
                            tally.fail(format!("task {number}: its future's bytes changed"));
                        }
                        output
                    })
                }
            };
            handles.push(Child {
                number,
                panics,
                handle,
            });
        }
        for mut child in handles {
            match rng.below(4) {
                0 => match (child.handle.await, child.panics) {
                    (Ok(got), false) if got == child.number => {}
                    (Ok(got), false) => tally.fail(format!(
                        "child {}'s handle gave {got}: another task's output",
                        child.number
                    )),
                    (Ok(_), true) => tally.fail(format!(
                        "child {} returned, but it was drawn to panic",
                        child.number
                    )),
                    (Err(e), true) if e.is_panic() => {}
                    (Err(e), _) => tally.fail(format!("child {}: {e}", child.number)),
                },
                1 => {
                    let _ = poll_once(&mut child.handle).await;
                }
                2 => drop(child.handle),
                _ => {
                    if rng.percent(50) {
                        yield_now().await;
                    }
                    child.handle.abort();
                    match (child.handle.await, child.panics) {
                        // Counted by the child's `Unfinished`.
                        (Err(JoinError::Aborted), _) => {}
                        // It finished before the abort reached it.
                        (Ok(got), false) if got == child.number => {}
                        (Err(e), true) if e.is_panic() => {}
                        (Ok(got), _) => tally.fail(format!(
                            "aborted child {} gave {got} (drawn to panic: {})",
                            child.number, child.panics
                        )),
                        (Err(e), _) => tally.fail(format!("aborted child {}: {e}", child.number)),
                    }
                }
            }
        }
        unfinished.finished();
        if panics {
            tally.panicked.fetch_add(1, Ordering::Relaxed);
            panic!("task {number} panics, as drawn");
        }
        tally.returned.fetch_add(1, Ordering::Relaxed);
        number
    })
}

/// One seed: a fresh runtime running [`ROOTS`] trees of tasks. Returns the
/// tasks spawned, those that panicked and those aborted.
fn run_seed(seed: u64) -> (u64, u64, u64) {
    let mut rng = Rng(seed);
    let (builder, config) = draw_builder(&mut rng);
    let pooling = rng.percent(75);
    let cap = [0, 1, 64][rng.below(3) as usize];
    let builder = builder.task_pooling(pooling).task_pool_cap(cap);
    let config = format!("{config}, pooling {pooling}, pool cap {cap}");
    let result = with_timeout(util::LIMIT * 3, move || {
        let runtime = builder.build().expect("runtime");
        let handle = runtime.handle();
        let tally = Arc::new(Tally::default());
        let counts = tally.clone();
        runtime.block_on(async move {
            let roots: Vec<_> = (0..ROOTS)
                .map(|i| {
                    let root = task(tally.spawn(), 0, false, rng.fork(), tally.clone());
                    handle.spawn_on(i as usize % handle.workers(), root)
                })
                .collect();
            for root in roots {
                if let Err(e) = root.await {
                    tally.fail(format!("a root task: {e}"));
                }
            }
            // Detached tasks may still be running: wait for every one (a
            // task that never ends fails the seed by the watchdog).
            loop {
                let ended = tally.returned.load(Ordering::Relaxed)
                    + tally.panicked.load(Ordering::Relaxed)
                    + tally.aborted.load(Ordering::Relaxed);
                if ended == tally.spawned.load(Ordering::Relaxed) {
                    break;
                }
                sleep(Duration::from_millis(1)).await;
            }
        });
        let cancelled = runtime.shutdown_timeout(Duration::from_secs(5));
        let failures = std::mem::take(&mut *counts.failures.lock().unwrap());
        let spawned = counts.spawned.load(Ordering::Relaxed);
        (
            cancelled,
            (
                spawned,
                counts.panicked.load(Ordering::Relaxed),
                counts.aborted.load(Ordering::Relaxed),
            ),
            failures,
        )
    });
    match result {
        (0, counts, failures) if failures.is_empty() => counts,
        (cancelled, (spawned, _, _), failures) => panic!(
            "seed {seed} ({config}): {spawned} tasks, {cancelled} left to cancel at the end, \
             failures: {failures:#?}"
        ),
    }
}

#[test]
fn every_task_ends_and_every_handle_gives_its_own_output() {
    // Drawn panics are expected: keep their messages out of the output.
    util::quiet_panics_ending_with("panics, as drawn");
    // Under Miri, one seed with its two roots: seed 18, whose trees hold
    // 30 tasks, 3 of them drawn to panic and some aborted (5 in a native
    // run with two roots; how many depends on timing).
    let seeds = if cfg!(miri) { 18..19 } else { seeds_from_env() };
    let runs = seeds.end - seeds.start;
    let (mut spawned, mut panicked, mut aborted) = (0, 0, 0);
    for seed in seeds {
        let (s, p, a) = run_seed(seed);
        spawned += s;
        panicked += p;
        aborted += a;
    }
    eprintln!(
        "{spawned} tasks spawned, {panicked} of them panicked as drawn, {aborted} were aborted"
    );
    // Over six seeds or more the draws must reach the panics and the
    // aborts; one seed (Miri's, or one picked) may not.
    if runs >= 6 {
        assert!(panicked > 0, "no task panicked: the draws miss that case");
        assert!(aborted > 0, "no task was aborted: the draws miss that case");
    }
}
