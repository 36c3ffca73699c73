//! [`TcpStream`]: a connected TCP socket with one receive cell and one send
//! cell.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use cellio_reactor::{Handle, Registration};

use crate::stats::OpStats;
use crate::stream::{sealed, wait_connected, StreamSocket, TakenError};
use crate::tcp::{Peek, Recv, RecvExact, Send, SendAll, SendVectored};

/// A TCP connection driven by a cellio reactor.
///
/// Each stream owns exactly one receive cell and one send cell, stored
/// inline in its reactor slot. [`recv`](TcpStream::recv) and
/// [`send`](TcpStream::send) return small futures that complete on their
/// first poll when data (or buffer space) is already there, and otherwise
/// park on the cell until the reactor wakes them.
///
/// One receive and one send may be in flight at the same time (from the
/// same task, e.g. with a join, or from two). A second operation in the same
/// direction while one is in flight fails with `ErrorKind::ResourceBusy`
/// (see [`CellError`](cellio_reactor::CellError)). That includes an
/// operation of a task that was aborted but not yet dropped: await the
/// aborted task's `JoinHandle` before using the stream in its place.
///
/// # Examples
///
/// ```no_run
/// use cellio_net::TcpStream;
///
/// # fn main() -> std::io::Result<()> {
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let stream = TcpStream::connect("127.0.0.1:7000").await?;
///     stream.send_all(b"ping").await?;
///     let mut buf = [0u8; 4];
///     stream.recv_exact(&mut buf).await?;
///     assert_eq!(&buf, b"ping");
///     Ok(())
/// })
/// # }
/// ```
// `repr(C)`: the fd and the registration's hot first fields are adjacent
// (every operation reads both).
#[repr(C)]
pub struct TcpStream {
    // Field order matters: the fd closes before the slot is freed.
    io: mio::net::TcpStream,
    /// An error a shutdown took out of the socket, for the receive side's
    /// end of stream to report (`crate::stream::TakenError`). Next to
    /// `io`, it fills what would be padding: the stream is no larger.
    taken_error: TakenError,
    registration: Registration,
}

// With mio's 4-byte stream (release builds; debug builds add a selector id)
// a stream fits in one cache line.
const _: () = assert!(std::mem::size_of::<Registration>() == 56);
#[cfg(not(debug_assertions))]
const _: () = assert!(std::mem::size_of::<TcpStream>() == 64);

impl TcpStream {
    /// Opens a connection to the first address of `addr` that accepts.
    ///
    /// `addr` is a `SocketAddr`, an IP and a port, `"host:port"`,
    /// `(host, port)`, … ([`ToSocketAddrs`](crate::ToSocketAddrs)). A host
    /// name resolves on a thread of its own, so the worker's other tasks
    /// run on while DNS answers ([`lookup_host`](crate::lookup_host));
    /// addresses given as such are used at once. If every address fails,
    /// the last error is returned.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # cellio_runtime::Runtime::new().unwrap().block_on(async {
    /// let stream = cellio_net::TcpStream::connect("127.0.0.1:7000").await?;
    /// println!("connected to {}", stream.peer_addr()?);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub async fn connect<A: crate::ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        let mut last = None;
        for addr in crate::resolve::resolve(&addr).await? {
            match Self::connect_addr(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "could not resolve to any address",
            )
        }))
    }

    async fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
        let handle = Handle::current()?;
        Self::connecting_with(mio::net::TcpStream::connect(addr)?, &handle).await
    }

    /// Registers a socket whose non-blocking connect was started and waits
    /// for it to resolve (for [`TcpSocket::connect`](crate::TcpSocket)).
    pub(crate) async fn connecting(io: mio::net::TcpStream) -> io::Result<TcpStream> {
        Self::connecting_with(io, &Handle::current()?).await
    }

    async fn connecting_with(
        mut io: mio::net::TcpStream,
        handle: &Handle,
    ) -> io::Result<TcpStream> {
        // Connecting waits for writability: write interest from the start.
        let registration = handle.register_stream(&mut io, true)?;
        let stream = Self {
            io,
            taken_error: TakenError::default(),
            registration,
        };
        wait_connected(&stream).await?;
        Ok(stream)
    }

    /// Registers a connected stream: for reading only, until a send first
    /// has to wait (see [`arm_writable`](crate::stream::sealed::Sealed::arm_writable)).
    pub(crate) fn register(mut io: mio::net::TcpStream, handle: &Handle) -> io::Result<Self> {
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
    /// Fails outside a cellio runtime's workers, and so in a
    /// `spawn_blocking` job too, whose thread has no reactor: return the
    /// `std` stream from the job and wrap it in the task that awaits it.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Self::register(mio::net::TcpStream::from_std(stream), &Handle::current()?)
    }

    /// Turns this stream back into a blocking-agnostic `std` stream, leaving
    /// this reactor. Use it to hand a connection to another worker, which
    /// wraps it again with [`from_std`](Self::from_std) and so registers it
    /// with its own reactor.
    ///
    /// # Notes
    ///
    /// The stream is deregistered and its own descriptor (non-blocking
    /// still) is returned: no `dup(2)`, so it works at the descriptor limit
    /// too. It does not fail; the `Result` is kept for compatibility.
    ///
    /// ```no_run
    /// # async fn f(stream: cellio_net::TcpStream) -> std::io::Result<()> {
    /// let std_stream = stream.into_std()?;
    /// cellio_runtime::spawn_on(1, async move {
    ///     let stream = cellio_net::TcpStream::from_std(std_stream)?;
    ///     // ... serve it on worker 1 ...
    ///     # drop(stream);
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// # Ok(()) }
    /// ```
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        Ok(std::net::TcpStream::from(OwnedFd::from(self.into_io())))
    }

    /// Receives into `buf`, returning how many bytes arrived; `0` means the
    /// peer closed its sending side (or `buf` is empty).
    ///
    /// # Notes
    ///
    /// * Completes on its first poll, without touching the reactor, when
    ///   data is already buffered; see [`Recv::try_complete`] for checking
    ///   that without `.await`.
    /// * Cancel-safe: dropping the future before it completes loses no data.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(stream: &cellio_net::TcpStream) -> std::io::Result<()> {
    /// let mut buf = [0u8; 4096];
    /// let n = stream.recv(&mut buf).await?;
    /// println!("got {:?}", &buf[..n]);
    /// # Ok(()) }
    /// ```
    pub fn recv<'a>(&'a self, buf: &'a mut [u8]) -> Recv<'a> {
        Recv::new(self, buf)
    }

    /// Sends some of `buf`, returning how many bytes the kernel took (0 at
    /// once for an empty `buf`).
    ///
    /// # Notes
    ///
    /// Never raises `SIGPIPE`: a write to a connection the peer reset fails
    /// with `BrokenPipe` or `ConnectionReset`. Cancel-safe.
    pub fn send<'a>(&'a self, buf: &'a [u8]) -> Send<'a> {
        Send::new(self, buf)
    }

    /// Sends all of `buf`.
    ///
    /// # Notes
    ///
    /// Not cancel-safe: if the future is dropped part-way, an unknown prefix
    /// of `buf` has been sent.
    pub fn send_all<'a>(&'a self, buf: &'a [u8]) -> SendAll<'a> {
        SendAll::new(self, buf)
    }

    /// Sends from several buffers at once, in order, in one `sendmsg`
    /// (a header and a body without copying them together); resolves to
    /// the bytes the kernel took, which may end part-way through any
    /// slice (0 at once if every slice is empty). At most 1024 slices go in
    /// one call (`IOV_MAX`), empty ones at the start of a longer list
    /// skipped (so 0 always means nothing to send); the count says how far
    /// it got. Cancel-safe, like [`send`](Self::send).
    ///
    /// ```no_run
    /// use std::io::IoSlice;
    /// # async fn f(stream: &cellio_net::TcpStream) -> std::io::Result<()> {
    /// let (header, body) = (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", b"hello");
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
    /// peer closes first.
    ///
    /// # Notes
    ///
    /// Not cancel-safe: if the future is dropped part-way, the bytes already
    /// received are in `buf` but their count is lost.
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
    /// # async fn f(stream: &cellio_net::TcpStream) -> std::io::Result<()> {
    /// let mut first = [0u8; 1];
    /// if stream.peek(&mut first).await? == 1 && first[0] == 0x16 {
    ///     // a TLS handshake record: hand the stream to the TLS acceptor,
    ///     // which reads the same byte again
    /// }
    /// # Ok(()) }
    /// ```
    pub fn peek<'a>(&'a self, buf: &'a mut [u8]) -> Peek<'a> {
        Peek::new(self, buf)
    }

    crate::stream::try_methods!(
        "let listener = cellio_net::TcpListener::bind(\"127.0.0.1:0\")?;
let b = cellio_net::TcpStream::connect(listener.local_addr()?).await?;
let (a, _) = listener.accept().await?;"
    );

    /// [`try_recv`](Self::try_recv) into several buffers, filled in order
    /// by one `readv(2)` (tokio's `try_read_vectored`): `WouldBlock` if
    /// nothing is buffered; 0 at the end of the stream (or if every buffer
    /// is empty). Like `try_recv`, a `WouldBlock` (or a read that drained
    /// the socket) makes the next [`readable`](Self::readable) wait for
    /// the reactor, and at the end of the stream an error a shutdown kept
    /// for the receives ([`take_error`](Self::take_error)) is reported
    /// first. Only the first `IOV_MAX` (1024) buffers are used, as by
    /// std's `read_vectored` and tokio's: a longer list is not refused,
    /// its buffers past the 1024th are left alone. If those first buffers
    /// have no room, it returns 0 at once, with no syscall (the kept
    /// error stays, and `readable()` is as it was).
    ///
    /// ```
    /// use std::io::IoSliceMut;
    /// # cellio_runtime::Runtime::new()?.block_on(async {
    /// # let listener = cellio_net::TcpListener::bind("127.0.0.1:0")?;
    /// # let b = cellio_net::TcpStream::connect(listener.local_addr()?).await?;
    /// # let (a, _) = listener.accept().await?;
    /// b.send_all(b"headbody").await?;
    /// a.readable().await?;
    /// let (mut head, mut body) = ([0u8; 4], [0u8; 16]);
    /// let n = a.try_recv_vectored(&mut [IoSliceMut::new(&mut head), IoSliceMut::new(&mut body)])?;
    /// assert_eq!((&head, &body[..n - 4]), (b"head", &b"body"[..]));
    /// # Ok::<(), std::io::Error>(())
    /// # })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_recv_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        // The buffers the kernel is given (std's `read_vectored` passes no
        // more): the room of the others must not make a full read look
        // short, which would mark the socket drained with bytes queued.
        let bufs = crate::sys::receivable_slices(bufs);
        let room: usize = bufs.iter().map(|buf| buf.len()).sum();
        if room == 0 {
            // As `recv_whole`: only buffers with room say the end.
            return Ok(0);
        }
        crate::ready::try_now(self.registration.rx(), || {
            match io::Read::read_vectored(&mut &self.io, bufs)? {
                0 => self.taken_error.report().map(|()| (0, false)),
                n => Ok((n, n < room)),
            }
        })
    }

    crate::stream::send_file_methods!();

    /// Shuts down the read, write, or both halves. `Shutdown::Write` sends
    /// FIN: the peer's next read returns 0 while this side can still read.
    /// On a connection the peer has reset it fails with `NotConnected`, as
    /// std's does.
    ///
    /// [`TcpIo`](crate::TcpIo)'s `poll_close` and `poll_shutdown`, and the
    /// joins, go further: they count that as done while bytes that came
    /// before the reset wait to be read (the receives report the reset
    /// after them) or when no error is pending (a receive took it
    /// already), and otherwise fail with the reset, `ConnectionReset`: with
    /// nothing left to read, no receive would report it, and the bytes sent
    /// were thrown away. tokio's `poll_shutdown` returns `Ok` to every
    /// `NotConnected`, that last case included (the guide's "Poll methods
    /// and `AsyncRead`/`AsyncWrite`", `poll_close`).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.shutdown(how)
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.nodelay()
    }

    /// Sets `SO_LINGER`. `Some(Duration::ZERO)`: dropping the stream
    /// resets the connection (RST) instead of closing it gracefully,
    /// discarding unsent data, and leaves no `TIME_WAIT` behind; `None`
    /// (the default): the close returns at once and the kernel sends what
    /// is left in the background. (A non-zero linger would make the close
    /// block a worker; do not use one.)
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        socket2::SockRef::from(&self.io).set_linger(linger)
    }

    /// `SO_LINGER`.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        socket2::SockRef::from(&self.io).linger()
    }

    /// Sets the IP time-to-live of outgoing packets.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.set_ttl(ttl)
    }

    /// The IP time-to-live of outgoing packets.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.ttl()
    }

    /// Sets `SO_RCVBUF`: the kernel's receive buffer, which bounds the TCP
    /// window this side advertises. Linux doubles the value and caps it at
    /// `net.core.rmem_max`, and setting it turns off the kernel's receive
    /// buffer auto-tuning for this socket; read the result back with
    /// [`recv_buffer_size`](Self::recv_buffer_size). A size beyond
    /// `i32::MAX` (the option is a C `int`) counts as `i32::MAX`, so it
    /// gets the cap too.
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        socket2::SockRef::from(&self.io).set_recv_buffer_size(crate::sys::buffer_size_option(bytes))
    }

    /// `SO_RCVBUF`: the kernel's receive buffer size in bytes.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        socket2::SockRef::from(&self.io).recv_buffer_size()
    }

    /// Sets `SO_SNDBUF`: how many bytes of unacknowledged and unsent data
    /// the kernel may hold (doubled and capped at `net.core.wmem_max` on
    /// Linux; setting it turns off send buffer auto-tuning). A size beyond
    /// `i32::MAX` counts as `i32::MAX`, as for
    /// [`set_recv_buffer_size`](Self::set_recv_buffer_size).
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        socket2::SockRef::from(&self.io).set_send_buffer_size(crate::sys::buffer_size_option(bytes))
    }

    /// `SO_SNDBUF`: the kernel's send buffer size in bytes.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        socket2::SockRef::from(&self.io).send_buffer_size()
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Gets and clears the socket's pending error (`SO_ERROR`), as std's
    /// and tokio's do: the next receive then no longer reports it.
    ///
    /// That includes an error cellio already took out of the socket and
    /// keeps for the next receive to report at the end of the stream (the
    /// shutdown of a [`TcpIo`](crate::TcpIo)'s `poll_close` or of a join
    /// takes a reset that way, when bytes that came before it wait to be
    /// read): that one comes first, and the receive then says a plain end.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        crate::stream::take_pending_error(self)
    }

    /// How this stream's operations completed so far: on the first attempt
    /// (synchronously) or after parking.
    ///
    /// ```no_run
    /// # async fn f(stream: &cellio_net::TcpStream) {
    /// let stats = stream.stats();
    /// println!("{} of {} receives never waited", stats.recv_sync, stats.recv_sync + stats.recv_parked);
    /// # }
    /// ```
    pub fn stats(&self) -> OpStats {
        OpStats::of(&self.registration)
    }
}

impl StreamSocket for TcpStream {}

impl sealed::Sealed for TcpStream {
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
        self.io.shutdown(how)
    }

    #[inline(always)]
    fn taken_error(&self) -> &TakenError {
        &self.taken_error
    }

    #[inline(always)]
    fn recv_once<B: ?Sized + crate::sys::RecvBuf>(&self, buf: &mut B) -> io::Result<(usize, bool)> {
        crate::stream::recv_whole(self.io.as_raw_fd(), buf, &self.taken_error)
    }
}

crate::registered::registered_socket_with_into_io!(TcpStream, mio::net::TcpStream);

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.io.local_addr().ok())
            .field("peer", &self.io.peer_addr().ok())
            .field("fd", &self.io.as_raw_fd())
            .finish()
    }
}
