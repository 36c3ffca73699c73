//! What a run needs of the machine, checked before connecting so that a
//! run too large is a usage error (exit 2) with one line that says why:
//! - the open-file limit: a descriptor per connection, and a few for the
//!   process and each worker's runtime, besides the descriptors it was
//!   started with (rather than thousands of failed connects, "Too many
//!   open files", and a run on the rest);
//! - memory: each connection's message buffers, a few times `--size`
//!   (rather than an out-of-memory kill or an allocation failure's abort
//!   part way through the run).

#[path = "../common/open_files.rs"]
mod open_files;

/// Descriptors besides the connections: the standard streams and spares,
/// and each worker's poller and waker (measured: 8 with one worker, 17
/// with four).
fn reserve(workers: u64) -> u64 {
    16 + 4 * workers
}

/// Descriptors this process holds besides the standard streams: the ones
/// it inherited (a shell, a CI runner or make's jobserver may pass some
/// on), which take numbers below the limit as the connections do. Counted
/// in `/proc/self/fd` (or `/dev/fd`), less the listing's own descriptor;
/// 0 if neither can be read.
fn inherited() -> u64 {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd").or_else(|_| std::fs::read_dir("/dev/fd"))
    else {
        return 0;
    };
    let above_2 = fds
        .flatten()
        .filter(|fd| fd.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) > Some(2))
        .count() as u64;
    // One of them is the directory being read.
    above_2.saturating_sub(1)
}

/// Makes sure this process may open `connections` sockets with `workers`
/// runtimes, besides the descriptors it already holds: if the soft limit
/// on open files is too low, it is raised, up to the hard limit. The error
/// says what is needed and what the limits are. (The descriptors already
/// open were not counted: with 20 inherited, 100 connections under a soft
/// limit of 64 raised it too little, and 6 connects failed with "Too many
/// open files"; found by a review.)
pub fn ensure_open_files(connections: u64, workers: u64) -> Result<(), String> {
    let inherited = inherited();
    let needed = connections
        .saturating_add(reserve(workers))
        .saturating_add(inherited);
    match open_files::raise_open_files(Some(needed)) {
        Some((Some(soft), hard)) if soft < needed => {
            let hard = hard.map_or("unlimited".to_string(), |h| h.to_string());
            let held = if inherited > 0 {
                format!(" ({inherited} of them already open)")
            } else {
                String::new()
            };
            Err(format!(
                "{connections} connections need about {needed} open files{held}, but this \
                 process may open {soft} (ulimit -n; hard limit {hard}): raise the limit or use \
                 fewer connections"
            ))
        }
        // Enough, unlimited, or unknown (then the connects will tell).
        _ => Ok(()),
    }
}

/// Message buffers a connection fills, at most, each of `--size` bytes:
/// the message, the receive buffer and (pipelined) the expected echo.
const BUFFERS_PER_CONNECTION: u64 = 3;

/// This machine's memory in bytes (`MemTotal` in /proc/meminfo), if known.
fn memory_total() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Makes sure `connections` connections of `size`-byte messages fit in this
/// machine's memory: [`BUFFERS_PER_CONNECTION`] buffers of `size` each,
/// against its total memory (where that is unknown, nothing is checked).
/// The error says what is needed and what there is.
pub fn ensure_memory(connections: u64, size: u64) -> Result<(), String> {
    let needed = connections
        .saturating_mul(size)
        .saturating_mul(BUFFERS_PER_CONNECTION);
    match memory_total() {
        Some(total) if needed > total => {
            let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
            Err(format!(
                "{connections} connections of {size}-byte messages need about {:.1} GiB of \
                 buffers ({BUFFERS_PER_CONNECTION} messages each), more than this machine's \
                 {:.1} GiB of memory: use fewer connections or smaller messages",
                gib(needed),
                gib(total)
            ))
        }
        _ => Ok(()),
    }
}
