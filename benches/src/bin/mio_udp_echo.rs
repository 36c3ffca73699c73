//! `mio_udp_echo`: the UDP floor. A raw single-threaded mio loop that sends every datagram
//! back to its sender, with no runtime: on each readable event it receives until
//! `WouldBlock` and answers each datagram at once (a reply that finds the send buffer full is
//! dropped, as UDP allows; on loopback that does not happen).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::ExitCode;

use cellio_benches::{announce_listening, parse_args, run_main};
use clap::Parser;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

const PROG: &str = "mio_udp_echo";

/// Raw single-threaded mio UDP echo server (the floor: no runtime).
#[derive(Parser, Debug)]
#[command(name = PROG, version)]
struct Args {
    /// Address to bind (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: SocketAddr,
}

fn main() -> ExitCode {
    let args: Args = parse_args(PROG);
    run_main(PROG, || serve(&args))
}

fn serve(args: &Args) -> Result<(), String> {
    let mut socket =
        UdpSocket::bind(args.addr).map_err(|e| format!("cannot bind {}: {e}", args.addr))?;
    let local = socket
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    let mut poll = Poll::new().map_err(|e| format!("epoll_create: {e}"))?;
    poll.registry()
        .register(&mut socket, Token(0), Interest::READABLE)
        .map_err(|e| format!("register: {e}"))?;
    announce_listening(local);
    let mut events = Events::with_capacity(64);
    let mut buf = vec![0u8; 65_536];
    loop {
        poll.poll(&mut events, None)
            .map_err(|e| format!("epoll_wait: {e}"))?;
        loop {
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let _ = socket.send_to(&buf[..n], from);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // An ICMP report of an earlier reply's refusal: not ours to stop for.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(format!("recv_from: {e}")),
            }
        }
    }
}
