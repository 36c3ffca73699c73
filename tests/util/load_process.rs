//! Running the bundled load client (`examples/load`) as a process, for the
//! integration tests of it: the binary is the one `cargo test` builds next
//! to the test (`target/<profile>/examples/load`); the first use runs
//! `cargo build --example load` with the same profile, so it is never
//! stale (`example_bin.rs`).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

#[path = "example_bin.rs"]
pub mod example_bin;
#[path = "netns.rs"]
mod netns;

/// Builds the example once (same profile as this test) and returns its path.
pub fn load_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| example_bin::build_example("load"))
}

/// Runs the load client with `args`; its output is echoed on stderr (shown
/// when a test fails).
pub fn run_load(args: &[&str]) -> Output {
    let start = Instant::now();
    let out = Command::new(load_bin())
        .args(args)
        .output()
        .expect("run the load example");
    eprintln!(
        "load {} -> {:?} in {:?}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status.code(),
        start.elapsed(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The one JSON object `--json` prints on stdout.
pub fn json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8(out.stdout.clone()).expect("utf-8 stdout");
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let line = lines.next().expect("one JSON line on stdout");
    assert!(
        lines.next().is_none(),
        "exactly one line on stdout: {stdout}"
    );
    serde_json::from_str(line).expect("stdout is one JSON object")
}

/// The count `key` of a JSON report (a test failure if it is not one).
pub fn count(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is a count: {v}"))
}

/// The run's steady state allocated nothing: some messages were counted
/// in the allocation window (`alloc_window_msgs`), at exactly 0
/// allocations.
pub fn assert_no_allocations(v: &serde_json::Value) {
    let msgs = v["alloc_window_msgs"].as_u64().expect("alloc_window_msgs");
    assert!(msgs > 0, "no message in the allocation window: {v}");
    assert_eq!(v["allocs_per_msg"], 0.0, "{v}");
}

/// Runs the load client with `args` in a network namespace of its own
/// (`unshare -rn`: an unprivileged user namespace) whose loopback is up and
/// whose only ephemeral port is `port`: a socket it connects to
/// `127.0.0.1:{port}` without binding gets that very port, so with nothing
/// listening there it is connected to itself. `None` (the test then checks
/// nothing) where such namespaces cannot be made.
#[allow(dead_code)] // not every test file needs it
pub fn run_load_with_one_ephemeral_port(port: u16, args: &[&str]) -> Option<Output> {
    let setup = format!(
        "ip link set lo up && echo '{port} {port}' > /proc/sys/net/ipv4/ip_local_port_range"
    );
    let label = format!("load (ephemeral port {port})");
    netns::run_in_a_namespace(&setup, load_bin(), args, &label)
}
