//! After a warm-up, echoing thousands of UDP datagrams — through both the
//! synchronous path (a datagram already queued when `recv_from` is called)
//! and the parked path (`recv_from` waits for the reactor) — makes exactly
//! zero heap allocations in the whole process: with the server on the
//! socket's futures, then on a `UdpIo`, then on batches (`recv_many` into
//! a `RecvBatch`, replies through a `SendBatch` and `send_many`). Then a
//! bulk flow with both offloads (runs from `push_segmented` to a socket
//! with receive offload, split by its batch) allocates nothing either.
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use std::cell::Cell;
use std::rc::Rc;

use cellio::net::udp::{RecvBatch, SendBatch, UdpIo, UdpSocket, MAX_MERGED};
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

/// Server side on batches: each receive takes what is queued (up to 16),
/// the replies go in one `send_many`; until a datagram of 0 bytes. Counts
/// the datagrams received in `received`.
async fn echo_batch(socket: Rc<UdpSocket>, received: Rc<Cell<u64>>) -> std::io::Result<()> {
    let mut batch = RecvBatch::new(16, 2 * SIZE);
    let mut replies = SendBatch::with_capacity(16, 16 * 2 * SIZE);
    loop {
        let n = socket.recv_many(&mut batch).await?;
        received.set(received.get() + n as u64);
        for datagram in batch.iter() {
            let (bytes, from) = datagram?;
            if bytes.is_empty() {
                return Ok(());
            }
            replies.push(bytes, from)?;
        }
        socket.send_many(&mut replies).await?;
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

/// Counts the allocations of `n` rounds after a warm-up; checks that the
/// server received every datagram once (`received` counts them) and that
/// its receives parked, and (`expect_sync`) also completed at once
/// (`stats` reads its counters; a batch may take both datagrams of a
/// burst at once, so it need not ever find one waiting).
async fn assert_allocates_nothing(
    kind: &str,
    clients: &[UdpSocket],
    stats: impl Fn() -> OpStats,
    received: impl Fn() -> u64,
    expect_sync: bool,
) {
    rounds(clients, 20).await; // warm-up
    let n = 300;
    let (before, received_before) = (stats(), received());
    start_counting();
    rounds(clients, n).await;
    let allocations = stop_counting();
    let (after, received_after) = (stats(), received());
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
        received_after - received_before,
        datagrams,
        "{kind}: every datagram was received once"
    );
    // Both paths really ran in the measured window.
    assert!(
        parked >= (CLIENTS * n) as u64,
        "{kind}: parked path: {parked}"
    );
    assert!(!expect_sync || sync > 0, "{kind}: synchronous path: {sync}");
}

/// `rounds` of 64 datagrams of 1 200 bytes from `sender` to `receiver`,
/// in runs (`push_segmented`), taken in `batch` and checked.
async fn bulk(
    sender: &UdpSocket,
    receiver: &UdpSocket,
    out: &mut SendBatch,
    batch: &mut RecvBatch,
    payload: &[u8],
    rounds: usize,
) -> usize {
    let to = receiver.local_addr().unwrap();
    let mut merged_receives = 0;
    for _ in 0..rounds {
        out.push_segmented(payload, 1200, to).unwrap();
        assert_eq!(sender.send_many(out).await.unwrap(), 64);
        let mut got = 0;
        while got < 64 {
            let n = receiver.recv_many(batch).await.unwrap();
            merged_receives += usize::from(n > batch.capacity());
            for datagram in batch.iter() {
                let (bytes, _) = datagram.unwrap();
                assert_eq!(bytes, &payload[got * 1200..(got + 1) * 1200]);
                got += 1;
            }
        }
    }
    merged_receives
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
        let receives = || {
            let stats = server.stats();
            stats.recv_parked + stats.recv_sync
        };
        assert_allocates_nothing("futures", &clients, || server.stats(), receives, true).await;
        clients[0].send(&[]).await.unwrap();
        task.await.unwrap().unwrap();

        // Batches on the same socket.
        let received = Rc::new(Cell::new(0));
        let task = spawn_local(echo_batch(server.clone(), received.clone()));
        let count = || received.get();
        assert_allocates_nothing("batches", &clients, || server.stats(), count, false).await;
        clients[0].send(&[]).await.unwrap();
        task.await.unwrap().unwrap();

        // The same socket through a UdpIo.
        let socket = Rc::try_unwrap(server).expect("the echo task is done");
        let stats = Rc::new(Cell::new(socket.stats()));
        let task = spawn_local(echo_io(socket, stats.clone()));
        let receives = || {
            let stats = stats.get();
            stats.recv_parked + stats.recv_sync
        };
        assert_allocates_nothing("UdpIo", &clients, || stats.get(), receives, true).await;
        clients[0].send(&[]).await.unwrap();
        task.await.unwrap().unwrap();

        // Bulk, with segment and receive offload (Linux's recvmmsg path).
        if cfg!(all(target_os = "linux", not(cellio_portable_datagrams))) {
            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
            receiver.set_recv_buffer_size(1 << 20).unwrap();
            receiver.enable_receive_offload().unwrap();
            let mut out = SendBatch::new();
            let mut batch = RecvBatch::new(2, MAX_MERGED);
            let payload: Vec<u8> = (0..64 * 1200).map(|i| (i % 251) as u8).collect();
            bulk(&sender, &receiver, &mut out, &mut batch, &payload, 5).await; // warm-up
            start_counting();
            let merged = bulk(&sender, &receiver, &mut out, &mut batch, &payload, 200).await;
            let allocations = stop_counting();
            eprintln!("offload: 12 800 datagrams, {merged} receives took more than a slot each");
            assert_eq!(
                allocations,
                0,
                "offload: heap allocations (sizes {:?})",
                recorded_sizes()
            );
            assert!(merged > 0, "the kernel merged datagrams");
        }
    });
}
