//! The example servers' flags (the echo server's, and those it shares with
//! the proxy): a combination in which a flag would do nothing, or that
//! cannot work, is an error (exit 2) before anything binds.

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

/// `--restart-socket` with more listening sockets (`--workers`) than one
/// hand-over message carries (253) is a flag error before anything
/// starts, in the echo server and the proxy (the UDP echo server's:
/// `udp_echo_server_restart.rs`; the HTTP one's: its own tests). (The
/// error came from inside the runtime, all the workers started, with exit
/// status 1; found by a review.)
#[test]
fn restart_socket_with_more_than_253_sockets_is_a_flag_error() {
    let path = std::env::temp_dir().join(format!("cellio-flags-restart-{}", std::process::id()));
    let path_arg = path.to_str().unwrap();
    for program in ["echo_server", "proxy"] {
        let bin = example_bin::build_example(program);
        let out = Command::new("timeout")
            .arg("10")
            .arg(&bin)
            .args(["--addr", "127.0.0.1:0", "--workers", "254"])
            .args(["--restart-socket", path_arg])
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert_eq!(out.status.code(), Some(2), "{program}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("at most 253"), "{program}: {stderr}");
        assert!(
            stderr.contains(&format!("\nUsage: {program} ")),
            "{program}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{program}: it started");
        assert!(!path.exists(), "{program}: it offered restarts");
    }
}
