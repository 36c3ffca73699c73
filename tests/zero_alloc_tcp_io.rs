//! `zero_alloc_echo`, with the server side served through `TcpIo` (the
//! poll methods that keep the cells reserved): after a warm-up, echoing
//! thousands of messages through both the synchronous and the parked path
//! makes exactly zero heap allocations in the whole process. Then the same
//! with each connection split (`into_split`) into a reading task and a
//! writing task that pass the messages through a `local_channel`.
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use cellio::runtime::local_channel;
use cellio::{spawn_local, OpStats, Runtime, TcpIo, TcpListener, TcpStream};

#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

#[path = "util/echo_rounds.rs"]
mod echo_rounds;

use echo_rounds::{all_clients, connections, CONNECTIONS, MESSAGE};

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

/// Server side, split: this task receives and hands each message to a
/// writing task through a local channel; until the peer closes.
async fn echo_split(stream: TcpStream) -> std::io::Result<()> {
    let (mut rx, mut tx) = TcpIo::new(stream).into_split();
    let (to_writer, mut from_reader) = local_channel::channel::<([u8; MESSAGE], usize)>(4);
    let writer = spawn_local(async move {
        while let Some((buf, n)) = from_reader.recv().await {
            tx.send_all(&buf[..n]).await?;
        }
        std::io::Result::Ok(())
    });
    let mut buf = [0u8; MESSAGE];
    loop {
        let n = rx.recv(&mut buf).await?;
        if n == 0 || to_writer.send((buf, n)).await.is_err() {
            break;
        }
    }
    drop(to_writer);
    writer.await.expect("the writer did not panic")
}

#[test]
fn tcp_io_echo_steady_state_allocates_nothing() {
    assert_counter_works();

    let runtime = Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();

        // Set-up allocates (tasks, sockets, table pages): not counted.
        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        for (client, server) in connections(&listener).await {
            tasks.push(spawn_local(echo(server)));
            clients.push(client);
        }

        // Warm-up: queues and buffers reach their steady size.
        all_clients(&clients, 20).await;

        let rounds = 400;
        start_counting();
        all_clients(&clients, rounds).await;
        let allocations = stop_counting();
        let messages = (CONNECTIONS * rounds * 3) as u64;
        assert_eq!(
            allocations,
            0,
            "heap allocations while echoing {messages} messages (sizes {:?})",
            recorded_sizes()
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

        // Split halves in two tasks, a local channel between them.
        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        for (client, server) in connections(&listener).await {
            tasks.push(spawn_local(echo_split(server)));
            clients.push(client);
        }
        all_clients(&clients, 20).await;
        start_counting();
        all_clients(&clients, rounds).await;
        let allocations = stop_counting();
        assert_eq!(
            allocations,
            0,
            "heap allocations while echoing {messages} messages through split halves (sizes {:?})",
            recorded_sizes()
        );
        drop(clients);
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    });
}
