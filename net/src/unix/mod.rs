//! Unix-domain sockets: [`UnixListener`], [`UnixStream`] and their
//! operation futures, [`UnixIo`] (a stream behind poll methods and the
//! `AsyncRead`/`AsyncWrite` traits) with its halves, [`UnixDatagram`] (and
//! [`UnixDatagramIo`]), and a stream peer's credentials ([`UCred`]).
//!
//! A Unix stream runs exactly as a TCP stream does: the same cells, the same
//! generic futures and `StreamIo` of [`crate::stream`], named here for a
//! [`UnixStream`]; a Unix datagram socket runs the datagram futures of
//! [`crate::datagram`], as a UDP socket does. Only the addresses differ: a
//! filesystem path, or on Linux an abstract name, as
//! `std::os::unix::net::SocketAddr`.
//!
//! [`UnixDatagramIo`] is `UdpIo`'s twin: a datagram socket one task drives
//! alone, its cells held between datagrams.
//!
//! A stream also passes file descriptors to its peer
//! ([`UnixStream::send_with_fds`], [`UnixStream::recv_with_fds`]:
//! `SCM_RIGHTS`).

use std::ffi::OsStr;
use std::io;
use std::net::Shutdown;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;

mod cred;
mod datagram;
pub(crate) mod fds;
mod listener;
mod stream;

pub use cred::UCred;
pub(crate) use datagram::path_target;
pub use datagram::UnixDatagram;
pub use fds::{FdSocket, FdsReceived, RecvWithFds, SendWithFds, MAX_FDS};
pub use listener::{Accept, UnixListener};
pub use stream::UnixStream;

/// Future of [`UnixStream::recv`]: resolves to the number of bytes received.
pub type Recv<'a> = crate::stream::Recv<'a, UnixStream>;
/// Future of [`UnixStream::peek`]: resolves to the number of bytes copied, which
/// stay queued for the next receive.
pub type Peek<'a> = crate::stream::Peek<'a, UnixStream>;
/// Future of [`UnixStream::send`]: resolves to the number of bytes sent.
pub type Send<'a> = crate::stream::Send<'a, UnixStream>;
/// Future of [`UnixStream::send_all`]: sends the whole buffer.
pub type SendAll<'a> = crate::stream::SendAll<'a, UnixStream>;
/// Future of [`UnixStream::send_vectored`]: resolves to the number of bytes
/// sent, gathered from the slices in order.
pub type SendVectored<'a> = crate::stream::SendVectored<'a, UnixStream>;
/// Future of [`UnixStream::send_file`]: resolves to the number of bytes
/// sent from the file.
pub type SendFile<'a> = crate::stream::SendFile<'a, UnixStream>;
/// Future of [`UnixStream::recv_exact`]: fills the whole buffer.
pub type RecvExact<'a> = crate::stream::RecvExact<'a, UnixStream>;
/// A [`UnixStream`] behind poll methods and the `AsyncRead`/`AsyncWrite`
/// traits, keeping its cells reserved between operations; see
/// [`StreamIo`](crate::stream::StreamIo).
///
/// Closing (`poll_close`, tokio's `poll_shutdown`) is `Ok` whatever the
/// peer did: Linux's shutdown of a Unix stream always succeeds, so unlike
/// a [`TcpIo`](crate::TcpIo)'s it never reports the peer's reset. A peer
/// that closed with bytes unread is reported by reads (what is queued,
/// then `ConnectionReset`) and by sends (`BrokenPipe`).
///
/// ```
/// use futures_util::io::{AsyncReadExt, AsyncWriteExt};
/// use cellio_net::unix::{UnixIo, UnixStream};
///
/// # fn main() -> std::io::Result<()> {
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let (a, b) = UnixStream::pair()?;
///     let (mut a, mut b) = (UnixIo::new(a), UnixIo::new(b));
///     a.write_all(b"ping").await?;
///     a.close().await?; // shuts down a's sending side
///     let mut got = Vec::new();
///     b.read_to_end(&mut got).await?;
///     assert_eq!(got, b"ping");
///     Ok(())
/// })
/// # }
/// ```
pub type UnixIo = crate::stream::StreamIo<UnixStream>;
/// The receiving half of a [`UnixIo`], from
/// [`split`](crate::stream::StreamIo::split).
pub type RecvHalf<'a> = crate::stream::RecvHalf<'a, UnixStream>;
/// The sending half of a [`UnixIo`], from
/// [`split`](crate::stream::StreamIo::split).
pub type SendHalf<'a> = crate::stream::SendHalf<'a, UnixStream>;
/// The receiving half of a [`UnixIo`] for a task of its own, from
/// [`into_split`](crate::stream::StreamIo::into_split).
pub type OwnedRecvHalf = crate::stream::OwnedRecvHalf<UnixStream>;
/// The sending half of a [`UnixIo`] for a task of its own, from
/// [`into_split`](crate::stream::StreamIo::into_split).
pub type OwnedSendHalf = crate::stream::OwnedSendHalf<UnixStream>;

/// A [`UnixDatagram`] one task drives alone through `&mut self`, keeping
/// its cells reserved (and, on its own worker, confined) between datagrams:
/// [`UdpIo`](crate::udp::UdpIo)'s twin; see
/// [`DatagramIo`](crate::datagram::DatagramIo).
///
/// ```
/// use cellio_net::unix::{UnixDatagram, UnixDatagramIo};
///
/// # fn main() -> std::io::Result<()> {
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let (a, b) = UnixDatagram::pair()?;
///     let (mut a, mut b) = (UnixDatagramIo::new(a), UnixDatagramIo::new(b));
///     a.send(b"held").await?;
///     let mut buf = [0u8; 16];
///     let n = b.recv(&mut buf).await?;
///     assert_eq!(&buf[..n], b"held");
///     assert!(b.is_confined());
///     Ok(())
/// })
/// # }
/// ```
pub type UnixDatagramIo = crate::datagram::DatagramIo<UnixDatagram>;

/// Future of [`UnixDatagram::recv_from`]: one datagram and its sender.
pub type RecvFrom<'a> = crate::datagram::RecvFrom<'a, UnixDatagram>;
/// Future of [`UnixDatagram::peek_from`]: the next datagram and its sender, left
/// queued.
pub type PeekFrom<'a> = crate::datagram::PeekFrom<'a, UnixDatagram>;
/// Future of [`UnixDatagram::peek_sender`]: the next datagram's sender, the
/// datagram left queued.
pub type PeekSender<'a> = crate::datagram::PeekSender<'a, UnixDatagram>;
/// Future of [`UnixDatagram::send_to`]: the datagram's length, once sent.
pub type SendTo<'a> = crate::datagram::SendTo<'a, UnixDatagram>;
/// Future of [`UnixDatagram::recv`]: one datagram's length.
pub type RecvDatagram<'a> = crate::datagram::Recv<'a, UnixDatagram>;
/// Future of [`UnixDatagram::send`]: the datagram's length, once sent.
pub type SendDatagram<'a> = crate::datagram::Send<'a, UnixDatagram>;
/// Buffers for [`UnixDatagram::recv_many`]: up to
/// [`MAX_BATCH`](crate::datagram::MAX_BATCH) datagrams per syscall.
pub type RecvBatch = crate::datagram::RecvBatch<UnixDatagram>;
/// Datagrams queued for [`UnixDatagram::send_many`], each with its
/// destination.
pub type SendBatch = crate::datagram::SendBatch<UnixDatagram>;
/// Future of [`UnixDatagram::recv_many`]: how many datagrams arrived.
pub type RecvMany<'a> = crate::datagram::RecvMany<'a, UnixDatagram>;
/// Future of [`UnixDatagram::send_many`]: every queued datagram sent.
pub type SendMany<'a> = crate::datagram::SendMany<'a, UnixDatagram>;

/// The socket address of `path`, for a bind or a connect by path. An
/// empty path is refused with `InvalidInput`: its address holds no byte of
/// a name, which Linux's `bind(2)` takes as a request to *autobind* (a
/// random five-hex-digit abstract name that nobody can find, and no file),
/// and which `connect(2)` refuses with an unhelpful `EINVAL`. An empty path
/// is most likely a setting left unset. `with_abstract` names the method
/// that takes an abstract name instead, for the message.
pub(crate) fn path_address(path: &Path, with_abstract: &str) -> io::Result<SocketAddr> {
    if path.as_os_str().is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "empty Unix socket path (an abstract name, on Linux, is given as an address: \
                 `{with_abstract}` with `std::os::linux::net::SocketAddrExt::from_abstract_name`)"
            ),
        ));
    }
    SocketAddr::from_pathname(path)
}

/// After a `shutdown(2)` of a Unix socket (stream or datagram) that shut
/// its sending side: wakes a send parked on it, whose retry then fails with
/// `BrokenPipe`. Linux raises no event for it (TCP's poll reports the
/// socket writable once it is shut for writing; a Unix socket's reports
/// only room), so the send would wait for the peer to read, perhaps for
/// ever.
///
/// Only on the thread the socket's reactor is bound to: the cells'
/// notifications come from there alone (`OpCell::reserve_confined`,
/// `OpCell::release_on_reactor_thread`), and this one is a notification
/// like the reactor's. Called elsewhere (a task of another worker), it
/// wakes nothing, as documented on the `shutdown` methods.
pub(crate) fn wake_send_after_shutdown(registration: &cellio_reactor::Registration, how: Shutdown) {
    if how != Shutdown::Read && registration.is_bound_here() {
        registration.tx().notify();
    }
}

/// A Unix socket address the kernel wrote (`accept`, `recvfrom`,
/// `recvmmsg`): the first `len` bytes of `addr`, decoded without trusting
/// `sun_path` to end with a NUL, as `std`'s type; `Ok(None)` for a path
/// that type cannot be made of, one that fills all 108 bytes of
/// `sun_path` (Linux binds it with no NUL after it, and reports a length
/// of 111 for it, counting a NUL beyond `sun_path`).
///
/// * No byte of `sun_path` (`len` 0, as a socket-pair peer's, or just the
///   family): unnamed.
/// * A first byte NUL: on Linux an abstract name, the `len` bytes after it
///   (NULs included: they are part of the name); elsewhere, where the
///   kernel reports an unnamed address as a zeroed `sun_path` of any
///   length (macOS, FreeBSD), unnamed.
/// * Otherwise a path, up to its first NUL (which macOS counts in `len`,
///   with the rest of `sun_path` zeroed) or to the end of `sun_path`.
///
/// Any other family is an error.
pub(crate) fn reported_address(
    addr: &libc::sockaddr_un,
    len: libc::socklen_t,
) -> io::Result<Option<SocketAddr>> {
    let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    let path_len = (len as usize)
        .saturating_sub(offset)
        .min(addr.sun_path.len());
    if path_len == 0 {
        return unnamed().map(Some);
    }
    if addr.sun_family != libc::AF_UNIX as libc::sa_family_t {
        return Err(io::Error::other(
            "an address that is not a Unix socket address",
        ));
    }
    // SAFETY: `sun_path` holds `c_char`s, of the size and alignment of
    // `u8`; `path_len` is at most its length.
    let bytes: &[u8] =
        unsafe { std::slice::from_raw_parts(addr.sun_path.as_ptr().cast::<u8>(), path_len) };
    if bytes[0] == 0 {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use std::os::linux::net::SocketAddrExt;
            return SocketAddr::from_abstract_name(&bytes[1..]).map(Some);
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        return unnamed().map(Some);
    }
    let path = match bytes.iter().position(|&b| b == 0) {
        Some(end) => &bytes[..end],
        None => bytes,
    };
    if path.len() == addr.sun_path.len() {
        return Ok(None);
    }
    SocketAddr::from_pathname(Path::new(OsStr::from_bytes(path))).map(Some)
}

/// `std` has no constructor for an unnamed address: one is made once and
/// cloned for every unnamed peer or sender after. `std` makes the empty path
/// one (no byte of `sun_path`), which needs no descriptor; where it does not,
/// it is taken from an unbound socket, when the first `UnixDatagram` is
/// registered: made at a receive, it would need a descriptor after the
/// datagram was taken, and out of descriptors (`EMFILE`) lose it.
pub(crate) fn unnamed() -> io::Result<SocketAddr> {
    static UNNAMED: OnceLock<SocketAddr> = OnceLock::new();
    if let Some(addr) = UNNAMED.get() {
        return Ok(addr.clone());
    }
    let addr = match SocketAddr::from_pathname("") {
        Ok(addr) if addr.is_unnamed() => addr,
        _ => std::os::unix::net::UnixDatagram::unbound()?.local_addr()?,
    };
    Ok(UNNAMED.get_or_init(|| addr).clone())
}
