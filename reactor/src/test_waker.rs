//! Test-only wakers with a stable identity, for the unit tests of the
//! code that compares wakers (the waker slot, the cell's idle park).
//!
//! `Waker::from(Arc<impl Wake>)` points at a vtable that is a promoted
//! constant, and a constant may live at more than one address (under Miri
//! it does, at random), so two wakers for the same task need not compare
//! equal. These wakers share one `static` vtable, as the runtime's do, so
//! their identity is exactly their task.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{RawWaker, RawWakerVTable, Waker};

/// A task that counts its wakes; its `Arc`'s strong count is how many
/// handles to it exist, wakers included.
#[derive(Default)]
pub(crate) struct Task {
    wakes: AtomicUsize,
}

impl Task {
    /// How many times a waker for this task was woken.
    pub(crate) fn wakes(&self) -> usize {
        self.wakes.load(Ordering::Relaxed)
    }
}

/// A new task and a waker for it.
pub(crate) fn task() -> (Arc<Task>, Waker) {
    let task = Arc::new(Task::default());
    let waker = waker(&task);
    (task, waker)
}

/// A waker for `task`, holding one strong count of it.
pub(crate) fn waker(task: &Arc<Task>) -> Waker {
    let data = Arc::into_raw(task.clone()).cast::<()>();
    // SAFETY: `data` is a strong count of an `Arc<Task>` handed to the
    // waker, and VTABLE's functions treat it as exactly that.
    unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

fn clone(data: *const ()) -> RawWaker {
    // SAFETY: `data` is a live waker's strong count (see `waker`).
    unsafe { Arc::increment_strong_count(data.cast::<Task>()) };
    RawWaker::new(data, &VTABLE)
}

fn wake(data: *const ()) {
    wake_by_ref(data);
    drop_waker(data);
}

fn wake_by_ref(data: *const ()) {
    // SAFETY: the waker being woken holds a strong count, so the task lives.
    let task = unsafe { &*data.cast::<Task>() };
    task.wakes.fetch_add(1, Ordering::Relaxed);
}

fn drop_waker(data: *const ()) {
    // SAFETY: the waker being dropped gives back the strong count it held.
    unsafe { Arc::decrement_strong_count(data.cast::<Task>()) };
}
