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
//! [`try_now`]) a `try_` method that found nothing.
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

use std::future::Future;
use std::io;
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

/// The `readable` and `writable` methods of a socket type with a
/// `registration` field (`TcpStream`, `UnixStream`, `UdpSocket`,
/// `UnixDatagram`), written once. `$recv` and `$send` name its `try_`
/// methods for the docs.
macro_rules! readiness_methods {
    ($recv:literal, $send:literal) => {
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
        /// `readable()` waits for the reactor. Cancel-safe: it moves no
        /// data. It holds the receive cell while it waits, as a receive
        /// does, so another receive at the same moment is refused.
        pub fn readable(&self) -> $crate::Readable<'_> {
            $crate::Readable::new(&self.registration)
        }

        /// Waits until there may be room to send, without sending: then
        /// send with
        #[doc = concat!("[`", $send, "`](Self::", $send, ").")]
        /// As [`readable`](Self::readable), it may complete when there is
        /// no room after all: `WouldBlock` from the `try_` method records
        /// it, and the next `writable()` waits for the reactor.
        /// Cancel-safe. It holds the send cell while it waits.
        pub fn writable(&self) -> $crate::Writable<'_> {
            $crate::Writable::new(&self.registration)
        }
    };
}

pub(crate) use readiness_methods;
