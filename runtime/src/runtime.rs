//! [`Runtime`] and [`RuntimeHandle`]: the workers, `block_on`, spawning,
//! and shutdown.
//!
//! A runtime is `N` workers, thread-per-core: each worker owns a reactor, a
//! run queue, timers and a task pool, and its tasks stay on it. Worker 0 is
//! the thread that calls [`Runtime::block_on`] (its tasks run only while
//! `block_on` or [`Runtime::shutdown_timeout`] runs); workers 1.. run on
//! threads of their own until the runtime stops.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use cellio_reactor::{budget, Handle, Reactor};

use crate::blocking::BlockingPool;
use crate::builder::Builder;
use crate::join::JoinHandle;
use crate::metrics::RuntimeMetrics;
use crate::shutdown::Shared;
use crate::spawn::MadeThere;
use crate::waker::{Inbox, LocalGuard, TaskAddr, WorkerClaim, MAIN_SLOT};
use crate::worker::{run_background, with_current, Executor, WorkerConfig};

/// A cellio runtime. Neither `Send` nor `Sync` (tokio's is both): it
/// belongs to the thread that built it, which is its worker 0 and the only
/// thread that runs its [`block_on`](Runtime::block_on). Other threads use
/// a [`RuntimeHandle`] ([`Runtime::handle`]), which is `Send + Sync`.
///
/// Dropping it cancels every task (dropping their futures) and the
/// blocking jobs still queued, stops and joins the worker threads, and
/// then waits for the blocking jobs that are running, as tokio's drop
/// does (the writes `fs::File` and `io::stdout` accepted are not
/// cancelled: they run before the drop returns). [`Runtime::shutdown_timeout`] lets tasks and jobs finish within a
/// grace period first; [`Runtime::shutdown_background`] does not wait for
/// running jobs, nor for a worker a task blocks.
///
/// # Examples
///
/// ```
/// use cellio_runtime::{spawn, Runtime};
///
/// let rt = Runtime::new()?;
/// let out = rt.block_on(async {
///     let task = spawn(async { "from a task" });
///     task.await.unwrap()
/// });
/// assert_eq!(out, "from a task");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Runtime {
    // Field order: worker 0's tasks (in the executor) drop before its
    // reactor.
    executor: Box<Executor>,
    reactor: RefCell<Reactor>,
    reactor_handle: Handle,
    threads: Vec<ThreadHandle<io::Result<()>>>,
    /// Each background worker's thread sends its index here as it ends
    /// (from a guard, also if it panics): `shutdown_timeout` waits for
    /// them with a deadline, which a join cannot.
    stopped: mpsc::Receiver<usize>,
    /// How long the drop waits for blocking jobs still running.
    blocking_wait: BlockingWait,
    _not_send: PhantomData<*const ()>,
}

/// How long a [`Runtime`]'s drop waits for the blocking pool's running
/// jobs (queued ones it cancels).
#[derive(Clone, Copy, Debug)]
enum BlockingWait {
    /// Until they finish: a plain drop, as tokio's.
    ToTheEnd,
    /// Until the deadline of [`Runtime::shutdown_timeout`] (`None`: a
    /// grace too long to represent, so to the end, quietly).
    Until(Option<Instant>),
    /// Not at all: [`Runtime::shutdown_background`].
    No,
}

/// How long `shutdown_timeout` waits, at least, for the worker threads
/// once it has told them to stop (the rest of the grace, if longer): a
/// worker that is not stuck in a poll cancels its tasks and ends within a
/// loop turn, once the system schedules it; one still running after this
/// is left behind.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// How long a plain drop waits for blocking jobs before it logs a warning
/// (and goes on waiting).
const BLOCKING_WAIT_WARNING: Duration = Duration::from_secs(1);

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.workers())
            .field("worker0_tasks", &self.executor.live_tasks())
            .field(
                "worker0_registrations",
                &self.reactor_handle.registrations(),
            )
            .finish()
    }
}

impl Runtime {
    /// A runtime with the default [`Builder`] settings (one worker per
    /// core).
    pub fn new() -> io::Result<Runtime> {
        Builder::new().build()
    }

    /// A [`Builder`] to configure one.
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn from_builder(builder: Builder) -> io::Result<Runtime> {
        let core_of = |worker: usize| builder.worker_cores.as_ref().map(|cores| cores[worker]);
        // The building thread's mask, before anything is pinned: the
        // blocking pool's threads take it back (they inherit a pinned
        // worker's otherwise).
        let unpinned = match builder.worker_cores {
            Some(_) => Some(crate::affinity::Mask::of_current_thread()?),
            None => None,
        };
        let mut reactors = Vec::with_capacity(builder.workers);
        let mut claims = Vec::with_capacity(builder.workers);
        for _ in 0..builder.workers {
            let reactor = Reactor::with_event_capacity(builder.event_capacity)?;
            // On an early return the claims made so far drop, which
            // releases their worker numbers.
            claims.push(Inbox::claim(reactor.handle())?);
            reactors.push(reactor);
        }
        let shared = Arc::new(Shared::new(
            claims.iter().map(WorkerClaim::address).collect(),
            BlockingPool::new(
                builder.max_blocking_threads,
                builder.blocking_keep_alive,
                builder.thread_hooks.clone(),
            )
            .unpin_threads_to(unpinned),
        ));
        let mut reactors = reactors.into_iter();
        let mut claims = claims.into_iter();
        let mut reactor = reactors.next().expect("at least one worker");
        // SAFETY: worker 0's reactor lives in the `Runtime`, which is not
        // `Send`: it is turned (in `block_on`) and dropped on this thread.
        unsafe { reactor.bind_to_current_thread()? };
        let claim = claims.next().expect("at least one worker");
        let executor = Box::new(Executor::new(
            claim.parts(),
            0,
            shared.clone(),
            builder.worker,
        ));
        if builder.start_paused {
            executor.clock().pause();
        }
        // `Runtime`'s drop releases worker 0's inbox from here on.
        claim.hand_over();
        let (stopped_tx, stopped) = mpsc::channel::<usize>();
        let mut runtime = Runtime {
            executor,
            reactor_handle: reactor.handle(),
            reactor: RefCell::new(reactor),
            threads: Vec::new(),
            stopped,
            blocking_wait: BlockingWait::ToTheEnd,
            _not_send: PhantomData,
        };
        // Each background worker reports once it is set up, so that `new`
        // returns with every worker ready: a thread's start-up (its name,
        // its run queue) never lands in the caller's later work, and a
        // worker that dies starting up is an error here, not a silent hole.
        let (started_tx, started_rx) = mpsc::channel::<io::Result<()>>();
        for (index, (reactor, claim)) in reactors.zip(claims).enumerate() {
            let index = index + 1;
            let (shared, config): (Arc<Shared>, WorkerConfig) = (shared.clone(), builder.worker);
            let started = started_tx.clone();
            let core = core_of(index);
            let hooks = builder.thread_hooks.clone();
            let stopped = stopped_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("cellio-worker-{index}"))
                .spawn(move || {
                    // First, so that it drops last: the thread has done
                    // all its work (its tasks cancelled, its stop hook
                    // run) when it reports.
                    let _stopped = ReportStop(stopped, index);
                    if let Some(core) = core {
                        if let Err(e) = crate::affinity::pin_current_thread(index, core) {
                            // Dropping `claim` releases the inbox; the
                            // error is `from_builder`'s to report.
                            let _ = started.send(Err(e));
                            return Ok(());
                        }
                    }
                    // SIGPIPE blocked for the worker's life: a task's
                    // splice or sendfile then costs no mask change
                    // (`cellio_reactor::sigpipe`).
                    #[cfg(unix)]
                    cellio_reactor::sigpipe::block_for_thread();
                    // On the pinned thread; its stop hook runs last.
                    let _started = hooks.started(&shared);
                    // A panic here drops `claim`, which releases the inbox.
                    let executor = Executor::new(claim.parts(), index, shared, config);
                    claim.hand_over(); // `run_background` releases it
                    run_background(reactor, executor, move || {
                        // The receiver is gone only if `from_builder` has
                        // already failed: nobody is waiting for this.
                        let _ = started.send(Ok(()));
                    })
                });
            match thread {
                Ok(thread) => runtime.threads.push(thread),
                // Dropping `runtime` stops the threads already started.
                Err(e) => return Err(e),
            }
        }
        drop(started_tx);
        drop(stopped_tx);
        for _ in 0..runtime.threads.len() {
            match started_rx.recv() {
                Ok(Ok(())) => {}
                // A worker could not be pinned: dropping `runtime` stops
                // the others.
                Ok(Err(e)) => return Err(e),
                // Every sender is gone without a report: a worker thread
                // died (panicked) before it was ready.
                Err(_) => {
                    return Err(io::Error::other(
                        "cellio: a worker thread failed while starting up",
                    ))
                }
            }
        }
        // Worker 0 is this thread (`Builder::worker_cores` says so), pinned
        // last: a build that fails leaves it as it was.
        if let Some(core) = core_of(0) {
            crate::affinity::pin_current_thread(0, core)?;
        }
        Ok(runtime)
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.executor.shared.workers.len()
    }

    /// The runtime's [`RuntimeMetrics`]: every worker's figures and the
    /// blocking pool's. Worker 0's are published here first, so they are
    /// exact now even outside `block_on` (where worker 0 does not run).
    pub fn metrics(&self) -> RuntimeMetrics {
        self.executor.publish();
        RuntimeMetrics::new(self.executor.shared.clone())
    }

    /// A handle for spawning onto any worker and shutting down, usable from
    /// any thread.
    pub fn handle(&self) -> RuntimeHandle {
        RuntimeHandle {
            shared: self.executor.shared.clone(),
        }
    }

    /// Runs `future` to completion on this thread (worker 0), together with
    /// worker 0's tasks, and returns its output.
    ///
    /// Tasks still unfinished when `future` completes stay in the runtime:
    /// they run again in the next `block_on`, and are cancelled when the
    /// runtime is dropped.
    ///
    /// # Panics
    ///
    /// If called from inside a cellio runtime (which would block that
    /// runtime's worker); `.await` the future or `spawn` it instead. A panic
    /// of `future` itself propagates (a spawned task's panic is caught and
    /// returned by its [`JoinHandle`]).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        if LocalGuard::current().is_some() {
            panic!(
                "cellio: block_on called from inside a runtime; \
                 .await the future or spawn it instead"
            );
        }
        let executor: &Executor = &self.executor;
        // In a blocking job, the future is no task all the same.
        let _no_job = crate::blocking::NoJobInBlockOn::enter();
        let _reactor_context = self.reactor_handle.enter();
        let _local = executor.enter();
        // A task's splice, sendfile or pipe write blocks SIGPIPE on this
        // thread until this returns (`cellio_reactor::sigpipe`).
        #[cfg(unix)]
        let _sigpipe = cellio_reactor::sigpipe::InBlockOn::enter();
        let main_waker = TaskAddr::new(executor.worker(), executor.epoch(), MAIN_SLOT, 0).waker();
        let mut cx = Context::from_waker(&main_waker);
        let mut future = pin!(future);
        let mut output = None;
        let mut reactor = self.reactor.borrow_mut();
        executor.main_woken.set(true);
        executor.run(&mut reactor, || {
            // Checked twice per loop turn; almost always "not woken", so the
            // poll itself stays out of line.
            if !executor.main_woken.get() {
                return false;
            }
            output = poll_main(executor, future.as_mut(), &mut cx);
            output.is_some()
        });
        output.expect("the worker loop returns once the future is ready")
    }

    /// Spawns `future` on worker 0. It starts running at the next
    /// `block_on` (or right away if one is running).
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.executor.spawn(future)
    }

    /// The reactor of worker 0.
    pub fn reactor(&self) -> &Handle {
        &self.reactor_handle
    }

    /// Number of worker 0's spawned tasks that have not finished.
    pub fn live_tasks(&self) -> usize {
        self.executor.live_tasks()
    }

    /// Frees every task block held in worker 0's pool; returns how many.
    /// The pool refills as tasks finish.
    pub fn trim_task_pool(&self) -> usize {
        let mut pool = self.executor.pool().borrow_mut();
        // Blocks other threads sent back are part of the pool too.
        self.executor.inbox.take_returned(&mut pool);
        pool.trim()
    }

    /// Runs `job` on the blocking pool: see
    /// [`spawn_blocking`](crate::spawn_blocking), which does the same from
    /// inside a task.
    pub fn spawn_blocking<F, R>(&self, job: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        crate::blocking::spawn_blocking_in(Some(&self.executor.shared), job)
    }

    /// The blocking pool now: `(threads, idle threads, queued jobs)`.
    pub fn blocking_pool_stats(&self) -> (usize, usize, usize) {
        self.executor.shared.blocking.stats()
    }

    /// Worker 0's task-pool figures: `(blocks reused, blocks freshly
    /// allocated, blocks pooled now)`. The fresh blocks include those
    /// allocated outside the pool (pooling off, or a task too big for it).
    pub fn task_pool_stats(&self) -> (u64, u64, usize) {
        let mut pool = self.executor.pool().borrow_mut();
        // Blocks other threads sent back count as pooled.
        self.executor.inbox.take_returned(&mut pool);
        let (reused, allocated) = pool.counts();
        (reused, allocated, pool.pooled())
    }

    /// Shuts down gracefully: begins draining (tasks waiting in
    /// [`shutdown_requested`](crate::shutdown_requested) or
    /// [`until_shutdown`](crate::until_shutdown) are woken, so accept loops
    /// stop), lets every worker's tasks finish for up to `grace`, then
    /// cancels what is left and joins the worker threads.
    ///
    /// Returns how many tasks were cancelled (0: everything finished in
    /// time), counting tasks sent to a worker (`spawn_on`) that it had not
    /// started yet. Such tasks get the grace period like the others, also
    /// those sent during it: every worker, and its reactor (which serves
    /// the sockets made on that worker, wherever they are used), runs on
    /// until every worker's tasks are done or the grace period is over.
    ///
    /// Blocking jobs ([`spawn_blocking`](crate::spawn_blocking)) still
    /// queued when the tasks are cancelled are cancelled too; running ones
    /// get what is left of `grace` to finish, and any still running then
    /// finish on their threads after this returns (a thread cannot be
    /// stopped), as with tokio's `shutdown_timeout`.
    ///
    /// A worker thread stuck in a task's poll (a task that blocks its
    /// thread: a bug, or a blocking call that belongs in `spawn_blocking`)
    /// cannot stop either. The call waits for the worker threads until the
    /// end of `grace`, or for one second after the tasks were told to stop
    /// if that is later (a worker's time to cancel its tasks), and then
    /// leaves such a thread behind, as tokio does: the worker cancels its
    /// tasks itself once the poll returns. For such a worker the result
    /// counts an estimate, as its tasks cannot be counted while its thread
    /// runs a task's code: the tasks it had at its last loop turn (or has
    /// not cancelled yet, if it is stuck in a cancelled future's drop), but
    /// the one it is stuck in, and those sent to it (`spawn_on`) that it
    /// has not taken in. Tasks spawned on it since its last loop turn (by
    /// the stuck task, say) or after this returns are cancelled all the
    /// same, but not counted; a task that ends in the stuck poll's batch
    /// is counted although it is not cancelled.
    ///
    /// That bound on the wait covers the background workers only. Worker
    /// 0's tasks run on the calling thread, in this call, during the
    /// grace: one that blocks the thread holds the call for as long as it
    /// blocks, whatever `grace` is (tokio's `current_thread` runtime polls
    /// no task in its `shutdown_timeout`).
    /// [`shutdown_background`](Self::shutdown_background) leaves it behind
    /// too; a plain drop waits for it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = cellio_runtime::Runtime::new()?;
    /// rt.spawn(async {
    ///     cellio_runtime::shutdown_requested().await; // stops when asked
    /// });
    /// rt.spawn(cellio_runtime::sleep(Duration::from_secs(3600))); // never ends
    /// assert_eq!(rt.shutdown_timeout(Duration::from_millis(50)), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown_timeout(mut self, grace: Duration) -> usize {
        let shared = self.executor.shared.clone();
        shared.begin_drain();
        let deadline = Instant::now().checked_add(grace);
        let threads = std::mem::take(&mut self.threads);
        let executor: &Executor = &self.executor;
        // `Some(tasks taken in so far, all workers)` if no worker has a
        // live task or a message (a task sent to it and not yet taken in
        // counts as unfinished: it gets the grace period too).
        let quiet = || -> Option<u64> {
            if executor.live_tasks() != 0 || executor.inbox.has_pending() {
                return None;
            }
            let mut spawned = executor.spawned();
            for (index, &(worker, _)) in shared.workers.iter().enumerate().skip(1) {
                // A worker whose loop panicked has cancelled its tasks
                // and refuses new ones.
                if threads[index - 1].is_finished() {
                    continue;
                }
                if !Inbox::quiet(worker) {
                    return None;
                }
                let idle = shared.metrics.of(index).spawned_if_idle()?;
                spawned = spawned.wrapping_add(idle);
            }
            Some(spawned)
        };
        self.block_on(async {
            let mut before = None;
            // Started at the first step on a paused clock.
            let mut ticks: Option<RealTimeTicks> = None;
            loop {
                // Background workers run on meanwhile, so one look may see
                // a task's sender already done and its receiver not yet
                // started. Two looks a step apart that find every worker
                // quiet and no task taken in between mean that no task was
                // left anywhere in between.
                let now = quiet();
                let finished = now.is_some() && now == before;
                before = now;
                if finished || deadline.is_some_and(|d| Instant::now() >= d) {
                    return;
                }
                // Shutdown-only polling: 1 ms steps bound the extra wait.
                // The grace is real time, and so are the steps: on a paused
                // clock a 1 ms sleep is over at once (the clock jumps to
                // it), and the loop kept the thread busy for all of it.
                if executor.clock().paused_at().is_none() {
                    crate::time::sleep(Duration::from_millis(1)).await;
                } else {
                    if ticks.is_none() {
                        ticks = Some(RealTimeTicks::start(Duration::from_millis(1)).await);
                    }
                    if let Some(ticks) = &ticks {
                        ticks.next().await;
                    }
                }
                // And one turn of the loop at least, even when the sleep
                // was over before it was first polled (a thread descheduled
                // that long, or Miri's clock, which counts instructions):
                // the workers' inbox must be drained for `finished`.
                crate::yield_now().await;
            }
        });
        self.threads = threads;
        let left_behind = self.stop(deadline);
        self.blocking_wait = BlockingWait::Until(deadline);
        self.wait_for_blocking_jobs();
        self.blocking_wait = BlockingWait::No; // the drop need not wait again
        shared.cancelled() + left_behind
    }

    /// Drops the runtime without waiting for its blocking jobs or for a
    /// worker stuck in a task's poll: its tasks and queued jobs are
    /// cancelled and its workers stopped, as in a plain drop, but jobs
    /// running on the blocking pool finish on their threads after this
    /// returns, and a worker thread that a task blocks (one still in a
    /// poll a second after the workers were told to stop) is left behind
    /// and cancels its tasks when the poll returns, as
    /// [`shutdown_timeout`](Self::shutdown_timeout) leaves it. tokio's
    /// `shutdown_background` (its `shutdown_timeout` with no grace), but
    /// for that second: a worker that is not stuck cancels its tasks
    /// before this returns. Worker 0's tasks are dropped on the calling
    /// thread, so a future whose drop blocks holds this call.
    ///
    /// Use it when a job or a task may block for good (a read of the
    /// terminal, say) and the program should not wait for it.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let rt = cellio_runtime::Runtime::new()?;
    /// let (started, started_rx) = std::sync::mpsc::channel();
    /// rt.spawn_blocking(move || {
    ///     started.send(()).unwrap();
    ///     std::thread::sleep(Duration::from_secs(3)) // a drop would wait for this
    /// });
    /// started_rx.recv().unwrap();
    /// let start = Instant::now();
    /// rt.shutdown_background();
    /// assert!(start.elapsed() < Duration::from_secs(3));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown_background(mut self) {
        self.blocking_wait = BlockingWait::No;
        // Bounded as `shutdown_timeout(0)`'s: a worker still in a poll
        // `STOP_WAIT` from now is left behind (the drop's `stop` then finds
        // no thread to join).
        self.stop(Some(Instant::now()));
    }

    /// Waits for the blocking pool's running jobs as `blocking_wait` says
    /// (after `stop`, which shut the pool down).
    fn wait_for_blocking_jobs(&self) {
        let pool = &self.executor.shared.blocking;
        match self.blocking_wait {
            BlockingWait::No => {}
            BlockingWait::Until(deadline) => {
                let left = pool.wait_for_threads(deadline);
                if left > 0 {
                    tracing::debug!(
                        jobs = left,
                        "cellio: blocking jobs still running after the shutdown's grace \
                         finish on their threads"
                    );
                }
            }
            BlockingWait::ToTheEnd => {
                let warn_at = Instant::now().checked_add(BLOCKING_WAIT_WARNING);
                let left = pool.wait_for_threads(warn_at);
                if left > 0 {
                    tracing::warn!(
                        jobs = left,
                        "cellio: dropping the runtime waits for its running blocking jobs \
                         (Runtime::shutdown_timeout or shutdown_background would not)"
                    );
                    pool.wait_for_threads(None);
                }
            }
        }
    }

    /// Stops every worker now: cancels their tasks and joins the threads,
    /// those that end by `deadline` or within [`STOP_WAIT`] from now,
    /// whichever is later (`None`: all of them, however long they take).
    /// A thread still running then is stuck in a task's poll
    /// (a task that blocks its worker): it is left behind, detached, as
    /// tokio's `shutdown_timeout` leaves it, and cancels its tasks itself
    /// once the poll returns. Returns how many tasks the workers left
    /// behind will cancel then: those they last published alive (at a loop
    /// turn, or after each task they cancelled), but the one stuck in its
    /// poll or drop (which may still end), and those waiting in their
    /// inboxes. (An estimate: a task polled in the stuck poll's batch may
    /// end first, and tasks spawned there since the worker last published
    /// are left out; see `shutdown_timeout`.)
    ///
    /// Nothing such a thread uses is freed under it: it owns its executor
    /// and its reactor, holds the runtime's `Shared` by an `Arc`, and
    /// reaches the other workers only through their inboxes (leaked, and
    /// checked by epoch or incarnation) and their reactors' handles (which
    /// outlive the reactors: a dropped reactor's cells report it closed).
    fn stop(&mut self, deadline: Option<Instant>) -> usize {
        let shared = self.executor.shared.clone();
        shared.stop();
        // Jobs that never started are cancelled, but for mandatory ones (a
        // file's writes), which the pool's threads run; the drop waits for
        // the running ones (`wait_for_blocking_jobs`) once the tasks are
        // gone, so a job waiting on something a task held sees it dropped.
        shared.count_cancelled_n(shared.blocking.shutdown());
        let threads = std::mem::take(&mut self.threads);
        let mut stopped = vec![deadline.is_none(); threads.len()];
        let now = Instant::now();
        let deadline = deadline.map(|deadline| match now.checked_add(STOP_WAIT) {
            Some(least) => deadline.max(least),
            None => deadline,
        });
        if let Some(deadline) = deadline {
            let mut waiting = threads.len();
            while waiting > 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.stopped.recv_timeout(left) {
                    Ok(index) => {
                        if !std::mem::replace(&mut stopped[index - 1], true) {
                            waiting -= 1;
                        }
                    }
                    // Every thread has ended (each held a sender).
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        stopped.fill(true);
                        break;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                }
            }
        }
        let mut left_behind = 0;
        for (position, (thread, stopped)) in threads.into_iter().zip(stopped).enumerate() {
            if !stopped && !thread.is_finished() {
                let index = position + 1;
                let alive = shared.metrics.of(index).alive().saturating_sub(1) as usize;
                let tasks = alive + Inbox::spawned_waiting(shared.workers[index].0);
                tracing::warn!(
                    worker = index,
                    tasks,
                    "cellio: a worker is still in a task's poll after the shutdown's grace \
                     (a task blocks its thread); its thread is left behind and cancels its \
                     tasks when the poll returns"
                );
                left_behind += tasks;
                continue; // dropping the handle detaches the thread
            }
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cellio worker failed"),
                Err(_) => tracing::error!("cellio worker panicked"),
            }
        }
        let _reactor_context = self.reactor_handle.enter();
        let _local = self.executor.enter();
        self.executor.cancel_all();
        left_behind
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop(None);
        {
            // As a background worker ends (`worker::BackgroundExit`): with
            // worker 0 current, so that a drop that spawns here puts its
            // task where the last `cancel_all` finds it.
            let _reactor_context = self.reactor_handle.enter();
            let _local = self.executor.enter();
            self.executor.cancel_all_and_release();
        }
        self.wait_for_blocking_jobs();
    }
}

/// Sends a background worker's index on [`Runtime::stopped`] when its
/// thread is done.
struct ReportStop(mpsc::Sender<usize>, usize);

impl Drop for ReportStop {
    fn drop(&mut self) {
        // The receiver is gone only with the runtime: nobody waits.
        let _ = self.0.send(self.1);
    }
}

/// Polls the `block_on` future once (it was woken), with a task's budget:
/// it shares worker 0 with that worker's tasks, so a main future whose
/// sockets are always ready must yield to them (and to the reactor) too.
/// Once it is spent the future's next operation wakes it and returns
/// `Pending`, and the worker loop runs a batch of tasks and turns the
/// reactor before it polls the future again.
#[inline(never)]
fn poll_main<F: Future>(
    executor: &Executor,
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Option<F::Output> {
    executor.main_woken.set(false);
    // The one poll here whose panic is not caught inside `run_with`: it
    // reaches `block_on`'s caller, which is outside every poll, and must
    // not leave this thread's budget spent (every budgeted operation
    // polled here afterwards would return `Pending` forever). Forgotten
    // when the poll returns, so it costs nothing then.
    let unwinding = ResetBudget;
    let polled = budget::run_with(executor.budget, budget::NO_TAG, || future.poll(cx)).0;
    std::mem::forget(unwinding);
    match polled {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

/// Wakes the `block_on` future every `period` of real time, from a thread
/// of its own, until dropped: `shutdown_timeout`'s steps on a paused clock,
/// where the worker's timers take no real time. (The worker still jumps
/// its clock to the tasks' timers when it has nothing else to do.)
struct RealTimeTicks {
    ticked: Arc<AtomicBool>,
    /// Dropping it ends the thread.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<ThreadHandle<()>>,
}

impl RealTimeTicks {
    /// Starts ticking for the future awaiting this.
    async fn start(period: Duration) -> Self {
        let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let ticked = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("cellio-shutdown-ticks".into())
            .spawn({
                let ticked = ticked.clone();
                move || {
                    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                        ticked.store(true, Ordering::Release);
                        waker.wake_by_ref();
                    }
                }
            });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                // Steps that do not wait: busy, but the grace still ends.
                tracing::warn!(error = %e, "cellio: no thread to time the shutdown's grace");
                ticked.store(true, Ordering::Relaxed);
                None
            }
        };
        Self {
            ticked,
            stop: Some(stop),
            thread,
        }
    }

    /// Completes at the next tick.
    async fn next(&self) {
        std::future::poll_fn(|_| {
            if self.ticked.swap(self.thread.is_none(), Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for RealTimeTicks {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Puts the thread's budget back to the unlimited one outside every poll
/// when dropped: while the `block_on` future's poll unwinds.
struct ResetBudget;

impl Drop for ResetBudget {
    fn drop(&mut self) {
        budget::reset();
    }
}

/// A `Send + Sync` handle to a runtime: spawn onto any worker, begin a
/// shutdown. Get one with [`Runtime::handle`] or, inside a task,
/// [`RuntimeHandle::current`].
#[derive(Clone)]
pub struct RuntimeHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field("workers", &self.workers())
            .field("draining", &self.shared.draining())
            .finish()
    }
}

impl RuntimeHandle {
    /// The runtime running the current task,
    /// [`spawn_blocking`](crate::spawn_blocking) job or thread hook
    /// ([`Builder::on_thread_start`](crate::Builder::on_thread_start)), if
    /// any.
    pub fn current() -> Option<RuntimeHandle> {
        with_current(|executor| RuntimeHandle {
            shared: executor.shared.clone(),
        })
        .or_else(|| crate::blocking::current_job_runtime().map(|shared| RuntimeHandle { shared }))
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// The runtime's [`RuntimeMetrics`], from any thread (see there for
    /// how current each worker's figures are).
    ///
    /// ```
    /// let rt = cellio_runtime::Builder::new().workers(2).build()?;
    /// let handle = rt.handle();
    /// let busy = std::thread::spawn(move || {
    ///     let metrics = handle.metrics();
    ///     metrics.each_worker().map(|worker| worker.alive_tasks).sum::<u64>()
    /// })
    /// .join()
    /// .unwrap();
    /// assert_eq!(busy, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn metrics(&self) -> RuntimeMetrics {
        RuntimeMetrics::new(self.shared.clone())
    }

    /// Spawns `future` on worker `index` (`0..workers()`); it runs there
    /// for its whole life.
    ///
    /// # Notes
    ///
    /// The task's block comes from the current worker's pool, like
    /// [`spawn`](fn@crate::spawn)'s, and goes back to it when the task ends
    /// on the other worker (through this worker's inbox), so handing tasks
    /// from one worker to others allocates nothing in steady state. Called
    /// off any worker, it allocates the block. If the runtime has stopped,
    /// the task is dropped and its handle reports `Cancelled`.
    ///
    /// # Panics
    ///
    /// If `index >= workers()`.
    pub fn spawn_on<F>(&self, index: usize, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        crate::spawn::spawn_on_worker(Some(&self.shared), index, future, "spawn_on")
    }

    /// Spawns a future that need not be `Send` on worker `index`: `make`
    /// (which is `Send`) travels there and builds the future on that
    /// worker's thread, where it stays, as with
    /// [`spawn_local`]. This is the way to start a
    /// task that owns a thread-bound value (a `TcpIo`, an `Rc`) on another
    /// worker. See [`spawn_local_on`] for an example.
    ///
    /// Otherwise as [`spawn_on`](Self::spawn_on): the task's block comes
    /// from the current worker's pool; if the runtime has stopped, `make`
    /// is dropped without being called and the handle reports `Cancelled`.
    ///
    /// # Panics
    ///
    /// If `index >= workers()`. A panic in `make` is the task's, as one in
    /// its `poll` would be: its handle reports it.
    pub fn spawn_local_on<M, F>(&self, index: usize, make: M) -> JoinHandle<F::Output>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        crate::spawn::spawn_on_worker(
            Some(&self.shared),
            index,
            MadeThere::new(make),
            "spawn_local_on",
        )
    }

    /// Runs `job` on the runtime's blocking pool, from any thread: see
    /// [`spawn_blocking`](crate::spawn_blocking). If the runtime has been
    /// dropped, the job is dropped unrun and the handle reports
    /// `Cancelled`.
    pub fn spawn_blocking<F, R>(&self, job: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        crate::blocking::spawn_blocking_in(Some(&self.shared), job)
    }

    /// A job the shutdown runs rather than cancels (a file's write).
    pub(crate) fn spawn_mandatory_blocking<F, R>(&self, job: F) -> (JoinHandle<R>, bool)
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        crate::blocking::spawn_mandatory_blocking_in(Some(&self.shared), job)
    }

    /// The blocking pool now: `(threads, idle threads, queued jobs)`.
    pub fn blocking_pool_stats(&self) -> (usize, usize, usize) {
        self.shared.blocking.stats()
    }

    /// Begins a graceful shutdown (see [`Runtime::shutdown_timeout`]):
    /// tasks waiting for shutdown are woken, and the other tasks run on.
    /// Returns at once; callable from any thread (a signal-handling
    /// thread, say). The workers stop in the owner's `shutdown_timeout`
    /// (or drop of the [`Runtime`]), which also runs worker 0's tasks.
    pub fn shutdown(&self) {
        self.shared.begin_drain();
    }

    /// `true` once a shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.draining()
    }
}

/// Spawns `future` on the worker running this task.
///
/// # Panics
///
/// If called outside a cellio runtime (outside `block_on` and its tasks),
/// and in a [`spawn_blocking`](crate::spawn_blocking) job, whose thread is
/// no worker: use [`spawn_on`] there.
///
/// # Examples
///
/// ```
/// let rt = cellio_runtime::Runtime::new()?;
/// rt.block_on(async {
///     let a = cellio_runtime::spawn(async { 1 });
///     let b = cellio_runtime::spawn(async { 2 });
///     assert_eq!(a.await.unwrap() + b.await.unwrap(), 3);
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    crate::spawn::spawn_here(future)
}

/// Spawns a future that need not be `Send` on the worker running this
/// task. It always runs on this worker.
///
/// # Panics
///
/// If called outside a cellio runtime, and in a
/// [`spawn_blocking`](crate::spawn_blocking) job.
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
{
    // Like every public spawn function, this only forwards the future: the
    // `spawn` module explains why that keeps it at one copy.
    crate::spawn::spawn_here(future)
}

/// Spawns `future` on worker `index` of the runtime running this task (or
/// this [`spawn_blocking`](crate::spawn_blocking) job). See
/// [`RuntimeHandle::spawn_on`].
///
/// # Panics
///
/// Outside a cellio runtime, or if `index` is not a worker of it.
pub fn spawn_on<F>(index: usize, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    crate::spawn::spawn_on_worker(None, index, future, "spawn_on")
}

/// Spawns a future that need not be `Send` on worker `index` of the
/// runtime running this task: `make`, which is `Send`, is sent there and
/// builds the future on that worker, where it runs for its whole life. See
/// [`RuntimeHandle::spawn_local_on`].
///
/// # Panics
///
/// Outside a cellio runtime, or if `index` is not a worker of it.
///
/// # Examples
///
/// A task that keeps an `Rc` (not `Send`) runs on worker 1, started from
/// worker 0:
///
/// ```
/// use std::rc::Rc;
/// use cellio_runtime::{current_worker, spawn_local_on, yield_now, Builder};
///
/// let rt = Builder::new().workers(2).build()?;
/// let answer = rt.block_on(async {
///     let seed = 20; // what `make` carries over must be `Send`
///     spawn_local_on(1, move || async move {
///         let shared = Rc::new(seed + 1);
///         yield_now().await; // the `Rc` lives across an await
///         (*shared * 2, current_worker())
///     })
///     .await
/// });
/// assert_eq!(answer.unwrap(), (42, Some(1)));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn spawn_local_on<M, F>(index: usize, make: M) -> JoinHandle<F::Output>
where
    M: FnOnce() -> F + Send + 'static,
    F: Future + 'static,
    F::Output: Send + 'static,
{
    crate::spawn::spawn_on_worker(None, index, MadeThere::new(make), "spawn_local_on")
}

/// The index (`0..workers`) of the worker running this task, if any.
pub fn current_worker() -> Option<usize> {
    with_current(|executor| executor.index)
}

/// Yields to the other tasks once: the calling task is queued behind every
/// task already queued and resumes after them.
///
/// ```
/// cellio_runtime::Runtime::new()?.block_on(async {
///     cellio_runtime::yield_now().await;
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}
