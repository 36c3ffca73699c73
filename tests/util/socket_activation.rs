//! Starting an example server as systemd starts a socket-activated service
//! (`LISTEN_FDS`): a descriptor of the test becomes the server's
//! descriptor 3. Its includer also includes `example_bin.rs` (as
//! `example_bin`).

use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `program`, started by `bash` with descriptor `fd` of this process as its
/// descriptor 3, `LISTEN_FDS=1` and `env` (`LISTEN_PID=$$` names the server
/// itself, as systemd does; empty, or another pid, passes nothing to it),
/// then `args`. `fd` must be [`inheritable`]. (`bash`, not `sh`: dash takes
/// only a single-digit descriptor in `exec 3<&FD`, and a test's descriptors
/// are 10 or more once its harness passed on a few: "Bad fd number"; found
/// by a review.)
pub fn started_with(program: &Path, fd: i32, env: &str, args: &str) -> Command {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!(
            "exec 3<&{fd}; LISTEN_FDS=1 {env} exec \"$0\" {args}"
        ))
        .arg(program)
        .stdin(Stdio::null());
    command
}

/// `program` started with `LISTEN_FDS=1` and `LISTEN_PID` its own, but
/// descriptor 3 closed: what it was said to be passed is not there.
#[allow(dead_code)] // not every includer checks it
pub fn started_with_3_closed(program: &Path) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("exec 3<&-; LISTEN_FDS=1 LISTEN_PID=$$ exec \"$0\" --addr 127.0.0.1:1")
        .arg(program)
        .stdin(Stdio::null());
    command
}

/// An inheritable copy of `fd` numbered 100 or more: a descriptor number
/// of more than one digit, as a test's are when its harness passed on a
/// few.
#[allow(dead_code)] // not every includer checks it
pub fn inheritable_copy_above_99(fd: BorrowedFd<'_>) -> OwnedFd {
    // SAFETY: `F_DUPFD` only duplicates `fd`, which is borrowed, so open
    // for the call; the copy (not close-on-exec) is new.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, 100) };
    assert!(copy >= 100, "F_DUPFD: {}", std::io::Error::last_os_error());
    // SAFETY: `copy` is a descriptor just opened that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(copy) }
}

/// Lets `fd` pass into a child process (clears close-on-exec).
pub fn inheritable(fd: i32) {
    // SAFETY: `fcntl(F_SETFD)` on a descriptor the test owns and keeps
    // open while the child starts.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
}

/// Runs `command`, a server expected to refuse what it was passed: it must
/// exit with status 1 within 10 s (one still running then is killed and
/// the test fails). Returns its stderr, for the caller to check the
/// message.
pub fn refusal(mut command: Command) -> String {
    let mut server = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server");
    let status = crate::example_bin::wait_exit(&mut server, Duration::from_secs(10));
    let Some(status) = status else {
        let _ = server.kill();
        let _ = server.wait();
        panic!("the server kept running on what it should have refused");
    };
    let mut stderr = String::new();
    server
        .stderr
        .take()
        .expect("stderr piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    stderr
}
