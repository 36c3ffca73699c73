//! The cooperative budget: how many operations (socket operations first of
//! all) a task may complete in one poll before it must yield.
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
//! reach the ones it polls after them. An operation that does much more
//! than one syscall's work in one attempt (a batch send of several
//! `sendmmsg` calls) charges the rest with [`consume`] as it goes.
//!
//! The runtime spends it the same way for work that completes without a
//! syscall but can be looped over: a sleep already over, a
//! `local_channel` receive that finds a message or send that finds room,
//! the output of a finished task taken from its `JoinHandle` or `JoinSet`.
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

/// The largest budget a poll may have (half of `u32::MAX`, more than any
/// poll will spend): a poll's count has its top bit clear, the count
/// outside every poll (`u32::MAX`) has it set, and [`poll_proceed`] and
/// [`consume`] spend only from the first, so that outside a poll nothing
/// runs out and a stale tag never looks current (see [`current_tag`]).
pub const MAX_BUDGET: u32 = u32::MAX / 2;

/// The tag of a poll that has none (see [`run_with`]).
pub const NO_TAG: u32 = u32::MAX;

/// Runs `f` (a task poll) with `units` of budget and the caller's `tag`,
/// then restores the previous budget. Returns `f`'s result and whether the
/// budget ran out.
///
/// The tag is opaque here: the runtime passes the slot of the task it
/// polls ([`NO_TAG`] for a poll that is no task's), and [`current_tag`]
/// reads it back inside the poll (for `TaskId::try_current`). It costs the
/// poll one store: it is not restored afterwards, since outside every
/// budgeted poll the budget is unlimited again and [`current_tag`] says
/// `None` whatever the tag word holds (so `units` must be at most
/// [`MAX_BUDGET`]: the counts above it are the budget outside polls). Tags do not nest: an inner
/// `run_with` (the runtime never nests polls) leaves its tag for the rest
/// of the outer one. If `f` unwinds, nothing is restored: see [`reset`].
#[inline]
pub fn run_with<R>(units: u32, tag: u32, f: impl FnOnce() -> R) -> (R, bool) {
    debug_assert!(
        units <= MAX_BUDGET,
        "a poll's budget is at most MAX_BUDGET, below the unlimited one"
    );
    let previous = WORDS.with(|w| {
        w.tag.set(tag);
        w.budget.replace(units)
    });
    let result = f();
    let left = WORDS.with(|w| w.budget.replace(previous));
    (result, left == 0)
}

/// The tag word as [`run_with`] last set it, meaningful or not: for a
/// caller that runs tagged work inside a poll (the runtime cancelling the
/// tasks of a runtime dropped inside another's task) and puts the outer
/// poll's tag back with [`set_tag`] afterwards.
#[cold]
pub fn tag() -> u32 {
    WORDS.try_with(|w| w.tag.get()).unwrap_or(NO_TAG)
}

/// Sets the tag word (see [`tag`]).
#[cold]
pub fn set_tag(tag: u32) {
    let _ = WORDS.try_with(|w| w.tag.set(tag));
}

/// Puts this thread back outside every budgeted poll: an unlimited
/// budget, and so no tag. [`run_with`] restores the previous budget only
/// when `f` returns (a guard would put an unwinding path into every task
/// poll, and the runtime catches task panics inside `f`); a caller whose
/// `f` can unwind, and that runs outside every poll, calls this on the
/// way out (the runtime's `block_on` does).
#[cold]
pub fn reset() {
    let _ = WORDS.try_with(|w| w.budget.set(UNLIMITED));
}

/// The tag of the budgeted poll running on this thread (see
/// [`run_with`]), or `None` outside any and in a poll tagged [`NO_TAG`].
#[inline]
pub fn current_tag() -> Option<u32> {
    let (units, tag) = WORDS
        .try_with(|w| (w.budget.get(), w.tag.get()))
        .unwrap_or((UNLIMITED, NO_TAG));
    (units <= MAX_BUDGET && tag != NO_TAG).then_some(tag)
}

/// `true` unless the budget of the poll running on this thread is spent
/// (always `true` outside a budgeted poll). For a combinator that must
/// tell whether the future it wraps spent the last unit (`timeout`).
#[inline]
pub fn has_remaining() -> bool {
    WORDS.with(|w| w.budget.get() != 0)
}

/// Charges `units` for work an operation has already done beyond the one
/// unit it spent before its syscall (a batch send whose `sendmmsg` sent
/// many datagrams, and which would make another call): the budget goes
/// down by that much, never below zero, so that the [`poll_proceed`]
/// before the next syscall yields if nothing is left. Outside a budgeted
/// poll the count is, as for [`poll_proceed`], too large to run out (and
/// left alone while no operation spent from it).
#[inline]
pub fn consume(units: u32) {
    WORDS.with(|w| {
        let b = &w.budget;
        let left = b.get();
        if left <= MAX_BUDGET {
            b.set(left.saturating_sub(units));
        }
    })
}

/// [`poll_proceed`] for the runtime's operations that complete without a
/// syscall (a `local_channel` receive or send, a finished task's output,
/// a sleep that is over), with one difference: on a thread where no
/// worker runs (another executor driving them: a plain thread, a blocking
/// job), no budgeted poll can be running, so a count spent there is the
/// count outside every poll, run down by four billion operations: it
/// starts again from `u32::MAX` and the operation proceeds (it said
/// `Pending` for ever there). Budgeted polls run only where a worker runs
/// (the runtime's threads, `block_on`'s), so the check sits in the cold
/// branch. (Socket operations keep [`poll_proceed`], whose code the echo
/// path's instruction count is sensitive to; a thread that only drives
/// sockets outside every runtime still runs out after four billion.)
#[inline]
pub fn poll_proceed_anywhere(waker: &Waker) -> Poll<()> {
    WORDS.with(|w| {
        let b = &w.budget;
        let left = b.get();
        if left == 0 {
            if outside_every_runtime() {
                b.set(UNLIMITED - 1);
                return Poll::Ready(());
            }
            waker.wake_by_ref();
            return Poll::Pending;
        }
        b.set(left - 1);
        Poll::Ready(())
    })
}

/// Whether no worker runs on this thread (see [`poll_proceed_anywhere`]).
#[cold]
#[inline(never)]
fn outside_every_runtime() -> bool {
    crate::thread_words::worker_owner() == crate::thread_words::NO_WORKER
}

/// Spends one unit: `Ready` if the operation may proceed, otherwise wakes
/// `waker` (so the task is polled again soon) and returns `Pending`.
#[inline]
pub fn poll_proceed(waker: &Waker) -> Poll<()> {
    WORDS.with(|w| {
        let b = &w.budget;
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

    /// Makes this test's thread look like a worker's, as the runtime's
    /// threads are wherever it runs budgeted polls (see `poll_proceed_anywhere`).
    fn as_a_worker() {
        crate::thread_words::set_worker(0, std::ptr::null());
    }

    /// On a thread where no worker runs, the count outside every poll
    /// starts again when four billion operations have run it down: it
    /// must not say `Pending` for ever. (It did, on a plain thread driving
    /// cellio's channels, join handles or sockets with another executor;
    /// found by a review once channel and join operations spent budget
    /// too.) A budgeted poll's count still runs out.
    #[test]
    fn outside_every_runtime_the_count_never_runs_out() {
        std::thread::spawn(|| {
            // As if four billion operations had run here.
            WORDS.with(|w| w.budget.set(1));
            for _ in 0..1000 {
                assert_eq!(poll_proceed_anywhere(Waker::noop()), Poll::Ready(()));
            }
            assert!(WORDS.with(|w| w.budget.get()) > MAX_BUDGET);
            assert_eq!(current_tag(), None);
            // Where a worker runs, a poll's count still runs out.
            as_a_worker();
            let ((), exhausted) = run_with(3, 7, || {
                for _ in 0..3 {
                    assert_eq!(poll_proceed_anywhere(Waker::noop()), Poll::Ready(()));
                }
                assert_eq!(poll_proceed_anywhere(Waker::noop()), Poll::Pending);
            });
            assert!(exhausted);
        })
        .join()
        .unwrap();
    }

    /// Operations outside any poll (on a worker between polls, say) spend
    /// from the unlimited count: the last poll's tag must not look current
    /// then. (The first such operation made `current_tag` return the last
    /// poll's tag, so `TaskId::try_current` could name a task that was
    /// not running; noticed in a review.)
    #[test]
    fn an_operation_outside_a_poll_does_not_bring_back_the_last_polls_tag() {
        let ((), _) = run_with(DEFAULT_BUDGET, 7, || {
            assert_eq!(current_tag(), Some(7));
        });
        assert_eq!(current_tag(), None);
        assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()));
        consume(3);
        assert_eq!(current_tag(), None, "outside a poll after an operation");
        let ((), _) = run_with(MAX_BUDGET, 9, || {
            assert_eq!(current_tag(), Some(9), "the largest budget is a poll's");
        });
        reset();
    }

    #[test]
    fn the_budget_runs_out_and_is_restored() {
        as_a_worker();
        assert_eq!(
            poll_proceed(Waker::noop()),
            Poll::Ready(()),
            "unlimited outside"
        );
        let ((), exhausted) = run_with(2, NO_TAG, || {
            assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()));
            assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()));
            assert_eq!(poll_proceed(Waker::noop()), Poll::Pending);
        });
        assert!(exhausted);
        assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()), "restored");
    }

    #[test]
    fn consume_charges_what_was_done_and_never_goes_below_zero() {
        as_a_worker();
        consume(1000);
        assert_eq!(
            poll_proceed(Waker::noop()),
            Poll::Ready(()),
            "unlimited outside"
        );
        let ((), exhausted) = run_with(5, NO_TAG, || {
            consume(3);
            assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()));
            assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()));
            assert_eq!(poll_proceed(Waker::noop()), Poll::Pending, "5 - 3 - 2");
        });
        assert!(exhausted);
        let ((), exhausted) = run_with(2, NO_TAG, || {
            consume(1000);
            assert!(!has_remaining());
            assert_eq!(poll_proceed(Waker::noop()), Poll::Pending);
        });
        assert!(exhausted);
        assert!(has_remaining(), "restored");
    }

    #[test]
    fn the_tag_is_seen_only_inside_a_budgeted_poll() {
        as_a_worker();
        assert_eq!(current_tag(), None, "no tag outside a poll");
        run_with(3, 7, || {
            assert_eq!(current_tag(), Some(7));
            assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()));
            assert_eq!(current_tag(), Some(7), "spending leaves the tag");
            let ((), exhausted) = run_with(1, NO_TAG, || {
                assert_eq!(current_tag(), None, "an untagged poll has none");
                assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()));
            });
            assert!(exhausted);
            assert_eq!(current_tag(), None, "tags do not nest: the inner one stays");
            assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()));
            assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()));
            assert_eq!(poll_proceed(Waker::noop()), Poll::Pending);
        });
        assert_eq!(
            current_tag(),
            None,
            "the tag word is stale, but no poll runs"
        );
    }

    /// A socket future polled from another thread-local's destructor, as
    /// its thread ends, may spend budget: the thread words are never torn
    /// down (they need no destructor), so `WORDS.with` does not panic there.
    /// (A review feared it did; it does not, on targets with native
    /// thread-locals.)
    #[test]
    fn the_budget_works_in_a_thread_locals_destructor() {
        struct PollsAsItDrops(std::sync::mpsc::Sender<(Poll<()>, bool, u64)>);
        impl Drop for PollsAsItDrops {
            fn drop(&mut self) {
                let seen = (
                    poll_proceed(Waker::noop()),
                    has_remaining(),
                    crate::thread_words::worker_owner(),
                );
                let _ = self.0.send(seen);
            }
        }
        thread_local! {
            static LAST: std::cell::RefCell<Option<PollsAsItDrops>> =
                const { std::cell::RefCell::new(None) };
        }
        let (done, seen) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Registered before the words are first used: destroyed after
            // them, if they had a destructor (the last registered goes
            // first).
            LAST.with(|last| *last.borrow_mut() = Some(PollsAsItDrops(done)));
            assert_eq!(poll_proceed(Waker::noop()), Poll::Ready(()));
        })
        .join()
        .unwrap();
        let seen = seen.recv_timeout(std::time::Duration::from_secs(5));
        assert_eq!(
            seen,
            Ok((Poll::Ready(()), true, crate::thread_words::NO_WORKER))
        );
    }
}
