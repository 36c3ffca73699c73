//! [`Command`]: `std::process::Command` whose children are awaited on the
//! reactor.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Output, Stdio};

use cellio_reactor::Handle;

use super::child::Child;
use super::orphans;

/// A process to start (tokio's `process::Command`): `std`'s builder, with
/// [`spawn`](Self::spawn) returning a [`Child`] whose exit and piped
/// streams are awaited on the current worker's reactor, and
/// [`status`](Self::status) and [`output`](Self::output) as futures.
///
/// Everything `std::process::Command` can set is reachable through
/// [`as_std_mut`](Self::as_std_mut) (`process_group`, `uid`, `pre_exec`,
/// …); a `std::process::Command` converts with `From`.
///
/// # Examples
///
/// ```
/// use cellio_net::process::Command;
///
/// # cellio_runtime::Runtime::new()?.block_on(async {
/// let output = Command::new("echo").arg("hello").output().await?;
/// assert!(output.status.success());
/// assert_eq!(output.stdout, b"hello\n");
/// # Ok::<(), std::io::Error>(())
/// # })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Command {
    std: std::process::Command,
    kill_on_drop: bool,
    /// Which of stdin, stdout, stderr were set through this builder (for
    /// [`output`](Self::output)'s defaults).
    stdio_set: [bool; 3],
    /// Watches the exit through `SIGCHLD` even where `pidfd`s exist (the
    /// fallback's tests).
    pub(crate) force_sigchld: bool,
}

impl Command {
    /// A command to run `program` (looked up in `PATH` if it has no
    /// slash), with no arguments, the parent's environment and working
    /// directory, and its standard streams inherited.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self::from(std::process::Command::new(program))
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.std.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.std.args(args);
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.std.env(key, value);
        self
    }

    /// Sets environment variables for the child.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.std.envs(vars);
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.std.env_remove(key);
        self
    }

    /// Starts the child with an empty environment (plus what
    /// [`env`](Self::env) adds after).
    pub fn env_clear(&mut self) -> &mut Self {
        self.std.env_clear();
        self
    }

    /// The child's working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.std.current_dir(dir);
        self
    }

    /// The child's standard input: [`Stdio::piped`] gives
    /// [`Child::stdin`] a [`ChildStdin`](super::ChildStdin).
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.std.stdin(cfg);
        self.stdio_set[0] = true;
        self
    }

    /// The child's standard output: [`Stdio::piped`] gives
    /// [`Child::stdout`] a [`ChildStdout`](super::ChildStdout).
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.std.stdout(cfg);
        self.stdio_set[1] = true;
        self
    }

    /// The child's standard error: [`Stdio::piped`] gives
    /// [`Child::stderr`] a [`ChildStderr`](super::ChildStderr).
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.std.stderr(cfg);
        self.stdio_set[2] = true;
        self
    }

    /// Whether dropping the [`Child`] before its exit was collected sends
    /// the process `SIGKILL` (default `false`: it keeps running, as with
    /// `std`). Either way cellio reaps it once it exits.
    pub fn kill_on_drop(&mut self, kill_on_drop: bool) -> &mut Self {
        self.kill_on_drop = kill_on_drop;
        self
    }

    /// The `std` builder, to read what is set.
    pub fn as_std(&self) -> &std::process::Command {
        &self.std
    }

    /// The `std` builder, for what this one does not wrap
    /// (`std::os::unix::process::CommandExt`: `process_group`, `uid`,
    /// `gid`, `arg0`, `pre_exec`).
    ///
    /// Set the standard streams through this builder
    /// ([`stdin`](Self::stdin), [`stdout`](Self::stdout),
    /// [`stderr`](Self::stderr)), not here: [`output`](Self::output)
    /// cannot see a stream set here, replaces it, and leaves it inherited
    /// for every later start of this command.
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.std
    }

    /// Starts the process. Its exit ([`Child::wait`]) and piped streams
    /// are watched by the current worker's reactor: the [`Child`] belongs
    /// to that worker, as a socket or a `Signal` made there does (see
    /// [`Child`], "Which worker").
    ///
    /// # Errors
    ///
    /// * what `std::process::Command::spawn` returns (`NotFound` for a
    ///   program that does not exist, `PermissionDenied`, …);
    /// * outside a cellio runtime's workers, an error saying so and what
    ///   to do, and no process is started: that is outside any runtime,
    ///   and in a `spawn_blocking` job too, whose thread has no reactor to
    ///   watch the child. Spawn the child from a task (the one that awaits
    ///   the job, say), or send the spawn to a worker with `spawn_on`.
    pub fn spawn(&mut self) -> io::Result<Child> {
        // Before the fork: outside a runtime, nothing is started.
        Handle::current().map_err(|e| {
            io::Error::new(
                e.kind(),
                "cellio: Command::spawn runs on a cellio runtime's worker (in \
                 Runtime::block_on or a task), whose reactor watches the child; not in a \
                 spawn_blocking job or a thread of your own, which have no reactor: spawn \
                 the child from a task, or send the spawn to a worker with spawn_on",
            )
        })?;
        orphans::reap();
        let process = self.std.spawn()?;
        Child::watch(process, self.force_sigchld, self.kill_on_drop)
    }

    /// Starts the process and waits for it to exit: its status. Its
    /// standard streams are inherited unless set; any set to
    /// [`Stdio::piped`] are closed at once, as tokio's `status` does
    /// (`std`'s keeps a piped stdout and stderr open while it waits), so a
    /// child that writes to one gets `SIGPIPE` (`EPIPE` if it ignores the
    /// signal), even for a line, rather than stalling the wait on a full
    /// pipe. The process starts at the future's first poll (inside the
    /// runtime).
    pub async fn status(&mut self) -> io::Result<ExitStatus> {
        let mut child = self.spawn()?;
        child.stdout = None;
        child.stderr = None;
        child.wait().await
    }

    /// Starts the process, collects all of its standard output and error
    /// and waits for it to exit. Unless set on this builder, stdout and
    /// stderr are piped and stdin is [`Stdio::null`] (as
    /// `std::process::Command::output` does), for this call only: after
    /// it they are inherited again. The process starts at the future's
    /// first poll.
    ///
    /// Set the streams through this builder, not on the `std` one (before
    /// `From`, or through [`as_std_mut`](Self::as_std_mut)): `std` gives
    /// no way to read a stream setting back, so `output` counts such a
    /// stream as unset. It replaces it, and afterwards the stream is
    /// inherited, for every later [`spawn`](Self::spawn),
    /// [`status`](Self::status) or `output` of this command, not what the
    /// `std` builder had.
    pub async fn output(&mut self) -> io::Result<Output> {
        let unset = self.stdio_set.map(|set| !set);
        if unset[0] {
            self.std.stdin(Stdio::null());
        }
        if unset[1] {
            self.std.stdout(Stdio::piped());
        }
        if unset[2] {
            self.std.stderr(Stdio::piped());
        }
        let child = self.spawn();
        // The defaults were for this call only. (A stream the std builder
        // had set is lost: std gives no way to read it back.)
        if unset[0] {
            self.std.stdin(Stdio::inherit());
        }
        if unset[1] {
            self.std.stdout(Stdio::inherit());
        }
        if unset[2] {
            self.std.stderr(Stdio::inherit());
        }
        child?.wait_with_output().await
    }
}

/// A command from `std`'s builder. Streams set on it count as unset for
/// [`Command::output`], which replaces them and leaves them inherited
/// (see there): set them through [`Command::stdin`] and its siblings.
impl From<std::process::Command> for Command {
    fn from(std: std::process::Command) -> Self {
        Self {
            std,
            kill_on_drop: false,
            stdio_set: [false; 3],
            force_sigchld: false,
        }
    }
}
