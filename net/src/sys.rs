//! The syscalls on every message's path, made directly: a stream's two
//! (`recv`, `send`) and a datagram socket's (`recv_datagram`,
//! `recv_datagram_from`, `send_to`, and for batches `recv_many` and
//! `send_many`: `recvmmsg` and `sendmmsg`).
//!
//! glibc's `recv`/`send` (and `read`/`write`) are POSIX cancellation points:
//! in a multi-threaded process (every runtime with more than one worker, or
//! with a signal thread) each call brackets the syscall with
//! `__pthread_enable_asynccancel`/`__pthread_disable_asynccancel`, about 60
//! instructions per message that buy nothing, since Rust never uses
//! `pthread_cancel`. So on Linux these functions use
//! [`cellio_reactor::sys::syscall6`] (the `syscall` instruction itself on
//! x86-64) and read the error from its return value; elsewhere, libc.
//!
//! A stream's vectored send (`send_vectored`) is `sendmsg` through socket2
//! (libc's, cancellation-point brackets included: it is not on the echo
//! path).
//!
//! Sends always pass `MSG_NOSIGNAL` where it exists; Apple's systems lack
//! it, and there every stream socket has `SO_NOSIGPIPE` instead (mio and
//! socket2 set it on the sockets they create; [`no_sigpipe`] on the others,
//! accepted ones included), so a reset peer never raises `SIGPIPE`. Linux's
//! `sendfile(2)` ([`send_file`]) and `splice(2)` take no such flag: a call
//! that fails with `EPIPE` also raises `SIGPIPE`, so those calls go
//! through `cellio_reactor::sigpipe::around`, which keeps it blocked.
//!
//! A datagram receive reports whether the datagram was longer than the
//! buffer (the kernel discarded the rest). On Linux that is `recvfrom` with
//! `MSG_TRUNC`, which returns the datagram's whole length; elsewhere (and
//! with `--cfg cellio_portable_datagrams`) `recvmsg`'s `MSG_TRUNC` output
//! flag (through socket2), one `msghdr` more per call.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, RawFd};

use socket2::SockAddr;

use crate::raw_addr::RawSockAddr;

/// A size for `SO_RCVBUF` or `SO_SNDBUF`, whose value is a C `int`:
/// socket2 converts with `as`, which keeps only the low 32 bits of a size
/// of 4 GiB or more (asking for 4 GiB set the kernel's minimum buffer).
/// Beyond `i32::MAX` it is `i32::MAX`, which the kernel caps at
/// `net.core.rmem_max` / `wmem_max` like any other large size.
pub(crate) fn buffer_size_option(bytes: usize) -> usize {
    bytes.min(i32::MAX as usize)
}

#[cfg(not(target_vendor = "apple"))]
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(target_vendor = "apple")]
pub(crate) const SEND_FLAGS: libc::c_int = 0;

/// Sets `SO_NOSIGPIPE` on Apple's systems, which have no `MSG_NOSIGNAL`
/// (an accepted socket or a socket pair does not get it from mio); a
/// no-op elsewhere.
#[inline]
pub(crate) fn no_sigpipe(socket: &impl AsFd) -> io::Result<()> {
    #[cfg(target_vendor = "apple")]
    socket2::SockRef::from(socket).set_nosigpipe(true)?;
    #[cfg(not(target_vendor = "apple"))]
    let _ = socket;
    Ok(())
}

/// Memory a receive writes into: initialized bytes (`[u8]`), or memory
/// not initialized yet (`[MaybeUninit<u8>]`, a tokio `ReadBuf`'s unfilled
/// part), which the kernel fills with initialized bytes without it being
/// zeroed first. Only ever written by the kernel, never de-initialized.
pub trait RecvBuf {
    /// The first byte, valid for writes of [`len`](Self::len) bytes.
    fn start(&mut self) -> *mut u8;
    /// How many bytes it holds.
    fn len(&self) -> usize;
}

impl RecvBuf for [u8] {
    #[inline(always)]
    fn start(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }

    #[inline(always)]
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

impl RecvBuf for [std::mem::MaybeUninit<u8>] {
    #[inline(always)]
    fn start(&mut self) -> *mut u8 {
        self.as_mut_ptr().cast()
    }

    #[inline(always)]
    fn len(&self) -> usize {
        <[std::mem::MaybeUninit<u8>]>::len(self)
    }
}

/// `recv(fd, buf, 0)`.
#[inline]
pub(crate) fn recv<B: ?Sized + RecvBuf>(fd: RawFd, buf: &mut B) -> io::Result<usize> {
    recv_with(fd, buf, 0)
}

/// `read(fd, buf)`: for descriptors that are not sockets (pipes).
#[inline]
pub(crate) fn read<B: ?Sized + RecvBuf>(fd: RawFd, buf: &mut B) -> io::Result<usize> {
    let (start, len) = (buf.start(), buf.len());
    // SAFETY: `start` is valid for writes of `len` bytes for the whole call
    // (`RecvBuf`; the kernel writes initialized bytes).
    let n = unsafe { libc::read(fd, start.cast(), len) };
    // libc's convention on every system: `-1` and `errno`.
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `recv(fd, buf, MSG_PEEK)`: the bytes stay queued for the next receive.
#[inline]
pub(crate) fn peek<B: ?Sized + RecvBuf>(fd: RawFd, buf: &mut B) -> io::Result<usize> {
    recv_with(fd, buf, libc::MSG_PEEK)
}

#[inline(always)]
fn recv_with<B: ?Sized + RecvBuf>(fd: RawFd, buf: &mut B, flags: libc::c_int) -> io::Result<usize> {
    let (start, len) = (buf.start(), buf.len());
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: `start` is valid for writes of `len` bytes for the whole call
    // (`RecvBuf`; the kernel writes initialized bytes), no address asked.
    let n = unsafe { transfer(libc::SYS_recvfrom, fd, start, len, flags) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: as above.
    let n = unsafe { libc::recv(fd, start.cast(), len, flags) };
    check(n)
}

/// `send(fd, buf, MSG_NOSIGNAL)`.
#[inline]
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole
    // call (`sendto` with no destination, as `send` on a connected socket).
    let n = unsafe {
        transfer(
            libc::SYS_sendto,
            fd,
            buf.as_ptr().cast_mut(),
            buf.len(),
            SEND_FLAGS,
        )
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), SEND_FLAGS) };
    check(n)
}

/// The most slices one vectored send passes to the kernel: `IOV_MAX` on
/// Linux and the BSDs (`sendmsg` refuses more with `EMSGSIZE`). A longer
/// list is sent in more calls, as `std`'s `write_vectored` does.
pub(crate) const MAX_SLICES: usize = 1024;

/// The slices of `bufs` one vectored send passes: at most [`MAX_SLICES`].
/// A longer list loses its leading empty slices first (as `std`'s
/// `write_all_vectored` does), so that a list with data somewhere sends
/// some: `MAX_SLICES` empty ones would send 0, which callers read as "the
/// stream takes nothing more" (`WriteZero`). A list that fits is passed
/// as it is.
#[inline]
pub(crate) fn sendable_slices<'a, 'b>(bufs: &'a [IoSlice<'b>]) -> &'a [IoSlice<'b>] {
    if bufs.len() <= MAX_SLICES {
        return bufs;
    }
    more_slices_than_one_send(bufs)
}

/// [`sendable_slices`] of a list too long for one send, out of line.
#[cold]
#[inline(never)]
fn more_slices_than_one_send<'a, 'b>(bufs: &'a [IoSlice<'b>]) -> &'a [IoSlice<'b>] {
    let first = bufs
        .iter()
        .position(|buf| !buf.is_empty())
        .unwrap_or(bufs.len());
    let bufs = &bufs[first..];
    &bufs[..bufs.len().min(MAX_SLICES)]
}

/// The buffers of `bufs` one vectored receive fills: the first
/// [`MAX_SLICES`], as `std`'s `read_vectored` passes to `readv(2)` (and
/// tokio's `try_read_vectored` through it). The others are left alone.
#[inline]
pub(crate) fn receivable_slices<'a, 'b>(
    bufs: &'a mut [IoSliceMut<'b>],
) -> &'a mut [IoSliceMut<'b>] {
    let len = bufs.len().min(MAX_SLICES);
    &mut bufs[..len]
}

/// `sendmsg` of [`sendable_slices`]`(bufs)` with [`SEND_FLAGS`] (no
/// `SIGPIPE`): the bytes the kernel took, gathered from the slices in
/// order.
#[inline]
pub(crate) fn send_vectored(socket: &impl AsFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    socket2::SockRef::from(socket).send_vectored_with_flags(sendable_slices(bufs), SEND_FLAGS)
}

/// One datagram into `buf`: the bytes received, and whether the datagram
/// was longer than `buf` (its tail discarded).
#[inline]
pub(crate) fn recv_datagram(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        not(cellio_portable_datagrams)
    ))]
    {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the
        // whole call; `MSG_TRUNC` only changes the length returned.
        let n = unsafe {
            transfer(
                libc::SYS_recvfrom,
                fd,
                buf.as_mut_ptr(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        let whole = check(n)?;
        Ok((whole.min(buf.len()), whole > buf.len()))
    }
    #[cfg(not(all(
        any(target_os = "linux", target_os = "android"),
        not(cellio_portable_datagrams)
    )))]
    {
        let (n, truncated, _) = portable::recv_datagram(fd, buf, false, 0)?;
        Ok((n, truncated))
    }
}

/// One datagram into `buf` and its sender; as [`recv_datagram`].
#[inline]
pub(crate) fn recv_datagram_from(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, bool, SockAddr)> {
    recv_datagram_from_with(fd, buf, 0)
}

/// [`recv_datagram_from`] with `MSG_PEEK`: the datagram stays queued.
#[inline]
pub(crate) fn peek_datagram_from(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, bool, SockAddr)> {
    recv_datagram_from_with(fd, buf, libc::MSG_PEEK)
}

#[inline(always)]
fn recv_datagram_from_with(
    fd: RawFd,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, bool, SockAddr)> {
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        not(cellio_portable_datagrams)
    ))]
    {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes, and
        // `try_init` passes an address buffer and its length, valid for
        // the kernel's writes, for the whole call.
        let (whole, from) = unsafe {
            SockAddr::try_init(|storage, len| {
                check(cellio_reactor::sys::syscall6(
                    libc::SYS_recvfrom,
                    fd as usize,
                    buf.as_mut_ptr() as usize,
                    buf.len(),
                    (libc::MSG_TRUNC | flags) as usize,
                    storage as usize,
                    len as usize,
                ))
            })
        }?;
        Ok((whole.min(buf.len()), whole > buf.len(), from))
    }
    #[cfg(not(all(
        any(target_os = "linux", target_os = "android"),
        not(cellio_portable_datagrams)
    )))]
    {
        let (n, truncated, from) = portable::recv_datagram(fd, buf, true, flags)?;
        Ok((n, truncated, from.expect("asked for the sender")))
    }
}

/// `sendto(fd, buf, flags, to)`: one datagram.
#[inline]
pub(crate) fn send_to(fd: RawFd, buf: &[u8], to: &impl RawSockAddr) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes and `to` for
    // `to.len()` bytes for the whole call.
    let n = unsafe {
        cellio_reactor::sys::syscall6(
            libc::SYS_sendto,
            fd as usize,
            buf.as_ptr() as usize,
            buf.len(),
            SEND_FLAGS as usize,
            to.as_ptr() as usize,
            to.len() as usize,
        )
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: as above.
    let n = unsafe {
        libc::sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            SEND_FLAGS,
            to.as_ptr().cast(),
            to.len(),
        )
    };
    check(n)
}

/// `recvmmsg(fd, headers, headers.len(), 0, NULL)`: how many datagrams
/// arrived, each header's `msg_len`, `msg_namelen` and `msg_flags` set.
///
/// # Safety
///
/// Each header's name, `iovec`s and their buffers are valid for the
/// kernel's writes of the lengths they state, for the whole call.
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
))]
#[inline]
pub(crate) unsafe fn recv_many(fd: RawFd, headers: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: forwarded from the caller's contract.
    unsafe { many(libc::SYS_recvmmsg, fd, headers, 0) }
}

/// `sendmmsg(fd, headers, headers.len(), MSG_NOSIGNAL)`: how many datagrams
/// the kernel took (each whole), in order.
///
/// # Safety
///
/// Each header's name, `iovec`s and their buffers are valid for reads of
/// the lengths they state, for the whole call.
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
))]
#[inline]
pub(crate) unsafe fn send_many(fd: RawFd, headers: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: forwarded from the caller's contract.
    unsafe { many(libc::SYS_sendmmsg, fd, headers, SEND_FLAGS) }
}

/// Whether this kernel segments a UDP send (`UDP_SEGMENT`, Linux 4.18 and
/// later), asked of `fd` (a UDP socket) once per process: an older kernel
/// answers `ENOPROTOOPT`, and would send a segmented batch's message as
/// one long datagram.
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
))]
pub(crate) fn udp_segmentation(fd: RawFd) -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    const UNKNOWN: u8 = 0;
    const YES: u8 = 1;
    const NO: u8 = 2;
    static KNOWN: AtomicU8 = AtomicU8::new(UNKNOWN);
    match KNOWN.load(Ordering::Relaxed) {
        YES => return true,
        NO => return false,
        _ => {}
    }
    match udp_int_option(fd, libc::UDP_SEGMENT) {
        Ok(_) => {
            KNOWN.store(YES, Ordering::Relaxed);
            true
        }
        Err(e) => {
            // Only "no such option" is the kernel's answer; another error
            // (not a UDP socket, say) is this call's, and not remembered.
            if e.raw_os_error() == Some(libc::ENOPROTOOPT) {
                KNOWN.store(NO, Ordering::Relaxed);
            }
            false
        }
    }
}

/// `getsockopt(fd, SOL_UDP, name)` for an integer option.
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
))]
fn udp_int_option(fd: RawFd, name: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: the UDP options read here are C ints.
    unsafe { socket_option(fd, libc::SOL_UDP, name, 0) }
}

/// `getsockopt(fd, level, name)` for an option whose value is a `T`,
/// starting from `value` (what a shorter answer leaves in place).
///
/// # Safety
///
/// `T` must be the plain C type (an integer, or a struct of integers) the
/// kernel writes for this option, so that whatever bytes it writes make a
/// valid `T`.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios"
))]
pub(crate) unsafe fn socket_option<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    mut value: T,
) -> io::Result<T> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes for the whole call,
    // and `len` holds `value`'s size, which bounds what the kernel writes;
    // the caller promises those bytes make a valid `T`.
    let answer = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    if answer == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `setsockopt(fd, SOL_UDP, UDP_GRO, 1)`.
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
))]
pub(crate) fn enable_udp_gro(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is an int, valid for reads of the length passed.
    let answer = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_GRO,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if answer == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `fd` has `UDP_GRO` on; false where the kernel has no such
/// option (`ENOPROTOOPT`: it cannot merge either).
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
))]
pub(crate) fn udp_gro(fd: RawFd) -> io::Result<bool> {
    match udp_int_option(fd, libc::UDP_GRO) {
        Ok(value) => Ok(value != 0),
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `recvmmsg`/`sendmmsg` (syscall `nr`) over `headers`, with no timeout.
///
/// # Safety
///
/// As [`recv_many`] for `recvmmsg`, [`send_many`] for `sendmmsg`.
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
))]
#[inline(always)]
unsafe fn many(
    nr: libc::c_long,
    fd: RawFd,
    headers: &mut [libc::mmsghdr],
    flags: libc::c_int,
) -> io::Result<usize> {
    // SAFETY: the caller's contract covers what the headers point at;
    // `headers` itself is valid for the kernel's writes of its results
    // (`msg_len`, and for a receive `msg_namelen` and `msg_flags`).
    check(unsafe {
        cellio_reactor::sys::syscall6(
            nr,
            fd as usize,
            headers.as_mut_ptr() as usize,
            headers.len(),
            flags as usize,
            0,
            0,
        )
    })
}

/// The most one `sendfile` passes on Linux (the kernel's own cap).
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_sendfile)
))]
const MAX_SENDFILE: usize = 0x7fff_f000;

/// Up to `len` bytes of `file` from `offset` to the stream `socket`: the
/// bytes sent, 0 at or past the file's end. On Linux one `sendfile(2)` (the
/// kernel copies from the page cache, nothing passes through user space).
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_sendfile)
))]
pub(crate) fn send_file(socket: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
    let mut position = file_offset(offset)?;
    let asked = len;
    let len = within_file_offsets(position, len).min(MAX_SENDFILE);
    if len == 0 && asked != 0 {
        // At `i64::MAX`: past every regular file's end; what is not one
        // is `sendfile(2)`'s error for it (`past_the_end`'s `fstat`).
        return past_the_end(file, offset, io::Error::from_raw_os_error(libc::EINVAL));
    }
    // sendfile(2) takes no MSG_NOSIGNAL: into a socket that can no longer
    // send it raises SIGPIPE (`cellio_reactor::sigpipe`).
    let sent = cellio_reactor::sigpipe::around(|| {
        // SAFETY: `position` is valid for the kernel's read and write of a
        // 64-bit offset for the whole call; the descriptors are the caller's.
        check(unsafe {
            cellio_reactor::sys::syscall6(
                libc::SYS_sendfile,
                socket as usize,
                file as usize,
                std::ptr::from_mut(&mut position) as usize,
                len,
                0,
                0,
            )
        })
    });
    match sent {
        Err(e) if e.raw_os_error() == Some(libc::EOVERFLOW) => past_the_end(file, offset, e),
        sent => sent,
    }
}

/// `len` cut so that `offset + len` is a file offset (at most
/// `i64::MAX`): past it, `sendfile(2)` and `pread(2)` refuse the whole call
/// with `EINVAL`, although the bytes up to the file's end are there to
/// send. 0 only at `i64::MAX`, where no file has a byte.
fn within_file_offsets(offset: i64, len: usize) -> usize {
    // `offset` is not negative (`file_offset`): no overflow.
    let room = (i64::MAX - offset) as u64;
    (len as u64).min(room) as usize
}

/// A file send whose `sendfile(2)` or `pread(2)` failed with `EOVERFLOW`,
/// or that would start at `i64::MAX` (no call made; `error` is then
/// `EINVAL`, `sendfile(2)`'s answer for what it cannot read):
/// 0 if `offset` is at or past the end of `file`, a regular file, else
/// `error`. Past the end, Linux's `sendfile` says 0 only up to the file
/// system's largest file size (ext4: 16 TiB): beyond it `EOVERFLOW`, which
/// the docs promise as 0 too. Only on that error: one `fstat`. (`EINVAL`
/// is never the end: the length is cut so that `offset + len` cannot
/// overflow, `within_file_offsets`, and otherwise it is the call's refusal,
/// as for a procfs file, whose size says 0 whatever it holds.)
#[cold]
#[inline(never)]
fn past_the_end(file: RawFd, offset: u64, error: io::Error) -> io::Result<usize> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fstat` writes one `stat` through the pointer, which points
    // at room for one; a bad descriptor is an error, not undefined
    // behaviour.
    if unsafe { libc::fstat(file, stat.as_mut_ptr()) } != 0 {
        return Err(error);
    }
    // SAFETY: `fstat` succeeded, so it filled the whole `stat`.
    let stat = unsafe { stat.assume_init() };
    let regular = stat.st_mode & libc::S_IFMT == libc::S_IFREG;
    match u64::try_from(stat.st_size) {
        Ok(size) if regular && offset >= size => Ok(0),
        _ => Err(error),
    }
}

/// Where there is no Linux `sendfile` (and with `--cfg
/// cellio_portable_sendfile`, which CI uses to test this path): a
/// positioned read of up to 16 KiB into a buffer on the stack, then a
/// send. Bytes read and not taken by the send are read again next time.
#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_sendfile)
)))]
pub(crate) fn send_file(socket: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
    let offset = file_offset(offset)?;
    let mut buf = [0u8; 16 * 1024];
    let want = within_file_offsets(offset, len).min(buf.len());
    // SAFETY: `buf` is valid for writes of `want` bytes for the whole call.
    let read = unsafe { libc::pread(file, buf.as_mut_ptr().cast(), want, offset as libc::off_t) };
    if read < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EOVERFLOW) {
            return past_the_end(file, offset as u64, error);
        }
        return Err(error);
    }
    match read as usize {
        0 => Ok(0),
        read => send(socket, &buf[..read]),
    }
}

/// `offset` as the kernel's signed file offset.
fn file_offset(offset: u64) -> io::Result<i64> {
    i64::try_from(offset).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a file offset beyond i64::MAX bytes",
        )
    })
}

/// The address in the first `len` bytes of `storage` (a batch's sender,
/// as the kernel wrote it), copied into a `SockAddr`. `len` 0 (a Unix
/// sender that never bound an address) gives an empty one.
pub(crate) fn sock_addr_of(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> SockAddr {
    let len = len.min(std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t);
    // `storage` holds an address of family `ss_family` in its first `len`
    // bytes (the kernel wrote it, or `store_sock_addr` copied a
    // `SockAddr`'s).
    // SAFETY: so the same bytes in the zeroed storage `try_init` passes
    // are the same address, of a family and length that match.
    let copied = unsafe {
        SockAddr::try_init(|into, into_len| {
            std::ptr::copy_nonoverlapping(
                std::ptr::from_ref(storage).cast::<u8>(),
                into.cast::<u8>(),
                len as usize,
            );
            *into_len = len;
            Ok(())
        })
    };
    match copied {
        Ok(((), addr)) => addr,
        Err(_) => unreachable!("the copy does not fail"),
    }
}

/// Copies `addr` into `storage`; returns its length.
#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
)))]
pub(crate) fn store_sock_addr(
    addr: &SockAddr,
    storage: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    let len = addr
        .len()
        .min(std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t);
    // SAFETY: `addr` holds `addr.len()` bytes of address, no more than a
    // `sockaddr_storage`, which `storage` is.
    unsafe {
        std::ptr::copy_nonoverlapping(
            addr.as_ptr().cast::<u8>(),
            std::ptr::from_mut(storage).cast::<u8>(),
            len as usize,
        );
    }
    len
}

/// The IP socket address in `storage` (its first `len` bytes, as the
/// kernel wrote them), read in place; `None` for any other family.
pub(crate) fn ip_addr_of(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<std::net::SocketAddr> {
    use std::mem::size_of;
    use std::net::{SocketAddrV4, SocketAddrV6};
    let (family, len) = (libc::c_int::from(storage.ss_family), len as usize);
    if family == libc::AF_INET && len >= size_of::<libc::sockaddr_in>() {
        // SAFETY: family `AF_INET` and the length say a `sockaddr_in` is
        // there; a `sockaddr_storage` is large and aligned enough for one.
        let v4 = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
        let ip = u32::from_be(v4.sin_addr.s_addr);
        return Some(SocketAddrV4::new(ip.into(), u16::from_be(v4.sin_port)).into());
    }
    if family == libc::AF_INET6 && len >= size_of::<libc::sockaddr_in6>() {
        // SAFETY: as above, for `AF_INET6` and a `sockaddr_in6`.
        let v6 = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
        let port = u16::from_be(v6.sin6_port);
        let ip = v6.sin6_addr.s6_addr.into();
        return Some(SocketAddrV6::new(ip, port, v6.sin6_flowinfo, v6.sin6_scope_id).into());
    }
    None
}

/// Where `recvfrom` cannot report a datagram's whole length: `recvmsg`
/// and its `MSG_TRUNC` output flag, through socket2. Also on Linux with
/// `--cfg cellio_portable_datagrams`, which CI uses to test this path.
#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
)))]
mod portable {
    use std::io;
    use std::mem::MaybeUninit;
    use std::os::fd::{BorrowedFd, RawFd};

    use socket2::{MaybeUninitSlice, SockAddr, SockRef};

    pub(super) fn recv_datagram(
        fd: RawFd,
        buf: &mut [u8],
        with_sender: bool,
        flags: libc::c_int,
    ) -> io::Result<(usize, bool, Option<SockAddr>)> {
        // SAFETY: `fd` is the caller's open socket for this whole call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = SockRef::from(&fd);
        let mut bufs = [MaybeUninitSlice::new(as_uninit(buf))];
        if with_sender {
            let (n, out, from) = sock.recv_from_vectored_with_flags(&mut bufs, flags)?;
            Ok((n, out.is_truncated(), Some(from)))
        } else {
            let (n, out) = sock.recv_vectored_with_flags(&mut bufs, flags)?;
            Ok((n, out.is_truncated(), None))
        }
    }

    /// `buf` as bytes the kernel may write.
    fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
        // The only writer through the result is `recvmsg` above (socket2's
        // `recv_vectored` and `recv_from_vectored`), which stores only the
        // bytes the kernel received; socket2 documents that promise for
        // initialised buffers.
        // SAFETY: same memory, length, size and alignment; only initialised
        // bytes are written through it, so `buf` stays initialised.
        unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
    }
}

/// `recvmsg(fd, msg, flags)`: on Linux a raw syscall, as [`recv`] is (no
/// libc wrapper frames between the worker and the kernel; see `transfer`).
///
/// # Safety
///
/// Every pointer in `msg` (its `iovec`s and their buffers, the name and
/// control space, if any) is valid for writes of the length beside it for
/// the whole call.
#[inline(always)]
pub(crate) unsafe fn recv_msg(
    fd: RawFd,
    msg: &mut libc::msghdr,
    flags: libc::c_int,
) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: the caller's contract covers what `msg` points at; `msg`
    // itself is borrowed mutably for the call.
    let n = unsafe {
        cellio_reactor::sys::syscall6(
            libc::SYS_recvmsg,
            fd as usize,
            std::ptr::from_mut(msg) as usize,
            flags as usize,
            0,
            0,
            0,
        )
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: as above.
    let n = unsafe { libc::recvmsg(fd, msg, flags) };
    check(n)
}

/// `recvfrom`/`sendto(fd, buf, len, flags, NULL, 0)` as a raw syscall.
///
/// # Safety
///
/// `buf` is valid for `len` bytes of whatever access syscall `nr` makes
/// (writes for `recvfrom`, reads for `sendto`) for the whole call.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline(always)]
unsafe fn transfer(
    nr: libc::c_long,
    fd: RawFd,
    buf: *mut u8,
    len: usize,
    flags: libc::c_int,
) -> isize {
    // SAFETY: forwarded from the caller's contract; the two null address
    // arguments ask for no peer address.
    unsafe {
        cellio_reactor::sys::syscall6(nr, fd as usize, buf as usize, len, flags as usize, 0, 0)
    }
}

/// Linux convention: the raw syscall returns `-errno` on failure.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
fn check(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(os_error(-n))
    } else {
        Ok(n as usize)
    }
}

/// libc convention: `-1` and `errno`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[inline]
fn check(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[cold]
fn os_error(errno: isize) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}

/// Whether `fd` is ready for `events` (`POLLIN`, `POLLOUT`) now, by
/// `poll(2)` with no wait: `Ok(())` if it is (or has an error or a hang-up
/// to report, which the caller's I/O then meets), `WouldBlock` if not.
pub(crate) fn ready_now(fd: RawFd, events: libc::c_short) -> io::Result<()> {
    let mut entry = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: `entry` is one valid `pollfd`, borrowed mutably for the
    // call; a zero timeout returns at once.
    let n = unsafe { libc::poll(&mut entry, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if entry.revents & libc::POLLNVAL != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    if entry.revents & (events | libc::POLLERR | libc::POLLHUP) != 0 {
        Ok(())
    } else {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// Whether `fd`'s receiving side is shut down (`POLLRDHUP`, by `poll(2)`
/// with no wait).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn reading_shut_down(fd: RawFd) -> bool {
    let mut entry = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `entry` is one valid `pollfd`, borrowed mutably for the
    // call; a zero timeout returns at once.
    let n = unsafe { libc::poll(&mut entry, 1, 0) };
    n > 0 && entry.revents & libc::POLLRDHUP != 0
}

/// Sets or clears `O_NONBLOCK` on `fd` (a pipe end handed over by
/// `std::process`, or handed back).
pub(crate) fn set_nonblocking(fd: RawFd, nonblocking: bool) -> io::Result<()> {
    // SAFETY: `F_GETFL` and `F_SETFL` read and write the descriptor's
    // flags and touch no memory; a bad descriptor is an error.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if nonblocking {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A descriptor that becomes readable when process `pid` (a child not yet
/// reaped, so the number is still its own) exits: `pidfd_open`, Linux 5.3
/// and later. `ENOSYS` on older kernels, `EPERM` where a seccomp filter
/// refuses it.
#[cfg(target_os = "linux")]
pub(crate) fn pidfd_open(pid: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `pidfd_open` takes a pid and flags (none) and touches no
    // memory of ours; it returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is new (close-on-exec, as pidfds always are)
    // and owned by nothing else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use socket2::SockAddr;

    use super::*;

    /// `addr` as the kernel would write it into a batch's slot.
    fn stored(addr: &SockAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: all-zero is a valid `sockaddr_storage`.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = addr.len();
        // SAFETY: `addr` holds `len` bytes of address, no more than the
        // storage's size.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr.as_ptr().cast::<u8>(),
                std::ptr::from_mut(&mut storage).cast::<u8>(),
                len as usize,
            );
        }
        (storage, len)
    }

    #[test]
    fn ip_addresses_are_read_in_place() {
        for text in ["192.0.2.7:5300", "[2001:db8::1]:443", "[fe80::1%3]:9"] {
            let addr: SocketAddr = text.parse().unwrap();
            let (storage, len) = stored(&SockAddr::from(addr));
            assert_eq!(ip_addr_of(&storage, len), Some(addr), "{text}");
            assert_eq!(
                sock_addr_of(&storage, len).as_socket(),
                Some(addr),
                "{text}"
            );
        }
    }

    #[test]
    fn other_families_and_short_lengths_are_not_ip_addresses() {
        let unix = SockAddr::unix("/tmp/cellio-sys-test").unwrap();
        let (storage, len) = stored(&unix);
        assert_eq!(ip_addr_of(&storage, len), None);
        assert_eq!(
            sock_addr_of(&storage, len).as_pathname(),
            Some(std::path::Path::new("/tmp/cellio-sys-test"))
        );
        let v4 = SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 80)));
        let (storage, len) = stored(&v4);
        assert_eq!(ip_addr_of(&storage, len - 1), None);
        assert_eq!(sock_addr_of(&storage, 0).len(), 0);
    }
}
