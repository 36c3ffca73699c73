//! `echo_compare`: the measurement driver for the echo comparison.
//!
//! What it measures: for each echo server, its **user and system CPU time per echoed
//! message** and its throughput under the same closed-loop load, reported as medians over
//! rounds and as ratios to the raw mio loop (`mio`, the floor) and, when present, of `cellio`
//! to `tokio-current`. Absolute times drift from run to run on this machine, ratios taken in
//! one run do not, so always compare within one invocation.
//!
//! Method (per round, servers interleaved, the order alternating so that a drift within a round
//! favours none: round 1 runs A, B, C; round 2 runs C, B, A; round 3 A, B, C; ...):
//! 1. pick a free loopback port, start the server pinned to the server core
//!    (`taskset -c 0`), and wait until it accepts a connection;
//! 2. start `mio_load` pinned to the client core (`taskset -c 1`) with `--warmup W
//!    --duration D --phase-marks --json`;
//! 3. sample the server's `/proc/PID/stat` utime (field 14) and stime (field 15), which cover
//!    all its threads, the moment the client prints `# warmup-done`, and again the moment it
//!    prints `# window-done`. The client decides both instants on its own clock right where it
//!    starts and stops counting messages, so the CPU window and the message window coincide to
//!    within the pipe wake-up latency (microseconds), far below the 10 ms tick. This is more
//!    accurate than sleeping W seconds in the driver (which would be off by the client's
//!    start-up and connect time) and keeps warm-up in the same process and connections as the
//!    window, as a long-running server would see it;
//! 4. CPU ticks (÷ `sysconf(_SC_CLK_TCK)`) divided by messages echoed in the window give user
//!    ns/msg and sys ns/msg; the server is then killed.
//!
//! Ticks are 10 ms, so the window must be long: at 100% CPU a 5 s window is 500 ticks
//! (±0.2%). A warning is printed when a window holds fewer than 30 user ticks.
//!
//! With `--strace`, each server gets one extra run with `strace -c -f -p PID` attached before
//! the client connects and detached after it finished, giving syscalls per echoed message.
//! Every server is traced over the same number of messages (`--strace-msgs`, no warm-up), not
//! the same time: traced servers run at very different speeds, and the per-connection
//! accept/setup/close calls, which are included (and visible in the per-syscall breakdown),
//! must weigh the same in each one's figure.
//!
//! Beside the CPU runs, per server (see `extras.rs`):
//! * latency at one offered load for every server (`--latency-rate`, default 20 000 msg/s in
//!   total): one extra run per server per round, interleaved like the CPU runs, with cellio's
//!   bundled load client (`load --rate R --spin --json`, open loop, latency timed from each
//!   message's intended send time) pinned to the client core; medians of p50 and p99;
//! * allocations per message and per connection life, once per invocation, from
//!   `tests/outside/count_allocs.py` (an LD_PRELOAD malloc counter; needs python3 and cc);
//! * with `--tick-bias`, once per round before the servers, the sibling `tick_bias` program
//!   pinned to the server core: the user time tick sampling books for an echo's two syscalls,
//!   reported beside user ns/msg and taken off it in the `user−bias` and `adj/*` columns;
//!   every user figure also carries its error (`tick_stats.rs`);
//! * with `--user-time`, user time per message measured between syscalls with the time-stamp
//!   counter (`user_time.rs`; a preloaded shim, one extra run per server per round): precise
//!   where ticks are sampled and biased, and free of the PMU that VMs often lack; cellio
//!   servers then run from `--cellio-hooks-bin`, a build that tells the shim about its inline
//!   syscalls (`--cfg cellio_user_time_hooks`);
//! * with `--callgrind`, user-space instructions per message: the server runs under valgrind's
//!   callgrind twice with a fixed workload (20 connections x 200 and x 800 messages, built-in
//!   lock-step client, each round written while the server is stopped: `gate.rs`); the
//!   difference over the extra messages cancels start-up and connection setup. Repeats to the
//!   instruction, unlike the tick-sampled user time.
//!
//! The server binaries are the siblings of this executable (`mio_echo`, `tokio_echo`,
//! `mio_load` in the same target directory); a cellio server is given with `--cellio-bin`
//! and runs as `cellio` (its defaults), `cellio-io` (`--api poll`: the same echo through
//! `TcpIo`), `cellio-nopool` (`--no-task-pool`) and `cellio-2w` (`--workers 2`, on the same
//! single pinned core).
//!
//! Stopped by SIGINT, SIGTERM or SIGHUP, the driver kills every server, client and tool it
//! started (each in a process group of its own) and exits with 128 + the signal
//! (`children.rs`).

mod children;
mod client_check;
mod extras;
mod gate;
mod machine;
mod paired;
mod perf;
mod report;
mod tick_stats;
mod together;
mod user_time;
mod window_stats;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::children::Guard;
use crate::perf::{PerfPerMsg, PerfSession};
use crate::user_time::{Mechanism, Shim, UserTimePerMsg};
use cellio_benches::{
    clk_tck, median, parse_args, read_cores_busy, read_cpu_ticks, run_main, CpuTicks,
    MARK_WARMUP_DONE, MARK_WINDOW_DONE,
};
use clap::Parser;
use serde_json::{json, Value};

const PROG: &str = "echo_compare";
/// Servers this driver knows, in default order.
const KNOWN: [&str; 7] = [
    "mio",
    "tokio-current",
    "tokio-multi",
    "cellio",
    "cellio-io",
    "cellio-nopool",
    "cellio-2w",
];

/// Runs the echo servers under identical pinned closed-loop load and compares CPU per message.
#[derive(Parser, Debug)]
#[command(name = PROG, version)]
struct Args {
    /// Comma-separated servers to compare, from: mio, tokio-current, tokio-multi, cellio,
    /// cellio-io (`--api poll`: through `TcpIo`), cellio-nopool (`--no-task-pool`), cellio-2w
    /// (`--workers 2`, on the one server core). Default: mio,tokio-current,tokio-multi, plus
    /// cellio,cellio-io,cellio-nopool when --cellio-bin is given (and cellio-2w with
    /// --with-workers).
    #[arg(long, value_delimiter = ',')]
    servers: Option<Vec<String>>,
    /// A built cellio echo server binary (examples/echo_server); it must accept
    /// `--addr HOST:PORT`, and `--api poll` / `--no-task-pool` / `--workers N` for the
    /// variants.
    #[arg(long)]
    cellio_bin: Option<PathBuf>,
    /// Add cellio-2w (two workers sharing the server core) to the default server list.
    #[arg(long)]
    with_workers: bool,
    /// Extra arguments for every cellio variant (one string, split on whitespace).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    cellio_args: String,
    /// Worker threads for tokio-multi.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    tokio_workers: u16,
    /// Client connections.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    size: u32,
    /// Measured window per run, seconds.
    #[arg(long, default_value_t = 5.0, value_parser = parse_secs)]
    duration: f64,
    /// Warm-up per run before the window, seconds.
    #[arg(long, default_value_t = 1.0, value_parser = parse_secs)]
    warmup: f64,
    /// Rounds (each round runs every server once).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// CPU the servers are pinned to.
    #[arg(long, default_value_t = 0)]
    server_core: u32,
    /// CPU the load client is pinned to.
    #[arg(long, default_value_t = 1)]
    client_core: u32,
    /// Repeat a run up to this many times while other processes or the host (the VM's steal
    /// time) take more than 5% of a core on the benchmark cores during its window (a shared
    /// machine); 0 keeps every run.
    #[arg(long, default_value_t = 2)]
    noisy_retries: u32,
    /// Before each timed run, wait up to this many seconds for the benchmark cores to be
    /// quiet (other processes using under 5% of a core over half a second); 0 never waits.
    #[arg(long, default_value_t = 300.0, value_parser = parse_secs)]
    quiet_wait: f64,
    /// Print the results as one JSON object (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Print the table as GitHub markdown (for docs/benchmarks.md).
    #[arg(long, conflicts_with = "json")]
    markdown: bool,
    /// Offered load of the latency runs, total messages per second over all connections
    /// (open loop, cellio's bundled load client); 0 skips the latency runs.
    #[arg(long, default_value_t = 20_000.0, value_parser = parse_rate)]
    latency_rate: f64,
    /// Measured window of each latency run, seconds (after --warmup): 10 s makes 100 p99
    /// windows per run at the default --latency-window.
    #[arg(long, default_value_t = 10.0, value_parser = parse_secs)]
    latency_secs: f64,
    /// Latency runs also report a p99 per window of this many seconds (`load --window`), and
    /// the table the median window's (see window_stats.rs); 0 turns it off.
    #[arg(long, default_value_t = 0.1, value_parser = parse_secs)]
    latency_window: f64,
    /// Also, once per round, run these servers (comma-separated, from --servers) at the same
    /// time on the server core, driven by one load client with the latency runs' settings
    /// per server, and compare their p99 window by window: the VM's stalls land on all of
    /// them alike (see together.rs). E.g. `cellio,tokio-current`.
    #[arg(long, value_delimiter = ',')]
    together: Option<Vec<String>>,
    /// cellio's bundled load client, for the latency runs.
    /// Default: examples/load beside this executable (target/release/examples/load).
    #[arg(long)]
    load_bin: Option<PathBuf>,
    /// The allocation counter script. Default: tests/outside/count_allocs.py, looked for
    /// upwards from this executable and from the current directory.
    #[arg(long)]
    count_allocs: Option<PathBuf>,
    /// Skip the allocation counts.
    #[arg(long)]
    no_allocs: bool,
    /// Also count user-space instructions per message under valgrind's callgrind (two short
    /// runs per server; deterministic, unlike tick-sampled user time).
    #[arg(long)]
    callgrind: bool,
    /// Keep the profiles of the `--callgrind` and `--cache-misses` runs in this directory
    /// (`SERVER.MSGS.callgrind.out`, for `callgrind_annotate`) instead of deleting them.
    #[arg(long, value_name = "DIR")]
    callgrind_keep: Option<PathBuf>,
    /// Also count first-level cache misses per message in callgrind's cache model (32 KiB,
    /// 8-way L1s; two lock-step runs over 100 connections per server): the lines a message
    /// touches that the other connections evicted, exactly and repeatably.
    #[arg(long)]
    cache_misses: bool,
    /// Also count syscalls per message with `strace -c -f` in one extra run per server.
    #[arg(long)]
    strace: bool,
    /// Also read hardware counters with `perf stat` in one extra run per server and round
    /// (interleaved like the CPU runs; medians reported): user and kernel instructions and
    /// cycles per message, and a user ns/msg free of tick sampling.
    #[arg(long)]
    perf: bool,
    /// Also measure user time per message between syscalls with the time-stamp counter (a
    /// preloaded shim, `user_time.c`; needs `cc` and an x86-64 CPU with a constant TSC), in
    /// one extra run per server and round: precise to a few ns where ticks are sampled and
    /// biased, and needs no PMU. cellio servers then run from --cellio-hooks-bin.
    #[arg(long)]
    user_time: bool,
    /// A cellio echo server built to tell the shim about its inline syscalls, for
    /// --user-time (no preloaded library can see a `syscall` instruction):
    /// `RUSTFLAGS="--cfg cellio_user_time_hooks" cargo build --release --example echo_server
    /// --target-dir target/user-time-hooks`.
    #[arg(long)]
    cellio_hooks_bin: Option<PathBuf>,
    /// Also measure the tick bias (user time that tick sampling books for an echo's two
    /// syscalls) with the sibling `tick_bias` program, one `--duration` run per round on the
    /// server core, and report user CPU with it taken off.
    #[arg(long)]
    tick_bias: bool,
    /// Messages in each server's traced run (no warm-up): the same number for every server,
    /// so that the connections' setup calls weigh the same in each one's syscalls per
    /// message. The run also stops after STRACE_MAX_SECS, whatever it reached.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    strace_msgs: u64,
    /// Also cross-check cellio's load client against the independent `mio_load`: this many
    /// pairs of closed-loop runs (one of each client, `--client-check-secs` after `--warmup`,
    /// on a fresh cellio server, with `mio_load --latency` as a third run, the order rotating)
    /// and whether they agree within 10% on msgs/s and the load client drives at least as many
    /// (0: off); the same against `mio_load --latency`, for information. Pairs go through the
    /// noise guard (`--noisy-retries`); pairs still noisy are left out of the verdicts.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1000))]
    client_check: u32,
    /// Length of each client-check run, seconds.
    #[arg(long, default_value_t = 3.0, value_parser = parse_secs)]
    client_check_secs: f64,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && (0.0..=1e9).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "`{s}` is not between 0 and 1e9 messages per second"
        ))
    }
}

fn parse_secs(s: &str) -> Result<f64, String> {
    cellio_benches::parse_secs_up_to(s, 3600.0)
}

/// How to start one server.
#[derive(Clone)]
struct ServerSpec {
    name: String,
    program: PathBuf,
    args: Vec<String>,
}

impl ServerSpec {
    fn command_line(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s + " --addr 127.0.0.1:PORT"
    }
}

/// One measured run.
#[derive(Clone, Debug)]
struct RunResult {
    msgs: u64,
    secs: f64,
    msgs_per_sec: f64,
    user_ticks: u64,
    sys_ticks: u64,
    cpu_wall_secs: f64,
    user_ns_per_msg: f64,
    sys_ns_per_msg: f64,
    /// Server CPU (user + sys) over the window's wall time; 1.0 = one core fully busy.
    cpu_util: f64,
    /// CPU used on the two benchmark cores by anything but the server and the client, as a
    /// fraction of one core (another build, a stray process). Above 0.05 the run is suspect.
    other_cpu: f64,
    /// Hardware counters, when the run was made with `perf stat` attached.
    perf: Option<PerfPerMsg>,
    /// User time between syscalls, when the run was made under the user-time shim.
    user_time: Option<UserTimePerMsg>,
}

/// CPU counters sampled at one phase mark.
struct Sample {
    server: CpuTicks,
    client: CpuTicks,
    cores_busy: u64,
    at: Instant,
}

impl Sample {
    fn take(server: u32, client: u32, cores: &[u32]) -> Result<Self, String> {
        Ok(Sample {
            server: read_cpu_ticks(server)?,
            client: read_cpu_ticks(client)?,
            cores_busy: read_cores_busy(cores)?,
            at: Instant::now(),
        })
    }

    /// CPU the benchmark cores spent between `self` and `later` beyond the server's and the
    /// client's own, as a fraction of one core over the wall time between them: other
    /// processes, or the host's steal time.
    fn other_cpu(&self, later: &Sample, tck: u64) -> f64 {
        let own = |a: CpuTicks, b: CpuTicks| (b.utime + b.stime).saturating_sub(a.utime + a.stime);
        let ticks = later
            .cores_busy
            .saturating_sub(self.cores_busy)
            .saturating_sub(own(self.server, later.server) + own(self.client, later.client));
        let wall = (later.at - self.at).as_secs_f64().max(1e-3);
        ticks as f64 / tck as f64 / wall
    }
}

/// Above this much foreign CPU (fraction of one core) a run is flagged.
const OTHER_CPU_WARN: f64 = 0.05;

impl RunResult {
    fn to_json(&self) -> Value {
        json!({
            "msgs": self.msgs,
            "secs": self.secs,
            "msgs_per_sec": self.msgs_per_sec,
            "user_ticks": self.user_ticks,
            "sys_ticks": self.sys_ticks,
            "cpu_wall_secs": self.cpu_wall_secs,
            "user_ns_per_msg": self.user_ns_per_msg,
            "sys_ns_per_msg": self.sys_ns_per_msg,
            "cpu_util": self.cpu_util,
            "other_cpu": self.other_cpu,
            "perf": self.perf.map(PerfPerMsg::to_json),
            "user_time": self.user_time.map(UserTimePerMsg::to_json),
        })
    }
}

/// Medians over the successful rounds of one server.
#[derive(Clone, Copy, Debug)]
struct Summary {
    msgs_per_sec: f64,
    user_ns_per_msg: f64,
    /// User ticks summed over the rounds: the user figure is a count of these.
    user_ticks: u64,
    /// 1σ relative error of the median user figure (`tick_stats::median_rel_err`).
    user_rel_err: f64,
    sys_ns_per_msg: f64,
    cpu_util: f64,
    other_cpu: f64,
}

impl Summary {
    fn of(runs: &[RunResult]) -> Option<Self> {
        if runs.is_empty() {
            return None;
        }
        let m = |f: fn(&RunResult) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        Some(Summary {
            msgs_per_sec: m(|r| r.msgs_per_sec),
            user_ns_per_msg: m(|r| r.user_ns_per_msg),
            user_ticks: runs.iter().map(|r| r.user_ticks).sum(),
            user_rel_err: tick_stats::median_rel_err(
                &runs.iter().map(|r| r.user_ns_per_msg).collect::<Vec<_>>(),
                runs.iter().map(|r| r.user_ticks).sum(),
            ),
            sys_ns_per_msg: m(|r| r.sys_ns_per_msg),
            cpu_util: m(|r| r.cpu_util),
            other_cpu: m(|r| r.other_cpu),
        })
    }

    /// Ratios self / base of the compared metrics.
    fn ratio(&self, base: &Summary) -> Ratios {
        Ratios {
            msgs_per_sec: self.msgs_per_sec / base.msgs_per_sec,
            user_ns_per_msg: self.user_ns_per_msg / base.user_ns_per_msg,
            sys_ns_per_msg: self.sys_ns_per_msg / base.sys_ns_per_msg,
        }
    }

    fn to_json(self) -> Value {
        json!({
            "msgs_per_sec": self.msgs_per_sec,
            "user_ns_per_msg": self.user_ns_per_msg,
            "user_ticks": self.user_ticks,
            "user_rel_err": self.user_rel_err,
            "sys_ns_per_msg": self.sys_ns_per_msg,
            "cpu_util": self.cpu_util,
            "other_cpu": self.other_cpu,
        })
    }
}

/// One server's medians over another's ([`Summary::ratio`]).
#[derive(Clone, Copy, Debug)]
struct Ratios {
    msgs_per_sec: f64,
    user_ns_per_msg: f64,
    sys_ns_per_msg: f64,
}

impl Ratios {
    fn to_json(self) -> Value {
        json!({
            "msgs_per_sec": self.msgs_per_sec,
            "user_ns_per_msg": self.user_ns_per_msg,
            "sys_ns_per_msg": self.sys_ns_per_msg,
        })
    }
}

/// Syscall counts from one traced run.
struct StraceResult {
    msgs: u64,
    total_calls: u64,
    /// (syscall, calls), most frequent first.
    calls: Vec<(String, u64)>,
}

fn main() -> ExitCode {
    let args: Args = parse_args(PROG);
    // Before any thread or child starts: a SIGTERM (a harness's timeout), SIGHUP or SIGINT
    // kills the children, which a signal's default action would leave running.
    children::stop_children_on_signals(PROG);
    if args.latency_rate > 0.0 && args.latency_window > 0.0 {
        // The load client's own checks, made here so that a bad pair fails at once, not in
        // every latency run.
        let (secs, window) = (
            Duration::from_secs_f64(args.latency_secs).as_nanos(),
            Duration::from_secs_f64(args.latency_window).as_nanos(),
        );
        let problem = if window == 0 || secs % window != 0 {
            Some("the window does not divide the run")
        } else if secs / window > 1000 {
            Some("more than 1000 windows per run")
        } else {
            None
        };
        if let Some(problem) = problem {
            eprintln!(
                "{PROG}: error: --latency-window {} with --latency-secs {}: {problem} (try --help)",
                args.latency_window, args.latency_secs
            );
            return ExitCode::from(2);
        }
    }
    // The default server list has `cellio` exactly when --cellio-bin is given.
    let runs_cellio = args
        .servers
        .as_ref()
        .map_or(args.cellio_bin.is_some(), |s| {
            s.iter().any(|n| n == "cellio")
        });
    if args.client_check > 0 && !runs_cellio {
        eprintln!(
            "{PROG}: error: --client-check runs against the `cellio` server: give --cellio-bin \
             and keep `cellio` in --servers (try --help)"
        );
        return ExitCode::from(2);
    }
    // --user-time runs every cellio variant from a build that calls the shim's hooks.
    let runs_any_cellio = args
        .servers
        .as_ref()
        .map_or(args.cellio_bin.is_some(), |s| {
            s.iter().any(|n| n.starts_with("cellio"))
        });
    if args.user_time && runs_any_cellio {
        const BUILD: &str = "RUSTFLAGS=\"--cfg cellio_user_time_hooks\" cargo build --release \
                             --example echo_server --target-dir target/user-time-hooks";
        let problem = match &args.cellio_hooks_bin {
            None => Some("--user-time needs --cellio-hooks-bin PATH for the cellio servers".into()),
            Some(bin) if !bin.is_file() => Some(format!(
                "--cellio-hooks-bin {}: no such file",
                bin.display()
            )),
            Some(bin) => match Mechanism::of(bin) {
                Ok(Mechanism::Hooks) => None,
                Ok(Mechanism::Wrappers) => Some(format!(
                    "--cellio-hooks-bin {}: not built with --cfg cellio_user_time_hooks",
                    bin.display()
                )),
                Err(e) => Some(format!("--cellio-hooks-bin: {e}")),
            },
        };
        if let Some(problem) = problem {
            eprintln!("{PROG}: error: {problem} (build it with: {BUILD})");
            return ExitCode::from(2);
        }
    }
    if let Some(problem) = together_problem(&args) {
        eprintln!("{PROG}: error: {problem} (try --help)");
        return ExitCode::from(2);
    }
    run_main(PROG, || run(&args))
}

/// Everything measured for one server.
#[derive(Default)]
struct ServerResults {
    /// Closed-loop CPU runs, one per successful round.
    runs: Vec<RunResult>,
    failures: Vec<String>,
    /// Open-loop latency runs, one per successful round.
    latency: Vec<extras::LatencyRun>,
    latency_failures: Vec<String>,
    /// `perf stat` runs, one per round.
    perf: Vec<RunResult>,
    perf_failures: Vec<String>,
    /// User-time runs (`--user-time`), one per round.
    user_time: Vec<RunResult>,
    user_time_failures: Vec<String>,
    strace: Option<Result<StraceResult, String>>,
    allocs: Option<Result<extras::AllocResult, String>>,
    callgrind: Option<Result<extras::CallgrindResult, String>>,
    cache: Option<Result<extras::CacheResult, String>>,
}

impl ServerResults {
    fn failed(&self) -> usize {
        let err = |o: bool| usize::from(o);
        self.failures.len()
            + self.latency_failures.len()
            + self.perf_failures.len()
            + self.user_time_failures.len()
            + err(matches!(self.strace, Some(Err(_))))
            + err(matches!(self.allocs, Some(Err(_))))
            + err(matches!(self.cache, Some(Err(_))))
            + err(matches!(self.callgrind, Some(Err(_))))
    }
}

fn run(args: &Args) -> Result<(), String> {
    let dir = std::env::current_exe()
        .map_err(|e| format!("current_exe: {e}"))?
        .parent()
        .ok_or("current_exe has no parent directory")?
        .to_path_buf();
    let load_bin = sibling(&dir, "mio_load")?;
    for tool in ["taskset"] {
        if !on_path(tool) {
            return Err(format!("`{tool}` not found on PATH (util-linux)"));
        }
    }
    if args.strace && !on_path("strace") {
        return Err("`strace` not found on PATH (apt-get install -y strace)".into());
    }
    if (args.callgrind || args.cache_misses) && !on_path("valgrind") {
        return Err("`valgrind` not found on PATH (apt-get install -y valgrind)".into());
    }
    let specs = server_specs(args, &dir)?;
    let tck = clk_tck();
    // Checked and built before anything runs: a bad combination fails now.
    let mut user_time = if args.user_time {
        if !on_path("cc") {
            return Err("--user-time builds its shim with `cc`: not found on PATH".into());
        }
        let hooks_specs = user_time_specs(args, &specs)?;
        let shim = Shim::build(args.server_core)?;
        eprintln!(
            "{PROG}: user-time shim built; TSC {:.4} ticks/ns; the shim's floor per segment \
             {:.1} ns through its wrappers, {:.1} ns through its hooks",
            shim.tsc_per_ns(),
            shim.floor_ns(Mechanism::Wrappers),
            shim.floor_ns(Mechanism::Hooks)
        );
        Some((shim, hooks_specs))
    } else {
        None
    };
    let bias_bin = if args.tick_bias {
        Some(sibling(&dir, "tick_bias")?)
    } else {
        None
    };

    // Optional parts that need other programs are skipped with a note when those are missing.
    let mut notes: Vec<String> = Vec::new();
    let latency_bin = if args.latency_rate == 0.0 {
        notes.push("latency runs skipped (--latency-rate 0)".into());
        None
    } else {
        let bin = args
            .load_bin
            .clone()
            .unwrap_or_else(|| dir.join("examples").join("load"));
        if bin.is_file() {
            Some(bin)
        } else {
            notes.push(format!(
                "latency runs skipped: cellio's load client {} not found (build it with \
                 `cargo build --release --example load`, or give --load-bin)",
                bin.display()
            ));
            None
        }
    };
    let allocs_script = if args.no_allocs {
        None
    } else if !on_path("python3") || !on_path("cc") {
        notes.push("allocation counts skipped: they need python3 and cc on PATH".into());
        None
    } else {
        match args
            .count_allocs
            .clone()
            .or_else(|| extras::find_count_allocs(&dir))
        {
            Some(p) if p.is_file() => Some(p),
            found => {
                notes.push(format!(
                    "allocation counts skipped: {} not found (give --count-allocs PATH)",
                    found.map_or("tests/outside/count_allocs.py".into(), |p| p
                        .display()
                        .to_string())
                ));
                None
            }
        }
    };
    // Checked before anything runs: a bad combination fails now, not after the rounds.
    let client_check = if args.client_check > 0 {
        let load = args
            .load_bin
            .clone()
            .unwrap_or_else(|| dir.join("examples").join("load"));
        let spec = specs
            .iter()
            .find(|s| s.name == "cellio")
            .ok_or("--client-check needs the `cellio` server in --servers")?;
        if !load.is_file() {
            return Err(format!(
                "--client-check: cellio's load client {} not found (build it with `cargo build \
                 --release --example load`, or give --load-bin)",
                load.display()
            ));
        }
        Some((spec, load))
    } else {
        None
    };
    // Checked before anything runs, like the client check.
    let together_specs: Vec<&ServerSpec> = match &args.together {
        None => Vec::new(),
        // The names were checked in `main` (`together_problem`).
        Some(names) => {
            if latency_bin.is_none() {
                return Err(
                    "--together needs cellio's load client for its runs (see the note \
                            above)"
                        .into(),
                );
            }
            names
                .iter()
                .filter_map(|name| specs.iter().find(|s| s.name == name.trim()))
                .collect()
        }
    };
    for n in &notes {
        eprintln!("{PROG}: note: {n}");
    }

    eprintln!("{PROG}: machine: {}", machine::describe());
    eprintln!(
        "{PROG}: {} connections, {} B messages, warm-up {} s, window {} s, {} round(s); \
         servers on core {}, client on core {}; CLK_TCK {tck}",
        args.connections,
        args.size,
        args.warmup,
        args.duration,
        args.rounds,
        args.server_core,
        args.client_core
    );

    let mut res: Vec<ServerResults> = specs.iter().map(|_| ServerResults::default()).collect();
    let mut bias_runs: Vec<tick_stats::BiasRun> = Vec::new();
    let mut together_runs: Vec<together::TogetherRun> = Vec::new();
    let mut together_failures: Vec<String> = Vec::new();
    for round in 1..=args.rounds {
        // The shim's floor drifts with the VM: measured afresh for every round after the
        // first (which uses the measurement made when the shim was built).
        if let Some((shim, _)) = user_time.as_mut().filter(|_| round > 1) {
            match shim.measure_floor(args.server_core) {
                Ok([wrappers, hooks]) => eprintln!(
                    "  round {round}/{} user-time floor {wrappers:.1} ns per segment through \
                     the wrappers, {hooks:.1} through the hooks",
                    args.rounds
                ),
                Err(e) => notes.push(format!(
                    "user-time floor not measured again in round {round} (the last one is \
                     used): {e}"
                )),
            }
        }
        if let Some(bin) = &bias_bin {
            let label = format!("round {round}/{} {:<14}", args.rounds, "tick-bias");
            let r = retry_noisy(
                args,
                &label,
                || tick_stats::run_once(bin, args, tck),
                |r| r.other_cpu,
                |r| {
                    format!(
                        "{:>9} iterations  user {:>5.1} ns/iteration  other {:>3.0}%  ({}+{} \
                         ticks)",
                        r.iterations,
                        r.user_ns_per_iter(tck),
                        r.other_cpu * 100.0,
                        r.user_ticks,
                        r.sys_ticks
                    )
                },
            );
            match r {
                Ok(r) => bias_runs.push(r),
                Err(e) => notes.push(format!("tick-bias run failed, round {round}: {e}")),
            }
        }
        for i in round_order(round, specs.len()) {
            let spec = &specs[i];
            let label = format!("round {round}/{} {:<14}", args.rounds, spec.name);
            let r = retry_noisy(
                args,
                &label,
                || measure(args, spec, &load_bin, tck, Extra::None),
                |r| r.other_cpu,
                |r| {
                    format!(
                        "{:>9.0} msg/s  user {:>7.1} ns/msg  sys {:>7.1} ns/msg  server CPU \
                         {:>4.0}%  other {:>3.0}%  ({} msgs, {}+{} ticks)",
                        r.msgs_per_sec,
                        r.user_ns_per_msg,
                        r.sys_ns_per_msg,
                        r.cpu_util * 100.0,
                        r.other_cpu * 100.0,
                        r.msgs,
                        r.user_ticks,
                        r.sys_ticks
                    )
                },
            );
            match r {
                Ok(r) => {
                    if r.user_ticks < 30 {
                        eprintln!(
                            "  warning: only {} user ticks in the window (±{:.0}% on the user \
                             figure); lengthen --duration",
                            r.user_ticks,
                            100.0 * tick_stats::rel_err(r.user_ticks.max(1))
                        );
                    }
                    res[i].runs.push(r);
                }
                Err(e) => res[i].failures.push(format!("round {round}: {e}")),
            }
            if args.perf {
                match measure(args, spec, &load_bin, tck, Extra::Perf) {
                    Ok(r) => {
                        if let Some(p) = &r.perf {
                            eprintln!(
                                "  perf {round}/{} {:<14} {:>9.0} msg/s  user {:.1} instr/msg, \
                                 {:.1} cycles/msg; kernel {:.0} instr/msg, {:.0} cycles/msg",
                                args.rounds,
                                spec.name,
                                r.msgs_per_sec,
                                p.user_instructions,
                                p.user_cycles,
                                p.kernel_instructions,
                                p.kernel_cycles
                            );
                        }
                        res[i].perf.push(r);
                    }
                    Err(e) => {
                        eprintln!(
                            "  perf {round}/{} {:<14} FAILED: {e}",
                            args.rounds, spec.name
                        );
                        res[i].perf_failures.push(format!("round {round}: {e}"));
                    }
                }
            }
            if let Some((shim, hooks_specs)) = &user_time {
                let label = format!("user time {round}/{} {:<12}", args.rounds, spec.name);
                let r = retry_noisy(
                    args,
                    &label,
                    || measure(args, &hooks_specs[i], &load_bin, tck, Extra::UserTime(shim)),
                    |r| r.other_cpu,
                    |r| match &r.user_time {
                        Some(u) => format!(
                            "{:>9.0} msg/s  user {:>6.1} ns/msg (TSC), {:>6.1} less the floor  \
                             {:.3} calls/msg  {} long segments ({:.1} ms)  other {:>3.0}%\n    {}",
                            r.msgs_per_sec,
                            u.user_ns,
                            u.less_floor_ns,
                            u.calls,
                            u.long_segments,
                            u.long_ms,
                            r.other_cpu * 100.0,
                            u.transitions().join(", ")
                        ),
                        None => String::new(),
                    },
                );
                match r {
                    Ok(r) => res[i].user_time.push(r),
                    Err(e) => res[i]
                        .user_time_failures
                        .push(format!("round {round}: {e}")),
                }
            }
            if let Some(load) = &latency_bin {
                let label = format!("latency {round}/{} {:<14}", args.rounds, spec.name);
                let r = retry_noisy(
                    args,
                    &label,
                    || extras::latency_run(args, spec, load),
                    |r| r.other_cpu,
                    |r| {
                        format!(
                            "{:>9.0} msg/s  p50 {:>7.1} µs  p99 {:>8.1} µs  p99.9 {:>8.1} µs  \
                             send lag p99 {:>6.1} µs  other {:>3.0}%",
                            r.msgs_per_sec,
                            r.p50_us,
                            r.p99_us,
                            r.p999_us,
                            r.send_lag_p99_us.unwrap_or(f64::NAN),
                            r.other_cpu * 100.0
                        )
                    },
                );
                match r {
                    Ok(r) => res[i].latency.push(extras::LatencyRun {
                        round: round as usize,
                        ..r
                    }),
                    Err(e) => res[i].latency_failures.push(format!("round {round}: {e}")),
                }
            }
        }
        if let (Some(load), false) = (&latency_bin, together_specs.is_empty()) {
            let label = format!("together {round}/{}", args.rounds);
            let r = retry_noisy(
                args,
                &label,
                || together::run_once(args, &together_specs, load, round as usize),
                |r| r.other_cpu,
                |r| together::describe(&together_specs, r),
            );
            match r {
                Ok(r) => together_runs.push(r),
                Err(e) => {
                    together_failures.push(format!("together run FAILED, round {round}: {e}"))
                }
            }
        }
    }

    let mut together_failed = 0;
    let mut together_targets = Vec::new();
    if !together_specs.is_empty() {
        let names: Vec<&str> = together_specs.iter().map(|s| s.name.as_str()).collect();
        let comparisons = together::comparisons(&names, &together_runs);
        let lines = together::report_lines(args, &names, &together_runs, &comparisons);
        together_targets = comparisons
            .into_iter()
            .filter(|(_, theirs, _)| theirs == "tokio-current")
            .map(|(ours, _, c)| (ours, c))
            .collect();
        for l in &lines {
            eprintln!("  {l}");
        }
        notes.extend(lines);
        together_failed = together_failures.len();
        notes.extend(together_failures);
    }

    let mut client_check_failed = false;
    if let Some((spec, load)) = &client_check {
        match client_check::run(
            args,
            spec,
            load,
            &load_bin,
            args.client_check,
            args.client_check_secs,
        ) {
            Ok(check) => notes.extend(check.notes()),
            Err(e) => {
                eprintln!("  client check FAILED: {e}");
                notes.push(format!("client check FAILED: {e}"));
                client_check_failed = true;
            }
        }
    }

    if args.strace {
        for (i, spec) in specs.iter().enumerate() {
            let t = strace_run(args, spec, &load_bin);
            match &t {
                Ok(t) => eprintln!(
                    "  strace {:<14} {:.3} syscalls/msg ({} calls, {} msgs){}",
                    spec.name,
                    t.total_calls as f64 / t.msgs as f64,
                    t.total_calls,
                    t.msgs,
                    if t.msgs < args.strace_msgs {
                        " (stopped by the time limit, short of --strace-msgs: setup weighs more)"
                    } else {
                        ""
                    }
                ),
                Err(e) => eprintln!("  strace {:<14} FAILED: {e}", spec.name),
            }
            res[i].strace = Some(t);
        }
    }

    if let Some(script) = &allocs_script {
        for (i, spec) in specs.iter().enumerate() {
            let a = extras::count_allocs(script, spec);
            match &a {
                Ok(a) => eprintln!(
                    "  allocs {:<14} {:.4} per message ({} in {} msgs), {:.2} per connection \
                     ({} in {} lives)",
                    spec.name,
                    a.per_msg(),
                    a.msg_allocs,
                    a.msgs,
                    a.per_conn(),
                    a.life_allocs,
                    a.lives
                ),
                Err(e) => eprintln!("  allocs {:<14} FAILED: {e}", spec.name),
            }
            res[i].allocs = Some(a);
        }
    }

    if args.callgrind {
        for (i, spec) in specs.iter().enumerate() {
            let c = extras::callgrind(spec, args.callgrind_keep.as_deref());
            match &c {
                Ok(c) => eprintln!(
                    "  callgrind {:<11} {:.1} user instructions/msg ({} - {} instructions)",
                    spec.name, c.per_msg, c.long_instr, c.short_instr
                ),
                Err(e) => eprintln!("  callgrind {:<11} FAILED: {e}", spec.name),
            }
            res[i].callgrind = Some(c);
        }
    }

    if args.cache_misses {
        for (i, spec) in specs.iter().enumerate() {
            let c = extras::cache_misses(spec, args.callgrind_keep.as_deref());
            match &c {
                Ok(c) => eprintln!(
                    "  cache model {:<9} {:.2} L1d misses/msg, {:.2} L1i misses/msg",
                    spec.name, c.d1_per_msg, c.i1_per_msg
                ),
                Err(e) => eprintln!("  cache model {:<9} FAILED: {e}", spec.name),
            }
            res[i].cache = Some(c);
        }
    }

    let report = report::Report::new(args, &specs, &res, notes, tck, &bias_runs)
        .with_together(together_targets);
    if args.json {
        println!("{}", report.json());
    } else if args.markdown {
        report.print_markdown();
    } else {
        report.print_text();
    }

    let failed: usize = res.iter().map(ServerResults::failed).sum::<usize>()
        + usize::from(client_check_failed)
        + together_failed;
    if failed > 0 {
        return Err(format!("{failed} run(s) failed (see above)"));
    }
    Ok(())
}

/// Waits up to `--quiet-wait` seconds until the benchmark cores are quiet: less than
/// [`OTHER_CPU_WARN`] of a core busy over half a second (no server or client of ours runs
/// meanwhile, so all of it is other processes). Runs anyway, with a warning, when the time is
/// up: the run's own other% then tells.
fn wait_quiet(args: &Args) -> Result<(), String> {
    if args.quiet_wait == 0.0 {
        return Ok(());
    }
    let cores = [args.server_core, args.client_core];
    let start = Instant::now();
    let mut said = false;
    loop {
        let (a, t0) = (read_cores_busy(&cores)?, Instant::now());
        thread::sleep(Duration::from_millis(500));
        let (b, t1) = (read_cores_busy(&cores)?, Instant::now());
        let busy = b.saturating_sub(a) as f64 / clk_tck() as f64 / (t1 - t0).as_secs_f64();
        if busy < OTHER_CPU_WARN {
            if said {
                eprintln!(
                    "  benchmark cores quiet after {:.0} s",
                    start.elapsed().as_secs_f64()
                );
            }
            return Ok(());
        }
        if start.elapsed().as_secs_f64() >= args.quiet_wait {
            eprintln!(
                "  warning: benchmark cores still {:.0}% busy after {} s of waiting; running \
                 anyway",
                busy * 100.0,
                args.quiet_wait
            );
            return Ok(());
        }
        if !said {
            eprintln!(
                "  other processes or the host use {:.0}% of a core on the benchmark cores: \
                 waiting up to {} s for quiet",
                busy * 100.0,
                args.quiet_wait
            );
            said = true;
        }
    }
}

/// The order the servers run in within round `round` (1-based): as listed in odd rounds,
/// backwards in even ones, so that a drift of the machine within a round favours no server
/// over the rounds (see `paired`).
fn round_order(round: u32, servers: usize) -> Vec<usize> {
    if round % 2 == 1 {
        (0..servers).collect()
    } else {
        (0..servers).rev().collect()
    }
}

/// Runs `attempt`, repeating it up to `--noisy-retries` times while other processes took more
/// than [`OTHER_CPU_WARN`] of a core on the benchmark cores; the last attempt is kept either
/// way (and flagged). Progress goes to stderr as `  LABEL DESCRIPTION`.
fn retry_noisy<T>(
    args: &Args,
    label: &str,
    mut attempt: impl FnMut() -> Result<T, String>,
    other_cpu: impl Fn(&T) -> f64,
    describe: impl Fn(&T) -> String,
) -> Result<T, String> {
    let mut retries = 0;
    loop {
        wait_quiet(args)?;
        match attempt() {
            Ok(r) => {
                eprintln!("  {label} {}", describe(&r));
                let other = other_cpu(&r);
                if other > OTHER_CPU_WARN {
                    if retries < args.noisy_retries {
                        retries += 1;
                        eprintln!(
                            "  other processes or the host took {:.0}% of a core on the benchmark \
                             cores: repeating this run ({retries}/{})",
                            other * 100.0,
                            args.noisy_retries
                        );
                        continue;
                    }
                    eprintln!(
                        "  warning: other processes or the host took {:.0}% of a core on the \
                         benchmark cores during this run; its figures are suspect",
                        other * 100.0
                    );
                }
                return Ok(r);
            }
            Err(e) => {
                eprintln!("  {label} FAILED: {e}");
                return Err(e);
            }
        }
    }
}

fn sibling(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found; build all binaries with `cargo build --release -p cellio-benches`",
            p.display()
        ))
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

/// The servers of this invocation: `--servers`, or the default list.
fn server_names(args: &Args) -> Vec<String> {
    match &args.servers {
        Some(list) => list.iter().map(|s| s.trim().to_string()).collect(),
        None => KNOWN
            .iter()
            .filter(|n| match **n {
                "cellio" | "cellio-io" | "cellio-nopool" => args.cellio_bin.is_some(),
                "cellio-2w" => args.cellio_bin.is_some() && args.with_workers,
                _ => true,
            })
            .map(|n| n.to_string())
            .collect(),
    }
}

/// What is wrong with `--together`, judged from the flags alone.
fn together_problem(args: &Args) -> Option<String> {
    let names = args.together.as_ref()?;
    let servers = server_names(args);
    if names.len() < 2 {
        return Some("--together needs at least two servers".into());
    }
    if args.latency_rate == 0.0 {
        return Some("--together is a latency run: it needs a --latency-rate above 0".into());
    }
    if args.latency_window == 0.0 {
        return Some("--together compares windows: it needs a --latency-window".into());
    }
    for (i, name) in names.iter().enumerate() {
        if !servers.iter().any(|s| s == name.trim()) {
            return Some(format!("--together: `{name}` is not among the servers"));
        }
        if names[..i].iter().any(|n| n.trim() == name.trim()) {
            return Some(format!("--together: `{name}` is listed twice"));
        }
    }
    None
}

fn server_specs(args: &Args, dir: &Path) -> Result<Vec<ServerSpec>, String> {
    let names = server_names(args);
    if names.is_empty() {
        return Err("--servers is empty".into());
    }
    let mut specs = Vec::new();
    for name in names {
        if specs.iter().any(|s: &ServerSpec| s.name == name) {
            return Err(format!("server `{name}` listed twice"));
        }
        let (program, extra): (PathBuf, Vec<String>) = match name.as_str() {
            "mio" => (sibling(dir, "mio_echo")?, vec![]),
            "tokio-current" => (
                sibling(dir, "tokio_echo")?,
                vec!["--flavor".into(), "current".into()],
            ),
            "tokio-multi" => (
                sibling(dir, "tokio_echo")?,
                vec![
                    "--flavor".into(),
                    "multi".into(),
                    "--workers".into(),
                    args.tokio_workers.to_string(),
                ],
            ),
            "cellio" | "cellio-io" | "cellio-nopool" | "cellio-2w" => {
                let bin = args
                    .cellio_bin
                    .clone()
                    .ok_or_else(|| format!("server `{name}` needs --cellio-bin PATH"))?;
                if !bin.is_file() {
                    return Err(format!("--cellio-bin {}: no such file", bin.display()));
                }
                let mut extra: Vec<String> = match name.as_str() {
                    "cellio-io" => vec!["--api".into(), "poll".into()],
                    "cellio-nopool" => vec!["--no-task-pool".into()],
                    "cellio-2w" => vec!["--workers".into(), "2".into()],
                    _ => vec![],
                };
                extra.extend(args.cellio_args.split_whitespace().map(String::from));
                (bin, extra)
            }
            other => {
                return Err(format!(
                    "unknown server `{other}` (known: {})",
                    KNOWN.join(", ")
                ))
            }
        };
        specs.push(ServerSpec {
            name,
            program,
            args: extra,
        });
    }
    Ok(specs)
}

/// The servers as `--user-time` runs them: the same, except that cellio's come from
/// `--cellio-hooks-bin`, which tells the shim about its syscalls (`main` has checked that it
/// is given and is such a build whenever a cellio server runs).
fn user_time_specs(args: &Args, specs: &[ServerSpec]) -> Result<Vec<ServerSpec>, String> {
    specs
        .iter()
        .map(|s| {
            let mut spec = s.clone();
            if s.name.starts_with("cellio") {
                spec.program = args
                    .cellio_hooks_bin
                    .clone()
                    .ok_or("--user-time needs --cellio-hooks-bin PATH for the cellio servers")?;
            }
            Ok(spec)
        })
        .collect()
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<SocketAddr, String> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    l.local_addr().map_err(|e| format!("local_addr: {e}"))
}

/// Starts `spec` pinned to the server core and waits until it accepts connections.
fn start_server(args: &Args, spec: &ServerSpec) -> Result<(Guard, SocketAddr), String> {
    start_server_with(args, spec, &[])
}

/// [`start_server`] with extra environment variables for the server.
fn start_server_with(
    args: &Args,
    spec: &ServerSpec,
    env: &[(String, String)],
) -> Result<(Guard, SocketAddr), String> {
    let addr = free_port()?;
    // taskset execs the server, so the child's pid is the server's pid.
    let mut guard = children::spawn(
        Command::new("taskset")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("-c")
            .arg(args.server_core.to_string())
            .arg(&spec.program)
            .args(&spec.args)
            .arg("--addr")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )
    .map_err(|e| format!("cannot start {}: {e}", spec.program.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = guard.0.try_wait().map_err(|e| format!("wait: {e}"))? {
            return Err(format!("server exited before accepting ({status})"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok((guard, addr));
        }
        if Instant::now() >= deadline {
            return Err(format!("server did not accept on {addr} within 10 s"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A client process with a channel of its stdout lines and a handle collecting its stderr.
type ClientRun = (Guard, mpsc::Receiver<String>, thread::JoinHandle<String>);

/// The arguments every client run shares: address, connections, message size, warm-up and
/// measured duration (given in the client's own format: `mio_load` takes seconds as plain
/// numbers, cellio's `load` durations like `3s`), and `--json`.
fn client_argv(args: &Args, addr: SocketAddr, warmup: String, duration: String) -> Vec<String> {
    vec![
        "--addr".to_string(),
        addr.to_string(),
        "--connections".into(),
        args.connections.to_string(),
        "--size".into(),
        args.size.to_string(),
        "--warmup".into(),
        warmup,
        "--duration".into(),
        duration,
        "--json".into(),
    ]
}

/// Starts the pinned `mio_load` client with phase marks.
fn start_client(
    args: &Args,
    load_bin: &Path,
    addr: SocketAddr,
    warmup: f64,
    duration: f64,
) -> Result<ClientRun, String> {
    let mut argv = client_argv(args, addr, warmup.to_string(), duration.to_string());
    argv.push("--phase-marks".into());
    spawn_client(args, load_bin, &argv)
}

/// Starts `program argv...` pinned to the client core.
fn spawn_client(args: &Args, program: &Path, argv: &[String]) -> Result<ClientRun, String> {
    let mut child = children::spawn(
        Command::new("taskset")
            .arg("-c")
            .arg(args.client_core.to_string())
            .arg(program)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let stdout = child.0.stdout.take().ok_or("no client stdout")?;
    let mut stderr = child.0.stderr.take().ok_or("no client stderr")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    Ok((child, rx, err))
}

/// Waits for the client to exit (it is bounded in time itself; this is the backstop).
fn finish_client(
    mut client: Guard,
    stderr: thread::JoinHandle<String>,
    deadline: Instant,
) -> Result<(), String> {
    loop {
        if let Some(status) = client.0.try_wait().map_err(|e| format!("wait: {e}"))? {
            let text = stderr.join().unwrap_or_default();
            if !status.success() {
                let last = text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
                return Err(format!("load client failed ({status}): {last}"));
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("load client did not exit in time".into());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn parse_client_json(line: &str) -> Result<(u64, u64, f64), String> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| format!("bad client JSON `{line}`: {e}"))?;
    let msgs = v["msgs"].as_u64().ok_or("client JSON lacks msgs")?;
    let warmup = v["warmup_msgs"].as_u64().unwrap_or(0);
    let secs = v["secs"].as_f64().ok_or("client JSON lacks secs")?;
    if v["mismatches"].as_u64() != Some(0) || v["errors"].as_u64() != Some(0) {
        return Err(format!("client reported failures: {line}"));
    }
    Ok((msgs, warmup, secs))
}

/// What a CPU run measures besides `/proc` ticks.
#[derive(Clone, Copy)]
enum Extra<'a> {
    None,
    /// Hardware counters with `perf stat`.
    Perf,
    /// User time between syscalls with the preloaded shim.
    UserTime(&'a Shim),
}

/// One measured run; with `Extra::Perf`, `perf stat` is attached to the server during the
/// window; with `Extra::UserTime`, the server runs under the user-time shim.
fn measure(
    args: &Args,
    spec: &ServerSpec,
    load_bin: &Path,
    tck: u64,
    extra: Extra<'_>,
) -> Result<RunResult, String> {
    let session = match extra {
        Extra::UserTime(shim) => Some(shim.session(&spec.name, Mechanism::of(&spec.program)?)),
        _ => None,
    };
    let env = session.as_ref().map_or(&[][..], |s| s.env());
    let (mut server, addr) = start_server_with(args, spec, env)?;
    let pid = server.0.id();
    // Attached before the load starts, counting only between the client's marks.
    let mut perf = if matches!(extra, Extra::Perf) {
        Some(PerfSession::start(pid)?)
    } else {
        None
    };
    let mut shim_marks = Vec::new();
    let (client, lines, stderr) = start_client(args, load_bin, addr, args.warmup, args.duration)?;
    let client_pid = client.0.id(); // taskset execs mio_load: same pid
    let cores = [args.server_core, args.client_core];
    let deadline = Instant::now() + Duration::from_secs_f64(args.warmup + args.duration + 30.0);

    let mut before: Option<Sample> = None;
    let mut after: Option<Sample> = None;
    let mut result: Option<(u64, u64, f64)> = None;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(wait) {
            Ok(line) => {
                // Sample the server first: as close to the mark as possible.
                if line.starts_with(MARK_WARMUP_DONE) {
                    before = Some(Sample::take(pid, client_pid, &cores)?);
                    if let Some(p) = perf.as_mut() {
                        p.enable()?;
                    }
                    if let Some(s) = &session {
                        shim_marks.push(s.snapshot()?);
                    }
                } else if line.starts_with(MARK_WINDOW_DONE) {
                    after = Some(Sample::take(pid, client_pid, &cores)?);
                    if let Some(p) = perf.as_mut() {
                        p.disable()?;
                    }
                    if let Some(s) = &session {
                        shim_marks.push(s.snapshot()?);
                    }
                } else if line.starts_with('{') {
                    result = Some(parse_client_json(&line)?);
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => return Err("load client timed out".into()),
        }
    }
    finish_client(client, stderr, deadline)?;
    if let Some(status) = server.0.try_wait().map_err(|e| format!("wait: {e}"))? {
        return Err(format!("server exited during the run ({status})"));
    }
    drop(server);

    let (s0, s1) = before.zip(after).ok_or("client printed no phase marks")?;
    let (c0, c1) = (s0.server, s1.server);
    let (msgs, _, secs) = result.ok_or("client printed no JSON result")?;
    if msgs == 0 {
        return Err("no message echoed in the window".into());
    }
    let ns_per_tick = 1e9 / tck as f64;
    let user_ticks = c1.utime.saturating_sub(c0.utime);
    let sys_ticks = c1.stime.saturating_sub(c0.stime);
    let cpu_wall_secs = (s1.at - s0.at).as_secs_f64();
    let other_cpu = s0.other_cpu(&s1, tck);
    let cpu_ns_per_msg = (user_ticks + sys_ticks) as f64 * ns_per_tick / msgs as f64;
    let perf = match perf {
        Some(p) => Some(p.finish(msgs, cpu_ns_per_msg)?),
        None => None,
    };
    let user_time = match (&session, &shim_marks[..]) {
        (Some(s), [a, b]) => {
            let u = s.per_msg(a, b, msgs);
            // An echo makes at least a receive and a send per message: fewer calls seen mean
            // the server makes its syscalls out of the shim's sight.
            if u.calls < 1.0 {
                return Err(format!(
                    "the user-time shim saw {:.2} calls per message: {} makes its syscalls \
                     without libc (for cellio, build --cellio-hooks-bin with RUSTFLAGS=\"--cfg \
                     cellio_user_time_hooks\")",
                    u.calls,
                    spec.program.display()
                ));
            }
            Some(u)
        }
        (Some(_), _) => return Err("the user-time counters were not read at both marks".into()),
        _ => None,
    };
    Ok(RunResult {
        msgs,
        secs,
        msgs_per_sec: msgs as f64 / secs,
        user_ticks,
        sys_ticks,
        cpu_wall_secs,
        user_ns_per_msg: user_ticks as f64 * ns_per_tick / msgs as f64,
        sys_ns_per_msg: sys_ticks as f64 * ns_per_tick / msgs as f64,
        cpu_util: (user_ticks + sys_ticks) as f64 / tck as f64 / cpu_wall_secs,
        other_cpu,
        perf,
        user_time,
    })
}

/// Sends SIGINT (perf and strace then detach and write their summaries) and waits.
fn stop_child(child: Guard, what: &str) -> Result<(), String> {
    stop_child_with(child, libc::SIGINT, Duration::from_secs(10), what)
}

/// Sends `signal` to the child and waits up to `limit` for it to exit.
fn stop_child_with(
    mut child: Guard,
    signal: libc::c_int,
    limit: Duration,
    what: &str,
) -> Result<(), String> {
    // SAFETY: plain kill(2) on our own, not yet reaped, child.
    unsafe {
        libc::kill(child.0.id() as libc::pid_t, signal);
    }
    let deadline = Instant::now() + limit;
    while child
        .0
        .try_wait()
        .map_err(|e| format!("wait: {e}"))?
        .is_none()
    {
        if Instant::now() >= deadline {
            return Err(format!("{what} did not exit after SIGINT"));
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The longest a traced run lasts, however few of its `--strace-msgs` it reached.
const STRACE_MAX_SECS: f64 = 120.0;

/// One extra run with `strace -c -f` attached to the server for the whole client run.
fn strace_run(args: &Args, spec: &ServerSpec, load_bin: &Path) -> Result<StraceResult, String> {
    let (server, addr) = start_server(args, spec)?;
    let pid = server.0.id();
    let out =
        std::env::temp_dir().join(format!("echo_compare.strace.{}.{pid}", std::process::id()));
    let mut strace = children::spawn(
        Command::new("strace")
            .args(["-c", "-f", "-p", &pid.to_string(), "-o"])
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .map_err(|e| format!("cannot start strace: {e}"))?;
    let strace_err = strace.0.stderr.take().ok_or("no strace stderr")?;
    // strace reports "Process N attached" on stderr once tracing is in place.
    let (tx, rx) = mpsc::channel();
    let err_thread = thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(strace_err).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let attach_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.recv_timeout(attach_deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("attached") => break,
            Ok(_) => {}
            Err(_) => {
                drop(strace);
                let text = err_thread.join().unwrap_or_default();
                return Err(format!("strace did not attach: {}", text.trim()));
            }
        }
    }

    let mut argv = client_argv(args, addr, "0".into(), STRACE_MAX_SECS.to_string());
    argv.extend(["--messages".into(), args.strace_msgs.to_string()]);
    let (client, lines, stderr) = spawn_client(args, load_bin, &argv)?;
    let deadline = Instant::now() + Duration::from_secs_f64(STRACE_MAX_SECS + 60.0);
    let mut result = None;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with('{') => result = Some(parse_client_json(&line)?),
            Ok(_) => {}
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => return Err("load client timed out".into()),
        }
    }
    finish_client(client, stderr, deadline)?;
    // Let the server handle the connections' closes, then detach: SIGINT makes strace -c
    // detach and write its summary.
    thread::sleep(Duration::from_millis(200));
    stop_child(strace, "strace")?;
    drop(server);
    let _ = err_thread.join();

    let text = std::fs::read_to_string(&out).map_err(|e| format!("read {}: {e}", out.display()));
    let _ = std::fs::remove_file(&out);
    let (calls, total_calls) = parse_strace_summary(&text?)?;
    let (msgs, warmup_msgs, _) = result.ok_or("client printed no JSON result")?;
    let msgs = msgs + warmup_msgs;
    if msgs == 0 {
        return Err("no message echoed under strace".into());
    }
    Ok(StraceResult {
        msgs,
        total_calls,
        calls,
    })
}

/// Parses `strace -c` output: rows of `% time, seconds, usecs/call, calls, [errors], syscall`
/// and a final `total` row.
fn parse_strace_summary(text: &str) -> Result<(Vec<(String, u64)>, u64), String> {
    let mut calls = Vec::new();
    let mut total = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[0].parse::<f64>().is_err() {
            continue; // header, separator
        }
        let Ok(n) = f[3].parse::<u64>() else { continue };
        let name = f[f.len() - 1];
        if name == "total" {
            total = Some(n);
        } else {
            calls.push((name.to_string(), n));
        }
    }
    calls.sort_by_key(|c| std::cmp::Reverse(c.1));
    let total = total.ok_or_else(|| format!("no total in strace output:\n{text}"))?;
    Ok((calls, total))
}

#[cfg(test)]
mod tests {
    use super::{parse_strace_summary, round_order};

    #[test]
    fn servers_run_forward_in_odd_rounds_and_backward_in_even_ones() {
        assert_eq!(round_order(1, 3), [0, 1, 2]);
        assert_eq!(round_order(2, 3), [2, 1, 0]);
        assert_eq!(round_order(3, 3), [0, 1, 2]);
        assert!(round_order(4, 0).is_empty());
    }

    #[test]
    fn strace_summary() {
        let text = "% time     seconds  usecs/call     calls    errors syscall\n\
------ ----------- ----------- --------- --------- ----------------\n\
 52.10    0.100000           1    100000           write\n\
 47.90    0.090000           0    100100       100 read\n\
  0.00    0.000000           0         5           epoll_wait\n\
------ ----------- ----------- --------- --------- ----------------\n\
100.00    0.190000           0    200105       100 total\n";
        let (calls, total) = parse_strace_summary(text).unwrap();
        assert_eq!(total, 200105);
        assert_eq!(calls[0], ("read".to_string(), 100100));
        assert_eq!(calls[2], ("epoll_wait".to_string(), 5));
    }
}
