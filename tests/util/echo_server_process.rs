//! The echo server example (`examples/echo_server.rs`) as a process, for the
//! integration tests of its behaviour: built like the test
//! (`example_bin.rs`), listening on an ephemeral port, killed when dropped.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;

#[path = "example_bin.rs"]
pub mod example_bin;
#[path = "fd_limit.rs"]
pub mod fd_limit;
#[path = "server_lines.rs"]
pub mod server_lines;

/// A running echo server.
pub struct EchoServer {
    child: Child,
    /// Where it listens.
    pub addr: String,
    /// Its stderr, line by line (each also echoed on this test's stderr).
    pub lines: Receiver<String>,
}

impl EchoServer {
    /// Starts it with `args` (after `--addr 127.0.0.1:0`), under
    /// `ulimit LIMIT` if given (e.g. `-n 40`: soft and hard, `-S -n 40`:
    /// the soft limit only) with only the standard streams open
    /// ([`fd_limit::under_ulimit`]).
    pub fn start(args: &[&str], ulimit: Option<&str>) -> Self {
        let mut child = command(args, ulimit)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the echo server");
        let addr = example_bin::listening_addr(&mut child);
        let lines = server_lines::lines_of(child.stderr.take().expect("stderr"));
        EchoServer { child, addr, lines }
    }

    /// Sends the server SIGTERM (the child is the server: a shell setting a
    /// limit `exec`s it).
    #[allow(dead_code)] // not every test stops a server
    pub fn sigterm(&self) {
        example_bin::sigterm(self.child.id());
    }

    /// Sends the server `signal` (such as `libc::SIGINT`).
    #[allow(dead_code)] // not every test stops a server
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: `kill` only sends a signal; `pid` is the child this
        // value started and has not waited for (it is reaped only in
        // `wait_exit` or `drop`), so it names no other process.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
    }

    /// Waits up to `limit` for the server to exit: its status, or `None`
    /// if it is still running.
    #[allow(dead_code)] // not every test waits for an exit
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        example_bin::wait_exit(&mut self.child, limit)
    }
}

/// The echo server's command line: see [`EchoServer::start`].
pub fn command(args: &[&str], ulimit: Option<&str>) -> Command {
    let bin = example_bin::build_example("echo_server");
    let mut command = match ulimit {
        Some(limit) => fd_limit::under_ulimit(&bin, limit),
        None => Command::new(&bin),
    };
    command.args(["--addr", "127.0.0.1:0"]).args(args);
    command
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
