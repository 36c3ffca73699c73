//! [`OwnedRecvHalf`] and [`OwnedSendHalf`]: a [`TcpIo`](crate::TcpIo)
//! split into two halves that own what they use
//! ([`TcpIo::into_split`](crate::TcpIo::into_split)), so that each can go to
//! a task of its own, as tokio's `into_split` halves do.
//!
//! # Invariants
//!
//! * The halves share the stream through an `Rc` and each owns the
//!   reservation of its own direction: the two never touch the same cell.
//! * Neither is `Send` nor `Sync` (an `Rc` is not): a confined reservation
//!   (`crate::held`) and the stream whose drop resets the cells stay on the
//!   thread that made them, so both tasks run on that worker
//!   (`spawn_local`).
//! * Dropping a half gives its cell back, so that the stream's futures
//!   (through the other half's `get_ref`) can use that direction again;
//!   [`OwnedRecvHalf::reunite`] hands both reservations back to a `TcpIo`
//!   instead, which goes on where the halves stopped.
//! * Dropping the send half also shuts down the sending side
//!   (`shutdown(Write)`, errors ignored), as tokio's `OwnedWriteHalf` does,
//!   so that the peer reads the end of the stream while the receive half
//!   lives on; not when it is reunited ([`OwnedRecvHalf::reunite`]) or
//!   [`forget`](OwnedSendHalf::forget)-ten. Also when it holds the last
//!   reference to the stream and the close follows: Linux's `close(2)` of
//!   a TCP socket with received bytes unread sends only a reset, so
//!   without the shutdown's FIN first the peer, after the last bytes,
//!   would read `ConnectionReset` where tokio's gives a clean end. The raw
//!   `shutdown(2)` is made, not the joins' `shut_down`, which on `ENOTCONN`
//!   takes the pending error (`SO_ERROR`) that the receive half is yet to
//!   report.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::held::HeldCell;
use crate::stream::io::{poll_recv_on, poll_send_on, IoRecv, IoSendAll, PollRecv, PollSend};
use crate::stream::io_halves::{recv_half_methods, send_half_methods};
use crate::stream::{io_traits, StreamIo, StreamSocket};

/// The receiving half of a [`TcpIo`](crate::TcpIo), from
/// [`TcpIo::into_split`](crate::TcpIo::into_split): [`poll_recv`](Self::poll_recv),
/// [`recv`](Self::recv) and `AsyncRead`, as on the `TcpIo`, and no borrow
/// to outlive.
///
/// It stays on its thread, like the `TcpIo`:
///
/// ```compile_fail,E0277
/// fn needs_send<T: Send>(_: T) {}
/// # fn f(io: cellio_net::TcpIo) {
/// needs_send(io.into_split().0);
/// # }
/// ```
pub struct OwnedRecvHalf<S: StreamSocket> {
    stream: Rc<S>,
    rx: HeldCell,
}

/// The sending half of a [`TcpIo`](crate::TcpIo), from
/// [`TcpIo::into_split`](crate::TcpIo::into_split): [`poll_send`](Self::poll_send),
/// [`send_all`](Self::send_all) and `AsyncWrite` (whose close shuts down
/// the sending side), as on the `TcpIo`.
///
/// Dropping it shuts down the sending side (`shutdown(Write)`, errors
/// ignored), as dropping tokio's `OwnedWriteHalf` does: the peer reads the
/// end of the stream, and the [`OwnedRecvHalf`] goes on receiving (its
/// reply, say). [`reunite`](Self::reunite) does not shut anything down;
/// [`forget`](Self::forget) drops the half without the shutdown.
pub struct OwnedSendHalf<S: StreamSocket> {
    stream: Rc<S>,
    tx: HeldCell,
    /// Whether the drop shuts down the sending side: `false` once
    /// reunited or forgotten.
    shut_down_on_drop: bool,
}

/// Splits `io` into its owned halves.
pub(crate) fn split<S: StreamSocket>(io: StreamIo<S>) -> (OwnedRecvHalf<S>, OwnedSendHalf<S>) {
    let (stream, rx, tx) = io.into_parts();
    let stream = Rc::new(stream);
    let send = OwnedSendHalf {
        stream: Rc::clone(&stream),
        tx,
        shut_down_on_drop: true,
    };
    (OwnedRecvHalf { stream, rx }, send)
}

impl<S: StreamSocket> OwnedRecvHalf<S> {
    recv_half_methods!('b, S);

    /// Puts the two halves of one `TcpIo` back together, reservations
    /// and all; halves of two different ones come back in the error.
    pub fn reunite(mut self, mut send: OwnedSendHalf<S>) -> Result<StreamIo<S>, ReuniteError<S>> {
        if !Rc::ptr_eq(&self.stream, &send.stream) {
            return Err(ReuniteError(self, send));
        }
        let (rx, tx) = (std::mem::take(&mut self.rx), std::mem::take(&mut send.tx));
        send.shut_down_on_drop = false; // the TcpIo goes on sending
        let stream = Rc::clone(&self.stream);
        drop((self, send)); // holding no cell now: their drops release nothing
        let stream = Rc::into_inner(stream).expect("the two halves held the only references");
        Ok(StreamIo::from_parts(stream, rx, tx))
    }
}

impl<S: StreamSocket> OwnedSendHalf<S> {
    send_half_methods!('b, S);

    /// [`OwnedRecvHalf::reunite`], from this side.
    pub fn reunite(self, recv: OwnedRecvHalf<S>) -> Result<StreamIo<S>, ReuniteError<S>> {
        recv.reunite(self)
    }

    /// Drops the half without shutting down the sending side (tokio's
    /// `OwnedWriteHalf::forget`): the direction goes back to the stream's
    /// futures, through the [`OwnedRecvHalf`]'s `get_ref`, and the socket
    /// closes when the receive half is dropped.
    pub fn forget(mut self) {
        self.shut_down_on_drop = false;
    }
}

impl<S: StreamSocket> Drop for OwnedRecvHalf<S> {
    fn drop(&mut self) {
        self.rx.release(self.stream.registration().rx());
    }
}

impl<S: StreamSocket> Drop for OwnedSendHalf<S> {
    fn drop(&mut self) {
        self.tx.release(self.stream.registration().tx());
        // Whatever the reference count, as tokio's `OwnedWriteHalf`: the
        // last reference's close, with received bytes unread, would send
        // only a reset, and the FIN must go before it (module invariants).
        if self.shut_down_on_drop {
            // An error (the peer reset it, or it was shut down already)
            // has nothing to tell a drop.
            let _ = self.stream.shutdown_socket(std::net::Shutdown::Write);
        }
    }
}

/// Two halves that were not split from the same `TcpIo`, given back
/// unchanged.
pub struct ReuniteError<S: StreamSocket>(pub OwnedRecvHalf<S>, pub OwnedSendHalf<S>);

impl<S: StreamSocket> fmt::Debug for ReuniteError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReuniteError").finish_non_exhaustive()
    }
}

impl<S: StreamSocket> fmt::Display for ReuniteError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the two halves were not split from the same stream")
    }
}

impl<S: StreamSocket> std::error::Error for ReuniteError<S> {}

impl<S: StreamSocket> PollRecv for OwnedRecvHalf<S> {
    #[inline(always)]
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        OwnedRecvHalf::poll_recv(self, cx, buf)
    }
}

impl<S: StreamSocket> PollSend for OwnedSendHalf<S> {
    #[inline(always)]
    fn poll_send(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        OwnedSendHalf::poll_send(self, cx, buf)
    }
}

impl<S: StreamSocket> fmt::Debug for OwnedRecvHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedRecvHalf")
            .field("stream", &*self.stream)
            .field("rx", &self.rx)
            .finish()
    }
}

impl<S: StreamSocket> fmt::Debug for OwnedSendHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSendHalf")
            .field("stream", &*self.stream)
            .field("tx", &self.tx)
            .finish()
    }
}

io_traits::async_read!(OwnedRecvHalf<S>);
io_traits::async_write!(OwnedSendHalf<S>);
