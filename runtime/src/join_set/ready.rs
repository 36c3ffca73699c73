//! A [`JoinSet`](super::JoinSet)'s ready list: which members to poll next.
//!
//! Every member task has an *entry* here, and the set polls a member's
//! `JoinHandle` with that entry's waker, never with its own. When the task
//! finishes, its join cell wakes the entry, which pushes itself onto a
//! lock-free stack and notifies the set's own cell, where the set's task
//! parks. The set then polls only the members whose entries it finds
//! there: a finished task costs the set one poll, however many members
//! it has.
//!
//! # Invariants
//!
//! * **An entry is on the stack or in `pending` exactly while its
//!   `queued` flag is set.** Whoever sets it (a wake's swap, or the owner's
//!   when a member joins) puts the entry on the stack or in `pending`, and
//!   only the owner clears it, when it takes the entry out of `pending` to
//!   poll the member. So an entry is never pushed twice: the stack's links
//!   cannot form a cycle.
//! * **The flag is cleared before the member is polled**, so a finish after
//!   that poll's look finds the flag clear and pushes the entry again.
//! * **No wake is lost between a look and a park.** A wake pushes, then
//!   notifies the set's cell (an `OpCell`, held by the set for its whole
//!   life). The set snapshots the cell before it looks at the stack, and
//!   parks only if the snapshot is still current: a push after the look is
//!   followed by a notification that either fails the park (`Retry`) or
//!   wakes it. This is the socket cells' own protocol.
//! * **Entries never move and outlive every waker.** They live in chunks
//!   that are allocated once, as the keys grow, and freed with the shared
//!   block when its last reference goes; the set holds one reference and
//!   every clone of an entry waker one more. A waker left in a finished
//!   task's join cell (cells keep their last waker) keeps the block alive
//!   until that task's memory is freed. A stale wake (an entry reused by
//!   another member since) only makes the set poll a member that is not
//!   ready, or a key that is empty: both are skipped.
//!
//! Nothing here allocates once the chunks for the largest key and
//! `pending`'s room exist: membership and wakes are flags and links.

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::task::{RawWaker, RawWakerVTable, Waker};

use cellio_reactor::{OpCell, Park, Readiness, Token};

use crate::sync::{fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Entries in chunk 0; chunk `c` holds `FIRST_CHUNK << c`.
const FIRST_CHUNK: usize = 16;
/// Enough chunks for every `u32` key.
const CHUNKS: usize = 29;
/// More references than this (wakers cloned and kept by the thousands of
/// millions) and the process aborts, as `Arc` does, rather than wrap.
const MAX_REFS: usize = isize::MAX as usize;

/// The part of a set that its members' wakers reach.
struct Shared {
    /// Counted references: the set's and one per live entry waker.
    refs: AtomicUsize,
    /// The stack of entries whose members were woken (Treiber; the owner
    /// takes it whole, so it has no ABA problem).
    head: AtomicPtr<Entry>,
    /// Notified after each push; held by the set, which parks on it.
    cell: OpCell,
    /// Chunk `c`'s first entry, or null. Written by the owner only; read
    /// by it and by the last reference, which frees them.
    chunks: [AtomicPtr<Entry>; CHUNKS],
}

/// One member's place: what its waker points to.
struct Entry {
    shared: NonNull<Shared>,
    /// The next entry down the stack (written by the pusher before its
    /// push, read by the owner after taking the stack).
    next: AtomicPtr<Entry>,
    /// On the stack or in `pending` (module invariants).
    queued: AtomicBool,
    key: u32,
}

/// The set's side: one reference to the shared block, its cell held.
pub(crate) struct ReadyList {
    shared: NonNull<Shared>,
    token: Token,
    /// Keys taken off the stack (or just added), not yet polled; popped
    /// from the end, so the stack's oldest push comes first (the stack
    /// lists the newest first).
    pending: Vec<u32>,
}

// SAFETY: the shared block is reached only through atomics and the
// `OpCell` (thread-safe), and entries through their atomic fields and
// fields that never change after the chunk is written. `pending` is owned.
unsafe impl Send for ReadyList {}
// SAFETY: `&ReadyList` methods only read the cell and the chunks'
// atomics.
unsafe impl Sync for ReadyList {}

/// Which chunk holds `key`, and where in it.
fn place(key: u32) -> (usize, usize) {
    let shifted = key as usize + FIRST_CHUNK;
    let chunk = (usize::BITS - 1 - shifted.leading_zeros()) as usize
        - FIRST_CHUNK.trailing_zeros() as usize;
    (chunk, shifted - (FIRST_CHUNK << chunk))
}

fn chunk_len(chunk: usize) -> usize {
    FIRST_CHUNK << chunk
}

impl ReadyList {
    pub(crate) fn new() -> Self {
        let shared = Box::new(Shared {
            refs: AtomicUsize::new(1),
            head: AtomicPtr::new(ptr::null_mut()),
            cell: OpCell::new(),
            chunks: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        });
        let token = shared.cell.reserve().expect("a new cell is idle");
        Self {
            shared: NonNull::from(Box::leak(shared)),
            token,
            pending: Vec::new(),
        }
    }

    fn shared(&self) -> &Shared {
        // SAFETY: the list holds a reference, so the block is alive.
        unsafe { self.shared.as_ref() }
    }

    /// The entry of `key`, whose chunk exists.
    fn entry(&self, key: u32) -> &Entry {
        let (chunk, index) = place(key);
        let first = self.shared().chunks[chunk].load(Ordering::Relaxed);
        assert!(!first.is_null(), "entry {key} has no chunk");
        // SAFETY: a chunk, once written, holds `chunk_len(chunk)` entries
        // and lives as long as the block, which our reference keeps.
        unsafe { &*first.add(index) }
    }

    /// Makes `key`'s entry ready to be polled: a new member. Allocates its
    /// chunk the first time a key of that chunk is used.
    pub(crate) fn insert(&mut self, key: u32) {
        let (chunk, _) = place(key);
        if self.shared().chunks[chunk]
            .load(Ordering::Relaxed)
            .is_null()
        {
            self.add_chunk(chunk);
        }
        // Acquire: a stale wake may have pushed the entry; if so it is on
        // the stack and will be drained, not added again.
        if !self.entry(key).queued.swap(true, Ordering::AcqRel) {
            self.pending.push(key);
        }
    }

    #[cold]
    fn add_chunk(&mut self, chunk: usize) {
        let base = (FIRST_CHUNK << chunk) - FIRST_CHUNK;
        let entries: Box<[Entry]> = (0..chunk_len(chunk))
            .map(|index| Entry {
                shared: self.shared,
                next: AtomicPtr::new(ptr::null_mut()),
                queued: AtomicBool::new(false),
                key: (base + index) as u32,
            })
            .collect();
        let first = Box::into_raw(entries).cast::<Entry>();
        self.shared().chunks[chunk].store(first, Ordering::Relaxed);
        // Room in `pending` for every key up to this chunk's last (each is
        // there at most once), so that draining never makes it grow.
        let keys = base + chunk_len(chunk);
        self.pending
            .reserve(keys.saturating_sub(self.pending.len()));
    }

    /// The next key to poll, its flag cleared (module invariants), or
    /// `None` if no member was woken.
    pub(crate) fn next(&mut self) -> Option<u32> {
        if self.pending.is_empty() {
            self.drain();
        }
        let key = self.pending.pop()?;
        // Release: pairs with a waker's swap, for the flag's history only;
        // the look that follows is ordered by the member's join cell.
        self.entry(key).queued.store(false, Ordering::Release);
        Some(key)
    }

    /// Moves the stack into `pending`, newest first.
    fn drain(&mut self) {
        // Acquire: every push's links (stored before its Release CAS; the
        // pushes form one release sequence on `head`).
        let mut top = self.shared().head.swap(ptr::null_mut(), Ordering::Acquire);
        while let Some(entry) = NonNull::new(top) {
            // SAFETY: entries live as long as the block (module invariants).
            let entry = unsafe { entry.as_ref() };
            self.pending.push(entry.key);
            top = entry.next.load(Ordering::Relaxed);
        }
    }

    /// The waker to poll member `key` with. It borrows the list's
    /// reference; a clone takes one of its own.
    pub(crate) fn waker(&self, key: u32) -> EntryWaker<'_> {
        let entry: *const Entry = self.entry(key);
        // The `ManuallyDrop` below keeps this borrowed waker from giving up
        // a reference it never took.
        // SAFETY: `entry` is live, its block kept alive by this list's
        // reference for the borrow: the vtable's contract holds.
        let waker = unsafe { Waker::from_raw(RawWaker::new(entry.cast(), &VTABLE)) };
        EntryWaker {
            waker: ManuallyDrop::new(waker),
            _list: std::marker::PhantomData,
        }
    }

    /// Snapshots the set's cell: take it before looking for ready members.
    pub(crate) fn observe(&self) -> Readiness {
        self.shared()
            .cell
            .observe_reserved(self.token)
            .expect("the set holds its cell for its whole life")
    }

    /// Parks `waker` until a member is woken; `false` (do not sleep, look
    /// again) if one was since `seen`.
    pub(crate) fn park(&self, seen: Readiness, waker: &Waker) -> bool {
        match self.shared().cell.park(self.token, seen, waker) {
            Ok(Park::Parked) => true,
            Ok(Park::Retry) => false,
            Err(error) => unreachable!("the set's cell is held and never closed: {error}"),
        }
    }
}

impl Drop for ReadyList {
    fn drop(&mut self) {
        let _ = self.shared().cell.release(self.token);
        // SAFETY: this is the list's own reference, given up once.
        unsafe { release(self.shared) };
    }
}

/// A member's waker, borrowed from the [`ReadyList`].
pub(crate) struct EntryWaker<'a> {
    waker: ManuallyDrop<Waker>,
    _list: std::marker::PhantomData<&'a ReadyList>,
}

impl Deref for EntryWaker<'_> {
    type Target = Waker;

    fn deref(&self) -> &Waker {
        &self.waker
    }
}

/// Gives up one reference; the last frees the chunks and the block.
///
/// # Safety
///
/// The caller holds a reference to `shared` and never uses it again.
unsafe fn release(shared: NonNull<Shared>) {
    // SAFETY: the caller's reference keeps the block alive until here.
    let refs = unsafe { &shared.as_ref().refs };
    // Release: our uses happen before whoever frees the block.
    if refs.fetch_sub(1, Ordering::Release) != 1 {
        return;
    }
    // Acquire: every other reference's uses happen before the free.
    fence(Ordering::Acquire);
    // SAFETY: the last reference: nobody else can reach the block. Each
    // chunk was made by `add_chunk` from a boxed slice of its length.
    unsafe {
        let shared = Box::from_raw(shared.as_ptr());
        for (chunk, first) in shared.chunks.iter().enumerate() {
            let first = first.load(Ordering::Relaxed);
            if !first.is_null() {
                let entries = ptr::slice_from_raw_parts_mut(first, chunk_len(chunk));
                drop(Box::from_raw(entries));
            }
        }
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_waker, wake, wake_by_ref, drop_waker);

/// # Safety (all four)
///
/// `data` is a live entry, and the waker it comes from holds a reference
/// to the entry's block (or borrows the set's).
unsafe fn entry<'a>(data: *const ()) -> &'a Entry {
    // SAFETY: the caller's contract.
    unsafe { &*data.cast::<Entry>() }
}

unsafe fn clone_waker(data: *const ()) -> RawWaker {
    // SAFETY: the vtable's contract.
    let shared = unsafe { entry(data).shared.as_ref() };
    // Relaxed, as `Arc::clone`: made from a held reference.
    if shared.refs.fetch_add(1, Ordering::Relaxed) >= MAX_REFS {
        std::process::abort();
    }
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: the vtable's contract; the reference is given up after.
    unsafe {
        wake_by_ref(data);
        drop_waker(data);
    }
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: the vtable's contract.
    let entry = unsafe { entry(data) };
    // SAFETY: as above: the waker's reference keeps the block alive.
    let shared = unsafe { entry.shared.as_ref() };
    // AcqRel: whoever clears the flag (the owner) did so before polling.
    if entry.queued.swap(true, Ordering::AcqRel) {
        return; // on the stack or in `pending` already
    }
    let me = ptr::from_ref(entry).cast_mut();
    let mut top = shared.head.load(Ordering::Relaxed);
    loop {
        entry.next.store(top, Ordering::Relaxed);
        // Release: the link above, for the owner's Acquire swap.
        match shared
            .head
            .compare_exchange_weak(top, me, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(actual) => top = actual,
        }
    }
    shared.cell.notify();
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: the vtable's contract: this waker's reference, given up once.
    unsafe { release(entry(data).shared) };
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_chunks_that_double() {
        assert_eq!(place(0), (0, 0));
        assert_eq!(place(15), (0, 15));
        assert_eq!(place(16), (1, 0));
        assert_eq!(place(47), (1, 31));
        assert_eq!(place(48), (2, 0));
        assert_eq!(place(u32::MAX).0, CHUNKS - 1);
        // Every key has its own place.
        let mut last = (0, 0);
        for key in 1..5000u32 {
            let here = place(key);
            let expected = if last.1 + 1 == chunk_len(last.0) {
                (last.0 + 1, 0)
            } else {
                (last.0, last.1 + 1)
            };
            assert_eq!(here, expected, "key {key}");
            last = here;
        }
    }

    #[test]
    fn only_members_that_were_woken_are_named() {
        let mut list = ReadyList::new();
        for key in 0..100 {
            list.insert(key);
        }
        // New members come first, each once.
        let mut fresh: Vec<u32> = std::iter::from_fn(|| list.next()).collect();
        fresh.sort_unstable();
        assert_eq!(fresh, (0..100).collect::<Vec<_>>());
        assert_eq!(list.next(), None, "nothing woken yet");
        // Wake three, one of them twice: each is named once, oldest first.
        for key in [70, 3, 70, 99] {
            list.waker(key).wake_by_ref();
        }
        let woken: Vec<u32> = std::iter::from_fn(|| list.next()).collect();
        assert_eq!(woken, [70, 3, 99]);
        // Named again after its flag was cleared.
        list.waker(3).wake_by_ref();
        assert_eq!(list.next(), Some(3));
        assert_eq!(list.next(), None);
    }

    #[test]
    fn pending_has_room_for_every_key_so_draining_never_grows_it() {
        let mut list = ReadyList::new();
        // Members joining a few at a time, each batch polled before the
        // next: `pending` is empty whenever a chunk is added.
        for batch in [0..16, 16..48, 48..100] {
            for key in batch {
                list.insert(key);
            }
            while list.next().is_some() {}
        }
        let room = list.pending.capacity();
        assert!(
            room >= 112,
            "room for the 112 keys of chunks 0 to 2: {room}"
        );
        for key in 0..100 {
            list.waker(key).wake_by_ref();
        }
        list.drain();
        assert_eq!(list.pending.len(), 100);
        assert_eq!(list.pending.capacity(), room, "draining grew the list");
    }

    #[test]
    fn a_wake_moves_the_sets_cell_on() {
        let mut list = ReadyList::new();
        list.insert(0);
        assert_eq!(list.next(), Some(0));
        let seen = list.observe();
        list.waker(0).wake_by_ref();
        assert!(!list.park(seen, Waker::noop()), "a wake since the look");
        let seen = list.observe();
        assert!(list.park(seen, Waker::noop()));
    }

    #[test]
    fn wakers_keep_the_block_alive_after_the_list_is_gone() {
        let mut list = ReadyList::new();
        list.insert(40); // chunk 2
        let kept = Waker::clone(&list.waker(40));
        let again = kept.clone();
        drop(list);
        // Both still reach a live entry (a use after free would show
        // under valgrind and miri).
        kept.wake_by_ref();
        drop(kept);
        again.wake();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Members woken on other threads while the set looks and parks: every
    //! wake is either found by a look or wakes the parked set, and an entry
    //! woken twice while the set clears its flag is never pushed twice.

    use super::*;
    use loom::thread;
    use std::sync::Arc;
    use std::task::Wake;

    /// The set's task waker: records that it was woken.
    struct SetTask(AtomicBool);

    impl Wake for SetTask {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// The owner's side of `poll_join_next` once: look, then park if the
    /// look found nothing. Returns whether it parked.
    fn look_then_park(list: &mut ReadyList, found: &mut Vec<u32>, waker: &Waker) -> bool {
        let seen = list.observe();
        let before = found.len();
        found.extend(std::iter::from_fn(|| list.next()));
        found.len() == before && list.park(seen, waker)
    }

    #[test]
    fn two_members_finish_while_the_set_looks_and_parks() {
        loom::model(|| {
            let mut list = ReadyList::new();
            list.insert(0);
            list.insert(1);
            let mut found: Vec<u32> = std::iter::from_fn(|| list.next()).collect();
            assert_eq!(found.len(), 2, "new members are named once");
            found.clear();
            // What each member's join cell keeps: a clone of its waker.
            let wakers = [list.waker(0).clone(), list.waker(1).clone()];
            let finishes: Vec<_> = wakers
                .into_iter()
                .map(|waker| thread::spawn(move || waker.wake()))
                .collect();

            let task = Arc::new(SetTask(AtomicBool::new(false)));
            let waker = Waker::from(task.clone());
            // A scheduling point, so that loom also runs the finishes first
            // (see `let_the_other_thread_run_first` in
            // reactor/tests/loom_cell.rs).
            thread::yield_now();
            let parked = look_then_park(&mut list, &mut found, &waker);
            for finish in finishes {
                finish.join().unwrap();
            }
            if parked {
                // Asleep with members left to find: only a wake helps.
                assert!(task.0.load(Ordering::SeqCst), "a wake was lost");
            }
            let _ = look_then_park(&mut list, &mut found, &waker);
            found.sort_unstable();
            assert_eq!(found, [0, 1], "each finish named once");
        });
    }

    #[test]
    fn a_member_woken_twice_while_its_flag_is_cleared() {
        loom::model(|| {
            let mut list = ReadyList::new();
            list.insert(0);
            assert_eq!(list.next(), Some(0));
            let first = list.waker(0).clone();
            let second = first.clone();
            let one = thread::spawn(move || first.wake());
            let two = thread::spawn(move || second.wake());
            // As above.
            thread::yield_now();
            // The owner takes whatever is there meanwhile (clearing the
            // flag), racing the second wake.
            let mut named = 0;
            while list.next().is_some() {
                named += 1;
            }
            one.join().unwrap();
            two.join().unwrap();
            while list.next().is_some() {
                named += 1;
            }
            // At least once (the wakes happened), at most once per wake,
            // and the stack is whole (a double push would loop here).
            assert!((1..=2).contains(&named), "named {named} times");
            assert!(list.shared().head.load(Ordering::SeqCst).is_null());
        });
    }
}
