//! The `SIGCHLD` fallback (where there is no `pidfd`), forced on a system
//! that has them: the same waits as `net/tests/process.rs` exercises on
//! `pidfd`s.

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
