//! The measurements beside the closed-loop CPU runs: latency at a fixed offered load (cellio's
//! bundled load client in open-loop mode), heap allocations (`tests/outside/count_allocs.py`)
//! and user-space instructions per message (valgrind's callgrind).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::{Duration, Instant};

use cellio_benches::fill_message;
use serde_json::{json, Value};

use crate::children;
use crate::gate::Gate;
use crate::{
    client_argv, finish_client, free_port, spawn_client, start_server, Args, ClientRun, Guard,
    Sample, ServerSpec,
};

// ----- latency at a fixed offered load -------------------------------------------------------

/// One open-loop run of cellio's load client against one server.
#[derive(Clone, Debug)]
pub struct LatencyRun {
    pub msgs_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// How late the client sent (included in the latency): large values mean the client, not
    /// the server, fell behind.
    pub send_lag_p99_us: Option<f64>,
    /// CPU taken on the two benchmark cores by other processes over the client's whole run,
    /// as a fraction of one core.
    pub other_cpu: f64,
    /// The p99 of each `--latency-window` with messages, in order (empty without windows).
    pub window_p99_us: Vec<f64>,
    /// The round it ran in (1-based), for comparing servers round by round (`paired`).
    pub round: usize,
}

impl LatencyRun {
    pub fn to_json(&self) -> Value {
        json!({
            "msgs_per_sec": self.msgs_per_sec,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "p999_us": self.p999_us,
            "send_lag_p99_us": self.send_lag_p99_us,
            "other_cpu": self.other_cpu,
            "window_p99_us": self.window_p99_us,
            "round": self.round,
        })
    }
}

/// Starts `spec` pinned to the server core and drives it with `load --rate R --spin` pinned to
/// the client core; returns the client's latency percentiles.
pub fn latency_run(args: &Args, spec: &ServerSpec, load: &Path) -> Result<LatencyRun, String> {
    let (mut server, addr) = start_server(args, spec)?;
    let pid = server.0.id();
    let mut argv = client_argv(
        args,
        addr,
        format!("{}s", args.warmup),
        format!("{}s", args.latency_secs),
    );
    argv.extend([
        "--rate".into(),
        args.latency_rate.to_string(),
        // The client's core is its own: busy-waiting before each due send costs nothing
        // there and keeps its pacing at microseconds instead of the 1 ms timer resolution.
        "--spin".into(),
    ]);
    if args.latency_window > 0.0 {
        argv.extend(["--window".into(), format!("{}s", args.latency_window)]);
    }
    let client = spawn_client(args, load, &argv)?;
    let client_pid = client.0 .0.id(); // taskset execs the client: same pid
    let cores = [args.server_core, args.client_core];
    let s0 = Sample::take(pid, client_pid, &cores)?;
    let (line, s1) = await_load_result(args, client, || Sample::take(pid, client_pid, &cores))?;
    if let Some(status) = server.0.try_wait().map_err(|e| format!("wait: {e}"))? {
        return Err(format!("server exited during the run ({status})"));
    }
    drop(server);
    let mut run = parse_load_json(&line)?;
    run.other_cpu = other_cpu(&s0, &s1, 0);
    Ok(run)
}

/// Waits for the open-loop load client's JSON line, calling `at_result` the moment it
/// arrives (to sample CPU counters there), then for the client to exit. Bounded by the run's
/// length and 30 s more.
pub fn await_load_result<T>(
    args: &Args,
    (client, lines, stderr): ClientRun,
    mut at_result: impl FnMut() -> Result<T, String>,
) -> Result<(String, T), String> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.warmup + args.latency_secs + 30.0);
    let mut result = None;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with('{') => result = Some((line, at_result()?)),
            Ok(_) => {}
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => return Err("load client timed out".into()),
        }
    }
    finish_client(client, stderr, deadline)?;
    result.ok_or_else(|| "load client printed no JSON result".into())
}

/// CPU taken on the two benchmark cores between `s0` and `s1` by anything but the sampled
/// server and client and `also_ours` ticks of other processes of the run, as a fraction of
/// one core.
pub fn other_cpu(s0: &Sample, s1: &Sample, also_ours: u64) -> f64 {
    let ticks = |a: cellio_benches::CpuTicks, b: cellio_benches::CpuTicks| {
        (b.utime + b.stime).saturating_sub(a.utime + a.stime)
    };
    let other = s1
        .cores_busy
        .saturating_sub(s0.cores_busy)
        .saturating_sub(ticks(s0.server, s1.server) + ticks(s0.client, s1.client))
        .saturating_sub(also_ours);
    let wall = (s1.at - s0.at).as_secs_f64();
    other as f64 / cellio_benches::clk_tck() as f64 / wall
}

/// Parses the JSON line of `load --json`.
pub fn parse_load_json(line: &str) -> Result<LatencyRun, String> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| format!("bad load client JSON `{line}`: {e}"))?;
    load_clean(&v, line)?;
    Ok(LatencyRun {
        msgs_per_sec: load_number(&v, "msgs_per_sec")?,
        p50_us: load_number(&v, "p50_us")?,
        p99_us: load_number(&v, "p99_us")?,
        p999_us: load_number(&v, "p999_us")?,
        send_lag_p99_us: v["send_lag_p99_us"].as_f64(),
        other_cpu: 0.0,
        round: 0,
        // Windows without a message (none at a steady rate) have no p99.
        window_p99_us: window_p99s(&v).into_iter().flatten().collect(),
    })
}

/// `Err` unless the load client's results `v` (the totals or one address's) count no error,
/// mismatch or failed connect; `what` names them in the message.
pub fn load_clean(v: &Value, what: &str) -> Result<(), String> {
    for key in ["errors", "mismatches", "connect_errors"] {
        if v[key].as_u64() != Some(0) {
            return Err(format!("load client reported {key}: {what}"));
        }
    }
    Ok(())
}

/// The number `key` of the load client's results `v`.
pub fn load_number(v: &Value, key: &str) -> Result<f64, String> {
    v[key]
        .as_f64()
        .ok_or_else(|| format!("load client JSON lacks {key}"))
}

/// The p99 of each `--window` of the load client's results `v`, in order; `None` for a window
/// without messages. Empty without windows.
pub fn window_p99s(v: &Value) -> Vec<Option<f64>> {
    v["windows"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| {
                    w["msgs"]
                        .as_u64()
                        .filter(|&n| n > 0)
                        .and_then(|_| w["p99_us"].as_f64())
                })
                .collect()
        })
        .unwrap_or_default()
}

// ----- allocations ---------------------------------------------------------------------------

/// Allocation counts from one `count_allocs.py` run.
#[derive(Clone, Debug, PartialEq)]
pub struct AllocResult {
    pub msgs: u64,
    pub msg_allocs: u64,
    pub lives: u64,
    pub life_allocs: u64,
}

impl AllocResult {
    pub fn per_msg(&self) -> f64 {
        self.msg_allocs as f64 / self.msgs as f64
    }

    pub fn per_conn(&self) -> f64 {
        self.life_allocs as f64 / self.lives as f64
    }

    pub fn to_json(&self) -> Value {
        json!({
            "msgs": self.msgs,
            "msg_allocations": self.msg_allocs,
            "allocations_per_msg": self.per_msg(),
            "connection_lives": self.lives,
            "life_allocations": self.life_allocs,
            "allocations_per_connection": self.per_conn(),
        })
    }
}

/// `tests/outside/count_allocs.py`, looked for from the executable's directory and the
/// current directory upwards.
pub fn find_count_allocs(exe_dir: &Path) -> Option<PathBuf> {
    let rel = Path::new("tests/outside/count_allocs.py");
    let cwd = std::env::current_dir().ok();
    [Some(exe_dir.to_path_buf()), cwd]
        .into_iter()
        .flatten()
        .flat_map(|d| d.ancestors().map(Path::to_path_buf).collect::<Vec<_>>())
        .map(|d| d.join(rel))
        .find(|p| p.is_file())
}

/// Runs `count_allocs.py` on the server (unpinned: it counts, it does not time).
pub fn count_allocs(script: &Path, spec: &ServerSpec) -> Result<AllocResult, String> {
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg("--server").arg(&spec.program);
    for a in &spec.args {
        // `=` keeps argparse from taking a value like `--flavor` for an option of its own.
        cmd.arg(format!("--server-arg={a}"));
    }
    let child = children::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .map_err(|e| format!("cannot start python3 {}: {e}", script.display()))?;
    let (status, out, err) = wait_output(child, Duration::from_secs(180), "count_allocs.py")?;
    // Exit 1 means "allocated on the message path" (the script's own pass/fail), which is
    // still a measurement; only a missing result is a failure here.
    parse_count_allocs(&out).ok_or_else(|| {
        let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        format!("count_allocs.py gave no result ({status}): {last}")
    })
}

/// Parses the two result lines of `count_allocs.py`:
/// `count_allocs: M messages: N allocations (X per message)` and
/// `count_allocs: L connection lives: N allocations (Y per connection)`.
pub fn parse_count_allocs(text: &str) -> Option<AllocResult> {
    let mut msgs = None;
    let mut lives = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() != Some(&"count_allocs:") {
            continue;
        }
        if f.get(2) == Some(&"messages:") && f.get(4) == Some(&"allocations") {
            msgs = Some((f[1].parse().ok()?, f[3].parse().ok()?));
        } else if f.get(2..4) == Some(&["connection", "lives:"]) && f.get(5) == Some(&"allocations")
        {
            lives = Some((f[1].parse().ok()?, f[4].parse().ok()?));
        }
    }
    let ((msgs, msg_allocs), (lives, life_allocs)) = msgs.zip(lives)?;
    if msgs == 0 || lives == 0 {
        return None;
    }
    Some(AllocResult {
        msgs,
        msg_allocs,
        lives,
        life_allocs,
    })
}

// ----- callgrind -----------------------------------------------------------------------------

/// Connections in each callgrind run.
pub const CG_CONNS: u32 = 20;
/// Messages per connection in the short and the long callgrind run.
pub const CG_MSGS: (u64, u64) = (200, 800);
/// Message size in the callgrind runs.
pub const CG_SIZE: usize = 64;
/// Connections and messages per connection (short, long) of the cache-model runs: as many
/// connections as the benchmark, so each message finds its connection's lines evicted by the
/// others', as under load.
pub const CACHE_CONNS: u32 = 100;
pub const CACHE_MSGS: (u64, u64) = (50, 200);
/// The modelled first-level caches: 32 KiB, 8-way, 64-byte lines (the benchmark VM's and most
/// x86-64 cores'), given explicitly so the figure does not depend on the host valgrind finds.
const CACHE_L1: &str = "32768,8,64";

/// User-space instructions from two callgrind runs that differ only in messages.
#[derive(Clone, Debug)]
pub struct CallgrindResult {
    pub short_instr: u64,
    pub long_instr: u64,
    pub per_msg: f64,
}

impl CallgrindResult {
    pub fn to_json(&self) -> Value {
        json!({
            "connections": CG_CONNS,
            "msgs_per_connection": [CG_MSGS.0, CG_MSGS.1],
            "size": CG_SIZE,
            "short_run_instructions": self.short_instr,
            "long_run_instructions": self.long_instr,
            "user_instructions_per_msg": self.per_msg,
        })
    }
}

/// Instructions per echoed message: (long run − short run) / extra messages, which cancels
/// start-up, connection setup and teardown.
pub fn callgrind(spec: &ServerSpec, keep: Option<&Path>) -> Result<CallgrindResult, String> {
    let event = |events: &Events, name: &str| {
        events
            .get(name)
            .copied()
            .ok_or_else(|| format!("callgrind reported no `{name}` event"))
    };
    let short_instr = event(
        &callgrind_once(spec, CG_CONNS, CG_MSGS.0, false, keep)?,
        "Ir",
    )?;
    let long_instr = event(
        &callgrind_once(spec, CG_CONNS, CG_MSGS.1, false, keep)?,
        "Ir",
    )?;
    let extra = (CG_MSGS.1 - CG_MSGS.0) * u64::from(CG_CONNS);
    Ok(CallgrindResult {
        short_instr,
        long_instr,
        per_msg: (long_instr as f64 - short_instr as f64) / extra as f64,
    })
}

/// First-level cache misses per echoed message in valgrind's cache model.
#[derive(Clone, Debug)]
pub struct CacheResult {
    /// L1 data misses (reads and writes) per message: the lines a message touches that
    /// the rotation over all connections had evicted.
    pub d1_per_msg: f64,
    /// L1 instruction misses per message.
    pub i1_per_msg: f64,
}

impl CacheResult {
    pub fn to_json(&self) -> Value {
        json!({
            "connections": CACHE_CONNS,
            "msgs_per_connection": [CACHE_MSGS.0, CACHE_MSGS.1],
            "l1": CACHE_L1,
            "d1_misses_per_msg": self.d1_per_msg,
            "i1_misses_per_msg": self.i1_per_msg,
        })
    }
}

/// L1 misses per echoed message under callgrind's cache simulation: two lock-step runs over
/// [`CACHE_CONNS`] connections that differ only in messages, like [`callgrind`]. Exact for
/// the run, not quite repeatable (two runs of one `TcpIo` binary read 4.87 and 5.06 on
/// 2026-12-07, where its instruction count repeated exactly); it models the process alone
/// (the kernel's own evictions come on top in real runs, for every server alike).
pub fn cache_misses(spec: &ServerSpec, keep: Option<&Path>) -> Result<CacheResult, String> {
    let short = callgrind_once(spec, CACHE_CONNS, CACHE_MSGS.0, true, keep)?;
    let long = callgrind_once(spec, CACHE_CONNS, CACHE_MSGS.1, true, keep)?;
    let extra = ((CACHE_MSGS.1 - CACHE_MSGS.0) * u64::from(CACHE_CONNS)) as f64;
    let per_msg = |names: &[&str]| -> Result<f64, String> {
        let mut sum = 0.0;
        for name in names {
            let (a, b) = (short.get(*name), long.get(*name));
            let (a, b) = a
                .zip(b)
                .ok_or_else(|| format!("callgrind reported no `{name}` event"))?;
            sum += *b as f64 - *a as f64;
        }
        Ok(sum / extra)
    };
    Ok(CacheResult {
        d1_per_msg: per_msg(&["D1mr", "D1mw"])?,
        i1_per_msg: per_msg(&["I1mr"])?,
    })
}

/// Callgrind's event totals by name (`Ir`, and with the cache model `D1mr`, `D1mw`, ...).
type Events = std::collections::HashMap<String, u64>;

/// Runs the server under callgrind (with `cache_sim`, with its cache model), echoes `msgs`
/// messages on each of `conns` connections (lock-step: one message out on every connection,
/// then every echo back), closes them, stops the server with SIGTERM and returns callgrind's
/// event totals.
fn callgrind_once(
    spec: &ServerSpec,
    conns: u32,
    msgs: u64,
    cache_sim: bool,
    keep: Option<&Path>,
) -> Result<Events, String> {
    let addr = free_port()?;
    let tmp = std::env::temp_dir();
    let tag = format!("{}.{}.{msgs}", std::process::id(), spec.name);
    let out = tmp.join(format!("echo_compare.cg.{tag}.out"));
    let log = tmp.join(format!("echo_compare.cg.{tag}.log"));
    let mut valgrind = Command::new("valgrind");
    valgrind.arg("--tool=callgrind");
    if cache_sim {
        valgrind.args([
            "--cache-sim=yes".to_string(),
            format!("--D1={CACHE_L1}"),
            format!("--I1={CACHE_L1}"),
        ]);
    }
    let mut guard = children::spawn(
        valgrind
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(format!("--log-file={}", log.display()))
            .arg(&spec.program)
            .args(&spec.args)
            .arg("--addr")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .map_err(|e| format!("cannot start valgrind: {e}"))?;
    let result = (|| {
        wait_accepting(&mut guard, addr, Duration::from_secs(60))?;
        // valgrind runs the server in its own process: the gate stops that.
        let gate = Gate::new(guard.0.id())?;
        echo_lockstep(addr, conns, msgs, &gate)?;
        // Let the server see the closes before stopping it.
        thread::sleep(Duration::from_millis(300));
        crate::stop_child_with(guard, libc::SIGTERM, Duration::from_secs(60), "valgrind")?;
        let text =
            std::fs::read_to_string(&log).map_err(|e| format!("read {}: {e}", log.display()))?;
        parse_callgrind_events(&text)
            .ok_or_else(|| format!("no `Events` / `Collected` lines in {}", log.display()))
    })();
    if let Some(dir) = keep {
        let kept = dir.join(format!(
            "{}.{msgs}{}.callgrind.out",
            spec.name,
            if cache_sim { ".cache" } else { "" }
        ));
        if let Err(e) = std::fs::copy(&out, &kept) {
            eprintln!("  callgrind: cannot keep {}: {e}", kept.display());
        }
    }
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&log);
    result
}

fn wait_accepting(server: &mut Guard, addr: SocketAddr, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = server.0.try_wait().map_err(|e| format!("wait: {e}"))? {
            return Err(format!("server exited before accepting ({status})"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("server did not accept on {addr} within {limit:?}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The built-in callgrind client: byte-checked lock-step echo on `conns` connections, each
/// round written while `gate` holds the server still, so that it arrives as one batch
/// (`gate.rs`).
fn echo_lockstep(addr: SocketAddr, conns: u32, msgs: u64, gate: &Gate) -> Result<(), String> {
    let mut socks = Vec::new();
    for _ in 0..conns {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| format!("read timeout: {e}"))?;
        socks.push(s);
    }
    let mut sent = [0u8; CG_SIZE];
    let mut got = [0u8; CG_SIZE];
    for seq in 0..msgs {
        let held = gate.hold(Duration::from_secs(30))?;
        for (c, s) in socks.iter_mut().enumerate() {
            fill_message(&mut sent, c as u64, seq);
            s.write_all(&sent).map_err(|e| format!("send: {e}"))?;
        }
        drop(held);
        for (c, s) in socks.iter_mut().enumerate() {
            s.read_exact(&mut got)
                .map_err(|e| format!("receive: {e}"))?;
            fill_message(&mut sent, c as u64, seq);
            if got != sent {
                return Err(format!("echo mismatch on connection {c}, message {seq}"));
            }
        }
    }
    Ok(())
}

/// Reads `==PID== Events : Ir ...` and `==PID== Collected : N ...` from a callgrind log into
/// totals by event name.
pub fn parse_callgrind_events(text: &str) -> Option<Events> {
    let after = |marker: &str| {
        text.lines().find_map(|l| {
            Some(
                l.split_once(marker)?
                    .1
                    .split_whitespace()
                    .collect::<Vec<_>>(),
            )
        })
    };
    let (names, values) = (after("Events    :")?, after("Collected :")?);
    if names.len() != values.len() {
        return None;
    }
    names
        .into_iter()
        .zip(values)
        .map(|(n, v)| Some((n.to_string(), v.replace(',', "").parse().ok()?)))
        .collect()
}

/// Waits for `child` to exit within `limit`, collecting its stdout and stderr.
fn wait_output(
    mut guard: Guard,
    limit: Duration,
    what: &str,
) -> Result<(std::process::ExitStatus, String, String), String> {
    let mut stdout = guard.0.stdout.take().ok_or("no stdout")?;
    let mut stderr = guard.0.stderr.take().ok_or("no stderr")?;
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = guard.0.try_wait().map_err(|e| format!("wait: {e}"))? {
            break status;
        }
        if Instant::now() >= deadline {
            return Err(format!("{what} did not finish within {limit:?}"));
        }
        thread::sleep(Duration::from_millis(20));
    };
    Ok((
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_allocs_output() {
        let text = "count_allocs: 40000 messages: 3 allocations (0.0001 per message), \
                    0 large copies\n\
                    count_allocs: 200 connection lives: 661 allocations (3.30 per connection), \
                    200 large copies (1.00 per connection)\n";
        let r = parse_count_allocs(text).unwrap();
        assert_eq!(
            r,
            AllocResult {
                msgs: 40000,
                msg_allocs: 3,
                lives: 200,
                life_allocs: 661
            }
        );
        assert!((r.per_conn() - 3.305).abs() < 1e-9);
        assert_eq!(
            parse_count_allocs("count_allocs: server did not start"),
            None
        );
    }

    #[test]
    fn callgrind_log() {
        let text = "==3499== \n==3499== Events    : Ir\n==3499== Collected : 13574366\n==3499== \n\
                    ==3499== I   refs:      13,574,366\n";
        let e = parse_callgrind_events(text).unwrap();
        assert_eq!((e.len(), e["Ir"]), (1, 13_574_366));
        let sim = "==15344== Events    : Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\n\
                   ==15344== Collected : 123119356 44010347 31769278 4253 1225391 315241 3823 28081 81076\n";
        let e = parse_callgrind_events(sim).unwrap();
        assert_eq!(
            (e["D1mr"], e["D1mw"], e["I1mr"]),
            (1_225_391, 315_241, 4_253)
        );
        assert_eq!(parse_callgrind_events("==1== nothing"), None);
        // A count for every name, or nothing.
        assert_eq!(
            parse_callgrind_events("==1== Events    : Ir Dr\n==1== Collected : 5\n"),
            None
        );
    }

    #[test]
    fn load_json() {
        let line = r#"{"msgs_per_sec":19990.0,"p50_us":25.1,"p99_us":80.5,"p999_us":120.0,
            "send_lag_p99_us":3.0,"errors":0,"mismatches":0,"connect_errors":0}"#;
        let r = parse_load_json(line).unwrap();
        assert_eq!((r.p50_us, r.p99_us), (25.1, 80.5));
        assert!(r.window_p99_us.is_empty());
        let bad = line.replace("\"errors\":0", "\"errors\":2");
        assert!(parse_load_json(&bad).is_err());
        // `--window`: the p99 of each window with messages, in order.
        let windowed = line.replace(
            "\"errors\":0",
            r#""errors":0,"window_secs":0.1,"windows":[{"msgs":2000,"p99_us":70.5},
                {"msgs":0,"p99_us":0.0},{"msgs":1999,"p99_us":3100.0}]"#,
        );
        let r = parse_load_json(&windowed).unwrap();
        assert_eq!(r.window_p99_us, [70.5, 3100.0]);
    }
}
