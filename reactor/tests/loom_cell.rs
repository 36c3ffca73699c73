//! loom models of the op cell: every interleaving (up to loom's preemption
//! bound) of an operation parking, cancelling or being reused while the
//! reactor notifies or closes the cell from another thread.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p cellio-reactor --release --test loom_cell
//! ```
#![cfg(loom)]

use std::sync::Arc;
use std::task::{Wake, Waker};

use cellio_reactor::{CellError, OpCell, Park, Readiness, Token};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

/// A waker that counts its wakes.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (counter.clone(), Waker::from(counter))
}

fn wakes(counter: &CountingWaker) -> usize {
    counter.0.load(Ordering::SeqCst)
}

/// Runs `body` under loom with a fresh cell and a counting waker.
fn model(body: fn(Arc<OpCell>, Arc<CountingWaker>, Waker)) {
    loom::model(move || {
        let cell = Arc::new(OpCell::new());
        let (counter, waker) = counting_waker();
        body(cell, counter, waker);
    });
}

/// A fresh operation parks on `cell` with `waker` (nothing races it yet):
/// its snapshot and token.
fn park_fresh(cell: &OpCell, waker: &Waker) -> (Readiness, Token) {
    let seen = cell.observe().unwrap();
    let token = cell.reserve().unwrap();
    assert_eq!(cell.park(token, seen, waker).unwrap(), Park::Parked);
    (seen, token)
}

/// Gives loom a scheduling point so that it also explores the spawned
/// thread running ahead of this one.
///
/// loom 0.7.2 does not explore every interleaving on its own here: a model
/// where a spawned thread does `load` then `compare_exchange` on an atomic
/// that the main thread only loads runs a single iteration, in which the
/// main thread never sees the CAS (a model with just that reproduces it). A
/// deliberately broken `park_idle` passed these models until this yield was
/// added after each spawn; with it, it fails.
fn let_the_other_thread_run_first() {
    thread::yield_now();
}

/// The reactor's side, on another thread: one notification.
fn spawn_notifier(cell: &Arc<OpCell>) -> thread::JoinHandle<()> {
    let cell = cell.clone();
    thread::spawn(move || cell.notify())
}

/// An operation parks while the reactor notifies from another thread: a
/// notification that arrives after the operation's snapshot is never lost.
/// Either `park` sees it (Retry), or the parked waker is woken exactly once.
/// (A notification before the snapshot is already in it.)
#[test]
fn park_vs_notify_never_loses_a_wake() {
    model(|cell, counter, waker| {
        let notifier = spawn_notifier(&cell);
        let_the_other_thread_run_first();

        let seen = cell.observe().unwrap();
        let token = cell.reserve().unwrap();
        let parked = cell.park(token, seen, &waker).unwrap();
        notifier.join().unwrap();

        let after = cell.observe_reserved(token).unwrap();
        assert_eq!(after.sequence(), 1, "the notification is counted once");
        let notified_after_snapshot = seen.sequence() == 0;
        match parked {
            Park::Parked if notified_after_snapshot => {
                assert_eq!(wakes(&counter), 1, "parked but never woken")
            }
            _ => assert_eq!(wakes(&counter), 0, "woken without being parked"),
        }
        cell.release(token).unwrap();
        assert_eq!(cell.reserve().map(|t| t.generation()), Ok(1));
    });
}

/// The holder is polled again (perhaps with a new waker) while a
/// notification races: every notification that came after the holder's
/// last snapshot wakes the waker it finally parked with.
#[test]
fn repoll_with_new_waker_vs_notify() {
    loom::model(|| {
        let cell = Arc::new(OpCell::new());
        let (_first_counter, first) = counting_waker();
        let (second_counter, second) = counting_waker();

        let seen = cell.observe().unwrap();
        let token = cell.reserve().unwrap();
        assert_eq!(cell.park(token, seen, &first).unwrap(), Park::Parked);

        let notifier = spawn_notifier(&cell);
        let_the_other_thread_run_first();

        // A spurious re-poll: take the cell back, "attempt", park again.
        let last_seen = cell.observe_reserved(token).unwrap();
        let parked = cell.park(token, last_seen, &second).unwrap();
        notifier.join().unwrap();

        let now = cell.observe_reserved(token).unwrap();
        let notified_after_snapshot = now.sequence() != last_seen.sequence();
        if parked == Park::Parked && notified_after_snapshot {
            assert_eq!(wakes(&second_counter), 1, "late notification lost");
        }
        cell.release(token).unwrap();
    });
}

/// The holder cancels (its future is dropped) while the reactor notifies:
/// the cell ends idle with the next generation, the waker is woken at most
/// once, and the cancelled token is stale.
#[test]
fn cancel_vs_notify_leaves_the_cell_reusable() {
    model(|cell, counter, waker| {
        let (_, token) = park_fresh(&cell, &waker);

        let notifier = spawn_notifier(&cell);
        let_the_other_thread_run_first();
        cell.release(token).unwrap();
        notifier.join().unwrap();

        assert!(wakes(&counter) <= 1);
        assert_eq!(cell.observe_reserved(token), Err(CellError::Stale));
        let next = cell.reserve().unwrap();
        assert_eq!(next.generation(), token.generation() + 1);
        assert_eq!(cell.release(token), Err(CellError::Stale));
        cell.release(next).unwrap();
    });
}

/// A released cell is reserved again by a new operation while the reactor
/// keeps notifying: the old (stale) token is refused everywhere, the new
/// operation's park is woken or retried, never lost.
#[test]
fn release_and_reuse_with_a_stale_future() {
    model(|cell, counter, waker| {
        let old = cell.reserve().unwrap();
        cell.release(old).unwrap();

        let notifier = spawn_notifier(&cell);
        let_the_other_thread_run_first();

        let seen = cell.observe().unwrap();
        let new = cell.reserve().unwrap();
        assert_ne!(old, new);
        assert_eq!(cell.park(old, seen, &waker), Err(CellError::Stale));
        assert_eq!(cell.observe_reserved(old), Err(CellError::Stale));
        let parked = cell.park(new, seen, &waker).unwrap();
        notifier.join().unwrap();

        let now = cell.observe_reserved(new).unwrap();
        if parked == Park::Parked && now.sequence() != seen.sequence() {
            assert_eq!(wakes(&counter), 1);
        }
        assert_eq!(cell.release(old), Err(CellError::Stale));
        cell.release(new).unwrap();
    });
}

/// The reactor shuts down (closes the cell) while an operation parks: the
/// operation is either refused with `Closed` or woken, and any later park
/// is refused: nothing sleeps forever.
#[test]
fn close_vs_park_never_strands_an_operation() {
    model(|cell, counter, waker| {
        let closer = {
            let cell = cell.clone();
            thread::spawn(move || cell.close())
        };
        let_the_other_thread_run_first();

        let seen = cell.observe().unwrap();
        let token = cell.reserve().unwrap();
        let parked = cell.park(token, seen, &waker);
        closer.join().unwrap();

        match parked {
            Ok(Park::Parked) => assert_eq!(wakes(&counter), 1),
            Ok(Park::Retry) | Err(CellError::Closed) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
        let again = cell.observe_reserved(token).unwrap();
        assert_eq!(cell.park(token, again, &waker), Err(CellError::Closed));
        cell.release(token).unwrap();
    });
}

/// Two notifiers (e.g. a readiness event and a close) race a parked
/// operation: exactly one of them takes the waker, and the sequence counts
/// both.
#[test]
fn two_notifiers_wake_once_and_count_twice() {
    model(|cell, counter, waker| {
        let (seen, token) = park_fresh(&cell, &waker);

        let a = spawn_notifier(&cell);
        let_the_other_thread_run_first();
        cell.notify();
        a.join().unwrap();

        assert_eq!(wakes(&counter), 1);
        let now = cell.observe_reserved(token).unwrap();
        assert_eq!(now.sequence(), seen.sequence() + 2);
        cell.release(token).unwrap();
    });
}

/// The socket is dropped (its slot reset for reuse) while an operation is
/// parked and the reactor notifies: the notifier and `reset` never touch the
/// waker slot at once, the parked waker is woken at most once, the old
/// token is stale afterwards, and the reset cell starts a clean, working
/// protocol (its next park is woken by the next notification).
#[test]
fn reset_vs_notify_of_a_parked_operation() {
    model(|cell, counter, waker| {
        let (_, token) = park_fresh(&cell, &waker);

        let notifier = spawn_notifier(&cell);
        let_the_other_thread_run_first();
        cell.reset();
        notifier.join().unwrap();

        assert!(wakes(&counter) <= 1);
        assert_eq!(cell.observe_reserved(token), Err(CellError::Stale));

        let (next_counter, next_waker) = counting_waker();
        let seen = cell.observe().unwrap();
        let next = cell.reserve().unwrap();
        assert_ne!(next, token);
        assert_eq!(cell.park(next, seen, &next_waker).unwrap(), Park::Parked);
        cell.notify();
        assert_eq!(wakes(&next_counter), 1);
        cell.release(next).unwrap();
    });
}

/// A woken operation's attempt proves the socket drained and it releases
/// the cell with `release_exhausted` (whose fast path compares against the
/// snapshot itself, without a load) while the reactor notifies: the cell is
/// left `EXHAUSTED` exactly when the notification came before the snapshot.
/// One arriving after it must clear the mark, or the next operation would
/// park without a syscall and sleep through readiness that already came.
#[test]
fn release_exhausted_vs_notify_never_hides_readiness() {
    model(|cell, _counter, waker| {
        let (_, token) = park_fresh(&cell, &waker);
        cell.notify(); // the wake that makes the operation attempt again
        let notifier = spawn_notifier(&cell);
        let_the_other_thread_run_first();

        let attempt_at = cell.observe_reserved(token).unwrap();
        // ... the attempt read less than the buffer: drained ...
        cell.release_exhausted(token, attempt_at).unwrap();
        notifier.join().unwrap();

        let after = cell.observe().unwrap();
        assert_eq!(after.sequence(), 2, "both notifications are counted");
        let notified_after_snapshot = attempt_at.sequence() == 1;
        assert_eq!(
            after.is_exhausted(),
            !notified_after_snapshot,
            "EXHAUSTED must be set only when nothing arrived after the snapshot"
        );
        assert_eq!(cell.reserve().map(|t| t.generation()), Ok(1));
    });
}

/// A `try_` method finds the socket empty (cellio-net's `ready::try_now`:
/// a snapshot, the syscall's `WouldBlock`, then `mark_exhausted` from the
/// snapshot, holding no reservation) while the reactor notifies: the mark
/// stands only if the notification came before the snapshot. One after it
/// leaves the cell unmarked, so the `readable()` that follows completes
/// instead of parking through readiness that already came.
#[test]
fn mark_exhausted_vs_notify_never_hides_readiness() {
    model(|cell, _counter, _waker| mark_vs_notify(&cell, OpCell::mark_exhausted));
}

/// The same for an attempt that said `EAGAIN` on a cell that has hung up
/// (a UDP socket whose ICMP error was read): its mark holds after the
/// hang-up, and still never hides a notification that came after the
/// snapshot.
#[test]
fn mark_would_block_after_a_hang_up_vs_notify_never_hides_readiness() {
    model(|cell, _counter, _waker| {
        cell.notify_hangup();
        mark_vs_notify(&cell, OpCell::mark_would_block);
    });
}

/// One notification on another thread races a snapshot of `cell` and
/// `mark` from it (an attempt that found the socket drained): the mark
/// stands exactly when the notification came before the snapshot.
fn mark_vs_notify(cell: &Arc<OpCell>, mark: fn(&OpCell, Readiness)) {
    let before = cell.observe().unwrap().sequence();
    let notifier = spawn_notifier(cell);
    let_the_other_thread_run_first();

    let seen = cell.observe().unwrap();
    // ... the syscall said WouldBlock ...
    mark(cell, seen);
    notifier.join().unwrap();

    let after = cell.observe().unwrap();
    assert_eq!(after.sequence(), before + 1, "the notification is counted");
    let notified_after_snapshot = seen.sequence() == before;
    assert_eq!(
        after.is_exhausted(),
        !notified_after_snapshot,
        "EXHAUSTED must be set exactly when nothing arrived after the snapshot"
    );
}

/// A parked operation is dropped (`release_abandoned`, which leaves the
/// cell `EXHAUSTED` when nothing arrived since the park) while the reactor
/// notifies: whichever comes first, the notification is counted and the
/// cell ends up free and *not* exhausted, or the next operation would park
/// without a syscall and sleep through readiness that already came.
#[test]
fn release_abandoned_vs_notify_never_hides_readiness() {
    model(|cell, counter, waker| {
        let (_, token) = park_fresh(&cell, &waker);
        let notifier = spawn_notifier(&cell);
        let_the_other_thread_run_first();

        cell.release_abandoned(token).unwrap();
        notifier.join().unwrap();

        let after = cell.observe().unwrap();
        assert_eq!(after.sequence(), 1, "the notification is counted");
        assert!(
            !after.is_exhausted(),
            "a notification after the park must clear EXHAUSTED"
        );
        assert!(wakes(&counter) <= 1, "woken at most once");
        assert_eq!(cell.reserve().map(|t| t.generation()), Ok(1));
    });
}

/// A parked holder goes away for good (`release_dropping_waker`, a task's
/// `JoinHandle` dropped) while the reactor notifies: the slot's clone of
/// the waker is dropped whichever comes first (the notifier's window is
/// waited out, never raced), the waker is woken at most once, and the cell
/// ends idle with the next generation.
#[test]
fn release_dropping_waker_vs_notify_drops_the_slots_waker() {
    model(|cell, counter, waker| {
        let (_, token) = park_fresh(&cell, &waker);
        let notifier = spawn_notifier(&cell);
        let_the_other_thread_run_first();

        cell.release_dropping_waker(token).unwrap();
        notifier.join().unwrap();

        // `counter` and `waker`: the slot holds no clone any more.
        assert_eq!(Arc::strong_count(&counter), 2);
        assert!(wakes(&counter) <= 1, "woken at most once");
        assert_eq!(cell.observe().unwrap().sequence(), 1);
        assert_eq!(cell.release_dropping_waker(token), Err(CellError::Stale));
        assert_eq!(cell.reserve().map(|t| t.generation()), Ok(1));
    });
}

/// Without a notification, an abandoned park leaves the cell exhausted, and
/// a release of the same token again is refused as stale.
#[test]
fn release_abandoned_without_notify_marks_the_cell_exhausted() {
    model(|cell, counter, waker| {
        let (_, token) = park_fresh(&cell, &waker);
        cell.release_abandoned(token).unwrap();
        assert!(cell.observe().unwrap().is_exhausted());
        assert!(cell.release_abandoned(token).is_err(), "the token is stale");
        assert_eq!(wakes(&counter), 0);
    });
}

/// The setup of the `park_idle` models: an earlier operation of the same
/// task parked with `waker`, was woken, and ended with a short read, so the
/// slot holds the task's waker and the cell is idle and exhausted.
fn after_a_short_read(cell: &OpCell, waker: &Waker) {
    let (_, token) = park_fresh(cell, waker);
    cell.notify();
    let attempt_at = cell.observe_reserved(token).unwrap();
    cell.release_exhausted(token, attempt_at).unwrap();
}

/// An operation that parked at `seen` with `token`, after the reactor's one
/// notification: it was woken exactly once (`before` wakes until then), the
/// sequence has moved past its snapshot, and it releases the cell.
fn woken_once_then_release(
    cell: &OpCell,
    counter: &CountingWaker,
    before: usize,
    token: Token,
    seen: Readiness,
) {
    assert_eq!(
        wakes(counter),
        before + 1,
        "a parked operation missed its wake"
    );
    let now = cell.observe_reserved(token).unwrap();
    assert_ne!(now.sequence(), seen.sequence());
    cell.release(token).unwrap();
}

/// A fresh operation parks straight from `IDLE` (`park_idle`, one CAS)
/// while the reactor notifies: if it parked, the notification came after its
/// snapshot and woke it exactly once; if not, nothing was woken and the cell
/// is free.
#[test]
fn park_idle_vs_notify_never_loses_a_wake() {
    model(|cell, counter, waker| {
        after_a_short_read(&cell, &waker);
        let before = wakes(&counter);

        let notifier = spawn_notifier(&cell);
        let_the_other_thread_run_first();
        let seen = cell.observe().unwrap();
        // Only an exhausted snapshot parks without a syscall.
        let parked = if seen.is_exhausted() {
            cell.park_idle(seen, &waker)
        } else {
            None
        };
        notifier.join().unwrap();

        match parked {
            Some(token) => {
                woken_once_then_release(&cell, &counter, before, token, seen);
            }
            None => {
                assert_eq!(wakes(&counter), before);
                let token = cell.reserve().unwrap();
                cell.release(token).unwrap();
            }
        }
    });
}

/// After `EAGAIN` (net's `OpState::poll_slow`): a fresh operation of the
/// same task, whose attempt at a snapshot that is *not* exhausted said
/// `EAGAIN`, parks in one CAS at that snapshot while the reactor notifies
/// (the readiness the attempt missed). If it parked, the notification came
/// after its snapshot and woke it exactly once; if not (the sequence moved),
/// nothing was woken, the cell is free, and the long way (reserve, park)
/// sees the new sequence and retries instead of sleeping.
#[test]
fn park_idle_after_eagain_vs_notify_never_loses_a_wake() {
    model(|cell, counter, waker| {
        // An earlier operation of this task parked, was woken and released
        // normally (a datagram: nothing proves the socket drained).
        let (_, token) = park_fresh(&cell, &waker);
        cell.notify();
        cell.release(token).unwrap();
        let before = wakes(&counter);
        let idle = cell.observe().unwrap();

        let notifier = spawn_notifier(&cell);
        let_the_other_thread_run_first();
        let seen = cell.observe().unwrap();
        assert!(!seen.is_exhausted());
        if seen.sequence() != idle.sequence() {
            // The notification is in the snapshot: the attempt after it
            // finds the readiness, and nothing parks.
            notifier.join().unwrap();
            assert_eq!(wakes(&counter), before);
            return;
        }
        // ... the attempt at `seen` said EAGAIN ...
        match cell.park_idle(seen, &waker) {
            Some(token) => {
                notifier.join().unwrap();
                woken_once_then_release(&cell, &counter, before, token, seen);
            }
            None => {
                let token = cell.reserve().unwrap();
                let parked = cell.park(token, seen, &waker).unwrap();
                notifier.join().unwrap();
                match parked {
                    // The notification had come after the snapshot: attempt
                    // again, never sleep through it.
                    Park::Retry => assert_eq!(wakes(&counter), before),
                    // park_idle failed for another reason and the
                    // notification is still to come: it wakes the parked op.
                    Park::Parked => assert_eq!(wakes(&counter), before + 1),
                }
                cell.release(token).unwrap();
            }
        }
    });
}

/// `park_idle` races a second operation of another task on the same
/// direction (reserve, park with its own waker, cancel). If `park_idle`
/// parked, the other never held the cell and the slot still holds our
/// task's waker: the next notification wakes us, never the other task.
#[test]
fn park_idle_vs_another_operation() {
    model(|cell, counter, waker| {
        let (other_counter, other_waker) = counting_waker();
        after_a_short_read(&cell, &waker);
        let before = wakes(&counter);

        let other = {
            let cell = cell.clone();
            thread::spawn(move || {
                let Ok(seen) = cell.observe() else {
                    return false;
                };
                let Ok(token) = cell.reserve() else {
                    return false;
                };
                let _ = cell.park(token, seen, &other_waker);
                cell.release(token).unwrap();
                true
            })
        };
        let_the_other_thread_run_first();
        let mine = cell
            .observe()
            .ok()
            .and_then(|seen| cell.park_idle(seen, &waker));
        let other_held_it = other.join().unwrap();

        if let Some(token) = mine {
            assert!(!other_held_it, "two operations held one cell");
            cell.notify();
            assert_eq!(wakes(&counter), before + 1);
            assert_eq!(wakes(&other_counter), 0, "the other task's waker was woken");
            cell.release(token).unwrap();
        }
    });
}

/// A holder that keeps its reservation across operations (`TcpIo` in
/// cellio-net, `net/src/held.rs`): a receive that drained the socket parks
/// early, before returning; the next receive stays asleep if
/// `still_parked` says so, and otherwise takes the cell back, attempts, and
/// parks with a fresh waker. Meanwhile data arrives and the reactor
/// notifies from another thread. Whatever the interleaving, the next
/// receive either gets the data or ends waiting on a waker that is woken
/// *after* it decided to wait (a wake before that decision is the lost-wake
/// bug: the task would be polled, find the cell "still parked", and sleep
/// forever). A `still_parked` that ignored the phase fails this model (checked
/// by breaking it). The late park's race with a notification is
/// `park_vs_notify_never_loses_a_wake`'s.
#[test]
fn held_reservation_early_park_never_loses_a_wake() {
    loom::model(|| {
        use loom::sync::atomic::AtomicBool;

        let cell = Arc::new(OpCell::new());
        let data = Arc::new(AtomicBool::new(false));
        let (early_counter, early) = counting_waker();
        let (late_counter, late) = counting_waker();

        // The receive that drained the socket parks early at its snapshot.
        let token = cell.reserve().unwrap();
        let drained_at = cell.observe_reserved(token).unwrap();
        assert_eq!(cell.park(token, drained_at, &early).unwrap(), Park::Parked);

        let notifier = {
            let (cell, data) = (cell.clone(), data.clone());
            thread::spawn(move || {
                data.store(true, Ordering::SeqCst); // the peer's bytes land
                cell.notify(); // then the reactor reports them
            })
        };
        let_the_other_thread_run_first();

        // The next receive, as HeldCell::poll runs it. `Some((counter,
        // wakes before deciding))` if it ends waiting.
        let before = wakes(&early_counter);
        let waiting = if cell.still_parked(token, &early) {
            Some((early_counter.clone(), before))
        } else {
            loop {
                let seen = cell.observe_reserved(token).unwrap();
                if data.load(Ordering::SeqCst) {
                    break None; // the attempt got the data
                }
                let before = wakes(&late_counter);
                match cell.park(token, seen, &late).unwrap() {
                    Park::Parked => break Some((late_counter.clone(), before)),
                    Park::Retry => continue,
                }
            }
        };
        notifier.join().unwrap();

        if let Some((counter, before)) = waiting {
            assert!(
                wakes(&counter) > before,
                "data arrived, the receive waits, and no wake came after it decided to wait"
            );
        }
        cell.release(token).unwrap();
    });
}

/// What another thread tries against a holder on the reactor's thread:
/// everything an operation on the same socket could — observe, reserve,
/// the idle park and the exhausted mark from `before` (a snapshot taken
/// before the holder's reservation), the release of the `stale` token.
/// Returns how many reservations it got (each released at once).
fn spawn_other_operations(
    cell: &Arc<OpCell>,
    before: Readiness,
    stale: Token,
) -> thread::JoinHandle<u32> {
    let cell = cell.clone();
    let other = thread::spawn(move || {
        let mut reservations = 0;
        let _ = cell.observe();
        if let Ok(token) = cell.reserve() {
            reservations += 1;
            cell.release(token).unwrap();
        }
        // The slot holds the no-op waker a fresh cell starts with.
        if let Some(token) = cell.park_idle(before, Waker::noop()) {
            reservations += 1;
            cell.release(token).unwrap();
        }
        cell.mark_exhausted(before);
        assert_eq!(cell.release(stale), Err(CellError::Stale));
        reservations
    });
    let_the_other_thread_run_first();
    other
}

/// The holder's side on the reactor's thread: reserve with `reserve`
/// (retrying while the other thread holds the cell), park, be notified by
/// this thread (the reactor's turn) and woken exactly once. Returns the
/// token and the snapshot after the notification.
fn hold_park_and_notify_here(
    cell: &OpCell,
    counter: &CountingWaker,
    waker: &Waker,
    reserve: impl Fn() -> Result<Token, CellError>,
) -> (Token, Readiness) {
    let token = loop {
        match reserve() {
            Ok(token) => break token,
            Err(CellError::Busy) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    };
    let seen = cell.observe_reserved(token).unwrap();
    assert_eq!(cell.park(token, seen, waker).unwrap(), Park::Parked);
    cell.notify(); // the reactor's turn, on this thread
    assert_eq!(wakes(counter), 1);
    let after = cell.observe_reserved(token).unwrap();
    assert_eq!(after.sequence(), seen.sequence() + 1);
    (token, after)
}

/// A confined holder (`reserve_confined`) changes the word with plain
/// stores, and its reactor notifies from the same thread. That loses
/// nothing only if no other thread writes the word while the cell is held.
/// Here another thread tries everything an operation on the same socket
/// could (`spawn_other_operations`) while the holder reserves (retrying
/// while the other one holds it), parks, is notified and releases.
/// Whatever the interleaving, the other thread's writes all land before
/// the confined reservation or are refused, so the holder is woken exactly
/// once, sees its own notification, and leaves a cell that works.
#[test]
fn a_confined_holder_loses_nothing_to_other_threads_refused_operations() {
    model(|cell, counter, waker| {
        let stale = cell.reserve().unwrap();
        cell.release(stale).unwrap();
        let before = cell.observe().unwrap();
        let other = spawn_other_operations(&cell, before, stale);

        let (token, _) = hold_park_and_notify_here(&cell, &counter, &waker, || {
            // SAFETY: from the reservation until the release, only this
            // thread changes the cell: it notifies it itself, and the
            // other thread's operations are refused (what this checks).
            unsafe { cell.reserve_confined() }
        });
        cell.release(token).unwrap();
        other.join().unwrap();

        assert!(!cell.is_confined());
        let token = cell.reserve().unwrap();
        cell.release(token).unwrap();
    });
}

/// A holder on the reactor's thread releases with a plain load and store
/// (`release_on_reactor_thread`): the release of a receive woken by its own
/// worker. Its reservation was an ordinary compare-and-swap, so nothing
/// about the future is promised; what makes the plain store exact is that
/// the cell is held and its notifier runs on this thread.
///
/// Here another thread tries everything an operation on the same socket
/// could (`spawn_other_operations`) while the holder reserves (retrying
/// while the other one holds it), parks, is notified, reads short and
/// releases with the plain store, recording the exhausted mark. The other
/// thread's writes all land before the reservation or after the release,
/// or are refused: every notification is counted, the generation moves on
/// once per reservation, and the mark is the holder's own.
#[test]
fn a_release_on_the_reactor_thread_loses_nothing_to_other_threads() {
    model(|cell, counter, waker| {
        let stale = cell.reserve().unwrap();
        cell.release(stale).unwrap();
        let before = cell.observe().unwrap();
        let generation = cell.generation();
        let other = spawn_other_operations(&cell, before, stale);

        let (token, after) = hold_park_and_notify_here(&cell, &counter, &waker, || cell.reserve());
        // ... the receive read short ...
        // SAFETY: this thread is the cell's only notifier (it notifies it
        // itself; the other thread only tries operations).
        unsafe { cell.release_on_reactor_thread(token, Some(after)) }.unwrap();
        let others = other.join().unwrap();

        let now = cell.peek();
        assert_eq!(now.sequence(), after.sequence(), "a notification was lost");
        assert_eq!(
            cell.generation(),
            generation + 1 + others,
            "a reservation was lost or doubled"
        );
        // Whatever the other thread did lands before the reservation (the
        // notification then clears its mark) or after the release, where
        // reserving and releasing keep the holder's mark and a mark from
        // the old snapshot is refused.
        assert!(now.is_exhausted(), "the holder's exhausted mark was lost");
        let token = cell.reserve().unwrap();
        cell.release(token).unwrap();
    });
}

// ---- review-unsafe: the waker slot handed from one holder to a holder on
// another thread (the models above reuse a cell only on the thread that
// released it, or after a `join`, so they never test the Release/Acquire
// pair of `release` and `reserve` that orders the two holders' slot
// accesses).

/// A holder on another thread parks (writing the slot) and releases; this
/// thread then reserves the cell and parks with its own waker (replacing,
/// so reading and dropping, the first waker). Only `release`'s Release and
/// `reserve`'s Acquire order the two holders' slot accesses.
#[test]
fn a_holder_on_another_thread_hands_the_slot_over() {
    loom::model(|| {
        let cell = Arc::new(OpCell::new());
        let (_c1, first) = counting_waker();
        let (_c2, second) = counting_waker();
        let other = {
            let cell = cell.clone();
            thread::spawn(move || {
                let Ok(seen) = cell.observe() else { return };
                let Ok(token) = cell.reserve() else { return };
                assert_eq!(cell.park(token, seen, &first).unwrap(), Park::Parked);
                let _ = cell.observe_reserved(token).unwrap();
                cell.release(token).unwrap();
            })
        };
        let_the_other_thread_run_first();
        if let Ok(seen) = cell.observe() {
            if let Ok(token) = cell.reserve() {
                let _ = cell.park(token, seen, &second);
                let _ = cell.observe_reserved(token);
                cell.release(token).unwrap();
            }
        }
        other.join().unwrap();
    });
}

/// As above, but the first holder's park loses its CAS to a notification
/// from a third thread after it stored its waker (`Retry`), so the only
/// Release after its slot write is the fast-path `release` from RESERVED.
#[test]
fn a_retried_park_then_release_hands_the_slot_over() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(|| {
        let cell = Arc::new(OpCell::new());
        let (_c1, first) = counting_waker();
        let (_c2, second) = counting_waker();
        let other = {
            let cell = cell.clone();
            thread::spawn(move || {
                let Ok(seen) = cell.observe() else { return };
                let Ok(token) = cell.reserve() else { return };
                let _ = cell.park(token, seen, &first).unwrap();
                let _ = cell.observe_reserved(token).unwrap();
                cell.release(token).unwrap();
            })
        };
        let notifier = spawn_notifier(&cell);
        let_the_other_thread_run_first();
        if let Ok(seen) = cell.observe() {
            if let Ok(token) = cell.reserve() {
                let _ = cell.park(token, seen, &second);
                let _ = cell.observe_reserved(token);
                cell.release(token).unwrap();
            }
        }
        other.join().unwrap();
        notifier.join().unwrap();
    });
}
