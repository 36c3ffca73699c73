//! A proxy built on `copy_bidirectional` (its buffers inside the future),
//! then (on Linux) one built on `splice_bidirectional` (its pipes in the
//! kernel):
//! after a warm-up, echoing thousands of messages through it, client →
//! proxy → echo server and back, makes exactly zero heap allocations in
//! the whole process (tokio's `copy_bidirectional` allocates its two
//! buffers on every call; only a proxy's set-up is outside the count
//! here).
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use cellio::net::copy_bidirectional;
use cellio::{spawn_local, Runtime, TcpIo, TcpListener, TcpStream};

#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

#[path = "util/echo_rounds.rs"]
mod echo_rounds;

use echo_rounds::{all_clients, connections, echo, CONNECTIONS, MESSAGE};

/// Joins each client's server side to a connection to the echo server,
/// by copying, or by splicing if `splice`.
async fn proxies(
    listener: &TcpListener,
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))] splice: bool,
) -> (
    Vec<TcpStream>,
    Vec<cellio::JoinHandle<std::io::Result<(u64, u64)>>>,
) {
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    let inbound = connections(listener).await;
    let outbound = connections(listener).await;
    for ((client, proxy_in), (proxy_out, upstream)) in inbound.into_iter().zip(outbound) {
        spawn_local(echo(upstream));
        tasks.push(spawn_local(async move {
            #[cfg(target_os = "linux")]
            if splice {
                return cellio::net::splice_bidirectional(&proxy_in, &proxy_out).await;
            }
            let (mut a, mut b) = (TcpIo::new(proxy_in), TcpIo::new(proxy_out));
            copy_bidirectional(&mut a, &mut b).await
        }));
        clients.push(client);
    }
    (clients, tasks)
}

#[test]
fn copying_and_splicing_proxies_allocate_nothing_in_steady_state() {
    assert_counter_works();

    let runtime = Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // splice(2) is Linux's.
        let modes: &[bool] = if cfg!(target_os = "linux") {
            &[false, true]
        } else {
            &[false]
        };
        for &splice in modes {
            let (clients, tasks) = proxies(&listener, splice).await;
            // Warm-up: queues and buffers reach their steady size.
            all_clients(&clients, 20).await;

            let rounds = 300;
            start_counting();
            all_clients(&clients, rounds).await;
            let allocations = stop_counting();
            let messages = CONNECTIONS * rounds * 3;
            assert_eq!(
                allocations,
                0,
                "heap allocations while proxying {messages} messages, splice: {splice} \
                 (sizes {:?})",
                recorded_sizes()
            );

            // Each proxy saw the client's end of stream and the echo
            // server's, and counted every byte both ways: 20 + 300 rounds
            // of three messages.
            drop(clients);
            let bytes = ((20 + rounds) * 3 * MESSAGE) as u64;
            for task in tasks {
                assert_eq!(task.await.unwrap().unwrap(), (bytes, bytes));
            }
        }
    });
}
