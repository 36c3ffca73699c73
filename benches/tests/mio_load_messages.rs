//! `mio_load --messages N` ends its measured window once N messages have completed, however
//! long the time limit: what `echo_compare --strace` relies on to trace every server over the
//! same number of messages.

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

#[test]
fn the_window_ends_after_the_given_number_of_messages() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mio_echo"))
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mio_echo starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let _server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("mio_echo announces its address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));

    let connections = 10;
    let wanted = 3_000;
    let out = Command::new(env!("CARGO_BIN_EXE_mio_load"))
        .args(["--addr", addr, "--json"])
        .args(["--warmup", "0", "--duration", "60"])
        .args(["--connections", &connections.to_string()])
        .args(["--messages", &wanted.to_string()])
        .output()
        .expect("mio_load runs");
    assert!(out.status.success(), "{out:?}");
    let json = String::from_utf8_lossy(&out.stdout);
    let result: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
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
