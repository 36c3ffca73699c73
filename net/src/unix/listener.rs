//! [`UnixListener`]: a listening Unix-domain socket whose `accept` parks on
//! its receive cell.

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use cellio_reactor::{Handle, Registration};

use crate::accept::poll_accept;
use crate::op::OpState;
use crate::unix::UnixStream;

/// A Unix-domain listening socket driven by a cellio reactor.
///
/// Binding creates the socket file; dropping the listener closes the socket
/// but leaves the file, as `std` and tokio do (the path may be shared with
/// other processes, and only the caller knows). A file left behind makes the
/// next [`bind`](Self::bind) fail with `AddrInUse`: remove it first
/// (`std::fs::remove_file`) when you know no server uses it.
///
/// # Examples
///
/// ```
/// use cellio_net::unix::{UnixListener, UnixStream};
///
/// # fn main() -> std::io::Result<()> {
/// let dir = std::env::temp_dir().join(format!("cellio-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("echo.sock");
/// # let _ = std::fs::remove_file(&path);
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let listener = UnixListener::bind(&path)?;
///     let client = UnixStream::connect(&path).await?;
///     let (server, _peer) = listener.accept().await?;
///     client.send_all(b"hi").await?;
///     let mut buf = [0u8; 2];
///     server.recv_exact(&mut buf).await?;
///     assert_eq!(&buf, b"hi");
///     Ok::<(), std::io::Error>(())
/// })?;
/// std::fs::remove_dir_all(&dir)
/// # }
/// ```
pub struct UnixListener {
    io: mio::net::UnixListener,
    registration: Registration,
    /// The accept that [`poll_accept`](UnixListener::poll_accept) runs
    /// from one call to the next, as `TcpListener`'s.
    polled_accept: Mutex<OpState>,
}

impl UnixListener {
    /// Binds to `path` and listens, with the largest backlog the kernel
    /// allows (`net.core.somaxconn` on Linux).
    ///
    /// # Errors
    ///
    /// `AddrInUse` if a file exists at `path` (see the type's docs);
    /// `InvalidInput` if the path is empty (which the kernel would take as
    /// a request for a random abstract name: an abstract name is given to
    /// [`bind_addr`](Self::bind_addr)) or too long for a socket address
    /// (about 100 bytes); `NotFound` or `PermissionDenied` for its
    /// directory. Must be called inside a cellio runtime.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        Self::bind_addr(&super::path_address(
            path.as_ref(),
            "UnixListener::bind_addr",
        )?)
    }

    /// Binds to `addr`: a path's address, or on Linux an abstract one
    /// (`std::os::linux::net::SocketAddrExt::from_abstract_name`), which
    /// has no file and vanishes with the socket. An unnamed address (the
    /// address of an empty path, say) asks Linux to *autobind*: the kernel
    /// picks a random abstract name of five hex digits, which
    /// [`local_addr`](Self::local_addr) then reports.
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixListener> {
        let handle = Handle::current()?;
        Self::register(mio::net::UnixListener::bind_addr(addr)?, &handle)
    }

    /// Wraps a bound and listening `std` listener, registering it with the
    /// current runtime's reactor. The listener is switched to non-blocking
    /// mode.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        Self::register(
            mio::net::UnixListener::from_std(listener),
            &Handle::current()?,
        )
    }

    fn register(mut io: mio::net::UnixListener, handle: &Handle) -> io::Result<Self> {
        // Accepting only ever waits for readability.
        let registration = handle.register_readable(&mut io)?;
        Ok(Self {
            io,
            registration,
            polled_accept: Mutex::new(OpState::new()),
        })
    }

    /// Accepts a connection. The new stream is registered with the reactor
    /// of the runtime thread that polls the future.
    ///
    /// Cancel-safe: a dropped `Accept` leaves pending connections queued.
    /// Errors such as `EMFILE` are returned as they are; the listener stays
    /// usable.
    ///
    /// One accept may wait at a time per listener: a second `accept` while
    /// one waits fails at once with `ErrorKind::ResourceBusy` (tokio queues
    /// them). Run one accept loop that hands the connections out, as for
    /// [`TcpListener::accept`](crate::TcpListener::accept).
    pub fn accept(&self) -> Accept<'_> {
        Accept {
            listener: self,
            op: OpState::new(),
        }
    }

    /// Polls for a connection (tokio's `poll_accept`, which tokio-stream's
    /// `UnixListenerStream` uses): `Ready` with the new stream, registered
    /// with the reactor of the runtime thread that polls, or `Pending`
    /// with `cx`'s waker parked on the listener's receive cell.
    ///
    /// # Notes
    ///
    /// As [`TcpListener::poll_accept`](crate::TcpListener::poll_accept):
    /// one accept kept in the listener from one call to the next, which
    /// wakes only the latest caller's waker (poll from one task), and
    /// which is not used at once with [`accept`](Self::accept): whichever
    /// waits holds the listener's one receive cell and the other fails
    /// with `ErrorKind::ResourceBusy`, and no connection is lost. A
    /// `poll_accept` left `Pending` and never polled again keeps
    /// `accept()` busy until the listener is dropped.
    ///
    /// ```no_run
    /// use std::future::poll_fn;
    /// # async fn f(listener: cellio_net::unix::UnixListener) -> std::io::Result<()> {
    /// let (stream, peer) = poll_fn(|cx| listener.poll_accept(cx)).await?;
    /// # drop((stream, peer)); Ok(()) }
    /// ```
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(UnixStream, SocketAddr)>> {
        crate::accept::poll_kept_accept(
            &self.polled_accept,
            &self.registration,
            cx,
            || accept(&self.io),
            UnixStream::register,
        )
    }

    /// Turns this listener back into a `std` listener, leaving this
    /// reactor: to hand it to another worker, which wraps it again with
    /// [`from_std`](Self::from_std), or to another process.
    ///
    /// # Notes
    ///
    /// As [`TcpListener::into_std`](crate::TcpListener::into_std): its own
    /// descriptor, deregistered and still non-blocking (no `dup(2)`), with
    /// the connections waiting in its backlog. The socket file stays. It
    /// does not fail; the `Result` is kept for tokio's signature.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixListener> {
        Ok(std::os::unix::net::UnixListener::from(OwnedFd::from(
            self.into_io(),
        )))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Gets and clears the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.take_error()
    }
}

/// Future of [`UnixListener::accept`]: the new stream and its peer's
/// address, as the stream's [`peer_addr`](UnixStream::peer_addr) reports it:
/// usually unnamed (clients rarely bind one), else the client's path (one
/// that fills all of `sun_path` included) or abstract name.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Accept<'a> {
    listener: &'a UnixListener,
    op: OpState,
}

impl Future for Accept<'_> {
    type Output = io::Result<(UnixStream, SocketAddr)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let listener = this.listener;
        poll_accept(
            &mut this.op,
            &listener.registration,
            cx,
            || accept(&listener.io),
            UnixStream::register,
        )
    }
}

/// One non-blocking `accept(2)`: the new stream (non-blocking,
/// close-on-exec) and its peer's address, decoded by cellio
/// ([`reported_address`](super::reported_address)) rather than by mio,
/// whose accept panics on a peer bound to a path of all 108 bytes of
/// `sun_path` (Linux reports a length of 111 for it) and reports an
/// abstract-named peer as unnamed.
fn accept(listener: &mio::net::UnixListener) -> io::Result<(mio::net::UnixStream, SocketAddr)> {
    // SAFETY: all-zero is a valid `sockaddr_un`.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let stream = accept_raw(listener.as_raw_fd(), &mut addr, &mut len)?;
    let peer = match super::reported_address(&addr, len)? {
        Some(peer) => peer,
        // A path of all 108 bytes of `sun_path`: `std`'s type is made of
        // one only from the kernel's own `getpeername` (one more syscall,
        // for such a peer only). Should that fail, the connection is still
        // handed over, its peer unnamed.
        None => stream.peer_addr().or_else(|_| super::unnamed())?,
    };
    Ok((mio::net::UnixStream::from_std(stream), peer))
}

/// `accept4(2)` with `SOCK_NONBLOCK | SOCK_CLOEXEC`: one syscall. (Not on
/// 32-bit x86 Android, whose seccomp policy forbids `accept4`, as mio's
/// accept knows.)
#[cfg(any(
    target_os = "linux",
    all(target_os = "android", not(target_arch = "x86")),
    target_os = "freebsd"
))]
fn accept_raw(
    listener: std::os::fd::RawFd,
    addr: &mut libc::sockaddr_un,
    len: &mut libc::socklen_t,
) -> io::Result<std::os::unix::net::UnixStream> {
    use std::os::fd::FromRawFd;
    // SAFETY: `addr` is valid for writes of `*len` bytes, its size.
    let fd = unsafe {
        libc::accept4(
            listener,
            std::ptr::from_mut(addr).cast(),
            len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `accept4` returned a new descriptor, which nothing else owns.
    Ok(unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) })
}

/// `accept(2)`, then close-on-exec and non-blocking, one `fcntl` each
/// (macOS has no `accept4`; whether the new socket inherits the listener's
/// `O_NONBLOCK` differs between systems, so it is set, not assumed).
#[cfg(not(any(
    target_os = "linux",
    all(target_os = "android", not(target_arch = "x86")),
    target_os = "freebsd"
)))]
fn accept_raw(
    listener: std::os::fd::RawFd,
    addr: &mut libc::sockaddr_un,
    len: &mut libc::socklen_t,
) -> io::Result<std::os::unix::net::UnixStream> {
    use std::os::fd::FromRawFd;
    // SAFETY: `addr` is valid for writes of `*len` bytes, its size.
    let fd = unsafe { libc::accept(listener, std::ptr::from_mut(addr).cast(), len) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `accept` returned a new descriptor, which nothing else owns
    // (owned at once: closed if `fcntl` fails).
    let stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    // SAFETY: a plain `fcntl` on the descriptor we own.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    stream.set_nonblocking(true)?;
    Ok(stream)
}

impl Drop for Accept<'_> {
    fn drop(&mut self) {
        self.op.cancel(|| self.listener.registration.rx());
    }
}

crate::registered::registered_socket_with_into_io!(
    UnixListener,
    mio::net::UnixListener,
    polled_accept
);

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("local", &self.io.local_addr().ok())
            .field("fd", &self.io.as_raw_fd())
            .finish()
    }
}
