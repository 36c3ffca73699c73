//! A p99 that a VM's stalls do not decide: percentiles by window.
//!
//! On this VM every server, the raw mio loop included, sees stalls of 1–40 ms at random
//! (hypervisor preemption, most likely: `/proc/stat` shows steal time). At 20 000 msg/s one
//! 10 ms stall delays some 200 messages plus the queue behind them; ten such stalls in a 10 s
//! run are 1% of its messages, and the run's p99 then measures the stalls, not the server (the
//! median of five runs' p99s still orders the servers at random). So each latency run is also
//! cut into short windows (`load --window`), each with its own p99. A stall spoils the windows
//! it falls in; the median over all windows of all rounds is the p99 of a typical window.
//!
//! What it cannot see: anything that hits fewer than half the windows — a server's own rare
//! pauses as much as the VM's. The share of windows whose p99 exceeds [`STALL_US`] is reported
//! beside it for that reason: a server with markedly more stalled windows than the others
//! would have stalls of its own.
//!
//! Its 95% interval comes from order statistics (ranks n/2 ∓ 0.98·√n), which assume the
//! windows independent and identically distributed. They are not quite: windows of one run
//! share its VM phase, and stalls can straddle two. So a comparison is called decided only if
//! the two intervals do not overlap *and*, with at least [`MIN_ROUNDS`] rounds each, every
//! round's median window of one server lies on the same side of every round's of the other
//! (for identical servers that happens by chance with probability 2/C(2n, n): 2.9% for 4
//! rounds, 0.8% for 5). The VM's phase can move a whole round, which keeps the pooled
//! intervals apart less often than the servers differ; so the report also compares the
//! servers round by round (`paired`), and either test can decide.

use serde_json::{json, Value};

/// A window whose p99 exceeds this is counted as hit by a stall (the servers' p99 in a quiet
/// window is 50–250 µs here).
pub const STALL_US: f64 = 1_000.0;

/// Fewer windows than this give no interval (the extreme order statistics of 5 or fewer
/// cover the median with less than 95%).
const MIN_WINDOWS: usize = 6;

/// Rounds each server needs before a comparison of rounds can decide anything.
pub const MIN_ROUNDS: usize = 4;

/// The per-window p99s of one server, over all its latency runs.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowP99 {
    /// Windows with at least one message.
    pub windows: usize,
    /// The median window's p99, µs.
    pub median_us: f64,
    /// A 95% confidence interval for that median (order statistics), µs; `None` for fewer
    /// than [`MIN_WINDOWS`] windows.
    pub ci_us: Option<(f64, f64)>,
    /// Windows whose p99 exceeds [`STALL_US`], as a fraction of all.
    pub stalled: f64,
    /// Each round's median window p99, µs (rounds without windows left out).
    pub round_medians_us: Vec<f64>,
}

impl WindowP99 {
    /// `rounds`: the window p99s of each latency run. `None` for no windows at all.
    pub fn of(rounds: &[Vec<f64>]) -> Option<Self> {
        let mut v: Vec<f64> = rounds.iter().flatten().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        // The median lies between the order statistics of 1-based ranks
        // floor(n/2 − 0.98√n) and ceil(n/2 + 0.98√n) + 1 with about 95% probability
        // (normal approximation to the binomial); 0-based below.
        let half = 0.98 * (n as f64).sqrt();
        let lo = ((n as f64 / 2.0 - half).floor() - 1.0).max(0.0) as usize;
        let hi = ((n as f64 / 2.0 + half).ceil() as usize).min(n - 1);
        Some(WindowP99 {
            windows: n,
            median_us: cellio_benches::median(&v),
            ci_us: (n >= MIN_WINDOWS).then(|| (v[lo], v[hi])),
            stalled: v.iter().filter(|&&x| x > STALL_US).count() as f64 / n as f64,
            round_medians_us: rounds
                .iter()
                .filter(|r| !r.is_empty())
                .map(|r| cellio_benches::median(r))
                .collect(),
        })
    }

    /// Whether `self` ≤ `other` is decided (see the module docs): `Some(true)` or
    /// `Some(false)` when it is, `None` when this run cannot tell.
    pub fn at_most(&self, other: &WindowP99) -> Option<bool> {
        let ((lo, hi), (other_lo, other_hi)) = (self.ci_us?, other.ci_us?);
        let (mine, theirs) = (&self.round_medians_us, &other.round_medians_us);
        if mine.len() < MIN_ROUNDS || theirs.len() < MIN_ROUNDS {
            return None;
        }
        let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        if hi <= other_lo && max(mine) <= min(theirs) {
            Some(true)
        } else if lo > other_hi && min(mine) > max(theirs) {
            Some(false)
        } else {
            None
        }
    }

    /// `[lo, hi]` of the interval for a report, or `[-]`.
    pub fn ci_text(&self, decimals: usize) -> String {
        match self.ci_us {
            Some((lo, hi)) => format!("[{lo:.decimals$}, {hi:.decimals$}]"),
            None => "[-]".into(),
        }
    }

    /// The figures as JSON, for the driver's `--json` output.
    pub fn to_json(&self) -> Value {
        json!({
            "windows": self.windows,
            "median_us": self.median_us,
            "ci95_us": self.ci_us.map(|(lo, hi)| [lo, hi]),
            "stalled": self.stalled,
            "round_medians_us": self.round_medians_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(from: u32, to: u32) -> Vec<f64> {
        (from..=to).map(f64::from).collect()
    }

    #[test]
    fn none_without_windows() {
        assert_eq!(WindowP99::of(&[]), None);
        assert_eq!(WindowP99::of(&[vec![], vec![]]), None);
    }

    #[test]
    fn median_interval_stalls_and_rounds() {
        // 100 windows in two rounds: 1..=90 µs quiet, ten stalled at 5 ms.
        let mut second = ramp(51, 90);
        second.extend([5_000.0; 10]);
        let w = WindowP99::of(&[ramp(1, 50), second]).unwrap();
        assert_eq!(w.windows, 100);
        assert_eq!(w.median_us, 50.5);
        // n/2 ∓ 0.98·10 = 40.2 / 59.8 → 1-based ranks 40 and 61 → values 40 and 61.
        assert_eq!(w.ci_us, Some((40.0, 61.0)));
        assert_eq!(w.stalled, 0.1);
        assert_eq!(w.round_medians_us, [25.5, 75.5]);
    }

    #[test]
    fn no_interval_for_few_windows() {
        let w = WindowP99::of(&[vec![300.0, 100.0, 200.0]]).unwrap();
        assert_eq!(w.median_us, 200.0);
        assert_eq!(w.ci_us, None);
        assert_eq!(w.ci_text(0), "[-]");
    }

    /// `rounds` rounds of 25 windows each, values `base + 0..25`.
    fn server(base: u32, rounds: usize) -> WindowP99 {
        WindowP99::of(&vec![ramp(base, base + 24); rounds]).unwrap()
    }

    #[test]
    fn decided_only_without_overlap_of_intervals_and_rounds() {
        let (a, b) = (server(1, 4), server(201, 4));
        assert_eq!(a.at_most(&b), Some(true));
        assert_eq!(b.at_most(&a), Some(false));
        // Overlapping intervals.
        let c = server(5, 4);
        assert_eq!(a.at_most(&c), None);
        assert_eq!(c.at_most(&a), None);
        // Too few rounds, however far apart.
        assert_eq!(server(1, 3).at_most(&server(201, 3)), None);
        // Separate intervals, but one round of `e` below one of `a`'s.
        let mut rounds = vec![ramp(301, 325); 4];
        rounds.push(vec![1.0]);
        let e = WindowP99::of(&rounds).unwrap();
        assert!(a.ci_us.unwrap().1 <= e.ci_us.unwrap().0);
        assert_eq!(a.at_most(&e), None);
    }
}
