//! `zero_alloc_echo` over Unix-domain sockets: after a warm-up, echoing
//! thousands of messages through both the synchronous and the parked path
//! makes exactly zero heap allocations in the whole process, whether the
//! server side runs on the stream's futures or on a `UnixIo`; and so does
//! echoing datagrams between two `UnixDatagram`s, one bound to a path and
//! one unbound (an unnamed sender).
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use cellio::unix::{UnixDatagram, UnixIo, UnixListener, UnixStream};
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

/// Sends `rounds` datagrams of `MESSAGE` bytes from an unbound client to a
/// server bound to a path, checking each: in even rounds the datagram is
/// queued before the receive (the synchronous path), in odd ones the
/// receive waits for it (the parked path).
async fn datagram_rounds(server: &UnixDatagram, client: &UnixDatagram, rounds: usize) {
    let path = server.local_addr().unwrap();
    let path = path.as_pathname().unwrap();
    let mut out = [0u8; MESSAGE];
    let mut buf = [0u8; MESSAGE];
    for round in 0..rounds {
        out.fill(round as u8);
        let (n, from) = if round % 2 == 0 {
            client.send_to(&out, path).await.unwrap();
            server.recv_from(&mut buf).await.unwrap()
        } else {
            let send = async {
                cellio::yield_now().await; // the receive parks first
                client.send_to(&out, path).await.unwrap()
            };
            futures_util::future::join(send, server.recv_from(&mut buf))
                .await
                .1
                .unwrap()
        };
        assert!(from.is_unnamed());
        assert_eq!(buf[..n], out[..]);
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

        // Datagrams: an unbound client sending to a bound server.
        let server = UnixDatagram::bind(path.with_extension("dgram")).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        datagram_rounds(&server, &client, 20).await; // warm-up
        start_counting();
        datagram_rounds(&server, &client, rounds).await;
        let allocations = stop_counting();
        assert_eq!(
            allocations,
            0,
            "heap allocations while sending {rounds} datagrams (sizes {:?})",
            recorded_sizes()
        );
        let stats = server.stats();
        assert!(stats.recv_parked >= rounds as u64 / 2, "parked: {stats:?}");
        assert!(
            stats.recv_sync >= rounds as u64 / 2,
            "synchronous: {stats:?}"
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
