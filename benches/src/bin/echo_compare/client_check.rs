//! The load client's cross-check (`--client-check PAIRS`): cellio's bundled load client and
//! the independent `mio_load` drive the same cellio echo server in alternating closed-loop
//! runs (server and client pinned as for the table), and the two conditions are judged
//! from the pairs: the two agree on messages/s within 10%, and the load client drives at
//! least as many as the minimal mio client (it must not be the bottleneck).
//!
//! Each pair also runs `mio_load --latency`, the same mio client timing every message as
//! `load` does (one clock read and one histogram record each), in the rotation, and the load
//! client is compared with it the same way: the target is against the plain client,
//! this comparison says how much of a miss is the cost of measuring latency at all.
//!
//! Alternation matters more than length here: the VM's speed drifts by ±20% between runs of
//! a few seconds, so each pair's ratio is taken between neighbours and the median of the
//! ratios is what is judged. "At least as many" is decided with a sign test over the pairs.
//!
//! Each pair goes through the same noise guard as the table's runs: the CPU that neither the
//! server nor the client used on the two benchmark cores (other processes, or the host's steal
//! time) is measured over each client's run, and a pair where it passes
//! [`OTHER_CPU_WARN`] is repeated (`--noisy-retries`). A pair still
//! noisy after its retries is printed but left out of the verdicts: a starved client core can
//! make either client look like the bottleneck.

use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use cellio_benches::{clk_tck, median};

use crate::extras::parse_load_json;
use crate::paired::sign_test_p;
use crate::{
    client_argv, finish_client, parse_client_json, retry_noisy, spawn_client, start_server, Args,
    Sample, ServerSpec, OTHER_CPU_WARN,
};

/// One pair of runs against the same fresh server (with the timing client's run as a third).
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    /// Messages per second of cellio's load client.
    pub load: f64,
    /// Messages per second of `mio_load`.
    pub mio_load: f64,
    /// Messages per second of `mio_load --latency`.
    pub mio_timed: f64,
    /// Foreign CPU on the benchmark cores (a fraction of one core) in the noisiest of the
    /// pair's three runs.
    pub other_cpu: f64,
}

impl Pair {
    fn ratio(&self) -> f64 {
        self.load / self.mio_load
    }

    fn timed_ratio(&self) -> f64 {
        self.load / self.mio_timed
    }

    fn quiet(&self) -> bool {
        self.other_cpu <= OTHER_CPU_WARN
    }
}

/// The pairs run, noisy ones included.
#[derive(Clone, Debug, Default)]
pub struct ClientCheck {
    pub pairs: Vec<Pair>,
    pub secs: f64,
}

/// One pair: a fresh server, then `load`, `mio_load` and `mio_load --latency`, each for `secs`
/// after `--warmup`, starting with the one `rotation` (taken modulo 3) names.
fn run_pair(
    args: &Args,
    spec: &ServerSpec,
    load: &Path,
    mio_load: &Path,
    secs: f64,
    rotation: usize,
) -> Result<Pair, String> {
    let (mut server, addr) = start_server(args, spec)?;
    let server_pid = server.0.id();
    let load_argv = client_argv(args, addr, format!("{}s", args.warmup), format!("{secs}s"));
    let mio_argv = client_argv(args, addr, args.warmup.to_string(), secs.to_string());
    let mut timed_argv = mio_argv.clone();
    timed_argv.push("--latency".into());
    let clients = [
        (load, &load_argv),
        (mio_load, &mio_argv),
        (mio_load, &timed_argv),
    ];
    // Each client's JSON line and foreign CPU, in the order of `clients`. The order they run
    // in rotates between pairs, so that a server that warms up (or a VM that drifts) within a
    // pair favours no client.
    let mut runs: [(String, f64); 3] = Default::default();
    for k in 0..3 {
        let i = (rotation + k) % 3;
        let (program, argv) = clients[i];
        runs[i] = client_json_line(args, program, argv, secs, server_pid)?;
    }
    if let Some(status) = server.0.try_wait().map_err(|e| format!("wait: {e}"))? {
        return Err(format!("server exited during the check ({status})"));
    }
    drop(server);
    let [(load_line, load_other), (mio_line, mio_other), (timed_line, timed_other)] = runs;
    let mio_rate = |line: &str| -> Result<f64, String> {
        let (msgs, _, took) = parse_client_json(line)?;
        Ok(msgs as f64 / took)
    };
    Ok(Pair {
        load: parse_load_json(&load_line)?.msgs_per_sec,
        mio_load: mio_rate(&mio_line)?,
        mio_timed: mio_rate(&timed_line)?,
        other_cpu: load_other.max(mio_other).max(timed_other),
    })
}

/// Runs one pinned client to the end and returns its JSON line and the foreign CPU on the
/// benchmark cores over its run: what the cores spent beyond the server's and the client's
/// own time, as a fraction of one core.
fn client_json_line(
    args: &Args,
    program: &Path,
    argv: &[String],
    secs: f64,
    server_pid: u32,
) -> Result<(String, f64), String> {
    let (client, lines, stderr) = spawn_client(args, program, argv)?;
    let cores = [args.server_core, args.client_core];
    let start = Sample::take(server_pid, client.0.id(), &cores)?;
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
    // The client has closed its output: it is exiting or a zombie, not yet reaped, so its
    // `/proc` entry still holds its whole CPU time.
    let other_cpu = start.other_cpu(&Sample::take(server_pid, client.0.id(), &cores)?, clk_tck());
    finish_client(client, stderr, deadline)?;
    let json = json.ok_or_else(|| format!("{} printed no JSON result", program.display()))?;
    Ok((json, other_cpu))
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
        let pair = retry_noisy(
            args,
            &format!("client check {i}/{pairs}"),
            || run_pair(args, spec, load, mio_load, secs, i as usize),
            |p| p.other_cpu,
            |p| {
                format!(
                    "load {:>9.0} msg/s  mio_load {:>9.0} msg/s  ratio {:.3}  \
                     mio_load --latency {:>9.0} msg/s  ratio {:.3}  other {:>3.0}%",
                    p.load,
                    p.mio_load,
                    p.ratio(),
                    p.mio_timed,
                    p.timed_ratio(),
                    p.other_cpu * 100.0
                )
            },
        )?;
        check.pairs.push(pair);
    }
    Ok(check)
}

impl ClientCheck {
    /// The pairs the verdicts are judged on: those that stayed quiet.
    fn judged(&self) -> impl Iterator<Item = &Pair> {
        self.pairs.iter().filter(|p| p.quiet())
    }

    fn ratios(&self) -> Vec<f64> {
        self.judged().map(Pair::ratio).collect()
    }

    fn timed_ratios(&self) -> Vec<f64> {
        self.judged().map(Pair::timed_ratio).collect()
    }

    /// Median of the quiet pairs' load/mio_load ratios (`None` without any).
    pub fn median_ratio(&self) -> Option<f64> {
        let ratios = self.ratios();
        (!ratios.is_empty()).then(|| median(&ratios))
    }

    /// Quiet pairs in which the load client was ahead.
    fn ahead(&self) -> usize {
        self.judged().filter(|p| p.load > p.mio_load).count()
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
        at_least(&self.ratios())
    }

    /// The lines printed under the table.
    pub fn notes(&self) -> Vec<String> {
        let ratios = self.ratios();
        let noisy = self.pairs.len() - ratios.len();
        let Some(r) = self.median_ratio() else {
            return vec![if self.pairs.is_empty() {
                "client check: no pair finished".into()
            } else {
                format!(
                    "client check: undecided, all {noisy} pairs were noisy (other processes or \
                     the host took more than {:.0}% of a core on the benchmark cores)",
                    OTHER_CPU_WARN * 100.0
                )
            }];
        };
        let a = median(&self.judged().map(|p| p.load).collect::<Vec<_>>());
        let b = median(&self.judged().map(|p| p.mio_load).collect::<Vec<_>>());
        let c = median(&self.judged().map(|p| p.mio_timed).collect::<Vec<_>>());
        let (lo, hi) = range(&ratios);
        let timed = self.timed_ratios();
        let (timed_lo, timed_hi) = range(&timed);
        let timed_ahead = timed.iter().filter(|&&r| r > 1.0).count();
        let n = ratios.len();
        let left_out = if noisy == 0 {
            String::new()
        } else {
            format!(
                "; {noisy} noisy pair(s) left out (more than {:.0}% of a core taken by other \
                 processes or the host, after retries)",
                OTHER_CPU_WARN * 100.0
            )
        };
        vec![
            format!(
                "client check: cellio's load client against mio_load, {n} pairs of {} s \
                 closed-loop runs against the cellio server (each pair on a fresh server, the \
                 order within a pair rotating): \
                 load {a:.0} msg/s, mio_load {b:.0} msg/s (medians); load / mio_load {r:.3} \
                 (median of the pairs) [{lo:.2}, {hi:.2}], load ahead in {} of {n} (sign test \
                 p = {:.2}){left_out}",
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
            format!(
                "client check against mio_load --latency (the same mio client, timing every \
                 message too; not the issue's target, the cost of measuring latency at all): \
                 {c:.0} msg/s (median); load / mio_load --latency {:.3} (median of the pairs) \
                 [{timed_lo:.2}, {timed_hi:.2}], load ahead in {timed_ahead} of {n} (sign test \
                 p = {:.2}): at least as many: {}",
                median(&timed),
                sign_test_p(timed_ahead, n),
                at_least(&timed)
            ),
        ]
    }
}

/// The smallest and the largest of `ratios`.
fn range(ratios: &[f64]) -> (f64, f64) {
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// The "at least as many" verdict over one comparison's per-pair ratios: met with a median of
/// 1 or more; otherwise MISSED when a sign test says the load client is behind (p < 0.05),
/// MISSED? when it cannot.
fn at_least(ratios: &[f64]) -> &'static str {
    if ratios.is_empty() {
        return "unknown";
    }
    let ahead = ratios.iter().filter(|&&r| r > 1.0).count();
    if median(ratios) >= 1.0 {
        "met"
    } else if sign_test_p(ahead, ratios.len()) < 0.05 {
        "MISSED"
    } else {
        "MISSED?"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(f64, f64)]) -> ClientCheck {
        ClientCheck {
            pairs: pairs
                .iter()
                .map(|&(load, mio_load)| Pair {
                    load,
                    mio_load,
                    mio_timed: mio_load,
                    other_cpu: 0.0,
                })
                .collect(),
            secs: 3.0,
        }
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

    #[test]
    fn noisy_pairs_are_left_out_of_the_verdicts() {
        // Three quiet pairs with the load client ahead; two starved pairs far behind.
        let mut mixed = check(&[(101.0, 100.0); 3]);
        for _ in 0..2 {
            mixed.pairs.push(Pair {
                load: 40.0,
                mio_load: 100.0,
                mio_timed: 100.0,
                other_cpu: 0.25,
            });
        }
        assert_eq!(mixed.median_ratio(), Some(1.01));
        assert_eq!(mixed.at_least_verdict(), "met");
        assert_eq!(mixed.agree_verdict(), "met");
        assert!(mixed.notes()[0].contains("3 pairs"), "{:?}", mixed.notes());
        assert!(mixed.notes()[0].contains("2 noisy pair(s) left out"));
        // Only noisy pairs: nothing to judge.
        mixed.pairs.retain(|p| !p.quiet());
        assert_eq!(mixed.agree_verdict(), "unknown");
        assert!(mixed.notes()[0].contains("undecided, all 2 pairs were noisy"));
    }

    #[test]
    fn the_timed_client_is_judged_on_its_own_ratios() {
        // Behind plain mio_load in all 8 pairs, ahead of the timing client in all 8.
        let mut c = check(&[(98.0, 100.0); 8]);
        for p in &mut c.pairs {
            p.mio_timed = 97.0;
        }
        assert_eq!(c.at_least_verdict(), "MISSED");
        let notes = c.notes();
        let timed = &notes[2];
        assert!(timed.contains("load / mio_load --latency 1.010"), "{timed}");
        assert!(timed.contains("load ahead in 8 of 8"), "{timed}");
        assert!(timed.ends_with("at least as many: met"), "{timed}");
        // Behind it in 8 of 8: decidedly fewer.
        for p in &mut c.pairs {
            p.mio_timed = 99.0;
        }
        assert!(
            c.notes()[2].ends_with("at least as many: MISSED"),
            "{:?}",
            c.notes()
        );
    }
}
