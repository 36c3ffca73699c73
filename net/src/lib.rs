//! cellio's sockets. Each socket owns exactly one receive cell and one send
//! cell in its reactor slot; its operations are small futures that complete
//! on their first poll when the kernel already has what they need, and park
//! on the cell otherwise.
//!
//! * [`TcpListener`] — bind with `SO_REUSEADDR` and a backlog, `accept`.
//! * [`TcpStream`] — `connect`, `recv`, `send`, `send_all`, `recv_exact`,
//!   `shutdown`, options and addresses; [`lookup_host`] (host names
//!   resolve off the worker).
//! * [`TcpSocket`] — options set before connecting or listening (a local
//!   address, buffer sizes for the handshake, `SO_REUSEPORT`).
//! * [`TcpIo`] — a stream behind poll methods and the `futures-io`
//!   `AsyncRead`/`AsyncWrite` traits, keeping its cells reserved between
//!   operations.
//! * [`copy_bidirectional`] and [`copy()`] — a proxy's core: bytes from
//!   stream to stream (any `futures-io` pair: `TcpIo`, `UnixIo`), with
//!   the buffers inside the future, so nothing is allocated; on Linux,
//!   [`splice_bidirectional`] moves a stream pair's bytes through the
//!   kernel without copying them into user space.
//! * [`UdpSocket`] — `bind`, `recv_from`/`send_to`, and `connect` with
//!   `recv`/`send`; a datagram never arrives shortened without an error.
//! * [`unix`] — Unix-domain streams: [`UnixListener`](unix::UnixListener),
//!   [`UnixStream`](unix::UnixStream) and [`UnixIo`](unix::UnixIo), the
//!   same operations and cells as TCP's, for peers on the same machine.
//! * [`AsyncFd`] — any other non-blocking descriptor (a pipe, an
//!   `eventfd`, another library's socket) driven by the reactor.
//! * [`process`] — child processes ([`process::Command`],
//!   [`process::Child`]): exits and piped standard streams awaited on the
//!   reactor.
//! * [`signal`] — Unix signals as futures ([`signal::ctrl_c`],
//!   [`signal::Signal`]), driven by the reactor: no signal thread.
//!
//! Operations must run inside a cellio runtime (`cellio_runtime::Runtime`),
//! whose reactor drives the sockets.
//!
//! # Example: an echo loop
//!
//! ```no_run
//! use cellio_net::TcpStream;
//!
//! async fn echo(stream: TcpStream) -> std::io::Result<()> {
//!     let mut buf = [0u8; 4096];
//!     loop {
//!         let n = stream.recv(&mut buf).await?;
//!         if n == 0 {
//!             return Ok(()); // the peer closed
//!         }
//!         stream.send_all(&buf[..n]).await?;
//!     }
//! }
//! ```
#![warn(missing_docs)]

mod accept;
mod async_fd;
mod bind;
mod copy;
pub mod datagram;
mod held;
mod op;
pub mod process;
mod raw_addr;
mod ready;
mod registered;
mod resolve;
pub mod signal;
mod stats;
pub mod stream;
mod sys;
pub mod tcp;
pub mod udp;
pub mod unix;

pub use async_fd::{AsyncFd, ReadWith, WithIo, WriteWith};
pub use copy::{
    copy, copy_bidirectional, copy_bidirectional_with_buffers, copy_with_buffer, OneWayCopy,
    TwoWayCopy, COPY_BUFFER_SIZE,
};
pub use ready::{Interest, Readable, Ready, Writable};
pub use resolve::{lookup_host, ToSocketAddrs, LOOKUP_KEEP_ALIVE, MAX_LOOKUP_THREADS};
pub use stats::OpStats;
#[cfg(target_os = "linux")]
pub use stream::{splice_bidirectional, splice_bidirectional_auto, SpliceBidirectional};
pub use tcp::{ListenOptions, TcpIo, TcpListener, TcpSocket, TcpStream};
pub use udp::{UdpIo, UdpSocket};
