//! Timers: `sleep`, `sleep_until`, `Sleep::reset`, `timeout` and
//! `interval`, on one worker and across workers and runtimes.
//!
//! Timing assertions are loose bounds only (a sleep never completes before
//! its deadline, and completes well within a second or two after it);
//! orderings and counts are what the tests pin down.
//!
//! This binary installs a *per-thread* counting allocator: it counts the
//! allocations of the thread that asks, so tests running in parallel do not
//! disturb each other's counts.

#[path = "util/thread_allocations.rs"]
mod thread_allocations;
mod util;

use std::future::{pending, poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use cellio_runtime::time::now;
use cellio_runtime::{
    current_worker, interval, interval_at, sleep, sleep_until, spawn, spawn_on, timeout,
    timeout_at, Builder, Elapsed, MissedTickBehavior, Runtime, Sleep,
};
use thread_allocations::thread_allocations;
use util::{panic_text, poll_once, run, run_on, scaled, with_timeout, Signal, LIMIT};

// ---------------------------------------------------------------------------
// Helpers.

/// Counts the polls of the future it wraps.
struct CountPolls<F> {
    polls: Arc<AtomicUsize>,
    inner: F,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is structurally pinned and never moved.
        let this = unsafe { self.get_unchecked_mut() };
        this.polls.fetch_add(1, Ordering::SeqCst);
        // SAFETY: see above.
        unsafe { Pin::new_unchecked(&mut this.inner) }.poll(cx)
    }
}

/// Counts its drops.
struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// sleep

#[test]
fn a_loop_of_sleeps_already_over_yields_to_the_other_tasks() {
    run(|| async {
        // A task that sleeps until a past instant, over and over, until
        // the other task says stop: each sleep completes at once, and
        // only the budget they spend lets the other task run at all.
        let stop = Arc::new(AtomicUsize::new(0));
        let spinner = spawn({
            let stop = stop.clone();
            async move {
                let mut rounds = 0u64;
                while stop.load(Ordering::SeqCst) == 0 {
                    sleep_until(Instant::now() - Duration::from_millis(1)).await;
                    rounds += 1;
                }
                rounds
            }
        });
        let stopper = spawn(async move { stop.store(1, Ordering::SeqCst) });
        stopper.await.unwrap();
        let rounds = spinner.await.unwrap();
        // The default budget is 128: the spinner gave way after that many.
        assert!((1..=256).contains(&rounds), "{rounds} rounds");
    });
}

/// A task that arms its sleep (polls it once, as a `select!` beside a
/// ready branch does), resets it to now and awaits it, in a loop: the
/// reset fires the entry at once and nothing in the loop is ever Pending,
/// so only the budget the completed sleep spends lets the other task run.
/// (It never did: 200 000 turns; found by a review.)
#[test]
fn a_loop_that_arms_its_sleep_and_resets_it_to_now_yields_to_the_other_tasks() {
    run(|| async {
        let stop = Arc::new(AtomicUsize::new(0));
        let looping = spawn({
            let stop = stop.clone();
            async move {
                let mut s = pin!(sleep(Duration::from_secs(3600)));
                let mut turns = 0u64;
                while stop.load(Ordering::SeqCst) == 0 && turns < 200_000 {
                    s.as_mut().reset(Instant::now() + Duration::from_secs(3600));
                    poll_fn(|cx| {
                        assert!(s.as_mut().poll(cx).is_pending(), "armed");
                        Poll::Ready(())
                    })
                    .await;
                    s.as_mut().reset(Instant::now());
                    s.as_mut().await;
                    turns += 1;
                }
                turns
            }
        });
        let stopper = spawn(async move { stop.store(1, Ordering::SeqCst) });
        stopper.await.unwrap();
        let turns = looping.await.unwrap();
        // The default budget is 128: the loop gave way after that many.
        assert!((1..=256).contains(&turns), "{turns} turns");
    });
}

#[test]
fn a_sleep_completes_no_earlier_than_its_deadline() {
    run(|| async {
        for ms in [1u64, 5, 20, 50] {
            let d = Duration::from_millis(ms);
            let start = Instant::now();
            let s = sleep(d);
            let deadline = s.deadline();
            assert!(deadline >= start + d);
            s.await;
            let now = Instant::now();
            assert!(now >= deadline, "{ms} ms sleep woke before its deadline");
            assert!(
                start.elapsed() < d + Duration::from_secs(2),
                "{ms} ms sleep took {:?}",
                start.elapsed()
            );
        }
        // A deadline in the past completes on the first poll.
        let mut past = sleep_until(Instant::now() - Duration::from_millis(5));
        assert!(past.is_elapsed());
        assert_eq!(poll_once(&mut past).await, Poll::Ready(()));
        let mut zero = sleep(Duration::ZERO);
        assert_eq!(poll_once(&mut zero).await, Poll::Ready(()));
    });
}

#[test]
#[cfg_attr(
    miri,
    ignore = "needs spawning 64 tasks to take less than a millisecond, which Miri's clock does not give"
)]
fn sleeps_in_spawned_tasks_complete_in_deadline_order() {
    run(|| async {
        const N: u64 = 64;
        let order = Arc::new(Mutex::new(Vec::new()));
        let base = Instant::now() + Duration::from_millis(20);
        // Deadlines 0..N ms after `base`, spawned in a scrambled order.
        let handles: Vec<_> = (0..N)
            .map(|i| (i * 37) % N)
            .map(|ms| {
                let order = order.clone();
                spawn(async move {
                    let s = sleep_until(base + Duration::from_millis(ms));
                    s.await;
                    assert!(Instant::now() >= base + Duration::from_millis(ms));
                    order.lock().unwrap().push(ms);
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let sorted: Vec<u64> = (0..N).collect();
        assert_eq!(order, sorted, "sleeps completed out of deadline order");
    });
}

#[test]
#[cfg_attr(
    miri,
    ignore = "bounds the whole run by wall time (3 s), which Miri's clock exceeds"
)]
fn many_scrambled_sleeps_complete_after_their_deadlines_on_every_worker() {
    run_on(2, || async {
        let base = Instant::now();
        let handles: Vec<_> = (0..400u64)
            .map(|i| {
                let ms = (i * 7919) % 97;
                spawn_on((i % 2) as usize, async move {
                    let deadline = base + Duration::from_millis(ms);
                    sleep_until(deadline).await;
                    Instant::now() >= deadline
                })
            })
            .collect();
        for h in handles {
            assert!(h.await.unwrap(), "a sleep woke before its deadline");
        }
        assert!(base.elapsed() < Duration::from_secs(3));
    });
}

#[test]
fn a_dropped_sleep_never_wakes_its_task() {
    run(|| async {
        let polls = Arc::new(AtomicUsize::new(0));
        let release = Signal::new();
        let task = spawn(CountPolls {
            polls: polls.clone(),
            inner: {
                let release = release.clone();
                async move {
                    let mut s = sleep(Duration::from_millis(20));
                    assert!(poll_once(&mut s).await.is_pending(), "armed");
                    drop(s); // cancelled: must not wake this task at 20 ms
                    release.wait().await;
                }
            },
        });
        // Well past the dropped sleep's deadline.
        sleep(Duration::from_millis(100)).await;
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "the task was polled again: the dropped sleep woke it"
        );
        release.fire();
        task.await.unwrap();
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    });
}

/// Counts its wakes.
struct WakeCount(AtomicUsize);

impl std::task::Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A sleep polled again with the same waker stays pending without touching
/// anything (the steady state of an idle timeout); polled with another
/// waker, it must wake that one when it fires, and not the first.
#[test]
fn a_sleep_repolled_with_another_waker_wakes_the_last_one() {
    run(|| async {
        let first = Arc::new(WakeCount(AtomicUsize::new(0)));
        let second = Arc::new(WakeCount(AtomicUsize::new(0)));
        let (w1, w2) = (Waker::from(first.clone()), Waker::from(second.clone()));
        let mut s = sleep(Duration::from_millis(20));
        for _ in 0..3 {
            let polled = Pin::new(&mut s).poll(&mut Context::from_waker(&w1));
            assert!(polled.is_pending(), "armed: pending");
        }
        let polled = Pin::new(&mut s).poll(&mut Context::from_waker(&w2));
        assert!(polled.is_pending(), "still armed with the new waker");
        // Well past the deadline: the worker fires the timer meanwhile.
        sleep(Duration::from_millis(100)).await;
        assert_eq!(
            second.0.load(Ordering::SeqCst),
            1,
            "the last waker is woken"
        );
        assert_eq!(
            first.0.load(Ordering::SeqCst),
            0,
            "the replaced waker is not"
        );
        let polled = Pin::new(&mut s).poll(&mut Context::from_waker(&w2));
        assert!(polled.is_ready(), "fired: ready");
    });
}

/// A timer that ended (completed, dropped here, or dropped on another
/// thread) lets go of the waker it was last polled with: the table kept a
/// clone in the freed entry until the slot was reused, and with it
/// whatever the waker owns (another executor's task, a channel's sender).
#[test]
fn an_ended_timer_lets_go_of_its_waker() {
    run(|| async {
        let count = Arc::new(WakeCount(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        // Dropped while armed.
        let mut s = sleep(Duration::from_secs(3600));
        assert!(Pin::new(&mut s).poll(&mut cx).is_pending());
        drop(s);
        // Completed.
        let mut s = sleep(Duration::from_millis(5));
        assert!(Pin::new(&mut s).poll(&mut cx).is_pending());
        sleep(Duration::from_millis(20)).await; // `s` fired meanwhile
        assert!(Pin::new(&mut s).poll(&mut cx).is_ready());
        drop(s);
        // Dropped on a plain thread: cancelled through the inbox.
        let mut s = sleep(Duration::from_secs(3600));
        assert!(Pin::new(&mut s).poll(&mut cx).is_pending());
        std::thread::spawn(move || drop(s)).join().unwrap();
        cellio_runtime::yield_now().await; // the worker takes the message
        drop(waker);
        assert_eq!(
            Arc::strong_count(&count),
            1,
            "the timer table still holds {} clone(s) of a waker whose timers ended",
            Arc::strong_count(&count) - 1
        );
    });
}

/// A waker whose drop drops a sleep armed on the same worker (the last
/// reference to another executor's task, whose future holds a timer).
struct DropsASleep(Mutex<Option<Sleep>>);

impl std::task::Wake for DropsASleep {
    fn wake(self: Arc<Self>) {}
}

impl Drop for DropsASleep {
    fn drop(&mut self) {
        drop(self.0.lock().unwrap().take());
    }
}

/// A sleep re-polled with another waker replaces the stored one; if that
/// was the last clone of a waker whose drop drops a sleep, the drop must
/// not find the timer table borrowed (it panicked "RefCell already
/// borrowed" out of the poll).
#[test]
fn a_replaced_waker_whose_drop_drops_a_sleep_does_not_panic_the_poll() {
    run(|| async {
        // Armed here, owned by the waker below.
        let mut inner = sleep(Duration::from_secs(3600));
        assert!(poll_once(&mut inner).await.is_pending());
        let owner = Waker::from(Arc::new(DropsASleep(Mutex::new(Some(inner)))));
        let mut s = sleep(Duration::from_secs(3600));
        assert!(Pin::new(&mut s)
            .poll(&mut Context::from_waker(&owner))
            .is_pending());
        drop(owner); // the table holds the last clone now
                     // Re-polled with the task's own waker: the stored one is replaced,
                     // and its drop drops `inner`.
        assert!(poll_once(&mut s).await.is_pending());
    });
}

/// Arming, resetting and cancelling timers reuses their table entries: once
/// the table has grown to the peak number of live timers, nothing allocates.
#[test]
fn cancelled_and_reset_timers_reuse_their_slots_without_allocating() {
    with_timeout(LIMIT, || {
        // The counter works: one Box is one allocation on this thread.
        let before = thread_allocations();
        drop(std::hint::black_box(Box::new(7u64)));
        assert_eq!(thread_allocations() - before, 1);

        let rt = Builder::new().workers(1).build().unwrap();
        rt.block_on(async {
            const LIVE: usize = 64;
            let mut sleeps: Vec<Sleep> = Vec::with_capacity(LIVE);
            let far = Instant::now() + Duration::from_secs(3600);
            fn round(sleeps: &mut Vec<Sleep>, far: Instant, r: u64) -> &mut Vec<Sleep> {
                for i in 0..LIVE as u64 {
                    sleeps.push(sleep_until(
                        far + Duration::from_millis((i * 31 + r * 7) % 1000),
                    ));
                }
                sleeps
            }
            async fn arm_reset_drop(sleeps: &mut Vec<Sleep>) {
                for s in sleeps.iter_mut() {
                    assert!(poll_once(s).await.is_pending());
                }
                for (i, s) in sleeps.iter_mut().enumerate() {
                    let d = s.deadline();
                    if i % 2 == 0 {
                        s.reset(d - Duration::from_millis(500));
                    } else {
                        s.reset(d + Duration::from_millis(500));
                    }
                    assert!(poll_once(s).await.is_pending());
                }
                sleeps.clear();
            }
            // Warm-up: the table grows to LIVE entries.
            for r in 0..3 {
                arm_reset_drop(round(&mut sleeps, far, r)).await;
            }
            let before = thread_allocations();
            let rounds = scaled(200);
            for r in 0..rounds {
                arm_reset_drop(round(&mut sleeps, far, r)).await;
            }
            let allocations = thread_allocations() - before;
            assert_eq!(
                allocations,
                0,
                "arming, resetting and dropping {} timers allocated",
                rounds * LIVE as u64
            );
        });
    });
}

// ---------------------------------------------------------------------------
// Sleep::reset

#[test]
fn reset_moves_a_sleep_later() {
    run(|| async {
        let start = Instant::now();
        let mut s = sleep(Duration::from_millis(20));
        assert!(poll_once(&mut s).await.is_pending());
        s.reset(start + Duration::from_millis(80));
        assert_eq!(s.deadline(), start + Duration::from_millis(80));
        s.await;
        assert!(
            start.elapsed() >= Duration::from_millis(80),
            "fired at the old deadline"
        );
        assert!(start.elapsed() < Duration::from_secs(3));
    });
}

#[test]
fn reset_moves_a_sleep_earlier() {
    run(|| async {
        let start = Instant::now();
        let mut s = sleep(Duration::from_secs(3600));
        assert!(poll_once(&mut s).await.is_pending());
        s.reset(start + Duration::from_millis(30));
        s.await;
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the earlier deadline did not take effect"
        );
    });
}

/// A sleep reset on its own worker to a deadline already passed, or to
/// now, is over at its very next poll, as tokio's (it was `Pending` there,
/// and completed a loop turn later); and another task waiting for it is
/// woken.
#[test]
fn a_sleep_reset_into_the_past_or_to_now_is_ready_at_its_next_poll() {
    run(|| async {
        let mut s = sleep(Duration::from_secs(10));
        assert!(poll_once(&mut s).await.is_pending());
        s.reset(cellio_runtime::time::now() - Duration::from_millis(1));
        assert!(poll_once(&mut s).await.is_ready(), "reset into the past");
        let mut s = sleep(Duration::from_secs(10));
        assert!(poll_once(&mut s).await.is_pending());
        s.reset(cellio_runtime::time::now());
        assert!(poll_once(&mut s).await.is_ready(), "reset to now");

        let shared = Arc::new(Mutex::new(sleep(Duration::from_secs(3600))));
        let waiter = spawn({
            let shared = shared.clone();
            poll_fn(move |cx| Pin::new(&mut *shared.lock().unwrap()).poll(cx))
        });
        cellio_runtime::yield_now().await; // the waiter armed it
        shared.lock().unwrap().reset(cellio_runtime::time::now());
        timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiting task was not woken")
            .unwrap();
    });
}

#[test]
fn a_completed_or_unpolled_sleep_can_be_reset_and_awaited_again() {
    run(|| async {
        let mut s = sleep(Duration::from_millis(5));
        (&mut s).await;
        let again = Instant::now();
        s.reset(again + Duration::from_millis(30));
        assert!(!s.is_elapsed());
        (&mut s).await;
        assert!(again.elapsed() >= Duration::from_millis(30));

        // Reset before the first poll.
        let start = Instant::now();
        let mut fresh = sleep(Duration::from_secs(3600));
        fresh.reset(start + Duration::from_millis(10));
        fresh.await;
        assert!(start.elapsed() >= Duration::from_millis(10));
        assert!(start.elapsed() < Duration::from_secs(3));
    });
}

#[test]
fn a_timeout_can_be_reset() {
    run(|| async {
        let start = Instant::now();
        let mut t = pin!(timeout(Duration::from_secs(3600), pending::<()>()));
        assert!(poll_fn(|cx| Poll::Ready(t.as_mut().poll(cx)))
            .await
            .is_pending());
        t.as_mut().reset(start + Duration::from_millis(20));
        assert_eq!(t.deadline(), start + Duration::from_millis(20));
        assert!(t.await.is_err(), "the reset deadline should win");
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert!(start.elapsed() < Duration::from_secs(3));
    });
}

/// An `Elapsed` value to compare against (it has no public constructor).
fn elapsed_value() -> Elapsed {
    Runtime::new()
        .unwrap()
        .block_on(timeout(Duration::ZERO, pending::<()>()))
        .unwrap_err()
}

// ---------------------------------------------------------------------------
// timeout

#[test]
fn timeout_returns_the_output_when_the_future_wins() {
    run(|| async {
        let start = Instant::now();
        let out = timeout(Duration::from_secs(5), async {
            sleep(Duration::from_millis(10)).await;
            42
        })
        .await;
        assert_eq!(out, Ok(42));
        assert!(start.elapsed() < Duration::from_secs(3));

        // A ready future wins even against a zero timeout.
        assert_eq!(timeout(Duration::ZERO, async { 7 }).await, Ok(7));
    });
}

#[test]
fn timeout_returns_elapsed_and_drops_the_future_when_the_deadline_wins() {
    run(|| async {
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = DropGuard(drops.clone());
        let start = Instant::now();
        let out = timeout(Duration::from_millis(30), async move {
            let _guard = guard;
            sleep(Duration::from_secs(3600)).await;
            1
        })
        .await;
        let err = out.expect_err("the deadline should win");
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(start.elapsed() < Duration::from_secs(3));
        assert_eq!(drops.load(Ordering::SeqCst), 1, "inner future not dropped");
        assert_eq!(err.to_string(), "deadline has elapsed");
    });
}

/// A timeout gives its future out (tokio's `get_ref`, `get_mut` and
/// `into_inner`): to look at, to change, and back for good, after which
/// the timeout's deadline no longer cuts it short. On a paused clock: the
/// timeout's 10 ms cannot pass before its first poll however slow the
/// thread (they did under Miri, and can on a loaded machine).
#[test]
fn a_timeout_gives_its_future_out_to_look_at_change_and_keep() {
    with_timeout(LIMIT, || {
        let rt = Builder::new()
            .workers(1)
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let start = now();
            let mut t = timeout(Duration::from_millis(10), sleep(Duration::from_secs(3600)));
            let inner_deadline = start + Duration::from_millis(40);
            t.get_mut().reset(inner_deadline);
            assert_eq!(t.get_ref().deadline(), inner_deadline);
            assert!(poll_once(&mut t).await.is_pending(), "both armed");
            let inner: Sleep = t.into_inner();
            inner.await; // past the timeout's 10 ms, to the inner deadline
            assert_eq!(now(), inner_deadline);
        });
    });
}

/// `timeout_at`: one deadline for two steps; the second runs out of it.
#[test]
fn timeout_at_shares_one_deadline_between_steps() {
    run(|| async {
        let deadline = Instant::now() + Duration::from_millis(60);
        let first = timeout_at(deadline, sleep(Duration::from_millis(10))).await;
        assert_eq!(first, Ok(()));
        let second = timeout_at(deadline, sleep(Duration::from_secs(3600)));
        assert_eq!(second.deadline(), deadline);
        assert!(second.await.is_err());
        assert!(Instant::now() >= deadline);
        // A deadline already past still lets a ready future win.
        assert_eq!(timeout_at(deadline, async { 5 }).await, Ok(5));
    });
}

/// A deadline already past when the wrapped future has spent the task's
/// whole budget (here sleeps that are already over, as a flooded socket's
/// operations would): the timeout still fires, checked without spending.
/// (It used to find the budget empty on every poll and never fire, as
/// tokio's does not.)
#[test]
fn a_past_deadline_fires_even_when_the_future_spends_the_budget() {
    async fn busy() {
        loop {
            sleep(Duration::ZERO).await;
        }
    }
    let elapsed = elapsed_value();
    run(move || async move {
        assert_eq!(timeout(Duration::ZERO, busy()).await, Err(elapsed));
        // One deadline for several steps, passed during the first.
        let deadline = Instant::now() + Duration::from_millis(5);
        sleep(Duration::from_millis(10)).await;
        assert_eq!(timeout_at(deadline, busy()).await, Err(elapsed));
    });
}

#[test]
fn elapsed_converts_to_timed_out() {
    let err = elapsed_value();
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    let inner = io.get_ref().expect("the Elapsed is kept as the source");
    assert!(inner.downcast_ref::<Elapsed>().is_some());
    assert_eq!(io.to_string(), "deadline has elapsed");
}

// ---------------------------------------------------------------------------
// interval

#[test]
fn interval_ticks_on_its_schedule() {
    run(|| async {
        let period = Duration::from_millis(20);
        let window = Duration::from_millis(300);
        let mut ticks = interval(period);
        assert_eq!(ticks.period(), period);
        let start = Instant::now();
        let first = ticks.tick().await;
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "first tick is immediate"
        );
        let mut scheduled = vec![first];
        while start.elapsed() < window {
            scheduled.push(ticks.tick().await);
        }
        // Ticks at 0, 20, ..., 300 ms at most: never more.
        let count = scheduled.len();
        assert!(count <= 17, "{count} ticks in {window:?}: ticks burst");
        assert!(count >= 5, "only {count} ticks in {window:?}");
        // Every scheduled instant sits on the period grid, strictly rising.
        for pair in scheduled.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= period, "ticks {gap:?} apart");
            assert_eq!(
                gap.as_nanos() % period.as_nanos(),
                0,
                "off the grid: {gap:?}"
            );
        }
    });
}

#[test]
fn interval_skips_missed_ticks_instead_of_bursting() {
    run(|| async {
        let period = Duration::from_millis(20);
        let mut ticks = interval(period);
        let t0 = ticks.tick().await;
        ticks.tick().await;
        // Miss five periods: the worker is blocked.
        std::thread::sleep(period * 5);
        let unblocked = Instant::now();
        let mut after = Vec::new();
        for _ in 0..4 {
            let scheduled = ticks.tick().await;
            after.push((scheduled, Instant::now()));
        }
        // The first tick after the block is the missed one, delivered once;
        // the next is scheduled in the future, not in the past.
        assert!(after[0].0 < unblocked);
        assert!(
            after[1].0 >= unblocked,
            "missed ticks were delivered as a burst: {:?}",
            after
                .iter()
                .map(|(s, _)| s.saturating_duration_since(t0))
                .collect::<Vec<_>>()
        );
        let immediate = after
            .iter()
            .filter(|(_, at)| at.duration_since(unblocked) < Duration::from_millis(5))
            .count();
        assert!(immediate <= 2, "{immediate} ticks delivered at once");
        for pair in after.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert_eq!(
                gap.as_nanos() % period.as_nanos(),
                0,
                "off the grid: {gap:?}"
            );
        }
    });
}

#[test]
fn a_bursting_interval_delivers_every_missed_tick() {
    run(|| async {
        let period = Duration::from_millis(20);
        let mut ticks = interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
        assert_eq!(ticks.missed_tick_behavior(), MissedTickBehavior::Burst);
        let t0 = ticks.tick().await;
        // The worker is blocked.
        std::thread::sleep(period * 5);
        // Every tick of the grid, none skipped, the missed ones at once.
        for k in 1..=6u32 {
            assert_eq!(ticks.tick().await, t0 + period * k);
        }
    });
}

#[test]
fn a_delaying_interval_moves_its_grid_after_a_late_tick() {
    run(|| async {
        let period = Duration::from_millis(20);
        let mut ticks = interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let t0 = ticks.tick().await;
        std::thread::sleep(period * 3);
        let unblocked = Instant::now();
        assert_eq!(ticks.tick().await, t0 + period, "the late tick, at once");
        let next = ticks.tick().await;
        assert!(next >= unblocked + period, "one period after the late tick");
        // Then on the new grid (or later, if this test itself ran late).
        assert!(ticks.tick().await >= next + period);
    });
}

#[test]
fn interval_at_starts_at_its_start_and_resets_move_the_grid() {
    run(|| async {
        let period = Duration::from_millis(20);
        let start = Instant::now() + Duration::from_millis(30);
        let mut ticks = interval_at(start, period);
        // Burst: each tick is the one after the last on the grid, however
        // late this test runs (under valgrind or Miri), so these are exact.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
        assert_eq!(ticks.tick().await, start);
        assert!(Instant::now() >= start, "not before its start");
        assert_eq!(ticks.tick().await, start + period);
        // reset_at: the next tick is then, and the grid follows it.
        let at = Instant::now() + Duration::from_millis(45);
        ticks.reset_at(at);
        assert_eq!(ticks.tick().await, at);
        assert_eq!(ticks.tick().await, at + period);
        // reset_immediately: the next tick at once (scheduled for now).
        let before = Instant::now();
        ticks.reset_immediately();
        let now_tick = ticks.tick().await;
        assert!(now_tick >= before && now_tick <= Instant::now());
        // reset: one period from now.
        let before = Instant::now();
        ticks.reset();
        assert!(ticks.tick().await >= before + period);
        let before = Instant::now();
        ticks.reset_after(Duration::from_millis(5));
        assert!(ticks.tick().await >= before + Duration::from_millis(5));
    });
}

#[test]
fn an_interval_too_long_to_add_ticks_once_and_then_waits() {
    // The second tick's time overflows an `Instant`; it used to panic.
    run(|| async {
        let mut ticks = interval(Duration::MAX);
        ticks.tick().await;
        let second = timeout(Duration::from_millis(20), ticks.tick()).await;
        assert!(second.is_err(), "the second tick completed");
    });
}

#[test]
#[should_panic(expected = "period must be non-zero")]
fn a_zero_interval_panics() {
    let _ = interval(Duration::ZERO);
}

// ---------------------------------------------------------------------------
// Timers across workers and runtimes

#[test]
fn a_sleep_armed_on_worker_0_completes_when_awaited_on_worker_1() {
    run_on(2, || async {
        let start = Instant::now();
        let mut s = sleep(Duration::from_millis(40));
        assert!(poll_once(&mut s).await.is_pending(), "armed on worker 0");
        let deadline = s.deadline();
        let on_1 = spawn_on(1, async move {
            assert_eq!(current_worker(), Some(1));
            s.await;
            Instant::now() >= deadline
        });
        assert!(on_1.await.unwrap(), "completed before its deadline");
        assert!(start.elapsed() < Duration::from_secs(3));
    });
}

#[test]
fn a_sleep_reset_on_another_worker_moves_there() {
    run_on(2, || async {
        let mut s = sleep(Duration::from_secs(3600));
        assert!(poll_once(&mut s).await.is_pending(), "armed on worker 0");
        let start = Instant::now();
        let on_1 = spawn_on(1, async move {
            s.reset(Instant::now() + Duration::from_millis(30));
            s.await;
        });
        on_1.await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(start.elapsed() < Duration::from_secs(3));
    });
}

/// A sleep awaited by a task on worker 1 and reset (earlier) from worker 0,
/// as a watchdog shared between tasks (`Arc<Mutex<Sleep>>`) is pushed
/// around: the waiting task wakes at the new deadline (tokio keeps its
/// waker across a reset from any thread).
#[test]
fn a_sleep_reset_from_another_worker_still_wakes_its_waiting_task() {
    run_on(2, || async {
        let shared = Arc::new(Mutex::new(sleep(Duration::from_secs(3600))));
        let armed = Signal::new();
        let waiter = spawn_on(1, {
            let (shared, armed) = (shared.clone(), armed.clone());
            async move {
                poll_fn(|cx| {
                    let polled = Pin::new(&mut *shared.lock().unwrap()).poll(cx);
                    armed.fire();
                    polled
                })
                .await;
                Instant::now()
            }
        });
        armed.wait().await; // armed on worker 1
        let deadline = Instant::now() + Duration::from_millis(10);
        shared.lock().unwrap().reset(deadline);
        let woke = timeout(Duration::from_secs(5), waiter).await;
        let woke = woke.expect("the waiting task was not woken 5 s after its new deadline");
        assert!(woke.unwrap() >= deadline, "woken before its new deadline");
    });
}

/// The same from a plain thread, the sleep moved later, past its first
/// deadline: the task wakes at the new deadline, not at the old one.
#[test]
fn a_sleep_reset_later_from_a_plain_thread_wakes_its_waiting_task_then() {
    run(|| async {
        let shared = Arc::new(Mutex::new(sleep(Duration::from_millis(30))));
        let waiter = cellio_runtime::spawn_local({
            let shared = shared.clone();
            async move {
                poll_fn(|cx| Pin::new(&mut *shared.lock().unwrap()).poll(cx)).await;
                Instant::now()
            }
        });
        cellio_runtime::yield_now().await; // the waiter armed it
        let moved = shared.clone();
        // Joined on the worker, which blocks meanwhile: the old deadline
        // passes with the entry still armed at it.
        let deadline = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(40));
            let deadline = Instant::now() + Duration::from_millis(60);
            moved.lock().unwrap().reset(deadline);
            deadline
        })
        .join()
        .unwrap();
        let woke = timeout(Duration::from_secs(5), waiter).await;
        let woke = woke.expect("the waiting task was not woken 5 s after its new deadline");
        assert!(woke.unwrap() >= deadline, "woken at its old deadline");
    });
}

/// Watchdogs (`Arc<Mutex<Sleep>>`) pushed back again and again from a
/// plain thread while the worker they are armed on is away (worker 0
/// outside `block_on`; a busy worker alike): each reset of a timer
/// already reset there is not queued again, so the resetting thread
/// allocates nothing however many resets it makes (each queued one more
/// message in the worker's inbox, kept for the runtime's life: 47 MiB
/// after 2 000 000 resets of one sleep), and each waiting task is polled
/// once, for its last deadline, when the worker runs again.
#[test]
fn repeated_resets_from_another_thread_while_the_worker_is_away_take_no_memory() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(1).build().unwrap();
        // Fewer than the inbox's room (its lists start with 64 entries):
        // the resets need no allocation at all.
        let watchdogs: Vec<Arc<Mutex<Sleep>>> = (0..20)
            .map(|_| Arc::new(Mutex::new(sleep(Duration::from_secs(3600)))))
            .collect();
        let polls = Arc::new(AtomicUsize::new(0));
        let waiters = rt.block_on(async {
            let waiters: Vec<_> = watchdogs
                .iter()
                .map(|watchdog| {
                    let (watchdog, polls) = (watchdog.clone(), polls.clone());
                    spawn(poll_fn(move |cx| {
                        polls.fetch_add(1, Ordering::SeqCst);
                        Pin::new(&mut *watchdog.lock().unwrap()).poll(cx)
                    }))
                })
                .collect();
            cellio_runtime::yield_now().await; // each armed its watchdog
            waiters
        });
        assert_eq!(polls.load(Ordering::SeqCst), 20);
        let resetting = watchdogs.clone();
        let allocated = std::thread::spawn(move || {
            let before = thread_allocations();
            let later = || Instant::now() + Duration::from_secs(3600);
            // One watchdog pushed back again and again, then all of them
            // in turn.
            for _ in 0..scaled(200_000) {
                resetting[0].lock().unwrap().reset(later());
            }
            for _ in 0..scaled(10_000) {
                for watchdog in &resetting {
                    watchdog.lock().unwrap().reset(later());
                }
            }
            // The last reset of each: due when the worker takes it in.
            for watchdog in &resetting {
                watchdog.lock().unwrap().reset(Instant::now());
            }
            thread_allocations() - before
        })
        .join()
        .unwrap();
        assert_eq!(allocated, 0, "the resets piled up in the worker's inbox");
        rt.block_on(async {
            for waiter in waiters {
                timeout(Duration::from_secs(5), waiter)
                    .await
                    .expect("a watchdog reset into the past did not wake its task")
                    .unwrap();
            }
        });
        assert_eq!(polls.load(Ordering::SeqCst), 40, "each polled once more");
    });
}

/// A sleep armed by the `block_on` future on worker 0, then dropped by a
/// task on worker 1: worker 0's timer is cancelled through its inbox and
/// never wakes the `block_on` future.
#[test]
fn a_sleep_dropped_on_another_worker_is_cancelled_on_its_own() {
    // The drop on worker 1 must reach worker 0 before the deadline. Under
    // Miri, whose clock advances with the work of every test running beside
    // this one, 30 ms was not always enough; waiting costs no real time
    // there (the clock jumps while every thread sleeps).
    let (deadline, release_after) = if cfg!(miri) {
        (Duration::from_secs(2), Duration::from_secs(8))
    } else {
        (Duration::from_millis(30), Duration::from_millis(120))
    };
    with_timeout(LIMIT, move || {
        let rt = Builder::new().workers(2).build().unwrap();
        let polls = Arc::new(AtomicUsize::new(0));
        let release = Signal::new();
        let main = CountPolls {
            polls: polls.clone(),
            inner: {
                let polls = polls.clone();
                let release = release.clone();
                async move {
                    let mut s = sleep(deadline);
                    assert!(poll_once(&mut s).await.is_pending(), "armed on worker 0");
                    spawn_on(1, async move { drop(s) }).await.unwrap();
                    let seen = polls.load(Ordering::SeqCst);
                    // Woken only by the signal, long after the deadline.
                    let thread = release.fire_after(release_after);
                    release.wait().await;
                    thread.join().unwrap();
                    polls.load(Ordering::SeqCst) - seen
                }
            },
        };
        let extra_polls = rt.block_on(main);
        assert_eq!(
            extra_polls, 1,
            "the block_on future was woken by a sleep dropped on worker 1"
        );
    });
}

#[test]
fn a_sleep_moves_from_one_runtime_to_another() {
    with_timeout(LIMIT, || {
        let rt_a = Builder::new().workers(1).build().unwrap();
        let rt_b = Builder::new().workers(2).build().unwrap();
        let mut s = sleep(Duration::from_millis(40));
        let deadline = s.deadline();
        rt_a.block_on(async {
            assert!(poll_once(&mut s).await.is_pending(), "armed in runtime A");
        });
        // Awaited in runtime B, on its worker 1.
        let ok = rt_b.block_on(async move {
            spawn_on(1, async move {
                s.await;
                Instant::now() >= deadline
            })
            .await
            .unwrap()
        });
        assert!(ok, "completed before its deadline");
        // Runtime A still keeps time (and dropped its old entry).
        let start = Instant::now();
        rt_a.block_on(sleep(Duration::from_millis(10)));
        assert!(start.elapsed() >= Duration::from_millis(10));

        // Armed in a runtime that is then dropped: still fine elsewhere.
        let mut s = sleep(Duration::from_millis(20));
        let deadline = s.deadline();
        rt_a.block_on(async {
            assert!(poll_once(&mut s).await.is_pending());
        });
        drop(rt_a);
        rt_b.block_on(async move {
            s.await;
            assert!(Instant::now() >= deadline);
        });
        // Dropping an armed sleep after its runtime is gone does nothing.
        let rt_c = Builder::new().workers(1).build().unwrap();
        let mut s = sleep(Duration::from_secs(3600));
        rt_c.block_on(async {
            assert!(poll_once(&mut s).await.is_pending());
        });
        drop(rt_c);
        drop(s);
    });
}

#[test]
fn a_timer_polled_outside_a_runtime_panics_clearly() {
    let mut cx = Context::from_waker(Waker::noop());
    let mut s = sleep(Duration::from_secs(1));
    let err = catch_unwind(AssertUnwindSafe(|| Pin::new(&mut s).poll(&mut cx)))
        .expect_err("polling a timer outside a runtime must panic");
    let text = panic_text(&*err);
    assert!(
        text.contains("outside a runtime"),
        "unclear panic message: {text:?}"
    );
    drop(s);

    let mut t = Box::pin(timeout(Duration::from_secs(1), pending::<()>()));
    let err = catch_unwind(AssertUnwindSafe(|| t.as_mut().poll(&mut cx)))
        .expect_err("polling a timeout outside a runtime must panic");
    assert!(panic_text(&*err).contains("outside a runtime"));

    let mut i = interval(Duration::from_secs(1));
    assert!(
        i.poll_tick(&mut cx).is_ready(),
        "the first tick is immediate"
    );
    let err = catch_unwind(AssertUnwindSafe(|| i.poll_tick(&mut cx)))
        .expect_err("waiting for a tick outside a runtime must panic");
    assert!(panic_text(&*err).contains("outside a runtime"));
}

// ---------------------------------------------------------------------------
// Timers bound the reactor wait

#[test]
fn a_block_on_whose_only_work_is_a_sleep_completes() {
    run_on(1, || async {
        let start = Instant::now();
        sleep(Duration::from_millis(50)).await;
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(start.elapsed() < Duration::from_secs(3));
    });
}

#[test]
fn a_background_worker_wakes_for_its_timers() {
    run_on(2, || async {
        let start = Instant::now();
        spawn_on(1, sleep(Duration::from_millis(50))).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(start.elapsed() < Duration::from_secs(3));
    });
}

/// Worker 1 sleeps in its reactor until a far timer; a nearer timer armed
/// later (by a task sent to it) must shorten that wait.
#[test]
fn a_nearer_timer_shortens_a_sleeping_workers_wait() {
    run_on(2, || async {
        let far = spawn_on(1, sleep(Duration::from_secs(3600)));
        // Let worker 1 go to sleep for an hour.
        sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        spawn_on(1, sleep(Duration::from_millis(30))).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "worker 1 kept sleeping until its far timer"
        );
        assert!(!far.is_finished());
    });
}
