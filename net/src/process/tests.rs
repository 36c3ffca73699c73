//! The `SIGCHLD` fallback (where there is no `pidfd`), forced on a system
//! that has them: the same waits as `net/tests/process.rs` exercises on
//! `pidfd`s. And a watch that fails, through the crate's own
//! `Child::watch`.

use std::process::Stdio;

use super::Command;

fn run<F: std::future::Future<Output = std::io::Result<()>>>(f: impl FnOnce() -> F) {
    let runtime = cellio_runtime::Builder::new().workers(1).build().unwrap();
    runtime.block_on(f()).unwrap();
}

fn command(program: &str, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    command.force_sigchld = true;
    command
}

#[test]
fn without_a_pidfd_sigchld_ends_the_wait() {
    run(|| async {
        let mut child = command("sh", &["-c", "sleep 0.05; exit 7"]).spawn()?;
        assert!(!child.uses_pidfd());
        let status = child.wait().await?;
        assert_eq!(status.code(), Some(7));
        Ok(())
    });
}

#[test]
fn without_a_pidfd_many_children_exiting_together_are_each_seen() {
    run(|| async {
        // Deliveries coalesce: one SIGCHLD may stand for several exits,
        // and each waiter, parked at the time, still sees its own.
        let mut waiters = Vec::new();
        for code in 0..20 {
            let script = format!("sleep 0.0{}; exit {code}", code % 5);
            let mut child = command("sh", &["-c", &script]).spawn()?;
            waiters.push(cellio_runtime::spawn(async move { child.wait().await }));
        }
        for (code, waiter) in waiters.into_iter().enumerate() {
            assert_eq!(waiter.await.unwrap()?.code(), Some(code as i32));
        }
        Ok(())
    });
}

#[test]
fn without_a_pidfd_output_collects_both_streams() {
    run(|| async {
        let output = command("sh", &["-c", "echo out; echo err >&2"])
            .stdin(Stdio::null())
            .output()
            .await?;
        assert!(output.status.success());
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");
        Ok(())
    });
}

/// A child whose watch fails (here outside a runtime: the pidfd or the
/// `SIGCHLD` listener cannot be registered) is killed and its three
/// parent-side pipe ends are closed at once. (They used to go with the
/// killed process into the orphan list, open until a later spawn reaped
/// it; found by a review.)
#[test]
fn a_child_whose_watch_fails_has_its_pipes_closed_at_once() {
    use std::os::fd::AsRawFd;

    /// What descriptor `fd` is now (`pipe:[inode]` for a pipe).
    fn what(fd: i32) -> Option<std::path::PathBuf> {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
    }

    let process = std::process::Command::new("sleep")
        .arg("60")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A pipe's inode is its own while it is open: a number reused since
    // names another.
    let pipes = [
        process.stdin.as_ref().unwrap().as_raw_fd(),
        process.stdout.as_ref().unwrap().as_raw_fd(),
        process.stderr.as_ref().unwrap().as_raw_fd(),
    ]
    .map(|fd| (fd, what(fd).unwrap()));
    let error = super::Child::watch(process, false, false).expect_err("no runtime to watch it");
    assert!(error.to_string().contains("no cellio reactor"), "{error}");
    for (fd, pipe) in pipes {
        assert_ne!(what(fd), Some(pipe.clone()), "{fd} still {pipe:?}");
    }
}
