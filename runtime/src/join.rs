//! [`JoinHandle`]: awaiting a spawned task's output.
//!
//! The handle holds one of the two references to the task's block (see
//! `task::raw`) and reserves the block's join cell — the same
//! [`OpCell`](cellio_reactor::OpCell) sockets use — when the task is
//! spawned: it is the cell's only holder. The task writes its output once
//! and notifies the cell; the handle parks on the cell until then.
//!
//! A task dropped before it finishes still leaves an output:
//! [`JoinError::Cancelled`] if its runtime shut down,
//! [`JoinError::Aborted`] if [`JoinHandle::abort`] asked for it. An abort
//! sets a flag in the block's header and wakes the task; the task's worker
//! drops the future at that poll instead of polling it (see `task::raw`).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use cellio_reactor::{Park, Token};

use crate::abort::AbortHandle;
use crate::task::{RawTask, Typed};
use crate::TaskId;

/// Why a task produced no output.
pub enum JoinError {
    /// The task panicked; the payload is what it panicked with.
    Panicked(Box<dyn Any + Send + 'static>),
    /// The runtime was dropped before the task finished.
    Cancelled,
    /// [`JoinHandle::abort`] dropped the task before it finished.
    Aborted,
    /// The `JoinHandle` was polled again after returning the output.
    Consumed,
}

impl JoinError {
    /// `true` if the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }

    /// `true` if the task was dropped before it finished: its runtime shut
    /// down ([`Cancelled`](JoinError::Cancelled)) or it was
    /// [`Aborted`](JoinError::Aborted).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled | JoinError::Aborted)
    }

    /// The panic's payload, to resume it with
    /// [`std::panic::resume_unwind`]; the error itself back if the task did
    /// not panic.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self {
            JoinError::Panicked(payload) => Ok(payload),
            other => Err(other),
        }
    }

    /// The panic's payload.
    ///
    /// # Panics
    ///
    /// If the task did not panic (see [`is_panic`](Self::is_panic)).
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic().unwrap_or_else(|error| {
            panic!("JoinError::into_panic on an error that is not a panic: {error}")
        })
    }

    fn panic_message(&self) -> Option<&str> {
        match self {
            JoinError::Panicked(payload) => payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str)),
            _ => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(_) => f
                .debug_tuple("Panicked")
                .field(&self.panic_message().unwrap_or("<non-string payload>"))
                .finish(),
            JoinError::Cancelled => f.write_str("Cancelled"),
            JoinError::Aborted => f.write_str("Aborted"),
            JoinError::Consumed => f.write_str("Consumed"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(_) => match self.panic_message() {
                Some(message) => write!(f, "task panicked: {message}"),
                None => f.write_str("task panicked"),
            },
            JoinError::Cancelled => f.write_str("task was cancelled: its runtime shut down"),
            JoinError::Aborted => f.write_str("task was aborted through its JoinHandle"),
            JoinError::Consumed => f.write_str("JoinHandle polled after it returned the output"),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for std::io::Error {
    fn from(err: JoinError) -> Self {
        // The panic payload is not `Sync`; keep its message.
        std::io::Error::other(err.to_string())
    }
}

/// An owned permission to await a spawned task's output.
///
/// Dropping the handle detaches the task: it keeps running and its output
/// is dropped. [`abort`](JoinHandle::abort) stops it instead.
///
/// # Examples
///
/// ```
/// let rt = cellio_runtime::Runtime::new()?;
/// let answer = rt.block_on(async {
///     let handle = cellio_runtime::spawn(async { 6 * 7 });
///     handle.await
/// });
/// assert_eq!(answer.unwrap(), 42);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct JoinHandle<T> {
    /// `None` once the handle gave its reference up: after it returned
    /// the output (a later poll is `Consumed`), or when it is dropped.
    raw: Option<RawTask>,
    token: Token,
    /// The task's id, kept for after `raw` is gone.
    id: TaskId,
    _output: PhantomData<T>,
}

// SAFETY: the handle touches only the block's header and, after the task
// finished, its output `T` (moved out or dropped on the handle's thread):
// sending the handle sends a `T`.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` only reads the header's atomics (`is_finished`).
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> Unpin for JoinHandle<T> {}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> JoinHandle<T> {
    /// Wraps the join reference of a freshly spawned task.
    pub(crate) fn new(raw: RawTask) -> Self {
        let token = raw
            .header()
            .join
            .reserve()
            .expect("a fresh task's join cell is idle");
        Self {
            id: raw.id(),
            raw: Some(raw),
            token,
            _output: PhantomData,
        }
    }

    /// `true` once the task has finished (its output is ready, or was
    /// already taken).
    pub fn is_finished(&self) -> bool {
        self.raw.as_ref().is_none_or(crate::abort::is_finished)
    }

    /// An [`AbortHandle`] for this task: it can stop the task from any
    /// thread, be cloned, and outlive this handle. Made after this handle
    /// returned the output, it has nothing to stop (and says finished).
    pub fn abort_handle(&self) -> AbortHandle {
        AbortHandle::new(self.raw.as_ref().map(RawTask::clone_ref), self.id)
    }

    /// The task's [`TaskId`] (also after the handle returned the output).
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Stops the task: its future is dropped, on its worker, instead of
    /// being polled again, and the handle then returns
    /// [`JoinError::Aborted`]. A task that already finished keeps its
    /// output; one being polled right now (on another worker) is dropped
    /// after that poll, unless the poll finished it.
    ///
    /// Callable from any thread, any number of times; it does not wait
    /// for the future to be dropped (await the handle for that) and it
    /// allocates nothing. Dropping the future cancels what it was doing as
    /// dropping any cellio future does: a socket operation in flight gives
    /// its cell back and loses no byte, a timer is disarmed. After the
    /// handle returned the output, `abort` does nothing.
    ///
    /// Until the future is dropped, what it was awaiting stays in flight:
    /// a receive (send, accept) the task was parked in still holds that
    /// direction of its socket, so one made on the same socket right after
    /// `abort` fails with `ErrorKind::ResourceBusy`. To take a socket over
    /// from an aborted task (tokio's "abort the reader, then read"), await
    /// the handle first: it returns once the future has been dropped.
    ///
    /// A [`spawn_blocking`](crate::spawn_blocking) job that has not started
    /// is dropped when a pool thread takes it out of the queue, and only
    /// then does the handle return `Aborted`: while every thread of the
    /// pool is busy (at
    /// [`max_blocking_threads`](crate::Builder::max_blocking_threads)), the
    /// handle waits for one to free. A job already running runs to its
    /// end.
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
    ///     handle.abort();
    ///     let error = handle.await.unwrap_err();
    ///     assert!(error.is_cancelled());
    ///     assert!(matches!(error, cellio_runtime::JoinError::Aborted));
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn abort(&self) {
        // `None` once the output was returned (the reference goes with it).
        if let Some(raw) = &self.raw {
            crate::abort::abort_task(raw);
        }
    }

    /// Gives the task reference up (into the owner's pool if this is its
    /// worker thread).
    fn release(&mut self) {
        if let Some(raw) = self.raw.take() {
            let _ = raw.header().join.release(self.token);
            crate::worker::release_task(raw);
        }
    }
}

impl<T> JoinHandle<T> {
    /// The handle's poll. With `spend`, an output that is there spends a
    /// unit of the task's budget before it is taken, as tokio's handles
    /// do, so a loop awaiting handles of finished tasks yields now and
    /// then; with the budget spent it returns `Pending` (the task woken)
    /// and leaves the output in the block. A [`JoinSet`](crate::JoinSet)
    /// polls its members without spending (with its entries' wakers, which
    /// must be woken only by a finish) and spends once per output itself.
    pub(crate) fn poll_join(
        &mut self,
        cx: &mut Context<'_>,
        spend: bool,
    ) -> Poll<Result<T, JoinError>> {
        let Some(raw) = self.raw.as_ref() else {
            return Poll::Ready(Err(JoinError::Consumed));
        };
        let cell = &raw.header().join;
        loop {
            let Ok(seen) = cell.observe_reserved(self.token) else {
                self.release();
                return Poll::Ready(Err(JoinError::Cancelled));
            };
            if seen.sequence() != 0 {
                if spend && cellio_reactor::budget::poll_proceed_anywhere(cx.waker()).is_pending() {
                    return Poll::Pending;
                }
                // SAFETY: the snapshot (Acquire) saw the task's
                // notification; `T` is the output type of the task this
                // handle was created for.
                let output = unsafe { Typed::<T>::take(raw) };
                self.release();
                return Poll::Ready(output.unwrap_or(Err(JoinError::Cancelled)));
            }
            match cell.park(self.token, seen, cx.waker()) {
                Ok(Park::Parked) => return Poll::Pending,
                Ok(Park::Retry) => continue,
                Err(_) => {
                    self.release();
                    return Poll::Ready(Err(JoinError::Cancelled));
                }
            }
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    /// The output once the task has finished. Taking it spends a unit of
    /// the task's cooperative budget, as tokio's `JoinHandle` does: with
    /// the budget spent the poll returns `Pending`, its task woken, and
    /// the output waits for the next poll.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_join(cx, true)
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        // Dropped before it returned the output: the task may run on for a
        // long while, and the join cell would keep the waker of the
        // handle's last poll (and whatever it owns: a `JoinSet`'s entry
        // waker keeps the set's ready list) until the block goes. Nothing
        // will park there again, so drop it now, as tokio does.
        if let Some(raw) = self.raw.take() {
            let _ = raw.header().join.release_dropping_waker(self.token);
            crate::worker::release_task(raw);
        }
    }
}
