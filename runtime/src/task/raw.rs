//! A spawned task's memory block and the protocol between the task and its
//! `JoinHandle`.
//!
//! ```text
//! block (from the worker's pool or the system allocator)
//! +--------------------------------------------+
//! | Header:  refs + abort flags, class, stage, |
//! |          home worker, address, join cell,  |
//! |          vtable, runner                    |
//! | Payload: the future        (stage Running) |
//! |        | Result<output, JoinError>         |
//! |                           (stage Finished) |
//! |        | nothing           (stage Taken)   |
//! +--------------------------------------------+
//! ```
//!
//! The stage tag lives in the header, in what would otherwise be padding,
//! rather than in an enum around the payload: the future then starts right
//! after the header (an enum's tag would take a word of its own there), so
//! its first bytes share the header's cache line.
//!
//! # Invariants
//!
//! * **Two references** at spawn: the worker's task table and the
//!   `JoinHandle`, the block's two *owners*; each `AbortHandle` holds one
//!   more, which owns nothing. Whoever drops the count to zero frees the
//!   block (Release on every decrement, Acquire before freeing: the `Arc`
//!   protocol). An `AbortHandle` touches only the header (the flags, the
//!   address, the join cell's word), never the payload.
//! * **The payload is dropped by the second owner to leave**, before it
//!   gives up its reference (one bit of the word says that one owner has
//!   left): the worker, on its thread, if the task ends
//!   after its `JoinHandle` was dropped; the `JoinHandle`, on its thread,
//!   if it is dropped after the task ended without taking the output.
//!   Never an `AbortHandle`: a `spawn_local` task's output need not be
//!   `Send` (its `JoinHandle` is then not `Send` either, and stays on the
//!   worker's thread), and an `AbortHandle` may be dropped on any thread.
//! * **The future is touched only by the owning worker**: polled there,
//!   dropped there (when it completes, or by `cancel` when the runtime shuts
//!   down). The task's reference is released only after the stage left
//!   `Running`, so the last reference, wherever it is, never drops a future.
//! * **The stage names the live payload**: the future while `Running`, the
//!   output while `Finished`, nothing while `Taken`. It changes only with
//!   the payload (to `Taken` before a payload is dropped or moved out, so a
//!   panicking destructor cannot lead to a second drop), by whoever may
//!   touch the payload at that moment (the rules above and below).
//! * **Destructors may panic; the worker does not unwind.** A panic from
//!   the future's destructor, when it completes or is cancelled, becomes the
//!   task's result (`JoinError::Panicked`), as a panic in `poll` does; one
//!   from an output dropped with the block (nobody took it) is swallowed.
//! * **The output** is written once, by the worker, before the join cell is
//!   notified (AcqRel CAS), and taken once, by the handle, after it observed
//!   that notification (Acquire): the cell orders the hand-over, exactly as
//!   it orders a socket's readiness.
//! * **An abort is never lost.** The reference count shares one word
//!   (`control`) with two flags: `ABORT`, set by a handle, and
//!   `PUBLISHED`, set by the worker once the task has a slot and the
//!   header holds its waker's address. Both are set by read-modify-writes
//!   of that one word (or, for a task spawned on its own worker, whose
//!   handle does not exist yet, `PUBLISHED` by a plain store that
//!   happens before the handle can be used anywhere), so one of the two
//!   comes second and sees the other:
//!   either the handle sees `PUBLISHED` and wakes the task at the address
//!   (whose next poll sees `ABORT`), or the worker's publication sees
//!   `ABORT`, and the task's first poll, which always follows, sees it too.
//!   A poll that sees `ABORT` drops the future instead of polling it and
//!   records [`JoinError::Aborted`]; a task that finished first keeps its
//!   output.

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

use cellio_reactor::OpCell;

use crate::join::JoinError;
use crate::sync::{fence, AtomicU16, AtomicU64, Ordering, TrackedUnsafeCell};
use crate::task::pool::{alloc_layout, class_layout, Pool};
use crate::worker::{run_tasks_of, RunFn};

/// Marks a block allocated with its exact layout, outside the pool.
const NOT_POOLED: u8 = u8::MAX;

/// `control`: the handle asked for the task to be aborted.
const ABORT: u16 = 1;
/// `control`: `address` holds the task's waker word.
const PUBLISHED: u16 = 1 << 1;
/// `control`: one of the two owners (module invariants: the task table
/// and the `JoinHandle`) has given up its reference, so the other's
/// release is the second. One bit, not a count, so that the references
/// keep 13 bits.
const OWNER_LEFT: u16 = 1 << 2;
/// `control`: one counted reference. Two at spawn (the task table's and
/// the `JoinHandle`'s), one more per `AbortHandle`.
const REF: u16 = 1 << 3;
/// `control`: the bits that count references (all above the flags and
/// the owners).
const REFS: u16 = !(REF - 1);
/// More references than this (4 095) and [`RawTask::clone_ref`] aborts the
/// process, as `Arc` does on overflow: the count must never wrap into a
/// block freed under its holders. Far above any real use (each is an
/// `AbortHandle` of one task kept alive at once).
const MAX_REFS: u16 = REFS / REF / 2;

/// The `home` of a block allocated off any worker (`spawn_on` from a plain
/// thread): it goes back to the system allocator. No worker has this
/// number (they are below `MAX_WORKERS`).
pub(crate) const NO_HOME: (u16, u8) = (u16::MAX, 0);

/// A task block's header. `repr(C)` with `poll` last: a poll reads that
/// function pointer, the stage tag and then the payload right after the
/// header, so in a pooled (64-byte aligned) block all three start in one
/// cache line as long as the header does not end on a line boundary
/// (asserted below), and the vtable (in read-only data, a line of its own)
/// is not read at all. The other fields are touched when the task ends or
/// is joined.
#[repr(C)]
pub(crate) struct Header {
    /// The reference count (`REFS`), `OWNER_LEFT` and the `ABORT` and
    /// `PUBLISHED` flags (module invariants).
    control: AtomicU16,
    class: u8,
    /// Which payload is live (module invariants). Written by the worker
    /// while the task runs, by the join handle after the notification, by
    /// the last reference when it drops the payload. Every payload access
    /// reads or writes it first, so under loom, where its cell is tracked,
    /// the model checker proves those accesses ordered.
    stage: TrackedUnsafeCell<Stage>,
    /// The worker whose pool the block came from and returns to, as
    /// `(worker, epoch)`, or [`NO_HOME`]. The worker that spawned the task:
    /// for a task sent to another worker (`spawn_on`), the sender.
    pub(crate) home: (u16, u8),
    /// The packed waker word of the task's slot on the worker that runs
    /// it; meaningful once `control` has `PUBLISHED` (which orders it).
    address: AtomicU64,
    /// Notified once the stage is `Finished`; reserved by the `JoinHandle`.
    pub(crate) join: OpCell,
    vtable: &'static VTable,
    /// [`run_tasks_of::<F>`](run_tasks_of), out of the vtable: the worker's
    /// loop for tasks of this block's future type, which the worker calls
    /// to poll it (and the same-type tasks queued behind it). Two blocks
    /// with equal runners are polled by the same code.
    runner: RunFn,
}

/// `runner` ends the header (so it is adjacent to the payload of any block
/// whose payload is at most 8-aligned), and the header does not end on a
/// cache-line boundary (so the two share the line `runner` is in).
const _: () = {
    let size = std::mem::size_of::<Header>();
    assert!(std::mem::offset_of!(Header, runner) + std::mem::size_of::<RunFn>() == size);
    // Not under loom, whose atomics (in the join cell) are much larger.
    #[cfg(not(loom))]
    assert!(size < 64, "a poll would read two lines of the block");
};

struct VTable {
    /// `poll::<F>`, for unit tests, which poll blocks without a worker
    /// (the worker reaches the poll through the header's runner, the
    /// blocking pool through a typed function queued with each job). Not
    /// in other builds: a vtable entry makes every task type's `poll` a
    /// function of its own, and with it the echo example's connection loop
    /// compiled to 49 instructions more per message (callgrind).
    #[cfg(test)]
    poll: unsafe fn(NonNull<Header>, &mut Context<'_>) -> Poll<()>,
    cancel: unsafe fn(NonNull<Header>),
    take_output: unsafe fn(NonNull<Header>, *mut ()),
    drop_payload: unsafe fn(NonNull<Header>),
    drop_contents: unsafe fn(NonNull<Header>),
    layout: Layout,
}

/// The vtable of `Block<F>`, as a constant so `&VTABLE` is `'static`.
struct VTableOf<F>(PhantomData<F>);

impl<F: Future> VTableOf<F> {
    const VTABLE: VTable = VTable {
        #[cfg(test)]
        poll: poll::<F>,
        cancel: cancel::<F>,
        take_output: take_output::<F>,
        drop_payload: drop_payload::<F>,
        drop_contents: drop_contents::<F>,
        layout: Layout::new::<Block<F>>(),
    };
}

/// Which member of a block's [`Payload`] is live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Stage {
    /// The future, not yet complete.
    Running,
    /// The output (or the panic or cancellation in its place).
    Finished,
    /// Nothing: the output was taken, or a payload is being dropped.
    Taken,
}

/// A block's payload; the header's stage says which member is live, and
/// the code that changes the stage drops or moves out the member.
union Payload<F: Future> {
    future: ManuallyDrop<F>,
    output: ManuallyDrop<Result<F::Output, JoinError>>,
}

#[repr(C)]
struct Block<F: Future> {
    header: Header,
    payload: UnsafeCell<Payload<F>>,
}

impl Header {
    /// # Safety
    ///
    /// The caller may touch the payload now (module invariants).
    #[inline]
    unsafe fn stage(&self) -> Stage {
        // SAFETY: the caller's contract: nobody writes the tag meanwhile.
        self.stage.with(|stage| unsafe { *stage })
    }

    /// # Safety
    ///
    /// As for [`stage`](Self::stage), and the payload's live member is the
    /// one `stage` names by the time anyone else can look.
    #[inline]
    unsafe fn set_stage(&self, stage: Stage) {
        // SAFETY: the caller's contract.
        self.stage.with_mut(|cell| unsafe { *cell = stage })
    }
}

/// Memory for one block of `F`, not yet written: from
/// [`RawTask::allocate`], for [`RawTask::init`].
pub(crate) struct BlockMemory<F> {
    class: u8,
    memory: NonNull<u8>,
    _future: PhantomData<fn(F)>,
}

impl<F> BlockMemory<F> {
    fn new(class: u8, memory: NonNull<u8>) -> Self {
        BlockMemory {
            class,
            memory,
            _future: PhantomData,
        }
    }

    /// `true` if the block has a pool class: only such a block goes back
    /// to its home's pool (through the home's inbox, from another thread).
    #[inline]
    pub(crate) fn is_pooled(&self) -> bool {
        self.class != NOT_POOLED
    }
}

/// One counted reference to a task block.
pub(crate) struct RawTask {
    ptr: NonNull<Header>,
}

// SAFETY: a `RawTask` reference only reaches the header (atomics, an
// `OpCell`) from any thread; the future is reached only through `poll` and
// `cancel`, which the runtime calls on the owning worker (module
// invariants).
unsafe impl Send for RawTask {}

impl RawTask {
    /// Moves `future` into a new block with two references (task table and
    /// join handle). `pool: None` means the system allocator.
    #[cfg(test)]
    pub(crate) fn new<F: Future>(
        future: F,
        home: (u16, u8),
        pool: Option<&mut Pool>,
    ) -> (RawTask, RawTask) {
        let memory = Self::allocate::<F>(pool);
        Self::init(memory, future, home)
    }

    /// Memory for a block of `F`: from `pool` (if its classes fit `F`) or
    /// the system allocator.
    ///
    /// Spawning allocates first and then moves the future into the memory
    /// with [`init`](Self::init), with nothing between that could unwind:
    /// a future moved before an allocation (which may panic) must be kept
    /// where the unwinding path can drop it, and that place is one more
    /// copy of the whole future (16 KiB for the echo example's
    /// connections, copied three times per connection before this order).
    #[inline]
    pub(crate) fn allocate<F: Future>(pool: Option<&mut Pool>) -> BlockMemory<F> {
        let layout = Layout::new::<Block<F>>();
        let (class, memory) = match pool {
            Some(pool) => match pool.class_for(layout) {
                Some(class) => (class, pool.take(class)),
                None => {
                    pool.count_unpooled();
                    (NOT_POOLED, alloc_layout(layout))
                }
            },
            None => (NOT_POOLED, alloc_layout(layout)),
        };
        BlockMemory::new(class, memory)
    }

    /// Writes the header and then `future` into `memory`, each straight to
    /// its place (a whole `Block` built first would be one more copy of
    /// the future, on the stack); returns two references (task table and
    /// join handle). `home` is the worker whose pool `memory` came from.
    #[inline(always)]
    pub(crate) fn init<F: Future>(
        memory: BlockMemory<F>,
        future: F,
        home: (u16, u8),
    ) -> (RawTask, RawTask) {
        let BlockMemory { class, memory, .. } = memory;
        let block = memory.cast::<Block<F>>();
        // SAFETY: a `BlockMemory<F>` (made only by `allocate`) is unused
        // memory of `Block<F>`'s size and alignment at least (class layouts
        // are 64-aligned, for `align <= 64`), moved in: no one else has it.
        unsafe {
            let block = block.as_ptr();
            (&raw mut (*block).header).write(Header {
                control: AtomicU16::new(2 * REF),
                class,
                stage: TrackedUnsafeCell::new(Stage::Running),
                home,
                address: AtomicU64::new(0),
                join: OpCell::new(),
                vtable: &VTableOf::<F>::VTABLE,
                runner: run_tasks_of::<F>,
            });
            // Only places are named here, nothing is read; `ManuallyDrop`
            // is `repr(transparent)`.
            let payload = UnsafeCell::raw_get(&raw const (*block).payload);
            (&raw mut (*payload).future).cast::<F>().write(future);
        }
        let ptr = block.cast::<Header>();
        (RawTask { ptr }, RawTask { ptr })
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the block lives while a reference (this one) exists.
        unsafe { self.ptr.as_ref() }
    }

    /// The task's id: its block's address (see `crate::task_id`).
    pub(crate) fn id(&self) -> crate::TaskId {
        self.by_ref().id()
    }

    /// An uncounted reference to the task, for polling it while this
    /// reference stays where it is (in the task table).
    #[inline]
    pub(crate) fn by_ref(&self) -> TaskRef {
        TaskRef { ptr: self.ptr }
    }

    /// Drops an unfinished future, recording `JoinError::Cancelled`.
    ///
    /// # Safety
    ///
    /// As for [`TaskRef::poll_as`].
    pub(crate) unsafe fn cancel(&self) {
        // SAFETY: forwarded contract.
        unsafe { (self.header().vtable.cancel)(self.ptr) }
    }

    /// One more counted reference to the block (an `AbortHandle`'s).
    ///
    /// Relaxed, as `Arc::clone`: the new reference is made from one that
    /// is held, so the block cannot be freed meanwhile, and handing it to
    /// another thread orders it there.
    pub(crate) fn clone_ref(&self) -> RawTask {
        let before = self.header().control.fetch_add(REF, Ordering::Relaxed);
        if before / REF >= MAX_REFS {
            // Unreachable without leaking handles by the thousand; a
            // wrapped count would free the block under its holders.
            std::process::abort();
        }
        RawTask { ptr: self.ptr }
    }

    /// Asks for the task to be aborted. Returns the waker word to wake it
    /// with if its worker published one; if not, the worker has not taken
    /// the task in yet and its first poll will see the request.
    pub(crate) fn request_abort(&self) -> Option<u64> {
        let header = self.header();
        // Acquire: the address published before `PUBLISHED`.
        let seen = header.control.fetch_or(ABORT, Ordering::Acquire);
        (seen & PUBLISHED != 0).then(|| header.address.load(Ordering::Relaxed))
    }

    /// Moves the output out into `out`, which must point to an
    /// `Option<Result<F::Output, JoinError>>` for this task's `F`.
    ///
    /// # Safety
    ///
    /// The caller is the join handle, it observed the join cell's
    /// notification, and `out` has the right type.
    pub(crate) unsafe fn take_output(&self, out: *mut ()) {
        // SAFETY: forwarded contract.
        unsafe { (self.header().vtable.take_output)(self.ptr, out) }
    }

    /// Gives up an owner's reference (the task table's or the
    /// `JoinHandle`'s). The second owner to leave drops the payload (an
    /// output, or nothing) on this thread; the last reference returns the
    /// block's memory, to be freed with [`FreeBlock::free`] — after the
    /// drop, so that user destructors run while no pool is borrowed.
    #[must_use = "the last reference must free the block"]
    pub(crate) fn release(self) -> Option<FreeBlock> {
        let control = &self.header().control;
        let mut seen = control.load(Ordering::Relaxed);
        loop {
            if seen & OWNER_LEFT != 0 {
                // The second owner to leave. With an `AbortHandle` still
                // out, the payload is dropped here, not wherever that
                // handle goes, while our reference keeps the block. (With
                // none, no reference can be made any more, and the last
                // reference's release below drops it.)
                if seen & REFS != REF {
                    // Acquire: the other owner's uses of the payload
                    // (before its Release below) happen before the drop.
                    fence(Ordering::Acquire);
                    // SAFETY: both owners have left, and nobody else
                    // touches the payload; the stage is not `Running` (the
                    // task table leaves only after the task ended).
                    unsafe { (self.header().vtable.drop_payload)(self.ptr) };
                }
                // Release: the drop happens before whoever frees the block.
                let before = control.fetch_sub(REF, Ordering::Release);
                return self.last_reference(before);
            }
            // The first owner to leave (the other still holds a reference,
            // so this is not the last). Release: our uses of the block
            // happen before whoever drops the payload or frees it.
            match control.compare_exchange_weak(
                seen,
                (seen | OWNER_LEFT) - REF,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(before) => return self.last_reference(before),
                Err(now) => seen = now,
            }
        }
    }

    /// Gives up an `AbortHandle`'s reference, which owns nothing: if it was
    /// the last, the owners have dropped the payload, and only the memory
    /// is returned, as by [`release`](Self::release).
    #[must_use = "the last reference must free the block"]
    pub(crate) fn release_extra(self) -> Option<FreeBlock> {
        // Release: as in `release`.
        let before = self.header().control.fetch_sub(REF, Ordering::Release);
        debug_assert!(
            before & REFS != REF || before & OWNER_LEFT != 0,
            "an owner outlived every reference"
        );
        self.last_reference(before)
    }

    /// After a decrement from `before`: frees the block if that was the
    /// last reference.
    fn last_reference(self, before: u16) -> Option<FreeBlock> {
        let ptr = self.ptr;
        if before & REFS != REF {
            return None;
        }
        // Acquire: everything the other references did happens before this.
        fence(Ordering::Acquire);
        // SAFETY: we held the last reference: nobody else can reach the
        // block. The stage is not `Running` (invariant 2), so dropping the
        // payload drops only an output or nothing.
        unsafe {
            let vtable = ptr.as_ref().vtable;
            let class = ptr.as_ref().class;
            (vtable.drop_contents)(ptr);
            Some(FreeBlock {
                memory: ptr.cast(),
                class,
                layout: vtable.layout,
            })
        }
    }
}

/// An uncounted reference to a task block: what the worker polls while the
/// counted [`RawTask`] stays in its task table.
#[derive(Clone, Copy)]
pub(crate) struct TaskRef {
    ptr: NonNull<Header>,
}

impl TaskRef {
    /// The worker loop for this task's future type (see [`Header`]).
    ///
    /// # Safety
    ///
    /// The counted reference this was taken from is held, so the block is
    /// alive.
    #[inline]
    pub(crate) unsafe fn runner(self) -> RunFn {
        // SAFETY: the caller's contract; `runner` never changes.
        unsafe { self.ptr.as_ref().runner }
    }

    /// Records where the task's waker points (`address`, a packed waker
    /// word), so that an abort can wake it. The worker that runs the task
    /// calls this once, when it gives the task a slot and before its first
    /// poll.
    ///
    /// # Safety
    ///
    /// The counted reference this was taken from is held, so the block is
    /// alive.
    pub(crate) unsafe fn publish_address(self, address: u64) {
        // SAFETY: the caller's contract.
        let header = unsafe { self.ptr.as_ref() };
        header.address.store(address, Ordering::Relaxed);
        // Release: the address before the flag (for `request_abort`'s
        // Acquire). An `ABORT` already set is seen by the first poll.
        header.control.fetch_or(PUBLISHED, Ordering::Release);
    }

    /// [`publish_address`](Self::publish_address) without a locked
    /// instruction, for a task whose `JoinHandle` nobody has yet (a local
    /// `spawn`, before it returns the handle).
    ///
    /// # Safety
    ///
    /// As for `publish_address`, and no other thread can reach the block
    /// until this returns (its other reference is not out yet).
    pub(crate) unsafe fn publish_address_unshared(self, address: u64) {
        // SAFETY: the caller's contract.
        let header = unsafe { self.ptr.as_ref() };
        header.address.store(address, Ordering::Relaxed);
        // Nothing else writes `control` until the handle is out, and the
        // handle leaves this thread only through something that orders
        // these stores before its use there.
        let control = header.control.load(Ordering::Relaxed);
        header.control.store(control | PUBLISHED, Ordering::Relaxed);
    }

    /// Polls the future, an `F`; `Ready` once the stage is no longer
    /// `Running`. A direct call: the worker's loop for `F`s inlines it.
    ///
    /// # Safety
    ///
    /// The block's future type is `F` (its runner is `run_tasks_of::<F>`).
    /// Only the owning worker calls this, never concurrently with itself or
    /// `cancel`; and the counted reference this was taken from is held (not
    /// released) until the poll returns, so the block is alive throughout.
    #[inline(always)]
    pub(crate) unsafe fn poll_as<F: Future>(self, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: the caller's contract.
        unsafe { poll::<F>(self.ptr, cx) }
    }

    /// Drops an unfinished future, recording `JoinError::Cancelled`, as
    /// [`RawTask::cancel`] does, while the counted reference stays where
    /// it is (in the task table).
    ///
    /// # Safety
    ///
    /// As for [`poll_as`](Self::poll_as), without the type.
    pub(crate) unsafe fn cancel(self) {
        // SAFETY: forwarded contract.
        unsafe { (self.ptr.as_ref().vtable.cancel)(self.ptr) }
    }

    /// The task's id: its block's address, as [`RawTask::id`].
    pub(crate) fn id(self) -> crate::TaskId {
        let address = self.ptr.as_ptr().addr() as u64;
        crate::TaskId::from_address(
            std::num::NonZeroU64::new(address).expect("a block's address is not 0"),
        )
    }

    /// Polls the future, whatever its type, through the vtable: for unit
    /// tests, which have no worker.
    ///
    /// # Safety
    ///
    /// As for [`poll_as`](Self::poll_as), without the type.
    #[cfg(test)]
    pub(crate) unsafe fn poll(self, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: the caller's contract.
        unsafe { (self.ptr.as_ref().vtable.poll)(self.ptr, cx) }
    }
}

/// The memory of a task block whose contents were dropped.
pub(crate) struct FreeBlock {
    memory: NonNull<u8>,
    class: u8,
    layout: Layout,
}

// SAFETY: a `FreeBlock` is memory nobody else can reach (its contents were
// dropped by the last reference's `release`); whoever holds it may free it
// on any thread, to the system allocator or its home worker's pool.
unsafe impl Send for FreeBlock {}

impl FreeBlock {
    /// `true` if the block has a pool class (else it was allocated with
    /// its exact layout and only the system allocator takes it).
    pub(crate) fn is_pooled(&self) -> bool {
        self.class != NOT_POOLED
    }

    /// Returns the memory to `pool` (its home's, on the home's thread) or
    /// to the system allocator.
    pub(crate) fn free(self, pool: Option<&mut Pool>) {
        // SAFETY: the block was allocated with `layout` (not pooled) or its
        // class layout (pooled, module invariant of `pool`), and its
        // contents were dropped by `release`.
        unsafe {
            match (self.class, pool) {
                (NOT_POOLED, _) => std::alloc::dealloc(self.memory.as_ptr(), self.layout),
                (class, Some(pool)) => pool.give_back(class, self.memory),
                (class, None) => std::alloc::dealloc(self.memory.as_ptr(), class_layout(class)),
            }
        }
    }
}

/// # Safety
///
/// `ptr` heads a live `Block<F>`; called by the owning worker only.
#[inline(always)]
unsafe fn poll<F: Future>(ptr: NonNull<Header>, cx: &mut Context<'_>) -> Poll<()> {
    // SAFETY: the caller's contract; the block never moves, so the future
    // is pinned in place.
    let block = unsafe { ptr.cast::<Block<F>>().as_ref() };
    // SAFETY: only the owning worker touches the stage while `Running`,
    // and only it moves the stage on from there.
    if unsafe { block.header.stage() } != Stage::Running {
        return Poll::Ready(());
    }
    // Relaxed: a request made before the wake that led to this poll (or
    // before the publication, on this thread) is seen (module invariants).
    if block.header.control.load(Ordering::Relaxed) & ABORT != 0 {
        // SAFETY: the caller's contract; `Running`, the future unborrowed.
        unsafe { complete::<F>(ptr, Err(JoinError::Aborted)) };
        return Poll::Ready(());
    }
    // SAFETY: `Running`: the future is the live member, and only this
    // worker reaches it; pinned in the block until dropped in place.
    let future = unsafe { Pin::new_unchecked(&mut *(*block.payload.get()).future) };
    let output = match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
        Ok(Poll::Pending) => return Poll::Pending,
        Ok(Poll::Ready(output)) => Ok(output),
        Err(panic) => Err(JoinError::Panicked(panic)),
    };
    // SAFETY: the caller's contract, as above.
    unsafe { complete::<F>(ptr, output) };
    Poll::Ready(())
}

/// Drops the future in place, then publishes the output. Out of line: a
/// task completes once, and keeping this out of `poll` leaves the pending
/// path fewer registers to save.
///
/// # Safety
///
/// As for [`poll`]; the stage is `Running` and the future is not borrowed.
#[cold]
#[inline(never)]
unsafe fn complete<F: Future>(ptr: NonNull<Header>, output: Result<F::Output, JoinError>) {
    // SAFETY: the caller's contract.
    let block = unsafe { ptr.cast::<Block<F>>().as_ref() };
    // SAFETY: the caller's contract: `Running`, the future unborrowed.
    unsafe { finish::<F>(block, output) };
}

/// Drops the future in place, stores `output` and notifies the join cell.
///
/// # Safety
///
/// The owning worker calls this, with the stage `Running` and the future
/// not borrowed.
unsafe fn finish<F: Future>(block: &Block<F>, output: Result<F::Output, JoinError>) {
    // SAFETY: the caller's contract: only this worker touches the payload
    // while `Running`. `Taken` first: the future is dropped next, and must
    // not be dropped again whatever its destructor does.
    let payload = unsafe {
        block.header.set_stage(Stage::Taken);
        &mut *block.payload.get()
    };
    // A destructor that panics makes the task's result that panic, as a
    // panic in `poll` does, and the worker carries on.
    // SAFETY: the future is the live member (stage was `Running`), dropped
    // once here.
    let output = match catch_unwind(AssertUnwindSafe(|| unsafe {
        ManuallyDrop::drop(&mut payload.future)
    })) {
        Ok(()) => output,
        Err(panic) => {
            drop_quietly(output);
            Err(JoinError::Panicked(panic))
        }
    };
    payload.output = ManuallyDrop::new(output);
    // SAFETY: as above; the output is now the live member.
    unsafe { block.header.set_stage(Stage::Finished) };
    notify_joiner(&block.header);
}

/// Wakes the `JoinHandle` parked on the task's join cell, if any,
/// swallowing a panic from its waker (as tokio does): the task is finished
/// and its output stored, so there is nobody to tell, and a panic let out
/// here would unwind through the worker before it freed the task's slot
/// (the task stayed counted live, a graceful shutdown waited out its grace
/// for it, and a runtime's drop stopped cancelling the tasks after it).
#[inline]
fn notify_joiner(header: &Header) {
    if catch_unwind(AssertUnwindSafe(|| header.join.notify())).is_err() {
        join_waker_panicked();
    }
}

#[cold]
#[inline(never)]
fn join_waker_panicked() {
    tracing::warn!("a JoinHandle's waker panicked when its task finished; the panic is ignored");
}

/// Drops `value`, swallowing a panic from its destructor: for payloads
/// nobody can be told about (a detached task's output, a future whose
/// destructor already panicked), on the worker's own stack.
#[cold]
fn drop_quietly<T>(value: T) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(value)));
}

/// # Safety
///
/// As for [`poll`].
unsafe fn cancel<F: Future>(ptr: NonNull<Header>) {
    // SAFETY: the caller's contract.
    let block = unsafe { ptr.cast::<Block<F>>().as_ref() };
    // SAFETY: only the owning worker touches the stage while `Running`,
    // and the caller's contract says it is that worker, not polling.
    if unsafe { block.header.stage() } == Stage::Running {
        // SAFETY: as just checked; the future is not borrowed (no poll runs).
        unsafe { finish::<F>(block, Err(JoinError::Cancelled)) };
    }
}

/// # Safety
///
/// `out` points to an `Option<Result<F::Output, JoinError>>`; the stage was
/// published by the join cell's notification, observed by the caller.
unsafe fn take_output<F: Future>(ptr: NonNull<Header>, out: *mut ()) {
    // SAFETY: the caller's contract.
    let block = unsafe { ptr.cast::<Block<F>>().as_ref() };
    // SAFETY: after the notification only the join handle touches the
    // payload (the worker wrote it before notifying and never again).
    unsafe {
        if block.header.stage() == Stage::Finished {
            block.header.set_stage(Stage::Taken);
            let output = ManuallyDrop::take(&mut (*block.payload.get()).output);
            // The caller's contract on `out`'s type.
            *out.cast::<Option<Result<F::Output, JoinError>>>() = Some(output);
        }
    }
}

/// Drops whatever payload is live, then the header.
///
/// # Safety
///
/// The caller holds the last reference to a `Block<F>` at `ptr`.
unsafe fn drop_contents<F: Future>(ptr: NonNull<Header>) {
    let block = ptr.cast::<Block<F>>().as_ptr();
    // SAFETY: the caller's contract: exclusive access, and this runs once:
    // the payload, then the header (its join cell may hold a waker).
    unsafe {
        drop_payload::<F>(ptr);
        std::ptr::drop_in_place(&raw mut (*block).header);
    }
}

/// Drops whatever payload is live, leaving the stage `Taken`.
///
/// # Safety
///
/// The caller may touch the payload: it holds the last reference to a
/// `Block<F>` at `ptr`, or it is the second owner to leave (module
/// invariants).
unsafe fn drop_payload<F: Future>(ptr: NonNull<Header>) {
    let block = ptr.cast::<Block<F>>().as_ptr();
    // SAFETY: the caller's contract: nobody else touches the payload, and
    // the stage names the live member (`Taken` before each drop).
    unsafe {
        let header = &(*block).header;
        let payload = &mut *(*block).payload.get();
        // A panicking destructor must not unwind through the worker (or a
        // `JoinHandle`'s drop): its panic is swallowed.
        match header.stage() {
            Stage::Running => {
                header.set_stage(Stage::Taken);
                // In place: the future is pinned.
                let _ = catch_unwind(AssertUnwindSafe(|| ManuallyDrop::drop(&mut payload.future)));
            }
            Stage::Finished => {
                header.set_stage(Stage::Taken);
                drop_quietly(ManuallyDrop::take(&mut payload.output));
            }
            Stage::Taken => {}
        }
    }
}

/// Typed view for the join handle.
pub(crate) struct Typed<T>(PhantomData<T>);

impl<T> Typed<T> {
    /// Takes the output of the task behind `raw`, whose output type is `T`.
    ///
    /// # Safety
    ///
    /// As for [`RawTask::take_output`], and `T` is the task's output type.
    pub(crate) unsafe fn take(raw: &RawTask) -> Option<Result<T, JoinError>> {
        let mut out: Option<Result<T, JoinError>> = None;
        // SAFETY: forwarded; `out` has the type the vtable expects.
        unsafe { raw.take_output((&mut out as *mut Option<Result<T, JoinError>>).cast()) };
        out
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! The stage tag and the payload it names: each payload dropped exactly
    //! once, by whoever the stage says owns it.

    use super::*;
    use std::sync::atomic::AtomicUsize as Count;
    use std::sync::Arc;
    use std::task::Waker;

    /// Counts its drops.
    struct Dropped(Arc<Count>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> Arc<Count> {
        Arc::new(Count::new(0))
    }

    fn drops(count: &Arc<Count>) -> usize {
        count.load(Ordering::SeqCst)
    }

    fn poll_once(task: &RawTask) -> Poll<()> {
        let mut cx = Context::from_waker(Waker::noop());
        // SAFETY: this thread is the task's only worker; `task` is held
        // across the poll.
        unsafe { task.by_ref().poll(&mut cx) }
    }

    fn release(task: RawTask) {
        if let Some(block) = task.release() {
            block.free(None);
        }
    }

    #[test]
    fn the_future_starts_right_after_the_header() {
        // No word for a stage tag between the header and a payload of
        // alignment up to 8; and the abort's address and flags fit in the
        // header's 56 bytes (the reference count shares their word).
        let header = std::mem::size_of::<Header>();
        assert_eq!(header, 56);
        assert_eq!(
            std::mem::offset_of!(Block<std::future::Ready<u64>>, payload),
            header
        );
        assert_eq!(
            std::mem::offset_of!(Block<std::future::Ready<u8>>, payload),
            header
        );
        assert_eq!(
            std::mem::offset_of!(Block<std::future::Pending<()>>, payload),
            header
        );
    }

    #[test]
    fn completing_drops_the_future_once_and_the_taker_owns_the_output() {
        let (future_drops, output_drops) = (counter(), counter());
        let guard = Dropped(future_drops.clone());
        let output = Dropped(output_drops.clone());
        let (task, handle) = RawTask::new(
            async move {
                let _guard = guard;
                output
            },
            (0, 0),
            None,
        );
        assert_eq!(poll_once(&task), Poll::Ready(()));
        assert_eq!(drops(&future_drops), 1, "the finished future is dropped");
        assert_eq!(
            poll_once(&task),
            Poll::Ready(()),
            "a finished task stays so"
        );
        // SAFETY: the task completed (its notification happened on this
        // thread), and the output type matches.
        let taken = unsafe { Typed::<Dropped>::take(&handle) };
        assert!(matches!(taken, Some(Ok(_))));
        // SAFETY: as above; the output is gone now.
        assert!(unsafe { Typed::<Dropped>::take(&handle) }.is_none());
        release(task);
        release(handle);
        assert_eq!(
            drops(&output_drops),
            0,
            "the block does not drop a taken output"
        );
        drop(taken);
        assert_eq!(drops(&output_drops), 1);
        assert_eq!(drops(&future_drops), 1);
    }

    #[test]
    fn an_output_never_taken_is_dropped_with_the_block() {
        let output_drops = counter();
        let output = Dropped(output_drops.clone());
        let (task, handle) = RawTask::new(async move { output }, (0, 0), None);
        assert_eq!(poll_once(&task), Poll::Ready(()));
        release(handle);
        assert_eq!(drops(&output_drops), 0, "the worker still holds the block");
        release(task);
        assert_eq!(drops(&output_drops), 1);
    }

    #[test]
    fn cancelling_drops_the_future_once_and_records_cancelled() {
        let future_drops = counter();
        let guard = Dropped(future_drops.clone());
        let (task, handle) = RawTask::new(
            async move {
                let _guard = guard;
                std::future::pending::<()>().await
            },
            (0, 0),
            None,
        );
        assert_eq!(poll_once(&task), Poll::Pending);
        // SAFETY: this thread is the task's only worker, not polling.
        unsafe { task.cancel() };
        assert_eq!(drops(&future_drops), 1);
        // SAFETY: as above: a second cancel finds no future.
        unsafe { task.cancel() };
        assert_eq!(drops(&future_drops), 1, "cancelled once only");
        assert_eq!(poll_once(&task), Poll::Ready(()), "nothing left to poll");
        // SAFETY: the cancellation was published on this thread.
        let taken = unsafe { Typed::<()>::take(&handle) };
        assert!(matches!(taken, Some(Err(JoinError::Cancelled))));
        release(handle);
        release(task);
        assert_eq!(drops(&future_drops), 1);
    }

    #[test]
    fn an_abort_drops_the_future_at_the_next_poll_instead_of_polling_it() {
        let (polls, future_drops) = (counter(), counter());
        let (counted, guard) = (polls.clone(), Dropped(future_drops.clone()));
        let (task, handle) = RawTask::new(
            std::future::poll_fn(move |_| {
                let _ = &guard;
                counted.fetch_add(1, Ordering::SeqCst);
                Poll::<()>::Pending
            }),
            (0, 0),
            None,
        );
        // SAFETY: the table's reference (`task`) is held.
        unsafe { task.by_ref().publish_address(7) };
        assert_eq!(poll_once(&task), Poll::Pending);
        assert_eq!(handle.request_abort(), Some(7), "the address to wake");
        assert_eq!(drops(&future_drops), 0, "nothing happens before a poll");
        assert_eq!(poll_once(&task), Poll::Ready(()));
        assert_eq!(drops(&polls), 1, "the aborted poll did not poll the future");
        assert_eq!(drops(&future_drops), 1);
        assert_eq!(
            handle.request_abort(),
            Some(7),
            "a second abort is harmless"
        );
        assert_eq!(poll_once(&task), Poll::Ready(()));
        // SAFETY: the task finished on this thread; the output type matches.
        let taken = unsafe { Typed::<()>::take(&handle) };
        assert!(matches!(taken, Some(Err(JoinError::Aborted))));
        release(handle);
        release(task);
    }

    #[test]
    fn an_abort_before_the_worker_takes_the_task_in_reaches_its_first_poll() {
        let polls = counter();
        let counted = polls.clone();
        let (task, handle) = RawTask::new(
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
            },
            (0, 0),
            None,
        );
        assert_eq!(handle.request_abort(), None, "no address yet");
        // SAFETY: the table's reference (`task`) is held.
        unsafe { task.by_ref().publish_address(7) };
        assert_eq!(poll_once(&task), Poll::Ready(()));
        assert_eq!(drops(&polls), 0, "never polled");
        // SAFETY: the task finished on this thread; the output type matches.
        let taken = unsafe { Typed::<()>::take(&handle) };
        assert!(matches!(taken, Some(Err(JoinError::Aborted))));
        release(task);
        release(handle);
    }

    #[test]
    fn a_task_that_finished_keeps_its_output_when_aborted() {
        let (task, handle) = RawTask::new(async { 42 }, (0, 0), None);
        // SAFETY: the table's reference (`task`) is held.
        unsafe { task.by_ref().publish_address(7) };
        assert_eq!(poll_once(&task), Poll::Ready(()));
        assert_eq!(handle.request_abort(), Some(7));
        assert_eq!(poll_once(&task), Poll::Ready(()));
        // SAFETY: the task finished on this thread; the output type matches.
        let taken = unsafe { Typed::<i32>::take(&handle) };
        assert!(matches!(taken, Some(Ok(42))));
        release(task);
        release(handle);
    }

    #[test]
    fn the_second_owner_drops_the_output_and_the_last_reference_frees_the_block() {
        for handle_first in [false, true] {
            let output_drops = counter();
            let output = Dropped(output_drops.clone());
            let (task, handle) = RawTask::new(async move { output }, (0, 0), None);
            let extra = handle.clone_ref();
            let another = extra.clone_ref();
            // SAFETY: the table's reference (`task`) is held.
            unsafe { task.by_ref().publish_address(7) };
            let (first, second) = if handle_first {
                // The handle goes before the task ends: the worker drops
                // the output.
                assert!(handle.release().is_none());
                assert_eq!(poll_once(&task), Poll::Ready(()));
                (None, task)
            } else {
                assert_eq!(poll_once(&task), Poll::Ready(()));
                (Some(task), handle)
            };
            if let Some(first) = first {
                assert!(first.release().is_none());
            }
            assert_eq!(drops(&output_drops), 0, "an owner holds the output");
            assert!(second.release().is_none(), "two abort handles are left");
            assert_eq!(drops(&output_drops), 1, "the second owner dropped it");
            assert!(extra.release_extra().is_none(), "one reference is left");
            assert_eq!(another.request_abort(), Some(7), "flags are not references");
            another
                .release_extra()
                .expect("the last reference")
                .free(None);
            assert_eq!(drops(&output_drops), 1);
        }
    }

    #[test]
    fn the_reference_count_ignores_the_abort_flags() {
        let (task, handle) = RawTask::new(async {}, (0, 0), None);
        // SAFETY: the table's reference (`task`) is held.
        unsafe { task.by_ref().publish_address(7) };
        let _ = handle.request_abort();
        assert!(handle.release().is_none(), "the task's reference is left");
        assert_eq!(poll_once(&task), Poll::Ready(()));
        task.release().expect("the last reference").free(None);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The task/handle hand-over under every interleaving loom explores:
    //! the worker finishes the task and drops its reference while the
    //! handle, on another thread, polls for the output or drops. The
    //! header's stage is a loom-tracked cell, so an access to it (and so to
    //! the payload) that the join cell or the reference count does not
    //! order fails the model ("Causality violation"): a handle that takes
    //! the output without first observing the notification does.

    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;
    use std::sync::Arc;
    use std::task::Waker;

    struct Payload(Arc<AtomicUsize>);

    loom::thread_local! {
        /// Set on the thread that drops an `AbortHandle`.
        static ABORTER: std::cell::Cell<bool> = std::cell::Cell::new(false);
    }

    impl Drop for Payload {
        fn drop(&mut self) {
            assert!(
                !ABORTER.with(|aborter| aborter.get()),
                "an AbortHandle's release dropped the output on its thread"
            );
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The worker's side: polls the task to its end, then gives up the
    /// table's reference.
    fn finish_and_release(task: RawTask) {
        let mut cx = Context::from_waker(Waker::noop());
        // SAFETY: this thread is the task's only worker, and `task` (the
        // counted reference) is released after the poll.
        assert_eq!(unsafe { task.by_ref().poll(&mut cx) }, Poll::Ready(()));
        if let Some(block) = task.release() {
            block.free(None);
        }
    }

    /// Gives up an `AbortHandle`'s reference on this thread, marked as the
    /// aborter's (where no output may be dropped).
    fn release_as_aborter(abort: RawTask) {
        ABORTER.with(|aborter| aborter.set(true));
        if let Some(block) = abort.release_extra() {
            block.free(None);
        }
    }

    /// The handle reads the output exactly once, or the output is dropped
    /// exactly once with the block, whoever releases last.
    #[test]
    fn finish_vs_join_and_release() {
        loom::model(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let payload = Payload(drops.clone());
            let (task, handle) = RawTask::new(async move { payload }, (0, 0), None);
            let token = handle.header().join.reserve().unwrap();

            let worker = thread::spawn(move || finish_and_release(task));

            // A scheduling point so that loom also runs the worker first
            // (see `let_the_other_thread_run_first` in
            // reactor/tests/loom_cell.rs).
            thread::yield_now();
            let cell = &handle.header().join;
            let seen = cell.observe_reserved(token).unwrap();
            let got = if seen.sequence() != 0 {
                // SAFETY: we observed the notification; the type matches.
                unsafe { Typed::<Payload>::take(&handle) }
            } else {
                let _ = cell.park(token, seen, Waker::noop());
                None
            };
            worker.join().unwrap();
            let took = got.is_some();
            drop(got);
            let _ = cell.release(token);
            if let Some(block) = handle.release() {
                block.free(None);
            }
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "output dropped once (took: {took})"
            );
        });
    }

    /// A third reference (an `AbortHandle`'s), aborting and released on
    /// its own thread while the worker finishes the task and the join
    /// handle takes the output: the output is dropped exactly once, by the
    /// handle or with the block, whichever reference goes last.
    #[test]
    fn abort_handle_released_while_the_task_finishes() {
        loom::model(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let payload = Payload(drops.clone());
            let (task, handle) = RawTask::new(async move { payload }, (0, 0), None);
            let token = handle.header().join.reserve().unwrap();
            let abort = handle.clone_ref();

            let worker = thread::spawn(move || finish_and_release(task));
            let aborter = thread::spawn(move || {
                // Never published here: no address to wake.
                assert_eq!(abort.request_abort(), None);
                release_as_aborter(abort);
            });

            thread::yield_now(); // as in `finish_vs_join_and_release`
            let cell = &handle.header().join;
            let seen = cell.observe_reserved(token).unwrap();
            let got = if seen.sequence() != 0 {
                // SAFETY: we observed the notification; the type matches.
                unsafe { Typed::<Payload>::take(&handle) }
            } else {
                None
            };
            worker.join().unwrap();
            aborter.join().unwrap();
            drop(got);
            let _ = cell.release(token);
            if let Some(block) = handle.release() {
                block.free(None);
            }
            assert_eq!(drops.load(Ordering::SeqCst), 1, "output dropped once");
        });
    }

    /// The `JoinHandle` dropped without taking the output while the worker
    /// finishes the task, and an `AbortHandle` released last on a third
    /// thread: the output is dropped exactly once, by the worker or by the
    /// handle (the second owner to leave), never on the `AbortHandle`'s
    /// thread, which a `spawn_local` task's output (not `Send`) must not
    /// reach. (It was dropped with the block by whichever reference went
    /// last.)
    #[test]
    fn join_handle_dropped_while_the_task_finishes_with_an_abort_handle_left() {
        loom::model(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let payload = Payload(drops.clone());
            let (task, handle) = RawTask::new(async move { payload }, (0, 0), None);
            let abort = handle.clone_ref();

            let worker = thread::spawn(move || finish_and_release(task));
            let aborter = thread::spawn(move || release_as_aborter(abort));
            thread::yield_now(); // as in `finish_vs_join_and_release`
            if let Some(block) = handle.release() {
                block.free(None);
            }
            worker.join().unwrap();
            aborter.join().unwrap();
            assert_eq!(drops.load(Ordering::SeqCst), 1, "output dropped once");
        });
    }

    /// An abort requested while the worker takes the task in and polls it
    /// the first time is never lost: either the handle gets the address to
    /// wake (and the poll that wake causes drops the future), or the
    /// worker's first poll drops it. Either way the future is polled at
    /// most once and the handle reads `Aborted`.
    #[test]
    fn abort_vs_publish_and_first_poll() {
        const ADDRESS: u64 = 0x5eed;
        loom::model(|| {
            let polls = Arc::new(AtomicUsize::new(0));
            let counted = polls.clone();
            let (task, handle) = RawTask::new(
                std::future::poll_fn(move |_| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Poll::<()>::Pending
                }),
                (0, 0),
                None,
            );
            let token = handle.header().join.reserve().unwrap();

            let worker = thread::spawn(move || {
                let mut cx = Context::from_waker(Waker::noop());
                // SAFETY: this thread is the task's only worker and holds
                // the table's reference (`task`) throughout.
                let first = unsafe {
                    task.by_ref().publish_address(ADDRESS);
                    task.by_ref().poll(&mut cx)
                };
                (task, first)
            });

            let woken = handle.request_abort();
            let (task, first) = worker.join().unwrap();
            match woken {
                Some(address) => {
                    assert_eq!(address, ADDRESS, "the published address");
                    // The poll the wake leads to (after it, as the inbox
                    // orders it in the runtime).
                    let mut cx = Context::from_waker(Waker::noop());
                    // SAFETY: as above; the worker thread has finished.
                    let next = unsafe { task.by_ref().poll(&mut cx) };
                    assert_eq!(next, Poll::Ready(()));
                }
                None => assert_eq!(first, Poll::Ready(()), "the abort was lost"),
            }
            assert!(polls.load(Ordering::SeqCst) <= 1);
            let seen = handle.header().join.observe_reserved(token).unwrap();
            assert_ne!(seen.sequence(), 0, "the task finished");
            // SAFETY: we observed the notification; the type matches.
            let taken = unsafe { Typed::<()>::take(&handle) };
            assert!(matches!(taken, Some(Err(JoinError::Aborted))));
            let _ = handle.header().join.release(token);
            for reference in [task, handle] {
                if let Some(block) = reference.release() {
                    block.free(None);
                }
            }
        });
    }
}
