//! The UDP side of `random_cancellation.rs`: sockets on a multi-worker
//! runtime whose every operation meets a seeded random fate (awaited,
//! polled once and dropped, raced against a timer of a few microseconds,
//! started after a yield), through the socket's futures or a `UdpIo`, which
//! the echo server takes and gives back now and then, and one datagram at a
//! time or in batches (`recv_many`/`send_many`, whose dropped sends leave
//! the replies not yet sent in the batch).
//!
//! What must hold, whatever the draw:
//! * a receive dropped unfinished took no datagram, and a send dropped
//!   unfinished sent none: every datagram comes back exactly once, whole,
//!   in order (each client checks each echo against the datagram it
//!   expects next, so a loss, a duplicate or a reordering fails);
//! * every task ends, the runtime shuts down, and no descriptor is left
//!   open.
//!
//! Loopback drops a datagram only when the receiver's buffer is full. The
//! clients keep at most [`WINDOW`] datagrams of at most [`MOST_SIZE`] bytes
//! in flight each, well within the server's default buffer (212 992 bytes
//! here; 16 × 4 of these take some 150 KB of it), so any loss is cellio's.
//!
//! `CELLIO_STRESS_SEEDS=N` runs seeds `0..N` (default 6);
//! `CELLIO_STRESS_SEED=S` runs one.

mod util;

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use cellio_net::udp::{RecvBatch, SendBatch};
use cellio_net::{UdpIo, UdpSocket};
use cellio_runtime::{timeout, yield_now};
use util::random::{meet, run_seed_traffic, seeds_from_env, Rng, DROPPED};

/// Client sockets per seed.
const CLIENTS: usize = 16;
/// Datagrams each client may have in flight.
const WINDOW: usize = 4;
/// Largest datagram payload drawn (0 is drawn too).
const MOST_SIZE: u64 = 1400;
/// Most datagrams one client sends (each draws 1 to this).
const MOST_DATAGRAMS: u64 = 200;
/// How long a client or the server waits for the rest of its datagrams
/// before it reports them lost.
const PATIENCE: Duration = Duration::from_secs(20);

/// The `seq`-th datagram of client `client`: its number, then bytes drawn
/// from the client's own generator.
fn datagram(client: usize, seq: usize, rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(MOST_SIZE + 1) as usize;
    let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    let id = ((client as u64) << 32 | seq as u64).to_le_bytes();
    let head = len.min(id.len());
    bytes[..head].copy_from_slice(&id[..head]);
    bytes
}

/// A socket, used through its futures or through a `UdpIo`.
enum Socket {
    Futures(UdpSocket),
    Held(UdpIo),
}

impl Socket {
    /// The other way of using the same socket.
    fn switch(self) -> Socket {
        match self {
            Socket::Futures(socket) => Socket::Held(UdpIo::new(socket)),
            Socket::Held(io) => Socket::Futures(io.into_inner()),
        }
    }
}

/// Echoes `total` datagrams, each back to its sender, every operation with
/// a random fate: a dropped receive is tried again (it took nothing), and so
/// is a dropped send (it sent nothing).
async fn serve(socket: UdpSocket, total: usize, mut rng: Rng) -> io::Result<()> {
    let mut server = Socket::Futures(socket);
    let mut buf = vec![0u8; 65_536];
    let mut batches = (RecvBatch::new(8, 2048), SendBatch::new());
    let mut echoed = 0;
    while echoed < total {
        if rng.percent(10) {
            server = server.switch();
        }
        if rng.percent(30) {
            echoed += serve_batch(&mut server, &mut batches, &mut rng).await?;
            continue;
        }
        let fate = rng.fate();
        let received = match &mut server {
            Socket::Futures(socket) => meet(pin!(socket.recv_from(&mut buf)), fate).await,
            Socket::Held(io) => meet(pin!(io.recv_from(&mut buf)), fate).await,
        };
        let Some(received) = received else { continue };
        let (len, from) = received?;
        loop {
            let fate = rng.fate();
            let sent = match &mut server {
                Socket::Futures(socket) => {
                    meet(pin!(socket.send_to(&buf[..len], from)), fate).await
                }
                Socket::Held(io) => meet(pin!(io.send_to(&buf[..len], from)), fate).await,
            };
            match sent {
                Some(Ok(n)) if n == len => break,
                Some(Ok(n)) => {
                    return Err(io::Error::other(format!(
                        "sent {n} bytes of a {len}-byte datagram"
                    )))
                }
                Some(Err(e)) => return Err(e),
                None => continue,
            }
        }
        echoed += 1;
    }
    Ok(())
}

/// One batch: whatever is queued (up to 8 datagrams, after 0 to 3 yields),
/// received with a
/// random fate, then echoed in `send_many` calls with random fates until
/// none is left (a dropped one leaves the rest in the batch). Returns the
/// datagrams echoed (0 if the receive was dropped: it took none).
async fn serve_batch(
    server: &mut Socket,
    (received, replies): &mut (RecvBatch, SendBatch),
    rng: &mut Rng,
) -> io::Result<usize> {
    // Let datagrams pile up now and then, so that batches hold several.
    for _ in 0..rng.below(4) {
        yield_now().await;
    }
    let fate = rng.fate();
    let got = match server {
        Socket::Futures(socket) => meet(pin!(socket.recv_many(received)), fate).await,
        Socket::Held(io) => meet(pin!(io.recv_many(received)), fate).await,
    };
    let Some(got) = got else { return Ok(0) };
    let count = got?;
    for datagram in received.iter() {
        let (bytes, from) = datagram?;
        replies.push(bytes, from)?;
    }
    while !replies.is_empty() {
        let fate = rng.fate();
        let sent = match server {
            Socket::Futures(socket) => meet(pin!(socket.send_many(replies)), fate).await,
            Socket::Held(io) => meet(pin!(io.send_many(replies)), fate).await,
        };
        if let Some(sent) = sent {
            sent?;
        }
    }
    Ok(count)
}

/// A client: sends its `count` datagrams, at most [`WINDOW`] in flight, and
/// checks that each echo is the datagram it expects next.
async fn client(id: usize, server: SocketAddr, count: usize, mut rng: Rng) -> io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(server)?;
    let mut content = rng.fork();
    let datagrams: Vec<Vec<u8>> = (0..count)
        .map(|seq| datagram(id, seq, &mut content))
        .collect();
    let mut socket = Socket::Futures(socket);
    if rng.percent(50) {
        socket = socket.switch();
    }
    let (mut sent, mut received) = (0, 0);
    let mut buf = vec![0u8; 65_536];
    while received < count {
        let fate = rng.fate();
        if sent < count && sent - received < WINDOW {
            let dgram = &datagrams[sent];
            let done = match &mut socket {
                Socket::Futures(socket) => meet(pin!(socket.send(dgram)), fate).await,
                Socket::Held(io) => meet(pin!(io.send(dgram)), fate).await,
            };
            match done {
                Some(Ok(n)) if n == dgram.len() => sent += 1,
                Some(Ok(n)) => {
                    return Err(io::Error::other(format!(
                        "sent {n} bytes of datagram {sent}"
                    )))
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        } else {
            let done = match &mut socket {
                Socket::Futures(socket) => meet(pin!(socket.recv(&mut buf)), fate).await,
                Socket::Held(io) => meet(pin!(io.recv(&mut buf)), fate).await,
            };
            let Some(got) = done else { continue };
            let got = got?;
            let expected = &datagrams[received];
            if &buf[..got] != expected.as_slice() {
                return Err(io::Error::other(format!(
                    "echo {received} ({got} bytes) is not datagram {received} ({} bytes): lost, \
                     duplicated, reordered or changed",
                    expected.len()
                )));
            }
            received += 1;
        }
    }
    Ok(())
}

/// One seed: a fresh runtime, the server on worker 0, [`CLIENTS`] clients
/// spread over the workers. Returns the datagrams echoed.
fn run_seed(seed: u64) -> usize {
    run_seed_traffic(seed, |handle, mut rng| async move {
        let counts: Vec<usize> = (0..CLIENTS)
            .map(|_| 1 + rng.below(MOST_DATAGRAMS) as usize)
            .collect();
        let total: usize = counts.iter().sum();
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let addr = socket.local_addr()?;
        let server_rng = rng.fork();
        let server = handle.spawn_local_on(0, move || {
            timeout(PATIENCE, serve(socket, total, server_rng))
        });
        let clients: Vec<_> = counts
            .iter()
            .enumerate()
            .map(|(i, &count)| {
                let client_rng = rng.fork();
                handle.spawn_local_on(i % handle.workers(), move || {
                    timeout(PATIENCE, client(i, addr, count, client_rng))
                })
            })
            .collect();
        for (i, task) in clients.into_iter().enumerate() {
            let finished = task
                .await
                .map_err(|e| io::Error::other(format!("client {i}: {e}")))?;
            finished
                .map_err(|_| io::Error::other(format!("client {i}: its echoes stopped coming")))?
                .map_err(|e| io::Error::new(e.kind(), format!("client {i}: {e}")))?;
        }
        server
            .await
            .map_err(|e| io::Error::other(format!("server: {e}")))?
            .map_err(|_| io::Error::other("server: its datagrams stopped coming"))??;
        Ok(total)
    })
}

#[test]
fn every_datagram_comes_back_once_whatever_happens_to_the_operations() {
    let seeds = seeds_from_env();
    let runs = seeds.end - seeds.start;
    let mut datagrams = 0;
    for seed in seeds {
        datagrams += run_seed(seed);
    }
    let dropped = DROPPED.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "{runs} seeds: {datagrams} datagrams echoed, {dropped} operations dropped unfinished"
    );
    if runs >= 6 {
        assert!(
            dropped > 0,
            "no operation was dropped unfinished: the draws test nothing"
        );
    }
}
