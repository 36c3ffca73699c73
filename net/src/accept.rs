//! Accepting a connection, whatever the listener: one poll of an `accept`
//! future (`TcpListener`'s and `UnixListener`'s), written once.
//!
//! The listener's receive cell is the one an accept parks on; the new
//! stream is registered with the reactor of the runtime thread that polls
//! the future (or, polled outside one, with the listener's).

use std::io;
use std::sync::Mutex;
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

/// Polls a listener's `poll_accept`: one accept kept in `polled` from one
/// call to the next (its reservation of the receive cell while it waits),
/// started anew once it is ready. The lock is held only for this call (no
/// await inside): a caller on another thread waits for the syscall, not
/// for a connection.
pub(crate) fn poll_kept_accept<Io, Addr, Stream>(
    polled: &Mutex<OpState>,
    listener: &Registration,
    cx: &mut Context<'_>,
    accept: impl FnMut() -> io::Result<(Io, Addr)>,
    register: impl FnOnce(Io, &Handle) -> io::Result<Stream>,
) -> Poll<io::Result<(Stream, Addr)>> {
    let mut op = polled
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let accepted = poll_accept(&mut op, listener, cx, accept, register);
    if accepted.is_ready() {
        // Done (its cell released): the next call is a new accept.
        *op = OpState::new();
    }
    accepted
}
