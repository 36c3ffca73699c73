//! The event loop: a mio `Poll`, the registration table, and the turn that
//! turns readiness events into cell notifications.
//!
//! # Invariants
//!
//! * Every source is registered **once**, edge-triggered, for read and write,
//!   and never re-armed. Readiness changes arrive as events exactly once, so
//!   each one is recorded in the cell's readiness sequence (see
//!   [`crate::cell`]) and cannot be lost to a racing `EAGAIN`.
//! * Stream sockets ([`Handle::register_stream`]) also ask for urgent data
//!   (`EPOLLPRI`, Linux), which the turn reports to the receive cell as a
//!   hang-up: a receive stops short at it, so short reads prove nothing
//!   from then on.
//! * An event is delivered only if the generation in its token equals the
//!   slot's current generation: events for a closed socket die here. (The
//!   check and the notification are two steps: a socket dropped on another
//!   thread between them, its slot reused at once, gets the old socket's
//!   event. That is a spurious notification, which is harmless; a final
//!   one sets the new socket's sticky `HUP`, which only turns its exhausted
//!   shortcut off for its life: a cost, never a lost wake-up. Left so: the
//!   window is a few instructions, and closing it would cost the turn.)
//! * A turn never polls a task inline: [`OpCell::notify`](crate::OpCell::notify)
//!   calls `Waker::wake`, and the runtime's waker only *schedules* the task
//!   (.NET's `RunContinuationsAsynchronously`), so stacks stay flat and one
//!   busy socket cannot run inside another's event.
//! * When the [`Reactor`] is dropped, every live cell is closed: parked
//!   operations wake and fail with `NotConnected` instead of sleeping forever.
//!   A registration racing the drop on another thread is either refused or
//!   among the closed: `register` checks `shut_down` again after its slot is
//!   in the table.
//!   A waker that panics in the drop does not stop it: every cell is
//!   closed, then the first panic goes on.
//! * No readiness is lost to a waker that panics: a turn cut short that way
//!   leaves `cut_short` set, and the next turn notifies every live cell
//!   before it waits (without blocking). Spurious notifications are
//!   harmless (an operation retries its syscall and parks again on
//!   `EAGAIN`); a lost edge would not be.
//! * A reactor [bound](Reactor::bind_to_current_thread) to a thread is turned
//!   only on that thread ([`turn`](Reactor::turn) refuses anywhere else) and,
//!   by the binder's promise, dropped there: that is what lets a cell
//!   reserved on that thread be [confined](crate::OpCell::reserve_confined).

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::panic::AssertUnwindSafe;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;
use std::time::Duration;

use mio::event::Source;
use mio::{Interest, Poll, Token};

use crate::cell::OpCell;
use crate::poller::{Event, Poller};
use crate::table::{locator, Locator, Slot, Table};
use crate::thread_words::thread_id;

/// The token of the reactor's own `mio::Waker`. No slot can produce it: its
/// locator (the low 32 bits, all ones) names a page number beyond the
/// table's pages, so the turn's slot lookup finds nothing for it and needs
/// no separate comparison.
const WAKER_TOKEN: Token = Token(usize::MAX);

/// Events fetched per `epoll_wait`/`kevent` call.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

struct Shared {
    registry: mio::Registry,
    waker: mio::Waker,
    table: Table,
    /// Set when the `Reactor` is dropped: no more events will be dispatched.
    shut_down: AtomicBool,
    /// The [`thread_id`] of the thread the reactor is bound to, or 0.
    bound_thread: AtomicU64,
    /// The [`OutsideWork`] guards taken through a handle of this reactor
    /// that are alive (rare traffic: a lookup, a retry delay; read by a
    /// runtime only while its clock is paused and it has nothing to run).
    outside_work: Mutex<OutsideWorkCount>,
}

/// What [`Reactor::has_outside_work`] counts, and the retry delays
/// [`Reactor::wake_retries_after_move`] ends.
///
/// Invariant: `retries` holds one entry per live [`Handle::outside_retry`]
/// guard whose task has not been woken by
/// [`wake_retries_after_move`](Reactor::wake_retries_after_move) (that
/// takes the entry out; the guard's drop then finds none), with the count
/// of `moves` when it was taken; ids are never reused.
#[derive(Debug, Default)]
struct OutsideWorkCount {
    /// Live [`Handle::outside_work`] guards.
    answers: usize,
    /// The retry delays under way, each with its task's waker.
    retries: Vec<Retry>,
    /// The id of the next [`Handle::outside_retry`] guard.
    next_retry: u64,
    /// How often [`Reactor::note_time_moved`] was called.
    moves: u64,
}

/// A retry delay under way ([`Handle::outside_retry`]).
#[derive(Debug)]
struct Retry {
    /// Its guard's [`OutsideWork::retry`].
    id: u64,
    /// [`OutsideWorkCount::moves`] when it was taken.
    moves: u64,
    /// Wakes the task that makes the retry.
    waker: Waker,
}

/// An epoll/kqueue reactor: owns the poller and dispatches readiness to the
/// cells of registered sockets.
///
/// A runtime worker owns one reactor and calls [`turn`](Reactor::turn) when
/// it has nothing else to do. Sockets reach the reactor through a
/// [`Handle`].
///
/// Dropping the reactor closes the cells of every registered socket: their
/// parked operations wake and fail with `NotConnected`, and so does every
/// later registration. A waker that panics as it is woken then does not stop
/// the others: the drop closes every cell, then unwinds with the first panic.
///
/// # Examples
///
/// ```
/// use cellio_reactor::Reactor;
/// use std::time::Duration;
///
/// let mut reactor = Reactor::new()?;
/// let handle = reactor.handle();
/// handle.wake()?; // from any thread: interrupts a blocking turn
/// reactor.turn(Some(Duration::from_secs(1)))?; // returns at once
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Reactor {
    poller: Poller,
    shared: Arc<Shared>,
    /// A turn was cut short by a panic (a waker's): the events after the
    /// panicking one were taken from the poller and never dispatched, and
    /// an edge-triggered poller reports each readiness change once. The
    /// next turn notifies every live cell first (see [`turn`](Self::turn)).
    cut_short: bool,
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("registrations", &self.shared.table.len())
            .field("event_capacity", &self.poller.capacity())
            .finish()
    }
}

impl Reactor {
    /// A reactor fetching up to [`DEFAULT_EVENT_CAPACITY`] events per turn.
    pub fn new() -> io::Result<Self> {
        Self::with_event_capacity(DEFAULT_EVENT_CAPACITY)
    }

    /// A reactor fetching up to `capacity` events per turn (at least 1).
    pub fn with_event_capacity(capacity: usize) -> io::Result<Self> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        Ok(Self {
            poller: Poller::new(poll, capacity),
            shared: Arc::new(Shared {
                registry,
                waker,
                table: Table::new(),
                shut_down: AtomicBool::new(false),
                bound_thread: AtomicU64::new(0),
                outside_work: Mutex::new(OutsideWorkCount::default()),
            }),
            cut_short: false,
        })
    }

    /// `true` while work on another thread that a task of this reactor's
    /// thread waits for is under way, and the task may be woken by it at
    /// any moment: a [`Handle::outside_work`] guard is alive. A runtime
    /// whose clock is paused does not move it meanwhile. (Retry delays,
    /// [`Handle::outside_retry`], do not count here: see
    /// [`wake_retries_after_move`](Self::wake_retries_after_move).)
    pub fn has_outside_work(&self) -> bool {
        self.shared.outside_work_count().answers != 0
    }

    /// Tells the reactor that the runtime's (paused) clock moved: the
    /// retry delays ([`Handle::outside_retry`]) under way now end at the
    /// next [`wake_retries_after_move`](Self::wake_retries_after_move).
    pub fn note_time_moved(&self) {
        self.handle().note_time_moved();
    }

    /// Ends every retry delay ([`Handle::outside_retry`]) that began before
    /// the clock's last move ([`note_time_moved`](Self::note_time_moved)):
    /// wakes its task, at once, instead of at the end of its real-time
    /// delay, and returns whether it woke any. A runtime whose paused clock
    /// would move next (it has nothing else to run) calls this first, and
    /// moves the clock only if it returns `false`: the retries are made
    /// before the clock moves again, after what the last move woke has run
    /// (a reader's timer fired and it read), and a paused clock never waits
    /// for a real-time delay. A delay whose clock has not moved since it
    /// began lets it move once: what the retry waits for may need it to.
    pub fn wake_retries_after_move(&self) -> bool {
        let due: Vec<Waker> = {
            let mut count = self.shared.outside_work_count();
            let moves = count.moves;
            let mut due = Vec::new();
            let mut index = 0;
            while index < count.retries.len() {
                if count.retries[index].moves < moves {
                    due.push(count.retries.swap_remove(index).waker);
                } else {
                    index += 1;
                }
            }
            due
        };
        // Woken without the lock: a waker may be anything.
        let woke = !due.is_empty();
        for waker in due {
            waker.wake();
        }
        woke
    }

    /// Binds the reactor to the calling thread for the rest of its life.
    ///
    /// From now on [`turn`](Self::turn) refuses to run on any other thread.
    /// In return, a socket operation that holds its cell across operations
    /// ([`TcpIo`](../cellio_net/struct.TcpIo.html) in `cellio-net`) on this
    /// thread may [confine](OpCell::reserve_confined) the cell to it: its
    /// parks and this reactor's notifications then need no locked
    /// instructions. A cellio runtime binds each worker's reactor to the
    /// worker's thread.
    ///
    /// Fails with `ErrorKind::InvalidInput` if the reactor is already bound
    /// to another thread; binding again on the same thread does nothing.
    ///
    /// # Safety
    ///
    /// The reactor must be dropped on this thread (or never dropped). Its
    /// drop closes every cell, and a confined cell may only be changed from
    /// this thread.
    ///
    /// ```
    /// use cellio_reactor::Reactor;
    /// use std::time::Duration;
    ///
    /// let mut reactor = Reactor::new()?;
    /// // SAFETY: the reactor is dropped at the end of this function, on
    /// // this thread.
    /// unsafe { reactor.bind_to_current_thread()? };
    /// reactor.turn(Some(Duration::ZERO))?;
    /// let err = std::thread::scope(|s| {
    ///     s.spawn(|| reactor.turn(Some(Duration::ZERO)).unwrap_err()).join().unwrap()
    /// });
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub unsafe fn bind_to_current_thread(&mut self) -> io::Result<()> {
        let here = thread_id();
        // Only `&mut self` changes it, so a load and a store suffice.
        match self.shared.bound_thread.load(Ordering::Relaxed) {
            0 => {
                self.shared.bound_thread.store(here, Ordering::Release);
                Ok(())
            }
            bound if bound == here => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this reactor is bound to another thread",
            )),
        }
    }

    /// A cloneable, thread-safe handle for registering sockets and waking
    /// this reactor.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Waits up to `timeout` (`None`: until something happens) for events
    /// and notifies the cells they name. Returns the number of events
    /// received, including wake-ups from [`Handle::wake`].
    ///
    /// An interrupted wait (`EINTR`) counts as a turn with no events.
    ///
    /// A waker that panics when the turn wakes it unwinds out of `turn`,
    /// and the events fetched after its own are not dispatched. The next
    /// turn then first notifies every live cell, and does not block: a
    /// spurious notification only makes an operation retry its syscall,
    /// while a lost one could leave it parked forever.
    ///
    /// Fails with `ErrorKind::InvalidInput`, without waiting, on a thread
    /// other than the one the reactor is
    /// [bound](Self::bind_to_current_thread) to.
    pub fn turn(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let bound = self.shared.bound_thread.load(Ordering::Relaxed);
        if bound != 0 && bound != thread_id() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this reactor is bound to another thread: turn it there",
            ));
        }
        let timeout = if self.cut_short {
            self.notify_every_cell();
            // The notifications may have queued work: no blocking now.
            Some(Duration::ZERO)
        } else {
            timeout
        };
        match self.poller.wait(timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => {
                tracing::error!(error = %e, "reactor poll failed");
                return Err(e);
            }
        }
        let table = &self.shared.table;
        let mut count = 0;
        // Forgotten below; dropped only if a waker panics in the loop.
        let cut_short = CutShort(&mut self.cut_short);
        for event in self.poller.events() {
            count += 1;
            let token = event.token;
            let (locator, generation) = (token as u32, (token >> 32) as u32);
            // `WAKER_TOKEN` finds no slot (see there).
            let Some(slot) = table.get(locator) else {
                continue;
            };
            // Not atomic with the notification below (see the module
            // invariants): a slot freed and reused in between gets a
            // spurious notification, never a lost one.
            if slot.generation.load(Ordering::Acquire) != generation {
                stale_event(locator, generation);
                continue;
            }
            if event.is_final() {
                final_event(slot, event);
                continue;
            }
            if event.is_readable() {
                slot.rx.notify();
            }
            if event.is_writable() {
                slot.tx.notify();
            }
        }
        std::mem::forget(cut_short);
        Ok(count)
    }

    /// Notifies both cells of every live registration: the recovery from a
    /// turn cut short. Out of line and allocating: it runs once per panic.
    #[cold]
    #[inline(never)]
    fn notify_every_cell(&mut self) {
        self.cut_short = false;
        let cut_short = CutShort(&mut self.cut_short);
        self.shared.table.for_each_live(|slot| {
            slot.rx.notify();
            slot.tx.notify();
        });
        std::mem::forget(cut_short);
    }
}

/// Sets [`Reactor::cut_short`] when dropped, which a dispatch loop lets
/// happen only by unwinding (it forgets the guard when it finishes).
struct CutShort<'a>(&'a mut bool);

impl Drop for CutShort<'_> {
    fn drop(&mut self) {
        *self.0 = true;
    }
}

/// The poller token of the slot at `locator` in its `generation` (table
/// invariant 2).
fn token_of(generation: u32, locator: Locator) -> Token {
    Token(((generation as usize) << 32) | locator as usize)
}

/// Dispatches an event that reports an error or a closed direction.
///
/// End-of-stream and errors are final states that no later edge will report
/// again: they switch the exhausted shortcut off (`notify_hangup`). So does
/// urgent (out-of-band) data, which only [stream
/// registrations](Handle::register_stream) ask for: a receive stops short
/// at it with more bytes queued behind, so from then on a short read proves
/// nothing (it is rare, and the shortcut stays off for the socket's life).
/// Out of line: it happens once per connection, not once per message.
#[cold]
#[inline(never)]
fn final_event(slot: &Slot, event: Event) {
    let error = event.is_error();
    if error || event.is_read_closed() || event.is_priority() {
        slot.rx.notify_hangup();
    } else if event.is_readable() {
        slot.rx.notify();
    }
    if error || event.is_write_closed() {
        slot.tx.notify_hangup();
    } else if event.is_writable() {
        slot.tx.notify();
    }
}

/// Traces an event dropped because its slot was freed (and perhaps reused)
/// since it was queued; out of line so the turn carries no formatting code.
#[cold]
#[inline(never)]
fn stale_event(locator: u32, generation: u32) {
    tracing::trace!(locator, generation, "stale event dropped");
}

impl Drop for Reactor {
    fn drop(&mut self) {
        // Parked operations would otherwise wait for events that can no
        // longer come; new registrations are refused from now on.
        self.shared.shut_down.store(true, Ordering::Release);
        // A waker that panics must not leave the cells after its own open:
        // close them all, then let the first panic go on. (`close` stores
        // the closed word before it wakes, so the panicking cell is closed
        // too.)
        let mut panicked = None;
        self.shared.table.for_each_live(|slot| {
            for cell in [&slot.rx, &slot.tx] {
                if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| cell.close())) {
                    panicked.get_or_insert(panic);
                }
            }
        });
        if let Some(panic) = panicked {
            std::panic::resume_unwind(panic);
        }
    }
}

/// A cheap, cloneable, `Send + Sync` reference to a [`Reactor`]: registers
/// sockets with it and wakes it from other threads.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("registrations", &self.shared.table.len())
            .finish()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// [`Handle::current`]'s error: where sockets can be made, and what to do
/// from a thread that is no worker's.
const NO_REACTOR: &str = "no cellio reactor on this thread: create sockets inside \
    Runtime::block_on or a task on a worker; in a spawn_blocking job or a thread of your own, \
    make a std socket and wrap it with from_std in a task (return it from the job, or send it \
    to a worker with spawn_on)";

impl Handle {
    /// The reactor of the runtime running on this thread.
    ///
    /// Fails with `ErrorKind::Other` and a message saying so, and what to
    /// do, when called outside a cellio runtime's workers (for example,
    /// creating a socket before `block_on`, or in a `spawn_blocking` job,
    /// whose thread has no reactor: a socket belongs to the reactor of the
    /// worker that creates it).
    pub fn current() -> io::Result<Handle> {
        CURRENT
            .try_with(|current| current.borrow().clone())
            .ok()
            .flatten()
            .ok_or_else(|| io::Error::other(NO_REACTOR))
    }

    /// Makes this the thread's current reactor until the guard drops; the
    /// previous one (if any) is restored then. Runtimes call this around
    /// everything they run.
    ///
    /// During the thread's teardown, once the thread-local holding the
    /// current reactor is destroyed (a runtime kept in a `thread_local!`
    /// and dropped by its destructor), nothing is made current and the
    /// guard does nothing: code run meanwhile finds no current reactor.
    pub fn enter(&self) -> EnterGuard {
        let previous = CURRENT
            .try_with(|current| current.replace(Some(self.clone())))
            .unwrap_or(None);
        EnterGuard { previous }
    }

    /// Declares work under way on another thread whose end a task of this
    /// reactor's thread waits for (a host-name lookup on a thread of its
    /// own, a delay kept in real time by another thread), until the guard
    /// drops. [`Reactor::has_outside_work`] says so meanwhile: a runtime
    /// whose clock is paused does not jump it to the next timer while such
    /// work runs (as it does not while `spawn_blocking` jobs run), since
    /// the work's answer, not a timeout, is what should come first.
    ///
    /// Take it on the task's thread when the work starts and drop it once
    /// the work has woken the task (or was abandoned); a guard kept beyond
    /// that holds a paused clock back for as long.
    ///
    /// ```
    /// let reactor = cellio_reactor::Reactor::new()?;
    /// let work = reactor.handle().outside_work();
    /// assert!(reactor.has_outside_work());
    /// drop(work);
    /// assert!(!reactor.has_outside_work());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn outside_work(&self) -> OutsideWork {
        self.shared.outside_work_count().answers += 1;
        OutsideWork {
            shared: Arc::clone(&self.shared),
            retry: None,
        }
    }

    /// Declares a delay under way on another thread (in real time) after
    /// which the task `waker` wakes, on this reactor's thread, tries
    /// something again (a send to a peer that had no room), until the
    /// guard drops. Unlike [`outside_work`](Self::outside_work), the retry
    /// may fail and wait again, for as long as what it waits for needs the
    /// clock to move (a peer that reads when a timer fires): so it does not
    /// hold a paused clock. Once that clock has moved since the delay began
    /// ([`Reactor::note_time_moved`]), the runtime ends the delay before it
    /// moves the clock again
    /// ([`Reactor::wake_retries_after_move`]: `waker` is woken then, and
    /// the task should retry at once, which
    /// [`clock_moves`](Self::clock_moves) tells it); a clock that never
    /// moved while the delay ran may move once. So a paused clock never
    /// waits for the delay, and the retry still comes before a jump to,
    /// say, the retry's timeout.
    pub fn outside_retry(&self, waker: &Waker) -> OutsideWork {
        let mut count = self.shared.outside_work_count();
        let id = count.next_retry;
        count.next_retry += 1;
        let moves = count.moves;
        count.retries.push(Retry {
            id,
            moves,
            waker: waker.clone(),
        });
        OutsideWork {
            shared: Arc::clone(&self.shared),
            retry: Some(id),
        }
    }

    /// How often this reactor's runtime's paused clock has moved
    /// ([`Reactor::note_time_moved`]); 0 on a clock never paused. A task
    /// woken during an [`outside_retry`](Self::outside_retry) delay whose
    /// count changed since the delay began should retry at once.
    pub fn clock_moves(&self) -> u64 {
        self.shared.outside_work_count().moves
    }

    /// [`Reactor::note_time_moved`], from a handle (a runtime's
    /// `time::advance`, which runs on the reactor's thread).
    pub fn note_time_moved(&self) {
        self.shared.outside_work_count().moves += 1;
    }

    /// Wakes the reactor from a blocking [`Reactor::turn`]. Callable from any
    /// thread.
    pub fn wake(&self) -> io::Result<()> {
        self.shared.waker.wake()
    }

    /// Registers `source` once, edge-triggered, for reading and writing, and
    /// gives it a slot with its receive and send cells.
    ///
    /// Fails with `ErrorKind::NotConnected` once the reactor has been
    /// dropped.
    pub fn register<S: Source + ?Sized>(&self, source: &mut S) -> io::Result<Registration> {
        self.register_with(source, true, false)
    }

    /// Like [`register`](Self::register), but for reading only, until the
    /// owner calls [`Registration::arm_writable`] the first time a send has
    /// to wait. A connected socket is writable nearly always, and with
    /// write interest every readiness event would also notify the send
    /// cell: an atomic update per event that nobody waits for.
    pub fn register_readable<S: Source + ?Sized>(
        &self,
        source: &mut S,
    ) -> io::Result<Registration> {
        self.register_with(source, false, false)
    }

    /// Registers a stream socket (TCP, Unix stream): like
    /// [`register`](Self::register) when `writable`, else like
    /// [`register_readable`](Self::register_readable), and on Linux also
    /// for urgent data (`EPOLLPRI`: TCP's urgent byte, a Unix stream's
    /// out-of-band one).
    ///
    /// A receive stops short at such a byte with more data queued behind
    /// it, so a short read no longer proves the socket drained: the reactor
    /// reports urgent data like a hang-up of the receive direction
    /// ([`OpCell::notify_hangup`]), which turns the exhausted shortcut off
    /// for good. Other sockets do not ask: on a device (an `AsyncFd`)
    /// `EPOLLPRI` means something else.
    pub fn register_stream<S: Source + ?Sized>(
        &self,
        source: &mut S,
        writable: bool,
    ) -> io::Result<Registration> {
        self.register_with(source, writable, true)
    }

    fn register_with<S: Source + ?Sized>(
        &self,
        source: &mut S,
        writable: bool,
        stream: bool,
    ) -> io::Result<Registration> {
        if self.shared.shut_down.load(Ordering::Acquire) {
            return Err(io::Error::from(crate::CellError::Closed));
        }
        let (index, locator, generation, slot) = self.shared.table.insert()?;
        // A drop that began after the check above may have listed the live
        // slots before this insert, and would never close this one: ask
        // again. The drop stores the flag before it takes the table's lock,
        // and the insert took that lock, so either the drop's list holds
        // the slot or this load sees the flag.
        if self.shared.shut_down.load(Ordering::Acquire) {
            self.shared.table.remove(index);
            return Err(io::Error::from(crate::CellError::Closed));
        }
        let token = token_of(generation, locator);
        let interest = interest(writable, stream);
        if let Err(e) = self.shared.registry.register(source, token, interest) {
            self.shared.table.remove(index);
            tracing::debug!(error = %e, "registration failed");
            return Err(e);
        }
        // A binding never changes once made, so a copy in the slot (the
        // line every operation reads) spares the operations a load from
        // the reactor's shared state. A thread number past 32 bits is
        // stored as 0, "not known", which no thread matches.
        let bound = self.shared.bound_thread.load(Ordering::Acquire);
        slot.reactor_thread
            .store(u32::try_from(bound).unwrap_or(0), Ordering::Relaxed);
        tracing::debug!(index, generation, "registered");
        Ok(Registration {
            slot: NonNull::from(slot),
            rx_done: Completions::default(),
            tx_done: Completions::default(),
            shared: self.shared.clone(),
            index: index as u32,
            writable: AtomicBool::new(writable),
            stream,
        })
    }

    /// Number of live registrations.
    pub fn registrations(&self) -> usize {
        self.shared.table.len()
    }
}

/// The poller interest of a registration: readable, writable if asked, and
/// on Linux urgent data for a stream (see [`Handle::register_stream`]).
fn interest(writable: bool, stream: bool) -> Interest {
    let interest = if writable {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    };
    #[cfg(target_os = "linux")]
    if stream {
        return interest | Interest::PRIORITY;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
    interest
}

/// Work on another thread that a task of a reactor's thread waits for, while
/// alive: see [`Handle::outside_work`] and [`Handle::outside_retry`].
/// `Send`: the thread doing the work may hold it and drop it once it has
/// woken the task.
pub struct OutsideWork {
    shared: Arc<Shared>,
    /// For a retry delay: its id in [`OutsideWorkCount::retries`].
    retry: Option<u64>,
}

impl fmt::Debug for OutsideWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutsideWork").finish_non_exhaustive()
    }
}

impl Drop for OutsideWork {
    fn drop(&mut self) {
        let mut count = self.shared.outside_work_count();
        match self.retry {
            None => count.answers -= 1,
            // Gone already if its task was woken by `wake_retries_after_move`.
            Some(id) => {
                if let Some(index) = count.retries.iter().position(|retry| retry.id == id) {
                    let retry = count.retries.swap_remove(index);
                    // Dropped after the lock: a waker's drop may be anything.
                    drop(count);
                    drop(retry);
                }
            }
        }
    }
}

impl Shared {
    fn outside_work_count(&self) -> std::sync::MutexGuard<'_, OutsideWorkCount> {
        self.outside_work
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Restores the previous current reactor when dropped. See [`Handle::enter`].
#[derive(Debug)]
pub struct EnterGuard {
    previous: Option<Handle>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = CURRENT.try_with(|current| *current.borrow_mut() = previous);
    }
}

/// A socket's place in the reactor: its receive cell, its send cell, and its
/// slot, freed (generation moved on, cells reset) when this is dropped.
///
/// The owner must [`deregister`](Registration::deregister) its source before
/// dropping the registration, while the file descriptor is still open.
///
/// `repr(C)`: what every operation reads (the slot pointer, the counters)
/// comes first, so that it shares a cache line with whatever precedes it in
/// the owning socket; the rest is read on registration changes only.
#[repr(C)]
pub struct Registration {
    /// Points into a page of `shared.table`.
    slot: NonNull<Slot>,
    /// Kept here, next to `slot` (which every operation reads anyway), and
    /// not in the table: the table's slot stays one cache line.
    rx_done: Completions,
    tx_done: Completions,
    shared: Arc<Shared>,
    /// The slot's index in the table (below `MAX_SLOTS`, so it fits).
    index: u32,
    /// The source is registered for writing too (see
    /// [`Handle::register_readable`]). Only ever goes from `false` to `true`.
    writable: AtomicBool,
    /// Registered as a stream, with urgent data (see
    /// [`Handle::register_stream`]); kept when write interest is armed.
    stream: bool,
}

/// How one direction's operations completed: on their first attempt
/// (`sync`) or after parking on the cell and being woken (`parked`).
///
/// Counted with a relaxed load and store, not a read-modify-write (a locked
/// instruction on every operation, for statistics): exact when one
/// operation at a time completes in each direction, as when one task uses
/// it. Nothing enforces that for operations that complete on their first
/// attempt (they never reserve the cell), so when two threads complete
/// operations of one direction at once, a count may be lost: the figures
/// are then approximate.
///
/// ```
/// let done = cellio_reactor::Completions::default();
/// done.record(false);
/// done.record(true);
/// done.record(false);
/// assert_eq!((done.sync(), done.parked()), (2, 1));
/// ```
#[derive(Debug, Default)]
pub struct Completions {
    /// Indexed by "parked": `[sync, parked]`, so recording is one indexed
    /// increment with no branch.
    counts: [AtomicU64; 2],
}

impl Completions {
    /// Counts a completed operation: `parked` says whether it had to wait
    /// for the reactor.
    #[inline]
    pub fn record(&self, parked: bool) {
        let counter = &self.counts[usize::from(parked)];
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// Operations completed on their first attempt, without parking.
    pub fn sync(&self) -> u64 {
        self.counts[0].load(Ordering::Relaxed)
    }

    /// Operations completed after parking and being woken by the reactor.
    pub fn parked(&self) -> u64 {
        self.counts[1].load(Ordering::Relaxed)
    }
}

// SAFETY: `slot` points at a `Slot` (atomics and `OpCell`s, which are
// `Sync`) in a page that lives as long as `shared`, which we own a reference
// to; sending or sharing the pointer is as safe as sharing `&Slot`.
unsafe impl Send for Registration {}
// SAFETY: as above; all access through the pointer is shared (`&Slot`).
unsafe impl Sync for Registration {}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("index", &self.index)
            .field("rx", self.rx())
            .field("tx", self.tx())
            .finish()
    }
}

impl Registration {
    #[inline]
    fn slot(&self) -> &Slot {
        // SAFETY: table invariant 1: pages are never freed or moved while
        // the table lives, and `self.shared` keeps the table alive.
        unsafe { self.slot.as_ref() }
    }

    /// The receive-direction cell (also used by `accept`).
    #[inline]
    pub fn rx(&self) -> &OpCell {
        &self.slot().rx
    }

    /// The send-direction cell (also used by `connect`).
    #[inline]
    pub fn tx(&self) -> &OpCell {
        &self.slot().tx
    }

    /// How the receive direction's operations completed.
    #[inline]
    pub fn rx_completions(&self) -> &Completions {
        &self.rx_done
    }

    /// How the send direction's operations completed.
    #[inline]
    pub fn tx_completions(&self) -> &Completions {
        &self.tx_done
    }

    /// Makes sure the poller reports writability for `source`, which must
    /// be the source this was registered for. A no-op (one load) once armed.
    ///
    /// Call it after a send found the socket full and before parking on the
    /// send cell: when the interest is added, the poller reports the socket
    /// at once if it has become writable meanwhile, so that readiness is
    /// not lost — it bumps the cell's sequence like any other notification,
    /// and the park that follows sees it.
    #[inline]
    pub fn arm_writable<S: Source + ?Sized>(&self, source: &mut S) -> io::Result<()> {
        if self.writable.load(Ordering::Acquire) {
            return Ok(());
        }
        self.arm_writable_slow(source)
    }

    #[cold]
    #[inline(never)]
    fn arm_writable_slow<S: Source + ?Sized>(&self, source: &mut S) -> io::Result<()> {
        // The slot keeps our generation for as long as we live.
        let generation = self.slot().generation.load(Ordering::Relaxed);
        let token = token_of(generation, locator(self.index as usize));
        self.shared
            .registry
            .reregister(source, token, interest(true, self.stream))?;
        // Two sends racing here both reregister, which is harmless.
        self.writable.store(true, Ordering::Release);
        tracing::trace!(index = self.index, "write interest armed");
        Ok(())
    }

    /// Removes `source` from the poller. Call before closing it.
    pub fn deregister<S: Source + ?Sized>(&self, source: &mut S) -> io::Result<()> {
        self.shared.registry.deregister(source)
    }

    /// `true` when the calling thread is the one the socket's reactor is
    /// [bound](Reactor::bind_to_current_thread) to: the thread that turns
    /// it, and the only one that notifies the socket's cells.
    pub fn is_bound_here(&self) -> bool {
        self.shared.bound_thread.load(Ordering::Acquire) == thread_id()
    }

    /// The [`thread_id`] of the thread the
    /// socket's reactor was [bound](Reactor::bind_to_current_thread) to
    /// when the socket was registered, or 0 if it was not bound then (or
    /// the number does not fit 32 bits). On that thread, and only there,
    /// the cells' holders may use
    /// [`OpCell::release_on_reactor_thread`] (a runtime worker binds its
    /// reactor before it registers anything). One load from the slot's
    /// line, which the cells share.
    ///
    /// ```
    /// use cellio_reactor::{thread_words::thread_id, Reactor};
    ///
    /// let mut reactor = Reactor::new()?;
    /// // SAFETY: this test's thread turns the reactor and drops it.
    /// unsafe { reactor.bind_to_current_thread()? };
    /// let mut socket = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
    /// let registration = reactor.handle().register_readable(&mut socket)?;
    /// assert_eq!(registration.reactor_thread(), thread_id());
    /// assert!(registration.is_bound_here());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline(always)]
    pub fn reactor_thread(&self) -> u64 {
        u64::from(self.slot().reactor_thread.load(Ordering::Relaxed))
    }

    /// A handle to the reactor this registration belongs to.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        tracing::debug!(index = self.index, "deregistered");
        self.shared.table.remove(self.index as usize);
    }
}
