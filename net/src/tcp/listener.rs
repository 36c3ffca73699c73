//! [`TcpListener`]: a listening socket whose `accept` parks on its receive
//! cell.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use cellio_reactor::{Handle, Registration};
use socket2::{Protocol, Socket, Type};

use crate::accept::poll_accept;
use crate::bind::{bound_socket, each_address};
use crate::op::OpState;
use crate::tcp::TcpStream;

/// How [`TcpListener::bind_with`] sets up the socket.
///
/// ```
/// let options = cellio_net::ListenOptions { backlog: 4096, ..Default::default() };
/// assert!(!options.reuse_port);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenOptions {
    /// Length of the kernel's queue of completed connections not yet
    /// accepted (`listen(2)`'s backlog; the kernel caps it at
    /// `net.core.somaxconn`). Default: 1024.
    pub backlog: i32,
    /// `SO_REUSEADDR`: bind even while old connections on the port linger
    /// in `TIME_WAIT`. Default: `true`.
    pub reuse_address: bool,
    /// `SO_REUSEPORT`: let several listeners (one per worker thread) bind
    /// the same port; the kernel spreads connections among them (on
    /// FreeBSD through `SO_REUSEPORT_LB`, set with it; macOS does not
    /// spread them, so one listener gets them all). Default: `false`.
    pub reuse_port: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        Self {
            backlog: 1024,
            reuse_address: true,
            reuse_port: false,
        }
    }
}

/// A TCP listening socket driven by a cellio reactor.
///
/// # Examples
///
/// ```no_run
/// use cellio_net::TcpListener;
///
/// # fn main() -> std::io::Result<()> {
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     println!("listening on {}", listener.local_addr()?);
///     let (stream, peer) = listener.accept().await?;
///     println!("{peer} connected");
///     # drop(stream);
///     Ok(())
/// })
/// # }
/// ```
pub struct TcpListener {
    io: mio::net::TcpListener,
    registration: Registration,
    /// The accept that [`poll_accept`](TcpListener::poll_accept) runs
    /// from one call to the next (its reservation of the receive cell,
    /// while it waits). `accept()`'s futures never touch it.
    polled_accept: Mutex<OpState>,
}

impl TcpListener {
    /// Binds to the first address of `addr` that works, with the default
    /// [`ListenOptions`] (backlog 1024, `SO_REUSEADDR`).
    ///
    /// # Notes
    ///
    /// An address already in use fails with `ErrorKind::AddrInUse`. Must be
    /// called inside a cellio runtime, on a worker (in `block_on`'s future
    /// or a task): in a `spawn_blocking` job, whose thread has no reactor,
    /// it fails; bind a `std` listener there and wrap it with
    /// [`from_std`](Self::from_std) in the task that awaits the job.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        Self::bind_with(addr, ListenOptions::default())
    }

    /// Binds with explicit [`ListenOptions`].
    pub fn bind_with<A: ToSocketAddrs>(addr: A, options: ListenOptions) -> io::Result<TcpListener> {
        let handle = Handle::current()?;
        each_address(addr, |addr| {
            let std: std::net::TcpListener = listen_socket(addr, &options)?.into();
            Self::register(mio::net::TcpListener::from_std(std), &handle)
        })
    }

    /// Wraps a bound and listening `std` listener, registering it with the
    /// current runtime's reactor. The listener is switched to non-blocking
    /// mode. Fails outside a runtime's workers, as [`bind`](Self::bind)
    /// does (in a `spawn_blocking` job too).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Self::register(
            mio::net::TcpListener::from_std(listener),
            &Handle::current()?,
        )
    }

    fn register(mut io: mio::net::TcpListener, handle: &Handle) -> io::Result<Self> {
        // Accepting only ever waits for readability.
        let registration = handle.register_readable(&mut io)?;
        Ok(Self {
            io,
            registration,
            polled_accept: Mutex::new(OpState::new()),
        })
    }

    /// Accepts a connection. The new stream is registered with the reactor
    /// of the runtime thread that polls the future.
    ///
    /// # Notes
    ///
    /// Cancel-safe: a dropped `Accept` leaves pending connections queued.
    /// Errors such as `EMFILE` (too many open files) are returned as they
    /// are; the listener stays usable.
    ///
    /// One accept may wait at a time per listener (it parks on the
    /// listener's one receive cell): a second `accept` while one waits, from
    /// another task or worker through an `Arc<TcpListener>`, fails at once
    /// with `ErrorKind::ResourceBusy`, and does not queue. tokio lets any
    /// number of tasks await `accept` on one listener; here, run one accept
    /// loop and hand each connection out (`spawn`, or `spawn_on` another
    /// worker), or give each worker a listener of its own bound with
    /// [`ListenOptions::reuse_port`] (the guide's "Using every core"). Do
    /// not retry `ResourceBusy` in a loop: each refusal spends a unit of the
    /// task's cooperative budget, so such a loop does let the worker's other
    /// tasks run, but it spins until the waiting accept ends.
    pub fn accept(&self) -> Accept<'_> {
        Accept {
            listener: self,
            op: OpState::new(),
        }
    }

    /// Polls for a connection (tokio's `poll_accept`), for a hand-written
    /// future or a `Stream` of connections (tokio-stream's
    /// `TcpListenerStream`, a server framework's `Listener`) that cannot
    /// hold an [`Accept`], which borrows the listener. `Ready` with the
    /// new stream, registered with the reactor of the runtime thread that
    /// polls (as [`accept`](Self::accept)), or `Pending` with `cx`'s waker
    /// parked on the listener's receive cell.
    ///
    /// # Notes
    ///
    /// It is one accept, kept in the listener from one call to the next:
    /// while it waits (its last call said `Pending`) it holds the
    /// listener's one receive cell, as an `Accept` that waits does. Only
    /// the waker of the latest call is woken, as with tokio's. Calls from
    /// several tasks share that one accept, so each wakes only the latest
    /// caller: poll from one task.
    ///
    /// `poll_accept` and [`accept`](Self::accept) are not used at once:
    /// while a `poll_accept` waits, an `accept()` fails with
    /// `ErrorKind::ResourceBusy`, and while an `Accept` waits,
    /// `poll_accept` does (that error ends the polled accept; the next
    /// call starts a new one). No connection is lost either way: only
    /// the accept that holds the cell takes one from the kernel's queue.
    /// A `poll_accept` that said `Pending` and is never polled again keeps
    /// the cell until the listener is dropped, so `accept()` stays busy:
    /// poll it to the end, or use only one of the two.
    ///
    /// ```no_run
    /// use std::future::poll_fn;
    /// # async fn f(listener: cellio_net::TcpListener) -> std::io::Result<()> {
    /// let (stream, peer) = poll_fn(|cx| listener.poll_accept(cx)).await?;
    /// # drop((stream, peer)); Ok(()) }
    /// ```
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        crate::accept::poll_kept_accept(
            &self.polled_accept,
            &self.registration,
            cx,
            || self.io.accept(),
            TcpStream::register,
        )
    }

    /// The address the listener is bound to (with the port the kernel chose
    /// if it was bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Sets the IP time-to-live of the packets of the connections it
    /// accepts (`IP_TTL`; they inherit it).
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.set_ttl(ttl)
    }

    /// The IP time-to-live (`IP_TTL`) of the listening socket.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.ttl()
    }

    /// Turns this listener back into a `std` listener, leaving this
    /// reactor: to hand it to another worker, which wraps it again with
    /// [`from_std`](Self::from_std) and so registers it with its own
    /// reactor, or to another process.
    ///
    /// # Notes
    ///
    /// Its own descriptor is returned, deregistered and still
    /// non-blocking (as tokio's): no `dup(2)`, so it works at the
    /// descriptor limit too. Connections waiting in its backlog stay
    /// there. It does not fail; the `Result` is kept for tokio's
    /// signature.
    ///
    /// ```no_run
    /// # async fn f(listener: cellio_net::TcpListener) -> std::io::Result<()> {
    /// let std_listener = listener.into_std()?;
    /// cellio_runtime::spawn_on(1, async move {
    ///     let listener = cellio_net::TcpListener::from_std(std_listener)?;
    ///     // ... accept on worker 1 ...
    ///     # drop(listener);
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// # Ok(()) }
    /// ```
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        Ok(std::net::TcpListener::from(OwnedFd::from(self.into_io())))
    }
}

fn listen_socket(addr: SocketAddr, options: &ListenOptions) -> io::Result<Socket> {
    let socket = bound_socket(
        addr,
        Type::STREAM,
        Protocol::TCP,
        options.reuse_address,
        options.reuse_port,
    )?;
    socket.listen(options.backlog)?;
    Ok(socket)
}

/// Future of [`TcpListener::accept`]: the new stream and its peer address.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Accept<'a> {
    listener: &'a TcpListener,
    op: OpState,
}

impl Future for Accept<'_> {
    type Output = io::Result<(TcpStream, SocketAddr)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let listener = this.listener;
        poll_accept(
            &mut this.op,
            &listener.registration,
            cx,
            || listener.io.accept(),
            TcpStream::register,
        )
    }
}

impl Drop for Accept<'_> {
    fn drop(&mut self) {
        self.op.cancel(|| self.listener.registration.rx());
    }
}

crate::registered::registered_socket_with_into_io!(
    TcpListener,
    mio::net::TcpListener,
    polled_accept
);

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.io.local_addr().ok())
            .field("fd", &self.io.as_raw_fd())
            .finish()
    }
}
