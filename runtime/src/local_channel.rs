//! A bounded channel between tasks of one worker: no atomic instruction
//! and no allocation per message.
//!
//! A cellio task stays on the worker that spawned it, so tasks that talk
//! to each other often share a thread (a connection's reader and writer,
//! a per-worker hub and its connections). Between them a message needs no
//! synchronisation: [`channel`] makes a [`Sender`] and a [`Receiver`] that
//! share a ring of `capacity` slots through an `Rc`. Neither is `Send`;
//! for messages between workers or threads, use a `Send` channel
//! (`futures-channel`, `async-channel`, `flume`).
//!
//! ```compile_fail,E0277
//! fn needs_send<T: Send>(_: T) {}
//! let (tx, _rx) = cellio_runtime::local_channel::channel::<u32>(1);
//! needs_send(tx); // a local channel stays on its worker
//! ```
//!
//! `send` waits while the ring is full; `recv` waits while it is empty and
//! returns `None` once every sender is gone and the ring is drained. A
//! sender gets its message back in a [`SendError`] when the receiver is
//! gone (or [closed](Receiver::close)). Dropping the receiver drops the
//! messages still queued, as tokio's `mpsc` does.
//!
//! # Fairness
//!
//! A `recv` that finds a message, and a `send` that finds room, spend one
//! unit of the task's cooperative budget, as a socket operation does (see
//! [`Builder::budget`](crate::Builder::budget)); one that waits spends
//! nothing. Once the budget is spent the call returns `Pending` with its
//! task already woken, taking or leaving nothing (the message stays first
//! in the ring, the value stays in the send), so a task looping over a
//! channel that always has messages ready (its senders are faster, or
//! filled it beforehand) gives way to the other tasks of its worker every
//! budget's worth of messages and goes on at its next poll, as it would
//! with tokio's `mpsc`. [`try_send`](Sender::try_send) and
//! [`try_recv`](Receiver::try_recv) spend nothing (they cannot yield).
//!
//! # Invariants
//!
//! * The ring holds at most `capacity` messages; it is allocated with room
//!   for them in [`channel`] and never grows.
//! * A send that finds no room registers in `waiters` (a slab: its key
//!   stays with the future) and joins the back of the queue, first in,
//!   first out: a list linked through the slab's entries (`head`, `tail`,
//!   each waiter's `prev` and `next`), so a send dropped from anywhere in
//!   it leaves in O(1). When a slot frees, one waiter leaves the front of the queue,
//!   *notified*: the slot is promised to it (`promised` counts such
//!   slots), and only it is woken. So a freed slot wakes one task, not
//!   every waiting one, and a send that comes later cannot take it:
//!   `ring.len() + promised <= capacity`, and a send without a promise
//!   takes a slot only while that sum is below `capacity`.
//! * A notified send takes its slot at its next poll. A send dropped
//!   while notified gives its promise back and notifies the next waiter
//!   in its place, so a cancelled send never strands the others; one
//!   dropped while waiting leaves the queue. A waiter is `queued` exactly
//!   while it is linked in the queue; it leaves the slab only unlinked
//!   (`remove_waiter`).
//! * Closing wakes every waiter (each then fails with its value).
//! * `waiters` keeps its memory (the queue has none of its own), so it
//!   allocates only when more sends wait at once than ever before.
//! * No borrow of the shared state is held across a wake: wakers are
//!   taken out under the borrow and woken after it.
//! * The receiver's drop drops the messages still in the ring, one at a
//!   time and with no borrow held (a message's drop may drop a sender of
//!   this channel). A message that holds a sender of its own channel
//!   would otherwise keep the `Rc` alive for good.
//!
//! # Examples
//!
//! ```
//! use cellio_runtime::{local_channel, spawn_local, Runtime};
//!
//! let rt = Runtime::new()?;
//! let total = rt.block_on(async {
//!     let (tx, mut rx) = local_channel::channel::<u64>(16);
//!     for i in 0..4 {
//!         let tx = tx.clone();
//!         spawn_local(async move {
//!             for j in 0..100 {
//!                 tx.send(i * 100 + j).await.expect("the receiver is there");
//!             }
//!         });
//!     }
//!     drop(tx);
//!     let mut total = 0;
//!     while let Some(value) = rx.recv().await {
//!         total += value;
//!     }
//!     total
//! });
//! assert_eq!(total, (0..400).sum());
//! # Ok::<(), std::io::Error>(())
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use cellio_reactor::budget;
use slab::Slab;

/// A channel for up to `capacity` messages in flight (at least 1): its
/// sending and receiving ends. The ring is allocated here, once.
///
/// # Panics
///
/// If the ring cannot be allocated: `capacity` messages of `T` are more
/// than the address space or the allocator can give (`usize::MAX`, say).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let mut ring = VecDeque::new();
    if let Err(error) = ring.try_reserve_exact(capacity) {
        panic!("local_channel::channel: no room for a ring of {capacity} messages: {error}");
    }
    let shared = Rc::new(RefCell::new(State {
        ring,
        capacity,
        receiver_waker: None,
        waiters: Slab::new(),
        head: NIL,
        tail: NIL,
        promised: 0,
        senders: 1,
        open: true,
    }));
    (
        Sender {
            shared: Rc::clone(&shared),
        },
        Receiver { shared },
    )
}

struct State<T> {
    ring: VecDeque<T>,
    capacity: usize,
    receiver_waker: Option<Waker>,
    /// Sends waiting for a slot, or notified of one (see the module
    /// invariants); each future keeps its key.
    waiters: Slab<Waiter>,
    /// The queue of waiting (not yet notified) sends, linked through
    /// `waiters`: the key of the oldest and of the newest ([`NIL`] when
    /// empty).
    head: usize,
    tail: usize,
    /// Free slots promised to notified sends.
    promised: usize,
    /// Live `Sender`s.
    senders: usize,
    /// `false` once the receiver is gone or closed.
    open: bool,
}

type Shared<T> = Rc<RefCell<State<T>>>;

/// No waiter: the end of the queue.
const NIL: usize = usize::MAX;

/// A send waiting for a slot: its waker (taken when it is woken), whether
/// a slot is promised to it, and its place in the queue.
struct Waiter {
    waker: Option<Waker>,
    notified: bool,
    /// Linked in the queue (waiting: neither notified nor woken by a
    /// close).
    queued: bool,
    /// The keys of its neighbours in the queue, older and newer ([`NIL`]
    /// for none), while `queued`.
    prev: usize,
    next: usize,
}

impl<T> State<T> {
    /// `true` if a send without a promise may take a slot now.
    fn has_free_slot(&self) -> bool {
        self.ring.len() + self.promised < self.capacity
    }

    /// If a slot is free and unpromised, promises it to the oldest waiting
    /// send and returns that send's waker, to wake once the borrow is
    /// released.
    fn notify_next(&mut self) -> Option<Waker> {
        if !self.has_free_slot() {
            return None;
        }
        let key = self.pop_front()?;
        let waiter = &mut self.waiters[key];
        waiter.notified = true;
        self.promised += 1;
        waiter.waker.take()
    }

    /// Registers a waiting send at the back of the queue: its key.
    fn enqueue(&mut self, waker: Waker) -> usize {
        let tail = self.tail;
        let key = self.waiters.insert(Waiter {
            waker: Some(waker),
            notified: false,
            queued: true,
            prev: tail,
            next: NIL,
        });
        match tail {
            NIL => self.head = key,
            tail => self.waiters[tail].next = key,
        }
        self.tail = key;
        key
    }

    /// Takes waiter `key` out of the queue, if it is in it: O(1).
    fn unlink(&mut self, key: usize) {
        let waiter = &mut self.waiters[key];
        if !waiter.queued {
            return;
        }
        waiter.queued = false;
        let (prev, next) = (waiter.prev, waiter.next);
        match prev {
            NIL => self.head = next,
            prev => self.waiters[prev].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.waiters[next].prev = prev,
        }
    }

    /// Takes the oldest waiting send out of the queue: its key.
    fn pop_front(&mut self) -> Option<usize> {
        let key = self.head;
        if key == NIL {
            return None;
        }
        self.unlink(key);
        Some(key)
    }

    /// Forgets waiter `key` (its send completed or was dropped), out of
    /// the queue first if it is in it.
    fn remove_waiter(&mut self, key: usize) -> Waiter {
        self.unlink(key);
        self.waiters.remove(key)
    }
}

/// Wakes the oldest waiting send if a slot is free for it.
fn wake_next_sender<T>(shared: &Shared<T>) {
    let waker = shared.borrow_mut().notify_next();
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Wakes every waiting send (the channel closed: each will fail), one at
/// a time, so that no list of wakers is built.
fn wake_all_senders<T>(shared: &Shared<T>) {
    loop {
        let waker = {
            let mut state = shared.borrow_mut();
            let Some(key) = state.pop_front() else {
                return;
            };
            state.waiters[key].waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Wakes the receiver, if it waits.
fn wake_receiver<T>(shared: &Shared<T>) {
    let waker = shared.borrow_mut().receiver_waker.take();
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The sending end of a [`channel`]; clone it for more senders.
pub struct Sender<T> {
    shared: Shared<T>,
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full. Fails, giving the
    /// value back, if the receiver is gone or closed. Cancel-safe: a
    /// dropped call has sent nothing (the value is dropped with it).
    ///
    /// Waiting sends get slots in the order they began to wait, and a
    /// freed slot wakes only the send it goes to. A send that finds room
    /// spends a unit of the task's budget (see the module's
    /// [Fairness](self#fairness)).
    ///
    /// The future panics if polled again after it completed (it has no
    /// value left to send).
    pub fn send(&self, value: T) -> Send<'_, T> {
        Send {
            sender: self,
            value: Some(value),
            key: None,
        }
    }

    /// Sends `value` if there is room now.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut state = self.shared.borrow_mut();
        if !state.open {
            return Err(TrySendError::Closed(value));
        }
        if !state.has_free_slot() {
            return Err(TrySendError::Full(value));
        }
        state.ring.push_back(value);
        drop(state);
        wake_receiver(&self.shared);
        Ok(())
    }

    /// `true` once the receiver is gone or closed: every send fails.
    pub fn is_closed(&self) -> bool {
        !self.shared.borrow().open
    }

    /// How many more messages fit now (slots promised to sends that were
    /// waiting do not count).
    pub fn capacity(&self) -> usize {
        let state = self.shared.borrow();
        state.capacity - state.ring.len() - state.promised
    }

    /// The most messages the channel holds.
    pub fn max_capacity(&self) -> usize {
        self.shared.borrow().capacity
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.borrow_mut().senders += 1;
        Self {
            shared: Rc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut state = self.shared.borrow_mut();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            wake_receiver(&self.shared); // it sees the end
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.borrow();
        f.debug_struct("Sender")
            .field("queued", &state.ring.len())
            .field("capacity", &state.capacity)
            .field("closed", &!state.open)
            .finish()
    }
}

/// Future of [`Sender::send`].
#[must_use = "futures do nothing unless polled"]
pub struct Send<'a, T> {
    sender: &'a Sender<T>,
    value: Option<T>,
    /// Its key in the waiters, while it waits or is notified.
    key: Option<usize>,
}

impl<T> Unpin for Send<'_, T> {}

impl<T> Future for Send<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(value) = this.value.take() else {
            panic!("a cellio local_channel Send polled after it completed");
        };
        let mut state = this.sender.shared.borrow_mut();
        if !state.open {
            if let Some(key) = this.key.take() {
                if state.remove_waiter(key).notified {
                    state.promised -= 1;
                }
            }
            return Poll::Ready(Err(SendError(value)));
        }
        let sends = match this.key {
            // A slot was promised to this send: it is free.
            Some(key) if state.waiters[key].notified => true,
            Some(key) => {
                let waker = &mut state.waiters[key].waker;
                match waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                false
            }
            None if state.has_free_slot() => true,
            None => {
                this.key = Some(state.enqueue(cx.waker().clone()));
                false
            }
        };
        if !sends {
            this.value = Some(value);
            return Poll::Pending;
        }
        // It can send: spend a unit of the task's budget first (see the
        // module's "Fairness"). With the budget spent it keeps its value
        // and its promise, if it has one, for its next poll; the wake
        // comes after the borrow is released.
        if budget::poll_proceed_anywhere(Waker::noop()).is_pending() {
            this.value = Some(value);
            drop(state);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let Some(key) = this.key.take() {
            // The slot promised to it (the only way a waiting send sends).
            state.remove_waiter(key);
            state.promised -= 1;
        }
        state.ring.push_back(value);
        drop(state);
        wake_receiver(&this.sender.shared);
        Poll::Ready(Ok(()))
    }
}

impl<T> Drop for Send<'_, T> {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut state = self.sender.shared.borrow_mut();
        // Out of the queue, if it waited there, in O(1).
        if state.remove_waiter(key).notified {
            // Its promised slot goes to the next waiting send.
            state.promised -= 1;
            drop(state);
            wake_next_sender(&self.sender.shared);
        }
    }
}

impl<T> fmt::Debug for Send<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Send")
            .field("pending", &self.value.is_some())
            .finish()
    }
}

/// The receiving end of a [`channel`].
pub struct Receiver<T> {
    shared: Shared<T>,
}

impl<T> Receiver<T> {
    /// The next message, waiting while the channel is empty; `None` once
    /// every sender is gone (or the channel was closed) and nothing is
    /// left. Cancel-safe: a dropped call has taken nothing. A receive that
    /// finds a message spends a unit of the task's budget (see the
    /// module's [Fairness](self#fairness)).
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`recv`](Self::recv) as a poll method, for hand-written futures and
    /// streams.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.borrow_mut();
        if !state.ring.is_empty() {
            // A message is there: spend a unit of the task's budget before
            // taking it (see the module's "Fairness"). With the budget
            // spent, the message stays first in the ring for the task's
            // next poll; the wake comes after the borrow is released.
            if budget::poll_proceed_anywhere(Waker::noop()).is_pending() {
                drop(state);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let value = state.ring.pop_front();
            drop(state);
            wake_next_sender(&self.shared);
            return Poll::Ready(value);
        }
        if state.senders == 0 || !state.open {
            return Poll::Ready(None);
        }
        match &mut state.receiver_waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next message if there is one now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.borrow_mut();
        match state.ring.pop_front() {
            Some(value) => {
                drop(state);
                wake_next_sender(&self.shared);
                Ok(value)
            }
            None if state.senders == 0 || !state.open => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Closes the channel: further sends fail (waiting ones too), and the
    /// messages already in it can still be received.
    pub fn close(&mut self) {
        self.shared.borrow_mut().open = false;
        wake_all_senders(&self.shared);
    }

    /// How many messages are waiting.
    pub fn len(&self) -> usize {
        self.shared.borrow().ring.len()
    }

    /// `true` if no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
        // The messages left go with the receiver (as tokio's do): nobody
        // can receive them. One at a time with no borrow held, since a
        // message may hold a sender of this very channel, whose drop
        // borrows the state.
        // Taken out whole and dropped with no borrow held: a message whose
        // drop panics does not stop the rest being dropped (as a
        // `VecDeque`'s own drop goes on), and the channel is closed, so
        // a message's drop cannot queue another.
        let ring = std::mem::take(&mut self.shared.borrow_mut().ring);
        drop(ring);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.borrow();
        f.debug_struct("Receiver")
            .field("queued", &state.ring.len())
            .field("capacity", &state.capacity)
            .field("senders", &state.senders)
            .finish()
    }
}

/// The receiver is gone or closed: the value that was not sent.
#[derive(PartialEq, Eq)]
pub struct SendError<T>(pub T);

/// Why [`Sender::try_send`] did not send: the value comes back.
#[derive(PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The channel holds `capacity` messages.
    Full(T),
    /// The receiver is gone or closed.
    Closed(T),
}

/// Why [`Receiver::try_recv`] got nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing is waiting now; senders remain.
    Empty,
    /// Nothing is waiting, and no sender remains (or the channel was
    /// closed).
    Disconnected,
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the channel's receiver is gone or closed")
    }
}

impl<T> std::error::Error for SendError<T> {}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the channel is full"),
            TrySendError::Closed(_) => f.write_str("the channel's receiver is gone or closed"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("the channel is empty"),
            TryRecvError::Disconnected => f.write_str("the channel is empty and has no sender"),
        }
    }
}

impl std::error::Error for TryRecvError {}
