//! TCP: [`TcpListener`], [`TcpStream`] and their operation futures.

mod io;
mod listener;
mod stream;

pub use io::{Recv, RecvExact, Send, SendAll};
pub use listener::{Accept, ListenOptions, TcpListener};
pub use stream::TcpStream;
