//! After a warm-up, echoing thousands of messages — through both the
//! synchronous path (data already buffered when `recv` is called) and the
//! parked path (`recv` waits for the reactor) — makes exactly zero heap
//! allocations in the whole process.
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use std::sync::Arc;

use cellio::{OpStats, Runtime, TcpListener, TcpStream};

#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, start_counting, stop_counting};

#[path = "util/echo_rounds.rs"]
mod echo_rounds;

use echo_rounds::{all_clients, echo, spawn_servers, Served, CONNECTIONS};

fn total(servers: &[Arc<TcpStream>]) -> OpStats {
    servers.iter().fold(OpStats::default(), |sum, s| {
        let stats = s.stats();
        OpStats {
            recv_sync: sum.recv_sync + stats.recv_sync,
            recv_parked: sum.recv_parked + stats.recv_parked,
            send_sync: sum.send_sync + stats.send_sync,
            send_parked: sum.send_parked + stats.send_parked,
        }
    })
}

#[test]
fn echo_steady_state_allocates_nothing() {
    assert_counter_works();

    let runtime = Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();

        // Set-up allocates (tasks, sockets, table pages): not counted.
        let Served {
            clients,
            servers,
            tasks,
        } = spawn_servers(&listener, echo).await;

        // Warm-up: queues and buffers reach their steady size.
        all_clients(&clients, 20).await;

        let rounds = 400;
        let before = total(&servers);
        start_counting();
        all_clients(&clients, rounds).await;
        let allocations = stop_counting();
        let after = total(&servers);

        let messages = (CONNECTIONS * rounds * 3) as u64;
        let parked = after.recv_parked - before.recv_parked;
        let sync = after.recv_sync - before.recv_sync;
        eprintln!("{messages} messages echoed: {parked} parked receives, {sync} synchronous");
        assert_eq!(
            allocations, 0,
            "heap allocations while echoing {messages} messages"
        );
        // Both paths really ran in the measured window.
        assert!(
            parked >= (CONNECTIONS * rounds) as u64,
            "parked path: {parked}"
        );
        assert!(
            sync >= (CONNECTIONS * rounds) as u64,
            "synchronous path: {sync}"
        );

        drop(clients);
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    });
}
