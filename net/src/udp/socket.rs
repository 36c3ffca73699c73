//! [`UdpSocket`]: a UDP socket with one receive cell and one send cell.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use cellio_reactor::{Handle, Registration};
use socket2::{Protocol, SockAddr, Type};

use crate::bind::{bound_socket, each_address};
use crate::datagram::{self as ops, sealed, DatagramSocket};
use crate::raw_addr::IpSockAddr;
use crate::stats::OpStats;
use crate::udp::{Recv, RecvFrom, Send, SendTo};

/// A UDP socket driven by a cellio reactor.
///
/// Like a [`TcpStream`](crate::TcpStream), it owns one receive cell and one
/// send cell: [`recv_from`](Self::recv_from), [`send_to`](Self::send_to)
/// (and, once [`connect`](Self::connect)ed, [`recv`](Self::recv) and
/// [`send`](Self::send)) return small futures that complete on their first
/// poll when a datagram (or buffer space) is already there, and otherwise
/// park on the cell until the reactor wakes them. One receive and one send
/// may be in flight at a time; a second in the same direction fails with
/// `ErrorKind::ResourceBusy`. Nothing is allocated per datagram.
///
/// A datagram longer than the receive buffer is an error
/// (`ErrorKind::InvalidData`), not a silently shortened message: see the
/// [module docs](crate::udp).
///
/// # Examples
///
/// An echo server, answering each datagram to its sender:
///
/// ```no_run
/// use cellio_net::udp::{UdpSocket, MAX_DATAGRAM};
///
/// # fn main() -> std::io::Result<()> {
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let socket = UdpSocket::bind("127.0.0.1:7001")?;
///     let mut buf = vec![0u8; MAX_DATAGRAM];
///     loop {
///         let (n, from) = socket.recv_from(&mut buf).await?;
///         socket.send_to(&buf[..n], from).await?;
///     }
/// })
/// # }
/// ```
pub struct UdpSocket {
    // Field order matters: the fd closes before the slot is freed.
    io: mio::net::UdpSocket,
    registration: Registration,
    /// Whether the kernel may merge this socket's datagrams on receive
    /// (`UDP_GRO` is on): then only `recv_many` may receive.
    merged: AtomicBool,
}

impl UdpSocket {
    /// Binds a socket to the first address of `addr` that it can bind
    /// (port 0: the kernel picks one; see [`local_addr`](Self::local_addr)),
    /// registered with the current runtime's reactor.
    ///
    /// Fails outside a cellio runtime. Host names resolve synchronously
    /// (through `ToSocketAddrs`). If every address fails, the last error is
    /// returned.
    ///
    /// ```
    /// # cellio_runtime::Runtime::new().unwrap().block_on(async {
    /// let socket = cellio_net::udp::UdpSocket::bind("127.0.0.1:0")?;
    /// assert_ne!(socket.local_addr()?.port(), 0);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        let handle = Handle::current()?;
        each_address(addr, |addr| {
            Self::register(mio::net::UdpSocket::bind(addr)?, &handle)
        })
    }

    /// Like [`bind`](Self::bind), with socket options set before binding:
    /// with `reuse_port`, one socket per worker can bind the same port and
    /// the kernel spreads datagrams over them (by their sender's address
    /// and port, so one sender's datagrams stay together; on FreeBSD
    /// through `SO_REUSEPORT_LB`, set with it; macOS does not spread them).
    ///
    /// ```
    /// use cellio_net::udp::{BindOptions, UdpSocket};
    ///
    /// # cellio_runtime::Runtime::new().unwrap().block_on(async {
    /// let options = BindOptions { reuse_port: true, ..Default::default() };
    /// let first = UdpSocket::bind_with("127.0.0.1:0", options)?;
    /// let second = UdpSocket::bind_with(first.local_addr()?, options)?;
    /// assert_eq!(first.local_addr()?, second.local_addr()?);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn bind_with<A: ToSocketAddrs>(addr: A, options: BindOptions) -> io::Result<UdpSocket> {
        let handle = Handle::current()?;
        each_address(addr, |addr| {
            let socket = bound_socket(
                addr,
                Type::DGRAM,
                Protocol::UDP,
                options.reuse_address,
                options.reuse_port,
            )?;
            let std: std::net::UdpSocket = socket.into();
            Self::register(mio::net::UdpSocket::from_std(std), &handle)
        })
    }

    /// Registers a bound socket: for reading only, until a send first has
    /// to wait (see [`arm_writable`](crate::datagram::sealed::Sealed::arm_writable)).
    fn register(mut io: mio::net::UdpSocket, handle: &Handle) -> io::Result<Self> {
        let registration = handle.register_readable(&mut io)?;
        Ok(Self {
            io,
            registration,
            merged: AtomicBool::new(false),
        })
    }

    /// Wraps a bound `std` socket, registering it with the current
    /// runtime's reactor. The socket is switched to non-blocking mode.
    ///
    /// Fails outside a cellio runtime.
    ///
    /// A socket that already has `UDP_GRO` on (set through libc, or kept
    /// from an [`enable_receive_offload`](Self::enable_receive_offload)
    /// before [`into_std`](Self::into_std)) is seen as such: it receives
    /// with `recv_many` only.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let merged = receive_offload_of(&socket)?;
        let socket = Self::register(mio::net::UdpSocket::from_std(socket), &Handle::current()?)?;
        socket.merged.store(merged, Ordering::Relaxed);
        Ok(socket)
    }

    /// Turns receive offload (Linux's `UDP_GRO`) on, for the socket's life.
    /// The kernel may then hand over several datagrams of one sender, of
    /// one length but the last, as one buffer: a bulk receiver takes many
    /// datagrams for one pass through the stack (the receiving side of
    /// [`SendBatch::push_segmented`](crate::datagram::SendBatch::push_segmented)).
    ///
    /// Only [`recv_many`](Self::recv_many) (and `try_recv_many`, and
    /// `UdpIo`'s) receives then, into a [`RecvBatch`](crate::udp::RecvBatch)
    /// whose slots hold [`MAX_MERGED`](crate::udp::MAX_MERGED) bytes: it
    /// splits each buffer back into its datagrams, so `iter` yields them
    /// one by one, whole, with their sender. `recv`, `recv_from` and
    /// `peek_from` fail with `InvalidInput` before they take anything, and
    /// so does `recv_many` into smaller slots; nothing is ever returned
    /// merged. `peek_sender` works.
    ///
    /// There is no turning it off: the kernel gives the length that splits
    /// a merged buffer only while the option is on, and buffers merged
    /// before would still be queued.
    ///
    /// Fails with `Unsupported` elsewhere than Linux (and with `--cfg
    /// cellio_portable_datagrams`, which has no control messages).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use cellio_net::udp::{RecvBatch, UdpSocket, MAX_MERGED};
    ///
    /// # async fn bulk(socket: UdpSocket) -> std::io::Result<()> {
    /// socket.enable_receive_offload()?;
    /// let mut batch = RecvBatch::new(8, MAX_MERGED); // 8 buffers of 64 KiB
    /// loop {
    ///     socket.recv_many(&mut batch).await?; // how many datagrams, not buffers
    ///     for datagram in batch.iter() {
    ///         let (bytes, from) = datagram?;
    ///         // one datagram, as its sender sent it
    ///     }
    /// }
    /// # }
    /// ```
    pub fn enable_receive_offload(&self) -> io::Result<()> {
        // The flag first: a receive that tests it from now on refuses,
        // before the kernel can merge anything (set after the option, a
        // receive on another thread could test it in between and take a
        // merged buffer as one datagram). A receive already past its test
        // is not stopped either way: enable offload before sharing the
        // socket between receivers.
        let was = self.merged.swap(true, Ordering::SeqCst);
        if let Err(e) = enable_receive_offload_of(self.io.as_raw_fd()) {
            self.merged.store(was, Ordering::Relaxed);
            return Err(e);
        }
        Ok(())
    }

    /// Whether receive offload is on (see
    /// [`enable_receive_offload`](Self::enable_receive_offload)).
    pub fn receive_offload(&self) -> bool {
        self.merged.load(Ordering::Relaxed)
    }

    /// Turns this socket back into a `std` socket (still non-blocking),
    /// leaving this reactor: to hand it to another worker, which wraps it
    /// again with [`from_std`](Self::from_std). Its own descriptor, no
    /// `dup(2)`, as [`TcpStream::into_std`](crate::TcpStream::into_std).
    ///
    /// A socket with [receive offload](Self::enable_receive_offload) keeps
    /// `UDP_GRO`: `std`'s receives would return merged datagrams as one;
    /// `from_std` sees it and receives with `recv_many` only again.
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        Ok(std::net::UdpSocket::from(OwnedFd::from(self.into_io())))
    }

    /// Sets the socket's default peer to the first address of `addr` that
    /// it can connect to: [`send`](Self::send) sends there, and from then
    /// on the kernel drops datagrams that arrive from anyone else. Nothing
    /// goes over the network. Calling it again changes the peer.
    ///
    /// Datagrams already queued when it is called stay queued, and the
    /// receives ([`recv`](Self::recv) too) return them: a stranger's sent
    /// before the first `connect`, the old peer's after a second (as with
    /// `std` and tokio: it is the kernel's filter, on arrival). Where the
    /// sender matters, receive with [`recv_from`](Self::recv_from) and
    /// compare it with the peer, or drain the queue right after
    /// connecting:
    ///
    /// ```no_run
    /// # fn f(socket: &cellio_net::UdpSocket) -> std::io::Result<()> {
    /// socket.connect("127.0.0.1:5353")?;
    /// let peer = socket.peer_addr()?;
    /// let mut buf = [0u8; 1500];
    /// loop {
    ///     match socket.try_recv_from(&mut buf) {
    ///         Ok((_, from)) if from == peer => { /* the peer's: keep it */ }
    ///         Ok(_) => {} // queued before connect, from someone else
    ///         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        each_address(addr, |addr| self.io.connect(addr))
    }

    /// Receives one datagram, returning its length and its sender.
    ///
    /// # Notes
    ///
    /// * Completes on its first poll, without touching the reactor, when a
    ///   datagram is already queued ([`RecvFrom::try_complete`] checks that
    ///   without `.await`).
    /// * A datagram longer than `buf` fails with `ErrorKind::InvalidData`;
    ///   its first `buf.len()` bytes are in `buf`, the rest is gone.
    /// * Cancel-safe: dropping the future before it completes loses no
    ///   datagram.
    pub fn recv_from<'a>(&'a self, buf: &'a mut [u8]) -> RecvFrom<'a> {
        RecvFrom::new(self, buf)
    }

    /// Sends `buf` as one datagram to `target`; resolves to its length.
    ///
    /// # Notes
    ///
    /// A datagram larger than the path allows fails (`EMSGSIZE`, as an
    /// `io::Error`); nothing is ever sent in part. Cancel-safe: a send that
    /// has not completed has not sent anything.
    pub fn send_to<'a>(&'a self, buf: &'a [u8], target: SocketAddr) -> SendTo<'a> {
        SendTo::new(self, buf, target)
    }

    /// Receives one datagram from the [`connect`](Self::connect)ed peer,
    /// returning its length. As [`recv_from`](Self::recv_from) otherwise.
    ///
    /// On a socket never connected it takes a datagram from any sender,
    /// without saying which (use [`recv_from`](Self::recv_from) for that).
    pub fn recv<'a>(&'a self, buf: &'a mut [u8]) -> Recv<'a> {
        Recv::new(self, buf)
    }

    /// Sends `buf` as one datagram to the [`connect`](Self::connect)ed peer.
    /// As [`send_to`](Self::send_to) otherwise.
    ///
    /// Fails with `ErrorKind::NotConnected` (the kernel's `EDESTADDRREQ`)
    /// on a socket never connected. A peer with no socket on its port may
    /// make a later operation fail with `ConnectionRefused` (an ICMP
    /// report, on a connected socket only).
    pub fn send<'a>(&'a self, buf: &'a [u8]) -> Send<'a> {
        Send::new(self, buf)
    }

    /// Receives one datagram without waiting: `WouldBlock` if none is
    /// queued. As [`recv_from`](Self::recv_from) otherwise.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        crate::datagram::try_now_rx(self, || ops::recv_from(self, buf))
    }

    crate::datagram::peek_methods!(SocketAddr);

    crate::datagram::batch_methods!();

    /// Sends one datagram without waiting: `WouldBlock` if the socket's
    /// buffer is full.
    pub fn try_send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        crate::datagram::try_now_tx(self, true, || ops::send_to(self, buf, &target))
    }

    /// Receives one datagram from the connected peer without waiting.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        crate::datagram::try_now_rx(self, || ops::recv(self, buf))
    }

    /// Sends one datagram to the connected peer without waiting.
    pub fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        crate::datagram::try_now_tx(self, false, || ops::send(self, buf))
    }

    crate::ready::readiness_methods!(
        "try_recv_from",
        "try_send_to",
        "let a = cellio_net::UdpSocket::bind(\"127.0.0.1:0\")?;
let b = cellio_net::UdpSocket::bind(\"127.0.0.1:0\")?;
b.connect(a.local_addr()?)?;"
    );

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// The connected peer's address (`NotConnected` if none).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// Sets `SO_BROADCAST`: whether datagrams may go to a broadcast address.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.io.set_broadcast(on)
    }

    /// Whether `SO_BROADCAST` is set.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.io.broadcast()
    }

    /// Sets the IP time-to-live of outgoing datagrams.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.set_ttl(ttl)
    }

    /// The IP time-to-live of outgoing datagrams.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.ttl()
    }

    /// Sets `SO_RCVBUF`: how many bytes of datagrams the kernel may queue
    /// for this socket before it drops new ones. Linux doubles the value
    /// (for its own bookkeeping) and caps it at `net.core.rmem_max`; read
    /// the result back with [`recv_buffer_size`](Self::recv_buffer_size).
    /// A server that may fall behind a burst of senders wants more than the
    /// default (`net.core.rmem_default`, 208 KiB on most Linux systems, in
    /// which the benchmark VM queues 256 datagrams of 64 bytes, or 92 of
    /// 1 400, for a reader that is not reading). A size beyond `i32::MAX`
    /// (the option is a C `int`) counts as `i32::MAX`, so it gets the cap
    /// too.
    ///
    /// ```
    /// # cellio_runtime::Runtime::new().unwrap().block_on(async {
    /// let socket = cellio_net::UdpSocket::bind("127.0.0.1:0")?;
    /// socket.set_recv_buffer_size(1 << 20)?;
    /// assert!(socket.recv_buffer_size()? >= 256 << 10); // capped by rmem_max
    /// # std::io::Result::Ok(()) }).unwrap();
    /// ```
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        socket2::SockRef::from(&self.io).set_recv_buffer_size(crate::sys::buffer_size_option(bytes))
    }

    /// `SO_RCVBUF`: the kernel's receive buffer size in bytes.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        socket2::SockRef::from(&self.io).recv_buffer_size()
    }

    /// Sets `SO_SNDBUF`: how many bytes of outgoing datagrams the kernel
    /// may hold for this socket (doubled and capped at `net.core.wmem_max`
    /// on Linux; a size beyond `i32::MAX` counts as `i32::MAX`).
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        socket2::SockRef::from(&self.io).set_send_buffer_size(crate::sys::buffer_size_option(bytes))
    }

    /// `SO_SNDBUF`: the kernel's send buffer size in bytes.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        socket2::SockRef::from(&self.io).send_buffer_size()
    }

    /// Gets and clears the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.take_error()
    }

    /// How this socket's operations completed so far: on the first attempt
    /// or after parking. See [`TcpStream::stats`](crate::TcpStream::stats).
    pub fn stats(&self) -> OpStats {
        OpStats::of(&self.registration)
    }
}

impl DatagramSocket for UdpSocket {}

impl sealed::Sealed for UdpSocket {
    type Addr = SocketAddr;
    type Target = SocketAddr;
    type BatchTarget = IpSockAddr;
    const SEGMENTS: bool = true;
    const FITS_ANY: &'static str = "a buffer of cellio_net::udp::MAX_DATAGRAM bytes holds any \
                                    datagram";

    #[inline(always)]
    fn registration(&self) -> &Registration {
        &self.registration
    }

    #[inline(always)]
    fn receives_merged(&self) -> bool {
        self.merged.load(Ordering::Relaxed)
    }

    fn arm_writable(&self) -> io::Result<()> {
        let fd = self.io.as_raw_fd();
        self.registration
            .arm_writable(&mut mio::unix::SourceFd(&fd))
    }

    #[inline(always)]
    fn sender(from: SockAddr) -> io::Result<SocketAddr> {
        from.as_socket().ok_or_else(not_ip)
    }

    /// Read in place: no copy into a `SockAddr` on the way.
    #[inline]
    fn sender_in(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> io::Result<SocketAddr> {
        crate::sys::ip_addr_of(storage, len).ok_or_else(not_ip)
    }

    #[inline(always)]
    fn batch_target(to: &SocketAddr) -> io::Result<IpSockAddr> {
        Ok(IpSockAddr::new(to))
    }

    #[inline(always)]
    fn send_to_target(&self, buf: &[u8], target: &SocketAddr) -> io::Result<usize> {
        crate::sys::send_to(self.io.as_raw_fd(), buf, &IpSockAddr::new(target))
    }
}

/// Whether `socket` has `UDP_GRO` on.
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
))]
fn receive_offload_of(socket: &std::net::UdpSocket) -> io::Result<bool> {
    crate::sys::udp_gro(socket.as_raw_fd())
}

/// Never: no `UDP_GRO` here.
#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
)))]
fn receive_offload_of(_socket: &std::net::UdpSocket) -> io::Result<bool> {
    Ok(false)
}

#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
))]
fn enable_receive_offload_of(fd: std::os::fd::RawFd) -> io::Result<()> {
    crate::sys::enable_udp_gro(fd)
}

#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
)))]
fn enable_receive_offload_of(_fd: std::os::fd::RawFd) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "receive offload (UDP_GRO) is Linux's, and needs the recvmmsg path \
         (not --cfg cellio_portable_datagrams)",
    ))
}

#[cold]
fn not_ip() -> io::Error {
    io::Error::other("a datagram from a sender that is not an IP socket address")
}

/// How [`UdpSocket::bind_with`] sets up the socket. Both options are off
/// by default, as they are for [`UdpSocket::bind`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindOptions {
    /// `SO_REUSEADDR`. On Linux it lets any number of UDP sockets that all
    /// set it bind the same address and port, a unicast address included
    /// (a socket without it still gets `AddrInUse`). That is what several
    /// receivers of one multicast group and port need: each gets every
    /// datagram sent to the group. A unicast datagram, though, goes to one
    /// of the sockets alone (in practice the one bound last), and the
    /// others get nothing, with no error anywhere: a second server started
    /// by mistake on the address of a running one, both with this option,
    /// silently takes all its traffic. To spread a unicast address's
    /// datagrams over several sockets use
    /// [`reuse_port`](Self::reuse_port); keep this one for multicast
    /// receivers. Other systems differ; see their `socket(7)`.
    pub reuse_address: bool,
    /// `SO_REUSEPORT`: several sockets (one per worker) bind the same
    /// port, and the kernel spreads incoming datagrams over them.
    pub reuse_port: bool,
}

crate::registered::registered_socket_with_into_io!(UdpSocket, mio::net::UdpSocket);

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.io.local_addr().ok())
            .field("peer", &self.io.peer_addr().ok())
            .field("fd", &self.io.as_raw_fd())
            .finish()
    }
}
