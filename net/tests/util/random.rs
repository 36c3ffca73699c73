//! Seeded random draws for the stress tests: a small generator, and the
//! fates an operation's future may meet (awaited, polled once and dropped,
//! raced against a timer, started after a yield).
//!
//! It needs only `cellio-runtime` and the test crate's `util::with_timeout`
//! (which both crates' test helpers have): the runtime's tests include it
//! too, by path.

use std::fmt::Display;
use std::future::{poll_fn, Future};
use std::io;
use std::ops::Range;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use cellio_runtime::{sleep, yield_now, Builder, RuntimeHandle};

/// splitmix64: small, seedable, and good enough to draw fates and bytes.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// A child generator, so that two concurrent loops draw independently.
    pub fn fork(&mut self) -> Rng {
        Rng(self.next())
    }

    pub fn fate(&mut self) -> Fate {
        match self.below(8) {
            0..=2 => Fate::Awaited,
            3 => Fate::AfterYield,
            4 => Fate::PolledOnce,
            _ => Fate::Raced(Duration::from_micros(self.below(300))),
        }
    }
}

/// What happens to one operation's future.
#[derive(Clone, Copy, Debug)]
pub enum Fate {
    /// Awaited until it completes.
    Awaited,
    /// Awaited after a `yield_now`.
    AfterYield,
    /// Polled once; dropped if that did not complete it.
    PolledOnce,
    /// Raced against a timer; dropped if the timer wins.
    Raced(Duration),
}

/// Operations dropped unfinished, over the whole test binary: a test checks
/// that its draws did cancel operations, or it would prove nothing.
pub static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Drives `op` to its fate: `Some(output)` if it completed, `None` if it
/// is to be dropped unfinished.
pub async fn meet<F: Future>(op: Pin<&mut F>, fate: Fate) -> Option<F::Output> {
    let output = drive(op, fate).await;
    if output.is_none() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
    output
}

async fn drive<F: Future>(mut op: Pin<&mut F>, fate: Fate) -> Option<F::Output> {
    match fate {
        Fate::Awaited => Some(op.await),
        Fate::AfterYield => {
            yield_now().await;
            Some(op.await)
        }
        Fate::PolledOnce => match poll_fn(|cx| Poll::Ready(op.as_mut().poll(cx))).await {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        },
        Fate::Raced(limit) => {
            let mut timer = pin!(sleep(limit));
            poll_fn(|cx| {
                if let Poll::Ready(output) = op.as_mut().poll(cx) {
                    return Poll::Ready(Some(output));
                }
                timer.as_mut().poll(cx).map(|()| None)
            })
            .await
        }
    }
}

/// Draws a runtime configuration from `rng`, down to the smallest values,
/// and says what it drew (for a failure's message).
pub fn draw_builder(rng: &mut Rng) -> (Builder, String) {
    let workers = 1 + rng.below(3) as usize;
    let events = [1, 4, 1024][rng.below(3) as usize];
    let budget = [1, 8, 128][rng.below(3) as usize];
    let interval = [1, 7, 128][rng.below(3) as usize];
    let builder = Builder::new()
        .workers(workers)
        .event_capacity(events)
        .budget(budget)
        .event_interval(interval);
    let described =
        format!("{workers} workers, {events} events, budget {budget}, interval {interval}");
    (builder, described)
}

/// The seeds to run: `CELLIO_STRESS_SEED=S` alone, else
/// `0..CELLIO_STRESS_SEEDS` (default 6).
pub fn seeds_from_env() -> Range<u64> {
    match std::env::var("CELLIO_STRESS_SEED") {
        Ok(seed) => {
            let seed = seed.parse().expect("CELLIO_STRESS_SEED: a number");
            seed..seed + 1
        }
        Err(_) => {
            let count = std::env::var("CELLIO_STRESS_SEEDS")
                .map_or(6, |n| n.parse().expect("CELLIO_STRESS_SEEDS: a number"));
            0..count
        }
    }
}

/// Descriptors this process holds open.
pub fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// Runs one seed's `traffic` on a watchdog thread (60 s), on a runtime
/// drawn from the seed ([`draw_builder`]); `traffic` gets the runtime's
/// handle and the seed's generator, past that draw. Then shuts the runtime
/// down gracefully. Panics, naming the seed and the drawn configuration, if
/// the traffic failed or hung, if tasks were left to cancel, or if the
/// process holds more or fewer descriptors afterwards. Returns what the
/// traffic returned.
pub fn run_seed_traffic<M, Fut, T>(seed: u64, traffic: M) -> T
where
    M: FnOnce(RuntimeHandle, Rng) -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<T>>,
    T: Display + Send + 'static,
{
    let mut rng = Rng(seed);
    let (builder, config) = draw_builder(&mut rng);
    let descriptors = open_descriptors();
    let outcome = crate::util::with_timeout(Duration::from_secs(60), move || {
        let runtime = builder.build().expect("runtime");
        let result = runtime.block_on(traffic(runtime.handle(), rng));
        let cancelled = runtime.shutdown_timeout(Duration::from_secs(5));
        (result, cancelled)
    });
    let done = match outcome {
        (Ok(done), 0) => done,
        (Ok(done), cancelled) => panic!(
            "seed {seed} ({config}): the traffic ended ({done}), but {cancelled} tasks were left \
             to cancel"
        ),
        (Err(e), _) => panic!("seed {seed} ({config}): {e}"),
    };
    assert_eq!(
        open_descriptors(),
        descriptors,
        "seed {seed} ({config}): descriptors left open after the runtime shut down"
    );
    done
}
