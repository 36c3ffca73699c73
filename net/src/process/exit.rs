//! How a [`Child`](super::Child) learns that its process exited, without a
//! thread and without blocking the worker.
//!
//! On Linux 5.3 and later, a `pidfd` (`pidfd_open`) of the child, which
//! the kernel reports readable once the process has exited, waits on the
//! reactor like any descriptor ([`AsyncFd`]); the status is then
//! collected with `waitpid(WNOHANG)` (`std`'s `try_wait`). Where there is
//! no `pidfd` (an older kernel, a seccomp filter that refuses it, or not
//! Linux), each child listens for `SIGCHLD` ([`Signal`]) and tries
//! `waitpid(WNOHANG)` after each delivery.
//!
//! # Invariants
//!
//! * The pid cannot be reused while it is watched: only the `Child` reaps
//!   its process, and a process not yet reaped keeps its number.
//! * Nothing is lost to a race: the `SIGCHLD` listener exists before the
//!   first `try_wait`, so an exit before the listener is seen by that
//!   `try_wait`, and one after it by a delivery; a `pidfd` stays readable
//!   once its process has exited.

#[cfg(target_os = "linux")]
use std::fs::File;
use std::io;
use std::process::ExitStatus;
use std::task::{Context, Poll};

use crate::signal::Signal;
#[cfg(target_os = "linux")]
use crate::AsyncFd;

/// Watches one child process for its exit.
#[derive(Debug)]
pub(crate) enum ExitWatch {
    /// The child's `pidfd` on the reactor.
    #[cfg(target_os = "linux")]
    Pidfd(AsyncFd<File>),
    /// `SIGCHLD` deliveries, where there is no `pidfd`.
    Sigchld(Signal),
}

impl ExitWatch {
    /// Starts watching `child`, with a `pidfd` where the system has them.
    pub(crate) fn new(child: &std::process::Child, force_sigchld: bool) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        if !force_sigchld {
            match crate::sys::pidfd_open(child.id()) {
                Ok(fd) => {
                    let fd = File::from(fd);
                    crate::sys::set_nonblocking(std::os::fd::AsRawFd::as_raw_fd(&fd), true)?;
                    return Ok(ExitWatch::Pidfd(AsyncFd::new(fd)?));
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                    tracing::debug!(error = %e, "no pidfd: waiting for SIGCHLD instead");
                }
                Err(e) => return Err(e),
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (child, force_sigchld);
        Ok(ExitWatch::Sigchld(Signal::new(libc::SIGCHLD)?))
    }

    /// `true` if this watch uses a `pidfd`.
    #[cfg(test)]
    pub(crate) fn is_pidfd(&self) -> bool {
        #[cfg(target_os = "linux")]
        return matches!(self, ExitWatch::Pidfd(_));
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// The child's exit status once it has exited (reaping it), else
    /// `Pending` with the task to be woken when it exits.
    pub(crate) fn poll_exit(
        &mut self,
        cx: &mut Context<'_>,
        child: &mut std::process::Child,
    ) -> Poll<io::Result<ExitStatus>> {
        match self {
            #[cfg(target_os = "linux")]
            ExitWatch::Pidfd(pidfd) => pidfd.poll_read_with(cx, |_| match child.try_wait()? {
                Some(status) => Ok(status),
                None => Err(io::ErrorKind::WouldBlock.into()),
            }),
            ExitWatch::Sigchld(deliveries) => loop {
                if let Some(status) = child.try_wait()? {
                    return Poll::Ready(Ok(status));
                }
                // Any child's exit delivers `SIGCHLD`: try again after each.
                match deliveries.poll_recv(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            },
        }
    }
}
