//! The one send that cannot park: a Unix datagram sent by address to a
//! peer whose receive queue is full.
//!
//! Linux answers such a send with `EAGAIN` and registers the "peer has
//! room" wake-up only for a socket's *connected* peer. The failed send
//! frees the buffer it had allocated, which raises a write-space event on
//! the sender (its own buffer has room), so a send parked for `EPOLLOUT`
//! is woken at once, fails again and raises the next event: a busy loop
//! at 100% of a worker's CPU until the peer reads, with no event that
//! would ever say it did. So a send that gets `EAGAIN` while its own
//! socket is writable (`poll`: the room it waits for is another socket's)
//! does not park: it tries again after a delay, 1 ms doubling to 50 ms
//! (the [`Backoff`] in each send future and in `DatagramIo`). A connected
//! send, and one that found its own buffer full, parks as ever.
//!
//! # Invariants
//!
//! * The delay runs on one thread of this crate (started at first use,
//!   one per process), not on the runtime's timers: this crate needs only
//!   a reactor. It holds a waker per waiting send and wakes each at its
//!   deadline; a send dropped meanwhile costs at most one spurious wake.
//! * A future waiting out its delay holds no reservation of the send cell
//!   (its operation ended with the internal [`no_room_event`] error and
//!   starts afresh); a `DatagramIo` keeps its held cell throughout, and its
//!   one backoff knows which destination its delay is for: a send
//!   elsewhere (after one given up while it waited) goes at once.
//! * Where the thread cannot be started, the waker is woken at once: the
//!   send retries as it did before (busily), it never hangs.
//! * A delay asked for on a reactor's thread is that reactor's
//!   [`OutsideWork`] retry ([`Handle::outside_retry`]) until the thread
//!   has woken its waker. A runtime's paused clock that moved while the
//!   delay ran (a reader's timer fired and it read) ends the delay before
//!   it moves again (to the send's timeout, say): it wakes the send at
//!   once, and the [`Backoff`], seeing the reactor's
//!   [`clock_moves`](Handle::clock_moves) changed since its delay began,
//!   is ready: the retry is made then, never after a real-time wait, so a
//!   paused clock is not slowed down by it. One that did not move may move
//!   once (the peer may be waiting for it). The guard goes with the
//!   waker, not with the [`Backoff`], so a send given up while it waited
//!   has its entry for no longer than its delay (50 ms at most).

use std::fmt;
use std::io;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use cellio_reactor::{Handle, OutsideWork};

/// The first delay after a send found a peer full.
const FIRST: Duration = Duration::from_millis(1);
/// The longest delay: a send completes at most this long after the peer
/// made room.
const LONGEST: Duration = Duration::from_millis(50);

/// When a send that found its peer full tries again.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// The deadline of the delay under way, if one is.
    until: Option<Instant>,
    /// The next delay.
    delay: Duration,
    /// Which destination the delay is for ([`target_key`]), where one
    /// backoff serves every send (`DatagramIo`'s).
    target: u64,
    /// The reactor's [`Handle::clock_moves`] when the delay began (`None`
    /// off a reactor's thread): if it changed, the delay is over.
    clock_moves: Option<u64>,
}

impl Backoff {
    pub(crate) const fn new() -> Self {
        Self {
            until: None,
            delay: FIRST,
            target: 0,
            clock_moves: None,
        }
    }

    /// [`poll`](Self::poll) for a send to the destination `target()`
    /// names: a delay under way for another one (a send given up while it
    /// waited) is forgotten, and this send goes at once. `target` is asked
    /// only while a delay is under way.
    #[inline(always)]
    pub(crate) fn poll_for(
        &mut self,
        waker: Option<&Waker>,
        target: impl FnOnce() -> u64,
    ) -> Poll<()> {
        if self.until.is_some() && target() != self.target {
            self.until = None;
            self.delay = FIRST;
        }
        self.poll(waker)
    }

    /// [`wait`](Self::wait), for the destination `target` names.
    #[cold]
    pub(crate) fn wait_for(&mut self, target: u64) {
        self.target = target;
        self.wait();
    }

    /// Ready when no delay is under way or its deadline passed; else
    /// `Pending`, with `waker` (if any) to be woken at the deadline.
    #[inline(always)]
    pub(crate) fn poll(&mut self, waker: Option<&Waker>) -> Poll<()> {
        match self.until {
            None => Poll::Ready(()),
            Some(until) => self.poll_delay(until, waker),
        }
    }

    #[cold]
    fn poll_delay(&mut self, until: Instant, waker: Option<&Waker>) -> Poll<()> {
        // A paused clock that moved meanwhile ends the delay at once (see
        // the module's invariants).
        let clock_moved = self.clock_moves.is_some_and(|moves| {
            Handle::current().is_ok_and(|reactor| reactor.clock_moves() != moves)
        });
        if clock_moved || Instant::now() >= until {
            self.until = None;
            return Poll::Ready(());
        }
        if let Some(waker) = waker {
            wake_at(until, waker);
        }
        Poll::Pending
    }

    /// A send found its peer full, with no event to come: the next attempt
    /// waits for the next delay, each twice the one before up to
    /// [`LONGEST`].
    #[cold]
    pub(crate) fn wait(&mut self) {
        self.until = Some(Instant::now() + self.delay);
        self.clock_moves = Handle::current().ok().map(|reactor| reactor.clock_moves());
        self.delay = (self.delay * 2).min(LONGEST);
    }

    /// A send went: the next wait starts from the shortest delay again.
    #[inline(always)]
    pub(crate) fn reset(&mut self) {
        self.delay = FIRST;
    }
}

/// A destination's key for [`Backoff::poll_for`]: its hash (the keys of
/// two destinations differ but by a 2^-64 chance, which costs at most one
/// early retry).
#[cold]
pub(crate) fn target_key<T: std::hash::Hash + ?Sized>(target: &T) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(target)
}

/// What a send's attempt returns, instead of `WouldBlock`, when it found
/// its peer full and no event will say when the peer has room: the
/// operation ends, and its future waits on a [`Backoff`]. Never returned
/// to a caller (the `try_` methods turn it back into `WouldBlock`).
#[cold]
pub(crate) fn no_room_event() -> io::Error {
    io::Error::other(NoRoomEvent)
}

/// Whether `error` is [`no_room_event`]'s.
#[inline]
pub(crate) fn is_no_room_event(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::Other
        && error
            .get_ref()
            .is_some_and(|inner| inner.is::<NoRoomEvent>())
}

/// `error`, or `WouldBlock` for [`no_room_event`]'s (a `try_` method's
/// result).
pub(crate) fn would_block_if_no_room_event(error: io::Error) -> io::Error {
    if is_no_room_event(&error) {
        io::Error::new(io::ErrorKind::WouldBlock, NoRoomEvent)
    } else {
        error
    }
}

#[derive(Debug)]
struct NoRoomEvent;

impl fmt::Display for NoRoomEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the peer's receive queue is full, and Linux raises no event when it has room for a \
             send by address (connect to the peer to wait for one)",
        )
    }
}

impl std::error::Error for NoRoomEvent {}

/// A waiting send's deadline, its waker, and its reactor's
/// [`OutsideWork`] (dropped after the waker is woken).
type Due = (Instant, Waker, Option<OutsideWork>);

/// The wakers of sends waiting out a delay, and their deadlines.
struct Delays {
    due: Mutex<Vec<Due>>,
    changed: Condvar,
}

/// Has `waker` woken at `until` (once, however often it is asked for with
/// the same deadline).
fn wake_at(until: Instant, waker: &Waker) {
    let Some(delays) = delays() else {
        waker.wake_by_ref();
        return;
    };
    let mut due = delays.due.lock().unwrap_or_else(PoisonError::into_inner);
    if due
        .iter()
        .any(|(at, queued, _)| *at == until && queued.will_wake(waker))
    {
        return;
    }
    let earliest = due.iter().all(|(at, _, _)| until < *at);
    let outside_work = Handle::current()
        .ok()
        .map(|reactor| reactor.outside_retry(waker));
    due.push((until, waker.clone(), outside_work));
    drop(due);
    if earliest {
        delays.changed.notify_one();
    }
}

/// The delay thread's state, the thread started on first use; `None` if
/// it could not be.
fn delays() -> Option<&'static Delays> {
    static DELAYS: OnceLock<Option<&'static Delays>> = OnceLock::new();
    *DELAYS.get_or_init(|| {
        let delays: &'static Delays = Box::leak(Box::new(Delays {
            due: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        }));
        match std::thread::Builder::new()
            .name("cellio-send-retry".into())
            .spawn(move || run(delays))
        {
            Ok(_) => Some(delays),
            Err(error) => {
                tracing::warn!(%error, "cellio: no thread for send retries: a send to a full Unix datagram peer retries at once");
                None
            }
        }
    })
}

/// The delay thread: wakes each waker at its deadline.
fn run(delays: &Delays) -> ! {
    let mut ready = Vec::new();
    let mut due = delays.due.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let now = Instant::now();
        let mut index = 0;
        while index < due.len() {
            if due[index].0 <= now {
                let (_, waker, outside_work) = due.swap_remove(index);
                ready.push((waker, outside_work));
            } else {
                index += 1;
            }
        }
        if !ready.is_empty() {
            // Woken without the lock: a wake may run a task's code.
            drop(due);
            // Each guard after its wake: the task is queued before the
            // paused clock may move.
            for (waker, outside_work) in ready.drain(..) {
                waker.wake();
                drop(outside_work);
            }
            due = delays.due.lock().unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        due = match due.iter().map(|(at, _, _)| *at).min() {
            None => delays
                .changed
                .wait(due)
                .unwrap_or_else(PoisonError::into_inner),
            Some(at) => {
                delays
                    .changed
                    .wait_timeout(due, at.saturating_duration_since(now))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
}
