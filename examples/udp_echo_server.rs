//! A UDP echo server: every datagram goes back to its sender, exactly.
//!
//! ```text
//! cargo run --release --example udp_echo_server -- --addr 127.0.0.1:7001
//! ```
//!
//! * Prints `listening on ADDR` once bound (port 0 picks a free port).
//! * Bind the address clients send to, not a wildcard (`0.0.0.0`, `[::]`):
//!   the server does not read the address a datagram was sent to
//!   (`IP_PKTINFO`), so a reply from a wildcard-bound socket goes out from
//!   the address the kernel picks for the sender's route. On a host with
//!   several addresses that may not be the one the sender sent to, and a
//!   connected client (`load --udp`) drops the reply. A wildcard address
//!   is served, with a warning on stderr at start.
//! * One socket per worker (`--workers`, default 1; with more, each binds
//!   the port with `SO_REUSEPORT` and the kernel spreads senders over
//!   them). A receive that finds a datagram queued completes at once;
//!   otherwise it parks on the socket's receive cell. Nothing is allocated
//!   per datagram.
//! * `--api futures` (the default) serves through the socket's
//!   `recv_from`/`send_to` futures; `--api poll` through a `UdpIo`, which
//!   keeps the socket's cells reserved (and confined to the worker)
//!   between datagrams; `--api batch` through `recv_many`/`send_many`:
//!   every datagram queued (up to `--batch`, 32) in one `recvmmsg`, the
//!   replies in one `sendmmsg`.
//! * A datagram longer than the buffer (which holds the largest UDP
//!   payload) cannot happen; a sender that is gone (an ICMP report) is
//!   logged and skipped, never fatal, and so is a reply the kernel refuses
//!   (to a source address nobody can answer, such as port 0: UDP source
//!   addresses cost nothing to forge). Receive errors that keep coming (the
//!   socket's own, which no datagram ends) do not spin: after a few in a
//!   row each worker waits before receiving again (10 ms, doubling to 1 s,
//!   until a receive succeeds). Each worker logs at most one line a second
//!   of receive errors and one of reply errors, with how many it left out
//!   (those left out in its last second are told when it stops).
//! * A socket given to it (passed by systemd, or taken over) with receive
//!   offload (`UDP_GRO`) on is served through `recv_many` with slots of
//!   `MAX_MERGED` bytes, whatever `--api` says (one line on stderr tells):
//!   the kernel may hand it several datagrams merged in one buffer, which
//!   only `recv_many` splits (a single receive is refused). Turning the
//!   option off instead would lose datagrams: buffers merged before that
//!   would come out as one datagram, their lengths gone. Each datagram is
//!   echoed on its own.
//! * `--recv-buffer BYTES` sets each socket's kernel receive buffer. The
//!   default (208 KiB on most Linux systems) queued 256 datagrams of 64
//!   bytes on the benchmark VM; with 200 in flight and the server starved
//!   of CPU, the kernel dropped some (`RcvbufErrors`), and with 1 MiB none
//!   (docs/guide.md).
//! * SIGINT/SIGTERM: stop and exit 0 (the workers get a second to finish
//!   the echoes they are sending; a second signal meanwhile, 500 ms or
//!   more after the first, ends the process at once, as the signal's
//!   default action would; after a hand-over to `--take-over`, begun by
//!   no signal, the first signal does nothing visible and the second ends
//!   it). A bad flag or
//!   an address that cannot be bound: a one-line error and a non-zero exit.
//! * `--restart-socket PATH` / `--take-over PATH`: a restart that loses no
//!   datagram: the running server hands its sockets to the new one, which
//!   receives whatever is queued on them (`common/restart_udp.rs`), as the
//!   TCP servers hand over their listeners.
//! * Started by systemd socket activation (`LISTEN_FDS`, e.g. a `.socket`
//!   unit with `ListenDatagram=`), it serves the UDP sockets systemd
//!   passed instead of binding `--addr`; a passed descriptor that is not a
//!   UDP socket is a one-line error. `--recv-buffer` applies to every socket
//!   served, passed or taken over.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cellio::net::udp::{
    BindOptions, RecvBatch, SendBatch, UdpIo, UdpSocket, MAX_BATCH, MAX_DATAGRAM, MAX_MERGED,
};
use cellio::runtime::{sleep, until_shutdown};
use cellio::Runtime;
use clap::Parser;
use cli::context;

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(about = "A cellio UDP echo server")]
struct Args {
    /// Address to bind: the one clients send to. A wildcard address
    /// (`0.0.0.0`, `[::]`) is served with a warning: replies then go out
    /// from the address the kernel picks for each sender, maybe not the one
    /// it sent to, and a connected client drops those.
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: SocketAddr,
    /// `futures`: the socket's futures; `poll`: a `UdpIo` (cells held and
    /// confined between datagrams); `batch`: `recv_many`/`send_many`.
    #[arg(long, value_enum, default_value_t = Api::Futures)]
    api: Api,
    /// With `--api batch` (an error with another): the most datagrams one
    /// receive takes. Each slot holds the largest datagram (64 KiB): 32
    /// take 2 MiB per worker [default: 32].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=MAX_BATCH as i64))]
    batch: Option<u16>,
    /// Worker threads, each with its own socket on the port.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: u16,
    /// Each socket's kernel receive buffer (`SO_RCVBUF`), in bytes: how much
    /// a burst may queue before the kernel drops datagrams (capped by the
    /// system, `net.core.rmem_max` on Linux: one line on stderr tells what
    /// the socket got then) [default: the system's, `net.core.rmem_default`].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1024..=1 << 30))]
    recv_buffer: Option<u32>,
    #[command(flatten)]
    restart: restart_udp::Restart,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Futures,
    Poll,
    Batch,
}

/// One kind of error, logged at most once a second, with how many were
/// left out since the last line: a flood of them (a peer sending datagrams
/// that cannot be answered, say) is a line a second, not a line each.
struct Lines {
    /// What failed: `receive` or `reply`.
    what: &'static str,
    /// When the last line was logged.
    logged_at: Option<Instant>,
    /// Errors since then that were not logged.
    unlogged: u64,
}

impl Lines {
    /// The least time between two lines.
    const EVERY: Duration = Duration::from_secs(1);

    fn new(what: &'static str) -> Self {
        Self {
            what,
            logged_at: None,
            unlogged: 0,
        }
    }

    /// Logs `e` (`peer`: the address a reply was for) unless a line went
    /// out less than a second ago; counts it otherwise.
    #[cold]
    fn log(&mut self, e: &io::Error, peer: Option<SocketAddr>) {
        let now = Instant::now();
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < Self::EVERY)
        {
            self.unlogged += 1;
            return;
        }
        let what = match peer {
            Some(peer) => format!("{} to {peer}", self.what),
            None => self.what.to_string(),
        };
        match std::mem::take(&mut self.unlogged) {
            0 => eprintln!("udp_echo_server: {what}: {e}"),
            left_out => eprintln!(
                "udp_echo_server: {what}: {e} ({left_out} more {} error(s) since the last line)",
                self.what
            ),
        }
        self.logged_at = Some(now);
    }
}

impl Drop for Lines {
    /// The errors left out since the last line are told when the loop
    /// ends, so a shutdown within a second of a flood does not hide them.
    fn drop(&mut self) {
        if self.unlogged > 0 {
            eprintln!(
                "udp_echo_server: {} more {} error(s) since the last line, not logged",
                self.unlogged, self.what
            );
        }
    }
}

/// Receive errors in a row, for one receive loop.
///
/// A peer's error (an ICMP report for an earlier reply) is the socket's
/// pending error: one receive returns it, and the next one gets a datagram
/// or waits. One that comes back at once, receive after receive, is the
/// socket's own and no datagram will end it; without a pause the loop
/// would spin at 100% of a core and flood stderr. So: the first
/// [`ReceiveErrors::QUIET`] errors in a row pass at once, each further one
/// waits (10 ms, doubling to 1 s), and a received datagram ends the run.
/// Every error is counted; at most one line a second is logged.
struct ReceiveErrors {
    /// Errors since the last received datagram.
    in_row: u32,
    /// The next wait, once past [`QUIET`](Self::QUIET) (stale while
    /// `in_row` is 0).
    wait: Duration,
    lines: Lines,
}

impl ReceiveErrors {
    /// Errors in a row that pass without a wait.
    const QUIET: u32 = 8;
    const FIRST_WAIT: Duration = Duration::from_millis(10);
    const LONGEST_WAIT: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self {
            in_row: 0,
            wait: Self::FIRST_WAIT,
            lines: Lines::new("receive"),
        }
    }

    /// A datagram arrived: the run of errors, if any, is over. (One store
    /// per datagram: the next run's first error resets the wait.)
    #[inline(always)]
    fn received(&mut self) {
        self.in_row = 0;
    }

    /// Logs `e` (unless a line went out less than a second ago), then
    /// waits if the errors keep coming. `None`: a shutdown began.
    async fn failed(&mut self, e: &io::Error) -> Option<()> {
        self.lines.log(e, None);
        if self.in_row == 0 {
            self.wait = Self::FIRST_WAIT;
        }
        self.in_row = self.in_row.saturating_add(1);
        if self.in_row <= Self::QUIET {
            return Some(());
        }
        let wait = self.wait;
        self.wait = (wait * 2).min(Self::LONGEST_WAIT);
        until_shutdown(sleep(wait)).await
    }
}

/// Echoes until a shutdown begins.
async fn serve(socket: UdpSocket) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut errors = ReceiveErrors::new();
    let mut reply_errors = Lines::new("reply");
    loop {
        let Some(received) = until_shutdown(socket.recv_from(&mut buf)).await else {
            return Ok(()); // shutting down
        };
        match received {
            Ok((n, from)) => {
                errors.received();
                if let Err(e) = socket.send_to(&buf[..n], from).await {
                    reply_errors.log(&e, Some(from));
                }
            }
            // A peer's behaviour (an earlier reply refused by its host,
            // say) never stops the server.
            Err(e) => {
                if errors.failed(&e).await.is_none() {
                    return Ok(());
                }
            }
        }
    }
}

/// [`serve`] through a `UdpIo`.
async fn serve_io(socket: UdpSocket) -> std::io::Result<()> {
    let mut io = UdpIo::new(socket);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut errors = ReceiveErrors::new();
    let mut reply_errors = Lines::new("reply");
    loop {
        let Some(received) = until_shutdown(io.recv_from(&mut buf)).await else {
            return Ok(());
        };
        match received {
            Ok((n, from)) => {
                errors.received();
                if let Err(e) = io.send_to(&buf[..n], from).await {
                    reply_errors.log(&e, Some(from));
                }
            }
            Err(e) => {
                if errors.failed(&e).await.is_none() {
                    return Ok(());
                }
            }
        }
    }
}

/// [`serve`] on batches: each receive takes every datagram queued (up to
/// `batch` buffers of `slot_size` bytes), and the replies go out together.
async fn serve_batch(socket: UdpSocket, batch: u16, slot_size: usize) -> std::io::Result<()> {
    let mut received = RecvBatch::new(usize::from(batch), slot_size);
    let mut replies = SendBatch::new();
    let mut errors = ReceiveErrors::new();
    let mut reply_errors = Lines::new("reply");
    loop {
        let Some(got) = until_shutdown(socket.recv_many(&mut received)).await else {
            return Ok(());
        };
        if let Err(e) = got {
            if errors.failed(&e).await.is_none() {
                return Ok(());
            }
            continue;
        }
        errors.received();
        for datagram in received.iter() {
            match datagram {
                Ok((bytes, from)) => replies.push(bytes, from)?,
                Err(e) => errors.lines.log(&e, None),
            }
        }
        // A reply refused (its sender gone, say) is skipped, never fatal.
        while let Err(e) = socket.send_many(&mut replies).await {
            reply_errors.log(&e, None);
            replies.skip_next();
        }
    }
}

/// Serves `socket` through the API the flags chose; one with receive
/// offload on (a socket given to the server) through `recv_many` with
/// slots that hold a merged buffer, whatever the API (see the module docs).
async fn serve_with(socket: UdpSocket, api: Api, batch: u16) -> std::io::Result<()> {
    if socket.receive_offload() {
        if api != Api::Batch {
            eprintln!(
                "udp_echo_server: receive offload (UDP_GRO) is on on {}: served through \
                 recv_many, whatever --api says",
                socket.local_addr()?
            );
        }
        return serve_batch(socket, batch, MAX_MERGED).await;
    }
    match api {
        Api::Futures => serve(socket).await,
        Api::Poll => serve_io(socket).await,
        Api::Batch => serve_batch(socket, batch, MAX_DATAGRAM).await,
    }
}

#[path = "common/accept_backoff.rs"]
#[allow(dead_code)] // the restart socket's backoff (`handover.rs`) only
mod accept_backoff;
#[path = "common/cli.rs"]
mod cli;
#[path = "common/restart_udp.rs"]
mod restart_udp;
#[path = "common/shutdown_signals.rs"]
mod shutdown_signals;

/// How long the workers may take to finish the echoes they are sending
/// when the server stops.
const SEND_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn run(args: &Args) -> std::io::Result<()> {
    // Before anything opens a descriptor: one systemd says it passed must be open.
    restart_udp::check_systemd_passed()?;
    let workers = usize::from(args.workers);
    let runtime = Runtime::builder()
        .workers(workers)
        .build()
        .map_err(|e| context("cannot start the cellio runtime", e))?;
    let (api, recv_buffer) = (args.api, args.recv_buffer);
    let batch = args.batch.unwrap_or(32);
    runtime.block_on(async {
        cellio::spawn(shutdown_signals::shut_down_on_signals()?);
        let options = BindOptions {
            reuse_port: workers > 1,
            ..BindOptions::default()
        };
        // `--recv-buffer` on each worker's socket.
        let prepare = move |socket: &UdpSocket| match recv_buffer {
            Some(bytes) => {
                socket.set_recv_buffer_size(bytes as usize)?;
                tell_if_capped(socket, bytes as usize);
                Ok(())
            }
            None => Ok(()),
        };
        let serve_there = move |socket| async move {
            if let Err(e) = serve_with(socket, api, batch).await {
                eprintln!("udp_echo_server: {e}");
            }
        };
        let socket = restart_udp::sockets(
            "udp_echo_server",
            &args.restart,
            args.addr,
            options,
            prepare,
            workers,
            serve_there,
        )
        .await?;
        let local = socket.local_addr()?;
        println!("listening on {local}");
        if local.ip().is_unspecified() {
            warn_wildcard(local);
        }
        serve_with(socket, api, batch).await
    })?;
    // The other workers' loops stop at their next receive: let one that
    // is still sending an echo (a send the socket could not take at once
    // waits for room) finish it rather than cancel it.
    let cancelled = runtime.shutdown_timeout(SEND_GRACE);
    if cancelled > 0 {
        eprintln!("udp_echo_server: {cancelled} task(s) cancelled after {SEND_GRACE:?}");
    }
    restart_udp::failed()
}

/// A socket bound to a wildcard address receives datagrams sent to any of
/// the host's addresses, but this server does not read which one a
/// datagram was sent to (`IP_PKTINFO`), so its reply goes out from the
/// address the kernel picks for the sender's route: on a host with several
/// addresses, maybe not the one the sender sent to, and a connected client
/// (`load --udp`) drops such a reply. Said once, at start.
fn warn_wildcard(local: SocketAddr) {
    eprintln!(
        "udp_echo_server: warning: bound to the wildcard address {local}: a reply goes out \
         from the address the kernel picks for its sender, not necessarily the one the \
         datagram was sent to, and a connected client (load --udp) drops a reply from \
         another address; bind the address clients send to"
    );
}

/// Says once (the cap is the system's: every socket gets the same) what
/// the socket's receive buffer is when the kernel gave less than
/// `--recv-buffer` asked for. Linux reports twice the size set (the rest
/// is its bookkeeping), so there the figure compared is half the report.
fn tell_if_capped(socket: &UdpSocket, asked: usize) {
    static TOLD: std::sync::Once = std::sync::Once::new();
    let Ok(reported) = socket.recv_buffer_size() else {
        return;
    };
    let got = if cfg!(any(target_os = "linux", target_os = "android")) {
        reported / 2
    } else {
        reported
    };
    if got < asked {
        TOLD.call_once(|| {
            eprintln!(
                "udp_echo_server: --recv-buffer {asked}: the system capped each socket's \
                 receive buffer at {got} bytes (SO_RCVBUF reads {reported}; on Linux raise \
                 net.core.rmem_max for more)"
            )
        });
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.batch.is_some() && args.api != Api::Batch {
        cli::flag_conflict::<Args>("udp_echo_server", "--batch applies to --api batch only");
    }
    if let Some(message) = restart_udp::too_many_to_offer(&args.restart, args.workers.into()) {
        cli::flag_conflict::<Args>("udp_echo_server", &message);
    }
    cli::exit_code("udp_echo_server", run(&args))
}
