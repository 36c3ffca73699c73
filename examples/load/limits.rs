//! The open-file limit a run needs: a descriptor per connection, and a few
//! for the process and each worker's runtime. Checked before connecting,
//! so that a run too large for the limit is a usage error (exit 2) rather
//! than thousands of failed connects ("Too many open files") and a run on
//! the rest.

#[path = "../common/open_files.rs"]
mod open_files;

/// Descriptors besides the connections: the standard streams and spares,
/// and each worker's poller and waker (measured: 8 with one worker, 17
/// with four).
fn reserve(workers: u64) -> u64 {
    16 + 4 * workers
}

/// Makes sure this process may open `connections` sockets with `workers`
/// runtimes: if the soft limit on open files is too low, it is raised, up
/// to the hard limit. The error says what is needed and what the limits
/// are.
pub fn ensure_open_files(connections: u64, workers: u64) -> Result<(), String> {
    let needed = connections.saturating_add(reserve(workers));
    match open_files::raise_open_files(Some(needed)) {
        Some((Some(soft), hard)) if soft < needed => {
            let hard = hard.map_or("unlimited".to_string(), |h| h.to_string());
            Err(format!(
                "{connections} connections need about {needed} open files, but this process \
                 may open {soft} (ulimit -n; hard limit {hard}): raise the limit or use fewer \
                 connections"
            ))
        }
        // Enough, unlimited, or unknown (then the connects will tell).
        _ => Ok(()),
    }
}
