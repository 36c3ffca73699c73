//! Latency of several servers measured at the same moment (`--together`).
//!
//! Why: on this VM the host's stalls (steal time, a starved client core) make a run's p99, and
//! even a typical 0.1 s window's, differ more between two runs of one server than between two
//! servers. Runs one after another compare different stalls. Here the servers run **at once**,
//! all pinned to the server core, and one `load` process (pinned to the client core, `--spin`)
//! drives them all: `--addr` once per server, the connections dealt round-robin, each server
//! getting `--connections` connections and `--latency-rate` messages per second, so each one
//! sees the offered load of the solo latency runs. A stall then lands on every server in the
//! same window, and comparing the servers window by window cancels it.
//!
//! What it does not cancel, and which way that leans: the servers share one core. A message to
//! server A that arrives while server B runs waits for B, so each server's latency includes a
//! share of the others' work, and a server that costs less CPU per message delays the others
//! less than they delay it. Against a costlier runtime this leans *against* the cheaper one.
//! Every server carries the same offered load, so the core is busier than in the solo runs
//! (two servers at 20 000 msg/s each: about a third of the core here).
//!
//! Verdicts, for each cellio variant against `tokio-current` when both are in the list:
//! * **by window:** every window both servers have a p99 in gives one ratio (ours / tokio's);
//!   reported as the median ratio with a distribution-free 95% interval (order statistics) and
//!   a sign test. Windows of one run are not independent (a phase of the VM spans many), so
//!   the interval is a description, not the decision;
//! * **by round:** each round's median window ratio is one figure; rounds are independent.
//!   The target is **met** when a sign test over the rounds says ours is lower (p < 0.05,
//!   `paired`), or when the distribution-free 95% interval of the rounds' median ratio ends at
//!   or below 1 + [`RESOLUTION`]: no worse by more than the window histograms can resolve
//!   (they keep 2 significant digits, so two p99s closer than about 1% can read alike). It is
//!   **missed** when the sign test says ours is higher and the interval reaches past that
//!   margin; otherwise it is not decided. The whole run's p99 ratio by round is reported beside
//!   it.

use std::path::Path;

use serde_json::Value;

use crate::extras::{await_load_result, load_clean, load_number, other_cpu, window_p99s};
use crate::paired::{sign_test_p, Paired};
use crate::{spawn_client, start_server, Args, Guard, Sample, ServerSpec};

/// The margin of "no worse": the window histograms' resolution. `load` records windows with 2
/// significant digits, whose buckets are at most 1/128 (0.8%) of their value wide.
pub const RESOLUTION: f64 = 0.01;

/// Fewest rounds for a 95% interval of their median (at 5 the widest one covers 94%).
const MIN_ROUNDS: usize = 6;

/// One server's figures in one run of all of them.
#[derive(Clone, Debug)]
pub struct ServerFigures {
    pub msgs_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// The p99 of every `--latency-window`, in order; `None` for a window without messages.
    pub window_p99_us: Vec<Option<f64>>,
}

/// One run of all the servers at once.
#[derive(Clone, Debug)]
pub struct TogetherRun {
    pub round: usize,
    /// In the order of the `--together` list.
    pub servers: Vec<ServerFigures>,
    /// CPU taken on the two benchmark cores by other processes, as a fraction of one core.
    pub other_cpu: f64,
    /// The client's send lag p99 (µs): how late it sent, over all servers.
    pub send_lag_p99_us: Option<f64>,
}

/// Starts every server of `specs`, drives them all with one `load` process, and returns each
/// one's latency. `round` decides the order of the `--addr`s (reversed in even rounds).
pub fn run_once(
    args: &Args,
    specs: &[&ServerSpec],
    load: &Path,
    round: usize,
) -> Result<TogetherRun, String> {
    let mut servers: Vec<(Guard, std::net::SocketAddr)> = Vec::new();
    for spec in specs {
        servers.push(start_server(args, spec)?);
    }
    let mut order: Vec<usize> = (0..specs.len()).collect();
    if round % 2 == 0 {
        order.reverse();
    }
    let k = specs.len();
    let mut argv = Vec::new();
    for &i in &order {
        argv.extend(["--addr".to_string(), servers[i].1.to_string()]);
    }
    argv.extend([
        "--connections".into(),
        (u64::from(args.connections) * k as u64).to_string(),
        "--size".into(),
        args.size.to_string(),
        "--warmup".into(),
        format!("{}s", args.warmup),
        "--duration".into(),
        format!("{}s", args.latency_secs),
        "--rate".into(),
        (args.latency_rate * k as f64).to_string(),
        "--spin".into(),
        "--json".into(),
    ]);
    if args.latency_window > 0.0 {
        argv.extend(["--window".into(), format!("{}s", args.latency_window)]);
    }
    let client = spawn_client(args, load, &argv)?;
    let client_pid = client.0 .0.id();
    let cores = [args.server_core, args.client_core];
    // `Sample` reads one server's ticks; the others' are read beside it.
    let sample = || -> Result<(Sample, u64), String> {
        Ok((
            Sample::take(servers[0].0 .0.id(), client_pid, &cores)?,
            servers_ticks(&servers[1..])?,
        ))
    };
    let (s0, busy0) = sample()?;
    let (line, (s1, busy1)) = await_load_result(args, client, sample)?;
    for (i, (server, _)) in servers.iter_mut().enumerate() {
        if let Some(status) = server.0.try_wait().map_err(|e| format!("wait: {e}"))? {
            return Err(format!(
                "server {} exited during the run ({status})",
                specs[i].name
            ));
        }
    }
    drop(servers);
    let v: Value =
        serde_json::from_str(&line).map_err(|e| format!("bad load client JSON `{line}`: {e}"))?;
    // `targets` follow the `--addr` order; put them back in list order.
    let mut by_spec: Vec<Option<ServerFigures>> = vec![None; k];
    for (figures, &i) in parse_targets(&v, k)?.into_iter().zip(&order) {
        by_spec[i] = Some(figures);
    }
    Ok(TogetherRun {
        round,
        servers: by_spec.into_iter().flatten().collect(),
        other_cpu: other_cpu(&s0, &s1, busy1.saturating_sub(busy0)),
        send_lag_p99_us: v["send_lag_p99_us"].as_f64(),
    })
}

/// User + system ticks of `servers`, summed.
fn servers_ticks(servers: &[(Guard, std::net::SocketAddr)]) -> Result<u64, String> {
    let mut sum = 0;
    for (g, _) in servers {
        let t = cellio_benches::read_cpu_ticks(g.0.id())?;
        sum += t.utime + t.stime;
    }
    Ok(sum)
}

/// The `targets` of `load --json`, checked: `k` of them, none with an error.
fn parse_targets(v: &Value, k: usize) -> Result<Vec<ServerFigures>, String> {
    let targets = v["targets"]
        .as_array()
        .ok_or("load client JSON lacks `targets` (an older load client?)")?;
    if targets.len() != k {
        return Err(format!(
            "load client reported {} targets, expected {k}",
            targets.len()
        ));
    }
    targets
        .iter()
        .map(|t| {
            load_clean(t, &t["addr"].to_string())?;
            Ok(ServerFigures {
                msgs_per_sec: load_number(t, "msgs_per_sec")?,
                p50_us: load_number(t, "p50_us")?,
                p99_us: load_number(t, "p99_us")?,
                window_p99_us: window_p99s(t),
            })
        })
        .collect()
}

/// The progress line of one run: each server's p99 and median window p99.
pub fn describe(specs: &[&ServerSpec], run: &TogetherRun) -> String {
    let mut parts: Vec<String> = specs
        .iter()
        .zip(&run.servers)
        .map(|(spec, f)| {
            let windows: Vec<f64> = f.window_p99_us.iter().flatten().copied().collect();
            let win = if windows.is_empty() {
                String::new()
            } else {
                format!(", window p99 {:.1}", cellio_benches::median(&windows))
            };
            format!(
                "{} {:.0} msg/s p50 {:.1} p99 {:.1}{win} µs",
                spec.name, f.msgs_per_sec, f.p50_us, f.p99_us
            )
        })
        .collect();
    parts.push(format!(
        "send lag p99 {:.1} µs  other {:.0}%",
        run.send_lag_p99_us.unwrap_or(f64::NAN),
        run.other_cpu * 100.0
    ));
    parts.join("; ")
}

/// Each cellio variant against `tokio-current` when both ran together, else every later
/// server against the first: `(ours, theirs, comparison)`.
pub fn comparisons(names: &[&str], runs: &[TogetherRun]) -> Vec<(String, String, Comparison)> {
    if runs.is_empty() {
        return Vec::new();
    }
    let base = names
        .iter()
        .position(|n| *n == "tokio-current")
        .unwrap_or(0);
    names
        .iter()
        .enumerate()
        .filter(|&(i, name)| {
            i != base && (names[base] != "tokio-current" || name.starts_with("cellio"))
        })
        .map(|(i, name)| {
            (
                name.to_string(),
                names[base].to_string(),
                Comparison::of(runs, i, base),
            )
        })
        .collect()
}

/// The report's lines: the setting, then each comparison of [`comparisons`].
pub fn report_lines(
    args: &Args,
    names: &[&str],
    runs: &[TogetherRun],
    comparisons: &[(String, String, Comparison)],
) -> Vec<String> {
    let mut out = vec![format!(
        "together: {} at once on core {}, {} connections and {} msg/s each ({} in all), \
         {} round(s) of {} s, one load client on core {}",
        names.join(", "),
        args.server_core,
        args.connections,
        args.latency_rate,
        args.latency_rate * names.len() as f64,
        runs.len(),
        args.latency_secs,
        args.client_core
    )];
    for (ours, theirs, c) in comparisons {
        out.extend(c.text(ours, theirs, args.latency_window));
    }
    out
}

/// Server `a` against server `b` (indices into the `--together` list) over all runs.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// Every window both had a p99 in: a's over b's.
    pub window_ratios: Vec<f64>,
    pub windows_lower: usize,
    pub windows_higher: usize,
    /// By round: the round's median window ratio.
    pub by_round: Option<Paired>,
    /// By round: the whole run's p99 ratio.
    pub whole_run: Option<Paired>,
}

impl Comparison {
    pub fn of(runs: &[TogetherRun], a: usize, b: usize) -> Self {
        let mut window_ratios = Vec::new();
        let (mut windows_lower, mut windows_higher) = (0, 0);
        let mut round_a = Vec::new();
        let mut round_b = Vec::new();
        let mut whole_a = Vec::new();
        let mut whole_b = Vec::new();
        for run in runs {
            let (x, y) = (&run.servers[a], &run.servers[b]);
            let mut ratios = Vec::new();
            for (wa, wb) in x.window_p99_us.iter().zip(&y.window_p99_us) {
                if let (Some(wa), Some(wb)) = (*wa, *wb) {
                    if wa > 0.0 && wb > 0.0 {
                        ratios.push(wa / wb);
                        windows_lower += usize::from(wa < wb);
                        windows_higher += usize::from(wa > wb);
                    }
                }
            }
            if !ratios.is_empty() {
                // A round's figure for each side: the median window ratio against 1.
                round_a.push((run.round, cellio_benches::median(&ratios)));
                round_b.push((run.round, 1.0));
            }
            window_ratios.extend(ratios);
            whole_a.push((run.round, x.p99_us));
            whole_b.push((run.round, y.p99_us));
        }
        Comparison {
            window_ratios,
            windows_lower,
            windows_higher,
            by_round: Paired::of(&round_a, &round_b),
            whole_run: Paired::of(&whole_a, &whole_b),
        }
    }

    /// The median window ratio and its distribution-free 95% interval (the order statistics
    /// around the median that a binomial(n, 1/2) puts the median between 95% of the time).
    pub fn window_median_interval(&self) -> Option<(f64, f64, f64)> {
        let mut r = self.window_ratios.clone();
        if r.len() < 6 {
            return None;
        }
        r.sort_by(f64::total_cmp);
        let n = r.len();
        let (lo, hi) = median_ranks(n);
        Some((cellio_benches::median(&r), r[lo], r[hi]))
    }

    /// `Some(true)`: ours lower, decided over the rounds; `Some(false)`: higher; `None`.
    pub fn decided(&self) -> Option<bool> {
        self.by_round.as_ref().and_then(Paired::decided)
    }

    /// The rounds' median window ratio with its distribution-free 95% interval; `None` below
    /// [`MIN_ROUNDS`] rounds.
    pub fn round_interval(&self) -> Option<(f64, f64, f64)> {
        let mut r = self.by_round.as_ref()?.ratios.clone();
        if r.len() < MIN_ROUNDS {
            return None;
        }
        r.sort_by(f64::total_cmp);
        let (lo, hi) = median_ranks(r.len());
        Some((cellio_benches::median(&r), r[lo], r[hi]))
    }

    /// The target "ours no worse than theirs": `(met, decided)` by the rules in the module
    /// doc; `met` is `None` without rounds to judge.
    pub fn verdict(&self) -> (Option<bool>, bool) {
        let within = self
            .round_interval()
            .is_some_and(|(_, _, hi)| hi <= 1.0 + RESOLUTION);
        match self.decided() {
            Some(true) => (Some(true), true),
            _ if within => (Some(true), true),
            Some(false) => (Some(false), true),
            // Undecided: the point estimate's lean, with the same margin.
            None => match &self.by_round {
                Some(p) => (Some(p.median_ratio() <= 1.0 + RESOLUTION), false),
                None => (None, false),
            },
        }
    }

    /// The figure for the targets list.
    pub fn figure(&self) -> String {
        let mut parts = Vec::new();
        match (self.round_interval(), &self.by_round) {
            (Some((m, lo, hi)), _) => parts.push(format!(
                "ours / theirs by round {m:.3} [95%: {lo:.3}, {hi:.3}] (margin {:.2})",
                1.0 + RESOLUTION
            )),
            (None, Some(p)) => parts.push(format!(
                "ours / theirs by round {:.3} (no interval below {MIN_ROUNDS} rounds)",
                p.median_ratio()
            )),
            (None, None) => {}
        }
        if let Some(p) = &self.by_round {
            parts.push(format!("lower in {} of {} rounds", p.lower, p.ratios.len()));
        }
        if let Some((m, lo, hi)) = self.window_median_interval() {
            parts.push(format!(
                "by window {m:.3} [{lo:.3}, {hi:.3}] over {}",
                self.window_ratios.len()
            ));
        }
        if parts.is_empty() {
            "no run finished".into()
        } else {
            parts.join("; ")
        }
    }

    /// The report's lines.
    pub fn text(&self, ours: &str, theirs: &str, window_secs: f64) -> Vec<String> {
        let mut out = Vec::new();
        let verdict = match (self.verdict(), self.decided()) {
            ((Some(true), true), Some(true)) => "met (lower, decided by round)",
            ((Some(true), true), _) => "met (no worse by more than the histograms' resolution)",
            ((Some(false), true), _) => "MISSED (higher, decided by round)",
            _ => "not decided by round",
        };
        out.push(format!(
            "together: {ours}: p99 of a typical {window_secs} s window no worse than {theirs}'s, \
             both measured at once: {verdict}"
        ));
        if let Some((m, lo, hi)) = self.window_median_interval() {
            let n = self.windows_lower + self.windows_higher;
            out.push(format!(
                "  by window: {ours} / {theirs} median {m:.3} [95%: {lo:.3}, {hi:.3}], lower in \
                 {} of {} windows (sign test p = {:.2}; windows of one run are not independent)",
                self.windows_lower,
                self.window_ratios.len(),
                sign_test_p(self.windows_lower, n)
            ));
        }
        if let Some(p) = &self.by_round {
            let interval = self.round_interval().map_or(String::new(), |(_, lo, hi)| {
                format!("; 95% interval of the median [{lo:.3}, {hi:.3}]")
            });
            out.push(format!(
                "  by round, median window ratio: {}{interval}",
                p.text()
            ));
        }
        if let Some(p) = &self.whole_run {
            out.push(format!("  by round, the whole run's p99: {}", p.text()));
        }
        out
    }
}

/// Zero-based ranks `(lo, hi)` of the sorted sample of `n` that bracket its median with at
/// least 95% confidence: the largest `lo` with P(Binomial(n, 1/2) <= lo) <= 2.5%, and
/// `hi = n - 1 - lo` (for n < 6 no such `lo` exists; 0 then).
fn median_ranks(n: usize) -> (usize, usize) {
    // P(X <= j) for X ~ Binomial(n, 1/2), summed in logs to stay finite for large n.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_coeff = 0.0f64; // ln C(n, 0)
    let mut cdf = 0.0f64;
    let mut lo = 0;
    for j in 0..n {
        cdf += (ln_coeff + ln_half_n).exp();
        if cdf > 0.025 {
            break;
        }
        // [x(j), x(n-1-j)] (0-based) misses the median only if at most j of the n fall below
        // it or at most j above: probability 2·P(X <= j) <= 5%.
        lo = j;
        ln_coeff += ((n - j) as f64).ln() - ((j + 1) as f64).ln();
    }
    let lo = lo.min((n - 1) / 2);
    (lo, n - 1 - lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(round: usize, a: &[f64], b: &[f64]) -> TogetherRun {
        let figures = |w: &[f64]| ServerFigures {
            msgs_per_sec: 1.0,
            p50_us: 1.0,
            p99_us: w.iter().copied().fold(0.0, f64::max),
            window_p99_us: w.iter().map(|&x| (x > 0.0).then_some(x)).collect(),
        };
        TogetherRun {
            round,
            servers: vec![figures(a), figures(b)],
            other_cpu: 0.0,
            send_lag_p99_us: None,
        }
    }

    #[test]
    fn windows_pair_by_position_and_skip_empty_ones() {
        // Window 2 is empty on one side: left out, not shifted.
        let c = Comparison::of(
            &[run(1, &[10.0, 20.0, 0.0, 40.0], &[20.0, 10.0, 30.0, 80.0])],
            0,
            1,
        );
        assert_eq!(c.window_ratios, [0.5, 2.0, 0.5]);
        assert_eq!((c.windows_lower, c.windows_higher), (2, 1));
    }

    #[test]
    fn rounds_decide_when_ten_of_ten_lean_one_way() {
        let runs: Vec<_> = (1..=10)
            .map(|r| run(r, &[9.0, 9.0, 11.0], &[10.0, 10.0, 10.0]))
            .collect();
        let c = Comparison::of(&runs, 0, 1);
        assert_eq!(c.decided(), Some(true));
        let reversed = Comparison::of(&runs, 1, 0);
        assert_eq!(reversed.decided(), Some(false));
        // Five rounds each way decide nothing.
        let mixed: Vec<_> = (1..=10)
            .map(|r| {
                if r % 2 == 0 {
                    run(r, &[9.0], &[10.0])
                } else {
                    run(r, &[11.0], &[10.0])
                }
            })
            .collect();
        assert_eq!(Comparison::of(&mixed, 0, 1).decided(), None);
    }

    #[test]
    fn equal_servers_are_no_worse_within_the_resolution_and_worse_ones_are_not() {
        // Ties in every window: no side leans, and the interval is [1, 1].
        let equal: Vec<_> = (1..=12)
            .map(|r| run(r, &[70.0, 80.0, 90.0], &[70.0, 80.0, 90.0]))
            .collect();
        assert_eq!(Comparison::of(&equal, 0, 1).verdict(), (Some(true), true));
        // 0.5% higher in every round: the sign test says higher, but within the margin.
        let slightly: Vec<_> = (1..=12)
            .map(|r| run(r, &[70.35, 80.4], &[70.0, 80.0]))
            .collect();
        assert_eq!(
            Comparison::of(&slightly, 0, 1).verdict(),
            (Some(true), true)
        );
        // 5% higher in every round: missed.
        let worse: Vec<_> = (1..=12).map(|r| run(r, &[73.5], &[70.0])).collect();
        assert_eq!(Comparison::of(&worse, 0, 1).verdict(), (Some(false), true));
        // 5% higher in half the rounds, 5% lower in the others: not decided.
        let mixed: Vec<_> = (1..=12)
            .map(|r| run(r, &[if r % 2 == 0 { 73.5 } else { 66.5 }], &[70.0]))
            .collect();
        assert!(!Comparison::of(&mixed, 0, 1).verdict().1);
        // Too few rounds for an interval: only the sign test could decide; a median within
        // the margin leans "met".
        let few: Vec<_> = (1..=4).map(|r| run(r, &[70.35], &[70.0])).collect();
        assert_eq!(Comparison::of(&few, 0, 1).round_interval(), None);
        assert_eq!(Comparison::of(&few, 0, 1).verdict(), (Some(true), false));
        let few_worse: Vec<_> = (1..=4).map(|r| run(r, &[73.5], &[70.0])).collect();
        assert_eq!(
            Comparison::of(&few_worse, 0, 1).verdict(),
            (Some(false), false)
        );
    }

    #[test]
    fn median_interval_ranks_match_the_binomial_table() {
        // Classic values: n = 10 -> ranks 2 and 9 (1-based), n = 20 -> 6 and 15,
        // n = 100 -> 40 and 61.
        assert_eq!(median_ranks(10), (1, 8));
        assert_eq!(median_ranks(20), (5, 14));
        assert_eq!(median_ranks(100), (39, 60));
        // Large n stays finite and near n/2 ± 0.98·√n.
        let (lo, hi) = median_ranks(10_000);
        assert!((4895..=4905).contains(&lo), "{lo}");
        assert_eq!(hi, 9_999 - lo);
    }
}
