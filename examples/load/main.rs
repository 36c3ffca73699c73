//! `load`: cellio's bundled load client, built on cellio itself.
//!
//! ```text
//! cargo run --release --example echo_server -- --addr 127.0.0.1:7000 &
//! cargo run --release --example load -- --addr 127.0.0.1:7000 --connections 100 --duration 10s
//! ```
//!
//! * Closed loop by default (`--pipeline 1`): each connection sends one
//!   message, waits for its whole echo, sends the next. `--pipeline K`
//!   keeps K messages in flight per connection (a sender and a receiver
//!   joined inside the connection's task).
//! * Open loop with `--rate R`: messages are due at fixed times (R per
//!   second over all connections, starts evenly staggered) and latency is
//!   measured from when a message was *due*, so a slow server's queueing
//!   delay is counted (no coordinated omission). `--pipeline` still caps the
//!   messages in flight per connection. A connection that falls behind
//!   its schedule sends its messages late, one after another, but none at
//!   or after the end of the run (whatever `--pipeline`); the ones still
//!   unsent then are counted too (`unfinished`, below).
//! * Every echoed byte is checked: message contents depend on the
//!   connection and the message number. Over a stream (TCP or `--unix`)
//!   a connection whose echoes are all in also shuts down its sending side
//!   at its end and reads until the server closes its own: a byte that
//!   comes then (a duplicated last echo, trailing bytes) is a mismatch, as
//!   one before a later message's echo is. That costs a round trip per
//!   connection after the measured period; a server that keeps the
//!   connection open after the client's end of stream is waited for up to
//!   `--timeout` and is then taken to have sent nothing more (not an
//!   error).
//! * `--window 100ms` also reports latency percentiles per consecutive
//!   window of the measured period (a message counts in the window of its
//!   intended send time): on a machine with scheduling stalls, the typical
//!   window's p99 says what the server does, the run's p99 what the stalls do.
//! * `--workers W` runs W threads, each with its own cellio runtime and a
//!   share of the connections; their histograms are merged at the end.
//!   With one worker (the default) and no terminal for the progress line,
//!   the worker runs on the main thread: the process then has one thread,
//!   which spares the kernel a file reference count at every syscall.
//! * `--addr` given several times spreads the connections over several
//!   servers (connection i to the i-th address modulo their count) and
//!   reports each one beside the totals: two servers measured at once see
//!   the same machine, stalls included, so their latencies can be compared
//!   window by window. In the JSON, `addr` is then the addresses joined by
//!   commas, and `targets` has one object per address (in `--addr` order,
//!   with its `addr`, `connections` and the totals' figures and windows).
//! * Each message reads the clock once: the CPU's time-stamp counter where
//!   the kernel keeps time with it, `Instant` otherwise and for `--rate`
//!   (`clock` in the JSON says which; see `clock.rs`). In a closed loop the
//!   echo's arrival is also the next send's time, except after the
//!   connection's yield to the worker's other tasks (every 64 messages):
//!   the next message is sent after the yield and timed from a reading
//!   then, so the other tasks' turn is not in its latency. Completed
//!   messages are recorded in batches of 256, so a message touches one
//!   line of the batch rather than the histograms'.
//!
//! * `--udp`: each connection is a UDP socket connected to its address and
//!   a message is one datagram; a connection starts with a probe datagram
//!   that must come back (so a server that is not there is exit 2, as over
//!   TCP, even when the kernel connects a socket to itself: see
//!   `not_itself`); a datagram whose echo has not come back after `--loss-after`
//!   (or, with `--pipeline` above 1, before a later datagram's echo: a
//!   reordered one too) counts in `lost`, an echo that comes after that in
//!   `late`, and so does a duplicated echo; neither fails the run (see
//!   `udp.rs`).
//! * `--unix PATH` (instead of `--addr`, and also repeatable): each
//!   connection is a Unix-domain stream to the socket at PATH, driven
//!   exactly as a TCP one (`cargo run --release --example
//!   unix_echo_server` listens on `/tmp/cellio-echo.sock`). The JSON's
//!   `transport` is then `unix`.
//!
//! A message is *measured* if it was due (in a closed loop: sent) after the
//! warm-up and before the end of the run. A measured message counts in
//! `msgs` (and in the latencies) if its echo came back in full before the
//! end; a message whose echo differs counts in `msgs` and in `mismatches`.
//! In duration mode the end cuts the rest off: a measured message not
//! echoed by then, in flight or (with `--rate`, on a connection behind its
//! schedule) never sent, counts in `unfinished`, and in the latencies (and
//! its `--window`; if never sent, in the send lag too) at its age at the
//! end, a lower bound of what it would have taken. Over a stream (TCP or
//! `--unix`) the echoes of messages in flight at the end are still waited
//! for, each up to `--timeout`, and checked: a server that stops answering
//! fails the run (a timeout) however near the end it stopped, and a
//! corrupted late echo is a mismatch; they stay `unfinished`, and the
//! figures cover the measured period only. With `--udp` the end stops
//! the waits. So on a connection
//! that did not fail, every measured message is in exactly one of `msgs`,
//! `unfinished` and (`--udp`) `lost`, and an open loop the server cannot
//! keep up with reports the backlog it built (in the latencies' tail)
//! instead of leaving its slowest messages out. A window's `msgs` in the
//! JSON counts what went into its latencies: echoed and unfinished.
//! Latencies and send lags are tracked up to an hour, or the run's
//! `--duration` or `--timeout` if longer (a `--duration` run records none
//! longer than its duration); one longer than that (a `--requests` run)
//! counts at the bound and in `latencies_clipped` / `send_lags_clipped`
//! (the text report says so): never clipped silently.
//! `bytes_per_sec` is echoed payload per second in one direction. Both are
//! over `secs`, the measured period: `--duration`; with `--requests`, from
//! the end of the warm-up to the last echo, and with `--rate R` at least
//! `N / R`, the span of the N measured messages' schedule (each has its
//! `1/R` of it, as in a duration run), so an open loop never reports more
//! than it offered.
//!
//! The report goes to stdout; a write error there (a reader that went
//! away: `load ... | head -1`) cuts it short quietly, and the exit code is
//! still the run's.
//!
//! Exit code: 0 if all went well; 1 on any mismatch, error (I/O error,
//! unexpected EOF, timeout), failed connect, or if no measured message
//! came back (with `--rate`, a run still working through the warm-up's
//! backlog at the end says so); 2 on bad flags, when no connection could
//! be opened, when `--connections` needs more open files than the hard
//! limit allows, counting the descriptors it was started with (a soft
//! limit below what is needed is raised first), or
//! when `--connections` × `--size` × 3 (each connection's message buffers)
//! is more than the machine's memory (see `limits.rs`).

mod args;
mod clock;
mod conn;
mod limits;
mod pattern;
mod stats;
mod udp;
mod watch;

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use cellio::runtime::timeout;
use cellio::unix::UnixStream;
use cellio::{spawn_local, Builder, TcpStream, UdpSocket};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use args::Args;
use clock::Clock;
use conn::{Conn, Pace, Timeline};
use stats::{Recorder, Stats, Tally, Totals, WorkerTotals};
use watch::Watchlist;

#[global_allocator]
static ALLOC: stats::Counting = stats::Counting;

const DEFAULT_DURATION: Duration = Duration::from_secs(10);
const DEFAULT_WARMUP: Duration = Duration::from_secs(1);
const DEFAULT_LOSS_AFTER: Duration = Duration::from_millis(200);
/// Most `--window`s a run may have (each costs a 36 KiB histogram per
/// worker, 1 KiB more per doubling of a `--duration` over an hour).
const MAX_WINDOWS: u128 = 1000;
/// Most window histograms over all workers (about 150 MB; 225 MB at the
/// longest `--duration`, 1e9 s).
const MAX_WINDOW_HISTOGRAMS: u128 = 4096;

/// Prints `load: error: MSG` and exits with code 2.
fn fail_usage(msg: &str) -> ! {
    eprintln!("load: error: {msg}");
    std::process::exit(2);
}

/// Most `--addr`s a run may have.
const MAX_TARGETS: usize = 64;

/// A server the connections go to: `--addr` (or `--unix`) as given and
/// where that is.
struct Target {
    name: String,
    endpoint: Endpoint,
}

/// Where a server listens.
#[derive(Clone)]
enum Endpoint {
    /// What an `--addr` resolved to.
    Inet(Vec<SocketAddr>),
    /// A `--unix` path.
    Unix(std::path::PathBuf),
}

/// An open connection.
enum Link {
    Tcp(TcpStream),
    Unix(UnixStream),
    Udp(UdpSocket),
}

/// The run's settings, shared by the workers.
struct Plan {
    /// `--addr`s; connection `id` goes to `targets[id % targets.len()]`.
    targets: Vec<Target>,
    connections: u64,
    /// Worker threads: `--workers`, at most one per connection.
    workers: u64,
    size: usize,
    pipeline: usize,
    requests: Option<u64>,
    rate: Option<f64>,
    spin: bool,
    warmup: Duration,
    duration: Option<Duration>,
    /// `--window`: the windows' length and count.
    window: Option<(Duration, usize)>,
    timeout: Duration,
    /// `--udp`, with its `--loss-after`.
    udp: Option<Duration>,
    /// The run's clock, shared by every worker (see `clock.rs`).
    clock: Clock,
    /// The largest latency or send lag the histograms track, in ns
    /// (`stats::latency_bound`): larger ones are counted as clipped.
    latency_bound: u64,
}

/// A socket connected to `peer` from `local`: an error if that is itself.
/// With nothing listening at a port in the ephemeral range, the kernel
/// may pick that very port for the socket, and a TCP connect then
/// completes with itself (a simultaneous open), or a UDP socket receives
/// its own datagrams: every "echo" would match.
pub fn not_itself(local: SocketAddr, peer: SocketAddr) -> std::io::Result<()> {
    if local == peer {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("connected to itself: nothing listens at {peer}"),
        ));
    }
    Ok(())
}

/// The first pause before a Unix connect that found the listener's queue
/// full is made again; each pause after it doubles, up to
/// [`UNIX_RETRY_MAX`].
const UNIX_RETRY_FIRST: Duration = Duration::from_millis(1);
const UNIX_RETRY_MAX: Duration = Duration::from_millis(10);

/// Connects to the Unix stream listener at `path` within `limit`. On Linux
/// a connect that finds the listener's queue of connections not yet
/// accepted full fails at once (`WouldBlock`: a non-blocking connect has
/// nothing to wait for) where a TCP connect would wait: it is made again
/// after a short pause, as `UnixStream::connect` advises, until `limit`.
async fn connect_unix(path: &std::path::Path, limit: Duration) -> std::io::Result<UnixStream> {
    let deadline = Instant::now() + limit;
    let mut pause = UNIX_RETRY_FIRST;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = match timeout(left, UnixStream::connect(path)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => e,
            Ok(result) => return result,
            Err(elapsed) => return Err(elapsed.into()),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                e.kind(),
                format!(
                    "the listener's queue of connections not yet accepted stayed full \
                     for {limit:?} (retried every {}-{} ms)",
                    UNIX_RETRY_FIRST.as_millis(),
                    UNIX_RETRY_MAX.as_millis()
                ),
            ));
        }
        cellio::runtime::sleep(pause.min(left)).await;
        pause = (pause * 2).min(UNIX_RETRY_MAX);
    }
}

/// A worker's connect phase, reported to the main thread.
struct Connected {
    ok: u64,
    failed: u64,
    /// What went wrong first: the address it was for (none when the
    /// worker itself could not start) and why.
    first_error: Option<(Option<String>, String)>,
}

fn main() -> ExitCode {
    let args = args::parse();
    let flag = if args.unix.is_empty() {
        "--addr"
    } else {
        "--unix"
    };
    let given = args.addr.len().max(args.unix.len());
    if given > MAX_TARGETS {
        fail_usage(&format!(
            "{given} {flag} given; at most {MAX_TARGETS} are allowed"
        ));
    }
    if given as u64 > u64::from(args.connections) {
        fail_usage(&format!(
            "{given} {flag} given but only {} connections: each address needs at least one",
            args.connections
        ));
    }
    // Each worker needs a connection: never more workers than connections.
    let workers = u64::from(args.workers).min(u64::from(args.connections));
    if let Err(e) = limits::ensure_memory(u64::from(args.connections), u64::from(args.size)) {
        fail_usage(&e);
    }
    if let Err(e) = limits::ensure_open_files(u64::from(args.connections), workers) {
        fail_usage(&e);
    }
    let targets: Vec<Target> = if args.unix.is_empty() {
        args.addr.iter().map(|name| resolve(name)).collect()
    } else {
        args.unix
            .iter()
            .map(|path| Target {
                name: path.display().to_string(),
                endpoint: Endpoint::Unix(path.clone()),
            })
            .collect()
    };
    if args.udp {
        let max = udp::max_size(targets.iter().flat_map(|t| match &t.endpoint {
            Endpoint::Inet(addrs) => &addrs[..],
            Endpoint::Unix(_) => &[],
        }));
        if args.size as usize > max {
            fail_usage(&format!(
                "--size {} does not fit in a UDP datagram to {} (at most {max} bytes)",
                args.size,
                args.addr.join(", ")
            ));
        }
    }
    let duration = match args.requests {
        Some(_) => None,
        None => Some(args.duration.unwrap_or(DEFAULT_DURATION)),
    };
    let window = match (args.window, duration) {
        (None, _) => None,
        (Some(_), None) => fail_usage("--window needs a duration run, not --requests"),
        (Some(len), Some(d)) => {
            if d.as_nanos() % len.as_nanos() != 0 {
                fail_usage(&format!(
                    "--window {len:?} does not divide --duration {d:?} into whole windows"
                ));
            }
            let count = d.as_nanos() / len.as_nanos();
            if count > MAX_WINDOWS {
                fail_usage(&format!(
                    "--window {len:?} cuts --duration {d:?} into {count} windows; \
                     at most {MAX_WINDOWS} are allowed"
                ));
            }
            let per_worker = count * targets.len() as u128;
            if per_worker * u128::from(workers) > MAX_WINDOW_HISTOGRAMS {
                fail_usage(&format!(
                    "{count} windows for each of {} addresses on each of {workers} workers: \
                     at most {MAX_WINDOW_HISTOGRAMS} window histograms in all (fewer windows, \
                     addresses or workers)",
                    targets.len()
                ));
            }
            Some((len, count as usize))
        }
    };
    let plan = Arc::new(Plan {
        targets,
        connections: u64::from(args.connections),
        workers,
        size: args.size as usize,
        pipeline: args.pipeline as usize,
        requests: args.requests,
        rate: args.rate,
        spin: args.spin,
        warmup: args.warmup.unwrap_or(if args.requests.is_some() {
            Duration::ZERO
        } else {
            DEFAULT_WARMUP
        }),
        duration,
        window,
        timeout: args.timeout,
        udp: args
            .udp
            .then(|| args.loss_after.unwrap_or(DEFAULT_LOSS_AFTER)),
        // Paced sends are timed by `Instant`'s timers: their schedule stays
        // on `Instant` (see `clock.rs`).
        clock: if args.rate.is_some() {
            Clock::on_instant()
        } else {
            Clock::fastest()
        },
        latency_bound: stats::latency_bound(&[duration.unwrap_or_default(), args.timeout]),
    });
    run(&args, plan)
}

/// Resolves one `--addr`; a name that does not resolve is a usage error.
fn resolve(name: &str) -> Target {
    let addrs: Vec<SocketAddr> = match name.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => fail_usage(&format!("cannot resolve --addr {name}: {e}")),
    };
    if addrs.is_empty() {
        fail_usage(&format!("--addr {name} resolves to no address"));
    }
    Target {
        name: name.to_string(),
        endpoint: Endpoint::Inet(addrs),
    }
}

fn run(args: &Args, plan: Arc<Plan>) -> ExitCode {
    let workers = plan.workers;
    let (t0, by_target, allocs) = if workers == 1 && !std::io::stderr().is_terminal() {
        match run_inline(&plan) {
            Ok(out) => out,
            Err(code) => return code,
        }
    } else {
        match run_threads(&plan, workers) {
            Ok(out) => out,
            Err(code) => return code,
        }
    };
    let mut totals = Totals::empty(plan.latency_bound);
    for t in &by_target {
        totals.merge(t);
    }
    let warm_end = t0 + plan.warmup;
    // The measured period the rates are over (see the module docs).
    let secs = match plan.duration {
        Some(d) => d.as_secs_f64(),
        None => {
            let to_last_echo = totals.last_done.map_or(0.0, |t| {
                t.nanos_since(plan.clock.stamp(warm_end)) as f64 / 1e9
            });
            match (plan.rate, plan.requests) {
                // The N measured messages' schedule spans N / R: each has
                // its 1/R of it, as in a duration run.
                (Some(rate), Some(n)) => to_last_echo.max(n as f64 / rate),
                _ => to_last_echo,
            }
        }
    };
    report(args, &plan, workers, secs, &totals, &by_target, allocs);

    if totals.msgs == 0 {
        if totals.lost > 0 {
            // `--udp`: the echoes did not come back; the few datagrams in
            // flight at the end (`unfinished`) say nothing about keeping up.
            let late = if totals.late > 0 {
                format!(
                    "; {} echoes came back later than that (a longer --loss-after?)",
                    totals.late
                )
            } else {
                String::new()
            };
            eprintln!(
                "load: error: no datagram due in the measured window was echoed: {} lost ({}){late}",
                totals.lost,
                loss_rule(&plan)
            );
        } else if totals.unfinished > 0 {
            let pace = plan
                .rate
                .map(|r| format!(" at --rate {r}"))
                .unwrap_or_default();
            eprintln!(
                "load: error: no message due in the measured window came back before its end \
                 ({} unfinished): the server, or this client, did not keep up{pace}",
                totals.unfinished
            );
        } else {
            eprintln!("load: error: no message completed in the measured window");
        }
        return ExitCode::FAILURE;
    }
    if totals.mismatches > 0 || totals.errors > 0 || totals.connect_errors > 0 {
        eprintln!(
            "load: error: {} mismatches, {} errors, {} failed connects",
            totals.mismatches, totals.errors, totals.connect_errors
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// What a run hands to the report: its start, each target's totals and the
/// allocation window (allocations, messages) summed over the workers.
type RunOutput = (Instant, Vec<Totals>, (u64, u64));

/// One worker on this thread, when there is nothing else for the thread to
/// do (one worker, no progress line). A process with a second thread makes
/// the kernel take and drop a reference on the socket's file at every
/// syscall (the file table is shared): ~40 ns per message on this VM
/// (`perf`: `fdget` + `fput`), a whole percent of the client core.
fn run_inline(plan: &Plan) -> Result<RunOutput, ExitCode> {
    let mut t0 = None;
    let out = worker(
        plan,
        0..plan.connections,
        Arc::new(AtomicU64::new(0)),
        |connected| {
            let start = start(plan, vec![connected], || {});
            t0 = Some(start);
            Some(start)
        },
    );
    // `worker` always hands its connect report over, and `start` returns
    // only to go on (it exits otherwise), so `t0` is set here.
    let Some(t0) = t0 else {
        eprintln!("load: error: the worker could not start");
        return Err(ExitCode::FAILURE);
    };
    Ok((t0, out.targets, (out.window_allocs, out.window_msgs)))
}

/// The threaded run: a thread per worker, the progress line on this one.
fn run_threads(plan: &Arc<Plan>, workers: u64) -> Result<RunOutput, ExitCode> {
    let (ready_tx, ready_rx) = mpsc::channel::<Connected>();
    let mut threads = Vec::new();
    let mut go = Vec::new();
    let mut published = Vec::new();
    for w in 0..workers {
        let ids = (w * plan.connections / workers)..((w + 1) * plan.connections / workers);
        let (go_tx, go_rx) = mpsc::channel::<Option<Instant>>();
        let counter = Arc::new(AtomicU64::new(0));
        let (plan, ready, c) = (Arc::clone(plan), ready_tx.clone(), counter.clone());
        let spawned = thread::Builder::new()
            .name(format!("load-worker-{w}"))
            .spawn(move || {
                worker(&plan, ids, c, |connected| {
                    let _ = ready.send(connected);
                    go_rx.recv().ok().flatten()
                })
            });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                eprintln!("load: error: cannot start worker thread: {e}");
                return Err(ExitCode::FAILURE);
            }
        }
        go.push(go_tx);
        published.push(counter);
    }
    drop(ready_tx);

    // Connect phase: all workers open their connections, then start together.
    let reports: Vec<Connected> = ready_rx.iter().take(workers as usize).collect();
    let t0 = start(plan, reports, || {
        for tx in &go {
            let _ = tx.send(None);
        }
        for t in threads.drain(..) {
            let _ = t.join();
        }
    });
    for tx in &go {
        let _ = tx.send(Some(t0));
    }

    progress(plan, t0, &threads, &published);

    let mut by_target: Vec<Totals> = plan
        .targets
        .iter()
        .map(|_| Totals::empty(plan.latency_bound))
        .collect();
    let mut allocs = (0, 0);
    for t in threads {
        match t.join() {
            Ok(out) => {
                for (mine, theirs) in by_target.iter_mut().zip(&out.targets) {
                    mine.merge(theirs);
                }
                allocs.0 += out.window_allocs;
                allocs.1 += out.window_msgs;
            }
            Err(_) => {
                eprintln!("load: error: a worker thread panicked");
                return Err(ExitCode::FAILURE);
            }
        }
    }
    Ok((t0, by_target, allocs))
}

/// The connect phase's verdict, from every worker's report: the run's start
/// time, or (no connection at all) exit 2 after `stop` has let the workers
/// go. Failed connects among good ones are reported and the run goes on.
fn start(plan: &Plan, reports: Vec<Connected>, stop: impl FnOnce()) -> Instant {
    let (mut ok, mut failed, mut first_error) = (0, 0, None);
    for report in reports {
        ok += report.ok;
        failed += report.failed;
        first_error = first_error.or(report.first_error);
    }
    if ok == 0 {
        stop();
        fail_usage(&match first_error {
            Some((Some(addr), why)) => format!("cannot connect to {addr}: {why}"),
            Some((None, why)) => why,
            None => format!("cannot connect to {}: no connection", names(plan, ", ")),
        });
    }
    if failed > 0 {
        let first = match &first_error {
            Some((Some(addr), why)) => format!("{addr}: {why}"),
            Some((None, why)) => why.clone(),
            None => "?".into(),
        };
        eprintln!(
            "load: {failed} of {} connects failed (first: {first})",
            plan.connections
        );
    }
    Instant::now()
}

/// One worker thread: its own runtime, connections `ids`.
fn worker(
    plan: &Plan,
    ids: Range<u64>,
    published: Arc<AtomicU64>,
    handshake: impl FnOnce(Connected) -> Option<Instant>,
) -> WorkerTotals {
    let targets = plan.targets.len() as u64;
    // Each target's totals, so far its connections that could not be opened.
    let mut by_target: Vec<Totals> = plan
        .targets
        .iter()
        .map(|_| Totals::empty(plan.latency_bound))
        .collect();
    let mut unopened = |id: u64| by_target[(id % targets) as usize].connect_errors += 1;
    // One worker per runtime: the connections are this thread's.
    let rt = match Builder::new().workers(1).build() {
        Ok(rt) => rt,
        Err(e) => {
            handshake(Connected {
                ok: 0,
                failed: ids.end - ids.start,
                first_error: Some((None, format!("cannot start a cellio runtime: {e}"))),
            });
            ids.for_each(&mut unopened);
            return Tally::new(published, Vec::new()).into_worker_totals(by_target);
        }
    };

    // `--window` histograms, one set per target: allocated now, not during
    // the warm-up.
    let windows: Vec<Option<stats::Windows>> = plan
        .targets
        .iter()
        .map(|_| {
            plan.window
                .map(|(len, count)| stats::Windows::new(len, count, plan.latency_bound))
        })
        .collect();

    // Connect phase: all connects in flight at once, each bounded.
    let (connect_timeout, udp, size) = (plan.timeout, plan.udp, plan.size);
    let results: Vec<std::io::Result<Link>> = rt.block_on(async {
        let handles: Vec<_> = ids
            .clone()
            .map(|id| {
                let endpoint = plan.targets[(id % targets) as usize].endpoint.clone();
                spawn_local(async move {
                    let addrs = match endpoint {
                        Endpoint::Inet(addrs) => addrs,
                        Endpoint::Unix(path) => {
                            let stream = connect_unix(&path, connect_timeout).await?;
                            return Ok(Link::Unix(stream));
                        }
                    };
                    if let Some(retry) = udp {
                        let socket = udp::connect(id, &addrs, size, retry, connect_timeout);
                        return socket.await.map(Link::Udp);
                    }
                    let stream = timeout(connect_timeout, TcpStream::connect(&addrs[..]))
                        .await
                        .map_err(std::io::Error::from)??;
                    not_itself(stream.local_addr()?, stream.peer_addr()?)?;
                    stream.set_nodelay(true)?;
                    Ok(Link::Tcp(stream))
                })
            })
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.map_err(std::io::Error::from).and_then(|r| r));
        }
        out
    });
    let mut first_error = None;
    let mut streams = Vec::with_capacity(results.len());
    for (id, r) in ids.clone().zip(results) {
        match r {
            Ok(s) => streams.push((id, s)),
            Err(e) => {
                unopened(id);
                let addr = &plan.targets[(id % targets) as usize].name;
                first_error.get_or_insert_with(|| (Some(addr.clone()), e.to_string()));
            }
        }
    }
    let opened: Vec<u64> = streams.iter().map(|&(id, _)| id).collect();
    let go = handshake(Connected {
        ok: streams.len() as u64,
        failed: (ids.end - ids.start) - streams.len() as u64,
        first_error,
    });
    let Some(t0) = go else {
        drop(rt);
        return Tally::new(published, Vec::new()).into_worker_totals(by_target);
    };
    let clock = plan.clock;
    let warm_end = clock.stamp(t0).add(plan.warmup);
    let timeline = Timeline {
        clock,
        warm_end,
        end: plan.duration.map(|d| warm_end.add(d)),
    };
    let recorders = windows
        .into_iter()
        .map(|windows| {
            Recorder::new(
                windows.map(|mut w| {
                    w.begin(warm_end);
                    w
                }),
                plan.latency_bound,
            )
        })
        .collect();
    let tally = Rc::new(Tally::new(published, recorders));
    let stats: Vec<Rc<Stats>> = (0..targets as u32)
        .map(|target| Rc::new(Stats::new(tally.clone(), target, plan.latency_bound)))
        .collect();
    // With `--udp` a wait that runs out is a lost datagram, not an error,
    // and the run's end stops the waits; a stream's echo is still waited
    // for after the end (up to `--timeout`), so that a server that stops
    // answering fails the run even in its last seconds.
    let wait_limit = plan.udp.unwrap_or(plan.timeout);
    let drain = plan.udp.is_none();
    let watches = Watchlist::new(streams.len(), wait_limit, clock, timeline.end, drain);
    rt.block_on(async {
        // Bounds every connection's waits for the server; ends by itself
        // once they have all ended (and is dropped with the runtime if a
        // connection task failed).
        spawn_local(watch::reap(watches.clone()));
        let handles: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(slot, (id, link))| {
                let c = Conn {
                    id,
                    size: plan.size,
                    pipeline: plan.pipeline,
                    quota: plan
                        .requests
                        .map(|n| n / plan.connections + u64::from(id < n % plan.connections)),
                    pace: plan.rate.map(|rate| Pace {
                        t0: clock.stamp(t0),
                        rate,
                        offset: id,
                        stride: plan.connections,
                        spin: plan.spin,
                    }),
                    timeline,
                    timeout: wait_limit,
                };
                let stats = stats[(id % targets) as usize].clone();
                // A large message needs its echo read while it is sent.
                let pipelined = plan.pipeline > 1 || plan.size > conn::CLOSED_LOOP_MAX_SIZE;
                let watches = watches.clone();
                spawn_local(async move {
                    let watch = watches.watch(slot);
                    match link {
                        Link::Tcp(s) if pipelined => {
                            conn::pipelined(s, c, stats.clone(), watch).await
                        }
                        Link::Tcp(s) => conn::closed(s, c, stats.clone(), watch).await,
                        Link::Unix(s) if pipelined => {
                            conn::pipelined(s, c, stats.clone(), watch).await
                        }
                        Link::Unix(s) => conn::closed(s, c, stats.clone(), watch).await,
                        Link::Udp(s) if pipelined => {
                            udp::pipelined(s, c, stats.clone(), watch).await
                        }
                        Link::Udp(s) => udp::closed(s, c, stats.clone(), watch).await,
                    }
                    watch.retire();
                    stats.connection_ended();
                })
            })
            .collect();
        for (id, h) in opened.iter().zip(handles) {
            if let Err(e) = h.await {
                stats[(id % targets) as usize]
                    .error(*id, format_args!("connection task failed: {e}"));
            }
        }
    });
    drop(rt);
    for (total, stats) in by_target.iter_mut().zip(stats) {
        let Ok(stats) = Rc::try_unwrap(stats) else {
            unreachable!("every connection task has finished")
        };
        stats.move_into(total);
    }
    Rc::try_unwrap(tally)
        .unwrap_or_else(|_| unreachable!("every connection task has finished"))
        .into_worker_totals(by_target)
}

/// The live progress line (stderr, only on a terminal) until the workers end.
/// Without a terminal it returns at once: the caller then blocks in `join`,
/// and the main thread never wakes on the workers' core during the run.
fn progress(
    plan: &Plan,
    t0: Instant,
    threads: &[thread::JoinHandle<WorkerTotals>],
    published: &[Arc<AtomicU64>],
) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let all_done = || threads.iter().all(|t| t.is_finished());
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let warm_end = t0 + plan.warmup;
    while !all_done() {
        thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        let n: u64 = published.iter().map(|p| p.load(Ordering::Relaxed)).sum();
        // Measured messages per second so far (warm-up excluded).
        let measured = now.saturating_duration_since(warm_end).as_secs_f64();
        let rate = if measured > 0.0 {
            n as f64 / measured
        } else {
            0.0
        };
        let phase = if now < warm_end {
            "warming up".to_string()
        } else {
            match plan.duration {
                Some(d) => format!(
                    "{:.1}/{:.1} s",
                    now.duration_since(warm_end)
                        .as_secs_f64()
                        .min(d.as_secs_f64()),
                    d.as_secs_f64()
                ),
                None => format!("{n}/{}", plan.requests.unwrap_or(0)),
            }
        };
        bar.set_message(format!("{n} msgs  {rate:.0} msg/s  {phase}"));
        bar.tick();
    }
    bar.finish_and_clear();
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// The value at quantile `q` of `h` in µs (1.0: the maximum); 0 for an
/// empty histogram.
fn quantile_us(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        us(h.value_at_quantile(q))
    }
}

/// One `--window`'s figures for the JSON report (zeros for a window
/// without messages).
fn window_json(h: &hdrhistogram::Histogram<u64>) -> serde_json::Value {
    serde_json::json!({
        "msgs": h.len(),
        "p50_us": quantile_us(h, 0.5),
        "p99_us": quantile_us(h, 0.99),
        "max_us": quantile_us(h, 1.0),
    })
}

/// One set of results for the JSON report: the totals or one target's.
fn results_json(plan: &Plan, secs: f64, t: &Totals) -> serde_json::Value {
    let per_sec = |x: f64| if secs > 0.0 { x / secs } else { 0.0 };
    let h = &t.hist;
    let q = |q: f64| quantile_us(h, q);
    let lag = &t.lag;
    let lq =
        |q: f64| (plan.rate.is_some() && !lag.is_empty()).then(|| us(lag.value_at_quantile(q)));
    serde_json::json!({
        "msgs": t.msgs,
        "msgs_per_sec": per_sec(t.msgs as f64),
        "bytes_per_sec": per_sec((t.msgs * plan.size as u64) as f64),
        "min_us": if h.is_empty() { 0.0 } else { us(h.min()) },
        "mean_us": if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
        "p50_us": q(0.5),
        "p90_us": q(0.9),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
        "max_us": us(h.max()),
        "send_lag_p50_us": lq(0.5),
        "send_lag_p99_us": lq(0.99),
        "send_lag_max_us": lq(1.0),
        "errors": t.errors,
        "timeouts": t.timeouts,
        "lost": t.lost,
        "late": t.late,
        "unfinished": t.unfinished,
        "latencies_clipped": t.clipped,
        "send_lags_clipped": t.lag_clipped,
        "mismatches": t.mismatches,
        "connect_errors": t.connect_errors,
        "window_secs": t.windows.as_ref().map(|w| w.len.as_secs_f64()),
        "windows": t.windows.as_ref().map(|w| w.hists.iter().map(window_json).collect::<Vec<_>>()),
    })
}

/// `tcp`, `udp` or `unix`: what the connections are.
fn transport(plan: &Plan) -> &'static str {
    match plan.targets.first().map(|t| &t.endpoint) {
        Some(Endpoint::Unix(_)) => "unix",
        _ if plan.udp.is_some() => "udp",
        _ => "tcp",
    }
}

/// The targets' names (`--addr` or `--unix` as given), joined by `sep`.
fn names(plan: &Plan, sep: &str) -> String {
    let names: Vec<&str> = plan.targets.iter().map(|t| t.name.as_str()).collect();
    names.join(sep)
}

/// The connections that go to target `i` of `n` (connection `id` to `id % n`).
fn connections_of(plan: &Plan, i: usize) -> u64 {
    let n = plan.targets.len() as u64;
    plan.connections / n + u64::from((i as u64) < plan.connections % n)
}

fn report(
    args: &Args,
    plan: &Plan,
    workers: u64,
    secs: f64,
    t: &Totals,
    by_target: &[Totals],
    (window_allocs, window_msgs): (u64, u64),
) {
    // None: no message was recorded before a connection ended.
    let allocs_per_msg = (window_msgs > 0).then(|| window_allocs as f64 / window_msgs as f64);
    if args.json {
        let mut obj = serde_json::json!({
            "addr": names(plan, ","),
            "connections": plan.connections,
            "size": plan.size,
            "pipeline": plan.pipeline,
            "rate": plan.rate,
            "spin": plan.spin,
            "clock": if plan.clock.is_tsc() { "tsc" } else { "instant" },
            "workers": workers,
            "transport": transport(plan),
            "loss_after_secs": plan.udp.map(|d| d.as_secs_f64()),
            "warmup_secs": plan.warmup.as_secs_f64(),
            "requests": plan.requests,
            "secs": secs,
            "allocs_per_msg": allocs_per_msg,
            "alloc_window_msgs": window_msgs,
        });
        let targets: Vec<serde_json::Value> = plan
            .targets
            .iter()
            .zip(by_target)
            .enumerate()
            .map(|(i, (target, totals))| {
                let mut v = results_json(plan, secs, totals);
                v["addr"] = target.name.clone().into();
                v["connections"] = connections_of(plan, i).into();
                v
            })
            .collect();
        if let (Some(obj), serde_json::Value::Object(totals)) =
            (obj.as_object_mut(), results_json(plan, secs, t))
        {
            obj.extend(totals);
            obj.insert("targets".into(), targets.into());
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{obj}");
        let _ = out.flush();
        return;
    }
    let mut text = String::new();
    text_report(&mut text, plan, workers, secs, t, by_target)
        .expect("formatting into a String cannot fail");
    // A reader that has gone (`load ... | head -1`) ends the report quietly:
    // a write error on stdout is no panic, and the exit status stays the
    // run's.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The human-readable report, appended to `out`.
fn text_report(
    out: &mut String,
    plan: &Plan,
    workers: u64,
    secs: f64,
    t: &Totals,
    by_target: &[Totals],
) -> std::fmt::Result {
    let mode = match plan.rate {
        Some(r) if plan.spin => format!("open loop at {r} msg/s (spin pacing)"),
        Some(r) => format!("open loop at {r} msg/s"),
        None => "closed loop".to_string(),
    };
    writeln!(
        out,
        "load: {} — {} {}, {} B messages, pipeline {}, {mode}, {workers} worker(s)",
        names(plan, ", "),
        plan.connections,
        if plan.udp.is_some() {
            "UDP sockets"
        } else {
            "connections"
        },
        plan.size,
        plan.pipeline
    )?;
    print_results(out, plan, secs, t, "  ")?;
    if by_target.len() > 1 {
        for (i, (target, totals)) in plan.targets.iter().zip(by_target).enumerate() {
            writeln!(
                out,
                "  {} ({} connections):",
                target.name,
                connections_of(plan, i)
            )?;
            print_results(out, plan, secs, totals, "    ")?;
        }
    }
    Ok(())
}

/// `--udp`: what makes a datagram count as lost, for the report: with
/// `--pipeline` above 1 also a later datagram's echo coming first.
fn loss_rule(plan: &Plan) -> String {
    let overtaken = if plan.pipeline > 1 {
        ", or overtaken"
    } else {
        ""
    };
    format!(
        "no echo within {:?}{overtaken}",
        plan.udp.unwrap_or_default()
    )
}

/// The human-readable lines for one set of results, each line indented.
fn print_results(
    out: &mut String,
    plan: &Plan,
    secs: f64,
    t: &Totals,
    indent: &str,
) -> std::fmt::Result {
    let per_sec = |x: f64| if secs > 0.0 { x / secs } else { 0.0 };
    let h = &t.hist;
    let q = |q: f64| quantile_us(h, q);
    let (p50, p90, p99, p999, max) = (q(0.5), q(0.9), q(0.99), q(0.999), us(h.max()));
    writeln!(
        out,
        "{indent}{secs:.3} s: {} msgs, {:.0} msg/s, {:.2} MB/s echoed",
        t.msgs,
        per_sec(t.msgs as f64),
        per_sec((t.msgs * plan.size as u64) as f64) / 1e6
    )?;
    writeln!(
            out,
        "{indent}latency µs: p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}"
    )?;
    let lag = &t.lag;
    if plan.rate.is_some() && !lag.is_empty() {
        let lq = |q: f64| us(lag.value_at_quantile(q));
        writeln!(
            out,
            "{indent}send lag µs (sent after due; included in latency): p50 {:.1}  p99 {:.1}  max {:.1}",
            lq(0.5),
            lq(0.99),
            lq(1.0)
        )?;
    }
    if let Some(w) = &t.windows {
        let mut p99: Vec<f64> = w
            .hists
            .iter()
            .filter(|h| !h.is_empty())
            .map(|h| quantile_us(h, 0.99))
            .collect();
        p99.sort_by(f64::total_cmp);
        if let (Some(lo), Some(hi)) = (p99.first(), p99.last()) {
            let n = p99.len();
            let median = (p99[(n - 1) / 2] + p99[n / 2]) / 2.0;
            writeln!(
            out,
                "{indent}p99 µs by {:?} window: median {median:.1}  min {lo:.1}  max {hi:.1}  ({n} windows with messages)",
                w.len,
            )?;
        }
    }
    if t.unfinished > 0 {
        writeln!(
            out,
            "{indent}unfinished {}: due before the end, not echoed by then (in the latencies at their age at the end)",
            t.unfinished
        )?;
    }
    if t.clipped > 0 || t.lag_clipped > 0 {
        let bound = Duration::from_nanos(plan.latency_bound);
        writeln!(
            out,
            "{indent}clipped: {} latencies and {} send lags over {bound:?} (the histograms' bound), counted as {bound:?}",
            t.clipped, t.lag_clipped
        )?;
    }
    writeln!(
        out,
        "{indent}errors {} (timeouts {}), mismatches {}, connect errors {}",
        t.errors, t.timeouts, t.mismatches, t.connect_errors
    )?;
    if plan.udp.is_some() {
        writeln!(
            out,
            "{indent}datagrams lost {} ({}), late echoes {} (of datagrams already lost, or duplicates)",
            t.lost,
            loss_rule(plan),
            t.late
        )?;
    }
    Ok(())
}
