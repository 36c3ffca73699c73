//! Accepting a connection, whatever the listener: one poll of an `accept`
//! future (`TcpListener`'s and `UnixListener`'s), written once.
//!
//! The listener's receive cell is the one an accept parks on; the new
//! stream is registered with the reactor of the runtime thread that polls
//! the future (or, polled outside one, with the listener's).

use std::io;
use std::task::{Context, Poll};

use cellio_reactor::{Handle, Registration};

use crate::op::{OpState, Side};

/// Polls an accept: `accept` is the non-blocking `accept(2)` (`WouldBlock`
/// parks on the listener's receive cell), `register` turns the accepted
/// socket into a registered stream.
#[inline]
pub(crate) fn poll_accept<Io, Addr, Stream>(
    op: &mut OpState,
    listener: &Registration,
    cx: &mut Context<'_>,
    mut accept: impl FnMut() -> io::Result<(Io, Addr)>,
    register: impl FnOnce(Io, &Handle) -> io::Result<Stream>,
) -> Poll<io::Result<(Stream, Addr)>> {
    let accepted = op.poll(Side::rx(listener), Some(cx.waker()), || {
        Ok((accept()?, false))
    });
    accepted.map(|result| {
        let (io, peer) = result?;
        let handle = Handle::current().unwrap_or_else(|_| listener.handle());
        Ok((register(io, &handle)?, peer))
    })
}
