//! The comparison table (plain text or GitHub markdown), its notes, the targets from the
//! issue, and the JSON form of everything.

use cellio_benches::median;
use serde_json::{json, Value};

use crate::extras::{self, LatencyRun};
use crate::paired::Paired;
use crate::tick_stats::{self, Bias, BiasRun};
use crate::together::Comparison;
use crate::user_time::{self, Mechanism, UserTimePerMsg};
use crate::window_stats::{WindowP99, MIN_ROUNDS, STALL_US};
use crate::{Args, PerfPerMsg, RunResult, ServerResults, ServerSpec, StraceResult, Summary};

/// Targets from the runtime issue for `cellio` (64 B messages, 100 connections).
const TARGET_VS_MIO: f64 = 1.15;
const TARGET_VS_TOKIO: f64 = 0.5;
/// Syscalls per message closer than this count as equal: the traced run's per-connection
/// calls (accept4, setsockopt, epoll_ctl, close) are amortised over a message count that
/// differs from run to run, which moves the total by about this much.
const SYSCALL_RESOLUTION: f64 = 0.005;

/// Medians of one server's latency runs, and its windows' p99s over all of them.
#[derive(Clone, Debug)]
struct LatencySummary {
    msgs_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    windows: Option<WindowP99>,
}

impl LatencySummary {
    fn of(runs: &[LatencyRun]) -> Option<Self> {
        if runs.is_empty() {
            return None;
        }
        let m = |f: fn(&LatencyRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        Some(LatencySummary {
            msgs_per_sec: m(|r| r.msgs_per_sec),
            p50_us: m(|r| r.p50_us),
            p99_us: m(|r| r.p99_us),
            windows: WindowP99::of(
                &runs
                    .iter()
                    .map(|r| r.window_p99_us.clone())
                    .collect::<Vec<_>>(),
            ),
        })
    }
}

/// The figures of one table row.
struct Row {
    summary: Option<Summary>,
    latency: Option<LatencySummary>,
    allocs: Option<(f64, f64)>,
    instr: Option<f64>,
    /// L1 data misses per message in callgrind's cache model.
    d1_misses: Option<f64>,
    syscalls: Option<f64>,
}

/// One target from the issue, checked against today's figures.
struct Target {
    what: String,
    figure: String,
    /// `None` when it could not be checked (a figure is missing).
    met: Option<bool>,
    /// `false` when the figure lies within 2σ of the limit: the verdict is the point
    /// estimate's, and this run cannot tell.
    decided: bool,
}

pub struct Report<'a> {
    args: &'a Args,
    specs: &'a [ServerSpec],
    res: &'a [ServerResults],
    notes: Vec<String>,
    tck: u64,
    rows: Vec<Row>,
    bias_runs: &'a [BiasRun],
    /// The tick bias per message, when `--tick-bias` measured it.
    bias: Option<Bias>,
    /// `--together`: each cellio variant against tokio-current, measured at once.
    together: Vec<(String, Comparison)>,
}

impl<'a> Report<'a> {
    pub fn new(
        args: &'a Args,
        specs: &'a [ServerSpec],
        res: &'a [ServerResults],
        notes: Vec<String>,
        tck: u64,
        bias_runs: &'a [BiasRun],
    ) -> Self {
        let rows = res
            .iter()
            .map(|r| Row {
                summary: Summary::of(&r.runs),
                latency: LatencySummary::of(&r.latency),
                allocs: match &r.allocs {
                    Some(Ok(a)) => Some((a.per_msg(), a.per_conn())),
                    _ => None,
                },
                instr: match &r.callgrind {
                    Some(Ok(c)) => Some(c.per_msg),
                    _ => None,
                },
                d1_misses: match &r.cache {
                    Some(Ok(c)) => Some(c.d1_per_msg),
                    _ => None,
                },
                syscalls: match &r.strace {
                    Some(Ok(t)) => Some(t.total_calls as f64 / t.msgs as f64),
                    _ => None,
                },
            })
            .collect();
        Report {
            args,
            specs,
            res,
            notes,
            tck,
            rows,
            bias_runs,
            bias: Bias::of(bias_runs, tck),
            together: Vec::new(),
        }
    }

    /// Adds the `--together` comparisons (ours, against tokio-current) to the targets.
    pub fn with_together(mut self, together: Vec<(String, Comparison)>) -> Self {
        self.together = together;
        self
    }

    fn row(&self, name: &str) -> Option<&Row> {
        self.specs
            .iter()
            .position(|s| s.name == name)
            .map(|i| &self.rows[i])
    }

    /// `figure` of each of `name`'s latency runs, with the run's round.
    fn latency_by_round(
        &self,
        name: &str,
        figure: fn(&LatencyRun) -> Option<f64>,
    ) -> Vec<(usize, f64)> {
        self.specs
            .iter()
            .position(|s| s.name == name)
            .map(|i| {
                self.res[i]
                    .latency
                    .iter()
                    .filter_map(|l| Some((l.round, figure(l)?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn user(&self, name: &str) -> Option<f64> {
        self.row(name)?.summary.map(|s| s.user_ns_per_msg)
    }

    /// 1σ relative counting error of a server's user figure.
    fn user_err(&self, name: &str) -> Option<f64> {
        self.row(name)?.summary.map(|s| s.user_rel_err)
    }

    /// User ns/msg less the tick bias, when both were measured and the difference is
    /// positive (a bias as large as the whole user figure is wrong for that server).
    fn user_less_bias(&self, name: &str) -> Option<f64> {
        Some(self.user(name)? - self.bias?.ns_per_msg).filter(|v| *v > 0.0)
    }

    /// `ours / base` of tick-sampled user time and its 1σ; with `less_bias`, of user time
    /// less the tick bias.
    fn user_ratio(&self, ours: &str, base: &str, less_bias: bool) -> Option<(f64, f64)> {
        let (a, ea) = (self.user(ours)?, self.user_err(ours)?);
        let (b, eb) = (self.user(base)?, self.user_err(base)?);
        if less_bias {
            let bias = self.bias?;
            tick_stats::adjusted_ratio_err(a, ea, b, eb, bias.ns_per_msg, bias.rel_err)
        } else {
            Some(tick_stats::ratio_err(a, ea, b, eb))
        }
    }

    fn instr(&self, name: &str) -> Option<f64> {
        self.row(name)?.instr
    }

    fn any(&self, f: impl Fn(&ServerResults) -> bool) -> bool {
        self.res.iter().any(f)
    }

    /// Header and cells of the main table; columns without any data are left out.
    fn table(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let lat = self.any(|r| !r.latency.is_empty() || !r.latency_failures.is_empty());
        let win = self
            .rows
            .iter()
            .any(|r| r.latency.as_ref().is_some_and(|l| l.windows.is_some()));
        let allocs = self.any(|r| r.allocs.is_some());
        let cg = self.any(|r| r.callgrind.is_some());
        let cache = self.any(|r| r.cache.is_some());
        let strace = self.any(|r| r.strace.is_some());
        let (mio_u, tok_u) = (self.user("mio"), self.user("tokio-current"));
        let (mio_i, tok_i) = (self.instr("mio"), self.instr("tokio-current"));

        let mut head = vec!["server", "msgs/s"];
        if lat {
            head.extend(["p50 µs", "p99 µs"]);
        }
        if win {
            head.push("p99 win µs");
        }
        head.extend(["user ns/msg", "user ±"]);
        if self.bias.is_some() {
            head.push("user−bias");
        }
        head.extend(["sys ns/msg", "CPU%", "other%"]);
        if allocs {
            head.extend(["allocs/msg", "allocs/conn"]);
        }
        if cg {
            head.push("instr/msg");
        }
        if cache {
            head.push("L1d miss/msg");
        }
        if strace {
            head.push("syscalls/msg");
        }
        if mio_u.is_some() {
            head.push("user/mio");
        }
        if tok_u.is_some() {
            head.push("user/tokio");
        }
        if self.bias.is_some() && mio_u.is_some() {
            head.push("adj/mio");
        }
        if self.bias.is_some() && tok_u.is_some() {
            head.push("adj/tokio");
        }
        if mio_i.is_some() {
            head.push("instr/mio");
        }
        if tok_i.is_some() {
            head.push("instr/tokio");
        }

        let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| fmt(v, prec));
        let rat = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => ratio(a / b),
            _ => "-".to_string(),
        };
        let mut rows = Vec::new();
        for (spec, row) in self.specs.iter().zip(&self.rows) {
            let s = row.summary;
            let mut c = vec![spec.name.clone()];
            c.push(opt(s.map(|s| s.msgs_per_sec), 0));
            if lat {
                c.push(opt(row.latency.as_ref().map(|l| l.p50_us), 1));
                c.push(opt(row.latency.as_ref().map(|l| l.p99_us), 1));
            }
            if win {
                c.push(opt(
                    row.latency
                        .as_ref()
                        .and_then(|l| l.windows.as_ref())
                        .map(|w| w.median_us),
                    1,
                ));
            }
            c.push(opt(s.map(|s| s.user_ns_per_msg), 1));
            c.push(s.map_or("-".into(), |s| {
                let e = s.user_rel_err;
                if e.is_finite() {
                    format!("{:.0}%", e * 100.0)
                } else {
                    "-".into()
                }
            }));
            if let Some(b) = self.bias {
                c.push(opt(s.map(|s| s.user_ns_per_msg - b.ns_per_msg), 1));
            }
            c.push(opt(s.map(|s| s.sys_ns_per_msg), 1));
            c.push(opt(s.map(|s| s.cpu_util * 100.0), 0));
            c.push(opt(s.map(|s| s.other_cpu * 100.0), 1));
            if allocs {
                c.push(opt(row.allocs.map(|a| a.0), 4));
                c.push(opt(row.allocs.map(|a| a.1), 2));
            }
            if cg {
                c.push(opt(row.instr, 1));
            }
            if cache {
                c.push(opt(row.d1_misses, 2));
            }
            if strace {
                c.push(opt(row.syscalls, 3));
            }
            let user = s.map(|s| s.user_ns_per_msg);
            if mio_u.is_some() {
                c.push(rat(user, mio_u));
            }
            if tok_u.is_some() {
                c.push(rat(user, tok_u));
            }
            if self.bias.is_some() {
                let adj = self.user_less_bias(&spec.name);
                if mio_u.is_some() {
                    c.push(rat(adj, self.user_less_bias("mio")));
                }
                if tok_u.is_some() {
                    c.push(rat(adj, self.user_less_bias("tokio-current")));
                }
            }
            if mio_i.is_some() {
                c.push(rat(row.instr, mio_i));
            }
            if tok_i.is_some() {
                c.push(rat(row.instr, tok_i));
            }
            rows.push(c);
        }
        (head, rows)
    }

    /// The notes under the table: method, precision, anything skipped or failed.
    fn table_notes(&self) -> Vec<String> {
        let a = self.args;
        let mut n = vec![format!("Machine: {}.", crate::machine::describe())];
        n.push(format!(
            "msgs/s, user/sys ns/msg, CPU%, other%: closed loop (mio_load, one {} B message in \
             flight on each of {} connections), {} s window after {} s warm-up, medians of {} \
             interleaved round(s); server pinned to CPU {}, client to CPU {}. User and system \
             CPU from /proc/PID/stat ticks (CLK_TCK {}) over the window, divided by the \
             messages echoed in it.",
            a.size,
            a.connections,
            a.duration,
            a.warmup,
            a.rounds,
            a.server_core,
            a.client_core,
            self.tck
        ));
        n.push(
            "user ±: 1σ error of the median user figure. A server spends a few percent of \
             its time in user space, so a window holds only a few dozen user ticks (a count \
             whose error is 1/√N for N ticks), and the VM drifts between rounds by more than \
             that: the larger of the count's error over all rounds and the error the rounds' \
             spread gives the median (1.2533 × 1.4826 × MAD / √rounds)."
                .into(),
        );
        if let Some(b) = self.bias {
            n.push(format!(
                "user−bias: user ns/msg less the tick bias, {:.1} ns/msg ±{:.0}% ({} user ticks \
                 over {} iterations in {} run(s)): the user time that tick sampling books for \
                 an echo's two syscalls, measured by `tick_bias --mode tcp` pinned to CPU {} \
                 (64 B sent on one end of a loopback TCP pair and received on the other, a few \
                 instructions of user work per iteration), one run per round. Every server \
                 pays it, so it pulls the user ratios towards 1; adj/mio, adj/tokio are the \
                 ratios with it taken off (`-` where it is as large as a server's whole user \
                 figure). The calibration is not the servers' own syscall mix, so its error is \
                 partly systematic: targets judged with it are never marked decided.",
                b.ns_per_msg,
                b.rel_err * 100.0,
                b.user_ticks,
                b.iterations,
                self.bias_runs.len(),
                a.server_core
            ));
        }
        n.push(
            "A target verdict with a question mark (met?, MISSED?) has its figure within 2σ of \
             the limit (for the p99 targets: fewer than four rounds, or the two servers' \
             rounds or their windows' 95% intervals overlap, and the rounds compared \
             pairwise, ours over tokio's in the same round, do not lean one way clearly \
             enough for a sign test, p < 0.05, which takes at least 6 rounds): the point \
             estimate leans that way, the run cannot tell."
                .into(),
        );
        n.push(
            "CPU% = server CPU over the window (100 = one core); other% = CPU taken on the two \
             benchmark cores by other processes or by the host (the VM's steal time), as a share \
             of one core (should be ~0). Before each timed run the driver waits for both cores \
             to be quiet, and a run with other% above 5 is repeated."
                .into(),
        );
        if self.any(|r| !r.latency.is_empty()) {
            n.push(format!(
                "p50/p99: open loop at {} msg/s in total over the same {} connections, cellio's \
                 bundled load client (`load --rate R --spin`, latency timed from each message's \
                 intended send time) pinned to CPU {}; one {} s run (after {} s warm-up) per \
                 server per round, median of the rounds' percentiles.",
                a.latency_rate, a.connections, a.client_core, a.latency_secs, a.warmup
            ));
        }
        if self.any(|r| r.latency.len() > 1) {
            let per: Vec<String> = self
                .specs
                .iter()
                .zip(self.res)
                .filter(|(_, r)| !r.latency.is_empty())
                .map(|(s, r)| {
                    let v: Vec<String> = r
                        .latency
                        .iter()
                        .map(|l| format!("{:.0}", l.p99_us))
                        .collect();
                    format!("{} {}", s.name, v.join("/"))
                })
                .collect();
            n.push(format!(
                "p99 µs by round, to judge its spread: {}.",
                per.join(", ")
            ));
        }
        let windows: Vec<String> = self
            .specs
            .iter()
            .zip(&self.rows)
            .filter_map(|(s, r)| Some((s, r.latency.as_ref()?.windows.as_ref()?)))
            .map(|(s, w)| {
                format!(
                    "{} {:.0} {}, {:.0}% stalled",
                    s.name,
                    w.median_us,
                    w.ci_text(0),
                    w.stalled * 100.0
                )
            })
            .collect();
        if !windows.is_empty() {
            n.push(format!(
                "p99 win: each latency run is also cut into {} s windows (`load --window`), each \
                 with its own p99; the column is the median window's p99 over all rounds, so a \
                 stall spoils only the windows it falls in (and anything rarer than every \
                 other window goes unseen: compare the stalled shares). Median [95% interval, \
                 order statistics, windows taken as independent], share of windows with p99 \
                 above {STALL_US:.0} µs: {}.",
                a.latency_window,
                windows.join("; ")
            ));
        }
        if self.any(|r| r.allocs.is_some()) {
            n.push(
                "allocs/msg, allocs/conn: tests/outside/count_allocs.py (LD_PRELOAD malloc \
                 counter, read with SIGUSR2), once per server: 20 connections x 2000 messages \
                 of 64 B after warm-up, then 200 connection lives (connect, echo, close)."
                    .into(),
            );
        }
        if self.any(|r| r.callgrind.is_some()) {
            n.push(format!(
                "instr/msg: user-space instructions per echoed message under valgrind \
                 --tool=callgrind, (run with {} x {} messages - run with {} x {}) / extra \
                 messages, {} B, built-in lock-step client that writes each round while the \
                 server is stopped, so it arrives as one batch (one binary's count repeats to \
                 the instruction); it counts instructions, not time (no cache or branch \
                 effects).",
                extras::CG_CONNS,
                extras::CG_MSGS.1,
                extras::CG_CONNS,
                extras::CG_MSGS.0,
                extras::CG_SIZE
            ));
        }
        if self.any(|r| r.cache.is_some()) {
            n.push(format!(
                "L1d miss/msg: first-level data cache misses (reads and writes) per echoed \
                 message in callgrind's cache model (--cache-sim, 32 KiB 8-way L1s, 64-byte \
                 lines): (run with {} x {} messages - run with {} x {}) / extra messages, \
                 lock-step, so each message finds its connection's lines evicted by the other \
                 connections' as under load. Exact for the run (two runs of one binary have \
                 differed by 4%: 4.87 and 5.06 through TcpIo); it models the server \
                 process alone (in real runs the kernel's work on every message evicts more, \
                 for every server alike).",
                extras::CACHE_CONNS,
                extras::CACHE_MSGS.1,
                extras::CACHE_CONNS,
                extras::CACHE_MSGS.0
            ));
        }
        if self.any(|r| r.strace.is_some()) {
            n.push(
                "syscalls/msg: strace -c -f over one extra run per server, the same number of \
                 messages for each (--strace-msgs), including the per-connection \
                 accept/setup/close calls."
                    .into(),
            );
        }
        n.push(
            "user/mio, user/tokio: user ns/msg over mio's and over tokio-current's; instr/mio, \
             instr/tokio: the same for callgrind instructions."
                .into(),
        );
        if self.specs.iter().any(|s| s.name == "cellio-2w") {
            n.push(format!(
                "cellio-2w runs `--workers 2` pinned to CPU {} like every server, so its two \
                 workers share one core: it shows what a second worker costs, not what it gains.",
                a.server_core
            ));
        }
        if self.specs.iter().any(|s| s.name == "cellio-io") {
            n.push(
                "cellio-io: `--api poll`, the same echo through `TcpIo` (poll methods that keep \
                 the socket's cells reserved between operations) instead of the stream's \
                 `recv`/`send_all` futures."
                    .into(),
            );
        }
        if self.specs.iter().any(|s| s.name == "cellio-nopool") {
            n.push(
                "cellio-nopool: `--no-task-pool` (every connection's task allocated afresh)."
                    .into(),
            );
        }
        for (spec, r) in self.specs.iter().zip(self.res) {
            for f in &r.failures {
                n.push(format!("{}: CPU run failed, {f}", spec.name));
            }
            for f in &r.latency_failures {
                n.push(format!("{}: latency run failed, {f}", spec.name));
            }
            for f in &r.perf_failures {
                n.push(format!("{}: perf run failed, {f}", spec.name));
            }
            for f in &r.user_time_failures {
                n.push(format!("{}: user-time run failed, {f}", spec.name));
            }
            for (what, e) in [
                (
                    "allocation count",
                    r.allocs.as_ref().and_then(|x| x.as_ref().err()),
                ),
                (
                    "callgrind",
                    r.callgrind.as_ref().and_then(|x| x.as_ref().err()),
                ),
                (
                    "cache model",
                    r.cache.as_ref().and_then(|x| x.as_ref().err()),
                ),
                ("strace", r.strace.as_ref().and_then(|x| x.as_ref().err())),
            ] {
                if let Some(e) = e {
                    n.push(format!("{}: {what} failed: {e}", spec.name));
                }
            }
        }
        n.extend(self.notes.iter().cloned());
        n
    }

    /// The issue's targets, for each cellio variant that ran as the
    /// server under test: `cellio` (the stream's futures) and `cellio-io`
    /// (the same server through `TcpIo`).
    fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        for ours in ["cellio", "cellio-io"] {
            if self.row(ours).is_some() {
                t.extend(self.targets_of(ours));
            }
        }
        t
    }

    fn targets_of(&self, ours: &str) -> Vec<Target> {
        let mut t = Vec::new();
        // `sigma`: the ratio's 1σ, for figures that carry a counting error.
        let check = |what: &str,
                     mine: Option<f64>,
                     base: Option<f64>,
                     limit: f64,
                     unit: &str,
                     sigma: Option<f64>| match (mine, base) {
            // A base of zero (no user tick in its windows) gives no ratio to judge.
            (Some(a), Some(b)) if b > 0.0 && (a / b).is_finite() => Target {
                what: format!("{ours}: {what}"),
                figure: match sigma {
                    Some(s) if s.is_finite() => {
                        format!("{:.2}x ±{s:.2} (1σ) ({a:.1} / {b:.1} {unit})", a / b)
                    }
                    _ => format!("{:.2}x ({a:.1} / {b:.1} {unit})", a / b),
                },
                met: Some(a / b <= limit),
                decided: sigma.is_none_or(|s| (a / b - limit).abs() >= 2.0 * s),
            },
            _ => Target {
                what: format!("{ours}: {what}"),
                figure: "not measured".into(),
                met: None,
                decided: true,
            },
        };
        for (base, label, limit) in [
            ("mio", "the raw mio loop", TARGET_VS_MIO),
            ("tokio-current", "tokio current_thread", TARGET_VS_TOKIO),
        ] {
            for less_bias in [false, true] {
                if less_bias && self.bias.is_none() {
                    continue;
                }
                let how = if less_bias {
                    "/proc ticks less the tick bias"
                } else {
                    "/proc ticks"
                };
                t.push(check(
                    &format!("user CPU/msg <= {limit}x {label} ({how})"),
                    if less_bias {
                        self.user_less_bias(ours)
                    } else {
                        self.user(ours)
                    },
                    if less_bias {
                        self.user_less_bias(base)
                    } else {
                        self.user(base)
                    },
                    limit,
                    "ns",
                    self.user_ratio(ours, base, less_bias).map(|(_, s)| s),
                ));
                if less_bias {
                    // The bias's error is systematic as well as statistical (it is measured
                    // beside the servers, not inside them): never decided by one run.
                    if let Some(last) = t.last_mut() {
                        last.decided = false;
                    }
                }
            }
            for less_floor in [false, true] {
                if !self.any(|r| !r.user_time.is_empty()) {
                    break;
                }
                // Raw figures carry the floor of the way each server reaches the shim (cellio's
                // hooks cost it about half what libc's functions do): only figures less their
                // floors compare servers that reach it differently.
                if !less_floor && self.user_time_mechanism(ours) != self.user_time_mechanism(base) {
                    continue;
                }
                let how = if less_floor {
                    "user time between syscalls (TSC) less the shim's floor, medians"
                } else {
                    "user time between syscalls (TSC), medians"
                };
                let mut target = check(
                    &format!("user CPU/msg <= {limit}x {label} ({how})"),
                    self.user_tsc(ours, less_floor).map(|(m, _)| m),
                    self.user_tsc(base, less_floor).map(|(m, _)| m),
                    limit,
                    "ns",
                    None,
                );
                target.decided = match (
                    self.user_tsc(ours, less_floor),
                    self.user_tsc(base, less_floor),
                ) {
                    (Some((_, a)), Some((_, b))) => user_time::decided_by_rounds(
                        &a,
                        &b,
                        self.args.rounds as usize,
                        limit,
                        MIN_ROUNDS,
                    ),
                    _ => false,
                };
                t.push(target);
            }
            if self.any(|r| !r.perf.is_empty()) {
                let cycles = |n: &str| self.perf(n).map(|(p, _, _)| p.user_cycles);
                t.push(check(
                    &format!("user CPU/msg <= {limit}x {label} (perf user cycles, medians)"),
                    cycles(ours),
                    cycles(base),
                    limit,
                    "cycles",
                    None,
                ));
            }
            if self.any(|r| r.callgrind.is_some()) {
                t.push(check(
                    &format!("user CPU/msg <= {limit}x {label} (callgrind instructions)"),
                    self.instr(ours),
                    self.instr(base),
                    limit,
                    "instr",
                    None,
                ));
            }
        }
        let sc = |n: &str| self.row(n).and_then(|r| r.syscalls);
        let what = format!(
            "{ours}: syscalls/msg <= the raw loop's (strace; equal within {SYSCALL_RESOLUTION})"
        );
        t.push(match (sc(ours), sc("mio")) {
            (Some(c), Some(m)) => Target {
                what,
                figure: format!("{c:.3} vs {m:.3}"),
                met: Some(c <= m + SYSCALL_RESOLUTION),
                decided: true,
            },
            _ => Target {
                what,
                figure: "not measured (run with --strace)".into(),
                met: None,
                decided: true,
            },
        });
        let p99 = |n: &str| {
            self.row(n)
                .and_then(|r| r.latency.as_ref())
                .map(|l| l.p99_us)
        };
        let what = format!(
            "{ours}: p99 at {} msg/s no worse than tokio current_thread's",
            self.args.latency_rate
        );
        // The rounds' p99s scatter by stalls and by the VM's phase: the verdict counts as
        // decided if, with enough rounds for it to mean something (see window_stats), every
        // round of one server lies on the same side of every round of the other, or if the
        // rounds compared pairwise lean one way clearly enough (see `paired`).
        let range = |n: &str| {
            let r = self.res.get(self.specs.iter().position(|s| s.name == n)?)?;
            if r.latency.len() < MIN_ROUNDS {
                return None;
            }
            let v = r.latency.iter().map(|l| l.p99_us);
            Some((
                v.clone().fold(f64::INFINITY, f64::min),
                v.fold(0.0, f64::max),
            ))
        };
        let apart = |a: &str, b: &str| match (range(a), range(b)) {
            (Some((a_lo, a_hi)), Some((b_lo, b_hi))) => a_hi <= b_lo || a_lo > b_hi,
            _ => false,
        };
        let by_round = |figure: fn(&LatencyRun) -> Option<f64>| {
            Paired::of(
                &self.latency_by_round(ours, figure),
                &self.latency_by_round("tokio-current", figure),
            )
        };
        t.push(match (p99(ours), p99("tokio-current")) {
            (Some(c), Some(k)) => {
                let paired = by_round(|l| Some(l.p99_us));
                Target {
                    what,
                    figure: format!(
                        "{c:.1} µs vs {k:.1} µs (median of the rounds' p99){}",
                        paired_text(paired.as_ref())
                    ),
                    met: Some(c <= k),
                    decided: apart(ours, "tokio-current")
                        || paired_decides(paired.as_ref(), c <= k),
                }
            }
            _ => Target {
                what,
                figure: "not measured".into(),
                met: None,
                decided: true,
            },
        });
        let win = |n: &str| {
            self.row(n)
                .and_then(|r| r.latency.as_ref())
                .and_then(|l| l.windows.as_ref())
        };
        if let (Some(c), Some(k)) = (win(ours), win("tokio-current")) {
            let paired =
                by_round(|l| (!l.window_p99_us.is_empty()).then(|| median(&l.window_p99_us)));
            t.push(Target {
                what: format!(
                    "{ours}: p99 of a typical {} s window at {} msg/s no worse than tokio \
                     current_thread's",
                    self.args.latency_window, self.args.latency_rate
                ),
                figure: format!(
                    "{:.1} {} µs vs {:.1} {} µs (median window, 95%){}",
                    c.median_us,
                    c.ci_text(1),
                    k.median_us,
                    k.ci_text(1),
                    paired_text(paired.as_ref())
                ),
                met: Some(c.median_us <= k.median_us),
                decided: c.at_most(k).is_some()
                    || paired_decides(paired.as_ref(), c.median_us <= k.median_us),
            });
        }
        if let Some((_, c)) = self.together.iter().find(|(n, _)| n == ours) {
            let (met, decided) = c.verdict();
            t.push(Target {
                what: format!(
                    "{ours}: p99 of a typical {} s window at {} msg/s no worse than tokio \
                     current_thread's, both served at once (--together)",
                    self.args.latency_window, self.args.latency_rate
                ),
                figure: c.figure(),
                met,
                decided,
            });
        }
        t
    }

    fn title(&self) -> String {
        let a = self.args;
        format!(
            "echo, {} connections x {} B; medians of {} round(s); server on CPU {}, client on \
             CPU {}",
            a.connections, a.size, a.rounds, a.server_core, a.client_core
        )
    }

    pub fn print_text(&self) {
        println!("{}", self.title());
        println!();
        let (head, rows) = self.table();
        let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
                let pad = w - c.chars().count();
                if i == 0 {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str("  ");
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
            }
            s
        };
        let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
        println!("{}", line(&head));
        println!(
            "{}",
            "-".repeat(width.iter().sum::<usize>() + 2 * (width.len() - 1))
        );
        for r in &rows {
            println!("{}", line(r));
        }
        println!();
        for n in self.table_notes() {
            println!("* {n}");
        }
        let targets = self.targets();
        if !targets.is_empty() {
            println!();
            println!("targets for cellio (from the issue):");
            for t in &targets {
                println!("  {:<8} {}: {}", verdict(t), t.what, t.figure);
            }
        }
        self.print_strace(false);
        self.print_perf(false);
        self.print_user_time(false);
    }

    pub fn print_markdown(&self) {
        println!("{}", self.title());
        println!();
        let (head, rows) = self.table();
        println!("| {} |", head.join(" | "));
        let align: Vec<&str> = (0..head.len())
            .map(|i| if i == 0 { "---" } else { "---:" })
            .collect();
        println!("|{}|", align.join("|"));
        for r in &rows {
            println!("| {} |", r.join(" | "));
        }
        println!();
        for n in self.table_notes() {
            println!("* {}", n.replace('|', "\\|"));
        }
        let targets = self.targets();
        if !targets.is_empty() {
            println!();
            println!("| target (cellio) | figure | |");
            println!("|---|---|---|");
            for t in &targets {
                println!("| {} | {} | {} |", t.what, t.figure, verdict(t));
            }
        }
        self.print_strace(true);
        self.print_perf(true);
        self.print_user_time(true);
    }

    fn print_strace(&self, markdown: bool) {
        if !self.any(|r| r.strace.is_some()) {
            return;
        }
        println!();
        println!("syscalls per echoed message (strace -c -f, one extra run per server):");
        if markdown {
            println!();
            println!("```text");
        }
        for (spec, r) in self.specs.iter().zip(self.res) {
            match &r.strace {
                Some(Ok(t)) => {
                    let top: Vec<String> = t
                        .calls
                        .iter()
                        .take(6)
                        .map(|(name, n)| format!("{name} {:.3}", *n as f64 / t.msgs as f64))
                        .collect();
                    println!(
                        "{:<14} {:>6.3}  [{}]  ({} msgs)",
                        spec.name,
                        t.total_calls as f64 / t.msgs as f64,
                        top.join(", "),
                        t.msgs
                    );
                }
                Some(Err(e)) => println!("{:<14} failed: {e}", spec.name),
                None => {}
            }
        }
        if markdown {
            println!("```");
        }
    }

    /// How a server's calls reached the user-time shim (`None` without user-time runs).
    fn user_time_mechanism(&self, name: &str) -> Option<Mechanism> {
        let r = &self.res[self.specs.iter().position(|s| s.name == name)?];
        r.user_time
            .iter()
            .find_map(|run| run.user_time)
            .map(|u| u.mechanism)
    }

    /// The median of a server's user ns/msg between syscalls (`--user-time`; `less_floor`:
    /// less the shim's own cost per segment), and each round's.
    fn user_tsc(&self, name: &str, less_floor: bool) -> Option<(f64, Vec<f64>)> {
        let r = &self.res[self.specs.iter().position(|s| s.name == name)?];
        let v: Vec<f64> = r
            .user_time
            .iter()
            .filter_map(|run| run.user_time)
            .map(|u| {
                if less_floor {
                    u.less_floor_ns
                } else {
                    u.user_ns
                }
            })
            .collect();
        if v.is_empty() {
            None
        } else {
            Some((median(&v), v))
        }
    }

    fn print_user_time(&self, markdown: bool) {
        if !self.any(|r| !r.user_time.is_empty() || !r.user_time_failures.is_empty()) {
            return;
        }
        println!();
        // Each way of reaching the shim has its own floor (see `user_time::Mechanism`).
        let floor_of = |mechanism: Mechanism| {
            let floors: Vec<f64> = self
                .res
                .iter()
                .flat_map(|r| &r.user_time)
                .filter_map(|run| run.user_time)
                .filter(|u| u.mechanism == mechanism)
                .map(|u| u.floor_ns)
                .collect();
            let (lo, hi) = floors
                .iter()
                .fold((f64::INFINITY, 0.0_f64), |(lo, hi), &f| {
                    (lo.min(f), hi.max(f))
                });
            if floors.is_empty() {
                None
            } else if hi - lo < 0.05 {
                Some(format!("{lo:.1} ns"))
            } else {
                Some(format!("{lo:.1}–{hi:.1} ns"))
            }
        };
        let floors: Vec<String> = [
            (Mechanism::Wrappers, "through its libc wrappers"),
            (Mechanism::Hooks, "through its hooks (cellio)"),
        ]
        .into_iter()
        .filter_map(|(m, how)| floor_of(m).map(|f| format!("{f} {how}")))
        .collect();
        println!(
            "user time per echoed message between syscalls (TSC, a preloaded shim; one run per \
             server per round, medians; cellio from its build with `--cfg \
             cellio_user_time_hooks`). `less floor`: less the shim's own cost per segment, \
             measured each round on an empty loop that reaches the shim the same way: {}. The \
             ratios use the figures less the floor (raw figures carry each way's own floor):",
            floors.join(", ")
        );
        if markdown {
            println!();
            println!("```text");
        }
        println!(
            "{:<14} {:>9} {:>8} {:>10} {:>6} {:>7} {:>9} {:>5}  less floor by round; transitions \
             (segments/msg × ns)",
            "server", "msgs/s", "user ns", "less floor", "/mio", "/tokio", "calls/msg", "long"
        );
        let floor = |n: &str| self.user_tsc(n, true).map(|(m, _)| m);
        for (spec, r) in self.specs.iter().zip(self.res) {
            let runs: Vec<UserTimePerMsg> =
                r.user_time.iter().filter_map(|x| x.user_time).collect();
            let (Some((raw, _)), Some((less, by_round))) = (
                self.user_tsc(&spec.name, false),
                self.user_tsc(&spec.name, true),
            ) else {
                println!("{:<14} no figures", spec.name);
                continue;
            };
            let ratio = |b: Option<f64>| {
                b.filter(|b| *b > 0.0)
                    .map_or("-".into(), |b| format!("{:.2}x", less / b))
            };
            let med = |f: &dyn Fn(&UserTimePerMsg) -> f64| {
                median(&runs.iter().map(f).collect::<Vec<_>>())
            };
            let mut pairs = [(0.0, 0.0); 16];
            for (i, p) in pairs.iter_mut().enumerate() {
                *p = (med(&|u| u.pairs[i].0), med(&|u| u.pairs[i].1));
            }
            let typical = UserTimePerMsg {
                user_ns: raw,
                less_floor_ns: less,
                segments: med(&|u| u.segments),
                mechanism: runs[0].mechanism,
                floor_ns: med(&|u| u.floor_ns),
                calls: med(&|u| u.calls),
                long_segments: runs.iter().map(|u| u.long_segments).sum(),
                long_ms: runs.iter().map(|u| u.long_ms).sum(),
                pairs,
            };
            let rate = median(
                &r.user_time
                    .iter()
                    .map(|x| x.msgs_per_sec)
                    .collect::<Vec<_>>(),
            );
            println!(
                "{:<14} {:>9.0} {:>8.1} {:>10.1} {:>6} {:>7} {:>9.3} {:>5}  {}; {}",
                spec.name,
                rate,
                raw,
                less,
                ratio(floor("mio")),
                ratio(floor("tokio-current")),
                typical.calls,
                typical.long_segments,
                by_round
                    .iter()
                    .map(|x| format!("{x:.1}"))
                    .collect::<Vec<_>>()
                    .join("/"),
                typical.transitions().join(", ")
            );
        }
        if markdown {
            println!("```");
        }
    }

    /// Medians of a server's `perf stat` runs, and its user cycles per round.
    fn perf(&self, name: &str) -> Option<(PerfPerMsg, f64, Vec<f64>)> {
        let r = &self.res[self.specs.iter().position(|s| s.name == name)?];
        let runs: Vec<(PerfPerMsg, f64)> = r
            .perf
            .iter()
            .filter_map(|run| run.perf.map(|p| (p, run.msgs_per_sec)))
            .collect();
        if runs.is_empty() {
            return None;
        }
        let m =
            |f: fn(&PerfPerMsg) -> f64| median(&runs.iter().map(|(p, _)| f(p)).collect::<Vec<_>>());
        let medians = PerfPerMsg {
            user_instructions: m(|p| p.user_instructions),
            user_cycles: m(|p| p.user_cycles),
            kernel_instructions: m(|p| p.kernel_instructions),
            kernel_cycles: m(|p| p.kernel_cycles),
            user_ns_by_cycles: m(|p| p.user_ns_by_cycles),
        };
        let rate = median(&runs.iter().map(|(_, r)| *r).collect::<Vec<_>>());
        Some((
            medians,
            rate,
            runs.iter().map(|(p, _)| p.user_cycles).collect(),
        ))
    }

    fn print_perf(&self, markdown: bool) {
        if !self.any(|r| !r.perf.is_empty() || !r.perf_failures.is_empty()) {
            return;
        }
        println!();
        println!(
            "hardware counters per echoed message (perf stat, one run per server per round, \
             medians):"
        );
        if markdown {
            println!();
            println!("```text");
        }
        println!(
            "{:<14} {:>10} {:>12} {:>12} {:>12} {:>12} {:>14}  user cycles by round",
            "server",
            "msgs/s",
            "user instr",
            "user cycles",
            "kern instr",
            "kern cycles",
            "user ns (cyc)"
        );
        for spec in self.specs {
            match self.perf(&spec.name) {
                Some((p, rate, by_round)) => println!(
                    "{:<14} {:>10.0} {:>12.1} {:>12.1} {:>12.0} {:>12.0} {:>14.1}  {}",
                    spec.name,
                    rate,
                    p.user_instructions,
                    p.user_cycles,
                    p.kernel_instructions,
                    p.kernel_cycles,
                    p.user_ns_by_cycles,
                    by_round
                        .iter()
                        .map(|c| format!("{c:.0}"))
                        .collect::<Vec<_>>()
                        .join("/")
                ),
                None => println!("{:<14} no counters", spec.name),
            }
        }
        if markdown {
            println!("```");
        }
    }

    pub fn json(&self) -> Value {
        let floor = self.row("mio").and_then(|r| r.summary);
        let tokio = self.row("tokio-current").and_then(|r| r.summary);
        let err_or = |r: Option<Result<Value, &String>>| match r {
            Some(Ok(v)) => v,
            Some(Err(e)) => json!({ "error": e }),
            None => Value::Null,
        };
        let servers: Vec<Value> = self
            .specs
            .iter()
            .zip(self.res)
            .zip(&self.rows)
            .map(|((spec, r), row)| {
                json!({
                    "name": spec.name,
                    "command": spec.command_line(),
                    "rounds": r.runs.iter().map(RunResult::to_json).collect::<Vec<_>>(),
                    "failures": r.failures,
                    "median": row.summary.map(Summary::to_json),
                    "vs_mio": row.summary.zip(floor).map(|(s, f)| s.ratio(&f).to_json()),
                    "vs_tokio_current": row.summary.zip(tokio).map(|(s, t)| s.ratio(&t).to_json()),
                    "latency": {
                        "rounds": r.latency.iter().map(LatencyRun::to_json).collect::<Vec<_>>(),
                        "failures": r.latency_failures,
                        "median": row.latency.as_ref().map(|l| json!({
                            "msgs_per_sec": l.msgs_per_sec,
                            "p50_us": l.p50_us,
                            "p99_us": l.p99_us,
                            "window_p99": l.windows.as_ref().map(WindowP99::to_json),
                        })),
                    },
                    "allocs": err_or(r.allocs.as_ref().map(|x| x.as_ref().map(extras::AllocResult::to_json))),
                    "callgrind": err_or(r.callgrind.as_ref().map(|x| x.as_ref().map(extras::CallgrindResult::to_json))),
                    "cache_model": err_or(r.cache.as_ref().map(|x| x.as_ref().map(extras::CacheResult::to_json))),
                    "perf_runs": r.perf.iter().map(RunResult::to_json).collect::<Vec<_>>(),
                    "perf_failures": r.perf_failures,
                    "user_time_runs": r.user_time.iter().map(RunResult::to_json).collect::<Vec<_>>(),
                    "user_time_failures": r.user_time_failures,
                    "strace": err_or(r.strace.as_ref().map(|x| x.as_ref().map(strace_json))),
                })
            })
            .collect();
        let a = self.args;
        json!({
            "config": {
                "connections": a.connections,
                "size": a.size,
                "warmup_secs": a.warmup,
                "duration_secs": a.duration,
                "rounds": a.rounds,
                "server_core": a.server_core,
                "client_core": a.client_core,
                "tokio_workers": a.tokio_workers,
                "noisy_retries": a.noisy_retries,
                "clk_tck": self.tck,
                "latency_rate": a.latency_rate,
                "latency_secs": a.latency_secs,
                "latency_window": a.latency_window,
            },
            "servers": servers,
            "tick_bias": {
                "runs": self.bias_runs.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
                "ns_per_msg": self.bias.map(|b| b.ns_per_msg),
                "rel_err": self.bias.map(|b| b.rel_err),
            },
            "cellio_vs_tokio_current": self.row("cellio").and_then(|r| r.summary).zip(tokio)
                .map(|(c, t)| c.ratio(&t).to_json()),
            "targets": self.targets().iter().map(|t| json!({
                "target": t.what,
                "figure": t.figure,
                "met": t.met,
                "decided": t.decided,
            })).collect::<Vec<_>>(),
            "notes": self.table_notes(),
        })
    }
}

/// `met`, `MISSED`, `unknown` (not measured), or, for a figure within 2σ of its limit,
/// `met?` / `MISSED?`: this run leans that way but cannot tell.
fn verdict(t: &Target) -> &'static str {
    match (t.met, t.decided) {
        (Some(true), true) => "met",
        (Some(false), true) => "MISSED",
        (Some(true), false) => "met?",
        (Some(false), false) => "MISSED?",
        (None, _) => "unknown",
    }
}

fn fmt(v: f64, prec: usize) -> String {
    if v.is_finite() {
        format!("{v:.prec$}")
    } else {
        "-".into()
    }
}

/// A ratio for the table; `-` when undefined (a zero denominator, e.g. no user tick).
fn ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}x")
    } else {
        "-".into()
    }
}

fn strace_json(t: &StraceResult) -> Value {
    let per_msg: serde_json::Map<String, Value> = t
        .calls
        .iter()
        .map(|(name, n)| (name.clone(), json!(*n as f64 / t.msgs as f64)))
        .collect();
    json!({
        "msgs": t.msgs,
        "total_calls": t.total_calls,
        "syscalls_per_msg": t.total_calls as f64 / t.msgs as f64,
        "per_msg_by_syscall": per_msg,
    })
}

/// Whether the rounds compared pairwise decide that ours is lower (`lower`) or higher than
/// tokio's: the point estimate's side, confirmed by the sign test.
fn paired_decides(paired: Option<&Paired>, lower: bool) -> bool {
    paired.and_then(Paired::decided) == Some(lower)
}

/// "; ours / tokio ..." for a p99 target's figure, or nothing without paired rounds.
fn paired_text(paired: Option<&Paired>) -> String {
    paired.map_or_else(String::new, |p| format!("; ours / tokio {}", p.text()))
}
