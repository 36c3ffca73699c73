//! The parent's ends of a child's standard streams: [`ChildStdin`],
//! [`ChildStdout`], [`ChildStderr`], each a pipe end on the reactor
//! ([`AsyncFd`]).
//!
//! # Invariants
//!
//! * The parent's end is made non-blocking; the child's end is another
//!   open file description, so the child still sees a blocking pipe.
//! * Reads use the pipe's receive cell and writes its send cell (an end
//!   only ever does one of the two), with the protocol of
//!   [`AsyncFd`]'s poll methods: a `poll_read` left pending is given up
//!   by the next `read`, losing nothing (it had read nothing).

use std::fs::File;
use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::AsyncFd;

/// How much a read into a `Vec` (`read_to_end`) asks for at a time.
const READ_CHUNK: usize = 8 * 1024;

/// A pipe end handed over by `std::process`, made non-blocking and
/// registered with the current worker's reactor.
fn register(end: impl Into<OwnedFd>) -> io::Result<AsyncFd<File>> {
    let file = File::from(end.into());
    crate::sys::set_nonblocking(file.as_raw_fd(), true)?;
    AsyncFd::new(file)
}

/// The pipe end out of the reactor, in blocking mode again: the open file
/// description is shared with whoever gets it next (another child), which
/// expects a blocking pipe.
fn into_blocking_fd(pipe: AsyncFd<File>) -> io::Result<OwnedFd> {
    let fd = OwnedFd::from(pipe.into_inner());
    crate::sys::set_nonblocking(fd.as_raw_fd(), false)?;
    Ok(fd)
}

/// Future of an output pipe's `read`: `Ok(0)` at once for an empty
/// buffer, else the pipe's read. `Unpin` as the read is (an `async` block
/// would not be).
enum EmptyOr<F> {
    Empty,
    Read(F),
}

impl<F: Future<Output = io::Result<usize>> + Unpin> Future for EmptyOr<F> {
    type Output = io::Result<usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            EmptyOr::Empty => Poll::Ready(Ok(0)),
            EmptyOr::Read(read) => Pin::new(read).poll(cx),
        }
    }
}

macro_rules! output_pipe {
    ($(#[$doc:meta])* $name:ident, $std:ty, $stream:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            pipe: AsyncFd<File>,
        }

        impl $name {
            pub(crate) fn new(end: $std) -> io::Result<Self> {
                Ok(Self { pipe: register(end)? })
            }

            #[doc = concat!("Reads what the child wrote to its ", $stream, " into `buf`: the")]
            /// number of bytes read, waiting until there is at least one;
            /// `0` once the child has closed it (exited) and everything
            /// was read; `0` at once for an empty `buf`. Cancel-safe: a
            /// dropped read has read nothing.
            pub fn read<'a>(
                &'a mut self,
                buf: &'a mut [u8],
            ) -> impl Future<Output = io::Result<usize>> + Unpin + 'a {
                let empty = buf.is_empty();
                if !empty {
                    self.pipe.cancel_polled_read();
                }
                let read = self.pipe.read_with(move |mut pipe| pipe.read(buf));
                if empty {
                    // Nothing to wait for: a drained pipe would park it
                    // until data came that it could not take.
                    EmptyOr::Empty
                } else {
                    EmptyOr::Read(read)
                }
            }

            #[doc = concat!("Reads all the child writes to its ", $stream, ", until it closes it,")]
            /// appending to `buf`; resolves to the number of bytes read.
            /// If the future is dropped, what was read so far stays in
            /// `buf`.
            pub async fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
                let start = buf.len();
                poll_fn(|cx| self.poll_read_to_end(cx, buf)).await?;
                Ok(buf.len() - start)
            }

            /// [`read`](Self::read) as a poll method (what `AsyncRead`
            /// calls): a read left pending continues at the next call, and
            /// gives way to a later `read`. An empty `buf` is `Ok(0)` at
            /// once.
            pub fn poll_read(
                &mut self,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                if buf.is_empty() {
                    return Poll::Ready(Ok(0));
                }
                self.pipe.poll_read_with(cx, |mut pipe| pipe.read(buf))
            }

            /// Appends to `buf` until the pipe says end of file
            /// (`Ready(Ok(()))`) or would block (`Pending`).
            pub(crate) fn poll_read_to_end(
                &mut self,
                cx: &mut Context<'_>,
                buf: &mut Vec<u8>,
            ) -> Poll<io::Result<()>> {
                loop {
                    // Into the spare capacity as it is (not zeroed first).
                    buf.reserve(READ_CHUNK);
                    let spare = buf.spare_capacity_mut();
                    let polled = self
                        .pipe
                        .poll_read_with(cx, |pipe| crate::sys::read(pipe.as_raw_fd(), &mut *spare));
                    if let Poll::Ready(Ok(n)) = polled {
                        // SAFETY: `read` initialized the first `n` bytes
                        // of the spare capacity.
                        unsafe { buf.set_len(buf.len() + n) };
                    }
                    match polled {
                        Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }

            /// Leaves the reactor and returns the pipe end as an owned
            /// descriptor in blocking mode again, for `std` or for
            /// another child: `Stdio::from(fd)` makes it that child's
            /// standard input (the kernel then joins the two children;
            /// nothing passes through this process).
            pub fn into_owned_fd(self) -> io::Result<OwnedFd> {
                into_blocking_fd(self.pipe)
            }
        }

        impl futures_io::AsyncRead for $name {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                $name::poll_read(self.get_mut(), cx, buf)
            }
        }

        /// With the `tokio-io` feature: tokio's `AsyncRead` (for
        /// `tokio-util` codecs, `tokio::io::BufReader`, ...). A `ReadBuf`
        /// with no room left is `Ready(Ok(()))` at once.
        #[cfg(feature = "tokio-io")]
        impl tokio::io::AsyncRead for $name {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                let this = self.get_mut();
                // Into the unfilled part as it is: the kernel fills it, no
                // zeroing first.
                crate::stream::io_traits::tokio_poll_read_uninit(buf, |buf| {
                    this.pipe
                        .poll_read_with(cx, |pipe| crate::sys::read(pipe.as_raw_fd(), &mut *buf))
                })
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.pipe.as_raw_fd()
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.pipe.get_ref().as_fd()
            }
        }
    };
}

output_pipe!(
    /// The parent's end of a child's standard output (tokio's
    /// `process::ChildStdout`): [`Child::stdout`](super::Child::stdout)
    /// when the command's stdout was [`Stdio::piped`](std::process::Stdio::piped).
    /// Implements `futures-io`'s `AsyncRead`.
    ///
    /// ```no_run
    /// use std::process::Stdio;
    /// use cellio_net::process::Command;
    ///
    /// # async fn f() -> std::io::Result<()> {
    /// let mut child = Command::new("ls").stdout(Stdio::piped()).spawn()?;
    /// let mut listing = Vec::new();
    /// child.stdout.take().unwrap().read_to_end(&mut listing).await?;
    /// child.wait().await?;
    /// # Ok(()) }
    /// ```
    ChildStdout,
    std::process::ChildStdout,
    "standard output"
);

output_pipe!(
    /// The parent's end of a child's standard error (tokio's
    /// `process::ChildStderr`): [`Child::stderr`](super::Child::stderr)
    /// when the command's stderr was [`Stdio::piped`](std::process::Stdio::piped).
    /// Implements `futures-io`'s `AsyncRead`.
    ChildStderr,
    std::process::ChildStderr,
    "standard error"
);

/// The parent's end of a child's standard input (tokio's
/// `process::ChildStdin`): [`Child::stdin`](super::Child::stdin) when the
/// command's stdin was [`Stdio::piped`](std::process::Stdio::piped).
/// Dropping it (or [`close`](Self::close)) closes the pipe: the child
/// reads end of file. Implements `futures-io`'s `AsyncWrite`, whose
/// `poll_close` closes it too, so [`copy`](fn@crate::copy) into it ends the
/// child's input.
///
/// ```no_run
/// use std::process::Stdio;
/// use cellio_net::process::Command;
///
/// # async fn f() -> std::io::Result<()> {
/// let mut child = Command::new("wc").arg("-c").stdin(Stdio::piped()).spawn()?;
/// let mut stdin = child.stdin.take().unwrap();
/// stdin.write_all(b"twelve bytes").await?;
/// drop(stdin); // end of file: `wc` prints 12 and exits
/// child.wait().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ChildStdin {
    /// `None` once closed.
    pipe: Option<AsyncFd<File>>,
}

impl ChildStdin {
    pub(crate) fn new(end: std::process::ChildStdin) -> io::Result<Self> {
        Ok(Self {
            pipe: Some(register(end)?),
        })
    }

    fn open_pipe(&mut self) -> io::Result<&mut AsyncFd<File>> {
        self.pipe.as_mut().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "cellio: the child's stdin was closed",
            )
        })
    }

    /// Writes some of `buf` to the child's standard input: the number of
    /// bytes written, waiting while the pipe is full (the child has not
    /// read yet). `BrokenPipe` once the child closed its end (exited), and
    /// no `SIGPIPE` (it is kept blocked around the write: the guide,
    /// "Errors you can get").
    /// An empty `buf` is `Ok(0)` at once (`BrokenPipe` once closed).
    /// Cancel-safe: a dropped write has written nothing.
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let pipe = self.open_pipe()?;
        if buf.is_empty() {
            // Nothing to wait for: a full pipe would park it until the
            // child read.
            return Ok(0);
        }
        pipe.cancel_polled_write();
        pipe.write_with(|pipe| write_to_child(pipe, buf)).await
    }

    /// Writes all of `buf`, waiting for room as needed. If the future is
    /// dropped, a prefix of `buf` may have been written.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    /// [`write`](Self::write) as a poll method (what `AsyncWrite` calls).
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.open_pipe() {
            Ok(_) if buf.is_empty() => Poll::Ready(Ok(0)),
            Ok(pipe) => pipe.poll_write_with(cx, |pipe| write_to_child(pipe, buf)),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Closes the pipe: the child reads end of file once it has read what
    /// was written. Later writes fail with `BrokenPipe`.
    pub fn close(&mut self) {
        self.pipe = None;
    }

    /// Leaves the reactor and returns the pipe end as an owned descriptor
    /// in blocking mode again (for `std`, or another child's stdout);
    /// `None` if it was closed.
    pub fn into_owned_fd(mut self) -> io::Result<Option<OwnedFd>> {
        self.pipe.take().map(into_blocking_fd).transpose()
    }
}

impl futures_io::AsyncWrite for ChildStdin {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ChildStdin::poll_write(self.get_mut(), cx, buf)
    }

    /// A pipe has nothing to flush.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Closes the pipe ([`close`](ChildStdin::close)).
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().close();
        Poll::Ready(Ok(()))
    }
}

/// With the `tokio-io` feature: tokio's `AsyncWrite`, whose
/// `poll_shutdown` closes the pipe, as `poll_close` does.
#[cfg(feature = "tokio-io")]
impl tokio::io::AsyncWrite for ChildStdin {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ChildStdin::poll_write(self.get_mut(), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().close();
        Poll::Ready(Ok(()))
    }
}

impl AsRawFd for ChildStdin {
    /// The pipe's descriptor; `-1` once closed.
    fn as_raw_fd(&self) -> RawFd {
        self.pipe.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }
}

/// One `write(2)` to the child's standard input. Once the child closed its
/// end it fails with `BrokenPipe` and the kernel raises `SIGPIPE`, kept
/// blocked around the write (`cellio_reactor::sigpipe`).
fn write_to_child(mut pipe: &File, buf: &[u8]) -> io::Result<usize> {
    cellio_reactor::sigpipe::around(|| pipe.write(buf))
}
