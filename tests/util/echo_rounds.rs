//! The client half of the zero-allocation echo tests (`zero_alloc_echo`,
//! `zero_alloc_tcp_io`, `zero_alloc_unix`): message sizes and the rounds
//! that drive a server's receives through both the parked and the
//! synchronous path, over TCP or Unix streams.

use std::future::Future;
use std::io;

use cellio::unix::UnixStream;
use cellio::{TcpListener, TcpStream};

/// The two calls a client makes, on either kind of stream.
pub trait EchoStream {
    fn send_all<'a>(&'a self, buf: &'a [u8]) -> impl Future<Output = io::Result<()>> + 'a;
    fn recv_exact<'a>(&'a self, buf: &'a mut [u8]) -> impl Future<Output = io::Result<()>> + 'a;
}

impl EchoStream for TcpStream {
    fn send_all<'a>(&'a self, buf: &'a [u8]) -> impl Future<Output = io::Result<()>> + 'a {
        TcpStream::send_all(self, buf)
    }
    fn recv_exact<'a>(&'a self, buf: &'a mut [u8]) -> impl Future<Output = io::Result<()>> + 'a {
        TcpStream::recv_exact(self, buf)
    }
}

impl EchoStream for UnixStream {
    fn send_all<'a>(&'a self, buf: &'a [u8]) -> impl Future<Output = io::Result<()>> + 'a {
        UnixStream::send_all(self, buf)
    }
    fn recv_exact<'a>(&'a self, buf: &'a mut [u8]) -> impl Future<Output = io::Result<()>> + 'a {
        UnixStream::recv_exact(self, buf)
    }
}

/// Echo connections per test.
pub const CONNECTIONS: usize = 8;
/// Message size; the servers' receive buffers hold exactly one.
pub const MESSAGE: usize = 64;

/// Client side: `rounds` rounds of ping-pong (the server's `recv` parks,
/// waiting for us), then `rounds` rounds of two messages sent back to back
/// (the server's first `recv` takes one and its second finds the other
/// already buffered: the synchronous path).
pub async fn client(stream: &impl EchoStream, seed: u8, rounds: usize) -> io::Result<()> {
    let mut out = [0u8; 2 * MESSAGE];
    let mut back = [0u8; 2 * MESSAGE];
    for round in 0..rounds {
        fill(&mut out[..MESSAGE], seed, round);
        stream.send_all(&out[..MESSAGE]).await?;
        stream.recv_exact(&mut back[..MESSAGE]).await?;
        assert_eq!(out[..MESSAGE], back[..MESSAGE], "echo mismatch");
    }
    for round in 0..rounds {
        fill(&mut out, seed, round);
        stream.send_all(&out[..MESSAGE]).await?;
        stream.send_all(&out[MESSAGE..]).await?;
        stream.recv_exact(&mut back).await?;
        assert_eq!(out, back, "echo mismatch");
    }
    Ok(())
}

fn fill(buf: &mut [u8], seed: u8, round: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = seed ^ (round as u8).wrapping_mul(31) ^ (i as u8);
    }
}

/// Server side: echoes until the peer closes. The buffer holds exactly one
/// message, so when two are queued the second `recv` finds its data
/// already buffered. `stream` is the stream or a shared handle to it.
// Not for the tests that serve through `TcpIo` or Unix streams.
#[allow(dead_code)]
pub async fn echo<S: std::borrow::Borrow<TcpStream>>(stream: S) -> io::Result<()> {
    let stream = stream.borrow();
    let mut buf = [0u8; MESSAGE];
    loop {
        let n = stream.recv(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.send_all(&buf[..n]).await?;
    }
}

/// Opens [`CONNECTIONS`] connections to `listener` (bound by the caller,
/// inside the runtime): `(client, server)` pairs.
// Not for `zero_alloc_unix`, which connects through a path.
#[allow(dead_code)]
pub async fn connections(listener: &TcpListener) -> Vec<(TcpStream, TcpStream)> {
    let addr = listener.local_addr().unwrap();
    let mut pairs = Vec::new();
    for _ in 0..CONNECTIONS {
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        pairs.push((client, server));
    }
    pairs
}

/// The server sides an echo test serves, shared with the test (which
/// reads their `stats()`), and the clients that drive them.
#[allow(dead_code)] // Only for the tests that serve with spawned `Arc` tasks.
pub struct Served {
    pub clients: Vec<TcpStream>,
    pub servers: Vec<std::sync::Arc<TcpStream>>,
    pub tasks: Vec<cellio::JoinHandle<io::Result<()>>>,
}

/// Opens [`CONNECTIONS`] connections to `listener` and spawns `serve` on
/// each server side, which the test keeps a handle to.
#[allow(dead_code)]
pub async fn spawn_servers<F, Fut>(listener: &TcpListener, serve: F) -> Served
where
    F: Fn(std::sync::Arc<TcpStream>) -> Fut,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    let mut served = Served {
        clients: Vec::new(),
        servers: Vec::new(),
        tasks: Vec::new(),
    };
    for (client, server) in connections(listener).await {
        let server = std::sync::Arc::new(server);
        served.tasks.push(cellio::spawn(serve(server.clone())));
        served.servers.push(server);
        served.clients.push(client);
    }
    served
}

/// [`client`]'s `rounds` on every client in turn, each with its own seed.
pub async fn all_clients(clients: &[impl EchoStream], rounds: usize) {
    for (i, stream) in clients.iter().enumerate() {
        client(stream, i as u8, rounds).await.unwrap();
    }
}
