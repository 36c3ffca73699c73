//! After a warm-up, sending tasks to another worker (`spawn_on`, and
//! `spawn_local_on`, which builds the future there) makes zero
//! heap allocations in the whole process: a task's block comes from the
//! sender's pool and, when the task ends on the other worker, goes back to
//! it through the sender's inbox.
//!
//! Before blocks went home, every hand-off allocated a fresh block on the
//! sender, and the receiving worker pooled the finished ones, which it
//! never reused: an echo server handing connections from worker 0 to
//! worker 1 grew by a block per connection, up to the pool's cap (4096
//! blocks per size class).
//!
//! Both ways a task's last reference can go: on the sender, when the
//! sender awaits the `JoinHandle` (the block is then freed on its home
//! thread), and on the receiving worker, when the handle was dropped at
//! once (the block then travels back through the inbox). And a task
//! aborted (`JoinHandle::abort`) while it waits on the other worker: the
//! abort's wake crosses to that worker's inbox.
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use std::hint::black_box;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use cellio::runtime::{spawn_local_on, spawn_on};
use cellio::{yield_now, Builder, Runtime};

#[path = "util/blocks_home.rs"]
mod blocks_home;
#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use blocks_home::blocks_home;
use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

const WARM_UP: usize = 200;
const MEASURED: usize = 500;

/// Detached tasks that have finished on worker 1.
static DETACHED_DONE: AtomicUsize = AtomicUsize::new(0);
/// Tasks of the first phase that run (see
/// `the_first_blocks_home_allocate_nothing`).
static STARTED: AtomicUsize = AtomicUsize::new(0);
/// Lets the first phase's tasks end.
static GATE: AtomicBool = AtomicBool::new(false);

/// A task with a buffer of its own (a 4 KiB block), as a connection's is.
async fn work(seed: usize) -> usize {
    let buf = [seed as u8; 2048];
    yield_now().await;
    black_box(&buf)[seed % 2048] as usize
}

/// `n` hand-offs whose handles the sender awaits.
async fn awaited(runtime: &Runtime, n: usize) {
    for i in 0..n {
        let got = spawn_on(1, work(i)).await.expect("task ran");
        assert_eq!(got, i % 256);
        blocks_home(runtime).await;
    }
}

/// `work`, holding something that is not `Send` across its await (as a
/// `TcpIo` connection does), so it can only be started with
/// `spawn_local_on`.
async fn work_here(seed: usize) -> usize {
    let _not_send = PhantomData::<*const ()>;
    work(seed).await
}

/// `n` hand-offs built on worker 1 (`spawn_local_on`), handles awaited.
async fn built_there(runtime: &Runtime, n: usize) {
    for i in 0..n {
        let got = spawn_local_on(1, move || work_here(i))
            .await
            .expect("task ran");
        assert_eq!(got, i % 256);
        blocks_home(runtime).await;
    }
}

/// `n` hand-offs whose handles are dropped at once; waits until they ran.
async fn detached(runtime: &Runtime, n: usize) {
    let before = DETACHED_DONE.load(Ordering::Relaxed);
    for i in 0..n {
        drop(spawn_on(1, async move {
            work(i).await;
            DETACHED_DONE.fetch_add(1, Ordering::Relaxed);
        }));
        while DETACHED_DONE.load(Ordering::Relaxed) < before + i + 1 {
            yield_now().await;
        }
        blocks_home(runtime).await;
    }
}

/// Tasks of [`aborted`] that have started on worker 1.
static ABORTABLE_STARTED: AtomicUsize = AtomicUsize::new(0);

/// `n` hand-offs aborted once they run on worker 1 (and wait there
/// forever): the abort wakes worker 1 through its inbox, which drops the
/// future; the sender awaits `Aborted`.
async fn aborted(runtime: &Runtime, n: usize) {
    for i in 0..n {
        let before = ABORTABLE_STARTED.load(Ordering::Relaxed);
        let handle = spawn_on(1, async move {
            let buf = [i as u8; 2048];
            ABORTABLE_STARTED.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<()>().await;
            black_box(&buf)[0]
        });
        while ABORTABLE_STARTED.load(Ordering::Relaxed) == before {
            yield_now().await;
        }
        handle.abort();
        assert!(matches!(handle.await, Err(cellio::JoinError::Aborted)));
        blocks_home(runtime).await;
    }
}

/// Tasks of the first phase: more than an inbox's lists hold before they
/// grow (64), all ending at once.
const FIRST: usize = 100;

/// The first blocks ever to travel home, [`FIRST`] of them at once:
/// allocated (on the way in) before counting starts, their tasks let end
/// while counting. Ending must not allocate even then: the sender reserved
/// room in its inbox for every block it allocated (the list of returned
/// blocks used to grow on the ending thread at every new peak).
async fn the_first_blocks_home_allocate_nothing(runtime: &Runtime) {
    for _ in 0..FIRST {
        // The handle goes at once, so worker 1 drops the last reference
        // and the block travels through worker 0's inbox.
        drop(spawn_on(1, async {
            STARTED.fetch_add(1, Ordering::Relaxed);
            while !GATE.load(Ordering::Relaxed) {
                yield_now().await;
            }
            DETACHED_DONE.fetch_add(1, Ordering::Relaxed);
        }));
    }
    // Worker 1 has taken every task in (its table grew) and polls them.
    while STARTED.load(Ordering::Relaxed) < FIRST {
        yield_now().await;
    }
    start_counting();
    GATE.store(true, Ordering::Relaxed);
    while DETACHED_DONE.load(Ordering::Relaxed) < FIRST {
        yield_now().await;
    }
    blocks_home(runtime).await;
    let allocations = stop_counting();
    assert_eq!(
        allocations,
        0,
        "the first {FIRST} blocks sent home allocated (sizes {:?})",
        recorded_sizes()
    );
}

/// Runs [`MEASURED`] hand-offs of one kind (`hand_offs`) while counting.
async fn assert_allocates_nothing(kind: &str, hand_offs: impl std::future::Future<Output = ()>) {
    start_counting();
    hand_offs.await;
    let allocations = stop_counting();
    assert_eq!(
        allocations,
        0,
        "{MEASURED} {kind} hand-offs allocated (sizes {:?})",
        recorded_sizes()
    );
}

#[test]
fn tasks_sent_to_another_worker_allocate_nothing_after_warm_up() {
    assert_counter_works();
    let runtime = Builder::new().workers(2).build().unwrap();
    runtime.block_on(async {
        the_first_blocks_home_allocate_nothing(&runtime).await;
        awaited(&runtime, WARM_UP).await;
        detached(&runtime, WARM_UP).await;
        built_there(&runtime, WARM_UP).await;
        aborted(&runtime, WARM_UP).await;

        assert_allocates_nothing("awaited", awaited(&runtime, MEASURED)).await;
        assert_allocates_nothing("detached", detached(&runtime, MEASURED)).await;
        assert_allocates_nothing("built-there", built_there(&runtime, MEASURED)).await;
        assert_allocates_nothing("aborted", aborted(&runtime, MEASURED)).await;
    });
    let (reused, allocated, _) = runtime.task_pool_stats();
    // The first phase's blocks (a small class), and one block of `work`'s
    // class (`spawn_local_on`'s and `aborted`'s tasks are of it too), which
    // every later hand-off of the four kinds reused.
    assert_eq!(
        (reused, allocated),
        (4 * (WARM_UP + MEASURED) as u64 - 1, FIRST as u64 + 1),
        "worker 0's pool served every later hand-off with one block"
    );

    // The metrics say the same, and reading them allocates nothing.
    let metrics = runtime.metrics();
    start_counting();
    let worker0 = metrics.worker(0).unwrap();
    let mut worker1 = metrics.worker(1).unwrap();
    let total = metrics.total();
    let allocations = stop_counting();
    assert_eq!(allocations, 0, "reading the metrics allocated");
    assert_eq!(worker0.task_blocks_allocated, allocated);
    assert_eq!(worker1.task_blocks_allocated, 0, "worker 1 took no block");
    assert!(total.spawned_tasks >= worker0.spawned_tasks);
    // Worker 1 took every hand-off in; it publishes on its next turn.
    let hand_offs = (FIRST + 4 * (WARM_UP + MEASURED)) as u64;
    let start = std::time::Instant::now();
    while (worker1.spawned_tasks, worker1.alive_tasks) != (hand_offs, 0) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "worker 1 never showed {hand_offs} tasks taken in and none left: {worker1:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
        worker1 = metrics.worker(1).unwrap();
    }
}
