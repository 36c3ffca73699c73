//! Children whose [`Child`](super::Child) was dropped before their exit
//! was collected: kept here and reaped (`waitpid(WNOHANG)`) at each
//! [`Command::spawn`](super::Command::spawn), so they do not stay zombies.

use std::sync::{Mutex, PoisonError};

/// The process's orphans, not yet exited (or not yet reaped).
static ORPHANS: Mutex<Vec<std::process::Child>> = Mutex::new(Vec::new());

/// Keeps `process` until it has exited and been reaped.
pub(crate) fn adopt(process: std::process::Child) {
    ORPHANS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(process);
}

/// Reaps every orphan that has exited.
pub(crate) fn reap() {
    let mut orphans = ORPHANS.lock().unwrap_or_else(PoisonError::into_inner);
    // `Ok(None)`: still running. An error (it was reaped elsewhere, say by
    // a `waitpid(-1)` in other code) leaves nothing to wait for.
    orphans.retain_mut(|process| matches!(process.try_wait(), Ok(None)));
}
