//! The synchronization primitives the reactor is built on, swapped for
//! [loom](https://docs.rs/loom)'s model-checked versions under `cfg(loom)`.
//!
//! Every concurrent structure in this crate imports its atomics and cells from
//! here and nowhere else, so `RUSTFLAGS="--cfg loom" cargo test -p
//! cellio-reactor --test loom_cell --release` checks the same code that ships.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// A cell whose accesses loom tracks: the waker slot touches one on every
/// owner access, so the model checker proves that ownership is exclusive.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Waits out the other side's bounded exclusive window (a notifier copying
/// a waker out of the slot): `crossbeam_utils::Backoff` spins briefly, then
/// yields the thread if the holder seems preempted. Under loom it yields to
/// let the model schedule the other thread.
pub(crate) struct Spin {
    #[cfg(not(loom))]
    backoff: crossbeam_utils::Backoff,
}

impl Spin {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            backoff: crossbeam_utils::Backoff::new(),
        }
    }

    #[inline]
    pub(crate) fn wait(&self) {
        #[cfg(loom)]
        loom::thread::yield_now();
        #[cfg(not(loom))]
        self.backoff.snooze();
    }
}
