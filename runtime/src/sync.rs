//! Atomics for the task machinery, swapped for loom's under `cfg(loom)` so
//! the join protocol is model-checked as it ships.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU64, AtomicUsize, Ordering,
};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU64, AtomicUsize, Ordering,
};

/// The mutex of a worker's mailbox (`crate::mailbox`), loom's in its model.
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// A cell for data whose accesses the task protocol orders (a task's
/// stage): loom's tracked `UnsafeCell` under `cfg(loom)`, so the model
/// checker proves no two threads touch it unordered; a plain `UnsafeCell`
/// behind the same two methods otherwise.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell as TrackedUnsafeCell;

/// See the `cfg(loom)` item of the same name.
#[cfg(not(loom))]
pub(crate) struct TrackedUnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> TrackedUnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a pointer for reading.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a pointer for writing.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
