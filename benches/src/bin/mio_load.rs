//! `mio_load`: a minimal, independent, closed-loop echo load client on a raw mio loop.
//!
//! What it measures: how many echo round trips C connections complete in a fixed window, and
//! whether every echoed byte is right. It exists to cross-check cellio's own load client, so it
//! is deliberately small and plain:
//! - one thread, one mio `Poll`, C connections opened up front (blocking connect, then
//!   non-blocking);
//! - each connection sends one S-byte message, waits until all S bytes came back, compares
//!   every byte with what it sent, and only then sends the next message (closed loop, one
//!   message in flight per connection);
//! - message contents differ per connection and per message ([`fill_message`]), so stale,
//!   misrouted or reordered bytes are caught; bytes beyond what was sent are a mismatch too;
//! - after the window each connection shuts down its sending side and reads until the server
//!   closes its own ([`expect_close`]), checking the echo of what it had sent so far: a byte
//!   beyond that (a duplicated echo, trailing bytes) is a mismatch, as in the window. It waits
//!   [`CLOSE_WAIT`] at most; a connection still open then is taken to have nothing more (not an
//!   error). Nothing of this phase is counted in the window (`msgs`, `secs`, the marks);
//! - the run is `--warmup` seconds (not counted) followed by `--duration` seconds (counted);
//!   it is always bounded in time. With `--messages N` the measured window also ends as soon
//!   as N messages have completed in it (so that runs of servers of different speeds see the
//!   same number of messages, as `echo_compare`'s syscall count needs).
//!
//! With `--latency` it also times every message the plain way a hand-written client would: one
//! `Instant::now()` when a message's echo is complete (which is also the next message's send
//! time) and one `hdrhistogram` record per message (the warm-up's are cleared when the window
//! begins). Without it the clock is read once per `epoll_wait`, so the default client does no
//! per-message timing at all.
//!
//! Output: a summary line; with `--json` one JSON object
//! `{connections,size,secs,msgs,msgs_per_sec,mismatches,errors,warmup_msgs}` on stdout (the
//! summary then goes to stderr), plus `p50_us,p99_us,max_us` with `--latency`. With
//! `--phase-marks` it also prints `# warmup-done` and `# window-done` on stdout, flushed, the
//! moment each phase ends; `echo_compare` samples the server's CPU time on those lines. Exits non-zero on any mismatch or error, or if no message
//! completed.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cellio_benches::{
    fill_message, parse_args, raise_fd_limit, run_main, MARK_WARMUP_DONE, MARK_WINDOW_DONE,
};
use clap::Parser;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const PROG: &str = "mio_load";
const RX_BUF: usize = 64 * 1024;
/// At most this many mismatch/error details are printed.
const MAX_REPORTS: u64 = 5;
/// How long the end of a run waits for the servers to close the connections after the client's
/// end of stream ([`expect_close`]): an echo server closes at once, a round trip later.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Minimal closed-loop mio echo load client that checks every byte.
#[derive(Parser, Debug)]
#[command(name = PROG, version)]
struct Args {
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// Number of connections.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    connections: u32,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    size: u32,
    /// Measured window in seconds.
    #[arg(long, default_value_t = 5.0, value_parser = parse_secs)]
    duration: f64,
    /// Warm-up before the window, in seconds (messages not counted).
    #[arg(long, default_value_t = 1.0, value_parser = parse_secs)]
    warmup: f64,
    /// Also end the measured window once this many messages have completed in it (it may
    /// overshoot by the messages of the last batch of events, at most one per connection).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    messages: Option<u64>,
    /// Print one JSON object with the results on stdout.
    #[arg(long)]
    json: bool,
    /// Also time every message (one clock read and one histogram record each) and report
    /// p50, p99 and max.
    #[arg(long)]
    latency: bool,
    /// Print `# warmup-done` / `# window-done` on stdout when each phase ends.
    #[arg(long)]
    phase_marks: bool,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    cellio_benches::parse_secs_up_to(s, 86_400.0)
}

struct Conn {
    stream: TcpStream,
    id: u64,
    seq: u64,
    /// The message in flight (also the expected echo).
    msg: Vec<u8>,
    written: usize,
    received: usize,
    /// Readiness as last reported by an event and not yet consumed by `WouldBlock` or a
    /// short read (mio is edge-triggered).
    readable: bool,
    writable: bool,
    /// The peer closed or the socket errored: read until EOF/error to find out.
    read_closed: bool,
    /// `--latency`: when the message in flight was sent (the previous one's completion).
    sent_at: Instant,
}

/// `--latency`: the round trips, in nanoseconds. Warm-up messages are recorded too, and
/// cleared when the measured window begins.
type Timing = Histogram<u64>;

enum Failure {
    Mismatch(String),
    Error(String),
}

#[derive(Default)]
struct Totals {
    warmup_msgs: u64,
    msgs: u64,
    mismatches: u64,
    errors: u64,
}

fn main() -> ExitCode {
    let args: Args = parse_args(PROG);
    run_main(PROG, || run(&args))
}

fn mark(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn run(args: &Args) -> Result<(), String> {
    raise_fd_limit();
    let size = args.size as usize;
    let poll = Poll::new().map_err(|e| format!("epoll_create: {e}"))?;
    let mut conns = Vec::with_capacity(args.connections as usize);
    for id in 0..args.connections as usize {
        let std_stream = std::net::TcpStream::connect_timeout(&args.addr, Duration::from_secs(5))
            .map_err(|e| format!("connect {} (connection {id}): {e}", args.addr))?;
        std_stream
            .set_nodelay(true)
            .and_then(|()| std_stream.set_nonblocking(true))
            .map_err(|e| format!("socket setup: {e}"))?;
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry()
            .register(
                &mut stream,
                Token(id),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
        let mut msg = vec![0u8; size];
        fill_message(&mut msg, id as u64, 0);
        conns.push(Some(Conn {
            stream,
            id: id as u64,
            seq: 0,
            msg,
            written: 0,
            received: 0,
            readable: false,
            writable: false,
            read_closed: false,
            sent_at: Instant::now(),
        }));
    }

    let mut timing = args.latency.then(|| {
        Timing::new_with_bounds(1, 3_600 * 1_000_000_000, 3).expect("valid histogram bounds")
    });
    let (totals, secs) = drive_all(args, poll, &mut conns, timing.as_mut())?;
    drop(conns);
    let latency_us = timing.map(|t| {
        let us = |q: f64| t.value_at_quantile(q) as f64 / 1e3;
        (us(0.5), us(0.99), t.max() as f64 / 1e3)
    });

    let rate = if secs > 0.0 {
        totals.msgs as f64 / secs
    } else {
        0.0
    };
    let mut summary = format!(
        "{PROG}: {} connections, {} B, {:.3} s: {} msgs, {:.0} msg/s, {} mismatches, {} errors",
        args.connections, args.size, secs, totals.msgs, rate, totals.mismatches, totals.errors
    );
    if let Some((p50, p99, max)) = latency_us {
        summary += &format!(", p50 {p50:.1} us, p99 {p99:.1} us, max {max:.1} us");
    }
    if args.json {
        eprintln!("{summary}");
        let mut obj = serde_json::json!({
            "connections": args.connections,
            "size": args.size,
            "secs": secs,
            "msgs": totals.msgs,
            "msgs_per_sec": rate,
            "mismatches": totals.mismatches,
            "errors": totals.errors,
            "warmup_msgs": totals.warmup_msgs,
        });
        if let Some((p50, p99, max)) = latency_us {
            obj["p50_us"] = p50.into();
            obj["p99_us"] = p99.into();
            obj["max_us"] = max.into();
        }
        mark(&obj.to_string());
    } else {
        mark(&summary);
    }
    if totals.mismatches > 0 || totals.errors > 0 {
        return Err(format!(
            "{} mismatches, {} errors",
            totals.mismatches, totals.errors
        ));
    }
    if totals.msgs == 0 && args.duration > 0.0 {
        return Err("no message completed in the measured window".into());
    }
    Ok(())
}

/// Runs warm-up and window; returns the totals and the measured window's length in seconds.
fn drive_all(
    args: &Args,
    mut poll: Poll,
    conns: &mut [Option<Conn>],
    mut timing: Option<&mut Timing>,
) -> Result<(Totals, f64), String> {
    let mut events = Events::with_capacity(1024);
    let mut rx = vec![0u8; RX_BUF].into_boxed_slice();
    let mut totals = Totals::default();
    let mut alive = conns.len();

    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(args.warmup);
    let end = warm_end + Duration::from_secs_f64(args.duration);
    let mut measuring = false;
    let mut window_start = start;
    for conn in conns.iter_mut().flatten() {
        conn.sent_at = start;
    }

    loop {
        // Phase changes are decided right after each wake-up; events of a batch are counted
        // in the phase current when the batch is handled.
        let now = Instant::now();
        if !measuring && now >= warm_end {
            measuring = true;
            window_start = now;
            if let Some(t) = timing.as_deref_mut() {
                t.reset();
            }
            if args.phase_marks {
                mark(MARK_WARMUP_DONE);
            }
        }
        let enough = measuring && args.messages.is_some_and(|n| totals.msgs >= n);
        if now >= end || alive == 0 || enough {
            let window_end = Instant::now();
            if args.phase_marks {
                if !measuring {
                    mark(MARK_WARMUP_DONE);
                }
                mark(MARK_WINDOW_DONE);
            }
            let secs = if measuring {
                (window_end - window_start).as_secs_f64()
            } else {
                0.0
            };
            expect_close(&mut poll, &mut events, conns, &mut rx, &mut totals)?;
            return Ok((totals, secs));
        }
        let next = if measuring { end } else { warm_end };
        if !events.is_empty() {
            for event in events.iter() {
                let key = event.token().0;
                let Some(conn) = conns[key].as_mut() else {
                    continue;
                };
                if event.is_readable() {
                    conn.readable = true;
                }
                if event.is_writable() {
                    conn.writable = true;
                }
                if event.is_read_closed() || event.is_error() {
                    conn.read_closed = true;
                    conn.readable = true;
                }
                match drive(conn, &mut rx, timing.as_deref_mut()) {
                    Ok(done) if measuring => totals.msgs += done,
                    Ok(done) => totals.warmup_msgs += done,
                    Err(failure) => {
                        totals.count(key, failure);
                        close(&poll, &mut conns[key]);
                        alive -= 1;
                    }
                }
            }
            if alive == 0 {
                continue; // every connection failed: stop now rather than at the deadline
            }
        }
        let timeout = next.saturating_duration_since(Instant::now());
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => events.clear(),
            Err(e) => return Err(format!("epoll_wait: {e}")),
        }
    }
}

impl Totals {
    /// Counts a connection's failure, and reports the first few.
    fn count(&mut self, key: usize, failure: Failure) {
        let (what, count) = match failure {
            Failure::Mismatch(m) => {
                self.mismatches += 1;
                (format!("mismatch: {m}"), self.mismatches)
            }
            Failure::Error(m) => {
                self.errors += 1;
                (format!("error: {m}"), self.errors)
            }
        };
        if count <= MAX_REPORTS {
            eprintln!("{PROG}: connection {key}: {what}");
        }
    }
}

/// Drops the connection in `slot`, if any.
fn close(poll: &Poll, slot: &mut Option<Conn>) {
    if let Some(mut c) = slot.take() {
        let _ = poll.registry().deregister(&mut c.stream);
    }
}

/// The end of the run, after the window: every live connection shuts down its sending side
/// (after the bytes of its message in flight written so far) and reads until the server closes
/// its own, checking what comes against what it sent, for [`CLOSE_WAIT`] at most. A byte beyond
/// what was sent is a mismatch; an end of stream before the echo of all of it, or a read error,
/// an error. A connection the server keeps open that long is taken to have nothing more.
fn expect_close(
    poll: &mut Poll,
    events: &mut Events,
    conns: &mut [Option<Conn>],
    rx: &mut [u8],
    totals: &mut Totals,
) -> Result<(), String> {
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut open = 0;
    for (key, slot) in conns.iter_mut().enumerate() {
        let Some(c) = slot.as_mut() else { continue };
        // A shutdown that fails (a connection the server reset) leaves the reads to say what is
        // left. Then read once now: an edge that came before may have gone unread.
        let _ = c.stream.shutdown(Shutdown::Write);
        match read_to_end(c, rx) {
            Ok(false) => open += 1,
            Ok(true) => close(poll, slot),
            Err(failure) => {
                totals.count(key, failure);
                close(poll, slot);
            }
        }
    }
    while open > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match poll.poll(events, Some(left)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("epoll_wait: {e}")),
        }
        for event in events.iter() {
            let key = event.token().0;
            let Some(c) = conns[key].as_mut() else {
                continue;
            };
            match read_to_end(c, rx) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(failure) => totals.count(key, failure),
            }
            close(poll, &mut conns[key]);
            open -= 1;
        }
    }
    Ok(())
}

/// Reads what the server sends on a connection whose sending side is shut down, checking it:
/// `Ok(true)` at the end of the stream, `Ok(false)` when there is nothing more to read yet.
fn read_to_end(c: &mut Conn, rx: &mut [u8]) -> Result<bool, Failure> {
    loop {
        match c.stream.read(rx) {
            Ok(0) if c.received < c.written => {
                return Err(Failure::Error(format!(
                    "message {}: the server closed the connection after echoing {} of {} bytes",
                    c.seq, c.received, c.written
                )))
            }
            Ok(0) => return Ok(true),
            Ok(n) => {
                check(c, &rx[..n])?;
                c.received += n;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::Error(format!("read: {e}"))),
        }
    }
}

/// Makes all the progress the known readiness allows; returns the messages completed.
fn drive(c: &mut Conn, rx: &mut [u8], mut timing: Option<&mut Timing>) -> Result<u64, Failure> {
    let size = c.msg.len();
    let mut done = 0;
    loop {
        let mut progress = false;
        if c.writable && c.written < size {
            match c.stream.write(&c.msg[c.written..]) {
                Ok(0) => return Err(Failure::Error("write returned 0".into())),
                Ok(n) => {
                    c.written += n;
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => progress = true,
                Err(e) => return Err(Failure::Error(format!("write: {e}"))),
            }
        }
        if c.readable && (c.received < c.written || c.read_closed) {
            match c.stream.read(rx) {
                Ok(0) => return Err(Failure::Error("server closed the connection".into())),
                Ok(n) => {
                    check(c, &rx[..n])?;
                    c.received += n;
                    progress = true;
                    if n < rx.len() && !c.read_closed {
                        c.readable = false; // short read: drained
                    }
                    if c.received == size {
                        if let Some(t) = timing.as_deref_mut() {
                            let now = Instant::now();
                            let ns = now.duration_since(c.sent_at).as_nanos();
                            t.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
                            c.sent_at = now;
                        }
                        done += 1;
                        c.seq += 1;
                        fill_message(&mut c.msg, c.id, c.seq);
                        c.written = 0;
                        c.received = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => progress = true,
                Err(e) => return Err(Failure::Error(format!("read: {e}"))),
            }
        }
        if !progress {
            return Ok(done);
        }
    }
}

/// Checks freshly received bytes against the part of the message they must echo.
fn check(c: &Conn, got: &[u8]) -> Result<(), Failure> {
    let from = c.received;
    if from + got.len() > c.written {
        return Err(Failure::Mismatch(format!(
            "message {}: {} bytes echoed but only {} sent",
            c.seq,
            from + got.len(),
            c.written
        )));
    }
    let want = &c.msg[from..from + got.len()];
    if got != want {
        let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
        return Err(Failure::Mismatch(format!(
            "message {} byte {}: got {:#04x}, want {:#04x}",
            c.seq,
            from + i,
            got[i],
            want[i]
        )));
    }
    Ok(())
}
