//! Child processes (tokio's `process`): [`Command`] starts one, and its
//! [`Child`]'s exit and piped standard streams are awaited on the reactor,
//! so a worker never blocks in `waitpid` or on a pipe.
//!
//! * [`Command`] — `std::process::Command`'s builder, with
//!   [`spawn`](Command::spawn), and [`status`](Command::status) and
//!   [`output`](Command::output) as futures;
//! * [`Child`] — [`wait`](Child::wait), [`try_wait`](Child::try_wait),
//!   [`kill`](Child::kill), [`wait_with_output`](Child::wait_with_output),
//!   and its pipes: [`ChildStdin`], [`ChildStdout`], [`ChildStderr`]
//!   (`futures-io` `AsyncWrite`/`AsyncRead`).
//!
//! # How it works
//!
//! No thread: the exit is a readable `pidfd` on Linux 5.3 and later, and
//! `SIGCHLD` elsewhere (the `exit` module); each pipe end is made
//! non-blocking and registered like a socket ([`AsyncFd`](crate::AsyncFd)).
//! Starting a process (`fork`/`exec` in `std`) runs on the worker, as in
//! tokio: it takes tens to hundreds of microseconds.
//!
//! # Invariants
//!
//! * A process is reaped exactly once, by its [`Child`] (whose status is
//!   then kept), or, for a `Child` dropped first, by the process's orphan
//!   list: each [`Command::spawn`] reaps the orphans that have exited, so
//!   zombies do not pile up in a program that keeps starting processes.
//!   (One that drops running children and never starts another leaves a
//!   zombie for each when it exits, until the program ends.)
//! * [`Command::spawn`] outside a runtime fails before starting anything.
//! * A [`Child`] and its pipes belong to the reactor of the worker that
//!   spawned it, as a socket does ([`Child`], "Which worker").
//!
//! # Examples
//!
//! ```
//! use std::process::Stdio;
//! use cellio_net::process::Command;
//!
//! # cellio_runtime::Runtime::new()?.block_on(async {
//! let mut child = Command::new("tr")
//!     .arg("a-z")
//!     .arg("A-Z")
//!     .stdin(Stdio::piped())
//!     .stdout(Stdio::piped())
//!     .spawn()?;
//! child.stdin.as_mut().unwrap().write_all(b"shout").await?;
//! let output = child.wait_with_output().await?; // closes stdin first
//! assert_eq!(output.stdout, b"SHOUT");
//! # Ok::<(), std::io::Error>(())
//! # })?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod child;
mod command;
mod exit;
mod orphans;
mod pipe;

pub use child::Child;
pub use command::Command;
pub use pipe::{ChildStderr, ChildStdin, ChildStdout};

#[cfg(test)]
mod tests;
