//! A connection's stream, watched for what its time limits and its
//! shutdown need (`main.rs`'s `until_drained`): whether the client's first
//! bytes have come and settled how the connection opens, and when data
//! last moved.
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
//! A connection whose protocol needs no telling (HTTP/1.1) is opened by
//! its first byte, or the end of the stream: until then its client has
//! begun no request, which a shutdown needs to know (a connection accepted
//! just before it gets a few seconds to send its first request: `main.rs`).
//!
//! Once the opening is over a read costs one check of a `Cell`, and with
//! an idle limit (`--idle-timeout-ms`) a read or write that moves data a
//! clock read: hyper has no timer on a request's body, nor on a response
//! the client does not take.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The first 24 bytes of HTTP/2's client connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An HTTP/2 frame's header: 3 bytes of payload length, then its type.
const FRAME_HEADER: usize = 9;
/// The type of the frame that ends the preface.
const SETTINGS: u8 = 4;

/// How far a connection's opening is, and when data last moved: shared by
/// its [`Watched`] stream and the task that keeps its time limits.
#[derive(Debug)]
pub struct Watch {
    opening: Cell<State>,
    /// When a read or write last moved data (from the start: when the
    /// connection began); `None` if not kept (no idle limit).
    moved: Cell<Option<Instant>>,
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Nothing received yet, on a connection whose protocol needs no
    /// telling.
    Silent,
    /// Every byte so far is HTTP/2's preface: `received` of them, and the
    /// SETTINGS frame's payload length as far as its header has come.
    Preface { received: usize, settings: usize },
    /// Over.
    Settled,
}

impl Watch {
    /// A connection's watch, before its first byte: `known` for one whose
    /// protocol needs no telling (HTTP/1.1 only, or chosen by ALPN as
    /// HTTP/1.1); `idle`: whether to keep when data last moved.
    pub fn new(known: bool, idle: bool) -> Rc<Watch> {
        let opening = if known {
            State::Silent
        } else {
            State::Preface {
                received: 0,
                settings: 0,
            }
        };
        Rc::new(Watch {
            opening: Cell::new(opening),
            moved: Cell::new(idle.then(cellio::runtime::time::now)),
        })
    }

    /// Whether the connection is open: its first bytes have come and, if
    /// they tell its protocol, settled it (or the stream ended). Until
    /// then its client has begun no request.
    pub fn is_opened(&self) -> bool {
        matches!(self.opening.get(), State::Settled)
    }

    /// Whether the first bytes are still telling the protocol: some of
    /// HTTP/2's preface, or none yet where they will tell (the opening
    /// hyper has no timer on).
    pub fn is_telling(&self) -> bool {
        matches!(self.opening.get(), State::Preface { .. })
    }

    /// When a read or write last moved data (or the connection began);
    /// `None` unless made with `idle`.
    pub fn moved(&self) -> Option<Instant> {
        self.moved.get()
    }

    /// Notes that `n` bytes were read or written.
    fn moving(&self, n: usize) {
        if n > 0 && self.moved.get().is_some() {
            self.moved.set(Some(cellio::runtime::time::now()));
        }
    }

    /// Takes `bytes`, the next ones received (none: the end of the stream).
    fn received(&self, bytes: &[u8]) {
        let (mut received, mut settings) = match self.opening.get() {
            State::Preface { received, settings } => (received, settings),
            State::Silent => return self.opening.set(State::Settled),
            State::Settled => return,
        };
        if bytes.is_empty() {
            return self.opening.set(State::Settled);
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
                return self.opening.set(State::Settled);
            }
        }
        self.opening.set(State::Preface { received, settings });
    }
}

/// A stream that tells its connection's [`Watch`] what it reads and
/// writes.
#[derive(Debug)]
pub struct Watched<I> {
    io: I,
    watch: Rc<Watch>,
}

impl<I> Watched<I> {
    pub fn new(io: I, watch: Rc<Watch>) -> Watched<I> {
        Watched { io, watch }
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
        if let Poll::Ready(Ok(())) = polled {
            let received = &buf.filled()[before..];
            if !self.watch.is_opened() {
                self.watch.received(received);
            }
            self.watch.moving(received.len());
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
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.watch.moving(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.watch.moving(n);
        }
        polled
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
            let opening = Watch::new(false, false);
            let mut received = 0;
            for chunk in H2_START.chunks(split) {
                assert_eq!(
                    opening.is_opened(),
                    received >= settings_end,
                    "{received} bytes in chunks of {split}"
                );
                opening.received(chunk);
                received += chunk.len();
            }
            assert!(opening.is_opened(), "chunks of {split}");
        }
        for received in 1..settings_end {
            let opening = Watch::new(false, false);
            opening.received(&H2_START[..received]);
            assert!(!opening.is_opened(), "{received} bytes");
        }
        // A SETTINGS frame with a payload (two settings: 12 bytes).
        let opening = Watch::new(false, false);
        opening.received(&PREFACE[..]);
        opening.received(b"\0\0\x0c\x04\0\0\0\0\0");
        opening.received(&[0; 11]);
        assert!(!opening.is_opened());
        opening.received(&[0]);
        assert!(opening.is_opened());
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
            let opening = Watch::new(false, false);
            opening.received(start);
            assert!(opening.is_opened(), "{start:?}");
        }
        let opening = Watch::new(false, false);
        opening.received(b"PRI");
        opening.received(b"");
        assert!(opening.is_opened());
    }

    /// A connection whose protocol needs no telling opens at its first
    /// byte, or the end of the stream, and is never telling.
    #[test]
    fn a_known_protocol_opens_at_the_first_byte_or_the_end() {
        for first in [&b"G"[..], b""] {
            let opening = Watch::new(true, false);
            assert!(!opening.is_opened() && !opening.is_telling());
            opening.received(first);
            assert!(opening.is_opened() && !opening.is_telling(), "{first:?}");
        }
        let telling = Watch::new(false, false);
        assert!(telling.is_telling());
        telling.received(b"G");
        assert!(!telling.is_telling());
    }
}
