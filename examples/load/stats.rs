//! Per-target counters and latency histograms, the worker's own tally (the
//! progress counter and the allocation window), and a counting allocator that
//! checks the hot loop really allocates nothing.
//!
//! A worker keeps one [`Stats`] per target address (`--addr` given several
//! times) and one [`Tally`] that all of them share: allocations are counted
//! per thread, so the allocation window is the worker's, not a target's.
//!
//! Invariants:
//! - A completed message costs one entry appended to the tally's batch
//!   (its target and two stamps). Every [`BATCH`] messages, and when the
//!   worker ends, the batch goes into the targets' histograms, the counters
//!   and the allocation window at once: between two syscalls a message
//!   touches one line of the batch instead of the histograms', the
//!   counters' and the allocation counter's.
//! - The batch keeps the order of completion, and the allocation count is
//!   sampled only when a batch is flushed, so the allocation window holds
//!   exactly the messages flushed after its first sample and up to its last.
//! - Nothing here allocates after the run has started: the batch and every
//!   histogram are allocated before.
//! - Every histogram of a run tracks values up to the same bound,
//!   [`latency_bound`] of the plan: in a `--duration` run no latency or
//!   send lag can exceed it (a measured message is due after the warm-up
//!   and is recorded by the end, or at its age at the end). A value above
//!   it (possible with `--requests`) is recorded at the bound and counted
//!   in [`Totals::clipped`] or [`Totals::lag_clipped`], which the report
//!   shows: never clipped silently.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::fmt::Display;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::clock::Stamp;

/// The least bound of a run's histograms: one hour.
const MIN_LATENCY_BOUND: Duration = Duration::from_secs(3_600);
/// The greatest bound a histogram takes (hdrhistogram's limit is half of
/// `u64::MAX`): some 146 years, beyond any run `--duration` allows.
const MAX_LATENCY_BOUND_NS: u64 = 1 << 62;
/// Error/mismatch details printed per worker and target; the rest are only
/// counted.
const MAX_REPORTS: u32 = 5;
/// Completed messages a worker holds before it records them (24 bytes each).
pub const BATCH: usize = 256;

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

/// The largest latency (and send lag), in nanoseconds, a run's histograms
/// track: an hour, or `longest` (the run's `--duration`, or `--timeout`)
/// if that is longer. A duration run records nothing longer than its
/// `--duration` (see the module docs); each doubling above an hour costs
/// a run histogram 8 KiB and a window's 1 KiB.
pub fn latency_bound(longest: &[Duration]) -> u64 {
    let longest = longest
        .iter()
        .copied()
        .fold(MIN_LATENCY_BOUND, Duration::max);
    u64::try_from(longest.as_nanos())
        .map_or(MAX_LATENCY_BOUND_NS, |ns| ns.min(MAX_LATENCY_BOUND_NS))
}

/// A fresh latency histogram (nanoseconds, 3 significant digits) up to
/// `bound_ns` ([`latency_bound`]).
pub fn histogram(bound_ns: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, bound_ns.max(2), 3).expect("valid histogram bounds")
}

/// A window's latency histogram: 2 significant digits (1%), enough for a
/// window's percentiles: up to an hour, 4608 counters (36 KiB) instead of
/// the run histogram's 33 792 (264 KiB), as a test checks.
fn window_histogram(bound_ns: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, bound_ns.max(2), 2).expect("valid histogram bounds")
}

/// Records `n` values `ns` into `h`; a value above its bound is recorded
/// at the bound, and the count of such values returned (0 otherwise).
#[inline]
fn record_counting_clipped(h: &mut Histogram<u64>, ns: u64, n: u64) -> u64 {
    h.saturating_record_n(ns, n);
    if ns > h.high() {
        n
    } else {
        0
    }
}

/// `--window`: consecutive windows of the measured period, each with its
/// own histogram, allocated up front (recording allocates nothing).
pub struct Windows {
    /// The start of the measured period (the end of the warm-up), set by
    /// [`Windows::begin`] once the run's start is known.
    start: Stamp,
    /// Each window's length.
    pub len: Duration,
    /// One histogram per window, in order.
    pub hists: Vec<Histogram<u64>>,
}

impl Windows {
    /// `count` windows of `len`, allocated now (before the run), each
    /// histogram up to `bound_ns` ([`latency_bound`]).
    pub fn new(len: Duration, count: usize, bound_ns: u64) -> Self {
        Windows {
            start: Stamp::default(),
            len,
            hists: (0..count).map(|_| window_histogram(bound_ns)).collect(),
        }
    }

    /// The measured period starts at `start`.
    pub fn begin(&mut self, start: Stamp) {
        self.start = start;
    }

    /// Records a measured message that was due at `intended`.
    #[inline]
    fn record(&mut self, intended: Stamp, ns: u64) {
        self.record_n(intended, ns, 1);
    }

    /// Records `n` measured messages due at `intended`, each `ns` long.
    #[inline]
    fn record_n(&mut self, intended: Stamp, ns: u64, n: u64) {
        let i = self.index(intended);
        if let Some(h) = self.hists.get_mut(i) {
            h.saturating_record_n(ns, n);
        }
    }

    /// The window of a message due at `intended`.
    #[inline]
    fn index(&self, intended: Stamp) -> usize {
        let since = u128::from(intended.nanos_since(self.start));
        // A message due exactly at the end (rounding) joins the last window.
        let last = self.hists.len().saturating_sub(1);
        (since / self.len.as_nanos().max(1)).min(last as u128) as usize
    }

    /// Where the window of a message due at `intended` ends; `None` for the
    /// last window, which takes everything after its start.
    fn end_of_window(&self, intended: Stamp) -> Option<Stamp> {
        let i = self.index(intended);
        let next = u32::try_from(i + 1).ok()?;
        (i + 1 < self.hists.len()).then(|| self.start.add(self.len * next))
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
    /// This target's index in the worker's [`Tally`].
    target: u32,
    /// Open loop: how late messages were sent compared with their schedule.
    lag: RefCell<Histogram<u64>>,
    /// Send lags above `lag`'s bound, recorded at the bound.
    lag_clipped: Cell<u64>,
    mismatches: Cell<u64>,
    errors: Cell<u64>,
    timeouts: Cell<u64>,
    /// `--udp`: measured datagrams given up after `--loss-after`.
    lost: Cell<u64>,
    /// `--udp`: echoes of datagrams already settled: given up (lost, or
    /// overtaken) and echoed later, or echoed before (duplicates).
    late: Cell<u64>,
    /// Measured messages the run's end cut off (see [`Stats::unfinished`]).
    unfinished: Cell<u64>,
    reports: Cell<u32>,
    /// The worker's tally, shared with its other targets' `Stats`: it
    /// records this target's latencies.
    tally: Rc<Tally>,
}

/// One measured message, completed and not yet recorded.
#[derive(Clone, Copy)]
struct Done {
    target: u32,
    /// When it was due (its send time in a closed loop).
    intended: Stamp,
    /// When its echo was back in full.
    at: Stamp,
}

/// One target's latencies, as the worker records them.
pub struct Recorder {
    hist: Histogram<u64>,
    windows: Option<Windows>,
    msgs: u64,
    last_done: Option<Stamp>,
    /// Latencies above `hist`'s bound, recorded at the bound.
    clipped: u64,
}

impl Recorder {
    /// An empty recorder (the histograms allocated now, up to `bound_ns`:
    /// [`latency_bound`]); `windows` already begun.
    pub fn new(windows: Option<Windows>, bound_ns: u64) -> Self {
        Recorder {
            hist: histogram(bound_ns),
            windows,
            msgs: 0,
            last_done: None,
            clipped: 0,
        }
    }

    fn record(&mut self, done: &Done) {
        let ns = done.at.nanos_since(done.intended).max(1);
        self.clipped += record_counting_clipped(&mut self.hist, ns, 1);
        if let Some(windows) = self.windows.as_mut() {
            windows.record(done.intended, ns);
        }
        self.msgs += 1;
        self.last_done = Some(done.at);
    }

    /// `n` measured messages due at `intended` that the run's end cut off,
    /// `ns` old then: in the latencies, not in `msgs`.
    fn record_unfinished(&mut self, intended: Stamp, ns: u64, n: u64) {
        let ns = ns.max(1);
        self.clipped += record_counting_clipped(&mut self.hist, ns, n);
        if let Some(windows) = self.windows.as_mut() {
            windows.record_n(intended, ns, n);
        }
    }
}

/// What a worker records over all its targets: the batch of completed
/// messages, each target's latencies, the count of recorded messages
/// (published for the progress line on the main thread), and the
/// allocation window.
pub struct Tally {
    /// Completed messages not yet recorded, in the order they completed
    /// (capacity [`BATCH`], never exceeded).
    batch: RefCell<Vec<Done>>,
    /// Each target's latencies.
    recorders: RefCell<Vec<Recorder>>,
    msgs: Cell<u64>,
    /// `msgs`, for the progress line on the main thread.
    published: Arc<AtomicU64>,
    /// The allocation window: the thread's allocation count when the first
    /// batch was recorded and when the latest one was recorded before any
    /// of the worker's connections ended, and the messages recorded in
    /// between: the steady state, without the teardown of connections that
    /// finish while others still run (open loop). `None` until the first
    /// batch.
    first_allocs: Cell<Option<u64>>,
    last_allocs: Cell<u64>,
    /// Messages recorded after the first sample, up to the last.
    window_msgs: Cell<u64>,
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
    /// `--udp`: measured datagrams whose echo did not come back in time.
    pub lost: u64,
    /// `--udp`: echoes of datagrams already settled: given up (lost, or
    /// overtaken) and echoed later, or echoed before (duplicates).
    pub late: u64,
    /// Measured messages whose echo was not back at the run's end (in the
    /// latencies at their age then, not in `msgs`).
    pub unfinished: u64,
    pub connect_errors: u64,
    pub last_done: Option<Stamp>,
    /// Latencies above `hist`'s bound ([`latency_bound`]), in it at the
    /// bound.
    pub clipped: u64,
    /// Send lags above `lag`'s bound, in it at the bound.
    pub lag_clipped: u64,
}

impl Totals {
    /// No results yet; histograms up to `bound_ns` ([`latency_bound`]).
    pub fn empty(bound_ns: u64) -> Self {
        Totals {
            hist: histogram(bound_ns),
            lag: histogram(bound_ns),
            windows: None,
            msgs: 0,
            mismatches: 0,
            errors: 0,
            timeouts: 0,
            lost: 0,
            late: 0,
            unfinished: 0,
            connect_errors: 0,
            last_done: None,
            clipped: 0,
            lag_clipped: 0,
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
                let bound = theirs.hists.first().map_or(2, Histogram::high);
                let mut w = Windows::new(theirs.len, theirs.hists.len(), bound);
                w.merge(theirs);
                *mine = Some(w);
            }
            (_, None) => {}
        }
        self.msgs += other.msgs;
        self.mismatches += other.mismatches;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.lost += other.lost;
        self.late += other.late;
        self.unfinished += other.unfinished;
        self.connect_errors += other.connect_errors;
        self.last_done = self.last_done.max(other.last_done);
        self.clipped += other.clipped;
        self.lag_clipped += other.lag_clipped;
    }
}

impl Tally {
    /// A worker's tally: one recorder per target (none for a worker that
    /// never ran).
    pub fn new(published: Arc<AtomicU64>, recorders: Vec<Recorder>) -> Self {
        Tally {
            batch: RefCell::new(Vec::with_capacity(BATCH)),
            recorders: RefCell::new(recorders),
            msgs: Cell::new(0),
            published,
            first_allocs: Cell::new(None),
            last_allocs: Cell::new(0),
            window_msgs: Cell::new(0),
            allocs_closed: Cell::new(false),
        }
    }

    /// A measured message of target `target` completed.
    #[inline]
    fn push(&self, done: Done) {
        let full = {
            let mut batch = self.batch.borrow_mut();
            batch.push(done);
            batch.len() == BATCH
        };
        if full {
            self.flush();
        }
    }

    /// Records the batch: into the targets' histograms, the counters, and
    /// (until a connection has ended) the allocation window.
    #[inline(never)]
    fn flush(&self) {
        let mut batch = self.batch.borrow_mut();
        if batch.is_empty() {
            return;
        }
        let mut recorders = self.recorders.borrow_mut();
        for done in batch.iter() {
            if let Some(r) = recorders.get_mut(done.target as usize) {
                r.record(done);
            }
        }
        let n = batch.len() as u64;
        batch.clear();
        let msgs = self.msgs.get() + n;
        self.msgs.set(msgs);
        self.published.store(msgs, Ordering::Relaxed);
        if !self.allocs_closed.get() {
            let now = thread_allocs();
            if self.first_allocs.get().is_none() {
                self.first_allocs.set(Some(now));
            } else {
                self.window_msgs.set(self.window_msgs.get() + n);
            }
            self.last_allocs.set(now);
        }
    }

    /// One of this worker's connections has ended (normally or not).
    pub fn connection_ended(&self) {
        self.allocs_closed.set(true);
    }

    /// Where the `--window` of target `target` holding a message due at
    /// `intended` ends (`None`: no windows, or the last one).
    fn end_of_window(&self, target: u32, intended: Stamp) -> Option<Stamp> {
        let recorders = self.recorders.borrow();
        let windows = recorders.get(target as usize)?.windows.as_ref()?;
        windows.end_of_window(intended)
    }

    /// The worker's results: `targets` with their latencies, and its
    /// allocation window.
    pub fn into_worker_totals(self, mut targets: Vec<Totals>) -> WorkerTotals {
        // The rest of the batch is recorded, but the run is over: the
        // allocation window ended with the last batch recorded during it.
        self.allocs_closed.set(true);
        self.flush();
        for (total, r) in targets.iter_mut().zip(self.recorders.into_inner()) {
            total.hist = r.hist;
            total.windows = r.windows;
            total.msgs = r.msgs;
            total.last_done = r.last_done;
            total.clipped = r.clipped;
        }
        let first = self.first_allocs.get();
        WorkerTotals {
            targets,
            window_allocs: first.map_or(0, |first| self.last_allocs.get() - first),
            window_msgs: self.window_msgs.get(),
        }
    }
}

impl Stats {
    /// Target `target`'s counters on a worker whose tally is `tally`; the
    /// send lag's histogram up to `bound_ns` ([`latency_bound`]).
    pub fn new(tally: Rc<Tally>, target: u32, bound_ns: u64) -> Self {
        Stats {
            target,
            lag: RefCell::new(histogram(bound_ns)),
            lag_clipped: Cell::new(0),
            mismatches: Cell::new(0),
            errors: Cell::new(0),
            timeouts: Cell::new(0),
            lost: Cell::new(0),
            late: Cell::new(0),
            unfinished: Cell::new(0),
            reports: Cell::new(0),
            tally,
        }
    }

    /// The echo of a message meant to be sent at `intended` came back in
    /// full at `at`. `recorded`: it belongs to the measured period; `bad`:
    /// its bytes differ from what was sent.
    #[inline(always)]
    pub fn complete(&self, recorded: bool, bad: bool, intended: Stamp, at: Stamp) {
        if bad {
            self.mismatches.set(self.mismatches.get() + 1);
        }
        if recorded {
            self.tally.push(Done {
                target: self.target,
                intended,
                at,
            });
        }
    }

    /// One of this target's connections has ended (normally or not).
    pub fn connection_ended(&self) {
        self.tally.connection_ended();
    }

    /// Open loop: a measured message was sent `lag_ns` after it was due.
    #[inline]
    pub fn send_lag(&self, lag_ns: u64) {
        self.record_lag(lag_ns, 1);
    }

    /// `n` send lags of `lag_ns`, clipped ones counted.
    #[inline]
    fn record_lag(&self, lag_ns: u64, n: u64) {
        let clipped = record_counting_clipped(&mut self.lag.borrow_mut(), lag_ns.max(1), n);
        if clipped > 0 {
            self.lag_clipped.set(self.lag_clipped.get() + clipped);
        }
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
            format_args!("message {seq}: no echo progress for {timeout:?} (timed out)"),
        );
    }

    /// `--udp`: a measured datagram's echo did not come back within
    /// `--loss-after`.
    #[cold]
    pub fn lost(&self) {
        self.lost.set(self.lost.get() + 1);
    }

    /// `--udp`: the echo of a measured datagram already counted as lost
    /// came back.
    #[cold]
    pub fn late(&self) {
        self.late.set(self.late.get() + 1);
    }

    /// The run ended (duration mode) before `n` measured messages, due at
    /// `intended` (to the histogram's resolution), came back: they are
    /// `age_ns` old at the end. They count in `unfinished`, and in the
    /// latencies at that age, a lower bound of what they would have taken:
    /// leaving them out would drop exactly the slowest messages of a run
    /// that fell behind. `never_sent`: with `--rate` the connection fell
    /// behind its schedule and never sent them, so they count in the send
    /// lag at that age too.
    #[cold]
    pub fn unfinished(&self, intended: Stamp, age_ns: u64, n: u64, never_sent: bool) {
        self.unfinished.set(self.unfinished.get() + n);
        if never_sent {
            self.record_lag(age_ns, n);
        }
        let mut recorders = self.tally.recorders.borrow_mut();
        if let Some(r) = recorders.get_mut(self.target as usize) {
            r.record_unfinished(intended, age_ns, n);
        }
    }

    /// Where the `--window` holding a message due at `intended` ends
    /// (`None`: no windows, or the last one).
    pub fn end_of_window(&self, intended: Stamp) -> Option<Stamp> {
        self.tally.end_of_window(self.target, intended)
    }

    /// Moves this target's counters into `total` (its connect errors stay);
    /// its latencies come from the tally ([`Tally::into_worker_totals`]).
    pub fn move_into(self, total: &mut Totals) {
        total.lag = self.lag.into_inner();
        total.lag_clipped = self.lag_clipped.get();
        total.mismatches = self.mismatches.get();
        total.errors = self.errors.get();
        total.timeouts = self.timeouts.get();
        total.lost = self.lost.get();
        total.late = self.late.get();
        total.unfinished = self.unfinished.get();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The least bound: what a run of an hour or less gets.
    const HOUR: u64 = 3_600 * 1_000_000_000;

    /// The sizes the docs quote: 4608 counters (36 KiB) per window,
    /// 33 792 (264 KiB) for the run's histogram.
    #[test]
    fn window_histograms_are_small() {
        assert_eq!(window_histogram(HOUR).distinct_values(), 4608);
        assert_eq!(histogram(HOUR).distinct_values(), 33_792);
    }

    #[test]
    fn windows_take_messages_by_intended_time() {
        let t0 = Stamp::default().add(Duration::from_secs(7));
        let mut w = Windows::new(Duration::from_millis(100), 3, HOUR);
        w.begin(t0);
        for ms in [0, 99, 100, 250, 300, 400] {
            w.record(t0.add(Duration::from_millis(ms)), 1_000);
        }
        // 300 and 400 ms (the end and past it) join the last window.
        let counts: Vec<u64> = w.hists.iter().map(Histogram::len).collect();
        assert_eq!(counts, [2, 1, 3]);
    }

    fn at(ns: u64) -> Stamp {
        Stamp::default().add(Duration::from_nanos(ns))
    }

    /// The worker's totals once its tasks (here: `stats`) are done.
    fn finish(tally: Rc<Tally>, stats: Vec<Stats>) -> WorkerTotals {
        let mut totals: Vec<Totals> = stats.iter().map(|_| Totals::empty(HOUR)).collect();
        for (stats, total) in stats.into_iter().zip(&mut totals) {
            stats.move_into(total);
        }
        Rc::try_unwrap(tally)
            .unwrap_or_else(|_| unreachable!("the test holds no other reference"))
            .into_worker_totals(totals)
    }

    /// Two targets' messages, interleaved through one worker's batch: each
    /// lands in its own target's histogram once, with its latency, and
    /// the counts, the last completion and the allocation window come out
    /// exact, partial last batch included.
    #[test]
    fn batched_messages_are_each_recorded_once() {
        let n = 3 * BATCH as u64 + 17;
        let window = Windows::new(Duration::from_secs(1), 2, HOUR);
        let tally = Rc::new(Tally::new(
            Arc::new(AtomicU64::new(0)),
            vec![Recorder::new(Some(window), HOUR), Recorder::new(None, HOUR)],
        ));
        let stats = [
            Stats::new(tally.clone(), 0, HOUR),
            Stats::new(tally.clone(), 1, HOUR),
        ];
        for i in 0..n {
            // Target i % 2; message i took (i + 1) µs; not recorded: every 10th.
            let start = at(i * 1_000_000);
            let done = start.add(Duration::from_micros(i + 1));
            stats[(i % 2) as usize].complete(i % 10 != 9, i == 4, start, done);
        }
        let published = tally.published.load(Ordering::Relaxed);
        let out = finish(tally, stats.into());
        let recorded = (0..n).filter(|i| i % 10 != 9);
        for (target, t) in out.targets.iter().enumerate() {
            let mine: Vec<u64> = recorded
                .clone()
                .filter(|i| i % 2 == target as u64)
                .collect();
            assert_eq!(t.msgs, mine.len() as u64);
            assert_eq!(t.hist.len(), mine.len() as u64);
            let last = *mine.last().unwrap();
            assert_eq!(t.last_done, Some(at(last * 1_000_000 + (last + 1) * 1_000)));
            assert!(t.hist.equivalent(t.hist.max(), (last + 1) * 1_000));
            assert!(t.hist.equivalent(t.hist.min(), (mine[0] + 1) * 1_000));
            assert_eq!(t.mismatches, u64::from(target == 0));
        }
        // Target 0's windows: by intended time, 1 s each (the last takes the rest).
        let w = out.targets[0].windows.as_ref().unwrap();
        let in_first = recorded.clone().filter(|i| i % 2 == 0 && *i < 1000).count();
        assert_eq!(w.hists[0].len(), in_first as u64);
        assert_eq!(w.hists[0].len() + w.hists[1].len(), out.targets[0].msgs);
        // Published at the full batches only; the window is the full
        // batches flushed during the run after the first.
        let all = recorded.count() as u64;
        let full = all - all % BATCH as u64;
        assert_eq!(published, full);
        assert_eq!(out.window_msgs, full - BATCH as u64);
        assert_eq!(out.window_allocs, 0);
    }

    /// The bound is the run's (an hour, or a longer `--duration` or
    /// `--timeout`), and a value above it is recorded at the bound and
    /// counted as clipped, latency and send lag alike, never silently:
    /// a 2 h latency used to read back as 1 h with nothing saying so.
    #[test]
    fn latencies_over_the_bound_are_counted_as_clipped() {
        assert_eq!(latency_bound(&[]), HOUR);
        assert_eq!(latency_bound(&[Duration::from_secs(60)]), HOUR);
        let three_hours = Duration::from_secs(3 * 3_600);
        let bound = latency_bound(&[Duration::from_secs(60), three_hours]);
        assert_eq!(bound, 3 * HOUR);
        assert_eq!(latency_bound(&[Duration::MAX]), MAX_LATENCY_BOUND_NS);
        let two_hours = 2 * HOUR;
        for (bound, clipped) in [(HOUR, 1), (3 * HOUR, 0)] {
            let tally = Rc::new(Tally::new(
                Arc::new(AtomicU64::new(0)),
                vec![Recorder::new(None, bound)],
            ));
            let stats = Stats::new(tally.clone(), 0, bound);
            stats.complete(true, false, at(0), at(two_hours));
            stats.complete(true, false, at(0), at(1_000));
            stats.unfinished(at(0), two_hours, 3, true);
            stats.send_lag(two_hours);
            let out = finish(tally, vec![stats]);
            let t = &out.targets[0];
            assert_eq!(t.clipped, 4 * clipped, "bound {bound}");
            assert_eq!(t.lag_clipped, 4 * clipped, "bound {bound}");
            let want = two_hours.min(bound);
            assert!(
                t.hist.equivalent(t.hist.max(), want),
                "max {}",
                t.hist.max()
            );
            assert!(t.lag.equivalent(t.lag.max(), want), "lag {}", t.lag.max());
            // And merged totals keep the counts.
            let mut all = Totals::empty(bound);
            all.merge(t);
            all.merge(t);
            assert_eq!((all.clipped, all.lag_clipped), (8 * clipped, 8 * clipped));
        }
    }

    /// Once a connection has ended, later batches no longer count in the
    /// allocation window (its teardown is not the hot loop).
    #[test]
    fn a_connection_ending_closes_the_allocation_window() {
        let tally = Rc::new(Tally::new(
            Arc::new(AtomicU64::new(0)),
            vec![Recorder::new(None, HOUR)],
        ));
        let stats = Stats::new(tally.clone(), 0, HOUR);
        for i in 0..3 * BATCH as u64 {
            stats.complete(true, false, at(i), at(i + 5));
        }
        stats.connection_ended();
        for i in 0..2 * BATCH as u64 {
            stats.complete(true, false, at(i), at(i + 5));
        }
        let out = finish(tally, vec![stats]);
        assert_eq!(out.targets[0].msgs, 5 * BATCH as u64);
        assert_eq!(out.window_msgs, 2 * BATCH as u64);
    }
}
