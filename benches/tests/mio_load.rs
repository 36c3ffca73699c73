//! `mio_load`, the independent client, against `mio_echo`:
//! - `--messages N` ends its measured window once N messages have completed, however long the
//!   time limit: what `echo_compare --strace` relies on to trace every server over the same
//!   number of messages;
//! - `--latency` reports every measured message's round trip.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Kills the server when the test ends, passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `mio_echo` on a free port; returns it and its address.
fn start_server() -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mio_echo"))
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mio_echo starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("mio_echo announces its address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    (server, addr)
}

/// Runs `mio_load` against `addr` with `args`; returns its JSON object.
fn mio_load(addr: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mio_load"))
        .args(["--addr", addr, "--json"])
        .args(args)
        .output()
        .expect("mio_load runs");
    assert!(out.status.success(), "{out:?}");
    let json = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(json.trim()).expect("one JSON object")
}

#[test]
fn the_window_ends_after_the_given_number_of_messages() {
    let (_server, addr) = start_server();
    let connections = 10;
    let wanted = 3_000;
    let result = mio_load(
        &addr,
        &[
            "--warmup",
            "0",
            "--duration",
            "60",
            "--connections",
            &connections.to_string(),
            "--messages",
            &wanted.to_string(),
        ],
    );
    let msgs = result["msgs"].as_u64().expect("msgs");
    let secs = result["secs"].as_f64().expect("secs");
    // At least N, and at most one batch of events (one message per connection) more.
    assert!(
        (wanted..wanted + connections).contains(&msgs),
        "msgs {msgs} for --messages {wanted}"
    );
    // It stopped on the count, not on the 60 s limit.
    assert!(secs < 30.0, "the window lasted {secs} s");
}

#[test]
fn latency_reports_ordered_percentiles_only_when_asked() {
    let (_server, addr) = start_server();
    let args = ["--warmup", "0.1", "--duration", "0.5", "--connections", "4"];
    let timed = mio_load(&addr, &[&args[..], &["--latency"]].concat());
    let [p50, p99, max] = ["p50_us", "p99_us", "max_us"].map(|k| {
        timed[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} missing: {timed}"))
    });
    assert!(timed["msgs"].as_u64().expect("msgs") > 0, "{timed}");
    // A loopback round trip takes more than 0.1 µs, and the percentiles are
    // ordered.
    assert!(0.1 < p50 && p50 <= p99 && p99 <= max, "{timed}");

    let plain = mio_load(&addr, &args);
    assert!(plain.get("p50_us").is_none(), "{plain}");
}
