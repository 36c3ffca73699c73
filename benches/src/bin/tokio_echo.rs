//! `tokio_echo`: the idiomatic tokio echo server, the runtime cellio is compared against.
//!
//! What it measures: the CPU a mainstream async runtime spends per echoed message, written the
//! way a tokio user would write it: a `TcpListener` accept loop, `tokio::spawn` per
//! connection, `read` into a per-connection buffer, `write_all` back. Nothing is tuned beyond
//! `TCP_NODELAY`, which every server in the comparison sets.
//!
//! `--flavor current` runs it on `Builder::new_current_thread()`; `--flavor multi` on
//! `Builder::new_multi_thread()` with `--workers N` worker threads (default 1, so that with
//! the server pinned to one core the two flavours differ only in scheduler machinery).
//! Both builders use `enable_all()`, as `#[tokio::main]` does.
//!
//! `--unix PATH` serves a tokio `UnixListener` at PATH instead (the same echo over Unix-domain
//! streams; the path is removed first if a file is there, and printed as `listening on PATH`).

use std::net::SocketAddr;
use std::process::ExitCode;

use cellio_benches::{announce_listening, parse_args, raise_fd_limit, run_main};
use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PROG: &str = "tokio_echo";

/// Idiomatic tokio echo server (spawn per connection, read + write_all).
#[derive(Parser, Debug)]
#[command(name = PROG, version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: SocketAddr,
    /// Runtime flavour.
    #[arg(long, value_enum, default_value_t = Flavor::Current)]
    flavor: Flavor,
    /// Worker threads for `--flavor multi`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
    /// Serve Unix-domain streams at this socket path instead of `--addr`.
    #[arg(long, value_name = "PATH")]
    unix: Option<std::path::PathBuf>,
    /// Per-connection read buffer size in bytes.
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(1..))]
    buf_size: u32,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Flavor {
    /// `new_current_thread`: everything on the calling thread.
    Current,
    /// `new_multi_thread` with `--workers` workers.
    Multi,
}

fn main() -> ExitCode {
    let args: Args = parse_args(PROG);
    run_main(PROG, || {
        raise_fd_limit();
        let rt = match args.flavor {
            Flavor::Current => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Flavor::Multi => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(usize::from(args.workers))
                .enable_all()
                .build(),
        }
        .map_err(|e| format!("cannot build runtime: {e}"))?;
        match &args.unix {
            Some(path) => rt.block_on(serve_unix(path, args.buf_size as usize)),
            None => rt.block_on(serve(args.addr, args.buf_size as usize)),
        }
    })
}

async fn serve(addr: SocketAddr, buf_size: usize) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    announce_listening(local);
    let listener = &listener;
    accept_loop(
        move || async move {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok(stream)
        },
        buf_size,
    )
    .await
}

async fn serve_unix(path: &std::path::Path, buf_size: usize) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    println!("listening on {}", path.display());
    let listener = &listener;
    accept_loop(
        move || async move { Ok(listener.accept().await?.0) },
        buf_size,
    )
    .await
}

/// Accepts forever, a spawned [`echo`] task per connection.
async fn accept_loop<S, F, A>(mut accept: F, buf_size: usize) -> Result<(), String>
where
    F: FnMut() -> A,
    A: std::future::Future<Output = std::io::Result<S>>,
    S: AsyncReadExt + AsyncWriteExt + Unpin + Send + 'static,
{
    loop {
        match accept().await {
            Ok(stream) => {
                tokio::spawn(echo(stream, buf_size));
            }
            Err(e) => {
                // EMFILE and friends: report, back off briefly, keep serving.
                eprintln!("{PROG}: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Echoes until the peer closes or fails: a TCP stream (`TCP_NODELAY` set by the accept
/// loop) or a Unix one.
async fn echo<S: AsyncReadExt + AsyncWriteExt + Unpin>(mut stream: S, buf_size: usize) {
    let mut buf = vec![0u8; buf_size];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
