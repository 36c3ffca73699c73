//! A worker's busy time ([`WorkerMetrics::busy_time`](super::WorkerMetrics::busy_time)),
//! counted in the ticks of the cheapest clock the machine has.
//!
//! A worker reads the clock as it goes to sleep and as it wakes up, and
//! every [`FLUSH_TURNS`] turns while it does not sleep. A worker at a low
//! load sleeps once per message or so, so those reads are on the message
//! path: with `Instant::now()` the echo server ran 13 to 28 more user-space
//! instructions per message (callgrind, 20 lock-step connections, two runs
//! each: 484.2 and 486.3 against 458.0 and 459.1 on the futures path,
//! 444.8 and 442.8 against 422.7 and 429.7 through `TcpIo`),
//! with the time-stamp counter (`rdtsc`) and the flush counted with the
//! worker's turns, about 2 to 4 (medians of seven runs each: 460.6
//! against 458.3 on the futures path, 434.2 against 429.8 through `TcpIo`;
//! the runs of one build spread over 9 to 15).
//!
//! # Invariants
//!
//! * [`TickClock`] counts in time-stamp counter ticks only where the kernel
//!   keeps time with that counter itself (x86-64 Linux with
//!   `current_clocksource` `tsc`: the kernel has checked that it ticks at
//!   a constant rate and agrees across CPUs), and in nanoseconds of
//!   `Instant` since the clock's start everywhere else (and under Miri).
//!   Ticks convert to time at each read, at the rate measured against
//!   `Instant` from the clock's start to the first read at least
//!   [`CALIBRATION`] later (fixed from then on, so that a count that grows
//!   converts to a time that grows; a read before then uses the rate
//!   measured so far, and may convert the same count to a little less than
//!   the read before it, so readers hand out the largest figure so far:
//!   `WorkerSlots::busy_shown`).
//! * A worker adds ticks to its slot only for spans it was running: from
//!   the loop's start, a wake-up or the last addition to the next sleep,
//!   the loop's end, or a turn whose count is a multiple of
//!   [`FLUSH_TURNS`]. Spans never overlap, so the sum never exceeds the
//!   time the loop ran.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::Published;

/// Every this many turns (counted by the worker's slot) a worker adds its
/// busy time to its slot even if it did not sleep, so that a worker that
/// never sleeps (a saturated one) shows it too. Such a turn serves a batch
/// of tasks, so the clock is read once per 64 batches at most.
pub(crate) const FLUSH_TURNS: u64 = 64;

/// How long after its start a [`TickClock`] fixes its rate: conversions
/// before then use the rate measured so far.
const CALIBRATION: Duration = Duration::from_millis(100);

/// The clock busy time is counted with (see the module's invariants).
#[derive(Debug)]
pub(crate) struct TickClock {
    /// `true`: time-stamp counter ticks; `false`: nanoseconds since `start`.
    tsc: bool,
    start: Instant,
    start_ticks: u64,
    /// Nanoseconds per tick, fixed by the first conversion made at least
    /// [`CALIBRATION`] after the start, so that conversions from then on
    /// are monotonic.
    rate: OnceLock<f64>,
}

impl TickClock {
    pub(crate) fn new() -> Self {
        let tsc = kernel_keeps_time_with_tsc();
        let start = Instant::now();
        let start_ticks = if tsc { read_tsc() } else { 0 };
        Self {
            tsc,
            start,
            start_ticks,
            rate: OnceLock::new(),
        }
    }

    /// Now, in ticks.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        if self.tsc {
            read_tsc()
        } else {
            nanos(self.start.elapsed())
        }
    }

    /// `ticks` as time.
    pub(crate) fn duration(&self, ticks: u64) -> Duration {
        if !self.tsc {
            return Duration::from_nanos(ticks);
        }
        let rate = match self.rate.get() {
            Some(&rate) => rate,
            None => self.measure_rate(),
        };
        Duration::from_nanos((ticks as f64 * rate) as u64)
    }

    /// Nanoseconds per tick since the start, fixed if the start is
    /// [`CALIBRATION`] ago. `Instant` is read between two reads of the
    /// counter, taken again (up to three times) if they are more than
    /// 20 000 ticks (some microseconds) apart: a preemption there would
    /// skew the rate.
    #[cold]
    fn measure_rate(&self) -> f64 {
        let mut sample = (Duration::ZERO, 0);
        for _ in 0..3 {
            let before = read_tsc();
            let elapsed = self.start.elapsed();
            let after = read_tsc();
            sample = (
                elapsed,
                (before / 2 + after / 2).saturating_sub(self.start_ticks),
            );
            if after.saturating_sub(before) <= 20_000 {
                break;
            }
        }
        let (elapsed, ticks) = sample;
        if ticks == 0 {
            return 0.0;
        }
        let rate = elapsed.as_nanos() as f64 / ticks as f64;
        if elapsed >= CALIBRATION {
            return *self.rate.get_or_init(|| rate);
        }
        rate
    }
}

/// `d` in nanoseconds, saturating (at some 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `true` where the time-stamp counter is read (see the module's
/// invariants). Asked of the kernel once per process (a file read and its
/// buffer), not once per runtime.
fn kernel_keeps_time_with_tsc() -> bool {
    static TSC: OnceLock<bool> = OnceLock::new();
    *TSC.get_or_init(|| {
        cfg!(all(target_arch = "x86_64", target_os = "linux", not(miri)))
            && std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .is_ok_and(|source| source.trim() == "tsc")
    })
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline]
fn read_tsc() -> u64 {
    // SAFETY: `rdtsc` exists on every x86-64 CPU and only reads the
    // counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(all(target_arch = "x86_64", not(miri))))]
fn read_tsc() -> u64 {
    unreachable!("the time-stamp counter is read on x86-64 only")
}

/// A worker loop's busy time, kept from the loop's start or its last
/// wake-up and added to the worker's slot ([`Published`]) by
/// [`flush`](Self::flush), which the loop calls as the worker goes to
/// sleep, when the loop ends, and every [`FLUSH_TURNS`] turns in between.
pub(crate) struct BusyClock<'a> {
    clock: &'a TickClock,
    since: u64,
}

impl<'a> BusyClock<'a> {
    /// Starts counting now (a worker loop starts).
    pub(crate) fn start(clock: &'a TickClock) -> Self {
        Self {
            clock,
            since: clock.now(),
        }
    }

    /// Adds the ticks since the last addition to `slot`.
    #[inline]
    pub(crate) fn flush(&mut self, slot: &Published) {
        let now = self.clock.now();
        slot.add_busy(now.saturating_sub(self.since));
        self.since = now;
    }

    /// The worker woke up from a sleep: busy again from now.
    #[inline]
    pub(crate) fn woke_up(&mut self) {
        self.since = self.clock.now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks over a span convert back to the span's length, as `Instant`
    /// measured it, within 1 ms and 1% (the two clocks are read one after
    /// the other, and a preemption between the reads adds to one only):
    /// before the rate is fixed, and after (from then on the same count
    /// always reads the same).
    #[test]
    fn ticks_convert_to_the_time_they_span() {
        let clock = TickClock::new();
        let (start, start_ticks) = (Instant::now(), clock.now());
        for pause in [20, 120] {
            std::thread::sleep(Duration::from_millis(pause));
            let (ticks, elapsed) = (clock.now() - start_ticks, start.elapsed());
            let converted = clock.duration(ticks);
            let error = converted.abs_diff(elapsed);
            assert!(
                error <= Duration::from_millis(1) + elapsed / 100,
                "{ticks} ticks read as {converted:?} for {elapsed:?} (tsc: {})",
                clock.tsc
            );
        }
        let ticks = clock.now() - start_ticks;
        assert_eq!(clock.duration(ticks), clock.duration(ticks));
        assert!(
            !clock.tsc || clock.rate.get().is_some(),
            "fixed after 140 ms"
        );
        assert_eq!(clock.duration(0), Duration::ZERO);
    }
}
