//! The two syscalls on every message's path, made directly.
//!
//! glibc's `recv`/`send` (and `read`/`write`) are POSIX cancellation points:
//! in a multi-threaded process (every runtime with more than one worker, or
//! with a signal thread) each call brackets the syscall with
//! `__pthread_enable_asynccancel`/`__pthread_disable_asynccancel`, about 60
//! instructions per message that buy nothing, since Rust never uses
//! `pthread_cancel`. On Linux these functions go through `syscall(2)`
//! instead, which is not a cancellation point; elsewhere they call libc.
//!
//! Sends always pass `MSG_NOSIGNAL` where it exists (Apple platforms use
//! `SO_NOSIGPIPE`, which mio sets), so a reset peer never raises `SIGPIPE`.

use std::io;
use std::os::fd::RawFd;

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: libc::c_int = 0;

fn check(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `recv(fd, buf, 0)`.
#[inline]
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole
    // call; the null address arguments tell the kernel not to report the
    // peer address.
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf.as_mut_ptr(),
            buf.len(),
            0,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    } as isize;
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
    // call; the null destination is what `send` passes for a connected
    // socket.
    let n = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            buf.as_ptr(),
            buf.len(),
            SEND_FLAGS,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        )
    } as isize;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), SEND_FLAGS) };
    check(n)
}
