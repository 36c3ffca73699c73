//! Runtime metrics: what each worker has done (tasks spawned and polled,
//! loop turns, sleeps, I/O events, time busy) and holds (live tasks, queued tasks,
//! task blocks), and the blocking pool's threads and queue, readable from
//! any thread without stopping anything: tokio's `RuntimeMetrics`.
//!
//! A worker's own state is confined to its thread, so each worker
//! *publishes* its figures to a slot of its own ([`Published`]), which any
//! thread may read:
//!
//! * the counts that grow once per loop turn (turns, sleeps, polls, I/O
//!   events) are added to the slot as they happen, once per turn;
//! * spawns and live and queued tasks are copied into it once per turn,
//!   just before the worker turns its reactor (and so before it sleeps),
//!   and whenever the worker itself is asked;
//! * the task blocks allocated, when the task pool allocates one;
//! * the time busy (`busy`), as the worker goes to sleep, when its loop
//!   ends, and every 64 turns without a sleep, in the ticks of the
//!   cheapest clock the machine has (`busy::TickClock`).
//!
//! Nothing here is touched per message or per task: a turn serves every
//! task its events and wakes queued, and a poll is counted with its batch.
//! (At a low load a worker sleeps between messages, so its turns, sleeps
//! and clock reads come once per message or so: `busy` has their cost.)
//!
//! # Invariants
//!
//! * A slot is written only by its worker's thread, with relaxed loads
//!   and stores (no read-modify-write: there is one writer), and is read
//!   by any thread. A publication ends with a release store of the queue
//!   length, which a reader loads first, with acquire: a reader sees at
//!   least everything counted up to the last publication it observed (a
//!   turn and its sleep are counted before the turn's publication), and
//!   possibly later counts.
//! * A slot is 128-byte aligned, so that one worker's publishing never
//!   shares a cache line (or the adjacent line a prefetcher pairs with it)
//!   with another's.

mod busy;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use busy::TickClock;
pub(crate) use busy::{BusyClock, FLUSH_TURNS as BUSY_FLUSH_TURNS};

use crate::shutdown::Shared;
use crate::sync::{AtomicU64, Ordering};

/// One worker's published figures (see the module's invariants).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Published {
    turns: AtomicU64,
    sleeps: AtomicU64,
    polls: AtomicU64,
    io_events: AtomicU64,
    spawned: AtomicU64,
    alive: AtomicU64,
    queued: AtomicU64,
    blocks_allocated: AtomicU64,
    /// In the runtime's `TickClock`'s ticks.
    busy_ticks: AtomicU64,
}

/// What a worker copies into its slot every turn (see [`Published::copy`]).
pub(crate) struct Gauges {
    pub(crate) spawned: u64,
    pub(crate) alive: usize,
    pub(crate) queued: usize,
}

/// Adds `by` to a counter only one thread writes; returns the new count.
#[inline(always)]
fn add(counter: &AtomicU64, by: u64) -> u64 {
    let count = counter.load(Ordering::Relaxed).wrapping_add(by);
    counter.store(count, Ordering::Relaxed);
    count
}

impl Published {
    /// Counts a batch of `polls` task polls. Called by the slot's worker
    /// only.
    #[inline]
    pub(crate) fn count_polls(&self, polls: u64) {
        add(&self.polls, polls);
    }

    /// Counts a reactor turn about to start, and returns the turns counted
    /// so far; `sleep` if the worker will block in it. Called by the
    /// slot's worker only, before [`copy`](Self::copy) (which publishes
    /// it).
    #[inline]
    pub(crate) fn count_turn(&self, sleep: bool) -> u64 {
        let turns = add(&self.turns, 1);
        if sleep {
            add(&self.sleeps, 1);
        }
        turns
    }

    /// Adds `ticks` (of the runtime's `TickClock`) to the time busy.
    /// Called by the slot's worker only.
    #[inline]
    fn add_busy(&self, ticks: u64) {
        add(&self.busy_ticks, ticks);
    }

    /// Counts the events a reactor turn delivered. Called by the slot's
    /// worker only.
    #[inline]
    pub(crate) fn count_io_events(&self, events: usize) {
        add(&self.io_events, events as u64);
    }

    /// Records the task pool's count of blocks allocated, which changes
    /// only when it allocates one. Called by the slot's worker only.
    #[cold]
    pub(crate) fn set_blocks_allocated(&self, blocks: u64) {
        self.blocks_allocated.store(blocks, Ordering::Relaxed);
    }

    /// Copies the worker's gauges, publishing them and every count made
    /// before. Called by the slot's worker only.
    #[inline]
    pub(crate) fn copy(&self, gauges: Gauges) {
        let store = |to: &AtomicU64, value: u64| to.store(value, Ordering::Relaxed);
        store(&self.spawned, gauges.spawned);
        store(&self.alive, gauges.alive as u64);
        // Last, and a release: a reader that sees it sees everything
        // before it (a plain store on x86).
        self.queued.store(gauges.queued as u64, Ordering::Release);
    }

    /// The worker's count of tasks taken in so far, if it had no live
    /// task when it last published (`None` if it had). Its gauges are
    /// published once a loop turn, and also right after it takes in tasks
    /// sent from other threads (see `Inbox::quiet`).
    pub(crate) fn spawned_if_idle(&self) -> Option<u64> {
        // First, and an acquire: see `copy`.
        let _ = self.queued.load(Ordering::Acquire);
        let spawned = self.spawned.load(Ordering::Relaxed);
        (self.alive.load(Ordering::Relaxed) == 0).then_some(spawned)
    }

    /// The live tasks the worker last published.
    pub(crate) fn alive(&self) -> u64 {
        self.alive.load(Ordering::Relaxed)
    }

    /// The slot's figures; `busy_shown` is the slot's largest busy time
    /// handed out so far (see [`WorkerSlots::busy_shown`]).
    fn read(&self, clock: &TickClock, busy_shown: &AtomicU64) -> WorkerMetrics {
        // First, and an acquire: see `copy`.
        let queued_tasks = self.queued.load(Ordering::Acquire);
        let load = |from: &AtomicU64| from.load(Ordering::Relaxed);
        WorkerMetrics {
            alive_tasks: load(&self.alive),
            spawned_tasks: load(&self.spawned),
            queued_tasks,
            polls: load(&self.polls),
            turns: load(&self.turns),
            sleeps: load(&self.sleeps),
            io_events: load(&self.io_events),
            task_blocks_allocated: load(&self.blocks_allocated),
            busy_time: monotonic(clock.duration(load(&self.busy_ticks)), busy_shown),
        }
    }
}

/// `busy` (a conversion of a count of ticks that only grows), or the
/// largest figure `shown` holds, in nanoseconds, if that is larger; keeps
/// the larger one in `shown`. Until the clock has fixed its rate, each
/// conversion measures it anew, so the same count can convert to a
/// slightly shorter time than before: handed out as is, a reader's busy
/// time went down between two reads (found by a review).
fn monotonic(busy: Duration, shown: &AtomicU64) -> Duration {
    let nanos = u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX);
    let before = shown.load(Ordering::Relaxed);
    if nanos <= before {
        return Duration::from_nanos(before);
    }
    let before = shown.fetch_max(nanos, Ordering::Relaxed);
    Duration::from_nanos(before.max(nanos))
}

/// Every worker's slot, by index, and the clock their busy time is
/// counted with.
pub(crate) struct WorkerSlots {
    slots: Box<[Published]>,
    /// By worker index: the largest busy time read so far, in
    /// nanoseconds, so that no read hands out less (see [`monotonic`]).
    /// Written by readers only, apart from the workers' slots.
    busy_shown: Box<[AtomicU64]>,
    clock: TickClock,
}

impl WorkerSlots {
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            slots: (0..workers).map(|_| Published::default()).collect(),
            busy_shown: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            clock: TickClock::new(),
        }
    }

    /// The clock the workers count their busy time with.
    #[inline]
    pub(crate) fn clock(&self) -> &TickClock {
        &self.clock
    }

    /// Worker `index`'s slot.
    ///
    /// # Panics
    ///
    /// If there is no such worker (an executor's index always names one).
    #[inline]
    pub(crate) fn of(&self, index: usize) -> &Published {
        &self.slots[index]
    }

    /// Worker `index`'s figures, as a reader sees them.
    fn read(&self, index: usize) -> WorkerMetrics {
        self.slots[index].read(&self.clock, &self.busy_shown[index])
    }
}

impl fmt::Debug for WorkerSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerSlots")
            .field("workers", &self.slots.len())
            .finish()
    }
}

/// A runtime's metrics, readable from any thread: from
/// [`Runtime::metrics`](crate::Runtime::metrics) or
/// [`RuntimeHandle::metrics`](crate::RuntimeHandle::metrics). Cheap to
/// clone; reading it allocates nothing.
///
/// Each worker publishes its figures once per loop turn (before it turns
/// its reactor, so a sleeping worker's are complete), and on its own
/// thread whenever it is asked: read from one of the runtime's tasks, the
/// worker running it has its levels (`alive_tasks`, `queued_tasks`,
/// `spawned_tasks`) exact, and its counts as they were when the batch of
/// tasks it is running began: `polls` leaves out that batch's polls (a task that yields ten
/// times in a row and reads its worker before and after may see the same
/// count; a batch is up to `event_interval` polls), `turns`, `sleeps` and
/// `io_events` stand until the next turn, and `busy_time` grows as the
/// worker sleeps or every 64 turns. The other workers are at most one turn
/// behind.
/// Worker 0 runs only inside `block_on`: outside it, its figures are those
/// of its last turn or of the last
/// [`Runtime::metrics`](crate::Runtime::metrics) call, which publishes
/// them.
///
/// # Examples
///
/// ```
/// let rt = cellio_runtime::Builder::new().workers(2).build()?;
/// rt.block_on(async {
///     let tasks: Vec<_> = (0..10).map(|i| cellio_runtime::spawn(async move { i })).collect();
///     for task in tasks {
///         task.await.unwrap();
///     }
/// });
/// let metrics = rt.metrics();
/// assert_eq!(metrics.workers(), 2);
/// let worker0 = metrics.worker(0).unwrap();
/// assert_eq!(worker0.spawned_tasks, 10);
/// assert_eq!(worker0.alive_tasks, 0);
/// assert!(worker0.polls >= 10);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct RuntimeMetrics {
    shared: Arc<Shared>,
}

impl RuntimeMetrics {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// Worker `index`'s figures (worker 0 is the thread that calls
    /// `block_on`); `None` if the runtime has no such worker.
    pub fn worker(&self, index: usize) -> Option<WorkerMetrics> {
        if index >= self.workers() {
            return None;
        }
        crate::worker::publish_current(&self.shared);
        Some(self.shared.metrics.read(index))
    }

    /// Every worker's figures, by index.
    pub fn each_worker(&self) -> impl Iterator<Item = WorkerMetrics> + '_ {
        crate::worker::publish_current(&self.shared);
        let slots = &self.shared.metrics;
        (0..self.workers()).map(move |index| slots.read(index))
    }

    /// The workers' figures added up.
    pub fn total(&self) -> WorkerMetrics {
        self.each_worker()
            .fold(WorkerMetrics::default(), |sum, worker| sum + worker)
    }

    /// Threads in the blocking pool now (running a job or idle).
    pub fn blocking_threads(&self) -> usize {
        self.shared.blocking.stats().0
    }

    /// Blocking-pool threads waiting for a job now.
    pub fn idle_blocking_threads(&self) -> usize {
        self.shared.blocking.stats().1
    }

    /// Blocking jobs waiting in the queue for a thread now.
    pub fn blocking_queue_depth(&self) -> usize {
        self.shared.blocking.stats().2
    }

    /// Tasks cancelled so far by the runtime's shutdown (those still
    /// unfinished when it stopped, and blocking jobs still queued).
    pub fn cancelled_tasks(&self) -> usize {
        self.shared.cancelled()
    }
}

impl fmt::Debug for RuntimeMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (threads, idle, queued) = self.shared.blocking.stats();
        f.debug_struct("RuntimeMetrics")
            .field("workers", &self.workers())
            .field("total", &self.total())
            .field("blocking_threads", &threads)
            .field("idle_blocking_threads", &idle)
            .field("blocking_queue_depth", &queued)
            .finish()
    }
}

/// One worker's figures (or, from [`RuntimeMetrics::total`], all of
/// theirs added up): a copy, taken when it was read.
///
/// The counts (`spawned_tasks`, `polls`, `turns`, `sleeps`, `io_events`,
/// `task_blocks_allocated`, `busy_time`) only grow; subtract two snapshots for a rate. The rest
/// are levels at the worker's last turn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerMetrics {
    /// Tasks on this worker spawned (or sent here with `spawn_on`) and not
    /// finished: tokio's `num_alive_tasks`, per worker. 0 once the runtime
    /// has shut down (its tasks finished or were cancelled).
    pub alive_tasks: u64,
    /// Tasks started on this worker so far, spawned here or sent here.
    pub spawned_tasks: u64,
    /// Entries in the run queue: tasks woken and waiting to be polled (a
    /// backlog that stays high means the worker is saturated). An entry
    /// of a task that ended after it was woken (aborted, say) counts until
    /// the worker reaches it and skips it. 0 once the runtime has shut
    /// down.
    pub queued_tasks: u64,
    /// Task polls so far (`block_on`'s own future not counted).
    pub polls: u64,
    /// Loop turns so far: each polls a batch of queued tasks and then
    /// turns the reactor once.
    pub turns: u64,
    /// Turns in which the worker had nothing to run and blocked in its
    /// reactor until an event, a timer or a wake came: tokio's park count.
    /// Counted as the worker goes to sleep.
    pub sleeps: u64,
    /// Events its reactor delivered so far: readiness events (one may wake
    /// a socket's receive and its send) and wake-ups from other threads.
    pub io_events: u64,
    /// Task blocks this worker allocated so far (each task spawned on or
    /// from this worker, or a blocking job, takes a block from the pool: a
    /// reused one, or a fresh one). Flat under a steady load: once warm,
    /// spawning allocates nothing. A task the pool does not take (with
    /// [`task_pooling(false)`](crate::Builder::task_pooling), or bigger
    /// than the pool's largest class, 64 KiB) allocates its block at
    /// every spawn, and each is counted.
    pub task_blocks_allocated: u64,
    /// Time this worker was busy so far: running its loop (polling tasks,
    /// firing timers, turning its reactor without blocking), from each
    /// start of the loop or wake-up to the next sleep or end of the loop:
    /// tokio's `worker_total_busy_duration`. Worker 0's loop runs only
    /// inside `block_on`. Added up as the worker goes to sleep, and every
    /// 64 turns while it does not, so a reader may miss the last few
    /// turns' time. Busy time over wall time, from two snapshots, is the
    /// share of a core the worker used.
    pub busy_time: Duration,
}

impl std::ops::Add for WorkerMetrics {
    type Output = WorkerMetrics;

    fn add(self, other: WorkerMetrics) -> WorkerMetrics {
        WorkerMetrics {
            alive_tasks: self.alive_tasks + other.alive_tasks,
            spawned_tasks: self.spawned_tasks + other.spawned_tasks,
            queued_tasks: self.queued_tasks + other.queued_tasks,
            polls: self.polls + other.polls,
            turns: self.turns + other.turns,
            sleeps: self.sleeps + other.sleeps,
            io_events: self.io_events + other.io_events,
            task_blocks_allocated: self.task_blocks_allocated + other.task_blocks_allocated,
            busy_time: self.busy_time + other.busy_time,
        }
    }
}
