//! Holding a server still while the callgrind client writes a lock-step round, so that the
//! round reaches it as one batch.
//!
//! Without it, how many reactor turns a round of 20 messages takes depends on how the
//! client's writes and the server's turns happen to interleave: a server that wakes on the
//! first message and serves it before the second arrives pays a turn (an `epoll_wait` and
//! its bookkeeping) for it alone. Under callgrind that made one binary's count spread by
//! about ±10 instructions per message from run to run (2026-12-07: 449 to 472 on the
//! futures echo). With the gate, every round goes the same way: the client waits until the
//! server is idle (every thread asleep), stops it (`SIGSTOP`), writes the round, and lets it
//! go on (`SIGCONT`); its next `epoll_wait` then reports all of the round's connections at
//! once.
//!
//! Linux only (`/proc/PID/task/*/stat`), as is the rest of `echo_compare`.

use std::thread;
use std::time::{Duration, Instant};

/// A server process that [`Gate::hold`] can stop between rounds.
pub struct Gate {
    pid: libc::pid_t,
}

/// A stopped server: continued (`SIGCONT`) when dropped, on every path.
pub struct Held<'a> {
    gate: &'a Gate,
}

impl Gate {
    /// Gates process `pid` (under valgrind: valgrind's own process, which runs the server).
    pub fn new(pid: u32) -> Result<Gate, String> {
        let pid = libc::pid_t::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
        Ok(Gate { pid })
    }

    /// Waits until the server is idle, then stops it; it continues when the returned
    /// [`Held`] is dropped.
    pub fn hold(&self, limit: Duration) -> Result<Held<'_>, String> {
        self.wait_for(limit, "idle (every thread asleep)", |states| {
            states.iter().all(|&s| s == 'S')
        })?;
        // SAFETY: `kill` only sends a signal, to the server this run started and has not
        // waited for, so the pid names no other process.
        if unsafe { libc::kill(self.pid, libc::SIGSTOP) } != 0 {
            return Err(format!(
                "SIGSTOP to {}: {}",
                self.pid,
                std::io::Error::last_os_error()
            ));
        }
        let held = Held { gate: self };
        // Stopped for sure before anything is written (the signal is asynchronous).
        self.wait_for(limit, "stopped", |states| {
            states.iter().all(|&s| s == 'T' || s == 't')
        })?;
        Ok(held)
    }

    /// Polls the states of the server's threads until `done` holds for two reads in a row
    /// (a thread between two sleeps reads as asleep once), or `limit` passes.
    fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&[char]) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let mut in_a_row = 0;
        loop {
            let states = thread_states(self.pid)?;
            in_a_row = if done(&states) { in_a_row + 1 } else { 0 };
            if in_a_row == 2 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the server was not {what} within {limit:?} (thread states {states:?})"
                ));
            }
            thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `hold`: the server this run started.
        unsafe { libc::kill(self.gate.pid, libc::SIGCONT) };
    }
}

/// The scheduler state of each thread of process `pid` (`R`, `S`, `D`, `T`, ...), from
/// `/proc/PID/task/TID/stat`.
fn thread_states(pid: libc::pid_t) -> Result<Vec<char>, String> {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    let mut states = Vec::new();
    for task in tasks {
        let path = task.map_err(|e| format!("{dir}: {e}"))?.path().join("stat");
        // A thread that just ended: skip it.
        let Ok(stat) = std::fs::read_to_string(&path) else {
            continue;
        };
        // `pid (comm) S ...`: the name may hold spaces and parentheses, the state follows
        // the last `)`.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .ok_or_else(|| format!("{}: unexpected {stat:?}", path.display()))?;
        states.push(state);
    }
    if states.is_empty() {
        return Err(format!("process {pid} has no threads (it exited?)"));
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleeping_child_reads_as_asleep_and_a_stopped_one_as_stopped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("start sleep");
        let gate = Gate::new(child.id()).unwrap();
        {
            let _held = gate.hold(Duration::from_secs(10)).expect("held");
            assert!(thread_states(gate.pid)
                .unwrap()
                .iter()
                .all(|&s| s == 'T' || s == 't'));
        }
        // Continued: asleep again.
        gate.wait_for(Duration::from_secs(10), "asleep", |states| {
            states.iter().all(|&s| s == 'S')
        })
        .expect("continued");
        let _ = child.kill();
        let _ = child.wait();
    }
}
