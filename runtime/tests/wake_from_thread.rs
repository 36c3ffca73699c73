//! Wakes that come from other threads: a stored waker fired later, many
//! round trips in a row (each needing the worker to wake from its reactor),
//! tasks woken through `JoinHandle`s, and many wakes of the same tasks
//! while their worker is away, which take no memory.
//!
//! The binary's allocator counts the allocations of the thread that asks,
//! so tests running in parallel do not disturb each other's counts.

#[path = "util/thread_allocations.rs"]
mod thread_allocations;
mod util;

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use cellio_runtime::{spawn, yield_now, Builder, Runtime};
use thread_allocations::thread_allocations;
use util::{run, scaled, with_timeout, Signal, LIMIT};

#[test]
fn a_future_woken_from_another_thread_completes() {
    run(|| async {
        let signal = Signal::new();
        let s = signal.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            s.fire();
        });
        signal.wait().await;
        assert!(started.elapsed() >= Duration::from_millis(25));
        thread.join().unwrap();
    });
}

#[test]
fn a_spawned_task_woken_from_another_thread_completes() {
    run(|| async {
        let signal = Signal::new();
        let task = spawn({
            let signal = signal.clone();
            async move {
                signal.wait().await;
                "woken"
            }
        });
        let s = signal.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            s.fire();
        });
        assert_eq!(task.await.unwrap(), "woken");
    });
}

/// A one-slot handoff from a thread to a task: the thread puts a value and
/// wakes the stored waker, then waits until the task acknowledges it, so
/// every value needs its own wake-up, usually of a worker blocked in its
/// reactor.
#[derive(Default)]
struct Slot {
    value: Option<u64>,
    waker: Option<Waker>,
    wakes: usize,
}

fn producer(
    slot: Arc<Mutex<Slot>>,
    acks: mpsc::Receiver<u64>,
    count: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for i in 0..count {
            let waker = {
                let mut s = slot.lock().unwrap();
                assert!(s.value.is_none());
                s.value = Some(i);
                s.waker.take()
            };
            if let Some(w) = waker {
                slot.lock().unwrap().wakes += 1;
                w.wake();
            }
            let acked = acks
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("value {i} was never received: lost wake-up"));
            assert_eq!(acked, i);
        }
    })
}

async fn consume(slot: &Mutex<Slot>, acks: &mpsc::Sender<u64>, count: u64) -> u64 {
    let mut sum = 0;
    for expected in 0..count {
        let v = poll_fn(|cx| {
            let mut s = slot.lock().unwrap();
            match s.value.take() {
                Some(v) => Poll::Ready(v),
                None => {
                    s.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        assert_eq!(v, expected, "values arrive in order, none lost");
        sum += v;
        acks.send(v).unwrap();
    }
    sum
}

/// Values handed from a thread to a future, one wake each: 10 000.
const HANDOFFS: u64 = scaled(10_000);

#[test]
fn every_cross_thread_wake_of_the_main_future_arrives() {
    let wakes = run(|| async {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let (ack_tx, ack_rx) = mpsc::channel();
        let thread = producer(slot.clone(), ack_rx, HANDOFFS);
        let sum = consume(&slot, &ack_tx, HANDOFFS).await;
        thread.join().unwrap();
        assert_eq!(sum, HANDOFFS * (HANDOFFS - 1) / 2);
        let wakes = slot.lock().unwrap().wakes;
        wakes
    });
    // Most values found the consumer parked: the test did exercise wakes.
    assert!(wakes > 0, "no cross-thread wake happened at all");
}

#[test]
fn every_cross_thread_wake_of_a_task_arrives() {
    run(|| async {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let (ack_tx, ack_rx) = mpsc::channel();
        let thread = producer(slot.clone(), ack_rx, HANDOFFS);
        let task = spawn({
            let slot = slot.clone();
            async move { consume(&slot, &ack_tx, HANDOFFS).await }
        });
        assert_eq!(task.await.unwrap(), HANDOFFS * (HANDOFFS - 1) / 2);
        thread.join().unwrap();
    });
}

#[test]
fn many_threads_waking_many_tasks_all_arrive() {
    const THREADS: usize = 8;
    const PER_THREAD: u64 = scaled(1_000);
    run(|| async {
        let mut tasks = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..THREADS {
            let slot = Arc::new(Mutex::new(Slot::default()));
            let (ack_tx, ack_rx) = mpsc::channel();
            threads.push(producer(slot.clone(), ack_rx, PER_THREAD));
            tasks.push(spawn(
                async move { consume(&slot, &ack_tx, PER_THREAD).await },
            ));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), PER_THREAD * (PER_THREAD - 1) / 2);
        }
        for t in threads {
            t.join().unwrap();
        }
    });
}

#[test]
fn a_task_awaiting_another_tasks_join_handle_is_woken() {
    run(|| async {
        let signal = Signal::new();
        let inner = spawn({
            let signal = signal.clone();
            async move {
                signal.wait().await;
                20
            }
        });
        let outer = spawn(async move { inner.await.unwrap() + 1 });
        let chain = spawn(async move { outer.await.unwrap() * 2 });
        let s = signal.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            s.fire();
        });
        assert_eq!(chain.await.unwrap(), 42);
    });
}

#[test]
fn a_join_handle_awaited_on_another_threads_runtime_is_woken() {
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let signal = Signal::new();
        let handle = rt.spawn({
            let signal = signal.clone();
            async move {
                signal.wait().await;
                "from the other runtime"
            }
        });
        let (parked_tx, parked_rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            Runtime::new().unwrap().block_on(async move {
                let mut handle = handle;
                let mut first = true;
                poll_fn(|cx| {
                    let p = std::pin::Pin::new(&mut handle).poll(cx);
                    if first {
                        first = false;
                        parked_tx.send(()).unwrap();
                    }
                    p
                })
                .await
            })
        });
        parked_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        // Run the task on this thread; it completes, notifying a handle
        // parked with the other runtime's waker.
        rt.block_on(async {
            signal.fire();
            for _ in 0..3 {
                yield_now().await;
            }
        });
        assert_eq!(waiter.join().unwrap().unwrap(), "from the other runtime");
    });
}

/// tokio's `Handle::block_on` from a thread of the program's own: spawn
/// through a `RuntimeHandle` and wait for the `JoinHandle` with any
/// executor (here a minimal one that parks the thread), while the
/// runtime's own thread is not in `block_on` (worker 1 runs the task).
#[test]
fn a_join_handle_waited_for_by_a_plain_threads_executor_completes() {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let signal = Signal::new();
        let (parked_tx, parked_rx) = mpsc::channel();
        let waiter = std::thread::spawn({
            let signal = signal.clone();
            move || {
                let mut task = std::pin::pin!(handle.spawn_on(1, async move {
                    signal.wait().await;
                    cellio_runtime::current_worker()
                }));
                let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
                let mut cx = std::task::Context::from_waker(&waker);
                let mut polls = 0;
                loop {
                    if let Poll::Ready(out) = task.as_mut().poll(&mut cx) {
                        return (out, polls);
                    }
                    polls += 1;
                    if polls == 1 {
                        parked_tx.send(()).unwrap();
                    }
                    std::thread::park();
                }
            }
        });
        parked_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        signal.fire();
        let (out, polls) = waiter.join().unwrap();
        assert_eq!(out.unwrap(), Some(1));
        assert!(polls >= 1, "the waiter waited");
        drop(rt);
    });
}

#[test]
fn wakes_after_completion_or_after_the_runtime_is_gone_are_harmless() {
    with_timeout(LIMIT, || {
        let stash: Arc<Mutex<Vec<Waker>>> = Arc::default();
        let polls = Arc::new(AtomicUsize::new(0));
        {
            let rt = Runtime::new().unwrap();
            rt.block_on(async {
                let stash2 = stash.clone();
                let polls2 = polls.clone();
                let task = spawn(async move {
                    let mut first = true;
                    poll_fn(|cx| {
                        polls2.fetch_add(1, Ordering::SeqCst);
                        stash2.lock().unwrap().push(cx.waker().clone());
                        if first {
                            first = false;
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        } else {
                            Poll::Ready(())
                        }
                    })
                    .await
                });
                task.await.unwrap();
                let before = polls.load(Ordering::SeqCst);
                // Stale wakes for a finished task, from other threads.
                let wakers = stash.lock().unwrap().clone();
                std::thread::spawn(move || wakers.into_iter().for_each(Waker::wake))
                    .join()
                    .unwrap();
                for _ in 0..5 {
                    yield_now().await;
                }
                assert_eq!(
                    polls.load(Ordering::SeqCst),
                    before,
                    "a finished task was polled"
                );
            });
        }
        // The runtime is gone; waking its wakers must not crash.
        for w in stash.lock().unwrap().drain(..) {
            w.wake();
        }
        // A new runtime on this thread is unaffected.
        let rt = Runtime::new().unwrap();
        assert_eq!(rt.block_on(async { spawn(async { 9 }).await.unwrap() }), 9);
    });
}

/// Worker 0 does not run outside `block_on`, so wakes from other threads
/// wait in its inbox meanwhile. Waking the same tasks again and again
/// there (a hand-written waker fired on every event) lists each once: the
/// waking thread allocates nothing however many wakes it sends (the list
/// grew by one entry a wake, for ever), and each task is polled once when
/// the worker runs again.
#[test]
fn repeated_wakes_while_the_worker_is_away_take_no_memory() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(1).build().unwrap();
        // Fewer than the inbox's room (its lists start with 64 entries):
        // the wakes need no allocation at all.
        let tasks = 20;
        let wakers: Arc<Mutex<Vec<Waker>>> = Arc::default();
        let polls = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            for _ in 0..tasks {
                let (wakers, polls) = (wakers.clone(), polls.clone());
                spawn(poll_fn(move |cx| {
                    if polls.fetch_add(1, Ordering::SeqCst) < tasks {
                        wakers.lock().unwrap().push(cx.waker().clone());
                    }
                    Poll::<()>::Pending
                }));
            }
            yield_now().await;
        });
        assert_eq!(polls.load(Ordering::SeqCst), tasks);
        let wakers = std::mem::take(&mut *wakers.lock().unwrap());
        let allocated = std::thread::spawn(move || {
            let before = thread_allocations();
            // One task woken again and again, then all of them in turn.
            // Under Miri far fewer (each cross-thread wake is thousands of
            // interpreted instructions), still enough to fill the inbox's
            // list several times over (64 entries).
            let (same, rounds) = if cfg!(miri) {
                (200, 20)
            } else {
                (200_000, 20_000)
            };
            for _ in 0..same {
                wakers[0].wake_by_ref();
            }
            for _ in 0..rounds {
                wakers.iter().for_each(Waker::wake_by_ref);
            }
            thread_allocations() - before
        })
        .join()
        .unwrap();
        assert_eq!(allocated, 0, "the wakes piled up in the worker's inbox");
        rt.block_on(yield_now());
        assert_eq!(polls.load(Ordering::SeqCst), 2 * tasks, "each polled once");
    });
}
