//! `mio_udp_load`: a closed-loop UDP load client on a raw mio loop. Each of `--sockets`
//! connected sockets keeps one `--size`-byte datagram in flight: when its echo arrives (checked
//! byte for byte against what was sent), the next goes. After `--warmup` it prints
//! `# warmup-done`, counts echoes for `--duration`, prints `# window-done`, then one JSON line:
//! `{"datagrams": N, "secs": S, "mismatches": M, "lost": L}`.
//!
//! A datagram lost on the way (never on loopback at these sizes, one in flight per socket)
//! would stall its socket: every socket still waiting at the end counts as one lost datagram.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cellio_benches::{
    fill_message, parse_args, parse_secs_up_to, run_main, MARK_WARMUP_DONE, MARK_WINDOW_DONE,
};
use clap::Parser;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

const PROG: &str = "mio_udp_load";

/// Closed-loop UDP load client on raw mio.
#[derive(Parser, Debug)]
#[command(name = PROG, version)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: SocketAddr,
    /// Sockets, each with one datagram in flight.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    sockets: u16,
    /// Bytes per datagram.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1400))]
    size: u16,
    /// Seconds of traffic before the measured window.
    #[arg(long, default_value = "1", value_parser = |s: &str| parse_secs_up_to(s, 3600.0))]
    warmup: f64,
    /// Seconds in the measured window.
    #[arg(long, default_value = "5", value_parser = |s: &str| parse_secs_up_to(s, 3600.0))]
    duration: f64,
}

fn main() -> ExitCode {
    let args: Args = parse_args(PROG);
    run_main(PROG, || drive(&args))
}

struct Flow {
    socket: UdpSocket,
    seq: u64,
    out: Vec<u8>,
}

fn drive(args: &Args) -> Result<(), String> {
    let size = usize::from(args.size);
    let mut poll = Poll::new().map_err(|e| format!("epoll_create: {e}"))?;
    let mut flows = Vec::with_capacity(usize::from(args.sockets));
    for i in 0..usize::from(args.sockets) {
        let mut socket = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(|e| format!("bind: {e}"))?;
        socket
            .connect(args.addr)
            .map_err(|e| format!("connect {}: {e}", args.addr))?;
        poll.registry()
            .register(&mut socket, Token(i), Interest::READABLE)
            .map_err(|e| format!("register: {e}"))?;
        flows.push(Flow {
            socket,
            seq: 0,
            out: vec![0u8; size],
        });
    }
    for (i, flow) in flows.iter_mut().enumerate() {
        fill_message(&mut flow.out, i as u64, 0);
        flow.socket
            .send(&flow.out)
            .map_err(|e| format!("send: {e}"))?;
    }
    let mut events = Events::with_capacity(1024);
    let mut back = vec![0u8; 2048];
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(args.warmup);
    let end = warm_end + Duration::from_secs_f64(args.duration);
    let (mut measuring, mut datagrams, mut mismatches) = (false, 0u64, 0u64);
    let mut window_start = warm_end;
    loop {
        let now = Instant::now();
        if !measuring && now >= warm_end {
            measuring = true;
            window_start = now;
            println!("{MARK_WARMUP_DONE}");
        }
        if now >= end {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .map_err(|e| format!("epoll_wait: {e}"))?;
        for event in events.iter() {
            let i = event.token().0;
            let flow = &mut flows[i];
            loop {
                match flow.socket.recv(&mut back) {
                    Ok(n) => {
                        if back[..n] != flow.out[..] {
                            mismatches += 1;
                        }
                        datagrams += u64::from(measuring);
                        flow.seq += 1;
                        fill_message(&mut flow.out, i as u64, flow.seq);
                        flow.socket
                            .send(&flow.out)
                            .map_err(|e| format!("send: {e}"))?;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("recv: {e}")),
                }
            }
        }
    }
    let secs = window_start.elapsed().as_secs_f64();
    println!("{MARK_WINDOW_DONE}");
    // Whatever is still in flight now is not lost: give it a moment.
    let mut waiting: Vec<bool> = vec![true; flows.len()];
    let drain_end = Instant::now() + Duration::from_millis(500);
    while waiting.iter().any(|w| *w) && Instant::now() < drain_end {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .map_err(|e| format!("epoll_wait: {e}"))?;
        for event in events.iter() {
            let i = event.token().0;
            while let Ok(n) = flows[i].socket.recv(&mut back) {
                if back[..n] != flows[i].out[..] {
                    mismatches += 1;
                }
                waiting[i] = false;
            }
        }
    }
    let lost = waiting.iter().filter(|w| **w).count();
    println!(
        "{}",
        serde_json::json!({"datagrams": datagrams, "secs": secs, "mismatches": mismatches, "lost": lost})
    );
    if mismatches > 0 || lost > 0 {
        return Err(format!("{mismatches} mismatched and {lost} lost datagrams"));
    }
    Ok(())
}
