//! The `AsyncRead`/`AsyncWrite` impls of [`StreamIo`](crate::stream::StreamIo)
//! and its halves, for every stream type, written once: `futures-io`'s always, tokio's with the
//! `tokio-io` feature. Each type brings `poll_recv` or `poll_send` (and a
//! `stream` field to shut down); the traits only forward to them.
//!
//! A stream's tokio read receives straight into the `ReadBuf`'s memory
//! not initialized yet (`poll_recv_uninit`: the kernel writes it, nothing
//! zeroes it first, as tokio's own `TcpStream` does), which matters when
//! the caller hands a fresh `ReadBuf` over its buffer at every read, as
//! hyper-util's `TokioIo` does: zeroing 8 KiB per read was 1.9% of a hyper
//! server's CPU. The process pipes read the same way
//! ([`sys::read`](crate::sys::read) into a `RecvBuf`).

#[cfg(feature = "tokio-io")]
use std::io;
#[cfg(feature = "tokio-io")]
use std::task::Poll;

/// tokio's `poll_read` through a `poll_recv_uninit` into the unfilled,
/// possibly uninitialized part of `buf`.
#[cfg(feature = "tokio-io")]
#[inline(always)]
pub(crate) fn tokio_poll_read_uninit(
    buf: &mut tokio::io::ReadBuf<'_>,
    poll_recv_uninit: impl FnOnce(&mut [std::mem::MaybeUninit<u8>]) -> Poll<io::Result<usize>>,
) -> Poll<io::Result<()>> {
    // SAFETY: `unfilled_mut` asks that nothing de-initialize the memory:
    // only the kernel writes to it (`sys::RecvBuf`), initialized bytes.
    let unfilled = unsafe { buf.unfilled_mut() };
    let n = match poll_recv_uninit(unfilled) {
        Poll::Ready(Ok(n)) => n,
        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
        Poll::Pending => return Poll::Pending,
    };
    // SAFETY: the receive wrote its first `n` bytes (`recv` returned `n`).
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Poll::Ready(Ok(()))
}

/// `AsyncRead` for a type with `poll_recv(&mut self, cx, buf)`.
macro_rules! async_read {
    ($type:ty) => {
        impl<S: StreamSocket> futures_io::AsyncRead for $type {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().poll_recv(cx, buf)
            }
        }

        #[cfg(feature = "tokio-io")]
        impl<S: StreamSocket> tokio::io::AsyncRead for $type {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let this = self.get_mut();
                $crate::stream::io_traits::tokio_poll_read_uninit(buf, |buf| {
                    this.poll_recv_uninit(cx, buf)
                })
            }
        }
    };
}

/// `AsyncWrite` for a type with `poll_send(&mut self, cx, buf)`,
/// `poll_send_vectored(&mut self, cx, bufs)` and a `stream` field: flushing has nothing to do (every byte a send reports
/// has gone to the kernel); closing shuts down the sending side (the peer
/// reads end of stream; on a TCP connection the peer already reset, done
/// while bytes from before the reset wait to be read, which the reads then
/// deliver before the reset, even when the peer's end (FIN) came before
/// its reset; else `ConnectionReset`: `shut_down`. A Unix stream's close
/// succeeds whatever the peer did: its reset is the next read's error).
macro_rules! async_write {
    ($type:ty) => {
        impl<S: StreamSocket> futures_io::AsyncWrite for $type {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().poll_send(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().poll_send_vectored(cx, bufs)
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.stream.shut_down(std::net::Shutdown::Write))
            }
        }

        #[cfg(feature = "tokio-io")]
        impl<S: StreamSocket> tokio::io::AsyncWrite for $type {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().poll_send(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().poll_send_vectored(cx, bufs)
            }

            /// `true`: one `sendmsg` gathers the slices (hyper and other
            /// writers then skip copying them into one buffer).
            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.stream.shut_down(std::net::Shutdown::Write))
            }
        }
    };
}

pub(crate) use {async_read, async_write};
