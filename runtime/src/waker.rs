//! Wakers that carry a task's address, not a pointer: `(worker, epoch, slot,
//! generation)` packed into the `RawWaker`'s data word.
//!
//! Cloning or dropping such a waker does nothing (there is no reference
//! count), and waking it never allocates:
//!
//! * **same thread** (the common case: the reactor, turned by the worker,
//!   wakes one of that worker's tasks): the task is pushed on the worker's
//!   local run queue;
//! * **another thread**: the task goes into the worker's [`Inbox`] (a
//!   [`Mailbox`]: under a mutex), and the reactor is woken if the worker
//!   sleeps in it. A task woken again before the worker took the first
//!   wake in is listed once ([`InboxState::push_woken`]), and so is a
//!   timer reset again before the worker took the first reset in
//!   ([`InboxState::push_moved`]): wakes and resets from other threads
//!   never pile up, however many come while the worker is away (worker 0
//!   outside `block_on`, a long poll).
//!
//! # Invariants
//!
//! * Inboxes are leaked once and reused by later workers (with a new
//!   `epoch`), so the pointer a waker's worker number names is valid for the
//!   life of the process: a waker that outlives its runtime wakes into an
//!   inbox nobody drains, or into a later worker, which drops the wake if
//!   the epoch or the task generation does not match.
//! * The epoch is 8 bits (the waker word has no room for more): the 256th
//!   later claim of a worker number has the same epoch again, and every
//!   runtime's first tasks take the same slots and generations (slot 0,
//!   generation 0 first). So a waker that outlived its runtime by 256
//!   runtimes or more (an ordinary test suite builds that many, one per
//!   `#[cellio::test]`) may wake a task of a later runtime, or its
//!   `block_on` future: one spurious poll, which the `Future` contract
//!   allows (a future checks its own readiness when polled), never memory
//!   unsafety (a wake is only a slot and a generation looked up in the
//!   worker's own table). Messages that must never reach a later owner (a
//!   spawned task, a timer's cancellation, a shutdown state change) are
//!   checked by the full incarnation instead ([`InboxState::incarnation`]).
//! * A wake for a slot whose generation moved on is dropped by the executor:
//!   a stale waker cannot poll the task that reused its slot. (Both counters
//!   wrap, so after 2^20 reuses of one slot a very old waker could cause one
//!   spurious poll, which the `Future` contract allows.)

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{RawWaker, RawWakerVTable, Waker};

use cellio_reactor::{thread_words, Handle};

use crate::mailbox::Mailbox;
use crate::task::pool::Pool;
use crate::task::{FreeBlock, RawTask};
use crate::time::{TimerChange, TimerKey};
use crate::worker::{Executor, HandleOut};

/// Maximum number of workers alive at once in one process.
pub(crate) const MAX_WORKERS: usize = 1 << WORKER_BITS;

const WORKER_BITS: u32 = 12;
const EPOCH_BITS: u32 = 8;
const SLOT_BITS: u32 = 24;
const GEN_BITS: u32 = 20;
const _: () = assert!(WORKER_BITS + EPOCH_BITS + SLOT_BITS + GEN_BITS == 64);
/// The generation bits a waker carries.
pub(crate) const GEN_MASK: u32 = (1 << GEN_BITS) - 1;

/// Largest task slot index a waker can name; [`MAIN_SLOT`] is reserved.
pub(crate) const MAX_TASKS: u32 = (1 << SLOT_BITS) - 1;
/// The slot number of the future passed to `block_on`.
pub(crate) const MAIN_SLOT: u32 = MAX_TASKS;

/// What a waker names: a task of a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskAddr {
    pub(crate) worker: u16,
    pub(crate) epoch: u8,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl TaskAddr {
    /// The address of `slot` at `generation` (truncated to the bits a waker
    /// carries) on a worker.
    pub(crate) fn new(worker: u16, epoch: u8, slot: u32, generation: u32) -> Self {
        Self {
            worker,
            epoch,
            slot,
            generation: generation & GEN_MASK,
        }
    }

    /// The bits of a packed address that name its worker: `(worker, epoch)`
    /// in place, everything else zero.
    #[inline]
    pub(crate) const fn owner_bits(worker: u16, epoch: u8) -> u64 {
        ((worker as u64) << (EPOCH_BITS + SLOT_BITS + GEN_BITS))
            | ((epoch as u64) << (SLOT_BITS + GEN_BITS))
    }

    fn pack(self) -> u64 {
        Self::owner_bits(self.worker, self.epoch)
            | (u64::from(self.slot) << GEN_BITS)
            | u64::from(self.generation & GEN_MASK)
    }

    #[inline]
    fn unpack(word: u64) -> Self {
        Self {
            worker: (word >> (EPOCH_BITS + SLOT_BITS + GEN_BITS)) as u16,
            epoch: (word >> (SLOT_BITS + GEN_BITS)) as u8,
            slot: ((word >> GEN_BITS) & u64::from(MAX_TASKS)) as u32,
            generation: (word & u64::from(GEN_MASK)) as u32,
        }
    }

    /// Whether `generation` (a full counter) matches this address's
    /// truncated one.
    #[cfg(test)]
    pub(crate) fn names_generation(self, generation: u32) -> bool {
        generation & GEN_MASK == self.generation
    }

    /// A waker for this task. No allocation, no reference count.
    pub(crate) fn waker(self) -> Waker {
        packed_waker(self.pack())
    }
}

/// The waker for the packed address `word` (see [`TaskAddr::owner_bits`]
/// for the layout): the worker loop builds one per poll from its
/// precomputed owner bits without going through [`TaskAddr`].
#[inline]
pub(crate) fn packed_waker(word: u64) -> Waker {
    let data = std::ptr::without_provenance::<()>(word as usize);
    // SAFETY: the vtable's functions treat `data` as a packed integer and
    // never dereference it, so any value is valid for any thread and any
    // lifetime; clone copies it, drop does nothing.
    unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) }
}

/// Packs a slot and a (full) generation into the low bits of a waker word,
/// to be or-ed with [`TaskAddr::owner_bits`].
#[inline]
pub(crate) fn task_bits(slot: u32, generation: u32) -> u64 {
    (u64::from(slot) << GEN_BITS) | u64::from(generation & GEN_MASK)
}

const _: () = assert!(usize::BITS == 64, "packed wakers need a 64-bit usize");

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop_waker);

fn clone(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

/// The owner bits of a packed word (worker and epoch; slot and generation
/// cleared).
const OWNER_MASK: u64 = !((1 << (SLOT_BITS + GEN_BITS)) - 1);

fn wake(data: *const ()) {
    let word = data.addr() as u64;
    // One thread-local load and compare decides "same thread": the worker
    // owner word holds the owner bits of the thread's worker, or
    // `NO_WORKER`, which has low bits set and so never equals masked owner
    // bits.
    if word & OWNER_MASK == thread_words::worker_owner() {
        let executor = thread_words::worker_ptr().cast::<Executor>();
        // SAFETY: the owner word names a worker only while the worker
        // pointer points to its executor, kept valid by `LocalGuard::enter`'s
        // contract.
        unsafe { (*executor).schedule(TaskAddr::unpack(word)) };
        return;
    }
    wake_remote(word);
}

/// A wake from another thread than the task's worker: through its inbox.
/// Out of line, so the same-thread wake stays a few instructions.
#[cold]
#[inline(never)]
fn wake_remote(word: u64) {
    let addr = TaskAddr::unpack(word);
    Inbox::get(addr.worker).push(addr);
}

fn drop_waker(_: *const ()) {}

/// Sets the thread's worker for the guard's life; same-thread wakes go
/// straight to its run queue meanwhile.
pub(crate) struct LocalGuard {
    /// The owner bits and executor pointer to restore (as
    /// `thread_words::set_worker` returned them).
    previous: (u64, *const ()),
}

impl LocalGuard {
    /// Makes `executor`, the worker `(worker, epoch)`, the thread's current
    /// worker.
    ///
    /// # Safety
    ///
    /// `executor` must stay valid (not moved, not dropped) until the guard
    /// is dropped.
    pub(crate) unsafe fn enter(worker: u16, epoch: u8, executor: *const Executor) -> Self {
        let previous =
            thread_words::set_worker(TaskAddr::owner_bits(worker, epoch), executor.cast::<()>());
        Self { previous }
    }

    /// The executor of the worker running on this thread, if any.
    #[inline]
    pub(crate) fn current() -> Option<*const Executor> {
        let executor = thread_words::worker_ptr().cast::<Executor>();
        (!executor.is_null()).then_some(executor)
    }
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        let (owner, executor) = self.previous;
        thread_words::set_worker(owner, executor);
    }
}

/// A worker number and its inbox, claimed for a worker not built yet.
///
/// Dropped unused (a worker thread that could not be spawned, an executor
/// that panicked while being built, the rest of a `build` that failed), it
/// returns the number for reuse, so failed starts never use up the
/// [`MAX_WORKERS`] numbers. Once an executor is built from it,
/// [`WorkerClaim::hand_over`] passes the duty to release it on to the
/// executor's owner.
pub(crate) struct WorkerClaim {
    worker: u16,
    epoch: u8,
    incarnation: u64,
    inbox: &'static Inbox,
}

impl WorkerClaim {
    /// Worker number, epoch and inbox, to build an executor from.
    pub(crate) fn parts(&self) -> (u16, u8, &'static Inbox) {
        (self.worker, self.epoch, self.inbox)
    }

    /// Worker number and incarnation: how other threads address the
    /// worker (see [`InboxState::incarnation`]).
    pub(crate) fn address(&self) -> (u16, u64) {
        (self.worker, self.incarnation)
    }

    /// The executor built from [`parts`](Self::parts) owns the claim now;
    /// whoever runs it releases the inbox when it stops.
    pub(crate) fn hand_over(self) {
        std::mem::forget(self);
    }
}

impl Drop for WorkerClaim {
    fn drop(&mut self) {
        // Nothing can have been sent to a worker that never ran: no task
        // or timer is orphaned here.
        self.inbox.release(self.worker, self.epoch);
    }
}

/// Where other threads leave wakes for a worker: a [`Mailbox`] (messages
/// behind a mutex that only cross-thread traffic takes; whether the worker
/// must be woken decided lock-free), plus the blocks its tasks return.
pub(crate) struct Inbox {
    mailbox: Mailbox<InboxState>,
    /// `true` while `state.returned` may hold blocks: lets the worker skip
    /// the lock when nothing came back. Only a hint (set and cleared under
    /// the lock): a worker that misses a block allocates a fresh one.
    returned_any: AtomicBool,
    /// `true` from the moment the worker takes spawned tasks out of the
    /// inbox (under the lock) until it has put them in its table and
    /// published its gauges: meanwhile neither the inbox nor the gauges
    /// show those tasks (see [`quiet`](Self::quiet)).
    adopting: AtomicBool,
}

struct InboxState {
    /// The epoch of the worker that owns the inbox now.
    epoch: u8,
    /// Which claim of this worker number the owner is, unique in the
    /// process (the epoch, 8 bits in every waker, repeats after 256
    /// claims): what a message that must never reach a later owner (a
    /// timer's cancellation, a spawned task, a shutdown state change) is
    /// checked against.
    incarnation: u64,
    /// Tasks woken from other threads, each listed once
    /// ([`push_woken`](Self::push_woken)).
    woken: Vec<TaskAddr>,
    /// Timers dropped or reset on other threads, each timer's in the order
    /// they were, and a `Moved` listed once
    /// ([`push_moved`](Self::push_moved)).
    timer_changes: Vec<TimerChange>,
    /// How many entries the drains of `woken` and of `timer_changes`
    /// usually take ([`shrink_after_drain`]).
    usual_woken: UsualDrain,
    usual_timer_changes: UsualDrain,
    /// Tasks spawned onto this worker from other threads.
    spawned: Vec<RawTask>,
    /// Blocks from this worker's task pool whose tasks ended on other
    /// threads, for the pool. No wake: the worker takes them in on its
    /// next loop turn or when it next needs a block (`take_returned`).
    returned: Vec<FreeBlock>,
    /// The runtime's shutdown state moved.
    state_changed: bool,
    /// The worker's reactor, while a worker owns this inbox.
    reactor: Option<Handle>,
}

/// Messages of each kind an inbox holds before its lists grow: they are
/// allocated with the inbox (once per worker number, when a runtime is
/// built), so the first cross-thread wakes, spawns and returned blocks of
/// a run allocate nothing whenever they happen to come; only a new peak of
/// more than this many pending at once grows a list. (The executor's
/// [`arrivals`](crate::worker::Executor::arrivals) list, which trades
/// places with `spawned`, starts with as much.)
pub(crate) const INBOX_CAPACITY: usize = 64;

/// A drain gives the memory of the woken list, and of the timer changes'
/// lists, back once its capacity is above this many entries and four
/// times what the drains usually take ([`shrink_after_drain`]): a burst of
/// distinct wakes or timer changes far above the usual leaves no peak
/// allocated for good.
const SHRINK_ABOVE: usize = 16 * INBOX_CAPACITY;

/// How many entries the drains of a list usually take: the most a recent
/// drain took, halved at each drain since. A drain that takes more than
/// four times that is a burst.
#[derive(Debug, Default, Clone, Copy)]
struct UsualDrain(usize);

impl UsualDrain {
    /// Notes a drain that took `taken` entries; returns the room its list
    /// keeps (twice the usual, or [`INBOX_CAPACITY`]) and whether it was a
    /// burst. A burst's room is the usual *before* it: a one-off burst is
    /// given back by the drain that took it, not by later drains (which
    /// come only with later messages: a worker that gets none kept the
    /// burst for good). Drains of about the same size, however large,
    /// keep their room, so a steady flow allocates nothing.
    fn note(&mut self, taken: usize) -> (usize, bool) {
        let before = self.0;
        self.0 = taken.max(before / 2);
        let burst = taken > 4 * before.max(INBOX_CAPACITY);
        let usual = if burst { before } else { self.0 };
        ((2 * usual).max(INBOX_CAPACITY), burst)
    }
}

/// Gives back the memory of a list a drain emptied (or left empty), if its
/// capacity is above [`SHRINK_ABOVE`] and twice `room`: it keeps `room`
/// (from [`UsualDrain::note`]).
fn shrink_after_drain<T>(list: &mut Vec<T>, room: usize) {
    let capacity = list.capacity();
    if capacity > SHRINK_ABOVE && capacity > 2 * room {
        list.shrink_to(room);
    }
}

impl InboxState {
    /// An empty inbox, each list with room for [`INBOX_CAPACITY`] entries.
    fn new() -> Self {
        Self {
            epoch: 0,
            incarnation: 0,
            woken: Vec::with_capacity(INBOX_CAPACITY),
            timer_changes: Vec::with_capacity(INBOX_CAPACITY),
            usual_woken: UsualDrain::default(),
            usual_timer_changes: UsualDrain::default(),
            spawned: Vec::with_capacity(INBOX_CAPACITY),
            returned: Vec::with_capacity(INBOX_CAPACITY),
            state_changed: false,
            reactor: None,
        }
    }

    /// Lists a task woken from another thread, unless it is listed already
    /// (the worker has not taken the earlier wake in): the same task woken
    /// a million times while its worker is away takes one entry, not a
    /// million. (The worker schedules a task once however many times it is
    /// listed, so a repeat is only memory.)
    ///
    /// A repeat of the last entry (one waker fired again and again) costs
    /// one compare. Others (several tasks woken in turn) are removed when
    /// the list is full, before it would grow: sorted and deduplicated, and
    /// grown only if that freed less than half of it, so a sort comes at
    /// most every half-capacity pushes (amortised O(log n) a wake) and the
    /// list holds at most twice as many entries as distinct tasks were
    /// woken. The sort reorders the list, which only changes the order in
    /// which the worker queues those tasks.
    fn push_woken(&mut self, addr: TaskAddr) {
        let woken = &mut self.woken;
        if woken.last() == Some(&addr) {
            return;
        }
        if woken.len() == woken.capacity() {
            woken.sort_unstable_by_key(|addr| addr.pack());
            woken.dedup();
            let free = woken.capacity() - woken.len();
            if free < woken.capacity() / 2 {
                // Distinct tasks mostly: grow now, to twice the size at
                // least, so that the next sort is as far away.
                woken.reserve(woken.capacity());
            }
            if woken
                .binary_search_by_key(&addr.pack(), |a| a.pack())
                .is_ok()
            {
                return;
            }
        }
        woken.push(addr);
    }

    /// Lists a timer reset on another thread, unless a `Moved` for it is
    /// listed already (the worker has not taken it in): a watchdog pushed
    /// back a million times while its worker is away takes one entry, not
    /// a million. (The first `Moved` fires the entry and wakes the task,
    /// whose poll reads the sleep's deadline as it is then, so a repeat
    /// does nothing but take memory.)
    ///
    /// As [`push_woken`](Self::push_woken): a repeat of the last entry
    /// costs one compare; otherwise a full list is sorted by timer and
    /// deduplicated before it may grow, and grown only if that freed less
    /// than half of it. Sorting keeps each timer's own changes in their
    /// order (a timer gets `Moved`s, then at most one `Cancel`, which ends
    /// it: [`TimerChange::order`]) and only reorders different timers'
    /// changes, which touch different entries.
    fn push_moved(&mut self, key: TimerKey) {
        let moved = TimerChange::Moved(key);
        let changes = &mut self.timer_changes;
        if changes.last() == Some(&moved) {
            return;
        }
        if changes.len() == changes.capacity() {
            changes.sort_unstable_by_key(TimerChange::order);
            changes.dedup();
            let free = changes.capacity() - changes.len();
            if free < changes.capacity() / 2 {
                changes.reserve(changes.capacity());
            }
            if changes
                .binary_search_by_key(&moved.order(), TimerChange::order)
                .is_ok()
            {
                return;
            }
        }
        changes.push(moved);
    }
}

static INBOXES: [AtomicPtr<Inbox>; MAX_WORKERS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_WORKERS];
static NEXT_WORKER: AtomicUsize = AtomicUsize::new(0);
static FREE_WORKERS: Mutex<Vec<(u16, u8)>> = Mutex::new(Vec::new());
/// The next [`InboxState::incarnation`].
static NEXT_INCARNATION: AtomicU64 = AtomicU64::new(1);

impl Inbox {
    fn get(worker: u16) -> &'static Inbox {
        let inbox = INBOXES[usize::from(worker)].load(Ordering::Acquire);
        // SAFETY: a waker can only name a worker number that `claim` handed
        // out, after storing a leaked (never freed) inbox at that index with
        // Release; the Acquire load above sees it.
        unsafe { &*inbox }
    }

    /// Claims a worker number (reusing a released one first) and its inbox
    /// for a new worker driving `reactor`.
    pub(crate) fn claim(reactor: Handle) -> std::io::Result<WorkerClaim> {
        let reused = FREE_WORKERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let (worker, epoch) = match reused {
            Some((worker, epoch)) => (worker, epoch.wrapping_add(1)),
            None => {
                let worker = NEXT_WORKER.fetch_add(1, Ordering::Relaxed);
                if worker >= MAX_WORKERS {
                    NEXT_WORKER.fetch_sub(1, Ordering::Relaxed);
                    return Err(std::io::Error::other(format!(
                        "cellio: more than {MAX_WORKERS} runtime workers alive at once"
                    )));
                }
                let inbox = Box::leak(Box::new(Inbox {
                    mailbox: Mailbox::new(InboxState::new()),
                    returned_any: AtomicBool::new(false),
                    adopting: AtomicBool::new(false),
                }));
                INBOXES[worker].store(inbox, Ordering::Release);
                (worker as u16, 0)
            }
        };
        let inbox = Inbox::get(worker);
        let mut state = inbox.lock();
        state.reactor = Some(reactor);
        state.epoch = epoch;
        let incarnation = NEXT_INCARNATION.fetch_add(1, Ordering::Relaxed);
        state.incarnation = incarnation;
        drop(state);
        Ok(WorkerClaim {
            worker,
            epoch,
            incarnation,
            inbox,
        })
    }

    /// Returns the worker number for reuse; wakes still in flight for it
    /// are dropped, and tasks sent to it are cancelled: returns how many.
    /// For a claim whose worker never ran (a worker that ran stops with
    /// [`Executor::cancel_all_and_release`], which closes the inbox, cancels
    /// what its tasks' and the orphans' drops spawned on its thread, and
    /// only then frees the number).
    pub(crate) fn release(&'static self, worker: u16, epoch: u8) -> usize {
        let orphans = self.close();
        let cancelled = orphans.len();
        for task in orphans {
            // SAFETY: never polled; its future is `Send`, so dropping it
            // here is what its worker would have done.
            unsafe { task.cancel() };
            crate::worker::release_task(task);
        }
        self.free_number(worker, epoch);
        cancelled
    }

    /// Closes the inbox: from now on nothing sent to its worker from other
    /// threads is taken (a task sent is refused, and its `JoinHandle`
    /// reports `Cancelled`), and wakes in flight are dropped. Returns the
    /// tasks sent before and not taken in, the orphans, for the caller to
    /// cancel (outside the lock: their destructors may post to inboxes).
    /// The worker number stays claimed until [`free_number`](Self::free_number).
    pub(crate) fn close(&self) -> Vec<RawTask> {
        let (orphans, returned) = {
            let mut state = self.lock();
            state.woken.clear();
            state.timer_changes.clear();
            // The inbox is kept for the next worker of this number: a peak
            // of this one's is not kept with it.
            state.woken.shrink_to(INBOX_CAPACITY);
            state.timer_changes.shrink_to(INBOX_CAPACITY);
            state.usual_woken = UsualDrain::default();
            state.usual_timer_changes = UsualDrain::default();
            state.state_changed = false;
            state.reactor = None;
            self.returned_any.store(false, Ordering::Relaxed);
            self.adopting.store(false, Ordering::Relaxed);
            let returned = std::mem::take(&mut state.returned);
            (std::mem::take(&mut state.spawned), returned)
        };
        // Freed outside the pool, which is going.
        for block in returned {
            block.free(None);
        }
        orphans
    }

    /// Returns the worker number of a closed inbox for reuse: a later
    /// worker may claim it (and this inbox) from now on.
    pub(crate) fn free_number(&self, worker: u16, epoch: u8) {
        self.mailbox.reset_gate();
        FREE_WORKERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((worker, epoch));
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, InboxState> {
        self.mailbox.lock()
    }

    fn push(&self, addr: TaskAddr) {
        self.post(addr.epoch, |state| state.push_woken(addr));
    }

    /// The [`InboxState::incarnation`] of the worker that owns this inbox
    /// (read once, when its executor is built).
    pub(crate) fn incarnation(&self) -> u64 {
        self.lock().incarnation
    }

    /// Asks worker `worker`, if it is still `incarnation`, to remove a
    /// timer dropped elsewhere. (Checked by the full incarnation, not the
    /// epoch: a key is a slot and a generation of that worker's timer
    /// table, and a later owner's table reuses them, so a cancellation that
    /// reached it would remove another task's live timer.)
    pub(crate) fn cancel_timer(worker: u16, incarnation: u64, key: TimerKey) {
        Inbox::get(worker).post_if(
            |state| state.incarnation == incarnation,
            |state| state.timer_changes.push(TimerChange::Cancel(key)),
        );
    }

    /// Tells worker `worker`, if it is still `incarnation`, that the sleep
    /// whose timer `key` names was reset on another thread: the worker
    /// fires the timer at once, and the task waiting for it polls the
    /// sleep, which arms itself again for its new deadline (the deadline
    /// travels with the sleep, not in the message, so that a later reset
    /// on the owner always wins).
    pub(crate) fn timer_moved(worker: u16, incarnation: u64, key: TimerKey) {
        Inbox::get(worker).post_if(
            |state| state.incarnation == incarnation,
            |state| state.push_moved(key),
        );
    }

    /// Sends a task spawned elsewhere to worker `worker` if it is still
    /// `incarnation`; gives it back if that worker is gone. (By the full
    /// incarnation, as timer cancellations: a handle of a dropped runtime
    /// must not spawn into a later owner of the number whose epoch came
    /// round to the same value.)
    pub(crate) fn spawn(worker: u16, incarnation: u64, task: RawTask) -> Result<(), RawTask> {
        let mut task = Some(task);
        Inbox::get(worker).post_if(
            |state| state.incarnation == incarnation,
            |state| state.spawned.extend(task.take()),
        );
        match task {
            None => Ok(()),
            Some(task) => Err(task),
        }
    }

    /// Sends a block from worker `(worker, epoch)`'s task pool back to it;
    /// gives it back if that worker is gone. Does not wake the worker: it
    /// takes returned blocks in on its next loop turn, or when it next
    /// needs one.
    pub(crate) fn return_block(worker: u16, epoch: u8, block: FreeBlock) -> Result<(), FreeBlock> {
        let inbox = Inbox::get(worker);
        let mut state = inbox.lock();
        if state.reactor.is_none() || state.epoch != epoch {
            return Err(block); // that worker is gone
        }
        state.returned.push(block);
        inbox.returned_any.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Makes room for `blocks` returned blocks at once (called by the
    /// worker that owns this inbox when its pool allocates a fresh block),
    /// so that [`return_block`](Self::return_block) never allocates.
    #[cold]
    pub(crate) fn reserve_returned(&self, blocks: usize) {
        let mut state = self.lock();
        let len = state.returned.len();
        state.returned.reserve(blocks.saturating_sub(len));
    }

    /// `true` if other threads may have returned blocks since the last
    /// [`take_returned`](Self::take_returned).
    #[inline]
    pub(crate) fn has_returned(&self) -> bool {
        self.returned_any.load(Ordering::Relaxed)
    }

    /// Moves the blocks other threads returned into `pool` (called by the
    /// worker that owns this inbox, before it takes a block).
    #[inline]
    pub(crate) fn take_returned(&self, pool: &mut Pool) {
        if self.has_returned() {
            self.take_returned_slow(pool);
        }
    }

    #[cold]
    fn take_returned_slow(&self, pool: &mut Pool) {
        let mut state = self.lock();
        self.returned_any.store(false, Ordering::Relaxed);
        for block in state.returned.drain(..) {
            block.free(Some(pool));
        }
    }

    /// Tells worker `worker`, if it is still `incarnation`, that its
    /// runtime's shutdown state moved.
    pub(crate) fn state_changed(worker: u16, incarnation: u64) {
        Inbox::get(worker).post_if(
            |state| state.incarnation == incarnation,
            |state| state.state_changed = true,
        );
    }

    /// Leaves a message for the worker `epoch` (not called if that worker
    /// is gone) and wakes it if it sleeps.
    fn post(&self, epoch: u8, message: impl FnOnce(&mut InboxState)) {
        self.post_if(|state| state.epoch == epoch, message);
    }

    /// Leaves a message for the worker that owns the inbox if `is_it`
    /// recognises it (not called if no worker does), and wakes it if it
    /// sleeps.
    fn post_if(
        &self,
        is_it: impl FnOnce(&InboxState) -> bool,
        message: impl FnOnce(&mut InboxState),
    ) {
        let reactor = self.mailbox.post(
            |state| {
                if state.reactor.is_none() || !is_it(state) {
                    return false; // that worker is gone
                }
                message(state);
                true
            },
            |state| state.reactor.clone(),
        );
        if let Some(Some(reactor)) = reactor {
            if let Err(e) = reactor.wake() {
                tracing::error!(error = %e, "failed to wake a worker's reactor");
            }
        }
    }

    /// `true` if other threads left messages not yet drained.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        self.mailbox.has_pending()
    }

    /// How many tasks sent to worker `worker` wait in its inbox, not taken
    /// in yet. From any thread; takes the lock.
    pub(crate) fn spawned_waiting(worker: u16) -> usize {
        Inbox::get(worker).lock().spawned.len()
    }

    /// `true` if worker `worker`'s inbox holds no message and the worker
    /// is not taking spawned tasks in: every task sent there so far is
    /// then counted in the worker's published gauges, which the caller
    /// reads after this. From any thread; takes the lock.
    pub(crate) fn quiet(worker: u16) -> bool {
        let inbox = Inbox::get(worker);
        // Under the lock: the worker lowers `pending` and raises
        // `adopting` in one critical section.
        let _state = inbox.lock();
        !inbox.mailbox.has_pending() && !inbox.adopting.load(Ordering::Acquire)
    }

    /// Hands every message left by other threads to `executor`.
    #[inline]
    pub(crate) fn drain(&self, executor: &Executor) {
        if self.mailbox.has_pending() {
            self.drain_slow(executor);
        }
    }

    #[cold]
    fn drain_slow(&self, executor: &Executor) {
        let (mut arrivals, mut timer_changes, room, state_changed) = self.mailbox.take(|state| {
            let taken = Self::take_messages(state, executor);
            if !taken.0.is_empty() {
                self.adopting.store(true, Ordering::Relaxed);
            }
            taken
        });
        if !timer_changes.is_empty() {
            // Out of the lock: waking a timer's waker may run any code
            // (another executor's), which may post to this inbox.
            executor.apply_timer_changes(&mut timer_changes);
        }
        shrink_after_drain(&mut timer_changes, room);
        *executor.timer_changes.borrow_mut() = timer_changes;
        if !arrivals.is_empty() {
            for task in arrivals.drain(..) {
                executor.adopt(task, HandleOut::Maybe);
            }
            // The tasks are in the gauges before `quiet` can say so.
            executor.publish();
            self.adopting.store(false, Ordering::Release);
        }
        *executor.arrivals.borrow_mut() = arrivals;
        if state_changed && executor.shared.draining() {
            executor.begin_shutdown();
        }
    }

    /// Under the lock: schedules the woken tasks, and hands back the
    /// spawned tasks and the timer changes (both taken in after the lock
    /// is released), the room the timer changes' list keeps once applied
    /// ([`shrink_after_drain`]) and whether the shutdown state moved.
    fn take_messages(
        state: &mut InboxState,
        executor: &Executor,
    ) -> (Vec<RawTask>, Vec<TimerChange>, usize, bool) {
        let (room, _) = state.usual_woken.note(state.woken.len());
        for addr in state.woken.drain(..) {
            executor.schedule(addr);
        }
        shrink_after_drain(&mut state.woken, room);
        // As the spawned tasks below: the lists trade places, and the one
        // left here gets room for as many as came, so neither allocates
        // but at a new peak; but not for a burst far above the usual
        // (another one regrows it), and a list far larger than the usual
        // gives its memory back (the other one does once it has been
        // applied, in `drain_slow`).
        let mut timer_changes = std::mem::take(&mut *executor.timer_changes.borrow_mut());
        std::mem::swap(&mut state.timer_changes, &mut timer_changes);
        let (room, burst) = state.usual_timer_changes.note(timer_changes.len());
        if !burst && state.timer_changes.capacity() < timer_changes.len() {
            state.timer_changes.reserve(timer_changes.len());
        } else {
            shrink_after_drain(&mut state.timer_changes, room);
        }
        // Taken in after the lock is released (see `Executor::arrivals`);
        // the two vectors trade places, so neither allocates.
        let mut arrivals = std::mem::take(&mut *executor.arrivals.borrow_mut());
        std::mem::swap(&mut state.spawned, &mut arrivals);
        // The list that takes the next spawns gets room for as many as just
        // came: otherwise, as the two trade places, a burst as large as the
        // last grew whichever list had not grown yet, at every other peak.
        // This allocates only at a new peak.
        if state.spawned.capacity() < arrivals.len() {
            state.spawned.reserve(arrivals.len());
        }
        (
            arrivals,
            timer_changes,
            room,
            std::mem::take(&mut state.state_changed),
        )
    }

    /// Declares that the worker is about to block in its reactor. Returns
    /// `false` (and does not sleep) if messages arrived meanwhile: the
    /// caller must drain them first.
    #[inline]
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.mailbox.prepare_sleep()
    }

    /// The worker is awake again: other threads need not wake the reactor.
    #[inline]
    pub(crate) fn woke_up(&self) {
        self.mailbox.woke_up();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_the_data_word() {
        let addr = TaskAddr {
            worker: 4095,
            epoch: 200,
            slot: MAX_TASKS,
            generation: (1 << GEN_BITS) - 1,
        };
        assert_eq!(TaskAddr::unpack(addr.pack()), addr);
        let small = TaskAddr {
            worker: 1,
            epoch: 2,
            slot: 3,
            generation: 4,
        };
        assert_eq!(TaskAddr::unpack(small.pack()), small);
    }

    #[test]
    fn generations_compare_truncated() {
        let addr = TaskAddr {
            worker: 0,
            epoch: 0,
            slot: 0,
            generation: 5,
        };
        assert!(addr.names_generation(5));
        assert!(addr.names_generation(5 + (1 << GEN_BITS)));
        assert!(!addr.names_generation(6));
    }

    #[test]
    fn woken_lists_each_task_once_and_stays_bounded() {
        let mut state = InboxState::new();
        let addr = |slot| TaskAddr::new(0, 0, slot, 1);
        // 200 distinct tasks woken in turn, 50 times over.
        for _ in 0..50 {
            for slot in 0..200 {
                state.push_woken(addr(slot));
                state.push_woken(addr(slot));
            }
        }
        assert!(
            state.woken.capacity() <= 2 * 512,
            "{}",
            state.woken.capacity()
        );
        let mut listed: Vec<u32> = state.woken.iter().map(|a| a.slot).collect();
        listed.sort_unstable();
        listed.dedup();
        assert_eq!(listed, (0..200).collect::<Vec<_>>(), "none lost");
        // Another generation of a slot is another wake: kept.
        state.woken.clear();
        state.push_woken(addr(7));
        state.push_woken(TaskAddr::new(0, 0, 7, 2));
        assert_eq!(state.woken.len(), 2);
    }

    #[test]
    fn timer_changes_list_each_moved_timer_once_and_keep_each_timers_order() {
        let mut state = InboxState::new();
        let key = |slot| TimerKey {
            slot,
            generation: 1,
        };
        // One watchdog pushed back again and again: one entry.
        for _ in 0..10_000 {
            state.push_moved(key(0));
        }
        assert_eq!(state.timer_changes, [TimerChange::Moved(key(0))]);
        // 200 timers moved in turn, 50 times over, and then 100 of them
        // dropped (each cancelled once).
        for _ in 0..50 {
            for slot in 0..200 {
                state.push_moved(key(slot));
            }
        }
        for slot in 0..100 {
            state.timer_changes.push(TimerChange::Cancel(key(slot)));
        }
        state.push_moved(key(150));
        assert!(
            state.timer_changes.capacity() <= 2 * 512,
            "{}",
            state.timer_changes.capacity()
        );
        // Each timer's changes, in order: its `Moved` (once or more, none
        // lost), then its `Cancel`.
        for slot in 0..200 {
            let of_it: Vec<_> = state
                .timer_changes
                .iter()
                .filter(|c| c.order().0 == slot)
                .copied()
                .collect();
            let moved = TimerChange::Moved(key(slot));
            assert_eq!(of_it.first(), Some(&moved), "timer {slot}");
            let mut rest = of_it.iter().skip_while(|&&c| c == moved);
            if slot < 100 {
                assert_eq!(rest.next(), Some(&TimerChange::Cancel(key(slot))));
            }
            assert_eq!(rest.next(), None, "timer {slot}: {of_it:?}");
        }
        // Another generation of a slot is another timer: kept.
        state.timer_changes.clear();
        state.push_moved(key(7));
        state.push_moved(TimerKey {
            slot: 7,
            generation: 2,
        });
        assert_eq!(state.timer_changes.len(), 2);
    }

    #[test]
    fn a_drained_list_far_above_what_it_took_gives_its_memory_back() {
        let drained = |usual: &mut UsualDrain, capacity: usize, taken: usize| {
            let mut list: Vec<u64> = Vec::with_capacity(capacity);
            let (room, _) = usual.note(taken);
            shrink_after_drain(&mut list, room);
            list.capacity()
        };
        // A one-off burst is given back by the drain that took it.
        let mut usual = UsualDrain::default();
        assert_eq!(drained(&mut usual, 128, 10), 128);
        let kept = drained(&mut usual, 131_072, 100_000);
        assert!((INBOX_CAPACITY..=SHRINK_ABOVE).contains(&kept), "{kept}");
        // Drains of about the same size, however large, keep their room
        // (a steady flow allocates nothing), as do drains of nothing in
        // between.
        assert_eq!(drained(&mut usual, 131_072, 100_000), 131_072);
        assert_eq!(drained(&mut usual, 131_072, 0), 131_072);
        assert_eq!(drained(&mut usual, 131_072, 90_000), 131_072);
        // Far above what the recent drains took: given back.
        for _ in 0..8 {
            drained(&mut usual, 0, 10);
        }
        let kept = drained(&mut usual, 131_072, 10);
        assert!((INBOX_CAPACITY..=SHRINK_ABOVE).contains(&kept), "{kept}");
        // Small: kept.
        let mut usual = UsualDrain::default();
        assert_eq!(drained(&mut usual, SHRINK_ABOVE, 0), SHRINK_ABOVE);
    }

    /// Whether worker number `worker` at `epoch` was released: it is on the
    /// free list, or another claim (of a test running beside this one) has
    /// taken it since, which bumped its inbox's epoch. Unreleased, neither
    /// can happen: nobody else can claim a number that is not free.
    fn released(worker: u16, epoch: u8) -> bool {
        let free = FREE_WORKERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&(worker, epoch));
        free || Inbox::get(worker).lock().epoch != epoch
    }

    fn reactor() -> cellio_reactor::Reactor {
        cellio_reactor::Reactor::with_event_capacity(8).unwrap()
    }

    #[test]
    fn a_claim_dropped_unused_returns_its_worker_number() {
        let reactor = reactor();
        let claim = Inbox::claim(reactor.handle()).unwrap();
        let (worker, epoch, _) = claim.parts();
        assert!(!released(worker, epoch));
        drop(claim);
        assert!(released(worker, epoch));
    }

    #[test]
    fn a_claim_handed_over_stays_claimed_until_released() {
        let reactor = reactor();
        let claim = Inbox::claim(reactor.handle()).unwrap();
        let (worker, epoch, inbox) = claim.parts();
        claim.hand_over();
        assert!(!released(worker, epoch));
        assert_eq!(inbox.release(worker, epoch), 0);
        assert!(released(worker, epoch));
    }
}
