//! A TCP proxy: every connection accepted is joined to a new connection to
//! the upstream server, and bytes flow both ways until both sides close.
//!
//! ```text
//! cargo run --release --example echo_server                   # upstream, 127.0.0.1:7000
//! cargo run --release --example proxy -- --upstream 127.0.0.1:7000 --addr 127.0.0.1:7001
//! cargo run --release --example load -- --addr 127.0.0.1:7001 --connections 50 --duration 5s
//! ```
//!
//! * Each connection is one task running `copy_bidirectional`, whose two
//!   8 KiB buffers live inside the task (a block of the task pool, reused
//!   by the next connection): the bytes it moves allocate nothing. (A host
//!   name as `--upstream` is looked up per connection, which allocates.)
//! * A client's half-close passes through (the upstream reads end of
//!   stream and may still answer), and so does the upstream's. So does an
//!   abort: a connection that ends with an error (a reset, from either
//!   side) is reset on both sides, so a client does not take a response
//!   cut by the upstream's reset for a whole one. A connection still open
//!   when the shutdown's grace period ends is reset on both sides too.
//! * `--splice` (Linux): move the bytes through the kernel instead
//!   (`splice_bidirectional`: socket → pipe → socket, no copy through user
//!   memory; two pipes, four more descriptors, per connection);
//!   `--splice-auto`: copy small reads and splice large ones
//!   (`splice_bidirectional_auto`; a pipe only for a direction that needs
//!   one).
//! * `--upstream` may be a host name: it is resolved off the worker, once
//!   per connection (so a changed DNS answer is picked up). Resolved at
//!   start too: one that names no address, or the proxy's own `--addr`
//!   (each connection would loop back to the proxy), is an error.
//! * `--connect-timeout-ms MS`: an upstream that does not answer in time
//!   closes the client's connection, with one line on stderr.
//! * `--workers N`: thread-per-core, one `SO_REUSEPORT` listener per worker.
//! * SIGINT/SIGTERM: stop accepting, give open connections `--grace-ms` to
//!   finish, then exit 0. A second signal during the grace period, 500 ms
//!   or more after the first (one sooner is taken for the same one
//!   delivered twice, as through a forwarding wrapper), ends the process
//!   at once, as the signal's default action would. After a hand-over
//!   (`--take-over`), the predecessor began its grace period without a
//!   signal: the first signal it gets does nothing visible, the second
//!   ends it.
//! * `--restart-socket PATH` / `--take-over PATH`: a restart that refuses
//!   no connection, as the echo server's (`common/restart.rs`).
//!
//! A connection's error ends that connection only. At start the soft limit
//! on open files is raised to the hard limit (each connection holds two).
//! The accept loop opens a connection's upstream socket before it accepts
//! the client, so out of descriptors the clients wait in the listen
//! backlog (the loop backs off instead of spinning) rather than being
//! accepted and closed for want of an upstream connection (another error
//! opening it, such as a disabled IPv6, is the connection's: one line).
//! A host name's lookup needs descriptors too: when it fails, the
//! addresses named at start are used. `--splice` opens its pipes later,
//! and a connection that cannot have them is reset; `--splice-auto`
//! copies instead. Such an error, the proxy's own (out of descriptors or
//! memory), is told on stderr: at most a line a second, the next one
//! saying how many were left out since (and a last line, when the proxy
//! stops, for those of its last second). A peer's reset is not told.

use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::process::ExitCode;

use std::time::{Duration, Instant};

use accept_backoff::accept_until_shutdown;
use cellio::net::copy_bidirectional;
use cellio::runtime::timeout;
use cellio::{
    spawn, spawn_local, Builder, ListenOptions, TcpIo, TcpListener, TcpSocket, TcpStream,
};
use clap::Parser;
use cli::context;
use worker_listeners::Open;

#[derive(Parser, Debug)]
#[command(about = "cellio TCP proxy: joins each client to a connection to the upstream")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: SocketAddr,
    /// The server to forward to: `host:port` or an address.
    #[arg(long, default_value = "127.0.0.1:7000")]
    upstream: String,
    /// Worker threads, each with its own listener on the port.
    #[arg(long, default_value_t = NonZeroU16::MIN)]
    workers: NonZeroU16,
    /// How long a connection to the upstream may take (milliseconds).
    #[arg(long, default_value_t = 5000)]
    connect_timeout_ms: u64,
    /// On SIGINT/SIGTERM, how long open connections get to finish (a second
    /// signal, 500 ms or more after the first, ends the process at once).
    #[arg(long, default_value_t = 5000)]
    grace_ms: u64,
    /// Move bytes with splice(2) through a pipe per direction (Linux).
    #[arg(long, conflicts_with = "splice_auto")]
    splice: bool,
    /// Copy small reads and splice large ones, per direction (Linux).
    #[arg(long)]
    splice_auto: bool,
    #[command(flatten)]
    restart: restart::Restart,
}

/// What every connection task needs.
#[derive(Clone)]
struct Route {
    upstream: std::sync::Arc<str>,
    /// `--upstream` as an address, if it is one (not a host name): no
    /// lookup per connection.
    literal: Option<SocketAddr>,
    /// The addresses `--upstream` named at start (at least one): the
    /// first's family is that of the socket opened before each accept;
    /// all are used when a lookup fails.
    resolved: std::sync::Arc<[SocketAddr]>,
    connect_timeout: Duration,
    splice: bool,
    splice_auto: bool,
}

/// Joins `client` to a new connection to the upstream, made on `socket`
/// (opened before the client was accepted), until both close. `_open`
/// tells `worker_listeners::finish` whether the shutdown cancelled it.
async fn proxy(
    client: TcpStream,
    peer: SocketAddr,
    socket: Option<TcpSocket>,
    route: Route,
    _open: Open,
) {
    let upstream = match timeout(route.connect_timeout, connect(socket, &route)).await {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(e)) => return eprintln!("proxy: {peer}: cannot reach {}: {e}", route.upstream),
        Err(_) => {
            return eprintln!(
                "proxy: {peer}: {} did not answer within {:?}",
                route.upstream, route.connect_timeout
            )
        }
    };
    // Small messages go out at once both ways (no Nagle delay).
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let moved = if route.splice || route.splice_auto {
        let mut pair = ResetUnlessEnded::new([client, upstream]);
        let [client, upstream] = &pair.streams;
        let moved = splice(client, upstream, route.splice_auto).await;
        pair.ended = moved.is_ok();
        moved
    } else {
        let mut pair = ResetUnlessEnded::new([TcpIo::new(client), TcpIo::new(upstream)]);
        let [client, upstream] = &mut pair.streams;
        let moved = copy_bidirectional(client, upstream).await;
        pair.ended = moved.is_ok();
        moved
    };
    if let Err(e) = moved {
        if accept_backoff::out_of_resources(&e) {
            // The proxy's own: a pipe `--splice` could not make, say.
            OWN_ERRORS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .tell(peer, &e);
        } else {
            // A reset from either side is ordinary for a proxy: say so quietly.
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// The connection errors that are the proxy's own (out of descriptors or
/// memory), told on stderr: one line a second at most, the next with how
/// many were left out since.
static OWN_ERRORS: std::sync::Mutex<OwnErrors> = std::sync::Mutex::new(OwnErrors {
    told_at: None,
    untold: 0,
});

struct OwnErrors {
    /// When the last line went out.
    told_at: Option<Instant>,
    /// Errors since then that were not told.
    untold: u64,
}

impl OwnErrors {
    /// The least time between two lines.
    const EVERY: Duration = Duration::from_secs(1);

    /// Tells `e`, which ended the connection of `peer`, unless a line went
    /// out less than a second ago; counts it otherwise.
    #[cold]
    fn tell(&mut self, peer: SocketAddr, e: &io::Error) {
        let now = Instant::now();
        if self
            .told_at
            .is_some_and(|at| now.duration_since(at) < Self::EVERY)
        {
            self.untold += 1;
            return;
        }
        match std::mem::take(&mut self.untold) {
            0 => eprintln!("proxy: {peer}: connection reset: {e}"),
            left_out => eprintln!(
                "proxy: {peer}: connection reset: {e} ({left_out} more reset so since the last line)"
            ),
        }
        self.told_at = Some(now);
    }

    /// At the end: the errors left out since the last line, so a shutdown
    /// within a second of them does not hide them.
    fn tell_the_rest(&mut self) {
        match std::mem::take(&mut self.untold) {
            0 => {}
            left_out => eprintln!(
                "proxy: {left_out} more connection(s) reset for want of resources since the last line"
            ),
        }
    }
}

/// A joined connection's two streams, reset (a zero linger makes the
/// close send RST) when dropped unless the join `ended` `Ok`: an abort
/// passes through (an error, such as either side's reset), and so does a
/// connection the proxy abandons (the shutdown cancels its task after the
/// grace period). Closed instead, the peers would read a clean end of
/// stream and take a cut response, or a cut upload, for a whole one.
struct ResetUnlessEnded<S: AsStream> {
    streams: [S; 2],
    ended: bool,
}

impl<S: AsStream> ResetUnlessEnded<S> {
    fn new(streams: [S; 2]) -> Self {
        Self {
            streams,
            ended: false,
        }
    }
}

impl<S: AsStream> Drop for ResetUnlessEnded<S> {
    fn drop(&mut self) {
        if !self.ended {
            for stream in &self.streams {
                let _ = stream.as_stream().set_linger(Some(Duration::ZERO));
            }
        }
    }
}

/// The stream under a join's side: a [`TcpStream`] itself, or a
/// [`TcpIo`]'s.
trait AsStream {
    fn as_stream(&self) -> &TcpStream;
}

impl AsStream for TcpStream {
    fn as_stream(&self) -> &TcpStream {
        self
    }
}

impl AsStream for TcpIo {
    fn as_stream(&self) -> &TcpStream {
        self.get_ref()
    }
}

/// Moves the bytes both ways through the kernel (splice(2)), splicing
/// only large reads if `auto`.
#[cfg(target_os = "linux")]
async fn splice(client: &TcpStream, upstream: &TcpStream, auto: bool) -> io::Result<(u64, u64)> {
    if auto {
        cellio::net::splice_bidirectional_auto(client, upstream).await
    } else {
        cellio::net::splice_bidirectional(client, upstream).await
    }
}

/// No splice(2) here: [`run`] refuses `--splice` and `--splice-auto`
/// before it serves, so no connection comes this way.
#[cfg(not(target_os = "linux"))]
async fn splice(_: &TcpStream, _: &TcpStream, _: bool) -> io::Result<(u64, u64)> {
    Err(no_splice())
}

/// The error for `--splice` where the system has no splice(2).
#[cfg(not(target_os = "linux"))]
fn no_splice() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "--splice and --splice-auto need Linux's splice(2); copy instead (leave them out)",
    )
}

/// Connects to the upstream: on `socket` if `--upstream` is an address;
/// a host name is looked up, and its addresses tried in turn (`socket` for
/// the first of its family, a new socket for any other).
async fn connect(socket: Option<TcpSocket>, route: &Route) -> io::Result<TcpStream> {
    let upstream = match route.literal {
        Some(addr) => match socket {
            Some(socket) => socket.connect(addr).await?,
            None => TcpSocket::new_for(addr)?.connect(addr).await?,
        },
        None => {
            let (mut socket, mut last) = (socket, None);
            let mut connected = None;
            // A failed lookup (out of descriptors, say) falls back to the
            // addresses named at start: the client is accepted already.
            let addrs: Vec<SocketAddr> = match cellio::net::lookup_host(&*route.upstream).await {
                Ok(addrs) => addrs.collect(),
                Err(_) => route.resolved.to_vec(),
            };
            for addr in addrs {
                let same_family = addr.is_ipv4() == route.resolved[0].is_ipv4();
                let socket = match socket.take_if(|_| same_family) {
                    Some(socket) => socket,
                    None => TcpSocket::new_for(addr)?,
                };
                match socket.connect(addr).await {
                    Ok(stream) => {
                        connected = Some(stream);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            match (connected, last) {
                (Some(stream), _) => stream,
                (None, Some(e)) => return Err(e),
                (None, None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "it names no address now",
                    ))
                }
            }
        }
    };
    // Nothing listening on a local port in the ephemeral range: the kernel
    // can connect a socket to itself, which would echo the client.
    // (An address not to be had, say after a reset, is no proof either way.)
    let (local, peer) = (upstream.local_addr(), upstream.peer_addr());
    if matches!((&local, &peer), (Ok(l), Ok(p)) if l == p) {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "nothing listens there (the connection reached itself)",
        ));
    }
    Ok(upstream)
}

/// Accepts until shutdown begins, one task per connection. Each
/// connection's upstream socket is opened first: out of descriptors, that
/// fails and the loop backs off with the client still in the backlog.
async fn serve(listener: TcpListener, route: Route) {
    let (listener, family) = (&listener, route.resolved[0]);
    accept_until_shutdown(
        "proxy",
        move || async move {
            // Only running out of descriptors keeps the client in the
            // backlog; another error (no IPv6, say) is the connection's.
            let socket = match TcpSocket::new_for(family) {
                Ok(socket) => Some(socket),
                Err(e) if accept_backoff::out_of_resources(&e) => return Err(e),
                Err(_) => None,
            };
            let (client, peer) = listener.accept().await?;
            Ok((client, peer, socket))
        },
        |(client, peer, socket)| {
            spawn_local(proxy(client, peer, socket, route.clone(), Open::new()));
        },
    )
    .await;
}

/// Whether connecting to `upstream` reaches the listener at `listen`: the
/// same port, and the same address, or a local one where either is
/// unspecified (an IPv6 listener also takes IPv4). Addresses are compared
/// in their canonical form: an IPv4-mapped IPv6 address
/// (`[::ffff:127.0.0.1]`) is the IPv4 one, which an IPv6 socket connecting
/// to it reaches. Port 0 listens on a port nobody can name yet.
fn is_own(listen: SocketAddr, upstream: SocketAddr) -> bool {
    let (listen_ip, upstream_ip) = (listen.ip().to_canonical(), upstream.ip().to_canonical());
    let same_family = listen_ip.is_ipv4() == upstream_ip.is_ipv4();
    let local = |ip: std::net::IpAddr| {
        ip.is_loopback() || ip.is_unspecified() || std::net::UdpSocket::bind((ip, 0)).is_ok()
    };
    listen.port() != 0
        && listen.port() == upstream.port()
        && (listen_ip == upstream_ip
            || (listen_ip.is_unspecified()
                && (same_family || listen_ip.is_ipv6())
                && local(upstream_ip))
            || (upstream_ip.is_unspecified() && same_family && local(listen_ip)))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(message) = restart::too_many_to_offer(&args.restart, args.workers.get().into()) {
        cli::flag_conflict::<Args>("proxy", &message);
    }
    cli::exit_code("proxy", run(&args))
}

#[path = "common/accept_backoff.rs"]
mod accept_backoff;
#[path = "common/cli.rs"]
mod cli;
#[path = "common/open_files.rs"]
mod open_files;
#[path = "common/restart.rs"]
mod restart;
#[path = "common/shutdown_signals.rs"]
mod shutdown_signals;
#[path = "common/worker_listeners.rs"]
mod worker_listeners;

fn run(args: &Args) -> std::io::Result<()> {
    // Before anything opens a descriptor: one systemd says it passed must be open.
    restart::check_systemd_passed()?;
    #[cfg(not(target_os = "linux"))]
    if args.splice || args.splice_auto {
        return Err(no_splice());
    }
    open_files::raise_open_files(None);
    let workers = usize::from(args.workers.get());
    let runtime = Builder::new()
        .workers(workers)
        .build()
        .map_err(|e| context("cannot start the cellio runtime", e))?;
    runtime.block_on(async {
        spawn(shutdown_signals::shut_down_on_signals()?);
        // A bad upstream is an error now, not at the first connection.
        let upstream = args.upstream.as_str();
        let resolved: Vec<SocketAddr> = cellio::net::lookup_host(upstream)
            .await
            .map_err(|e| context(&format!("bad --upstream {upstream}"), e))?
            .collect();
        if resolved.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bad --upstream {upstream}: it names no address"),
            ));
        }
        let route = Route {
            upstream: upstream.into(),
            literal: upstream.parse().ok(),
            resolved: resolved.clone().into(),
            connect_timeout: Duration::from_millis(args.connect_timeout_ms),
            splice: args.splice,
            splice_auto: args.splice_auto,
        };
        // So would every connection to itself: each client's connection
        // to the upstream is another client, until descriptors run out.
        if let Some(own) = resolved.iter().find(|up| is_own(args.addr, **up)) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "bad --upstream {}: {own} is this proxy's own --addr {}",
                    route.upstream, args.addr
                ),
            ));
        }
        let options = ListenOptions {
            reuse_port: workers > 1,
            ..ListenOptions::default()
        };
        let serving = route.clone();
        let serve_there = move |listener| serve(listener, serving.clone());
        let listener = restart::listeners(
            "proxy",
            &args.restart,
            args.addr,
            options,
            workers,
            workers,
            serve_there,
        )
        .await?;
        let addr = listener.local_addr()?;
        println!("listening on {addr}, forwarding to {}", route.upstream);
        serve(listener, route).await;
        Ok::<(), std::io::Error>(())
    })?;
    let finished = worker_listeners::finish("proxy", runtime, Duration::from_millis(args.grace_ms));
    OWN_ERRORS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .tell_the_rest();
    finished?;
    restart::handed_over()
}
