//! How a socket used through poll methods runs its operations: it keeps the
//! direction's [`OpCell`] reserved from one operation to the next.
//!
//! The operation futures (`crate::op`) reserve a cell only when they must
//! wait and release it when they finish, because any task may hold a
//! `&TcpStream` and start the next operation. A [`TcpIo`](crate::TcpIo)
//! owns its stream, so nobody else can start one: it reserves each cell
//! once, on its first operation in that direction, and releases it when it
//! is dropped or unwrapped. In between, an operation is a snapshot, the
//! syscall and, when the socket is drained, one CAS to park; no generation
//! moves, nothing is built or dropped per operation.
//!
//! # Invariants
//!
//! * While a [`HeldCell`] holds its token, the cell is `RESERVED` or
//!   `PARKED` under it; every other operation on that direction gets
//!   `ResourceBusy` (the usual one-operation-per-direction rule).
//! * A readiness snapshot is taken before each attempt; parking passes it to
//!   [`OpCell::park`], which refuses to sleep if a notification arrived
//!   since (the same rule as the futures).
//! * `exhausted_at` is the sequence of a snapshot whose attempt proved the
//!   socket drained (a short read, a partial write). The next operation
//!   parks without a syscall only if the cell's sequence still equals it
//!   (no notification since) and the snapshot shows no hang-up: after a
//!   hang-up no notification will ever come, so a short read proves
//!   nothing. A stale mark cannot match by wrapping: the sequence counts
//!   notifications, each of which needs new readiness, and every attempt
//!   rewrites the mark.
//! * Each poll that may make a syscall first spends one unit of the task's
//!   cooperative budget; parking spends nothing.
//! * [`HeldCell::release`] gives the cell back (and parks nothing): after
//!   it, the stream's futures can use the direction again.

use std::io;
use std::task::{Poll, Waker};

use cellio_reactor::{budget, Completions, OpCell, Park, Token};

use crate::op::Attempt;

/// One direction's reservation, kept across operations.
#[derive(Debug, Default)]
pub(crate) struct HeldCell {
    token: Option<Token>,
    /// Sequence of the snapshot at which an attempt proved the socket
    /// drained in this direction.
    exhausted_at: Option<u64>,
    /// The operation in progress has parked at least once (for the stats).
    parked: bool,
}

impl HeldCell {
    /// Runs one operation: `Ready` with the attempt's result, or `Pending`
    /// with `waker` parked in the cell (or, with the budget spent, with the
    /// task scheduled again).
    #[inline(always)]
    pub(crate) fn poll<R>(
        &mut self,
        cell: &OpCell,
        done: &Completions,
        waker: &Waker,
        mut attempt: impl FnMut() -> Attempt<R>,
    ) -> Poll<io::Result<R>> {
        let token = match self.token {
            Some(token) => token,
            None => match cell.reserve() {
                Ok(token) => *self.token.insert(token),
                Err(e) => return Poll::Ready(Err(e.into())),
            },
        };
        loop {
            let seen = match cell.observe_reserved(token) {
                Ok(seen) => seen,
                // Reset under us (the reactor is gone and the slot reused):
                // the token is worthless now.
                Err(e) => {
                    self.token = None;
                    return Poll::Ready(Err(e.into()));
                }
            };
            let drained = self.exhausted_at == Some(seen.sequence()) && !seen.is_hung_up();
            if !drained {
                if budget::poll_proceed(waker).is_pending() {
                    return Poll::Pending;
                }
                match attempt() {
                    Ok((value, exhausted)) => {
                        self.exhausted_at = exhausted.then_some(seen.sequence());
                        done.record(std::mem::take(&mut self.parked));
                        return Poll::Ready(Ok(value));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.exhausted_at = None;
                        self.parked = false;
                        return Poll::Ready(Err(e));
                    }
                }
            }
            match cell.park(token, seen, waker) {
                Ok(Park::Parked) => {
                    self.parked = true;
                    return Poll::Pending;
                }
                // A notification arrived since the snapshot: try again.
                Ok(Park::Retry) => self.exhausted_at = None,
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    /// Gives the cell back, if held. A parked waker is simply dropped with
    /// the reservation: nothing was moved, so nothing is lost.
    pub(crate) fn release(&mut self, cell: &OpCell) {
        self.exhausted_at = None;
        self.parked = false;
        if let Some(token) = self.token.take() {
            // Stale means the cell was reset under us: nothing to give back.
            let _ = cell.release(token);
        }
    }
}
