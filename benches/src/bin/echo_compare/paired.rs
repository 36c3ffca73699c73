//! Two servers compared round by round: a paired sign test.
//!
//! This VM drifts between fast and slow phases that last minutes: a quiet window's p99 was
//! 115 µs for every server in one run and 550 µs in another. Pooling all rounds of one
//! server and comparing the pools (`window_stats`) mixes those phases into both intervals,
//! so they overlap even when one server is lower in every round. The runs of one round are
//! close in time (a few minutes at most), and the driver alternates the servers' order from
//! round to round (forward in odd rounds, backward in even ones), so a drift within a round
//! favours neither. Comparing the two servers *within* each round cancels the phase:
//!
//! * each round gives one ratio, server A's figure over server B's (rounds only one of them
//!   finished are left out);
//! * the comparison is decided when a two-sided sign test over the rounds rejects "equally
//!   likely lower or higher" at 5% ([`Paired::decided`]): all of 6, 7 of 8 does not (p =
//!   0.07), 9 of 10 does (p = 0.02). Rounds with equal figures count for neither side.
//!
//! It assumes rounds independent and, for identical servers, each side equally likely in
//! each round: what the alternating order is for. The report uses it beside
//! `window_stats`' test of the pooled rounds (which can decide from four rounds when the
//! servers are far apart in every round); either may decide a p99 target.

/// Server A against server B over the rounds both finished.
#[derive(Clone, Debug, PartialEq)]
pub struct Paired {
    /// A's figure over B's, one per common round, in round order.
    pub ratios: Vec<f64>,
    /// Rounds in which A's figure was lower than B's.
    pub lower: usize,
    /// Rounds in which A's figure was higher.
    pub higher: usize,
}

impl Paired {
    /// `a`, `b`: `(round, figure)` of each server. `None` when no round has both, or a
    /// figure is not positive (a ratio needs one).
    pub fn of(a: &[(usize, f64)], b: &[(usize, f64)]) -> Option<Self> {
        let mut ratios = Vec::new();
        let (mut lower, mut higher) = (0, 0);
        for &(round, x) in a {
            let Some(&(_, y)) = b.iter().find(|(r, _)| *r == round) else {
                continue;
            };
            if !(x > 0.0 && y > 0.0) {
                return None;
            }
            ratios.push(x / y);
            lower += usize::from(x < y);
            higher += usize::from(x > y);
        }
        (!ratios.is_empty()).then_some(Paired {
            ratios,
            lower,
            higher,
        })
    }

    /// The median of the rounds' ratios.
    pub fn median_ratio(&self) -> f64 {
        cellio_benches::median(&self.ratios)
    }

    /// The sign test's two-sided p-value.
    pub fn p(&self) -> f64 {
        sign_test_p(self.lower, self.lower + self.higher)
    }

    /// `Some(true)`: A lower, decided; `Some(false)`: A higher, decided; `None`: the rounds
    /// cannot tell.
    pub fn decided(&self) -> Option<bool> {
        (self.p() < 0.05).then_some(self.lower > self.higher)
    }

    /// For a report: "0.85 [0.61, 1.07] by round, lower in 7 of 8 (sign test p = 0.07)".
    pub fn text(&self) -> String {
        let min = self.ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self
            .ratios
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        format!(
            "{:.2} [{min:.2}, {max:.2}] by round, lower in {} of {} (sign test p = {:.2})",
            self.median_ratio(),
            self.lower,
            self.ratios.len(),
            self.p()
        )
    }
}

/// Two-sided sign-test p-value: `k` successes of `n` fair coin flips, or anything as far
/// from `n/2`.
pub fn sign_test_p(k: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let tail = k.min(n - k);
    // P(X <= tail) for X ~ Binomial(n, 1/2), summed with exact binomial coefficients.
    let mut coeff = 1.0f64;
    let mut sum = 0.0f64;
    for i in 0..=tail {
        if i > 0 {
            coeff = coeff * (n - i + 1) as f64 / i as f64;
        }
        sum += coeff;
    }
    (2.0 * sum / 2f64.powi(n as i32)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_test_matches_exact_binomial_tails() {
        // P(X <= 3) for n = 12: (1 + 12 + 66 + 220) / 4096, doubled.
        assert!((sign_test_p(3, 12) - 2.0 * 299.0 / 4096.0).abs() < 1e-12);
        assert!((sign_test_p(9, 12) - sign_test_p(3, 12)).abs() < 1e-12);
        assert_eq!(sign_test_p(6, 12), 1.0);
        assert!(sign_test_p(0, 8) < 0.01);
        assert_eq!(sign_test_p(0, 0), 1.0);
        // The thresholds the module docs quote.
        assert!(sign_test_p(6, 6) < 0.05);
        assert!(sign_test_p(7, 8) > 0.05);
        assert!(sign_test_p(9, 10) < 0.05);
    }

    /// `(round, figure)` for rounds 1, 2, ...
    fn rounds(v: &[f64]) -> Vec<(usize, f64)> {
        v.iter().enumerate().map(|(i, &x)| (i + 1, x)).collect()
    }

    #[test]
    fn lower_in_every_round_decides_although_the_pools_overlap() {
        // The phase moves both servers by 5x between rounds; A is 10% lower in each.
        let b = [100.0, 500.0, 120.0, 480.0, 110.0, 520.0];
        let a: Vec<f64> = b.iter().map(|x| x * 0.9).collect();
        let p = Paired::of(&rounds(&a), &rounds(&b)).unwrap();
        assert_eq!((p.lower, p.higher), (6, 0));
        assert!((p.median_ratio() - 0.9).abs() < 1e-12);
        assert_eq!(p.decided(), Some(true));
        let q = Paired::of(&rounds(&b), &rounds(&a)).unwrap();
        assert_eq!(q.decided(), Some(false));
    }

    #[test]
    fn mixed_rounds_do_not_decide() {
        let a = rounds(&[90.0, 110.0, 90.0, 90.0, 90.0, 90.0, 90.0, 90.0]);
        let b = rounds(&[100.0; 8]);
        let p = Paired::of(&a, &b).unwrap();
        assert_eq!((p.lower, p.higher), (7, 1));
        assert_eq!(p.decided(), None);
        assert_eq!(
            p.text(),
            "0.90 [0.90, 1.10] by round, lower in 7 of 8 (sign test p = 0.07)"
        );
    }

    #[test]
    fn only_common_rounds_count_and_ties_count_for_neither() {
        // A lost round 2; B lost round 4; round 3 is a tie.
        let a = [(1, 50.0), (3, 70.0), (4, 10.0)];
        let b = [(1, 100.0), (2, 100.0), (3, 70.0)];
        let p = Paired::of(&a, &b).unwrap();
        assert_eq!(p.ratios, [0.5, 1.0]);
        assert_eq!((p.lower, p.higher), (1, 0));
        assert_eq!(p.decided(), None);
        assert_eq!(Paired::of(&[(1, 1.0)], &[(2, 1.0)]), None);
        assert_eq!(Paired::of(&[(1, 0.0)], &[(1, 1.0)]), None);
    }
}
