//! Sockets on a paused clock (`Builder::start_paused`): I/O that is ready
//! wins over the clock's jump to the next timer, and an idle timeout with
//! no I/O at all fires at its exact virtual deadline.

mod util;

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use cellio_runtime::time::{self, sleep};
use cellio_runtime::{spawn_local, yield_now, Builder};
use futures_util::future::{select, Either};
use util::{cellio_pair, run_with};

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
