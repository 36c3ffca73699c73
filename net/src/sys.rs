//! The two syscalls on every message's path, made directly.
//!
//! glibc's `recv`/`send` (and `read`/`write`) are POSIX cancellation points:
//! in a multi-threaded process (every runtime with more than one worker, or
//! with a signal thread) each call brackets the syscall with
//! `__pthread_enable_asynccancel`/`__pthread_disable_asynccancel`, about 60
//! instructions per message that buy nothing, since Rust never uses
//! `pthread_cancel`. So on Linux these functions use
//! [`cellio_reactor::sys::syscall6`] (the `syscall` instruction itself on
//! x86-64) and read the error from its return value; elsewhere, libc.
//!
//! Sends always pass `MSG_NOSIGNAL` where it exists (Apple platforms use
//! `SO_NOSIGPIPE`, which mio sets), so a reset peer never raises `SIGPIPE`.

use std::io;
use std::os::fd::RawFd;

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: libc::c_int = 0;

/// `recv(fd, buf, 0)`.
#[inline]
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole
    // call (`recvfrom` with no address to report).
    let n = unsafe { transfer(libc::SYS_recvfrom, fd, buf.as_mut_ptr(), buf.len(), 0) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    check(n)
}

/// `send(fd, buf, MSG_NOSIGNAL)`.
#[inline]
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole
    // call (`sendto` with no destination, as `send` on a connected socket).
    let n = unsafe {
        transfer(
            libc::SYS_sendto,
            fd,
            buf.as_ptr().cast_mut(),
            buf.len(),
            SEND_FLAGS,
        )
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), SEND_FLAGS) };
    check(n)
}

/// `recvfrom`/`sendto(fd, buf, len, flags, NULL, 0)` as a raw syscall.
///
/// # Safety
///
/// `buf` is valid for `len` bytes of whatever access syscall `nr` makes
/// (writes for `recvfrom`, reads for `sendto`) for the whole call.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline(always)]
unsafe fn transfer(
    nr: libc::c_long,
    fd: RawFd,
    buf: *mut u8,
    len: usize,
    flags: libc::c_int,
) -> isize {
    // SAFETY: forwarded from the caller's contract; the two null address
    // arguments ask for no peer address.
    unsafe {
        cellio_reactor::sys::syscall6(nr, fd as usize, buf as usize, len, flags as usize, 0, 0)
    }
}

/// Linux convention: the raw syscall returns `-errno` on failure.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
fn check(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(os_error(-n))
    } else {
        Ok(n as usize)
    }
}

/// libc convention: `-1` and `errno`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[inline]
fn check(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[cold]
fn os_error(errno: isize) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}
