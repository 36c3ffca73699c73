//! Waiting for a non-blocking `connect(2)` to resolve, for any stream: the
//! send cell's protocol (`crate::op`) with an attempt that asks the socket
//! whether it is connected yet.

use std::io;

use crate::op::{Attempt, OpState, Side};
use crate::stream::StreamSocket;

/// Waits on `stream`'s send cell until its non-blocking connect resolves:
/// `Ok` once it is connected, the connect's error (`SO_ERROR`) if it
/// failed.
pub(crate) async fn wait_connected<S: StreamSocket>(stream: &S) -> io::Result<()> {
    let registration = stream.registration();
    let mut op = OpStateGuard {
        cell: registration.tx(),
        state: OpState::new(),
    };
    let socket = socket2::SockRef::from(stream);
    std::future::poll_fn(|cx| {
        op.state.poll(
            Side::tx(registration),
            Some(cx.waker()),
            || -> Attempt<()> {
                if let Some(e) = socket.take_error()? {
                    return Err(e);
                }
                match socket.peer_addr() {
                    Ok(_) => Ok(((), false)),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(e) => Err(e),
                }
            },
        )
    })
    .await
}

/// Releases the reservation of an operation written as an `async fn` if its
/// future is dropped mid-flight.
struct OpStateGuard<'a> {
    cell: &'a cellio_reactor::OpCell,
    state: OpState,
}

impl Drop for OpStateGuard<'_> {
    fn drop(&mut self) {
        let cell = self.cell;
        self.state.cancel(|| cell);
    }
}
