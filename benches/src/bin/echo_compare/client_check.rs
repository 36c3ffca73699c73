//! The load client's cross-check (`--client-check PAIRS`): cellio's bundled load client and
//! the independent `mio_load` drive the same cellio echo server in alternating closed-loop
//! runs (server and client pinned as for the table), and the two conditions are judged
//! from the pairs: the two agree on messages/s within 10%, and the load client drives at
//! least as many as the minimal mio client (it must not be the bottleneck).
//!
//! Alternation matters more than length here: the VM's speed drifts by ±20% between runs of
//! a few seconds, so each pair's ratio is taken between neighbours and the median of the
//! ratios is what is judged. "At least as many" is decided with a sign test over the pairs.

use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use cellio_benches::median;

use crate::extras::parse_load_json;
use crate::{
    client_argv, finish_client, parse_client_json, spawn_client, start_server, wait_quiet, Args,
    ServerSpec,
};

/// Messages per second of each client in each pair: `(load, mio_load)`.
#[derive(Clone, Debug, Default)]
pub struct ClientCheck {
    pub pairs: Vec<(f64, f64)>,
    pub secs: f64,
}

/// One pair: a fresh server, then `load` and `mio_load` (in that order if `load_first`), each
/// for `secs` after `--warmup`.
fn run_pair(
    args: &Args,
    spec: &ServerSpec,
    load: &Path,
    mio_load: &Path,
    secs: f64,
    load_first: bool,
) -> Result<(f64, f64), String> {
    wait_quiet(args)?;
    let (mut server, addr) = start_server(args, spec)?;
    let load_argv = client_argv(args, addr, format!("{}s", args.warmup), format!("{secs}s"));
    let mio_argv = client_argv(args, addr, args.warmup.to_string(), secs.to_string());
    // The order alternates between pairs, so that a server that warms up (or a VM that
    // drifts) within a pair favours neither client.
    let (load_line, mio_line) = if load_first {
        let l = client_json_line(args, load, &load_argv, secs)?;
        (l, client_json_line(args, mio_load, &mio_argv, secs)?)
    } else {
        let m = client_json_line(args, mio_load, &mio_argv, secs)?;
        (client_json_line(args, load, &load_argv, secs)?, m)
    };
    if let Some(status) = server.0.try_wait().map_err(|e| format!("wait: {e}"))? {
        return Err(format!("server exited during the check ({status})"));
    }
    drop(server);
    let load_rate = parse_load_json(&load_line)?.msgs_per_sec;
    let (msgs, _, took) = parse_client_json(&mio_line)?;
    Ok((load_rate, msgs as f64 / took))
}

/// Runs one pinned client to the end and returns its JSON line.
fn client_json_line(
    args: &Args,
    program: &Path,
    argv: &[String],
    secs: f64,
) -> Result<String, String> {
    let (client, lines, stderr) = spawn_client(args, program, argv)?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.warmup + secs + 30.0);
    let mut json = None;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with('{') => json = Some(line),
            Ok(_) => {}
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("{} timed out", program.display()))
            }
        }
    }
    finish_client(client, stderr, deadline)?;
    json.ok_or_else(|| format!("{} printed no JSON result", program.display()))
}

/// Runs `pairs` alternating pairs against `spec`, printing each as it finishes.
pub fn run(
    args: &Args,
    spec: &ServerSpec,
    load: &Path,
    mio_load: &Path,
    pairs: u32,
    secs: f64,
) -> Result<ClientCheck, String> {
    let mut check = ClientCheck {
        pairs: Vec::new(),
        secs,
    };
    for i in 1..=pairs {
        let (a, b) = run_pair(args, spec, load, mio_load, secs, i % 2 == 1)?;
        eprintln!(
            "  client check {i}/{pairs}  load {a:>9.0} msg/s  mio_load {b:>9.0} msg/s  ratio {:.3}",
            a / b
        );
        check.pairs.push((a, b));
    }
    Ok(check)
}

/// Two-sided sign-test p-value: `k` successes of `n` fair coin flips, or anything as far
/// from `n/2`.
fn sign_test_p(k: usize, n: usize) -> f64 {
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

impl ClientCheck {
    fn ratios(&self) -> Vec<f64> {
        self.pairs.iter().map(|&(a, b)| a / b).collect()
    }

    /// Median of the pairs' load/mio_load ratios (`None` without pairs).
    pub fn median_ratio(&self) -> Option<f64> {
        (!self.pairs.is_empty()).then(|| median(&self.ratios()))
    }

    /// Pairs in which the load client was ahead.
    fn ahead(&self) -> usize {
        self.pairs.iter().filter(|&&(a, b)| a > b).count()
    }

    /// "agree within 10%": the median ratio within [0.9, 1.1].
    fn agree_verdict(&self) -> &'static str {
        match self.median_ratio() {
            Some(r) if (0.9..=1.1).contains(&r) => "met",
            Some(_) => "MISSED",
            None => "unknown",
        }
    }

    /// "at least as many": met with a median ratio of 1 or more; otherwise MISSED when a sign
    /// test over the pairs says the load client is behind (p < 0.05), MISSED? when it cannot.
    fn at_least_verdict(&self) -> &'static str {
        match self.median_ratio() {
            None => "unknown",
            Some(r) if r >= 1.0 => "met",
            Some(_) if sign_test_p(self.ahead(), self.pairs.len()) < 0.05 => "MISSED",
            Some(_) => "MISSED?",
        }
    }

    /// The lines printed under the table.
    pub fn notes(&self) -> Vec<String> {
        let ratios = self.ratios();
        let Some(r) = self.median_ratio() else {
            return vec!["client check: no pair finished".into()];
        };
        let a = median(&self.pairs.iter().map(|p| p.0).collect::<Vec<_>>());
        let b = median(&self.pairs.iter().map(|p| p.1).collect::<Vec<_>>());
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let n = self.pairs.len();
        vec![
            format!(
                "client check: cellio's load client against mio_load, {n} pairs of {} s \
                 closed-loop runs against the cellio server (each pair on a fresh server, the \
                 order within a pair alternating): \
                 load {a:.0} msg/s, mio_load {b:.0} msg/s (medians); load / mio_load {r:.3} \
                 (median of the pairs) [{lo:.2}, {hi:.2}], load ahead in {} of {n} (sign test \
                 p = {:.2})",
                self.secs,
                self.ahead(),
                sign_test_p(self.ahead(), n)
            ),
            format!(
                "client check verdicts: agree within 10% on msgs/s: {}; load drives at least as \
                 many msgs/s as mio_load: {}",
                self.agree_verdict(),
                self.at_least_verdict()
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(f64, f64)]) -> ClientCheck {
        ClientCheck {
            pairs: pairs.to_vec(),
            secs: 3.0,
        }
    }

    #[test]
    fn sign_test_matches_exact_binomial_tails() {
        // 3 of 12: P(X <= 3) = (1 + 12 + 66 + 220) / 4096, two-sided doubled.
        assert!((sign_test_p(3, 12) - 2.0 * 299.0 / 4096.0).abs() < 1e-12);
        assert!((sign_test_p(9, 12) - sign_test_p(3, 12)).abs() < 1e-12);
        assert_eq!(sign_test_p(6, 12), 1.0);
        assert!(sign_test_p(0, 8) < 0.01);
        assert_eq!(sign_test_p(0, 0), 1.0);
    }

    #[test]
    fn verdicts_follow_the_median_ratio_and_the_sign_test() {
        // Behind in every one of 8 pairs, by 4%: agrees, but decidedly fewer.
        let behind = check(&[(96.0, 100.0); 8]);
        assert_eq!(behind.agree_verdict(), "met");
        assert_eq!(behind.at_least_verdict(), "MISSED");
        // Behind by the median, ahead in 3 of 8: not decided.
        let mixed = check(&[
            (96.0, 100.0),
            (97.0, 100.0),
            (95.0, 100.0),
            (98.0, 100.0),
            (96.0, 100.0),
            (101.0, 100.0),
            (102.0, 100.0),
            (103.0, 100.0),
        ]);
        assert_eq!(mixed.at_least_verdict(), "MISSED?");
        // Ahead by the median: met; 20% behind: no agreement either.
        assert_eq!(check(&[(101.0, 100.0); 3]).at_least_verdict(), "met");
        assert_eq!(check(&[(80.0, 100.0); 3]).agree_verdict(), "MISSED");
        assert_eq!(check(&[]).agree_verdict(), "unknown");
    }
}
