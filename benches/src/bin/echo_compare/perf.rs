//! Hardware counters per echoed message, from `perf stat` attached to the server.
//!
//! perf is started on the server before the load client, with its events disabled
//! (`--delay -1`), and switched on and off through a control FIFO (`--control`) at the
//! client's warm-up and window marks, each switch acknowledged by perf before the driver
//! goes on. The counts therefore cover the same window as the client's message count (to
//! within the pipe latency of the marks, at both ends), and are divided by it directly.
//! (An earlier version attached perf at the warm-up mark and scaled its counts through the
//! server's `/proc` CPU time, because perf's start-up delays the first count by some
//! milliseconds; on a VM in a degraded phase that scaling was loose: one binary's user
//! instructions per message read 398–456 across rounds.)

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::children::{self, Guard};
use crate::stop_child;

/// The events counted: user and kernel cycles and instructions.
const EVENTS: &str = "cycles:u,instructions:u,cycles:k,instructions:k";

/// How long perf may take to acknowledge a control command.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Hardware-counter figures per echoed message.
#[derive(Clone, Copy, Debug)]
pub struct PerfPerMsg {
    pub user_instructions: f64,
    pub user_cycles: f64,
    pub kernel_instructions: f64,
    pub kernel_cycles: f64,
    /// CPU ns/msg x cycles:u / (cycles:u + cycles:k): user time per message without the
    /// statistical noise of the kernel's tick-sampled user/sys split.
    pub user_ns_by_cycles: f64,
}

impl PerfPerMsg {
    pub fn to_json(self) -> Value {
        json!({
            "user_instructions_per_msg": self.user_instructions,
            "user_cycles_per_msg": self.user_cycles,
            "kernel_instructions_per_msg": self.kernel_instructions,
            "kernel_cycles_per_msg": self.kernel_cycles,
            "user_ns_per_msg_by_cycles": self.user_ns_by_cycles,
        })
    }
}

/// A `perf stat` attached to a process, counting only while enabled.
pub struct PerfSession {
    child: Option<Guard>,
    ctl: File,
    ack: File,
    dir: PathBuf,
    out: PathBuf,
}

impl PerfSession {
    /// Attaches perf to `pid` with its events disabled, and waits until it answers on its
    /// control FIFO (so it is attached before the caller starts the load).
    pub fn start(pid: u32) -> Result<Self, String> {
        let dir =
            std::env::temp_dir().join(format!("echo_compare.perf.{}.{pid}", std::process::id()));
        // A leftover of a killed run with the same pids would hold stale FIFOs.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let (ctl_path, ack_path, out) = (dir.join("ctl"), dir.join("ack"), dir.join("out"));
        for fifo in [&ctl_path, &ack_path] {
            make_fifo(fifo)?;
        }
        // Read-write opens of a FIFO do not wait for the other end (Linux).
        let open = |p: &PathBuf| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(p)
                .map_err(|e| format!("open {}: {e}", p.display()))
        };
        let (ctl, ack) = (open(&ctl_path)?, open(&ack_path)?);
        let child = children::spawn(
            Command::new("perf")
                .args([
                    "stat",
                    "-x",
                    ",",
                    "-e",
                    EVENTS,
                    "--delay",
                    "-1",
                    "--control",
                ])
                .arg(format!(
                    "fifo:{},{}",
                    ctl_path.display(),
                    ack_path.display()
                ))
                .args(["-p", &pid.to_string(), "-o"])
                .arg(&out)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .map_err(|e| format!("cannot start perf: {e}"))?;
        let mut session = Self {
            child: Some(child),
            ctl,
            ack,
            dir,
            out,
        };
        // A no-op command as a ping: perf answers once it is attached and listening.
        session.command("disable")?;
        Ok(session)
    }

    /// Starts counting (at the client's warm-up mark).
    pub fn enable(&mut self) -> Result<(), String> {
        self.command("enable")
    }

    /// Stops counting (at the client's window mark).
    pub fn disable(&mut self) -> Result<(), String> {
        self.command("disable")
    }

    /// Detaches perf and turns its counts into per-message figures: `msgs` messages were
    /// echoed while counting was enabled, at `cpu_ns_per_msg` of server CPU each.
    pub fn finish(mut self, msgs: u64, cpu_ns_per_msg: f64) -> Result<PerfPerMsg, String> {
        if let Some(child) = self.child.take() {
            stop_child(child, "perf")?;
        }
        let text = std::fs::read_to_string(&self.out)
            .map_err(|e| format!("read {}: {e}", self.out.display()))?;
        per_msg(&text, msgs, cpu_ns_per_msg)
    }

    fn command(&mut self, what: &str) -> Result<(), String> {
        self.ctl
            .write_all(format!("{what}\n").as_bytes())
            .map_err(|e| format!("perf control: {e}"))?;
        let mut pfd = libc::pollfd {
            fd: self.ack.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, ACK_TIMEOUT.as_millis() as libc::c_int) };
        if ready != 1 {
            return Err(format!(
                "perf did not acknowledge `{what}` within {ACK_TIMEOUT:?}"
            ));
        }
        let mut buf = [0u8; 64];
        let n = self
            .ack
            .read(&mut buf)
            .map_err(|e| format!("perf ack: {e}"))?;
        if !buf[..n].starts_with(b"ack") {
            return Err(format!(
                "perf answered `{}` to `{what}`",
                String::from_utf8_lossy(&buf[..n])
            ));
        }
        Ok(())
    }
}

impl Drop for PerfSession {
    fn drop(&mut self) {
        drop(self.child.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn make_fifo(path: &Path) -> Result<(), String> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("bad path {}", path.display()))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(format!(
            "mkfifo {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Turns `perf stat -x,` output into per-message figures.
fn per_msg(text: &str, msgs: u64, cpu_ns_per_msg: f64) -> Result<PerfPerMsg, String> {
    if msgs == 0 {
        return Err("no message echoed while perf counted".into());
    }
    let get = |event: &str| -> Result<f64, String> {
        text.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[2] == event)
            .and_then(|f| f[0].parse::<f64>().ok())
            .ok_or_else(|| format!("perf did not count {event}: {}", text.trim()))
    };
    let m = msgs as f64;
    let (uc, ui) = (get("cycles:u")?, get("instructions:u")?);
    let (kc, ki) = (get("cycles:k")?, get("instructions:k")?);
    Ok(PerfPerMsg {
        user_instructions: ui / m,
        user_cycles: uc / m,
        kernel_instructions: ki / m,
        kernel_cycles: kc / m,
        user_ns_by_cycles: cpu_ns_per_msg * uc / (uc + kc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_divided_by_the_window_messages() {
        let text = "# started on Sun Nov 22 09:27:28 2026\n\n\
                    2000.5,msec,task-clock,2000500000,100.00,0.999,CPUs utilized\n\
                    300000,,cycles:u,2000500000,100.00,,\n\
                    100000,,instructions:u,2000500000,100.00,,\n\
                    9000000,,cycles:k,2000500000,100.00,,\n\
                    4000000,,instructions:k,2000500000,100.00,,\n";
        let p = per_msg(text, 1000, 1000.0).unwrap();
        assert_eq!(p.user_cycles, 300.0);
        assert_eq!(p.user_instructions, 100.0);
        assert_eq!(p.kernel_cycles, 9000.0);
        assert_eq!(p.kernel_instructions, 4000.0);
        assert!((p.user_ns_by_cycles - 1000.0 * 300000.0 / 9300000.0).abs() < 1e-9);
        assert!(per_msg(text, 0, 1.0).is_err());
        assert!(per_msg("<not counted>,,cycles:u", 10, 1.0).is_err());
    }
}
