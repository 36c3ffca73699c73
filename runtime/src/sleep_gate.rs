//! How a worker goes to sleep in its reactor without missing a message from
//! another thread, and without taking a lock.
//!
//! Two flags in the store-buffer (Dekker) pattern: a poster *sets
//! `pending`, then reads `sleeping`*; the worker *sets `sleeping`, then
//! reads `pending`*, each side with a `SeqCst` fence between its store and
//! its load. The fences are totally ordered, so at least one side sees the
//! other's store: either the worker notices the message and does not block,
//! or the poster notices the sleeper and wakes its reactor. Both may happen
//! (a spurious wake-up), never neither (a lost one).
//!
//! (`SeqCst` on the accesses alone would do in C++'s model, but the fences
//! say it where the reasoning needs it, and loom checks fences exactly.)
//!
//! The loom model at the bottom checks exactly that.

use crate::sync::{fence, AtomicBool, Ordering};

#[derive(Debug, Default)]
pub(crate) struct SleepGate {
    /// Messages are waiting in the inbox.
    pending: AtomicBool,
    /// The worker is blocked in (or about to block in) its reactor.
    sleeping: AtomicBool,
}

impl SleepGate {
    pub(crate) fn new() -> Self {
        Self {
            pending: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
        }
    }

    /// Poster side, after queueing a message: `true` if the worker sleeps
    /// and must be woken (the caller wakes its reactor).
    #[inline]
    pub(crate) fn post(&self) -> bool {
        self.pending.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.sleeping.swap(false, Ordering::Relaxed)
    }

    /// Worker side: `true` if messages are pending (cheap check).
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Worker side, about to take the messages: clears `pending`.
    #[inline]
    pub(crate) fn take_pending(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }

    /// Worker side: declares it is about to block. `false` (and it must not
    /// block) if a message arrived.
    #[inline]
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.pending.load(Ordering::Relaxed) {
            self.sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Worker side: awake again.
    #[inline]
    pub(crate) fn woke_up(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Another thread posts a message. The yield after the spawn is a
    /// scheduling point: loom 0.7.2 does not always explore the spawned
    /// thread running first on its own (see the note in
    /// reactor/tests/loom_cell.rs, `let_the_other_thread_run_first`).
    fn spawn_poster(gate: &Arc<SleepGate>) -> thread::JoinHandle<bool> {
        let gate = gate.clone();
        let poster = thread::spawn(move || gate.post());
        thread::yield_now();
        poster
    }

    /// A message posted from another thread while the worker decides to
    /// sleep is never lost: if the worker blocks, the poster wakes it.
    #[test]
    fn a_post_never_misses_a_sleeping_worker() {
        loom::model(|| {
            let gate = Arc::new(SleepGate::default());
            let poster = spawn_poster(&gate);
            let blocks = gate.prepare_sleep();
            let woke = poster.join().unwrap();
            if blocks {
                assert!(woke, "the worker sleeps and nobody wakes it");
            }
        });
    }

    /// After the worker took the messages and went back to sleep, a second
    /// post still wakes it.
    #[test]
    fn a_second_post_after_a_drain_wakes_again() {
        loom::model(|| {
            let gate = Arc::new(SleepGate::default());
            gate.post();
            assert!(!gate.prepare_sleep(), "a pending message keeps it awake");
            gate.take_pending();
            let poster = spawn_poster(&gate);
            let blocks = gate.prepare_sleep();
            let woke = poster.join().unwrap();
            if blocks {
                assert!(woke);
            }
            gate.woke_up();
        });
    }
}
