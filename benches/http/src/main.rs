//! `tokio_http`: hyper's HTTP/1.1 server on tokio, the comparison for cellio's `http_server`
//! example: the same service (`GET /`, `POST /echo`, else 404), one task per connection
//! serving it with `hyper::server::conn::http1`, on `Builder::new_current_thread()` with
//! `enable_all()` (`#[tokio::main(flavor = "current_thread")]`). `TCP_NODELAY` on each
//! connection and hyper's header read timeout on tokio's timers (hyper-util's `TokioTimer`,
//! `--header-timeout-ms`, 30 s by default), as in cellio's example. `--protocol http2`: HTTP/2
//! with prior knowledge (`hyper::server::conn::http2`, streams spawned on hyper-util's
//! `TokioExecutor`), as the example's `--protocol http2`. `--tls-cert PEM --tls-key PEM`:
//! HTTPS through tokio-rustls with the example's configuration (`examples/http/src/tls.rs`: the
//! same ALPN offer, rustls' default cryptography), no handshake time limit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use cellio_benches::{announce_listening, parse_args, raise_fd_limit, run_main};
use clap::Parser;
use tokio::net::TcpListener;

#[path = "../../../examples/http/src/http_service.rs"]
mod http_service;
use http_service::Echoes;
#[path = "../../../examples/http/src/tls.rs"]
mod tls;

const PROG: &str = "tokio_http";

/// hyper's HTTP/1.1 server on tokio's current_thread runtime.
#[derive(Parser, Debug)]
#[command(name = PROG, version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: SocketAddr,
    /// How long a client may take to send a request's headers (0: no limit).
    #[arg(long, default_value_t = 30_000)]
    header_timeout_ms: u64,
    /// HTTP/1.1 or HTTP/2 (cleartext, prior knowledge).
    #[arg(long, value_enum, default_value_t = Protocol::Http1)]
    protocol: Protocol,
    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// Which HTTP a connection speaks.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2, cleartext with prior knowledge.
    Http2,
}

fn main() -> ExitCode {
    let args: Args = parse_args(PROG);
    run_main(PROG, || {
        raise_fd_limit();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build runtime: {e}"))?;
        let header_timeout = Some(std::time::Duration::from_millis(args.header_timeout_ms))
            .filter(|limit| !limit.is_zero());
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                let alpn: &[&[u8]] = match args.protocol {
                    Protocol::Http1 => &[b"http/1.1"],
                    Protocol::Http2 => &[b"h2"],
                };
                Some(tls::acceptor(cert, key, alpn).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        rt.block_on(serve(args.addr, args.protocol, header_timeout, tls))
    })
}

async fn serve(
    addr: SocketAddr,
    protocol: Protocol,
    header_timeout: Option<std::time::Duration>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    announce_listening(listener.local_addr().map_err(|e| e.to_string())?);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    match tls {
                        None => serve_http(stream, protocol, header_timeout).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_http(stream, protocol, header_timeout).await;
                            }
                        }
                    }
                });
            }
            Err(e) => {
                eprintln!("{PROG}: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves HTTP on `io`, a `TcpStream` or a TLS stream over one.
async fn serve_http<I>(io: I, protocol: Protocol, header_timeout: Option<std::time::Duration>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let echoes = Echoes::default();
    let service = hyper::service::service_fn(move |request| echoes.handle(request));
    match protocol {
        Protocol::Http1 => {
            let mut http1 = hyper::server::conn::http1::Builder::new();
            http1
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let _ = http1.serve_connection(io, service).await;
        }
        Protocol::Http2 => {
            let executor = hyper_util::rt::TokioExecutor::new();
            let _ = hyper::server::conn::http2::Builder::new(executor)
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(io, service)
                .await;
        }
    }
}
