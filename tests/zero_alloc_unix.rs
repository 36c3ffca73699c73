//! `zero_alloc_echo` over Unix-domain streams: after a warm-up, echoing
//! thousands of messages through both the synchronous and the parked path
//! makes exactly zero heap allocations in the whole process, whether the
//! server side runs on the stream's futures or on a `UnixIo`.
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use cellio::unix::{UnixIo, UnixListener, UnixStream};
use cellio::{spawn_local, OpStats, Runtime};

#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

#[path = "util/echo_rounds.rs"]
mod echo_rounds;

use echo_rounds::{all_clients, CONNECTIONS, MESSAGE};

/// Server side on the stream's futures; returns its completion counts.
async fn echo_futures(stream: UnixStream) -> std::io::Result<OpStats> {
    let mut buf = [0u8; MESSAGE];
    loop {
        let n = stream.recv(&mut buf).await?;
        if n == 0 {
            return Ok(stream.stats());
        }
        stream.send_all(&buf[..n]).await?;
    }
}

/// Server side on a `UnixIo`; returns its completion counts.
async fn echo_io(stream: UnixStream) -> std::io::Result<OpStats> {
    let mut io = UnixIo::new(stream);
    let mut buf = [0u8; MESSAGE];
    loop {
        let n = io.recv(&mut buf).await?;
        if n == 0 {
            return Ok(io.get_ref().stats());
        }
        io.send_all(&buf[..n]).await?;
    }
}

#[test]
fn unix_echo_steady_state_allocates_nothing() {
    assert_counter_works();
    let dir = std::env::temp_dir().join(format!("cellio-zero-alloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");

    let runtime = Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = UnixListener::bind(&path).unwrap();

        // Set-up allocates (tasks, sockets, table pages): not counted. Half
        // the connections are served on futures, half through a UnixIo.
        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..CONNECTIONS {
            let client = UnixStream::connect(&path).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            tasks.push(if i % 2 == 0 {
                spawn_local(echo_futures(server))
            } else {
                spawn_local(echo_io(server))
            });
            clients.push(client);
        }

        all_clients(&clients, 20).await; // warm-up

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
        // Both paths ran on both kinds of server: at least one of each per
        // measured round per connection (the warm-up accounts for at most
        // 40 of each kind; see zero_alloc_tcp_io).
        let floor = rounds as u64;
        for (i, task) in tasks.into_iter().enumerate() {
            let stats = task.await.unwrap().unwrap();
            assert!(stats.recv_parked >= floor, "server {i}, parked: {stats:?}");
            assert!(
                stats.recv_sync >= floor,
                "server {i}, synchronous: {stats:?}"
            );
        }
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
