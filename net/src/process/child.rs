//! [`Child`]: a running process, its exit awaited on the reactor.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::process::{ExitStatus, Output};
use std::task::{Context, Poll};

use super::exit::ExitWatch;
use super::orphans;
use super::pipe::{ChildStderr, ChildStdin, ChildStdout};

/// A child process started by [`Command::spawn`](super::Command::spawn)
/// (tokio's `process::Child`): its standard streams, if piped, and its
/// exit, awaited without blocking the worker.
///
/// Dropping a `Child` whose exit was not collected leaves the process
/// running (as `std` does), unless the command asked for
/// [`kill_on_drop`](super::Command::kill_on_drop); either way cellio reaps
/// it once it exits (at the next `spawn`), so it does not stay a zombie.
///
/// # Which worker
///
/// Its exit and its pipes are watched by the reactor of the worker that
/// spawned it, as a socket's readiness is. It may be moved to and awaited
/// on another worker, but the wake-up comes through that first worker's
/// reactor. Worker 0's runs only inside `Runtime::block_on`: a `Child`
/// spawned in `block_on`'s future and awaited in a task on another worker
/// after `block_on` returned sees an exit that came before (the status is
/// tried first), but not one that comes later, nor its pipes' data, until
/// `block_on` runs again (unlike tokio, whose workers share one driver).
/// Spawn it in a task on the worker that waits for it
/// (`cellio_runtime::spawn_on`), or wait for it inside `block_on`.
///
/// # Examples
///
/// ```no_run
/// use cellio_net::process::Command;
///
/// # async fn f() -> std::io::Result<()> {
/// let mut child = Command::new("sleep").arg("1").spawn()?;
/// // Other tasks run meanwhile: the worker is not blocked.
/// let status = child.wait().await?;
/// assert!(status.success());
/// # Ok(()) }
/// ```
pub struct Child {
    /// The child's standard input, if it was piped
    /// ([`Stdio::piped`](std::process::Stdio::piped)).
    pub stdin: Option<ChildStdin>,
    /// The child's standard output, if it was piped.
    pub stdout: Option<ChildStdout>,
    /// The child's standard error, if it was piped.
    pub stderr: Option<ChildStderr>,
    /// `None` only during `drop`.
    process: Option<std::process::Child>,
    exit: ExitWatch,
    /// Set once collected: the process is reaped and its pid may be reused.
    status: Option<ExitStatus>,
    kill_on_drop: bool,
}

impl Child {
    /// Watches `process`, just started: its exit and its piped streams on
    /// the current worker's reactor. If that fails (out of descriptors),
    /// the process is killed (and reaped later), its pipes closed, and the
    /// error returned: it must not run on unseen.
    pub(crate) fn watch(
        mut process: std::process::Child,
        force_sigchld: bool,
        kill_on_drop: bool,
    ) -> io::Result<Self> {
        let watched = (|| {
            let exit = ExitWatch::new(&process, force_sigchld)?;
            let stdin = process.stdin.take().map(ChildStdin::new).transpose()?;
            let stdout = process.stdout.take().map(ChildStdout::new).transpose()?;
            let stderr = process.stderr.take().map(ChildStderr::new).transpose()?;
            io::Result::Ok((exit, stdin, stdout, stderr))
        })();
        match watched {
            Ok((exit, stdin, stdout, stderr)) => Ok(Self {
                stdin,
                stdout,
                stderr,
                process: Some(process),
                exit,
                status: None,
                kill_on_drop,
            }),
            Err(e) => {
                let _ = process.kill();
                // The pipes not yet taken close now, not when a later
                // spawn reaps the orphan (if one ever comes).
                process.stdin = None;
                process.stdout = None;
                process.stderr = None;
                orphans::adopt(process);
                Err(e)
            }
        }
    }

    fn process(&mut self) -> &mut std::process::Child {
        self.process.as_mut().expect("present until drop")
    }

    /// The process's id, while it runs or has exited uncollected; `None`
    /// once its exit status was collected (by [`wait`](Self::wait) or
    /// [`try_wait`](Self::try_wait)): the system may then give the number
    /// to another process.
    pub fn id(&self) -> Option<u32> {
        match self.status {
            Some(_) => None,
            None => self.process.as_ref().map(std::process::Child::id),
        }
    }

    /// Waits for the process to exit and returns its status, without
    /// blocking the worker. Closes [`stdin`](Self::stdin) first, if it was
    /// piped, so a child that reads to end of file can finish.
    ///
    /// Cancel-safe: dropping the future leaves the process running, and a
    /// later `wait` still gets its status. Once collected, the status is
    /// kept: `wait` again returns it at once.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.stdin = None;
        poll_fn(|cx| self.poll_wait(cx)).await
    }

    /// The exit status if the process has exited (collecting it), `None`
    /// if it still runs. Never waits.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let status = self.process().try_wait()?;
        self.status = status;
        Ok(status)
    }

    /// Sends the process `SIGKILL`, without waiting for it to exit (collect
    /// its status with [`wait`](Self::wait)). Does nothing if its status
    /// was already collected.
    pub fn start_kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        self.process().kill()
    }

    /// Sends the process `SIGKILL` and waits for it to exit.
    pub async fn kill(&mut self) -> io::Result<()> {
        self.start_kill()?;
        self.wait().await.map(drop)
    }

    /// Waits for the process to exit while reading all of its piped
    /// standard output and error (both at once, so a child that fills one
    /// pipe while the parent waits on the other cannot stall); closes
    /// stdin first. Streams that were not piped come back empty.
    ///
    /// ```no_run
    /// use std::process::Stdio;
    /// use cellio_net::process::Command;
    ///
    /// # async fn f() -> std::io::Result<()> {
    /// let child = Command::new("git")
    ///     .arg("status")
    ///     .stdout(Stdio::piped())
    ///     .stderr(Stdio::piped())
    ///     .spawn()?;
    /// let output = child.wait_with_output().await?;
    /// println!("{}", String::from_utf8_lossy(&output.stdout));
    /// # Ok(()) }
    /// ```
    pub async fn wait_with_output(mut self) -> io::Result<Output> {
        self.stdin = None;
        let (mut stdout, mut stderr) = (self.stdout.take(), self.stderr.take());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut status = None;
        poll_fn(|cx| {
            if let Some(pipe) = &mut stdout {
                if pipe.poll_read_to_end(cx, &mut out)?.is_ready() {
                    stdout = None;
                }
            }
            if let Some(pipe) = &mut stderr {
                if pipe.poll_read_to_end(cx, &mut err)?.is_ready() {
                    stderr = None;
                }
            }
            if status.is_none() {
                if let Poll::Ready(exited) = self.poll_wait(cx)? {
                    status = Some(exited);
                }
            }
            match status {
                Some(status) if stdout.is_none() && stderr.is_none() => Poll::Ready(Ok(Output {
                    status,
                    stdout: std::mem::take(&mut out),
                    stderr: std::mem::take(&mut err),
                })),
                _ => Poll::Pending,
            }
        })
        .await
    }

    /// `true` if the exit is watched through a `pidfd` (Linux 5.3 and
    /// later), `false` if through `SIGCHLD` deliveries.
    #[cfg(test)]
    pub(crate) fn uses_pidfd(&self) -> bool {
        self.exit.is_pidfd()
    }

    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<ExitStatus>> {
        if let Some(status) = self.status {
            return Poll::Ready(Ok(status));
        }
        let process = self.process.as_mut().expect("present until drop");
        let status = std::task::ready!(self.exit.poll_exit(cx, process))?;
        self.status = Some(status);
        Poll::Ready(Ok(status))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        let Some(mut process) = self.process.take() else {
            return;
        };
        if self.kill_on_drop {
            if let Err(e) = process.kill() {
                tracing::debug!(error = %e, pid = process.id(), "kill on drop failed");
            }
        }
        // Still running (or not yet reaped): reaped later, not left a
        // zombie.
        if let Ok(None) = process.try_wait() {
            orphans::adopt(process);
        }
    }
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("id", &self.id())
            .field("status", &self.status)
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish_non_exhaustive()
    }
}
