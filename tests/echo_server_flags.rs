//! The echo server example's flags: a combination in which a flag would do
//! nothing is an error (exit 2) before anything binds.

use std::process::Command;

#[path = "util/example_bin.rs"]
mod example_bin;

/// `--accept handoff` with one worker: nobody to hand connections to.
/// (It was accepted, and served as `reuseport` does; found by a review.)
#[test]
fn handoff_with_one_worker_is_a_flag_error() {
    let bin = example_bin::build_example("echo_server");
    for workers in [None, Some("1")] {
        let mut command = Command::new("timeout");
        // Killed (exit 124) if it starts after all.
        command
            .arg("10")
            .arg(&bin)
            .args(["--addr", "127.0.0.1:0", "--accept", "handoff"]);
        if let Some(workers) = workers {
            command.args(["--workers", workers]);
        }
        let out = command.output().expect("run echo_server");
        assert_eq!(out.status.code(), Some(2), "--workers {workers:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--accept handoff"), "{stderr}");
        // Named as in clap's own flag errors. (The usage line read
        // `Usage: cellio [OPTIONS]`, the package's name; found by a review.)
        assert!(stderr.contains("\nUsage: echo_server "), "{stderr}");
        assert!(out.stdout.is_empty(), "it started");
    }
}
