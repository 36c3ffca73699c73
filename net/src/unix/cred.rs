//! [`UCred`]: the credentials the kernel recorded for the other end of a
//! Unix stream (`SO_PEERCRED` on Linux, `getpeereid` and on macOS
//! `LOCAL_PEERPID` elsewhere): on the accepting side the client that
//! called `connect(2)`, on the connecting side the process that called
//! `listen(2)` (not necessarily the one serving).

use std::io;
use std::os::fd::RawFd;

/// The credentials of a Unix stream's peer, as the kernel recorded them:
/// from [`UnixStream::peer_cred`](crate::unix::UnixStream::peer_cred).
///
/// Which process they name depends on the side:
///
/// * on a stream from [`accept`](crate::unix::UnixListener::accept): the
///   client, as it was when it called `connect(2)`;
/// * on a stream from [`connect`](crate::unix::UnixStream::connect): the
///   process that called `listen(2)` on the listening socket, as it was
///   then, which need not be the one that accepts and serves. After a
///   listener is handed to another process (descriptor passing, socket
///   activation, a restart that keeps the socket), it is the old one,
///   perhaps exited and its pid reused (under systemd's socket activation,
///   systemd);
/// * on a [`pair`](crate::unix::UnixStream::pair): the process that called
///   `socketpair(2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UCred {
    /// The peer's process id: 0 where the kernel does not say (on Linux a
    /// peer in another PID namespace it could not map; the BSDs but macOS
    /// do not report it).
    pub pid: i32,
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
}

/// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn peer_cred(fd: RawFd) -> io::Result<UCred> {
    let empty = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    // SAFETY: `SO_PEERCRED`'s value is a `ucred`, a struct of integers.
    let cred =
        unsafe { crate::sys::socket_option(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, empty) }?;
    Ok(UCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// `getpeereid(fd)`, and on macOS the pid from
/// `getsockopt(fd, SOL_LOCAL, LOCAL_PEERPID)`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn peer_cred(fd: RawFd) -> io::Result<UCred> {
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: `uid` and `gid` are valid for writes for the whole call.
    if unsafe { libc::getpeereid(fd, &mut uid, &mut gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UCred {
        pid: peer_pid(fd)?,
        uid,
        gid,
    })
}

/// The peer's pid (`LOCAL_PEERPID`).
#[cfg(any(target_os = "macos", target_os = "ios"))]
fn peer_pid(fd: RawFd) -> io::Result<i32> {
    // SAFETY: `LOCAL_PEERPID`'s value is a `pid_t`, an integer.
    unsafe { crate::sys::socket_option(fd, libc::SOL_LOCAL, libc::LOCAL_PEERPID, 0) }
}

/// Not reported here: 0, as [`UCred::pid`] says.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios"
)))]
fn peer_pid(_: RawFd) -> io::Result<i32> {
    Ok(0)
}
