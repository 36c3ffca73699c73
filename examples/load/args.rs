//! Command-line flags and their validation.

use std::time::Duration;

use clap::Parser;

/// cellio's load client: drives an echo server over many connections,
/// checks every echoed byte, and reports throughput and latency
/// percentiles.
#[derive(Parser, Debug, Clone)]
#[command(name = "load", version, long_about = None)]
pub struct Args {
    /// Server address (HOST:PORT). Given more than once, the connections are
    /// spread over the addresses (connection i goes to the i-th modulo their
    /// count, so an open loop's sends alternate between them) and each
    /// address is also reported on its own: several servers measured at the
    /// same moment, under the same machine.
    #[arg(long, default_value = "127.0.0.1:7000", value_name = "ADDR")]
    pub addr: Vec<String>,

    /// A Unix-domain stream server's socket path, instead of `--addr`.
    /// Given more than once, the connections are spread over the paths as
    /// over several `--addr`s. A connect that finds the listener's queue of
    /// connections not yet accepted full (which on Linux fails at once,
    /// where a TCP connect waits) is made again after a pause of 1 to 10 ms,
    /// until `--timeout`.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["addr", "udp"])]
    pub unix: Vec<std::path::PathBuf>,

    /// Number of connections (over all workers).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: u32,

    /// Message size in bytes. Each connection holds up to three messages'
    /// worth of buffers: a run whose `--connections` × `--size` × 3 is more
    /// than the machine's memory is refused (exit 2). With `--udp` a
    /// datagram under 8 bytes cannot carry its sequence number: an echo
    /// other than the expected one is recognised only among the outstanding
    /// datagrams and the last 32 (1 or 2 bytes), 4096 (3 bytes) or 65 536
    /// (4 to 7 bytes) settled ones; any other is a mismatch (corrupted, or
    /// later than that), and a corrupted 1- or 2-byte echo may pass for a
    /// late one.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    pub size: u32,

    /// Measured run length, e.g. `10s`, `500ms`, `2m` [default: 10s].
    /// Nothing is sent at or after the end, with or without `--rate` and
    /// whatever `--pipeline`. A measured message not echoed in full by the
    /// end counts as `unfinished`, and in the latencies at its age at the
    /// end (a lower bound): one in flight then (its echo is still waited
    /// for and checked, see `--timeout`), or, with `--rate` on a
    /// connection behind its schedule, one due before the end and not sent
    /// by then (also in the send lag at that age).
    #[arg(long, value_parser = parse_positive_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,

    /// Total number of messages to measure (instead of --duration), spread
    /// evenly over the connections.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Open loop: total messages per second over all connections (0.001
    /// to 1e9). Each connection sends at rate/connections from evenly
    /// staggered start offsets; latency counts from each message's intended
    /// send time.
    #[arg(long, value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,

    /// Open loop: busy-wait the last millisecond before each due send for
    /// microsecond-accurate pacing (cellio's timers wake within the kernel's
    /// timer slack, 50 µs by default, on Linux 5.11+, and within a
    /// millisecond elsewhere), at the cost of keeping the client's core
    /// busy.
    #[arg(long, requires = "rate")]
    pub spin: bool,

    /// Messages in flight per connection (1 = closed loop: send, wait for
    /// the echo, send the next; a message over 64 KiB is received while it
    /// is sent, or a large one would deadlock an echo server).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub pipeline: u32,

    /// Threads, each running its own cellio runtime with a share of the
    /// connections (capped at --connections).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: u32,

    /// Traffic before measuring starts (not recorded) [default: 1s with
    /// --duration, 0s with --requests].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,

    /// A message whose echo makes no progress for this long is an error,
    /// also after the end of a `--duration` run (a message in flight then
    /// is waited for): timed from its send, and again from every read of
    /// part of the echo, so a large or trickling echo that keeps coming
    /// back is never timed out however long it takes in all. Also bounds
    /// each connect (with `--udp`: the probe's echo; a datagram's wait is
    /// `--loss-after`), and the wait at a TCP or Unix connection's end:
    /// once its echoes are in, it shuts down its sending side and reads
    /// until the server closes its own. Any byte that comes then is a
    /// mismatch; a server still open after this long is taken to have
    /// sent nothing more (not an error, but the run ends that much later).
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// Also report latency percentiles for each consecutive window of this
    /// length of the measured period (a message belongs to the window of
    /// its intended send time), e.g. `100ms`: a stall then spoils its
    /// windows, not the whole run's p99. Duration mode only; at most
    /// 1000 windows.
    #[arg(long, value_parser = parse_positive_duration, conflicts_with = "requests")]
    pub window: Option<Duration>,

    /// UDP instead of TCP: each connection is a UDP socket connected to its
    /// `--addr`, and a message is one datagram (`--size` at most 65 507
    /// bytes, 65 527 when every address is IPv6). A connection starts with
    /// a probe datagram whose echo must come back within `--timeout`, so
    /// that a server that is not there fails the run (exit 2) as over TCP.
    /// Echoes are checked byte for byte; a datagram whose echo does not
    /// come back within `--loss-after` (or, pipelined, before a later
    /// one's) is counted as lost (not an error) and the connection goes on;
    /// an echo of a datagram already settled (lost, or echoed before: a
    /// duplicate) is counted as late.
    #[arg(long)]
    pub udp: bool,

    /// With `--udp`: a datagram whose echo has not come back this long
    /// after its send is counted as lost, and an echo of it that comes
    /// later as late [default: 200ms]. `late` also counts duplicated
    /// echoes (of a datagram echoed before). With `--pipeline` above 1
    /// echoes are expected in order: a datagram is also counted as lost as
    /// soon as a later one's echo comes first, however soon that is (its
    /// own, if it comes, is then late), so on a path that reorders
    /// datagrams `lost` counts them too ("or overtaken" in the report).
    #[arg(long, value_parser = parse_positive_duration, requires = "udp")]
    pub loss_after: Option<Duration>,

    /// Print exactly one JSON object with the results on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `250us`, `1.5s`; a bare number is
/// seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 10s, 500ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "`{s}` has an unknown unit (use ns, us, ms, s, m or h)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("`{s}` must be longer than zero"));
    }
    Ok(d)
}

/// Slowest `--rate`: one message per 1000 s over all connections.
const MIN_RATE: f64 = 1e-3;
/// Fastest `--rate`.
const MAX_RATE: f64 = 1e9;

fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of messages per second"))?;
    // Below one message per 1000 s a connection's first send is due after
    // any sensible run (and far enough out, its due time overflows).
    if !r.is_finite() || !(MIN_RATE..=MAX_RATE).contains(&r) {
        return Err(format!(
            "`{s}` must be a rate from {MIN_RATE} to {MAX_RATE:e} messages per second"
        ));
    }
    Ok(r)
}

/// Parses the command line; a usage error becomes one line on stderr and
/// exit code 2 (`--help` and `--version` print as usual).
pub fn parse() -> Args {
    use clap::error::ErrorKind;
    match Args::try_parse() {
        Ok(args) => args,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                // clap's message is several lines (the error, sometimes
                // the arguments it names, then usage): keep what precedes
                // the usage, on one line.
                let text = e.to_string();
                let first = text
                    .lines()
                    .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more"))
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                let first = first.strip_prefix("error: ").unwrap_or(&first);
                let first = if first.is_empty() {
                    "invalid arguments"
                } else {
                    first
                };
                crate::fail_usage(&format!("{first} (try --help)"));
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_positive_duration("0s").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("20000"), Ok(20_000.0));
        assert_eq!(parse_rate("0.001"), Ok(0.001));
        assert_eq!(parse_rate("1e9"), Ok(1e9));
        for bad in ["0", "-5", "1e-300", "0.0009", "2e9", "nan", "inf", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
