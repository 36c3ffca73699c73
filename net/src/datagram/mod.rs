//! What every datagram socket shares, whatever its address family: the
//! operation futures ([`Recv`], [`RecvFrom`], [`Send`], [`SendTo`]), the
//! batches of many datagrams per syscall ([`RecvBatch`], [`SendBatch`] and
//! their futures [`RecvMany`], [`SendMany`]) and the poll-method wrapper
//! [`DatagramIo`], generic over the sealed
//! [`DatagramSocket`] trait, which
//! [`UdpSocket`](crate::UdpSocket) and
//! [`UnixDatagram`](crate::unix::UnixDatagram) implement. Each family's
//! module names them for its own socket ([`udp::RecvFrom`](crate::udp::RecvFrom)
//! is `RecvFrom<'a, UdpSocket>`, [`unix::RecvFrom`](crate::unix::RecvFrom)
//! likewise).
//!
//! A datagram socket is driven exactly as a stream is (`crate::op`): one
//! receive cell and one send cell in its reactor slot, operations that try
//! the syscall first and park on the cell only on `EAGAIN`. Two things
//! differ, both because a datagram is a message, not a stretch of a stream:
//!
//! # Invariants
//!
//! * **No receive ever proves the socket drained.** A stream read that
//!   comes back short leaves nothing behind, so the next receive may park
//!   without a syscall; a datagram says nothing about the next one. Every
//!   receive attempts, and parks only after `EAGAIN`.
//! * **A datagram that does not fit is an error, not a short read.** The
//!   kernel discards what does not fit the buffer; a receive that lost bytes
//!   that way fails with `ErrorKind::InvalidData` (its first `buf.len()`
//!   bytes are in `buf`), where the BSD socket API (and `std`, and tokio)
//!   report the truncated length as if nothing were missing.
//! * Sends never split a datagram: one either goes whole or fails
//!   (`EMSGSIZE`). Write interest is armed only when a send first finds the
//!   socket's buffer full, as for a stream.
//! * A send parks only for room an event will announce. A Unix datagram
//!   sent by address to a full peer gets none (see `backoff`): it tries
//!   again after a delay instead.
//! * Generic code is monomorphised per socket type: a UDP echo runs the same
//!   instructions as before Unix datagrams existed.

mod backoff;
mod batch;
mod io;
mod ops;

use std::fmt::Debug;
use std::io as std_io;
use std::os::fd::AsRawFd;

use cellio_reactor::Registration;
use socket2::SockAddr;

pub(crate) use batch::{send_queued, try_recv_many, try_send_many};
pub use batch::{
    RecvBatch, RecvMany, SendBatch, SendMany, MAX_BATCH, MAX_MERGED, MAX_SEGMENTED_BYTES,
    MAX_SEGMENTS,
};
pub use io::DatagramIo;
pub(crate) use ops::{after_send, peek_from, peek_sender, recv, recv_from, send, send_to};
pub use ops::{PeekFrom, PeekSender, Recv, RecvFrom, Send, SendTo};

/// The peek methods of a datagram socket type (`UdpSocket`, `UnixDatagram`),
/// written once: `$addr` is the type of a sender's address.
macro_rules! peek_methods {
    ($addr:ty) => {
        /// Copies the next datagram into `buf` and returns its length and
        /// sender, leaving it queued: the next receive gets it again. Waits,
        /// like [`recv_from`](Self::recv_from), until one is there. A datagram
        /// longer than `buf` is an `InvalidData` error here too, but it stays
        /// queued whole: receive it with a larger buffer. Cancel-safe.
        pub fn peek_from<'a>(&'a self, buf: &'a mut [u8]) -> $crate::datagram::PeekFrom<'a, Self> {
            $crate::datagram::PeekFrom::new(self, buf)
        }

        /// The sender of the next datagram, leaving the datagram queued (to
        /// choose a buffer or a handler for it first). Waits until one is
        /// there. Cancel-safe.
        pub fn peek_sender(&self) -> $crate::datagram::PeekSender<'_, Self> {
            $crate::datagram::PeekSender::new(self)
        }

        /// [`peek_from`](Self::peek_from) without waiting: `WouldBlock` if no
        /// datagram is queued.
        pub fn try_peek_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, $addr)> {
            $crate::datagram::try_now_rx(self, || $crate::datagram::peek_from(self, buf))
        }

        /// [`peek_sender`](Self::peek_sender) without waiting: `WouldBlock` if
        /// no datagram is queued.
        pub fn try_peek_sender(&self) -> std::io::Result<$addr> {
            $crate::datagram::try_now_rx(self, || $crate::datagram::peek_sender(self))
        }
    };
}

pub(crate) use peek_methods;

/// A `try_` method's receive or peek, through `ready::try_now`, so that
/// an empty socket is recorded for `readable()`. A datagram receive never
/// reports the socket drained (see the module docs).
pub(crate) fn try_now_rx<S: DatagramSocket, R>(
    socket: &S,
    attempt: impl FnOnce() -> std_io::Result<R>,
) -> std_io::Result<R> {
    crate::ready::try_now(socket.registration().rx(), || {
        attempt().map(|value| (value, false))
    })
}

/// A `try_` method's send, through `ready::try_now`: a full buffer arms
/// write interest first ([`after_send`]), so the `writable()` that follows
/// is woken when room comes.
pub(crate) fn try_now_tx<S: DatagramSocket>(
    socket: &S,
    by_address: bool,
    attempt: impl FnOnce() -> std_io::Result<usize>,
) -> std_io::Result<usize> {
    crate::ready::try_now(socket.registration().tx(), || {
        after_send(socket, attempt(), by_address)
    })
    .map_err(backoff::would_block_if_no_room_event)
}

/// The batch methods of a datagram socket type (`UdpSocket`,
/// `UnixDatagram`), written once.
macro_rules! batch_methods {
    () => {
        /// Receives as many datagrams as are queued, up to the batch's
        /// capacity, into `batch`, in one syscall (`recvmmsg` on Linux):
        /// how many, at least one (none only on a `UnixDatagram` whose
        /// receiving side was shut down). Waits, like
        /// [`recv_from`](Self::recv_from), until one is there. The batch's
        /// earlier contents are replaced; read the datagrams with
        /// [`RecvBatch::iter`]($crate::datagram::RecvBatch::iter).
        /// Cancel-safe: a receive that completes does so within one poll.
        pub fn recv_many<'a>(
            &'a self,
            batch: &'a mut $crate::datagram::RecvBatch<Self>,
        ) -> $crate::datagram::RecvMany<'a, Self> {
            $crate::datagram::RecvMany::new(self, batch)
        }

        /// Sends every datagram queued in `batch`, as few syscalls as the
        /// kernel allows (`sendmmsg` on Linux, up to
        /// [`MAX_BATCH`]($crate::datagram::MAX_BATCH) datagrams each), and
        /// empties it: how many were sent. Waits while the socket's buffer
        /// is full. On an error, the datagrams sent so far are gone from the
        /// batch and the one the error belongs to is its first:
        /// [`SendBatch::skip_next`]($crate::datagram::SendBatch::skip_next)
        /// drops it, another `send_many` goes on with the rest. An error
        /// the kernel held for an earlier send and reports on the next one
        /// (an ICMP report on a connected UDP socket: `ConnectionRefused`)
        /// is not returned for the first datagram: the send goes on.
        /// Cancel-safe: a dropped call leaves the batch with exactly the
        /// datagrams not sent.
        ///
        /// A batch that takes several calls spends the task's cooperative
        /// budget as it goes: each call after the first is charged a unit
        /// per datagram the call before it sent, as that many sends would
        /// be, and with the budget spent the send yields (one call of
        /// `MAX_BATCH` spends a default budget), so the worker's other
        /// tasks run between its calls; another send on this socket may
        /// then go between them too. Each such part counts as one send in
        /// the socket's `stats()`. A batch that one call takes costs one
        /// unit, as a [`recv_many`](Self::recv_many) does.
        pub fn send_many<'a>(
            &'a self,
            batch: &'a mut $crate::datagram::SendBatch<Self>,
        ) -> $crate::datagram::SendMany<'a, Self> {
            $crate::datagram::SendMany::new(self, batch)
        }

        /// [`recv_many`](Self::recv_many) without waiting: `WouldBlock` if
        /// no datagram is queued.
        pub fn try_recv_many(
            &self,
            batch: &mut $crate::datagram::RecvBatch<Self>,
        ) -> std::io::Result<usize> {
            $crate::datagram::try_recv_many(self, batch)
        }

        /// [`send_many`](Self::send_many) without waiting: sends what the
        /// socket's buffer takes now and returns how many; `WouldBlock` if
        /// it took none. The rest stay queued. Another error is returned as
        /// it comes, with what went before it gone from the batch and its
        /// own datagram first. It sends all the socket takes in this one
        /// call, however long the batch: unlike `send_many`, it never
        /// stops for the task's budget.
        pub fn try_send_many(
            &self,
            batch: &mut $crate::datagram::SendBatch<Self>,
        ) -> std::io::Result<usize> {
            $crate::datagram::try_send_many(self, batch)
        }
    };
}

pub(crate) use batch_methods;

/// A receive's result, its `EAGAIN` taken for the end of reading (`end`:
/// 0 bytes, as a blocking receive returns) when the socket's receiving
/// side is shut down. Linux's non-blocking receive on a Unix datagram
/// socket says `EAGAIN` there, not 0 (only a blocking one ends at the
/// shutdown), and no event follows the one the shutdown raised: taken for
/// a wait, the receive would park for ever. Checked on `EAGAIN` only, and
/// compiled out for a socket type whose `EAGAIN` never means that (UDP).
#[inline(always)]
pub(crate) fn or_end_of_reading<S: DatagramSocket, T>(
    socket: &S,
    got: std_io::Result<T>,
    end: impl FnOnce() -> std_io::Result<T>,
) -> std_io::Result<T> {
    match got {
        Err(e)
            if S::EAGAIN_MAY_END_READING
                && e.kind() == std_io::ErrorKind::WouldBlock
                && socket.reading_shut_down() =>
        {
            end()
        }
        got => got,
    }
}

/// A datagram socket that cellio's datagram futures run on:
/// [`UdpSocket`](crate::UdpSocket) and
/// [`UnixDatagram`](crate::unix::UnixDatagram).
///
/// Sealed: it names what the operations need from a socket (its
/// descriptor, its registration, its address types), which only this
/// crate's sockets can provide.
pub trait DatagramSocket: AsRawFd + Debug + sealed::Sealed {}

pub(crate) mod sealed {
    use super::*;

    /// The methods of [`DatagramSocket`], out of the
    /// public API's reach.
    pub trait Sealed {
        /// A sender's address, as `recv_from` reports it.
        type Addr: Debug;
        /// A destination, as a `send_to` future keeps it.
        type Target: Debug + Unpin + std::hash::Hash;
        /// A destination, as a `SendBatch` keeps it for each datagram.
        type BatchTarget: crate::raw_addr::RawSockAddr + Clone;
        /// What buffer never truncates, for the error that says a datagram
        /// did not fit.
        const FITS_ANY: &'static str;
        /// Whether the kernel can segment one large send into datagrams
        /// of a size it is told (`UDP_SEGMENT`: UDP on Linux), which a
        /// [`SendBatch`] uses for the runs
        /// pushed with `push_segmented`.
        const SEGMENTS: bool = false;

        /// The socket's reactor slot: its two cells and their counters.
        fn registration(&self) -> &Registration;

        /// Whether the kernel may merge datagrams on receive (UDP's
        /// receive offload is on): only a batch receive splits them.
        fn receives_merged(&self) -> bool {
            false
        }

        /// Adds write interest, if not there yet: a send found the socket
        /// full and is about to park on the send cell.
        fn arm_writable(&self) -> std_io::Result<()>;

        /// Whether a send may wait for room that no event announces (a
        /// Unix peer full for a send by address: see `backoff`). False for
        /// UDP, whose sends then skip the backoff's checks altogether.
        const ROOM_MAY_GO_UNANNOUNCED: bool = false;

        /// Whether a send that just got `EAGAIN` waits for room that no
        /// event will announce, so it must not park; `by_address`: the
        /// send named its destination (`send_to`, a batch's datagram with
        /// an address), else it went to the connected peer. Asked only
        /// with [`ROOM_MAY_GO_UNANNOUNCED`](Self::ROOM_MAY_GO_UNANNOUNCED).
        fn room_raises_no_event(&self, by_address: bool) -> bool {
            let _ = by_address;
            false
        }

        /// Whether a receive's `EAGAIN` may come from a socket whose
        /// receiving side is shut down, where it would wait for ever (see
        /// [`or_end_of_reading`]). False for UDP, whose receives then skip
        /// the check altogether.
        const EAGAIN_MAY_END_READING: bool = false;

        /// After a receive's `EAGAIN`, asked only with
        /// [`EAGAIN_MAY_END_READING`](Self::EAGAIN_MAY_END_READING): whether
        /// the socket's receiving side is shut down.
        fn reading_shut_down(&self) -> bool {
            false
        }

        /// The sender a receive reports at the end of reading (see
        /// [`or_end_of_reading`]).
        fn no_sender() -> std_io::Result<Self::Addr> {
            Err(std_io::ErrorKind::WouldBlock.into())
        }

        /// A received datagram's sender, from the kernel's address.
        fn sender(from: SockAddr) -> std_io::Result<Self::Addr>;

        /// A batched datagram's sender, from the first `len` bytes of
        /// `storage`, where the kernel wrote it.
        fn sender_in(
            storage: &libc::sockaddr_storage,
            len: libc::socklen_t,
        ) -> std_io::Result<Self::Addr> {
            Self::sender(crate::sys::sock_addr_of(storage, len))
        }

        /// Where a batched datagram to `to` goes; an error if nothing can
        /// be sent there.
        fn batch_target(to: &Self::Addr) -> std_io::Result<Self::BatchTarget>;

        /// One datagram to `target` (`sendto(2)`).
        fn send_to_target(&self, buf: &[u8], target: &Self::Target) -> std_io::Result<usize>;
    }
}
