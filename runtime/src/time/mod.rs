//! Timers: [`sleep`], [`sleep_until`], [`timeout`], and [`interval()`] (with
//! [`interval_at`] and [`MissedTickBehavior`]); the worker's clock,
//! [`now`], which tests can [`pause`], [`advance`] and [`resume`].
//!
//! Each worker keeps its own timer table (pooled entries in an indexed
//! min-heap, see `timers`), and the earliest deadline bounds how long the
//! worker blocks in its reactor. A timer future registers on the worker that
//! first polls it; arming, re-arming ([`Sleep::reset`]) and cancelling
//! (dropping) allocate nothing once the table has grown to the peak number
//! of live timers. Once a large peak has ended (at most a quarter of the
//! entries live), the table gives back the free entries at its end.
//!
//! Timer futures are `Send`. If one is polled on another worker than the
//! one it registered on, it moves: the old entry is cancelled through that
//! worker's inbox and a new one is armed here. Reset on another thread than
//! the worker it is armed on ([`Sleep::reset`]), it asks that worker
//! (through its inbox) to fire its entry at once: the task waiting for it
//! polls it, finds its deadline not reached and arms it again, for the
//! deadline it holds now.
//!
//! A `spawn_blocking` job reads its runtime's clock through [`now`] (the
//! worker's, paused or not), as tokio's blocking tasks do; it cannot move
//! it ([`pause`], [`advance`] and [`resume`] need the worker).
//!
//! # Invariants
//!
//! * A [`Sleep`]'s `deadline` is the truth; its entry's deadline may lag
//!   behind it after a reset on another thread (until the entry fires). A
//!   fired entry's deadline is the instant it fired for, at or before the
//!   time it fired, so a sleep whose deadline is not after it is over
//!   without reading the clock, and one whose deadline is re-arms.
//!
//! Resolution: a timer fires at or after its deadline. On Linux 5.11+ the
//! reactor's wait takes nanoseconds (`epoll_pwait2`), so it wakes within
//! the kernel's timer slack (50 µs by default); elsewhere the wait is in
//! whole milliseconds, rounded up.

mod clock;
mod interval;
mod timers;

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clock::latest_instant;
pub(crate) use clock::{Advanced, Clock, SharedClock};
pub use interval::{interval, interval_at, Interval, MissedTickBehavior};
pub(crate) use timers::{Reset, TimerKey, Timers};

/// A change to a worker's timer, made on another thread and sent through
/// the worker's inbox; each timer's changes are applied in the order sent
/// (a timer gets `Moved`s, then at most one `Cancel`: its sleep lets go of
/// the key when it sends that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimerChange {
    /// The timer's future was dropped (or moved to another worker): remove
    /// its entry.
    Cancel(TimerKey),
    /// The timer's future was reset: fire its entry now, so that the task
    /// waiting for it polls it and arms it for its new deadline.
    Moved(TimerKey),
}

impl TimerChange {
    /// Sorts changes by timer, a timer's `Moved` before its `Cancel` (the
    /// order it sends them in), so that sorting a list of changes keeps
    /// each timer's in order and brings its repeats together.
    pub(crate) fn order(&self) -> (u32, u32, bool) {
        match *self {
            TimerChange::Moved(key) => (key.slot, key.generation, false),
            TimerChange::Cancel(key) => (key.slot, key.generation, true),
        }
    }
}

use crate::waker::Inbox;
use crate::worker::with_current as with_executor;

/// Where a timer is armed: the key in the table of worker `worker` in its
/// `incarnation` (not its epoch, which repeats after 256 runtimes: a sleep
/// that outlives its runtime must never reach a later owner's table, whose
/// keys name other tasks' timers).
#[derive(Clone, Copy, Debug)]
struct Armed {
    worker: u16,
    incarnation: u64,
    key: TimerKey,
}

/// Future of [`sleep`] and [`sleep_until`]: completes at its deadline.
///
/// A sleep made by [`sleep`] outside a runtime (`rt.block_on(sleep(d))`,
/// `rt.block_on(timeout(d, f))`) counts its duration from the clock of the
/// worker that first polls it, so that it follows that runtime's clock,
/// paused or not; until then its [`deadline`](Self::deadline) is the
/// duration from [`now`] when asked.
///
/// # Panics
///
/// Polling it outside a cellio runtime panics (there is no worker to keep
/// the timer).
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Sleep {
    /// The deadline; a placeholder while `unstarted` is `Some`.
    deadline: Instant,
    /// Made by [`sleep`] outside a runtime and not polled yet: the
    /// duration to count from the polling worker's clock (then `None`).
    /// Never `Some` while `armed` is.
    unstarted: Option<Duration>,
    armed: Option<Armed>,
}

/// Waits until `duration` has passed.
///
/// ```
/// use std::time::{Duration, Instant};
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let start = Instant::now();
///     cellio_runtime::sleep(Duration::from_millis(20)).await;
///     assert!(start.elapsed() >= Duration::from_millis(20));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Made outside a runtime (`rt.block_on(sleep(d))`), the sleep counts `d`
/// from its first poll, on the polling worker's clock (see [`Sleep`]).
pub fn sleep(duration: Duration) -> Sleep {
    match with_executor(|executor| executor.clock().now()) {
        Some(now) => sleep_until(deadline_after(now, duration)),
        None => Sleep {
            deadline: Instant::now(),
            unstarted: Some(duration),
            armed: None,
        },
    }
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        unstarted: None,
        armed: None,
    }
}

/// `duration` after `now`; a duration too large to add saturates to
/// "practically never" ([`far_future`]).
fn deadline_after(now: Instant, duration: Duration) -> Instant {
    now.checked_add(duration).unwrap_or_else(far_future)
}

/// The current time on the clock of the worker running this code:
/// `Instant::now()`, unless a test [`pause`]d it. In a
/// [`spawn_blocking`](crate::spawn_blocking) job, its runtime's clock
/// (paused or not: a paused clock is a one-worker runtime's, its worker's),
/// as tokio's blocking tasks read its paused clock. Outside a runtime,
/// `Instant::now()`.
///
/// Deadlines for [`sleep_until`], [`timeout_at`] and [`Sleep::reset`]
/// should come from here rather than from `Instant::now()` in code that
/// tests run on a paused clock (tokio's `time::Instant::now()`).
pub fn now() -> Instant {
    with_executor(|executor| executor.clock().now()).unwrap_or_else(now_off_worker)
}

/// [`now`] on a thread that is no worker: a blocking job's runtime's
/// clock, or the real one.
#[cold]
fn now_off_worker() -> Instant {
    match crate::blocking::current_job_runtime() {
        Some(runtime) => runtime.clock.now(),
        None => Instant::now(),
    }
}

/// Stops the clock of this runtime (tokio's `time::pause`): from now on
/// time moves only by [`advance`], or by itself when the worker has
/// nothing to do but wait for a timer, which then fires at once (the
/// clock jumps to its deadline; not while `spawn_blocking` jobs are
/// running, nor while other work off the worker that a task waits for is
/// under way: `cellio-net`'s host-name lookups, or work of your own
/// declared with
/// [`Handle::outside_work`](cellio_reactor::Handle::outside_work); and
/// not twice while a Unix datagram send to a full peer waits to try again:
/// the retry is made at once, before the clock moves again, see
/// [`Handle::outside_retry`](cellio_reactor::Handle::outside_retry)). A
/// test of a 30-second timeout runs in microseconds, and its
/// timers fire in deadline order, every run alike. Pausing a paused clock
/// does nothing. Or build the runtime paused:
/// [`Builder::start_paused`](crate::Builder::start_paused).
///
/// Code under test should take its deadlines from [`now`], not from
/// `Instant::now()`, which keeps real time.
///
/// Near the end of what an `Instant` holds (a clock advanced some 292
/// billion years), a deadline too far to represent saturates to that end;
/// the paused clock never goes there, so such a sleep never completes: when
/// the worker would jump the clock to it (nothing else to run), the
/// runtime's `block_on` panics saying so.
///
/// # Panics
///
/// Outside a cellio runtime, in a `spawn_blocking` job (its thread is no
/// worker: pause from a task, or the `block_on` future), or in a runtime
/// with more than one worker (each worker has its own timers; a test
/// pauses a one-worker runtime).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use cellio_runtime::time::{self, sleep, timeout};
///
/// let rt = cellio_runtime::Builder::new().workers(1).build()?;
/// rt.block_on(async {
///     time::pause();
///     let start = time::now();
///     let slow = sleep(Duration::from_secs(3600));
///     assert!(timeout(Duration::from_secs(30), slow).await.is_err());
///     assert_eq!(time::now() - start, Duration::from_secs(30));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
#[track_caller]
pub fn pause() {
    with_paused_clock("pause", |clock| clock.pause());
}

/// Lets a paused clock run again, at the real pace, from the time it
/// reached (it never goes back). Resuming a running clock does nothing.
///
/// # Panics
///
/// As [`pause`].
#[track_caller]
pub fn resume() {
    with_paused_clock("resume", |clock| clock.resume());
}

/// Moves a paused clock forward by `by`, fires the timers that fall due,
/// and yields once, so that the tasks they wake run before this returns
/// (tokio's `time::advance`). A `by` too long to add to an `Instant`
/// (`Duration::MAX`) moves it about 30 years, "practically for ever".
///
/// # Panics
///
/// If the clock is not paused; if the move (even 30 years, for a `by`
/// that does not fit) would reach the latest instant an `Instant` can
/// represent (some 292 billion years from boot: a programming error),
/// where every sleep would complete at once; and as [`pause`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use cellio_runtime::time;
///
/// let rt = cellio_runtime::Builder::new().workers(1).start_paused(true).build()?;
/// rt.block_on(async {
///     let ticker = cellio_runtime::spawn(async {
///         let mut ticks = time::interval(Duration::from_secs(1));
///         for _ in 0..3 {
///             ticks.tick().await;
///         }
///     });
///     cellio_runtime::yield_now().await; // the ticker's first tick, at 0 s
///     time::advance(Duration::from_millis(1999)).await;
///     assert!(!ticker.is_finished(), "ticked at 0 s and 1 s");
///     time::advance(Duration::from_millis(1)).await;
///     assert!(ticker.is_finished(), "and at 2 s");
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn advance(by: Duration) {
    let moved = with_executor(|executor| {
        let moved = executor.clock().advance(by);
        if moved == Advanced::Moved {
            if let Ok(reactor) = cellio_reactor::Handle::current() {
                reactor.note_time_moved();
            }
            executor.fire_expired_timers();
        }
        (moved, executor.clock().now())
    });
    match moved {
        // `advance` does not answer `Stayed`; a zero advance is a move.
        Some((Advanced::Moved | Advanced::Stayed, _)) => crate::yield_now().await,
        Some((Advanced::NotPaused, _)) => {
            panic!("cellio: time::advance needs a paused clock: call time::pause() first")
        }
        Some((Advanced::OutOfRange, at)) => panic!(
            "cellio: time::advance({by:?}) would move the paused clock (at {at:?}) to or past the \
             latest instant std::time::Instant can represent, where every sleep would complete \
             at once (a deadline past it saturates to it); a test moves it less far"
        ),
        None => panic!("cellio: time::advance was called {}", off_worker()),
    }
}

/// Where a clock change was asked for that no worker runs: in a blocking
/// job, or outside a runtime.
fn off_worker() -> &'static str {
    if crate::blocking::current_job_runtime().is_some() {
        "in a spawn_blocking job: the clock is moved from its worker (in a task or the \
         block_on future), though time::now() in a job reads it"
    } else {
        "outside a cellio runtime"
    }
}

/// Runs `f` on the current one-worker runtime's clock, or panics saying
/// why it cannot.
#[track_caller]
fn with_paused_clock(what: &str, f: impl FnOnce(&Clock)) {
    let workers = with_executor(|executor| {
        let workers = executor.shared.workers.len();
        if workers == 1 {
            f(executor.clock());
        }
        workers
    });
    match workers {
        Some(1) => {}
        Some(workers) => panic!(
            "cellio: time::{what} needs a one-worker runtime (this one has {workers}): \
             each worker keeps its own timers; build the test's runtime with workers(1)"
        ),
        None => panic!("cellio: time::{what} was called {}", off_worker()),
    }
}

/// How far "practically never" is: about 30 years, far enough, and safe to
/// add small durations to.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// "Practically never", for a duration that does not fit an `Instant`:
/// [`FAR`] from [`now`], so that on a paused clock moved decades ahead it
/// is still ahead (from `Instant::now()` it was in the past then, and
/// `sleep(Duration::MAX)` completed at once). On a clock within `FAR` of
/// the end of what an `Instant` holds, that end (it was `now`, and every
/// sleep there completed at once), which a paused clock never reaches
/// (see `Clock::advance_to`).
fn far_future() -> Instant {
    now().checked_add(FAR).unwrap_or_else(latest_instant)
}

impl Sleep {
    /// The instant this sleep completes at (for a sleep made outside a
    /// runtime and not polled yet, its duration from [`now`]: it starts
    /// counting at its first poll).
    pub fn deadline(&self) -> Instant {
        match self.unstarted {
            Some(duration) => deadline_after(now(), duration),
            None => self.deadline,
        }
    }

    /// `true` if the deadline has passed (for a sleep made outside a
    /// runtime and not polled yet: if its duration is zero).
    pub fn is_elapsed(&self) -> bool {
        match self.unstarted {
            Some(duration) => duration.is_zero(),
            None => now() >= self.deadline,
        }
    }

    /// Moves the deadline (earlier or later) without allocating; a sleep
    /// that already completed can be reset and awaited again. This is how
    /// idle timeouts are pushed back on every message.
    ///
    /// From any thread: a task waiting for the sleep wakes at the new
    /// deadline (on the worker the timer is armed on, its entry moves; from
    /// elsewhere, that worker wakes the task, whose next poll arms the
    /// timer again for the new deadline).
    ///
    /// Reset to a deadline already passed (or to [`now`]) that is earlier
    /// than the one it had, or while it is not armed (not polled yet, or
    /// completed), the sleep is over at its next poll, as tokio's, and a
    /// task waiting for it is woken. (From another thread than the worker
    /// it is armed on, the task is woken once that worker takes the reset
    /// in, whichever way the deadline moved.) Reset on its own worker to a
    /// deadline *later* than the one it had, the sleep may still be
    /// `Pending` at its next poll though the new deadline has passed too
    /// (its task held the worker past both): it completes when the worker
    /// next fires its timers, a loop turn later, as tokio's does. Only a
    /// deadline moved earlier makes the reset read the clock, so a timeout
    /// pushed back on every message reads none.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.unstarted = None;
        if let Some(armed) = self.armed {
            let on_owner = with_executor(|executor| {
                (executor.incarnation() == armed.incarnation).then(|| {
                    executor.with_timers(|timers| {
                        // The clock is read only for a deadline moved
                        // earlier (or an entry fired already): a timeout
                        // pushed back reads none.
                        timers.reset(armed.key, deadline, || executor.clock().now())
                    })
                })
            })
            .flatten();
            match on_owner {
                Some(Reset::Moved) => {}
                // Over already: its waiting task (if another) polls it
                // now. Woken after the table's borrow.
                Some(Reset::Fired(waker)) => {
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                }
                // Its entry is gone (nothing to cancel): armed at next poll.
                Some(Reset::Stale) => self.armed = None,
                // Another thread: the owner wakes the waiting task.
                None => Inbox::timer_moved(armed.worker, armed.incarnation, armed.key),
            }
        }
    }

    fn disarm(&mut self) {
        let Some(armed) = self.armed.take() else {
            return;
        };
        let local = with_executor(|executor| {
            (executor.incarnation() == armed.incarnation)
                .then(|| executor.with_timers(|timers| timers.remove(armed.key)))
        });
        match local {
            // Dropped here, after the table's borrow (see `timers`).
            Some(Some(released)) => drop(released),
            _ => Inbox::cancel_timer(armed.worker, armed.incarnation, armed.key),
        }
    }

    /// The steady state inline: a sleep polled again while it is still armed
    /// on this worker with this task's waker (an idle timeout or a watchdog
    /// polled beside an operation that is pending) reads its entry and
    /// returns `Pending`; everything else goes out of line.
    #[inline]
    fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_sleep_spending(cx, true)
    }

    /// [`poll_sleep`](Self::poll_sleep), where `spend` says whether a
    /// sleep found over spends a unit of the task's budget (see
    /// `poll_sleep_slow`).
    #[inline]
    fn poll_sleep_spending(&mut self, cx: &mut Context<'_>, spend: bool) -> Poll<()> {
        if let Some(armed) = self.armed {
            let pending = with_executor(|executor| {
                executor.incarnation() == armed.incarnation
                    && executor
                        .with_timers_ref(|timers| timers.is_pending_for(armed.key, cx.waker()))
            });
            if pending == Some(true) {
                return Poll::Pending;
            }
        }
        self.poll_sleep_slow(cx, spend)
    }

    /// A sleep found over: `Ready`, after spending a unit of the task's
    /// budget if `spend` (`Pending`, the task woken, if it has none left).
    fn complete(cx: &Context<'_>, spend: bool) -> Poll<()> {
        if !spend {
            return Poll::Ready(());
        }
        cellio_reactor::budget::poll_proceed_anywhere(cx.waker())
    }

    #[inline(never)]
    fn poll_sleep_slow(&mut self, cx: &mut Context<'_>, spend: bool) -> Poll<()> {
        if let Some(armed) = self.armed {
            let polled = with_executor(|executor| {
                executor
                    .incarnation()
                    .eq(&armed.incarnation)
                    .then(|| executor.with_timers(|timers| timers.poll(armed.key, cx.waker())))
            })
            .flatten()
            // A waker the entry let go of is dropped here, after the
            // table's borrow (see `timers`).
            .map(|(polled, _released)| polled);
            match polled {
                Some(Poll::Ready(fired_for)) => {
                    self.armed = None;
                    if fired_for.is_some_and(|fired_for| self.deadline <= fired_for) {
                        // Over: spends a unit of the budget as below. A
                        // fired entry is no sign that a loop turn went by
                        // (a reset to now fires it at once), so a loop
                        // that arms its sleep, resets it into the past and
                        // awaits it must still yield now and then.
                        return Self::complete(cx, spend);
                    }
                    // Reset on another thread after its entry was armed:
                    // over if the new deadline passed, else armed again.
                }
                Some(Poll::Pending) => return Poll::Pending,
                // Polled on another worker (or none): move the timer.
                None => self.disarm(),
            }
        }
        if let Some(duration) = self.unstarted.take() {
            // Made outside a runtime: counted from here, on this clock.
            self.deadline = deadline_after(now(), duration);
        }
        if now() >= self.deadline {
            // Over before it was armed: complete, but spend a unit of the
            // task's budget as a socket operation does, so that a loop of
            // sleeps already over (a deadline in the past, a thread
            // descheduled past a short one) yields now and then instead of
            // holding the worker (tokio's timers are budgeted the same way).
            return Self::complete(cx, spend);
        }
        let deadline = self.deadline;
        let armed = with_executor(|executor| Armed {
            worker: executor.worker(),
            incarnation: executor.incarnation(),
            key: executor.with_timers(|timers| timers.insert(deadline, cx.waker())),
        });
        match armed {
            Some(armed) => {
                self.armed = Some(armed);
                Poll::Pending
            }
            None => {
                panic!("cellio: a timer was polled outside a runtime; timers need a cellio worker")
            }
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_sleep(cx)
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// The error of a [`timeout`] whose deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(err: Elapsed) -> Self {
        std::io::Error::new(std::io::ErrorKind::TimedOut, err)
    }
}

/// Runs `future` with a deadline: its output, or [`Elapsed`] if `duration`
/// passes first (the future is then dropped, which cancels it). Made
/// outside a runtime (`rt.block_on(timeout(d, f))`), it counts `duration`
/// from its first poll, as [`sleep`] does.
///
/// ```
/// use std::time::Duration;
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let slow = cellio_runtime::sleep(Duration::from_secs(10));
///     let result = cellio_runtime::timeout(Duration::from_millis(10), slow).await;
///     assert!(result.is_err());
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep(duration),
    }
}

/// Runs `future` with a deadline at `deadline`: [`timeout`] with an
/// instant instead of a duration (tokio's `timeout_at`), for several steps
/// that share one deadline.
///
/// ```
/// use std::time::{Duration, Instant};
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let deadline = Instant::now() + Duration::from_millis(20);
///     let quick = cellio_runtime::timeout_at(deadline, async { 7 }).await;
///     assert_eq!(quick, Ok(7));
///     let slow = cellio_runtime::sleep(Duration::from_secs(10));
///     assert!(cellio_runtime::time::timeout_at(deadline, slow).await.is_err());
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep_until(deadline),
    }
}

/// Future of [`timeout`] and [`timeout_at`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Timeout<F> {
    future: F,
    sleep: Sleep,
}

impl<F> Timeout<F> {
    /// The future it runs, to look at (tokio's `Timeout::get_ref`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let guarded = cellio_runtime::timeout(Duration::from_secs(1), std::future::ready(7));
    /// assert!(matches!(guarded.get_ref(), std::future::Ready { .. }));
    /// ```
    pub fn get_ref(&self) -> &F {
        &self.future
    }

    /// The future it runs, to change (tokio's `Timeout::get_mut`). Takes
    /// the `Timeout` unpinned: a pinned one gives its future out only if
    /// that future is `Unpin` (then `Pin::get_mut` gives the `Timeout`).
    pub fn get_mut(&mut self) -> &mut F {
        &mut self.future
    }

    /// The future it runs, given back; the deadline is dropped (its timer
    /// cancelled) with the `Timeout` (tokio's `Timeout::into_inner`).
    ///
    /// ```
    /// use std::time::Duration;
    /// cellio_runtime::Runtime::new()?.block_on(async {
    ///     let guarded = cellio_runtime::timeout(Duration::from_millis(1), async { 7 });
    ///     // No deadline after all: the future runs to its end.
    ///     assert_eq!(guarded.into_inner().await, 7);
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> F {
        self.future
    }

    /// The deadline (see [`Sleep::deadline`]).
    pub fn deadline(&self) -> Instant {
        self.sleep.deadline()
    }

    /// Moves the deadline; see [`Sleep::reset`].
    pub fn reset(self: Pin<&mut Self>, deadline: Instant) {
        // SAFETY: `sleep` is not structurally pinned (it is `Unpin` and
        // never pinned by us); `future` is not touched.
        unsafe { self.get_unchecked_mut() }.sleep.reset(deadline);
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned: `Timeout` never moves it
        // and has no `Unpin` impl unless `F: Unpin`; `sleep` is `Unpin` and
        // only used through `&mut`.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        let had_budget = cellio_reactor::budget::has_remaining();
        if let Poll::Ready(output) = future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        // If the future spent the last of the budget, the deadline is
        // checked without spending (tokio's rule): a deadline already past
        // would otherwise find the budget empty on every poll, and a
        // future that always has work (a flooded socket) would never time
        // out.
        let spend = !had_budget || cellio_reactor::budget::has_remaining();
        match this.sleep.poll_sleep_spending(cx, spend) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}
