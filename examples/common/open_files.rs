//! Raising the soft limit on open files, shared by the examples that open
//! many sockets (`#[path]`-included: the echo server and the load client).

/// Raises this process's soft limit on open files to `wanted`, or with
/// `None` as far as the hard limit allows, never past the hard limit (as
/// `ulimit -n` would; an unprivileged process may). Returns the soft and
/// hard limits afterwards (`None` for a limit that is unlimited), or `None`
/// if they cannot be read (or off Unix).
#[allow(clippy::unnecessary_cast)] // `rlim_t` is u64 here, i64 on FreeBSD
pub fn raise_open_files(wanted: Option<u64>) -> Option<(Option<u64>, Option<u64>)> {
    #[cfg(unix)]
    {
        // `rlim_t` is a u64 on Linux and macOS and an i64 on FreeBSD (whose
        // limits are never negative): the arithmetic is done in u64.
        let finite = |l: libc::rlim_t| (l != libc::RLIM_INFINITY).then_some(l as u64);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid, writable `rlimit` for the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        let target = match (wanted, finite(limit.rlim_max)) {
            (Some(w), Some(hard)) => w.min(hard),
            (Some(w), None) => w,
            (None, Some(hard)) => hard,
            (None, None) => return Some((finite(limit.rlim_cur), None)),
        };
        if finite(limit.rlim_cur).is_some_and(|soft| soft < target) {
            let raised = libc::rlimit {
                // At most the hard limit; a `wanted` past what `rlim_t` holds
                // (FreeBSD's i64) wraps, setrlimit refuses it, and the limit stays.
                rlim_cur: target as libc::rlim_t,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: `raised` is a valid `rlimit` whose soft limit is
            // within the hard one; the call changes only this process.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = raised.rlim_cur;
            }
        }
        Some((finite(limit.rlim_cur), finite(limit.rlim_max)))
    }
    #[cfg(not(unix))]
    {
        let _ = wanted;
        None
    }
}
