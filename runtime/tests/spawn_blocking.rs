//! `spawn_blocking`: jobs run on the blocking pool's threads, never on a
//! worker, and the worker runs on while they block; the pool starts
//! threads on demand up to its maximum (further jobs queue), reuses idle
//! ones, and lets them go after the keep-alive; a panic, an abort before
//! the start and a runtime dropped with jobs queued each reach the
//! `JoinHandle` as tokio's do; dropping the runtime waits for running jobs
//! (after cancelling its tasks), `shutdown_timeout` within its grace, and
//! `shutdown_background` not at all.

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cellio_runtime::{
    spawn_blocking, yield_now, Builder, JoinError, JoinHandle, JoinSet, Runtime, RuntimeHandle,
};
use util::{quiet_panics_ending_with, run, with_timeout, LIMIT, ON_PURPOSE};

/// Waits (yielding) until `check` holds.
async fn until(mut check: impl FnMut() -> bool) {
    while !check() {
        yield_now().await;
    }
}

/// A runtime with one worker and the given pool maximum and keep-alive.
fn runtime(max_threads: usize, keep_alive: Duration) -> Runtime {
    Builder::new()
        .workers(1)
        .max_blocking_threads(max_threads)
        .blocking_keep_alive(keep_alive)
        .build()
        .unwrap()
}

/// A gate that blocking jobs wait at until it opens.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    fn wait(&self) {
        let (open, changed) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = changed.wait(open).unwrap();
        }
    }

    fn open(&self) {
        let (open, changed) = &*self.0;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }
}

#[test]
fn a_job_runs_on_a_blocking_thread_and_returns_its_output() {
    run(|| async {
        let worker = std::thread::current().id();
        let (name, thread) = spawn_blocking(|| {
            let me = std::thread::current();
            (me.name().map(str::to_owned), me.id())
        })
        .await
        .unwrap();
        assert_ne!(thread, worker, "not on the worker");
        assert!(name.unwrap().starts_with("cellio-blocking-"));
    });
}

#[test]
fn the_worker_runs_on_while_a_job_blocks() {
    run(|| async {
        let (tx, rx) = mpsc::channel::<u32>();
        // The job blocks until a task on the worker sends: if the worker
        // were blocked too, this would hang (and the watchdog fail it).
        let job = spawn_blocking(move || rx.recv().unwrap() * 2);
        let sender = cellio_runtime::spawn(async move {
            yield_now().await;
            tx.send(21).unwrap();
        });
        sender.await.unwrap();
        assert_eq!(job.await.unwrap(), 42);
    });
}

#[test]
fn threads_start_up_to_the_maximum_and_further_jobs_queue() {
    with_timeout(LIMIT, || {
        let rt = runtime(2, Duration::from_secs(10));
        rt.block_on(async {
            let gate = Gate::default();
            let started = Arc::new(Barrier::new(3));
            let mut jobs = Vec::new();
            for i in 0..5u32 {
                let (gate, started) = (gate.clone(), started.clone());
                jobs.push(spawn_blocking(move || {
                    if i < 2 {
                        started.wait();
                    }
                    gate.wait();
                    i
                }));
            }
            // Both threads are busy (the first two jobs are running).
            started.wait();
            let (threads, idle, queued) = rt.blocking_pool_stats();
            assert_eq!((threads, idle, queued), (2, 0, 3));
            gate.open();
            let mut outputs = Vec::new();
            for job in jobs {
                outputs.push(job.await.unwrap());
            }
            assert_eq!(outputs, [0, 1, 2, 3, 4]);
            assert_eq!(rt.blocking_pool_stats().0, 2, "never more than two");
        });
    });
}

#[test]
fn an_idle_thread_takes_the_next_job() {
    with_timeout(LIMIT, || {
        let rt = runtime(8, Duration::from_secs(10));
        rt.block_on(async {
            let first = spawn_blocking(|| std::thread::current().id())
                .await
                .unwrap();
            until(|| rt.blocking_pool_stats().1 == 1).await; // idle again
            let second = spawn_blocking(|| std::thread::current().id())
                .await
                .unwrap();
            assert_eq!(first, second, "the idle thread took the job");
            assert_eq!(rt.blocking_pool_stats().0, 1);
        });
    });
}

#[test]
fn an_idle_thread_leaves_after_the_keep_alive() {
    with_timeout(LIMIT, || {
        let rt = runtime(8, Duration::from_millis(50));
        rt.block_on(async {
            assert_eq!(spawn_blocking(|| 6).await.unwrap(), 6);
            // Without work it exits after the keep-alive (50 ms).
            until(|| rt.blocking_pool_stats() == (0, 0, 0)).await;
            // And a new job starts a new one.
            assert_eq!(spawn_blocking(|| 7).await.unwrap(), 7);
        });
    });
}

#[test]
fn a_panicking_job_is_reported_through_its_handle() {
    quiet_panics_ending_with(ON_PURPOSE);
    run(|| async {
        let error = spawn_blocking(|| -> u8 { panic!("a blocking job that panics, {ON_PURPOSE}") })
            .await
            .unwrap_err();
        assert!(error.is_panic());
        assert!(error.to_string().ends_with(ON_PURPOSE));
        // The thread survived the panic and takes the next job.
        assert_eq!(spawn_blocking(|| 1).await.unwrap(), 1);
    });
}

#[test]
fn an_abort_stops_a_job_that_has_not_started_and_not_one_that_runs() {
    with_timeout(LIMIT, || {
        let rt = runtime(1, Duration::from_secs(10));
        rt.block_on(async {
            let gate = Gate::default();
            let (running_tx, running_rx) = mpsc::channel();
            let blocker = {
                let gate = gate.clone();
                spawn_blocking(move || {
                    running_tx.send(()).unwrap();
                    gate.wait();
                    "ran to the end"
                })
            };
            running_rx.recv().unwrap();
            let ran = Arc::new(AtomicBool::new(false));
            let queued = {
                let ran = ran.clone();
                spawn_blocking(move || ran.store(true, Ordering::SeqCst))
            };
            assert_eq!(rt.blocking_pool_stats().2, 1, "the second job waits");
            queued.abort();
            blocker.abort(); // running: it finishes anyway
            gate.open();
            assert_eq!(blocker.await.unwrap(), "ran to the end");
            assert!(matches!(queued.await, Err(JoinError::Aborted)));
            assert!(!ran.load(Ordering::SeqCst), "the aborted job never ran");
        });
    });
}

/// Polls a handle once, outside any runtime.
fn poll_outside<T>(handle: &mut JoinHandle<T>) -> Poll<Result<T, JoinError>> {
    std::pin::Pin::new(handle).poll_now()
}

trait PollNow: std::future::Future {
    fn poll_now(self: std::pin::Pin<&mut Self>) -> Poll<Self::Output> {
        self.poll(&mut Context::from_waker(Waker::noop()))
    }
}

impl<F: std::future::Future> PollNow for F {}

/// Starts a job on `rt`'s pool that reports its start, waits at `gate`,
/// then pauses for `pause` and sets `done`; returns its handle once it
/// has started.
fn start_gated_job(
    rt: &Runtime,
    gate: &Gate,
    pause: Duration,
    done: &Arc<AtomicBool>,
) -> JoinHandle<&'static str> {
    let (started_tx, started_rx) = mpsc::channel();
    let (gate, done) = (gate.clone(), Arc::clone(done));
    let job = rt.spawn_blocking(move || {
        started_tx.send(()).unwrap();
        gate.wait();
        std::thread::sleep(pause);
        done.store(true, Ordering::SeqCst);
        "finished"
    });
    started_rx.recv().unwrap();
    job
}

/// Polls `handle` (outside any runtime) until it is ready.
fn await_outside<T: Send + 'static>(mut handle: JoinHandle<T>) -> Result<T, JoinError> {
    with_timeout(LIMIT, move || loop {
        if let Poll::Ready(output) = poll_outside(&mut handle) {
            return output;
        }
        std::thread::sleep(Duration::from_millis(1));
    })
}

#[test]
fn dropping_the_runtime_cancels_queued_jobs_and_waits_for_running_ones() {
    let done = Arc::new(AtomicBool::new(false));
    let (running, mut queued) = with_timeout(LIMIT, {
        let done = Arc::clone(&done);
        move || {
            let rt = runtime(1, Duration::from_secs(10));
            let gate = Gate::default();
            // The job still has 100 ms to run after the gate opens: a drop
            // that did not wait for it would return first.
            let running = start_gated_job(&rt, &gate, Duration::from_millis(100), &done);
            let queued = rt.spawn_blocking(|| "never");
            gate.open();
            drop(rt);
            assert!(
                done.load(Ordering::SeqCst),
                "the drop returned before the running job finished"
            );
            (running, queued)
        }
    });
    assert!(matches!(
        poll_outside(&mut queued),
        Poll::Ready(Err(JoinError::Cancelled))
    ));
    assert_eq!(await_outside(running).unwrap(), "finished");
}

/// The drop cancels the tasks before it waits for the jobs: a job waiting
/// on a channel whose sender a task holds sees the channel close, where
/// waiting first would wait for good.
#[test]
fn the_drop_waits_for_jobs_after_cancelling_the_tasks() {
    let job = with_timeout(LIMIT, || {
        let rt = runtime(1, Duration::from_secs(10));
        let (sender, receiver) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel();
        let job = rt.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            receiver.recv().is_err() // the sender dropped with its task
        });
        started_rx.recv().unwrap();
        rt.spawn(async move {
            let _sender = sender;
            std::future::pending::<()>().await
        });
        drop(rt);
        job
    });
    assert!(
        await_outside(job).unwrap(),
        "the job never saw the channel close"
    );
}

/// Records the messages of the `tracing` events at `WARN` and above.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Warnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message<'a>(&'a mut String);
        impl tracing::field::Visit for Message<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write;
                let _ = write!(self.0, "{}={value:?} ", field.name());
            }
        }
        let mut text = String::new();
        event.record(&mut Message(&mut text));
        self.0.lock().unwrap().push(text);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A drop kept waiting says why: after a second it logs a warning naming
/// the jobs and the ways not to wait, then waits on.
#[test]
fn a_drop_kept_waiting_by_a_job_logs_a_warning() {
    let warnings = Warnings::default();
    let gate = Gate::default();
    let opener = {
        let (warnings, gate) = (warnings.clone(), gate.clone());
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            while warnings.0.lock().unwrap().is_empty() && start.elapsed() < LIMIT {
                std::thread::sleep(Duration::from_millis(5));
            }
            gate.open();
        })
    };
    let done = Arc::new(AtomicBool::new(false));
    with_timeout(LIMIT * 2, {
        let (warnings, done, gate) = (warnings.clone(), Arc::clone(&done), gate.clone());
        move || {
            tracing::subscriber::with_default(warnings, || {
                let rt = runtime(1, Duration::from_secs(10));
                let _job = start_gated_job(&rt, &gate, Duration::ZERO, &done);
                drop(rt);
            })
        }
    });
    opener.join().unwrap();
    assert!(done.load(Ordering::SeqCst), "the drop did not wait");
    let warnings = warnings.0.lock().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("jobs=1") && warnings[0].contains("shutdown_background"),
        "{warnings:?}"
    );
}

/// Starts a job that waits at a gate that stays shut until `shut_down`
/// (one of the runtime's ways to end) has returned: an end that waited
/// for the job would never return. Then opens the gate and checks that
/// the job finishes on its thread.
fn end_leaving_a_job_running(shut_down: impl FnOnce(Runtime) + Send + 'static) {
    let done = Arc::new(AtomicBool::new(false));
    let gate = Gate::default();
    let running = with_timeout(LIMIT, {
        let (done, gate) = (Arc::clone(&done), gate.clone());
        move || {
            let rt = runtime(1, Duration::from_secs(10));
            let running = start_gated_job(&rt, &gate, Duration::ZERO, &done);
            shut_down(rt);
            running
        }
    });
    assert!(!done.load(Ordering::SeqCst));
    gate.open();
    assert_eq!(await_outside(running).unwrap(), "finished");
    assert!(done.load(Ordering::SeqCst));
}

#[test]
fn shutdown_background_does_not_wait_for_running_jobs() {
    end_leaving_a_job_running(Runtime::shutdown_background);
}

#[test]
fn shutdown_timeout_waits_for_running_jobs_within_its_grace() {
    let done = Arc::new(AtomicBool::new(false));
    with_timeout(LIMIT, {
        let done = Arc::clone(&done);
        move || {
            let rt = runtime(1, Duration::from_secs(10));
            let gate = Gate::default();
            let running = start_gated_job(&rt, &gate, Duration::from_millis(100), &done);
            gate.open();
            assert_eq!(rt.shutdown_timeout(LIMIT), 0);
            assert!(
                done.load(Ordering::SeqCst),
                "shutdown_timeout returned before the job finished"
            );
            assert_eq!(await_outside(running).unwrap(), "finished");
        }
    });
}

#[test]
fn shutdown_timeout_leaves_a_job_running_past_its_grace() {
    end_leaving_a_job_running(|rt| assert_eq!(rt.shutdown_timeout(Duration::from_millis(20)), 0));
}

#[test]
fn from_a_plain_thread_through_a_runtime_handle() {
    with_timeout(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let handle: RuntimeHandle = rt.handle();
        let job = std::thread::spawn(move || handle.spawn_blocking(|| 5))
            .join()
            .unwrap();
        assert_eq!(rt.block_on(job).unwrap(), 5);
        // The runtime's own method, outside `block_on`.
        let job = rt.spawn_blocking(|| 6);
        assert_eq!(rt.block_on(job).unwrap(), 6);
        // After the runtime is gone: cancelled, never run.
        let handle = rt.handle();
        drop(rt);
        let mut late = handle.spawn_blocking(|| 7);
        assert!(matches!(
            poll_outside(&mut late),
            Poll::Ready(Err(JoinError::Cancelled))
        ));
    });
}

/// Inside a job, as in tokio's: `RuntimeHandle::current()` is the job's
/// runtime, `spawn_blocking` and `spawn_on` work; `spawn`, which needs a
/// worker on this thread, panics saying what to use instead. (A job's
/// thread had no runtime at all: all of them panicked "outside a runtime",
/// and `current()` was `None`.)
#[test]
fn inside_a_job_its_runtime_is_current() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let (workers, nested, on_one, spawn_panic) = rt.block_on(async {
            spawn_blocking(|| {
                let workers = RuntimeHandle::current().map(|current| current.workers());
                let nested = spawn_blocking(|| 6);
                let on_one =
                    cellio_runtime::spawn_on(1, async { cellio_runtime::current_worker() });
                let spawned = std::panic::catch_unwind(|| drop(cellio_runtime::spawn(async {})));
                let spawn_panic = util::panic_text(spawned.unwrap_err().as_ref());
                (workers, nested, on_one, spawn_panic)
            })
            .await
            .unwrap()
        });
        assert_eq!(workers, Some(2));
        assert_eq!(rt.block_on(nested).unwrap(), 6);
        assert_eq!(rt.block_on(on_one).unwrap(), Some(1));
        assert!(
            spawn_panic.contains("spawn called in a spawn_blocking job")
                && spawn_panic.contains("spawn_on"),
            "{spawn_panic}"
        );
        // A job spawned from a plain thread has its runtime too.
        let job = std::thread::spawn(move || {
            handle.spawn_blocking(|| RuntimeHandle::current().is_some())
        })
        .join()
        .unwrap();
        assert!(rt.block_on(job).unwrap());
    });
}

/// The job's runtime is current only while the job runs: a value the job
/// leaves in a thread-local, dropped as its pool thread leaves after the
/// keep-alive, finds none.
#[test]
fn after_a_job_its_thread_has_no_runtime() {
    struct LookOnDrop(mpsc::Sender<bool>);
    impl Drop for LookOnDrop {
        fn drop(&mut self) {
            let _ = self.0.send(RuntimeHandle::current().is_some());
        }
    }
    thread_local! {
        static LEFT: std::cell::RefCell<Option<LookOnDrop>> =
            const { std::cell::RefCell::new(None) };
    }
    with_timeout(LIMIT, || {
        let rt = runtime(1, Duration::from_millis(10));
        let (look, seen) = mpsc::channel();
        let look = LookOnDrop(look);
        let job = rt.spawn_blocking(move || LEFT.with(|left| *left.borrow_mut() = Some(look)));
        rt.block_on(job).unwrap();
        let current = seen.recv_timeout(LIMIT).expect("the pool thread left");
        assert!(!current, "a pool thread kept its job's runtime current");
    });
}

#[test]
fn outside_a_runtime_it_panics_with_a_clear_message() {
    let payload = std::panic::catch_unwind(|| spawn_blocking(|| 1)).unwrap_err();
    let text = util::panic_text(payload.as_ref());
    assert!(
        text.contains("spawn_blocking called outside a runtime"),
        "{text}"
    );
}

#[test]
fn join_set_members_on_the_blocking_pool() {
    run(|| async {
        let mut set = JoinSet::new();
        for i in 0..20u64 {
            set.spawn_blocking(move || {
                std::thread::sleep(Duration::from_millis(i % 3));
                i
            });
        }
        let mut sum = 0;
        while let Some(output) = set.join_next().await {
            sum += output.unwrap();
        }
        assert_eq!(sum, 190);
    });
}

/// Jobs in bursts of 10 (more than the pool's 3 threads: some wait in the
/// queue) from both workers at once, with pauses between some bursts;
/// returns the sum of every job's output.
fn bursts_from_two_workers(keep_alive: Duration, jobs_per_worker: u64) -> u64 {
    let rt = Builder::new()
        .workers(2)
        .max_blocking_threads(3)
        .blocking_keep_alive(keep_alive)
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut set = JoinSet::new();
        for worker in 0..2 {
            set.spawn_on(worker, async move {
                let mut sum = 0u64;
                for burst in 0..jobs_per_worker / 10 {
                    let mut jobs = JoinSet::new();
                    for i in burst * 10..burst * 10 + 10 {
                        jobs.spawn_blocking(move || i);
                    }
                    while let Some(i) = jobs.join_next().await {
                        sum += i.unwrap();
                    }
                    if burst % 5 == 0 {
                        cellio_runtime::sleep(Duration::from_millis(3)).await;
                    }
                }
                sum
            });
        }
        let mut total = 0;
        while let Some(sum) = set.join_next().await {
            total += sum.unwrap();
        }
        total
    })
}

#[test]
fn jobs_in_bursts_are_all_run_while_threads_come_and_go() {
    // Threads leave after 1 ms without work, so the pauses between bursts
    // let them go and the next burst starts them again: exits and starts
    // race with jobs arriving from two threads.
    let jobs = util::scaled(400).div_ceil(10) * 10;
    let total = with_timeout(LIMIT, move || {
        bursts_from_two_workers(Duration::from_millis(1), jobs)
    });
    assert_eq!(total, 2 * (jobs - 1) * jobs / 2);
}

#[test]
fn no_job_waits_for_a_keep_alive_to_end() {
    // Threads that stay a minute: a job left in the queue with no thread
    // woken for it would wait for an idle thread's keep-alive to end (a
    // minute), and the watchdog (10 s) fails the test.
    let jobs = util::scaled(400).div_ceil(10) * 10;
    let total = with_timeout(LIMIT, move || {
        bursts_from_two_workers(Duration::from_secs(60), jobs)
    });
    assert_eq!(total, 2 * (jobs - 1) * jobs / 2);
}
