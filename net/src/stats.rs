//! Per-socket counters of how operations completed.

use cellio_reactor::Registration;

/// How a socket's operations completed: on their first attempt, without the
/// reactor (`*_sync`), or after parking on the socket's cell and being woken
/// (`*_parked`). Failed operations are not counted.
///
/// The counts are exact when one task at a time uses each direction (the
/// usual case: a task that awaits its receives, another its sends). They
/// are approximate when two threads complete operations of one direction at
/// once (say two sends on one shared stream): each count is a plain load and
/// store, not a locked instruction on every operation, so one of two
/// simultaneous counts may be lost.
///
/// A server whose receives are mostly `recv_parked` is waiting on its peers;
/// mostly `recv_sync` means data is usually already buffered when it asks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Receives (or accepts, or `readable()` waits) that completed on the
    /// first attempt.
    pub recv_sync: u64,
    /// Receives (or accepts, or `readable()` waits) that completed after
    /// parking.
    pub recv_parked: u64,
    /// Sends (or connects, or `writable()` waits) that completed on the
    /// first attempt.
    pub send_sync: u64,
    /// Sends (or connects, or `writable()` waits) that completed after
    /// parking.
    pub send_parked: u64,
}

impl OpStats {
    pub(crate) fn of(registration: &Registration) -> Self {
        Self {
            recv_sync: registration.rx_completions().sync(),
            recv_parked: registration.rx_completions().parked(),
            send_sync: registration.tx_completions().sync(),
            send_parked: registration.tx_completions().parked(),
        }
    }
}
