//! `Builder::worker_cores`: each worker's thread runs on the core it was
//! given (worker 0, the building thread, included), checked with
//! `sched_getaffinity` from inside each worker; cores the process cannot
//! use, or too few of them, make `build` fail with an error that says so,
//! leaving the building thread as it was. The blocking pool's threads are
//! not pinned, though started from pinned workers.

#![cfg(target_os = "linux")]

use std::io;

use cellio::runtime::{spawn_blocking, spawn_on, RuntimeHandle};
use cellio::Builder;

/// The cores the calling thread may run on.
fn allowed_cores() -> Vec<usize> {
    // SAFETY: all-zero is an empty `cpu_set_t`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a `cpu_set_t` of the size given; 0 is this thread.
    let result = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(result, 0, "{}", io::Error::last_os_error());
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `core < CPU_SETSIZE`.
        .filter(|&core| unsafe { libc::CPU_ISSET(core, &set) })
        .collect()
}

/// Runs `body` on a thread of its own, so that pinning it leaves the test
/// harness's threads alone.
fn on_a_thread<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(body).join().unwrap()
}

#[test]
fn each_worker_runs_on_its_core() {
    let cores = allowed_cores();
    // The last allowed core for worker 0, the first for worker 1 (the same
    // one on a one-core machine).
    let (zero, one) = (*cores.last().unwrap(), cores[0]);
    let seen = on_a_thread(move || {
        let rt = Builder::new()
            .workers(2)
            .worker_cores([zero, one])
            .build()
            .unwrap();
        let on_zero = allowed_cores();
        let on_one = rt.block_on(async {
            assert_eq!(RuntimeHandle::current().unwrap().workers(), 2);
            spawn_on(1, async { allowed_cores() }).await.unwrap()
        });
        (on_zero, on_one)
    });
    assert_eq!(seen, (vec![zero], vec![one]));
}

#[test]
fn blocking_jobs_run_on_the_cores_the_process_had_not_on_their_workers() {
    let process = allowed_cores();
    if process.len() < 2 {
        eprintln!("needs two cores to tell them apart");
        return;
    }
    let (zero, one) = (process[0], process[1]);
    let seen = on_a_thread(move || {
        let rt = Builder::new()
            .workers(2)
            .worker_cores([zero, one])
            .build()
            .unwrap();
        rt.block_on(async {
            // The pool's thread is started from worker 1, pinned to `one`,
            // then reused by a job from worker 0.
            let from_one = spawn_on(1, async { spawn_blocking(allowed_cores).await.unwrap() })
                .await
                .unwrap();
            let from_zero = spawn_blocking(allowed_cores).await.unwrap();
            (from_one, from_zero)
        })
    });
    assert_eq!(seen, (process.clone(), process), "a job ran pinned");
}

#[test]
fn a_core_the_process_cannot_use_is_an_error_naming_it() {
    let before = allowed_cores();
    let after = on_a_thread(|| {
        // A core past any this machine has, for worker 1: worker 0 (this
        // thread) is pinned only after every other worker, so it stays
        // as it was.
        let error = Builder::new()
            .workers(2)
            .worker_cores([0, 1000])
            .build()
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        assert!(
            error.to_string().contains("worker 1 to core 1000"),
            "{error}"
        );
        let error = Builder::new()
            .workers(1)
            .worker_cores([1 << 20])
            .build()
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        allowed_cores()
    });
    assert_eq!(after, before);
}

#[test]
fn fewer_cores_than_workers_is_an_error() {
    let error = Builder::new()
        .workers(3)
        .worker_cores([0, 1])
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert!(
        error.to_string().contains("2 cores for 3 workers"),
        "{error}"
    );
}
