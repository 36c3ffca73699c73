//! A UDP echo server: every datagram goes back to its sender, exactly.
//!
//! ```text
//! cargo run --release --example udp_echo_server -- --addr 127.0.0.1:7001
//! ```
//!
//! * Prints `listening on ADDR` once bound (port 0 picks a free port).
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
//!   logged and skipped, never fatal.
//! * `--recv-buffer BYTES` sets each socket's kernel receive buffer. The
//!   default (208 KiB on most Linux systems) queued 256 datagrams of 64
//!   bytes on the benchmark VM; with 200 in flight and the server starved
//!   of CPU, the kernel dropped some (`RcvbufErrors`), and with 1 MiB none
//!   (docs/guide.md).
//! * SIGINT/SIGTERM: stop and exit 0. A bad flag or an address that cannot
//!   be bound: a one-line error and a non-zero exit.
//! * `--restart-socket PATH` / `--take-over PATH`: a restart that loses no
//!   datagram: the running server hands its sockets to the new one, which
//!   receives whatever is queued on them (`common/restart_udp.rs`), as the
//!   TCP servers hand over their listeners.
//! * Started by systemd socket activation (`LISTEN_FDS`, e.g. a `.socket`
//!   unit with `ListenDatagram=`), it serves the UDP sockets systemd
//!   passed instead of binding `--addr`; a passed descriptor that is not a
//!   UDP socket is a one-line error. `--recv-buffer` applies to every socket
//!   served, passed or taken over.

use std::net::SocketAddr;
use std::process::ExitCode;

use cellio::net::udp::{
    BindOptions, RecvBatch, SendBatch, UdpIo, UdpSocket, MAX_BATCH, MAX_DATAGRAM,
};
use cellio::runtime::until_shutdown;
use cellio::Runtime;
use clap::Parser;
use cli::context;

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(about = "A cellio UDP echo server")]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: SocketAddr,
    /// `futures`: the socket's futures; `poll`: a `UdpIo` (cells held and
    /// confined between datagrams); `batch`: `recv_many`/`send_many`.
    #[arg(long, value_enum, default_value_t = Api::Futures)]
    api: Api,
    /// With `--api batch`: the most datagrams one receive takes. Each slot
    /// holds the largest datagram (64 KiB): 32 take 2 MiB per worker.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=MAX_BATCH as i64))]
    batch: u16,
    /// Worker threads, each with its own socket on the port.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: u16,
    /// Each socket's kernel receive buffer (`SO_RCVBUF`), in bytes: how much
    /// a burst may queue before the kernel drops datagrams [default: the
    /// system's, `net.core.rmem_default`].
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

/// Echoes until a shutdown begins.
async fn serve(socket: UdpSocket) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Some(received) = until_shutdown(socket.recv_from(&mut buf)).await else {
            return Ok(()); // shutting down
        };
        match received {
            Ok((n, from)) => {
                if let Err(e) = socket.send_to(&buf[..n], from).await {
                    eprintln!("udp_echo_server: reply to {from}: {e}");
                }
            }
            // A peer's behaviour (an earlier reply refused by its host,
            // say) never stops the server.
            Err(e) => eprintln!("udp_echo_server: receive: {e}"),
        }
    }
}

/// [`serve`] through a `UdpIo`.
async fn serve_io(socket: UdpSocket) -> std::io::Result<()> {
    let mut io = UdpIo::new(socket);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Some(received) = until_shutdown(io.recv_from(&mut buf)).await else {
            return Ok(());
        };
        match received {
            Ok((n, from)) => {
                if let Err(e) = io.send_to(&buf[..n], from).await {
                    eprintln!("udp_echo_server: reply to {from}: {e}");
                }
            }
            Err(e) => eprintln!("udp_echo_server: receive: {e}"),
        }
    }
}

/// [`serve`] on batches: each receive takes every datagram queued (up to
/// `batch`), and the replies go out together.
async fn serve_batch(socket: UdpSocket, batch: u16) -> std::io::Result<()> {
    let mut received = RecvBatch::new(usize::from(batch), MAX_DATAGRAM);
    let mut replies = SendBatch::new();
    loop {
        let Some(got) = until_shutdown(socket.recv_many(&mut received)).await else {
            return Ok(());
        };
        if let Err(e) = got {
            eprintln!("udp_echo_server: receive: {e}");
            continue;
        }
        for datagram in received.iter() {
            match datagram {
                Ok((bytes, from)) => replies.push(bytes, from)?,
                Err(e) => eprintln!("udp_echo_server: receive: {e}"),
            }
        }
        // A reply refused (its sender gone, say) is skipped, never fatal.
        while let Err(e) = socket.send_many(&mut replies).await {
            eprintln!("udp_echo_server: reply: {e}");
            replies.skip_next();
        }
    }
}

/// Serves `socket` through the API the flags chose.
async fn serve_with(socket: UdpSocket, api: Api, batch: u16) -> std::io::Result<()> {
    match api {
        Api::Futures => serve(socket).await,
        Api::Poll => serve_io(socket).await,
        Api::Batch => serve_batch(socket, batch).await,
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
    let (api, batch, recv_buffer) = (args.api, args.batch, args.recv_buffer);
    runtime.block_on(async {
        cellio::spawn(shutdown_signals::shut_down_on_signals()?);
        let options = BindOptions {
            reuse_port: workers > 1,
            ..BindOptions::default()
        };
        // `--recv-buffer` on each worker's socket.
        let prepare = move |socket: &UdpSocket| match recv_buffer {
            Some(bytes) => socket.set_recv_buffer_size(bytes as usize),
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
        println!("listening on {}", socket.local_addr()?);
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

fn main() -> ExitCode {
    cli::exit_code("udp_echo_server", run(&Args::parse()))
}
