//! SIGTERM and SIGINT begin a runtime's graceful shutdown, shared by the
//! echo servers (`#[path]`-included).
//!
//! The signals come through worker 0's reactor (`cellio::signal`): no
//! signal thread, so with one worker the process keeps a single thread,
//! and the kernel's cheaper path for a descriptor table nobody shares (a
//! second thread costs about 0.04 µs of system time per echoed message, of
//! ~3.4, on the benchmark VM).

use std::future::Future;
use std::pin::pin;

use cellio::runtime::{until_shutdown, RuntimeHandle};
use cellio::signal::{Signal, SIGINT, SIGTERM};

/// Starts listening for SIGTERM and SIGINT now (call it inside
/// `block_on`, before the server announces its address: a signal sent
/// after that must find a listener), and returns the future to spawn: it
/// begins the shutdown at the first of them, and ends when the shutdown
/// begins for any reason, so it never holds the grace period up.
pub fn shut_down_on_signals() -> std::io::Result<impl Future<Output = Option<()>>> {
    let context = |name: &str, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("cannot watch for {name}: {e}"))
    };
    let mut term = Signal::new(SIGTERM).map_err(|e| context("SIGTERM", e))?;
    let mut int = Signal::new(SIGINT).map_err(|e| context("SIGINT", e))?;
    Ok(until_shutdown(async move {
        let _ = futures_util::future::select(pin!(term.recv()), pin!(int.recv())).await;
        if let Some(runtime) = RuntimeHandle::current() {
            runtime.shutdown();
        }
    }))
}
