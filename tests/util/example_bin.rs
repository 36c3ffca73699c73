//! Building an example of this package for an integration test that runs
//! it as a process: the binary `cargo test` would build next to the test
//! (`target/<profile>/examples/NAME`), built with the test's own profile
//! and target directory, so it is never stale.

use std::path::PathBuf;
use std::process::Command;

/// Runs `cargo build --example name` with this test's profile and target
/// directory, and returns the example's path.
#[allow(dead_code)] // the HTTP example's tests run a binary cargo built
pub fn build_example(name: &str) -> PathBuf {
    // This test runs as target/<profile>/deps/TEST-HASH.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--example", name]);
    if release {
        cargo.arg("--release");
    }
    // Same target directory as this test, wherever it is.
    if let Some(target) = profile_dir.parent() {
        cargo.env("CARGO_TARGET_DIR", target);
    }
    let status = cargo.status().expect("run cargo build --example");
    assert!(status.success(), "cargo build --example {name} failed");
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} not found", bin.display());
    bin
}

/// The address an example server announces on its first line of stdout
/// (`listening on ADDR`, maybe followed by `, ...`), read from `child`,
/// whose stdout is taken (it must have been piped).
#[allow(dead_code)] // not every test starts a server
pub fn listening_addr(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut first)
        .expect("read the server's first line");
    first
        .trim()
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_string()
}

/// Waits up to `limit` for `child` to exit: its status, or `None` if it is
/// still running.
#[allow(dead_code)] // not every test waits for an exit
pub fn wait_exit(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// An example server running as a process, listening on an ephemeral port
/// (`--addr 127.0.0.1:0`, its address read from its first line of
/// stdout), killed when dropped. Its stderr is the test's.
#[allow(dead_code)] // not every test starts a server
pub struct RunningExample {
    pub child: std::process::Child,
    /// Where it listens.
    pub addr: String,
}

#[allow(dead_code)]
impl RunningExample {
    /// Builds and starts example `name` with `args` after `--addr
    /// 127.0.0.1:0`.
    pub fn start(name: &str, args: &[&str]) -> RunningExample {
        Self::start_program(build_example(name), args)
    }

    /// Starts `program` (a server binary) with `args` after `--addr
    /// 127.0.0.1:0`.
    pub fn start_program(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> RunningExample {
        let program = program.as_ref();
        let mut child = Command::new(program)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.to_string_lossy()));
        let addr = listening_addr(&mut child);
        RunningExample { child, addr }
    }
}

impl Drop for RunningExample {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to process `pid` (a child the test started).
#[allow(dead_code)] // not every test stops a server
pub fn sigterm(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    // SAFETY: `kill` only sends a signal; `pid` is a child this test
    // started and has not waited for, so it names no other process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill {pid}");
}
