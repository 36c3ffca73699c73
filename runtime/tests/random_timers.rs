//! Timers used every which way at once, at random: many tasks on a
//! multi-worker runtime (its worker count, event capacity, budget and event
//! interval drawn from a seed, down to 1), each running a drawn sequence of
//! timer uses:
//!
//! * a `sleep` awaited;
//! * a `sleep` polled once, then reset earlier or later, then awaited;
//! * a `sleep` polled once and dropped (its timer cancelled);
//! * a `sleep` armed here, then awaited on another worker;
//! * a completed `sleep` reset and awaited again;
//! * `timeout` of a `sleep` by another `sleep`;
//! * an `interval`'s first ticks.
//!
//! What must hold, whatever the draw: nothing completes before its
//! deadline (a timeout's `Elapsed` no earlier than its own deadline, its
//! output no earlier than the inner sleep's), an interval's ticks are on or
//! after their schedule, and every task ends (a lost timer would hang its
//! task: the watchdog fails the seed).
//!
//! `CELLIO_STRESS_SEEDS=N` runs seeds `0..N` (default 6, one under Miri);
//! `CELLIO_STRESS_SEED=S` runs one.

mod util;

#[path = "../../net/tests/util/random.rs"]
#[allow(dead_code)]
mod random;

use std::time::{Duration, Instant};

use cellio_runtime::{interval, sleep, spawn_on, timeout, RuntimeHandle};
use random::{draw_builder, seeds_from_env, Rng};
use util::{poll_once, with_timeout};

/// Tasks per seed (a fiftieth, at least two, under Miri).
const TASKS: usize = util::scaled(64) as usize;
/// Timer uses per task.
const USES: usize = 8;

/// A short duration: 0 to 3 ms, 0 often.
fn short(rng: &mut Rng) -> Duration {
    if rng.percent(20) {
        Duration::ZERO
    } else {
        Duration::from_micros(rng.below(3_000))
    }
}

/// Fails with `what` if `deadline` is still ahead.
fn not_early(deadline: Instant, what: &str) -> Result<(), String> {
    let now = Instant::now();
    if now < deadline {
        return Err(format!("{what} completed {:?} early", deadline - now));
    }
    Ok(())
}

/// One task's drawn sequence of timer uses.
async fn use_timers(workers: usize, mut rng: Rng) -> Result<(), String> {
    for _ in 0..USES {
        match rng.below(7) {
            0 => {
                let mut nap = sleep(short(&mut rng));
                let deadline = nap.deadline();
                (&mut nap).await;
                not_early(deadline, "a sleep")?;
            }
            1 => {
                let mut nap = sleep(short(&mut rng));
                let _ = poll_once(&mut nap).await;
                let moved = Instant::now() + short(&mut rng);
                nap.reset(moved);
                nap.await;
                not_early(moved, "a reset sleep")?;
            }
            2 => {
                let mut nap = sleep(short(&mut rng));
                let _ = poll_once(&mut nap).await;
                drop(nap);
            }
            3 => {
                let mut nap = sleep(short(&mut rng));
                let _ = poll_once(&mut nap).await;
                let deadline = nap.deadline();
                let elsewhere = rng.below(workers as u64) as usize;
                spawn_on(elsewhere, async move {
                    nap.await;
                    not_early(deadline, "a sleep awaited on another worker")
                })
                .await
                .map_err(|e| e.to_string())??;
            }
            4 => {
                let mut nap = sleep(short(&mut rng));
                (&mut nap).await;
                let again = Instant::now() + short(&mut rng);
                nap.reset(again);
                nap.await;
                not_early(again, "a sleep reset after it completed")?;
            }
            5 => {
                let (limit, inner) = (short(&mut rng), short(&mut rng));
                let start = Instant::now();
                match timeout(limit, sleep(inner)).await {
                    Ok(()) => not_early(start + inner, "a timeout's inner sleep")?,
                    Err(_) => not_early(start + limit, "a timeout's deadline")?,
                }
            }
            _ => {
                let period = Duration::from_micros(1 + rng.below(2_000));
                let mut ticks = interval(period);
                let first = ticks.tick().await;
                for k in 1..3u32 {
                    let tick = ticks.tick().await;
                    if tick < first + period * k {
                        return Err(format!("interval tick {k} is before its schedule"));
                    }
                    not_early(tick, "an interval tick")?;
                }
            }
        }
    }
    Ok(())
}

/// One seed: a fresh runtime, [`TASKS`] tasks spread over its workers.
fn run_seed(seed: u64) {
    let mut rng = Rng(seed);
    let (builder, config) = draw_builder(&mut rng);
    let result = with_timeout(util::LIMIT * 3, move || {
        let runtime = builder.build().expect("runtime");
        let handle: RuntimeHandle = runtime.handle();
        runtime.block_on(async move {
            let workers = handle.workers();
            let tasks: Vec<_> = (0..TASKS)
                .map(|i| handle.spawn_on(i % workers, use_timers(workers, rng.fork())))
                .collect();
            for (i, task) in tasks.into_iter().enumerate() {
                task.await
                    .map_err(|e| format!("task {i}: {e}"))?
                    .map_err(|e| format!("task {i}: {e}"))?;
            }
            Ok::<(), String>(())
        })
    });
    if let Err(e) = result {
        panic!("seed {seed} ({config}): {e}");
    }
}

#[test]
fn timers_used_every_which_way_never_fire_early_and_all_fire() {
    // Under Miri, one seed: the same paths, taken fewer times.
    let seeds = if cfg!(miri) { 0..1 } else { seeds_from_env() };
    for seed in seeds {
        run_seed(seed);
    }
}
