//! A peak is given back: memory a worker took for a burst far above its
//! usual load (timers, messages from other threads) is released once the
//! burst has ended, without waiting for more work to come.
//!
//! This binary installs a global allocator that counts the process's live
//! bytes, so its tests run one at a time ([`serial`]).

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cellio_runtime::{sleep, Builder, Sleep};
use util::{poll_once, with_timeout, LIMIT};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting touches only an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The live-byte count is the process's: the tests run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// Arms `n` sleeps of an hour on the current worker.
async fn armed(n: u64) -> Vec<Sleep> {
    let mut sleeps: Vec<Sleep> = (0..n).map(|_| sleep(Duration::from_secs(3600))).collect();
    for s in &mut sleeps {
        assert!(poll_once(s).await.is_pending());
    }
    sleeps
}

/// Sleeps armed on worker 0 and dropped all at once on a plain thread
/// while the worker is outside `block_on`: the worker takes the burst of
/// cancellations in through its inbox, and then gets no more messages from
/// other threads. Nothing of the burst stays allocated (both inbox lists
/// kept its size, 2.7 MB for 100 000 cancellations, until two later drains
/// of messages from other threads shrank them; found by a review).
#[test]
fn a_burst_of_cancellations_from_another_thread_leaves_no_peak_behind() {
    let _serial = serial();
    // Under Miri, arming 2 200 sleeps takes most of a minute of its clock.
    with_timeout(LIMIT * 3, || {
        // Under Miri, just above the size (1024 entries) below which a
        // drained list keeps its room.
        let n = if cfg!(miri) { 1_100 } else { 100_000 };
        let rt = Builder::new().workers(1).build().unwrap();
        // The timer table goes through the same peak first (the same
        // sleeps, dropped on the worker), so that what it keeps of one,
        // if anything, is in the base.
        rt.block_on(async { drop(armed(n).await) });
        rt.block_on(async { sleep(Duration::from_millis(1)).await });
        let base = live();
        let sleeps = rt.block_on(armed(n));
        std::thread::spawn(move || drop(sleeps)).join().unwrap();
        // The worker takes the cancellations in (at its first loop turn:
        // `yield_now` makes sure of one, which a short sleep found over at
        // its first poll under Miri did not), then runs on with no message
        // from another thread.
        for _ in 0..3 {
            rt.block_on(cellio_runtime::yield_now());
        }
        let kept = live() - base;
        // A cancellation is 12 bytes in the inbox's lists.
        assert!(
            kept < (n * 12 / 2) as isize,
            "{kept} bytes kept after a burst of {n} cancellations was applied"
        );
    });
}

/// A peak of sleeps that ends, oldest first, while new ones keep being
/// made (a server whose 100 000 connections leave while new ones arrive,
/// each with its idle timeout): once it has ended, the worker's timer
/// table is small again. (New timers took the slots freed last, at the
/// table's end, and kept it at its peak for good: 7 MB with 10 timers
/// live; found by a review.)
#[test]
#[cfg_attr(
    miri,
    ignore = "needs a table above 4096 timers, too slow under Miri; the unit test of the same name in time/timers.rs runs there"
)]
fn a_peak_that_ends_while_new_timers_keep_coming_gives_its_memory_back() {
    let _serial = serial();
    with_timeout(LIMIT * 3, || {
        let rt = Builder::new().workers(1).build().unwrap();
        rt.block_on(async { sleep(Duration::from_millis(1)).await });
        let base = live();
        rt.block_on(async {
            let hour = Duration::from_secs(3600);
            let mut peak: VecDeque<Pin<Box<Sleep>>> = VecDeque::new();
            for _ in 0..100_000 {
                let mut s = Box::pin(sleep(hour));
                assert!(poll_once(&mut s).await.is_pending());
                peak.push_back(s);
            }
            // Ten live beyond the peak at any time: a new one armed every
            // hundred ends, then the oldest of the ten dropped.
            let mut steady: VecDeque<Pin<Box<Sleep>>> = VecDeque::new();
            let (mut ended, mut after) = (0, 0);
            loop {
                if let Some(s) = peak.pop_front() {
                    drop(s);
                    ended += 1;
                    if ended % 100 != 0 {
                        continue;
                    }
                } else if after == 10_000 {
                    break;
                } else {
                    after += 1;
                }
                let mut s = Box::pin(sleep(hour));
                assert!(poll_once(&mut s).await.is_pending());
                steady.push_back(s);
                if steady.len() > 10 {
                    steady.pop_front();
                }
            }
            drop(peak);
            let kept = live() - base;
            assert!(
                kept < 256 * 1024,
                "{kept} bytes kept with 10 timers live, 100 000 gone"
            );
        });
    });
}

/// A long-lived sleep (a watchdog, an interval's) armed
/// last, at the end of a table of 5 000 timers that then end: the failed
/// trim records it as the blocker. A later peak of 100 000 sleeps that ends
/// in full was then kept for good while the watchdog lives, although its
/// free end is 95% of the table (before the blocker, the trim gave it back). Found by a review.
#[test]
#[cfg_attr(miri, ignore = "needs a table above 4096 timers")]
fn a_long_lived_sleep_from_before_a_peak_does_not_keep_the_peak() {
    let _serial = serial();
    with_timeout(LIMIT * 3, || {
        let rt = Builder::new().workers(1).build().unwrap();
        rt.block_on(async { sleep(Duration::from_millis(1)).await });
        let base = live();
        rt.block_on(async {
            let hour = Duration::from_secs(3600);
            let first = armed(5_000).await;
            let mut watchdog = Box::pin(sleep(hour * 24));
            assert!(poll_once(&mut watchdog).await.is_pending());
            drop(first);
            let peak = armed(100_000).await;
            drop(peak);
            let kept = live() - base;
            assert!(
                kept < 1024 * 1024,
                "{kept} bytes kept with 1 timer live, 105 000 gone"
            );
            drop(watchdog);
        });
    });
}
