//! The reusable, token-stamped operation cell: cellio's
//! `ManualResetValueTaskSourceCore`.
//!
//! Every socket owns exactly one cell per direction (receive, send). An
//! operation that can complete at once never touches it beyond one load; an
//! operation that must wait *reserves* the cell, *parks* its task's waker in
//! it, and is woken when the reactor *notifies* the cell. Finishing or
//! cancelling the operation *releases* the cell, which bumps its generation so
//! that any handle still carrying the old [`Token`] is refused.
//!
//! # State
//!
//! All state lives in one `AtomicU64`, changed only by compare-and-swap (or,
//! by the notifier inside its exclusive `NOTIFYING` window, a plain store;
//! or, in a *confined* cell, by plain stores: see below):
//!
//! ```text
//!  63         38  37         36   35               4   3        2        1 0
//! +-------------+----------+-----+--------------------+--------+-----------+---+
//! | readiness   | CONFINED | HUP | generation (u32)   | CLOSED | EXHAUSTED | phase
//! | seq         |          |     |                    |        |           |
//! +-------------+----------+-----+--------------------+--------+-----------+---+
//! ```
//!
//! * **phase** says who may touch the waker slot (diagram below).
//!   `IDLE`: no operation holds the cell; whoever reserves it next owns the
//!   waker slot. `RESERVED`: the holder (the future with the current token)
//!   owns the slot. `PARKED`: the holder published a waker (Release) and the
//!   notifier may take it. `NOTIFYING`: the notifier won the `PARKED →
//!   NOTIFYING` CAS and owns the slot until it stores `RESERVED`; everyone
//!   else waits (a bounded spin: the window holds only a clone of the waker
//!   out of the slot, and the `RESERVED` store is a drop guard's, so a clone
//!   that panics ends the window too, as a notification whose wake was lost
//!   to the panic).
//! * **readiness seq** counts the reactor's notifications for this direction.
//!   An operation snapshots it ([`Readiness`]) *before* its syscall; `park`
//!   refuses to sleep if the sequence moved since, because the readiness that
//!   arrived meanwhile may be the only one that will ever come (edge-triggered
//!   epoll/kqueue report each change once). Checking the sequence and moving
//!   to `PARKED` happen in one CAS on one word, so no interleaving can lose a
//!   notification.
//! * **EXHAUSTED** records that an attempt at the current sequence proved the
//!   socket had nothing more to give (a short read) or take (a partial
//!   write). Until the next notification clears it, an operation may park
//!   without a syscall that would only return `EAGAIN`.
//! * **HUP** (sticky until reset): the reactor reported end-of-stream or an
//!   error for this direction (or, for a stream's receive direction, urgent
//!   data, at which a read stops short with more queued: the reactor
//!   reports it the same way). A stream's end produces no further edge, so
//!   from then on a short read never sets `EXHAUSTED`: one that leaves only
//!   the FIN (or the RST) behind must not let the next receive park — it
//!   must read the 0 or the error. An attempt that said `EAGAIN` still sets
//!   it ([`mark_would_block`](OpCell::mark_would_block)): the kernel reports
//!   a pending end or error before `EAGAIN`, and a socket that goes on after
//!   an error event (a UDP socket's ICMP error, once read) raises a new
//!   event for whatever comes next.
//! * **CLOSED**: the reactor is gone; parking would sleep forever, so `park`
//!   fails with [`CellError::Closed`].
//! * **CONFINED**: the holder reserved the cell with
//!   [`reserve_confined`](OpCell::reserve_confined), promising that it and
//!   every later write of the word happen on the one thread that also turns
//!   and drops the cell's reactor. Until the cell is released or reset,
//!   nothing can change the word behind a writer's back, so the holder's
//!   `park` and the reactor's `notify` use a plain load and store instead of
//!   a compare-and-swap. (On the benchmark VM a locked instruction right
//!   after a syscall cost ~14 ns, about the whole of a raw mio loop's user
//!   time per message.) Other threads can still *look*: a cell that is held
//!   refuses their operations before they write anything.
//! * **generation** is the token handed to the holder; `release` adds one.
//!
//! # Holders on the reactor's thread
//!
//! A held cell's word is written only by its holder and by its notifier
//! (`notify`, `notify_hangup`, `close`; and `reset`, once the socket is
//! gone): every other operation is refused before it writes (`reserve`,
//! `park_idle` and `mark_exhausted` need the cell idle, a stale token's
//! release finds another generation). So a holder running on the one
//! thread that notifies the cell (the thread its reactor is bound to) can
//! release it with a plain load and store,
//! [`release_on_reactor_thread`](OpCell::release_on_reactor_thread):
//! between the two nothing else can change the word. That is the release
//! of every receive that parked and was woken, right after its syscall,
//! where a locked instruction cost about as much as the raw mio loop's
//! whole user time per message. Unlike `CONFINED`, it promises nothing
//! about later writes, so it holds for a future that moves between
//! threads: each release asks where it runs. Taking an idle cell stays a
//! compare-and-swap (any thread may take one), and so does the notify of
//! a cell that is not confined (its holder may be on any thread).
//!
//! ```text
//!            reserve()               park(): seq unchanged
//!   IDLE ---------------> RESERVED ----------------------> PARKED
//!    ^                     |   ^  <-- re-poll by holder --   |
//!    |  release()          |   |                             | notify():
//!    |  generation + 1     |   |  notifier stores RESERVED   | seq + 1
//!    +---------------------+   +------ NOTIFYING <-----------+
//!    +-------------- release() from PARKED (cancel) ---------+
//!    |                                                       ^
//!    +--------- park_idle(): IDLE -> PARKED in one CAS ------+
//!               (only when the slot already holds a waker for the same
//!                task, and nothing changed since the snapshot)
//! ```
//!
//! # Invariants
//!
//! 1. Only the party named by the phase reads or writes the waker slot.
//! 2. While the phase is `NOTIFYING`, only the notifier changes the word.
//! 3. A token is honoured only while the generation equals it: a released,
//!    reused or reset cell refuses every older token with
//!    [`CellError::Stale`] and never hands out another operation's state.
//! 4. Every notification after a readiness snapshot is seen by the holder:
//!    either `park` fails its CAS (the sequence moved) or the notifier finds
//!    `PARKED` and wakes the parked waker.
//!
//! The waker stays in the slot after the operation ends and passes, with slot
//! ownership, to the next holder, which overwrites it only if
//! [`Waker::will_wake`] says it differs: a task parking on the same socket
//! again and again clones nothing.
//!
//! The slot keeps the waker as its two raw parts in two atomics (see
//! `waker_slot`), so its identity can be read without owning the slot. That
//! lets [`park_idle`](OpCell::park_idle) see that the slot already holds its
//! task's waker, and park straight from `IDLE` with one CAS from its
//! snapshot's exact word: if the CAS succeeds, nobody reserved the cell
//! since the snapshot, so the identity it read is the one the last holder
//! left in the slot (published by that holder's release, acquired by the
//! snapshot), and invariant 1 holds — `park_idle` only compares pointers,
//! it never takes the waker. [`still_parked`](OpCell::still_parked) reads the
//! identity the same way, for a holder that keeps its reservation across
//! operations and asks whether it may stay asleep. The slot always holds a
//! waker (a new or reset cell holds [`Waker::noop`]), so the notifier's copy
//! needs no emptiness check; `park` stores the real one before `PARKED` is
//! published.
//!
//! A cell is three words (24 bytes): a socket's two cells and its
//! generation share one cache line in the registration table. How many
//! operations completed with or without parking is counted by the socket's
//! [`Registration`](crate::Registration), not here.

use std::fmt;
use std::io;
use std::task::Waker;

use crate::sync::{AtomicU64, Ordering, Spin};
use crate::waker_slot::WakerSlot;

const PHASE_MASK: u64 = 0b11;
const IDLE: u64 = 0;
const RESERVED: u64 = 1;
const PARKED: u64 = 2;
const NOTIFYING: u64 = 3;

const EXHAUSTED: u64 = 1 << 2;
const CLOSED: u64 = 1 << 3;

const GEN_SHIFT: u32 = 4;
const GEN_MASK: u64 = 0xffff_ffff << GEN_SHIFT;

const HUP: u64 = 1 << 36;

const CONFINED: u64 = 1 << 37;

const SEQ_SHIFT: u32 = 38;
const SEQ_ONE: u64 = 1 << SEQ_SHIFT;

#[inline]
fn phase(word: u64) -> u64 {
    word & PHASE_MASK
}

#[inline]
fn generation(word: u64) -> u32 {
    ((word & GEN_MASK) >> GEN_SHIFT) as u32
}

#[inline]
fn seq(word: u64) -> u64 {
    word >> SEQ_SHIFT
}

#[inline]
fn with_phase(word: u64, phase: u64) -> u64 {
    (word & !PHASE_MASK) | phase
}

/// Releases: phase back to `IDLE`, generation + 1; sequence and flags kept,
/// except `CONFINED`, which lasts only as long as the reservation.
#[inline]
fn released(word: u64) -> u64 {
    let next_gen = u64::from(generation(word).wrapping_add(1)) << GEN_SHIFT;
    (word & !(GEN_MASK | PHASE_MASK | CONFINED)) | next_gen | IDLE
}

/// `released(word)`, plus `EXHAUSTED` if the attempt made at `seen` proved
/// the socket exhausted and nothing changed since (no notification, no
/// hang-up).
#[inline]
fn released_after(word: u64, exhausted_at: Option<Readiness>) -> u64 {
    let next = released(word);
    match exhausted_at {
        Some(seen) if seq(word) == seq(seen.0) && word & HUP == 0 => next | EXHAUSTED,
        _ => next,
    }
}

/// `released_after` for a word known to be `RESERVED` under `token`, in
/// fewer steps: generation and phase are replaced outright, and `mark`
/// says the holder's attempt proved the socket exhausted at the word's
/// own sequence (only a hang-up keeps `EXHAUSTED` off then).
#[inline]
fn released_by_holder(word: u64, token: Token, mark: bool) -> u64 {
    let next = (word & !(GEN_MASK | PHASE_MASK | CONFINED)) | token.next().bits() | IDLE;
    if mark && word & HUP == 0 {
        next | EXHAUSTED
    } else {
        next
    }
}

/// Emits a park/wake trace event; out of line so that the hot paths carry
/// no formatting code when nobody listens.
#[cold]
#[inline(never)]
fn trace_event(generation: u32, what: &'static str) {
    tracing::trace!(generation, "{what}");
}

/// A notification: sequence + 1 (wrapping out of the word), `EXHAUSTED`
/// cleared because whatever was exhausted may have changed.
#[inline]
fn notified(word: u64) -> u64 {
    word.wrapping_add(SEQ_ONE) & !EXHAUSTED
}

/// Ends a notifier's exclusive `NOTIFYING` window when dropped, by storing
/// `.1`, the word with phase `RESERVED`: after the waker's clone, or while
/// the clone (user code) unwinds, which would otherwise leave every later
/// user of the cell spinning for ever. The notification is counted then,
/// but its wake is lost to the panic, like a wake that panics.
///
/// Invariant 2: nobody else changes the word while `NOTIFYING`, so a plain
/// store is exact. Release hands the slot back to the holder.
struct EndWindow<'a>(&'a AtomicU64, u64);

impl Drop for EndWindow<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.store(self.1, Ordering::Release);
    }
}

/// The generation an operation holds the cell under.
///
/// Handed out by [`OpCell::reserve`]; every later call by the holder passes
/// it back and is refused with [`CellError::Stale`] once the cell has been
/// released, reused or reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token(u32);

impl Token {
    /// The token's generation in its place in the state word.
    #[inline]
    fn bits(self) -> u64 {
        u64::from(self.0) << GEN_SHIFT
    }

    /// The token the cell hands out after this one is released.
    #[inline]
    fn next(self) -> Token {
        Token(self.0.wrapping_add(1))
    }

    /// The generation number this token stands for.
    pub fn generation(self) -> u32 {
        self.0
    }
}

/// A snapshot of a cell's readiness, taken before attempting a syscall.
///
/// Passed back to [`OpCell::park`] so that the cell can tell whether a
/// notification arrived between the snapshot and the decision to sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness(u64);

impl Readiness {
    /// `true` when an earlier attempt at this same readiness proved the
    /// socket exhausted (a short read or a partial write): the syscall would
    /// return `EAGAIN`, so the operation may park straight away.
    #[inline]
    pub fn is_exhausted(self) -> bool {
        self.0 & EXHAUSTED != 0
    }

    /// `true` when the reactor had reported a hang-up (end of stream, an
    /// error, or a stream's urgent data) for this direction when the
    /// snapshot was taken. From then on nothing may be concluded from a
    /// short read: no further notification will come for the 0 or the
    /// error, and a read stops short at urgent data with more queued.
    #[inline]
    pub fn is_hung_up(self) -> bool {
        self.0 & HUP != 0
    }

    /// How many notifications the cell had received when the snapshot was
    /// taken (modulo 2^26).
    #[inline]
    pub fn sequence(self) -> u64 {
        seq(self.0)
    }
}

/// What [`OpCell::park`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Park {
    /// The waker is stored; the reactor will wake it on the next
    /// notification. Return `Poll::Pending`.
    Parked,
    /// Readiness moved since the snapshot: do not sleep, attempt the syscall
    /// again with a fresh snapshot.
    Retry,
}

/// Misuse of a cell, or a cell whose reactor is gone.
///
/// Converted into [`io::Error`] with the kinds below; recover the variant with
/// [`CellError::of`].
///
/// | variant | `io::ErrorKind` | when |
/// |---|---|---|
/// | `Busy` | `ResourceBusy` | a second operation in the same direction while one is in flight (also one left by an aborted task until its future is dropped) |
/// | `Stale` | `InvalidInput` | a token whose operation was already released, reused or reset |
/// | `Consumed` | `InvalidInput` | a future polled again after it returned its result |
/// | `Closed` | `NotConnected` | the reactor that drives the socket has shut down |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellError {
    /// Another operation in this direction holds the cell.
    Busy,
    /// The token's generation is no longer current.
    Stale,
    /// The operation already delivered its result.
    Consumed,
    /// The reactor shut down; no notification will ever come.
    Closed,
}

impl CellError {
    /// The `io::ErrorKind` this error converts to.
    pub fn kind(self) -> io::ErrorKind {
        match self {
            CellError::Busy => io::ErrorKind::ResourceBusy,
            CellError::Stale | CellError::Consumed => io::ErrorKind::InvalidInput,
            CellError::Closed => io::ErrorKind::NotConnected,
        }
    }

    /// Recovers the `CellError` inside an `io::Error` made from one.
    ///
    /// ```
    /// use cellio_reactor::CellError;
    /// let err = std::io::Error::from(CellError::Busy);
    /// assert_eq!(CellError::of(&err), Some(CellError::Busy));
    /// assert_eq!(err.kind(), std::io::ErrorKind::ResourceBusy);
    /// ```
    pub fn of(err: &io::Error) -> Option<CellError> {
        err.get_ref()?.downcast_ref::<CellError>().copied()
    }
}

impl fmt::Display for CellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CellError::Busy => {
                "another operation holds this direction of the socket (one receive, one send \
                 and one accept may wait at a time): another task's or future's, a TcpIo's, \
                 or one of an aborted task whose future is not dropped yet (await its \
                 JoinHandle before reusing the socket)"
            }
            CellError::Stale => "stale operation: its cell was released and reused",
            CellError::Consumed => "operation polled again after it completed",
            CellError::Closed => "the reactor driving this socket has shut down",
        })
    }
}

impl std::error::Error for CellError {}

impl From<CellError> for io::Error {
    fn from(err: CellError) -> io::Error {
        io::Error::new(err.kind(), err)
    }
}

/// One direction's reusable completion cell. See the [module docs](self) for
/// the state machine and its invariants.
///
/// # Examples
///
/// The protocol an operation follows, driven by hand:
///
/// ```
/// use cellio_reactor::{OpCell, Park};
/// use std::task::Waker;
///
/// let cell = OpCell::new();
/// let seen = cell.observe().unwrap(); // before the syscall
/// // ... the syscall returned EAGAIN ...
/// let token = cell.reserve().unwrap();
/// assert_eq!(cell.park(token, seen, Waker::noop()).unwrap(), Park::Parked);
/// assert!(cell.reserve().is_err()); // one operation per direction
///
/// cell.notify(); // the reactor saw readiness and woke the task
///
/// let again = cell.observe_reserved(token).unwrap();
/// assert_ne!(again.sequence(), seen.sequence());
/// // ... the syscall succeeded ...
/// cell.release(token).unwrap();
/// assert!(cell.release(token).is_err()); // the token is stale now
/// ```
pub struct OpCell {
    word: AtomicU64,
    /// Owned by whoever the phase names (invariant 1).
    waker: WakerSlot,
}

impl Default for OpCell {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for OpCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.word.load(Ordering::Relaxed);
        f.debug_struct("OpCell")
            .field(
                "phase",
                &["idle", "reserved", "parked", "notifying"][phase(word) as usize],
            )
            .field("generation", &generation(word))
            .field("sequence", &seq(word))
            .field("exhausted", &(word & EXHAUSTED != 0))
            .field("closed", &(word & CLOSED != 0))
            .field("confined", &(word & CONFINED != 0))
            .finish()
    }
}

impl OpCell {
    /// A new idle cell, generation 0.
    pub fn new() -> Self {
        Self {
            word: AtomicU64::new(0),
            waker: WakerSlot::new(),
        }
    }

    /// Snapshots readiness for an operation that does not hold the cell.
    ///
    /// Fails with [`CellError::Busy`] when another operation holds it: two
    /// operations in one direction at once would steal each other's
    /// readiness.
    #[inline]
    pub fn observe(&self) -> Result<Readiness, CellError> {
        // Acquire: the syscall that follows must not be hoisted above the
        // snapshot it is judged against.
        let word = self.word.load(Ordering::Acquire);
        if phase(word) != IDLE {
            return Err(CellError::Busy);
        }
        Ok(Readiness(word))
    }

    /// Snapshots readiness for the holder of `token`.
    ///
    /// If the holder had parked (it is being polled again, perhaps with a
    /// new waker), the cell is taken back to `RESERVED` first so the holder
    /// owns the waker slot again.
    #[inline]
    pub fn observe_reserved(&self, token: Token) -> Result<Readiness, CellError> {
        let word = self.word.load(Ordering::Acquire);
        // Fast path: still ours and not parked (the common case after a
        // wake, whose notifier stored RESERVED).
        if word & (GEN_MASK | PHASE_MASK) == token.bits() | RESERVED {
            return Ok(Readiness(word));
        }
        self.observe_reserved_slow(token)
    }

    #[cold]
    fn observe_reserved_slow(&self, token: Token) -> Result<Readiness, CellError> {
        let spin = Spin::new();
        loop {
            let word = self.word.load(Ordering::Acquire);
            if generation(word) != token.0 || phase(word) == IDLE {
                return Err(CellError::Stale);
            }
            match phase(word) {
                RESERVED => return Ok(Readiness(word)),
                PARKED => {
                    // Take the slot back (we are being polled again, perhaps
                    // with a new waker); the notifier must not take it now.
                    let back = with_phase(word, RESERVED);
                    if self
                        .word
                        .compare_exchange(word, back, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return Ok(Readiness(back));
                    }
                }
                _ => spin.wait(), // NOTIFYING: bounded window
            }
        }
    }

    /// Reserves the cell for an operation that must wait.
    ///
    /// Fails with [`CellError::Busy`] when another operation holds it.
    #[inline]
    pub fn reserve(&self) -> Result<Token, CellError> {
        self.reserve_with(0)
    }

    /// `IDLE -> RESERVED`, setting `flags` too: `reserve` and
    /// `reserve_confined`.
    #[inline]
    fn reserve_with(&self, flags: u64) -> Result<Token, CellError> {
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            if phase(word) != IDLE {
                return Err(CellError::Busy);
            }
            // Acquire: the previous holder's writes to the waker slot
            // (published by its Release in `release`) happen before ours.
            match self.word.compare_exchange(
                word,
                with_phase(word, RESERVED) | flags,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Token(generation(word))),
                Err(actual) => word = actual,
            }
        }
    }

    /// Reserves the cell like [`reserve`](Self::reserve), and marks it
    /// *confined* to this thread until it is released or reset: while it
    /// is, [`park`](Self::park) and [`notify`](Self::notify) change the
    /// word with a plain store instead of a compare-and-swap (see
    /// `CONFINED` in the module docs).
    ///
    /// The reservation itself is a compare-and-swap like `reserve`'s, so
    /// the caller needs no exclusive access to get here; once the cell is
    /// held, other threads' operations are refused before they write
    /// (`Busy`, or `Stale` for an old token).
    ///
    /// # Safety
    ///
    /// Until the cell is released or reset, every change of its word must
    /// happen on the calling thread:
    ///
    /// * the caller uses the returned token on this thread only;
    /// * the cell's notifications ([`notify`](Self::notify),
    ///   [`notify_hangup`](Self::notify_hangup), [`close`](Self::close))
    ///   come from this thread only: for a socket's cell, this thread turns
    ///   the socket's reactor and will drop it
    ///   ([`Reactor::bind_to_current_thread`](crate::Reactor::bind_to_current_thread)
    ///   and [`Registration::is_bound_here`](crate::Registration::is_bound_here));
    /// * [`reset`](Self::reset) (freeing the socket's slot) happens on this
    ///   thread.
    ///
    /// Then the word has one writer at a time and a plain load and store
    /// lose nothing. Broken, a notification could be lost (an operation
    /// sleeps forever) or two parties could own the waker slot at once.
    ///
    /// ```
    /// use cellio_reactor::{OpCell, Park};
    /// use std::task::Waker;
    ///
    /// let cell = OpCell::new();
    /// // SAFETY: this thread is the cell's only user.
    /// let token = unsafe { cell.reserve_confined() }.unwrap();
    /// assert!(cell.is_confined());
    /// let seen = cell.observe_reserved(token).unwrap();
    /// assert_eq!(cell.park(token, seen, Waker::noop()).unwrap(), Park::Parked);
    /// cell.notify(); // a plain store wakes the parked waker
    /// cell.release(token).unwrap();
    /// assert!(!cell.is_confined()); // only while held
    /// ```
    #[inline]
    pub unsafe fn reserve_confined(&self) -> Result<Token, CellError> {
        self.reserve_with(CONFINED)
    }

    /// `true` while the cell is held under
    /// [`reserve_confined`](Self::reserve_confined).
    pub fn is_confined(&self) -> bool {
        self.word.load(Ordering::Relaxed) & CONFINED != 0
    }

    /// Parks the holder's waker until the next notification.
    ///
    /// Returns [`Park::Retry`] instead if readiness moved since `seen` was
    /// taken. Fails with [`CellError::Stale`] for an old token and
    /// [`CellError::Closed`] once the reactor is gone.
    #[inline]
    pub fn park(&self, token: Token, seen: Readiness, waker: &Waker) -> Result<Park, CellError> {
        let word = self.word.load(Ordering::Acquire);
        if word & (GEN_MASK | PHASE_MASK) != token.bits() | RESERVED {
            return Err(CellError::Stale);
        }
        if word & CLOSED != 0 {
            return Err(CellError::Closed);
        }
        if seq(word) != seq(seen.0) {
            return Ok(Park::Retry);
        }
        // SAFETY: the phase is RESERVED under our token, so by invariant 1
        // the holder (us) owns the slot.
        unsafe { self.waker.store(waker) };
        if word & CONFINED != 0 {
            // Confined: by `reserve_confined`'s contract this thread is the
            // word's only writer, so `word` is still current and a plain
            // store cannot overwrite anyone's change.
            self.word.store(with_phase(word, PARKED), Ordering::Release);
            if tracing::level_enabled!(tracing::Level::TRACE) {
                trace_event(token.0, "op parked");
            }
            return Ok(Park::Parked);
        }
        // Release: publishes the waker to the notifier, which Acquires it in
        // its PARKED -> NOTIFYING CAS. Failing means a notification (or
        // close) changed the word since our load: do not sleep.
        match self.word.compare_exchange(
            word,
            with_phase(word, PARKED),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                if tracing::level_enabled!(tracing::Level::TRACE) {
                    trace_event(token.0, "op parked");
                }
                Ok(Park::Parked)
            }
            Err(actual) if actual & CLOSED != 0 => Err(CellError::Closed),
            Err(_) => Ok(Park::Retry),
        }
    }

    /// Parks a fresh operation in one CAS, straight from `IDLE`, when the
    /// waker already in the slot wakes the same task as `waker` (the same
    /// task parking on the same socket again, the common case): `reserve`
    /// and `park` without the intermediate `RESERVED` step.
    ///
    /// Returns the operation's token, as [`reserve`](Self::reserve) would
    /// have, or `None` when the shortcut does not apply — the slot holds
    /// another waker, the cell is not idle or is closed, or anything changed
    /// since `seen` — and the caller takes the long way (`reserve`, then
    /// `park`), which reports each case properly. `seen` must come from
    /// [`observe`](Self::observe) (its Acquire load is what makes the
    /// identity check sound).
    ///
    /// ```
    /// use cellio_reactor::{OpCell, Park};
    /// use std::sync::Arc;
    /// use std::task::{Wake, Waker};
    ///
    /// struct Task;
    /// impl Wake for Task {
    ///     fn wake(self: Arc<Self>) {}
    /// }
    ///
    /// let cell = OpCell::new();
    /// let waker = Waker::from(Arc::new(Task));
    /// // First time: the slot holds no waker of ours, so the long way.
    /// let seen = cell.observe().unwrap();
    /// assert_eq!(cell.park_idle(seen, &waker), None);
    /// let token = cell.reserve().unwrap();
    /// assert_eq!(cell.park(token, seen, &waker).unwrap(), Park::Parked);
    /// cell.notify();
    /// cell.release(token).unwrap();
    /// // The same task parks again: one CAS.
    /// let seen = cell.observe().unwrap();
    /// let token = cell.park_idle(seen, &waker).expect("same waker");
    /// assert!(cell.reserve().is_err()); // it holds the cell, parked
    /// cell.release(token).unwrap();
    /// ```
    #[inline]
    pub fn park_idle(&self, seen: Readiness, waker: &Waker) -> Option<Token> {
        let word = seen.0;
        if word & (PHASE_MASK | CLOSED) != IDLE {
            return None;
        }
        // Comparing the identity does not need the slot: it is two atomics.
        // What they say is only trusted if the CAS below succeeds. Then no
        // one reserved the cell since `seen` (every reservation and release
        // changes the word), so they were last written by the holder whose
        // release `seen` observed (Acquire in `observe`): the slot holds a
        // waker for our task.
        if !self.waker.holds(waker) {
            return None;
        }
        // AcqRel: like `park`'s CAS, the notifier's Acquire of PARKED must
        // see the slot's contents; it does through this CAS, which follows
        // the previous holder's release in the word's modification order.
        self.word
            .compare_exchange(
                word,
                with_phase(word, PARKED),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .ok()?;
        if tracing::level_enabled!(tracing::Level::TRACE) {
            trace_event(generation(word), "op parked");
        }
        Some(Token(generation(word)))
    }

    /// Releases the cell after the operation completed or was cancelled: the
    /// phase returns to `IDLE` and the generation moves on, so `token` is
    /// stale from now on.
    #[inline]
    pub fn release(&self, token: Token) -> Result<(), CellError> {
        self.release_inner(token, None)
    }

    /// Like [`release`](Self::release), and records that the attempt made at
    /// `seen` proved the socket exhausted (a short read or a partial write),
    /// unless a notification has arrived since.
    #[inline]
    pub fn release_exhausted(&self, token: Token, seen: Readiness) -> Result<(), CellError> {
        self.release_inner(token, Some(seen))
    }

    /// Releases the cell for an operation dropped unfinished, for holders
    /// that park only once the socket is proven drained (an attempt said
    /// `EAGAIN`, or the snapshot was [`exhausted`](Readiness::is_exhausted)),
    /// as cellio-net's operations do. If it is still parked, nothing has
    /// arrived since, so the cell is left `EXHAUSTED`, as after a short
    /// read: the next operation parks at once instead of making a syscall
    /// that could only say `EAGAIN` (a `select` loop that rebuilds its
    /// receive each time made one per iteration). Otherwise as
    /// [`release`](Self::release).
    ///
    /// ```
    /// use std::task::Waker;
    /// use cellio_reactor::OpCell;
    ///
    /// let cell = OpCell::new();
    /// let seen = cell.observe().unwrap();
    /// let token = cell.reserve().unwrap();
    /// // ... the attempt said EAGAIN ...
    /// cell.park(token, seen, Waker::noop()).unwrap();
    /// cell.release_abandoned(token).unwrap(); // the future is dropped
    /// assert!(cell.observe().unwrap().is_exhausted());
    /// cell.notify(); // readiness came: the mark goes
    /// assert!(!cell.observe().unwrap().is_exhausted());
    /// ```
    #[inline]
    pub fn release_abandoned(&self, token: Token) -> Result<(), CellError> {
        let word = self.word.load(Ordering::Acquire);
        if word & (GEN_MASK | PHASE_MASK) == token.bits() | PARKED {
            // Still PARKED: no notification since the park, which succeeded
            // only at the sequence of the drained attempt's snapshot. So the
            // socket is still drained (unless it hung up, which no mark may
            // hide). AcqRel, as `release_slow`: the slot (our waker) goes to
            // the next holder, and a notifier's CAS from PARKED now fails
            // and counts its notification on the IDLE word, clearing the
            // mark.
            let mut next = released(word);
            if word & HUP == 0 {
                next |= EXHAUSTED;
            }
            if self
                .word
                .compare_exchange(word, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(());
            }
        }
        self.release_inner(token, None)
    }

    /// Releases like [`release`](Self::release), for a holder that goes
    /// away for good and will not come back to the cell: the waker it left
    /// in the slot (parked or not) is dropped first, where a plain release
    /// leaves it for the next holder, so that it does not keep whatever it
    /// owns alive until one comes or the cell drops. A slot that already
    /// holds [`Waker::noop`] costs no store.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::task::{Wake, Waker};
    /// use cellio_reactor::OpCell;
    ///
    /// struct Task;
    /// impl Wake for Task {
    ///     fn wake(self: Arc<Self>) {}
    /// }
    ///
    /// let task = Arc::new(Task);
    /// let cell = OpCell::new();
    /// let seen = cell.observe().unwrap();
    /// let token = cell.reserve().unwrap();
    /// cell.park(token, seen, &Waker::from(task.clone())).unwrap();
    /// assert_eq!(Arc::strong_count(&task), 2); // the slot's clone
    /// cell.release_dropping_waker(token).unwrap();
    /// assert_eq!(Arc::strong_count(&task), 1);
    /// ```
    pub fn release_dropping_waker(&self, token: Token) -> Result<(), CellError> {
        // Takes a parked holder back to RESERVED, waiting out a notifier's
        // window: from then on the slot is the holder's.
        self.observe_reserved(token)?;
        if !self.waker.holds(Waker::noop()) {
            // The phase is RESERVED under our token (just checked or
            // restored), and nothing but our own release takes it out of
            // RESERVED (a notifier takes the slot only from PARKED; `reset`
            // is for a cell whose holders are gone).
            // SAFETY: so by invariant 1 the slot is ours until that release.
            unsafe { self.waker.clear() };
        }
        self.release(token)
    }

    /// Releases like [`release`](Self::release) or, with a snapshot,
    /// [`release_exhausted`](Self::release_exhausted), with a plain load
    /// and store instead of a compare-and-swap: for a holder on the thread
    /// that notifies the cell, where nothing can change the word between
    /// the two (see "Holders on the reactor's thread" in the module docs).
    /// Anything but the plain case (the holder parked, a stale token) goes
    /// the general way.
    ///
    /// # Safety
    ///
    /// Until this call returns, the cell is notified, closed and reset
    /// ([`notify`](Self::notify), [`notify_hangup`](Self::notify_hangup),
    /// [`close`](Self::close), [`reset`](Self::reset)) only by the calling
    /// thread. For a socket's cell: the calling thread is the one its
    /// reactor is bound to
    /// ([`Registration::reactor_thread`](crate::Registration::reactor_thread)),
    /// and the socket's registration outlives the call.
    ///
    /// Broken, a notification could be overwritten by the store (an
    /// operation would sleep for ever) or a reset undone.
    ///
    /// ```
    /// use cellio_reactor::{OpCell, Park};
    /// use std::task::Waker;
    ///
    /// let cell = OpCell::new();
    /// let seen = cell.observe().unwrap();
    /// let token = cell.reserve().unwrap();
    /// assert_eq!(cell.park(token, seen, Waker::noop()).unwrap(), Park::Parked);
    /// cell.notify();
    /// let seen = cell.observe_reserved(token).unwrap();
    /// // ... a short read ...
    /// // SAFETY: this thread is the only one that notifies the cell.
    /// unsafe { cell.release_on_reactor_thread(token, Some(seen)) }.unwrap();
    /// assert!(cell.observe().unwrap().is_exhausted());
    /// ```
    #[inline]
    pub unsafe fn release_on_reactor_thread(
        &self,
        token: Token,
        exhausted_at: Option<Readiness>,
    ) -> Result<(), CellError> {
        // Acquire, as `release_slow`'s load: the word's last writer may be
        // the notifier (this thread, by the contract) or, before our
        // reservation, anyone.
        let word = self.word.load(Ordering::Acquire);
        if word & (GEN_MASK | PHASE_MASK) != token.bits() | RESERVED {
            return self.release_slow(token, exhausted_at);
        }
        // The cell is held under our token, so no other thread's operation
        // writes the word (a reservation, `park_idle` and `mark_exhausted`
        // need it idle; a stale token's release finds another generation),
        // and by the contract no notifier, close or reset runs meanwhile:
        // `word` stays current until the store below.
        // The mark needs the sequence unchanged since the snapshot: the
        // whole word unchanged says so in one compare (the usual case).
        let unchanged = exhausted_at.is_some_and(|seen| word == seen.0 || seq(word) == seq(seen.0));
        let next = released_by_holder(word, token, unchanged);
        debug_assert_eq!(next, released_after(word, exhausted_at));
        // Release, as in `release`: hands the waker slot (and our writes to
        // it) to the next holder, who Acquires in `reserve`.
        self.word.store(next, Ordering::Release);
        Ok(())
    }

    #[inline]
    fn release_inner(
        &self,
        token: Token,
        exhausted_at: Option<Readiness>,
    ) -> Result<(), CellError> {
        // The word the fast path expects: with a snapshot, the snapshot
        // itself (taken under this token by `observe_reserved`; if anything
        // changed since, the CAS fails and the slow path sorts it out), so
        // no load is needed and the sequence is the snapshot's by
        // construction.
        let word = match exhausted_at {
            Some(seen) => seen.0,
            None => self.word.load(Ordering::Relaxed),
        };
        // Fast path: ours, not parked, nobody racing.
        if word & (GEN_MASK | PHASE_MASK) == token.bits() | RESERVED {
            // With a snapshot, `word` is the snapshot: the sequence matches.
            let next = released_by_holder(word, token, exhausted_at.is_some());
            debug_assert_eq!(next, released_after(word, exhausted_at));
            // Release: hands the waker slot (and our writes to it) to the
            // next holder, who Acquires in `reserve`.
            if self
                .word
                .compare_exchange(word, next, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(());
            }
        }
        self.release_slow(token, exhausted_at)
    }

    #[cold]
    fn release_slow(&self, token: Token, exhausted_at: Option<Readiness>) -> Result<(), CellError> {
        let spin = Spin::new();
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if generation(word) != token.0 || phase(word) == IDLE {
                return Err(CellError::Stale);
            }
            if phase(word) == NOTIFYING {
                spin.wait();
                word = self.word.load(Ordering::Acquire);
                continue;
            }
            match self.word.compare_exchange_weak(
                word,
                released_after(word, exhausted_at),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => word = actual,
            }
        }
    }

    /// Records, for an operation that completed without holding the cell,
    /// that its attempt at `seen` proved the socket exhausted. Does nothing
    /// if a notification arrived since or the cell is held.
    #[inline]
    pub fn mark_exhausted(&self, seen: Readiness) {
        // Only from exactly the snapshot's word: any change in between
        // (notification, reservation) makes the mark meaningless. After a
        // hang-up it is never true (see HUP).
        if seen.0 & HUP != 0 {
            return;
        }
        let _ = self.word.compare_exchange(
            seen.0,
            seen.0 | EXHAUSTED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Records that an attempt at `seen`, made without holding the cell,
    /// said `EAGAIN`. Like [`mark_exhausted`](Self::mark_exhausted), but it
    /// holds after a hang-up too: the kernel reports a pending end-of-stream
    /// (0) or error before it says `EAGAIN`, so `EAGAIN` proves there is
    /// nothing of either to read, and a socket that can still say it after a
    /// hang-up event (a UDP socket whose ICMP error was read; a socket whose
    /// error queue raised `EPOLLERR`) reports whatever comes next as a new
    /// event, which clears the mark. Without it, `readable()` after such an
    /// event completed at once for ever, and a wait-and-`try_recv` loop spun.
    #[inline]
    pub fn mark_would_block(&self, seen: Readiness) {
        let _ = self.word.compare_exchange(
            seen.0,
            seen.0 | EXHAUSTED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The reactor's side: readiness arrived for this direction. Bumps the
    /// sequence, clears `EXHAUSTED`, and wakes the parked waker if there is
    /// one. The wake happens after the cell is consistent again, never inside
    /// the exclusive window.
    ///
    /// Small enough to inline into the reactor's turn: one load and one CAS
    /// when nobody is parked; one load, one CAS, the waker copy, one store
    /// and the wake when somebody is. Every other case (a lost race, a
    /// notifier already in its window) goes to the general loop, out of
    /// line.
    ///
    /// A confined cell (see [`reserve_confined`](Self::reserve_confined))
    /// is notified with one load and one plain store.
    #[inline]
    pub fn notify(&self) {
        let word = self.word.load(Ordering::Acquire);
        if word & CONFINED != 0 {
            self.notify_confined(word);
            return;
        }
        if word & PARKED == 0 {
            // Nobody parked (IDLE or RESERVED): just count it.
            if self
                .word
                .compare_exchange(word, notified(word), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        } else {
            // PARKED or NOTIFYING. Expecting PARKED lets the CAS itself rule
            // out NOTIFYING (another notifier's window): that fails and goes
            // to the general loop, which waits the window out.
            let parked = with_phase(word, PARKED);
            let notifying = with_phase(notified(parked), NOTIFYING);
            // Acquire: pairs with `park`'s Release so the waker written
            // there is visible to us.
            if self
                .word
                .compare_exchange(parked, notifying, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.wake_parked(notifying);
                return;
            }
        }
        self.notify_contended();
    }

    /// `notify` of a confined cell: by `reserve_confined`'s contract this
    /// thread is the word's only writer, and nothing else runs on it now,
    /// so `word` is current and plain stores are exact. A confined cell is
    /// never `NOTIFYING`: that phase only guards against other threads.
    #[inline]
    fn notify_confined(&self, word: u64) {
        let next = notified(word);
        if phase(word) != PARKED {
            self.word.store(next, Ordering::Release);
            return;
        }
        // The holder parked on this thread (the contract), which now runs
        // us instead, and no other thread may touch a confined cell's slot.
        // SAFETY: as the notifier of a PARKED cell we own the slot
        // (invariant 1) until the store below hands it back.
        let waker = unsafe { self.waker.clone_waker() };
        self.word
            .store(with_phase(next, RESERVED), Ordering::Release);
        waker.wake();
        if tracing::level_enabled!(tracing::Level::TRACE) {
            trace_event(generation(next), "op woken");
        }
    }

    /// `notify` after its one-shot CAS lost a race: the general loop.
    #[cold]
    #[inline(never)]
    fn notify_contended(&self) {
        if let Some(waker) = self.advance(0) {
            if tracing::level_enabled!(tracing::Level::TRACE) {
                trace_event(self.generation(), "op woken");
            }
            waker.wake();
        }
    }

    /// The tail of `notify` once it stored `notifying` (won `PARKED ->
    /// NOTIFYING`): copies the waker out, ends the exclusive window by
    /// storing the same word with phase `RESERVED`, then wakes. Inlined too:
    /// in the reactor's turn it costs less than the call it would need.
    #[inline]
    fn wake_parked(&self, notifying: u64) {
        let reserved = with_phase(notifying, RESERVED);
        let waker = {
            let _window = EndWindow(&self.word, reserved);
            // SAFETY: the caller won PARKED -> NOTIFYING, so by invariant 1
            // the slot is ours until `_window` drops and stores RESERVED.
            unsafe { self.waker.clone_waker() }
        };
        waker.wake();
        // After the wake: nothing needs to stay alive across it but `reserved`.
        if tracing::level_enabled!(tracing::Level::TRACE) {
            trace_event(generation(reserved), "op woken");
        }
    }

    /// Like [`notify`](Self::notify), for readiness that is final: the peer
    /// closed this direction or the socket failed. Records `HUP`, after
    /// which a short read no longer marks the cell exhausted (an `EAGAIN`
    /// still does: [`mark_would_block`](Self::mark_would_block)).
    pub fn notify_hangup(&self) {
        if let Some(waker) = self.advance(HUP) {
            if tracing::level_enabled!(tracing::Level::TRACE) {
                trace_event(self.generation(), "op woken by hang-up");
            }
            waker.wake();
        }
    }

    /// Marks the cell closed (its reactor is shutting down) and wakes a
    /// parked operation so that it observes [`CellError::Closed`] instead of
    /// sleeping forever.
    pub fn close(&self) {
        if let Some(waker) = self.advance(CLOSED) {
            waker.wake();
        }
    }

    /// `notified(word) | extra`, returning a copy of the parked waker if
    /// the phase was `PARKED`.
    #[inline]
    fn advance(&self, extra: u64) -> Option<Waker> {
        let spin = Spin::new();
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let next = notified(word) | extra;
            match phase(word) {
                NOTIFYING => {
                    spin.wait();
                    word = self.word.load(Ordering::Acquire);
                }
                PARKED => {
                    // Acquire: pairs with `park`'s Release so the waker
                    // written there is visible to us.
                    match self.word.compare_exchange_weak(
                        word,
                        with_phase(next, NOTIFYING),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            let _window = EndWindow(&self.word, with_phase(next, RESERVED));
                            // SAFETY: we won PARKED -> NOTIFYING, so by
                            // invariant 1 the slot is ours until `_window`
                            // drops and stores RESERVED.
                            return Some(unsafe { self.waker.clone_waker() });
                        }
                        Err(actual) => word = actual,
                    }
                }
                _ => match self.word.compare_exchange_weak(
                    word,
                    next,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return None,
                    Err(actual) => word = actual,
                },
            }
        }
    }

    /// Returns the cell to a fresh idle state for a new socket: the
    /// generation moves on (every outstanding token becomes stale), flags are
    /// cleared and the stored waker is dropped.
    pub fn reset(&self) {
        let spin = Spin::new();
        let mut word = self.word.load(Ordering::Acquire);
        let reserved = loop {
            if phase(word) == NOTIFYING {
                spin.wait();
                word = self.word.load(Ordering::Acquire);
                continue;
            }
            // Take the slot (RESERVED, new generation, flags cleared) so that
            // neither a late notifier nor a reserver touches it meanwhile.
            let next = with_phase(released(word) & !(EXHAUSTED | CLOSED | HUP), RESERVED);
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break next,
                Err(actual) => word = actual,
            }
        };
        // SAFETY: we moved the phase to RESERVED under a generation no
        // token names, so the slot is ours (invariant 1).
        unsafe { self.waker.clear() };
        // A notification may have bumped the sequence meanwhile; keep it.
        let mut word = reserved;
        loop {
            match self.word.compare_exchange_weak(
                word,
                with_phase(word, IDLE),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    /// `true` while the holder of `token` is parked with a waker for the
    /// same task as `waker` and no notification has come since it parked:
    /// polled again, it may stay asleep without touching the cell, because
    /// the next notification wakes that waker.
    ///
    /// Only reads: the phase (Acquire) and the slot's identity, which is two
    /// atomics compared by value and never dereferenced, so it is sound to
    /// read while the notifier owns the slot. If a notification takes the
    /// cell right after the load, it wakes the parked waker, which is ours.
    ///
    /// ```
    /// use cellio_reactor::{OpCell, Park};
    /// use std::sync::Arc;
    /// use std::task::{Wake, Waker};
    ///
    /// struct Task;
    /// impl Wake for Task {
    ///     fn wake(self: Arc<Self>) {}
    /// }
    ///
    /// let (mine, other) = (Waker::from(Arc::new(Task)), Waker::from(Arc::new(Task)));
    /// let cell = OpCell::new();
    /// let token = cell.reserve().unwrap();
    /// let seen = cell.observe_reserved(token).unwrap();
    /// assert_eq!(cell.park(token, seen, &mine).unwrap(), Park::Parked);
    /// assert!(cell.still_parked(token, &mine));
    /// assert!(!cell.still_parked(token, &other)); // another task's waker
    /// cell.notify();
    /// assert!(!cell.still_parked(token, &mine)); // woken: attempt again
    /// ```
    #[inline]
    pub fn still_parked(&self, token: Token, waker: &Waker) -> bool {
        let word = self.word.load(Ordering::Acquire);
        word & (GEN_MASK | PHASE_MASK) == token.bits() | PARKED && self.waker.holds(waker)
    }

    /// `true` while the holder of `token` is parked (with whatever waker):
    /// no notification has come since it parked. One load; unlike
    /// [`observe_reserved`](Self::observe_reserved) it takes nothing back,
    /// so a check that must not park (`try_complete`) leaves the parked
    /// waker to be woken.
    ///
    /// ```
    /// use cellio_reactor::{OpCell, Park};
    /// use std::sync::Arc;
    /// use std::task::{Wake, Waker};
    ///
    /// struct Task;
    /// impl Wake for Task {
    ///     fn wake(self: Arc<Self>) {}
    /// }
    ///
    /// let waker = Waker::from(Arc::new(Task));
    /// let cell = OpCell::new();
    /// let token = cell.reserve().unwrap();
    /// assert!(!cell.is_parked(token)); // reserved, not parked
    /// let seen = cell.observe_reserved(token).unwrap();
    /// assert_eq!(cell.park(token, seen, &waker).unwrap(), Park::Parked);
    /// assert!(cell.is_parked(token));
    /// cell.notify();
    /// assert!(!cell.is_parked(token)); // woken
    /// ```
    #[inline]
    pub fn is_parked(&self, token: Token) -> bool {
        let word = self.word.load(Ordering::Acquire);
        word & (GEN_MASK | PHASE_MASK) == token.bits() | PARKED
    }

    /// Reads the readiness without changing anything — unlike
    /// [`observe_reserved`](Self::observe_reserved), it does not take a
    /// parked holder's waker back, so a parked operation stays parked.
    #[inline]
    pub fn peek(&self) -> Readiness {
        Readiness(self.word.load(Ordering::Acquire))
    }

    /// The current generation: the token the next [`reserve`](Self::reserve)
    /// hands out.
    pub fn generation(&self) -> u32 {
        generation(self.word.load(Ordering::Acquire))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_short_read_marks_the_cell_exhausted_until_the_next_notification() {
        let cell = OpCell::new();
        let seen = cell.observe().unwrap();
        cell.mark_exhausted(seen);
        assert!(cell.observe().unwrap().is_exhausted());
        cell.notify();
        assert!(!cell.observe().unwrap().is_exhausted());
    }

    #[test]
    fn after_a_hang_up_the_exhausted_shortcut_stays_off() {
        let cell = OpCell::new();
        cell.notify_hangup(); // data and FIN reported in one event
        let seen = cell.observe().unwrap();
        cell.mark_exhausted(seen); // the short read that took the data
        assert!(!cell.observe().unwrap().is_exhausted());
        let token = cell.reserve().unwrap();
        cell.release_exhausted(token, seen).unwrap();
        assert!(!cell.observe().unwrap().is_exhausted());
        cell.reset(); // a new socket in the slot starts clean
        let seen = cell.observe().unwrap();
        cell.mark_exhausted(seen);
        assert!(cell.observe().unwrap().is_exhausted());
    }

    #[test]
    fn a_would_block_marks_the_cell_exhausted_even_after_a_hang_up() {
        let cell = OpCell::new();
        cell.notify_hangup(); // a UDP socket's ICMP error, since read
        let seen = cell.observe().unwrap();
        cell.mark_would_block(seen); // then EAGAIN: nothing is pending
        assert!(cell.observe().unwrap().is_exhausted());
        cell.notify(); // the next datagram
        assert!(!cell.observe().unwrap().is_exhausted());
        // From a snapshot the notification has overtaken: no mark.
        cell.mark_would_block(seen);
        assert!(!cell.observe().unwrap().is_exhausted());
    }

    #[test]
    fn park_idle_takes_the_shortcut_only_for_the_waker_in_the_slot() {
        // Wakers with a stable identity (see `test_waker`).
        let (_mine_task, mine) = crate::test_waker::task();
        let (_other_task, other) = crate::test_waker::task();
        let cell = OpCell::new();
        assert_eq!(
            cell.park_idle(cell.observe().unwrap(), &mine),
            None,
            "empty slot"
        );
        // Another task's operation parks and is cancelled: its waker stays.
        let seen = cell.observe().unwrap();
        let token = cell.reserve().unwrap();
        assert_eq!(cell.park(token, seen, &other).unwrap(), Park::Parked);
        cell.release(token).unwrap();
        assert_eq!(
            cell.park_idle(cell.observe().unwrap(), &mine),
            None,
            "other waker"
        );
        let token = cell
            .park_idle(cell.observe().unwrap(), &other)
            .expect("same waker");
        // A snapshot from before anything changed is refused.
        cell.release(token).unwrap();
        let stale = cell.observe().unwrap();
        cell.notify();
        assert_eq!(cell.park_idle(stale, &other), None, "readiness moved");
        // A reset slot holds no task's waker.
        cell.reset();
        assert_eq!(
            cell.park_idle(cell.observe().unwrap(), &other),
            None,
            "reset"
        );
        // A closed cell is never parked on.
        let token = cell.reserve().unwrap();
        assert_eq!(
            cell.park(token, cell.observe_reserved(token).unwrap(), &other),
            Ok(Park::Parked)
        );
        cell.release(token).unwrap();
        cell.close();
        assert_eq!(
            cell.park_idle(cell.observe().unwrap(), &other),
            None,
            "closed"
        );
    }

    #[test]
    fn a_confined_cell_parks_and_is_woken_with_plain_stores_and_forgets_it_on_release() {
        let (task, waker) = crate::test_waker::task();
        let cell = OpCell::new();
        // SAFETY: this test's thread is the cell's only user.
        let token = unsafe { cell.reserve_confined() }.unwrap();
        assert!(cell.is_confined());
        let seen = cell.observe_reserved(token).unwrap();
        // A notification while it is not parked is counted, not lost: the
        // park that follows from the older snapshot is refused.
        cell.notify();
        assert_eq!(task.wakes(), 0);
        assert_eq!(cell.park(token, seen, &waker), Ok(Park::Retry));
        let seen = cell.observe_reserved(token).unwrap();
        assert_eq!(seen.sequence(), 1);
        assert_eq!(cell.park(token, seen, &waker), Ok(Park::Parked));
        assert!(cell.still_parked(token, &waker));
        cell.notify();
        assert_eq!(task.wakes(), 1);
        assert!(!cell.still_parked(token, &waker), "woken: RESERVED again");
        assert_eq!(cell.observe_reserved(token).unwrap().sequence(), 2);
        assert!(cell.is_confined(), "for as long as it is held");
        cell.release(token).unwrap();
        assert!(!cell.is_confined());
        assert_eq!(cell.release(token), Err(CellError::Stale));
        // The next holder takes the ordinary way unless it asks again.
        let token = cell.reserve().unwrap();
        assert!(!cell.is_confined());
        cell.release(token).unwrap();
    }

    #[test]
    fn a_confined_cell_refuses_other_operations_and_closes_and_resets_like_any() {
        let (task, waker) = crate::test_waker::task();
        let cell = OpCell::new();
        let before = cell.observe().unwrap();
        // SAFETY: this test's thread is the cell's only user.
        let token = unsafe { cell.reserve_confined() }.unwrap();
        // Everything another holder could try is refused before it writes.
        assert_eq!(cell.observe(), Err(CellError::Busy));
        assert_eq!(cell.reserve(), Err(CellError::Busy));
        // SAFETY: as above.
        assert_eq!(unsafe { cell.reserve_confined() }, Err(CellError::Busy));
        assert_eq!(cell.park_idle(before, Waker::noop()), None);
        cell.mark_exhausted(before);
        assert!(!cell.peek().is_exhausted());
        assert_eq!(
            cell.release(Token(token.0.wrapping_sub(1))),
            Err(CellError::Stale)
        );
        // Closing wakes the parked holder, whose next park fails.
        let seen = cell.observe_reserved(token).unwrap();
        assert_eq!(cell.park(token, seen, &waker), Ok(Park::Parked));
        cell.close();
        assert_eq!(task.wakes(), 1);
        let seen = cell.observe_reserved(token).unwrap();
        assert_eq!(cell.park(token, seen, &waker), Err(CellError::Closed));
        // A reset (the socket's slot freed) ends the confinement too.
        cell.reset();
        assert!(!cell.is_confined());
        assert_eq!(cell.observe_reserved(token), Err(CellError::Stale));
    }

    #[test]
    fn the_release_fast_path_computes_what_released_after_does() {
        // Every combination the fast path sees: generations at the wrap,
        // a hang-up or not, the sequence moved since the snapshot or not,
        // an exhausted mark asked for or not.
        for held in [0u32, 7, u32::MAX - 1, u32::MAX] {
            for hup in [0, HUP] {
                for moved in [false, true] {
                    for mark in [false, true] {
                        // The holder's snapshot, as `observe_reserved` takes it.
                        let seen =
                            Readiness((5 << SEQ_SHIFT) | hup | Token(held).bits() | RESERVED);
                        let seq = if moved { 6u64 } else { 5 };
                        let word = (seq << SEQ_SHIFT) | hup | Token(held).bits() | RESERVED;
                        let exhausted_at = mark.then_some(seen);
                        let cell = OpCell::new();
                        cell.word.store(word, Ordering::Relaxed);
                        cell.release_inner(Token(held), exhausted_at).unwrap();
                        let now = cell.word.load(Ordering::Relaxed);
                        assert_eq!(now, released_after(word, exhausted_at));
                        assert_eq!(generation(now), held.wrapping_add(1));
                        assert_eq!(phase(now), IDLE);
                        assert_eq!(now & EXHAUSTED != 0, mark && !moved && hup == 0);
                        // The plain release on the reactor's thread leaves
                        // exactly the word the compare-and-swap does.
                        let plain = OpCell::new();
                        plain.word.store(word, Ordering::Relaxed);
                        // SAFETY: this test's thread is the cell's only user.
                        unsafe { plain.release_on_reactor_thread(Token(held), exhausted_at) }
                            .unwrap();
                        assert_eq!(plain.word.load(Ordering::Relaxed), now);
                    }
                }
            }
        }
    }

    #[test]
    fn a_release_on_the_reactor_thread_of_a_parked_or_stale_holder_goes_the_general_way() {
        let cell = OpCell::new();
        let seen = cell.observe().unwrap();
        let token = cell.reserve().unwrap();
        assert_eq!(cell.park(token, seen, Waker::noop()).unwrap(), Park::Parked);
        // Still parked (a cancelled receive): released all the same.
        // SAFETY: this test's thread is the cell's only user.
        unsafe { cell.release_on_reactor_thread(token, None) }.unwrap();
        assert_eq!(phase(cell.word.load(Ordering::Relaxed)), IDLE);
        assert_eq!(cell.generation(), token.generation() + 1);
        // The token is stale now: refused, and nothing changes.
        let before = cell.word.load(Ordering::Relaxed);
        assert_eq!(
            // SAFETY: this test's thread is the cell's only user.
            unsafe { cell.release_on_reactor_thread(token, None) },
            Err(CellError::Stale)
        );
        let next = cell.reserve().unwrap();
        cell.release(next).unwrap();
        assert_eq!(
            // SAFETY: this test's thread is the cell's only user.
            unsafe { cell.release_on_reactor_thread(next, None) },
            Err(CellError::Stale)
        );
        assert_eq!(
            generation(cell.word.load(Ordering::Relaxed)),
            generation(before) + 1
        );
    }

    /// A waker whose first clone succeeds and whose later clones panic,
    /// until the next call makes a new one (only the test below uses it).
    fn waker_whose_second_clone_panics() -> Waker {
        use std::sync::atomic::AtomicUsize;
        use std::task::{RawWaker, RawWakerVTable};

        static CLONES: AtomicUsize = AtomicUsize::new(0);
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
        unsafe fn clone(_: *const ()) -> RawWaker {
            if CLONES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 1 {
                panic!("a waker clone that panics, on purpose");
            }
            RawWaker::new(std::ptr::null(), &VTABLE)
        }
        unsafe fn noop(_: *const ()) {}
        CLONES.store(0, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the vtable's functions ignore the data pointer.
        unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
    }

    /// A notifier whose copy of the parked waker panics (the waker's clone
    /// is user code) ends its `NOTIFYING` window all the same: the holder
    /// can look at the cell again, release it, and the socket's slot can be
    /// reset, on every notifier's path. (The cell used to stay `NOTIFYING`
    /// for ever, and each of those spun at 100% CPU without end; found by a
    /// review.)
    #[test]
    fn a_waker_clone_that_panics_in_a_notification_does_not_wedge_the_cell() {
        type Notifier = fn(&OpCell);
        let notifiers: [(&str, Notifier); 4] = [
            ("notify", OpCell::notify),
            ("notify_contended", OpCell::notify_contended),
            ("notify_hangup", OpCell::notify_hangup),
            ("close", OpCell::close),
        ];
        for (name, notifier) in notifiers {
            let cell = std::sync::Arc::new(OpCell::new());
            let seen = cell.observe().unwrap();
            let token = cell.reserve().unwrap();
            let waker = waker_whose_second_clone_panics();
            assert_eq!(cell.park(token, seen, &waker), Ok(Park::Parked));
            let notified =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| notifier(&cell)));
            assert!(notified.is_err(), "{name}: the clone's panic unwinds");
            // On a thread of its own: a wedged cell would spin for ever.
            let (done, checked) = std::sync::mpsc::channel();
            std::thread::spawn({
                let cell = cell.clone();
                move || {
                    let again = cell.observe_reserved(token).map(|now| now.sequence());
                    let released = cell.release(token);
                    cell.reset();
                    done.send((again, released)).unwrap();
                }
            });
            let result = checked.recv_timeout(std::time::Duration::from_secs(5));
            assert_eq!(
                result,
                Ok((Ok(1), Ok(()))),
                "{name}: the cell after the panic (the notification counted, \
                 the holder's release done): {cell:?}"
            );
        }
    }

    #[test]
    fn misuse_errors_have_the_documented_kinds() {
        let cell = OpCell::new();
        let token = cell.reserve().unwrap();
        assert_eq!(cell.reserve(), Err(CellError::Busy));
        assert_eq!(cell.observe(), Err(CellError::Busy));
        cell.release(token).unwrap();
        assert_eq!(cell.release(token), Err(CellError::Stale));
        let busy = io::Error::from(CellError::Busy);
        assert_eq!(busy.kind(), io::ErrorKind::ResourceBusy);
        assert_eq!(
            io::Error::from(CellError::Stale).kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            io::Error::from(CellError::Consumed).kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            io::Error::from(CellError::Closed).kind(),
            io::ErrorKind::NotConnected
        );
    }
}
