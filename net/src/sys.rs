//! The two syscalls on every message's path, made directly.
//!
//! glibc's `recv`/`send` (and `read`/`write`) are POSIX cancellation points:
//! in a multi-threaded process (every runtime with more than one worker, or
//! with a signal thread) each call brackets the syscall with
//! `__pthread_enable_asynccancel`/`__pthread_disable_asynccancel`, about 60
//! instructions per message that buy nothing, since Rust never uses
//! `pthread_cancel`. Even `syscall(2)` costs a call, an argument shuffle and
//! an `errno` store. So on x86-64 Linux these functions execute the
//! `syscall` instruction inline and read the error from its return value;
//! on other Linux targets they call `syscall(2)`; elsewhere, libc.
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
    // call; the null address arguments tell the kernel not to report the
    // peer address.
    let n = unsafe {
        linux::syscall6(
            libc::SYS_recvfrom,
            fd as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
            0,
            0,
            0,
        )
    };
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
        linux::syscall6(
            libc::SYS_sendto,
            fd as usize,
            buf.as_ptr() as usize,
            buf.len(),
            SEND_FLAGS as usize,
            0,
            0,
        )
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), SEND_FLAGS) };
    check(n)
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

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    /// A six-argument Linux syscall; returns the kernel's raw result
    /// (`-errno` on failure). On x86-64 it is the `syscall` instruction
    /// itself; elsewhere `syscall(2)`, whose `-1`/`errno` is turned back
    /// into `-errno`.
    ///
    /// # Safety
    ///
    /// The arguments must be valid for syscall `nr`: every pointer among
    /// them valid for the reads and writes that syscall makes.
    #[inline(always)]
    pub(super) unsafe fn syscall6(
        nr: libc::c_long,
        a1: usize,
        a2: usize,
        a3: usize,
        a4: usize,
        a5: usize,
        a6: usize,
    ) -> isize {
        #[cfg(target_arch = "x86_64")]
        {
            let ret: isize;
            // SAFETY: the x86-64 Linux syscall ABI: number in rax, arguments
            // in rdi, rsi, rdx, r10, r8, r9, result in rax; the instruction
            // clobbers rcx and r11 and nothing else. No `nomem`: the kernel
            // may write memory the caller passed (the caller's contract).
            unsafe {
                std::arch::asm!(
                    "syscall",
                    inlateout("rax") nr as isize => ret,
                    in("rdi") a1,
                    in("rsi") a2,
                    in("rdx") a3,
                    in("r10") a4,
                    in("r8") a5,
                    in("r9") a6,
                    lateout("rcx") _,
                    lateout("r11") _,
                    options(nostack),
                );
            }
            ret
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            // SAFETY: forwarded from the caller's contract.
            let n = unsafe { libc::syscall(nr, a1, a2, a3, a4, a5, a6) } as isize;
            if n < 0 {
                -(std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO) as isize)
            } else {
                n
            }
        }
    }
}
