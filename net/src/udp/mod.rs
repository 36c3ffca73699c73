//! UDP: [`UdpSocket`] and its operation futures, and [`UdpIo`], a socket
//! that one task drives alone through `&mut self`, keeping its cells
//! reserved (and, on its own worker, confined) between datagrams.
//!
//! A UDP socket runs the datagram futures and protocol of
//! [`crate::datagram`]: a receive never proves the socket drained, and **a
//! datagram that does not fit the buffer is an error**
//! (`ErrorKind::InvalidData`), not a short read. A buffer of
//! [`MAX_DATAGRAM`] bytes holds any UDP datagram. These names are the
//! generic futures for a [`UdpSocket`].
//!
//! For bulk flows on Linux, a [`SendBatch`] sends a run of datagrams as
//! one message the kernel segments
//! ([`push_segmented`](SendBatch::push_segmented), `UDP_SEGMENT`), and a
//! socket with [receive offload](UdpSocket::enable_receive_offload)
//! (`UDP_GRO`) takes one sender's datagrams merged into one buffer, which a
//! [`RecvBatch`] of [`MAX_MERGED`]-byte slots splits back into them.

mod multicast;
mod socket;

pub use socket::{BindOptions, UdpSocket};

/// A [`UdpSocket`] one task drives alone through `&mut self`, keeping its
/// cells reserved (and, on its own worker, confined) between datagrams; see
/// [`DatagramIo`](crate::datagram::DatagramIo), whose docs have an
/// example.
pub type UdpIo = crate::datagram::DatagramIo<UdpSocket>;

/// Future of [`UdpSocket::recv_from`]: one datagram and its sender.
pub type RecvFrom<'a> = crate::datagram::RecvFrom<'a, UdpSocket>;
/// Future of [`UdpSocket::peek_from`]: the next datagram and its sender, left
/// queued.
pub type PeekFrom<'a> = crate::datagram::PeekFrom<'a, UdpSocket>;
/// Future of [`UdpSocket::peek_sender`]: the next datagram's sender, the
/// datagram left queued.
pub type PeekSender<'a> = crate::datagram::PeekSender<'a, UdpSocket>;
/// Future of [`UdpSocket::recv`]: one datagram's length.
pub type Recv<'a> = crate::datagram::Recv<'a, UdpSocket>;
/// Future of [`UdpSocket::send_to`]: the datagram's length, once sent.
pub type SendTo<'a> = crate::datagram::SendTo<'a, UdpSocket>;
/// Future of [`UdpSocket::send`]: the datagram's length, once sent.
pub type Send<'a> = crate::datagram::Send<'a, UdpSocket>;

/// Buffers for [`UdpSocket::recv_many`]: up to
/// [`MAX_BATCH`] datagrams per syscall.
pub type RecvBatch = crate::datagram::RecvBatch<UdpSocket>;
/// Datagrams queued for [`UdpSocket::send_many`], each with its
/// destination.
pub type SendBatch = crate::datagram::SendBatch<UdpSocket>;
/// Future of [`UdpSocket::recv_many`]: how many datagrams arrived.
pub type RecvMany<'a> = crate::datagram::RecvMany<'a, UdpSocket>;
/// Future of [`UdpSocket::send_many`]: every queued datagram sent.
pub type SendMany<'a> = crate::datagram::SendMany<'a, UdpSocket>;
pub use crate::datagram::{MAX_BATCH, MAX_MERGED, MAX_SEGMENTED_BYTES, MAX_SEGMENTS};

/// The largest UDP payload: 65 527 bytes over IPv6 (65 535 less the 8-byte
/// UDP header), 65 507 over IPv4 (less the 20-byte IP header too). A
/// receive buffer this long never truncates (IPv6 jumbograms aside).
pub const MAX_DATAGRAM: usize = 65_527;
