//! [`AbortHandle`]: stopping a spawned task without owning its output.
//!
//! An `AbortHandle` is one more counted reference to the task's block (see
//! `task::raw`), which owns nothing: it keeps the header alive, and only
//! the header is ever touched through it — the abort flag, the address to
//! wake, and a read-only look at the join cell for [`is_finished`] — even
//! when it is the last reference (the owners dropped the payload as they
//! left). The task's future and output stay with the worker and the
//! `JoinHandle`, so a handle may live on any thread, outlive the
//! `JoinHandle`, and be cloned freely.
//!
//! [`is_finished`]: AbortHandle::is_finished

use std::fmt;

use crate::task::RawTask;
use crate::TaskId;

/// Stops a spawned task from anywhere, without owning its output.
///
/// Made by [`JoinHandle::abort_handle`](crate::JoinHandle::abort_handle)
/// and returned by [`JoinSet`](crate::JoinSet)'s spawn methods. Unlike the
/// `JoinHandle`, it can be cloned, shared between threads, and kept after
/// the `JoinHandle` was awaited or dropped; dropping it does nothing to the
/// task. Creating, cloning and dropping one allocates nothing. Up to 4 093
/// `AbortHandle`s of one task may be alive at once; one more aborts the
/// process, as `Arc` does when its count would overflow.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let rt = cellio_runtime::Runtime::new()?;
/// rt.block_on(async {
///     let handle = cellio_runtime::spawn(async {
///         cellio_runtime::sleep(Duration::from_secs(3600)).await;
///     });
///     let stopper = handle.abort_handle();
///     // Another task (or thread) decides the work is no longer wanted.
///     cellio_runtime::spawn(async move { stopper.abort() });
///     let error = handle.await.unwrap_err();
///     assert!(matches!(error, cellio_runtime::JoinError::Aborted));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct AbortHandle {
    /// `None` for a handle made after the `JoinHandle` returned the output
    /// (the task is gone: nothing to abort, finished).
    raw: Option<RawTask>,
    /// The task's id (see [`TaskId`]).
    id: TaskId,
}

// SAFETY: an `AbortHandle` reaches only the block's header (atomics and
// the join cell's word), never the future or the output, so it may be
// used and dropped on any thread whatever the task's types.
unsafe impl Send for AbortHandle {}
// SAFETY: as above; every method takes `&self` and only reads or
// atomically updates the header.
unsafe impl Sync for AbortHandle {}

impl AbortHandle {
    /// A handle holding `raw`, a counted reference, or none, for the task
    /// `id`.
    pub(crate) fn new(raw: Option<RawTask>, id: TaskId) -> Self {
        Self { raw, id }
    }

    /// The task's [`TaskId`].
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Stops the task, as [`JoinHandle::abort`](crate::JoinHandle::abort)
    /// does: its future is dropped on its worker instead of being polled
    /// again, and its `JoinHandle` (if anyone still has it) returns
    /// [`JoinError::Aborted`](crate::JoinError::Aborted). A task that
    /// already finished keeps its output. Callable from any thread, any
    /// number of times.
    ///
    /// It does not wait for the future to be dropped: until then, a socket
    /// operation the task was parked in still holds its direction, and
    /// the same operation on that socket fails with `ResourceBusy` (see
    /// [`JoinHandle::abort`](crate::JoinHandle::abort); await the task's
    /// `JoinHandle` before reusing the socket).
    ///
    /// A handle made after the `JoinHandle` returned the output has
    /// nothing to stop: `abort` does nothing and `is_finished` is `true`.
    ///
    /// A queued [`spawn_blocking`](crate::spawn_blocking) job is stopped
    /// only when a pool thread takes it out of the queue (see
    /// [`JoinHandle::abort`](crate::JoinHandle::abort)): its handle waits
    /// for a free thread.
    pub fn abort(&self) {
        if let Some(raw) = &self.raw {
            abort_task(raw);
        }
    }

    /// `true` once the task has finished: it completed, panicked, was
    /// aborted, or was cancelled by its runtime's shutdown.
    pub fn is_finished(&self) -> bool {
        self.raw.as_ref().is_none_or(is_finished)
    }
}

impl Clone for AbortHandle {
    fn clone(&self) -> Self {
        Self::new(self.raw.as_ref().map(RawTask::clone_ref), self.id)
    }
}

impl Drop for AbortHandle {
    fn drop(&mut self) {
        // The reference goes back as any task reference does: into the
        // block's home pool if it was the last one.
        if let Some(raw) = self.raw.take() {
            crate::worker::release_extra_task(raw);
        }
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Asks the task behind `raw` to stop, and wakes it if its worker has
/// taken it in (else its first poll sees the request).
pub(crate) fn abort_task(raw: &RawTask) {
    if let Some(address) = raw.request_abort() {
        crate::waker::packed_waker(address).wake();
    }
}

/// `true` once the task behind `raw` notified its join cell.
pub(crate) fn is_finished(raw: &RawTask) -> bool {
    // A read-only peek: a parked `JoinHandle` must stay parked.
    raw.header().join.peek().sequence() != 0
}
