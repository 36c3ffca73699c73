//! SIGTERM and SIGINT begin a runtime's graceful shutdown, shared by the
//! echo servers (`#[path]`-included); a second one, during the grace
//! period, ends the process at once, as the signal's default action
//! would (the kernel closes the connections still open): the operator's
//! second Ctrl-C, or a supervisor's second SIGTERM, is not left waiting
//! for the grace period.
//!
//! The signals come through worker 0's reactor (`cellio::signal`): no
//! signal thread, so with one worker the process keeps a single thread,
//! and the kernel's cheaper path for a descriptor table nobody shares (a
//! second thread costs about 0.04 µs of system time per echoed message, of
//! ~3.4, on the benchmark VM).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use cellio::runtime::{until_shutdown, RuntimeHandle};
use cellio::signal::{Signal, SIGINT, SIGTERM};

/// Starts listening for SIGTERM and SIGINT now (call it inside
/// `block_on`, before the server announces its address: a signal sent
/// after that must find a listener), and returns the future to spawn: it
/// begins the shutdown at the first of them, and ends when the shutdown
/// begins for any reason, so it never holds the grace period up.
///
/// From the second delivery on (of either signal, the first having begun
/// the shutdown), the signal's default action ends the process (the
/// status of a process killed by it: 143 or 130 in a shell). The signal
/// handler does that itself (`signal_hook`'s conditional default action,
/// armed by a flag the first delivery sets), with no task left waiting.
pub fn shut_down_on_signals() -> std::io::Result<impl Future<Output = Option<()>>> {
    let context = |name: &str, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("cannot watch for {name}: {e}"))
    };
    let mut term = Signal::new(SIGTERM).map_err(|e| context("SIGTERM", e))?;
    let mut int = Signal::new(SIGINT).map_err(|e| context("SIGINT", e))?;
    let second = Arc::new(AtomicBool::new(false));
    for (signal, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
        // In this order: a delivery runs the actions in the order they
        // were registered, so the first one finds the flag unset.
        signal_hook::flag::register_conditional_default(signal, second.clone())
            .map_err(|e| context(name, e))?;
        signal_hook::flag::register(signal, second.clone()).map_err(|e| context(name, e))?;
    }
    Ok(until_shutdown(async move {
        let _ = futures_util::future::select(pin!(term.recv()), pin!(int.recv())).await;
        if let Some(runtime) = RuntimeHandle::current() {
            runtime.shutdown();
        }
    }))
}
