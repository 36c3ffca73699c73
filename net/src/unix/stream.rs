//! [`UnixStream`]: a connected Unix-domain stream socket with one receive
//! cell and one send cell.

use std::fmt;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;

use cellio_reactor::{Handle, Registration};

use crate::stats::OpStats;
use crate::stream::{sealed, wait_connected, StreamSocket, TakenError};
use crate::unix::{Peek, Recv, RecvExact, Send, SendAll, SendVectored};

/// A Unix-domain stream connection (`AF_UNIX`, `SOCK_STREAM`) driven by a
/// cellio reactor: a [`TcpStream`](crate::TcpStream) for a peer on the same
/// machine, named by a filesystem path (or, on Linux, an abstract name)
/// instead of an IP address and port.
///
/// Its operations are [`TcpStream`](crate::TcpStream)'s, with the same cells
/// and the same futures: [`recv`](Self::recv) and [`send`](Self::send)
/// complete on their first poll when data (or buffer space) is already
/// there and park on the socket's cell otherwise; one receive and one send
/// may be in flight at a time. For the `AsyncRead`/`AsyncWrite` traits, wrap
/// it in a [`UnixIo`](crate::unix::UnixIo).
///
/// # Examples
///
/// ```
/// use cellio_net::unix::UnixStream;
///
/// # fn main() -> std::io::Result<()> {
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let (a, b) = UnixStream::pair()?;
///     a.send_all(b"ping").await?;
///     let mut buf = [0u8; 4];
///     b.recv_exact(&mut buf).await?;
///     assert_eq!(&buf, b"ping");
///     Ok(())
/// })
/// # }
/// ```
// `repr(C)`: as `TcpStream`, the fd and the registration's hot first
// fields are adjacent.
#[repr(C)]
pub struct UnixStream {
    // Field order matters: the fd closes before the slot is freed.
    io: mio::net::UnixStream,
    /// An error a shutdown took out of the socket, for the receive side's
    /// end of stream to report (`crate::stream::TakenError`). Next to
    /// `io`, it fills what would be padding: the stream is no larger.
    taken_error: TakenError,
    registration: Registration,
}

impl UnixStream {
    /// Connects to the socket bound at `path`.
    ///
    /// # Errors
    ///
    /// * `NotFound`: nothing at `path`; `ConnectionRefused`: a socket file
    ///   nobody listens on any more (a server that exited without removing
    ///   it), or a path that is not a socket.
    /// * An error whose `raw_os_error()` is `EPROTOTYPE` ("Protocol wrong
    ///   type for socket"; std gives it no `ErrorKind` of its own): the
    ///   socket at `path` is a datagram socket (a `UnixDatagram` bound
    ///   there), not a stream listener.
    /// * `InvalidInput`: an empty path (an abstract name is given to
    ///   [`connect_addr`](Self::connect_addr)), or one too long for a
    ///   socket address.
    /// * `WouldBlock`, on Linux: the listener's queue of connections not yet
    ///   accepted is full. A blocking `connect(2)` would wait for room, but
    ///   the kernel gives a non-blocking one no readiness event to wait
    ///   for; retry after a pause (e.g. `cellio::runtime::sleep`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # cellio_runtime::Runtime::new().unwrap().block_on(async {
    /// let stream = cellio_net::unix::UnixStream::connect("/run/app.sock").await?;
    /// stream.send_all(b"hello").await?;
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub async fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        Self::connect_addr(&super::path_address(
            path.as_ref(),
            "UnixStream::connect_addr",
        )?)
        .await
    }

    /// Connects to `addr`: a path's address, or on Linux an abstract one
    /// (`std::os::linux::net::SocketAddrExt::from_abstract_name`). Errors
    /// as [`connect`](Self::connect).
    pub async fn connect_addr(addr: &SocketAddr) -> io::Result<UnixStream> {
        let handle = Handle::current()?;
        let mut io = mio::net::UnixStream::connect_addr(addr).map_err(explain_connect_error)?;
        // A connect that has to wait (where the platform lets it) waits for
        // writability: write interest from the start.
        let registration = handle.register_stream(&mut io, true)?;
        let stream = Self {
            io,
            taken_error: TakenError::default(),
            registration,
        };
        wait_connected(&stream).await?;
        Ok(stream)
    }

    /// A pair of connected streams (`socketpair(2)`), both registered with
    /// the current runtime's reactor: what one sends, the other receives.
    ///
    /// Fails outside a cellio runtime.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let handle = Handle::current()?;
        let (a, b) = mio::net::UnixStream::pair()?;
        Ok((Self::register(a, &handle)?, Self::register(b, &handle)?))
    }

    /// Registers a connected stream: for reading only, until a send first
    /// has to wait (`arm_writable`).
    pub(crate) fn register(mut io: mio::net::UnixStream, handle: &Handle) -> io::Result<Self> {
        crate::sys::no_sigpipe(&io)?;
        let registration = handle.register_stream(&mut io, false)?;
        Ok(Self {
            io,
            taken_error: TakenError::default(),
            registration,
        })
    }

    /// Wraps a connected `std` stream, registering it with the current
    /// runtime's reactor. The stream is switched to non-blocking mode.
    ///
    /// Fails outside a cellio runtime.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Self::register(mio::net::UnixStream::from_std(stream), &Handle::current()?)
    }

    /// Leaves this reactor: the stream as a `std` stream (non-blocking
    /// still), for another worker's [`from_std`](Self::from_std). Its own
    /// descriptor, no `dup(2)`, as
    /// [`TcpStream::into_std`](crate::TcpStream::into_std).
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixStream> {
        Ok(std::os::unix::net::UnixStream::from(OwnedFd::from(
            self.into_io(),
        )))
    }

    /// Receives into `buf`, returning how many bytes arrived; `0` means the
    /// peer closed its sending side (or `buf` is empty). Cancel-safe. As
    /// [`TcpStream::recv`](crate::TcpStream::recv).
    pub fn recv<'a>(&'a self, buf: &'a mut [u8]) -> Recv<'a> {
        Recv::new(self, buf)
    }

    /// Sends some of `buf`, returning how many bytes the kernel took (0 at
    /// once for an empty `buf`). Never raises `SIGPIPE`: a send to a closed
    /// peer fails with `BrokenPipe`. Cancel-safe.
    pub fn send<'a>(&'a self, buf: &'a [u8]) -> Send<'a> {
        Send::new(self, buf)
    }

    /// Sends all of `buf`. Not cancel-safe: dropped part-way, an unknown
    /// prefix of `buf` has been sent.
    pub fn send_all<'a>(&'a self, buf: &'a [u8]) -> SendAll<'a> {
        SendAll::new(self, buf)
    }

    /// Sends from several buffers at once, in order, in one `sendmsg`
    /// (a header and a body without copying them together); resolves to
    /// the bytes the kernel took, which may end part-way through any
    /// slice (0 at once if every slice is empty). At most 1024 slices go
    /// in one call (`IOV_MAX`), empty ones at the start of a longer list
    /// skipped (so 0 always means nothing to send); the count says how far
    /// it got. Cancel-safe, like [`send`](Self::send).
    ///
    /// ```no_run
    /// use std::io::IoSlice;
    /// # async fn f(stream: &cellio_net::unix::UnixStream) -> std::io::Result<()> {
    /// let (header, body) = (b"LEN 5\n", b"hello");
    /// let n = stream
    ///     .send_vectored(&[IoSlice::new(header), IoSlice::new(body)])
    ///     .await?;
    /// assert!(n <= header.len() + body.len());
    /// # Ok(()) }
    /// ```
    pub fn send_vectored<'a>(&'a self, bufs: &'a [IoSlice<'a>]) -> SendVectored<'a> {
        SendVectored::new(self, bufs)
    }

    /// Same as [`send_all`](Self::send_all), under the name tokio's
    /// `AsyncWriteExt` uses.
    pub fn write_all<'a>(&'a self, buf: &'a [u8]) -> SendAll<'a> {
        self.send_all(buf)
    }

    /// Receives exactly `buf.len()` bytes; fails with `UnexpectedEof` if the
    /// peer closes first. Not cancel-safe.
    pub fn recv_exact<'a>(&'a self, buf: &'a mut [u8]) -> RecvExact<'a> {
        RecvExact::new(self, buf)
    }

    /// Same as [`recv_exact`](Self::recv_exact), under the name tokio's
    /// `AsyncReadExt` uses.
    pub fn read_exact<'a>(&'a self, buf: &'a mut [u8]) -> RecvExact<'a> {
        self.recv_exact(buf)
    }

    /// Copies what has arrived into `buf` without taking it: the next
    /// receive gets the same bytes (`MSG_PEEK`). Waits, like
    /// [`recv`](Self::recv), until something has arrived; 0 at end of
    /// stream (and at once for an empty `buf`). For looking at a
    /// connection's first bytes before deciding how to serve it (which
    /// protocol, TLS or not). Cancel-safe.
    ///
    /// ```no_run
    /// # async fn f(stream: &cellio_net::unix::UnixStream) -> std::io::Result<()> {
    /// let mut version = [0u8; 1];
    /// if stream.peek(&mut version).await? == 1 && version[0] == 2 {
    ///     // a version-2 client: its handler reads the byte again
    /// }
    /// # Ok(()) }
    /// ```
    pub fn peek<'a>(&'a self, buf: &'a mut [u8]) -> Peek<'a> {
        Peek::new(self, buf)
    }

    crate::stream::try_methods!("let (a, b) = cellio_net::unix::UnixStream::pair()?;");

    /// [`try_recv`](Self::try_recv) into several buffers, filled in order
    /// by one `recvmsg(2)` (tokio's `try_read_vectored`), as
    /// [`TcpStream::try_recv_vectored`](crate::TcpStream::try_recv_vectored):
    /// `WouldBlock` if nothing is buffered; 0 at the end of the stream; a
    /// `WouldBlock` (or a read that drained the socket) makes the next
    /// [`readable`](Self::readable) wait for the reactor. Only the first
    /// `IOV_MAX` (1024) buffers are used, as by std and tokio; if those
    /// have no room, it returns 0 at once, with no syscall. Descriptors
    /// sent with the bytes are closed, as by [`recv`](Self::recv).
    ///
    /// ```
    /// use std::io::IoSliceMut;
    /// # cellio_runtime::Runtime::new()?.block_on(async {
    /// let (a, b) = cellio_net::unix::UnixStream::pair()?;
    /// b.send_all(b"headbody").await?;
    /// a.readable().await?;
    /// let (mut head, mut body) = ([0u8; 4], [0u8; 16]);
    /// let n = a.try_recv_vectored(&mut [IoSliceMut::new(&mut head), IoSliceMut::new(&mut body)])?;
    /// assert_eq!((&head, &body[..n - 4]), (b"head", &b"body"[..]));
    /// # Ok::<(), std::io::Error>(())
    /// # })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_recv_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        // Only the buffers the kernel is given count (as for TCP).
        let bufs = crate::sys::receivable_slices(bufs);
        let room: usize = bufs.iter().map(|buf| buf.len()).sum();
        if room == 0 {
            // Only buffers with room say the end.
            return Ok(0);
        }
        crate::ready::try_now(self.registration.rx(), || {
            match crate::unix::fds::recv_plain_vectored(self.io.as_raw_fd(), bufs, room)? {
                (0, _) => self.taken_error.report().map(|()| (0, false)),
                received => Ok(received),
            }
        })
    }

    crate::stream::send_file_methods!();

    /// Sends some of `buf` with the descriptors `fds` attached
    /// (`SCM_RIGHTS`): the peer's [`recv_with_fds`](Self::recv_with_fds)
    /// gets a duplicate of each, in its own process, with the first of
    /// these bytes. Resolves to the bytes the kernel took, at least one
    /// (the descriptors went with them); send the rest with
    /// [`send_all`](Self::send_all). Cancel-safe: a dropped call sent
    /// nothing.
    ///
    /// Fails with `InvalidInput` for an empty `buf` (descriptors ride on
    /// bytes) or more than [`MAX_FDS`](crate::unix::MAX_FDS) descriptors.
    ///
    /// # Examples
    ///
    /// Handing a listening socket to another process, which serves on it:
    ///
    /// ```
    /// use std::os::fd::{AsFd, OwnedFd};
    /// use cellio_net::unix::UnixStream;
    ///
    /// # fn main() -> std::io::Result<()> {
    /// cellio_runtime::Runtime::new()?.block_on(async {
    ///     let (old, new) = UnixStream::pair()?;
    ///     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     old.send_with_fds(b"listener", &[listener.as_fd()]).await?;
    ///
    ///     let (mut buf, mut fds) = ([0u8; 16], Vec::new());
    ///     let got = new.recv_with_fds(&mut buf, &mut fds).await?;
    ///     assert_eq!((&buf[..got.bytes], got.fds), (&b"listener"[..], 1));
    ///     let handed: OwnedFd = fds.pop().unwrap();
    ///     let listener = std::net::TcpListener::from(handed);
    ///     assert!(listener.local_addr()?.port() > 0);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn send_with_fds<'a>(
        &'a self,
        buf: &'a [u8],
        fds: &'a [std::os::fd::BorrowedFd<'a>],
    ) -> crate::unix::SendWithFds<'a> {
        crate::unix::SendWithFds::new(self, buf, fds)
    }

    /// Receives into `buf`, and pushes the descriptors that came with these
    /// bytes onto `fds`, owned and close-on-exec (`SCM_RIGHTS`). Resolves
    /// to a [`FdsReceived`](crate::unix::FdsReceived): the byte count (0 at
    /// the end of the stream), how many descriptors were pushed, and
    /// whether the kernel had to drop some. A receive ends where the bytes
    /// sent with descriptors end, so it may return fewer bytes than are
    /// queued. Cancel-safe.
    ///
    /// An empty `buf` waits, unlike [`recv`](Self::recv)'s (which returns
    /// 0 at once), until something arrives (bytes, descriptors, or the
    /// end), then takes only the descriptors that came with the next bytes
    /// (none, if those bytes came without), leaving the bytes queued:
    /// `bytes` is 0 whatever arrived, so look at `fds`.
    ///
    /// Descriptors that arrive during a plain [`recv`](Self::recv) are
    /// closed by the kernel: receive with this method on a stream whose
    /// peer sends them. So are those this process has no room for (out of
    /// descriptors, `EMFILE`): the receive still succeeds, with
    /// [`truncated`](crate::unix::FdsReceived::truncated) set and fewer
    /// descriptors (often none) than the peer sent. Reserve room in `fds`
    /// to keep the receive from allocating.
    pub fn recv_with_fds<'a>(
        &'a self,
        buf: &'a mut [u8],
        fds: &'a mut Vec<std::os::fd::OwnedFd>,
    ) -> crate::unix::RecvWithFds<'a> {
        crate::unix::RecvWithFds::new(self, buf, fds)
    }

    /// Shuts down the read, write, or both halves. `Shutdown::Write`: the
    /// peer's next receive returns 0, while this side can still receive.
    ///
    /// A send parked on this stream (another task's, waiting for room)
    /// then ends with `BrokenPipe`, as on a [`TcpStream`](crate::TcpStream).
    /// Linux raises no event for it on a Unix stream, so cellio wakes the
    /// send itself, which it can do from the stream's own worker (the
    /// thread whose reactor it is registered with) only: shut it down from
    /// a task there. Called on another worker's thread, the parked send
    /// waits until the peer reads.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.shutdown(how)?;
        super::wake_send_after_shutdown(&self.registration, how);
        Ok(())
    }

    /// Sets `SO_RCVBUF`. For a Unix stream the receiver's buffer matters
    /// little: a sender's data is charged to the sender's `SO_SNDBUF`.
    /// Linux doubles the value and caps it at `net.core.rmem_max`; a size
    /// beyond `i32::MAX` (the option is a C `int`) counts as `i32::MAX`.
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        socket2::SockRef::from(&self.io).set_recv_buffer_size(crate::sys::buffer_size_option(bytes))
    }

    /// `SO_RCVBUF` in bytes.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        socket2::SockRef::from(&self.io).recv_buffer_size()
    }

    /// Sets `SO_SNDBUF`: how many bytes this side may have queued towards
    /// the peer before a send waits (Linux doubles the value and caps it at
    /// `net.core.wmem_max`; a size beyond `i32::MAX` counts as `i32::MAX`).
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        socket2::SockRef::from(&self.io).set_send_buffer_size(crate::sys::buffer_size_option(bytes))
    }

    /// `SO_SNDBUF` in bytes.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        socket2::SockRef::from(&self.io).send_buffer_size()
    }

    /// The peer's address: its path if it bound one. A connecting client
    /// usually binds none, so a server sees an unnamed address
    /// (`is_unnamed()`).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// This side's address (unnamed unless it was bound).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// The process, user and group of the peer, as the kernel recorded them
    /// (`SO_PEERCRED` on Linux, `getpeereid` elsewhere, where only macOS
    /// also gives the process): a server's way to know who connected,
    /// without trusting anything the peer sends.
    ///
    /// On an accepted stream they are the client's, when it called
    /// `connect(2)`. On the connecting side they are those of the process
    /// that called `listen(2)` on the listening socket, which is not
    /// necessarily the one serving: after the listener was handed over
    /// (descriptor passing, socket activation), the old server's, perhaps
    /// exited (under systemd's socket activation, systemd's).
    /// See [`UCred`](crate::unix::UCred).
    ///
    /// ```no_run
    /// # async fn f(stream: &cellio_net::unix::UnixStream) -> std::io::Result<()> {
    /// let peer = stream.peer_cred()?;
    /// if peer.uid != 0 {
    ///     return Err(std::io::ErrorKind::PermissionDenied.into());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn peer_cred(&self) -> io::Result<crate::unix::UCred> {
        crate::unix::cred::peer_cred(self.io.as_raw_fd())
    }

    /// Gets and clears the socket's pending error (`SO_ERROR`), as std's
    /// and tokio's do: the next receive then no longer reports it.
    ///
    /// That includes an error cellio already took out of the socket and
    /// keeps for the next receive to report at the end of the stream
    /// (`splice_bidirectional`'s watch takes one that way): that one comes
    /// first, and the receive then says a plain end. As
    /// [`TcpStream::take_error`](crate::TcpStream::take_error).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        crate::stream::take_pending_error(self)
    }

    /// How this stream's operations completed so far: on the first attempt
    /// or after parking. As [`TcpStream::stats`](crate::TcpStream::stats).
    pub fn stats(&self) -> OpStats {
        OpStats::of(&self.registration)
    }
}

/// The error of a Unix `connect(2)`, with what the caller can do about the
/// one that surprises: `EAGAIN` from a full accept queue.
fn explain_connect_error(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::WouldBlock {
        return io::Error::new(
            io::ErrorKind::WouldBlock,
            "the listener's queue of connections not yet accepted is full \
             (EAGAIN from a non-blocking Unix connect); retry after a pause",
        );
    }
    error
}

impl StreamSocket for UnixStream {}

impl sealed::Sealed for UnixStream {
    #[inline(always)]
    fn registration(&self) -> &Registration {
        &self.registration
    }

    #[inline]
    fn arm_writable(&self) -> io::Result<()> {
        let fd = self.io.as_raw_fd();
        self.registration
            .arm_writable(&mut mio::unix::SourceFd(&fd))
    }

    fn shutdown_socket(&self, how: Shutdown) -> io::Result<()> {
        UnixStream::shutdown(self, how)
    }

    #[inline(always)]
    fn taken_error(&self) -> &TakenError {
        &self.taken_error
    }

    #[inline(always)]
    fn recv_once<B: ?Sized + crate::sys::RecvBuf>(&self, buf: &mut B) -> io::Result<(usize, bool)> {
        match crate::unix::fds::recv_plain(self.io.as_raw_fd(), buf) {
            // The end, or the error a shutdown took (`TakenError`); an
            // empty buffer's 0 says neither.
            Ok((0, _)) if buf.len() == 0 => Ok((0, false)),
            Ok((0, _)) => self.taken_error.report().map(|()| (0, false)),
            received => received,
        }
    }
}

crate::registered::registered_socket_with_into_io!(UnixStream, mio::net::UnixStream);

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("local", &self.io.local_addr().ok())
            .field("peer", &self.io.peer_addr().ok())
            .field("fd", &self.io.as_raw_fd())
            .finish()
    }
}
