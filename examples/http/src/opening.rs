//! A connection's stream, watched for what its time limits need
//! (`main.rs`'s `until_drained`): whether the client's first bytes have
//! settled how the connection opens.
//!
//! Under `--protocol auto`, hyper-util reads up to 24 bytes to tell
//! HTTP/1.1 from HTTP/2, and hyper's HTTP/2 server then waits for the
//! client's connection preface, both with no time limit (hyper's header
//! timeout starts only once an HTTP/1.1 connection is made): a client that
//! sends nothing, or a prefix of the preface, would hold its connection
//! for good. [`Watched`] tells the server when the opening is over:
//!
//! * at the first byte that is not the HTTP/2 preface's (`PRI * HTTP/2.0`
//!   ...): HTTP/1.1, whose header timeout is hyper's, or garbage, which
//!   hyper refuses;
//! * once HTTP/2's client connection preface has come whole: its 24 bytes
//!   and the SETTINGS frame after them (RFC 9113, 3.4);
//! * at the end of the stream.
//!
//! Once the opening is over a read costs one check of a `Cell`.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The first 24 bytes of HTTP/2's client connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An HTTP/2 frame's header: 3 bytes of payload length, then its type.
const FRAME_HEADER: usize = 9;
/// The type of the frame that ends the preface.
const SETTINGS: u8 = 4;

/// How far a connection's opening is: shared by its [`Watched`] stream and
/// the task that keeps its time limits.
#[derive(Debug)]
pub struct Opening(Cell<State>);

#[derive(Clone, Copy, Debug)]
enum State {
    /// Every byte so far is HTTP/2's preface: `received` of them, and the
    /// SETTINGS frame's payload length as far as its header has come.
    Preface { received: usize, settings: usize },
    /// Over.
    Settled,
}

impl Opening {
    /// A connection's opening, before its first byte: `over` for one
    /// whose protocol needs no telling (HTTP/1.1 only, or chosen by ALPN
    /// as HTTP/1.1).
    pub fn new(over: bool) -> Rc<Opening> {
        Rc::new(Opening(Cell::new(if over {
            State::Settled
        } else {
            State::Preface {
                received: 0,
                settings: 0,
            }
        })))
    }

    /// Whether the first bytes have settled how the connection opens.
    pub fn is_over(&self) -> bool {
        matches!(self.0.get(), State::Settled)
    }

    /// Takes `bytes`, the next ones received (none: the end of the stream).
    fn received(&self, bytes: &[u8]) {
        let State::Preface {
            mut received,
            mut settings,
        } = self.0.get()
        else {
            return;
        };
        if bytes.is_empty() {
            return self.0.set(State::Settled);
        }
        for &byte in bytes {
            let of_preface = match received {
                n if n < PREFACE.len() => byte == PREFACE[n],
                n if n < PREFACE.len() + 3 => {
                    settings = settings << 8 | usize::from(byte);
                    true
                }
                n if n == PREFACE.len() + 3 => byte == SETTINGS,
                _ => true,
            };
            received += 1;
            if !of_preface || received == PREFACE.len() + FRAME_HEADER + settings {
                return self.0.set(State::Settled);
            }
        }
        self.0.set(State::Preface { received, settings });
    }
}

/// A stream that tells its connection's [`Opening`] what it reads.
#[derive(Debug)]
pub struct Watched<I> {
    io: I,
    opening: Rc<Opening>,
}

impl<I> Watched<I> {
    pub fn new(io: I, opening: Rc<Opening>) -> Watched<I> {
        Watched { io, opening }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && !self.opening.is_over() {
            self.opening.received(&buf.filled()[before..]);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HTTP/2's preface and an empty SETTINGS frame, then a request's.
    const H2_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0\0\0\x06\x04";

    /// HTTP/2's opening is over once its SETTINGS frame has come whole,
    /// however the bytes are split, not before.
    #[test]
    fn http2_opens_with_its_settings_frame() {
        let settings_end = PREFACE.len() + FRAME_HEADER;
        for split in 1..settings_end + 3 {
            let opening = Opening::new(false);
            let mut received = 0;
            for chunk in H2_START.chunks(split) {
                assert_eq!(
                    opening.is_over(),
                    received >= settings_end,
                    "{received} bytes in chunks of {split}"
                );
                opening.received(chunk);
                received += chunk.len();
            }
            assert!(opening.is_over(), "chunks of {split}");
        }
        for received in 1..settings_end {
            let opening = Opening::new(false);
            opening.received(&H2_START[..received]);
            assert!(!opening.is_over(), "{received} bytes");
        }
        // A SETTINGS frame with a payload (two settings: 12 bytes).
        let opening = Opening::new(false);
        opening.received(&PREFACE[..]);
        opening.received(b"\0\0\x0c\x04\0\0\0\0\0");
        opening.received(&[0; 11]);
        assert!(!opening.is_over());
        opening.received(&[0]);
        assert!(opening.is_over());
    }

    /// Any byte off HTTP/2's preface ends the opening (HTTP/1.1, or a
    /// client hyper refuses), as does the end of the stream.
    #[test]
    fn a_byte_off_the_preface_or_the_end_ends_the_opening() {
        for start in [
            &b"G"[..],
            b"PRI * HTTP/1.1",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x01",
        ] {
            let opening = Opening::new(false);
            opening.received(start);
            assert!(opening.is_over(), "{start:?}");
        }
        let opening = Opening::new(false);
        opening.received(b"PRI");
        opening.received(b"");
        assert!(opening.is_over());
        assert!(Opening::new(true).is_over());
    }
}
