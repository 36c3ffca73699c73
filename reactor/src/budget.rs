//! The cooperative budget: how many socket operations a task may complete
//! in one poll before it must yield.
//!
//! Without it, a task whose socket is always ready (a fast peer, a full
//! receive buffer) would loop `recv → send → recv …` inside one poll
//! forever, because every operation completes synchronously — and every
//! other task on its worker would starve. The runtime gives each task poll a
//! budget with [`run_with`]; a socket operation spends one unit through
//! [`poll_proceed`] before each syscall it attempts, and once the budget is
//! spent the operation schedules its task again and returns `Pending`
//! (without touching the socket), so the worker moves on to the others. An
//! operation that only parks (again) spends nothing: work is what the
//! budget bounds, and a task waiting on many parked operations must still
//! reach the ones it polls after them.
//!
//! Outside a budgeted poll (a future polled by some other executor) there is
//! no limit.
//!
//! The count lives in [`thread_words`](crate::thread_words), in the same
//! cache line as the runtime's per-thread worker words.

use std::task::{Poll, Waker};

use crate::thread_words::WORDS;

/// Units a task poll gets by default: enough that a busy connection is not
/// interrupted more than every 128 operations, few enough that a worker
/// cycles through its tasks quickly.
pub const DEFAULT_BUDGET: u32 = 128;

/// The budget outside any budgeted poll: so large it never runs out.
pub(crate) const UNLIMITED: u32 = u32::MAX;

/// Runs `f` (a task poll) with `units` of budget, then restores the
/// previous budget. Returns `f`'s result and whether the budget ran out.
#[inline]
pub fn run_with<R>(units: u32, f: impl FnOnce() -> R) -> (R, bool) {
    let previous = WORDS.with(|w| w.budget.replace(units));
    let result = f();
    let left = WORDS.with(|w| w.budget.replace(previous));
    (result, left == 0)
}

/// Spends one unit: `Ready` if the operation may proceed, otherwise wakes
/// `waker` (so the task is polled again soon) and returns `Pending`.
#[inline]
pub fn poll_proceed(waker: &Waker) -> Poll<()> {
    WORDS.with(|w| {
        let b = &w.budget;
        // Outside a budgeted poll the count starts at u32::MAX: it would
        // take four billion operations in one poll to run out.
        let left = b.get();
        if left == 0 {
            waker.wake_by_ref();
            return Poll::Pending;
        }
        b.set(left - 1);
        Poll::Ready(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_runs_out_and_is_restored() {
        assert_eq!(
            poll_proceed(Waker::noop()),
            Poll::Ready(()),
            "unlimited outside"
        );
        let ((), exhausted) = run_with(2, || {
            assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()));
            assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()));
            assert_eq!(poll_proceed(Waker::noop()), Poll::Pending);
        });
        assert!(exhausted);
        assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()), "restored");
    }
}
