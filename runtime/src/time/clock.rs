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
//!   thread only).

use std::cell::Cell;
use std::time::{Duration, Instant};

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

/// One worker's clock.
#[derive(Debug)]
pub(crate) struct Clock {
    mode: Cell<Mode>,
}

impl Clock {
    pub(crate) const fn new() -> Self {
        Self {
            mode: Cell::new(Mode::Real),
        }
    }

    /// The current time on this clock.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        match self.mode.get() {
            Mode::Real => Instant::now(),
            Mode::Paused(at) => at,
            Mode::Shifted {
                real_at,
                virtual_at,
            } => virtual_at + real_at.elapsed(),
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
            self.mode.set(Mode::Paused(self.now()));
        }
    }

    /// Lets a paused clock run again, from where it stands.
    pub(crate) fn resume(&self) {
        if let Some(at) = self.paused_at() {
            self.mode.set(Mode::Shifted {
                real_at: Instant::now(),
                virtual_at: at,
            });
        }
    }

    /// Moves a paused clock forward by `by`; `false` if it is not paused.
    pub(crate) fn advance(&self, by: Duration) -> bool {
        match self.paused_at() {
            Some(at) => {
                // A duration that does not fit moves it "practically
                // for ever" (`FAR`) from where it stands.
                let to = at
                    .checked_add(by)
                    .or_else(|| at.checked_add(super::FAR))
                    .unwrap_or(at);
                self.mode.set(Mode::Paused(to.max(at)));
                true
            }
            None => false,
        }
    }

    /// Moves a paused clock forward to `deadline`, if that is later.
    pub(crate) fn advance_to(&self, deadline: Instant) {
        if let Some(at) = self.paused_at() {
            self.mode.set(Mode::Paused(at.max(deadline)));
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
        assert!(!clock.advance(Duration::from_secs(1)), "not paused");
        clock.pause();
        let at = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(clock.now(), at, "stands still");
        assert!(clock.advance(Duration::from_secs(30)));
        assert_eq!(clock.now(), at + Duration::from_secs(30));
        clock.advance_to(at);
        assert_eq!(clock.now(), at + Duration::from_secs(30), "not backwards");
        clock.advance_to(at + Duration::from_secs(31));
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
}
