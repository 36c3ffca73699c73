//! [`Builder`]: how a [`Runtime`] is configured.

use std::io;
use std::num::NonZeroUsize;
use std::time::Duration;

use cellio_reactor::{budget::DEFAULT_BUDGET, DEFAULT_EVENT_CAPACITY};

use crate::blocking::{DEFAULT_BLOCKING_KEEP_ALIVE, DEFAULT_MAX_BLOCKING_THREADS};
use crate::runtime::Runtime;
use crate::task::DEFAULT_TASK_POOL_CAP;
use crate::thread_hooks::ThreadHooks;
use crate::worker::WorkerConfig;

/// Default for [`Builder::event_interval`].
pub const DEFAULT_EVENT_INTERVAL: usize = 128;

/// The most events a reactor turn may fetch ([`Builder::event_capacity`]):
/// 2^20, which already takes 12 MiB of event buffer and 8 MiB of run queue
/// per worker. [`Builder::build`] refuses more with an error instead of
/// trying to allocate it (which aborts the process once it fails).
pub const MAX_EVENT_CAPACITY: usize = 1 << 20;

/// The most workers one runtime may have ([`Builder::workers`]), and the
/// most alive at once in the process: 4096 (a waker carries its worker's
/// number in 12 bits). [`Builder::build`] refuses more with an error before
/// it allocates anything for them.
pub const MAX_WORKERS: usize = crate::waker::MAX_WORKERS;

/// Configures and builds a [`Runtime`].
///
/// ```
/// let rt = cellio_runtime::Builder::new()
///     .workers(2)
///     .event_capacity(256)
///     .task_pooling(true)
///     .build()?;
/// assert_eq!(rt.workers(), 2);
/// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    pub(crate) workers: usize,
    pub(crate) event_capacity: usize,
    pub(crate) worker: WorkerConfig,
    pub(crate) max_blocking_threads: usize,
    pub(crate) blocking_keep_alive: Duration,
    /// Worker `i`'s core, if the workers are pinned.
    pub(crate) worker_cores: Option<Vec<usize>>,
    /// What the runtime's threads run as they start and end.
    pub(crate) thread_hooks: ThreadHooks,
    /// Worker 0's clock starts paused (`time::pause`).
    pub(crate) start_paused: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// The defaults: one worker per available core, 1024 events per reactor
    /// turn, the reactor checked at least every 128 task polls, a budget of
    /// 128 socket operations per task poll, task pooling on, up to 512
    /// blocking threads kept 10 s without work.
    pub fn new() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            event_capacity: DEFAULT_EVENT_CAPACITY,
            worker: WorkerConfig {
                event_interval: DEFAULT_EVENT_INTERVAL,
                queue_capacity: DEFAULT_EVENT_CAPACITY,
                task_pooling: true,
                task_pool_cap: DEFAULT_TASK_POOL_CAP,
                budget: DEFAULT_BUDGET,
            },
            max_blocking_threads: DEFAULT_MAX_BLOCKING_THREADS,
            blocking_keep_alive: DEFAULT_BLOCKING_KEEP_ALIVE,
            worker_cores: None,
            thread_hooks: ThreadHooks::default(),
            start_paused: false,
        }
    }

    /// Number of workers: thread-per-core, each with its own reactor, run
    /// queue, timers and task pool. Worker 0 runs on the thread that calls
    /// [`Runtime::block_on`]; the others get threads of their own
    /// (`cellio-worker-N`). 0 is raised to 1, without an error (tokio's
    /// `worker_threads(0)` panics), so that a count worked out as, say,
    /// the cores left over still builds a runtime; more than
    /// [`MAX_WORKERS`] make [`build`](Self::build) fail.
    ///
    /// ```
    /// let rt = cellio_runtime::Builder::new().workers(0).build()?;
    /// assert_eq!(rt.workers(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// How many readiness events one reactor turn fetches (one
    /// `epoll_wait`). Values below 1 are raised to 1; values above
    /// [`MAX_EVENT_CAPACITY`] make [`build`](Self::build) fail.
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events.max(1);
        self.worker.queue_capacity = self.event_capacity;
        self
    }

    /// How many tasks a worker polls before it checks its reactor for I/O
    /// again while tasks are still queued. Smaller is fairer to I/O, larger
    /// makes fewer `epoll_wait` calls. Values below 1 are raised to 1.
    pub fn event_interval(mut self, polls: usize) -> Self {
        self.worker.event_interval = polls.max(1);
        self
    }

    /// How many operations a task may complete in one poll before it
    /// yields to the others (see `cellio_reactor::budget`): socket and
    /// descriptor operations, sleeps already over when polled,
    /// [`local_channel`](crate::local_channel) receives that find a
    /// message and sends that find room, and outputs taken from a
    /// [`JoinHandle`](crate::JoinHandle) or a [`JoinSet`](crate::JoinSet)
    /// (as tokio's do). Channels from other crates
    /// (tokio's `sync`, `futures-channel`) spend none: a loop over one
    /// that is always ready needs a [`yield_now`](crate::yield_now) now
    /// and then. The future
    /// given to [`Runtime::block_on`](crate::Runtime::block_on) gets the
    /// same budget: it shares worker 0 with that worker's tasks. Values
    /// below 1 are raised to 1, and those above
    /// [`MAX_BUDGET`](cellio_reactor::budget::MAX_BUDGET) (half of
    /// `u32::MAX`: the larger counts mean "outside any poll") are lowered to
    /// it.
    pub fn budget(mut self, operations: u32) -> Self {
        self.worker.budget = operations.clamp(1, cellio_reactor::budget::MAX_BUDGET);
        self
    }

    /// Whether `spawn` reuses the memory of finished tasks (default: on).
    ///
    /// With pooling, a task's block (header, future, output) goes back to a
    /// per-worker free list for its size class when the task and its
    /// `JoinHandle` are done, and the next task of that class takes it: a
    /// connection's life then allocates nothing in steady state. Off, every
    /// `spawn` allocates from the system allocator; useful to measure what
    /// the pool buys.
    pub fn task_pooling(mut self, enabled: bool) -> Self {
        self.worker.task_pooling = enabled;
        self
    }

    /// At most this many free blocks are kept per size class and worker
    /// (default [`DEFAULT_TASK_POOL_CAP`]); blocks freed beyond it go back
    /// to the system allocator. See also [`Runtime::trim_task_pool`].
    pub fn task_pool_cap(mut self, blocks: usize) -> Self {
        self.worker.task_pool_cap = blocks;
        self
    }

    /// At most this many threads run [`spawn_blocking`](crate::spawn_blocking)
    /// jobs at once (default [`DEFAULT_MAX_BLOCKING_THREADS`], 512; values
    /// below 1 are raised to 1). Jobs beyond it wait in a queue for a
    /// thread. Threads start only when a job needs one.
    pub fn max_blocking_threads(mut self, threads: usize) -> Self {
        self.max_blocking_threads = threads.max(1);
        self
    }

    /// How long a blocking thread waits for another job before it exits
    /// (default [`DEFAULT_BLOCKING_KEEP_ALIVE`], 10 s).
    pub fn blocking_keep_alive(mut self, idle: Duration) -> Self {
        self.blocking_keep_alive = idle;
        self
    }

    /// Pins worker `i` to CPU core `cores[i]` (Linux): each worker, its
    /// tasks and their sockets' state then stay on one core, as a
    /// thread-per-core server wants; unpinned (the default), the kernel
    /// places and moves the threads. Cores are numbered as the kernel
    /// does (`taskset`, `/proc/cpuinfo`); one may serve two workers.
    ///
    /// Worker 0 is the thread that calls [`build`](Self::build) (and later
    /// [`Runtime::block_on`]): `build` pins that thread too, for good. The
    /// blocking pool's threads are not pinned: each takes, as it starts,
    /// the CPU mask the building thread had before `build` pinned it
    /// (a new thread inherits its creator's mask, and pool threads are
    /// started from workers). Threads that your tasks start
    /// (`std::thread::spawn`) do inherit their worker's core: give them
    /// another mask yourself, or start them before `build` or from a
    /// blocking job.
    ///
    /// `build` fails with `InvalidInput` if fewer cores than workers are
    /// given, and with the system's error (and the worker and core named)
    /// if a core cannot be used: one the machine lacks, or outside the
    /// process's cpuset. Elsewhere than Linux, `Unsupported`.
    ///
    /// ```no_run
    /// // Two workers on cores 2 and 3, say with the load client on 0 and 1.
    /// let rt = cellio_runtime::Builder::new()
    ///     .workers(2)
    ///     .worker_cores([2, 3])
    ///     .build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn worker_cores(mut self, cores: impl IntoIterator<Item = usize>) -> Self {
        self.worker_cores = Some(cores.into_iter().collect());
        self
    }

    /// Runs `hook` on each thread the runtime starts, first thing: the
    /// threads of workers 1 and up, and the blocking pool's
    /// (`std::thread::current().name()` tells them apart:
    /// `cellio-worker-N`, `cellio-blocking-N`). Worker 0 is the caller's
    /// thread and does not run it. tokio's `on_thread_start`: for setting
    /// up per-thread state (a profiler's, an allocator's, a `tracing`
    /// dispatcher) on every thread that runs tasks or jobs.
    ///
    /// A worker runs it before it reports ready (and after it is pinned, with
    /// [`worker_cores`](Self::worker_cores)), so it has run on every worker
    /// thread when [`build`](Self::build) returns. A panic in it is caught
    /// and logged, and the thread goes on. While it runs,
    /// [`RuntimeHandle::current`](crate::RuntimeHandle::current) returns
    /// the runtime (as tokio's `Handle::current()` does in its hooks),
    /// though the thread runs no task yet: `spawn_on` and `spawn_blocking`
    /// work there, `spawn` does not.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let started = Arc::new(AtomicUsize::new(0));
    /// let count = Arc::clone(&started);
    /// let rt = cellio_runtime::Builder::new()
    ///     .workers(3)
    ///     .on_thread_start(move || {
    ///         count.fetch_add(1, Ordering::SeqCst);
    ///     })
    ///     .build()?;
    /// assert_eq!(started.load(Ordering::SeqCst), 2); // workers 1 and 2
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn on_thread_start<F: Fn() + Send + Sync + 'static>(mut self, hook: F) -> Self {
        self.thread_hooks.start = Some(std::sync::Arc::new(hook));
        self
    }

    /// Runs `hook` on each of the runtime's threads as it ends, on the
    /// threads [`on_thread_start`](Self::on_thread_start)'s hook runs on:
    /// when a worker stops (the runtime is dropped or shut down), when a
    /// blocking thread leaves after its keep-alive. A panic in it is caught
    /// and logged. [`RuntimeHandle::current`](crate::RuntimeHandle::current)
    /// returns the runtime while it runs, if the runtime is still there (a
    /// blocking thread may leave after it, following
    /// [`shutdown_background`](crate::Runtime::shutdown_background)).
    pub fn on_thread_stop<F: Fn() + Send + Sync + 'static>(mut self, hook: F) -> Self {
        self.thread_hooks.stop = Some(std::sync::Arc::new(hook));
        self
    }

    /// Starts the runtime with its clock paused, as if its first act were
    /// [`time::pause`](crate::time::pause) (tokio's `start_paused`): for
    /// tests of timeouts and intervals that should take no real time. Needs
    /// [`workers(1)`](Self::workers); [`build`](Self::build) says so
    /// otherwise.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = cellio_runtime::Builder::new().workers(1).start_paused(true).build()?;
    /// let waited = rt.block_on(async {
    ///     let start = cellio_runtime::time::now();
    ///     cellio_runtime::sleep(Duration::from_secs(600)).await;
    ///     cellio_runtime::time::now() - start
    /// });
    /// assert_eq!(waited, Duration::from_secs(600)); // in no real time
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start_paused(mut self, paused: bool) -> Self {
        self.start_paused = paused;
        self
    }

    /// Creates the runtime: a reactor (epoll or kqueue instance) and an
    /// executor per worker, and the threads of workers 1 and up.
    ///
    /// It returns once every worker thread is set up and waiting for work,
    /// so their start-up never overlaps what the caller does next.
    ///
    /// # Errors
    ///
    /// If the system refuses a reactor or a thread, or a worker thread
    /// fails while starting up; the workers already started are stopped.
    /// An [`event_capacity`](Self::event_capacity) above
    /// [`MAX_EVENT_CAPACITY`] or more [`workers`](Self::workers) than
    /// [`MAX_WORKERS`] is an [`io::ErrorKind::InvalidInput`] error,
    /// and so are [`start_paused`](Self::start_paused) with more than one
    /// worker and fewer [`worker_cores`](Self::worker_cores) than workers.
    ///
    /// ```
    /// let err = cellio_runtime::Builder::new()
    ///     .event_capacity(usize::MAX)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// ```
    pub fn build(self) -> io::Result<Runtime> {
        // First: `from_builder` sizes its lists by the worker count, and a
        // count no process can have would fail that allocation (a panic,
        // or an abort of the process).
        if self.workers > MAX_WORKERS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cellio: {} workers is above the maximum, {MAX_WORKERS}",
                    self.workers
                ),
            ));
        }
        if let Some(cores) = &self.worker_cores {
            if cores.len() < self.workers {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "cellio: worker_cores names {} cores for {} workers: give one per worker",
                        cores.len(),
                        self.workers
                    ),
                ));
            }
        }
        if self.start_paused && self.workers != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cellio: start_paused needs a one-worker runtime (asked for {} workers): \
                     each worker keeps its own timers; add .workers(1)",
                    self.workers
                ),
            ));
        }
        if self.event_capacity > MAX_EVENT_CAPACITY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cellio: event_capacity {} is above the maximum, {MAX_EVENT_CAPACITY}",
                    self.event_capacity
                ),
            ));
        }
        Runtime::from_builder(self)
    }
}
