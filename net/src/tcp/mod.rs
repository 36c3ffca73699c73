//! TCP: [`TcpListener`], [`TcpStream`] and their operation futures, and
//! [`TcpIo`], a stream behind poll methods, with its halves [`RecvHalf`]
//! and [`SendHalf`].

mod io;
mod io_halves;
mod io_traits;
mod listener;
mod stream;
mod tcp_io;

pub use io::{Recv, RecvExact, Send, SendAll};
pub use io_halves::{RecvHalf, SendHalf};
pub use listener::{Accept, ListenOptions, TcpListener};
pub use stream::TcpStream;
pub use tcp_io::TcpIo;
