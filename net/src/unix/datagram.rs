//! [`UnixDatagram`]: a Unix-domain datagram socket with one receive cell and
//! one send cell.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;

use cellio_reactor::{Handle, Registration};
use socket2::SockAddr;

use crate::datagram::{self as ops, sealed, DatagramSocket};
use crate::stats::OpStats;
use crate::unix::{unnamed, RecvDatagram as Recv, RecvFrom, SendDatagram as Send, SendTo};

/// A Unix-domain datagram socket (`AF_UNIX`, `SOCK_DGRAM`) driven by a
/// cellio reactor: a [`UdpSocket`](crate::UdpSocket) for peers on the same
/// machine, addressed by filesystem paths (or, on Linux, abstract names).
///
/// Its operations are `UdpSocket`'s, with the same cells and the same
/// futures: they complete on their first poll when a datagram (or buffer
/// space) is there and park on the socket's cell otherwise, one receive and
/// one send in flight at a time, nothing allocated per datagram.
///
/// * **A datagram longer than the buffer is an error**
///   (`ErrorKind::InvalidData`), not a silently shortened message. The
///   largest datagram a sender may send is bounded by its `SO_SNDBUF`
///   (about 208 KiB by default on Linux).
/// * Unlike UDP, a Unix datagram is never dropped for lack of room: a send
///   to a peer whose receive queue is full waits until it has room. A
///   connected send parks until the kernel says so. Linux says nothing to
///   a send by address (`send_to`, a batch's `push`), so that one tries
///   again after a delay, 1 ms doubling to 50 ms: little CPU, at most
///   50 ms late; connect to the peer to wait for its room exactly. (The
///   `try_` methods return `WouldBlock`, and `writable()` does not wait
///   for a peer's room.)
/// * A socket must be bound (to a path, an abstract name, or on Linux
///   autobound: [`bind_addr`](Self::bind_addr) with an unnamed address) to
///   receive replies, connected or not: an [`unbound`](Self::unbound) one
///   can send, but its peers see it as an unnamed address, which nothing
///   can send or connect to (only a [`pair`](Self::pair)'s two sockets,
///   unbound, receive each other's datagrams). So does a
///   receive see a sender bound to a path of all 108 bytes of `sun_path`
///   (which `std`'s address type cannot be made of): its datagrams are
///   delivered, and it cannot be replied to by address.
///
/// # Examples
///
/// ```
/// use cellio_net::unix::UnixDatagram;
///
/// # fn main() -> std::io::Result<()> {
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let (a, b) = UnixDatagram::pair()?;
///     a.send(b"one datagram").await?;
///     let mut buf = [0u8; 64];
///     let n = b.recv(&mut buf).await?;
///     assert_eq!(&buf[..n], b"one datagram");
///     Ok(())
/// })
/// # }
/// ```
pub struct UnixDatagram {
    // Field order matters: the fd closes before the slot is freed.
    io: mio::net::UnixDatagram,
    registration: Registration,
}

impl UnixDatagram {
    /// A socket bound to `path`.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if a file exists at `path` (binding creates it, and
    /// dropping the socket leaves it, as for a
    /// [`UnixListener`](crate::unix::UnixListener)); `InvalidInput` for an
    /// empty path (which the kernel would take as a request for a random
    /// abstract name: an abstract name is given to
    /// [`bind_addr`](Self::bind_addr)) or one too long for a socket
    /// address. Must be called inside a cellio runtime.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        Self::bind_addr(&super::path_address(
            path.as_ref(),
            "UnixDatagram::bind_addr",
        )?)
    }

    /// A socket bound to `addr`: a path's address, or on Linux an abstract
    /// one (`std::os::linux::net::SocketAddrExt::from_abstract_name`). An
    /// unnamed address asks Linux to *autobind*: the kernel picks a random
    /// abstract name of five hex digits, which
    /// [`local_addr`](Self::local_addr) then reports.
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixDatagram> {
        let handle = Handle::current()?;
        Self::register(mio::net::UnixDatagram::bind_addr(addr)?, &handle)
    }

    /// A socket bound to no address: it can send (to paths, or once
    /// [`connect`](Self::connect)ed), but receives nothing, connected or
    /// not. Its peers see it as an unnamed address, which they can neither
    /// send to nor connect to, and connecting does not give it an address
    /// (Linux autobinds one only with `SO_PASSCRED` set). To receive
    /// replies, [`bind`](Self::bind) a path, or
    /// [`bind_addr`](Self::bind_addr) an abstract name (or, on Linux, an
    /// unnamed address: the kernel then picks an abstract name).
    /// [`pair`](Self::pair)'s sockets are unbound and receive each other's
    /// datagrams.
    pub fn unbound() -> io::Result<UnixDatagram> {
        let handle = Handle::current()?;
        Self::register(mio::net::UnixDatagram::unbound()?, &handle)
    }

    /// A pair of connected sockets (`socketpair(2)`): each one's datagrams
    /// go to the other.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let handle = Handle::current()?;
        let (a, b) = mio::net::UnixDatagram::pair()?;
        Ok((Self::register(a, &handle)?, Self::register(b, &handle)?))
    }

    /// Registers a socket: for reading only, until a send first has to wait.
    fn register(mut io: mio::net::UnixDatagram, handle: &Handle) -> io::Result<Self> {
        crate::sys::no_sigpipe(&io)?;
        // The unnamed address a receive may report, made now, not at the
        // receive (see `unnamed`); if it cannot be, a receive tries again.
        let _ = unnamed();
        let registration = handle.register_readable(&mut io)?;
        Ok(Self { io, registration })
    }

    /// Wraps a `std` socket, registering it with the current runtime's
    /// reactor. The socket is switched to non-blocking mode.
    pub fn from_std(socket: std::os::unix::net::UnixDatagram) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Self::register(
            mio::net::UnixDatagram::from_std(socket),
            &Handle::current()?,
        )
    }

    /// Leaves this reactor: the socket as a `std` socket (non-blocking
    /// still), for another worker's [`from_std`](Self::from_std). Its own
    /// descriptor, no `dup(2)`, as
    /// [`TcpStream::into_std`](crate::TcpStream::into_std).
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixDatagram> {
        Ok(std::os::unix::net::UnixDatagram::from(OwnedFd::from(
            self.into_io(),
        )))
    }

    /// Sets the default peer: [`send`](Self::send) goes to it, and from
    /// then on another socket's send to this one fails (`EPERM`, Linux).
    /// `NotFound` if nothing is bound at `path`, `ConnectionRefused` if the
    /// socket there is gone.
    ///
    /// Datagrams already queued when it is called are the kernel's to
    /// keep or drop, not filtered by sender (as with `std` and tokio): the
    /// first `connect` keeps them, and the receives ([`recv`](Self::recv)
    /// too) return them, whoever sent them; connecting again to another
    /// peer discards everything queued (Linux). Where that matters, drain
    /// the queue right after the first `connect` (what arrives after it is
    /// the peer's), or receive with [`recv_from`](Self::recv_from) and
    /// compare the sender (an [`unbound`](Self::unbound) sender has no
    /// address to compare):
    ///
    /// ```no_run
    /// # fn f(socket: &cellio_net::unix::UnixDatagram) -> std::io::Result<()> {
    /// socket.connect("/run/peer.sock")?;
    /// let mut buf = [0u8; 1500];
    /// loop {
    ///     match socket.try_recv(&mut buf) {
    ///         Ok(_) => {} // queued before connect, from anyone
    ///         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.io.connect(path)
    }

    /// Receives one datagram and its sender's address (unnamed if the
    /// sender is [`unbound`](Self::unbound)).
    ///
    /// ```no_run
    /// # async fn f(socket: &cellio_net::unix::UnixDatagram) -> std::io::Result<()> {
    /// let mut buf = vec![0u8; 64 * 1024];
    /// let (n, from) = socket.recv_from(&mut buf).await?;
    /// if let Some(path) = from.as_pathname() {
    ///     socket.send_to(&buf[..n], path).await?; // echo it back
    /// }
    /// # Ok(()) }
    /// ```
    pub fn recv_from<'a>(&'a self, buf: &'a mut [u8]) -> RecvFrom<'a> {
        RecvFrom::new(self, buf)
    }

    /// Sends `buf` as one datagram to the socket bound at `path`. A path
    /// that cannot be a socket address (too long, or with a NUL byte, which
    /// the kernel would end the path at) fails the future with
    /// `InvalidInput`, as `bind` and `connect` refuse it; an abstract name
    /// is given to [`send_to_addr`](Self::send_to_addr).
    pub fn send_to<'a, P: AsRef<Path>>(&'a self, buf: &'a [u8], path: P) -> SendTo<'a> {
        SendTo::new(self, buf, path_target(path.as_ref()))
    }

    /// Sends `buf` as one datagram to `addr` (a path's, or on Linux an
    /// abstract one; an unnamed address fails with `InvalidInput`).
    pub fn send_to_addr<'a>(&'a self, buf: &'a [u8], addr: &SocketAddr) -> SendTo<'a> {
        SendTo::new(self, buf, target_of(addr))
    }

    /// Receives one datagram from the connected peer (or anyone, if the
    /// socket is bound and not connected): its length (0 once the socket's
    /// receiving side is [shut down](Self::shutdown)).
    pub fn recv<'a>(&'a self, buf: &'a mut [u8]) -> Recv<'a> {
        Recv::new(self, buf)
    }

    /// Sends `buf` as one datagram to the connected peer; `NotConnected` if
    /// there is none.
    pub fn send<'a>(&'a self, buf: &'a [u8]) -> Send<'a> {
        Send::new(self, buf)
    }

    /// Sends `buf` as one datagram to the connected peer with the
    /// descriptors `fds` attached (`SCM_RIGHTS`): the peer's
    /// [`recv_with_fds`](Self::recv_with_fds) gets a duplicate of each, in
    /// its own process, with this datagram. Resolves to its length.
    /// Cancel-safe: a dropped call sent nothing.
    ///
    /// Fails with `InvalidInput` for an empty `buf` or more than
    /// [`MAX_FDS`](crate::unix::MAX_FDS) descriptors, `NotConnected`
    /// without a peer.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Seek, Write};
    /// use std::os::fd::AsFd;
    /// use cellio_net::unix::UnixDatagram;
    ///
    /// # fn main() -> std::io::Result<()> {
    /// cellio_runtime::Runtime::new()?.block_on(async {
    ///     let (a, b) = UnixDatagram::pair()?;
    ///     let path = std::env::temp_dir().join(format!("cellio-dgram-fd-{}", std::process::id()));
    ///     let mut file = std::fs::File::options()
    ///         .read(true)
    ///         .write(true)
    ///         .create(true)
    ///         .truncate(true)
    ///         .open(&path)?;
    ///     file.write_all(b"shared")?;
    ///     a.send_with_fds(b"a file", &[file.as_fd()]).await?;
    ///
    ///     let (mut buf, mut fds) = ([0u8; 16], Vec::with_capacity(1));
    ///     let got = b.recv_with_fds(&mut buf, &mut fds).await?;
    ///     assert_eq!((&buf[..got.bytes], got.fds), (&b"a file"[..], 1));
    ///     let mut received = std::fs::File::from(fds.pop().unwrap());
    ///     received.rewind()?; // the same open file: its position is shared
    ///     let mut contents = String::new();
    ///     received.read_to_string(&mut contents)?;
    ///     assert_eq!(contents, "shared");
    ///     std::fs::remove_file(&path)
    /// })
    /// # }
    /// ```
    pub fn send_with_fds<'a>(
        &'a self,
        buf: &'a [u8],
        fds: &'a [std::os::fd::BorrowedFd<'a>],
    ) -> crate::unix::SendWithFds<'a, UnixDatagram> {
        crate::unix::SendWithFds::new(self, buf, fds)
    }

    /// Receives one datagram into `buf`, and pushes the descriptors that
    /// came with it onto `fds`, owned and close-on-exec (`SCM_RIGHTS`).
    /// Resolves to a [`FdsReceived`](crate::unix::FdsReceived): the
    /// datagram's length, how many descriptors were pushed, and whether
    /// the kernel had to drop some. A datagram longer than `buf` is an
    /// error (`InvalidData`), as for [`recv`](Self::recv); its descriptors
    /// are pushed all the same. Cancel-safe.
    ///
    /// Descriptors that arrive with a datagram taken by a plain receive
    /// are closed by the kernel; so are those this process has no room for
    /// (out of descriptors, `EMFILE`), the receive then succeeding with
    /// [`truncated`](crate::unix::FdsReceived::truncated) set. Reserve
    /// room in `fds` to keep the receive from allocating.
    pub fn recv_with_fds<'a>(
        &'a self,
        buf: &'a mut [u8],
        fds: &'a mut Vec<std::os::fd::OwnedFd>,
    ) -> crate::unix::RecvWithFds<'a, UnixDatagram> {
        crate::unix::RecvWithFds::new(self, buf, fds)
    }

    /// [`recv_from`](Self::recv_from) without waiting: `WouldBlock` if no
    /// datagram is queued.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        crate::datagram::try_now_rx(self, || ops::recv_from(self, buf))
    }

    crate::datagram::peek_methods!(SocketAddr);

    crate::datagram::batch_methods!();

    /// [`send_to`](Self::send_to) without waiting: `WouldBlock` if the
    /// datagram cannot be queued now.
    pub fn try_send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let target = path_target(path.as_ref());
        crate::datagram::try_now_tx(self, true, || ops::send_to(self, buf, &target))
    }

    /// [`recv`](Self::recv) without waiting.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        crate::datagram::try_now_rx(self, || ops::recv(self, buf))
    }

    /// [`send`](Self::send) without waiting.
    pub fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        crate::datagram::try_now_tx(self, false, || ops::send(self, buf))
    }

    crate::ready::readiness_methods!(
        "try_recv_from",
        "try_send_to",
        "let (a, b) = cellio_net::unix::UnixDatagram::pair()?;",
        room_may_go_unannounced,
        "
Linux announces room only to a sender connected to the peer that had
none: after a `WouldBlock` from a send by address to a full peer (from
[`try_send_to`](Self::try_send_to), or your own through
[`try_io`](Self::try_io)), `writable()` does not wait for that peer's room
and completes at once, so a loop of the two must back off itself (a delay
before it tries again), or `connect` and use
[`try_send`](Self::try_send).",
        "
On a `UnixDatagram`, a send's `WouldBlock` is recorded only when an event
will announce the room: `try_io` cannot tell where `f` sent, and a send by
address to a full peer gets no event, so, as after
[`try_send_to`](Self::try_send_to)'s, nothing is recorded whenever `f`'s
`WouldBlock` may be one (on a connected socket always, on an unconnected
one while its own buffer has room). The next
[`writable`](Self::writable) then completes at once: a loop of
`writable()` and your own send must back off itself (a delay before it
tries again), or `connect` and send to the connected peer with
[`try_send`](Self::try_send), whose `WouldBlock` `writable()` waits out."
    );

    /// This socket's address (unnamed if it is not bound).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// The connected peer's address; `NotConnected` if there is none.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// Shuts down the receiving, sending or both directions.
    ///
    /// `Shutdown::Read`: once the datagrams queued before it are taken,
    /// every receive ends at once with 0 bytes (a receive parked at the
    /// time included), as Linux's blocking receive does, where its
    /// non-blocking one says `EAGAIN`: `recv` returns 0, `recv_from` and
    /// `peek_sender` report an unnamed sender, `recv_with_fds` no bytes and
    /// no descriptors, `recv_many` no datagram (0). tokio's `recv` retries
    /// without end there.
    ///
    /// A send parked on this socket (another task's, waiting for its
    /// connected peer's room) then ends with `BrokenPipe`. Linux raises no
    /// event for it, so cellio wakes the send itself, which it can do from
    /// the socket's own worker (the thread whose reactor it is registered
    /// with) only: shut it down from a task there. Called on another
    /// worker's thread, the parked send waits until the peer reads.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.shutdown(how)?;
        super::wake_send_after_shutdown(&self.registration, how);
        Ok(())
    }

    /// Sets `SO_SNDBUF`, which also bounds the largest datagram this socket
    /// can send (Linux doubles the value and caps it at
    /// `net.core.wmem_max`; a size beyond `i32::MAX`, the option being a C
    /// `int`, counts as `i32::MAX`).
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        socket2::SockRef::from(&self.io).set_send_buffer_size(crate::sys::buffer_size_option(bytes))
    }

    /// `SO_SNDBUF` in bytes.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        socket2::SockRef::from(&self.io).send_buffer_size()
    }

    /// Sets `SO_RCVBUF` (Linux doubles the value and caps it at
    /// `net.core.rmem_max`; a size beyond `i32::MAX` counts as
    /// `i32::MAX`).
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        socket2::SockRef::from(&self.io).set_recv_buffer_size(crate::sys::buffer_size_option(bytes))
    }

    /// `SO_RCVBUF` in bytes.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        socket2::SockRef::from(&self.io).recv_buffer_size()
    }

    /// Gets and clears the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.take_error()
    }

    /// How this socket's operations completed so far: on the first attempt
    /// or after parking.
    pub fn stats(&self) -> OpStats {
        OpStats::of(&self.registration)
    }
}

/// `addr` as the kernel's address type: a path, or an abstract name (a
/// leading NUL, as `socket2` takes it); `None` for an unnamed address.
fn target_of(addr: &SocketAddr) -> Option<SockAddr> {
    if let Some(path) = addr.as_pathname() {
        return SockAddr::unix(path).ok();
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::ffi::OsStr;
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        if let Some(name) = addr.as_abstract_name() {
            let mut bytes = [0u8; 108];
            let len = name.len() + 1;
            bytes.get_mut(1..len)?.copy_from_slice(name);
            return SockAddr::unix(Path::new(OsStr::from_bytes(&bytes[..len]))).ok();
        }
    }
    None
}

/// The address of `path` to send to; `None` (refused with `InvalidInput`)
/// for a path too long for a socket address or one with a NUL byte, as
/// `bind` and `connect` refuse them (`std`'s rule): the kernel reads a path
/// only up to its first NUL, so `dir/a\0b` would send to `dir/a`, and
/// `\0name` to the abstract name `name`.
pub(crate) fn path_target(path: &Path) -> Option<SockAddr> {
    use std::os::unix::ffi::OsStrExt;
    if path.as_os_str().as_bytes().contains(&0) {
        return None;
    }
    SockAddr::unix(path).ok()
}

/// A destination that [`target_of`] or [`path_target`] could not make an
/// address of.
fn not_a_destination() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a Unix socket address to send to (a path too long or with a NUL byte, or an \
         unnamed address)",
    )
}

/// The kernel's address of a datagram's sender as `std`'s type
/// ([`reported_address`](super::reported_address)). The datagram was taken
/// already: a sender that `std`'s type cannot be made of is reported
/// unnamed, never as the receive's error (which would lose the datagram).
fn sender_of(from: &SockAddr) -> io::Result<SocketAddr> {
    // SAFETY: a `SockAddr` holds a `sockaddr_storage`, larger than a
    // `sockaddr_un` and aligned for one; its first `len()` bytes are the
    // address the kernel wrote, the rest zeroed.
    let addr = unsafe { &*from.as_ptr().cast::<libc::sockaddr_un>() };
    match super::reported_address(addr, from.len())? {
        Some(sender) => Ok(sender),
        None => {
            // A path that fills all of `sun_path`, with no NUL after it
            // (Linux binds one; C and Python clients can): `std` builds one
            // only from the kernel's own answer to `getsockname` or
            // `getpeername`, which a datagram's sender cannot be asked (nor
            // could `socket2` send to it).
            tracing::debug!("a sender bound to a path of all of sun_path: reported unnamed");
            unnamed()
        }
    }
}

impl DatagramSocket for UnixDatagram {}

impl sealed::Sealed for UnixDatagram {
    type Addr = SocketAddr;
    /// `None`: the destination given could not be a socket address.
    type Target = Option<SockAddr>;
    type BatchTarget = SockAddr;
    const FITS_ANY: &'static str =
        "a buffer as large as the sender's SO_SNDBUF holds any datagram it can send";

    #[inline(always)]
    fn registration(&self) -> &Registration {
        &self.registration
    }

    fn arm_writable(&self) -> io::Result<()> {
        let fd = self.io.as_raw_fd();
        self.registration
            .arm_writable(&mut mio::unix::SourceFd(&fd))
    }

    const ROOM_MAY_GO_UNANNOUNCED: bool = true;

    /// Linux registers a wake-up for the room of the connected peer only
    /// (whose fullness `poll` reports as not writable). So a send by
    /// address on a connected socket never waits for an event: its
    /// destination's room would raise none, and `POLLOUT` is the connected
    /// peer's, not its own (one `getpeername`, on this cold path). Else
    /// `EAGAIN` while this socket is writable (its own buffer has room):
    /// the peer's queue is full, for a send by address, unannounced.
    fn room_raises_no_event(&self, by_address: bool) -> bool {
        (by_address && self.io.peer_addr().is_ok())
            || crate::sys::ready_now(self.io.as_raw_fd(), libc::POLLOUT).is_ok()
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    const EAGAIN_MAY_END_READING: bool = true;

    /// The receive cell's hang-up mark first (one load: the shutdown
    /// raised `EPOLLRDHUP` before the receive woken by it tried again),
    /// then `poll(2)`'s `POLLRDHUP`, which only the socket's own
    /// `shutdown(Read)` raises on a Unix datagram socket (the mark also
    /// follows an error). (macOS and FreeBSD return 0 themselves.)
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn reading_shut_down(&self) -> bool {
        self.registration.rx().peek().is_hung_up()
            && crate::sys::reading_shut_down(self.io.as_raw_fd())
    }

    /// Unnamed, as Linux's blocking receive reports it.
    fn no_sender() -> io::Result<SocketAddr> {
        unnamed()
    }

    fn sender(from: SockAddr) -> io::Result<SocketAddr> {
        sender_of(&from)
    }

    fn batch_target(to: &SocketAddr) -> io::Result<SockAddr> {
        target_of(to).ok_or_else(not_a_destination)
    }

    fn send_to_target(&self, buf: &[u8], target: &Option<SockAddr>) -> io::Result<usize> {
        match target {
            Some(to) => crate::sys::send_to(self.io.as_raw_fd(), buf, to),
            None => Err(not_a_destination()),
        }
    }
}

/// `try_io`'s `unannounced` (`ready::try_io`): a send's `WouldBlock` may
/// wait for room no event will announce. `f` may have sent by address, so
/// this asks as for one (`room_raises_no_event`, conservative: it never
/// says announced when the room may not be), as `try_send_to` does.
fn room_may_go_unannounced(socket: &UnixDatagram) -> bool {
    sealed::Sealed::room_raises_no_event(socket, true)
}

crate::registered::registered_socket_with_into_io!(UnixDatagram, mio::net::UnixDatagram);

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("local", &self.io.local_addr().ok())
            .field("peer", &self.io.peer_addr().ok())
            .field("fd", &self.io.as_raw_fd())
            .finish()
    }
}
