//! Graceful shutdown and runtime teardown: `shutdown_timeout`,
//! `shutdown_requested`, `until_shutdown`, `RuntimeHandle::shutdown`, and
//! dropping a runtime with live tasks on several workers.
//!
//! (Socket-based shutdown tests live in `net/tests/shutdown.rs`.)

mod util;

use std::future::{pending, Future};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cellio_runtime::{
    current_worker, shutdown_requested, sleep, spawn, spawn_on, until_shutdown, yield_now, Builder,
    JoinError, JoinHandle, Runtime, RuntimeHandle,
};
use util::{scaled, with_timeout, Signal, LIMIT};

/// Counts its drops.
struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Awaits a `JoinHandle` of a runtime that is gone, from a fresh runtime.
fn join_elsewhere<T: Send + 'static>(handle: JoinHandle<T>) -> Result<T, JoinError> {
    Builder::new().workers(1).build().unwrap().block_on(handle)
}

fn is_cancelled<T>(result: &Result<T, JoinError>) -> bool {
    matches!(result, Err(JoinError::Cancelled))
}

/// Spawns on `worker` a task that never ends and counts its drop in `drops`.
fn spawn_stubborn(
    handle: &RuntimeHandle,
    worker: usize,
    drops: &Arc<AtomicUsize>,
) -> JoinHandle<()> {
    let guard = DropGuard(drops.clone());
    handle.spawn_on(worker, async move {
        let _guard = guard;
        pending::<()>().await;
    })
}

#[test]
fn shutdown_timeout_with_no_tasks_returns_0_quickly() {
    with_timeout(LIMIT, || {
        for workers in [1, 2, 4] {
            let rt = Builder::new().workers(workers).build().unwrap();
            rt.block_on(async { yield_now().await });
            let start = Instant::now();
            assert_eq!(rt.shutdown_timeout(Duration::from_secs(5)), 0);
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{workers} idle workers took {:?} to shut down",
                start.elapsed()
            );
        }
    });
}

#[test]
fn tasks_waiting_for_shutdown_finish_when_it_begins() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        // Never polled before the shutdown begins.
        let early = rt.spawn(async { shutdown_requested().await });
        // Registered as shutdown waiters before it begins, on both workers.
        let w0 = rt.spawn(async {
            shutdown_requested().await;
            current_worker()
        });
        let w0_until = rt.spawn(until_shutdown(pending::<()>()));
        let w1 = handle.spawn_on(1, async {
            shutdown_requested().await;
            current_worker()
        });
        let w1_until = handle.spawn_on(1, until_shutdown(pending::<u8>()));
        // A loop that keeps working until shutdown.
        let progress = Arc::new(AtomicU64::new(0));
        let w1_loop = handle.spawn_on(1, {
            let progress = progress.clone();
            async move {
                let mut rounds = 0u64;
                while until_shutdown(sleep(Duration::from_millis(1)))
                    .await
                    .is_some()
                {
                    rounds += 1;
                    progress.store(rounds, Ordering::Relaxed);
                }
                rounds
            }
        });
        // Until the loop has done some work (a fixed wait was not enough
        // under Miri, whose clock and scheduling shift with the code).
        rt.block_on(async {
            sleep(Duration::from_millis(30)).await;
            while progress.load(Ordering::Relaxed) == 0 {
                sleep(Duration::from_millis(1)).await;
            }
        });
        let rounds_before = progress.load(Ordering::Relaxed);
        assert!(!handle.is_shutting_down());
        assert!(!w0.is_finished() && !w1.is_finished() && !w1_loop.is_finished());

        let start = Instant::now();
        assert_eq!(
            rt.shutdown_timeout(Duration::from_secs(5)),
            0,
            "nothing to cancel"
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "waited for the grace period"
        );
        assert!(handle.is_shutting_down());

        assert_eq!(join_elsewhere(early).unwrap(), ());
        assert_eq!(join_elsewhere(w0).unwrap(), Some(0));
        assert_eq!(join_elsewhere(w0_until).unwrap(), None);
        assert_eq!(join_elsewhere(w1).unwrap(), Some(1));
        assert_eq!(join_elsewhere(w1_until).unwrap(), None);
        assert!(join_elsewhere(w1_loop).unwrap() >= rounds_before);
    });
}

#[test]
fn a_task_that_never_ends_is_cancelled_after_the_grace_period() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let stubborn = rt.spawn({
            let guard = DropGuard(drops.clone());
            async move {
                let _guard = guard;
                pending::<u32>().await
            }
        });
        let polite = rt.spawn(async { shutdown_requested().await });
        let grace = Duration::from_millis(100);
        let start = Instant::now();
        assert_eq!(rt.shutdown_timeout(grace), 1);
        assert!(
            start.elapsed() >= grace,
            "cancelled before the grace period ended"
        );
        assert!(start.elapsed() < Duration::from_secs(3));
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the future was not dropped"
        );
        assert!(stubborn.is_finished());
        assert!(is_cancelled(&join_elsewhere(stubborn)));
        assert_eq!(join_elsewhere(polite).unwrap(), ());
    });
}

/// Tasks sent to a worker (`spawn_on`) while it is stuck in a task that
/// blocks its thread past the grace period never start; they are counted
/// as cancelled when `shutdown_timeout` returns, and cancelled when the
/// worker gets free (its thread is left behind meanwhile).
#[test]
fn tasks_sent_to_a_blocked_worker_are_cancelled_and_counted() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let (busy_tx, busy_rx) = std::sync::mpsc::channel();
        let (free_tx, free_rx) = std::sync::mpsc::channel::<()>();
        // Worker 1 is blocked (no await) until the shutdown has returned.
        let blocker = handle.spawn_on(1, async move {
            busy_tx.send(()).unwrap();
            free_rx.recv().unwrap();
        });
        busy_rx.recv().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..5).map(|_| spawn_stubborn(&handle, 1, &drops)).collect();
        assert_eq!(rt.shutdown_timeout(Duration::from_millis(20)), 5);
        free_tx.send(()).unwrap();
        for h in handles {
            assert!(is_cancelled(&join_elsewhere(h)));
        }
        assert_eq!(drops.load(Ordering::SeqCst), 5);
        // The blocking task itself ran to its end: not cancelled.
        assert!(join_elsewhere(blocker).is_ok());
    });
}

/// `shutdown_timeout(grace)` returns after about `grace` even while a task
/// blocks its worker's thread for good, as tokio's does: the thread is
/// left behind (it waited for the thread, for ever), and the worker's
/// other tasks, counted as cancelled, are cancelled when it gets free.
#[test]
fn shutdown_timeout_does_not_wait_for_a_worker_stuck_in_a_poll() {
    with_a_worker_stuck_in_a_poll(|rt| {
        assert_eq!(rt.shutdown_timeout(Duration::from_millis(20)), 2);
    });
}

/// `shutdown_background` returns while a task blocks its worker's thread
/// for good, as tokio's does: the thread is left behind (it joined the
/// thread, for ever; found by a review), the other workers' tasks are
/// cancelled before it returns, and the stuck worker's other tasks when
/// it gets free.
#[test]
fn shutdown_background_does_not_wait_for_a_worker_stuck_in_a_poll() {
    with_a_worker_stuck_in_a_poll(Runtime::shutdown_background);
}

/// Three workers: worker 1 with a waiting task and one that blocks its
/// thread until `shut_down(rt)` has returned, worker 2 with a waiting task.
/// Without the bound `shut_down` never returns (`with_timeout` fails);
/// with it, worker 2's task is cancelled before it returns, and worker 1's
/// waiting one once the blocker lets its thread go.
fn with_a_worker_stuck_in_a_poll(shut_down: impl FnOnce(Runtime) + Send + 'static) {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(3).build().unwrap();
        let handle = rt.handle();
        let (busy_tx, busy_rx) = std::sync::mpsc::channel();
        let (free_tx, free_rx) = std::sync::mpsc::channel::<()>();
        let drops = Arc::new(AtomicUsize::new(0));
        let waiting = spawn_stubborn(&handle, 1, &drops);
        let blocker = handle.spawn_on(1, async move {
            yield_now().await;
            busy_tx.send(()).unwrap();
            free_rx.recv().unwrap(); // until the shutdown has returned
        });
        let elsewhere = spawn_stubborn(&handle, 2, &drops);
        busy_rx.recv().unwrap();
        shut_down(rt);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "worker 2's task is dropped"
        );
        assert!(is_cancelled(&join_elsewhere(elsewhere)));
        free_tx.send(()).unwrap();
        assert!(is_cancelled(&join_elsewhere(waiting)));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert!(join_elsewhere(blocker).is_ok());
    });
}

/// A future whose drop blocks its thread until told to go on.
struct BlockingDrop(std::sync::mpsc::Receiver<()>, Arc<AtomicUsize>);

impl Drop for BlockingDrop {
    fn drop(&mut self) {
        let _ = self.0.recv();
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

/// A worker left behind stuck in a cancelled future's drop: the tasks it
/// cancelled before are counted once, and the one it is stuck in is left
/// out, as a task stuck in its poll is. (Those it had cancelled were
/// counted, and counted again among the tasks it last published alive: 8
/// for 5 tasks; found by a review.)
#[test]
fn a_worker_stuck_in_a_cancelled_futures_drop_has_its_tasks_counted_once() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let drops = Arc::new(AtomicUsize::new(0));
        let (polled_tx, polled_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel();
        let mut blocker = Some(BlockingDrop(go_rx, drops.clone()));
        // The last one's drop blocks: the worker cancels the others first
        // (in the order it took them in).
        let handles: Vec<_> = (0..5)
            .map(|index| {
                let guard = DropGuard(drops.clone());
                let blocker = if index == 4 { blocker.take() } else { None };
                let polled = polled_tx.clone();
                handle.spawn_on(1, async move {
                    let _held = (guard, blocker);
                    polled.send(()).unwrap();
                    pending::<()>().await;
                })
            })
            .collect();
        // Worker 1 has them all in its table (and publishes them alive).
        for _ in 0..5 {
            polled_rx.recv().unwrap();
        }
        let count = rt.shutdown_timeout(Duration::from_millis(20));
        go_tx.send(()).unwrap();
        for h in handles {
            assert!(is_cancelled(&join_elsewhere(h)));
        }
        assert_eq!(
            drops.load(Ordering::SeqCst),
            6,
            "five guards and the blocker"
        );
        assert_eq!(count, 4, "5 cancelled, the stuck one left out");
    });
}

/// Tasks sent to worker 0 from outside just before a graceful shutdown are
/// still taken in: those that can finish within the grace period do, and
/// the rest are cancelled and counted.
#[test]
fn tasks_sent_to_worker_0_just_before_shutdown_run_or_are_counted() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(1).build().unwrap();
        let handle = rt.handle();
        let drops = Arc::new(AtomicUsize::new(0));
        let quick = handle.spawn_on(0, async { "finished" });
        let stubborn: Vec<_> = (0..5).map(|_| spawn_stubborn(&handle, 0, &drops)).collect();
        assert_eq!(rt.shutdown_timeout(Duration::from_millis(50)), 5);
        assert_eq!(drops.load(Ordering::SeqCst), 5);
        assert_eq!(join_elsewhere(quick).unwrap(), "finished");
        for h in stubborn {
            assert!(is_cancelled(&join_elsewhere(h)));
        }
    });
}

#[test]
fn stubborn_tasks_on_every_worker_are_cancelled_and_counted() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(3).build().unwrap();
        let handle = rt.handle();
        let drops = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for i in 0..9 {
            let guard = DropGuard(drops.clone());
            handles.push(handle.spawn_on(i % 3, async move {
                let _guard = guard;
                sleep(Duration::from_secs(3600)).await;
            }));
        }
        rt.block_on(sleep(Duration::from_millis(20)));
        assert_eq!(rt.shutdown_timeout(Duration::from_millis(50)), 9);
        assert_eq!(drops.load(Ordering::SeqCst), 9);
        for h in handles {
            assert!(h.is_finished());
            assert!(is_cancelled(&join_elsewhere(h)));
        }
    });
}

#[test]
fn tasks_on_worker_1_that_finish_within_the_grace_period_are_not_cancelled() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let on_1: Vec<_> = (0..10u64)
            .map(|i| {
                handle.spawn_on(1, async move {
                    sleep(Duration::from_millis(20 + 5 * i)).await;
                    i
                })
            })
            .collect();
        let on_0 = rt.spawn(async {
            sleep(Duration::from_millis(40)).await;
            "zero"
        });
        // Worker 1 has taken its tasks in and they are running.
        rt.block_on(sleep(Duration::from_millis(10)));
        let start = Instant::now();
        assert_eq!(rt.shutdown_timeout(Duration::from_secs(4)), 0);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "shutdown waited for the whole grace period"
        );
        for (i, h) in on_1.into_iter().enumerate() {
            assert_eq!(join_elsewhere(h).unwrap(), i as u64);
        }
        assert_eq!(join_elsewhere(on_0).unwrap(), "zero");
    });
}

/// A task sent to an idle background worker during the grace period runs,
/// as `shutdown_timeout` promises, and the shutdown still ends as soon as
/// it is done. (It used to be cancelled at once, uncounted:
/// `shutdown_timeout` returned 0; worker 1, with no task left, had left
/// when draining began; found by a review.)
#[test]
fn a_task_sent_to_an_idle_worker_during_the_grace_period_runs() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let sender = rt.spawn(async {
            shutdown_requested().await;
            sleep(Duration::from_millis(50)).await;
            spawn_on(1, async {
                sleep(Duration::from_millis(20)).await;
                42
            })
            .await
        });
        let start = Instant::now();
        assert_eq!(rt.shutdown_timeout(Duration::from_secs(5)), 0);
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "shutdown waited for the whole grace period"
        );
        match join_elsewhere(sender) {
            Ok(Ok(42)) => {}
            Ok(Err(e)) => panic!("the task sent to worker 1 during the grace period: {e}"),
            other => panic!("unexpected: {:?}", other.map(|r| r.map(|_| ()))),
        }
    });
}

/// A task sent to worker 1 just before a shutdown begins is either run or
/// cancelled: never lost with a `JoinHandle` that waits forever.
#[test]
fn a_task_spawned_on_worker_1_just_before_shutdown_is_not_lost() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let drops = Arc::new(AtomicUsize::new(0));
        let late = handle.spawn_on(1, {
            let guard = DropGuard(drops.clone());
            async move {
                let _guard = guard;
                sleep(Duration::from_millis(5)).await;
                3
            }
        });
        let cancelled = rt.shutdown_timeout(Duration::from_secs(2));
        let result = Builder::new()
            .workers(1)
            .build()
            .unwrap()
            .block_on(async { cellio_runtime::timeout(Duration::from_secs(1), late).await });
        match result {
            Ok(Ok(3)) => assert_eq!(cancelled, 0),
            Ok(Err(JoinError::Cancelled)) => assert_eq!(cancelled, 1),
            Ok(other) => panic!("unexpected result {:?}", other.map(|_| ())),
            Err(_) => panic!(
                "the task was neither run nor cancelled: its JoinHandle never completes \
                 (it was left in worker 1's inbox)"
            ),
        }
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the future was never dropped"
        );
    });
}

#[test]
fn runtime_handle_shutdown_from_another_thread_wakes_waiters() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let on_1 = handle.spawn_on(1, until_shutdown(pending::<()>()));
        let shutter = {
            let handle = handle.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                // As a signal-handling thread would.
                handle.shutdown();
            })
        };
        // The block_on future itself waits for shutdown.
        let start = Instant::now();
        let out = rt.block_on(until_shutdown(pending::<()>()));
        assert_eq!(out, None);
        assert!(start.elapsed() < Duration::from_secs(3));
        shutter.join().unwrap();
        assert!(handle.is_shutting_down());
        // Calling it again is harmless.
        handle.shutdown();
        assert_eq!(rt.block_on(on_1).unwrap(), None);
        // Once shutting down, the futures complete at once.
        assert_eq!(rt.block_on(until_shutdown(pending::<()>())), None);
        rt.block_on(shutdown_requested());
        assert_eq!(rt.shutdown_timeout(Duration::from_secs(1)), 0);
    });
}

#[test]
fn dropping_a_runtime_with_live_tasks_on_two_workers_cancels_them() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for i in 0..20 {
            let guard = DropGuard(drops.clone());
            let started = started.clone();
            handles.push(handle.spawn_on(i % 2, async move {
                let _guard = guard;
                started.fetch_add(1, Ordering::SeqCst);
                // Parked on a timer, on a signal nobody fires, or spinning.
                match i % 4 {
                    0 | 1 => sleep(Duration::from_secs(3600)).await,
                    2 => Signal::new().wait().await,
                    _ => loop {
                        yield_now().await;
                    },
                }
            }));
        }
        // Tasks that wait on each other across workers.
        let inner = handle.spawn_on(1, pending::<()>());
        handles.push(rt.spawn(async move {
            let _ = inner.await;
        }));
        rt.block_on(async {
            while started.load(Ordering::SeqCst) < 20 {
                sleep(Duration::from_millis(1)).await;
            }
        });
        let start = Instant::now();
        drop(rt);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "drop took {:?}",
            start.elapsed()
        );
        assert_eq!(drops.load(Ordering::SeqCst), 20);
        for h in handles {
            assert!(h.is_finished());
            assert!(is_cancelled(&join_elsewhere(h)));
        }
    });
}

/// Dropping a runtime with many live tasks takes time in proportion to
/// them. (Cancelling them was quadratic: each cancellation searched the
/// task table from its first slot, past every slot freed before it, so a
/// drop with 200 000 idle tasks took minutes in a debug build; found by a
/// review.)
#[test]
fn dropping_a_runtime_with_many_live_tasks_does_not_stall() {
    const TASKS: usize = if cfg!(miri) { 100 } else { 200_000 };
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(1).build().unwrap();
        for _ in 0..TASKS {
            drop(rt.spawn(pending::<()>()));
        }
        rt.block_on(yield_now()); // every task polled once
        assert_eq!(rt.live_tasks(), TASKS);
        let start = Instant::now();
        drop(rt);
        eprintln!("dropping {TASKS} tasks took {:?}", start.elapsed());
    });
}

/// The stop message can arrive while a background worker is between its
/// loop's stop check and its sleep; it must not be lost (the drop would
/// then wait forever for a worker asleep in its reactor).
#[test]
fn dropping_runtimes_right_after_cross_worker_work_never_hangs() {
    with_timeout(Duration::from_secs(20), || {
        for round in 0..scaled(300) {
            // `Runtime` is not `Send`: each round builds, uses and drops
            // its runtime on a thread of its own, watched from here.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = Builder::new().workers(3).build().unwrap();
                rt.block_on(async {
                    for i in 0..3 {
                        assert_eq!(
                            spawn_on(i, async { current_worker() }).await.unwrap(),
                            Some(i)
                        );
                    }
                });
                drop(rt);
                let _ = tx.send(());
            });
            if rx.recv_timeout(Duration::from_secs(5)).is_err() {
                panic!(
                    "round {round}: dropping the runtime hung (a worker slept through the stop)"
                );
            }
        }
    });
}

/// Same race, through a graceful shutdown: the drain message reaches a
/// worker whose tasks are all done.
#[test]
fn graceful_shutdown_right_after_cross_worker_work_never_waits_for_the_grace_period() {
    with_timeout(Duration::from_secs(30), || {
        for round in 0..scaled(200) {
            let rt = Builder::new().workers(3).build().unwrap();
            rt.block_on(async {
                for i in 0..3 {
                    spawn_on(i, async {}).await.unwrap();
                }
            });
            let start = Instant::now();
            assert_eq!(rt.shutdown_timeout(Duration::from_secs(2)), 0);
            assert!(
                start.elapsed() < Duration::from_millis(1500),
                "round {round}: an idle worker missed the drain and shutdown took {:?}",
                start.elapsed()
            );
        }
    });
}

/// `spawn_on` a worker that has stopped: its docs promise the task is
/// dropped and its handle reports `Cancelled`.
#[test]
fn spawn_on_a_stopped_runtime_reports_cancelled() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        rt.block_on(async { spawn_on(1, async {}).await.unwrap() });
        drop(rt);
        for worker in 0..2 {
            let drops = Arc::new(AtomicUsize::new(0));
            let guard = DropGuard(drops.clone());
            let late = handle.spawn_on(worker, async move {
                let _guard = guard;
                1
            });
            let result =
                Builder::new().workers(1).build().unwrap().block_on(async {
                    cellio_runtime::timeout(Duration::from_secs(1), late).await
                });
            match result {
                Ok(result) => assert!(
                    is_cancelled(&result),
                    "worker {worker}: expected Cancelled, got {:?}",
                    result.map(|_| ())
                ),
                Err(_) => panic!(
                    "worker {worker}: a task spawned onto a stopped runtime never completed \
                     (its JoinHandle hangs)"
                ),
            }
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "worker {worker}: future not dropped"
            );
        }
    });
}

/// How the drop of a task cancelled at the stop spawns on its own worker.
#[derive(Clone, Copy, Debug)]
enum SpawnHere {
    Spawn,
    SpawnOn,
    SpawnLocalOn,
}

/// Handles and live futures of the tasks [`Respawner`]s spawn, and the
/// drops that found no runtime to spawn in.
#[derive(Clone, Default)]
struct Respawned {
    handles: Arc<Mutex<Vec<JoinHandle<()>>>>,
    live: Arc<AtomicUsize>,
    no_runtime: Arc<AtomicUsize>,
}

/// Alive while counted in `live`; when dropped, spawns on `worker` (the
/// worker whose thread drops it) a task that never ends holding a
/// `Respawner` one `depth` less, until `depth` is 0.
struct Respawner {
    handle: RuntimeHandle,
    worker: usize,
    how: SpawnHere,
    depth: usize,
    out: Respawned,
}

impl Respawner {
    fn new(
        handle: RuntimeHandle,
        worker: usize,
        how: SpawnHere,
        depth: usize,
        out: Respawned,
    ) -> Self {
        out.live.fetch_add(1, Ordering::SeqCst);
        Respawner {
            handle,
            worker,
            how,
            depth,
            out,
        }
    }
}

impl Drop for Respawner {
    fn drop(&mut self) {
        self.out.live.fetch_sub(1, Ordering::SeqCst);
        if self.depth == 0 {
            return;
        }
        if current_worker() != Some(self.worker) {
            // Plain `spawn` would panic: no runtime here.
            self.out.no_runtime.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let child = Respawner::new(
            self.handle.clone(),
            self.worker,
            self.how,
            self.depth - 1,
            self.out.clone(),
        );
        let task = async move {
            let _child = child;
            pending::<()>().await
        };
        let handle = match self.how {
            SpawnHere::Spawn => spawn(task),
            SpawnHere::SpawnOn => self.handle.spawn_on(self.worker, task),
            SpawnHere::SpawnLocalOn => self.handle.spawn_local_on(self.worker, move || task),
        };
        self.out.handles.lock().unwrap().push(handle);
    }
}

/// When dropped, sends a task holding `inner` to `worker` from a plain
/// thread (through the worker's inbox) and waits until it is sent.
struct SendFromAThreadOnDrop {
    handle: RuntimeHandle,
    worker: usize,
    inner: Option<Respawner>,
    out: Respawned,
}

impl Drop for SendFromAThreadOnDrop {
    fn drop(&mut self) {
        let (handle, worker, out) = (self.handle.clone(), self.worker, self.out.clone());
        let inner = self.inner.take().unwrap();
        std::thread::spawn(move || {
            let sent = handle.spawn_on(worker, async move {
                let _inner = inner;
                pending::<()>().await
            });
            out.handles.lock().unwrap().push(sent);
        })
        .join()
        .unwrap();
    }
}

/// A task sent to a worker while it cancels its tasks at the stop (here
/// from the drop of one of them, through a plain thread) is cancelled when
/// the worker closes its inbox, on the worker's thread. If its drop spawns
/// on that worker (`spawn`, `spawn_on`, `spawn_local_on`), and that task's
/// drop spawns again, every one of those tasks is dropped too and its
/// handle reports `Cancelled`, as `spawn_on`'s docs promise for a stopped
/// runtime, however the runtime is stopped. (They went into the table of a
/// worker that had cancelled its tasks already: never run, never dropped,
/// their handles pending for ever; and on worker 0 the drop ran with no
/// runtime current, so `spawn` panicked.)
#[test]
fn tasks_spawned_from_the_drops_of_tasks_sent_during_the_stop_are_cancelled() {
    with_timeout(LIMIT * 3, || {
        let mut failures = Vec::new();
        let ways = [
            SpawnHere::Spawn,
            SpawnHere::SpawnOn,
            SpawnHere::SpawnLocalOn,
        ];
        for worker in 0..2 {
            for stop in 0..3 {
                // Under Miri, one way of spawning a stop: the same paths.
                if cfg!(miri) && stop != 0 && worker == 0 {
                    continue;
                }
                for (i, &how) in ways.iter().enumerate() {
                    if cfg!(miri) && i != (worker * 3 + stop) % 3 {
                        continue;
                    }
                    let out = Respawned::default();
                    let rt = Builder::new().workers(2).build().unwrap();
                    let handle = rt.handle();
                    let sender = SendFromAThreadOnDrop {
                        handle: handle.clone(),
                        worker,
                        inner: Some(Respawner::new(handle.clone(), worker, how, 2, out.clone())),
                        out: out.clone(),
                    };
                    let started = Signal::new();
                    let task_started = started.clone();
                    rt.block_on(async {
                        drop(spawn_on(worker, async move {
                            let _sender = sender;
                            task_started.fire();
                            pending::<()>().await
                        }));
                        started.wait().await;
                    });
                    match stop {
                        0 => drop(rt),
                        1 => {
                            let _ = rt.shutdown_timeout(Duration::ZERO);
                        }
                        _ => rt.shutdown_background(),
                    }
                    let handles = std::mem::take(&mut *out.handles.lock().unwrap());
                    let spawned = handles.len();
                    let mut pending_handles = 0;
                    for h in handles {
                        let result = Builder::new().workers(1).build().unwrap().block_on(async {
                            cellio_runtime::timeout(Duration::from_secs(1), h).await
                        });
                        match result {
                            Ok(result) => assert!(is_cancelled(&result)),
                            Err(_) => pending_handles += 1,
                        }
                    }
                    let live = out.live.load(Ordering::SeqCst);
                    let no_runtime = out.no_runtime.load(Ordering::SeqCst);
                    if (spawned, pending_handles, live, no_runtime) != (3, 0, 0, 0) {
                        failures.push(format!(
                            "worker {worker}, {how:?}, stopped by {}: {spawned} of 3 tasks \
                             spawned, {pending_handles} handles never completed, {live} futures \
                             never dropped, {no_runtime} drops found no runtime",
                            ["drop", "shutdown_timeout(0)", "shutdown_background"][stop]
                        ));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    });
}

/// Open file descriptors of this process.
#[cfg(target_os = "linux")]
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// Creating and dropping runtimes must give back what they took: the file
/// descriptors of every worker's reactor.
#[test]
#[cfg(target_os = "linux")]
#[cfg_attr(miri, ignore = "reads /proc/self/fd, which Miri's isolation forbids")]
fn dropped_multi_worker_runtimes_release_their_reactors() {
    with_timeout(Duration::from_secs(30), || {
        // Warm up, then measure.
        drop(Builder::new().workers(2).build().unwrap());
        let before = open_fds();
        for _ in 0..200 {
            let rt = Builder::new().workers(2).build().unwrap();
            rt.block_on(async { spawn_on(1, async {}).await.unwrap() });
            assert_eq!(rt.shutdown_timeout(Duration::from_secs(2)), 0);
        }
        let after = open_fds();
        // Other tests of this binary open descriptors concurrently: allow
        // slack, far below the 2+ per runtime a leak costs.
        assert!(
            after <= before + 60,
            "{} file descriptors leaked by 200 two-worker runtimes ({before} -> {after})",
            after.saturating_sub(before)
        );
    });
}

#[test]
fn runtime_handle_is_send_sync_and_current_inside_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuntimeHandle>();
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let inside =
            rt.block_on(async { spawn(async { RuntimeHandle::current().is_some() }).await });
        assert!(inside.unwrap());
        assert!(!rt.handle().is_shutting_down());
        let _ = format!("{:?}", rt.handle());
    });
}

#[allow(dead_code)]
fn assert_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    is_send(&shutdown_requested());
    is_send(&until_shutdown(async {}));
    let _: &dyn Future<Output = ()> = &shutdown_requested();
}

/// A runtime kept in a `thread_local!` (one runtime per thread, as the
/// guide suggests) is dropped by the thread's thread-local destructors, after
/// cellio's own thread-locals may be gone. That drop stops the runtime and
/// cancels its tasks; it must not touch a destroyed thread-local (a panic in
/// a thread-local's destructor aborts the whole process; found by a review).
#[test]
fn a_runtime_in_a_thread_local_is_dropped_cleanly_when_its_thread_ends() {
    for (workers, with_tasks) in [(1, false), (2, false), (1, true), (2, true)] {
        let drops = Arc::new(AtomicUsize::new(0));
        let drops_seen = drops.clone();
        with_timeout(LIMIT, move || {
            let thread = std::thread::spawn(move || {
                thread_local! {
                    static RUNTIME: std::cell::RefCell<Option<Runtime>> =
                        const { std::cell::RefCell::new(None) };
                }
                // The slot is used first: thread-locals are destroyed in the
                // reverse order of their first use, so cellio's own ones
                // (first used by the runtime) are gone when it drops.
                RUNTIME.with(|slot| assert!(slot.borrow().is_none()));
                let rt = Builder::new().workers(workers).build().unwrap();
                if with_tasks {
                    drop(spawn_stubborn(&rt.handle(), 0, &drops));
                    drop(spawn_stubborn(&rt.handle(), workers - 1, &drops));
                }
                assert_eq!(rt.block_on(async { spawn(async { 2 }).await.unwrap() }), 2);
                RUNTIME.with(|slot| *slot.borrow_mut() = Some(rt));
            });
            assert!(thread.join().is_ok(), "the thread panicked");
        });
        let expected = if with_tasks { 2 } else { 0 };
        assert_eq!(
            drops_seen.load(Ordering::SeqCst),
            expected,
            "workers {workers}"
        );
    }
}
