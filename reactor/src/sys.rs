//! Raw Linux syscalls, made without libc's wrappers.
//!
//! glibc's `recv`, `send` and `epoll_wait` are POSIX cancellation points: in
//! a multi-threaded process each call brackets the syscall with
//! `__pthread_enable_asynccancel`/`__pthread_disable_asynccancel`, dozens of
//! instructions that buy nothing, since Rust never uses `pthread_cancel`.
//! Even `syscall(2)` costs a call, an argument shuffle and an `errno`
//! round trip. [`syscall6`] is the `syscall` instruction itself on x86-64
//! and `syscall(2)` elsewhere; both return the kernel's raw result.
//!
//! Building with `RUSTFLAGS="--cfg cellio_libc_syscalls"` takes the
//! `syscall(2)` path on x86-64 too: CI tests it that way (it is every other
//! target's path), and `echo_compare --user-time` measures cellio in such a
//! build, since its preloaded shim sees only calls into libc.
//!
//! Used by the reactor's wait and by `cellio-net`'s `recv`/`send`; only on
//! Linux and Android.

/// A six-argument Linux syscall; returns the kernel's raw result
/// (`-errno` on failure). On x86-64 it is the `syscall` instruction
/// itself; elsewhere (or with `--cfg cellio_libc_syscalls`) `syscall(2)`,
/// whose `-1`/`errno` is turned back into `-errno`.
///
/// # Safety
///
/// The arguments must be valid for syscall `nr`: every pointer among
/// them valid for the reads and writes that syscall makes.
#[inline(always)]
pub unsafe fn syscall6(
    nr: libc::c_long,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
    a6: usize,
) -> isize {
    #[cfg(all(target_arch = "x86_64", not(cellio_libc_syscalls)))]
    {
        let ret: isize;
        // The x86-64 Linux syscall ABI: number in rax, arguments in rdi,
        // rsi, rdx, r10, r8, r9, result in rax; rcx and r11 clobbered.
        // SAFETY: the operands follow that ABI; no `nomem`, since the kernel
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
    #[cfg(any(not(target_arch = "x86_64"), cellio_libc_syscalls))]
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
