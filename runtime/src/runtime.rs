//! [`Runtime`], [`Builder`] and the worker loop.
//!
//! A runtime is one worker: a thread-confined executor (task table + local
//! run queue) and the reactor it turns when it has nothing left to run.
//!
//! # The worker loop
//!
//! ```text
//! loop:
//!   poll the block_on future if it was woken (return if ready)
//!   take wakes other threads left in the inbox
//!   poll up to `event_interval` queued tasks
//!   if nothing is queued: declare sleep, block in the reactor
//!   else: turn the reactor without blocking (I/O is never starved)
//! ```
//!
//! # Invariants
//!
//! * A task is polled only from the loop, never inside a wake: the reactor
//!   notifies cells, their wakers queue tasks.
//! * No borrow of the task table or the run queue is held while user code
//!   runs (a poll, or dropping a future), so a task may spawn, wake and drop
//!   freely.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cellio_reactor::{Handle, Reactor, DEFAULT_EVENT_CAPACITY};

use crate::join::JoinHandle;
use crate::task::pool::Pool;
use crate::task::{RawTask, Tasks, DEFAULT_TASK_POOL_CAP};
use crate::time::Timers;
use crate::waker::{Inbox, LocalGuard, LocalWorker, TaskAddr, MAIN_SLOT, MAX_TASKS};

/// Default for [`Builder::event_interval`].
pub const DEFAULT_EVENT_INTERVAL: usize = 128;

/// Configures and builds a [`Runtime`].
///
/// ```
/// let rt = cellio_runtime::Builder::new()
///     .event_capacity(256)
///     .event_interval(64)
///     .build()?;
/// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    event_capacity: usize,
    event_interval: usize,
    task_pooling: bool,
    task_pool_cap: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// The defaults: 1024 events per reactor turn, the reactor checked at
    /// least every 128 task polls.
    pub fn new() -> Self {
        Self {
            event_capacity: DEFAULT_EVENT_CAPACITY,
            event_interval: DEFAULT_EVENT_INTERVAL,
            task_pooling: true,
            task_pool_cap: DEFAULT_TASK_POOL_CAP,
        }
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
        self.task_pooling = enabled;
        self
    }

    /// At most this many free blocks are kept per size class and worker
    /// (default [`DEFAULT_TASK_POOL_CAP`]); blocks freed beyond it go back
    /// to the system allocator. See also [`Runtime::trim_task_pool`].
    pub fn task_pool_cap(mut self, blocks: usize) -> Self {
        self.task_pool_cap = blocks;
        self
    }

    /// How many readiness events one reactor turn fetches (one
    /// `epoll_wait`). Values below 1 are raised to 1.
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events.max(1);
        self
    }

    /// How many tasks the worker polls before it checks the reactor for
    /// I/O again while tasks are still queued. Smaller is fairer to I/O,
    /// larger makes fewer `epoll_wait` calls. Values below 1 are raised to
    /// 1.
    pub fn event_interval(mut self, polls: usize) -> Self {
        self.event_interval = polls.max(1);
        self
    }

    /// Creates the runtime: its reactor (an epoll or kqueue instance) and
    /// its executor.
    pub fn build(self) -> io::Result<Runtime> {
        let reactor = Reactor::with_event_capacity(self.event_capacity)?;
        let handle = reactor.handle();
        let (worker, epoch, inbox) = Inbox::claim(handle.clone())?;
        Ok(Runtime {
            executor: Box::new(Executor {
                worker,
                epoch,
                inbox,
                tasks: RefCell::new(Tasks::default()),
                queue: RefCell::new(VecDeque::new()),
                main_woken: Cell::new(false),
                timers: RefCell::new(Timers::default()),
                pool: RefCell::new(Pool::new(self.task_pooling, self.task_pool_cap)),
            }),
            reactor: RefCell::new(reactor),
            handle,
            event_interval: self.event_interval,
            _not_send: PhantomData,
        })
    }
}

/// A single-worker cellio runtime: an executor and the reactor that drives
/// its sockets, confined to the thread that created it.
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
    // Field order: tasks (in the executor) drop before the reactor.
    executor: Box<Executor>,
    reactor: RefCell<Reactor>,
    handle: Handle,
    event_interval: usize,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("worker", &self.executor.worker)
            .field("tasks", &self.executor.tasks.borrow().live())
            .field("registrations", &self.handle.registrations())
            .finish()
    }
}

impl Runtime {
    /// A runtime with the default [`Builder`] settings.
    pub fn new() -> io::Result<Runtime> {
        Builder::new().build()
    }

    /// A [`Builder`] to configure one.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Runs `future` to completion on this thread, together with every task
    /// spawned on this runtime, and returns its output.
    ///
    /// Tasks still unfinished when `future` completes stay in the runtime:
    /// they run again in the next `block_on`, and are dropped with the
    /// runtime.
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
        let _reactor_context = self.handle.enter();
        // SAFETY: `executor` is owned by `self`, which outlives this call and
        // therefore the guard dropped at its end.
        let _local = unsafe {
            LocalGuard::enter(LocalWorker {
                worker: executor.worker,
                epoch: executor.epoch,
                executor,
            })
        };
        let main_waker = TaskAddr::new(executor.worker, executor.epoch, MAIN_SLOT, 0).waker();
        let mut cx = Context::from_waker(&main_waker);
        let mut future = pin!(future);
        let mut reactor = self.reactor.borrow_mut();
        executor.main_woken.set(true);
        loop {
            if executor.main_woken.replace(false) {
                if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                    return output;
                }
            }
            executor.drain_inbox();
            executor.fire_timers();
            executor.run_batch(self.event_interval);
            executor.drain_inbox();
            let idle = executor.queue.borrow().is_empty() && !executor.main_woken.get();
            let sleep = idle && executor.inbox.prepare_sleep();
            let timeout = if sleep {
                executor.time_to_next_timer()
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = reactor.turn(timeout) {
                panic!("cellio: the reactor failed and cannot continue: {e}");
            }
            if sleep {
                executor.inbox.woke_up();
            }
        }
    }

    /// Spawns `future` as a task on this runtime and returns a handle to
    /// its output. The task starts running at the next `block_on` (or right
    /// away if one is running).
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.executor.spawn(future)
    }

    /// A handle to this runtime's reactor.
    pub fn reactor(&self) -> &Handle {
        &self.handle
    }

    /// Number of spawned tasks that have not finished.
    pub fn live_tasks(&self) -> usize {
        self.executor.tasks.borrow().live()
    }

    /// Frees every task block held in this worker's pool; returns how many.
    /// The pool refills as tasks finish.
    pub fn trim_task_pool(&self) -> usize {
        self.executor.pool.borrow_mut().trim()
    }

    /// Task-pool figures: `(blocks reused, blocks freshly allocated, blocks
    /// pooled now)`.
    pub fn task_pool_stats(&self) -> (u64, u64, usize) {
        let pool = self.executor.pool.borrow();
        let (reused, allocated) = pool.counts();
        (reused, allocated, pool.pooled())
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Cancel the tasks outside any table borrow: their destructors may
        // wake, spawn or drop sockets. The executor is current meanwhile so
        // that blocks return to its pool.
        {
            let _reactor_context = self.handle.enter();
            let executor: &Executor = &self.executor;
            // SAFETY: the executor outlives the guard (dropped in this block).
            let _local = unsafe {
                LocalGuard::enter(LocalWorker {
                    worker: executor.worker,
                    epoch: executor.epoch,
                    executor,
                })
            };
            executor.cancel_all();
        }
        self.executor.queue.borrow_mut().clear();
        self.executor
            .inbox
            .release(self.executor.worker, self.executor.epoch);
    }
}

/// The thread-confined half of a worker: tasks and the local run queue.
pub(crate) struct Executor {
    worker: u16,
    epoch: u8,
    inbox: &'static Inbox,
    tasks: RefCell<Tasks>,
    /// `(slot, generation)` of queued tasks.
    queue: RefCell<VecDeque<(u32, u32)>>,
    main_woken: Cell<bool>,
    pub(crate) timers: RefCell<Timers>,
    pool: RefCell<Pool>,
}

impl Executor {
    pub(crate) fn worker(&self) -> u16 {
        self.worker
    }

    pub(crate) fn epoch(&self) -> u8 {
        self.epoch
    }

    /// `true` if this executor is the worker `(worker, epoch)`.
    pub(crate) fn is(&self, worker: u16, epoch: u8) -> bool {
        self.worker == worker && self.epoch == epoch
    }

    /// Wakes every timer whose deadline has passed. Reads the clock only
    /// when timers are armed.
    fn fire_timers(&self) {
        if self.timers.borrow().armed() == 0 {
            return;
        }
        let now = Instant::now();
        loop {
            // One at a time: no borrow of the table is held while waking.
            let fired = self.timers.borrow_mut().pop_expired(now);
            match fired {
                Some(Some(waker)) => waker.wake(),
                Some(None) => {}
                None => return,
            }
        }
    }

    /// How long the reactor may block: until the next timer, or forever.
    fn time_to_next_timer(&self) -> Option<Duration> {
        let next = self.timers.borrow().next_deadline()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    /// Queues the task `addr` names, if it is live and not queued yet.
    pub(crate) fn schedule(&self, addr: TaskAddr) {
        if addr.slot == MAIN_SLOT {
            self.main_woken.set(true);
            return;
        }
        let mut tasks = self.tasks.borrow_mut();
        if let Some(generation) = tasks.schedule(addr.slot, |g| addr.names_generation(g)) {
            self.queue.borrow_mut().push_back((addr.slot, generation));
        }
    }

    fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
    {
        let (task, join) = {
            let mut pool = self.pool.borrow_mut();
            RawTask::new(future, (self.worker, self.epoch), Some(&mut pool))
        };
        let inserted = self.tasks.borrow_mut().insert(task, MAX_TASKS);
        match inserted {
            Ok(slot) => self.queue.borrow_mut().push_back(slot),
            Err(task) => {
                // SAFETY: never polled; we are its worker.
                unsafe { task.cancel() };
                self.release(task);
                drop(JoinHandle::<F::Output>::new(join));
                panic!("cellio: more than {MAX_TASKS} live tasks on one worker");
            }
        }
        JoinHandle::new(join)
    }

    /// Gives up a task reference on its owner's thread: the block, if this
    /// was the last reference, returns to the pool.
    fn release(&self, task: RawTask) {
        if let Some(block) = task.release() {
            block.free(Some(&mut self.pool.borrow_mut()));
        }
    }

    fn drain_inbox(&self) {
        self.inbox.drain(self);
    }

    fn run_batch(&self, max: usize) {
        for _ in 0..max {
            let next = self.queue.borrow_mut().pop_front();
            let Some((slot, generation)) = next else {
                return;
            };
            self.run_task(slot, generation);
        }
    }

    fn run_task(&self, slot: u32, generation: u32) {
        let Some(task) = self.tasks.borrow_mut().take_for_poll(slot, generation) else {
            return;
        };
        let waker = TaskAddr::new(self.worker, self.epoch, slot, generation).waker();
        let mut cx = Context::from_waker(&waker);
        // SAFETY: this is the task's worker, polling it from its loop only.
        match unsafe { task.poll(&mut cx) } {
            Poll::Pending => self.tasks.borrow_mut().put_back(slot, task),
            Poll::Ready(()) => {
                let _ = self.tasks.borrow_mut().finish(slot);
                self.release(task);
            }
        }
    }

    /// Cancels every unfinished task (dropping its future) and releases it.
    fn cancel_all(&self) {
        loop {
            let next = self.tasks.borrow_mut().pop_live();
            let Some(task) = next else { return };
            // SAFETY: this is the task's worker; it is not being polled.
            unsafe { task.cancel() };
            self.release(task);
        }
    }
}

/// Gives up a task reference from wherever it is dropped: into the owner's
/// pool on the owner's thread, else to the system allocator.
pub(crate) fn release_task(task: RawTask) {
    let owner = task.header().owner;
    let Some(block) = task.release() else {
        return;
    };
    let local = LocalGuard::current().filter(|l| (l.worker, l.epoch) == owner);
    match local {
        Some(local) => {
            // SAFETY: `LocalGuard::enter`'s contract: valid while current.
            let executor = unsafe { &*local.executor };
            block.free(Some(&mut executor.pool.borrow_mut()));
        }
        None => block.free(None),
    }
}

/// Spawns `future` on the runtime running on this thread.
///
/// # Panics
///
/// If called outside a cellio runtime (outside `block_on` and its tasks).
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
    spawn_local(future)
}

/// Spawns a future that need not be `Send` on the runtime running on this
/// thread. It always runs on this thread.
///
/// # Panics
///
/// If called outside a cellio runtime.
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
{
    let Some(local) = LocalGuard::current() else {
        panic!(
            "cellio: spawn called outside a runtime; call it inside Runtime::block_on or a task"
        );
    };
    // SAFETY: `LocalGuard::enter`'s contract: the executor stays valid while
    // it is the thread's current worker.
    let executor = unsafe { &*local.executor };
    executor.spawn(future)
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
