//! A worker's mailbox: where other threads leave it messages (wakes, spawned
//! tasks, cancelled timers), and the lock-free decision whether the worker
//! must be woken to take them.
//!
//! The messages sit behind a mutex that only cross-thread traffic takes; a
//! [`SleepGate`] decides, without the lock, whether the worker may block in
//! its reactor and whether a poster must wake it.
//!
//! # Invariants
//!
//! * A poster leaves its message and raises the gate's `pending` flag in one
//!   critical section; the worker lowers the flag and takes every message in
//!   one critical section. So while the flag is down, every message left so
//!   far has been taken.
//! * A message is never stranded: either the worker takes it before it
//!   blocks, or the message's poster learns that the worker sleeps (or is
//!   about to) and wakes it. Both may happen (a spurious wake-up), never
//!   neither. The loom models at the bottom check this against this code,
//!   with loom's mutex and atomics.

use crate::sleep_gate::SleepGate;
use crate::sync::{Mutex, MutexGuard};
use std::sync::PoisonError;

/// Messages of type `S` (the state behind the lock) for one worker.
pub(crate) struct Mailbox<S> {
    gate: SleepGate,
    state: Mutex<S>,
}

impl<S> Mailbox<S> {
    pub(crate) fn new(state: S) -> Self {
        Self {
            gate: SleepGate::new(),
            state: Mutex::new(state),
        }
    }

    /// The state, for changes that are not messages (setting up or tearing
    /// down the owner, side channels that never wake it).
    pub(crate) fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leaves a message. `leave` runs under the lock and says whether it
    /// left one (`false`: the owner is gone, nothing to wake). If it did and
    /// the owner sleeps or is about to, `waker` runs, still under the lock,
    /// and its result comes back for the caller to wake the owner with once
    /// the lock is released.
    pub(crate) fn post<R>(
        &self,
        leave: impl FnOnce(&mut S) -> bool,
        waker: impl FnOnce(&S) -> R,
    ) -> Option<R> {
        let mut state = self.lock();
        if !leave(&mut state) {
            return None;
        }
        self.gate.post().then(|| waker(&state))
    }

    /// Owner side: `true` if messages may be waiting (one load, no lock).
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        self.gate.has_pending()
    }

    /// Owner side: takes the messages. `take` runs under the lock, after the
    /// pending flag is lowered, and must take every message.
    pub(crate) fn take<R>(&self, take: impl FnOnce(&mut S) -> R) -> R {
        let mut state = self.lock();
        self.gate.take_pending();
        take(&mut state)
    }

    /// Owner side: declares it is about to block. `false` (and it must not
    /// block) if a message arrived: it takes the messages first.
    #[inline]
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.gate.prepare_sleep()
    }

    /// Owner side: awake again; posters need not wake it.
    #[inline]
    pub(crate) fn woke_up(&self) {
        self.gate.woke_up();
    }

    /// The owner is leaving and the caller has discarded its messages
    /// (under the lock): the gate starts over, for the next owner.
    pub(crate) fn reset_gate(&self) {
        self.gate.take_pending();
        self.gate.woke_up();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    type Mail = Mailbox<Vec<u32>>;

    /// Posts message `m`; `true` if the owner must be woken.
    fn post(mailbox: &Mail, m: u32) -> bool {
        mailbox
            .post(
                |messages| {
                    messages.push(m);
                    true
                },
                |_| (),
            )
            .is_some()
    }

    /// The owner's loop turn: takes what is pending, then decides to sleep.
    /// Returns what it took and whether it blocks.
    fn turn(mailbox: &Mail) -> (Vec<u32>, bool) {
        let mut taken = Vec::new();
        if mailbox.has_pending() {
            taken = mailbox.take(std::mem::take);
        }
        let blocks = mailbox.prepare_sleep();
        (taken, blocks)
    }

    /// Spawns a poster; the yield after the spawn is a scheduling point
    /// (loom 0.7.2 does not always explore the spawned thread running first
    /// on its own; see reactor/tests/loom_cell.rs).
    fn spawn_poster(mailbox: &Arc<Mail>, m: u32) -> thread::JoinHandle<bool> {
        let mailbox = mailbox.clone();
        let poster = thread::spawn(move || post(&mailbox, m));
        thread::yield_now();
        poster
    }

    /// One poster against the owner's turn: the message is taken before the
    /// owner blocks, or its poster wakes the owner; either way the owner
    /// ends up with it exactly once.
    #[test]
    fn a_message_is_taken_or_its_poster_wakes_the_owner() {
        loom::model(|| {
            let mailbox = Arc::new(Mailbox::new(Vec::new()));
            let poster = spawn_poster(&mailbox, 1);
            let (mut taken, blocks) = turn(&mailbox);
            let woke = poster.join().unwrap();
            if blocks {
                assert!(
                    woke || taken == [1],
                    "the owner blocks with message 1 left and nobody wakes it"
                );
                mailbox.woke_up();
            }
            // The next turn (woken, or not blocked at all) takes the rest.
            if mailbox.has_pending() {
                taken.extend(mailbox.take(std::mem::take));
            }
            assert_eq!(taken, [1]);
        });
    }

    /// Two posters racing each other and the owner: whatever the owner has
    /// not taken when it blocks, some poster of it wakes the owner.
    #[test]
    fn two_posters_strand_nothing() {
        loom::model(|| {
            let mailbox = Arc::new(Mailbox::new(Vec::new()));
            let a = spawn_poster(&mailbox, 1);
            let b = spawn_poster(&mailbox, 2);
            let (mut taken, blocks) = turn(&mailbox);
            let woke = [a.join().unwrap(), b.join().unwrap()];
            if blocks {
                let stranded: Vec<u32> =
                    [1, 2].into_iter().filter(|m| !taken.contains(m)).collect();
                assert!(
                    stranded.is_empty() || woke.contains(&true),
                    "the owner blocks with {stranded:?} left and nobody wakes it"
                );
                mailbox.woke_up();
            }
            if mailbox.has_pending() {
                taken.extend(mailbox.take(std::mem::take));
            }
            taken.sort_unstable();
            assert_eq!(taken, [1, 2]);
        });
    }

    /// A post to an owner that is gone leaves nothing and wakes nobody.
    #[test]
    fn a_refused_post_wakes_nobody() {
        loom::model(|| {
            let mailbox: Mail = Mailbox::new(Vec::new());
            assert!(mailbox.prepare_sleep());
            let woken = mailbox.post(|_| false, |_| ());
            assert!(woken.is_none());
            assert!(!mailbox.has_pending());
        });
    }
}
