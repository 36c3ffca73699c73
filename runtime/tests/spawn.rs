//! `spawn` and `JoinHandle`: outputs, panics, detaching, cancellation when
//! the runtime is dropped, and use outside a runtime.

mod util;

use std::future::{pending, poll_fn, Future};
use std::panic::catch_unwind;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cellio_runtime::{spawn, spawn_local, yield_now, JoinError, Runtime};
use util::{panic_text, run, run_within, scaled, with_timeout, Signal, LIMIT};

#[test]
fn many_tasks_return_their_outputs() {
    run(|| async {
        let handles: Vec<_> = (0..scaled(10_000))
            .map(|i| {
                spawn(async move {
                    if i % 3 == 0 {
                        yield_now().await;
                    }
                    i * 2
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.await.unwrap(), i as u64 * 2);
        }
    });
}

#[test]
fn task_slots_are_reused_and_outputs_stay_distinct() {
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            for round in 0..200u64 {
                let a = spawn(async move { (round, "a") });
                let b = spawn(async move {
                    yield_now().await;
                    (round, "b")
                });
                assert_eq!(b.await.unwrap(), (round, "b"));
                assert_eq!(a.await.unwrap(), (round, "a"));
            }
        });
        assert_eq!(rt.live_tasks(), 0);
    });
}

#[test]
fn a_panicking_task_yields_panicked_and_the_runtime_continues() {
    run(|| async {
        let boom = spawn(async {
            yield_now().await;
            panic!("boom {}", 42);
        });
        let err = boom.await.expect_err("the task panicked");
        assert!(err.is_panic());
        assert!(!err.is_cancelled());
        assert_eq!(err.to_string(), "task panicked: boom 42");
        match err {
            JoinError::Panicked(payload) => assert_eq!(panic_text(&*payload), "boom 42"),
            other => panic!("expected Panicked, got {other:?}"),
        }
        // A &'static str payload too.
        let err = spawn(async { panic!("static message") }).await.unwrap_err();
        assert_eq!(err.to_string(), "task panicked: static message");
        assert!(format!("{err:?}").contains("static message"));
        // Converting to io::Error keeps the message.
        let io_err: std::io::Error = err.into();
        assert!(io_err.to_string().contains("static message"));

        // The runtime and other tasks carry on.
        let ok = spawn(async { 1 });
        assert_eq!(ok.await.unwrap(), 1);
    });
}

#[test]
fn a_panicking_task_does_not_disturb_a_task_waiting_on_it_or_its_siblings() {
    run(|| async {
        let siblings: Vec<_> = (0..50).map(|i| spawn(async move { i })).collect();
        let watcher = spawn(async {
            let doomed = spawn(async {
                yield_now().await;
                panic!("inner");
            });
            doomed.await.unwrap_err().to_string()
        });
        assert_eq!(watcher.await.unwrap(), "task panicked: inner");
        for (i, s) in siblings.into_iter().enumerate() {
            assert_eq!(s.await.unwrap(), i);
        }
    });
}

#[test]
fn a_dropped_join_handle_detaches_the_task() {
    run(|| async {
        let counter = Arc::new(AtomicUsize::new(0));
        let signal = Signal::new();
        {
            let counter = counter.clone();
            let signal = signal.clone();
            let handle = spawn(async move {
                yield_now().await;
                counter.fetch_add(1, Ordering::SeqCst);
                signal.wait().await;
                counter.fetch_add(1, Ordering::SeqCst);
                "output nobody reads"
            });
            drop(handle);
        }
        let mut rounds = 0;
        while counter.load(Ordering::SeqCst) < 1 {
            rounds += 1;
            assert!(rounds < 1_000);
            yield_now().await;
        }
        // Woken from another thread after its handle is gone.
        let s = signal.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            s.fire();
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while counter.load(Ordering::SeqCst) < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "detached task never finished"
            );
            yield_now().await;
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// A `JoinHandle` polled (its waker parked in the task) and then dropped
/// while the task runs on lets go of that waker at once, as tokio's does:
/// it may own much (a `JoinSet`'s ready list, a `select`'s state), and the
/// detached task may run for ever.
#[test]
fn a_dropped_join_handle_lets_go_of_its_waker() {
    struct Owner;
    impl std::task::Wake for Owner {
        fn wake(self: Arc<Self>) {}
    }
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let owner = Arc::new(Owner);
        let mut handle = rt.spawn(pending::<()>());
        let waker = std::task::Waker::from(owner.clone());
        let polled = Pin::new(&mut handle).poll(&mut std::task::Context::from_waker(&waker));
        assert!(polled.is_pending());
        drop(waker);
        assert_eq!(Arc::strong_count(&owner), 2, "the task holds the waker");
        drop(handle);
        assert_eq!(
            Arc::strong_count(&owner),
            1,
            "the detached task still holds the dropped handle's waker"
        );
    });
}

/// A future whose drop is observable.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn unfinished_tasks_are_cancelled_when_the_runtime_is_dropped() {
    with_timeout(LIMIT, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let rt = Runtime::new().unwrap();
        let (never, parked) = rt.block_on(async {
            let guard = DropCounter(drops.clone());
            let never = spawn(async move {
                let _guard = guard;
                pending::<u32>().await
            });
            let parked = spawn(Signal::new().wait());
            for _ in 0..3 {
                yield_now().await;
            }
            (never, parked)
        });
        // Spawned from outside and never polled.
        let never_polled = rt.spawn(async { 5u8 });
        assert!(!never.is_finished());
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(rt);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the task's future is dropped"
        );
        assert!(never.is_finished(), "a cancelled task counts as finished");

        let rt2 = Runtime::new().unwrap();
        rt2.block_on(async {
            assert!(matches!(never.await, Err(JoinError::Cancelled)));
            let err = parked.await.unwrap_err();
            assert!(err.is_cancelled(), "{err:?}");
            assert!(err.to_string().contains("cancelled"));
            assert!(matches!(never_polled.await, Err(JoinError::Cancelled)));
        });
    });
}

/// The `JoinHandle` is already parked (awaited on another thread's runtime)
/// when the runtime that owns its task is dropped: it must be woken and see
/// `Cancelled`.
#[test]
fn a_join_handle_parked_elsewhere_is_woken_when_its_runtime_drops() {
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let handle = rt.spawn(pending::<()>());
        rt.block_on(yield_now());
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let rt2 = Runtime::new().unwrap();
            rt2.block_on(async move {
                let mut handle = handle;
                let mut told = false;
                poll_fn(|cx| {
                    let p = Pin::new(&mut handle).poll(cx);
                    if !told {
                        told = true;
                        tx.send(()).unwrap();
                    }
                    p
                })
                .await
            })
        });
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        drop(rt);
        let result = waiter.join().unwrap();
        assert!(matches!(result, Err(JoinError::Cancelled)), "{result:?}");
    });
}

#[test]
fn spawn_outside_a_runtime_panics_with_a_clear_message() {
    let payload = catch_unwind(|| {
        drop(spawn(async {}));
    })
    .expect_err("spawn outside a runtime must panic");
    let text = panic_text(&*payload);
    assert!(
        text.contains("spawn") && text.contains("outside a runtime"),
        "unclear message: {text:?}"
    );
    let payload = catch_unwind(|| {
        drop(spawn_local(async {}));
    })
    .expect_err("spawn_local outside a runtime must panic");
    assert!(panic_text(&*payload).contains("outside a runtime"));

    // After the runtime's block_on returned, the thread is outside again.
    let rt = Runtime::new().unwrap();
    rt.block_on(async {});
    assert!(catch_unwind(|| drop(spawn(async {}))).is_err());
}

#[test]
fn runtime_spawn_before_block_on_runs_the_task() {
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let handles: Vec<_> = (0..10).map(|i| rt.spawn(async move { i + 1 })).collect();
        assert_eq!(rt.live_tasks(), 10);
        let sum = rt.block_on(async {
            let mut sum = 0;
            for h in handles {
                sum += h.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, 55);
        assert_eq!(rt.live_tasks(), 0);
    });
}

#[test]
fn spawn_local_runs_non_send_futures() {
    run(|| async {
        let shared = std::rc::Rc::new(std::cell::Cell::new(0));
        let s = shared.clone();
        let h = spawn_local(async move {
            yield_now().await;
            s.set(s.get() + 1);
            std::rc::Rc::strong_count(&s)
        });
        assert_eq!(h.await.unwrap(), 2);
        assert_eq!(shared.get(), 1);
    });
}

#[test]
fn is_finished_reports_completion() {
    run(|| async {
        let signal = Signal::new();
        let handle = spawn(signal.wait());
        yield_now().await;
        assert!(!handle.is_finished());
        signal.fire();
        let mut rounds = 0;
        while !handle.is_finished() {
            rounds += 1;
            assert!(rounds < 1_000);
            yield_now().await;
        }
        handle.await.unwrap();
    });
}

/// Checking `is_finished` on a handle that is being awaited (polled once
/// and parked, e.g. inside a select loop) must not cost the awaiting task
/// its wake-up when the task later finishes.
#[test]
fn is_finished_between_polls_does_not_lose_the_wake_up() {
    run_within(Duration::from_secs(3), || async {
        let signal = Signal::new();
        let mut handle = spawn({
            let signal = signal.clone();
            async move {
                signal.wait().await;
                7
            }
        });
        let s = signal.clone();
        let firer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            s.fire();
        });
        let out = poll_fn(|cx| {
            let p = Pin::new(&mut handle).poll(cx);
            // A cheap status check between polls: if it finished meanwhile,
            // come back at once.
            if p.is_pending() && handle.is_finished() {
                cx.waker().wake_by_ref();
            }
            p
        })
        .await;
        firer.join().unwrap();
        assert_eq!(out.unwrap(), 7);
    });
}

#[test]
fn a_future_that_panics_when_dropped_yields_panicked_and_the_runtime_continues() {
    /// Ready with 7 at once, and panics when dropped (a hand-written
    /// future: an `async` block drops its locals inside its last poll).
    struct PanicsOnDrop;
    impl Future for PanicsOnDrop {
        type Output = u32;
        fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<u32> {
            std::task::Poll::Ready(7)
        }
    }
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("dropped");
        }
    }
    run(|| async {
        let err = spawn(PanicsOnDrop)
            .await
            .expect_err("the future's destructor panicked");
        assert!(err.is_panic());
        assert_eq!(err.to_string(), "task panicked: dropped");
        // The runtime and other tasks carry on.
        assert_eq!(spawn(async { 1 }).await.unwrap(), 1);
    });
}

/// Panics when dropped (and counts the drop first).
struct PanicsWhenDropped(Arc<AtomicUsize>);

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("dropped");
    }
}

#[test]
fn a_detached_task_whose_output_panics_when_dropped_does_not_stop_the_runtime() {
    let drops = Arc::new(AtomicUsize::new(0));
    let seen = drops.clone();
    run(move || async move {
        // The handle goes first, so the worker drops the output.
        drop(spawn(async move {
            yield_now().await;
            PanicsWhenDropped(seen)
        }));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while drops.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "output never dropped");
            yield_now().await;
        }
        assert_eq!(spawn(async { 1 }).await.unwrap(), 1);
    });
}

#[test]
fn a_future_that_panics_when_cancelled_yields_panicked_and_the_runtime_drops_cleanly() {
    with_timeout(LIMIT, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let rt = Runtime::new().unwrap();
        let guard = PanicsWhenDropped(drops.clone());
        let handle = rt.spawn(async move {
            let _guard = guard;
            pending::<()>().await
        });
        rt.block_on(yield_now());
        drop(rt);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the future is dropped once"
        );
        let err = Runtime::new()
            .unwrap()
            .block_on(handle)
            .expect_err("cancelled with a panicking destructor");
        assert!(err.is_panic(), "{err:?}");
        assert_eq!(err.to_string(), "task panicked: dropped");
    });
}
