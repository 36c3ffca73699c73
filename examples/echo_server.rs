//! A TCP echo server: every byte a client sends comes back, exactly.
//!
//! ```text
//! cargo run --release --example echo_server -- --addr 127.0.0.1:7000
//! ```
//!
//! One task per connection, each with its own buffer; the steady state
//! (receive, send back, receive again) allocates nothing. A connection's
//! error ends that connection only.

use std::net::SocketAddr;
use std::process::ExitCode;

use cellio::{spawn, Runtime, TcpListener, TcpStream};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "cellio echo server: echoes every byte back to its sender")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7000")]
    addr: SocketAddr,
}

/// Receive buffer per connection. It lives inside the connection's task,
/// whose memory the runtime reuses from one connection to the next.
const BUFFER: usize = 16 * 1024;

async fn echo(stream: TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; BUFFER];
    loop {
        let n = stream.recv(&mut buf).await?;
        if n == 0 {
            return Ok(()); // the client closed its side: we are done
        }
        stream.send_all(&buf[..n]).await?;
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("echo_server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: std::io::Result<()> = runtime.block_on(async {
        let listener = TcpListener::bind(args.addr).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", args.addr))
        })?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    spawn(async move {
                        if let Err(e) = echo(stream).await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                // Out of file descriptors, a connection reset before we took
                // it...: this one is lost, the server goes on.
                Err(e) => {
                    eprintln!("echo_server: accept failed: {e}");
                    cellio::yield_now().await;
                }
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}
