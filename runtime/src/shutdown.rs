//! Graceful shutdown: the runtime-wide state every worker watches, and the
//! futures tasks use to learn that shutdown has begun.
//!
//! A runtime moves `Running → Draining → Stopping`, never back:
//!
//! * **Draining** ([`RuntimeHandle::shutdown`](crate::RuntimeHandle::shutdown)):
//!   every task waiting in [`shutdown_requested`] or [`until_shutdown`] is
//!   woken, so accept loops stop accepting; other tasks run on and finish.
//!   Every worker keeps running, even with no task of its own left: its
//!   reactor drives the sockets made on it, which tasks on other workers
//!   may still use, and tasks may still be sent to it.
//!   [`Runtime::shutdown_timeout`](crate::Runtime::shutdown_timeout) ends
//!   the grace period early once no worker has a task or a message left.
//! * **Stopping** (the grace period is over, or the runtime is dropped):
//!   every worker drops its remaining tasks (their `JoinHandle`s report
//!   `Cancelled`) and exits.
//!
//! # Invariants
//!
//! * The state is set before the workers are told (through their inboxes),
//!   so a worker that wakes for the message sees it.
//! * Once draining, nothing registers as a shutdown waiter again (the
//!   futures see the state and complete), so the waiter list is emptied
//!   once and its keys are never reused afterwards.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::blocking::{BlockingPool, Job};
use crate::metrics::WorkerSlots;
use crate::time::SharedClock;
use crate::waker::Inbox;
use crate::worker::with_current;

const RUNNING: u8 = 0;
const DRAINING: u8 = 1;
const STOPPING: u8 = 2;

/// State shared by every worker of one runtime.
#[derive(Debug)]
pub(crate) struct Shared {
    /// `(worker number, incarnation)` of each worker's inbox, by index
    /// (the incarnation, unlike the epoch, is never reused: a handle that
    /// outlives the runtime never reaches a later owner of the number).
    pub(crate) workers: Vec<(u16, u64)>,
    state: AtomicU8,
    cancelled: AtomicUsize,
    /// The runtime's `spawn_blocking` threads (their own reference: they
    /// may outlive the runtime while a job runs).
    pub(crate) blocking: Arc<BlockingPool<Job>>,
    /// Each worker's published figures, by index.
    pub(crate) metrics: WorkerSlots,
    /// Worker 0's clock, for the runtime's blocking jobs (see
    /// `crate::time::clock`).
    pub(crate) clock: Arc<SharedClock>,
}

impl Shared {
    pub(crate) fn new(workers: Vec<(u16, u64)>, blocking: BlockingPool<Job>) -> Self {
        Self {
            metrics: WorkerSlots::new(workers.len()),
            workers,
            state: AtomicU8::new(RUNNING),
            cancelled: AtomicUsize::new(0),
            blocking: Arc::new(blocking),
            clock: Arc::new(SharedClock::new()),
        }
    }

    pub(crate) fn draining(&self) -> bool {
        self.state.load(Ordering::Acquire) >= DRAINING
    }

    pub(crate) fn stopping(&self) -> bool {
        self.state.load(Ordering::Acquire) >= STOPPING
    }

    /// Moves to `state` (if that is forward) and tells every worker.
    fn advance(&self, state: u8) {
        if self.state.fetch_max(state, Ordering::AcqRel) < state {
            for &(worker, incarnation) in &self.workers {
                Inbox::state_changed(worker, incarnation);
            }
        }
    }

    pub(crate) fn begin_drain(&self) {
        self.advance(DRAINING);
    }

    pub(crate) fn stop(&self) {
        self.advance(STOPPING);
    }

    pub(crate) fn count_cancelled(&self) {
        self.count_cancelled_n(1);
    }

    pub(crate) fn count_cancelled_n(&self, tasks: usize) {
        self.cancelled.fetch_add(tasks, Ordering::Relaxed);
    }

    pub(crate) fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// One worker's tasks waiting for shutdown: a slab of wakers whose free list
/// has room for every key (reserved as the slab grows), so `remove` never
/// allocates.
#[derive(Debug, Default)]
pub(crate) struct ShutdownWaiters {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl ShutdownWaiters {
    fn register(&mut self, waker: &Waker) -> usize {
        let key = self.free.pop().unwrap_or_else(|| {
            self.wakers.push(None);
            // Room for every key on the free list (it is empty here), so
            // that `remove` never allocates.
            self.free.reserve(self.wakers.len());
            self.wakers.len() - 1
        });
        self.wakers[key] = Some(waker.clone());
        key
    }

    fn update(&mut self, key: usize, waker: &Waker) {
        if let Some(slot) = self.wakers.get_mut(key) {
            match slot {
                Some(stored) if stored.will_wake(waker) => {}
                other => *other = Some(waker.clone()),
            }
        }
    }

    fn remove(&mut self, key: usize) {
        if let Some(slot) = self.wakers.get_mut(key) {
            if slot.take().is_some() {
                self.free.push(key);
            }
        }
    }

    /// Empties the list, returning every waker.
    pub(crate) fn take_all(&mut self) -> Vec<Waker> {
        self.free.clear();
        self.wakers.drain(..).flatten().collect()
    }
}

/// Where a [`ShutdownRequested`] future is registered.
#[derive(Clone, Copy, Debug)]
struct Registered {
    /// The worker's incarnation (unique in the process, unlike its
    /// `(worker, epoch)`).
    incarnation: u64,
    key: usize,
}

/// Future of [`shutdown_requested`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug, Default)]
pub struct ShutdownRequested {
    registered: Option<Registered>,
}

/// Completes when the runtime running this task begins a graceful shutdown.
///
/// Accept loops use it (or [`until_shutdown`]) to stop accepting; the
/// connections they spawned keep running until they finish or the grace
/// period ends.
///
/// # Panics
///
/// Polling it outside a cellio runtime panics.
pub fn shutdown_requested() -> ShutdownRequested {
    ShutdownRequested::default()
}

impl Future for ShutdownRequested {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let polled = with_current(|executor| {
            if executor.shared.draining() {
                // Registrations are dropped wholesale when draining begins.
                this.registered = None;
                return Poll::Ready(());
            }
            let mut waiters = executor.shutdown_waiters.borrow_mut();
            match this.registered {
                Some(r) if executor.incarnation() == r.incarnation => {
                    waiters.update(r.key, cx.waker())
                }
                // Not registered, or registered on another worker (the
                // future moved): register here. A stale entry elsewhere
                // only causes one spurious wake at shutdown.
                _ => {
                    this.registered = Some(Registered {
                        incarnation: executor.incarnation(),
                        key: waiters.register(cx.waker()),
                    });
                }
            }
            Poll::Pending
        });
        polled.unwrap_or_else(|| panic!("cellio: shutdown_requested polled outside a runtime"))
    }
}

impl Drop for ShutdownRequested {
    fn drop(&mut self) {
        let Some(r) = self.registered.take() else {
            return;
        };
        with_current(|executor| {
            if executor.incarnation() == r.incarnation && !executor.shared.draining() {
                executor.shutdown_waiters.borrow_mut().remove(r.key);
            }
        });
    }
}

/// Runs `future` until it completes (`Some(output)`) or the runtime begins
/// a graceful shutdown (`None`; the future is dropped, which cancels it).
///
/// ```no_run
/// # async fn f(listener: cellio_stub::Listener) {}
/// # mod cellio_stub { pub struct Listener; }
/// use cellio_runtime::until_shutdown;
/// # cellio_runtime::Runtime::new().unwrap().block_on(async {
/// // An accept loop that stops accepting when shutdown begins:
/// while let Some(()) = until_shutdown(std::future::ready(())).await {
///     # break;
/// }
/// # });
/// ```
pub fn until_shutdown<F: Future>(future: F) -> UntilShutdown<F> {
    UntilShutdown {
        future,
        shutdown: shutdown_requested(),
    }
}

/// Future of [`until_shutdown`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct UntilShutdown<F> {
    future: F,
    shutdown: ShutdownRequested,
}

impl<F: Future> Future for UntilShutdown<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned (never moved out, no
        // `Unpin` impl unless `F: Unpin`); `shutdown` is `Unpin`.
        let this = unsafe { self.get_unchecked_mut() };
        if Pin::new(&mut this.shutdown).poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        // SAFETY: see above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        future.poll(cx).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_never_grows_the_free_list() {
        let mut waiters = ShutdownWaiters::default();
        let keys: Vec<usize> = (0..50).map(|_| waiters.register(Waker::noop())).collect();
        let capacity = waiters.free.capacity();
        assert!(capacity >= 50, "room for every key: {capacity}");
        for key in keys {
            waiters.remove(key);
        }
        assert_eq!(waiters.free.len(), 50);
        assert_eq!(waiters.free.capacity(), capacity);
        // Keys are reused.
        assert!(waiters.register(Waker::noop()) < 50);
    }
}
