//! The `echo_compare` driver stopped by SIGTERM (a harness's timeout, `kill PID`) or SIGHUP
//! kills its pinned server and its client before exiting with 128 + the signal, instead of
//! leaving them running for ever (a signal's default action runs no `Drop`); the children do
//! not inherit the driver's blocking of those signals. Killed by SIGKILL, which runs nothing in
//! the driver, it still leaves none of them running (Linux: their parent-death signal).

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Kills the driver, and any child it left, when the test ends, passed or not.
struct Leftovers {
    driver: Child,
    children: Vec<(i32, &'static str)>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &(pid, comm) in &self.children {
            if alive(pid, comm) {
                // SAFETY: kill(2) only sends a signal, to a process this test saw the driver
                // start and that is still running.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `(comm, state, ppid)` from `/proc/PID/stat`, if the process exists.
fn stat(pid: i32) -> Option<(String, char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, tail) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let mut fields = tail.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((comm, state, ppid))
}

/// Running as `comm`: it exists, is not a zombie (a killed child of an exited driver is reaped
/// by whoever adopts it, or stays a zombie where nothing reaps) and its pid was not reused.
fn alive(pid: i32, comm: &str) -> bool {
    stat(pid).is_some_and(|(c, state, _)| c == comm && state != 'Z' && state != 'X')
}

/// The `SigBlk` mask of `pid` (bit N - 1 for signal N).
fn blocked_signals(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .expect("SigBlk line");
    u64::from_str_radix(mask.trim(), 16).expect("hex mask")
}

/// The pids of the running children of `parent` named `comm`.
fn children_named(parent: i32, comm: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            stat(pid).is_some_and(|(c, state, ppid)| c == comm && ppid == parent && state != 'Z')
        })
        .collect()
}

/// Starts the driver on a long mio run and waits (bounded) until both its server and its
/// client run: the driver, the server's pid and the client's.
fn start_run() -> (Leftovers, i32, i32) {
    let driver = Command::new(env!("CARGO_BIN_EXE_echo_compare"))
        .args([
            "--servers",
            "mio",
            "--rounds",
            "1",
            "--duration",
            "60",
            "--warmup",
            "0.5",
            "--latency-rate",
            "0",
            "--no-allocs",
            "--quiet-wait",
            "0",
            "--noisy-retries",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("echo_compare starts");
    let pid = driver.id() as i32;
    let mut run = Leftovers {
        driver,
        children: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, c) = (
            children_named(pid, "mio_echo"),
            children_named(pid, "mio_load"),
        );
        run.children = (s.iter().map(|&p| (p, "mio_echo")))
            .chain(c.iter().map(|&p| (p, "mio_load")))
            .collect();
        if let ([s], [c]) = (&s[..], &c[..]) {
            let (server, client) = (*s, *c);
            return (run, server, client);
        }
        assert!(
            run.driver.try_wait().expect("try_wait").is_none(),
            "the driver exited before its run started"
        );
        assert!(
            Instant::now() < deadline,
            "no server and client within 60 s"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) for the driver to exit after `signal`, then for the server and the client
/// to be gone, and fails if either is still running.
fn assert_the_children_die_with_the_driver(
    run: &mut Leftovers,
    server: i32,
    client: i32,
    signal: i32,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = run.driver.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the driver did not exit within 30 s"
        );
        thread::sleep(Duration::from_millis(20));
    };
    // The kill was sent before (or as) the driver exited; allow for the kernel to finish them.
    let running = || alive(server, "mio_echo") || alive(client, "mio_load");
    let deadline = Instant::now() + Duration::from_secs(10);
    while running() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(server, "mio_echo"),
        "signal {signal}: the server {server} outlived the driver ({status:?})"
    );
    assert!(
        !alive(client, "mio_load"),
        "signal {signal}: the client {client} outlived the driver ({status:?})"
    );
    status
}

#[test]
fn sigterm_and_sighup_kill_the_server_and_the_client() {
    for signal in [libc::SIGTERM, libc::SIGHUP] {
        let (mut run, server, client) = start_run();
        // The driver blocks the three signals in itself (a thread of its own takes them), not
        // in its children: the server must still stop on the SIGTERM the driver sends it.
        for pid in [server, client] {
            let blocked = blocked_signals(pid);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                assert_eq!(blocked & (1 << (s - 1)), 0, "{pid} blocks signal {s}");
            }
        }

        // SAFETY: kill(2) only sends a signal, to the driver this test started and has not
        // reaped.
        unsafe {
            libc::kill(run.driver.id() as i32, signal);
        }
        let status = assert_the_children_die_with_the_driver(&mut run, server, client, signal);
        let mut err = String::new();
        let _ = run
            .driver
            .stderr
            .take()
            .expect("piped stderr")
            .read_to_string(&mut err);
        assert_eq!(status.code(), Some(128 + signal), "{status:?}: {err}");
        assert!(err.contains("stopped by signal"), "{err}");
    }
}

/// SIGKILL (`timeout -s KILL`, `kill -9`, a CI runner's hard kill) runs nothing in the driver,
/// and the children are in process groups of their own: the kernel's parent-death signal is
/// what stops them.
#[cfg(target_os = "linux")]
#[test]
fn sigkill_of_the_driver_kills_the_server_and_the_client() {
    let (mut run, server, client) = start_run();
    // SAFETY: kill(2) only sends a signal, to the driver this test started and has not reaped.
    unsafe {
        libc::kill(run.driver.id() as i32, libc::SIGKILL);
    }
    assert_the_children_die_with_the_driver(&mut run, server, client, libc::SIGKILL);
}
