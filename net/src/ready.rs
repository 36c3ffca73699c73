//! Waiting for readiness without an operation: [`Readable`] and
//! [`Writable`], the futures of every socket's `readable()` and
//! `writable()` (tokio's methods of those names), and [`try_now`], which
//! the `try_` methods run their syscall through.
//!
//! A readiness future is an operation whose attempt does nothing: it runs
//! the cell protocol of `crate::op` like a receive or a send, so it
//! completes at once unless the direction's cell says the socket is
//! `EXHAUSTED`, and then parks until the reactor notifies the cell. What
//! makes the wait mean something is who marks the cell: a receive that
//! came back short, an operation that parked and was dropped, and (through
//! [`try_now`]) a `try_` method that found nothing, or the caller's own
//! I/O run through a socket's `try_io` that said `WouldBlock`.
//!
//! # Invariants
//!
//! * A readiness future moves no data, so completing early is only a
//!   wasted wake-up, never a loss: the caller's `try_` method then says
//!   `WouldBlock`, marks the cell, and the next wait parks.
//! * The send cell is marked only once write interest is armed (the send
//!   attempts arm it before they report the socket full or `WouldBlock`),
//!   so a `writable()` that parks is always woken by the reactor when room
//!   comes.
//! * [`try_now`] marks only from the snapshot it took before its syscall,
//!   and only an idle cell (`OpCell::mark_exhausted`): a notification in
//!   between, or another operation holding the cell, leaves it unmarked.
//! * [`try_io`] is [`try_now`] around the caller's closure, and arms write
//!   interest before it lets a `WouldBlock` mark the send cell, as a send
//!   does (the invariant above). A send's `WouldBlock` whose room may go
//!   unannounced (a Unix datagram's, which may be a send by address to a
//!   full peer: the datagram module's invariants) marks nothing, as the
//!   `try_send_to` of that socket does not. It adds nothing to the receive
//!   and send paths: they never call it.

use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use cellio_reactor::{OpCell, Registration};

use crate::op::{fast_path, Attempt, OpState, Side};

/// Future of a socket's `readable()` (with `TX` false) or `writable()`
/// (`TX` true): resolves once the socket may be ready in that direction,
/// without moving any data. See [`Readable`] and [`Writable`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Ready<'a, const TX: bool> {
    registration: &'a Registration,
    op: OpState,
}

/// Future of `readable()` ([`TcpStream::readable`](crate::TcpStream::readable)
/// and the other sockets'): resolves once there may be something to
/// receive (data, a datagram, the end of the stream, or an error).
pub type Readable<'a> = Ready<'a, false>;

/// Future of `writable()` ([`TcpStream::writable`](crate::TcpStream::writable)
/// and the other sockets'): resolves once there may be room to send.
pub type Writable<'a> = Ready<'a, true>;

impl<'a, const TX: bool> Ready<'a, TX> {
    pub(crate) fn new(registration: &'a Registration) -> Self {
        Self {
            registration,
            op: OpState::new(),
        }
    }

    fn side(&self) -> Side<'a> {
        if TX {
            Side::tx(self.registration)
        } else {
            Side::rx(self.registration)
        }
    }

    #[inline]
    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<()>> {
        let side = self.side();
        self.op.poll(side, waker, || Ok(((), false)))
    }

    fast_path!(());
}

impl<const TX: bool> Future for Ready<'_, TX> {
    type Output = io::Result<()>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_with(Some(cx.waker()))
    }
}

impl<const TX: bool> Drop for Ready<'_, TX> {
    fn drop(&mut self) {
        let registration = self.registration;
        self.op.cancel(|| {
            if TX {
                registration.tx()
            } else {
                registration.rx()
            }
        });
    }
}

/// Runs a `try_` method's `attempt` once, outside any future. If it says
/// `WouldBlock`, or reports the socket drained, `cell` is marked
/// `EXHAUSTED` (unless readiness moved since the snapshot taken first; a
/// short read also not after a hang-up), so that the next `readable()` or
/// `writable()` waits for the reactor.
#[inline]
pub(crate) fn try_now<R>(cell: &OpCell, attempt: impl FnOnce() -> Attempt<R>) -> io::Result<R> {
    let seen = cell.observe();
    let result = attempt();
    if let Ok(seen) = seen {
        match &result {
            // A short read: unless the socket hung up (a FIN or an error may
            // wait behind the data).
            Ok((_, true)) => cell.mark_exhausted(seen),
            // EAGAIN: nothing at all is pending, even after a hang-up event
            // (a UDP socket's ICMP error, already read).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => cell.mark_would_block(seen),
            _ => {}
        }
    }
    result.map(|(value, _)| value)
}

/// The direction of a socket that the caller's own I/O moves data in, for
/// `try_io` ([`TcpStream::try_io`](crate::TcpStream::try_io) and the other
/// sockets'): tokio's `io::Interest`, with its two directions. tokio's
/// other interests (`PRIORITY`, `ERROR`) and combinations (`READABLE |
/// WRITABLE`) have no counterpart: do the I/O of each direction in a
/// `try_io` of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interest {
    writable: bool,
}

impl Interest {
    /// Receiving: a `WouldBlock` means the socket has nothing to receive,
    /// and the next `readable()` waits.
    pub const READABLE: Interest = Interest { writable: false };

    /// Sending: a `WouldBlock` means the send buffer is full, and the next
    /// `writable()` waits (on a `UnixDatagram`, only when an event will
    /// announce the room: see
    /// [`UnixDatagram::try_io`](crate::unix::UnixDatagram::try_io)).
    pub const WRITABLE: Interest = Interest { writable: true };

    /// `true` for [`READABLE`](Self::READABLE).
    pub const fn is_readable(self) -> bool {
        !self.writable
    }

    /// `true` for [`WRITABLE`](Self::WRITABLE).
    pub const fn is_writable(self) -> bool {
        self.writable
    }
}

/// A socket's `try_io`: runs `io` once, outside any future, through
/// [`try_now`] on the cell of `interest`'s direction, so that its
/// `WouldBlock` marks the cell and the next `readable()` or `writable()`
/// waits. A send's `WouldBlock` arms write interest on `fd` first (the
/// module invariants); if that fails, its error is returned and nothing
/// is marked. If `unannounced()` says no event may announce the room the
/// send waits for, its `WouldBlock` is returned and nothing is marked
/// either (a `UnixDatagram`'s; `never` for the others).
#[inline]
pub(crate) fn try_io<R>(
    registration: &Registration,
    fd: RawFd,
    interest: Interest,
    unannounced: impl FnOnce() -> bool,
    io: impl FnOnce() -> io::Result<R>,
) -> io::Result<R> {
    if interest.is_readable() {
        return try_now(registration.rx(), || io().map(|value| (value, false)));
    }
    let mut unmarked = None;
    let result = try_now(registration.tx(), || match io() {
        Ok(value) => Ok((value, false)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            if unannounced() {
                // Any error but `WouldBlock`, so that `try_now` marks
                // nothing; the caller gets `e` back below.
                unmarked = Some(e);
                return Err(io::ErrorKind::Other.into());
            }
            registration.arm_writable(&mut mio::unix::SourceFd(&fd))?;
            Err(e)
        }
        Err(e) => Err(e),
    });
    match unmarked {
        Some(e) => Err(e),
        None => result,
    }
}

/// `try_io`'s `unannounced` for a socket whose room is always announced.
#[inline(always)]
pub(crate) fn never<T: ?Sized>(_: &T) -> bool {
    false
}

/// The `readable`, `writable` and `try_io` methods of a socket type with a
/// `registration` field (`TcpStream`, `UnixStream`, `UdpSocket`,
/// `UnixDatagram`), written once. `$recv` and `$send` name its `try_`
/// methods for the docs; `$setup` is the doc example's code that makes two
/// connected sockets of the type, `a` and `b`.
///
/// A type whose send may wait for room no event announces (`UnixDatagram`)
/// adds `$unannounced`, the path of a `fn(&Self) -> bool` that says so for
/// `try_io` (`ready::never` by default), and the docs of that difference
/// for `writable` (`$writable_note`) and `try_io` (`$try_io_note`).
macro_rules! readiness_methods {
    ($recv:literal, $send:literal, $setup:literal) => {
        $crate::ready::readiness_methods!($recv, $send, $setup, $crate::ready::never, "", "");
    };
    (
        $recv:literal,
        $send:literal,
        $setup:literal,
        $unannounced:path,
        $writable_note:literal,
        $try_io_note:literal
    ) => {
        /// Waits until there may be something to receive (data, the end of
        /// the stream, an error), without receiving it: then take it with
        #[doc = concat!("[`", $recv, "`](Self::", $recv, ").")]
        /// No buffer is lent while it waits, so a server with many idle
        /// connections need not keep a buffer for each (tokio's
        /// `readable`).
        ///
        /// It may complete with nothing there (before the first receive
        /// has found the socket empty, or after a wake-up whose data went
        /// to another receive): the `try_` method then says `WouldBlock`,
        /// which records that the socket is empty, and the next
        /// `readable()` waits for the reactor. For a receive of your own
        /// (a `recvmsg`), run it through [`try_io`](Self::try_io), which
        /// records its `WouldBlock` the same way: without it, `readable()`
        /// never learns that the socket is empty, and completes at once.
        /// Cancel-safe: it moves no data. It holds the receive cell while
        /// it waits, as a receive does, so another receive at the same
        /// moment is refused.
        pub fn readable(&self) -> $crate::Readable<'_> {
            $crate::Readable::new(&self.registration)
        }

        /// Waits until there may be room to send, without sending: then
        /// send with
        #[doc = concat!("[`", $send, "`](Self::", $send, ").")]
        /// As [`readable`](Self::readable), it may complete when there is
        /// no room after all: `WouldBlock` from the `try_` method (or from
        /// your own send run through [`try_io`](Self::try_io)) records it,
        /// and the next `writable()` waits for the reactor.
        /// Cancel-safe. It holds the send cell while it waits.
        #[doc = $writable_note]
        pub fn writable(&self) -> $crate::Writable<'_> {
            $crate::Writable::new(&self.registration)
        }

        /// Runs `f`, your own I/O on this socket in `interest`'s direction
        /// (a `recvmsg` for ancillary data such as ECN or packet info, a
        /// send with flags of your own, a C library's call), once, and
        /// returns what it returned (tokio's `try_io`). If it returns
        /// `WouldBlock`, the socket is recorded as empty (or full), as a
        /// `try_` method's `WouldBlock` records it, so the next
        /// [`readable`](Self::readable) (or [`writable`](Self::writable))
        /// waits for the reactor. Without it, nothing tells the socket that
        /// your syscall found nothing, and a loop of `readable()` and your
        /// own receive spins instead of waiting.
        ///
        /// `f` must return `WouldBlock` only when the socket said `EAGAIN`
        /// in that direction: any other `WouldBlock` makes the next wait
        /// last until new data (or room) comes. The socket is
        /// non-blocking, so `f`'s syscall never blocks the worker. Unlike
        /// tokio's, `f` always runs (tokio's says `WouldBlock` without
        /// calling it when it knows the socket is not ready); nothing is
        /// reserved or waited for, so it may run while a receive or send
        /// of the socket waits.
        #[doc = $try_io_note]
        ///
        /// ```
        /// use std::io;
        /// use std::os::fd::AsRawFd;
        ///
        /// use cellio_net::Interest;
        ///
        /// # cellio_runtime::Runtime::new()?.block_on(async {
        #[doc = $setup]
        /// b.try_send(b"hi")?;
        /// let fd = a.as_raw_fd();
        /// let mut buf = [0u8; 16];
        /// let n = loop {
        ///     a.readable().await?;
        ///     // Your own receive: `recv` here, `recvmsg` for ancillary data.
        ///     let received = a.try_io(Interest::READABLE, || {
        ///         // SAFETY: `buf` is valid for writes of its length, and
        ///         // `fd` is `a`'s descriptor, open while `a` lives.
        ///         let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        ///         if n < 0 {
        ///             return Err(io::Error::last_os_error());
        ///         }
        ///         Ok(n as usize)
        ///     });
        ///     match received {
        ///         Ok(n) => break n,
        ///         // Recorded: the next `readable()` waits for the reactor.
        ///         Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
        ///         Err(e) => return Err(e),
        ///     }
        /// };
        /// assert_eq!(&buf[..n], b"hi");
        /// # Ok::<(), io::Error>(())
        /// # })?;
        /// # Ok::<(), std::io::Error>(())
        /// ```
        pub fn try_io<R>(
            &self,
            interest: $crate::Interest,
            f: impl FnOnce() -> std::io::Result<R>,
        ) -> std::io::Result<R> {
            $crate::ready::try_io(
                &self.registration,
                std::os::fd::AsRawFd::as_raw_fd(self),
                interest,
                || $unannounced(self),
                f,
            )
        }
    };
}

pub(crate) use readiness_methods;
