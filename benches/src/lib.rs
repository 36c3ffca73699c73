//! Shared helpers for the cellio comparison binaries (`mio_echo`, `tokio_echo`, `mio_load`,
//! `echo_compare`).
//!
//! Nothing here is on a measured hot path except [`fill_message`], which runs in the load
//! client (on the client's core, not the server's).

use std::fmt::Display;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

/// Line prefix that `mio_load --phase-marks` prints when warm-up ends.
pub const MARK_WARMUP_DONE: &str = "# warmup-done";
/// Line prefix that `mio_load --phase-marks` prints when the measured window ends.
pub const MARK_WINDOW_DONE: &str = "# window-done";

/// Parses a number of seconds between 0 and `max` (a clap value parser;
/// wrap it to fix `max`).
pub fn parse_secs_up_to(s: &str, max: f64) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && (0.0..=max).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` is not between 0 and {max} seconds"))
    }
}

/// Parses the command line, turning any usage error into one line on stderr and exit code 2.
///
/// `--help` and `--version` behave as usual (full text, exit 0).
pub fn parse_args<T: clap::Parser>(prog: &str) -> T {
    use clap::error::ErrorKind;
    match T::try_parse() {
        Ok(args) => args,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("invalid arguments");
                let first = first.strip_prefix("error: ").unwrap_or(first);
                eprintln!("{prog}: error: {first} (try --help)");
                std::process::exit(2);
            }
        },
    }
}

/// Runs `body`, printing an error as a single line `PROG: error: ...` and returning failure.
pub fn run_main<E: Display>(prog: &str, body: impl FnOnce() -> Result<(), E>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{prog}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints `listening on ADDR` on stdout and flushes it; the driver waits for the port anyway,
/// so a closed stdout is not an error.
pub fn announce_listening(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit so that thousands of connections fit.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the content of message number `seq` on connection `conn`.
///
/// Every message differs (the bytes are a splitmix64 stream seeded from both numbers), so a
/// server that echoes stale, reordered or another connection's bytes is caught.
pub fn fill_message(buf: &mut [u8], conn: u64, seq: u64) {
    let mut state = (conn << 40) ^ seq ^ 0xC311_10C0_FFEE_0000;
    for chunk in buf.chunks_mut(8) {
        let word = splitmix64(&mut state).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// CPU time of a process as accounted by the kernel, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTicks {
    /// Field 14 of `/proc/PID/stat`: user-mode time (all threads).
    pub utime: u64,
    /// Field 15 of `/proc/PID/stat`: kernel-mode time (all threads).
    pub stime: u64,
}

/// Reads utime and stime (fields 14 and 15) of `/proc/PID/stat`.
pub fn read_cpu_ticks(pid: u32) -> Result<CpuTicks, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_stat(&text).ok_or_else(|| format!("cannot parse {path}"))
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last `)`: the token after it is field 3.
pub fn parse_stat(text: &str) -> Option<CpuTicks> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(CpuTicks {
        utime: fields.get(14 - 3)?.parse().ok()?,
        stime: fields.get(15 - 3)?.parse().ok()?,
    })
}

/// Time the given CPUs were not idle and not ours to use, in clock ticks, summed, from
/// `/proc/stat`: user + nice + system + irq + softirq, plus steal (time the hypervisor ran
/// something else while this VM's CPU wanted to run). Used to detect, on the benchmark cores,
/// load from other processes and from the host.
pub fn read_cores_busy(cores: &[u32]) -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/stat")
        .map_err(|e| format!("cannot read /proc/stat: {e}"))?;
    cores_busy_in(&text, cores)
}

/// [`read_cores_busy`] over the text of `/proc/stat`.
pub fn cores_busy_in(stat: &str, cores: &[u32]) -> Result<u64, String> {
    let mut sum = 0;
    for core in cores {
        let tag = format!("cpu{core}");
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(tag.as_str()))
            .ok_or_else(|| format!("no {tag} in /proc/stat"))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal guest guest_nice (guest time is
        // already counted in user and nice)
        sum += [0, 1, 2, 5, 6, 7]
            .iter()
            .map(|&i| f.get(i).copied().unwrap_or(0))
            .sum::<u64>();
    }
    Ok(sum)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of [`CpuTicks`].
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

/// Median of a non-empty list (mean of the two middle values for even lengths).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_busy_counts_steal_but_not_idle_or_iowait() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let stat = "cpu  9 9 9 9 9 9 9 9 0 0\n\
                    cpu0 1 2 3 1000 2000 4 5 60 7 8\n\
                    cpu1 10 0 20 500 0 0 30 40 0 0\n";
        assert_eq!(cores_busy_in(stat, &[0]), Ok(1 + 2 + 3 + 4 + 5 + 60));
        assert_eq!(cores_busy_in(stat, &[0, 1]), Ok(75 + 100));
        assert!(cores_busy_in(stat, &[2]).unwrap_err().contains("no cpu2"));
    }

    #[test]
    fn stat_fields_counted_after_comm() {
        let line = "1234 (a b) c) S 1 2 3 4 5 6 7 8 9 10 777 888 0 0 20 0 1 0";
        assert_eq!(
            parse_stat(line),
            Some(CpuTicks {
                utime: 777,
                stime: 888
            })
        );
    }

    #[test]
    fn messages_differ() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        fill_message(&mut a, 1, 1);
        fill_message(&mut b, 1, 2);
        assert_ne!(a, b);
        fill_message(&mut b, 2, 1);
        assert_ne!(a, b);
        let mut c = [0u8; 13];
        fill_message(&mut c, 1, 1);
        assert_eq!(c[..], a[..13]);
    }

    #[test]
    fn median_works() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
