//! [`AsyncFd`]: any non-blocking descriptor (a pipe, an `eventfd`, a
//! `timerfd`, an `inotify` instance, a tun device, another library's
//! socket) driven by the reactor, with the sockets' cells and protocol:
//! tokio's `io::unix::AsyncFd`.
//!
//! Where tokio hands out a readiness guard that the caller must clear on
//! `EAGAIN`, an `AsyncFd` takes the I/O itself as a closure:
//! [`read_with`](AsyncFd::read_with) runs it at once, and only when it
//! returns `WouldBlock` parks on the descriptor's receive cell until the
//! reactor reports it readable, then runs it again. Nothing can be cleared
//! wrongly or forgotten, and an operation that completes at once costs an
//! atomic load and the closure, as a socket's `recv` does.
//!
//! # Invariants
//!
//! * The descriptor is non-blocking ([`AsyncFd::new`] checks), so a closure
//!   never blocks the worker, and its `WouldBlock` means drained: the
//!   epoll registration is edge-triggered, and the next edge wakes the
//!   parked operation.
//! * Reads use the receive cell and writes the send cell, so one read and
//!   one write may wait at once; a second of the same direction is
//!   refused with `ResourceBusy`, as on a socket.
//! * Write interest is added only when a write first returns
//!   `WouldBlock` (`Registration::arm_writable`), which reports the
//!   descriptor at once if it became writable meanwhile: no edge is lost.
//! * The descriptor stays open and the same while the `AsyncFd` lives: a
//!   documented requirement on the caller (the type's docs), not checked;
//!   the registration and the deregistration go by its number.
//! * The descriptor leaves the poller before it closes, and the reactor
//!   slot is freed after (`inner` is declared before `registration`);
//!   [`into_inner`](AsyncFd::into_inner) deregisters and hands it back
//!   open.
//! * The poll methods ([`poll_read_with`](AsyncFd::poll_read_with),
//!   [`poll_write_with`](AsyncFd::poll_write_with), and the `futures-io`
//!   traits built on them) keep their operation's state in the `AsyncFd`,
//!   one per direction: a poll that returns `Pending` holds the
//!   direction's cell until a later poll completes it or the `AsyncFd`
//!   is dropped, so a `read_with` meanwhile gets `ResourceBusy`.

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use cellio_reactor::{Handle, Registration};

use crate::op::{Attempt, OpState, Side};

/// A non-blocking descriptor registered with the current worker's
/// reactor: `T` owns it (a `File`, an `OwnedFd`, another crate's socket),
/// and [`read_with`](Self::read_with) / [`write_with`](Self::write_with)
/// run I/O on it, waiting for readiness when it would block.
///
/// # The descriptor must stay open and the same
///
/// While the `AsyncFd` lives, the descriptor `T` reports must stay open
/// and name the same open file: close it only after dropping the
/// `AsyncFd` or taking the object back with
/// [`into_inner`](Self::into_inner), and do not swap the object for
/// another (through [`get_mut`](Self::get_mut)) or `dup2` over its number.
/// Let `T` own the descriptor (`OwnedFd`, `File`, a socket type) rather
/// than passing a bare `RawFd` whose owner may close it. As with tokio's
/// `AsyncFd`, nothing checks this, and breaking it harms more than the
/// `AsyncFd`: the registration goes by number, so once the number is
/// reused by another descriptor (a file opened meanwhile, a new socket,
/// cellio's or not) the closures run on that descriptor, and dropping the
/// `AsyncFd` takes *it* off the poller (`EPOLL_CTL_DEL`): a cellio socket
/// that reused the number then never gets another event, and its
/// operations wait for ever. (Before the number is reused, the closures
/// fail with `EBADF`, and a wait already in progress is never woken.)
///
/// # Examples
///
/// An `eventfd` counter, bumped from another thread:
///
/// ```
/// use std::fs::File;
/// use std::io::{Read, Write};
/// use std::os::fd::FromRawFd;
///
/// use cellio_net::AsyncFd;
///
/// # cellio_runtime::Runtime::new()?.block_on(async {
/// // SAFETY: `eventfd` returns a new descriptor that nothing else owns.
/// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
/// assert!(fd >= 0);
/// // SAFETY: as above; the `File` owns and closes it.
/// let counter = AsyncFd::new(unsafe { File::from_raw_fd(fd) })?;
/// let mut bumper = counter.get_ref().try_clone()?;
/// std::thread::spawn(move || bumper.write_all(&5u64.to_ne_bytes()));
/// let mut value = [0u8; 8];
/// // Waits for the other thread's write, then reads (and resets) the count.
/// counter.read_with(|mut file| file.read_exact(&mut value)).await?;
/// assert_eq!(u64::from_ne_bytes(value), 5);
/// # Ok::<(), std::io::Error>(())
/// # })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct AsyncFd<T: AsRawFd> {
    /// `Some` until `into_inner` takes it.
    inner: Option<T>,
    registration: Registration,
    /// The read in progress through `poll_read_with`.
    polled_read: OpState,
    /// The write in progress through `poll_write_with`.
    polled_write: OpState,
}

impl<T: AsRawFd> AsyncFd<T> {
    /// Registers `inner`'s descriptor with the current worker's reactor.
    /// It must stay open and the same until the `AsyncFd` is dropped or
    /// [`into_inner`](Self::into_inner)-ed (see [the type's
    /// docs](Self#the-descriptor-must-stay-open-and-the-same)).
    ///
    /// # Errors
    ///
    /// * `InvalidInput` if the descriptor is in blocking mode (set
    ///   `O_NONBLOCK` first: `set_nonblocking(true)` on a std socket,
    ///   `EFD_NONBLOCK`, `O_NONBLOCK` in `open`), since a closure that
    ///   blocks would stop the whole worker;
    /// * `Unsupported` for a descriptor the poller cannot watch (a regular
    ///   file, a directory, or a device that cannot be polled, such as
    ///   `/dev/null` or `/dev/zero`: they are always ready, so read them with
    ///   `spawn_blocking` or `cellio::fs` instead);
    /// * an error outside a cellio runtime.
    pub fn new(inner: T) -> io::Result<Self> {
        let fd = inner.as_raw_fd();
        if !is_nonblocking(fd)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cellio: AsyncFd needs a non-blocking descriptor (set O_NONBLOCK first): \
                 a blocking read would stop the worker",
            ));
        }
        let handle = Handle::current()?;
        let registration = match handle.register_readable(&mut mio::unix::SourceFd(&fd)) {
            Ok(registration) => registration,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "cellio: the poller cannot watch this descriptor (a regular file, a \
                     directory or a device such as /dev/null is always ready): use \
                     spawn_blocking or cellio::fs",
                ))
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            inner: Some(inner),
            registration,
            polled_read: OpState::new(),
            polled_write: OpState::new(),
        })
    }

    /// The wrapped object.
    pub fn get_ref(&self) -> &T {
        self.inner.as_ref().expect("present until into_inner")
    }

    /// The wrapped object, mutably (no operation can be in flight: they
    /// borrow the `AsyncFd`). The descriptor must stay open and the same:
    /// do not replace the object, close its descriptor or change its
    /// number through this reference (see [the type's
    /// docs](Self#the-descriptor-must-stay-open-and-the-same)).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.as_mut().expect("present until into_inner")
    }

    /// Leaves the reactor and returns the object, its descriptor open and
    /// still non-blocking.
    pub fn into_inner(mut self) -> T {
        self.deregister();
        self.inner.take().expect("present until into_inner")
    }

    /// Runs `read` on the object until it returns something other than
    /// `WouldBlock`, waiting for the descriptor to become readable between
    /// tries; resolves to what it returned. `Interrupted` is retried too.
    ///
    /// `read` must return `WouldBlock` only when the descriptor has no
    /// more to give (as a non-blocking `read` does): the wait that follows
    /// lasts until new data makes it readable again.
    ///
    /// Cancel-safe as far as the wait goes: dropping the future while it
    /// waits runs nothing.
    pub fn read_with<R, F>(&self, read: F) -> ReadWith<'_, T, F>
    where
        F: FnMut(&T) -> io::Result<R>,
    {
        WithIo {
            fd: self,
            io: read,
            op: OpState::new(),
        }
    }

    /// Runs `write` on the object until it returns something other than
    /// `WouldBlock`, waiting for the descriptor to become writable between
    /// tries, as [`read_with`](Self::read_with) does for reads.
    pub fn write_with<R, F>(&self, write: F) -> WriteWith<'_, T, F>
    where
        F: FnMut(&T) -> io::Result<R>,
    {
        WithIo {
            fd: self,
            io: write,
            op: OpState::new(),
        }
    }

    /// Waits until the descriptor is readable (tokio's
    /// `AsyncFd::readable`, without a guard to clear): for code that does
    /// its own reads, such as a C library's "consume input" call that does
    /// not report `WouldBlock`. Each try asks the kernel (`poll(2)` with no
    /// wait), so it never reports a readiness that is gone: after it, a
    /// read that says `WouldBlock` only means another reader came first.
    /// An error condition or a hang-up counts as readable (the read then
    /// meets it). Prefer [`read_with`](Self::read_with) when the read
    /// itself says `WouldBlock`: it saves the extra system call.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    ///
    /// use cellio_net::AsyncFd;
    ///
    /// # cellio_runtime::Runtime::new()?.block_on(async {
    /// let (a, mut b) = UnixStream::pair()?;
    /// a.set_nonblocking(true)?;
    /// let a = AsyncFd::new(a)?;
    /// std::thread::spawn(move || b.write_all(b"hi"));
    /// a.readable().await?;
    /// let mut buf = [0u8; 2];
    /// let n = a.get_ref().read(&mut buf)?; // something is there
    /// assert!(n > 0);
    /// # Ok::<(), std::io::Error>(())
    /// # })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn readable(&self) -> impl Future<Output = io::Result<()>> + '_ {
        self.read_with(|inner| crate::sys::ready_now(inner.as_raw_fd(), libc::POLLIN))
    }

    /// Waits until the descriptor is writable (tokio's
    /// `AsyncFd::writable`), as [`readable`](Self::readable) does for
    /// reads.
    pub fn writable(&self) -> impl Future<Output = io::Result<()>> + '_ {
        self.write_with(|inner| crate::sys::ready_now(inner.as_raw_fd(), libc::POLLOUT))
    }

    /// [`read_with`](Self::read_with) as a poll method, for a hand-written
    /// `Future` or an `AsyncRead`: runs `read` now and returns what it
    /// returned, or `Pending` with the task to be woken when the
    /// descriptor becomes readable (`read` said `WouldBlock`).
    ///
    /// A read left pending continues at the next call (from any task; the
    /// latest waker is woken) and holds the receive cell until then, so a
    /// [`read_with`](Self::read_with) in between gets `ResourceBusy`.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::io::Read;
    /// use std::os::unix::net::UnixStream;
    ///
    /// use cellio_net::AsyncFd;
    ///
    /// # cellio_runtime::Runtime::new()?.block_on(async {
    /// let (a, b) = UnixStream::pair()?;
    /// a.set_nonblocking(true)?;
    /// let mut a = AsyncFd::new(a)?;
    /// std::thread::spawn(move || std::io::Write::write_all(&mut &b, b"hi"));
    /// let mut buf = [0u8; 2];
    /// let n = poll_fn(|cx| a.poll_read_with(cx, |mut s| s.read(&mut buf))).await?;
    /// assert_eq!(&buf[..n], &b"hi"[..n]);
    /// # Ok::<(), std::io::Error>(())
    /// # })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll_read_with<R>(
        &mut self,
        cx: &mut Context<'_>,
        read: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_polled::<R, false>(cx, read)
    }

    /// [`write_with`](Self::write_with) as a poll method: runs `write`
    /// now, or returns `Pending` with the task to be woken when the
    /// descriptor becomes writable; as
    /// [`poll_read_with`](Self::poll_read_with) for reads.
    pub fn poll_write_with<R>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_polled::<R, true>(cx, write)
    }

    /// One poll of the read (`WRITE` false) or write kept in the `AsyncFd`;
    /// its state starts afresh once it is done.
    fn poll_polled<R, const WRITE: bool>(
        &mut self,
        cx: &mut Context<'_>,
        io: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let inner = self.inner.as_ref().expect("present until into_inner");
        let op = if WRITE {
            &mut self.polled_write
        } else {
            &mut self.polled_read
        };
        let polled = poll_io::<T, R, WRITE>(op, inner, &self.registration, Some(cx.waker()), io);
        if polled.is_ready() {
            *op = OpState::new();
        }
        polled
    }

    /// Gives back the receive cell held by a read `poll_read_with` left
    /// pending (it did nothing yet, so nothing is lost), for an API that
    /// mixes the two styles behind `&mut self`.
    pub(crate) fn cancel_polled_read(&mut self) {
        let registration = &self.registration;
        self.polled_read.cancel(|| registration.rx());
        self.polled_read = OpState::new();
    }

    /// As [`cancel_polled_read`](Self::cancel_polled_read), for writes.
    pub(crate) fn cancel_polled_write(&mut self) {
        let registration = &self.registration;
        self.polled_write.cancel(|| registration.tx());
        self.polled_write = OpState::new();
    }

    fn raw_fd(&self) -> RawFd {
        self.get_ref().as_raw_fd()
    }

    fn deregister(&mut self) {
        // Poll methods left pending give their reservations back.
        self.cancel_polled_read();
        self.cancel_polled_write();
        if let Some(inner) = &self.inner {
            let fd = inner.as_raw_fd();
            if let Err(e) = self.registration.deregister(&mut mio::unix::SourceFd(&fd)) {
                tracing::debug!(error = %e, "deregister failed");
            }
        }
    }
}

impl<T: AsRawFd> Drop for AsyncFd<T> {
    fn drop(&mut self) {
        self.deregister();
    }
}

impl<T: AsRawFd> AsRawFd for AsyncFd<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.raw_fd()
    }
}

impl<T: AsRawFd + fmt::Debug> fmt::Debug for AsyncFd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFd")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// `true` if `fd` has `O_NONBLOCK`.
fn is_nonblocking(fd: RawFd) -> io::Result<bool> {
    // SAFETY: `F_GETFL` reads the descriptor's flags and touches no
    // memory; a bad descriptor is an error, not undefined behaviour.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// One poll of an operation on `inner`, a read (`WRITE` false) or a
/// write: `io` runs, and the operation parks on the direction's cell when
/// it says `WouldBlock`.
fn poll_io<T: AsRawFd, R, const WRITE: bool>(
    op: &mut OpState,
    inner: &T,
    registration: &Registration,
    waker: Option<&Waker>,
    mut io: impl FnMut(&T) -> io::Result<R>,
) -> Poll<io::Result<R>> {
    let side = if WRITE {
        Side::tx(registration)
    } else {
        Side::rx(registration)
    };
    op.poll(side, waker, || -> Attempt<R> {
        match io(inner) {
            Ok(value) => Ok((value, false)),
            Err(e) if WRITE && e.kind() == io::ErrorKind::WouldBlock => {
                // Before parking: the edge that wakes a write needs write
                // interest (module invariants).
                let raw = inner.as_raw_fd();
                registration.arm_writable(&mut mio::unix::SourceFd(&raw))?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    })
}

// `Unpin` whatever `T` is: the object is never pinned (the poll methods
// take `&mut self`).
impl<T: AsRawFd> Unpin for AsyncFd<T> {}

/// Reads through `&T`'s `Read` (a `File`, a `UnixStream`, a pipe end):
/// [`AsyncFd::poll_read_with`] with `read`. An empty `buf` is `Ok(0)` at
/// once, without waiting for data it could not take (as a socket's).
impl<T: AsRawFd> futures_io::AsyncRead for AsyncFd<T>
where
    for<'a> &'a T: io::Read,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.get_mut()
            .poll_read_with(cx, |mut inner| io::Read::read(&mut inner, buf))
    }
}

/// Writes through `&T`'s `Write`: [`AsyncFd::poll_write_with`] with
/// `write`; an empty `buf` is `Ok(0)` at once. `poll_flush` flushes `&T`
/// (a `File`'s flush does nothing), waiting for room only if the flush
/// itself says `WouldBlock`, so it never waits behind a write given up
/// while the descriptor was full; `poll_close` flushes too and leaves the
/// descriptor open (drop the `AsyncFd` to close it).
impl<T: AsRawFd> futures_io::AsyncWrite for AsyncFd<T>
where
    for<'a> &'a T: io::Write,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.get_mut().poll_write_with(cx, |mut inner| {
            // write(2) takes no MSG_NOSIGNAL: into a pipe whose reader
            // closed it raises SIGPIPE (`cellio_reactor::sigpipe`).
            cellio_reactor::sigpipe::around(|| io::Write::write(&mut inner, buf))
        })
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Not through the write's state: a write left pending (or a cell
        // left drained by one given up) would make a flush with nothing to
        // do wait for room. Only a flush that itself would block waits.
        match io::Write::flush(&mut this.get_ref()) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                this.poll_write_with(cx, |mut inner| io::Write::flush(&mut inner))
            }
            flushed => Poll::Ready(flushed),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// Future of [`AsyncFd::read_with`] (`WRITE` false) and
/// [`AsyncFd::write_with`] (`WRITE` true): what the closure returned.
#[must_use = "futures do nothing unless polled"]
pub struct WithIo<'a, T: AsRawFd, F, const WRITE: bool> {
    fd: &'a AsyncFd<T>,
    io: F,
    op: OpState,
}

/// Future of [`AsyncFd::read_with`]: what the closure returned.
pub type ReadWith<'a, T, F> = WithIo<'a, T, F, false>;

/// Future of [`AsyncFd::write_with`]: what the closure returned.
pub type WriteWith<'a, T, F> = WithIo<'a, T, F, true>;

impl<T: AsRawFd, F, R, const WRITE: bool> WithIo<'_, T, F, WRITE>
where
    F: FnMut(&T) -> io::Result<R>,
{
    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<R>> {
        let fd = self.fd;
        poll_io::<T, R, WRITE>(
            &mut self.op,
            fd.get_ref(),
            &fd.registration,
            waker,
            &mut self.io,
        )
    }

    /// Runs the closure now, without waiting: `Some(result)` if it
    /// completed, `None` if it would have to wait (then `.await` the
    /// future).
    pub fn try_complete(&mut self) -> Option<io::Result<R>> {
        match self.poll_with(None) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        }
    }
}

// `Unpin` whatever `F` is: the closure is called through `&mut`, never
// pinned.
impl<T: AsRawFd, F, const WRITE: bool> Unpin for WithIo<'_, T, F, WRITE> {}

impl<T: AsRawFd, F, R, const WRITE: bool> Future for WithIo<'_, T, F, WRITE>
where
    F: FnMut(&T) -> io::Result<R>,
{
    type Output = io::Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_with(Some(cx.waker()))
    }
}

impl<T: AsRawFd, F, const WRITE: bool> Drop for WithIo<'_, T, F, WRITE> {
    fn drop(&mut self) {
        let registration = &self.fd.registration;
        self.op.cancel(|| {
            if WRITE {
                registration.tx()
            } else {
                registration.rx()
            }
        });
    }
}

impl<T: AsRawFd, F, const WRITE: bool> fmt::Debug for WithIo<'_, T, F, WRITE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if WRITE { "WriteWith" } else { "ReadWith" };
        f.debug_struct(name).field("op", &self.op).finish()
    }
}
