//! User time per message between syscalls, from the time-stamp counter (`--user-time`).
//!
//! `/proc` ticks split a server's CPU time into user and system statistically, and book part
//! of every syscall as user time; cycle counters, which settle it, are missing on VMs without
//! a PMU. This measures the user side directly instead: `user_time.c` (preloaded into the
//! server) replaces the libc functions that make syscalls with its own, which read the TSC on
//! both sides of the `syscall` instruction, and adds up the stretches between a call's return
//! and the thread's next call. The driver reads the shim's counters at the client's warm-up
//! and window marks, like the `/proc` samples, and divides by the window's messages.
//!
//! The measurement must not change the server's call depth at its syscalls: a long kernel
//! path (a loopback send) overwrites the CPU's return-stack predictor, so every frame more
//! between the program and the `syscall` instruction can turn a return after it into a
//! mispredicted one (two extra levels of calls around a raw mio loop's send cost it ~16 ns
//! per message). So the shim's wrappers make the syscall themselves instead of calling on
//! into libc (the program's call into the wrapper replaces its call into libc's), and cellio,
//! whose syscalls are inline `syscall` instructions that no preloaded library can see, is
//! measured in a build with `--cfg cellio_user_time_hooks` (`--cellio-hooks-bin`): the same
//! inline syscalls, with a call to the shim's `user_time_enter` right before each and
//! `user_time_leave` right after, neither live across the syscall. Each way has its own
//! floor (see [`Mechanism`]), measured on an empty loop that makes its calls the same way.
//!
//! Invariants: the counters only grow, so a window is the difference of two snapshots; a
//! snapshot whose magic is not the shim's fails the run rather than reading a stale or
//! foreign file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The shim's source, compiled with `cc` when the driver starts.
const SOURCE: &str = include_str!("user_time.c");
/// A loop with no user work between its calls, run under the shim to measure what the
/// wrappers and their TSC reads add to every segment (see [`Shim::floor_ns`]).
const FLOOR_SOURCE: &str = include_str!("user_time_floor.c");
/// Calls the floor loop makes.
const FLOOR_CALLS: u32 = 1_000_000;
/// "USERTIME" in ASCII, read as a big-endian u64: the layout version `user_time.c` writes.
const MAGIC: u64 = 0x5553_4552_5449_4d45;
/// Call kinds of the transition matrix, in the shim's order.
pub const KINDS: [&str; 4] = ["receive", "send", "wait", "other"];
/// u64 words in the counter page that the driver reads.
const WORDS: usize = 8 + 2 * KINDS.len() * KINDS.len();
/// A user segment longer than this was not the server's own work (it was descheduled, or
/// the VM stalled): counted apart.
const LONG_SEGMENT: Duration = Duration::from_millis(1);

/// How a server's syscalls reach the shim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// Through libc functions, which the shim replaces (every server but cellio).
    Wrappers,
    /// Inline `syscall` instructions bracketed by calls to the shim's hooks (cellio built
    /// with `--cfg cellio_user_time_hooks`).
    Hooks,
}

impl Mechanism {
    /// The mechanism `program` uses: `Hooks` if it names the shim's hooks (a cellio build
    /// with `--cfg cellio_user_time_hooks` looks them up by name).
    pub fn of(program: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(program)
            .map_err(|e| format!("cannot read {}: {e}", program.display()))?;
        // The name as the hooks build stores it for `dlsym`, NUL-terminated. Spelled
        // backwards here and turned round at run time, so that this program's own bytes do
        // not hold it and it never passes for a hooks build itself.
        let mut needle: Vec<u8> = b"retne_emit_resu".iter().rev().copied().collect();
        needle.push(0);
        Ok(if bytes.windows(needle.len()).any(|w| w == needle) {
            Mechanism::Hooks
        } else {
            Mechanism::Wrappers
        })
    }
}

/// The compiled shim, the TSC's rate, and the shim's own cost per segment.
pub struct Shim {
    dir: PathBuf,
    library: PathBuf,
    floor_bin: PathBuf,
    tsc_per_ns: f64,
    /// Indexed by [`Mechanism`] (`mechanism as usize`).
    floor_ns: [f64; 2],
}

impl Shim {
    /// Compiles `user_time.c` into a temporary directory, calibrates the TSC against the
    /// monotonic clock, and measures the shim's floor on CPU `core`.
    pub fn build(core: u32) -> Result<Self, String> {
        if !cfg!(target_arch = "x86_64") {
            return Err("--user-time reads the x86-64 time-stamp counter: not on this CPU".into());
        }
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        if !cpuinfo.contains("constant_tsc") {
            return Err(
                "--user-time needs a constant-rate TSC (`constant_tsc` in /proc/cpuinfo)".into(),
            );
        }
        static BUILDS: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "echo_compare.user_time.{}.{}",
            std::process::id(),
            BUILDS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let library = dir.join("user_time.so");
        let floor = dir.join("user_time_floor");
        compile(&dir, "user_time.c", SOURCE, &["-shared", "-fPIC"], &library)?;
        compile(&dir, "user_time_floor.c", FLOOR_SOURCE, &[], &floor)?;
        let mut shim = Shim {
            dir,
            library,
            floor_bin: floor,
            tsc_per_ns: calibrate_tsc(),
            floor_ns: [f64::NAN; 2],
        };
        shim.measure_floor(core)?;
        Ok(shim)
    }

    /// Runs the floor loop pinned to `core` under the shim, once through the wrappers and
    /// once through the hooks, and keeps their user ns per segment for the sessions made from
    /// now on. The floors drift with the VM (18–24 ns through the wrappers within an hour
    /// here), so the driver measures them again at the start of every round. Returns the two
    /// floors.
    pub fn measure_floor(&mut self, core: u32) -> Result<[f64; 2], String> {
        for mechanism in [Mechanism::Wrappers, Mechanism::Hooks] {
            let floor = &self.floor_bin;
            let session = self.session("floor", mechanism);
            let mut command = Command::new("taskset");
            command
                .arg("-c")
                .arg(core.to_string())
                .arg(floor)
                .arg(FLOOR_CALLS.to_string());
            if mechanism == Mechanism::Hooks {
                command.arg("hooks");
            }
            let status = command
                .envs(session.env().iter().map(|(k, v)| (k, v)))
                .status()
                .map_err(|e| format!("cannot run {}: {e}", floor.display()))?;
            if !status.success() {
                return Err(format!("{} failed ({status})", floor.display()));
            }
            let c = session.snapshot()?;
            if c.segments < u64::from(FLOOR_CALLS) / 2 {
                return Err(format!(
                    "the floor loop's {FLOOR_CALLS} calls ({mechanism:?}) gave only {} \
                     segments under the shim",
                    c.segments
                ));
            }
            self.floor_ns[mechanism as usize] = c.user as f64 / c.segments as f64 / self.tsc_per_ns;
        }
        Ok(self.floor_ns)
    }

    /// User ns the shim itself adds to every segment of a server whose calls reach it by
    /// `mechanism`: measured on a loop that does nothing between its calls (made the same
    /// way) but count, so it also holds the loop's own few instructions (the figure is, if
    /// anything, slightly high): the two `rdtsc` reads, the calls into the shim and its
    /// counter updates (not broken down further).
    pub fn floor_ns(&self, mechanism: Mechanism) -> f64 {
        self.floor_ns[mechanism as usize]
    }

    /// TSC ticks per nanosecond.
    pub fn tsc_per_ns(&self) -> f64 {
        self.tsc_per_ns
    }

    /// A counter file for one server run whose calls reach the shim by `mechanism`; the
    /// server must be started with [`Session::env`].
    pub fn session(&self, label: &str, mechanism: Mechanism) -> Session {
        let file = self.dir.join(format!("counters.{label}"));
        let _ = std::fs::remove_file(&file);
        Session {
            env: vec![
                ("LD_PRELOAD".into(), self.library.display().to_string()),
                ("USER_TIME_FILE".into(), file.display().to_string()),
                (
                    "USER_TIME_LONG_CYCLES".into(),
                    format!("{:.0}", LONG_SEGMENT.as_nanos() as f64 * self.tsc_per_ns),
                ),
            ],
            file,
            tsc_per_ns: self.tsc_per_ns,
            mechanism,
            floor_ns: self.floor_ns(mechanism),
        }
    }
}

/// Writes `source` as `dir/name` and compiles it with `cc -O2` (plus `flags`) into `out`.
fn compile(dir: &Path, name: &str, source: &str, flags: &[&str], out: &Path) -> Result<(), String> {
    let path = dir.join(name);
    std::fs::write(&path, source).map_err(|e| format!("write {}: {e}", path.display()))?;
    let result = Command::new("cc")
        .arg("-O2")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(&path)
        .arg("-ldl")
        .output()
        .map_err(|e| format!("cannot run cc: {e}"))?;
    if result.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cc failed to build {name}: {}",
            String::from_utf8_lossy(&result.stderr).trim()
        ))
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// TSC ticks per nanosecond over 200 ms of the monotonic clock.
fn calibrate_tsc() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` has no preconditions on x86-64.
        let t0 = unsafe { std::arch::x86_64::_rdtsc() };
        let w0 = Instant::now();
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: as above.
        let t1 = unsafe { std::arch::x86_64::_rdtsc() };
        let ns = w0.elapsed().as_nanos() as f64;
        (t1 - t0) as f64 / ns
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = Instant::now;
        f64::NAN
    }
}

/// One server run's counter file.
pub struct Session {
    env: Vec<(String, String)>,
    file: PathBuf,
    tsc_per_ns: f64,
    mechanism: Mechanism,
    floor_ns: f64,
}

impl Session {
    /// Environment for the server process.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The counters now.
    pub fn snapshot(&self) -> Result<Counters, String> {
        let bytes =
            std::fs::read(&self.file).map_err(|e| format!("read {}: {e}", self.file.display()))?;
        Counters::parse(&bytes).ok_or_else(|| {
            format!(
                "{}: not the user-time shim's counters (was the server started with \
                 LD_PRELOAD?)",
                self.file.display()
            )
        })
    }

    /// Per-message figures of the window between two snapshots.
    pub fn per_msg(&self, a: &Counters, b: &Counters, msgs: u64) -> UserTimePerMsg {
        UserTimePerMsg::new(a, b, msgs, self.tsc_per_ns, self.mechanism, self.floor_ns)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// A snapshot of the shim's counters (see `user_time.c` for the layout).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    pub user: u64,
    pub segments: u64,
    pub calls: u64,
    pub long_cycles: u64,
    pub long_segments: u64,
    /// User cycles by transition `before * 4 + after` (see [`KINDS`]).
    pub pair_cycles: [u64; 16],
    pub pair_segments: [u64; 16],
}

impl Counters {
    /// Reads a counter page; `None` if it is too short or its magic is wrong.
    pub fn parse(bytes: &[u8]) -> Option<Counters> {
        if bytes.len() < WORDS * 8 {
            return None;
        }
        let w = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        if w(0) != MAGIC {
            return None;
        }
        let mut c = Counters {
            user: w(1),
            segments: w(2),
            calls: w(3),
            long_cycles: w(4),
            long_segments: w(5),
            ..Counters::default()
        };
        for i in 0..16 {
            c.pair_cycles[i] = w(8 + i);
            c.pair_segments[i] = w(24 + i);
        }
        Some(c)
    }
}

/// User time per echoed message in one window.
#[derive(Clone, Copy, Debug)]
pub struct UserTimePerMsg {
    /// User ns per message (segments under [`LONG_SEGMENT`]).
    pub user_ns: f64,
    /// The same less the shim's floor for each segment ([`Shim::floor_ns`]).
    pub less_floor_ns: f64,
    /// Segments per message.
    pub segments: f64,
    /// How the server's calls reached the shim, and that way's floor used for
    /// `less_floor_ns`, ns per segment.
    pub mechanism: Mechanism,
    pub floor_ns: f64,
    /// Wrapped calls per message (compare with strace's syscalls per message).
    pub calls: f64,
    /// Segments over [`LONG_SEGMENT`] in the window, and their total ms (not in `user_ns`).
    pub long_segments: u64,
    pub long_ms: f64,
    /// By transition `before * 4 + after`: segments per message and ns per segment.
    pub pairs: [(f64, f64); 16],
}

impl UserTimePerMsg {
    fn new(
        a: &Counters,
        b: &Counters,
        msgs: u64,
        tsc_per_ns: f64,
        mechanism: Mechanism,
        floor_ns: f64,
    ) -> Self {
        let m = msgs.max(1) as f64;
        let d = |x: u64, y: u64| y.saturating_sub(x) as f64;
        let mut pairs = [(0.0, 0.0); 16];
        for (i, p) in pairs.iter_mut().enumerate() {
            let n = d(a.pair_segments[i], b.pair_segments[i]);
            let cycles = d(a.pair_cycles[i], b.pair_cycles[i]);
            *p = (
                n / m,
                if n > 0.0 {
                    cycles / n / tsc_per_ns
                } else {
                    0.0
                },
            );
        }
        let user_ns = d(a.user, b.user) / tsc_per_ns / m;
        let segments = d(a.segments, b.segments) / m;
        UserTimePerMsg {
            user_ns,
            less_floor_ns: user_ns - floor_ns * segments,
            segments,
            mechanism,
            floor_ns,
            calls: d(a.calls, b.calls) / m,
            long_segments: b.long_segments.saturating_sub(a.long_segments),
            long_ms: d(a.long_cycles, b.long_cycles) / tsc_per_ns / 1e6,
            pairs,
        }
    }

    /// The transitions that carry at least 1% of the messages, as `receive→send 1.00 × 30 ns`.
    pub fn transitions(&self) -> Vec<String> {
        self.pairs
            .iter()
            .enumerate()
            .filter(|(_, (per_msg, _))| *per_msg >= 0.01)
            .map(|(i, (per_msg, ns))| {
                format!(
                    "{}→{} {per_msg:.2}×{ns:.0}",
                    KINDS[i / KINDS.len()],
                    KINDS[i % KINDS.len()]
                )
            })
            .collect()
    }

    pub fn to_json(self) -> Value {
        json!({
            "user_ns_per_msg": self.user_ns,
            "user_ns_per_msg_less_floor": self.less_floor_ns,
            "segments_per_msg": self.segments,
            "mechanism": match self.mechanism {
                Mechanism::Wrappers => "wrappers",
                Mechanism::Hooks => "hooks",
            },
            "floor_ns_per_segment": self.floor_ns,
            "calls_per_msg": self.calls,
            "long_segments": self.long_segments,
            "long_ms": self.long_ms,
            "transitions": self.pairs.iter().enumerate().filter(|(_, p)| p.0 > 0.0).map(|(i, p)| json!({
                "from": KINDS[i / KINDS.len()],
                "to": KINDS[i % KINDS.len()],
                "per_msg": p.0,
                "ns_each": p.1,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Whether the rounds decide "`ours` ≤ `limit` × `base`": only with at least `min_rounds`
/// rounds each, and only if every round's ratio falls on the same side of the limit. Rounds
/// are interleaved, so round k of both servers ran in the same stretch of the VM's drift: they
/// are compared pairwise when both have all `rounds` (none failed), else every round of one
/// against every round of the other.
pub fn decided_by_rounds(
    ours: &[f64],
    base: &[f64],
    rounds: usize,
    limit: f64,
    min_rounds: usize,
) -> bool {
    if ours.len() < min_rounds || base.len() < min_rounds {
        return false;
    }
    let ratios: Vec<f64> = if ours.len() == rounds && base.len() == rounds {
        ours.iter().zip(base).map(|(x, y)| x / y).collect()
    } else {
        ours.iter()
            .flat_map(|x| base.iter().map(move |y| x / y))
            .collect()
    };
    ratios.iter().all(|&q| q <= limit) || ratios.iter().all(|&q| q > limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(words: &[(usize, u64)]) -> Vec<u8> {
        let mut v = vec![0u64; WORDS];
        v[0] = MAGIC;
        for &(i, x) in words {
            v[i] = x;
        }
        v.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn parses_the_page_and_rejects_foreign_bytes() {
        let c =
            Counters::parse(&page(&[(1, 10), (2, 3), (3, 4), (8 + 1, 7), (24 + 1, 2)])).unwrap();
        assert_eq!((c.user, c.segments, c.calls), (10, 3, 4));
        assert_eq!((c.pair_cycles[1], c.pair_segments[1]), (7, 2));
        let mut bad = page(&[]);
        bad[0] ^= 1;
        assert_eq!(Counters::parse(&bad), None);
        assert_eq!(Counters::parse(&page(&[])[..WORDS * 8 - 1]), None);
    }

    /// The real shim around a program whose syscalls are known: `dd` with one-byte blocks
    /// makes one `read` and one `write` per block.
    #[test]
    fn shim_sees_every_call_of_a_read_write_loop() {
        let shim = Shim::build(0).expect("build the shim (needs cc, taskset and x86-64)");
        assert!(shim.tsc_per_ns() > 0.1 && shim.tsc_per_ns() < 100.0);
        // Two TSC reads and a few instructions: more than nothing, far less than a syscall.
        for mechanism in [Mechanism::Wrappers, Mechanism::Hooks] {
            let floor = shim.floor_ns(mechanism);
            assert!(floor > 0.5 && floor < 500.0, "{mechanism:?} floor {floor}");
        }
        let session = shim.session("dd", Mechanism::Wrappers);
        let status = Command::new("dd")
            .args([
                "if=/dev/zero",
                "of=/dev/null",
                "bs=1",
                "count=5000",
                "status=none",
            ])
            .envs(session.env().iter().map(|(k, v)| (k, v)))
            // No segment counts as long (descheduled) however busy the machine is, so each
            // lands in its pair's count and the counts below are exact.
            .env("USER_TIME_LONG_CYCLES", "1000000000000000")
            .status()
            .expect("run dd");
        assert!(status.success());
        let c = session.snapshot().expect("counters written");
        // Start-up reads and closes come on top of the 5000 + 5000.
        assert!(c.calls >= 10_000 && c.calls < 10_100, "calls {}", c.calls);
        let (receive_send, send_receive) = (c.pair_segments[1], c.pair_segments[4]);
        assert!(
            (5000..5010).contains(&receive_send),
            "receive→send {receive_send}"
        );
        assert!(
            (4999..5010).contains(&send_receive),
            "send→receive {send_receive}"
        );
        assert_eq!(c.segments, c.pair_segments.iter().sum::<u64>());
        assert_eq!(c.long_segments, 0);
        assert!(c.user > 0);
    }

    #[test]
    fn a_hooks_build_is_told_by_the_hook_names() {
        let dir = std::env::temp_dir().join(format!("echo_compare.mech.{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (with, without) = (dir.join("with"), dir.join("without"));
        std::fs::write(&with, b"\x7fELF...user_time_leave\0user_time_enter\0...").unwrap();
        std::fs::write(&without, b"\x7fELF...user_time_enter_not\0...").unwrap();
        assert_eq!(Mechanism::of(&with), Ok(Mechanism::Hooks));
        assert_eq!(Mechanism::of(&without), Ok(Mechanism::Wrappers));
        assert!(Mechanism::of(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rounds_decide_only_when_they_all_agree() {
        let base = [100.0, 100.0, 100.0, 80.0];
        // Paired by round: the fourth round's 48 / 80 = 0.6 is on the far side too.
        assert!(decided_by_rounds(
            &[60.0, 62.0, 58.0, 48.0],
            &base,
            4,
            0.5,
            4
        ));
        // One round below the limit: undecided.
        assert!(!decided_by_rounds(
            &[60.0, 49.0, 58.0, 48.0],
            &base,
            4,
            0.5,
            4
        ));
        // All below: decided the other way.
        assert!(decided_by_rounds(
            &[40.0, 45.0, 30.0, 35.0],
            &base,
            4,
            0.5,
            4
        ));
        // Too few rounds: never decided.
        assert!(!decided_by_rounds(
            &[60.0, 62.0, 58.0],
            &base[..3],
            3,
            0.5,
            4
        ));
        // A failed round: every round against every round, so 48 / 100 = 0.48 counts.
        assert!(!decided_by_rounds(
            &[60.0, 62.0, 58.0, 48.0],
            &base,
            5,
            0.5,
            4
        ));
    }

    #[test]
    fn per_message_figures_are_window_differences() {
        let a = Counters::parse(&page(&[
            (1, 1000),
            (2, 5),
            (3, 10),
            (24 + 1, 5),
            (8 + 1, 500),
        ]))
        .unwrap();
        let b = Counters::parse(&page(&[
            (1, 5000),
            (2, 15),
            (3, 30),
            (5, 1),
            (4, 4_000_000),
            (24 + 1, 15),
            (8 + 1, 2500),
        ]))
        .unwrap();
        // 2 TSC ticks per ns, 10 messages, a floor of 30 ns per segment.
        let p = UserTimePerMsg::new(&a, &b, 10, 2.0, Mechanism::Wrappers, 30.0);
        assert_eq!(p.user_ns, 200.0);
        assert_eq!(p.segments, 1.0);
        assert_eq!(p.less_floor_ns, 170.0);
        assert_eq!(p.calls, 2.0);
        assert_eq!((p.long_segments, p.long_ms), (1, 2.0));
        assert_eq!(p.pairs[1], (1.0, 100.0)); // receive→send: 10 segments of 2000 ticks
        assert_eq!(p.transitions(), vec!["receive→send 1.00×100".to_string()]);
    }
}
