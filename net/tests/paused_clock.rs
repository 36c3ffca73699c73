//! Sockets on a paused clock (`Builder::start_paused`): I/O that is ready
//! wins over the clock's jump to the next timer, work off the worker that
//! a task waits for (a host-name lookup) holds the jump back, a send's
//! retry delay is cut short by a jump (never waited out in real time, nor
//! jumped over), and an idle timeout with no I/O at all fires at its exact
//! virtual deadline.

mod util;

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use cellio_net::unix::UnixDatagram;
use cellio_net::{lookup_host, TcpListener, TcpStream};
use cellio_runtime::time::{self, interval, sleep, timeout};
use cellio_runtime::{spawn_local, yield_now, Builder};
use futures_util::future::{select, Either};
use util::{cellio_pair, run_with, SocketDir};

fn paused() -> Builder {
    Builder::new().workers(1).start_paused(true)
}

/// `sleep(deadline)` or the receive, the sleep polled first: if the clock
/// had jumped to the deadline, the sleep would win even with data ready.
async fn receive_unless_late(
    late: Duration,
    receive: impl Future<Output = std::io::Result<usize>>,
) -> Option<usize> {
    match select(pin!(sleep(late)), pin!(receive)).await {
        Either::Left(((), _)) => None,
        Either::Right((received, _)) => Some(received.unwrap()),
    }
}

#[test]
fn ready_data_wins_over_the_jump_to_a_timer() {
    run_with(paused(), || async {
        let (client, server) = cellio_pair().await?;
        let start = time::now();
        let reader = spawn_local(async move {
            let mut buf = [0u8; 8];
            let got = receive_unless_late(Duration::from_secs(5), server.recv(&mut buf)).await;
            (got, buf)
        });
        yield_now().await; // the reader parks on its receive and its timer
        client.send_all(b"ready").await?;
        // Now only the reader's timer is armed and the worker has nothing
        // to run: the reactor must be asked before the clock jumps.
        let (got, buf) = reader.await.unwrap();
        assert_eq!(got, Some(5));
        assert_eq!(&buf[..5], b"ready");
        assert_eq!(time::now(), start, "the clock did not move");
        std::io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn an_idle_timeout_with_no_data_fires_at_its_virtual_deadline() {
    run_with(paused(), || async {
        let (_client, server) = cellio_pair().await?;
        let start = time::now();
        let mut buf = [0u8; 8];
        let got = receive_unless_late(Duration::from_secs(30), server.recv(&mut buf)).await;
        assert_eq!(got, None, "nothing was sent");
        assert_eq!(time::now() - start, Duration::from_secs(30));
        std::io::Result::Ok(())
    })
    .unwrap();
}

/// A host-name lookup runs on a lookup thread, in real time: the paused
/// clock must not jump to the lookup's timeout while it runs (tokio's
/// lookup runs on its blocking pool, whose jobs hold the clock). Several
/// rounds: before the fix a round could win the race when a warm lookup
/// thread answered before the worker went idle, but most lost.
#[test]
fn a_lookup_is_not_timed_out_by_the_clocks_jump() {
    run_with(paused(), || async {
        for round in 0..5 {
            let start = time::now();
            let got = timeout(Duration::from_secs(10), lookup_host("localhost:80")).await;
            let moved = time::now() - start;
            assert!(
                got.is_ok(),
                "round {round}: the lookup timed out after {moved:?} of virtual time"
            );
        }
    });
}

/// The same for a connect by name, which resolves first.
#[test]
fn a_connect_by_name_is_not_timed_out_by_the_clocks_jump() {
    run_with(paused(), || async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        for round in 0..5 {
            let connect = TcpStream::connect(("localhost", port));
            let got = timeout(Duration::from_secs(10), connect).await;
            assert!(
                got.is_ok(),
                "round {round}: connect(\"localhost\") timed out on the paused clock"
            );
        }
    });
}

/// A Unix datagram sent by address to a full peer waits out a real-time
/// delay (1 ms, doubling) on cellio-net's retry thread before it tries
/// again: once the peer has read (at 100 ms of virtual time), the retry
/// must come before the send's 10 s timeout, which the clock must not
/// jump to meanwhile.
#[test]
fn a_datagram_send_waiting_out_its_retry_delay_is_not_timed_out_by_the_clocks_jump() {
    let dir = SocketDir::new();
    let path = dir.path("peer.sock");
    run_with(paused(), move || async move {
        for round in 0..5 {
            let _ = std::fs::remove_file(&path);
            let peer = UnixDatagram::bind(&path).unwrap();
            // Fill the peer's queue from a std socket.
            let filler = std::os::unix::net::UnixDatagram::unbound().unwrap();
            filler.set_nonblocking(true).unwrap();
            let mut queued = 0;
            while filler.send_to(b"fill", &path).is_ok() {
                queued += 1;
            }
            assert!(queued > 0);
            let reader = spawn_local(async move {
                sleep(Duration::from_millis(100)).await;
                let mut buf = [0u8; 16];
                for _ in 0..queued {
                    peer.recv(&mut buf).await.unwrap();
                }
                peer
            });
            let sender = UnixDatagram::unbound().unwrap();
            let start = time::now();
            let sent = timeout(Duration::from_secs(10), sender.send_to(b"late", &path)).await;
            let moved = time::now() - start;
            let _peer = reader.await.unwrap();
            assert!(
                sent.is_ok(),
                "round {round}: the send timed out after {moved:?} of virtual time; \
                 the peer had room from 100 ms on"
            );
        }
    });
}

/// A send waiting for a full peer beside a 1 ms heartbeat (an `interval`),
/// the peer reading at 1 s of virtual time: each jump of the clock (one
/// heartbeat) ends the send's retry delay at once, so the retry never
/// waits out its real-time delay (up to 50 ms) and the clock is not held
/// meanwhile. Before the fix the clock moved one heartbeat per retry delay:
/// 1 s of virtual time took ~50 s of real time, and `run_with`'s 10 s
/// watchdog failed the test (100 ms of virtual time took 4.8 s).
#[test]
fn a_send_waiting_for_a_full_peer_does_not_slow_a_paused_clock_with_a_heartbeat() {
    let dir = SocketDir::new();
    let path = dir.path("peer.sock");
    run_with(paused(), move || async move {
        let peer = UnixDatagram::bind(&path).unwrap();
        let filler = std::os::unix::net::UnixDatagram::unbound().unwrap();
        filler.set_nonblocking(true).unwrap();
        let mut queued = 0;
        while filler.send_to(b"fill", &path).is_ok() {
            queued += 1;
        }
        assert!(queued > 0);
        let heartbeat = spawn_local(async {
            let mut beats = interval(Duration::from_millis(1));
            loop {
                beats.tick().await;
            }
        });
        let reader = spawn_local(async move {
            sleep(Duration::from_secs(1)).await;
            let mut buf = [0u8; 16];
            for _ in 0..queued {
                peer.recv(&mut buf).await.unwrap();
            }
            peer
        });
        let sender = UnixDatagram::unbound().unwrap();
        let start = time::now();
        let sent = timeout(Duration::from_secs(10), sender.send_to(b"late", &path)).await;
        let moved = time::now() - start;
        let _peer = reader.await.unwrap();
        heartbeat.abort();
        assert!(
            sent.is_ok(),
            "the send timed out after {moved:?} of virtual time; the peer had room from 1 s on"
        );
        assert!(
            moved >= Duration::from_secs(1),
            "the send went at {moved:?}, before the peer read"
        );
    });
}
