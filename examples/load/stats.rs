//! Per-target counters and latency histograms, the worker's own tally (the
//! progress counter and the allocation window), and a counting allocator that
//! checks the hot loop really allocates nothing.
//!
//! A worker keeps one [`Stats`] per target address (`--addr` given several
//! times) and one [`Tally`] that all of them share: allocations are counted
//! per thread, so the allocation window is the worker's, not a target's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::fmt::Display;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Longest latency the histogram tracks exactly (larger values saturate).
const MAX_LATENCY_NS: u64 = 3_600 * 1_000_000_000;
/// Error/mismatch details printed per worker and target; the rest are only
/// counted.
const MAX_REPORTS: u32 = 5;

/// The system allocator, counting allocations per thread.
pub struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to `System`; the counter is a const-initialised
// thread-local without a destructor, so touching it never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc`'s contract, which we pass on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc`'s contract, which we pass on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc`'s contract, which we pass on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations made by this thread so far.
pub fn thread_allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// A fresh latency histogram (nanoseconds, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// A window's latency histogram: 2 significant digits (1%), enough for a
/// window's percentiles: 4608 counters (36 KiB) instead of the run
/// histogram's 33 792 (264 KiB), as a test checks.
fn window_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 2).expect("valid histogram bounds")
}

/// `--window`: consecutive windows of the measured period, each with its
/// own histogram, allocated up front (recording allocates nothing).
pub struct Windows {
    /// The start of the measured period (the end of the warm-up), set by
    /// [`Windows::begin`] once the run's start is known.
    start: Instant,
    /// Each window's length.
    pub len: Duration,
    /// One histogram per window, in order.
    pub hists: Vec<Histogram<u64>>,
}

impl Windows {
    /// `count` windows of `len`, allocated now (before the run).
    pub fn new(len: Duration, count: usize) -> Self {
        Windows {
            start: Instant::now(),
            len,
            hists: (0..count).map(|_| window_histogram()).collect(),
        }
    }

    /// The measured period starts at `start`.
    pub fn begin(&mut self, start: Instant) {
        self.start = start;
    }

    /// Records a measured message that was due at `intended`.
    #[inline]
    fn record(&mut self, intended: Instant, ns: u64) {
        let since = intended.saturating_duration_since(self.start).as_nanos();
        // A message due exactly at the end (rounding) joins the last window.
        let last = self.hists.len().saturating_sub(1);
        let i = (since / self.len.as_nanos().max(1)).min(last as u128) as usize;
        if let Some(h) = self.hists.get_mut(i) {
            h.saturating_record(ns);
        }
    }

    /// Adds another worker's windows (the same plan, so the same count).
    fn merge(&mut self, other: &Windows) {
        for (mine, theirs) in self.hists.iter_mut().zip(&other.hists) {
            mine.add(theirs).expect("histograms have the same bounds");
        }
    }
}

/// One worker's results for one target address, shared by the connection
/// tasks that talk to it (one thread).
pub struct Stats {
    hist: RefCell<Histogram<u64>>,
    /// Open loop: how late messages were sent compared with their schedule.
    lag: RefCell<Histogram<u64>>,
    windows: RefCell<Option<Windows>>,
    msgs: Cell<u64>,
    mismatches: Cell<u64>,
    errors: Cell<u64>,
    timeouts: Cell<u64>,
    last_done: Cell<Option<Instant>>,
    reports: Cell<u32>,
    /// The worker's tally, shared with its other targets' `Stats`.
    tally: Rc<Tally>,
}

/// What a worker counts over all its targets: recorded messages, published
/// for the progress line on the main thread, and the allocation window.
pub struct Tally {
    msgs: Cell<u64>,
    /// `msgs`, for the progress line on the main thread.
    published: Arc<AtomicU64>,
    /// The allocation window: the thread's allocation count at its first
    /// recorded message and at the latest one recorded before any of its
    /// connections ended, and the messages recorded in that span: the
    /// steady state, without the teardown of connections that finish while
    /// others still run (open loop).
    /// (Meaningful once `open_msgs > 0`.)
    first_allocs: Cell<u64>,
    last_allocs: Cell<u64>,
    /// Messages recorded while the window was open (the first included).
    open_msgs: Cell<u64>,
    /// A connection has ended: its teardown (and everything after) is not
    /// the hot loop, so the allocation window is closed.
    allocs_closed: Cell<bool>,
}

/// What a worker hands back to the main thread: a [`Totals`] per target and
/// its allocation window.
pub struct WorkerTotals {
    pub targets: Vec<Totals>,
    /// Allocations on the worker's thread in its allocation window.
    pub window_allocs: u64,
    /// Messages recorded in the allocation window.
    pub window_msgs: u64,
}

/// One target's results (of one worker, or merged over workers or targets).
pub struct Totals {
    pub hist: Histogram<u64>,
    pub lag: Histogram<u64>,
    pub windows: Option<Windows>,
    pub msgs: u64,
    pub mismatches: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub connect_errors: u64,
    pub last_done: Option<Instant>,
}

impl Totals {
    pub fn empty() -> Self {
        Totals {
            hist: histogram(),
            lag: histogram(),
            windows: None,
            msgs: 0,
            mismatches: 0,
            errors: 0,
            timeouts: 0,
            connect_errors: 0,
            last_done: None,
        }
    }

    pub fn merge(&mut self, other: &Totals) {
        self.hist
            .add(&other.hist)
            .expect("histograms have the same bounds");
        self.lag
            .add(&other.lag)
            .expect("histograms have the same bounds");
        match (&mut self.windows, &other.windows) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, Some(theirs)) => {
                let mut w = Windows::new(theirs.len, theirs.hists.len());
                w.merge(theirs);
                *mine = Some(w);
            }
            (_, None) => {}
        }
        self.msgs += other.msgs;
        self.mismatches += other.mismatches;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.connect_errors += other.connect_errors;
        self.last_done = self.last_done.max(other.last_done);
    }
}

impl Tally {
    pub fn new(published: Arc<AtomicU64>) -> Self {
        Tally {
            msgs: Cell::new(0),
            published,
            first_allocs: Cell::new(0),
            last_allocs: Cell::new(0),
            open_msgs: Cell::new(0),
            allocs_closed: Cell::new(false),
        }
    }

    /// A measured message completed (on any target).
    #[inline]
    fn recorded(&self) {
        let msgs = self.msgs.get() + 1;
        self.msgs.set(msgs);
        self.published.store(msgs, Ordering::Relaxed);
        if !self.allocs_closed.get() {
            let now = thread_allocs();
            if self.open_msgs.get() == 0 {
                self.first_allocs.set(now);
            }
            self.last_allocs.set(now);
            self.open_msgs.set(self.open_msgs.get() + 1);
        }
    }

    /// One of this worker's connections has ended (normally or not).
    pub fn connection_ended(&self) {
        self.allocs_closed.set(true);
    }

    /// The worker's results: `targets` and its allocation window.
    pub fn into_worker_totals(self, targets: Vec<Totals>) -> WorkerTotals {
        WorkerTotals {
            targets,
            window_allocs: self.last_allocs.get() - self.first_allocs.get(),
            window_msgs: self.open_msgs.get().saturating_sub(1),
        }
    }
}

impl Stats {
    pub fn new(tally: Rc<Tally>, windows: Option<Windows>) -> Self {
        Stats {
            hist: RefCell::new(histogram()),
            lag: RefCell::new(histogram()),
            windows: RefCell::new(windows),
            msgs: Cell::new(0),
            mismatches: Cell::new(0),
            errors: Cell::new(0),
            timeouts: Cell::new(0),
            last_done: Cell::new(None),
            reports: Cell::new(0),
            tally,
        }
    }

    /// The echo of a message meant to be sent at `intended` came back in
    /// full at `now`. `recorded`: it belongs to the measured period; `bad`:
    /// its bytes differ from what was sent.
    #[inline(always)]
    pub fn complete(&self, recorded: bool, bad: bool, intended: Instant, now: Instant) {
        if bad {
            self.mismatches.set(self.mismatches.get() + 1);
        }
        if recorded {
            let latency = now.saturating_duration_since(intended);
            let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
            self.hist.borrow_mut().saturating_record(ns);
            if let Some(windows) = self.windows.borrow_mut().as_mut() {
                windows.record(intended, ns);
            }
            self.msgs.set(self.msgs.get() + 1);
            self.last_done.set(Some(now));
            self.tally.recorded();
        }
    }

    /// One of this target's connections has ended (normally or not).
    pub fn connection_ended(&self) {
        self.tally.connection_ended();
    }

    /// Open loop: a measured message was sent `lag` after it was due.
    #[inline]
    pub fn send_lag(&self, lag: Duration) {
        let ns = u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.lag.borrow_mut().saturating_record(ns);
    }

    /// Prints the first few problems of this worker on stderr.
    #[cold]
    pub fn report(&self, what: impl Display) {
        let n = self.reports.get();
        self.reports.set(n + 1);
        if n < MAX_REPORTS {
            eprintln!("load: {what}");
        } else if n == MAX_REPORTS {
            eprintln!("load: (further errors of this worker are only counted)");
        }
    }

    #[cold]
    pub fn error(&self, conn: u64, what: impl Display) {
        self.errors.set(self.errors.get() + 1);
        self.report(format_args!("connection {conn}: {what}"));
    }

    #[cold]
    pub fn timeout(&self, conn: u64, seq: u64, timeout: Duration) {
        self.timeouts.set(self.timeouts.get() + 1);
        self.error(
            conn,
            format_args!("message {seq}: no echo for {timeout:?} (timed out)"),
        );
    }

    pub fn into_totals(self, connect_errors: u64) -> Totals {
        Totals {
            hist: self.hist.into_inner(),
            lag: self.lag.into_inner(),
            windows: self.windows.into_inner(),
            msgs: self.msgs.get(),
            mismatches: self.mismatches.get(),
            errors: self.errors.get(),
            timeouts: self.timeouts.get(),
            connect_errors,
            last_done: self.last_done.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes the docs quote: 4608 counters (36 KiB) per window,
    /// 33 792 (264 KiB) for the run's histogram.
    #[test]
    fn window_histograms_are_small() {
        assert_eq!(window_histogram().distinct_values(), 4608);
        assert_eq!(histogram().distinct_values(), 33_792);
    }

    #[test]
    fn windows_take_messages_by_intended_time() {
        let t0 = Instant::now();
        let mut w = Windows::new(Duration::from_millis(100), 3);
        w.begin(t0);
        for ms in [0, 99, 100, 250, 300, 400] {
            w.record(t0 + Duration::from_millis(ms), 1_000);
        }
        // 300 and 400 ms (the end and past it) join the last window.
        let counts: Vec<u64> = w.hists.iter().map(Histogram::len).collect();
        assert_eq!(counts, [2, 1, 3]);
    }
}
