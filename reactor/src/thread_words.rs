//! The per-thread words that every message reads, kept in one cache line.
//!
//! Each message reads four thread-locals: the task's cooperative
//! [`budget`](crate::budget) (every socket operation spends from it; the
//! poll's tag, the runtime's running task, sits in the word beside it), the
//! thread's number (an operation that parked compares it with its
//! reactor's thread, see [`thread_id`]) and, when the reactor wakes a
//! task, the identity and address of the worker running on this thread
//! (the runtime's same-thread check). Declared as separate
//! `thread_local!`s they land wherever the linker puts them, and in the
//! echo benchmark they took two cache lines, each an L1 miss after every
//! syscall. Here they are one `repr(C)` struct aligned to 32 bytes, so all
//! four share a line.
//!
//! The worker words are opaque to this crate: `cellio-runtime` stores its
//! worker's owner bits and executor pointer through [`set_worker`] and
//! reads them with [`worker_owner`] and [`worker_ptr`]. They live here
//! only because this crate (the lowest one) also hosts the budget.
//!
//! # Invariants
//!
//! * Outside any worker, [`worker_owner`] is [`NO_WORKER`] and
//!   [`worker_ptr`] is null.
//! * The words are plain [`Cell`]s: only the owning thread reads or writes
//!   them.
//! * `ThreadWords` needs no destructor (checked at compile time), so on
//!   targets with native thread-locals (Linux, the BSDs, macOS) the
//!   thread-local is never torn down: `WORDS.with` works even in another
//!   thread-local's destructor, during thread teardown, and the hot paths
//!   (the budget's, the worker words') use it without a `try_with` check.

use std::cell::Cell;
use std::ptr;

/// [`worker_owner`] on a thread where no worker runs.
pub const NO_WORKER: u64 = u64::MAX;

/// The line's contents. 32 bytes, aligned to 32, so never split across
/// two 64-byte lines.
#[repr(C, align(32))]
pub(crate) struct ThreadWords {
    /// Units the current task poll may still spend (see `budget`).
    pub(crate) budget: Cell<u32>,
    /// The last budgeted poll's tag, meaningful while one runs (see
    /// `budget::run_with`).
    pub(crate) tag: Cell<u32>,
    /// This thread's [`thread_id`], or 0 until it is first asked for.
    thread_id: Cell<u64>,
    /// The runtime's owner bits of the worker on this thread.
    worker_owner: Cell<u64>,
    /// The runtime's executor of the worker on this thread (opaque here).
    worker_ptr: Cell<*const ()>,
}

const _: () = assert!(std::mem::size_of::<ThreadWords>() <= 32);
// A `const`-initialised thread-local whose type needs no drop has no
// destructor and no "destroyed" state: `with` never panics (see the module
// invariants).
const _: () = assert!(!std::mem::needs_drop::<ThreadWords>());

thread_local! {
    pub(crate) static WORDS: ThreadWords = const {
        ThreadWords {
            budget: Cell::new(crate::budget::UNLIMITED),
            tag: Cell::new(crate::budget::NO_TAG),
            thread_id: Cell::new(0),
            worker_owner: Cell::new(NO_WORKER),
            worker_ptr: Cell::new(ptr::null()),
        }
    };
}

/// A number naming the calling thread, unique for the life of the process
/// and never 0. (Unlike a thread-local's address or an OS thread id, it is
/// never reused by a later thread, so a stale binding can never match.)
/// Should the thread-local be gone during thread teardown (only where
/// thread-locals are not native: see the module invariants), every call
/// hands out a fresh number, which matches no binding.
///
/// ```
/// use cellio_reactor::thread_words::thread_id;
///
/// let here = thread_id();
/// assert_eq!(thread_id(), here);
/// assert_ne!(here, 0);
/// assert_ne!(std::thread::spawn(thread_id).join().unwrap(), here);
/// ```
#[inline(always)]
pub fn thread_id() -> u64 {
    WORDS
        .try_with(|w| match w.thread_id.get() {
            0 => {
                let new = next_thread_id();
                w.thread_id.set(new);
                new
            }
            known => known,
        })
        .unwrap_or_else(|_| next_thread_id())
}

/// The first call on a thread: the next number. Not a modelled structure
/// (loom builds share it too): a counter handing out numbers.
#[cold]
fn next_thread_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The worker owner bits the runtime stored on this thread, or
/// [`NO_WORKER`].
#[inline(always)]
pub fn worker_owner() -> u64 {
    WORDS.with(|w| w.worker_owner.get())
}

/// The worker pointer the runtime stored on this thread, or null.
#[inline(always)]
pub fn worker_ptr() -> *const () {
    WORDS.with(|w| w.worker_ptr.get())
}

/// Stores the current worker's owner bits and pointer, returning the
/// previous pair (to restore later). During thread teardown, when the
/// thread-local is gone, nothing is stored and `(NO_WORKER, null)` is
/// returned.
///
/// ```
/// use cellio_reactor::thread_words::{set_worker, worker_owner, worker_ptr, NO_WORKER};
///
/// let previous = set_worker(7, std::ptr::null());
/// assert_eq!(worker_owner(), 7);
/// set_worker(previous.0, previous.1);
/// assert_eq!(worker_owner(), NO_WORKER);
/// assert!(worker_ptr().is_null());
/// ```
pub fn set_worker(owner: u64, worker: *const ()) -> (u64, *const ()) {
    WORDS
        .try_with(|w| (w.worker_owner.replace(owner), w.worker_ptr.replace(worker)))
        .unwrap_or((NO_WORKER, ptr::null()))
}
