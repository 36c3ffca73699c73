//! The driver's long-lived child processes, and the signals that stop the driver.
//!
//! Every server, client, valgrind, perf, strace and `count_allocs.py` the driver starts is
//! spawned through [`spawn`], in a process group of its own (so that whatever it starts in
//! turn is killed with it), and held by a [`Guard`] that kills its group when dropped. A
//! signal's default action would end the driver without running any `Drop`, leaving a pinned
//! server (or a valgrind'd one, or a tracer) running for ever; so [`stop_children_on_signals`]
//! blocks SIGINT, SIGTERM and SIGHUP in every thread of the driver and takes them in one
//! thread of its own, which kills every live child's group and exits with 128 + the signal.
//! A child inherits the signal mask, so [`spawn`] unblocks the three in it before its exec:
//! the servers still stop on the SIGTERM and perf and strace on the SIGINT the driver sends
//! them.
//!
//! A signal that cannot be caught (SIGKILL: `timeout -s KILL`, `timeout -k`'s second step,
//! `kill -9 -- -PGID`, a CI runner's hard kill) runs nothing in the driver, and a group kill
//! misses the children's own groups; so on Linux [`spawn`] also sets each child's parent-death
//! signal to SIGKILL (`PR_SET_PDEATHSIG`), and the child checks its parent is still the driver
//! once that is set (it exits if the driver died first). The kernel sends that signal when the
//! thread that forked the child exits, so every child is spawned from the main thread, which
//! lives as long as the driver (checked in [`spawn`]). What a child starts in turn (the server
//! `count_allocs.py` runs) is not covered by this: it is killed with its group on a catchable
//! signal only. Elsewhere than Linux a SIGKILL'd driver leaves its children running.
//!
//! Invariant: a child is in the [`LIVE`] registry from before [`spawn`] returns until its
//! group has been killed (or it has exited and been reaped) in [`Guard`]'s `Drop`; the
//! registry's lock is held across the spawn and by the signal thread from its kill to the
//! process's exit, so no child starts unseen after a signal nor escapes one. Ctrl-C goes to the
//! driver's process group only (the children's are their own), and is handled the same way.
//!
//! Children the driver waits for at once (`cc`, the user-time floor loop, `tick_bias`, `dd`)
//! are not registered and keep the blocked mask: a signal does not stop them, they end by
//! themselves (within a run's length) after the driver exits.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The pids (each also its process group's id) of the children spawned and not yet stopped.
static LIVE: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn live() -> MutexGuard<'static, BTreeSet<u32>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A child in a process group of its own, whose group is killed (SIGKILL) and the child
/// reaped when this is dropped, so no server or client outlives the driver's error paths.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = self.0.id();
        // Not reaped yet (`try_wait` reaps it if it has exited): the pid, and so the group id,
        // is still this child's.
        if let Ok(None) = self.0.try_wait() {
            kill_group(pid);
        }
        live().remove(&pid);
        let _ = self.0.wait();
    }
}

/// Spawns `command` in a process group of its own, with the signals the driver blocks
/// unblocked, and registers it until its [`Guard`] is dropped. On Linux the child is also
/// killed (SIGKILL) when the driver dies, however it dies.
///
/// Call it from the driver's main thread only (it panics otherwise): the kernel sends the
/// parent-death signal when the *thread* that forked the child exits, and only the main
/// thread lives as long as the driver.
pub fn spawn(command: &mut Command) -> std::io::Result<Guard> {
    assert_eq!(
        std::thread::current().name(),
        Some("main"),
        "children::spawn called off the main thread: its children would be killed when that \
         thread exits (PR_SET_PDEATHSIG follows the forking thread)"
    );
    let stop_signals = stop_signals();
    // Taken before the fork: the child compares its parent with it to see whether the driver
    // died before the parent-death signal was set up.
    #[cfg(target_os = "linux")]
    let driver = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before its exec and only calls
    // sigprocmask(2), prctl(2) and getppid(2), which are async-signal-safe, on values it owns
    // copies of, and builds an `io::Error` from an errno, which does not allocate.
    unsafe {
        command.pre_exec(move || {
            libc::sigprocmask(libc::SIG_UNBLOCK, &stop_signals, std::ptr::null_mut());
            #[cfg(target_os = "linux")]
            {
                // A SIGKILL'd driver runs no code: the kernel must stop the child for it.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // The driver died between the fork and the prctl: the signal was not sent.
                if libc::getppid() != driver {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            Ok(())
        });
    }
    let mut live = live();
    let child = command.process_group(0).spawn()?;
    live.insert(child.id());
    Ok(Guard(child))
}

/// SIGINT, SIGTERM and SIGHUP, as a signal set.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: `set` is initialised by sigemptyset before any other use, and the calls only
    // write it.
    unsafe {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(set.as_mut_ptr(), signal);
        }
        set.assume_init()
    }
}

fn kill_group(pid: u32) {
    // SAFETY: kill(2) only sends a signal; `-pid` names the process group `spawn` made the
    // child lead, whose leader is not yet reaped (see the callers).
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and every thread it starts from
/// now on (call it first in `main`), and starts a thread that waits for them: on one, it
/// kills every live child's process group and exits with status 128 + the signal.
pub fn stop_children_on_signals(prog: &'static str) {
    let set = stop_signals();
    // SAFETY: only changes the calling thread's signal mask, from a valid set.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    std::thread::spawn(move || loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: `set` is a valid signal set and `signal` a valid place for the answer.
        if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
            continue;
        }
        // Held until the exit: no child starts after this.
        let live = live();
        for &pid in live.iter() {
            kill_group(pid);
        }
        eprintln!(
            "{prog}: stopped by signal {signal}; killed {} child process group(s)",
            live.len()
        );
        std::process::exit(128 + signal);
    });
}
