//! `zero_alloc_echo`, with the server side served through `TcpIo` (the
//! poll methods that keep the cells reserved): after a warm-up, echoing
//! thousands of messages through both the synchronous and the parked path
//! makes exactly zero heap allocations in the whole process.
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use cellio::{spawn, OpStats, Runtime, TcpIo, TcpListener, TcpStream};

#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{start_counting, stop_counting};

const CONNECTIONS: usize = 8;
const MESSAGE: usize = 64;

/// Server side: echo until the peer closes, then return the stream's
/// completion counts. The buffer holds exactly one message, so when two are
/// queued the second receive finds its data already buffered.
async fn echo(stream: TcpStream) -> std::io::Result<OpStats> {
    let mut io = TcpIo::new(stream);
    let mut buf = [0u8; MESSAGE];
    loop {
        let n = io.recv(&mut buf).await?;
        if n == 0 {
            return Ok(io.get_ref().stats());
        }
        io.send_all(&buf[..n]).await?;
    }
}

/// Client side: `rounds` rounds of ping-pong (the server's `recv` parks,
/// waiting for us), then `rounds` rounds of two messages sent back to back
/// (the server's first `recv` takes one and its second finds the other
/// already buffered: the synchronous path).
async fn client(stream: &TcpStream, seed: u8, rounds: usize) -> std::io::Result<()> {
    let mut out = [0u8; 2 * MESSAGE];
    let mut back = [0u8; 2 * MESSAGE];
    for round in 0..rounds {
        fill(&mut out[..MESSAGE], seed, round);
        stream.send_all(&out[..MESSAGE]).await?;
        stream.recv_exact(&mut back[..MESSAGE]).await?;
        assert_eq!(out[..MESSAGE], back[..MESSAGE], "echo mismatch");
    }
    for round in 0..rounds {
        fill(&mut out, seed, round);
        stream.send_all(&out[..MESSAGE]).await?;
        stream.send_all(&out[MESSAGE..]).await?;
        stream.recv_exact(&mut back).await?;
        assert_eq!(out, back, "echo mismatch");
    }
    Ok(())
}

fn fill(buf: &mut [u8], seed: u8, round: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = seed ^ (round as u8).wrapping_mul(31) ^ (i as u8);
    }
}

#[test]
fn tcp_io_echo_steady_state_allocates_nothing() {
    // The counter itself works: one Box is one allocation.
    start_counting();
    drop(std::hint::black_box(Box::new(7u64)));
    assert_eq!(
        stop_counting(),
        1,
        "the counting allocator must see allocations"
    );

    let runtime = Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();

        // Set-up allocates (tasks, sockets, table pages): not counted.
        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let client = TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            tasks.push(spawn(echo(server)));
            clients.push(client);
        }

        // Warm-up: queues and buffers reach their steady size.
        for (i, stream) in clients.iter().enumerate() {
            client(stream, i as u8, 20).await.unwrap();
        }

        let rounds = 400;
        start_counting();
        for (i, stream) in clients.iter().enumerate() {
            client(stream, i as u8, rounds).await.unwrap();
        }
        let allocations = stop_counting();
        let messages = (CONNECTIONS * rounds * 3) as u64;
        assert_eq!(
            allocations, 0,
            "heap allocations while echoing {messages} messages"
        );

        drop(clients);
        let mut stats = OpStats::default();
        for task in tasks {
            let s = task.await.unwrap().unwrap();
            stats.recv_parked += s.recv_parked;
            stats.recv_sync += s.recv_sync;
        }
        // Both paths really ran in the measured window. These are totals
        // since the start: the warm-up's 20 rounds account for at most 40
        // receives of each kind per connection, so a total of one per
        // measured round leaves at least 360 per connection in the window.
        let floor = (CONNECTIONS * rounds) as u64;
        eprintln!(
            "{messages} messages echoed: {} parked receives, {} synchronous",
            stats.recv_parked, stats.recv_sync
        );
        assert!(stats.recv_parked >= floor, "parked path: {stats:?}");
        assert!(stats.recv_sync >= floor, "synchronous path: {stats:?}");
    });
}
