//! How every socket operation runs, whatever the socket: try the syscall
//! first, park on the direction's [`OpCell`] only when it says `EAGAIN`,
//! and retry when readiness moved.
//!
//! An [`OpState`] is the per-future part of the protocol: the token of a
//! reservation (if the operation ever had to wait), whether it parked, and
//! whether it already delivered its result. It is two words and lives inside
//! the future, on the caller's stack or in the task: nothing is allocated.
//!
//! # Invariants
//!
//! * An operation that completes on its first attempt never reserves the
//!   cell: one atomic load and the syscall.
//! * A readiness snapshot is taken *before* each attempt; `park` refuses to
//!   sleep if a notification arrived since (see `cellio_reactor::cell`).
//! * Once the result is delivered, the cell is released and the state is
//!   `done`: polling again yields [`CellError::Consumed`].
//! * Dropping an unfinished operation releases its reservation. No data was
//!   moved by a parked operation, so cancelling loses nothing.
//! * Each poll that may do work spends one unit of the task's cooperative
//!   budget first; with the budget spent it yields before any syscall.

use std::io;
use std::task::{Poll, Waker};

use cellio_reactor::{budget, CellError, OpCell, Park, Readiness, Token};

/// What one attempt of the syscall produced: the result, and whether it
/// proved the socket exhausted in this direction (a short read or partial
/// write), so the next operation may park without a failing syscall.
pub(crate) type Attempt<R> = io::Result<(R, bool)>;

/// The per-future half of the cell protocol.
#[derive(Debug, Default)]
pub(crate) struct OpState {
    token: Option<Token>,
    parked: bool,
    done: bool,
}

impl OpState {
    pub(crate) const fn new() -> Self {
        Self {
            token: None,
            parked: false,
            done: false,
        }
    }

    /// `true` once the result has been delivered.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Drives the operation. With `waker: None` it never parks: it returns
    /// `Pending` where it would have slept (the `try_complete` fast path).
    #[inline]
    pub(crate) fn poll<R>(
        &mut self,
        cell: &OpCell,
        waker: Option<&Waker>,
        mut attempt: impl FnMut() -> Attempt<R>,
    ) -> Poll<io::Result<R>> {
        if self.done {
            return Poll::Ready(Err(CellError::Consumed.into()));
        }
        if let Some(waker) = waker {
            // Fairness: a task whose sockets are always ready yields after
            // its budget (see `cellio_reactor::budget`).
            if budget::poll_proceed(waker).is_pending() {
                return Poll::Pending;
            }
        }
        loop {
            let seen = match self.token {
                None => cell.observe(),
                Some(token) => cell.observe_reserved(token),
            };
            let seen = match seen {
                Ok(seen) => seen,
                Err(e) => return self.finish(cell, Err(e.into()), None),
            };
            if !seen.is_exhausted() {
                match attempt() {
                    Ok((value, exhausted)) => {
                        return self.finish(cell, Ok(value), exhausted.then_some(seen))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return self.finish(cell, Err(e), None),
                }
            }
            let Some(waker) = waker else {
                return Poll::Pending;
            };
            let token = match self.token {
                Some(token) => token,
                None => match cell.reserve() {
                    Ok(token) => *self.token.insert(token),
                    Err(e) => return self.finish(cell, Err(e.into()), None),
                },
            };
            match cell.park(token, seen, waker) {
                Ok(Park::Parked) => {
                    self.parked = true;
                    return Poll::Pending;
                }
                Ok(Park::Retry) => continue,
                Err(e) => return self.finish(cell, Err(e.into()), None),
            }
        }
    }

    #[inline]
    fn finish<R>(
        &mut self,
        cell: &OpCell,
        result: io::Result<R>,
        exhausted_at: Option<Readiness>,
    ) -> Poll<io::Result<R>> {
        self.done = true;
        match (self.token.take(), exhausted_at) {
            // A stale token means the cell was reset under us; nothing to
            // release then.
            (Some(token), Some(seen)) => drop(cell.release_exhausted(token, seen)),
            (Some(token), None) => drop(cell.release(token)),
            (None, Some(seen)) => cell.mark_exhausted(seen),
            (None, None) => {}
        }
        if result.is_ok() {
            cell.record_completion(self.parked);
        }
        Poll::Ready(result)
    }

    /// Releases a reservation held by an unfinished operation (its future is
    /// being dropped).
    #[inline]
    pub(crate) fn cancel(&mut self, cell: &OpCell) {
        if let Some(token) = self.token.take() {
            cancel_reserved(cell, token);
        }
    }
}

/// The rare half of [`OpState::cancel`], out of line so that dropping a
/// finished operation costs one branch.
#[cold]
#[inline(never)]
fn cancel_reserved(cell: &OpCell, token: Token) {
    let _ = cell.release(token);
    tracing::trace!(generation = token.generation(), "op cancelled");
}
