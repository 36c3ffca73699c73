//! Starting an example server as systemd starts a socket-activated service
//! (`LISTEN_FDS`): a descriptor of the test becomes the server's
//! descriptor 3.

use std::path::Path;
use std::process::{Command, Stdio};

/// `program`, started by `sh` with descriptor `fd` of this process as its
/// descriptor 3, `LISTEN_FDS=1` and `env` (`LISTEN_PID=$$` names the server
/// itself, as systemd does; empty, or another pid, passes nothing to it),
/// then `args`. `fd` must be [`inheritable`].
pub fn started_with(program: &Path, fd: i32, env: &str, args: &str) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "exec 3<&{fd}; LISTEN_FDS=1 {env} exec \"$0\" {args}"
        ))
        .arg(program)
        .stdin(Stdio::null());
    command
}

/// Lets `fd` pass into a child process (clears close-on-exec).
pub fn inheritable(fd: i32) {
    // SAFETY: `fcntl(F_SETFD)` on a descriptor the test owns and keeps
    // open while the child starts.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
}
