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
//!   `done`: polling again yields [`CellError::Consumed`]. On the thread
//!   that turns the socket's reactor the release is a plain load and store
//!   (`OpCell::release_on_reactor_thread`: a held cell is written only by
//!   its holder and its notifier, which runs there); elsewhere a CAS.
//! * Dropping an unfinished operation releases its reservation. No data was
//!   moved by a parked operation, so cancelling loses nothing. One dropped
//!   while still parked leaves the cell `EXHAUSTED` (nothing arrived since
//!   its attempt said `EAGAIN`), so the next operation parks without a
//!   syscall.
//! * Each syscall attempt spends one unit of the task's cooperative budget
//!   first; with the budget spent the operation yields before the syscall.
//!   (A batch send's attempt may make several `sendmmsg` calls: it pays
//!   for each one after the first itself, and stops early when the budget
//!   is spent; see `datagram::batch::send_queued`.)
//!   A poll that parks (again) without a syscall, because the socket is
//!   known to be exhausted and nothing has arrived since, does no work and
//!   spends nothing. Otherwise a task waiting on as many parked operations
//!   as its budget would spend it all on them at every wake-up, and the
//!   operations it polls after them would yield for ever: a spin, not a
//!   wait.
//! * An operation refused with `ResourceBusy` (another one holds the
//!   direction) spends one unit too, though it made no syscall: the error
//!   comes at once, so a loop that retries it would otherwise never yield
//!   and would starve every other task of its worker, the holder's
//!   included.

use std::io;
use std::task::{Poll, Waker};

use cellio_reactor::thread_words::thread_id;
use cellio_reactor::{
    budget, CellError, Completions, OpCell, Park, Readiness, Registration, Token,
};

/// What one attempt of the syscall produced: the result, and whether it
/// proved the socket exhausted in this direction (a short read or partial
/// write), so the next operation may park without a failing syscall.
pub(crate) type Attempt<R> = io::Result<(R, bool)>;

/// One direction of a socket as an operation sees it: its registration
/// and which direction. The cell it parks on (in the reactor's table), the
/// counters it records its completion in (in the registration) and the
/// thread that notifies the cell all derive from the two.
#[derive(Clone, Copy)]
pub(crate) struct Side<'a> {
    registration: &'a Registration,
    tx: bool,
}

impl<'a> Side<'a> {
    /// The receive direction (also `accept`).
    #[inline(always)]
    pub(crate) fn rx(registration: &'a Registration) -> Self {
        Self {
            registration,
            tx: false,
        }
    }

    /// The send direction (also `connect`).
    #[inline(always)]
    pub(crate) fn tx(registration: &'a Registration) -> Self {
        Self {
            registration,
            tx: true,
        }
    }

    /// The direction's cell.
    #[inline(always)]
    fn cell(self) -> &'a OpCell {
        if self.tx {
            self.registration.tx()
        } else {
            self.registration.rx()
        }
    }

    /// The direction's completion counters.
    #[inline(always)]
    fn done(self) -> &'a Completions {
        if self.tx {
            self.registration.tx_completions()
        } else {
            self.registration.rx_completions()
        }
    }
}

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

    /// The result of an operation with nothing to move (an empty buffer):
    /// `Ok(0)` at once, without the cell. The cell cannot answer for it: an
    /// exhausted one parks it, and so does the syscall's `EAGAIN` (Linux
    /// says `EAGAIN` to an empty read of an empty socket), until data
    /// comes that it would not even take.
    #[cold]
    #[inline(never)]
    pub(crate) fn nothing_to_move(&mut self) -> Poll<io::Result<usize>> {
        if self.done {
            return consumed();
        }
        self.done = true;
        Poll::Ready(Ok(0))
    }

    /// Drives the operation. With `waker: None` it never parks: it returns
    /// `Pending` where it would have slept (the `try_complete` fast path).
    ///
    /// The two steady-state cases run straight through, inline in the
    /// caller's future: an attempt that succeeds (one load, the syscall and,
    /// if the operation had parked, the cell's release: a plain store on
    /// the reactor's thread, else one CAS), and an
    /// operation that parks without a syscall because an earlier short read
    /// proved the socket drained (one CAS when its task's waker is already
    /// in the cell, else reserve and park: two). Everything
    /// else (`EAGAIN`, a retry after a racing notification, errors, misuse)
    /// goes to [`poll_slow`](Self::poll_slow), out of line.
    #[inline(always)]
    pub(crate) fn poll<R>(
        &mut self,
        side: Side<'_>,
        waker: Option<&Waker>,
        mut attempt: impl FnMut() -> Attempt<R>,
    ) -> Poll<io::Result<R>> {
        let cell = side.cell();
        if self.done {
            return consumed();
        }
        let seen = match self.token {
            None => cell.observe(),
            Some(token) => {
                // A holder polled again while it is still parked with this
                // task's waker and nothing has arrived (its task was woken
                // for something else): it keeps sleeping, with no syscall
                // and no budget spent. Without a waker (`try_complete`),
                // parked with any waker: taking the cell back would unpark
                // the waker its last poll left, and the next notification
                // would wake nobody; nothing has arrived, so there is
                // nothing to try either.
                let parked = match waker {
                    Some(waker) => cell.still_parked(token, waker),
                    None => cell.is_parked(token),
                };
                if parked {
                    return Poll::Pending;
                }
                cell.observe_reserved(token)
            }
        };
        let Ok(seen) = seen else {
            return self.poll_slow(side, waker, attempt, None);
        };
        if seen.is_exhausted() {
            // Parking straight away, without a syscall (and without
            // spending budget: parking does no work): only a fresh
            // operation takes this shortcut inline (a holder that is polled
            // again goes the long way).
            if let (Some(waker), None) = (waker, self.token) {
                // The same task parking on this socket again: one CAS.
                if let Some(token) = cell.park_idle(seen, waker) {
                    self.token = Some(token);
                    self.parked = true;
                    return Poll::Pending;
                }
                if let Ok(token) = cell.reserve() {
                    self.token = Some(token);
                    if let Ok(Park::Parked) = cell.park(token, seen, waker) {
                        self.parked = true;
                        return Poll::Pending;
                    }
                }
            }
            // A holder that is not parked (it yielded for the budget, or
            // parked with another task's waker), or a refused park: the
            // long way, which parks again without a syscall or budget
            // unless readiness moved.
            return self.poll_slow(side, waker, attempt, None);
        }
        if spend_budget(waker).is_pending() {
            return Poll::Pending;
        }
        match attempt() {
            Ok((value, exhausted)) => {
                self.complete(side, exhausted.then_some(seen));
                Poll::Ready(Ok(value))
            }
            Err(e) => self.after_failed_attempt(side, waker, seen, e, attempt),
        }
    }

    /// [`poll`](Self::poll) for a send whose `EAGAIN` is its destination's,
    /// not the socket's (a Unix datagram sent by address): a fresh
    /// operation attempts even on a cell marked exhausted, since that mark
    /// may be a send elsewhere's (the connected peer's full queue); an
    /// `EAGAIN` then parks it as usual. Everything else as `poll`.
    pub(crate) fn poll_attempting<R>(
        &mut self,
        side: Side<'_>,
        waker: Option<&Waker>,
        mut attempt: impl FnMut() -> Attempt<R>,
    ) -> Poll<io::Result<R>> {
        // A fresh operation: `poll`'s inline path without its shortcut
        // (one snapshot, the attempt); the rest is `poll`'s.
        if !self.done && self.token.is_none() {
            if let Ok(seen) = side.cell().observe() {
                if spend_budget(waker).is_pending() {
                    return Poll::Pending;
                }
                return match attempt() {
                    Ok((value, exhausted)) => {
                        self.complete(side, exhausted.then_some(seen));
                        Poll::Ready(Ok(value))
                    }
                    Err(e) => self.after_failed_attempt(side, waker, seen, e, attempt),
                };
            }
        }
        self.poll(side, waker, attempt)
    }

    /// The whole protocol, for every case the inline path leaves: snapshot,
    /// attempt, reserve, park or retry, until the operation completes, fails
    /// or sleeps. `would_block_at`: the caller already attempted at this
    /// snapshot and got `EAGAIN`, so the first round goes straight to
    /// parking.
    #[cold]
    #[inline(never)]
    fn poll_slow<R>(
        &mut self,
        side: Side<'_>,
        waker: Option<&Waker>,
        mut attempt: impl FnMut() -> Attempt<R>,
        mut would_block_at: Option<Readiness>,
    ) -> Poll<io::Result<R>> {
        let cell = side.cell();
        loop {
            let (seen, attempted) = match would_block_at.take() {
                // The caller's attempt at this snapshot said EAGAIN.
                Some(seen) => (seen, true),
                None => {
                    let seen = match self.token {
                        None => cell.observe(),
                        Some(token) => cell.observe_reserved(token),
                    };
                    match seen {
                        Ok(seen) => (seen, false),
                        Err(e) => return self.refused(cell, waker, e),
                    }
                }
            };
            if !attempted && !seen.is_exhausted() {
                if spend_budget(waker).is_pending() {
                    return Poll::Pending;
                }
                match attempt() {
                    Ok((value, exhausted)) => {
                        self.complete(side, exhausted.then_some(seen));
                        return Poll::Ready(Ok(value));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return self.fail(cell, e),
                }
            }
            let Some(waker) = waker else {
                return Poll::Pending;
            };
            // A fresh operation whose attempt said EAGAIN, on a cell that
            // already holds its task's waker: reserve and park in one CAS.
            if attempted && self.token.is_none() {
                if let Some(token) = cell.park_idle(seen, waker) {
                    self.token = Some(token);
                    self.parked = true;
                    return Poll::Pending;
                }
            }
            let token = match self.token {
                Some(token) => token,
                None => match cell.reserve() {
                    Ok(token) => *self.token.insert(token),
                    Err(e) => return self.refused(cell, Some(waker), e),
                },
            };
            match cell.park(token, seen, waker) {
                Ok(Park::Parked) => {
                    self.parked = true;
                    return Poll::Pending;
                }
                Ok(Park::Retry) => continue,
                Err(e) => return self.fail(cell, e.into()),
            }
        }
    }

    /// An attempt failed: `EAGAIN` (park, or retry) and `EINTR` (retry) go
    /// back through the protocol, anything else ends the operation.
    #[cold]
    #[inline(never)]
    fn after_failed_attempt<R>(
        &mut self,
        side: Side<'_>,
        waker: Option<&Waker>,
        seen: Readiness,
        error: io::Error,
        attempt: impl FnMut() -> Attempt<R>,
    ) -> Poll<io::Result<R>> {
        match error.kind() {
            io::ErrorKind::WouldBlock => self.poll_slow(side, waker, attempt, Some(seen)),
            io::ErrorKind::Interrupted => self.poll_slow(side, waker, attempt, None),
            _ => self.fail(side.cell(), error),
        }
    }

    /// Delivers a successful result: the cell is released (recording that
    /// the socket is exhausted, if the attempt at `exhausted_at` proved it)
    /// and the completion counted.
    #[inline(always)]
    fn complete(&mut self, side: Side<'_>, exhausted_at: Option<Readiness>) {
        let cell = side.cell();
        self.done = true;
        // Tested before anything is written: an operation that completed on
        // its first attempt holds no token, and its state needs no store.
        match self.token {
            None => {
                if let Some(seen) = exhausted_at {
                    cell.mark_exhausted(seen);
                }
            }
            Some(token) => {
                self.token = None;
                // A stale token means the cell was reset under us; nothing
                // to release then.
                let _ = if side.registration.reactor_thread() == thread_id() {
                    // On the thread that notifies the cell (a receive woken
                    // by its own worker's reactor, the usual case): a plain
                    // store, no locked instruction right after the syscall.
                    // `reactor_thread` is the thread the socket's reactor
                    // was bound to (0, "not known", numbers no thread); a
                    // bound reactor is turned (notify, notify_hangup) only
                    // there (`turn` refuses other threads) and dropped
                    // (close) there (the runtime drops each worker's
                    // reactor on its thread); nothing else notifies the
                    // cell (the registration is private to this crate)
                    // but a Unix socket's shutdown, which does so only
                    // there too (`unix::wake_send_after_shutdown`).
                    // SAFETY: this is the cell's only notifying thread, and
                    // this operation borrows the socket, so the registration
                    // (whose drop resets the cell) outlives the call.
                    unsafe { cell.release_on_reactor_thread(token, exhausted_at) }
                } else {
                    match exhausted_at {
                        Some(seen) => cell.release_exhausted(token, seen),
                        None => cell.release(token),
                    }
                };
            }
        }
        side.done().record(self.parked);
    }

    /// The cell refused the operation. `Busy` (another operation holds
    /// the direction) first spends one unit of the task's budget, as an
    /// attempt does: a loop that retries it at once (an accept loop that
    /// logs the error and accepts again) then yields every budget's worth
    /// of failures, not never. With the budget spent it yields instead of
    /// failing; the next poll asks the cell again. Only this failing path
    /// pays: a ready operation spends its unit once, before its attempt.
    #[cold]
    #[inline(never)]
    fn refused<R>(
        &mut self,
        cell: &OpCell,
        waker: Option<&Waker>,
        error: CellError,
    ) -> Poll<io::Result<R>> {
        if error == CellError::Busy && spend_budget(waker).is_pending() {
            return Poll::Pending;
        }
        self.fail(cell, error.into())
    }

    /// Delivers an error: the cell is released, nothing is counted.
    #[cold]
    fn fail<R>(&mut self, cell: &OpCell, error: io::Error) -> Poll<io::Result<R>> {
        self.done = true;
        if let Some(token) = self.token.take() {
            let _ = cell.release(token);
        }
        Poll::Ready(Err(error))
    }

    /// Releases a reservation held by an unfinished operation (its future is
    /// being dropped). `cell` is only called when there is one to release,
    /// so dropping a finished operation is one test of its token.
    #[inline(always)]
    pub(crate) fn cancel<'c>(&mut self, cell: impl FnOnce() -> &'c OpCell) {
        if self.token.is_some() {
            self.cancel_reserved(cell);
        }
    }

    /// The rare half of [`cancel`](Self::cancel), out of line.
    #[cold]
    #[inline(never)]
    fn cancel_reserved<'c>(&mut self, cell: impl FnOnce() -> &'c OpCell) {
        if let Some(token) = self.token.take() {
            // Still parked: the socket is drained, and the cell says so to
            // the next operation.
            let _ = cell().release_abandoned(token);
            tracing::trace!(generation = token.generation(), "op cancelled");
        }
    }
}

/// Fairness: every syscall attempt first spends one unit of the task's
/// cooperative budget; a task whose sockets are always ready yields once it
/// is spent (see `cellio_reactor::budget`). Without a waker (the
/// `try_complete` path) there is nothing to yield to.
#[inline(always)]
fn spend_budget(waker: Option<&Waker>) -> Poll<()> {
    match waker {
        Some(waker) => budget::poll_proceed(waker),
        None => Poll::Ready(()),
    }
}

/// A finished operation polled again.
#[cold]
fn consumed<R>() -> Poll<io::Result<R>> {
    Poll::Ready(Err(CellError::Consumed.into()))
}

/// Generates the `try_complete`/`is_terminated` pair of an operation future
/// with a `poll_with(Option<&Waker>)` and an `op: OpState` (the stream and
/// datagram futures).
macro_rules! fast_path {
    ($output:ty) => {
        /// Attempts the operation now, without waiting: `Some(result)` if
        /// it completed on this first attempt, `None` if it would have to
        /// wait (then `.await` the future). After `Some`, the future is
        /// finished. See [`crate::stream::Recv::try_complete`].
        pub fn try_complete(&mut self) -> Option<std::io::Result<$output>> {
            match self.poll_with(None) {
                std::task::Poll::Ready(result) => Some(result),
                std::task::Poll::Pending => None,
            }
        }

        /// `true` once the future has delivered its result.
        pub fn is_terminated(&self) -> bool {
            self.op.is_done()
        }
    };
}

pub(crate) use fast_path;

/// The `Future` and `Drop` of an operation future with a `poll_with`, an
/// `op: OpState` and its socket in `$field`: poll with the task's waker,
/// release the cell of direction `$side` when dropped unfinished.
macro_rules! future_and_drop {
    ($name:ident<S: $bound:path>, $field:ident, $output:ty, $side:ident) => {
        impl<S: $bound> std::future::Future for $name<'_, S> {
            type Output = std::io::Result<$output>;

            #[inline]
            fn poll(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Self::Output> {
                self.get_mut().poll_with(Some(cx.waker()))
            }
        }

        impl<S: $bound> Drop for $name<'_, S> {
            fn drop(&mut self) {
                self.op.cancel(|| self.$field.registration().$side());
            }
        }
    };
}

pub(crate) use future_and_drop;

#[cfg(test)]
mod tests {
    use cellio_reactor::thread_words::thread_id;
    use cellio_runtime::{spawn_on, Runtime};

    use crate::datagram::sealed::Sealed;
    use crate::UdpSocket;

    /// The plain release (`OpState::complete`) applies where a socket's
    /// reactor runs: a socket made on a worker names that worker's thread,
    /// on worker 0 (`block_on`'s thread) and on the others, and no other
    /// thread matches it.
    #[test]
    fn a_socket_names_the_thread_of_the_worker_that_turns_its_reactor() {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let (here, other) = rt.block_on(async {
            let here = UdpSocket::bind("127.0.0.1:0").unwrap();
            assert_eq!(here.registration().reactor_thread(), thread_id());
            let other = spawn_on(1, async {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                assert_eq!(socket.registration().reactor_thread(), thread_id());
                (socket, thread_id())
            })
            .await
            .unwrap();
            assert_ne!(other.1, thread_id());
            (here, other.0)
        });
        assert_ne!(other.registration().reactor_thread(), thread_id());
        std::thread::spawn(move || {
            assert_ne!(here.registration().reactor_thread(), thread_id());
            assert_ne!(other.registration().reactor_thread(), thread_id());
        })
        .join()
        .unwrap();
    }
}
