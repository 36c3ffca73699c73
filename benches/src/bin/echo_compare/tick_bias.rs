//! How far `/proc` tick sampling can be trusted for user CPU per message, and how much of it
//! is really the kernel's.
//!
//! Two corrections to the tick-sampled user time, both measured, neither assumed:
//!
//! * **Counting error.** A server that spends ~5% of its time in user space collects only a
//!   few user ticks per second (CLK_TCK is 100), so a 10 s window holds ~50 of them and the
//!   figure is a Poisson count: its 1σ relative error is 1/√N for N user ticks. [`rel_err`]
//!   gives it for a server's ticks summed over all rounds.
//! * **Bias.** A tick that comes due while the kernel runs with interrupts off is taken when
//!   they come back on; on the way out of a syscall that is often the first user instruction,
//!   so every syscall has part of its kernel time booked as user time. Servers making the same
//!   syscalls per message get the same bias, which pulls every user-time ratio towards 1. The
//!   sibling `tick_bias` program measures it: pinned to the server core, it sends 64 B on one
//!   end of a loopback TCP pair and receives them on the other (an echo's two syscalls) with a
//!   few instructions of user work per iteration, and everything booked as user time is bias.
//!   With `--tick-bias` one such run is made per round, interleaved with the servers.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::Args;

/// One `tick_bias --mode tcp` run.
#[derive(Clone, Copy, Debug)]
pub struct BiasRun {
    pub iterations: u64,
    pub user_ticks: u64,
    pub sys_ticks: u64,
}

impl BiasRun {
    pub fn to_json(self) -> Value {
        json!({
            "iterations": self.iterations,
            "user_ticks": self.user_ticks,
            "sys_ticks": self.sys_ticks,
        })
    }
}

/// Runs the calibration loop once, pinned to the server core, for `--duration` seconds.
pub fn run_once(bin: &Path, args: &Args) -> Result<BiasRun, String> {
    let out = Command::new(bin)
        .args(["--mode", "tcp", "--json", "--secs"])
        .arg(args.duration.to_string())
        .arg("--core")
        .arg(args.server_core.to_string())
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
    Ok(BiasRun {
        iterations: field("iterations")?,
        user_ticks: field("user_ticks")?,
        sys_ticks: field("sys_ticks")?,
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
            ns_per_msg: user_ticks as f64 * 1e9 / tck as f64 / iterations as f64,
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

/// `a / b` and its 1σ, for independent `a` and `b` with relative errors `ea` and `eb`.
pub fn ratio_err(a: f64, ea: f64, b: f64, eb: f64) -> (f64, f64) {
    let r = a / b;
    (r, r * (ea * ea + eb * eb).sqrt())
}

/// `(a - bias) / (b - bias)` and its 1σ: `a`, `b` and `bias` carry relative errors `ea`, `eb`
/// and `eu`; the same `bias` is taken from both, so its error partly cancels.
pub fn adjusted_ratio_err(a: f64, ea: f64, b: f64, eb: f64, bias: f64, eu: f64) -> (f64, f64) {
    let (x, y) = (a - bias, b - bias);
    let r = x / y;
    let (sa, sb, su) = (a * ea, b * eb, bias * eu);
    // d r / d a = 1/y, d r / d b = -x/y², d r / d bias = (x - y)/y².
    let var = (sa / y).powi(2) + (sb * x / (y * y)).powi(2) + (su * (x - y) / (y * y)).powi(2);
    (r, var.sqrt())
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
            },
            BiasRun {
                iterations: 500_000,
                user_ticks: 16,
                sys_ticks: 480,
            },
        ];
        let b = Bias::of(&runs, 100).unwrap();
        // 25 ticks of 10 ms over 1e6 iterations.
        assert!((b.ns_per_msg - 250.0).abs() < 1e-9);
        assert!((b.rel_err - 0.2).abs() < 1e-12);
        assert!(Bias::of(&[], 100).is_none());
    }

    #[test]
    fn adjusted_ratio_without_errors_is_plain_arithmetic() {
        let (r, s) = adjusted_ratio_err(450.0, 0.0, 550.0, 0.0, 150.0, 0.0);
        assert!((r - 0.75).abs() < 1e-12 && s == 0.0);
        // Only the bias uncertain: r moves by (x - y) / y² per unit of bias.
        let (_, s) = adjusted_ratio_err(450.0, 0.0, 550.0, 0.0, 150.0, 0.1);
        assert!((s - 15.0 * 100.0 / 160_000.0).abs() < 1e-12);
        let (r, s) = ratio_err(1.0, 0.03, 2.0, 0.04);
        assert!((r - 0.5).abs() < 1e-12 && (s - 0.025).abs() < 1e-12);
    }
}
