//! `local_channel`: messages between tasks of one worker arrive once each,
//! in order per sender; a send waits while the ring is full and a receive
//! while it is empty; the end of the senders ends the stream after what is
//! queued; a gone or closed receiver fails sends with the value back; a
//! sender future dropped while waiting strands no other sender, and many
//! dropped in any order leave the rest in order, in linear time. A freed
//! slot wakes one waiting send, the oldest, and is kept for it. The
//! messages still queued go with the receiver. A capacity too large to
//! allocate panics naming the channel. A ready receive or send spends a
//! unit of the task's budget: a loop over a channel that is always ready
//! gives way to the worker's other tasks, and a call that yields for the
//! budget takes nothing and keeps its value.

mod util;

use std::cell::Cell;
use std::future::poll_fn;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use cellio_reactor::budget::{self, DEFAULT_BUDGET};
use cellio_runtime::local_channel::{channel, SendError, Sender, TryRecvError, TrySendError};
use cellio_runtime::{spawn_local, yield_now};
use util::{poll_once, run, run_on};

#[test]
fn messages_arrive_once_each_in_order_per_sender() {
    let mut got = run(|| async {
        let (tx, mut rx) = channel::<(u32, u32)>(4);
        for sender in 0..3 {
            let tx = tx.clone();
            spawn_local(async move {
                for i in 0..200 {
                    tx.send((sender, i)).await.unwrap();
                }
            });
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(message) = rx.recv().await {
            got.push(message);
        }
        got
    });
    for sender in 0..3 {
        let mine: Vec<u32> = got.iter().filter(|m| m.0 == sender).map(|m| m.1).collect();
        assert_eq!(mine, (0..200).collect::<Vec<_>>(), "sender {sender}");
    }
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), 600);
}

#[test]
fn a_send_waits_while_the_ring_is_full() {
    run(|| async {
        let (tx, mut rx) = channel::<u32>(2);
        assert_eq!(tx.max_capacity(), 2);
        tx.try_send(1).unwrap();
        tx.send(2).await.unwrap();
        assert_eq!(tx.capacity(), 0);
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        let mut third = pin!(tx.send(3));
        assert!(poll_once(&mut third).await.is_pending());
        assert!(
            poll_once(&mut third).await.is_pending(),
            "polled again, still waiting"
        );
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(third.await, Ok(()));
        assert_eq!((rx.recv().await, rx.recv().await), (Some(2), Some(3)));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert!(rx.is_empty());
    });
}

#[test]
fn a_receive_waits_and_ends_after_the_last_sender() {
    run(|| async {
        let (tx, mut rx) = channel::<&str>(8);
        {
            let mut next = pin!(rx.recv());
            assert!(poll_once(&mut next).await.is_pending());
            let tx = tx.clone();
            spawn_local(async move { tx.send("late").await.unwrap() });
            assert_eq!(next.await, Some("late"));
        }
        tx.send("queued").await.unwrap();
        drop(tx);
        assert_eq!(rx.len(), 1);
        assert_eq!(
            rx.recv().await,
            Some("queued"),
            "what is queued comes first"
        );
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

#[test]
fn a_gone_or_closed_receiver_gives_the_value_back() {
    run(|| async {
        let (tx, mut rx) = channel::<String>(1);
        tx.send("in".into()).await.unwrap();
        let waiting = {
            let tx = tx.clone();
            spawn_local(async move { tx.send("waiting".into()).await })
        };
        yield_now().await;
        rx.close();
        assert_eq!(
            waiting.await.unwrap(),
            Err(SendError("waiting".to_string()))
        );
        assert!(tx.is_closed());
        assert_eq!(
            tx.try_send("after".into()),
            Err(TrySendError::Closed("after".into()))
        );
        assert_eq!(
            rx.recv().await.as_deref(),
            Some("in"),
            "queued before the close"
        );
        assert_eq!(rx.recv().await, None);
        drop(rx);
        let error = tx.send("dropped".into()).await.unwrap_err();
        assert_eq!(error.0, "dropped");
        assert_eq!(
            error.to_string(),
            "the channel's receiver is gone or closed"
        );
    });
}

/// Two senders wait on a full ring; the first one's future is dropped.
/// When a slot frees, the second still gets it (the dropped one left the
/// queue of waiting sends).
#[test]
fn a_dropped_waiting_send_strands_no_other_sender() {
    run(|| async {
        let (tx, mut rx) = channel::<u32>(1);
        tx.send(0).await.unwrap();
        let sent = Rc::new(Cell::new(false));
        let mut first = Box::pin(tx.send(1));
        assert!(poll_once(&mut first).await.is_pending());
        let second = {
            let (tx, sent) = (tx.clone(), sent.clone());
            spawn_local(async move {
                tx.send(2).await.unwrap();
                sent.set(true);
            })
        };
        yield_now().await; // the second waits too
        drop(first);
        assert_eq!(rx.recv().await, Some(0));
        second.await.unwrap();
        assert!(sent.get());
        assert_eq!(rx.recv().await, Some(2));
    });
}

/// Waiting sends dropped from the middle, the back and the front of the
/// queue: the others still get the slots in the order they began to wait.
#[test]
fn waiting_sends_dropped_in_any_order_leave_the_rest_in_order() {
    run(|| async {
        let (tx, mut rx) = channel::<u32>(1);
        tx.try_send(0).unwrap();
        let mut sends: Vec<_> = (1..=8).map(|i| Some(Box::pin(tx.send(i)))).collect();
        for send in sends.iter_mut().flatten() {
            assert!(poll_once(send).await.is_pending());
        }
        for dropped in [4, 7, 0, 5] {
            sends[dropped] = None; // sends 5, 8, 1 and 6
        }
        let mut got = vec![rx.recv().await.unwrap()];
        for send in sends.into_iter().flatten() {
            send.await.unwrap();
            got.push(rx.recv().await.unwrap());
        }
        assert_eq!(got, [0, 2, 3, 4, 7]);
        assert_eq!(tx.capacity(), 1, "no slot left promised");
    });
}

/// Half a million sends waiting on a full channel (connections feeding a
/// hub) are dropped newest first, as a timeout or a dropped `JoinSet` may:
/// each leaves the queue in O(1), so this takes well under the limit.
/// (Each drop used to scan and shift the queue: O(n²), minutes in a debug
/// build; found by a review.)
#[test]
#[cfg_attr(miri, ignore)] // a measure of scale, not of soundness: slow under Miri
fn many_waiting_sends_dropped_newest_first_leave_in_linear_time() {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Waker};
    const SENDS: usize = 500_000;
    util::with_timeout(util::LIMIT, || {
        let (tx, _rx) = channel::<usize>(1);
        tx.try_send(0).unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let mut sends: Vec<_> = (0..SENDS).map(|i| tx.send(i)).collect();
        for send in &mut sends {
            assert!(Pin::new(send).poll(&mut cx).is_pending());
        }
        while let Some(send) = sends.pop() {
            drop(send);
        }
        assert_eq!(tx.capacity(), 0, "still full, nothing promised");
    });
}

/// 100 sends wait on a ring of one slot; each received message frees the
/// slot for the oldest waiting send, and wakes only it: every sender task
/// is polled twice (once to wait, once to send), the first once, where
/// waking every waiting send polled them all at every slot (about 5 000
/// polls). The messages arrive in the order the sends began to wait.
#[test]
fn a_freed_slot_wakes_only_the_oldest_waiting_send() {
    const SENDERS: u64 = 100;
    let (polls, got) = run(|| async {
        let metrics = cellio_runtime::RuntimeHandle::current().unwrap().metrics();
        let polls_before = metrics.worker(0).unwrap().polls;
        let (tx, mut rx) = channel::<u64>(1);
        let senders: Vec<_> = (0..SENDERS)
            .map(|i| {
                let tx = tx.clone();
                spawn_local(async move { tx.send(i).await.unwrap() })
            })
            .collect();
        let mut got = Vec::new();
        for _ in 0..SENDERS {
            got.push(rx.recv().await.unwrap());
        }
        for sender in senders {
            sender.await.unwrap();
        }
        (metrics.worker(0).unwrap().polls - polls_before, got)
    });
    assert_eq!(got, (0..SENDERS).collect::<Vec<_>>());
    assert_eq!(polls, 1 + 2 * (SENDERS - 1));
}

/// A slot freed for a waiting send is kept for it: a `try_send` (or a new
/// `send`) cannot take it first, and `capacity` does not count it.
#[test]
fn a_promised_slot_cannot_be_taken_by_a_later_send() {
    run(|| async {
        let (tx, mut rx) = channel::<u32>(1);
        tx.try_send(0).unwrap();
        let waiting = {
            let tx = tx.clone();
            spawn_local(async move { tx.send(1).await.unwrap() })
        };
        yield_now().await; // it waits
        assert_eq!(rx.recv().await, Some(0)); // the slot is promised to it
        assert_eq!(tx.capacity(), 0);
        assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
        let mut late = Box::pin(tx.send(3));
        assert!(poll_once(&mut late).await.is_pending());
        waiting.await.unwrap();
        assert_eq!(rx.recv().await, Some(1));
        // Now the late send gets the next slot.
        late.await.unwrap();
        assert_eq!(rx.recv().await, Some(3));
    });
}

/// The send a slot was promised to is cancelled before it takes the slot
/// (its task aborted between the wake and its poll): the promise passes to
/// the next waiting send, which is not stranded.
#[test]
fn a_cancelled_notified_send_passes_its_slot_on() {
    run(|| async {
        let (tx, mut rx) = channel::<u32>(1);
        tx.try_send(0).unwrap();
        let spawn_send = |value| {
            let tx = tx.clone();
            spawn_local(async move { tx.send(value).await.unwrap() })
        };
        let (first, second) = (spawn_send(1), spawn_send(2));
        yield_now().await; // both wait, the first in front
        assert_eq!(rx.recv().await, Some(0)); // notifies the first...
        first.abort(); // ...which is dropped at its next poll
        assert_eq!(rx.recv().await, Some(2));
        second.await.unwrap();
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(tx.capacity(), 1, "no slot left promised");
    });
}

/// How many messages a task looping over a channel that is always ready
/// had taken when another task of its worker, spawned before the loop,
/// first ran; and every message the loop got. `loop_over` is the loop,
/// which counts what it has done in its `Cell`.
fn done_before_the_other_task_ran<F, Fut>(loop_over: F) -> (Option<usize>, Vec<usize>)
where
    F: FnOnce(Rc<Cell<usize>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Vec<usize>> + 'static,
{
    run_on(1, || async {
        spawn_local(async {
            let done = Rc::new(Cell::new(0));
            let seen = Rc::new(Cell::new(None));
            spawn_local({
                let (done, seen) = (done.clone(), seen.clone());
                async move { seen.set(Some(done.get())) }
            });
            let got = loop_over(done).await;
            (seen.get(), got)
        })
        .await
        .unwrap()
    })
}

const READY: usize = 2000;

/// A task receiving in a loop from a channel whose sender filled it gives
/// way to the other task of its one worker after a budget's worth of
/// messages, and still gets every message once, in order. (The loop took
/// all 2000 before the other task ran, the channel never being empty: a
/// chat server's writer task never ran and every client was dropped as
/// too slow; found by a review.)
#[test]
fn a_receive_loop_over_a_full_channel_yields_to_the_other_tasks() {
    let (seen, got) = done_before_the_other_task_ran(|done| async move {
        let (tx, mut rx) = channel::<usize>(READY);
        for i in 0..READY {
            tx.try_send(i).unwrap();
        }
        let mut got = Vec::new();
        while got.len() < READY {
            got.push(rx.recv().await.unwrap());
            done.set(got.len());
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        got
    });
    let budget = DEFAULT_BUDGET as usize;
    assert!(
        seen.is_some_and(|n| (1..=2 * budget).contains(&n)),
        "the other task ran after {seen:?} of {READY} messages"
    );
    assert_eq!(got, (0..READY).collect::<Vec<_>>());
}

/// The same for a task sending in a loop into a channel with room for
/// everything: it gives way after a budget's worth of sends.
#[test]
fn a_send_loop_into_a_channel_with_room_yields_to_the_other_tasks() {
    let (seen, got) = done_before_the_other_task_ran(|done| async move {
        let (tx, mut rx) = channel::<usize>(READY);
        for i in 0..READY {
            tx.send(i).await.unwrap();
            done.set(i + 1);
        }
        let mut got = Vec::new();
        while let Ok(value) = rx.try_recv() {
            got.push(value);
        }
        got
    });
    let budget = DEFAULT_BUDGET as usize;
    assert!(
        seen.is_some_and(|n| (1..=2 * budget).contains(&n)),
        "the other task ran after {seen:?} of {READY} sends"
    );
    assert_eq!(got, (0..READY).collect::<Vec<_>>());
}

/// With the task's budget spent, a receive that has a message waiting
/// returns `Pending` and leaves the message first in the ring; a send with
/// room, even one a slot was promised to, returns `Pending` and keeps its
/// value and its slot. Both complete at the task's next poll (their task
/// is woken: awaiting them with the budget spent does not hang).
#[test]
fn with_the_budget_spent_a_ready_call_takes_nothing_and_keeps_its_value() {
    run(|| async {
        let (tx, mut rx) = channel::<u32>(1);
        tx.try_send(0).unwrap();
        let mut promised = pin!(tx.send(1));
        assert!(poll_once(&mut promised).await.is_pending(), "it waits");
        budget::consume(u32::MAX);
        assert!(poll_fn(|cx| Poll::Ready(rx.poll_recv(cx)))
            .await
            .is_pending());
        assert_eq!(rx.len(), 1, "the message is still there");
        assert_eq!(rx.recv().await, Some(0), "taken at the next poll");
        // The freed slot is promised to the waiting send.
        assert_eq!(tx.capacity(), 0);
        budget::consume(u32::MAX);
        assert!(poll_once(&mut promised).await.is_pending());
        assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)), "still promised");
        assert_eq!(rx.len(), 0, "nothing sent yet");
        promised.await.unwrap();
        budget::consume(u32::MAX);
        let mut unpromised = pin!(tx.send(3));
        assert_eq!(rx.try_recv(), Ok(1));
        assert!(poll_once(&mut unpromised).await.is_pending());
        assert_eq!(rx.len(), 0);
        unpromised.await.unwrap();
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    });
}

#[test]
fn a_capacity_of_zero_holds_one() {
    run(|| async {
        let (tx, mut rx) = channel::<u8>(0);
        assert_eq!(tx.max_capacity(), 1);
        tx.send(7).await.unwrap();
        assert_eq!(tx.try_send(8), Err(TrySendError::Full(8)));
        assert_eq!(rx.recv().await, Some(7));
    });
}

#[test]
fn debug_output() {
    let (tx, rx) = channel::<u8>(3);
    tx.try_send(1).unwrap();
    assert_eq!(
        format!("{tx:?}"),
        "Sender { queued: 1, capacity: 3, closed: false }"
    );
    assert_eq!(
        format!("{rx:?}"),
        "Receiver { queued: 1, capacity: 3, senders: 1 }"
    );
    assert_eq!(format!("{:?}", TrySendError::Full(1)), "Full(..)");
}

/// Counts its drops.
struct Counted(Rc<Cell<u32>>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// The messages still queued when the receiver drops are dropped with it,
/// while a sender lives on (as tokio's `mpsc`): nobody can receive them.
/// (They stayed in the ring until the last sender went; found by a
/// review.)
#[test]
fn messages_queued_when_the_receiver_drops_are_dropped_with_it() {
    let drops = Rc::new(Cell::new(0));
    let (tx, rx) = channel::<Counted>(4);
    tx.try_send(Counted(drops.clone())).unwrap();
    tx.try_send(Counted(drops.clone())).unwrap();
    drop(rx);
    assert!(tx.is_closed());
    assert_eq!(drops.get(), 2, "the queued messages outlive the receiver");
    drop(tx);
    assert_eq!(drops.get(), 2);
}

/// Queued messages that hold a sender of their own channel (a reply
/// path, a handle back to a hub): dropping the receiver drops them, their
/// senders included, so the channel goes with the last sender. (The ring
/// and the messages' senders kept each other alive for good; found by a
/// review.)
#[test]
fn queued_messages_holding_a_sender_of_their_channel_are_not_leaked() {
    struct Message(
        #[allow(dead_code)] Sender<Message>,
        #[allow(dead_code)] Counted,
    );
    let drops = Rc::new(Cell::new(0));
    let (tx, rx) = channel::<Message>(4);
    for _ in 0..2 {
        let message = Message(tx.clone(), Counted(drops.clone()));
        assert!(tx.try_send(message).is_ok());
    }
    drop(rx);
    assert_eq!(drops.get(), 2, "the messages (and the channel) leaked");
    drop(tx);
}

/// A capacity whose ring cannot be allocated panics with a message that
/// names the channel. (It said only "capacity overflow", from `VecDeque`;
/// found by a review.)
#[test]
#[should_panic(expected = "local_channel::channel: no room for a ring of")]
fn a_capacity_too_large_to_allocate_panics_naming_the_channel() {
    let _ = channel::<u64>(usize::MAX);
}

/// A queued message whose drop panics, ahead of one that holds a sender
/// of its own channel: dropping the receiver unwinds with the first
/// panic, and the rest of the ring must still go (or the second message
/// and its sender keep the channel, and whatever the message owns, alive
/// for good: the leak d55473e fixed).
#[test]
fn a_message_whose_drop_panics_does_not_strand_the_rest() {
    enum Msg {
        Panics,
        // The sender is held only to be dropped with the message.
        Holds(#[allow(dead_code)] Sender<Msg>, Rc<Cell<bool>>),
    }
    impl Drop for Msg {
        fn drop(&mut self) {
            match self {
                Msg::Panics => panic!("a message's drop panics"),
                Msg::Holds(_, dropped) => dropped.set(true),
            }
        }
    }
    let (tx, rx) = channel::<Msg>(4);
    let dropped = Rc::new(Cell::new(false));
    assert!(tx.try_send(Msg::Panics).is_ok());
    assert!(tx
        .try_send(Msg::Holds(tx.clone(), Rc::clone(&dropped)))
        .is_ok());
    drop(tx);
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(rx)));
    assert!(unwound.is_err(), "the first message's panic");
    assert!(
        dropped.get(),
        "the second message was never dropped (leaked with its channel)"
    );
}
