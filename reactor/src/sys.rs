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
//! target's path). With `--cfg cellio_user_time_hooks` the `syscall`
//! instruction stays inline and the user-time shim of `echo_compare
//! --user-time` is told about each syscall (see `user_time` below): the
//! shim could wrap `syscall(2)`, but a call through libc puts frames between
//! the program and the kernel that the real build does not have, and returns
//! across a long kernel path cost (benches/README.md).
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
        #[cfg(cellio_user_time_hooks)]
        let kind = user_time::enter(nr);
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
        #[cfg(cellio_user_time_hooks)]
        user_time::leave(kind);
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

#[cfg(all(cellio_user_time_hooks, cellio_libc_syscalls))]
compile_error!(
    "--cfg cellio_user_time_hooks keeps the inline syscalls; it cannot be combined with \
     --cfg cellio_libc_syscalls"
);

/// The user-time shim's hooks (`--cfg cellio_user_time_hooks`, x86-64 only): the shim that
/// `echo_compare --user-time` preloads times the user code between syscalls, but it can only
/// wrap calls into libc, and a wrapper sits one frame between the program and the kernel.
/// In this build the `syscall` instruction stays inline, as in the real build, and the shim
/// is told around it: `user_time_enter(kind)` returns before the syscall and
/// `user_time_leave(kind)` is called after it, so no frame of the shim's is live across the
/// syscall. Resolved once with `dlsym`; without the shim both do nothing.
#[cfg(all(
    cellio_user_time_hooks,
    target_arch = "x86_64",
    not(cellio_libc_syscalls)
))]
mod user_time {
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Hook = unsafe extern "C" fn(libc::c_int);

    /// `0`: not looked up yet; `1`: the shim is not loaded; else the two hooks' addresses.
    static ENTER: AtomicUsize = AtomicUsize::new(0);
    static LEAVE: AtomicUsize = AtomicUsize::new(0);

    /// The shim's kind of a syscall: 0 receive, 1 send, 2 readiness wait, 3 other.
    fn kind_of(nr: libc::c_long) -> libc::c_int {
        match nr {
            libc::SYS_recvfrom | libc::SYS_read | libc::SYS_recvmsg => 0,
            libc::SYS_sendto | libc::SYS_write | libc::SYS_sendmsg => 1,
            libc::SYS_epoll_wait | libc::SYS_epoll_pwait | libc::SYS_epoll_pwait2 => 2,
            _ => 3,
        }
    }

    #[cold]
    fn resolve() {
        let find = |name: &std::ffi::CStr| {
            // SAFETY: `name` is a NUL-terminated string; RTLD_DEFAULT searches the loaded
            // objects and returns null when the symbol is absent.
            let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            p as usize
        };
        let (enter, leave) = (find(c"user_time_enter"), find(c"user_time_leave"));
        let (enter, leave) = if enter == 0 || leave == 0 {
            (1, 1)
        } else {
            (enter, leave)
        };
        LEAVE.store(leave, Ordering::Relaxed);
        ENTER.store(enter, Ordering::Release);
    }

    fn call(hook: usize, kind: libc::c_int) {
        if hook > 1 {
            // SAFETY: `hook` came from `dlsym` for one of the shim's hooks, both
            // `void (int)` functions that stay loaded for the process's life.
            unsafe { std::mem::transmute::<usize, Hook>(hook)(kind) }
        }
    }

    /// Tells the shim a syscall `nr` is about to be made; returns its kind for [`leave`].
    #[inline(always)]
    pub(super) fn enter(nr: libc::c_long) -> libc::c_int {
        let mut hook = ENTER.load(Ordering::Acquire);
        if hook == 0 {
            resolve();
            hook = ENTER.load(Ordering::Acquire);
        }
        let kind = kind_of(nr);
        call(hook, kind);
        kind
    }

    /// Tells the shim the syscall of `kind` returned.
    #[inline(always)]
    pub(super) fn leave(kind: libc::c_int) {
        call(LEAVE.load(Ordering::Relaxed), kind);
    }
}
