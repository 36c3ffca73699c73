//! SIGTERM and SIGINT begin a runtime's graceful shutdown, shared by the
//! echo servers (`#[path]`-included); a second one, during the grace
//! period and at least [`SECOND_SIGNAL_AFTER`] (500 ms) after the first,
//! ends the process at once, as the signal's default action would (the
//! kernel closes the connections still open): the operator's second
//! Ctrl-C, or a supervisor's second SIGTERM, is not left waiting for the
//! grace period. One arriving sooner is ignored: one Ctrl-C reaches every
//! process of the terminal's foreground group, so a server run under a
//! wrapper that forwards the signals it gets (`timeout --foreground`,
//! `tini`, a supervisor script) gets it twice, microseconds apart, and
//! that is one request, not two.
//!
//! A grace period begun by a hand-over (`--take-over`,
//! `examples/common/handover.rs`) was begun by no signal: there the first
//! signal counts as the first (it is silent: the shutdown has already
//! begun) and the second, 500 ms or more later, ends the process.
//!
//! The signals come through worker 0's reactor (`cellio::signal`): no
//! signal thread, so with one worker the process keeps a single thread,
//! and the kernel's cheaper path for a descriptor table nobody shares (a
//! second thread costs about 0.04 µs of system time per echoed message, of
//! ~3.4, on the benchmark VM).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cellio::runtime::{until_shutdown, RuntimeHandle};
use cellio::signal::{Signal, SIGINT, SIGTERM};

/// How long after the first signal a second one must come to end the
/// process: one sooner is taken for the same request delivered twice (a
/// Ctrl-C to a forwarding wrapper's process group), not for an operator's
/// second. Half a second is well under a person's second Ctrl-C or a
/// supervisor's second SIGTERM, and well over a wrapper's forwarding.
pub const SECOND_SIGNAL_AFTER: Duration = Duration::from_millis(500);

/// `CLOCK_MONOTONIC` in nanoseconds, at least 1 (0 stands for "no signal
/// yet"). Async-signal-safe: `clock_gettime` is on POSIX's list.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; clock_gettime only
    // writes it, and is async-signal-safe (this runs in a signal handler).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
        .max(1)
}

/// Starts listening for SIGTERM and SIGINT now (call it inside
/// `block_on`, before the server announces its address: a signal sent
/// after that must find a listener), and returns the future to spawn: it
/// begins the shutdown at the first of them, and ends when the shutdown
/// begins for any reason, so it never holds the grace period up.
///
/// A delivery (of either signal) [`SECOND_SIGNAL_AFTER`] or more after the
/// first ends the process by the signal's default action (the status of a
/// process killed by it: 143 or 130 in a shell); one sooner is ignored.
/// The signal handler does that itself (it keeps the first delivery's
/// time and compares), with no task left waiting and no thread started.
pub fn shut_down_on_signals() -> std::io::Result<impl Future<Output = Option<()>>> {
    let context = |name: &str, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("cannot watch for {name}: {e}"))
    };
    let mut term = Signal::new(SIGTERM).map_err(|e| context("SIGTERM", e))?;
    let mut int = Signal::new(SIGINT).map_err(|e| context("SIGINT", e))?;
    // The first delivery's CLOCK_MONOTONIC time in nanoseconds; 0: none yet.
    let first = Arc::new(AtomicU64::new(0));
    let after = SECOND_SIGNAL_AFTER.as_nanos() as u64;
    for (signal, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
        let first = first.clone();
        let action = move || {
            let now = monotonic_ns();
            match first.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {} // The first: the watch task begins the shutdown.
                Err(at) if now.saturating_sub(at) >= after => {
                    // Nothing to do if it fails: the process goes on.
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                }
                Err(_) => {} // The same request delivered twice.
            }
        };
        // The action makes only async-signal-safe calls: clock_gettime,
        // a compare-exchange on a lock-free AtomicU64 (no allocation, no
        // lock), and signal_hook's emulate_default_handler (made for it).
        // SAFETY: the action is async-signal-safe, as said just above.
        unsafe { signal_hook::low_level::register(signal, action) }
            .map_err(|e| context(name, e))?;
    }
    Ok(until_shutdown(async move {
        let _ = futures_util::future::select(pin!(term.recv()), pin!(int.recv())).await;
        if let Some(runtime) = RuntimeHandle::current() {
            runtime.shutdown();
        }
    }))
}
