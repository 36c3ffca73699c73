//! A worker: one thread's executor (task table, local run queue, timers,
//! task pool) and the loop that runs it together with its reactor.
//!
//! # The worker loop
//!
//! ```text
//! loop:
//!   if the stop condition holds (block_on's future is ready, shutdown): return
//!   take messages other threads left in the inbox (wakes, spawns, timer
//!     cancellations, shutdown)
//!   wake expired timers
//!   poll up to `event_interval` queued tasks, each with a cooperative budget
//!     (a task that spends all of it ends the batch: the reactor is due);
//!     consecutive tasks of one future type are polled by that type's own
//!     loop, in queue order (see "One loop per task type" below)
//!   if nothing is queued: check the stop condition again, then declare
//!     sleep and block in the reactor until the next timer (or an event, or
//!     a wake from another thread)
//!   else: turn the reactor without blocking, so I/O is never starved
//! ```
//!
//! # Invariants
//!
//! * A task is polled only from the loop, never inside a wake: the reactor
//!   notifies cells, their wakers queue tasks.
//! * No borrow of the task table, the queue, the timers or the pool is held
//!   while user code runs (a poll, or dropping a future or an output), so a
//!   task may spawn, wake, sleep and drop freely. The table and the queue
//!   sit in a [`RunCell`] without a borrow flag: every access is a short
//!   closure that runs only their own methods, never user code, so no
//!   access can start inside another (debug builds check this).
//! * A task's reference stays in the table while the task is polled; the
//!   table ends a task only after its poll returned `Ready`, or in
//!   `cancel_all`, which never runs while a task is polled (`block_on`
//!   refuses to nest, and a runtime cannot be dropped from its own tasks).
//! * The executor is confined to its thread; other threads reach it only
//!   through its [`Inbox`].
//!
//! # One loop per task type
//!
//! A task's header holds [`run_tasks_of::<F>`](run_tasks_of) for its future
//! type `F`, and the worker polls a task by calling that: it polls the task
//! and then every task queued right behind it whose header holds the same
//! function, until the next one is of another type (handed back to the
//! worker, which calls that task's function), the batch is spent, or a task
//! ran out of budget. Polling an `F` inside `run_tasks_of::<F>` is a direct
//! call, so the compiler inlines the future's state machine into the loop:
//! a server's connection tasks, all one type, run from one syscall to the
//! next without an indirect call or a return between two tasks. The queue
//! order, the batch size and the budgets are exactly those of a loop that
//! called every task through its header.
//!
//! # Layout
//!
//! A syscall evicts most of the worker's L1 cache, so every distinct cache
//! line one message touches costs a refill. The [`Executor`] is 64-byte
//! aligned, `repr(C)`, and its first line holds everything a same-thread
//! wake, a loop turn and a task poll read or write: the inbox pointer, the
//! poll budget and batch size, the waker owner bits, the `block_on` and
//! timers-armed flags, the run queue and the task table's slot pointer (a
//! compile-time assertion checks that they fit). Fields added to the
//! executor go after `run` unless every message needs them; the timer
//! table is reached through [`Executor::with_timers`] so that its armed
//! flag stays in the hot line and in step.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::future::Future;
use std::io;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cellio_reactor::{budget, Reactor};

use crate::join::JoinHandle;
use crate::metrics::{BusyClock, Gauges, Published, BUSY_FLUSH_TURNS};
use crate::shutdown::{Shared, ShutdownWaiters};
use crate::task::pool::Pool;
use crate::task::queue::RunQueue;
use crate::task::{BlockMemory, FreeBlock, RawTask, TaskRef, Tasks, NO_HOME};
use crate::time::{Advanced, Clock, TimerChange, Timers};
use crate::waker::{self, Inbox, LocalGuard, TaskAddr, MAIN_SLOT, MAX_TASKS};

/// What a worker is configured with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WorkerConfig {
    pub(crate) event_interval: usize,
    /// Initial run-queue capacity: one reactor turn can wake this many
    /// tasks (its event capacity) without the queue having to grow.
    pub(crate) queue_capacity: usize,
    pub(crate) task_pooling: bool,
    pub(crate) task_pool_cap: usize,
    pub(crate) budget: u32,
}

/// The thread-confined half of a worker.
///
/// The first cache line holds everything one message touches (see the
/// module's layout invariant); the rest is read only when tasks are spawned
/// or end, timers change, or the runtime shuts down.
#[repr(C, align(64))]
pub(crate) struct Executor {
    // --- the hot line ---
    pub(crate) inbox: &'static Inbox,
    /// `config.budget`: a task poll's, and `block_on`'s future's.
    pub(crate) budget: u32,
    /// `config.event_interval`, saturated to `u32`.
    event_interval: u32,
    /// The high half of [`TaskAddr::owner_bits`] of this worker, for
    /// building wakers (the low half is zero, see below).
    owner_high: u32,
    /// The `block_on` future was woken.
    pub(crate) main_woken: Cell<bool>,
    /// Timers are armed: a copy of `timers.armed() != 0`, kept by
    /// [`with_timers`](Self::with_timers), so that the loop need not
    /// touch the timer table while none are.
    timers_armed: Cell<bool>,
    /// The task table and the run queue: a wake and a poll each reach them
    /// once, through [`RunCell::with`]. Its first
    /// [`RunState::HOT_BYTES`] bytes are in the hot line.
    run: RunCell,
    // --- cold ---
    worker: u16,
    epoch: u8,
    /// Which claim of the worker number this is, unique in the process
    /// (`Inbox`'s incarnation): what timers are checked against.
    incarnation: u64,
    /// This worker's position in its runtime (0 = the `block_on` thread).
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    timers: RefCell<Timers>,
    pool: RefCell<Pool>,
    pub(crate) shutdown_waiters: RefCell<ShutdownWaiters>,
    /// Tasks other threads sent here, swapped out of the inbox so they are
    /// taken in after its lock is released (taking one in may cancel it,
    /// which runs its destructor, and free its block to another worker's
    /// inbox). Empty between drains; its capacity is kept.
    pub(crate) arrivals: RefCell<Vec<RawTask>>,
    /// Timer changes other threads sent, taken out of the inbox to be
    /// applied after its lock is released: trades places with the inbox's
    /// list, as [`arrivals`](Self::arrivals) does (empty between drains).
    pub(crate) timer_changes: RefCell<Vec<TimerChange>>,
    /// Tasks taken into the table so far (for the metrics).
    spawned: Cell<u64>,
    /// The time this worker's timers run on (real, or paused by a test).
    clock: Clock,
}

/// `owner_high` holds all of a worker's owner bits.
const _: () = assert!(TaskAddr::owner_bits(u16::MAX, u8::MAX) as u32 == 0);

/// The hot line is one line: every field before `run`, and the part of the
/// run state a wake and a poll read (the queue, the table's slot pointer).
const _: () = assert!(
    std::mem::offset_of!(Executor, run) + RunState::HOT_BYTES <= 64,
    "the executor's per-message fields must fit its first cache line"
);

/// What a wake and a poll touch: the task table and the run queue. The
/// queue first, then the table, whose own hot bytes come first.
#[repr(C)]
struct RunState {
    /// `(slot, ticket)` of queued tasks (see the table's invariants).
    queue: RunQueue,
    tasks: Tasks,
}

impl RunState {
    /// The bytes at the start of the run state that a wake and a poll read.
    const HOT_BYTES: usize = std::mem::offset_of!(RunState, tasks) + Tasks::HOT_BYTES;
}

/// The executor's [`RunState`], reached without a `RefCell`'s borrow flag:
/// the wake and poll paths touch it once per message each, and it is
/// confined to its worker's thread (the executor is neither `Send` nor
/// `Sync`: it holds `RefCell`s).
///
/// Debug builds still check that no access starts inside another, as a
/// `RefCell` would.
#[repr(C)]
struct RunCell {
    /// First: its hot bytes are the executor's (`busy` is debug only).
    state: UnsafeCell<RunState>,
    #[cfg(debug_assertions)]
    busy: Cell<bool>,
}

impl RunCell {
    fn new(state: RunState) -> Self {
        Self {
            state: UnsafeCell::new(state),
            #[cfg(debug_assertions)]
            busy: Cell::new(false),
        }
    }

    /// Runs `f` with exclusive access to the run state.
    ///
    /// # Safety
    ///
    /// `f` must not reach this cell again: it may only call methods of the
    /// table and the queue, which run no user code and never call back into
    /// the executor (they move integers and task pointers, and allocate).
    #[inline(always)]
    unsafe fn with<R>(&self, f: impl FnOnce(&mut RunState) -> R) -> R {
        #[cfg(debug_assertions)]
        assert!(!self.busy.replace(true), "cellio: run state re-entered");
        // SAFETY: the cell is only used on its executor's thread (the
        // executor is `!Sync`), and the caller's contract rules out nested
        // access: this is the only reference to the state while `f` runs.
        let result = f(unsafe { &mut *self.state.get() });
        #[cfg(debug_assertions)]
        self.busy.set(false);
        result
    }
}

impl RunState {
    /// The next queued task that is still due, marked not queued; stale
    /// entries are skipped.
    #[inline]
    fn next(&mut self) -> Option<Taken> {
        loop {
            let (slot, ticket) = self.queue.pop()?;
            if let Some(task) = self.tasks.start_poll(slot, ticket) {
                return Some(Taken { slot, ticket, task });
            }
        }
    }
}

/// A task taken off the run queue to be polled: its table slot, the ticket
/// it was queued with, and the task.
#[derive(Clone, Copy)]
pub(crate) struct Taken {
    slot: u32,
    ticket: u32,
    task: TaskRef,
}

/// A future type's batch loop, [`run_tasks_of`]; every task's header holds
/// the one for its future's type.
pub(crate) type RunFn = unsafe fn(&Executor, Taken, &mut u32) -> Option<Taken>;

/// Polls `first`, whose future is an `F`, and then the tasks queued behind
/// it for as long as they are `F`s too, counting each poll off `left`.
/// Returns the next task, already taken off the queue, when it is of
/// another type; `None` when the batch is over (`left` spent, the queue
/// empty, or a task out of budget: I/O is due).
///
/// One loop per future type, so that polling an `F` is a direct call the
/// compiler can inline: a server's connection tasks, all one type, run in
/// one function from a syscall's return to the next task's syscall, with no
/// indirect call and no return between them (each costs time after a
/// syscall, which leaves the return predictor and the caches cold; see
/// docs/benchmarks.md, "One loop per task type").
///
/// # Safety
///
/// Called by `exec`'s worker loop only (never inside a poll), with `first`
/// just taken off its queue, a task whose runner is this function, and
/// `*left >= 1`.
pub(crate) unsafe fn run_tasks_of<F: Future>(
    exec: &Executor,
    first: Taken,
    left: &mut u32,
) -> Option<Taken> {
    let this: RunFn = run_tasks_of::<F>;
    let mut next = first;
    loop {
        // `next`'s runner is this function (the caller's contract, then the
        // check below), which is `run_tasks_of::<F>` of its future's `F`
        // (see `Header`): either its future is an `F`, or the compiler
        // merged the two types' runners, which it does only for identical
        // code, and then this is the code the worker's call through the
        // runner would have run.
        let exhausted = exec.run_task(next, |cx| {
            // SAFETY: `next` is an `F`'s task (above), polled by its worker
            // from its loop; the table holds its counted reference.
            unsafe { next.task.poll_as::<F>(cx) }
        });
        *left -= 1;
        if exhausted || *left == 0 {
            return None;
        }
        // SAFETY: `next` only pops the queue and reads the table.
        let taken = unsafe { exec.run.with(RunState::next) }?;
        // SAFETY: a task just taken is in the table, which holds its
        // reference.
        if !std::ptr::fn_addr_eq(unsafe { taken.task.runner() }, this) {
            return Some(taken);
        }
        next = taken;
    }
}

/// Whether a task's `JoinHandle` may be in use when its worker takes the
/// task in (see [`Executor::adopt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandleOut {
    /// Not yet: the task was spawned here and its handle is not returned
    /// yet, so nothing can change the block's header meanwhile.
    NotYet,
    /// Maybe: the task was sent here (`spawn_on`), its handle is the
    /// sender's.
    Maybe,
}

impl Executor {
    pub(crate) fn new(
        (worker, epoch, inbox): (u16, u8, &'static Inbox),
        index: usize,
        shared: Arc<Shared>,
        config: WorkerConfig,
    ) -> Self {
        // Worker 0's clock is the runtime's, which its blocking jobs read.
        let clock = match index {
            0 => Clock::published(shared.clock.clone()),
            _ => Clock::new(),
        };
        Self {
            inbox,
            budget: config.budget,
            event_interval: u32::try_from(config.event_interval).unwrap_or(u32::MAX),
            owner_high: (TaskAddr::owner_bits(worker, epoch) >> 32) as u32,
            main_woken: Cell::new(false),
            timers_armed: Cell::new(false),
            run: RunCell::new(RunState {
                queue: RunQueue::with_capacity(config.queue_capacity),
                tasks: Tasks::default(),
            }),
            worker,
            epoch,
            incarnation: inbox.incarnation(),
            index,
            shared,
            timers: RefCell::new(Timers::default()),
            pool: RefCell::new(Pool::new(config.task_pooling, config.task_pool_cap)),
            shutdown_waiters: RefCell::new(ShutdownWaiters::default()),
            arrivals: RefCell::new(Vec::with_capacity(waker::INBOX_CAPACITY)),
            timer_changes: RefCell::new(Vec::with_capacity(waker::INBOX_CAPACITY)),
            spawned: Cell::new(0),
            clock,
        }
    }

    /// This worker's clock (see `crate::time::clock`).
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(crate) fn worker(&self) -> u16 {
        self.worker
    }

    pub(crate) fn epoch(&self) -> u8 {
        self.epoch
    }

    /// Which claim of its worker number this executor is, unique in the
    /// process (an epoch repeats after 256).
    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Makes this executor the thread's current worker until the guard
    /// drops.
    pub(crate) fn enter(&self) -> LocalGuard {
        // SAFETY: callers keep `self` alive and in place for the guard's
        // life: the guard is always a local of a function borrowing `self`.
        unsafe { LocalGuard::enter(self.worker, self.epoch, self) }
    }

    /// Runs the worker loop until `done()` says so. `done` is checked at
    /// the top of every iteration (after the `block_on` future, if any,
    /// was polled by it).
    pub(crate) fn run(&self, reactor: &mut Reactor, mut done: impl FnMut() -> bool) {
        let metrics = self.shared.metrics.of(self.index);
        let mut busy = BusyClock::start(self.shared.metrics.clock());
        loop {
            if done() {
                busy.flush(metrics);
                self.publish_to(metrics);
                return;
            }
            self.drain_inbox();
            self.fire_timers();
            metrics.count_polls(self.run_batch());
            self.drain_inbox();
            // SAFETY: `is_empty` only reads two counters.
            let queue_empty = unsafe { self.run.with(|run| run.queue.is_empty()) };
            let idle = queue_empty && !self.main_woken.get();
            // The batch may have finished what `done` waits for: never go
            // to sleep without asking again.
            if idle && done() {
                busy.flush(metrics);
                self.publish_to(metrics);
                return;
            }
            let sleep = idle && self.inbox.prepare_sleep();
            let timeout = if sleep {
                self.time_to_next_timer(reactor, metrics)
            } else {
                Some(Duration::ZERO)
            };
            let turns = metrics.count_turn(sleep);
            if sleep || turns % BUSY_FLUSH_TURNS == 0 {
                busy.flush(metrics);
            }
            self.publish_to(metrics);
            match reactor.turn(timeout) {
                Ok(events) => metrics.count_io_events(events),
                Err(e) => panic!("cellio: the reactor failed and cannot continue: {e}"),
            }
            if sleep {
                self.inbox.woke_up();
                busy.woke_up();
            }
        }
    }

    /// Copies this worker's levels and spawn count into its metrics slot
    /// (see `crate::metrics`). On the worker's thread, outside any access
    /// to the run state or the pool.
    pub(crate) fn publish(&self) {
        self.publish_to(self.shared.metrics.of(self.index));
    }

    /// [`publish`](Self::publish), to this worker's slot, found already.
    #[inline]
    fn publish_to(&self, slot: &Published) {
        // SAFETY: only the table's `live` and the queue's `len` run.
        let (alive, queued) = unsafe { self.run.with(|run| (run.tasks.live(), run.queue.len())) };
        slot.copy(Gauges {
            spawned: self.spawned.get(),
            alive,
            queued,
        });
    }

    /// Wakes every timer whose deadline has passed. Reads the clock only
    /// when timers are armed.
    #[inline]
    fn fire_timers(&self) {
        if self.timers_armed.get() {
            self.fire_expired_timers();
        }
    }

    #[cold]
    pub(crate) fn fire_expired_timers(&self) {
        let now = self.clock.now();
        loop {
            // One at a time: no borrow of the table is held while waking.
            let fired = self.with_timers(|timers| timers.pop_expired(now));
            match fired {
                Some(Some(waker)) => waker.wake(),
                Some(None) => {}
                None => return,
            }
        }
    }

    /// How long the reactor may block: until the next timer, or forever.
    /// On a paused clock, not at all: the clock jumps to the next timer
    /// instead (see [`paused_wait`](Self::paused_wait)).
    #[inline]
    fn time_to_next_timer(&self, reactor: &mut Reactor, metrics: &Published) -> Option<Duration> {
        if !self.timers_armed.get() {
            return None;
        }
        let next = self.timers.borrow().next_deadline()?;
        match self.clock.paused_at() {
            None => Some(next.saturating_duration_since(self.clock.now())),
            Some(_) => Some(self.paused_wait(next, reactor, metrics)),
        }
    }

    /// [`time_to_next_timer`](Self::time_to_next_timer) on a paused clock,
    /// with nothing to run and `next` the earliest deadline: the reactor
    /// is turned without blocking first, and only if that wakes nothing
    /// does the clock jump to `next` (I/O that is ready wins over a timer,
    /// as in tokio). Not while blocking jobs are in flight, nor while other
    /// work a task waits for runs off the worker
    /// ([`Reactor::has_outside_work`]: `cellio-net`'s host-name lookups):
    /// their results may be what the tasks wait for, so the worker looks
    /// again after a millisecond of real time. Nor before the send retries
    /// whose delay began before the clock's last move are made: those are
    /// woken at once instead ([`Reactor::wake_retries_after_move`]), so
    /// the clock never waits out a real-time delay. Out of the loop's way:
    /// a worker whose clock was never paused does not come here.
    #[cold]
    #[inline(never)]
    fn paused_wait(&self, next: Instant, reactor: &mut Reactor, metrics: &Published) -> Duration {
        let (threads, idle, queued) = self.shared.blocking.stats();
        if threads > idle || queued > 0 || reactor.has_outside_work() {
            return Duration::from_millis(1);
        }
        match reactor.turn(Some(Duration::ZERO)) {
            Ok(events) => metrics.count_io_events(events),
            Err(e) => panic!("cellio: the reactor failed and cannot continue: {e}"),
        }
        // SAFETY: `is_empty` only reads two counters.
        let queue_empty = unsafe { self.run.with(|run| run.queue.is_empty()) };
        if queue_empty && !self.main_woken.get() && !self.inbox.has_pending() {
            // A send retry whose delay began before the clock's last move
            // is made now, before the clock moves again, rather than after
            // its real-time delay (the clock would wait for it).
            if reactor.wake_retries_after_move() {
                return Duration::ZERO;
            }
            match self.clock.advance_to(next) {
                Advanced::Moved => reactor.note_time_moved(),
                Advanced::OutOfRange => panic!(
                    "cellio: the paused clock (at {:?}) would jump to the next timer's deadline, \
                     {next:?}, the latest instant std::time::Instant can represent: that timer's \
                     sleep, timeout or interval was too long to represent from the clock's time \
                     (its deadline saturated there), and at that instant every sleep would \
                     complete at once; the clock does not go there: a test moves it less close \
                     to the end of Instant's range",
                    self.clock.now()
                ),
                // Due already (fired at the loop's top), or not paused.
                Advanced::Stayed | Advanced::NotPaused => {}
            }
        }
        Duration::ZERO
    }

    /// Applies the timer changes other threads sent (see
    /// [`TimerChange`]), in order, and leaves `changes` empty. Every waker
    /// is woken outside the table's borrow.
    #[cold]
    pub(crate) fn apply_timer_changes(&self, changes: &mut Vec<TimerChange>) {
        for change in changes.drain(..) {
            match change {
                TimerChange::Cancel(key) => {
                    let released = self.with_timers(|timers| timers.remove(key));
                    drop(released);
                }
                TimerChange::Moved(key) => {
                    let now = self.clock.now();
                    if let Some(waker) = self.with_timers(|timers| timers.fire(key, now)) {
                        waker.wake();
                    }
                }
            }
        }
    }

    /// Reads the timer table (no timer changes, so the armed flag stands).
    #[inline]
    pub(crate) fn with_timers_ref<R>(&self, f: impl FnOnce(&Timers) -> R) -> R {
        f(&self.timers.borrow())
    }

    /// Runs `f` with the timer table borrowed mutably; every change to the
    /// table goes through here, which keeps `timers_armed` in step.
    pub(crate) fn with_timers<R>(&self, f: impl FnOnce(&mut Timers) -> R) -> R {
        let mut timers = self.timers.borrow_mut();
        let result = f(&mut timers);
        self.timers_armed.set(timers.armed() != 0);
        result
    }

    /// Queues the task `addr` names, if it is live and not queued yet.
    #[inline]
    pub(crate) fn schedule(&self, addr: TaskAddr) {
        // SAFETY: only the table's `schedule` and the queue's `push` run.
        let queued = unsafe {
            self.run.with(|run| {
                let ticket = run
                    .tasks
                    .schedule(addr.slot, addr.generation, waker::GEN_MASK);
                if let Some(ticket) = ticket {
                    run.queue.push((addr.slot, ticket));
                }
                ticket.is_some()
            })
        };
        // `MAIN_SLOT` is never a table slot: its wakes land here.
        if !queued && addr.slot == MAIN_SLOT {
            self.main_woken.set(true);
        }
    }

    /// Spawns a task on this worker, its block from this worker's pool.
    /// Inlined, and the future is moved only after the allocation: see the
    /// `spawn` module on keeping the future at one copy.
    #[inline(always)]
    pub(crate) fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
    {
        let memory = self.allocate_block::<F>();
        self.start(memory, future)
    }

    /// Memory for a task block of `F`, from this worker's pool (which
    /// first takes in the blocks other threads sent back). Its home is
    /// [`id`](Self::id).
    ///
    /// A fresh block of the pool (not a reused one) also makes the
    /// inbox's list of returned blocks hold every block the pool has out,
    /// so that a task ending on another thread never allocates to send its
    /// block home: growth happens on the way in only. A block from the
    /// system allocator (pooling off, a task too big for the pool) never
    /// goes home, so it takes no inbox lock; it is only counted.
    #[inline]
    pub(crate) fn allocate_block<F: Future>(&self) -> BlockMemory<F> {
        let mut pool = self.pool.borrow_mut();
        self.inbox.take_returned(&mut pool);
        let fresh = pool.counts().1;
        let memory = RawTask::allocate::<F>(Some(&mut pool));
        if pool.counts().1 != fresh {
            if memory.is_pooled() {
                self.inbox.reserve_returned(pool.outstanding());
            }
            self.shared
                .metrics
                .of(self.index)
                .set_blocks_allocated(pool.counts().1);
        }
        memory
    }

    /// This worker's `(worker, epoch)`: the home of the blocks it
    /// allocates.
    #[inline]
    pub(crate) fn id(&self) -> (u16, u8) {
        (self.worker, self.epoch)
    }

    /// Moves `future` into `memory` and queues the new task. Nothing in
    /// here unwinds before the future is in its block.
    #[inline(always)]
    pub(crate) fn start<F>(&self, memory: BlockMemory<F>, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
    {
        let (task, join) = RawTask::init(memory, future, self.id());
        // The handle is not out yet: no abort can race the publication.
        self.adopt(task, HandleOut::NotYet);
        JoinHandle::new(join)
    }

    /// Takes a task into the table and the run queue: one spawned here,
    /// or one another thread sent here (`spawn_on`), whose block goes back
    /// to the sender's pool when it ends. `handle` says whether the task's
    /// `JoinHandle` may already be in use (on any thread).
    pub(crate) fn adopt(&self, task: RawTask, handle: HandleOut) {
        let task_ref = task.by_ref();
        // SAFETY: only the table's `insert` and the queue's `push` run.
        let inserted = unsafe {
            self.run.with(|run| {
                run.tasks.insert(task, MAX_TASKS).map(|(slot, ticket)| {
                    run.queue.push((slot, ticket));
                    (slot, ticket)
                })
            })
        };
        match inserted {
            Ok((slot, ticket)) => {
                self.spawned.set(self.spawned.get() + 1);
                // Before the task's first poll (it is queued, not polled):
                // where `JoinHandle::abort` wakes it.
                let address = (u64::from(self.owner_high) << 32)
                    | waker::task_bits(slot, Tasks::generation(ticket));
                // SAFETY: the table holds the task's reference, and no user
                // code ran since the insert. `NotYet`: the caller's word
                // that no other reference to the block is in use.
                unsafe {
                    match handle {
                        HandleOut::NotYet => task_ref.publish_address_unshared(address),
                        HandleOut::Maybe => task_ref.publish_address(address),
                    }
                }
            }
            Err(task) => {
                // SAFETY: never polled; we are its worker.
                unsafe { task.cancel() };
                self.release(task);
                tracing::error!(
                    "cellio: more than {MAX_TASKS} live tasks on one worker; task dropped"
                );
            }
        }
    }

    /// Gives up a task reference on the worker that ran it: the block, if
    /// this was the last reference, returns to this worker's pool, or to
    /// its home's (a task sent here with `spawn_on`).
    pub(crate) fn release(&self, task: RawTask) {
        self.free_if_last(task.header().home, task.release());
    }

    /// Frees `block`, the memory of a task from `home` whose last reference
    /// was given up on this worker, if there is one.
    fn free_if_last(&self, home: (u16, u8), block: Option<FreeBlock>) {
        if let Some(block) = block {
            if home == self.id() {
                block.free(Some(&mut self.pool.borrow_mut()));
            } else {
                send_home(home, block);
            }
        }
    }

    /// Takes in what other threads left: messages, and blocks of this
    /// worker's pool that came back (so they are capped with the pool's
    /// blocks, not held in the inbox until the next spawn).
    fn drain_inbox(&self) {
        self.inbox.drain(self);
        // Checked before the pool is borrowed: twice a loop turn, and
        // almost always nothing came back.
        if self.inbox.has_returned() {
            self.inbox.take_returned(&mut self.pool.borrow_mut());
        }
    }

    /// Polls up to `event_interval` queued tasks, each type's in its own
    /// loop ([`run_tasks_of`]); returns how many it polled.
    fn run_batch(&self) -> u64 {
        let mut left = self.event_interval;
        if left == 0 {
            return 0;
        }
        // SAFETY: `next` only pops the queue and reads the table.
        let mut next = unsafe { self.run.with(RunState::next) };
        while let Some(taken) = next {
            // SAFETY: this is the worker loop; `taken` was just taken off
            // the queue, its runner is its own type's, and `left >= 1`
            // (checked above, and `run_tasks_of` returns a task only then).
            next = unsafe { (taken.task.runner())(self, taken, &mut left) };
        }
        u64::from(self.event_interval - left)
    }

    /// Polls one task with `poll`; `true` if it ran out of budget (a task
    /// that spends its whole budget ends the batch: I/O is due).
    #[inline(always)]
    fn run_task(&self, taken: Taken, poll: impl FnOnce(&mut Context<'_>) -> Poll<()>) -> bool {
        let Taken { slot, ticket, .. } = taken;
        // The waker's drop does nothing: skip the call through its vtable.
        let waker = ManuallyDrop::new(waker::packed_waker(
            (u64::from(self.owner_high) << 32) | waker::task_bits(slot, Tasks::generation(ticket)),
        ));
        let mut cx = Context::from_waker(&waker);
        // Tagged with the slot: `TaskId::try_current` finds the task there.
        let (polled, exhausted) = budget::run_with(self.budget, slot, || poll(&mut cx));
        if polled.is_ready() {
            self.finish(slot);
        }
        exhausted
    }

    /// Ends the task in `slot`, which completed, and releases the table's
    /// reference.
    #[cold]
    #[inline(never)]
    fn finish(&self, slot: u32) {
        // SAFETY: only the table's `finish` runs; the task is released
        // after, outside.
        let task = unsafe { self.run.with(|run| run.tasks.finish(slot)) };
        if let Some(task) = task {
            self.release(task);
        }
    }

    /// Cancels every unfinished task (dropping its future) and releases it,
    /// counting each in [`Shared::cancelled`]: those in the table and those
    /// sent here by `spawn_on` that the worker had not taken in yet. The
    /// gauges are published after each task is counted, so they show no
    /// task alive once it is done, and a `shutdown_timeout` that leaves
    /// this thread behind stuck in a future's drop adds only the tasks not
    /// counted yet to the count.
    pub(crate) fn cancel_all(&self) {
        self.drain_inbox();
        // The tasks just taken in left the inbox's count: alive now.
        self.publish();
        // Each search starts past the slot just cancelled, so n tasks cost
        // one pass over the table, not n (a task spawned by a destructor
        // meanwhile may take a lower slot: the search comes back to it).
        let mut cursor = 0;
        // Tags do not nest: this may run inside another runtime's task
        // (that runtime dropped in it), whose tag is put back at the end.
        let tag = budget::tag();
        loop {
            // SAFETY: only the table's `first_live_from` runs.
            let next = unsafe { self.run.with(|run| run.tasks.first_live_from(cursor)) };
            let Some((slot, task)) = next else { break };
            cursor = slot + 1;
            // Tagged with the slot as a poll is, so the future's drop sees
            // its own `TaskId::try_current`; the task stays in its slot
            // (and its reference in the table) until it is finished below.
            budget::run_with(self.budget, slot, || {
                // SAFETY: this is the task's worker; it is not being
                // polled, and the table holds its reference throughout.
                unsafe { task.cancel() }
            });
            // SAFETY: only the table's `finish` runs.
            let task = unsafe { self.run.with(|run| run.tasks.finish(slot)) };
            if let Some(task) = task {
                self.release(task);
            }
            self.shared.count_cancelled();
            // Counted: no longer alive for `shutdown_timeout`'s estimate of
            // a stuck worker's tasks (`Runtime::stop`). Not a hot path.
            self.publish();
        }
        budget::set_tag(tag);
        // With no task left, what the run queue holds are the cancelled
        // tasks' stale entries, which no worker will reach and skip any
        // more: dropped, so that the queue's gauge is 0 too.
        // SAFETY: only the table's `live` and `start_poll` and the queue's
        // `pop` run (`next`).
        unsafe {
            self.run.with(|run| {
                if run.tasks.live() == 0 {
                    let due = run.next();
                    debug_assert!(due.is_none(), "a queued task with none alive");
                }
            });
        }
        // The gauges outlive the runtime (`RuntimeMetrics`): they must not
        // go on counting the cancelled tasks alive or queued.
        self.publish();
    }

    /// A worker's last act, with it current on its thread: cancels its
    /// tasks, closes its inbox (tasks sent here from other threads from
    /// now on are refused: their `JoinHandle`s report `Cancelled`),
    /// cancels the tasks sent before that and not taken in (the orphans),
    /// then cancels again what their drops spawned on this thread (`spawn`,
    /// `spawn_on` or `spawn_local_on` of this worker go straight into the
    /// table, closed inbox or not), and only then frees the worker number.
    /// A finite chain of drops that spawn ends: each is cancelled in turn
    /// by that last `cancel_all`, whose search comes back to tasks spawned
    /// meanwhile (a drop that always spawns keeps it going for ever: see
    /// design.md, "Shutdown"). Once it returns no user code runs here
    /// with this worker current, so the table stays empty.
    pub(crate) fn cancel_all_and_release(&self) {
        self.cancel_all();
        let orphans = self.inbox.close();
        let cancelled = orphans.len();
        for task in orphans {
            // SAFETY: never polled; its future is `Send`, and this is the
            // worker it was sent to.
            unsafe { task.cancel() };
            self.release(task);
        }
        self.shared.count_cancelled_n(cancelled);
        self.cancel_all();
        self.inbox.free_number(self.worker, self.epoch);
    }

    /// Number of tasks taken into the table so far (spawned here or sent
    /// here), finished or not.
    pub(crate) fn spawned(&self) -> u64 {
        self.spawned.get()
    }

    /// Number of spawned tasks that have not finished.
    pub(crate) fn live_tasks(&self) -> usize {
        // SAFETY: `live` only reads a counter.
        unsafe { self.run.with(|run| run.tasks.live()) }
    }

    pub(crate) fn pool(&self) -> &RefCell<Pool> {
        &self.pool
    }

    /// Wakes every task waiting for shutdown on this worker.
    pub(crate) fn begin_shutdown(&self) {
        let waiters = self.shutdown_waiters.borrow_mut().take_all();
        for waker in waiters {
            waker.wake();
        }
    }
}

/// Publishes the metrics of the worker running on this thread, if it is
/// one of `shared`'s runtime (so a worker reading its own is exact).
pub(crate) fn publish_current(shared: &Arc<Shared>) {
    with_current(|executor| {
        if Arc::ptr_eq(&executor.shared, shared) {
            executor.publish();
        }
    });
}

/// The id of the task this worker is polling (or whose future it is
/// dropping) on this thread, if any.
pub(crate) fn current_task_id() -> Option<crate::TaskId> {
    let slot = budget::current_tag()?;
    with_current(|executor| {
        // SAFETY: only the table's `live_at` runs.
        let task = unsafe { executor.run.with(|run| run.tasks.live_at(slot)) };
        task.map(TaskRef::id)
    })
    .flatten()
}

/// Runs `f` with the executor of the worker running on this thread.
pub(crate) fn with_current<R>(f: impl FnOnce(&Executor) -> R) -> Option<R> {
    let executor = LocalGuard::current()?;
    // SAFETY: `LocalGuard::enter`'s contract keeps the executor valid while
    // it is this thread's current worker, which it is for this whole call.
    Some(f(unsafe { &*executor }))
}

/// Gives up an owner's task reference (a `JoinHandle`'s) from wherever it
/// is dropped. The last one frees the block: into its home worker's pool
/// on that worker's thread, through the home's inbox from any other
/// thread, and to the system allocator if it has no home or the home is
/// gone.
pub(crate) fn release_task(task: RawTask) {
    release_from_anywhere(task, RawTask::release);
}

/// Gives up an `AbortHandle`'s reference from wherever it is dropped, as
/// [`release_task`] (it never drops the payload: `task::raw`).
pub(crate) fn release_extra_task(task: RawTask) {
    release_from_anywhere(task, RawTask::release_extra);
}

fn release_from_anywhere(task: RawTask, release: fn(RawTask) -> Option<FreeBlock>) {
    let home = task.header().home;
    let mut block = Some(release(task));
    // On a worker: as that worker frees its own blocks.
    with_current(|executor| executor.free_if_last(home, block.take().flatten()));
    if let Some(block) = block.flatten() {
        send_home(home, block);
    }
}

/// Frees a block away from its home's thread: through the home's inbox to
/// its pool, or to the system allocator if it has no home, was not pooled
/// (the home would only free it), or the home is gone.
fn send_home((worker, epoch): (u16, u8), block: FreeBlock) {
    if (worker, epoch) == NO_HOME || !block.is_pooled() {
        return block.free(None);
    }
    if let Err(block) = Inbox::return_block(worker, epoch, block) {
        block.free(None);
    }
}

/// A background worker thread's life: run until the runtime stops, then
/// cancel what is left. Not before, even while a graceful shutdown drains
/// and this worker has no task left: its reactor drives the sockets made
/// here, which tasks on other workers may still be using, and tasks sent
/// here during the grace period must run.
///
/// `started` is called once the worker is set up and about to enter its
/// loop: from then on the thread allocates nothing until its tasks do.
pub(crate) fn run_background(
    mut reactor: Reactor,
    executor: Executor,
    started: impl FnOnce(),
) -> io::Result<()> {
    // SAFETY: `reactor` is this function's own and is dropped when it
    // returns, on this thread.
    unsafe { reactor.bind_to_current_thread()? };
    let _reactor_context = reactor.handle().enter();
    let _local = executor.enter();
    // Runs when the loop returns and also when it panics, before `_local`
    // and `_reactor_context` go (locals drop in reverse): the tasks are
    // cancelled with their worker current and its reactor entered, and
    // the inbox is released.
    let _exit = BackgroundExit(&executor);
    started();
    let shared = executor.shared.clone();
    executor.run(&mut reactor, || shared.stopping());
    Ok(())
}

/// The end of a background worker, whether its loop returned or panicked
/// (a user's waker that panics when the reactor or a timer wakes it is
/// the one piece of user code the loop runs outside a task's poll): its
/// tasks are cancelled, and its inbox is released so that tasks sent to
/// it later are refused instead of waiting forever.
struct BackgroundExit<'a>(&'a Executor);

impl Drop for BackgroundExit<'_> {
    fn drop(&mut self) {
        let executor = self.0;
        if std::thread::panicking() {
            tracing::error!(
                worker = executor.index,
                "cellio: a worker's loop panicked; its tasks are cancelled"
            );
        }
        executor.cancel_all_and_release();
    }
}
