//! How a socket used through poll methods runs its operations: it keeps the
//! direction's [`OpCell`] reserved from one operation to the next.
//!
//! The operation futures (`crate::op`) reserve a cell only when they must
//! wait and release it when they finish, because any task may hold a
//! `&TcpStream` and start the next operation. A [`TcpIo`](crate::TcpIo)
//! owns its stream (and a [`UdpIo`](crate::udp::UdpIo) its socket; what
//! follows holds for both, with the stream's words), so nobody else can
//! start one: it reserves each cell
//! once, on its first operation in that direction, and gives it back in
//! `TcpIo::into_inner` (or, when the `TcpIo` is dropped, the socket's
//! registration resets it). In between, nothing is built or dropped per
//! operation and no generation moves.
//!
//! An operation whose attempt proves the socket drained (a short read, a
//! partial write) parks its task's waker in the cell right away, before
//! returning its result. The next operation in that direction then finds
//! the cell still parked with its task's waker and no notification since
//! ([`OpCell::still_parked`]: one load, no write) and returns `Pending` at
//! once; the reactor's next notification wakes the task. Per echoed message
//! that is one write to the receive cell (the park) besides the reactor's,
//! where the futures need two; each a compare-and-swap, or a plain store
//! when the cell is confined (below).
//!
//! # Invariants
//!
//! * While a [`HeldCell`] holds its token, the cell is `RESERVED` or
//!   `PARKED` under it; every other operation on that direction gets
//!   `ResourceBusy` (the usual one-operation-per-direction rule).
//! * A readiness snapshot is taken before each attempt; parking passes it to
//!   [`OpCell::park`], which refuses to sleep if a notification arrived
//!   since (the same rule as the futures). The early park after a drained
//!   attempt uses that attempt's snapshot, so data or space that arrived
//!   during the syscall makes it refuse, and the next operation attempts.
//! * No early park once the snapshot shows a hang-up: after one, no
//!   notification will ever come, so the next operation must attempt (and
//!   read the 0 or the error).
//! * "Drained" is never remembered outside the cell: it *is* the cell's
//!   `PARKED` phase, which every notification ends. (A sequence number kept
//!   aside could match again after the 26-bit sequence wrapped.)
//! * A parked waker that is not awaited any more gets at most one spurious
//!   wake: the notification that ends `PARKED`.
//! * The keep-sleeping shortcut assumes the parked operation's wait is the
//!   next one's too. Where it is not (a Unix datagram send to another
//!   peer than the one whose full queue parked the last, given-up send),
//!   the holder calls [`HeldCell::poll_attempting`], which takes the cell
//!   back and attempts.
//! * Each poll that may make a syscall first spends one unit of the task's
//!   cooperative budget; staying parked spends nothing. A first
//!   reservation refused with `ResourceBusy` spends one too (as in
//!   `crate::op`).
//! * A reservation taken on the thread the socket's reactor is bound to is
//!   *confined* ([`OpCell::reserve_confined`]): the early park and the
//!   reactor's notifications are then plain stores, not compare-and-swaps.
//!   That is sound only because the [`TcpIo`](crate::TcpIo) (or `UdpIo`)
//!   holding it cannot leave the thread (neither is `Send` nor `Sync`), so every
//!   use of the token, and the registration's reset when the stream drops,
//!   happens there, and the bound reactor notifies only from there.

use std::io;
use std::task::{Poll, Waker};

use cellio_reactor::{budget, CellError, Completions, OpCell, Park, Token};

use crate::op::Attempt;

/// One direction's reservation, kept across operations.
#[derive(Debug, Default)]
pub(crate) struct HeldCell {
    token: Option<Token>,
    /// The operation in progress has waited at least once (for the stats).
    /// An operation abandoned while waiting leaves it set, so the next one
    /// counts as parked: the stats are exact only for operations that are
    /// polled to completion.
    parked: bool,
}

impl HeldCell {
    /// Runs one operation: `Ready` with the attempt's result, or `Pending`
    /// with `waker` parked in the cell (or, with the budget spent, with the
    /// task scheduled again).
    ///
    /// `confine` is asked once, when the first operation reserves the cell:
    /// `true` only if the socket's reactor is bound to this thread and the
    /// holder can never leave it (see the module docs).
    #[inline(always)]
    pub(crate) fn poll<R>(
        &mut self,
        cell: &OpCell,
        done: &Completions,
        waker: &Waker,
        confine: impl FnOnce() -> bool,
        attempt: impl FnMut() -> Attempt<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_with(cell, done, waker, confine, true, attempt)
    }

    /// [`poll`](Self::poll), except that a cell still parked by the last
    /// operation does not keep this one asleep: it attempts at once. For a
    /// send whose full buffer is its destination's (a Unix datagram
    /// socket's peer), made to another destination than the send that
    /// parked (which was given up): that one's wait says nothing about
    /// this one's room.
    #[inline(always)]
    pub(crate) fn poll_attempting<R>(
        &mut self,
        cell: &OpCell,
        done: &Completions,
        waker: &Waker,
        confine: impl FnOnce() -> bool,
        attempt: impl FnMut() -> Attempt<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_with(cell, done, waker, confine, false, attempt)
    }

    /// [`poll`](Self::poll), with the keep-sleeping shortcut only if
    /// `may_stay_parked` (a constant at each call site, so the branch
    /// folds away).
    #[inline(always)]
    fn poll_with<R>(
        &mut self,
        cell: &OpCell,
        done: &Completions,
        waker: &Waker,
        confine: impl FnOnce() -> bool,
        may_stay_parked: bool,
        mut attempt: impl FnMut() -> Attempt<R>,
    ) -> Poll<io::Result<R>> {
        let token = match self.token {
            Some(token) => token,
            None => match reserve(cell, confine) {
                Ok(token) => *self.token.insert(token),
                Err(e) => return refused(waker, e),
            },
        };
        // Parked by the last operation (which found the socket drained), and
        // nothing has arrived since: keep sleeping.
        if may_stay_parked && cell.still_parked(token, waker) {
            self.parked = true;
            return Poll::Pending;
        }
        loop {
            // Takes the cell back to RESERVED if it is parked (with another
            // task's waker, or notified meanwhile).
            let seen = match cell.observe_reserved(token) {
                Ok(seen) => seen,
                // Unreachable while the TcpIo owns its stream (only dropping
                // the registration resets the cell); a worthless token then.
                Err(e) => {
                    self.token = None;
                    return Poll::Ready(Err(e.into()));
                }
            };
            if budget::poll_proceed(waker).is_pending() {
                return Poll::Pending;
            }
            match attempt() {
                Ok((value, drained)) => {
                    done.record(std::mem::take(&mut self.parked));
                    if drained && !seen.is_hung_up() {
                        // Park now for the next operation (see the module
                        // docs). Refused (readiness moved, or the reactor
                        // closed): the cell stays reserved and the next
                        // operation attempts.
                        let _ = cell.park(token, seen, waker);
                    }
                    return Poll::Ready(Ok(value));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.parked = false;
                    return Poll::Ready(Err(e));
                }
            }
            match cell.park(token, seen, waker) {
                Ok(Park::Parked) => {
                    self.parked = true;
                    return Poll::Pending;
                }
                // A notification arrived since the snapshot: try again.
                Ok(Park::Retry) => continue,
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    /// `true` while the cell is held and confined to this thread.
    pub(crate) fn is_confined(&self, cell: &OpCell) -> bool {
        self.token.is_some() && cell.is_confined()
    }

    /// Gives the cell back, if held. A parked waker is simply dropped with
    /// the reservation: nothing was moved, so nothing is lost.
    pub(crate) fn release(&mut self, cell: &OpCell) {
        self.parked = false;
        if let Some(token) = self.token.take() {
            // Stale means the cell was reset under us: nothing to give back.
            let _ = cell.release(token);
        }
    }
}

/// The cell refused the first reservation. `Busy` (an operation future
/// holds the direction) spends one unit of the task's budget first, as an
/// attempt does, so that a loop retrying it yields (see `crate::op`); with
/// the budget spent it yields instead, and the next poll reserves again.
#[cold]
#[inline(never)]
fn refused<R>(waker: &Waker, error: CellError) -> Poll<io::Result<R>> {
    if error == CellError::Busy && budget::poll_proceed(waker).is_pending() {
        return Poll::Pending;
    }
    Poll::Ready(Err(error.into()))
}

/// The first reservation: confined when `confine` says this thread may.
///
/// `confine` is true only when the socket's reactor is bound to this thread
/// (turned and dropped only here), and the holder (a `TcpIo`, neither `Send`
/// nor `Sync`) stays here with the stream whose drop resets the cell.
#[cold]
#[inline(never)]
fn reserve(cell: &OpCell, confine: impl FnOnce() -> bool) -> Result<Token, CellError> {
    if confine() {
        // SAFETY: as above, every change of the word until the release or
        // the reset happens on this thread.
        unsafe { cell.reserve_confined() }
    } else {
        cell.reserve()
    }
}
