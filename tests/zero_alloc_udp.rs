//! After a warm-up, echoing thousands of UDP datagrams — through both the
//! synchronous path (a datagram already queued when `recv_from` is called)
//! and the parked path (`recv_from` waits for the reactor) — makes exactly
//! zero heap allocations in the whole process: with the server on the
//! socket's futures, and then on a `UdpIo`.
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use std::cell::Cell;
use std::rc::Rc;

use cellio::net::udp::{UdpIo, UdpSocket};
use cellio::{spawn_local, OpStats, Runtime};

#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

/// Client sockets, each with one or two datagrams in flight.
const CLIENTS: usize = 8;
/// Bytes per datagram.
const SIZE: usize = 64;

/// Server side on a `UdpIo`: echo each datagram to its sender, until one
/// of 0 bytes, publishing the socket's counters in `stats` after each
/// receive (the `UdpIo` owns the socket).
async fn echo_io(socket: UdpSocket, stats: Rc<Cell<OpStats>>) -> std::io::Result<()> {
    let mut io = UdpIo::new(socket);
    let mut buf = [0u8; 2 * SIZE];
    loop {
        let (n, from) = io.recv_from(&mut buf).await?;
        stats.set(io.get_ref().stats());
        if n == 0 {
            return Ok(());
        }
        io.send_to(&buf[..n], from).await?;
    }
}

/// Server side: echo each datagram to its sender, until one of 0 bytes.
async fn echo(socket: Rc<UdpSocket>) -> std::io::Result<()> {
    let mut buf = [0u8; 2 * SIZE];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        socket.send_to(&buf[..n], from).await?;
    }
}

/// One round per client: a datagram alone (the server's receive waits for
/// it), then two back to back (the second is queued when the server asks).
async fn rounds(clients: &[UdpSocket], rounds: usize) {
    let mut out = [0u8; SIZE];
    let mut back = [0u8; 2 * SIZE];
    for round in 0..rounds {
        for (c, client) in clients.iter().enumerate() {
            out.fill((round * CLIENTS + c) as u8);
            for burst in [1, 2] {
                for _ in 0..burst {
                    client.send(&out).await.expect("send");
                }
                for _ in 0..burst {
                    let n = client.recv(&mut back).await.expect("recv");
                    assert_eq!(back[..n], out[..], "round {round}, client {c}");
                }
            }
        }
    }
}

/// Counts the allocations of `n` rounds after a warm-up; checks that both
/// receive paths ran on the server (`stats` reads its counters).
async fn assert_allocates_nothing(kind: &str, clients: &[UdpSocket], stats: impl Fn() -> OpStats) {
    rounds(clients, 20).await; // warm-up
    let n = 300;
    let before = stats();
    start_counting();
    rounds(clients, n).await;
    let allocations = stop_counting();
    let after = stats();
    let datagrams = (CLIENTS * n * 3) as u64;
    let parked = after.recv_parked - before.recv_parked;
    let sync = after.recv_sync - before.recv_sync;
    eprintln!("{kind}: {datagrams} datagrams echoed: {parked} parked receives, {sync} synchronous");
    assert_eq!(
        allocations,
        0,
        "{kind}: heap allocations while echoing {datagrams} datagrams (sizes {:?})",
        recorded_sizes()
    );
    assert_eq!(
        parked + sync,
        datagrams,
        "{kind}: every datagram was received once"
    );
    // Both paths really ran in the measured window.
    assert!(
        parked >= (CLIENTS * n) as u64,
        "{kind}: parked path: {parked}"
    );
    assert!(sync > 0, "{kind}: synchronous path: {sync}");
}

#[test]
fn udp_echo_steady_state_allocates_nothing() {
    assert_counter_works();
    let runtime = Runtime::new().unwrap();
    runtime.block_on(async {
        // Set-up allocates (tasks, sockets, table pages): not counted.
        let server = Rc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let to = server.local_addr().unwrap();
        let clients: Vec<UdpSocket> = (0..CLIENTS)
            .map(|_| {
                let client = UdpSocket::bind("127.0.0.1:0").unwrap();
                client.connect(to).unwrap();
                client
            })
            .collect();

        // The socket's futures.
        let task = spawn_local(echo(server.clone()));
        assert_allocates_nothing("futures", &clients, || server.stats()).await;
        clients[0].send(&[]).await.unwrap();
        task.await.unwrap().unwrap();

        // The same socket through a UdpIo.
        let socket = Rc::try_unwrap(server).expect("the echo task is done");
        let stats = Rc::new(Cell::new(socket.stats()));
        let task = spawn_local(echo_io(socket, stats.clone()));
        assert_allocates_nothing("UdpIo", &clients, || stats.get()).await;
        clients[0].send(&[]).await.unwrap();
        task.await.unwrap().unwrap();
    });
}
