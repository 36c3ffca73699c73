//! Descriptors of the whole test process pointed at pipes for a test
//! (`stdio.rs`, `stdio_at_drop.rs`), and put back after.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// A pipe: (read end, write end).
#[allow(clippy::incompatible_msrv)] // tests build with a current toolchain; the libraries keep to the MSRV
pub fn pipe() -> (File, File) {
    let (read, write) = std::io::pipe().expect("pipe");
    (OwnedFd::from(read).into(), OwnedFd::from(write).into())
}

/// Points descriptor `target` at `with`'s file; returns a saved copy of
/// what `target` was.
pub fn redirect(target: RawFd, with: &File) -> RawFd {
    // SAFETY: `dup` and `dup2` take descriptors and touch no memory.
    let saved = unsafe { libc::dup(target) };
    assert!(saved >= 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::dup2(with.as_raw_fd(), target) }, target);
    saved
}

/// Puts descriptor `target` back as it was (`saved`, then closed).
pub fn restore(target: RawFd, saved: RawFd) {
    // SAFETY: as in `redirect`; `saved` is ours to close.
    unsafe {
        assert_eq!(libc::dup2(saved, target), target);
        libc::close(saved);
    }
}
