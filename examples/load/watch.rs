//! Bounding every wait for the server: one reaper task per worker instead of
//! one timer per connection.
//!
//! Each connection owns a [`Watch`] in its worker's [`Watchlist`]. Before it
//! waits for the server it *arms* the watch with the moment its wait began
//! (the send of the message it waits for, or the last bytes of an echo that
//! came back: any progress starts the wait again); once the echo is back it
//! *disarms* it. A [`Guarded`] operation polls the socket future and, only
//! when that is pending, reads the watch's verdict and leaves the task's
//! waker there. The worker's [`reap`] task wakes every `timeout / 8` (and at
//! the run's end), gives every armed watch whose wait is older than
//! `timeout` the verdict [`Stop::Timeout`], every live watch [`Stop::End`]
//! once the run is over, and wakes their tasks. A list that *drains*
//! (stream connections) gives no `End`: a wait for an echo still going at
//! the run's end goes on until the echo is back or the timeout, so a
//! server that stops answering fails the run however near its end it
//! stopped; the connections stop sending at the end by themselves.
//!
//! Invariants:
//! - A message costs a store to arm, a load and a store to disarm, and,
//!   only while an operation is pending, a load of the verdict and a waker
//!   comparison: no timer operation, no clock read.
//! - A wait that makes no progress ends between `timeout` and
//!   `timeout * 9 / 8` after it began; a wait still going at the run's end
//!   ends then (duration mode), unless the list drains.
//! - Data that is ready wins over a verdict given in the same turn: a
//!   guarded operation polls the socket first, and disarming clears a
//!   timeout verdict. `End` stays: the run is over.
//! - Everything lives on one worker thread: plain cells, no atomics.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use cellio::runtime::sleep_until;

use crate::clock::{Clock, Stamp};

/// Why waiting for the server stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// No progress for the list's limit: over TCP `--timeout`, an error;
    /// with `--udp` `--loss-after`, a lost datagram.
    Timeout,
    /// The run ended (duration mode): not an error.
    End,
}

/// One connection's entry in its worker's watch list.
pub struct Watch {
    /// When the current wait began; `None` while the connection is not
    /// waiting for the server (pacing, checking, finished).
    since: Cell<Option<Stamp>>,
    /// The reaper's verdict, read by the connection's guarded operations.
    verdict: Cell<Option<Stop>>,
    /// The connection's task, left here by a pending guarded operation.
    waker: RefCell<Option<Waker>>,
    /// The connection's task has not ended.
    live: Cell<bool>,
}

impl Watch {
    fn new() -> Self {
        Watch {
            since: Cell::new(None),
            verdict: Cell::new(None),
            waker: RefCell::new(None),
            live: Cell::new(true),
        }
    }

    /// A wait for the server begins (or began) at `since`.
    #[inline]
    pub fn arm(&self, since: Stamp) {
        self.since.set(Some(since));
    }

    /// The server made progress (part of an echo) at `at`: the wait goes
    /// on, timed from then. A timeout given meanwhile no longer applies
    /// (data that was ready wins); the run's end still does.
    #[inline]
    pub fn progress(&self, at: Stamp) {
        self.disarm();
        self.arm(at);
    }

    /// The wait is over: the server answered. A timeout given meanwhile no
    /// longer applies; the run's end still does.
    #[inline]
    pub fn disarm(&self) {
        self.since.set(None);
        if self.verdict.get() == Some(Stop::Timeout) {
            self.verdict.set(None);
        }
    }

    /// The connection's task has ended: the reaper forgets it.
    pub fn retire(&self) {
        self.live.set(false);
        self.waker.borrow_mut().take();
    }

    /// Runs `fut` until it completes or the reaper stops the wait.
    #[inline]
    pub fn guard<F: Future + Unpin>(&self, fut: F) -> Guarded<'_, F> {
        Guarded { fut, watch: self }
    }

    fn give(&self, verdict: Stop) {
        self.verdict.set(Some(verdict));
        if let Some(waker) = self.waker.borrow().as_ref() {
            waker.wake_by_ref();
        }
    }
}

/// A socket operation bounded by its connection's [`Watch`].
pub struct Guarded<'a, F> {
    fut: F,
    watch: &'a Watch,
}

impl<F: Future + Unpin> Future for Guarded<'_, F> {
    type Output = Result<F::Output, Stop>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = Pin::new(&mut self.fut).poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let watch = self.watch;
        if let Some(stop) = watch.verdict.get() {
            return Poll::Ready(Err(stop));
        }
        let mut slot = watch.waker.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *slot = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A worker's watches, one per connection, and what the reaper needs.
pub struct Watchlist {
    watches: Box<[Watch]>,
    timeout: Duration,
    /// The clock of the watches' stamps.
    clock: Clock,
    /// Duration mode: every wait ends here, unless `drain`.
    end: Option<Stamp>,
    /// Waits go on past `end`, each until its echo or its timeout.
    drain: bool,
}

impl Watchlist {
    /// `count` watches (connection `i` of the worker takes watch `i`);
    /// with `drain`, the run's `end` stops no wait.
    pub fn new(
        count: usize,
        timeout: Duration,
        clock: Clock,
        end: Option<Stamp>,
        drain: bool,
    ) -> Rc<Self> {
        Rc::new(Watchlist {
            watches: (0..count).map(|_| Watch::new()).collect(),
            timeout,
            clock,
            end,
            drain,
        })
    }

    /// Connection `i`'s watch.
    pub fn watch(&self, i: usize) -> &Watch {
        &self.watches[i]
    }
}

/// How often the reaper looks: a wait ends at most this share of the
/// timeout late.
const LOOKS_PER_TIMEOUT: u32 = 8;

/// The worker's reaper: runs until every connection has retired (or the
/// run has ended and every live wait has been told, if the list does not
/// drain).
pub async fn reap(list: Rc<Watchlist>) {
    let period = (list.timeout / LOOKS_PER_TIMEOUT).max(Duration::from_millis(1));
    let mut sleep = sleep_until(Instant::now());
    loop {
        let now = list.clock.now();
        let ended = list.end.is_some_and(|end| now >= end);
        // The run's end stops every wait, unless the list drains.
        let stopped = ended && !list.drain;
        let mut live = 0;
        for watch in list.watches.iter().filter(|w| w.live.get()) {
            live += 1;
            if stopped {
                watch.give(Stop::End);
            } else if watch
                .since
                .get()
                .is_some_and(|since| now >= since.add(list.timeout))
                && watch.verdict.get().is_none()
            {
                watch.give(Stop::Timeout);
            }
        }
        if live == 0 || stopped {
            return;
        }
        let next = now.add(period);
        let next = match list.end {
            Some(end) if !ended => next.min(end),
            _ => next,
        };
        sleep.reset(list.clock.instant_of(next));
        (&mut sleep).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;

    use cellio::{spawn_local, Runtime};

    /// A future that never completes.
    fn never() -> impl Future<Output = ()> + Unpin {
        poll_fn(|_| Poll::Pending)
    }

    #[test]
    fn an_armed_wait_times_out_within_an_eighth_of_the_timeout() {
        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            let timeout = Duration::from_millis(80);
            let clock = Clock::fastest();
            let list = Watchlist::new(1, timeout, clock, None, false);
            spawn_local(reap(list.clone()));
            let start = Instant::now();
            list.watch(0).arm(clock.now());
            let out = list.watch(0).guard(never()).await;
            let waited = start.elapsed();
            assert_eq!(out, Err(Stop::Timeout));
            assert!(waited >= timeout, "{waited:?}");
            list.watch(0).retire();
        });
    }

    #[test]
    fn a_disarmed_watch_is_not_timed_out_and_ready_data_wins() {
        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            let list = Watchlist::new(
                1,
                Duration::from_millis(8),
                Clock::on_instant(),
                None,
                false,
            );
            let watch = list.watch(0);
            // Not armed: the reaper's looks give no verdict.
            spawn_local(reap(list.clone()));
            cellio::runtime::sleep(Duration::from_millis(30)).await;
            assert_eq!(watch.verdict.get(), None);
            // A verdict given while the answer is ready: the answer wins,
            // and disarming forgets the timeout.
            watch.give(Stop::Timeout);
            assert_eq!(watch.guard(std::future::ready(7)).await, Ok(7));
            watch.disarm();
            assert_eq!(watch.verdict.get(), None);
            // The run's end stays.
            watch.give(Stop::End);
            watch.disarm();
            assert_eq!(watch.guard(never()).await, Err(Stop::End));
            watch.retire();
        });
    }

    #[test]
    fn the_runs_end_stops_every_live_wait() {
        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            let clock = Clock::fastest();
            let end = clock.now().add(Duration::from_millis(40));
            let list = Watchlist::new(2, Duration::from_secs(60), clock, Some(end), false);
            let reaper = spawn_local(reap(list.clone()));
            // One connection waiting for the server, one pacing (not armed).
            list.watch(0).arm(clock.now());
            assert_eq!(list.watch(0).guard(never()).await, Err(Stop::End));
            assert!(clock.now() >= end);
            assert_eq!(list.watch(1).guard(never()).await, Err(Stop::End));
            reaper.await.unwrap();
        });
    }

    #[test]
    fn a_draining_list_lets_a_wait_run_past_the_end_to_its_timeout() {
        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            let clock = Clock::fastest();
            let start = clock.now();
            let end = start.add(Duration::from_millis(20));
            let timeout = Duration::from_millis(100);
            let list = Watchlist::new(2, timeout, clock, Some(end), true);
            let reaper = spawn_local(reap(list.clone()));
            // A wait that gets its answer after the end: no verdict.
            list.watch(1).arm(start);
            cellio::runtime::sleep(Duration::from_millis(40)).await;
            assert!(clock.now() >= end);
            assert_eq!(list.watch(1).verdict.get(), None);
            assert_eq!(list.watch(1).guard(std::future::ready(1)).await, Ok(1));
            list.watch(1).disarm();
            list.watch(1).retire();
            // One that never gets it: its timeout, not the end.
            list.watch(0).arm(start);
            assert_eq!(list.watch(0).guard(never()).await, Err(Stop::Timeout));
            assert!(clock.now() >= start.add(timeout));
            list.watch(0).retire();
            reaper.await.unwrap();
        });
    }
}
