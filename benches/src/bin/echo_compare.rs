//! `echo_compare`: the measurement driver for the echo comparison.
//!
//! What it measures: for each echo server, its **user and system CPU time per echoed
//! message** and its throughput under the same closed-loop load, reported as medians over
//! rounds and as ratios to the raw mio loop (`mio`, the floor) and, when present, of `cellio`
//! to `tokio-current`. Absolute times drift from run to run on this machine, ratios taken in
//! one run do not, so always compare within one invocation.
//!
//! Method (per round, servers interleaved: round 1 runs A, B, C; round 2 runs A, B, C; ...):
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
//! (±0.2%). A warning is printed when a window holds fewer than 100 ticks.
//!
//! With `--strace`, each server gets one extra run with `strace -c -f -p PID` attached before
//! the client connects and detached after it finished, giving syscalls per echoed message
//! (warm-up and window messages both count; the per-connection accept/setup/close calls are
//! included, and visible in the per-syscall breakdown).
//!
//! The server binaries are the siblings of this executable (`mio_echo`, `tokio_echo`,
//! `mio_load` in the same target directory); a cellio server is given with `--cellio-bin`.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use cellio_benches::{
    clk_tck, median, parse_args, read_cores_busy, read_cpu_ticks, run_main, CpuTicks,
    MARK_WARMUP_DONE, MARK_WINDOW_DONE,
};
use clap::Parser;
use serde_json::{json, Value};

const PROG: &str = "echo_compare";
/// Servers this driver knows, in default order.
const KNOWN: [&str; 4] = ["mio", "tokio-current", "tokio-multi", "cellio"];

/// Runs the echo servers under identical pinned closed-loop load and compares CPU per message.
#[derive(Parser, Debug)]
#[command(name = PROG, version)]
struct Args {
    /// Comma-separated servers to compare, from: mio, tokio-current, tokio-multi, cellio.
    /// Default: mio,tokio-current,tokio-multi, plus cellio when --cellio-bin is given.
    #[arg(long, value_delimiter = ',')]
    servers: Option<Vec<String>>,
    /// A built cellio echo server binary; it must accept `--addr HOST:PORT`.
    #[arg(long)]
    cellio_bin: Option<PathBuf>,
    /// Extra arguments for the cellio binary (one string, split on whitespace).
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
    /// Repeat a run up to this many times while other processes use more than 5% of a core
    /// on the benchmark cores during its window (a shared machine); 0 keeps every run.
    #[arg(long, default_value_t = 2)]
    noisy_retries: u32,
    /// Print the results as one JSON object (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Also count syscalls per message with `strace -c -f` in one extra run per server.
    #[arg(long)]
    strace: bool,
    /// Also read hardware counters with `perf stat` in one extra run per server: user and
    /// kernel instructions and cycles per message, and a user ns/msg free of tick sampling.
    #[arg(long)]
    perf: bool,
    /// Length of the traced run (seconds of load after a 0.5 s warm-up).
    #[arg(long, default_value_t = 3.0, value_parser = parse_secs)]
    strace_secs: f64,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && (0.0..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` is not between 0 and 3600 seconds"))
    }
}

/// How to start one server.
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
}

/// Hardware-counter figures per echoed message from `perf stat -p PID`.
///
/// perf is attached from the warm-up mark to the window mark, but its start-up delays the
/// start of counting by some milliseconds, so counts are not divided by the client's message
/// count directly: each counter is taken per task-clock nanosecond (perf's own measure of the
/// server's CPU time while counting) and multiplied by the server's CPU ns/msg from
/// `/proc/PID/stat` (whose user + sys total is exact; only its user/sys split is sampled).
#[derive(Clone, Copy, Debug)]
struct PerfPerMsg {
    user_instructions: f64,
    user_cycles: f64,
    kernel_instructions: f64,
    kernel_cycles: f64,
    /// CPU ns/msg x cycles:u / (cycles:u + cycles:k): user time per message without the
    /// statistical noise of the kernel's tick-sampled user/sys split.
    user_ns_by_cycles: f64,
}

impl PerfPerMsg {
    fn to_json(self) -> Value {
        json!({
            "user_instructions_per_msg": self.user_instructions,
            "user_cycles_per_msg": self.user_cycles,
            "kernel_instructions_per_msg": self.kernel_instructions,
            "kernel_cycles_per_msg": self.kernel_cycles,
            "user_ns_per_msg_by_cycles": self.user_ns_by_cycles,
        })
    }
}

/// Above this much foreign CPU (fraction of one core) a run is flagged.
const OTHER_CPU_WARN: f64 = 0.05;

const PERF_EVENTS: &str = "task-clock,cycles:u,instructions:u,cycles:k,instructions:k";

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
        })
    }
}

/// Medians over the successful rounds of one server.
#[derive(Clone, Copy, Debug)]
struct Summary {
    msgs_per_sec: f64,
    user_ns_per_msg: f64,
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
            sys_ns_per_msg: m(|r| r.sys_ns_per_msg),
            cpu_util: m(|r| r.cpu_util),
            other_cpu: m(|r| r.other_cpu),
        })
    }

    /// Ratios self / base for each metric.
    fn ratio(&self, base: &Summary) -> Summary {
        Summary {
            msgs_per_sec: self.msgs_per_sec / base.msgs_per_sec,
            user_ns_per_msg: self.user_ns_per_msg / base.user_ns_per_msg,
            sys_ns_per_msg: self.sys_ns_per_msg / base.sys_ns_per_msg,
            cpu_util: self.cpu_util / base.cpu_util,
            other_cpu: self.other_cpu,
        }
    }

    fn to_json(self) -> Value {
        json!({
            "msgs_per_sec": self.msgs_per_sec,
            "user_ns_per_msg": self.user_ns_per_msg,
            "sys_ns_per_msg": self.sys_ns_per_msg,
            "cpu_util": self.cpu_util,
            "other_cpu": self.other_cpu,
        })
    }

    /// JSON of a ratio made by [`Summary::ratio`] (only the compared metrics).
    fn ratio_json(self) -> Value {
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

/// Kills and reaps a child process when dropped, so no server or client outlives the driver's
/// error paths.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> ExitCode {
    let args: Args = parse_args(PROG);
    run_main(PROG, || run(&args))
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
    let specs = server_specs(args, &dir)?;
    let tck = clk_tck();

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

    let mut runs: Vec<Vec<RunResult>> = vec![Vec::new(); specs.len()];
    let mut failures: Vec<Vec<String>> = vec![Vec::new(); specs.len()];
    for round in 1..=args.rounds {
        for (i, spec) in specs.iter().enumerate() {
            // A run disturbed by other processes on the benchmark cores is repeated, up to
            // --noisy-retries times; the last attempt is kept either way (and flagged).
            let mut attempt = 0;
            loop {
                match measure(args, spec, &load_bin, tck, false) {
                    Ok(r) => {
                        eprintln!(
                            "  round {round}/{} {:<14} {:>9.0} msg/s  user {:>7.1} ns/msg  sys \
                             {:>7.1} ns/msg  server CPU {:>4.0}%  other {:>3.0}%  ({} msgs, \
                             {}+{} ticks)",
                            args.rounds,
                            spec.name,
                            r.msgs_per_sec,
                            r.user_ns_per_msg,
                            r.sys_ns_per_msg,
                            r.cpu_util * 100.0,
                            r.other_cpu * 100.0,
                            r.msgs,
                            r.user_ticks,
                            r.sys_ticks
                        );
                        if r.other_cpu > OTHER_CPU_WARN {
                            if attempt < args.noisy_retries {
                                attempt += 1;
                                eprintln!(
                                    "  other processes used {:.0}% of a core on the benchmark \
                                     cores: repeating this run ({attempt}/{})",
                                    r.other_cpu * 100.0,
                                    args.noisy_retries
                                );
                                continue;
                            }
                            eprintln!(
                                "  warning: other processes used {:.0}% of a core on the \
                                 benchmark cores during this run; its figures are suspect",
                                r.other_cpu * 100.0
                            );
                        }
                        if r.user_ticks + r.sys_ticks < 100 {
                            eprintln!(
                                "  warning: only {} ticks in the window; lengthen --duration",
                                r.user_ticks + r.sys_ticks
                            );
                        }
                        runs[i].push(r);
                    }
                    Err(e) => {
                        eprintln!(
                            "  round {round}/{} {:<14} FAILED: {e}",
                            args.rounds, spec.name
                        );
                        failures[i].push(format!("round {round}: {e}"));
                    }
                }
                break;
            }
        }
    }

    let mut perfs: Vec<Option<Result<RunResult, String>>> = specs.iter().map(|_| None).collect();
    if args.perf {
        for (i, spec) in specs.iter().enumerate() {
            let r = measure(args, spec, &load_bin, tck, true);
            match &r {
                Ok(RunResult {
                    perf: Some(p),
                    msgs_per_sec,
                    ..
                }) => eprintln!(
                    "  perf   {:<14} {:>9.0} msg/s  user {:.1} instr/msg, {:.1} cycles/msg; \
                     kernel {:.0} instr/msg, {:.0} cycles/msg",
                    spec.name,
                    msgs_per_sec,
                    p.user_instructions,
                    p.user_cycles,
                    p.kernel_instructions,
                    p.kernel_cycles
                ),
                Ok(_) => {}
                Err(e) => eprintln!("  perf   {:<14} FAILED: {e}", spec.name),
            }
            perfs[i] = Some(r);
        }
    }

    let mut traces: Vec<Option<Result<StraceResult, String>>> =
        specs.iter().map(|_| None).collect();
    if args.strace {
        for (i, spec) in specs.iter().enumerate() {
            let t = strace_run(args, spec, &load_bin);
            match &t {
                Ok(t) => eprintln!(
                    "  strace {:<14} {:.3} syscalls/msg ({} calls, {} msgs)",
                    spec.name,
                    t.total_calls as f64 / t.msgs as f64,
                    t.total_calls,
                    t.msgs
                ),
                Err(e) => eprintln!("  strace {:<14} FAILED: {e}", spec.name),
            }
            traces[i] = Some(t);
        }
    }

    let summaries: Vec<Option<Summary>> = runs.iter().map(|r| Summary::of(r)).collect();
    let find = |name: &str| {
        specs
            .iter()
            .position(|s| s.name == name)
            .and_then(|i| summaries[i])
    };
    let floor = find("mio");
    let cellio_vs_tokio = match (find("cellio"), find("tokio-current")) {
        (Some(c), Some(t)) => Some(c.ratio(&t)),
        _ => None,
    };

    if args.json {
        let servers: Vec<Value> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                json!({
                    "name": spec.name,
                    "command": spec.command_line(),
                    "rounds": runs[i].iter().map(RunResult::to_json).collect::<Vec<_>>(),
                    "failures": failures[i],
                    "median": summaries[i].map(Summary::to_json),
                    "vs_mio": match (summaries[i], floor) {
                        (Some(s), Some(f)) => s.ratio(&f).ratio_json(),
                        _ => Value::Null,
                    },
                    "perf_run": match &perfs[i] {
                        Some(Ok(r)) => r.to_json(),
                        Some(Err(e)) => json!({ "error": e }),
                        None => Value::Null,
                    },
                    "strace": match &traces[i] {
                        Some(Ok(t)) => strace_json(t),
                        Some(Err(e)) => json!({ "error": e }),
                        None => Value::Null,
                    },
                })
            })
            .collect();
        let out = json!({
            "config": {
                "connections": args.connections,
                "size": args.size,
                "warmup_secs": args.warmup,
                "duration_secs": args.duration,
                "rounds": args.rounds,
                "server_core": args.server_core,
                "client_core": args.client_core,
                "tokio_workers": args.tokio_workers,
                "noisy_retries": args.noisy_retries,
                "clk_tck": tck,
            },
            "servers": servers,
            "cellio_vs_tokio_current": cellio_vs_tokio.map(Summary::ratio_json),
        });
        println!("{out}");
    } else {
        print_table(
            args,
            &specs,
            &runs,
            &summaries,
            floor,
            cellio_vs_tokio,
            &traces,
        );
        print_perf(&specs, &perfs);
    }

    let failed: usize = failures.iter().map(Vec::len).sum::<usize>()
        + perfs.iter().filter(|t| matches!(t, Some(Err(_)))).count()
        + traces.iter().filter(|t| matches!(t, Some(Err(_)))).count();
    if failed > 0 {
        return Err(format!("{failed} run(s) failed (see above)"));
    }
    Ok(())
}

fn print_table(
    args: &Args,
    specs: &[ServerSpec],
    runs: &[Vec<RunResult>],
    summaries: &[Option<Summary>],
    floor: Option<Summary>,
    cellio_vs_tokio: Option<Summary>,
    traces: &[Option<Result<StraceResult, String>>],
) {
    println!(
        "echo, {} connections x {} B, closed loop, window {} s after {} s warm-up; \
         medians of {} round(s); server on CPU {}, client on CPU {}",
        args.connections,
        args.size,
        args.duration,
        args.warmup,
        args.rounds,
        args.server_core,
        args.client_core
    );
    println!();
    println!(
        "{:<14} {:>10} {:>12} {:>11} {:>5} {:>6} | {:>10} {:>10} {:>10}",
        "server",
        "msgs/s",
        "user ns/msg",
        "sys ns/msg",
        "CPU%",
        "other%",
        "msgs/s/mio",
        "user/mio",
        "sys/mio"
    );
    println!("{}", "-".repeat(100));
    for (i, spec) in specs.iter().enumerate() {
        let Some(s) = summaries[i] else {
            println!("{:<14} all {} round(s) failed", spec.name, args.rounds);
            continue;
        };
        let (a, b, c) = match floor {
            Some(f) => {
                let r = s.ratio(&f);
                (
                    ratio(r.msgs_per_sec),
                    ratio(r.user_ns_per_msg),
                    ratio(r.sys_ns_per_msg),
                )
            }
            None => ("-".into(), "-".into(), "-".into()),
        };
        let n = runs[i].len();
        let note = if (n as u32) < args.rounds {
            format!("  ({n}/{} rounds ok)", args.rounds)
        } else {
            String::new()
        };
        println!(
            "{:<14} {:>10.0} {:>12.1} {:>11.1} {:>5.0} {:>6.1} | {:>10} {:>10} {:>10}{note}",
            spec.name,
            s.msgs_per_sec,
            s.user_ns_per_msg,
            s.sys_ns_per_msg,
            s.cpu_util * 100.0,
            s.other_cpu * 100.0,
            a,
            b,
            c
        );
    }
    println!(
        "(CPU% = server CPU over the window, 100 = one core; other% = CPU taken on the two \
         benchmark cores by other processes, should be ~0)"
    );
    if let Some(r) = cellio_vs_tokio {
        println!();
        println!(
            "cellio / tokio-current: msgs/s {}, user ns/msg {}, sys ns/msg {}",
            ratio(r.msgs_per_sec),
            ratio(r.user_ns_per_msg),
            ratio(r.sys_ns_per_msg)
        );
    }
    if traces.iter().any(Option::is_some) {
        println!();
        println!("syscalls per echoed message (strace -c -f, one extra run per server):");
        for (i, spec) in specs.iter().enumerate() {
            match &traces[i] {
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

fn print_perf(specs: &[ServerSpec], perfs: &[Option<Result<RunResult, String>>]) {
    if perfs.iter().all(Option::is_none) {
        return;
    }
    println!();
    println!("hardware counters per echoed message (perf stat, one extra run per server):");
    println!(
        "{:<14} {:>10} {:>12} {:>12} {:>12} {:>12} {:>14}",
        "server",
        "msgs/s",
        "user instr",
        "user cycles",
        "kern instr",
        "kern cycles",
        "user ns (cyc)"
    );
    for (spec, p) in specs.iter().zip(perfs) {
        match p {
            Some(Ok(RunResult {
                perf: Some(p),
                msgs_per_sec,
                ..
            })) => println!(
                "{:<14} {:>10.0} {:>12.1} {:>12.1} {:>12.0} {:>12.0} {:>14.1}",
                spec.name,
                msgs_per_sec,
                p.user_instructions,
                p.user_cycles,
                p.kernel_instructions,
                p.kernel_cycles,
                p.user_ns_by_cycles
            ),
            Some(Ok(_)) => println!("{:<14} no counters", spec.name),
            Some(Err(e)) => println!("{:<14} failed: {e}", spec.name),
            None => {}
        }
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

fn server_specs(args: &Args, dir: &Path) -> Result<Vec<ServerSpec>, String> {
    let names: Vec<String> = match &args.servers {
        Some(list) => list.iter().map(|s| s.trim().to_string()).collect(),
        None => KNOWN
            .iter()
            .filter(|n| **n != "cellio" || args.cellio_bin.is_some())
            .map(|n| n.to_string())
            .collect(),
    };
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
            "cellio" => {
                let bin = args
                    .cellio_bin
                    .clone()
                    .ok_or("server `cellio` needs --cellio-bin PATH")?;
                if !bin.is_file() {
                    return Err(format!("--cellio-bin {}: no such file", bin.display()));
                }
                (
                    bin,
                    args.cellio_args
                        .split_whitespace()
                        .map(String::from)
                        .collect(),
                )
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

/// A loopback port that was free a moment ago.
fn free_port() -> Result<SocketAddr, String> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    l.local_addr().map_err(|e| format!("local_addr: {e}"))
}

/// Starts `spec` pinned to the server core and waits until it accepts connections.
fn start_server(args: &Args, spec: &ServerSpec) -> Result<(Guard, SocketAddr), String> {
    let addr = free_port()?;
    let child = Command::new("taskset")
        .arg("-c")
        .arg(args.server_core.to_string())
        .arg(&spec.program)
        .args(&spec.args)
        .arg("--addr")
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", spec.program.display()))?;
    // taskset execs the server, so the child's pid is the server's pid.
    let mut guard = Guard(child);
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

/// Starts the pinned load client; returns it with a channel of its stdout lines and a handle
/// collecting its stderr.
fn start_client(
    args: &Args,
    load_bin: &Path,
    addr: SocketAddr,
    warmup: f64,
    duration: f64,
) -> Result<(Guard, mpsc::Receiver<String>, thread::JoinHandle<String>), String> {
    let mut child = Command::new("taskset")
        .arg("-c")
        .arg(args.client_core.to_string())
        .arg(load_bin)
        .args(["--addr", &addr.to_string()])
        .args(["--connections", &args.connections.to_string()])
        .args(["--size", &args.size.to_string()])
        .args(["--warmup", &warmup.to_string()])
        .args(["--duration", &duration.to_string()])
        .args(["--json", "--phase-marks"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", load_bin.display()))?;
    let stdout = child.stdout.take().ok_or("no client stdout")?;
    let mut stderr = child.stderr.take().ok_or("no client stderr")?;
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
    Ok((Guard(child), rx, err))
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

/// One measured run; with `perf`, `perf stat` is attached to the server during the window.
fn measure(
    args: &Args,
    spec: &ServerSpec,
    load_bin: &Path,
    tck: u64,
    perf: bool,
) -> Result<RunResult, String> {
    let (mut server, addr) = start_server(args, spec)?;
    let pid = server.0.id();
    let (client, lines, stderr) = start_client(args, load_bin, addr, args.warmup, args.duration)?;
    let client_pid = client.0.id(); // taskset execs mio_load: same pid
    let cores = [args.server_core, args.client_core];
    let deadline = Instant::now() + Duration::from_secs_f64(args.warmup + args.duration + 30.0);

    let mut before: Option<Sample> = None;
    let mut after: Option<Sample> = None;
    let mut result: Option<(u64, u64, f64)> = None;
    let perf_out =
        std::env::temp_dir().join(format!("echo_compare.perf.{}.{pid}", std::process::id()));
    let mut perf_child: Option<Guard> = None;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(wait) {
            Ok(line) => {
                // Sample the server first: as close to the mark as possible.
                if line.starts_with(MARK_WARMUP_DONE) {
                    before = Some(Sample::take(pid, client_pid, &cores)?);
                    if perf {
                        perf_child = Some(start_perf(pid, &perf_out)?);
                    }
                } else if line.starts_with(MARK_WINDOW_DONE) {
                    after = Some(Sample::take(pid, client_pid, &cores)?);
                    if let Some(p) = perf_child.take() {
                        stop_child(p, "perf")?;
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
    let ticks = |a: CpuTicks, b: CpuTicks| (b.utime + b.stime).saturating_sub(a.utime + a.stime);
    let other_ticks = (s1.cores_busy.saturating_sub(s0.cores_busy))
        .saturating_sub(ticks(c0, c1) + ticks(s0.client, s1.client));
    let cpu_ns_per_msg = (user_ticks + sys_ticks) as f64 * ns_per_tick / msgs as f64;
    let perf = if perf {
        let text = std::fs::read_to_string(&perf_out)
            .map_err(|e| format!("read {}: {e}", perf_out.display()));
        let _ = std::fs::remove_file(&perf_out);
        Some(perf_per_msg(&text?, cpu_ns_per_msg)?)
    } else {
        None
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
        other_cpu: other_ticks as f64 / tck as f64 / cpu_wall_secs,
        perf,
    })
}

fn start_perf(pid: u32, out: &Path) -> Result<Guard, String> {
    Command::new("perf")
        .args([
            "stat",
            "-x",
            ",",
            "-e",
            PERF_EVENTS,
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Guard)
        .map_err(|e| format!("cannot start perf: {e}"))
}

/// Sends SIGINT (perf and strace then detach and write their summaries) and waits.
fn stop_child(mut child: Guard, what: &str) -> Result<(), String> {
    // SAFETY: plain kill(2) on our own, not yet reaped, child.
    unsafe {
        libc::kill(child.0.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
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

/// Turns `perf stat -x,` output into per-message figures (see [`PerfPerMsg`]).
fn perf_per_msg(text: &str, cpu_ns_per_msg: f64) -> Result<PerfPerMsg, String> {
    let get = |event: &str| -> Result<f64, String> {
        text.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[2] == event)
            .and_then(|f| f[0].parse::<f64>().ok())
            .ok_or_else(|| format!("perf did not count {event}: {}", text.trim()))
    };
    let task_clock_ns = get("task-clock")? * 1e6; // reported in msec
    let per_msg = cpu_ns_per_msg / task_clock_ns;
    let (uc, ui) = (get("cycles:u")?, get("instructions:u")?);
    let (kc, ki) = (get("cycles:k")?, get("instructions:k")?);
    Ok(PerfPerMsg {
        user_instructions: ui * per_msg,
        user_cycles: uc * per_msg,
        kernel_instructions: ki * per_msg,
        kernel_cycles: kc * per_msg,
        user_ns_by_cycles: cpu_ns_per_msg * uc / (uc + kc),
    })
}

/// One extra run with `strace -c -f` attached to the server for the whole client run.
fn strace_run(args: &Args, spec: &ServerSpec, load_bin: &Path) -> Result<StraceResult, String> {
    let (server, addr) = start_server(args, spec)?;
    let pid = server.0.id();
    let out =
        std::env::temp_dir().join(format!("echo_compare.strace.{}.{pid}", std::process::id()));
    let mut strace = Command::new("strace")
        .args(["-c", "-f", "-p", &pid.to_string(), "-o"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start strace: {e}"))?;
    let strace_err = strace.stderr.take().ok_or("no strace stderr")?;
    let strace = Guard(strace);
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

    let warmup = 0.5;
    let (client, lines, stderr) = start_client(args, load_bin, addr, warmup, args.strace_secs)?;
    let deadline = Instant::now() + Duration::from_secs_f64(warmup + args.strace_secs + 60.0);
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
    use super::parse_strace_summary;

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
