//! UDP: [`UdpSocket`] and its operation futures, and [`UdpIo`], a socket
//! that one task drives alone through `&mut self`, keeping its cells
//! reserved (and, on its own worker, confined) between datagrams.
//!
//! A UDP socket is driven exactly as a TCP stream is (`crate::op`): one
//! receive cell and one send cell in its reactor slot, operations that try
//! the syscall first and park on the cell only on `EAGAIN`. Two things
//! differ, both because a datagram is a message, not a stretch of a
//! stream:
//!
//! * **No receive ever proves the socket drained.** A TCP read that comes
//!   back short leaves nothing behind, so the next receive may park without
//!   a syscall; a datagram says nothing about the next one. Every receive
//!   attempts, and parks only after `EAGAIN`.
//! * **A datagram that does not fit is an error, not a short read.** The
//!   kernel discards what does not fit the buffer; a receive that lost bytes
//!   that way fails with `ErrorKind::InvalidData` (its first `buf.len()`
//!   bytes are in `buf`), where the BSD socket API (and `std`, and tokio)
//!   report the truncated length as if nothing were missing. A buffer of
//!   [`MAX_DATAGRAM`] bytes holds any UDP datagram.
//!
//! Sends never split a datagram: one either goes whole or fails (`EMSGSIZE`
//! for one larger than the path allows). Write interest is armed only when a
//! send first finds the socket's buffer full, as for TCP.

mod io;
mod ops;
mod socket;

pub use io::UdpIo;
pub use ops::{Recv, RecvFrom, Send, SendTo};
pub use socket::{BindOptions, UdpSocket};

/// The largest UDP payload: 65 527 bytes over IPv6 (65 535 less the 8-byte
/// UDP header), 65 507 over IPv4 (less the 20-byte IP header too). A
/// receive buffer this long never truncates (IPv6 jumbograms aside).
pub const MAX_DATAGRAM: usize = 65_527;
