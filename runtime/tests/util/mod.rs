//! Shared helpers for cellio-runtime's integration tests.
//!
//! Every test runs its body through [`run`] (or [`with_timeout`]), on a
//! watchdog thread: a lost wake-up fails the test after [`LIMIT`] instead of
//! blocking the test binary forever.
#![allow(dead_code)]

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cellio_runtime::Runtime;

mod panics;
#[allow(unused_imports)] // each test binary uses some of them
pub use panics::{panic_text, panicking_waker, quiet_panics_ending_with, ON_PURPOSE};

/// How long any single test body may run before it counts as hung. Under
/// Miri, whose clock advances with the (slow) interpreted code, the limit
/// is a minute of its time.
pub const LIMIT: Duration = Duration::from_secs(if cfg!(miri) { 60 } else { 10 });

/// `n` repetitions in a normal build. Under Miri, which interprets every
/// instruction (thousands of times slower), a fiftieth of them and at least
/// two: the same code paths, taken fewer times.
pub const fn scaled(n: u64) -> u64 {
    if !cfg!(miri) {
        n
    } else if n / 50 > 2 {
        n / 50
    } else {
        2
    }
}

/// Runs `body` on its own thread and fails the test if it does not finish
/// within `limit`. Panics inside `body` propagate with their payload.
pub fn with_timeout<T, F>(limit: Duration, body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("test-body".into())
        .spawn(move || {
            let out = body();
            let _ = done_tx.send(());
            out
        })
        .expect("spawn test thread");
    match done_rx.recv_timeout(limit) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match thread.join() {
            Ok(out) => out,
            Err(payload) => std::panic::resume_unwind(payload),
        },
        Err(RecvTimeoutError::Timeout) => {
            panic!(
                "test body did not finish within {limit:?}: a wake-up was lost or something hangs"
            )
        }
    }
}

/// Builds a runtime on a watchdog thread and `block_on`s the future that
/// `make` returns (created on that thread, so it need not be `Send`).
pub fn run<M, Fut>(make: M) -> Fut::Output
where
    M: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    run_within(LIMIT, make)
}

/// [`run`] on a runtime with `workers` workers.
pub fn run_on<M, Fut>(workers: usize, make: M) -> Fut::Output
where
    M: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    with_timeout(LIMIT, move || {
        let rt = cellio_runtime::Builder::new()
            .workers(workers)
            .build()
            .expect("runtime");
        rt.block_on(make())
    })
}

/// [`run`] with an explicit time limit.
pub fn run_within<M, Fut>(limit: Duration, make: M) -> Fut::Output
where
    M: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    with_timeout(limit, move || {
        let rt = Runtime::new().expect("runtime");
        rt.block_on(make())
    })
}

/// [`run`] on a runtime built from `builder` (a pool size, a budget).
pub fn run_built<M, Fut>(builder: cellio_runtime::Builder, make: M) -> Fut::Output
where
    M: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    with_timeout(LIMIT, move || {
        let rt = builder.build().expect("runtime");
        rt.block_on(make())
    })
}

/// Polls `fut` once with the current task's context.
pub async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// A one-shot signal another thread can fire: the future completes once
/// [`Signal::fire`] was called, whichever thread calls it.
#[derive(Clone, Default)]
pub struct Signal {
    inner: Arc<Mutex<(bool, Option<Waker>)>>,
}

impl Signal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the signal and wakes the waiting task, if any.
    pub fn fire(&self) {
        let waker = {
            let mut state = self.inner.lock().unwrap();
            state.0 = true;
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Fires the signal from a plain thread after `delay`.
    pub fn fire_after(&self, delay: Duration) -> std::thread::JoinHandle<()> {
        let signal = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            signal.fire();
        })
    }

    /// Completes once fired.
    pub fn wait(&self) -> SignalWait {
        SignalWait {
            signal: self.clone(),
        }
    }
}

/// Future of [`Signal::wait`].
pub struct SignalWait {
    signal: Signal,
}

impl Future for SignalWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.signal.inner.lock().unwrap();
        if state.0 {
            Poll::Ready(())
        } else {
            state.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// A fresh directory, removed with everything in it when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cellio-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A runtime of one worker (worker 0, claimed anew: the stale-handle tests
/// count its claims).
pub fn one_worker() -> Runtime {
    cellio_runtime::Builder::new().workers(1).build().unwrap()
}

/// [`one_worker`] after `claims` more runtimes of one worker were made and
/// dropped: 256 claims after a runtime, worker 0's 8-bit epoch is that
/// runtime's again.
pub fn one_worker_after(claims: usize) -> Runtime {
    for _ in 0..claims {
        drop(one_worker());
    }
    one_worker()
}
