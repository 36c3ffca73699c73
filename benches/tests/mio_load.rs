//! `mio_load`, the independent client, against `mio_echo`:
//! - `--messages N` ends its measured window once N messages have completed, however long the
//!   time limit: what `echo_compare --strace` relies on to trace every server over the same
//!   number of messages;
//! - `--latency` reports every measured message's round trip;
//! - at the end each connection reads until the server closes it: bytes after the last echo are
//!   a mismatch, and a server that keeps the connection open is not an error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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

/// Runs `mio_load --json` against `addr` with `args`.
fn run_mio_load(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mio_load"))
        .args(["--addr", addr, "--json"])
        .args(args)
        .output()
        .expect("mio_load runs")
}

/// The JSON object of a run's stdout.
fn json(out: &Output) -> serde_json::Value {
    let json = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("one JSON object ({e}): {out:?}"))
}

/// Runs `mio_load` against `addr` with `args`; returns its JSON object (a test failure if it
/// did not succeed).
fn mio_load(addr: &str, args: &[&str]) -> serde_json::Value {
    let out = run_mio_load(addr, args);
    assert!(out.status.success(), "{out:?}");
    json(&out)
}

/// A blocking echo server on an ephemeral port, a thread per connection, that once it has read
/// the end of the stream sends `tail` and then either closes the connection or (`hold`) keeps
/// it open for 30 s. Returns the address.
fn echo_then_at_the_end(tail: &'static [u8], hold: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr").to_string();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                if stream.write_all(tail).is_ok() && hold {
                    thread::sleep(Duration::from_secs(30));
                }
            });
        }
    });
    addr
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

/// Bytes the server sends after the echo of everything a connection sent (here after the
/// client's end of stream) are a mismatch, as they are in the window.
#[test]
fn bytes_after_the_last_echo_are_mismatches() {
    let addr = echo_then_at_the_end(b"bye", false);
    let out = run_mio_load(
        &addr,
        &["--warmup", "0", "--duration", "0.2", "--connections", "3"],
    );
    let v = json(&out);
    assert!(!out.status.success(), "{out:?}");
    assert!(v["msgs"].as_u64().expect("msgs") > 0, "{v}");
    // One per connection.
    assert_eq!(v["mismatches"], 3, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
}

/// A server that keeps the connection open after the client's end of stream: the end of the
/// run waits a bounded time for it, and that is not an error.
#[test]
fn a_server_that_stays_open_after_the_last_echo_does_not_fail_the_run() {
    let addr = echo_then_at_the_end(b"", true);
    let start = Instant::now();
    let v = mio_load(
        &addr,
        &["--warmup", "0", "--duration", "0.2", "--connections", "3"],
    );
    assert_eq!(v["mismatches"], 0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    // Not the server's 30 s.
    assert!(start.elapsed() < Duration::from_secs(20));
}
