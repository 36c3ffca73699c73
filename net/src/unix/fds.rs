//! Passing file descriptors over a [`UnixStream`] (`SCM_RIGHTS`):
//! [`UnixStream::send_with_fds`] and [`UnixStream::recv_with_fds`], and
//! over a [`UnixDatagram`]: its
//! [`send_with_fds`](crate::unix::UnixDatagram::send_with_fds) and
//! [`recv_with_fds`](crate::unix::UnixDatagram::recv_with_fds).
//!
//! A descriptor sent is duplicated into the receiving process by the
//! kernel, attached to the bytes of the same `sendmsg`: the receiver gets
//! it with the first of those bytes. This is how a server hands its
//! listening socket to the process that replaces it (a restart without
//! refusing connections), or a broker gives a worker an accepted
//! connection.
//!
//! # Invariants
//!
//! * A send carries at least one byte: on a stream descriptors ride on
//!   bytes, and a send of none would send no descriptor. An empty `buf`
//!   is refused, on a datagram socket too (where an empty datagram could
//!   carry them), so that one rule holds for every socket; the error says
//!   which.
//! * A receive never loses bytes to report descriptors: the kernel's
//!   answer is delivered whole, bytes and descriptors, and if the kernel
//!   had to drop descriptors (its control message cut), the result says
//!   so ([`FdsReceived::truncated`]) beside the bytes. The control space
//!   holds [`MAX_FDS`] descriptors and credentials besides, so room is not
//!   what cuts it, short of a socket asked through libc for more
//!   ancillary data: a receiving process out of descriptors is
//!   (`RLIMIT_NOFILE`, `EMFILE`). Linux then installs those that fit under
//!   the limit (often none), closes the rest and sets `MSG_CTRUNC`; the
//!   receive succeeds with its bytes, and the descriptors dropped are lost
//!   for good (the peer's copies are not touched, but nothing tells it).
//! * Received descriptors are owned (`OwnedFd`) from the moment they are
//!   read out of the control message (and a pidfd the kernel installs
//!   for a socket asked through libc for `SO_PASSPIDFD` is closed, not
//!   leaked), and are close-on-exec
//!   (`MSG_CMSG_CLOEXEC`, or `FD_CLOEXEC` set at once where that flag does
//!   not exist).
//! * On a datagram socket the descriptors ride on one datagram. One longer
//!   than the buffer is an error (`InvalidData`), as for a plain receive;
//!   the descriptors that came with it are pushed all the same, owned, so
//!   none leaks.
//! * A receive that carries descriptors ends at the end of the bytes they
//!   came with, so a short receive does not mean the socket is drained:
//!   the next receive always asks the kernel. A plain receive
//!   ([`UnixStream::recv`], and `UnixIo`'s reads) stops there too, while
//!   the kernel closes the descriptors it gives no room for and says so
//!   (`MSG_CTRUNC`); it is a `recvmsg` for that flag ([`recv_plain`]), and
//!   a short receive with it set is not taken for a drained socket. (As a
//!   `recv`, it took it for one, and the next receive waited for an event
//!   that had already come: a peer that sent a descriptor hung the
//!   reader.)

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::task::{Poll, Waker};

use cellio_reactor::Registration;

use crate::op::{fast_path, future_and_drop, OpState, Side};
use crate::stream::StreamSocket;
use crate::unix::{UnixDatagram, UnixStream};

/// A socket descriptors can be passed over: every Unix stream type, and
/// [`UnixDatagram`]. Sealed: the futures below need its reactor slot.
pub trait FdSocket: AsRawFd + std::fmt::Debug + carrier::Carrier {}

impl<S: AsRawFd + std::fmt::Debug + carrier::Carrier> FdSocket for S {}

mod carrier {
    use super::*;

    /// What [`FdSocket`]'s futures need of a socket.
    pub trait Carrier {
        /// One message is one datagram (a longer one is an error).
        const DATAGRAM: bool;
        /// The socket's reactor slot.
        fn registration(&self) -> &Registration;
        /// Adds write interest: a send is about to park.
        fn fd_arm_writable(&self) -> io::Result<()>;
        /// A datagram receive's result, its `EAGAIN` taken for the end
        /// at the end of reading (`crate::datagram::or_end_of_reading`).
        fn or_end_of_reading(&self, got: io::Result<FdsReceived>) -> io::Result<FdsReceived> {
            got
        }
    }

    impl<S: StreamSocket> Carrier for S {
        const DATAGRAM: bool = false;

        #[inline(always)]
        fn registration(&self) -> &Registration {
            crate::stream::sealed::Sealed::registration(self)
        }

        fn fd_arm_writable(&self) -> io::Result<()> {
            crate::stream::sealed::Sealed::arm_writable(self)
        }
    }

    impl Carrier for UnixDatagram {
        const DATAGRAM: bool = true;

        #[inline(always)]
        fn registration(&self) -> &Registration {
            crate::datagram::sealed::Sealed::registration(self)
        }

        fn fd_arm_writable(&self) -> io::Result<()> {
            crate::datagram::sealed::Sealed::arm_writable(self)
        }

        #[inline(always)]
        fn or_end_of_reading(&self, got: io::Result<FdsReceived>) -> io::Result<FdsReceived> {
            crate::datagram::or_end_of_reading(self, got, || {
                Ok(FdsReceived {
                    bytes: 0,
                    fds: 0,
                    truncated: false,
                })
            })
        }
    }
}

/// Most descriptors one send may carry: Linux's `SCM_MAX_FD`.
pub const MAX_FDS: usize = 253;

/// Room for a control message of [`MAX_FDS`] descriptors and one of
/// credentials (`SCM_CREDENTIALS`, if the socket asked for them), 8-byte
/// aligned as `cmsghdr` requires.
#[repr(C, align(8))]
struct ControlSpace([u8; 1280]);

impl ControlSpace {
    fn new() -> Self {
        Self([0; 1280])
    }
}

/// What a [`UnixStream::recv_with_fds`] received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FdsReceived {
    /// Bytes received into the buffer (0: the peer closed its side, or the
    /// buffer was empty, in which case the receive still waited for
    /// something to arrive: see
    /// [`UnixStream::recv_with_fds`](crate::unix::UnixStream::recv_with_fds)).
    pub bytes: usize,
    /// Descriptors added to the vector.
    pub fds: usize,
    /// The kernel dropped descriptors that came with these bytes, and
    /// closed them: they are lost, and will not come with a later
    /// receive. Mostly because this process was out of descriptors
    /// (`EMFILE` at `RLIMIT_NOFILE`: Linux then delivers the bytes with
    /// only the descriptors that fit under the limit, often none); also if
    /// the control message was cut for want of room (see the module's
    /// invariants). A protocol that waits for a descriptor should check it
    /// and fail (or ask the peer again) rather than wait.
    pub truncated: bool,
}

/// Writes an `SCM_RIGHTS` control message holding `fds` into `space`;
/// returns its length (`CMSG_SPACE`). `fds` holds 1 to [`MAX_FDS`].
fn build_rights(space: &mut ControlSpace, fds: &[RawFd]) -> usize {
    assert!((1..=MAX_FDS).contains(&fds.len()));
    let data_len = std::mem::size_of_val(fds);
    // SAFETY: `CMSG_SPACE` and `CMSG_LEN` are arithmetic on their argument.
    let (space_len, cmsg_len) = unsafe {
        (
            libc::CMSG_SPACE(data_len as u32) as usize,
            libc::CMSG_LEN(data_len as u32) as usize,
        )
    };
    assert!(space_len <= space.0.len());
    // SAFETY: all-zero is a valid `msghdr` (integers and null pointers).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = space.0.as_mut_ptr().cast();
    msg.msg_controllen = space_len as _;
    // `msg` points at `space_len` bytes of `space` (asserted to fit),
    // 8-byte aligned, so `CMSG_FIRSTHDR` returns a header inside them, and
    // `CMSG_DATA` of it the `data_len` bytes after (within `space_len`,
    // which `CMSG_SPACE(data_len)` counts); they are written byte-wise
    // (`write_unaligned`), and `space` is borrowed mutably throughout.
    // SAFETY: so every write lands inside `space`.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = cmsg_len as _;
        let data = libc::CMSG_DATA(header).cast::<RawFd>();
        for (index, &fd) in fds.iter().enumerate() {
            data.add(index).write_unaligned(fd);
        }
    }
    space_len
}

/// Calls `each` with every descriptor of the `SCM_RIGHTS` messages among
/// the first `len` bytes of `space` (as the kernel wrote them).
fn each_right(space: &ControlSpace, len: usize, each: impl FnMut(RawFd)) {
    each_fd_of(space, len, libc::SCM_RIGHTS, each);
}

/// `SCM_PIDFD` (Linux 6.5; not in `libc` yet): with `SO_PASSPIDFD`, a
/// receive that passes control space gets the sender's pidfd, installed in
/// this process.
#[cfg(any(target_os = "linux", target_os = "android"))]
const SCM_PIDFD: libc::c_int = 4;

/// Calls `each` with every descriptor of the `SOL_SOCKET` messages of type
/// `cmsg_type` among the first `len` bytes of `space` (as the kernel wrote
/// them).
fn each_fd_of(
    space: &ControlSpace,
    len: usize,
    cmsg_type: libc::c_int,
    mut each: impl FnMut(RawFd),
) {
    // SAFETY: all-zero is a valid `msghdr`.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    let len = len.min(space.0.len());
    msg.msg_control = space.0.as_ptr().cast_mut().cast();
    msg.msg_controllen = len as _;
    // `msg` describes `len` bytes of `space`: libc's `CMSG_FIRSTHDR` and
    // `CMSG_NXTHDR` return headers that lie within them (null past them),
    // a header's `cmsg_len` bounds its data (checked against the space
    // left before reading), and nothing writes `space` while it is
    // borrowed here.
    // SAFETY: so every read stays inside `space`.
    unsafe {
        let end = space.0.as_ptr().add(len);
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            let data = libc::CMSG_DATA(header);
            let data_len = ((*header).cmsg_len as usize)
                .saturating_sub(libc::CMSG_LEN(0) as usize)
                .min(end.offset_from(data).max(0) as usize);
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == cmsg_type {
                let fds = data.cast::<RawFd>();
                for index in 0..data_len / size_of::<RawFd>() {
                    each(fds.add(index).read_unaligned());
                }
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
}

/// A `msghdr` for the one buffer `iovec` describes: no name, no control
/// space (the caller adds one).
#[inline(always)]
fn one_buffer(iovec: &mut libc::iovec) -> libc::msghdr {
    // SAFETY: all-zero is a valid `msghdr` (integers and null pointers).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iovec;
    msg.msg_iovlen = 1;
    msg
}

/// A plain receive on a Unix stream (no room for descriptors, which the
/// kernel then closes): the bytes, and whether the socket is drained. A
/// short receive is, unless the kernel cut ancillary data (`MSG_CTRUNC`):
/// then it stopped at the end of the bytes that came with it, and more may
/// be queued.
#[inline]
pub(crate) fn recv_plain<B: ?Sized + crate::sys::RecvBuf>(
    fd: RawFd,
    buf: &mut B,
) -> io::Result<(usize, bool)> {
    let mut iovec = libc::iovec {
        iov_base: buf.start().cast(),
        iov_len: buf.len(),
    };
    let mut msg = one_buffer(&mut iovec);
    // SAFETY: `msg` points at `iovec`, which points at `buf` (borrowed
    // mutably), with their lengths; no control space, no address.
    let n = unsafe { crate::sys::recv_msg(fd, &mut msg, 0) }?;
    let cut = msg.msg_flags & libc::MSG_CTRUNC != 0;
    Ok((n, n > 0 && n < buf.len() && !cut))
}

/// [`recv_plain`] into several buffers, filled in order: `bufs` (at most
/// `sys::MAX_SLICES` of them) hold `room` bytes in all. A receive of less
/// than `room` drained the socket, unless ancillary data was cut.
pub(crate) fn recv_plain_vectored(
    fd: RawFd,
    bufs: &mut [std::io::IoSliceMut<'_>],
    room: usize,
) -> io::Result<(usize, bool)> {
    // SAFETY: all-zero is a valid `msghdr` (integers and null pointers).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSliceMut` is ABI-compatible with `iovec` on Unix (std's promise).
    msg.msg_iov = bufs.as_mut_ptr().cast();
    msg.msg_iovlen = bufs.len() as _;
    // SAFETY: `msg` points at `bufs`, borrowed mutably, whose `iovec`s
    // each point at a buffer valid for writes of its length; no control
    // space, no address.
    let n = unsafe { crate::sys::recv_msg(fd, &mut msg, 0) }?;
    let cut = msg.msg_flags & libc::MSG_CTRUNC != 0;
    Ok((n, n > 0 && n < room && !cut))
}

/// One `sendmsg` of `buf` with `fds` attached.
fn send_with_fds_now(fd: RawFd, buf: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let mut space = ControlSpace::new();
    let mut iovec = libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    };
    let mut msg = one_buffer(&mut iovec);
    if !fds.is_empty() {
        let len = build_rights(&mut space, fds);
        msg.msg_control = space.0.as_mut_ptr().cast();
        msg.msg_controllen = len as _;
    }
    let flags = crate::sys::SEND_FLAGS;
    // SAFETY: `msg` points at `iovec` (which points at `buf`'s bytes) and,
    // with descriptors, at the control message built in `space`; all live
    // until the call returns, and the kernel only reads them.
    let sent = unsafe { libc::sendmsg(fd, &msg, flags) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// One `recvmsg` into `buf`; the descriptors that came are pushed onto
/// `fds`, owned. On a `datagram` socket, one longer than `buf` is an
/// error (after its descriptors are pushed).
fn recv_with_fds_now(
    fd: RawFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    datagram: bool,
) -> io::Result<FdsReceived> {
    let mut space = ControlSpace::new();
    let mut iovec = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg = one_buffer(&mut iovec);
    msg.msg_control = space.0.as_mut_ptr().cast();
    msg.msg_controllen = space.0.len() as _;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = libc::MSG_CMSG_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = 0;
    // SAFETY: `msg` points at `iovec` (which points at `buf`, borrowed
    // mutably) and at `space`, with their lengths; the kernel writes only
    // within them, during the call.
    let received = unsafe { crate::sys::recv_msg(fd, &mut msg, flags) }?;
    let before = fds.len();
    // `size_t` on glibc, `socklen_t` on musl.
    let control_len: usize = msg.msg_controllen as _;
    each_right(&space, control_len, |raw| {
        // SAFETY: the kernel has just installed `raw` in this process for
        // this receive, and nothing else knows it: it is ours to own.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        set_cloexec(&owned);
        fds.push(owned);
    });
    // A socket asked through libc for the sender's pidfd (`SO_PASSPIDFD`)
    // gets one installed with every message a control space is passed
    // for: not one the caller asked for here, so it is closed.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    each_fd_of(&space, control_len, SCM_PIDFD, |raw| {
        // SAFETY: the kernel has just installed `raw` in this process for
        // this receive, and nothing else knows it: it is ours to close.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    });
    if datagram && msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a datagram longer than the {}-byte receive buffer arrived: its first bytes \
                 are in the buffer, the rest was discarded; the {} descriptors that came with \
                 it were pushed",
                buf.len(),
                fds.len() - before
            ),
        ));
    }
    Ok(FdsReceived {
        bytes: received,
        fds: fds.len() - before,
        truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// Makes a received descriptor close-on-exec where `recvmsg` has no flag
/// for it. A failure (which `fcntl(F_SETFD)` on a valid descriptor does
/// not have) is logged: the descriptor and the bytes are delivered anyway.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_cloexec(fd: &OwnedFd) {
    // SAFETY: `fcntl(F_SETFD)` on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        let error = io::Error::last_os_error();
        tracing::warn!(%error, "cellio: a received descriptor is not close-on-exec");
    }
}

/// Future of [`UnixStream::send_with_fds`]: resolves to the number of
/// bytes sent (the descriptors went with them).
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct SendWithFds<'a, S: FdSocket = UnixStream> {
    stream: &'a S,
    buf: &'a [u8],
    fds: &'a [BorrowedFd<'a>],
    op: OpState,
}

impl<'a, S: FdSocket> SendWithFds<'a, S> {
    pub(crate) fn new(stream: &'a S, buf: &'a [u8], fds: &'a [BorrowedFd<'a>]) -> Self {
        Self {
            stream,
            buf,
            fds,
            op: OpState::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<usize>> {
        if self.buf.is_empty() || self.fds.len() > MAX_FDS {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                if self.buf.is_empty() && S::DATAGRAM {
                    "send_with_fds refuses an empty datagram (as it refuses an empty send on a \
                     stream, where descriptors ride on bytes): send at least one byte"
                } else if self.buf.is_empty() {
                    "descriptors ride on bytes: send_with_fds needs at least one byte to send"
                } else {
                    "send_with_fds: at most 253 descriptors (SCM_MAX_FD) go in one send"
                },
            )));
        }
        let (stream, buf, fds) = (self.stream, self.buf, self.fds);
        self.op.poll(Side::tx(stream.registration()), waker, || {
            let mut raw = [0 as RawFd; MAX_FDS];
            for (slot, fd) in raw.iter_mut().zip(fds) {
                *slot = fd.as_raw_fd();
            }
            match send_with_fds_now(stream.as_raw_fd(), buf, &raw[..fds.len()]) {
                Ok(n) => Ok((n, false)),
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        stream.fd_arm_writable()?;
                    }
                    Err(e)
                }
            }
        })
    }

    fast_path!(usize);
}

future_and_drop!(SendWithFds<S: FdSocket>, stream, usize, tx);

/// Future of [`UnixStream::recv_with_fds`]: resolves to what arrived.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct RecvWithFds<'a, S: FdSocket = UnixStream> {
    stream: &'a S,
    buf: &'a mut [u8],
    fds: &'a mut Vec<OwnedFd>,
    op: OpState,
}

impl<'a, S: FdSocket> RecvWithFds<'a, S> {
    pub(crate) fn new(stream: &'a S, buf: &'a mut [u8], fds: &'a mut Vec<OwnedFd>) -> Self {
        Self {
            stream,
            buf,
            fds,
            op: OpState::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<FdsReceived>> {
        let (stream, buf, fds) = (self.stream, &mut *self.buf, &mut *self.fds);
        self.op.poll(Side::rx(stream.registration()), waker, || {
            // Never called drained: a receive that carries descriptors
            // ends where their bytes end (module invariants), and a
            // datagram says nothing of the next.
            let got = recv_with_fds_now(stream.as_raw_fd(), buf, fds, S::DATAGRAM);
            stream.or_end_of_reading(got).map(|got| (got, false))
        })
    }

    fast_path!(FdsReceived);
}

future_and_drop!(RecvWithFds<S: FdSocket>, stream, FdsReceived, rx);

#[cfg(test)]
mod tests {
    use super::*;

    /// The control message built for a send is the one a receive reads
    /// back, whatever the count (Miri checks the pointer work).
    #[test]
    fn descriptors_survive_the_control_message_both_ways() {
        for count in [1, 2, 3, 7, MAX_FDS] {
            let fds: Vec<RawFd> = (0..count as RawFd).map(|i| 1000 + i).collect();
            let mut space = ControlSpace::new();
            let len = build_rights(&mut space, &fds);
            let mut read = Vec::new();
            each_right(&space, len, |fd| read.push(fd));
            assert_eq!(read, fds);
        }
    }

    /// A control length cut short (as the kernel reports with
    /// `MSG_CTRUNC`) yields only the descriptors wholly inside it.
    #[test]
    fn a_cut_control_message_yields_what_fits() {
        let fds: Vec<RawFd> = (0..8).collect();
        let mut space = ControlSpace::new();
        build_rights(&mut space, &fds);
        // SAFETY: arithmetic.
        let header = unsafe { libc::CMSG_LEN(0) } as usize;
        let mut read = Vec::new();
        each_right(&space, header + 3 * size_of::<RawFd>() + 2, |fd| {
            read.push(fd)
        });
        assert_eq!(read, [0, 1, 2]);
        read.clear();
        each_right(&space, 0, |fd| read.push(fd));
        assert!(read.is_empty());
    }
}
