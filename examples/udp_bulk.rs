//! A bulk UDP sender and receiver, with and without segment and receive
//! offload (Linux's `UDP_SEGMENT` and `UDP_GRO`): how many datagrams a
//! second one side moves, and the CPU each costs, on loopback or between
//! two machines.
//!
//! ```text
//! cargo run --release --example udp_bulk -- loopback --offload
//! cargo run --release --example udp_bulk -- recv --addr 0.0.0.0:7002 --offload   # machine A
//! cargo run --release --example udp_bulk -- send --to A:7002 --offload            # machine B
//! ```
//!
//! * The sender sends datagrams of `--size` bytes (default 1 200, a QUIC
//!   packet's), `--batch` of them (default 64) per `send_many`, as fast as
//!   the socket takes them, for `--duration` seconds. With `--offload` it
//!   queues them with `push_segmented` (one message per 54 of 1 200 bytes);
//!   without, one by one with `push`.
//! * The receiver takes them with `recv_many`; with `--offload` it turns on
//!   receive offload and its batch has 64 KiB slots. It counts datagrams
//!   and checks that each one's sequence number is the next (a datagram the
//!   kernel dropped shows as a gap: UDP has no flow control, and a sender
//!   flat out outruns most receivers; the count of gaps is reported, not an
//!   error). It waits up to 60 s for its first datagram (then reports
//!   none, exit 0), and stops `--duration` seconds after it, or after a
//!   second without one. Its batch is fixed (64 slots, or 8 of 64 KiB with
//!   `--offload`).
//! * Each side takes only the flags it uses (`recv`: no `--size` or
//!   `--batch`; `send`: no `--recv-buffer`): another is a flag error.
//! * `loopback` runs both in one process, each on its own worker thread.
//! * Each side prints one line: datagrams, bytes, datagrams per second, and
//!   the process's CPU time per datagram (user and system, from
//!   `getrusage`; in `loopback` both sides' together).
//! * A bad flag, a size too large for UDP (over IPv4, 65 507 bytes; `loopback`
//!   is IPv4), a `--to` of port 0: a one-line error and exit 2. An address
//!   that cannot be bound, a send the kernel refuses (no route to the
//!   destination, `ENETUNREACH` or `EHOSTUNREACH`, included; other than an
//!   ICMP report of an earlier datagram, or a full device queue: that
//!   datagram is dropped, not counted, and the sending goes on): a one-line
//!   error and exit 1.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cellio::net::udp::{RecvBatch, SendBatch, UdpSocket, MAX_DATAGRAM, MAX_MERGED};
use cellio::runtime::{spawn_local_on, timeout};
use cellio::{Builder, Runtime};
use clap::{Args as ClapArgs, Parser, Subcommand};

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(about = "Bulk UDP through cellio, with and without segment and receive offload")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Receive on `--addr` and report: waits up to 60 s for the first
    /// datagram, then stops `--duration` s after it, or after a second
    /// without one.
    Recv {
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1:7002")]
        addr: SocketAddr,
        #[command(flatten)]
        both: Both,
        #[command(flatten)]
        receiving: Receiving,
    },
    /// Send to `--to` and report.
    Send {
        /// Where to send.
        #[arg(long)]
        to: SocketAddr,
        #[command(flatten)]
        both: Both,
        #[command(flatten)]
        sending: Sending,
    },
    /// Both, in this process, over 127.0.0.1.
    Loopback {
        #[command(flatten)]
        both: Both,
        #[command(flatten)]
        sending: Sending,
        #[command(flatten)]
        receiving: Receiving,
    },
}

/// Flags both sides take.
#[derive(ClapArgs, Debug, Clone, Copy)]
struct Both {
    /// Seconds to send (the receiver: after its first datagram).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// Segment offload on the sender, receive offload on the receiver.
    #[arg(long)]
    offload: bool,
}

/// The sender's flags.
#[derive(ClapArgs, Debug, Clone, Copy)]
struct Sending {
    /// Bytes per datagram (at least 8, for the sequence number).
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u32).range(8..=MAX_DATAGRAM as i64))]
    size: u32,
    /// Datagrams per `send_many`.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,
}

/// The receiver's flags.
#[derive(ClapArgs, Debug, Clone, Copy)]
struct Receiving {
    /// The receiver's kernel buffer (`SO_RCVBUF`), in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    recv_buffer: usize,
}

/// What each side is given: every flag, those of the other side at their
/// defaults (which it does not read).
#[derive(Debug, Clone, Copy)]
struct Common {
    size: u32,
    batch: u32,
    duration: u64,
    offload: bool,
    recv_buffer: usize,
}

impl Common {
    fn of(both: Both, sending: Option<Sending>, receiving: Option<Receiving>) -> Common {
        let sending = sending.unwrap_or(Sending {
            size: 1200,
            batch: 64,
        });
        let receiving = receiving.unwrap_or(Receiving {
            recv_buffer: 4 << 20,
        });
        Common {
            size: sending.size,
            batch: sending.batch,
            duration: both.duration,
            offload: both.offload,
            recv_buffer: receiving.recv_buffer,
        }
    }
}

/// The largest UDP payload over IPv4 (IPv6's is [`MAX_DATAGRAM`]).
const MAX_DATAGRAM_V4: usize = 65_507;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = check(&args.mode) {
        eprintln!("udp_bulk: {e}");
        return ExitCode::from(2);
    }
    match run(args.mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp_bulk: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the flags cannot do together: a `--size` the destination's
/// address family cannot carry, a `--to` of port 0.
fn check(mode: &Mode) -> Result<(), String> {
    let (to, common) = match mode {
        Mode::Recv { .. } => return Ok(()),
        Mode::Send { to, sending, .. } => (*to, sending),
        Mode::Loopback { sending, .. } => (SocketAddr::from(([127, 0, 0, 1], 1)), sending),
    };
    if to.port() == 0 {
        return Err(format!("--to {to}: port 0 cannot be sent to"));
    }
    let (max, family) = match to {
        SocketAddr::V4(_) => (MAX_DATAGRAM_V4, "IPv4"),
        SocketAddr::V6(_) => (MAX_DATAGRAM, "IPv6"),
    };
    if common.size as usize > max {
        return Err(format!(
            "--size {}: a UDP datagram over {family} carries at most {max} bytes",
            common.size
        ));
    }
    Ok(())
}

fn run(mode: Mode) -> io::Result<()> {
    match mode {
        Mode::Recv {
            addr,
            both,
            receiving,
        } => Runtime::new()?.block_on(async move {
            let common = Common::of(both, None, Some(receiving));
            let socket = receiver(addr, &common)?;
            println!("receiving on {}", socket.local_addr()?);
            let report = receive(&socket, &common).await?;
            report.print("recv", cpu_time());
            Ok(())
        }),
        Mode::Send { to, both, sending } => Runtime::new()?.block_on(async move {
            let common = Common::of(both, Some(sending), None);
            let report = send(to, &common).await?;
            report.print("send", cpu_time());
            Ok(())
        }),
        Mode::Loopback {
            both,
            sending,
            receiving,
        } => {
            let common = Common::of(both, Some(sending), Some(receiving));
            let runtime = Builder::new().workers(2).build()?;
            runtime.block_on(async move {
                let socket = receiver("127.0.0.1:0".parse().unwrap(), &common)?;
                let to = socket.local_addr()?;
                // The receiver on worker 0, the sender on worker 1.
                let receiving =
                    spawn_local_on(0, move || async move { receive(&socket, &common).await });
                let sending = spawn_local_on(1, move || async move { send(to, &common).await });
                let sent = sending.await??;
                let received = receiving.await??;
                let cpu = cpu_time();
                sent.print("send", None);
                received.print("recv", cpu);
                Ok(())
            })
        }
    }
}

/// A bound receiving socket, with receive offload if asked for.
fn receiver(addr: SocketAddr, common: &Common) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr).map_err(|e| context(e, format!("binding {addr}")))?;
    socket.set_recv_buffer_size(common.recv_buffer)?;
    if common.offload {
        socket.enable_receive_offload()?;
    }
    Ok(socket)
}

/// What one side moved.
struct Report {
    datagrams: u64,
    bytes: u64,
    gaps: u64,
    elapsed: Duration,
}

impl Report {
    /// One line; `cpu`: the process's CPU time, to divide by the datagrams.
    fn print(&self, side: &str, cpu: Option<Duration>) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut line = format!(
            "{side}: {} datagrams, {:.1} MB in {secs:.2} s: {:.0} datagrams/s, {:.1} MB/s",
            self.datagrams,
            self.bytes as f64 / 1e6,
            self.datagrams as f64 / secs,
            self.bytes as f64 / 1e6 / secs,
        );
        if side == "recv" {
            line += &format!(", {} gaps in the sequence", self.gaps);
        }
        if let (Some(cpu), true) = (cpu, self.datagrams > 0) {
            line += &format!(
                ", {:.0} ns of CPU per datagram",
                cpu.as_nanos() as f64 / self.datagrams as f64
            );
        }
        println!("{line}");
    }
}

/// Sends `--batch` datagrams per `send_many` to `to` for `--duration`.
async fn send(to: SocketAddr, common: &Common) -> io::Result<Report> {
    let socket = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    let (size, batch) = (common.size as usize, common.batch as usize);
    let mut bytes = vec![0u8; size * batch];
    let mut queued = SendBatch::new();
    let (mut sequence, mut sent) = (0u64, 0u64);
    let start = Instant::now();
    let end = start + Duration::from_secs(common.duration);
    while Instant::now() < end {
        for datagram in bytes.chunks_mut(size) {
            datagram[..8].copy_from_slice(&sequence.to_le_bytes());
            sequence += 1;
        }
        if common.offload {
            queued.push_segmented(&bytes, size, to)?;
        } else {
            for datagram in bytes.chunks(size) {
                queued.push(datagram, to)?;
            }
        }
        let (before, mut dropped) = (queued.len(), 0);
        while let Err(e) = socket.send_many(&mut queued).await {
            if !transient(&e) {
                return Err(context(e, format!("sending to {to}")));
            }
            // An ICMP report of an earlier datagram (no receiver yet, say)
            // or a full queue: the datagram it is charged to is dropped,
            // the rest go on.
            eprintln!("udp_bulk: send: {e}");
            let left = queued.len();
            queued.skip_next();
            dropped += left - queued.len();
        }
        sent += (before - dropped) as u64;
    }
    Ok(Report {
        datagrams: sent,
        bytes: sent * size as u64,
        gaps: 0,
        elapsed: start.elapsed(),
    })
}

/// A send error that drops one datagram and says nothing of the next: an
/// ICMP report of an earlier datagram, or the device's queue full.
///
/// Not `ENETUNREACH` or `EHOSTUNREACH`: the socket is not connected, so
/// no ICMP report comes back on it, and from a send they are the routing
/// table's answer for this destination (no route, as in a container with
/// loopback only; an `unreachable` route), the same for every datagram, as
/// `EACCES` is. (They were taken for reports: each datagram printed a line
/// and the run ended with exit 0; found by a review.)
fn transient(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionRefused || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// Receives until `--duration` after the first datagram, or a second
/// without one.
async fn receive(socket: &UdpSocket, common: &Common) -> io::Result<Report> {
    let slot = if common.offload {
        MAX_MERGED
    } else {
        MAX_DATAGRAM
    };
    let mut batch = RecvBatch::new(if common.offload { 8 } else { 64 }, slot);
    let (mut datagrams, mut bytes, mut gaps, mut expected) = (0u64, 0u64, 0u64, 0u64);
    let (mut start, mut last) = (None, Instant::now());
    loop {
        let waited = match start {
            None => timeout(Duration::from_secs(60), socket.recv_many(&mut batch)).await,
            Some(_) => timeout(Duration::from_secs(1), socket.recv_many(&mut batch)).await,
        };
        let Ok(received) = waited else { break };
        received?;
        last = Instant::now();
        let began = *start.get_or_insert(last);
        for datagram in batch.iter() {
            let (data, _) = datagram?;
            let sequence = data.get(..8).map_or(u64::MAX, |head| {
                u64::from_le_bytes(head.try_into().unwrap())
            });
            if sequence != expected {
                gaps += 1;
            }
            expected = sequence.wrapping_add(1);
            datagrams += 1;
            bytes += data.len() as u64;
        }
        if began.elapsed() >= Duration::from_secs(common.duration) {
            break;
        }
    }
    Ok(Report {
        datagrams,
        bytes,
        gaps,
        // From the first datagram to the last.
        elapsed: start.map_or(Duration::ZERO, |start| last - start),
    })
}

/// The process's user and system CPU time so far.
fn cpu_time() -> Option<Duration> {
    // SAFETY: `usage` is valid for the kernel's write of one `rusage`.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0).then_some(usage)
    }?;
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
