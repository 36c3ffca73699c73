//! A `JoinSet` that has held as many members as it holds now allocates
//! nothing more: spawning into it (here and on another worker), waking
//! and joining members, aborting them, and making, cloning and dropping
//! their `AbortHandle`s. The task blocks come from the workers' pools, the
//! members' places from the set's slab and ready list, which keep their
//! room.
//!
//! Cross-thread messages (the spawns sent to worker 1, the aborts' wakes)
//! sit in the workers' inbox lists, which grow at a new peak of messages
//! pending at once and keep their room. How high a round's peak goes
//! depends on how fast worker 1 drains its inbox, so the warm-up holds
//! worker 1 busy while a round's messages pile up: the lists reach the
//! most a round can need before counting starts. (Without that, CI once
//! counted 2 allocations, of 512 and 128 bytes, in the measured rounds.)
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};

use cellio::runtime::spawn_on;
use cellio::{yield_now, Builder, JoinError, JoinSet, Runtime};

/// Holds worker 1 busy while set (see the module docs).
static HOLD: AtomicBool = AtomicBool::new(false);
/// Worker 1 is spinning (held).
static SPINNING: AtomicBool = AtomicBool::new(false);

#[path = "util/blocks_home.rs"]
mod blocks_home;
#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use blocks_home::blocks_home;
use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

/// Members per round: more than the ready list's first two chunks (16 and
/// 32 places).
const MEMBERS: usize = 300;

/// A member with a buffer of its own, finishing after `turns` yields;
/// its output is its `seed`.
async fn work(seed: usize, turns: usize) -> usize {
    let buf = [seed as u8; 512];
    for _ in 0..turns {
        yield_now().await;
    }
    black_box(&buf)[seed % 512] as usize + (seed & !0xff)
}

/// One round: members here and on worker 1, finishing in a mixed order;
/// every third one aborted through a clone of its `AbortHandle`. Checks
/// that each member is returned once: with its output, or `Aborted` if it
/// was one of those (a member on worker 1 may finish before the abort
/// comes, and then keeps its output).
async fn round(runtime: &Runtime, set: &mut JoinSet<usize>, hold_worker_1: bool) {
    // Worker 1 spins (taking no messages) until every spawn and abort of
    // the round has been posted to it.
    let held = hold_worker_1.then(|| {
        HOLD.store(true, Ordering::SeqCst);
        SPINNING.store(false, Ordering::SeqCst);
        spawn_on(1, async {
            SPINNING.store(true, Ordering::SeqCst);
            while HOLD.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        })
    });
    // Every message of the round must find worker 1 spinning.
    while hold_worker_1 && !SPINNING.load(Ordering::SeqCst) {
        yield_now().await;
    }
    for i in 0..MEMBERS {
        let stopper = if i % 2 == 0 {
            set.spawn(work(i, i % 7))
        } else {
            set.spawn_on(1, work(i, i % 5))
        };
        if i % 3 == 0 {
            stopper.clone().abort();
        }
    }
    if let Some(held) = held {
        HOLD.store(false, Ordering::SeqCst);
        held.await.unwrap();
    }
    let (mut finished, mut aborted) = ([false; MEMBERS], 0);
    while let Some(output) = set.join_next().await {
        match output {
            Ok(i) => {
                assert!(!finished[i], "member {i} returned twice");
                finished[i] = true;
            }
            Err(JoinError::Aborted) => aborted += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    for (i, done) in finished.iter().enumerate() {
        assert!(
            *done || i % 3 == 0,
            "member {i} was not aborted but has no output"
        );
    }
    let done = finished.iter().filter(|done| **done).count();
    assert_eq!(done + aborted, MEMBERS, "every member returned once");
    blocks_home(runtime).await;
}

#[test]
fn a_join_set_allocates_nothing_once_it_has_grown() {
    assert_counter_works();
    let runtime = Builder::new().workers(2).build().unwrap();
    runtime.block_on(async {
        let mut set = JoinSet::new();
        // The inbox lists trade places (`spawned` and `arrivals`), so
        // each needs a held round of its own; a third for good measure.
        for _ in 0..3 {
            round(&runtime, &mut set, true).await;
        }
        round(&runtime, &mut set, false).await;
        start_counting();
        for _ in 0..5 {
            round(&runtime, &mut set, false).await;
        }
        let allocations = stop_counting();
        assert_eq!(
            allocations,
            0,
            "5 rounds of {MEMBERS} members allocated (sizes {:?})",
            recorded_sizes()
        );
    });
}
