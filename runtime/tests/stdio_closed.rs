//! `io::{stdin, stdout, stderr}` when the process has closed descriptors
//! 0, 1 and 2 (a daemon that detached): as std's handles (and so tokio's),
//! writes succeed and are dropped and a read gets end of file, and the
//! descriptors stay closed. A binary of its own, with one test: it closes
//! descriptors 0 to 2 of the whole test process for a moment.
//!
//! Not under Miri: its isolation has no descriptors to close.
#![cfg(not(miri))]

mod util;

use std::os::fd::RawFd;

use cellio_runtime::io::{stderr, stdin, stdout};

/// Whether descriptor `fd` is open.
fn is_open(fd: RawFd) -> bool {
    // SAFETY: `F_GETFD` reads the descriptor's flags; no memory is touched.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// (It was an `EBADF` error, where std's handles swallow; found by a
/// review.)
#[test]
fn closed_standard_descriptors_give_handles_that_swallow_writes_and_read_nothing() {
    // The saved copies (above 2, so no closed one is reused) are ours, and
    // 0 to 2 are put back below before anything can fail.
    let saved: Vec<RawFd> = (0..3)
        // SAFETY: `fcntl` and `close` take descriptors and touch no memory.
        .map(|fd| unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) })
        .collect();
    assert!(saved.iter().all(|&copy| copy > 2));
    for fd in 0..3 {
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
    let handles = (stdin(), stdout(), stderr());
    let still_closed = (0..3).all(|fd| !is_open(fd));
    for (fd, copy) in saved.into_iter().enumerate() {
        // SAFETY: as above; `copy` is ours to close.
        unsafe {
            assert_eq!(libc::dup2(copy, fd as RawFd), fd as RawFd);
            libc::close(copy);
        }
    }
    assert!(still_closed, "a handle took a closed descriptor's number");
    let (input, output, error) = handles;
    let (mut input, mut output, mut error) = (input.unwrap(), output.unwrap(), error.unwrap());
    assert!(format!("{output:?}").contains("/dev/null"), "{output:?}");
    util::run(move || async move {
        output.write_all(b"to no one\n").await?;
        output.flush().await?;
        error.write_all(b"to no one\n").await?;
        error.flush().await?;
        let mut all = Vec::new();
        assert_eq!(input.read_to_end(&mut all).await?, 0);
        std::io::Result::Ok(())
    })
    .unwrap();
}
