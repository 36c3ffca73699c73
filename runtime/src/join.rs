//! [`JoinHandle`]: awaiting a spawned task's output.
//!
//! The handle and the task share a [`JoinState`]: one [`OpCell`] (the same
//! completion cell sockets use) and the output slot. The handle reserves the
//! cell when the task is spawned and is its only holder; the task writes the
//! output once and then notifies the cell.
//!
//! # Invariants
//!
//! * The output is written by the task exactly once, before `notify`
//!   (whose AcqRel CAS publishes it), and read by the handle at most once,
//!   after an Acquire snapshot shows the notification (sequence ≠ 0).
//! * A task that is dropped before finishing (runtime shut down) still
//!   writes an output: [`JoinError::Cancelled`].

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cellio_reactor::{CellError, OpCell, Park, Token};

/// Why a task produced no output.
pub enum JoinError {
    /// The task panicked; the payload is what it panicked with.
    Panicked(Box<dyn Any + Send + 'static>),
    /// The runtime was dropped before the task finished.
    Cancelled,
    /// The `JoinHandle` was polled again after returning the output.
    Consumed,
}

impl JoinError {
    /// `true` if the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }

    /// `true` if the task was dropped before it finished.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
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

pub(crate) struct JoinState<T> {
    cell: OpCell,
    output: std::cell::UnsafeCell<Option<Result<T, JoinError>>>,
}

// SAFETY: `output` is written once by the task before `cell.notify()` and
// read once by the handle after observing that notification (module
// invariants); the cell's atomics order the two. `T: Send` because the
// output moves from the task's thread to the handle's.
unsafe impl<T: Send> Sync for JoinState<T> {}

/// An owned permission to await a spawned task's output.
///
/// Dropping the handle detaches the task: it keeps running and its output
/// is dropped.
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
    state: Arc<JoinState<T>>,
    token: Token,
    done: bool,
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> JoinHandle<T> {
    /// `true` once the task has finished (its output is ready).
    pub fn is_finished(&self) -> bool {
        self.done
            || self
                .state
                .cell
                .observe_reserved(self.token)
                .is_ok_and(|seen| seen.sequence() != 0)
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Err(JoinError::Consumed));
        }
        loop {
            let seen = match this.state.cell.observe_reserved(this.token) {
                Ok(seen) => seen,
                Err(CellError::Closed) | Err(_) => {
                    this.done = true;
                    return Poll::Ready(Err(JoinError::Cancelled));
                }
            };
            if seen.sequence() != 0 {
                // SAFETY: the Acquire snapshot saw the task's notification,
                // which it made after its only write of the output; we read
                // once (`done` guards re-entry).
                let output = unsafe { (*this.state.output.get()).take() };
                let _ = this.state.cell.release(this.token);
                this.done = true;
                return Poll::Ready(output.unwrap_or(Err(JoinError::Cancelled)));
            }
            match this.state.cell.park(this.token, seen, cx.waker()) {
                Ok(Park::Parked) => return Poll::Pending,
                Ok(Park::Retry) => continue,
                Err(_) => {
                    this.done = true;
                    return Poll::Ready(Err(JoinError::Cancelled));
                }
            }
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.state.cell.release(self.token);
        }
    }
}

/// The future the runtime stores for `spawn(future)`: runs `future`, catches
/// its panic, and hands the output to the [`JoinHandle`].
pub(crate) struct Spawned<F: Future> {
    future: Option<F>,
    state: Arc<JoinState<F::Output>>,
}

impl<F: Future> Spawned<F> {
    pub(crate) fn new(future: F) -> (Self, JoinHandle<F::Output>) {
        let state = Arc::new(JoinState {
            cell: OpCell::new(),
            output: std::cell::UnsafeCell::new(None),
        });
        let token = state
            .cell
            .reserve()
            .expect("a fresh cell is idle and can be reserved");
        let handle = JoinHandle {
            state: state.clone(),
            token,
            done: false,
        };
        (
            Self {
                future: Some(future),
                state,
            },
            handle,
        )
    }

    fn complete(&mut self, output: Result<F::Output, JoinError>) {
        self.future = None;
        // SAFETY: the task writes the output once (the future is gone after
        // this, so neither `poll` nor `drop` reaches here again) and the
        // handle reads it only after the notification below.
        unsafe { *self.state.output.get() = Some(output) };
        self.state.cell.notify();
    }
}

impl<F: Future> Future for Spawned<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: `future` is structurally pinned: it is never moved out of
        // the `Option` (only dropped in place by `complete`), and `Spawned`
        // has no `Unpin` impl that would let it move while pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let Some(future) = this.future.as_mut() else {
            return Poll::Ready(());
        };
        // SAFETY: see above: pinned in place inside `this`.
        let future = unsafe { Pin::new_unchecked(future) };
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                this.complete(Ok(output));
                Poll::Ready(())
            }
            Err(panic) => {
                this.complete(Err(JoinError::Panicked(panic)));
                Poll::Ready(())
            }
        }
    }
}

impl<F: Future> Drop for Spawned<F> {
    fn drop(&mut self) {
        if self.future.is_some() {
            self.complete(Err(JoinError::Cancelled));
        }
    }
}
