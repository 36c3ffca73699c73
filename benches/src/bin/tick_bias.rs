//! `tick_bias`: how much user time the kernel's tick accounting charges to a thread that does
//! almost nothing in user space but syscalls.
//!
//! Why: `/proc/PID/stat` splits CPU time into user and system by sampling, at each timer tick,
//! the mode the thread was interrupted in. A thread that does nearly nothing but syscalls is
//! still booked user time (measured here: ~57 ns per `getppid`); the likely mechanism, not
//! verified, is that a tick falling due while the kernel runs with interrupts off is taken
//! when they come back on, often at the first user instruction after the syscall. A syscall-bound echo server (about two syscalls per message) therefore shows user time
//! that is partly kernel time, the same amount for every server making the same syscalls, which
//! pulls every user-time ratio towards 1.
//!
//! What it measures: one thread (pin it with `taskset -c N`, as `echo_compare --tick-bias`
//! does for the server core) runs a loop whose user-space work is a
//! handful of instructions per syscall, for `--secs` seconds, and reads its own utime and
//! stime ticks (`/proc/thread-self/stat`) before and after. Everything booked as user time is,
//! up to those few instructions, the bias.
//! * `--mode tcp` (default): an echo's syscalls: a loopback TCP pair (`TCP_NODELAY`), each
//!   iteration sends 64 B on one end and receives them on the other. The user ns per iteration
//!   is the bias per echoed message of a server making one receive and one send per message.
//! * `--mode getppid`: the cheapest syscall, for comparison.
//!
//! Output: a summary line; with `--json` one JSON object `{mode, secs, iterations, syscalls,
//! user_ticks, sys_ticks, user_ns_per_iter, sys_ns_per_iter, user_ns_per_syscall}` on stdout.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cellio_benches::{clk_tck, parse_args, parse_stat, run_main, CpuTicks};
use clap::{Parser, ValueEnum};
use serde_json::json;

const PROG: &str = "tick_bias";
/// Iterations between two looks at the clock.
const CHECK_EVERY: u64 = 256;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Send 64 B on one end of a loopback TCP pair and receive them on the other.
    Tcp,
    /// `getppid()`, the cheapest syscall.
    Getppid,
}

/// Measures the user time that tick accounting books for syscalls.
#[derive(Parser, Debug)]
#[command(name = PROG, version)]
struct Args {
    /// Which syscalls to loop on.
    #[arg(long, value_enum, default_value_t = Mode::Tcp)]
    mode: Mode,
    /// How long to loop, in seconds.
    #[arg(long, default_value_t = 5.0, value_parser = parse_secs)]
    secs: f64,
    /// Print one JSON object with the results on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let v = cellio_benches::parse_secs_up_to(s, 3600.0)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err("a window of 0 seconds measures nothing".into())
    }
}

fn main() -> ExitCode {
    run_main(PROG, || run(&parse_args::<Args>(PROG)))
}

fn run(args: &Args) -> Result<(), String> {
    let tck = clk_tck();
    let window = Duration::from_secs_f64(args.secs);
    // Syscalls are counted as they are made: a short write or read would add one.
    let mut syscalls = 0u64;
    let (iterations, before, after) = match args.mode {
        Mode::Tcp => {
            let (mut tx, mut rx) = tcp_pair()?;
            let msg = [0x5au8; 64];
            let mut got = [0u8; 64];
            measure(window, || {
                let mut sent = 0;
                while sent < msg.len() {
                    sent += tx.write(&msg[sent..]).map_err(|e| format!("send: {e}"))?;
                    syscalls += 1;
                }
                let mut received = 0;
                while received < got.len() {
                    match rx.read(&mut got[received..]) {
                        Ok(0) => return Err("recv: the peer closed".into()),
                        Ok(n) => received += n,
                        Err(e) => return Err(format!("recv: {e}")),
                    }
                    syscalls += 1;
                }
                Ok(())
            })?
        }
        Mode::Getppid => measure(window, || {
            // SAFETY: getppid has no preconditions and cannot fail.
            std::hint::black_box(unsafe { libc::getppid() });
            syscalls += 1;
            Ok(())
        })?,
    };
    let ns_per_tick = 1e9 / tck as f64;
    // The kernel keeps these monotonic; saturating all the same, never a panic.
    let user_ticks = after.utime.saturating_sub(before.utime);
    let sys_ticks = after.stime.saturating_sub(before.stime);
    let user_ns_per_iter = user_ticks as f64 * ns_per_tick / iterations as f64;
    let sys_ns_per_iter = sys_ticks as f64 * ns_per_tick / iterations as f64;
    let user_ns_per_syscall = user_ticks as f64 * ns_per_tick / syscalls as f64;
    let mode = match args.mode {
        Mode::Tcp => "tcp",
        Mode::Getppid => "getppid",
    };
    let line = format!(
        "{PROG}: {mode}: {iterations} iterations ({syscalls} syscalls) in {} s; user {user_ticks} \
         ticks, sys {sys_ticks} ticks: user {user_ns_per_iter:.1} ns/iteration \
         ({user_ns_per_syscall:.1} ns/syscall), sys {sys_ns_per_iter:.1} ns/iteration",
        args.secs
    );
    if args.json {
        eprintln!("{line}");
        println!(
            "{}",
            json!({
                "mode": mode,
                "secs": args.secs,
                "iterations": iterations,
                "syscalls": syscalls,
                "user_ticks": user_ticks,
                "sys_ticks": sys_ticks,
                "user_ns_per_iter": user_ns_per_iter,
                "sys_ns_per_iter": sys_ns_per_iter,
                "user_ns_per_syscall": user_ns_per_syscall,
            })
        );
    } else {
        println!("{line}");
    }
    // The figure is a count of user ticks: its 1σ relative error is 1/√N.
    if user_ticks < 100 {
        eprintln!(
            "{PROG}: note: {user_ticks} user ticks, so the user figure is uncertain by ±{:.0}% \
             (1σ); lengthen --secs to narrow it",
            100.0 / (user_ticks.max(1) as f64).sqrt()
        );
    }
    Ok(())
}

/// Runs `step` until `window` has passed; returns the iterations and this thread's CPU ticks
/// before and after.
fn measure(
    window: Duration,
    mut step: impl FnMut() -> Result<(), String>,
) -> Result<(u64, CpuTicks, CpuTicks), String> {
    let before = thread_ticks()?;
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..CHECK_EVERY {
            step()?;
        }
        n += CHECK_EVERY;
        // `Instant::now` reads the vDSO clock: no syscall.
        if start.elapsed() >= window {
            break;
        }
    }
    Ok((n, before, thread_ticks()?))
}

/// This thread's utime and stime ticks (of this one thread, not of the process).
fn thread_ticks() -> Result<CpuTicks, String> {
    let path = "/proc/thread-self/stat";
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_stat(&text).ok_or_else(|| format!("cannot parse {path}"))
}

/// A connected loopback TCP pair with `TCP_NODELAY` on the sending end.
fn tcp_pair() -> Result<(TcpStream, TcpStream), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    let tx = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let (rx, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    tx.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    Ok((tx, rx))
}
