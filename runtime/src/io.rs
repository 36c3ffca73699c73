//! The process's standard streams, async (tokio's `io::{stdin, stdout,
//! stderr}`): [`stdin`], [`stdout`], [`stderr`], each a [`fs::File`]
//! over its own duplicate of descriptor 0, 1 or 2, so its reads and writes
//! run on the blocking pool (a terminal or a pipe cannot be made
//! non-blocking without changing it for every process that shares it).
//!
//! # Caveats (tokio's too)
//!
//! * **A read of stdin that waits keeps a blocking thread until input or
//!   end of file comes**, even if its future is dropped (the thread cannot
//!   be interrupted). Dropping the runtime waits for its blocking threads,
//!   so it waits for that input too: end a program that may leave a read
//!   of stdin pending with [`Runtime::shutdown_timeout`] or
//!   [`Runtime::shutdown_background`].
//! * **That read takes the next input even if its future is dropped.** On
//!   the same [`Stdin`] nothing is lost: the next read waits for it and
//!   returns its bytes (a read that timed out can be retried). But if the
//!   handle is dropped too (a `stdin()?.read(..)` inside a `select!` with a
//!   timeout, say), the input that read takes, a line on a terminal, is
//!   lost with it, and a new handle reads what comes after. Keep one
//!   `Stdin` for the program's life rather than one per read.
//! * Writes are accepted into a buffer and completed in the background, in
//!   order: [`Stdout::flush`] returns the last write's result. What was
//!   written reaches the descriptor before the runtime's drop returns.
//! * Each handle writes through its own buffer, each write (up to
//!   [`max_buf_size`](crate::fs::File::max_buf_size), 2 MiB) in one job
//!   on a blocking thread, so two handles' writes (or a handle's and
//!   `println!`'s) may reach the descriptor at once, in no set order. A
//!   write then stays whole only as far as the descriptor keeps a
//!   `write(2)` whole: on a pipe, one of up to `PIPE_BUF` bytes (4 KiB on
//!   Linux); larger ones may be cut into each other. To keep longer
//!   messages apart, write them through one handle.
//!
//! # A closed standard descriptor
//!
//! * A handle over a closed descriptor 0, 1 or 2 is over `/dev/null`
//!   (see [`stdin`], [`stdout`], [`stderr`]), so it needs `/dev/null`:
//!   where it cannot be opened (a chroot or container without `/dev`),
//!   [`stdin`], [`stdout`] or [`stderr`] fails with the open's error,
//!   `NotFound` there, where std's handle still works.
//! * **A program that closes descriptors 0, 1 or 2 before it builds the
//!   runtime** (a daemon that detaches first) has them reused by the next
//!   descriptors opened, the runtime's own among them (its epoll instance
//!   and its wake-up eventfd): [`stdout`] then writes into those, and
//!   [`stdin`] reads from them, which breaks the runtime's wake-ups. std's
//!   and tokio's handles share this. A daemon should not leave 0, 1 and 2
//!   closed: open `/dev/null` on them instead (`dup2` of an open
//!   `/dev/null` onto each), before it builds the runtime.
//!
//! [`fs::File`]: crate::fs::File
//! [`Runtime::shutdown_timeout`]: crate::Runtime::shutdown_timeout
//! [`Runtime::shutdown_background`]: crate::Runtime::shutdown_background

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::fs::File;

/// A file over a duplicate of `stream`'s descriptor, or, if that
/// descriptor is closed (`EBADF`: a daemon closed it, say), over
/// `/dev/null`, opened to read if `read` and to write if not: as std's
/// handles, which take `EBADF` on 0, 1 and 2 for success, writes then
/// succeed and are dropped, and a read gets end of file.
fn duplicate(stream: impl AsFd, read: bool) -> io::Result<File> {
    let fd: OwnedFd = match stream.as_fd().try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => {
            let null = OwnedFd::from(
                std::fs::OpenOptions::new()
                    .read(read)
                    .write(!read)
                    .open("/dev/null")?,
            );
            // The closed descriptor is the lowest free one, so `/dev/null`
            // may have landed on it: moved to 3 or above (`try_clone`
            // does), the closed one stays closed, as it was.
            if null.as_raw_fd() <= 2 {
                null.try_clone()?
            } else {
                null
            }
        }
        Err(e) => return Err(e),
    };
    Ok(File::from_std(std::fs::File::from(fd)))
}

/// The process's standard input, read on the blocking pool: [`stdin`].
#[derive(Debug)]
pub struct Stdin(File);

/// The process's standard output, written on the blocking pool: [`stdout`].
#[derive(Debug)]
pub struct Stdout(File);

/// The process's standard error, written on the blocking pool: [`stderr`].
#[derive(Debug)]
pub struct Stderr(File);

/// A handle to the process's standard input (tokio's `io::stdin`). Keep
/// one for the program's life: a read whose future is dropped still
/// takes the next input, which only this handle's next read returns (see
/// the [module docs](self)). If descriptor 0 is closed, as with std's
/// `stdin`, reads get end of file (the handle is over `/dev/null`). Fails
/// if the descriptor cannot be duplicated (out of descriptors), or if it
/// is closed and `/dev/null` cannot be opened (`NotFound` in a chroot
/// without `/dev`); descriptors closed before the runtime was built are
/// another matter (the [module docs](self#a-closed-standard-descriptor)).
///
/// ```no_run
/// # cellio_runtime::Runtime::new()?.block_on(async {
/// let mut input = Vec::new();
/// cellio_runtime::io::stdin()?.read_to_end(&mut input).await?;
/// # Ok::<(), std::io::Error>(())
/// # })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn stdin() -> io::Result<Stdin> {
    duplicate(io::stdin(), true).map(Stdin)
}

/// A handle to the process's standard output (tokio's `io::stdout`).
/// If descriptor 1 is closed (a daemon that detached), as with std's
/// `stdout`, writes succeed and are dropped (the handle is over
/// `/dev/null`). Fails if the descriptor cannot be duplicated, or if it
/// is closed and `/dev/null` cannot be opened (the
/// [module docs](self#a-closed-standard-descriptor), which also say why a
/// daemon should open `/dev/null` on 0, 1 and 2 rather than close them).
///
/// ```
/// # cellio_runtime::Runtime::new()?.block_on(async {
/// let mut out = cellio_runtime::io::stdout()?;
/// out.write_all(b"hello\n").await?;
/// out.flush().await?; // the write's result
/// # Ok::<(), std::io::Error>(())
/// # })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn stdout() -> io::Result<Stdout> {
    duplicate(io::stdout(), false).map(Stdout)
}

/// A handle to the process's standard error (tokio's `io::stderr`).
/// If descriptor 2 is closed, as with std's `stderr`, writes succeed and
/// are dropped. Fails as [`stdout`] does.
pub fn stderr() -> io::Result<Stderr> {
    duplicate(io::stderr(), false).map(Stderr)
}

impl Stdin {
    /// Reads into `buf`: the bytes read (a terminal gives a line at a
    /// time), `0` at end of input. See [`File::read`](crate::fs::File::read).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).await
    }

    /// Reads to the end of input, appending to `buf`: the bytes read.
    pub async fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.0.read_to_end(buf).await
    }
}

macro_rules! output_methods {
    ($name:ident) => {
        impl $name {
            /// Accepts up to [`MAX_BUF`](crate::fs::MAX_BUF) bytes of `buf`
            /// for writing, completed in the background: see
            /// [`flush`](Self::flush).
            pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.write(buf).await
            }

            /// Writes all of `buf` (the last part completes in the
            /// background).
            pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
                self.0.write_all(buf).await
            }

            /// Waits for the write in progress and returns its result.
            pub async fn flush(&mut self) -> io::Result<()> {
                self.0.flush().await
            }
        }

        crate::fs::traits::file_write_traits!($name, |stream| &mut stream.0);
    };
}

output_methods!(Stdout);
output_methods!(Stderr);

crate::fs::traits::file_read_traits!(Stdin, |stream| &mut stream.0);
