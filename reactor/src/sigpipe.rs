//! `SIGPIPE` blocked on a thread while cellio's own calls can raise it.
//!
//! A send on a stream socket passes `MSG_NOSIGNAL` (or the socket has
//! `SO_NOSIGPIPE`), so a closed peer is a `BrokenPipe` error and nothing
//! else. Three calls take no such flag: `splice(2)`, `sendfile(2)` and a
//! `write(2)` to a pipe (a child's standard input). When one fails with
//! `EPIPE` the kernel also sends `SIGPIPE` to the calling thread, which
//! ends a program that restored its default action (Rust's `main` ignores
//! it; a program that wants `yes | head` to end quietly restores it).
//!
//! So before such a call `cellio-net` calls [`block_here`]: the first time
//! on a thread it blocks `SIGPIPE` there (one `pthread_sigmask`), and the
//! signal, if raised, stays pending on that thread, never delivered. A
//! runtime's own worker threads keep it blocked for their life. The thread
//! that calls `block_on` is the caller's: `block_on` calls
//! [`unblock_here`] as it returns (or unwinds), which takes a pending
//! `SIGPIPE` off the thread (`sigtimedwait` with a zero timeout) and
//! unblocks it again.
//!
//! # Invariants
//!
//! * Nothing is done on a thread that never makes one of those calls: the
//!   cost elsewhere is one thread-local read per `block_on`.
//! * [`unblock_here`] unblocks only what [`block_here`] blocked: a thread
//!   that had `SIGPIPE` blocked already keeps it blocked, and any signal
//!   pending on it too (its owner blocked it to see them).
//! * Only `SIGPIPE`'s bit of the mask changes: a mask the caller (or a
//!   signal library) changed meanwhile is kept.
//!
//! A `SIGPIPE` another process sends to this one while every thread blocks
//! it is pending for the process, and [`unblock_here`] takes it too: it
//! cannot tell it from one its thread raised. Such a signal is rare (a
//! `kill -PIPE`), and the process ignores it or is ended by it.

use std::cell::Cell;

/// What [`block_here`] did on this thread.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Nothing yet (or [`unblock_here`] undid it).
    Untouched,
    /// Blocked by cellio: [`unblock_here`] unblocks it.
    Blocked,
    /// It was blocked already: left as it is.
    AlreadyBlocked,
}

thread_local! {
    static STATE: Cell<State> = const { Cell::new(State::Untouched) };
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

/// Blocks `SIGPIPE` on this thread, the first time only: call before a
/// `splice`, `sendfile` or pipe `write` that could raise it. A thread-local
/// read after the first time.
///
/// ```
/// cellio_reactor::sigpipe::block_here();
/// // A failed splice(2) or sendfile(2) here is an error, not a signal.
/// cellio_reactor::sigpipe::unblock_here();
/// ```
#[inline]
pub fn block_here() {
    if STATE.with(Cell::get) == State::Untouched {
        block_now();
    }
}

#[cold]
fn block_now() {
    let set = sigpipe_only();
    let mut before = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` is an initialised signal set and `before` has room
    // for the mask `pthread_sigmask` writes.
    let failed = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, before.as_mut_ptr()) };
    if failed != 0 {
        // Only a bad `how` or pointer fails; neither can happen here.
        return;
    }
    // SAFETY: the call succeeded, so it wrote the previous mask.
    let was_blocked = unsafe { libc::sigismember(before.as_ptr(), libc::SIGPIPE) } == 1;
    let state = if was_blocked {
        State::AlreadyBlocked
    } else {
        State::Blocked
    };
    STATE.with(|s| s.set(state));
}

/// Undoes [`block_here`] on this thread, if it blocked `SIGPIPE`: takes a
/// `SIGPIPE` pending meanwhile, then unblocks it. For a thread that goes
/// back to its owner (`block_on`'s caller); a thread-local read if
/// [`block_here`] was not called.
#[inline]
pub fn unblock_here() {
    match STATE.with(Cell::get) {
        State::Untouched => {}
        State::AlreadyBlocked => STATE.with(|s| s.set(State::Untouched)),
        State::Blocked => unblock_now(),
    }
}

#[cold]
fn unblock_now() {
    let set = sigpipe_only();
    let mut pending = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `pending` has room for the set `sigpending` writes; it is
    // read only if the call succeeded.
    let has_pending = unsafe {
        libc::sigpending(pending.as_mut_ptr()) == 0
            && libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1
    };
    if has_pending {
        take_pending(&set);
    }
    // SAFETY: `set` is an initialised signal set; no old mask is asked for.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    STATE.with(|s| s.set(State::Untouched));
}

/// Takes the pending `SIGPIPE` without waiting (`sigtimedwait`, or
/// `sigwait` where that is missing: it returns at once, as one is
/// pending).
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
        let mut taken: libc::c_int = 0;
        // SAFETY: `set` is initialised and `taken` has room for the
        // signal number; a SIGPIPE is pending, so it does not wait.
        unsafe { libc::sigwait(set, &mut taken) };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Whether `SIGPIPE` is blocked on this thread.
    fn blocked() -> bool {
        let mut mask = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: a null new set only reads the mask into `mask`.
        unsafe {
            assert_eq!(
                libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), mask.as_mut_ptr()),
                0
            );
            libc::sigismember(mask.as_ptr(), libc::SIGPIPE) == 1
        }
    }

    /// Whether `SIGPIPE` is pending on this thread (or the process).
    fn pending() -> bool {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `sigpending` fills `set`.
        unsafe {
            assert_eq!(libc::sigpending(set.as_mut_ptr()), 0);
            libc::sigismember(set.as_ptr(), libc::SIGPIPE) == 1
        }
    }

    #[test]
    fn blocks_then_takes_a_raised_signal_and_unblocks() {
        std::thread::spawn(|| {
            assert!(!blocked());
            block_here();
            block_here();
            assert!(blocked());
            // SAFETY: raising a signal on this thread; it is blocked.
            assert_eq!(
                unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGPIPE) },
                0
            );
            assert!(pending());
            unblock_here();
            assert!(!blocked());
            assert!(!pending(), "the raised SIGPIPE was left pending");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_that_blocked_it_itself_keeps_it_blocked() {
        std::thread::spawn(|| {
            let set = sigpipe_only();
            // SAFETY: `set` is initialised; no old mask asked for.
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
            block_here();
            unblock_here();
            assert!(blocked());
        })
        .join()
        .unwrap();
    }
}
