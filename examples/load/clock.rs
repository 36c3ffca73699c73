//! The load client's clock: a message's times as nanoseconds since the
//! run's epoch, in a plain `u64` ([`Stamp`]), read once per message (a
//! closed loop reads it once more every 64 messages, after its yield to
//! the worker's other tasks: `conn::yield_then_now`).
//!
//! Two sources:
//! - **the time-stamp counter** (x86-64 Linux, when the kernel itself keeps
//!   time with it: `current_clocksource` is `tsc`, so the kernel has checked
//!   that it ticks at a constant rate and agrees across CPUs). One `rdtsc`
//!   and a multiply: about a third of what `Instant::now()` costs here, and
//!   none of `Instant`'s `timespec` arithmetic. Its rate is calibrated
//!   against `Instant` once, over [`CALIBRATION`];
//! - **`Instant`** everywhere else, and for paced runs (`--rate`).
//!
//! Invariants:
//! - Stamps of one clock are comparable across the run's threads (every
//!   worker gets a copy of the same `Clock`: the same epoch and rate).
//! - Differences of stamps are exact to the calibration's error — what
//!   latencies and timeouts need. Against `Instant`, a TSC stamp drifts by
//!   that error times the time since the epoch: below 1 µs per second on
//!   this project's VM (0.2–0.8 ppm over 2 s, five calibrations), but
//!   nothing bounds it elsewhere, which is why a paced run, whose sleeps
//!   `Instant` times to the millisecond, keeps `Instant` as its source.
//! - A stamp never goes below the epoch: a counter read a little behind the
//!   epoch's (another CPU) gives 0, and a latency is never negative.

use std::time::{Duration, Instant};

/// How long the time-stamp counter's rate is measured against `Instant`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const CALIBRATION: Duration = Duration::from_millis(10);

/// A point in time: nanoseconds since its [`Clock`]'s epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    /// Nanoseconds from `earlier` to `self` (0 if `earlier` is later).
    #[inline]
    pub fn nanos_since(self, earlier: Stamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `d` later, saturating far beyond any run.
    #[inline]
    pub fn add(self, d: Duration) -> Stamp {
        Stamp(self.0.saturating_add(nanos(d)))
    }

    /// `d` earlier, or the epoch.
    #[inline]
    pub fn sub(self, d: Duration) -> Stamp {
        Stamp(self.0.saturating_sub(nanos(d)))
    }
}

/// `d` in nanoseconds, saturating at `u64::MAX` (some 584 years).
#[inline]
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Where a [`Clock`] reads the time.
#[derive(Clone, Copy, Debug)]
enum Source {
    Instant,
    /// The time-stamp counter: `ns = (tsc - base) * ns_per_tick_q32 >> 32`.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    Tsc {
        base: u64,
        ns_per_tick_q32: u64,
    },
}

/// The run's clock (`Copy`: one per connection, no shared state).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
    source: Source,
}

impl Clock {
    /// A clock on `Instant`, with its epoch now.
    pub fn on_instant() -> Clock {
        Clock {
            epoch: Instant::now(),
            source: Source::Instant,
        }
    }

    /// The cheapest trustworthy clock here: the time-stamp counter where the
    /// kernel keeps time with it (after [`CALIBRATION`] spent measuring its
    /// rate), otherwise `Instant`.
    pub fn fastest() -> Clock {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if let Some(clock) = tsc::calibrated() {
            return clock;
        }
        Clock::on_instant()
    }

    /// Whether this clock reads the time-stamp counter.
    pub fn is_tsc(&self) -> bool {
        !matches!(self.source, Source::Instant)
    }

    /// The time now.
    #[inline]
    pub fn now(&self) -> Stamp {
        match self.source {
            Source::Instant => self.stamp(Instant::now()),
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Source::Tsc {
                base,
                ns_per_tick_q32,
            } => {
                let ticks = tsc::read().saturating_sub(base);
                Stamp(((u128::from(ticks) * u128::from(ns_per_tick_q32)) >> 32) as u64)
            }
        }
    }

    /// `at` as a stamp of this clock (the epoch if `at` is before it).
    pub fn stamp(&self, at: Instant) -> Stamp {
        Stamp::default().add(at.saturating_duration_since(self.epoch))
    }

    /// `at` as an `Instant` (for timers), saturating far in the future.
    pub fn instant_of(&self, at: Stamp) -> Instant {
        let far = self.epoch + Duration::from_secs(100 * 365 * 86_400);
        self.epoch
            .checked_add(Duration::from_nanos(at.0))
            .map_or(far, |t| t.min(far))
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod tsc {
    use super::{Clock, Source, CALIBRATION};
    use std::time::Instant;

    /// The time-stamp counter.
    #[inline]
    pub fn read() -> u64 {
        // SAFETY: `rdtsc` exists on every x86-64 CPU and only reads the
        // counter (no memory access, no side effects).
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// Whether the kernel keeps time with the counter: it then runs at a
    /// constant rate through sleep states and agrees across CPUs (the
    /// kernel checks both before it selects it).
    fn kernel_trusts_it() -> bool {
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .is_ok_and(|s| s.trim() == "tsc")
    }

    /// An `Instant` and the counter at (nearly) the same moment: of a few
    /// tries, the one whose two counter reads around `Instant::now()` are
    /// closest, taken at their middle.
    fn pair() -> (Instant, u64) {
        let mut best: Option<(u64, Instant, u64)> = None;
        for _ in 0..8 {
            let before = read();
            let at = Instant::now();
            let after = read();
            let spread = after.wrapping_sub(before);
            if best.is_none_or(|(s, _, _)| spread < s) {
                best = Some((spread, at, before + spread / 2));
            }
        }
        let (_, at, ticks) = best.expect("eight tries");
        (at, ticks)
    }

    /// A counter clock with its epoch now and its rate measured over
    /// [`CALIBRATION`]; `None` where the counter is not to be trusted or the
    /// measurement makes no sense (a rate outside 100 MHz – 100 GHz).
    pub fn calibrated() -> Option<Clock> {
        if !kernel_trusts_it() {
            return None;
        }
        let (epoch, base) = pair();
        std::thread::sleep(CALIBRATION);
        let (end, ticks_end) = pair();
        let ns = end.saturating_duration_since(epoch).as_nanos();
        let ticks = u128::from(ticks_end.checked_sub(base)?);
        // ticks per ns between 0.1 and 100.
        if ticks == 0 || ticks * 10 < ns || ticks > ns * 100 {
            return None;
        }
        let ns_per_tick_q32 = u64::try_from((ns << 32) / ticks).ok()?;
        Some(Clock {
            epoch,
            source: Source::Tsc {
                base,
                ns_per_tick_q32,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whichever source this machine gives, stamps follow `Instant`: over
    /// 50 ms they agree within 1% (the TSC's calibration error is parts
    /// per million; the slack is for the reads around the sleep).
    #[test]
    fn stamps_follow_instant() {
        for clock in [Clock::fastest(), Clock::on_instant()] {
            let (i0, s0) = (Instant::now(), clock.now());
            std::thread::sleep(Duration::from_millis(50));
            let (s1, i1) = (clock.now(), Instant::now());
            let by_stamps = s1.nanos_since(s0) as f64;
            let by_instant = i1.duration_since(i0).as_nanos() as f64;
            assert!(
                (by_stamps / by_instant - 1.0).abs() < 0.01,
                "tsc {}: {by_stamps} ns by stamps, {by_instant} by Instant",
                clock.is_tsc()
            );
            // And a stamp taken now lies where `stamp` puts `Instant::now()`.
            let (read, converted) = (clock.now(), clock.stamp(Instant::now()));
            let gap = read.nanos_since(converted).max(converted.nanos_since(read));
            assert!(gap < 5_000_000, "tsc {}: {gap} ns apart", clock.is_tsc());
        }
    }

    #[test]
    fn stamps_never_go_back_on_one_thread() {
        let clock = Clock::fastest();
        let mut last = clock.now();
        for _ in 0..100_000 {
            let now = clock.now();
            assert!(now >= last, "{now:?} after {last:?}");
            last = now;
        }
    }

    #[test]
    fn conversions_saturate_instead_of_panicking() {
        let clock = Clock::on_instant();
        let far = Stamp(u64::MAX);
        assert!(clock.instant_of(far) > Instant::now());
        assert_eq!(Stamp(5).sub(Duration::from_secs(1)), Stamp(0));
        assert_eq!(Stamp(5).add(Duration::MAX), far);
        assert_eq!(Stamp(5).nanos_since(Stamp(9)), 0);
        let before = Instant::now();
        let clock = Clock::on_instant();
        assert_eq!(clock.stamp(before), Stamp(0));
    }
}
