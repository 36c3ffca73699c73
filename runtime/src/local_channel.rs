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
//! gone (or [closed](Receiver::close)).
//!
//! # Invariants
//!
//! * The ring holds at most `capacity` messages; it is allocated with room
//!   for them in [`channel`] and never grows.
//! * Every task waiting to send has its waker in `waiting_senders` (a
//!   future registers once per round of wake-ups, and again only if its
//!   waker changed); when a slot frees, every waiting sender is woken, the
//!   list emptied, and a new round begins. A sender woken for a slot that
//!   another took registers again. Waking all (not one) means a dropped
//!   sender future never strands the others.
//! * The list of waiting senders keeps its memory between rounds (two
//!   vectors trade places), so it allocates only when more senders wait at
//!   once than ever before.
//! * No borrow of the shared state is held across a wake.
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

/// A channel for up to `capacity` messages in flight (at least 1): its
/// sending and receiving ends. The ring is allocated here, once.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let shared = Rc::new(RefCell::new(State {
        ring: VecDeque::with_capacity(capacity),
        capacity,
        receiver_waker: None,
        waiting_senders: Vec::new(),
        spare: Vec::new(),
        round: 0,
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
    /// Wakers of the senders waiting for a slot, this round.
    waiting_senders: Vec<Waker>,
    /// The other list, empty, keeping its memory for the next round.
    spare: Vec<Waker>,
    /// Counts the rounds of wake-ups (see the module invariants).
    round: u64,
    /// Live `Sender`s.
    senders: usize,
    /// `false` once the receiver is gone or closed.
    open: bool,
}

type Shared<T> = Rc<RefCell<State<T>>>;

/// Wakes every sender waiting for a slot, and starts a new round.
fn wake_senders<T>(shared: &Shared<T>) {
    let mut woken = {
        let mut state = shared.borrow_mut();
        if state.waiting_senders.is_empty() {
            return;
        }
        state.round += 1;
        let spare = std::mem::take(&mut state.spare);
        std::mem::replace(&mut state.waiting_senders, spare)
    };
    woken.drain(..).for_each(Waker::wake);
    shared.borrow_mut().spare = woken;
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
    /// The future panics if polled again after it completed (it has no
    /// value left to send).
    pub fn send(&self, value: T) -> Send<'_, T> {
        Send {
            sender: self,
            value: Some(value),
            registered: None,
        }
    }

    /// Sends `value` if there is room now.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut state = self.shared.borrow_mut();
        if !state.open {
            return Err(TrySendError::Closed(value));
        }
        if state.ring.len() == state.capacity {
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

    /// How many more messages fit now.
    pub fn capacity(&self) -> usize {
        let state = self.shared.borrow();
        state.capacity - state.ring.len()
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
    /// The round and place this future's waker was listed in.
    registered: Option<(u64, usize)>,
}

impl<T> Unpin for Send<'_, T> {}

impl<T> Future for Send<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(value) = this.value.take() else {
            panic!("a cellio local_channel Send polled after it completed");
        };
        match this.sender.try_send(value) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(TrySendError::Closed(value)) => Poll::Ready(Err(SendError(value))),
            Err(TrySendError::Full(value)) => {
                this.value = Some(value);
                let mut state = this.sender.shared.borrow_mut();
                let round = state.round;
                match this.registered {
                    Some((r, index)) if r == round => {
                        let listed = &mut state.waiting_senders[index];
                        if !listed.will_wake(cx.waker()) {
                            listed.clone_from(cx.waker());
                        }
                    }
                    _ => {
                        this.registered = Some((round, state.waiting_senders.len()));
                        state.waiting_senders.push(cx.waker().clone());
                    }
                }
                Poll::Pending
            }
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
    /// left. Cancel-safe: a dropped call has taken nothing.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`recv`](Self::recv) as a poll method, for hand-written futures and
    /// streams.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.try_recv() {
            Ok(value) => Poll::Ready(Some(value)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => {
                let mut state = self.shared.borrow_mut();
                match &mut state.receiver_waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// The next message if there is one now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.borrow_mut();
        match state.ring.pop_front() {
            Some(value) => {
                drop(state);
                wake_senders(&self.shared);
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
        wake_senders(&self.shared);
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
