//! The open-file limit a run needs: a descriptor per connection, and a few
//! for the process and each worker's runtime. Checked before connecting,
//! so that a run too large for the limit is a usage error (exit 2) rather
//! than thousands of failed connects ("Too many open files") and a run on
//! the rest.

/// Descriptors besides the connections: the standard streams and spares,
/// and each worker's poller and waker (measured: 8 with one worker, 17
/// with four).
fn reserve(workers: u64) -> u64 {
    16 + 4 * workers
}

/// Makes sure this process may open `connections` sockets with `workers`
/// runtimes: if the soft limit on open files is too low, it is raised, up
/// to the hard limit (as a shell's `ulimit -n` would). The error says what
/// is needed and what the limits are.
pub fn ensure_open_files(connections: u64, workers: u64) -> Result<(), String> {
    let needed = connections.saturating_add(reserve(workers));
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid, writable `rlimit` for the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Ok(()); // unknown: let the connects tell
        }
        // `rlim_t` is a u64 on the systems this runs on.
        let (soft, hard) = (limit.rlim_cur, limit.rlim_max);
        if limit.rlim_cur == libc::RLIM_INFINITY || soft >= needed {
            return Ok(());
        }
        let raised = libc::rlimit {
            rlim_cur: if limit.rlim_max == libc::RLIM_INFINITY {
                needed
            } else {
                hard.min(needed)
            },
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid `rlimit`, its soft limit within the
        // hard one; the call changes only this process's limit.
        let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0;
        if ok && raised.rlim_cur >= needed {
            return Ok(());
        }
        let hard = if limit.rlim_max == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            hard.to_string()
        };
        Err(format!(
            "{connections} connections need about {needed} open files, but this process may \
             open {soft} (ulimit -n; hard limit {hard}): raise the limit or use fewer connections"
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = needed;
        Ok(())
    }
}
