//! Atomics, locks and threads for the task machinery and the blocking
//! pool, swapped for loom's under `cfg(loom)` so the protocols are
//! model-checked as they ship.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU64, AtomicUsize, Ordering,
};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU64, AtomicUsize, Ordering,
};

/// The mutexes of a worker's mailbox (`crate::mailbox`) and of the blocking
/// pool, loom's in their models.
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Threads of the blocking pool (`crate::blocking::pool`), loom's in its
/// model.
#[cfg(loom)]
pub(crate) use loom::thread;

#[cfg(not(loom))]
pub(crate) use std::thread;

/// The blocking pool's condition variable: `std`'s, with a `wait_timeout`
/// that says only whether the wait timed out.
#[cfg(not(loom))]
pub(crate) struct Condvar(std::sync::Condvar);

#[cfg(not(loom))]
impl Condvar {
    pub(crate) const fn new() -> Self {
        Self(std::sync::Condvar::new())
    }

    /// Waits for a notification or for `timeout`; `true` if it timed out
    /// (a notification may have come as well). A poisoned lock is taken
    /// anyway, as the pool's `lock` does.
    pub(crate) fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: std::time::Duration,
    ) -> (MutexGuard<'a, T>, bool) {
        let (guard, result) = self
            .0
            .wait_timeout(guard, timeout)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (guard, result.timed_out())
    }

    /// Waits for a notification (or a spurious wake-up). A poisoned lock
    /// is taken anyway.
    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn notify_one(&self) {
        self.0.notify_one();
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}

/// loom's condition variable never times out, so the model stands in a
/// clock of its own: when a model thread calls `expire` (holding the lock
/// the waits use), the threads waiting then wake, timed out; later waits
/// wait again. A wait that was also notified says timed out too, as a
/// real timed wait may.
#[cfg(loom)]
pub(crate) struct Condvar {
    inner: loom::sync::Condvar,
    /// How many times `expire` ran.
    expiries: AtomicUsize,
}

#[cfg(loom)]
impl Condvar {
    pub(crate) fn new() -> Self {
        Self {
            inner: loom::sync::Condvar::new(),
            expiries: AtomicUsize::new(0),
        }
    }

    pub(crate) fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        _timeout: std::time::Duration,
    ) -> (MutexGuard<'a, T>, bool) {
        let before = self.expiries.load(Ordering::SeqCst);
        let guard = self
            .inner
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (guard, self.expiries.load(Ordering::SeqCst) != before)
    }

    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.inner
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn notify_one(&self) {
        self.inner.notify_one();
    }

    pub(crate) fn notify_all(&self) {
        self.inner.notify_all();
    }

    /// The waits under way time out now; call it holding their lock.
    #[cfg(test)]
    pub(crate) fn expire(&self) {
        self.expiries.fetch_add(1, Ordering::SeqCst);
        self.inner.notify_all();
    }
}

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
