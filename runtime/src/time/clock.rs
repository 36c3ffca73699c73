//! A worker's clock: the real one, or a paused one that tests move by hand
//! ([`pause`](super::pause), [`advance`](super::advance),
//! [`resume`](super::resume)): tokio's `time::pause`.
//!
//! Every deadline the runtime computes (`sleep`, `interval`, `timeout`)
//! and every timer check reads the clock of the worker running it, through
//! [`now`](super::now). A paused clock stands still until advanced by hand,
//! or until the worker has nothing to do but wait for a timer: then it
//! jumps to that timer's deadline (auto-advance), so a test of a 30-second
//! timeout runs in microseconds.
//!
//! # Invariants
//!
//! * The clock never goes backwards: advancing moves it forward, and
//!   resuming continues from the virtual time reached, at the real pace.
//! * Only one-worker runtimes pause (their timers all live on the one
//!   clock); `pause` refuses others.
//! * The clock is the worker's own (`Cell`s, read and written on its
//!   thread only). Worker 0's also writes each change of its mode (a
//!   pause, a move, a resume: all rare, none on the loop's path while the
//!   clock runs) to its runtime's [`SharedClock`], which the runtime's
//!   `spawn_blocking` jobs read ([`now`](super::now) there): the same time
//!   as the worker's, as tokio's blocking tasks read its paused clock. A
//!   paused clock exists only on one-worker runtimes, so worker 0's is
//!   the runtime's.
//! * It never passes [`latest_instant`], the end of what an `Instant`
//!   holds: a resumed clock stops there. A *paused* clock never reaches
//!   it: a deadline too far to represent saturates to it, so a clock there
//!   would complete every sleep at once and spin every interval; instead
//!   `advance` refuses to move the clock to it or beyond, and so does the
//!   worker's jump to the next timer (each a programming error, which
//!   panics saying so). A saturated deadline therefore never completes on
//!   a paused clock: no sleep completes before its time.

use std::cell::Cell;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The latest instant `std::time::Instant` can represent here (found once,
/// by bisection on `checked_add`): what deadlines too far to add saturate
/// to.
pub(crate) fn latest_instant() -> Instant {
    static LATEST: OnceLock<Instant> = OnceLock::new();
    *LATEST.get_or_init(|| {
        let base = Instant::now();
        let fits = |d: Duration| base.checked_add(d).is_some();
        // The most whole seconds that fit, then the most nanoseconds.
        let (mut lo, mut hi) = (0u64, u64::MAX);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(Duration::from_secs(mid)) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let secs = lo;
        let (mut lo, mut hi) = (0u32, 999_999_999u32);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(Duration::new(secs, mid)) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        base + Duration::new(secs, lo)
    })
}

/// What [`Clock::advance`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Advanced {
    /// The clock moved.
    Moved,
    /// The clock is not paused: it did not move.
    NotPaused,
    /// The move would reach [`latest_instant`] or pass it: the clock did
    /// not move.
    OutOfRange,
    /// The clock is paused at or after the deadline
    /// ([`Clock::advance_to`]): it did not move.
    Stayed,
}

/// Where the clock's time comes from.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `Instant::now()`.
    Real,
    /// Stands still at this instant.
    Paused(Instant),
    /// Resumed after a pause: `virtual_at + (Instant::now() - real_at)`.
    Shifted {
        real_at: Instant,
        virtual_at: Instant,
    },
}

impl Mode {
    /// The current time on a clock in this mode.
    #[inline]
    fn now(self) -> Instant {
        match self {
            Mode::Real => Instant::now(),
            Mode::Paused(at) => at,
            // At the end of what an `Instant` holds, it stops.
            Mode::Shifted {
                real_at,
                virtual_at,
            } => virtual_at
                .checked_add(real_at.elapsed())
                .unwrap_or_else(latest_instant),
        }
    }
}

/// A runtime's clock as its other threads see it: worker 0's mode, copied
/// there at each change (see the invariants), for `time::now()` in the
/// runtime's `spawn_blocking` jobs.
#[derive(Debug)]
pub(crate) struct SharedClock(Mutex<Mode>);

impl SharedClock {
    pub(crate) const fn new() -> Self {
        Self(Mutex::new(Mode::Real))
    }

    /// The current time on the runtime's clock.
    pub(crate) fn now(&self) -> Instant {
        let mode = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        mode.now()
    }
}

/// One worker's clock.
#[derive(Debug)]
pub(crate) struct Clock {
    mode: Cell<Mode>,
    /// Where the mode is published, on worker 0 (see the invariants).
    shared: Option<Arc<SharedClock>>,
}

impl Clock {
    /// A clock of its own, published nowhere.
    pub(crate) const fn new() -> Self {
        Self {
            mode: Cell::new(Mode::Real),
            shared: None,
        }
    }

    /// A clock that publishes its mode to `shared` (worker 0's).
    pub(crate) fn published(shared: Arc<SharedClock>) -> Self {
        Self {
            mode: Cell::new(Mode::Real),
            shared: Some(shared),
        }
    }

    /// The current time on this clock.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        self.mode.get().now()
    }

    /// Changes the mode, and publishes the change.
    fn set(&self, mode: Mode) {
        self.mode.set(mode);
        if let Some(shared) = &self.shared {
            *shared.0.lock().unwrap_or_else(PoisonError::into_inner) = mode;
        }
    }

    /// The instant the clock stands at, if it is paused.
    #[inline]
    pub(crate) fn paused_at(&self) -> Option<Instant> {
        match self.mode.get() {
            Mode::Paused(at) => Some(at),
            _ => None,
        }
    }

    /// Stops the clock at the current time (nothing if it is paused).
    pub(crate) fn pause(&self) {
        if self.paused_at().is_none() {
            self.set(Mode::Paused(self.now()));
        }
    }

    /// Lets a paused clock run again, from where it stands.
    pub(crate) fn resume(&self) {
        if let Some(at) = self.paused_at() {
            self.set(Mode::Shifted {
                real_at: Instant::now(),
                virtual_at: at,
            });
        }
    }

    /// Moves a paused clock forward by `by`. A duration that does not fit
    /// an `Instant` moves it "practically for ever" (`FAR`) from where it
    /// stands; if even that would reach [`latest_instant`], the clock does
    /// not move ([`Advanced::OutOfRange`]).
    pub(crate) fn advance(&self, by: Duration) -> Advanced {
        let Some(at) = self.paused_at() else {
            return Advanced::NotPaused;
        };
        match at.checked_add(by).or_else(|| at.checked_add(super::FAR)) {
            Some(to) if to < latest_instant() => {
                self.set(Mode::Paused(to));
                Advanced::Moved
            }
            _ => Advanced::OutOfRange,
        }
    }

    /// Moves a paused clock forward to `deadline`, if that is later
    /// ([`Advanced::Stayed`] if not) and before [`latest_instant`]
    /// ([`Advanced::OutOfRange`] if not: the clock does not move).
    pub(crate) fn advance_to(&self, deadline: Instant) -> Advanced {
        let Some(at) = self.paused_at() else {
            return Advanced::NotPaused;
        };
        if deadline <= at {
            Advanced::Stayed
        } else if deadline >= latest_instant() {
            Advanced::OutOfRange
        } else {
            self.set(Mode::Paused(deadline));
            Advanced::Moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paused_clock_stands_still_moves_by_hand_and_never_goes_back() {
        let clock = Clock::new();
        assert!(clock.paused_at().is_none());
        assert_eq!(clock.advance(Duration::from_secs(1)), Advanced::NotPaused);
        clock.pause();
        let at = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(clock.now(), at, "stands still");
        assert_eq!(clock.advance(Duration::from_secs(30)), Advanced::Moved);
        assert_eq!(clock.now(), at + Duration::from_secs(30));
        assert_eq!(clock.advance_to(at), Advanced::Stayed);
        assert_eq!(clock.now(), at + Duration::from_secs(30), "not backwards");
        assert_eq!(
            clock.advance_to(at + Duration::from_secs(31)),
            Advanced::Moved
        );
        assert_eq!(clock.now(), at + Duration::from_secs(31));
        clock.resume();
        let resumed = clock.now();
        assert!(resumed >= at + Duration::from_secs(31));
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            clock.now() >= resumed + Duration::from_millis(2),
            "runs again"
        );
        clock.pause();
        assert!(
            clock.paused_at().unwrap() >= resumed,
            "paused where it ran to"
        );
    }

    #[test]
    fn the_clock_stops_at_the_latest_instant() {
        let latest = latest_instant();
        assert!(latest.checked_add(Duration::from_nanos(1)).is_none());
        let clock = Clock::new();
        clock.pause();
        let room = latest - clock.now() - Duration::from_millis(500);
        assert_eq!(clock.advance(room), Advanced::Moved);
        // Neither a second nor "for ever" fits any more.
        assert_eq!(clock.advance(Duration::from_secs(1)), Advanced::OutOfRange);
        assert_eq!(clock.advance(Duration::MAX), Advanced::OutOfRange);
        // Nor the end itself (where every sleep would complete at once), by
        // hand or by the jump to a saturated deadline; just before it does.
        assert_eq!(
            clock.advance(Duration::from_millis(500)),
            Advanced::OutOfRange
        );
        assert_eq!(clock.advance_to(latest), Advanced::OutOfRange);
        assert_eq!(clock.now(), latest - Duration::from_millis(500));
        let just_before = latest - Duration::from_nanos(1);
        assert_eq!(clock.advance_to(just_before), Advanced::Moved);
        assert_eq!(clock.now(), just_before);
        // Resumed, it runs to the end and stays there.
        clock.resume();
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(clock.now(), latest);
    }
}
