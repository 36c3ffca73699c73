//! `local_channel` with every operation at a seeded random fate: per seed,
//! a channel of 1 to 4 slots, 1 to 5 sender tasks on one worker, each
//! sending its numbered messages with `send` (awaited, after a yield,
//! polled once and dropped, or raced against a timer) or `try_send`, and
//! the receiver taking them with `recv` (the same fates) or `try_recv`,
//! pausing now and then; sometimes the receiver closes the channel part-way.
//!
//! What must hold, whatever the draw:
//! * the receiver gets exactly the messages whose send reported `Ok`, each
//!   once, in each sender's order (a dropped send sent nothing; a send that
//!   failed got its message back);
//! * after a close, sends fail, and the receiver still gets what was queued;
//! * every task ends (none is left waiting: no wake-up was lost).
//!
//! `CELLIO_STRESS_SEEDS=N` runs seeds `0..N` (default 6, one under Miri);
//! `CELLIO_STRESS_SEED=S` runs one.

mod util;

#[path = "../../net/tests/util/random.rs"]
#[allow(dead_code)]
mod random;

use std::cell::RefCell;
use std::pin::pin;
use std::rc::Rc;

use cellio_runtime::local_channel::{channel, Receiver, Sender, TryRecvError, TrySendError};
use cellio_runtime::{spawn_local, yield_now, Builder};
use random::{meet, seeds_from_env, Rng};
use util::with_timeout;

/// Messages each sender tries to send, at most.
const MOST_MESSAGES: u64 = util::scaled(300);

/// What the senders report: the messages each one sent (`Ok`), in order.
type Sent = Rc<RefCell<Vec<Vec<u64>>>>;

/// Sends up to `count` numbered messages, each with a random fate; stops
/// at the first that fails (the channel closed). Records what went.
async fn sender(id: usize, tx: Sender<(usize, u64)>, count: u64, sent: Sent, mut rng: Rng) {
    let mut next = 0;
    while next < count {
        if rng.percent(20) {
            match tx.try_send((id, next)) {
                Ok(()) => {
                    sent.borrow_mut()[id].push(next);
                    next += 1;
                }
                Err(TrySendError::Full(_)) => yield_now().await,
                Err(TrySendError::Closed(message)) => {
                    assert_eq!(message, (id, next), "the message comes back");
                    return;
                }
            }
            continue;
        }
        let fate = rng.fate();
        match meet(pin!(tx.send((id, next))), fate).await {
            Some(Ok(())) => {
                sent.borrow_mut()[id].push(next);
                next += 1;
            }
            Some(Err(error)) => {
                assert_eq!(error.0, (id, next), "the message comes back");
                return;
            }
            None => {} // dropped: nothing was sent; the same number again
        }
    }
}

/// Receives until every sender is gone, each receive with a random fate;
/// closes the channel after `close_after` messages if drawn. Returns what
/// came, in order.
async fn receiver(
    mut rx: Receiver<(usize, u64)>,
    close_after: Option<usize>,
    mut rng: Rng,
) -> Vec<(usize, u64)> {
    let mut got = Vec::new();
    loop {
        if close_after == Some(got.len()) {
            rx.close();
        }
        if rng.percent(10) {
            for _ in 0..rng.below(5) {
                yield_now().await; // let the ring fill
            }
        }
        if rng.percent(20) {
            match rx.try_recv() {
                Ok(message) => got.push(message),
                Err(TryRecvError::Empty) => yield_now().await,
                Err(TryRecvError::Disconnected) => return got,
            }
            continue;
        }
        let fate = rng.fate();
        match meet(pin!(rx.recv()), fate).await {
            Some(Some(message)) => got.push(message),
            Some(None) => return got,
            None => {} // dropped: it took nothing
        }
    }
}

fn run_seed(seed: u64) -> usize {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let capacity = 1 + rng.below(4) as usize;
    let senders = 1 + rng.below(5) as usize;
    let counts: Vec<u64> = (0..senders).map(|_| rng.below(MOST_MESSAGES + 1)).collect();
    let total: u64 = counts.iter().sum();
    let close_after = rng.percent(25).then(|| rng.below(total.max(1)) as usize);
    let what = format!(
        "seed {seed}: capacity {capacity}, {senders} senders, {counts:?} messages, close after \
         {close_after:?}"
    );
    let (got, sent) = with_timeout(util::LIMIT, {
        let (what, counts) = (what.clone(), counts.clone());
        move || {
            let runtime = Builder::new().workers(1).build().unwrap();
            runtime.block_on(async move {
                let (tx, rx) = channel::<(usize, u64)>(capacity);
                let sent: Sent = Rc::new(RefCell::new(vec![Vec::new(); senders]));
                let tasks: Vec<_> = counts
                    .iter()
                    .enumerate()
                    .map(|(id, &count)| {
                        let (tx, sent, rng) = (tx.clone(), sent.clone(), rng.fork());
                        spawn_local(sender(id, tx, count, sent, rng))
                    })
                    .collect();
                drop(tx);
                let got = receiver(rx, close_after, rng.fork()).await;
                for task in tasks {
                    task.await
                        .unwrap_or_else(|e| panic!("{what}: a sender failed: {e}"));
                }
                let sent = sent.borrow().clone();
                (got, sent)
            })
        }
    });
    for (id, sent) in sent.iter().enumerate() {
        let received: Vec<u64> = got.iter().filter(|m| m.0 == id).map(|m| m.1).collect();
        assert_eq!(&received, sent, "{what}: sender {id}'s messages");
        if close_after.is_none() {
            assert_eq!(
                sent.len() as u64,
                counts[id],
                "{what}: sender {id} stopped early"
            );
        }
    }
    got.len()
}

#[test]
fn every_message_sent_arrives_once_in_order_whatever_happens_to_the_operations() {
    let seeds = seeds_from_env();
    let runs = seeds.end - seeds.start;
    let mut messages = 0;
    for seed in seeds {
        messages += run_seed(seed);
    }
    let dropped = random::DROPPED.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{runs} seeds: {messages} messages, {dropped} operations dropped unfinished");
    if runs >= 6 {
        assert!(
            dropped > 0,
            "no operation was dropped unfinished: the draws test nothing"
        );
    }
}
