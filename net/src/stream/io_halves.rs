//! [`RecvHalf`] and [`SendHalf`]: a [`TcpIo`](crate::TcpIo) split into its
//! two directions ([`TcpIo::split`](crate::TcpIo::split)), so that one task
//! can receive and send at the same time.
//!
//! # Invariants
//!
//! * Each half borrows the `TcpIo`'s stream and the reservation of its own
//!   direction, exclusively: the two never touch the same cell, and
//!   nothing else can use the `TcpIo` while they live.
//! * A half is neither `Send` nor `Sync`, like the `TcpIo`: a confined
//!   reservation (`crate::held`) must not be used from another thread.
//! * A half keeps nothing of its own: dropping it leaves the reservation
//!   with the `TcpIo`, which goes on where the half stopped.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::held::HeldCell;
use crate::stream::io::{poll_recv_on, poll_send_on, IoRecv, IoSendAll, PollRecv, PollSend};
use crate::stream::{io_traits, StreamSocket};

/// The methods every receiving half has ([`RecvHalf`] and
/// [`OwnedRecvHalf`](crate::stream::OwnedRecvHalf)), over its `stream` (a
/// reference or an `Rc`) and its `rx` (a `&mut HeldCell` or a `HeldCell`);
/// the arguments are what `recv`'s future captures.
macro_rules! recv_half_methods {
    ($($captures:tt)*) => {
        /// [`TcpIo::poll_recv`](crate::TcpIo::poll_recv).
        #[inline(always)]
        pub fn poll_recv(
            &mut self,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let rx = std::borrow::BorrowMut::borrow_mut(&mut self.rx);
            poll_recv_on(&*self.stream, rx, cx, buf)
        }

        /// `poll_recv` into memory not initialized yet (tokio's
        /// `ReadBuf`), which the kernel fills without it being zeroed.
        #[cfg(feature = "tokio-io")]
        #[inline(always)]
        pub(crate) fn poll_recv_uninit(
            &mut self,
            cx: &mut Context<'_>,
            buf: &mut [std::mem::MaybeUninit<u8>],
        ) -> Poll<io::Result<usize>> {
            let rx = std::borrow::BorrowMut::borrow_mut(&mut self.rx);
            poll_recv_on(&*self.stream, rx, cx, buf)
        }

        /// [`TcpIo::poll_peek`](crate::TcpIo::poll_peek).
        #[inline]
        pub fn poll_peek(
            &mut self,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let rx = std::borrow::BorrowMut::borrow_mut(&mut self.rx);
            crate::stream::io::poll_peek_on(&*self.stream, rx, cx, buf)
        }

        /// [`TcpIo::recv`](crate::TcpIo::recv).
        pub fn recv<'b>(
            &'b mut self,
            buf: &'b mut [u8],
        ) -> impl Future<Output = io::Result<usize>> + use<$($captures)*> {
            IoRecv { io: self, buf }
        }

        /// The stream (for its address, options, statistics).
        pub fn get_ref(&self) -> &S {
            &self.stream
        }
    };
}

/// The methods every sending half has ([`SendHalf`] and
/// [`OwnedSendHalf`](crate::stream::OwnedSendHalf)); as
/// `recv_half_methods`, with `tx`.
macro_rules! send_half_methods {
    ($($captures:tt)*) => {
        /// [`TcpIo::poll_send`](crate::TcpIo::poll_send).
        #[inline(always)]
        pub fn poll_send(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let tx = std::borrow::BorrowMut::borrow_mut(&mut self.tx);
            poll_send_on(&*self.stream, tx, cx, buf)
        }

        /// [`TcpIo::poll_send_vectored`](crate::TcpIo::poll_send_vectored).
        #[inline]
        pub fn poll_send_vectored(
            &mut self,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let tx = std::borrow::BorrowMut::borrow_mut(&mut self.tx);
            poll_send_on(&*self.stream, tx, cx, bufs)
        }

        /// [`TcpIo::send_all`](crate::TcpIo::send_all), with the same caveat:
        /// dropped part-way, an unknown prefix of `buf` has been sent.
        pub fn send_all<'b>(
            &'b mut self,
            buf: &'b [u8],
        ) -> impl Future<Output = io::Result<()>> + use<$($captures)*> {
            IoSendAll {
                io: self,
                buf,
                sent: 0,
            }
        }

        /// The stream (for its address, options, statistics).
        pub fn get_ref(&self) -> &S {
            &self.stream
        }
    };
}

pub(crate) use {recv_half_methods, send_half_methods};

/// The receiving half of a [`TcpIo`](crate::TcpIo), from
/// [`TcpIo::split`](crate::TcpIo::split): [`poll_recv`](Self::poll_recv),
/// [`recv`](Self::recv) and `AsyncRead`, as on the `TcpIo`.
///
/// It stays on its thread, like the `TcpIo`:
///
/// ```compile_fail,E0277
/// fn needs_send<T: Send>(_: T) {}
/// # fn f(io: &mut cellio_net::TcpIo) {
/// needs_send(io.split().0);
/// # }
/// ```
pub struct RecvHalf<'a, S: StreamSocket> {
    stream: &'a S,
    rx: &'a mut HeldCell,
    _confined: PhantomData<*const ()>,
}

impl<'a, S: StreamSocket> RecvHalf<'a, S> {
    pub(crate) fn new(stream: &'a S, rx: &'a mut HeldCell) -> Self {
        Self {
            stream,
            rx,
            _confined: PhantomData,
        }
    }

    recv_half_methods!('a, 'b, S);
}

/// The sending half of a [`TcpIo`](crate::TcpIo), from
/// [`TcpIo::split`](crate::TcpIo::split): [`poll_send`](Self::poll_send),
/// [`send_all`](Self::send_all) and `AsyncWrite`, as on the `TcpIo`.
///
/// It stays on its thread, like the `TcpIo`:
///
/// ```compile_fail,E0277
/// fn needs_send<T: Send>(_: T) {}
/// # fn f(io: &mut cellio_net::TcpIo) {
/// needs_send(io.split().1);
/// # }
/// ```
pub struct SendHalf<'a, S: StreamSocket> {
    stream: &'a S,
    tx: &'a mut HeldCell,
    _confined: PhantomData<*const ()>,
}

impl<'a, S: StreamSocket> SendHalf<'a, S> {
    pub(crate) fn new(stream: &'a S, tx: &'a mut HeldCell) -> Self {
        Self {
            stream,
            tx,
            _confined: PhantomData,
        }
    }

    send_half_methods!('a, 'b, S);
}

impl<S: StreamSocket> PollRecv for RecvHalf<'_, S> {
    #[inline(always)]
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        RecvHalf::poll_recv(self, cx, buf)
    }
}

impl<S: StreamSocket> PollSend for SendHalf<'_, S> {
    #[inline(always)]
    fn poll_send(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        SendHalf::poll_send(self, cx, buf)
    }
}

impl<S: StreamSocket> fmt::Debug for RecvHalf<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvHalf")
            .field("stream", self.stream)
            .field("rx", self.rx)
            .finish()
    }
}

impl<S: StreamSocket> fmt::Debug for SendHalf<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendHalf")
            .field("stream", self.stream)
            .field("tx", self.tx)
            .finish()
    }
}

io_traits::async_read!(RecvHalf<'_, S>);
io_traits::async_write!(SendHalf<'_, S>);
