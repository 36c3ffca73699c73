//! The `echo_compare` driver refuses bad flags before it starts anything: one line on stderr,
//! exit status 2.

use std::process::Command;

#[test]
fn bad_flags_are_one_line_errors() {
    for args in [
        &["--bogus"][..],
        &["--rounds", "x"],
        // Latency windows that do not divide the run, or too many of them.
        &["--latency-window", "0.3"],
        &["--latency-secs", "10", "--latency-window", "0.001"],
        // The client check needs the cellio server.
        &["--servers", "mio", "--client-check", "2"],
        &["--client-check", "2"], // no --cellio-bin: no cellio server
        &["--client-check", "-1"],
        // --together needs two or more listed servers, the latency runs and their windows.
        &["--servers", "mio,tokio-current", "--together", "mio"],
        &["--servers", "mio,tokio-current", "--together", "mio,cellio"],
        &["--servers", "mio,tokio-current", "--together", "mio,mio"],
        &["--together", "mio,tokio-current", "--latency-rate", "0"],
        &["--together", "mio,tokio-current", "--latency-window", "0"],
    ] {
        check(args);
    }
    // --user-time runs cellio from a build that calls the user-time shim's hooks: without
    // one, with a path that is not a file, or with a build that does not name the hooks, it
    // refuses before anything runs. (Any existing file stands in for the server here:
    // nothing is started; this test's driver binary names no hooks.)
    let any_file = env!("CARGO_BIN_EXE_echo_compare");
    let user_time = [
        "--user-time",
        "--servers",
        "cellio",
        "--cellio-bin",
        any_file,
    ];
    check(&user_time);
    for hooks_bin in ["/nonexistent/echo_server", any_file] {
        check(&[&user_time[..], &["--cellio-hooks-bin", hooks_bin]].concat());
    }
}

/// `echo_compare ARGS` fails with one line on stderr, exit status 2 and nothing on stdout.
fn check(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_echo_compare"))
        .args(args)
        .output()
        .expect("echo_compare runs");
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("echo_compare: error:"), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}");
}
