//! The `futures-io` read and write traits (and tokio's, with the `tokio-io`
//! feature) of [`File`](super::File) and of the standard streams built on it
//! (`crate::io`), written once: each type says how to reach its `File`,
//! and every method forwards to the file's poll methods. Closing (tokio:
//! shutting down) flushes; the file closes when dropped.

#[cfg(feature = "tokio-io")]
use std::io;
#[cfg(feature = "tokio-io")]
use std::task::{ready, Context, Poll};

#[cfg(feature = "tokio-io")]
use super::File;

/// `futures-io`'s `AsyncRead` (and tokio's) for `$type`, whose `$file`
/// (an expression of `$this: &mut $type`) is its `&mut File`.
macro_rules! file_read_traits {
    ($type:ty, |$this:ident| $file:expr) => {
        impl futures_io::AsyncRead for $type {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let $this = self.get_mut();
                $crate::fs::File::poll_read($file, cx, buf)
            }
        }

        /// With the `tokio-io` feature: tokio's `AsyncRead` (the bytes are
        /// copied from the file's buffer into the unfilled part of the
        /// `ReadBuf`, initialized or not: nothing zeroes it first).
        #[cfg(feature = "tokio-io")]
        impl tokio::io::AsyncRead for $type {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let $this = self.get_mut();
                $crate::fs::traits::tokio_poll_read($file, cx, buf)
            }
        }
    };
}

/// `futures-io`'s `AsyncWrite` (and tokio's) for `$type`, as
/// [`file_read_traits`].
macro_rules! file_write_traits {
    ($type:ty, |$this:ident| $file:expr) => {
        impl futures_io::AsyncWrite for $type {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let $this = self.get_mut();
                $crate::fs::File::poll_write($file, cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let $this = self.get_mut();
                $crate::fs::File::poll_flush($file, cx)
            }

            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let $this = self.get_mut();
                $crate::fs::File::poll_flush($file, cx)
            }
        }

        /// With the `tokio-io` feature: tokio's `AsyncWrite`.
        #[cfg(feature = "tokio-io")]
        impl tokio::io::AsyncWrite for $type {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let $this = self.get_mut();
                $crate::fs::File::poll_write($file, cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let $this = self.get_mut();
                $crate::fs::File::poll_flush($file, cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let $this = self.get_mut();
                $crate::fs::File::poll_flush($file, cx)
            }
        }
    };
}

pub(crate) use {file_read_traits, file_write_traits};

/// tokio's `poll_read` on a [`File`]: the bytes copied from the file's
/// buffer straight into the unfilled part of `buf` (initialized or not:
/// nothing zeroes it first), up to what it has room for.
#[cfg(feature = "tokio-io")]
pub(crate) fn tokio_poll_read(
    file: &mut File,
    cx: &mut Context<'_>,
    buf: &mut tokio::io::ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    ready!(file.poll_buffered(cx, buf.remaining()))?;
    file.take_buffered(buf.remaining(), |bytes| buf.put_slice(bytes));
    Poll::Ready(Ok(()))
}
