//! Thread-per-core TCP servers (`#[path]`-included: `echo_server`,
//! `proxy`): a `SO_REUSEPORT` listener on each worker besides the caller's,
//! and the end of the run: the grace period, then an error if a worker
//! could not listen.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

/// Gives the open connections `grace` to finish, then stops the runtime;
/// an error if a worker could not listen.
pub fn finish(program: &str, runtime: Runtime, grace: Duration) -> std::io::Result<()> {
    let cancelled = runtime.shutdown_timeout(grace);
    if cancelled > 0 {
        eprintln!("{program}: closed {cancelled} connections still open after the grace period");
    }
    if WORKER_FAILED.load(Ordering::SeqCst) {
        return Err(std::io::Error::other("a worker failed to start"));
    }
    Ok(())
}
