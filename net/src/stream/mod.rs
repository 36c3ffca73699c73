//! What every byte stream shares, whatever its address family: the
//! operation futures ([`Recv`], [`Send`], [`SendAll`], [`RecvExact`]), the
//! poll-method wrapper [`StreamIo`] and its halves ([`RecvHalf`],
//! [`SendHalf`]), written once and generic over the sealed
//! [`StreamSocket`] trait, which [`TcpStream`](crate::TcpStream) and
//! [`UnixStream`](crate::unix::UnixStream) implement.
//!
//! Each family's module names them for its own stream
//! ([`tcp::Recv`](crate::tcp::Recv) is `Recv<'a, TcpStream>`,
//! [`TcpIo`](crate::TcpIo) is `StreamIo<TcpStream>`, and
//! [`unix::Recv`](crate::unix::Recv), [`UnixIo`](crate::unix::UnixIo)
//! likewise), so code rarely needs to name these types directly.
//!
//! # Invariants
//!
//! * A stream socket is a non-blocking, connected `SOCK_STREAM` descriptor
//!   registered with one reactor for reading, with write interest added
//!   only when a send first has to wait (`arm_writable`): the same
//!   `recv(2)`/`send(2)` calls and the same cell protocol (`crate::op`,
//!   `crate::held`) serve every family.
//! * Generic code is monomorphised per stream type: a TCP echo runs the
//!   same instructions as before Unix streams existed.

mod connect;
mod io;
mod io_halves;
mod io_owned_halves;
pub(crate) mod io_traits;
mod ops;
#[cfg(target_os = "linux")]
mod splice;

use std::io as std_io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use cellio_reactor::Registration;

pub(crate) use connect::wait_connected;
pub use io::StreamIo;
pub use io_halves::{RecvHalf, SendHalf};
pub use io_owned_halves::{OwnedRecvHalf, OwnedSendHalf, ReuniteError};
pub(crate) use ops::recv_whole;
pub(crate) use ops::try_send_file;
pub(crate) use ops::{peek_attempt, recv_attempt, send_attempt, send_vectored_attempt};
pub use ops::{Peek, Recv, RecvExact, Send, SendAll, SendFile, SendVectored};
pub(crate) use sealed::TakenError;
#[cfg(target_os = "linux")]
pub use splice::{splice_bidirectional, splice_bidirectional_auto, SpliceBidirectional};

/// The `try_` methods of a stream type (`TcpStream`, `UnixStream`) with a
/// `registration` field, written once: each is one attempt through
/// `ready::try_now`, which records an empty or full socket for
/// `readable()` and `writable()`.
macro_rules! try_methods {
    ($setup:literal) => {
        /// Receives without waiting: `WouldBlock` if nothing is buffered.
        pub fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
            $crate::ready::try_now(self.registration.rx(), || {
                $crate::stream::recv_attempt(self, buf)
            })
        }

        /// [`peek`](Self::peek) without waiting: `WouldBlock` if nothing is
        /// buffered.
        pub fn try_peek(&self, buf: &mut [u8]) -> std::io::Result<usize> {
            $crate::ready::try_now(self.registration.rx(), || {
                $crate::stream::peek_attempt(self, buf)
            })
        }

        /// Sends without waiting: `WouldBlock` if the send buffer is full.
        pub fn try_send(&self, buf: &[u8]) -> std::io::Result<usize> {
            $crate::ready::try_now(self.registration.tx(), || {
                $crate::stream::send_attempt(self, buf)
            })
        }

        /// [`send_vectored`](Self::send_vectored) without waiting:
        /// `WouldBlock` if the send buffer is full.
        pub fn try_send_vectored(&self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
            $crate::ready::try_now(self.registration.tx(), || {
                $crate::stream::send_vectored_attempt(self, bufs)
            })
        }

        $crate::ready::readiness_methods!("try_recv", "try_send", $setup);
    };
}

pub(crate) use try_methods;

/// The file-sending methods of a stream type (`TcpStream`, `UnixStream`),
/// written once.
macro_rules! send_file_methods {
    () => {
        /// Sends up to `len` bytes of `file`, from byte `offset` of it, and
        /// returns how many went (0 when `offset` is at or past the file's
        /// end, however far; at once when `len` is 0; an `offset` beyond
        /// `i64::MAX`, which no file offset reaches, is `InvalidInput`);
        /// like [`send`](Self::send), it may
        /// send fewer than asked. On Linux this is `sendfile(2)`: the
        /// kernel copies from the page cache to the socket and the bytes
        /// never pass through user space (elsewhere a positioned read into
        /// a 16 KiB buffer, then a send). The file's own position is not
        /// used or moved. Waits while the socket's send buffer is full;
        /// cancel-safe (a dropped call has sent nothing). A file that
        /// `sendfile(2)` cannot read (procfs' and sysfs', whose size says
        /// 0 whatever they hold) is its error, `EINVAL`, not an end: read
        /// such a file and [`send`](Self::send) its bytes.
        ///
        /// Like `send`, it fails with `BrokenPipe` and raises no `SIGPIPE`
        /// when the connection can no longer send (reset, or shut down for
        /// writing; a Unix stream's peer closed): `sendfile(2)` takes no
        /// `MSG_NOSIGNAL`, so the signal is kept blocked around it (the
        /// guide, "Errors you can get").
        ///
        /// Reading a file can block the thread (a cold page cache, a slow
        /// disk): for files that may not be cached, prefer
        /// `spawn_blocking`, or accept the wait.
        ///
        /// # Examples
        ///
        /// The whole of a file:
        ///
        /// ```no_run
        /// # async fn f(stream: cellio_net::TcpStream) -> std::io::Result<()> {
        /// let file = std::fs::File::open("index.html")?;
        /// let len = file.metadata()?.len();
        /// let mut sent = 0;
        /// while sent < len {
        ///     match stream.send_file(&file, sent, (len - sent) as usize).await? {
        ///         0 => return Err(std::io::ErrorKind::UnexpectedEof.into()), // it shrank
        ///         n => sent += n as u64,
        ///     }
        /// }
        /// # Ok(()) }
        /// ```
        pub fn send_file<'a>(
            &'a self,
            file: &'a impl std::os::fd::AsFd,
            offset: u64,
            len: usize,
        ) -> $crate::stream::SendFile<'a, Self> {
            $crate::stream::SendFile::new(self, file.as_fd(), offset, len)
        }

        /// [`send_file`](Self::send_file) without waiting: `WouldBlock` if
        /// the send buffer is full.
        pub fn try_send_file(
            &self,
            file: &impl std::os::fd::AsFd,
            offset: u64,
            len: usize,
        ) -> std::io::Result<usize> {
            $crate::stream::try_send_file(self, file.as_fd(), offset, len)
        }
    };
}

pub(crate) use send_file_methods;

/// A connected byte stream that cellio's stream futures and [`StreamIo`]
/// run on: [`TcpStream`](crate::TcpStream) and
/// [`UnixStream`](crate::unix::UnixStream).
///
/// Sealed: it names what the operations need from a stream (its
/// descriptor, its registration, how to add write interest), which only
/// this crate's streams can provide.
pub trait StreamSocket: AsFd + AsRawFd + std::fmt::Debug + Unpin + sealed::Sealed {}

/// What a stream's send sends from: a byte slice (`[u8]`, for
/// [`Send`]) or a list of slices (`[IoSlice]`, for [`SendVectored`]).
///
/// Sealed: its one method makes the send's syscall.
pub trait Outgoing: sealed::SealedOutgoing + std::fmt::Debug {}

impl Outgoing for [u8] {}
impl Outgoing for [std_io::IoSlice<'_>] {}

pub(crate) mod sealed {
    use super::*;

    /// The error cellio took out of a stream's socket (`SO_ERROR`, by a
    /// shutdown after `ENOTCONN` or by the splice's watch: [`take_error`]) and
    /// that the socket's receive would have reported: kept here, shared by
    /// everything that uses the stream (its halves, `TcpIo`, the joins), until
    /// a receive reaches the end of the stream, or the stream's public
    /// `take_error` takes it ([`take_pending_error`]: it is the socket's
    /// pending error, moved here).
    ///
    /// # Invariants
    ///
    /// * Linux clears `SO_ERROR` when it is read, and a receive with nothing
    ///   queued then says a clean end of stream (0) where it would have said
    ///   the error: so every end of stream a receive meets (a `recv`, a read,
    ///   a splice in) asks this first, and reports a kept error instead, once
    ///   (as the kernel reports one), then 0. A peek reports it and keeps it.
    /// * It is asked only when a receive returns 0, the cold end of a stream:
    ///   receives that deliver bytes never touch it.
    /// * 0 is "none"; otherwise an errno.
    /// * A Unix stream's shutdown never says `ENOTCONN`, so only the
    ///   splice's watch takes a Unix stream's error (and its join reports
    ///   it); `recv_with_fds` does not ask.
    /// * It lives in the stream: `into_std` gives the
    ///   descriptor back without it, and a `std` read there says the
    ///   clean end Linux says.
    #[derive(Debug, Default)]
    pub struct TakenError(AtomicI32);

    impl TakenError {
        /// Keeps `code` (an errno) for the receive side.
        pub(super) fn keep(&self, code: i32) {
            self.0.store(code, Ordering::Release);
        }

        /// The kept error, now given to a receive: the next end of stream is
        /// a plain one.
        #[cold]
        #[inline(never)]
        pub fn report(&self) -> std_io::Result<()> {
            match self.0.swap(0, Ordering::AcqRel) {
                0 => Ok(()),
                code => Err(std_io::Error::from_raw_os_error(code)),
            }
        }

        /// The kept error, left for the next receive (for a peek).
        #[cold]
        #[inline(never)]
        pub fn peek(&self) -> std_io::Result<()> {
            match self.0.load(Ordering::Acquire) {
                0 => Ok(()),
                code => Err(std_io::Error::from_raw_os_error(code)),
            }
        }
    }

    /// The method of [`Outgoing`].
    pub trait SealedOutgoing {
        /// `true` if there is nothing to send (a send then completes with
        /// 0 at once, where a poll method is concerned).
        fn is_empty(&self) -> bool;

        /// One send of this to `stream`: the bytes taken, and whether the
        /// socket is now full (`ops::send_attempt`).
        fn attempt<S: StreamSocket>(&self, stream: &S) -> std_io::Result<(usize, bool)>;
    }

    impl SealedOutgoing for [u8] {
        #[inline(always)]
        fn is_empty(&self) -> bool {
            self.is_empty()
        }

        #[inline(always)]
        fn attempt<S: StreamSocket>(&self, stream: &S) -> std_io::Result<(usize, bool)> {
            super::ops::send_attempt(stream, self)
        }
    }

    impl SealedOutgoing for [std_io::IoSlice<'_>] {
        #[inline]
        fn is_empty(&self) -> bool {
            self.iter().all(|buf| buf.is_empty())
        }

        #[inline]
        fn attempt<S: StreamSocket>(&self, stream: &S) -> std_io::Result<(usize, bool)> {
            super::ops::send_vectored_attempt(stream, self)
        }
    }

    /// The methods of [`StreamSocket`], out of the
    /// public API's reach.
    pub trait Sealed {
        /// The socket's reactor slot: its two cells and their counters.
        fn registration(&self) -> &Registration;

        /// Adds write interest, if not there yet: a send found the socket
        /// full and is about to park on the send cell.
        fn arm_writable(&self) -> std_io::Result<()>;

        /// `shutdown(2)`, as is: the joins and the streams' `poll_close`
        /// and `poll_shutdown` call it through
        /// [`shut_down`](Self::shut_down).
        fn shutdown_socket(&self, how: Shutdown) -> std_io::Result<()>;

        /// The error [`take_error`] took out of the socket for the receive
        /// side to report at its end of stream.
        fn taken_error(&self) -> &TakenError;

        /// `shutdown(2)` as the joins (`copy_bidirectional` through
        /// `poll_close`, `splice_bidirectional`) and the streams'
        /// `poll_close` and `poll_shutdown` make it. Linux says `ENOTCONN`
        /// to the shutdown of a TCP connection its peer reset (and to one
        /// of a socket that never connected, which a stream here never is;
        /// never to a Unix stream's, whose shutdown succeeds whatever the
        /// peer did); then ([`after_not_connected`]) the pending error is
        /// taken from `SO_ERROR` ([`take_error`], which keeps it for the
        /// receive side: see [`TakenError`]), and:
        ///
        /// * if bytes that arrived before the reset are still queued for
        ///   reading, the shutdown counts as done: the receives deliver
        ///   them, then report the reset (reported here, it ended a proxy's
        ///   join before the other direction had read the upstream's last
        ///   bytes) — also when the peer's end (FIN) came before its reset,
        ///   where Linux's own receive would say a clean end of stream;
        /// * else the reset (as `ConnectionReset`) is the error: a writer
        ///   that never reads, or a join whose other direction has already
        ///   read its end, would not hear of it otherwise, and the bytes
        ///   sent were thrown away (the receive side, if it reads again,
        ///   reports it too);
        /// * else (no error pending: it was taken already, by a receive,
        ///   the splice's watch or an earlier shutdown) the shutdown counts
        ///   as done, as with tokio's streams (tokio-rs/tokio#4665).
        fn shut_down(&self, how: Shutdown) -> std_io::Result<()>
        where
            Self: AsFd + Sized,
        {
            match self.shutdown_socket(how) {
                Err(e) if e.kind() == std_io::ErrorKind::NotConnected => {
                    after_not_connected(self, e)
                }
                result => result,
            }
        }

        /// One receive into `buf`: the bytes, and whether the socket is
        /// now known to be drained (`ops::recv_attempt`).
        fn recv_once<B: ?Sized + crate::sys::RecvBuf>(
            &self,
            buf: &mut B,
        ) -> std_io::Result<(usize, bool)>;
    }
}

/// [`shut_down`](sealed::Sealed::shut_down) after `ENOTCONN` (`not_connected`)
/// on `stream`: takes the pending error ([`take_error`], kept for the
/// receive side); `Ok` while bytes wait to be read (the receives report the
/// error after them) or when no error is pending, else the error. If the
/// queue cannot be asked, the `ENOTCONN` itself.
#[cold]
#[inline(never)]
fn after_not_connected<S: sealed::Sealed + AsFd>(
    stream: &S,
    not_connected: std_io::Error,
) -> std_io::Result<()> {
    let mut queued: libc::c_int = 0;
    // SAFETY: `FIONREAD` (`SIOCINQ`) writes one `c_int` through the
    // pointer, which points at one; the descriptor is borrowed, so open.
    let asked = unsafe { libc::ioctl(stream.as_fd().as_raw_fd(), libc::FIONREAD, &mut queued) };
    if asked != 0 {
        return Err(not_connected);
    }
    // Taken also while bytes are queued: after a FIN (the reset then came
    // in `CLOSE_WAIT`) Linux's receive would say a clean end after them
    // and leave the error unread; kept, it is their end's error.
    match take_error(stream)? {
        Some(error) if queued == 0 => Err(error),
        _ => Ok(()),
    }
}

/// The public `take_error` of a stream (`TcpStream`'s, `UnixStream`'s):
/// the error cellio took out of the socket and keeps for the receive side
/// ([`TakenError`]), which is the socket's pending error as far as the user
/// can tell, else `SO_ERROR`. Either is cleared, as `SO_ERROR` is by std's
/// and tokio's: the next receive then says a plain end of stream, as
/// Linux's does once `SO_ERROR` was read.
#[cold]
pub(crate) fn take_pending_error<S: sealed::Sealed + AsFd>(
    stream: &S,
) -> std_io::Result<Option<std_io::Error>> {
    match stream.taken_error().report() {
        Err(kept) => Ok(Some(kept)),
        Ok(()) => socket2::SockRef::from(stream).take_error(),
    }
}

/// Takes `stream`'s pending error (`SO_ERROR`, which clears it: the
/// kernel's receive would no longer report it) and keeps it in the
/// stream's [`TakenError`], for the receive side to report at its end of
/// stream. Linux's `EPIPE` there is a TCP reset received after the peer's
/// end (this side in `CLOSE_WAIT`, `tcp_reset`): said as what it is,
/// `ConnectionReset`, as a receive says a reset.
pub(crate) fn take_error<S: sealed::Sealed + AsFd>(
    stream: &S,
) -> std_io::Result<Option<std_io::Error>> {
    let taken = socket2::SockRef::from(stream).take_error()?;
    Ok(taken.map(|error| {
        let code = match error.raw_os_error() {
            Some(libc::EPIPE) | None => libc::ECONNRESET,
            Some(code) => code,
        };
        stream.taken_error().keep(code);
        std_io::Error::from_raw_os_error(code)
    }))
}
