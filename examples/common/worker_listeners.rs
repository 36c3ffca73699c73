//! Thread-per-core TCP servers (`#[path]`-included: `echo_server`,
//! `proxy`, `http_server`): a `SO_REUSEPORT` listener on each worker
//! besides the caller's, and the end of the run: the grace period, how
//! many connections it closed, then an error if a worker could not listen.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cellio::runtime::{spawn_on, RuntimeHandle};
use cellio::{ListenOptions, Runtime, TcpListener};

/// Set when a worker could not listen: the server shuts down and exits 1.
static WORKER_FAILED: AtomicBool = AtomicBool::new(false);

/// On each of workers `1..workers`, binds a listener to `addr` with
/// `options` and runs `serve` on it. A worker that cannot bind says so and
/// shuts the runtime down ([`finish`] then reports it).
pub fn listen_on_other_workers<S, F>(
    program: &'static str,
    addr: SocketAddr,
    options: ListenOptions,
    workers: usize,
    serve: S,
) where
    S: Fn(TcpListener) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    for worker in 1..workers {
        let serve = serve.clone();
        spawn_on(worker, async move {
            match TcpListener::bind_with(addr, options) {
                Ok(listener) => serve(listener).await,
                Err(e) => {
                    eprintln!("{program}: worker {worker} cannot listen on {addr}: {e}");
                    WORKER_FAILED.store(true, Ordering::SeqCst);
                    if let Some(runtime) = RuntimeHandle::current() {
                        runtime.shutdown();
                    }
                }
            }
        });
    }
}

/// Connections the shutdown closed: [`Open`]s dropped after the grace.
static CLOSED: AtomicUsize = AtomicUsize::new(0);

/// When the grace period ends (set by [`finish`] as it begins).
static GRACE_END: OnceLock<Instant> = OnceLock::new();

/// A connection, for [`finish`]'s count: a parameter of the connection's
/// future, held until the connection ends. Dropped after the grace period
/// (which only the runtime's cancelling of the task does: a connection
/// that ends drops it before), it counts as a connection the shutdown
/// closed.
///
/// It has no bytes, is never moved once in the future, and its drop does
/// a load and a branch, the rest out of line: so the future's code per
/// message stays as it was (moved out to mark the connection's end, or
/// with the clock read inline in its drop, it cost 2 more instructions
/// per echoed message through `TcpIo`, callgrind).
pub struct Open(());

impl Open {
    /// A connection starts.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Open(())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if GRACE_END.get().is_some() {
            closed_after_grace();
        }
    }
}

/// [`Open`]'s drop during the shutdown.
#[cold]
#[inline(never)]
fn closed_after_grace() {
    if GRACE_END.get().is_some_and(|end| Instant::now() >= *end) {
        CLOSED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Gives the open connections `grace` to finish, then stops the runtime,
/// and says how many it closed ([`Open`]: the tasks that are not
/// connections, such as other workers' accept loops, do not count); an
/// error if a worker could not listen.
pub fn finish(program: &str, runtime: Runtime, grace: Duration) -> std::io::Result<()> {
    if let Some(end) = Instant::now().checked_add(grace) {
        let _ = GRACE_END.set(end);
    }
    runtime.shutdown_timeout(grace);
    match CLOSED.load(Ordering::Relaxed) {
        0 => {}
        1 => eprintln!("{program}: closed 1 connection still open after the grace period"),
        closed => {
            eprintln!("{program}: closed {closed} connections still open after the grace period")
        }
    }
    if WORKER_FAILED.load(Ordering::SeqCst) {
        return Err(std::io::Error::other("a worker failed to start"));
    }
    Ok(())
}
