//! An accept loop's backoff while the process is out of descriptors (or
//! another resource every accept needs), shared by the stream echo servers
//! (`#[path]`-included: `echo_server`, `unix_echo_server`, `proxy`) and the
//! restart socket's accept loop (`handover.rs`, so every server that
//! offers restarts includes it, `udp_echo_server` too).

use std::time::{Duration, Instant};

/// An accept error that names no connection but a resource the process or
/// the system has run out of: file descriptors (`EMFILE`, `ENFILE`), socket
/// buffers or memory. Retrying at once fails the same way.
pub fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The accept loop's backoff while out of resources: 10 ms after the first
/// failure, doubling up to 1 s. It says so at most once a second, and when
/// an accept succeeds after a streak it told of (a loop that retried at
/// once printed 649 106 lines in 2 s at the limit, with no client at all).
pub struct Starved {
    /// The program's name, at the start of what it says.
    program: &'static str,
    /// The listener, after it: `""` for the server's own, or `"restart
    /// socket: "`.
    listener: &'static str,
    /// Failed accepts since the last success.
    failures: u64,
    /// This streak of failures was reported.
    told: bool,
    /// When a failure was last reported.
    last_told: Option<Instant>,
    /// Failures since then, not reported.
    untold: u64,
}

impl Starved {
    const FIRST_PAUSE: Duration = Duration::from_millis(10);
    const LONGEST_PAUSE: Duration = Duration::from_secs(1);
    const REPORT_EVERY: Duration = Duration::from_secs(1);

    /// No failure yet; `program` names the server in what it says.
    pub fn new(program: &'static str) -> Self {
        Self::of(program, "")
    }

    /// [`new`](Self::new) for a listener that is not the server's own:
    /// `listener` (such as `"restart socket: "`) follows the program's name.
    pub fn of(program: &'static str, listener: &'static str) -> Self {
        Self {
            program,
            listener,
            failures: 0,
            told: false,
            last_told: None,
            untold: 0,
        }
    }

    /// Another accept failed with `e`: how long to wait before the next.
    pub fn failed(&mut self, e: &std::io::Error) -> Duration {
        let now = Instant::now();
        if self
            .last_told
            .is_none_or(|t| now.duration_since(t) >= Self::REPORT_EVERY)
        {
            let more = match self.untold {
                0 => String::new(),
                n => format!(" ({n} more since the last report)"),
            };
            eprintln!(
                "{}: {}accept failed: {e}{more}; backing off ({:?} to {:?}) while the \
                 connections wait in the listen backlog",
                self.program,
                self.listener,
                Self::FIRST_PAUSE,
                Self::LONGEST_PAUSE
            );
            (self.last_told, self.untold, self.told) = (Some(now), 0, true);
        } else {
            self.untold += 1;
        }
        let doublings = self.failures.min(10) as u32;
        self.failures += 1;
        (Self::FIRST_PAUSE * (1 << doublings)).min(Self::LONGEST_PAUSE)
    }

    /// An accept succeeded.
    pub fn recovered(&mut self) {
        if self.told {
            eprintln!(
                "{}: {}accepting again after {} failed accepts",
                self.program, self.listener, self.failures
            );
        }
        (self.failures, self.told) = (0, false);
    }
}

/// Accepts with `accept` until the runtime's shutdown begins, handing each
/// connection to `serve`. Out of resources, it backs off ([`Starved`]);
/// any other failure (a client gone before it was taken) is reported and
/// the loop yields once, since the next accept may well succeed.
pub async fn accept_until_shutdown<T, A, F>(
    program: &'static str,
    mut accept: A,
    mut serve: impl FnMut(T),
) where
    A: FnMut() -> F,
    F: std::future::Future<Output = std::io::Result<T>>,
{
    use cellio::runtime::{sleep, until_shutdown};
    let mut starved = Starved::new(program);
    while let Some(accepted) = until_shutdown(accept()).await {
        match accepted {
            Ok(connection) => {
                starved.recovered();
                serve(connection);
            }
            // The connections wait in the listen backlog meanwhile.
            Err(e) if out_of_resources(&e) => {
                let pause = starved.failed(&e);
                if until_shutdown(sleep(pause)).await.is_none() {
                    return;
                }
            }
            Err(e) => {
                eprintln!("{program}: accept failed: {e}");
                cellio::yield_now().await;
            }
        }
    }
}
