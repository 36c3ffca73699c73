//! TCP: [`TcpListener`], [`TcpStream`] and their operation futures,
//! [`TcpSocket`] (options set before connecting or listening), and
//! [`TcpIo`], a stream behind poll methods, with its halves [`RecvHalf`]
//! and [`SendHalf`].
//!
//! The futures and [`TcpIo`] are the generic ones of [`crate::stream`],
//! named here for a [`TcpStream`].

mod listener;
mod socket;
mod stream;

pub use listener::{Accept, ListenOptions, TcpListener};
pub use socket::TcpSocket;
pub use stream::TcpStream;

/// Future of [`TcpStream::recv`]: resolves to the number of bytes received.
pub type Recv<'a> = crate::stream::Recv<'a, TcpStream>;
/// Future of [`TcpStream::peek`]: resolves to the number of bytes copied, which
/// stay queued for the next receive.
pub type Peek<'a> = crate::stream::Peek<'a, TcpStream>;
/// Future of [`TcpStream::send`]: resolves to the number of bytes sent.
pub type Send<'a> = crate::stream::Send<'a, TcpStream>;
/// Future of [`TcpStream::send_all`]: sends the whole buffer.
pub type SendAll<'a> = crate::stream::SendAll<'a, TcpStream>;
/// Future of [`TcpStream::send_vectored`]: resolves to the number of bytes
/// sent, gathered from the slices in order.
pub type SendVectored<'a> = crate::stream::SendVectored<'a, TcpStream>;
/// Future of [`TcpStream::send_file`]: resolves to the number of bytes sent
/// from the file.
pub type SendFile<'a> = crate::stream::SendFile<'a, TcpStream>;
/// Future of [`TcpStream::recv_exact`]: fills the whole buffer.
pub type RecvExact<'a> = crate::stream::RecvExact<'a, TcpStream>;
/// A [`TcpStream`] behind poll methods and the `AsyncRead`/`AsyncWrite`
/// traits; see [`StreamIo`](crate::stream::StreamIo).
pub type TcpIo = crate::stream::StreamIo<TcpStream>;
/// The receiving half of a [`TcpIo`], from
/// [`split`](crate::stream::StreamIo::split).
pub type RecvHalf<'a> = crate::stream::RecvHalf<'a, TcpStream>;
/// The sending half of a [`TcpIo`], from
/// [`split`](crate::stream::StreamIo::split).
pub type SendHalf<'a> = crate::stream::SendHalf<'a, TcpStream>;
/// The receiving half of a [`TcpIo`] for a task of its own, from
/// [`into_split`](crate::stream::StreamIo::into_split).
pub type OwnedRecvHalf = crate::stream::OwnedRecvHalf<TcpStream>;
/// The sending half of a [`TcpIo`] for a task of its own, from
/// [`into_split`](crate::stream::StreamIo::into_split).
pub type OwnedSendHalf = crate::stream::OwnedSendHalf<TcpStream>;
