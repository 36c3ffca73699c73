//! tokio's `sync` module (`tokio = { default-features = false, features =
//! ["sync"] }`) works unchanged on cellio: its primitives need only a
//! `Waker`, and cellio's are ordinary ones. A program moving from tokio
//! keeps its `Mutex`, `Semaphore`, `Notify`, `mpsc`, `oneshot` and `watch`
//! code, between tasks of one worker, across workers, and to and from
//! plain threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cellio::runtime::{sleep, spawn_on};
use cellio::{spawn, Builder, JoinSet};
use tokio::sync::{mpsc, oneshot, watch, Mutex, Notify, Semaphore};

fn runtime() -> cellio::Runtime {
    Builder::new().workers(2).build().unwrap()
}

#[test]
fn a_mutex_shared_by_tasks_on_two_workers_loses_no_update() {
    let rt = runtime();
    let total = rt.block_on(async {
        let counter = Arc::new(Mutex::new(0u64));
        let mut set = JoinSet::new();
        for worker in [0, 1, 0, 1] {
            let counter = counter.clone();
            set.spawn_on(worker, async move {
                for _ in 0..500 {
                    let mut guard = counter.lock().await;
                    let seen = *guard;
                    // Held across a yield: the other tasks must wait.
                    cellio::yield_now().await;
                    *guard = seen + 1;
                }
            });
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
        let total = *counter.lock().await;
        total
    });
    assert_eq!(total, 2000);
}

#[test]
fn a_semaphore_bounds_how_many_tasks_run_at_once() {
    let rt = runtime();
    let most = rt.block_on(async {
        let permits = Arc::new(Semaphore::new(3));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut set = JoinSet::new();
        for i in 0..20 {
            let (permits, running, most) = (permits.clone(), running.clone(), most.clone());
            set.spawn_on(i % 2, async move {
                let _permit = permits.acquire().await.unwrap();
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                sleep(Duration::from_millis(2)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            });
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
        most.load(Ordering::SeqCst)
    });
    assert_eq!(most, 3, "the semaphore let {most} tasks in at once");
}

#[test]
fn notify_wakes_a_task_on_another_worker_and_from_a_thread() {
    let rt = runtime();
    rt.block_on(async {
        let notify = Arc::new(Notify::new());
        let waiter = spawn_on(1, {
            let notify = notify.clone();
            async move {
                notify.notified().await;
                notify.notified().await;
            }
        });
        notify.notify_one(); // stored if the waiter is not waiting yet
        sleep(Duration::from_millis(5)).await;
        let from_thread = notify.clone();
        std::thread::spawn(move || from_thread.notify_one())
            .join()
            .unwrap();
        waiter.await.unwrap();
    });
}

#[test]
fn channels_between_workers_and_threads_deliver_everything_in_order() {
    let rt = runtime();
    rt.block_on(async {
        // mpsc from worker 1 to worker 0.
        let (tx, mut rx) = mpsc::channel::<u32>(8);
        let producer = spawn_on(1, async move {
            for i in 0..1000 {
                tx.send(i).await.unwrap();
            }
        });
        for expected in 0..1000 {
            assert_eq!(rx.recv().await, Some(expected));
        }
        assert_eq!(rx.recv().await, None, "closed once the sender is gone");
        producer.await.unwrap();

        // oneshot from a plain thread, and back from a task to a thread.
        let (answer, answered) = oneshot::channel();
        std::thread::spawn(move || answer.send("from a thread").unwrap());
        assert_eq!(answered.await.unwrap(), "from a thread");
        let (to_thread, on_thread) = oneshot::channel();
        let thread = std::thread::spawn(move || on_thread.blocking_recv().unwrap());
        spawn(async move { to_thread.send(7).unwrap() })
            .await
            .unwrap();
        assert_eq!(thread.join().unwrap(), 7);

        // watch: the latest value reaches a task on the other worker.
        let (config, mut watched) = watch::channel(0u32);
        let follower = spawn_on(1, async move {
            while *watched.borrow_and_update() < 3 {
                watched.changed().await.unwrap();
            }
            *watched.borrow()
        });
        for value in 1..=3 {
            config.send(value).unwrap();
            sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(follower.await.unwrap(), 3);
    });
}
