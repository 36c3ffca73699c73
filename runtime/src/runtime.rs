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

use crate::join::{JoinHandle, Spawned};
use crate::task::{BoxFuture, Tasks};
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
        }
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
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Drop the tasks outside the table's borrow: their destructors may
        // wake, spawn or drop sockets.
        let futures = self.executor.tasks.borrow_mut().drain();
        {
            let _reactor_context = self.handle.enter();
            drop(futures);
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
        let (task, handle) = Spawned::new(future);
        let boxed: BoxFuture = Box::pin(task);
        match self.tasks.borrow_mut().insert(boxed, MAX_TASKS) {
            Ok(slot) => self.queue.borrow_mut().push_back(slot),
            Err(_) => panic!("cellio: more than {MAX_TASKS} live tasks on one worker"),
        }
        handle
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
        let Some(mut future) = self.tasks.borrow_mut().take_for_poll(slot, generation) else {
            return;
        };
        let waker = TaskAddr::new(self.worker, self.epoch, slot, generation).waker();
        let mut cx = Context::from_waker(&waker);
        match future.as_mut().poll(&mut cx) {
            Poll::Pending => self.tasks.borrow_mut().put_back(slot, future),
            Poll::Ready(()) => {
                self.tasks.borrow_mut().finish(slot);
                drop(future);
            }
        }
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
