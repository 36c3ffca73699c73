//! TCP: [`TcpListener`], [`TcpStream`] and their operation futures, and
//! [`TcpIo`], a stream behind poll methods.

mod io;
mod listener;
mod stream;
mod tcp_io;

pub use io::{Recv, RecvExact, Send, SendAll};
pub use listener::{Accept, ListenOptions, TcpListener};
pub use stream::TcpStream;
pub use tcp_io::TcpIo;
