//! [`interval`] and [`interval_at`]: a stream of ticks on a grid of
//! `start + k * period`, and what to do about ticks the task missed
//! ([`MissedTickBehavior`]).
//!
//! An [`Interval`] is a [`Sleep`] re-armed at each tick: ticking allocates
//! nothing, and never more than one timer is armed.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::time::{far_future, sleep_until, Sleep};

/// What an [`Interval`] does when a tick is late: the task came back
/// later than the tick (it was busy, or the worker was), so the tick, and
/// maybe more, are past due at once.
///
/// Whatever the behaviour, a tick completed at most 5 ms after it was
/// scheduled counts as on time (tokio's tolerance: a timer's usual
/// lateness does not count): the next tick is the grid's next one,
/// `scheduled + period`, even if that is due already (which, with a
/// period under 5 ms, it may be: it then completes at once). Only a tick
/// more than 5 ms late is handled as each behaviour says. This is tokio's
/// order (`Interval::poll_tick`), so each behaviour ticks as tokio's does.
///
/// `Skip` by default, unlike tokio, whose default is `Burst`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MissedTickBehavior {
    /// The missed ticks complete one after another at once, until the
    /// interval has caught up with its grid: as many ticks as were due, in
    /// a burst.
    Burst,
    /// The late tick completes at once, and the grid moves: the next tick
    /// is one period after it (tokio's `Delay`), so ticks after a late one
    /// are never closer than a period. Within the 5 ms tolerance the grid
    /// stays, whatever the period.
    Delay,
    /// The late tick completes at once, and the missed ones are dropped:
    /// the next tick is the grid's first one after now (tokio's `Skip`; a
    /// tick exactly at now counts as missed). Within the 5 ms tolerance the
    /// grid's next tick comes even if it is due already: with a period under
    /// 5 ms, ticks missed by at most 5 ms still come, at once.
    #[default]
    Skip,
}

/// How late a tick may complete and still count as on time, for every
/// [`MissedTickBehavior`] (tokio's 5 ms): a timer fires a little after its
/// deadline, and a grid moved by that much at every tick would drift.
const LATE_TOLERANCE: Duration = Duration::from_millis(5);

impl MissedTickBehavior {
    /// The deadline after a tick scheduled for `scheduled` that completed
    /// at `now` (tokio's `Interval::poll_tick` and `next_timeout`).
    fn next(self, scheduled: Instant, period: Duration, now: Instant) -> Instant {
        let late = now.saturating_duration_since(scheduled);
        if late <= LATE_TOLERANCE || self == MissedTickBehavior::Burst {
            // On time (or bursting): the grid's next tick, due or not.
            return scheduled.checked_add(period).unwrap_or_else(far_future);
        }
        match self {
            MissedTickBehavior::Burst => unreachable!("handled above"),
            MissedTickBehavior::Delay => now.checked_add(period).unwrap_or_else(far_future),
            MissedTickBehavior::Skip => first_tick_after(scheduled, period, now),
        }
    }
}

/// A stream of ticks, one every `period`; the first completes at once
/// (made outside a runtime: at its first poll, on the polling worker's
/// clock).
///
/// If ticks are missed (the task was busy for longer than a period), the
/// next tick completes at once and, by default, the schedule skips ahead:
/// ticks do not pile up, beyond those a tick at most 5 ms late finds due
/// (tokio's tolerance; see [`MissedTickBehavior`], also for the other
/// choices).
/// A period too long to add to an `Instant` (`Duration::MAX`) ticks once,
/// then practically never (after some 30 years).
///
/// # Panics
///
/// If `period` is zero.
///
/// ```
/// use std::time::Duration;
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let mut ticks = cellio_runtime::interval(Duration::from_millis(5));
///     for _ in 0..3 {
///         ticks.tick().await;
///     }
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn interval(period: Duration) -> Interval {
    // Outside a runtime the first tick is "at once" from its first poll,
    // on the polling worker's clock, as `sleep` counts its duration.
    let mut ticks = interval_at(super::now(), period);
    ticks.sleep = super::sleep(Duration::ZERO);
    ticks
}

/// An [`interval`] whose first tick is at `start` (at once if `start` has
/// passed) and the following ones every `period` after it.
///
/// # Panics
///
/// If `period` is zero.
///
/// ```
/// use std::time::{Duration, Instant};
/// use cellio_runtime::time::MissedTickBehavior;
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let start = Instant::now() + Duration::from_millis(10);
///     let mut ticks = cellio_runtime::time::interval_at(start, Duration::from_millis(5));
///     // Each tick on its own point, however late this task sees them (the
///     // default, `Skip`, moves on to the next point of the grid).
///     ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
///     assert_eq!(ticks.tick().await, start);
///     assert_eq!(ticks.tick().await, start + Duration::from_millis(5));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "cellio: interval period must be non-zero"
    );
    Interval {
        period,
        missed: MissedTickBehavior::default(),
        sleep: sleep_until(start),
    }
}

/// Returned by [`interval`] and [`interval_at`].
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    missed: MissedTickBehavior,
    sleep: Sleep,
}

impl Interval {
    /// Waits for the next tick; returns the instant it was scheduled for.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        match self.sleep.poll_sleep(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                let scheduled = self.sleep.deadline();
                let next = self.missed.next(scheduled, self.period, super::now());
                self.sleep.reset(next);
                Poll::Ready(scheduled)
            }
        }
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// What the interval does about missed ticks (`Skip` unless set).
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed
    }

    /// Sets what the interval does about missed ticks, from the next tick
    /// on.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cellio_runtime::time::MissedTickBehavior;
    ///
    /// cellio_runtime::Runtime::new()?.block_on(async {
    ///     let mut ticks = cellio_runtime::interval(Duration::from_millis(10));
    ///     ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ///     let first = ticks.tick().await;
    ///     std::thread::sleep(Duration::from_millis(25)); // busy: two ticks missed
    ///     let late = ticks.tick().await; // at once
    ///     assert_eq!(late, first + Duration::from_millis(10));
    ///     // Delay: the grid moved to one period after the late tick.
    ///     let next = ticks.tick().await;
    ///     assert!(next >= first + Duration::from_millis(35));
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed = behavior;
    }

    /// Starts the grid again one period from now: the next tick is then.
    pub fn reset(&mut self) {
        self.reset_after(self.period);
    }

    /// Starts the grid again now: the next tick completes at once.
    pub fn reset_immediately(&mut self) {
        self.reset_at(super::now());
    }

    /// Starts the grid again `after` from now (a duration too long to add
    /// to an `Instant`: practically never, as for a period that long).
    pub fn reset_after(&mut self, after: Duration) {
        self.reset_at(super::now().checked_add(after).unwrap_or_else(far_future));
    }

    /// Starts the grid again at `deadline`: the next tick is then.
    pub fn reset_at(&mut self, deadline: Instant) {
        self.sleep.reset(deadline);
    }
}

/// The first tick of the grid `scheduled + k * period` (k ≥ 1) after
/// `now`: the next one if it is still ahead, else the first one past the
/// missed ticks. A tick beyond what an `Instant` holds (a period like
/// `Duration::MAX`) is [`far_future`]: never, in practice, and no panic.
fn first_tick_after(scheduled: Instant, period: Duration, now: Instant) -> Instant {
    let Some(next) = scheduled.checked_add(period) else {
        return far_future();
    };
    if next > now {
        return next;
    }
    // Missed ticks: skip whole periods, counted in u128 nanoseconds (a
    // nanosecond period falls behind by more than u32::MAX ticks in 5 s).
    let periods = (now - scheduled).as_nanos() / period.as_nanos() + 1;
    let ahead = period.as_nanos().saturating_mul(periods);
    u64::try_from(ahead / 1_000_000_000)
        .ok()
        .map(|secs| Duration::new(secs, (ahead % 1_000_000_000) as u32))
        .and_then(|ahead| scheduled.checked_add(ahead))
        .unwrap_or_else(far_future)
}

#[cfg(test)]
mod tests {
    use super::*;
    use MissedTickBehavior::{Burst, Delay, Skip};

    const P: Duration = Duration::from_millis(10);

    #[test]
    fn the_next_tick_is_the_following_one_when_on_time() {
        let t0 = Instant::now();
        for behavior in [Burst, Delay, Skip] {
            assert_eq!(behavior.next(t0, P, t0 + Duration::from_millis(3)), t0 + P);
        }
    }

    #[test]
    fn missed_ticks_are_skipped_on_the_grid() {
        let t0 = Instant::now();
        // 35 ms late: ticks at 10, 20, 30 are gone; the next is at 40.
        assert_eq!(Skip.next(t0, P, t0 + Duration::from_millis(35)), t0 + P * 4);
        // Exactly on a tick counts as missed (it is not ahead).
        assert_eq!(Skip.next(t0, P, t0 + P * 2), t0 + P * 3);
    }

    #[test]
    fn a_burst_keeps_every_missed_tick_and_a_delay_moves_the_grid() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_millis(35);
        // Burst: the tick at 10 is due at once, then 20, 30 (each at once
        // as `now` passes them), then 40.
        assert_eq!(Burst.next(t0, P, now), t0 + P);
        assert_eq!(Burst.next(t0 + P, P, now), t0 + P * 2);
        assert_eq!(Burst.next(t0 + P * 3, P, now), t0 + P * 4);
        // Delay: one period after the late tick completed.
        assert_eq!(Delay.next(t0, P, now), now + P);
    }

    #[test]
    fn a_delay_moves_the_grid_after_a_tick_late_by_less_than_a_period() {
        let t0 = Instant::now();
        let p = Duration::from_millis(100);
        // 60 ms late: the next tick is a period after the late one.
        let late = t0 + Duration::from_millis(60);
        assert_eq!(Delay.next(t0, p, late), late + p);
        // Within the tolerance: on time, the grid stays.
        let slightly = t0 + LATE_TOLERANCE;
        assert_eq!(Delay.next(t0, p, slightly), t0 + p);
        // Skip and Burst keep the grid for a tick less than a period late.
        assert_eq!(Skip.next(t0, p, late), t0 + p);
        assert_eq!(Burst.next(t0, p, late), t0 + p);
    }

    /// tokio's order: the tolerance first, whatever the period. With a
    /// 2 ms period, a tick 3 ms late keeps the grid (the next tick, at
    /// 4 ms, is due already), for every behaviour; 6 ms late is late.
    #[test]
    fn a_tick_within_the_tolerance_keeps_the_grid_whatever_the_period() {
        let t0 = Instant::now();
        let p = Duration::from_millis(2);
        let now = t0 + Duration::from_millis(3);
        for behavior in [Burst, Delay, Skip] {
            assert_eq!(behavior.next(t0, p, now), t0 + p, "{behavior:?}");
        }
        let late = t0 + Duration::from_millis(6);
        assert_eq!(Burst.next(t0, p, late), t0 + p);
        assert_eq!(Delay.next(t0, p, late), late + p);
        assert_eq!(
            Skip.next(t0, p, late),
            t0 + p * 4,
            "6 ms is on a tick: missed"
        );
    }

    #[test]
    fn more_than_u32_max_missed_ticks_stay_on_the_grid() {
        let t0 = Instant::now();
        let p = Duration::from_nanos(1);
        let late = Duration::from_secs(10); // 10^10 ticks of 1 ns
        assert_eq!(
            Skip.next(t0, p, t0 + late),
            t0 + late + Duration::from_nanos(1)
        );
    }

    #[test]
    fn resets_past_what_an_instant_holds_do_not_panic() {
        // `reset` and `reset_after` compute their deadline from now; with
        // `Duration::MAX` a plain addition would overflow an `Instant`.
        let mut ticks = interval_at(Instant::now(), Duration::MAX);
        ticks.reset();
        ticks.reset_after(Duration::MAX);
        assert!(ticks.sleep.deadline() > Instant::now() + Duration::from_secs(86_400 * 365 * 29));
    }

    #[test]
    fn a_tick_past_what_an_instant_holds_is_far_in_the_future() {
        let t0 = Instant::now();
        for behavior in [Burst, Delay, Skip] {
            let next = behavior.next(t0, Duration::MAX, t0);
            assert!(next > t0 + Duration::from_secs(86_400 * 365 * 29));
        }
    }
}
