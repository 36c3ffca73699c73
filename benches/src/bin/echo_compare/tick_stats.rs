//! How far `/proc` tick sampling can be trusted for user CPU per message, and how much of it
//! is really the kernel's.
//!
//! Two corrections to the tick-sampled user time, both measured, neither assumed:
//!
//! * **Counting error.** A server that spends ~5% of its time in user space collects only a
//!   few user ticks per second (CLK_TCK is 100), so a 10 s window holds ~50 of them and the
//!   figure is a Poisson count: its 1σ relative error is 1/√N for N user ticks ([`rel_err`]).
//!   The table reports medians of rounds, and the VM drifts between rounds by more than the
//!   count's noise, so a median's error is [`median_rel_err`]: the larger of the pooled
//!   count's error and the error estimated from the rounds' own spread.
//! * **Bias.** Tick sampling books part of every syscall's kernel time as user time (measured
//!   by `tick_bias`; the likely mechanism, not verified: a tick falling due while interrupts are
//!   off is taken at the first user instruction after the syscall). Servers making the same
//!   syscalls per message get the same bias, which pulls every user-time ratio towards 1. The
//!   sibling `tick_bias` program measures it: pinned to the server core, it sends 64 B on one
//!   end of a loopback TCP pair and receives them on the other (an echo's two syscalls) with a
//!   few instructions of user work per iteration, and everything booked as user time is bias.
//!   With `--tick-bias` one such run is made per round, interleaved with the servers.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use cellio_benches::{median, read_cores_busy};
use serde_json::{json, Value};

use crate::Args;

/// One `tick_bias --mode tcp` run.
#[derive(Clone, Copy, Debug)]
pub struct BiasRun {
    pub iterations: u64,
    pub user_ticks: u64,
    pub sys_ticks: u64,
    /// CPU taken on the server core by other processes during the run, as a fraction of the
    /// core (like a server run's other%).
    pub other_cpu: f64,
}

impl BiasRun {
    /// User time booked per iteration (one send and one receive), in ns.
    pub fn user_ns_per_iter(&self, tck: u64) -> f64 {
        ns_per(self.user_ticks, tck, self.iterations)
    }

    pub fn to_json(self) -> Value {
        json!({
            "iterations": self.iterations,
            "user_ticks": self.user_ticks,
            "sys_ticks": self.sys_ticks,
            "other_cpu": self.other_cpu,
        })
    }
}

/// `ticks` of CPU time spread over `n` events, in ns per event.
fn ns_per(ticks: u64, tck: u64, n: u64) -> f64 {
    ticks as f64 * 1e9 / tck as f64 / n as f64
}

/// Runs the calibration loop once, pinned to the server core, for `--duration` seconds.
pub fn run_once(bin: &Path, args: &Args, tck: u64) -> Result<BiasRun, String> {
    let core = [args.server_core];
    let (busy0, t0) = (read_cores_busy(&core)?, Instant::now());
    // Pinned the way the servers are: taskset execs the program on the core.
    let out = Command::new("taskset")
        .arg("-c")
        .arg(args.server_core.to_string())
        .arg(bin)
        .args(["--mode", "tcp", "--json", "--secs"])
        .arg(args.duration.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim())
        .map_err(|e| format!("tick_bias printed no JSON ({e}): {text}"))?;
    let field = |k: &str| {
        v[k].as_u64()
            .ok_or_else(|| format!("tick_bias JSON has no `{k}`"))
    };
    let (busy1, t1) = (read_cores_busy(&core)?, Instant::now());
    let (user_ticks, sys_ticks) = (field("user_ticks")?, field("sys_ticks")?);
    let other_ticks = busy1
        .saturating_sub(busy0)
        .saturating_sub(user_ticks + sys_ticks);
    Ok(BiasRun {
        iterations: field("iterations")?,
        user_ticks,
        sys_ticks,
        other_cpu: other_ticks as f64 / tck as f64 / (t1 - t0).as_secs_f64(),
    })
}

/// The bias per echoed message (one receive and one send), pooled over all runs.
#[derive(Clone, Copy, Debug)]
pub struct Bias {
    pub ns_per_msg: f64,
    /// 1σ relative counting error.
    pub rel_err: f64,
    pub user_ticks: u64,
    pub iterations: u64,
}

impl Bias {
    pub fn of(runs: &[BiasRun], tck: u64) -> Option<Self> {
        let user_ticks: u64 = runs.iter().map(|r| r.user_ticks).sum();
        let iterations: u64 = runs.iter().map(|r| r.iterations).sum();
        if iterations == 0 {
            return None;
        }
        Some(Bias {
            ns_per_msg: ns_per(user_ticks, tck, iterations),
            rel_err: rel_err(user_ticks),
            user_ticks,
            iterations,
        })
    }
}

/// 1σ relative error of a Poisson count of `ticks` (infinite for none).
pub fn rel_err(ticks: u64) -> f64 {
    1.0 / (ticks as f64).sqrt()
}

/// 1σ relative error of the median of `values` (one per round), whose `ticks` summed to
/// `ticks`: the larger of the pooled count's error and the spread's. The spread's is the
/// median absolute deviation scaled to a standard deviation (× 1.4826), times 1.2533 / √n for
/// a median of n; it needs three rounds or more.
pub fn median_rel_err(values: &[f64], ticks: u64) -> f64 {
    let count = rel_err(ticks);
    if values.len() < 3 {
        return count;
    }
    let m = median(values);
    let deviations: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
    let sigma = 1.4826 * median(&deviations);
    let spread = 1.2533 * sigma / (values.len() as f64).sqrt() / m;
    if spread.is_finite() {
        count.max(spread)
    } else {
        count
    }
}

/// `a / b` and its 1σ, for independent `a` and `b` with relative errors `ea` and `eb`.
pub fn ratio_err(a: f64, ea: f64, b: f64, eb: f64) -> (f64, f64) {
    let r = a / b;
    (r, r * (ea * ea + eb * eb).sqrt())
}

/// `(a - bias) / (b - bias)` and its 1σ: `a`, `b` and `bias` carry relative errors `ea`, `eb`
/// and `eu`; the same `bias` is taken from both, so its error partly cancels. `None` unless
/// both differences are positive (a bias as large as a server's whole user time says the bias
/// is wrong for it, not that the server is free).
pub fn adjusted_ratio_err(
    a: f64,
    ea: f64,
    b: f64,
    eb: f64,
    bias: f64,
    eu: f64,
) -> Option<(f64, f64)> {
    let (x, y) = (a - bias, b - bias);
    if !(x > 0.0 && y > 0.0) {
        return None;
    }
    let r = x / y;
    let (sa, sb, su) = (a * ea, b * eb, bias * eu);
    // d r / d a = 1/y, d r / d b = -x/y², d r / d bias = (x - y)/y².
    let var = (sa / y).powi(2) + (sb * x / (y * y)).powi(2) + (su * (x - y) / (y * y)).powi(2);
    Some((r, var.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_bias_and_its_counting_error() {
        let runs = [
            BiasRun {
                iterations: 500_000,
                user_ticks: 9,
                sys_ticks: 490,
                other_cpu: 0.0,
            },
            BiasRun {
                iterations: 500_000,
                user_ticks: 16,
                sys_ticks: 480,
                other_cpu: 0.0,
            },
        ];
        let b = Bias::of(&runs, 100).unwrap();
        // 25 ticks of 10 ms over 1e6 iterations.
        assert!((b.ns_per_msg - 250.0).abs() < 1e-9);
        assert!((b.rel_err - 0.2).abs() < 1e-12);
        assert!(Bias::of(&[], 100).is_none());
        assert!((runs[1].user_ns_per_iter(100) - 320.0).abs() < 1e-9);
    }

    #[test]
    fn a_medians_error_is_the_larger_of_count_and_spread() {
        // Tight rounds, few ticks: the count decides (1/√100).
        let tight = [100.0, 101.0, 99.0, 100.0, 100.5];
        assert!((median_rel_err(&tight, 100) - 0.1).abs() < 1e-12);
        // Scattered rounds, many ticks: the spread decides. Median 100, deviations
        // 0/20/20/40/10 -> MAD 20, sigma 29.652, median error 1.2533 * 29.652 / √5 = 16.62.
        let scattered = [100.0, 120.0, 80.0, 140.0, 90.0];
        let e = median_rel_err(&scattered, 10_000);
        assert!((e - 1.2533 * 1.4826 * 20.0 / 5f64.sqrt() / 100.0).abs() < 1e-12);
        // Fewer than three rounds: no spread to speak of.
        assert!((median_rel_err(&[100.0, 200.0], 400) - 0.05).abs() < 1e-12);
    }

    #[test]
    fn adjusted_ratio_without_errors_is_plain_arithmetic() {
        let (r, s) = adjusted_ratio_err(450.0, 0.0, 550.0, 0.0, 150.0, 0.0).unwrap();
        assert!((r - 0.75).abs() < 1e-12 && s == 0.0);
        // Only the bias uncertain: r moves by (x - y) / y² per unit of bias.
        let (_, s) = adjusted_ratio_err(450.0, 0.0, 550.0, 0.0, 150.0, 0.1).unwrap();
        assert!((s - 15.0 * 100.0 / 160_000.0).abs() < 1e-12);
        // A bias that eats a server's whole user time gives no ratio, not a tiny one.
        assert!(adjusted_ratio_err(140.0, 0.0, 550.0, 0.0, 150.0, 0.0).is_none());
        assert!(adjusted_ratio_err(450.0, 0.0, 150.0, 0.0, 150.0, 0.0).is_none());
        let (r, s) = ratio_err(1.0, 0.03, 2.0, 0.04);
        assert!((r - 0.5).abs() < 1e-12 && (s - 0.025).abs() < 1e-12);
    }
}
