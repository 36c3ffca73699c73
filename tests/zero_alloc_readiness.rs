//! After a warm-up, an echo server that waits with `readable()` and
//! receives with `try_recv` into one buffer per thread (the guide's "Many
//! idle connections") echoes thousands of messages with exactly zero heap
//! allocations in the whole process, through waits that park and waits
//! that complete at once.
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;

use cellio::{Runtime, TcpListener, TcpStream};

#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

#[path = "util/echo_rounds.rs"]
mod echo_rounds;

use echo_rounds::{all_clients, spawn_servers, Served, CONNECTIONS, MESSAGE};

/// The worker's receive buffer, lent to one connection between awaits.
const SHARED: usize = 4 * MESSAGE;

thread_local! {
    static BUF: RefCell<[u8; SHARED]> = const { RefCell::new([0; SHARED]) };
}

/// Echoes until the peer closes, holding no receive buffer while it waits:
/// what `try_send` does not take at once is kept in `rest` and sent after.
async fn echo_by_readiness(stream: Arc<TcpStream>) -> io::Result<()> {
    let mut rest = [0u8; SHARED];
    loop {
        stream.readable().await?;
        let kept = BUF.with_borrow_mut(|buf| -> io::Result<Option<usize>> {
            let n = match stream.try_recv(buf) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(0)),
                Err(e) => return Err(e),
            };
            let sent = match stream.try_send(&buf[..n]) {
                Ok(sent) => sent,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            rest[..n - sent].copy_from_slice(&buf[sent..n]);
            Ok(Some(n - sent))
        })?;
        let Some(kept) = kept else { return Ok(()) };
        if kept > 0 {
            stream.send_all(&rest[..kept]).await?;
        }
    }
}

#[test]
fn echo_by_readiness_allocates_nothing() {
    assert_counter_works();

    let runtime = Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let Served {
            clients,
            servers,
            tasks,
        } = spawn_servers(&listener, echo_by_readiness).await;

        // Warm-up: queues and buffers reach their steady size.
        all_clients(&clients, 20).await;

        let rounds = 400;
        let parked_before: u64 = servers.iter().map(|s| s.stats().recv_parked).sum();
        start_counting();
        all_clients(&clients, rounds).await;
        let allocations = stop_counting();
        let parked: u64 =
            servers.iter().map(|s| s.stats().recv_parked).sum::<u64>() - parked_before;

        let messages = CONNECTIONS * rounds * 3;
        assert_eq!(
            allocations,
            0,
            "heap allocations while echoing {messages} messages (first sizes: {:?})",
            recorded_sizes()
        );
        // The waits really parked in the measured window (each client
        // round trip waits for the server's reply).
        assert!(
            parked >= (CONNECTIONS * rounds) as u64,
            "parked waits: {parked}"
        );

        drop(clients);
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    });
}
