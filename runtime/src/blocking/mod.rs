//! [`spawn_blocking`]: running blocking code on threads of its own, with a
//! `JoinHandle` for the result.
//!
//! A worker must never block: every task on it would wait. Code that does
//! (file I/O, a blocking library, a long computation) runs on the
//! runtime's *blocking pool*: threads started on demand, up to
//! [`Builder::max_blocking_threads`](crate::Builder::max_blocking_threads),
//! each exiting after
//! [`Builder::blocking_keep_alive`](crate::Builder::blocking_keep_alive)
//! without work.
//!
//! A blocking job is an ordinary task block whose future calls the closure
//! on its one poll; the pool thread that takes the job out of the queue is
//! that task's worker (the only thread that polls or drops its future, as
//! `task::raw` requires), so `JoinHandle`, `AbortHandle` and `JoinSet` work
//! unchanged. Its block comes from the spawning worker's pool and goes
//! back there through the worker's inbox, as a `spawn_on` task's does: a
//! job costs no allocation once the pool has threads and its queue room.
//!
//! # Invariants
//!
//! * A queued job is owned by the pool (`pool`'s invariants): whoever
//!   takes it out polls or cancels it, once, and releases the task's
//!   reference. It is queued with the function that polls a block of its
//!   type (the vtable has no poll: see `task::raw`).
//! * An abort reaches a job only before it starts (its first poll sees the
//!   flag and drops the closure unrun); a closure that is running runs to
//!   the end, as in tokio. Nothing publishes a waker address for a job, so
//!   an abort never wakes anything.
//! * While a pool thread runs a job, its thread-local `RUNNING_JOB` is
//!   that job's id (for `TaskId::try_current`), and `None` otherwise,
//!   also while the job runs a `Runtime::block_on` (whose future is no
//!   task: [`NoJobInBlockOn`]); and `JOB_RUNTIME` holds the job's runtime
//!   (for `RuntimeHandle::current`, `spawn_on` and `spawn_blocking` inside
//!   the job, as tokio's blocking threads enter their runtime's context).
//!   Each queued job holds its runtime's `Shared` for that: a reference
//!   cycle (the pool is in `Shared`) only until the job runs or the
//!   shutdown cancels it.
//! * A *mandatory* job (a write `fs::File` accepted, and so `io::stdout`'s
//!   and `io::stderr`'s) is not cancelled by the runtime's shutdown once
//!   queued: the pool's threads run it before they leave, and the drop
//!   waits for them. Only writes are: a mandatory read of stdin would make
//!   the drop wait for input.

mod pool;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

#[cfg(all(test, not(loom)))]
pub(crate) use pool::fail_thread_starts;
pub(crate) use pool::BlockingPool;
use pool::PoolJob;

use crate::join::JoinHandle;
use crate::shutdown::Shared;
use crate::spawn;
use crate::task::RawTask;
use crate::worker::release_task;
use crate::TaskId;

thread_local! {
    /// The id of the job this pool thread is running, if any.
    static RUNNING_JOB: Cell<Option<TaskId>> = const { Cell::new(None) };
    /// The runtime of the job this pool thread is running, if any.
    static JOB_RUNTIME: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// The runtime of the blocking job running on this thread, if any.
pub(crate) fn current_job_runtime() -> Option<Arc<Shared>> {
    JOB_RUNTIME
        .try_with(|runtime| runtime.borrow().clone())
        .ok()
        .flatten()
}

/// Makes `JOB_RUNTIME` a job's runtime until dropped (also if the job
/// panics); also a thread hook's (`thread_hooks`).
pub(crate) struct JobRuntime;

impl JobRuntime {
    pub(crate) fn enter(runtime: Arc<Shared>) -> Self {
        let _ = JOB_RUNTIME.try_with(|current| *current.borrow_mut() = Some(runtime));
        JobRuntime
    }
}

impl Drop for JobRuntime {
    fn drop(&mut self) {
        // Taken out before it drops: the last reference's drop runs the
        // runtime's, which must not find the cell borrowed.
        let runtime = JOB_RUNTIME
            .try_with(|current| current.borrow_mut().take())
            .ok()
            .flatten();
        drop(runtime);
    }
}

/// The id of the blocking job running on this thread, if any.
pub(crate) fn current_job_id() -> Option<TaskId> {
    RUNNING_JOB.try_with(Cell::get).ok().flatten()
}

/// Clears `RUNNING_JOB` when the job's poll ends, also if it panics.
struct JobIdGuard;

impl Drop for JobIdGuard {
    fn drop(&mut self) {
        let _ = RUNNING_JOB.try_with(|job| job.set(None));
    }
}

/// Clears `RUNNING_JOB` while a `Runtime::block_on` runs on this thread
/// (in a blocking job, its future is still no task), and puts it back
/// when dropped.
pub(crate) struct NoJobInBlockOn(Option<TaskId>);

impl NoJobInBlockOn {
    pub(crate) fn enter() -> Self {
        Self(RUNNING_JOB.try_with(Cell::take).ok().flatten())
    }
}

impl Drop for NoJobInBlockOn {
    fn drop(&mut self) {
        if let Some(job) = self.0 {
            let _ = RUNNING_JOB.try_with(|running| running.set(Some(job)));
        }
    }
}

/// Default for [`Builder::max_blocking_threads`](crate::Builder::max_blocking_threads)
/// (tokio's).
pub const DEFAULT_MAX_BLOCKING_THREADS: usize = 512;

/// Default for [`Builder::blocking_keep_alive`](crate::Builder::blocking_keep_alive)
/// (tokio's).
pub const DEFAULT_BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The future of a blocking job: calls the closure on its first poll.
struct BlockingJob<F>(Option<F>);

impl<F> Unpin for BlockingJob<F> {}

impl<F, R> Future for BlockingJob<F>
where
    F: FnOnce() -> R,
{
    type Output = R;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<R> {
        // `None` only if the closure panicked, after which the task is
        // finished and never polled again.
        let job = self.0.take().expect("a blocking job runs once");
        Poll::Ready(job())
    }
}

/// A queued job: its task reference and the function that runs a task of
/// its type (`run::<F>`), so nothing polls it through the block's vtable.
pub(crate) struct Job {
    task: RawTask,
    run: fn(RawTask),
    /// Run, not cancelled, by the shutdown (module invariants).
    mandatory: bool,
    /// The runtime whose pool runs it: the job's context (module
    /// invariants).
    runtime: Arc<Shared>,
}

impl PoolJob for Job {
    type Key = TaskId;

    fn key(&self) -> TaskId {
        self.task.id()
    }

    fn run(self) {
        let _context = JobRuntime::enter(self.runtime);
        (self.run)(self.task);
    }

    fn cancel(self) {
        cancel(self.task);
    }

    fn mandatory(&self) -> bool {
        self.mandatory
    }

    fn runtime(&self) -> Weak<Shared> {
        Arc::downgrade(&self.runtime)
    }
}

/// Runs a job whose future is a `BlockingJob<F>`: its one poll, then its
/// reference goes.
fn run<F, R>(task: RawTask)
where
    F: FnOnce() -> R,
{
    let mut cx = Context::from_waker(Waker::noop());
    RUNNING_JOB.with(|job| job.set(Some(task.id())));
    let running = JobIdGuard;
    // This thread took the job out of the queue: it is the task's only
    // worker (module invariants), holding its reference across the poll.
    // SAFETY: so nothing else polls or drops the future, and `run::<F, R>`
    // is queued only with a block of `BlockingJob<F>`.
    let _ = unsafe { task.by_ref().poll_as::<BlockingJob<F>>(&mut cx) };
    drop(running);
    release_task(task);
}

/// Drops a job that will never run; its handle reports `Cancelled`.
fn cancel(task: RawTask) {
    // SAFETY: the caller owns the job (it took it out of the queue, or it
    // never got there), so it is the task's only worker, and nothing polls
    // it; the closure is `Send`, so dropping it here is sound.
    unsafe { task.cancel() };
    release_task(task);
}

/// Spawns `job` on `shared`'s blocking pool (the current runtime's when
/// `None`).
pub(crate) fn spawn_blocking_in<F, R>(shared: Option<&Arc<Shared>>, job: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    spawn_job_in(shared, job, false).0
}

/// As [`spawn_blocking_in`], for a job the shutdown runs rather than
/// cancels once queued: a write a file accepted (module invariants).
pub(crate) fn spawn_mandatory_blocking_in<F, R>(
    shared: Option<&Arc<Shared>>,
    job: F,
) -> (JoinHandle<R>, bool)
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    spawn_job_in(shared, job, true)
}

/// [`spawn_blocking_in`], the job mandatory or not.
fn spawn_job_in<F, R>(
    shared: Option<&Arc<Shared>>,
    job: F,
    mandatory: bool,
) -> (JoinHandle<R>, bool)
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (current, shared) = spawn::sender(shared, "spawn_blocking");
    // As a `spawn_on` task's block: the job leaves this thread.
    let (memory, home) = spawn::block_to_send::<BlockingJob<F>>(current);
    let (task, join) = RawTask::init(memory, BlockingJob(Some(job)), home);
    let handle = JoinHandle::new(join);
    let queued = shared.blocking.submit(Job {
        task,
        run: run::<F, R>,
        mandatory,
        runtime: Arc::clone(&shared),
    });
    (handle, queued)
}

/// Runs `job`, which may block, on the runtime's blocking pool, and returns
/// a [`JoinHandle`] for its result: tokio's `spawn_blocking`.
///
/// Use it for anything that would hold a worker up: file I/O through
/// `std::fs`, a blocking client library, a long computation. The pool
/// starts threads as jobs need them, up to
/// [`Builder::max_blocking_threads`](crate::Builder::max_blocking_threads)
/// (512 by default; further jobs wait in a queue), and a thread exits
/// after [`Builder::blocking_keep_alive`](crate::Builder::blocking_keep_alive)
/// (10 s) without work.
///
/// * A panic in `job` is the task's: the handle returns
///   [`JoinError::Panicked`](crate::JoinError::Panicked).
/// * [`JoinHandle::abort`] stops a job that has not started (the handle
///   returns `Aborted`, once a pool thread takes the job out of the
///   queue: with every thread busy, it waits for one); one that is
///   running runs to its end.
/// * When the runtime is dropped, jobs still queued are cancelled (their
///   handles return `Cancelled`) and the drop waits for the running ones
///   to finish, as tokio's does, so a job's write is not cut off by the
///   program's exit. (The writes that [`fs::File`](crate::fs::File) and
///   [`io::stdout`](crate::io::stdout) accepted are not cancelled: they
///   run before the drop returns, as tokio's.)
///   [`Runtime::shutdown_timeout`](crate::Runtime::shutdown_timeout)
///   bounds that wait and
///   [`Runtime::shutdown_background`](crate::Runtime::shutdown_background)
///   skips it, for a job that may block for good.
///
/// Inside a job, [`RuntimeHandle::current`](crate::RuntimeHandle::current)
/// is the job's runtime, and `spawn_blocking` and
/// [`spawn_on`](crate::spawn_on) work as in a task; [`spawn`](fn@crate::spawn)
/// and [`spawn_local`](crate::spawn_local), which start a task on the
/// current worker, panic there (a job's thread is no worker).
///
/// No socket can be made in a job either (nor a `Signal` or a `Child`):
/// each belongs to the reactor of the worker that creates it, and a job's
/// thread has none, so `bind`, `connect` and `from_std` fail there with
/// "no cellio reactor on this thread", and `Command::spawn` with a message
/// that says to spawn the child from a task (tokio's job may make one). Do the
/// blocking part of the setup in the job with a `std` socket, return it,
/// and wrap it with `from_std` in the task that awaits the job
/// (`let listener = TcpListener::from_std(spawn_blocking(setup).await??)?;`),
/// or send it to a task on another worker with
/// [`spawn_on`](crate::spawn_on), which wraps it there.
///
/// # Panics
///
/// Outside a cellio runtime (use
/// [`RuntimeHandle::spawn_blocking`](crate::RuntimeHandle::spawn_blocking)
/// from other threads).
///
/// # Examples
///
/// ```
/// let rt = cellio_runtime::Runtime::new()?;
/// let length = rt.block_on(async {
///     cellio_runtime::spawn_blocking(|| std::fs::read("Cargo.toml").map(|bytes| bytes.len()))
///         .await
///         .expect("the job did not panic")
/// })?;
/// assert!(length > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn spawn_blocking<F, R>(job: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    spawn_blocking_in(None, job)
}
