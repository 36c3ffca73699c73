//! `tokio_udp_echo`: the same UDP echo on tokio's `current_thread` runtime: `recv_from`, then
//! `send_to` back to the sender, in one task.

use std::net::SocketAddr;
use std::process::ExitCode;

use cellio_benches::{announce_listening, parse_args, run_main};
use clap::Parser;

const PROG: &str = "tokio_udp_echo";

/// UDP echo server on tokio's current_thread runtime.
#[derive(Parser, Debug)]
#[command(name = PROG, version)]
struct Args {
    /// Address to bind (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: SocketAddr,
}

fn main() -> ExitCode {
    let args: Args = parse_args(PROG);
    run_main(PROG, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build runtime: {e}"))?;
        rt.block_on(serve(args.addr))
    })
}

async fn serve(addr: SocketAddr) -> Result<(), String> {
    let socket = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    announce_listening(
        socket
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?,
    );
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let _ = socket.send_to(&buf[..n], from).await;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(format!("recv_from: {e}")),
        }
    }
}
