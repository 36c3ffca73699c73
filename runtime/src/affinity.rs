//! Pinning a worker's thread to one CPU core
//! ([`Builder::worker_cores`](crate::Builder::worker_cores)).
//!
//! A thread-per-core runtime keeps each task on its worker; pinned, each
//! worker also keeps its core, and with it the caches its connections'
//! state warmed (the kernel otherwise moves threads between cores as load
//! shifts). Linux only (`sched_setaffinity`); elsewhere asking for it is
//! an `Unsupported` error.

use std::io;

/// A thread's CPU mask, saved to give it back later: `build` saves the
/// building thread's before it pins anything, and each blocking-pool
/// thread puts it back first thing (a thread inherits its creator's mask,
/// and pool threads are started from pinned workers).
#[derive(Clone, Copy)]
pub(crate) struct Mask {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    set: libc::cpu_set_t,
}

impl Mask {
    /// The calling thread's mask.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn of_current_thread() -> io::Result<Mask> {
        // SAFETY: all-zero is an empty `cpu_set_t` (a bit array).
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid `cpu_set_t` of the size given; pid 0 is
        // the calling thread.
        let result =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Mask { set })
    }

    /// Elsewhere nothing is pinned (`pin_current_thread` is an error), so
    /// there is nothing to save.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn of_current_thread() -> io::Result<Mask> {
        Ok(Mask {})
    }

    /// Gives the calling thread this mask.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn apply_to_current_thread(&self) -> io::Result<()> {
        // SAFETY: `self.set` is a valid `cpu_set_t` of the size given; pid
        // 0 is the calling thread.
        let result = unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.set)
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn apply_to_current_thread(&self) -> io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mask")
    }
}

/// Pins the calling thread, worker `worker`, to core `core`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn pin_current_thread(worker: usize, core: usize) -> io::Result<()> {
    // CPU_SETSIZE: the most cores a `cpu_set_t` names.
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cellio: cannot pin worker {worker} to core {core}: cores are numbered below {}",
                libc::CPU_SETSIZE
            ),
        ));
    }
    // SAFETY: all-zero is an empty `cpu_set_t` (a bit array).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core < CPU_SETSIZE`, the set's size in bits (checked above).
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of the size given; pid 0 is the
    // calling thread.
    let result =
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if result != 0 {
        let error = io::Error::last_os_error();
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        return Err(io::Error::new(
            error.kind(),
            format!(
                "cellio: cannot pin worker {worker} to core {core} ({error}; this process may \
                 use {cores} cores, numbered from 0 unless a cpuset or taskset limits it)"
            ),
        ));
    }
    Ok(())
}

/// Elsewhere there is no `sched_setaffinity`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn pin_current_thread(worker: usize, core: usize) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("cellio: cannot pin worker {worker} to core {core}: pinning needs Linux"),
    ))
}
