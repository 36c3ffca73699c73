//! [`UCred`]: who is at the other end of a Unix stream (`SO_PEERCRED`).

use std::io;
use std::os::fd::RawFd;

/// The credentials of a Unix stream's peer, as the kernel recorded them when
/// the connection was made (`connect(2)`, or `socketpair(2)`): from
/// [`UnixStream::peer_cred`](crate::unix::UnixStream::peer_cred).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UCred {
    /// The peer's process id (0 if it was in another PID namespace the
    /// kernel could not map).
    pub pid: i32,
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
}

/// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)`.
pub(crate) fn peer_cred(fd: RawFd) -> io::Result<UCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes for the whole call and
    // `len` holds `cred`'s size, which bounds what the kernel writes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}
