//! `tokio_proxy`: the idiomatic tokio TCP proxy, the comparison for cellio's `proxy` example.
//!
//! Each accepted connection is joined to a new connection to `--upstream` with
//! `tokio::io::copy_bidirectional` (two 8 KiB buffers allocated per connection), in a task of
//! its own, on `Builder::new_current_thread()` with `enable_all()`, as `#[tokio::main(flavor =
//! "current_thread")]` builds it. Both sides get `TCP_NODELAY`, as in cellio's proxy.

use std::net::SocketAddr;
use std::process::ExitCode;

use cellio_benches::{announce_listening, parse_args, raise_fd_limit, run_main};
use clap::Parser;
use tokio::net::{TcpListener, TcpStream};

const PROG: &str = "tokio_proxy";

/// Idiomatic tokio proxy (spawn per connection, copy_bidirectional).
#[derive(Parser, Debug)]
#[command(name = PROG, version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: SocketAddr,
    /// The server to forward to.
    #[arg(long, default_value = "127.0.0.1:7000")]
    upstream: SocketAddr,
}

fn main() -> ExitCode {
    let args: Args = parse_args(PROG);
    run_main(PROG, || {
        raise_fd_limit();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build runtime: {e}"))?;
        rt.block_on(serve(args.addr, args.upstream))
    })
}

async fn serve(addr: SocketAddr, upstream: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    announce_listening(listener.local_addr().map_err(|e| e.to_string())?);
    loop {
        match listener.accept().await {
            Ok((mut client, _)) => {
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
            Err(e) => {
                eprintln!("{PROG}: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
