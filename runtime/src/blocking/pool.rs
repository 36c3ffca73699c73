//! The blocking pool: threads started on demand that run queued jobs, each
//! thread leaving after a keep-alive without work.
//!
//! The pool is generic over what it runs ([`PoolJob`]): the runtime queues
//! task blocks (`super::Job`), its loom models queue counters.
//!
//! # Invariants
//!
//! * A queued job is owned by the queue: whoever takes it out (a pool
//!   thread, or `shutdown`) runs or cancels it, once.
//! * `idle` counts threads waiting for work and `wakeups` the wake-ups
//!   sent to them and not yet taken, both under the lock; a new job wakes
//!   an idle thread only if `idle > wakeups` (otherwise every idle thread
//!   is already on its way to a job), else starts a thread. A woken thread
//!   takes a wake-up even when its wait also timed out (a timed wait may
//!   consume a notification), and a thread leaves, decrementing `threads`,
//!   in the same hold of the lock in which it found the queue empty. So a
//!   job never waits in the queue while a thread could take it, unless the
//!   pool is at its maximum, when a running thread takes it next.
//! * A thread counts as idle only once it is back waiting. A job queued
//!   between the moment the last job's result reached its task and the
//!   moment its thread is back (a task that awaits one job and queues the
//!   next at once, say) finds no idle thread and starts another, if the
//!   pool is below its maximum: a chain of jobs one at a time may run on
//!   two threads or more. tokio's pool has the same window. Closing it
//!   (counting such a thread as "returning" and giving it the next job)
//!   was tried and measured slower: docs/design.md, "The blocking pool".
//! * After `shutdown` the queue holds only the mandatory jobs
//!   ([`PoolJob::mandatory`]) queued before it, and only while a thread is
//!   left: a thread takes a queued job before it looks at `shut_down`, so
//!   they run before the last thread leaves. Jobs submitted later, mandatory
//!   or not, are cancelled at once.
//! * A thread leaves by decrementing `threads` (and counting itself in
//!   `stopping` while its stop hook runs) under the lock and then
//!   notifying `exited`, so `wait_for_threads` (which checks both under
//!   the lock) never sleeps through the last one leaving. A thread runs
//!   no job after that decrement: once `threads` is 0 after `shutdown`,
//!   every job the pool took has run or been cancelled, and once
//!   `stopping` is 0 too, every stop hook has run.

use std::collections::VecDeque;
use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::affinity::Mask;
use crate::shutdown::Shared;
use crate::sync::{thread, Condvar, Mutex, MutexGuard};
use crate::thread_hooks::ThreadHooks;

/// What the pool runs.
pub(crate) trait PoolJob: Send + 'static {
    /// What tells queued jobs apart (a task's id).
    type Key: PartialEq;
    /// This job's key: no other queued job has it.
    fn key(&self) -> Self::Key;
    /// Runs the job, on a pool thread.
    fn run(self);
    /// Drops the job unrun (the pool shut down, or has no thread for it).
    fn cancel(self);
    /// `true` if `shutdown` leaves the job queued, for a thread to run,
    /// rather than cancel it (a write a file accepted).
    fn mandatory(&self) -> bool {
        false
    }
    /// The runtime the job belongs to: current while the thread the job
    /// starts runs its hooks.
    fn runtime(&self) -> Weak<Shared> {
        Weak::new()
    }
}

#[cfg(all(test, not(loom)))]
thread_local! {
    /// Set by [`fail_thread_starts`]: thread starts from this thread fail.
    static FAIL_THREAD_STARTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// For tests: makes the pool threads that `submit` would start from this
/// thread fail to start (`true`), or start again (`false`), as when the
/// system is out of threads or memory.
#[cfg(all(test, not(loom)))]
pub(crate) fn fail_thread_starts(fail: bool) {
    FAIL_THREAD_STARTS.with(|cell| cell.set(fail));
}

/// The error a thread start gets for a test (`fail_thread_starts`, in test builds), if
/// one is to fail.
fn fail_thread_start_for_tests() -> Option<std::io::Error> {
    #[cfg(all(test, not(loom)))]
    if FAIL_THREAD_STARTS.with(std::cell::Cell::get) {
        return Some(std::io::Error::from(std::io::ErrorKind::OutOfMemory));
    }
    None
}

/// Threads that run jobs, and their queue.
pub(crate) struct BlockingPool<J> {
    state: Mutex<PoolState<J>>,
    work: Condvar,
    /// Notified whenever a thread leaves (see `wait_for_threads`).
    exited: Condvar,
    max_threads: usize,
    keep_alive: Duration,
    /// What each pool thread runs as it starts and ends.
    hooks: ThreadHooks,
    /// The CPU mask each pool thread takes first thing, when the workers
    /// are pinned: a thread inherits its creator's, which is usually a
    /// pinned worker's.
    unpinned: Option<Mask>,
}

struct PoolState<J> {
    queue: VecDeque<J>,
    threads: usize,
    idle: usize,
    wakeups: usize,
    /// Threads that left `threads` and are running their stop hook.
    stopping: usize,
    shut_down: bool,
    /// Numbers the threads' names.
    started: u64,
}

impl<J: PoolJob> BlockingPool<J> {
    pub(crate) fn new(max_threads: usize, keep_alive: Duration, hooks: ThreadHooks) -> Self {
        Self {
            state: Mutex::new(PoolState {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
                wakeups: 0,
                stopping: 0,
                shut_down: false,
                started: 0,
            }),
            work: Condvar::new(),
            exited: Condvar::new(),
            max_threads: max_threads.max(1),
            keep_alive,
            hooks,
            unpinned: None,
        }
    }

    /// Makes each thread the pool starts from now on take `mask` (the
    /// process's, saved before the workers were pinned) first thing.
    pub(crate) fn unpin_threads_to(mut self, mask: Option<Mask>) -> Self {
        self.unpinned = mask;
        self
    }

    /// The lock; a poisoned one is taken anyway (no job runs under it, so
    /// its state is whole).
    fn lock(&self) -> MutexGuard<'_, PoolState<J>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a job and finds it a thread: `false` if the job was
    /// cancelled instead (the pool shut down, or no thread was left and
    /// none could be started). A job queued for a thread that could not
    /// be started while no other thread was left is cancelled, with every
    /// other queued job, by the `submit` that tried to start it: a job
    /// whose own `submit` returned `true` may still be cancelled so.
    pub(crate) fn submit(self: &Arc<Self>, job: J) -> bool {
        let mut state = self.lock();
        if state.shut_down {
            drop(state);
            job.cancel();
            return false;
        }
        let key = job.key();
        state.queue.push_back(job);
        if state.idle > state.wakeups {
            state.wakeups += 1;
            drop(state);
            self.work.notify_one();
            return true;
        }
        if state.threads == self.max_threads {
            return true; // a thread takes it when one is free
        }
        state.threads += 1;
        state.started += 1;
        let name = format!("cellio-blocking-{}", state.started);
        // The job just queued: its runtime is the one the thread's hooks
        // see (the pool's jobs are all of one runtime).
        let runtime = state.queue.back().map_or_else(Weak::new, J::runtime);
        drop(state);
        let pool = Arc::clone(self);
        // Whether the new thread inherits a SIGPIPE block cellio added
        // here (on a worker, in `block_on`), which it undoes.
        #[cfg(unix)]
        let sigpipe = cellio_reactor::sigpipe::Inherited::here();
        let started = match fail_thread_start_for_tests() {
            Some(error) => Err(error),
            None => thread::Builder::new()
                .name(name)
                .spawn(move || {
                    // Started from a worker (or `block_on` after a splice),
                    // it inherited SIGPIPE blocked by cellio: unblocked, so
                    // that the program's blocking code meets it as the
                    // program set it (a block the program set stays).
                    #[cfg(unix)]
                    sigpipe.undo();
                    pool.run_thread(&runtime)
                })
                .map(drop),
        };
        if let Err(error) = started {
            let mut state = self.lock();
            state.threads -= 1;
            self.exited.notify_all();
            // With no thread at all, nothing would ever take the job: the
            // jobs queued are cancelled rather than wait forever.
            let orphans: Vec<J> = if state.threads == 0 {
                state.queue.drain(..).collect()
            } else {
                Vec::new()
            };
            drop(state);
            tracing::error!(%error, "cellio: could not start a blocking thread");
            let cancelled = orphans.iter().any(|orphan| orphan.key() == key);
            orphans.into_iter().for_each(J::cancel);
            return !cancelled;
        }
        true
    }

    /// A pool thread: runs jobs until none came for `keep_alive`, or the
    /// pool shut down.
    fn run_thread(&self, runtime: &Weak<Shared>) {
        // Started from a pinned worker, it inherited that worker's core:
        // every job would compete with the worker for it.
        if let Some(mask) = &self.unpinned {
            if let Err(error) = mask.apply_to_current_thread() {
                tracing::warn!(%error, "cellio: a blocking thread stays on its worker's cores");
            }
        }
        self.hooks.run_start(runtime);
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                job.run();
                state = self.lock();
                continue;
            }
            if state.shut_down {
                break;
            }
            state.idle += 1;
            let (mut woken, timed_out) = self.work.wait_timeout(state, self.keep_alive);
            woken.idle -= 1;
            if woken.wakeups > 0 {
                woken.wakeups -= 1;
            } else if timed_out && woken.queue.is_empty() {
                state = woken;
                break;
            }
            state = woken;
        }
        // Leaving the count in the same hold that found the queue empty;
        // the stop hook runs after, counted in `stopping` so that a wait
        // for the threads waits for it too.
        state.threads -= 1;
        state.stopping += 1;
        drop(state);
        self.hooks.run_stop(runtime);
        self.lock().stopping -= 1;
        self.exited.notify_all();
    }

    /// Cancels the queued jobs but the mandatory ones, which the threads
    /// run before they leave, and lets the idle threads exit; running jobs
    /// finish on their threads. Returns how many jobs were cancelled.
    pub(crate) fn shutdown(&self) -> usize {
        let mut state = self.lock();
        state.shut_down = true;
        // The mandatory jobs stay, for the threads left to run (with none
        // left, which `submit` never leaves with a job queued, nothing
        // would).
        let threads = state.threads;
        let (kept, queued): (VecDeque<J>, VecDeque<J>) = std::mem::take(&mut state.queue)
            .into_iter()
            .partition(|job| job.mandatory() && threads > 0);
        state.queue = kept;
        drop(state);
        self.work.notify_all();
        let cancelled = queued.len();
        queued.into_iter().for_each(J::cancel);
        cancelled
    }

    /// Waits until every pool thread has left, or until `deadline`;
    /// returns how many are left (0: all). Call it after `shutdown`, which
    /// makes idle threads leave and running ones leave after their job;
    /// before it, threads leave only when their keep-alive runs out.
    pub(crate) fn wait_for_threads(&self, deadline: Option<Instant>) -> usize {
        let mut state = self.lock();
        while state.threads + state.stopping > 0 {
            state = match deadline {
                None => self.exited.wait(state),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    self.exited.wait_timeout(state, left).0
                }
            };
        }
        state.threads + state.stopping
    }

    /// `(threads, idle threads, queued jobs)`, for tests and diagnostics.
    pub(crate) fn stats(&self) -> (usize, usize, usize) {
        let state = self.lock();
        (state.threads, state.idle, state.queue.len())
    }

    /// The keep-alive runs out for the threads waiting now (loom has no
    /// clock: see `crate::sync::Condvar`).
    #[cfg(all(test, loom))]
    fn expire_keep_alive(&self) {
        let _state = self.lock();
        self.work.expire();
    }
}

impl<J: PoolJob> std::fmt::Debug for BlockingPool<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (threads, idle, queued) = self.stats();
        f.debug_struct("BlockingPool")
            .field("threads", &threads)
            .field("idle", &idle)
            .field("queued", &queued)
            .field("max_threads", &self.max_threads)
            .finish()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::{Condvar as LoomCondvar, Mutex as LoomMutex};

    /// What became of each job: `(id, ran)`, `ran` false for a cancel.
    #[derive(Default)]
    struct Log {
        outcomes: LoomMutex<Vec<(u32, bool)>>,
        changed: LoomCondvar,
    }

    impl Log {
        fn record(&self, id: u32, ran: bool) {
            self.outcomes.lock().unwrap().push((id, ran));
            self.changed.notify_all();
        }

        /// Blocks until `count` jobs have an outcome. A job left in the
        /// queue with no thread to take it leaves every thread blocked,
        /// which loom reports as a deadlock.
        fn wait_for(&self, count: usize) -> Vec<(u32, bool)> {
            let mut outcomes = self.outcomes.lock().unwrap();
            while outcomes.len() < count {
                outcomes = self.changed.wait(outcomes).unwrap();
            }
            let mut sorted = outcomes.clone();
            sorted.sort_unstable();
            sorted
        }
    }

    struct TestJob {
        id: u32,
        log: Arc<Log>,
        mandatory: bool,
    }

    impl PoolJob for TestJob {
        type Key = u32;

        fn key(&self) -> u32 {
            self.id
        }

        fn run(self) {
            self.log.record(self.id, true);
        }

        fn cancel(self) {
            self.log.record(self.id, false);
        }

        fn mandatory(&self) -> bool {
            self.mandatory
        }
    }

    type Pool = BlockingPool<TestJob>;

    fn pool(max_threads: usize) -> (Arc<Pool>, Arc<Log>) {
        let pool = Arc::new(Pool::new(
            max_threads,
            Duration::from_secs(10),
            ThreadHooks::default(),
        ));
        (pool, Arc::new(Log::default()))
    }

    /// Shuts the pool down, checking first that no wake-up is counted
    /// for a thread that is not waiting (a stale one would keep `submit`
    /// from waking a thread that is).
    fn check_and_shut_down(pool: &Pool) -> usize {
        let state = pool.lock();
        assert!(
            state.wakeups <= state.idle,
            "{} wake-ups counted for {} idle threads",
            state.wakeups,
            state.idle
        );
        drop(state);
        pool.shutdown()
    }

    fn job(log: &Arc<Log>, id: u32) -> TestJob {
        TestJob {
            id,
            log: Arc::clone(log),
            mandatory: false,
        }
    }

    /// Submits job `id` from a thread of its own; the yield after the
    /// spawn is a scheduling point (loom 0.7.2 does not always explore the
    /// spawned thread running first on its own; see
    /// reactor/tests/loom_cell.rs).
    fn submit_from_thread(pool: &Arc<Pool>, log: &Arc<Log>, id: u32) -> thread::JoinHandle<()> {
        let (pool, job) = (Arc::clone(pool), job(log, id));
        let submitter = thread::spawn(move || {
            pool.submit(job);
        });
        thread::yield_now();
        submitter
    }

    /// Two jobs from two threads, against threads that start, finish a
    /// job and go idle: both run, neither waits while a thread could take
    /// it. With one thread at most, the second waits for the first.
    #[test]
    fn every_job_finds_a_thread() {
        for max_threads in [1, 2] {
            loom::model(move || {
                let (pool, log) = pool(max_threads);
                let other = submit_from_thread(&pool, &log, 2);
                pool.submit(job(&log, 1));
                assert_eq!(log.wait_for(2), [(1, true), (2, true)]);
                other.join().unwrap();
                assert!(pool.stats().0 <= max_threads);
                assert_eq!(check_and_shut_down(&pool), 0);
            });
        }
    }

    /// A pool whose one thread has run job 1 (and is going idle), and a
    /// thread that expires the keep-alive at any point from now on.
    fn idle_thread_and_a_clock(
        max_threads: usize,
    ) -> (Arc<Pool>, Arc<Log>, thread::JoinHandle<()>) {
        let (pool, log) = pool(max_threads);
        pool.submit(job(&log, 1));
        assert_eq!(log.wait_for(1), [(1, true)]);
        let clock = {
            let pool = Arc::clone(&pool);
            thread::spawn(move || pool.expire_keep_alive())
        };
        thread::yield_now();
        (pool, log, clock)
    }

    /// The keep-alive runs out while a job arrives: the thread that timed
    /// out takes the job, or leaves and a new thread is started for it.
    /// (A thread that left in a second hold of the lock would let `submit`
    /// count it as running, and the job would wait forever.)
    #[test]
    fn a_job_arriving_as_the_keep_alive_runs_out_runs() {
        loom::model(|| {
            let (pool, log, clock) = idle_thread_and_a_clock(1);
            pool.submit(job(&log, 2));
            assert_eq!(log.wait_for(2), [(1, true), (2, true)]);
            clock.join().unwrap();
            assert_eq!(check_and_shut_down(&pool), 0);
        });
    }

    /// Two jobs for an idle thread while the keep-alive runs out: the
    /// first wakes it, the second starts another thread, which may take
    /// the first job. A thread that times out with nothing left takes its
    /// wake-up all the same (or the count would stay behind it).
    #[test]
    fn a_timed_out_thread_takes_its_wake_up() {
        loom::model(|| {
            let (pool, log, clock) = idle_thread_and_a_clock(2);
            pool.submit(job(&log, 2));
            pool.submit(job(&log, 3));
            assert_eq!(log.wait_for(3), [(1, true), (2, true), (3, true)]);
            clock.join().unwrap();
            assert_eq!(check_and_shut_down(&pool), 0);
        });
    }

    /// A shutdown racing two submits: each job runs or is cancelled,
    /// exactly once, and no thread is left waiting (loom would call that
    /// a deadlock).
    #[test]
    fn shutdown_runs_or_cancels_each_job_once() {
        loom::model(|| {
            let (pool, log) = pool(1);
            let submitter = {
                let (pool, log) = (Arc::clone(&pool), Arc::clone(&log));
                let submitter = thread::spawn(move || {
                    pool.submit(job(&log, 1));
                    pool.submit(job(&log, 2));
                });
                thread::yield_now();
                submitter
            };
            let cancelled = pool.shutdown();
            submitter.join().unwrap();
            let outcomes = log.wait_for(2);
            assert_eq!(
                outcomes.iter().map(|&(id, _)| id).collect::<Vec<_>>(),
                [1, 2]
            );
            let cancels = outcomes.iter().filter(|&&(_, ran)| !ran).count();
            assert!(
                cancels >= cancelled,
                "{outcomes:?}, shutdown said {cancelled}"
            );
            // After the shutdown nothing is queued, and a job is cancelled.
            pool.submit(job(&log, 3));
            assert_eq!(log.wait_for(3).last(), Some(&(3, false)));
            assert_eq!(pool.stats().2, 0);
        });
    }

    /// A shutdown racing a submit from another thread, while a thread may
    /// be starting, running a job or idle, then a wait for the threads:
    /// when the wait returns no thread is left and no job runs later (a
    /// job the shutdown beat is cancelled by its `submit`).
    #[test]
    fn waiting_for_the_threads_outlasts_every_job() {
        loom::model(|| {
            let (pool, log) = pool(2);
            pool.submit(job(&log, 1));
            let submitter = submit_from_thread(&pool, &log, 2);
            pool.shutdown();
            assert_eq!(pool.wait_for_threads(None), 0);
            let at_the_wait = log.outcomes.lock().unwrap().len();
            submitter.join().unwrap();
            let outcomes = log.outcomes.lock().unwrap().clone();
            assert_eq!(outcomes.len(), 2);
            for (index, &(id, ran)) in outcomes.iter().enumerate() {
                assert!(
                    !ran || index < at_the_wait,
                    "job {id} ran after the wait for the threads: {outcomes:?}"
                );
            }
            assert_eq!(pool.stats(), (0, 0, 0));
        });
    }

    /// A mandatory job and a plain one queued as the pool shuts down, its
    /// one thread starting, running or idle: the mandatory job has run
    /// when the wait for the threads returns (the plain one ran or was
    /// cancelled). A shutdown that cancelled it, or a thread that looked
    /// at `shut_down` before the queue, fails this.
    #[test]
    fn a_mandatory_job_queued_at_the_shutdown_runs() {
        loom::model(|| {
            let (pool, log) = pool(1);
            pool.submit(TestJob {
                mandatory: true,
                ..job(&log, 1)
            });
            pool.submit(job(&log, 2));
            pool.shutdown();
            assert_eq!(pool.wait_for_threads(None), 0);
            let outcomes = log.outcomes.lock().unwrap().clone();
            assert_eq!(outcomes.len(), 2, "{outcomes:?}");
            assert!(outcomes.contains(&(1, true)), "{outcomes:?}");
            assert_eq!(pool.stats(), (0, 0, 0));
        });
    }
}
