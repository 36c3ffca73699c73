//! The `tick_bias` calibration program: both loops run, count their syscalls and report their
//! ticks as one JSON object; bad flags get a one-line error and exit status 2.

use std::process::Command;

use serde_json::Value;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tick_bias"))
        .args(args)
        .output()
        .expect("tick_bias runs")
}

fn json_of(mode: &str) -> Value {
    let out = run(&["--mode", mode, "--secs", "0.3", "--json"]);
    assert!(out.status.success(), "{mode}: {:?}", out);
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn tcp_loop_makes_two_syscalls_per_iteration() {
    let v = json_of("tcp");
    assert_eq!(v["mode"], "tcp");
    let iterations = v["iterations"].as_u64().unwrap();
    assert!(iterations >= 256, "at least one batch ran: {v}");
    assert_eq!(v["syscalls"].as_u64().unwrap(), 2 * iterations);
    // 0.3 s of a busy loop: some ticks were booked, user or system.
    let ticks = v["user_ticks"].as_u64().unwrap() + v["sys_ticks"].as_u64().unwrap();
    assert!(ticks > 0, "{v}");
    assert!(v["user_ns_per_iter"].as_f64().unwrap() >= 0.0);
}

#[test]
fn getppid_loop_makes_one_syscall_per_iteration() {
    let v = json_of("getppid");
    assert_eq!(v["mode"], "getppid");
    assert_eq!(v["syscalls"], v["iterations"]);
}

#[test]
fn bad_flags_are_one_line_errors() {
    for args in [&["--secs", "0"][..], &["--mode", "udp"]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("tick_bias: error:"), "{args:?}: {err}");
    }
}
