//! After the channel is made, messages between two tasks of one worker
//! allocate nothing: not a send that completes at once, not one that waits
//! for room (however often it is polled while it waits, as in a `select`
//! loop: it registers its waker once), not a receive that waits, nor the
//! wake-ups between them.
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use cellio::runtime::local_channel::{channel, Receiver, Sender};
use cellio::runtime::{spawn_local, yield_now};
use cellio::{Builder, JoinHandle};
use futures_util::future::join;

#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

/// Sends `n` messages from two senders, the first of which polls its send
/// three times per wake-up while the ring is full.
async fn send_rounds(a: &Sender<u64>, b: &Sender<u64>, n: u64) {
    for i in 0..n {
        let mut send = pin!(a.send(i));
        // A select loop's extra polls of a waiting send.
        poll_fn(|cx| {
            for _ in 0..3 {
                if let Poll::Ready(done) = send.as_mut().poll(cx) {
                    return Poll::Ready(done);
                }
            }
            Poll::Pending
        })
        .await
        .expect("the receiver is there");
        b.send(i).await.expect("the receiver is there");
    }
}

/// Receives `2 * n` messages, yielding now and then so the ring fills.
async fn recv_rounds(rx: &mut Receiver<u64>, n: u64) -> u64 {
    let mut sum = 0;
    for i in 0..2 * n {
        sum += rx.recv().await.expect("senders remain");
        if i % 7 == 0 {
            yield_now().await;
        }
    }
    sum
}

#[test]
fn local_channel_messages_allocate_nothing() {
    assert_counter_works();
    let runtime = Builder::new().workers(1).build().unwrap();
    runtime.block_on(async {
        let (a, mut rx) = channel::<u64>(4);
        let b = a.clone();
        // Warm-up: the list of waiting senders reaches its peak.
        let receiver: JoinHandle<(Receiver<u64>, u64)> = spawn_local(async move {
            let sum = recv_rounds(&mut rx, 100).await;
            (rx, sum)
        });
        send_rounds(&a, &b, 100).await;
        let (mut rx, _) = receiver.await.unwrap();

        // A waiting send polled a thousand times registers its waker once.
        while a.try_send(0).is_ok() {}
        start_counting();
        {
            let mut send = pin!(a.send(1));
            poll_fn(|cx| {
                for _ in 0..1_000 {
                    assert!(send.as_mut().poll(cx).is_pending(), "the ring is full");
                }
                Poll::Ready(())
            })
            .await;
        }
        let allocations = stop_counting();
        assert_eq!(allocations, 0, "a waiting send polled again allocated");
        while rx.try_recv().is_ok() {}

        let n = 5_000;
        start_counting();
        let (sent, received) = join(send_rounds(&a, &b, n), recv_rounds(&mut rx, n)).await;
        let allocations = stop_counting();
        let () = sent;
        assert_eq!(received, 2 * (0..n).sum::<u64>());
        assert_eq!(
            allocations,
            0,
            "heap allocations for {} messages (sizes {:?})",
            2 * n,
            recorded_sizes()
        );
    });
}
