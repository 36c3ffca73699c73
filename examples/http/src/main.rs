//! An HTTP/1.1 and HTTP/2 server: hyper's, on cellio. Each connection is a
//! `TcpIo` (through its tokio traits, the `tokio-io` feature, and
//! hyper-util's `TokioIo` adapter) served by hyper, one task per connection
//! (and, for HTTP/2, one per request stream: hyper spawns them through
//! `CellioExecutor`, below).
//!
//! ```text
//! cargo run --release -p cellio-http-example                 # 127.0.0.1:8080
//! curl http://127.0.0.1:8080/                                # hello
//! curl --data-binary @file http://127.0.0.1:8080/echo        # the body back
//! wrk -t1 -c50 -d5s http://127.0.0.1:8080/                   # load
//! cargo run --release -p cellio-http-example -- --protocol auto
//! curl --http2-prior-knowledge http://127.0.0.1:8080/        # HTTP/2, cleartext
//!
//! # HTTPS: a certificate and its key (here a throwaway one for 127.0.0.1)
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
//!     -keyout key.pem -out cert.pem -days 30 -subj /CN=localhost \
//!     -addext subjectAltName=DNS:localhost,IP:127.0.0.1
//! cargo run --release -p cellio-http-example -- --protocol auto \
//!     --tls-cert cert.pem --tls-key key.pem
//! curl --cacert cert.pem https://127.0.0.1:8080/               # HTTP/2 (ALPN h2)
//! curl --cacert cert.pem --http1.1 https://127.0.0.1:8080/     # HTTP/1.1
//! ```
//!
//! * `--protocol http1` (the default): HTTP/1.1 only
//!   (`hyper::server::conn::http1`); `http2`: HTTP/2 only
//!   (`hyper::server::conn::http2`; in cleartext, with prior knowledge:
//!   h2c); `auto`: either, told apart by the first bytes (hyper-util's
//!   `conn::auto`).
//! * `--tls-cert PEM --tls-key PEM`: HTTPS (rustls, through tokio-rustls
//!   on `TcpIo`; `tls.rs`). The server offers by ALPN what
//!   `--protocol` serves (`auto`: `h2`, then `http/1.1`), which is how
//!   browsers come to speak HTTP/2. A client gets `--handshake-timeout-ms`
//!   (10 s) to finish its handshake; a failed handshake ends that
//!   connection only.
//!
//! * `GET /` answers `hello from cellio`; `POST /echo` answers with the
//!   request's body, held whole: the echoes of one connection hold up to
//!   16 MiB together (over HTTP/2, its streams share them), and a body
//!   that would take them over is answered 413 as soon as it does
//!   (`http_service.rs`, which gives the bound of what one connection
//!   holds); anything else is 404.
//! * Keep-alive and pipelining are hyper's; `--workers N`: thread-per-core,
//!   one `SO_REUSEPORT` listener per worker.
//! * A client gets `--header-timeout-ms` (hyper's default, 30 s) to send a
//!   request's headers, or its connection is closed: hyper's timers run on
//!   cellio's (`CellioTimer`, below). `0`: no limit. The same limit holds
//!   for a new connection's first bytes where they choose the protocol
//!   (`auto`, in cleartext or over TLS without ALPN) and for HTTP/2's
//!   connection preface (`watch.rs`): hyper has no timer on those.
//!   Over TLS, the protocol ALPN chose is served (`auto`: `h2` is HTTP/2,
//!   `http/1.1` HTTP/1.1 with its header timeout).
//! * `--idle-timeout-ms` (60 s): a connection on which no data moves that
//!   long is closed: a client stalled partway through a request's body, one
//!   that does not take its response, or an idle keep-alive one. `0`: no
//!   limit.
//! * SIGINT/SIGTERM: stop accepting, close idle keep-alive connections
//!   between requests, let requests in flight finish within `--grace-ms`,
//!   then exit 0. A connection accepted whose client has not yet begun its
//!   first request (nothing received, HTTP/2's preface not whole, or its
//!   TLS handshake under way) gets until 5 s after its accept to begin it,
//!   as clients send theirs at once: then that request is answered and
//!   the connection closed. One still silent then is closed. A second
//!   signal during the grace period, 500 ms or more after the first (one
//!   sooner is taken for the same one delivered twice, as through a
//!   forwarding wrapper), ends the process at once, as the signal's default
//!   action would. After a hand-over (`--take-over`), the predecessor began
//!   its grace period without a signal: the first signal it gets does
//!   nothing visible, the second ends it.
//! * `--restart-socket PATH` / `--take-over PATH`: a restart that refuses
//!   no connection, as the echo server's (`common/restart.rs`): the old
//!   server finishes, as above, every connection it accepted (their
//!   requests sent before the hand-over or just after it are answered), and
//!   the successor accepts the rest.
//!
//! A connection's error (a peer that sends garbage or resets) ends that
//! connection only.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use accept_backoff::accept_until_shutdown;
use cellio::runtime::shutdown_requested;
use cellio::{spawn, spawn_local, Builder, ListenOptions, TcpIo, TcpListener, TcpStream};
use clap::{Parser, ValueEnum};
use cli::context;
use worker_listeners::Open;

use http_service::Echoes;
use tokio_rustls::TlsAcceptor;
use watch::{Watch, Watched};

#[derive(Parser, Debug)]
#[command(about = "hyper's HTTP/1.1 and HTTP/2 server on cellio")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Worker threads, each with its own listener on the port.
    #[arg(long, default_value_t = NonZeroU16::MIN)]
    workers: NonZeroU16,
    /// On SIGINT/SIGTERM, how long open connections get to finish (a second
    /// signal, 500 ms or more after the first, ends the process at once).
    #[arg(long, default_value_t = 5000)]
    grace_ms: u64,
    /// How long a client may take to send a request's headers, or to open
    /// its connection: HTTP/2's preface, or the first bytes that tell the
    /// protocol under `auto` (0: no limit). An HTTP/2 connection's later
    /// requests are streams on it: only its opening has this limit.
    #[arg(long, default_value_t = 30_000)]
    header_timeout_ms: u64,
    /// Close a connection on which no data moves this long: nothing
    /// received (a client stalled in a request's body, or idle between
    /// requests), nor a response taken by the client (0: no limit).
    #[arg(long, default_value_t = 60_000)]
    idle_timeout_ms: u64,
    /// The HTTP versions served.
    #[arg(long, value_enum, default_value_t = Protocol::Http1)]
    protocol: Protocol,
    /// Serve HTTPS with this certificate chain (PEM, the server's first).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long a TLS client may take to finish its handshake (0: no limit).
    #[arg(long, default_value_t = 10_000)]
    handshake_timeout_ms: u64,
    #[command(flatten)]
    restart: restart::Restart,
}

/// Which HTTP a connection speaks.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only, cleartext with prior knowledge (h2c).
    Http2,
    /// Either: HTTP/2 if the connection starts with its preface.
    Auto,
}

impl Protocol {
    /// What a TLS server offers by ALPN, most preferred first.
    fn alpn(self) -> &'static [&'static [u8]] {
        match self {
            Protocol::Http1 => &[b"http/1.1"],
            Protocol::Http2 => &[b"h2"],
            Protocol::Auto => &[b"h2", b"http/1.1"],
        }
    }
}

/// How every connection of the server is served: the same on each worker.
#[derive(Clone)]
struct Serving {
    protocol: Protocol,
    limits: Limits,
    /// `Some` for HTTPS, with its handshake's time limit.
    tls: Option<(TlsAcceptor, Option<Duration>)>,
}

/// A connection's time limits (`None`: no limit).
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// To send a request's headers (HTTP/1.1, hyper's), or to open the
    /// connection (`watch.rs`).
    header: Option<Duration>,
    /// With no data moving either way.
    idle: Option<Duration>,
}

impl Limits {
    /// The connection's next deadline, `opened` when it began, and what
    /// passing it means; `silent_until`, once the shutdown has begun: when
    /// a connection whose client has begun no request is closed.
    fn next(
        &self,
        watch: &Watch,
        opened: Instant,
        silent_until: Option<Instant>,
    ) -> Option<(Instant, Cut)> {
        let opening = (self.header)
            .filter(|_| watch.is_telling())
            .map(|limit| (opened + limit, Cut::NotOpened));
        let idle = (self.idle)
            .zip(watch.moved())
            .map(|(limit, moved)| (moved + limit, Cut::Idle));
        let silent = silent_until
            .filter(|_| !watch.is_opened())
            .map(|deadline| (deadline, Cut::SilentAtShutdown));
        [opening, idle, silent]
            .into_iter()
            .flatten()
            .min_by_key(|(deadline, _)| *deadline)
    }
}

/// How long after its accept a connection may take to begin its first
/// request (its TLS handshake included) once the shutdown has begun: a
/// client sends its request as soon as it has connected, so one accepted
/// just before a hand-over or a signal is answered, and one that stays
/// silent does not hold the server for the whole grace period. (Go's
/// `http.Server.Shutdown` gives a new connection the same 5 s.)
const FIRST_REQUEST_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// hyper's executor on cellio's: an HTTP/2 connection runs each request
/// stream as a task of its own, on the connection's worker
/// (`spawn_local`: hyper's futures over a `TcpIo` stay on its worker).
#[derive(Clone, Copy, Debug)]
struct CellioExecutor;

impl<F: Future + 'static> hyper::rt::Executor<F> for CellioExecutor {
    fn execute(&self, future: F) {
        spawn_local(future);
    }
}

/// hyper's timers on cellio's: `hyper::rt::Timer` over
/// `cellio::runtime::sleep_until` (boxed, as the trait asks). `reset`
/// moves the deadline of a sleep hyper keeps (as hyper-util's `TokioTimer`
/// does) instead of boxing a new one; `now` is cellio's clock, which a
/// paused test clock drives. (hyper 1's HTTP/1.1 drops its header-timeout
/// sleep after each request's head and boxes a new one for the next, on
/// any runtime.)
#[derive(Clone, Copy, Debug)]
struct CellioTimer;

impl hyper::rt::Timer for CellioTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CellioSleep(cellio::runtime::sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CellioSleep(cellio::runtime::sleep_until(deadline)))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<CellioSleep>() {
            Some(ours) => ours.get_mut().0.reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }

    fn now(&self) -> Instant {
        cellio::runtime::time::now()
    }
}

/// A cellio `Sleep` as a `hyper::rt::Sleep`.
struct CellioSleep(cellio::runtime::Sleep);

impl Future for CellioSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl hyper::rt::Sleep for CellioSleep {}

/// Serves one connection until the client closes it (or outlasts one of
/// its `limits`), after its TLS handshake for HTTPS. Once the shutdown has
/// begun, a handshake still going [`FIRST_REQUEST_AT_SHUTDOWN`] after the
/// accept is dropped. `_open` tells `worker_listeners::finish` whether the
/// shutdown cancelled it.
async fn connection(stream: TcpStream, peer: SocketAddr, serving: Serving, _open: Open) {
    let accepted = cellio::runtime::time::now();
    let _ = stream.set_nodelay(true);
    let io = TcpIo::new(stream);
    let Some((acceptor, limit)) = &serving.tls else {
        return serve_http(io, peer, serving.protocol, serving.limits, accepted).await;
    };
    match unless_silent_at_shutdown(handshake(acceptor, io, *limit), accepted).await {
        Some(Ok(tls)) => {
            // ALPN told which HTTP the client speaks: HTTP/1.1 then gets
            // its header timeout from the start, as hyper-util's `auto`
            // would give it only once the first bytes had come.
            let protocol = match tls.get_ref().1.alpn_protocol() {
                Some(b"h2") => Protocol::Http2,
                Some(b"http/1.1") => Protocol::Http1,
                _ => serving.protocol,
            };
            serve_http(tls, peer, protocol, serving.limits, accepted).await
        }
        Some(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        None => tracing::debug!(%peer, "TLS handshake dropped: shutting down"),
    }
}

/// Runs `future` (a connection's opening) to its end (`Some`), unless the
/// shutdown begins and the connection, accepted at `accepted`, is still in
/// it [`FIRST_REQUEST_AT_SHUTDOWN`] after its accept (`None`).
async fn unless_silent_at_shutdown<F: Future>(future: F, accepted: Instant) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut silent = pin!(async {
        shutdown_requested().await;
        cellio::runtime::sleep_until(accepted + FIRST_REQUEST_AT_SHUTDOWN).await;
    });
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        silent.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// The TLS handshake of a new connection, ended with a `TimedOut` error if
/// it takes longer than `limit` (`None`: no limit), so a client that
/// connects and says nothing does not hold its connection forever.
async fn handshake(
    acceptor: &TlsAcceptor,
    io: TcpIo,
    limit: Option<Duration>,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpIo>> {
    let accept = acceptor.accept(io);
    match limit {
        Some(limit) => cellio::runtime::timeout(limit, accept).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })?,
        None => accept.await,
    }
}

/// Serves HTTP on `io`, a `TcpIo` or a TLS stream over one, of a
/// connection accepted at `accepted`.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    protocol: Protocol,
    limits: Limits,
    accepted: Instant,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let watch = Watch::new(protocol == Protocol::Http1, limits.idle.is_some());
    let io = hyper_util::rt::TokioIo::new(Watched::new(io, watch.clone()));
    let echoes = Echoes::default();
    let service = hyper::service::service_fn(move |request| echoes.handle(request));
    let served: Result<Result<(), Box<dyn std::error::Error + Send + Sync>>, Cut> = match protocol {
        Protocol::Http1 => {
            let mut http1 = hyper::server::conn::http1::Builder::new();
            http1.timer(CellioTimer).header_read_timeout(limits.header);
            let connection = http1.serve_connection(io, service);
            until_drained(
                connection,
                |c| c.graceful_shutdown(),
                &watch,
                limits,
                accepted,
            )
            .await
            .map(|served| served.map_err(Into::into))
        }
        Protocol::Http2 => {
            let mut http2 = hyper::server::conn::http2::Builder::new(CellioExecutor);
            http2.timer(CellioTimer);
            let connection = http2.serve_connection(io, service);
            until_drained(
                connection,
                |c| c.graceful_shutdown(),
                &watch,
                limits,
                accepted,
            )
            .await
            .map(|served| served.map_err(Into::into))
        }
        Protocol::Auto => {
            let mut auto = hyper_util::server::conn::auto::Builder::new(CellioExecutor);
            auto.http1()
                .timer(CellioTimer)
                .header_read_timeout(limits.header);
            auto.http2().timer(CellioTimer);
            let connection = auto.serve_connection(io, service);
            until_drained(
                connection,
                |c| c.graceful_shutdown(),
                &watch,
                limits,
                accepted,
            )
            .await
        }
    };
    match served {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        Err(cut) => tracing::debug!(%peer, ?cut, "connection closed"),
    }
}

/// Runs `connection` to its end; once the runtime's shutdown begins (a
/// signal, or a successor took over), asks it to finish gracefully
/// (`drain`: hyper's `graceful_shutdown`): an idle keep-alive connection
/// closes at once, one with a request in flight closes after answering it
/// (HTTP/2: after a GOAWAY, which still lets the streams the client sent
/// before it be answered), instead of holding on until the grace period
/// cuts it.
///
/// A connection whose client has begun no request yet (`watch`: nothing
/// received, or HTTP/2's preface not whole) is asked only once it has:
/// asked before, hyper's HTTP/1.1 would close it with the request unread
/// (it takes a connection that has read nothing for an idle one), and
/// hyper's HTTP/2 would wait for the end of its handshake. It gets until
/// [`FIRST_REQUEST_AT_SHUTDOWN`] after `accepted`, and is dropped if it
/// has not begun one by then.
///
/// A connection that outlasts one of `limits` hyper does not keep is
/// dropped too: not opened within the header timeout, or no data moving
/// for the idle one (`watch.rs`). One timer keeps them all, moved only
/// when it fires (or the shutdown begins): data moving costs no timer
/// update.
async fn until_drained<C: Future>(
    connection: C,
    drain: fn(Pin<&mut C>),
    watch: &Watch,
    limits: Limits,
    accepted: Instant,
) -> Result<C::Output, Cut> {
    let mut connection = pin!(connection);
    let mut shutdown = pin!(shutdown_requested());
    // Once the shutdown has begun: when a connection still silent is cut.
    let mut silent_until = None;
    let mut draining = false;
    let opened = cellio::runtime::time::now();
    let mut timer = limits
        .next(watch, opened, None)
        .map(|(deadline, _)| cellio::runtime::sleep_until(deadline));
    poll_fn(|cx| {
        if silent_until.is_none() && shutdown.as_mut().poll(cx).is_ready() {
            let deadline = accepted + FIRST_REQUEST_AT_SHUTDOWN;
            silent_until = Some(deadline);
            if !watch.is_opened() {
                match &mut timer {
                    Some(sleep) if sleep.deadline() <= deadline => {}
                    Some(sleep) => sleep.reset(deadline),
                    None => timer = Some(cellio::runtime::sleep_until(deadline)),
                }
            }
        }
        loop {
            if silent_until.is_some() && !draining && watch.is_opened() {
                drain(connection.as_mut());
                draining = true;
            }
            if let Poll::Ready(output) = connection.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            // Opened by this poll: ask it to finish, and let it act on that.
            if silent_until.is_none() || draining || !watch.is_opened() {
                break;
            }
        }
        while let Some(sleep) = &mut timer {
            if Pin::new(&mut *sleep).poll(cx).is_pending() {
                break;
            }
            match limits.next(watch, opened, silent_until) {
                None => timer = None,
                Some((deadline, cut)) if deadline <= cellio::runtime::time::now() => {
                    return Poll::Ready(Err(cut));
                }
                Some((deadline, _)) => sleep.reset(deadline),
            }
        }
        Poll::Pending
    })
    .await
}

/// Why [`until_drained`] dropped a connection.
#[derive(Debug)]
enum Cut {
    /// Its opening was not over within the header timeout.
    NotOpened,
    /// Its client had begun no request [`FIRST_REQUEST_AT_SHUTDOWN`]
    /// after its accept, the shutdown having begun.
    SilentAtShutdown,
    /// No data moved for the idle limit.
    Idle,
}

/// Accepts until shutdown begins, one task per connection.
async fn serve(listener: TcpListener, serving: Serving) {
    accept_until_shutdown(
        "http_server",
        || listener.accept(),
        |(stream, peer)| {
            spawn_local(connection(stream, peer, serving.clone(), Open::new()));
        },
    )
    .await;
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(message) = restart::too_many_to_offer(&args.restart, args.workers.get().into()) {
        cli::flag_conflict::<Args>("http_server", &message);
    }
    cli::exit_code("http_server", run(&args))
}

#[path = "../../common/accept_backoff.rs"]
mod accept_backoff;
#[path = "../../common/cli.rs"]
mod cli;
mod http_service;
#[path = "../../common/open_files.rs"]
mod open_files;
#[path = "../../common/restart.rs"]
mod restart;
#[path = "../../common/shutdown_signals.rs"]
mod shutdown_signals;
mod tls;
mod watch;
#[path = "../../common/worker_listeners.rs"]
mod worker_listeners;

fn run(args: &Args) -> std::io::Result<()> {
    // Before anything opens a descriptor: one systemd says it passed must be open.
    restart::check_systemd_passed()?;
    let limit = |ms| Some(Duration::from_millis(ms)).filter(|limit: &Duration| !limit.is_zero());
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((
            tls::acceptor(cert, key, args.protocol.alpn())?,
            limit(args.handshake_timeout_ms),
        )),
        _ => None,
    };
    let serving = Serving {
        protocol: args.protocol,
        limits: Limits {
            header: limit(args.header_timeout_ms),
            idle: limit(args.idle_timeout_ms),
        },
        tls,
    };
    open_files::raise_open_files(None);
    let workers = usize::from(args.workers.get());
    let runtime = Builder::new()
        .workers(workers)
        .build()
        .map_err(|e| context("cannot start the cellio runtime", e))?;
    runtime.block_on(async {
        spawn(shutdown_signals::shut_down_on_signals()?);
        let options = ListenOptions {
            reuse_port: workers > 1,
            ..ListenOptions::default()
        };
        let serving_there = serving.clone();
        let serve_there = move |listener| serve(listener, serving_there.clone());
        let listener = restart::listeners(
            "http_server",
            &args.restart,
            args.addr,
            options,
            workers,
            workers,
            serve_there,
        )
        .await?;
        println!("listening on {}", listener.local_addr()?);
        serve(listener, serving).await;
        Ok::<(), std::io::Error>(())
    })?;
    worker_listeners::finish("http_server", runtime, Duration::from_millis(args.grace_ms))?;
    restart::handed_over()
}
