//! `SIGPIPE` kept from cellio's own calls.
//!
//! A send on a stream socket passes `MSG_NOSIGNAL` (or the socket has
//! `SO_NOSIGPIPE`), so a closed peer is a `BrokenPipe` error and nothing
//! else. Three calls take no such flag: `splice(2)` into a socket,
//! `sendfile(2)`, and a `write(2)` to a pipe (a child's standard input,
//! `AsyncFd`'s `AsyncWrite`). When one fails with `EPIPE` the kernel also
//! raises `SIGPIPE` on the calling thread, which ends a program that
//! restored its default action (Rust's `main` ignores it; a program that
//! wants `yes | head` to end quietly restores it). So `cellio-net` makes
//! those calls through [`around`]:
//!
//! * On a runtime's background worker, which blocked `SIGPIPE` for its
//!   life as it started ([`block_for_thread`]), [`around`] just calls: one
//!   thread-local read. A raised signal stays pending there, never
//!   delivered. A thread started from a task on such a worker inherits the
//!   blocked signal, as any thread inherits its creator's mask; the
//!   runtime's blocking pool undoes cellio's block as its threads start
//!   ([`Inherited`]): they run the program's blocking code, which meets
//!   `SIGPIPE` as on any thread of the program (still blocked if the
//!   program had blocked it where the worker was started).
//! * On `block_on`'s thread (worker 0, the caller's), which `block_on`
//!   marks with an [`InBlockOn`] guard, the first such call blocks it, and
//!   it stays blocked until `block_on` returns (or unwinds), when the guard
//!   takes a `SIGPIPE` a call raised and unblocks it: one thread-local read
//!   per call, three syscalls per `block_on` that made one. A thread
//!   started from a task there after that first call inherits the block,
//!   as from a worker (and the blocking pool's threads undo it the same
//!   way).
//! * On any other thread (a future polled by another executor), [`around`]
//!   blocks it for the one call and unblocks it after, first taking a
//!   `SIGPIPE` the call raised: three syscalls per call. (On worker 0 of
//!   the splicing proxy, the two `pthread_sigmask` calls alone cost
//!   4.5–6% of its CPU per message at 16 KiB, up to 15% at 64 B,
//!   2026-12-07: hence the two cases above.)
//!
//! # Invariants
//!
//! * Only `SIGPIPE`'s bit of a thread's mask is touched, and it is
//!   unblocked again (after [`around`] on another thread, as `block_on`
//!   returns, on a blocking-pool thread started where cellio had blocked
//!   it) only if cellio blocked it: a thread that had it blocked keeps
//!   it, and any signal pending (its owner blocked it to see them). So
//!   where cellio blocks it, it notes whether it was blocked already
//!   (`was_blocked`), and a thread started there learns it through
//!   [`Inherited`].
//! * A pending `SIGPIPE` is taken only where cellio blocked it, after a
//!   call (on a thread cellio knows nothing of) or as `block_on` returns:
//!   any call may have raised it, a splice even when it returns a count
//!   (a later send inside it failed). One the program or another process
//!   raised there meanwhile is taken too.
//! * The thread-local state trusts the mask: code that changes `SIGPIPE`'s
//!   bit on a worker, or in `block_on` after cellio blocked it, is on its
//!   own.

use std::cell::Cell;
use std::io;

/// What cellio knows of `SIGPIPE` on this thread.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Here {
    /// Nothing: each call blocks it around itself.
    Other,
    /// In `block_on`, no call made yet.
    InBlockOn,
    /// In `block_on`, after the first call: blocked until it returns,
    /// unblocked then unless it `was_blocked` already.
    BlockedInBlockOn { was_blocked: bool },
    /// A background worker: blocked for the thread's life; `was_blocked`
    /// if the mask it inherited had it blocked already (the program's).
    Worker { was_blocked: bool },
}

thread_local! {
    static HERE: Cell<Here> = const { Cell::new(Here::Other) };
}

/// A signal set holding `SIGPIPE` only.
fn sigpipe_only() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigemptyset` initialises the set it is given, and
    // `sigaddset` adds a valid signal number to that initialised set.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        set.assume_init()
    }
}

/// Changes `SIGPIPE`'s bit of this thread's mask (`how`: `SIG_BLOCK` or
/// `SIG_UNBLOCK`); whether it was blocked before.
fn change_mask(how: libc::c_int) -> bool {
    let set = sigpipe_only();
    let mut before = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` is an initialised signal set and `before` has room
    // for the mask `pthread_sigmask` writes.
    let failed = unsafe { libc::pthread_sigmask(how, &set, before.as_mut_ptr()) };
    // Only a bad `how` or pointer fails; neither can happen here.
    debug_assert_eq!(failed, 0, "pthread_sigmask");
    // SAFETY: the call succeeded, so it wrote the previous mask.
    failed == 0 && unsafe { libc::sigismember(before.as_ptr(), libc::SIGPIPE) } == 1
}

/// Blocks `SIGPIPE` on this thread for its life: for a runtime's
/// background worker as it starts (threads it starts inherit it).
pub fn block_for_thread() {
    // Miri runs no signals (and has no pthread_sigmask): as if the
    // program had blocked it, so that nothing unblocks it either.
    let was_blocked = cfg!(miri) || change_mask(libc::SIG_BLOCK);
    HERE.with(|h| h.set(Here::Worker { was_blocked }));
}

/// What a thread started from this one inherits of a `SIGPIPE` block
/// cellio added here: taken with [`Inherited::here`] on the starting
/// thread, and given to the new thread, whose [`Inherited::undo`] then
/// unblocks it only if cellio (not the program) blocked it. For a
/// runtime's helper threads that run the program's own blocking code, so
/// that it meets `SIGPIPE` as the program set it.
///
/// ```
/// use cellio_reactor::sigpipe::{blocked_and_pending_here, Inherited};
///
/// // A plain thread: cellio blocked nothing here, so nothing is undone.
/// let inherited = Inherited::here();
/// std::thread::spawn(move || {
///     inherited.undo();
///     assert_eq!(blocked_and_pending_here(), (false, false));
/// })
/// .join()
/// .unwrap();
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use = "give it to the new thread, which calls `undo`"]
pub struct Inherited {
    /// `SIGPIPE` is blocked on the starting thread by cellio, and was not
    /// before.
    blocked_by_cellio: bool,
}

impl Inherited {
    /// What cellio blocked on this thread, for a thread it is about to
    /// start. One thread-local read.
    pub fn here() -> Inherited {
        let blocked_by_cellio = matches!(
            HERE.with(Cell::get),
            Here::Worker { was_blocked: false } | Here::BlockedInBlockOn { was_blocked: false }
        );
        Inherited { blocked_by_cellio }
    }

    /// On the new thread: unblocks `SIGPIPE` if it inherited cellio's
    /// block; a block the program set stays.
    pub fn undo(self) {
        if self.blocked_by_cellio {
            change_mask(libc::SIG_UNBLOCK);
        }
        HERE.with(|h| h.set(Here::Other));
    }
}

/// `block_on` on this thread: a call that can raise `SIGPIPE` blocks it
/// until the guard drops, which takes a `SIGPIPE` such a call raised and
/// unblocks it (unless it was blocked before). Costs a thread-local write
/// each way when no such call is made.
#[derive(Debug)]
pub struct InBlockOn(());

impl InBlockOn {
    /// Marks this thread as in `block_on` until the guard drops.
    #[inline]
    pub fn enter() -> InBlockOn {
        HERE.with(|h| {
            if h.get() == Here::Other {
                h.set(Here::InBlockOn);
            }
        });
        InBlockOn(())
    }
}

impl Drop for InBlockOn {
    #[inline]
    fn drop(&mut self) {
        match HERE.with(|h| h.replace(Here::Other)) {
            Here::BlockedInBlockOn { was_blocked } => leave_block_on(was_blocked),
            // Not a state `enter` leaves: a worker stays one.
            worker @ Here::Worker { .. } => HERE.with(|h| h.set(worker)),
            Here::Other | Here::InBlockOn => {}
        }
    }
}

/// `block_on` returns after a call blocked `SIGPIPE`: takes one a call
/// raised (any call: a splice can raise it and still return a count, when
/// a later send inside it failed) and unblocks it.
#[cold]
fn leave_block_on(was_blocked: bool) {
    if !was_blocked {
        take_pending(&sigpipe_only());
        change_mask(libc::SIG_UNBLOCK);
    }
}

/// Runs `call`, a syscall that can raise `SIGPIPE` when it fails with
/// `EPIPE`, so that it raises none (see the module docs for where it is
/// blocked, and for how long).
///
/// ```
/// use std::io::Write;
///
/// let (reader, mut writer) = std::io::pipe()?;
/// drop(reader);
/// let written = cellio_reactor::sigpipe::around(|| writer.write(b"to nowhere"));
/// assert_eq!(written.unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
/// # Ok::<(), std::io::Error>(())
/// ```
#[inline]
pub fn around<T>(call: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    match HERE.with(Cell::get) {
        Here::Worker { .. } | Here::BlockedInBlockOn { .. } => call(),
        Here::InBlockOn => first_in_block_on(call),
        Here::Other => around_blocking(call),
    }
}

/// [`around`]'s first call in a `block_on`: blocks `SIGPIPE` until it
/// returns. The state is set before the call, so that the guard unblocks
/// it also if the call unwinds.
#[cold]
fn first_in_block_on<T>(call: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let was_blocked = change_mask(libc::SIG_BLOCK);
    HERE.with(|h| h.set(Here::BlockedInBlockOn { was_blocked }));
    call()
}

/// [`around`] on a thread cellio knows nothing of: blocks `SIGPIPE` for
/// the one call, then takes one it raised (whatever it returned: a splice
/// can raise it and still return a count) and unblocks it, also if the
/// call unwinds.
#[cold]
fn around_blocking<T>(call: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    /// Takes a raised `SIGPIPE` and unblocks it as it drops.
    struct Unblock;
    impl Drop for Unblock {
        fn drop(&mut self) {
            take_pending(&sigpipe_only());
            change_mask(libc::SIG_UNBLOCK);
        }
    }
    let was_blocked = change_mask(libc::SIG_BLOCK);
    // Made only if needed: dropping an `Unblock` unblocks.
    let _unblock = (!was_blocked).then(|| Unblock);
    call()
}

/// Whether `SIGPIPE` is blocked on this thread, and whether one is
/// pending (on it or the process): for tests and diagnostics.
///
/// ```
/// let (blocked, _pending) = cellio_reactor::sigpipe::blocked_and_pending_here();
/// assert!(!blocked, "a plain thread has it unblocked");
/// ```
pub fn blocked_and_pending_here() -> (bool, bool) {
    let mut mask = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut pending = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: a null new set only reads the mask into `mask`; `sigpending`
    // fills `pending`; each is read only after its call succeeded.
    unsafe {
        let read = libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), mask.as_mut_ptr()) == 0
            && libc::sigpending(pending.as_mut_ptr()) == 0;
        assert!(read, "pthread_sigmask or sigpending failed");
        (
            libc::sigismember(mask.as_ptr(), libc::SIGPIPE) == 1,
            libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1,
        )
    }
}

/// Takes a pending `SIGPIPE` without waiting (`sigtimedwait` with a zero
/// timeout; where that is missing, `sigwait` once `sigpending` shows one,
/// so it does not wait either).
fn take_pending(set: &libc::sigset_t) {
    #[cfg(not(target_vendor = "apple"))]
    {
        let now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `set` is initialised; no siginfo is asked for; `now` is
        // a valid timeout.
        unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &now) };
    }
    #[cfg(target_vendor = "apple")]
    {
        let mut pending = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        let mut taken: libc::c_int = 0;
        // With SIGPIPE blocked and pending here, `sigwait` returns at once.
        // SAFETY: `pending` is read only after `sigpending` filled it;
        // `set` is initialised and `taken` has room for the number.
        unsafe {
            if libc::sigpending(pending.as_mut_ptr()) == 0
                && libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1
            {
                libc::sigwait(set, &mut taken);
            }
        }
    }
}

// Not under Miri: it has no signals (no pthread_sigmask).
#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    use super::*;

    /// Raises `SIGPIPE` on this thread and fails with `EPIPE`, as a failed
    /// splice does.
    fn raise() -> io::Result<()> {
        // SAFETY: raising a signal on this thread; `around` blocked it.
        let sent = unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGPIPE) };
        assert_eq!(sent, 0);
        Err(io::Error::from_raw_os_error(libc::EPIPE))
    }

    #[test]
    fn around_a_call_that_raised_it_takes_the_signal_and_unblocks() {
        std::thread::spawn(|| {
            assert_eq!(blocked_and_pending_here(), (false, false));
            let during = around(|| {
                let during = blocked_and_pending_here();
                raise().map(|()| during)
            });
            assert_eq!(during.unwrap_err().raw_os_error(), Some(libc::EPIPE));
            assert_eq!(blocked_and_pending_here(), (false, false));
            assert_eq!(
                around(|| Ok(blocked_and_pending_here())).unwrap(),
                (true, false)
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_that_blocked_it_itself_keeps_it_and_its_pending_signal() {
        std::thread::spawn(|| {
            change_mask(libc::SIG_BLOCK);
            assert!(around(raise).is_err());
            assert_eq!(blocked_and_pending_here(), (true, true));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn in_block_on_blocked_from_the_first_call_until_it_returns() {
        std::thread::spawn(|| {
            let guard = InBlockOn::enter();
            assert_eq!(
                blocked_and_pending_here(),
                (false, false),
                "nothing before a call"
            );
            assert!(around(raise).is_err());
            assert_eq!(blocked_and_pending_here(), (true, true));
            assert!(around(|| Ok(())).is_ok());
            drop(guard);
            assert_eq!(blocked_and_pending_here(), (false, false));
            // And a block_on that made no such call changes nothing.
            drop(InBlockOn::enter());
            assert_eq!(blocked_and_pending_here(), (false, false));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn blocked_for_a_threads_life_and_unblocked_in_a_thread_it_starts() {
        std::thread::spawn(|| {
            block_for_thread();
            assert!(around(raise).is_err());
            assert_eq!(blocked_and_pending_here(), (true, true));
            let inherited = Inherited::here();
            std::thread::spawn(move || {
                assert_eq!(blocked_and_pending_here(), (true, false), "inherited");
                inherited.undo();
                assert_eq!(blocked_and_pending_here(), (false, false));
            })
            .join()
            .unwrap();
        })
        .join()
        .unwrap();
    }

    /// A thread that had `SIGPIPE` blocked before cellio blocked it (the
    /// program's): a thread started from it keeps the block after
    /// [`Inherited::undo`]. (It was unblocked whatever the program had
    /// set; found by a review.)
    #[test]
    fn a_block_the_program_set_stays_in_a_thread_started_from_a_worker() {
        std::thread::spawn(|| {
            change_mask(libc::SIG_BLOCK);
            block_for_thread();
            let inherited = Inherited::here();
            std::thread::spawn(move || {
                inherited.undo();
                assert_eq!(blocked_and_pending_here(), (true, false));
            })
            .join()
            .unwrap();
        })
        .join()
        .unwrap();
    }

    /// The same from `block_on`'s thread: undone only if cellio blocked it
    /// at its first call.
    #[test]
    fn in_block_on_a_thread_started_inherits_only_cellios_block_undone() {
        for program_blocked in [false, true] {
            std::thread::spawn(move || {
                if program_blocked {
                    change_mask(libc::SIG_BLOCK);
                }
                let _guard = InBlockOn::enter();
                assert!(around(|| Ok(())).is_ok());
                let inherited = Inherited::here();
                std::thread::spawn(move || {
                    inherited.undo();
                    assert_eq!(blocked_and_pending_here(), (program_blocked, false));
                })
                .join()
                .unwrap();
            })
            .join()
            .unwrap();
        }
    }
}
