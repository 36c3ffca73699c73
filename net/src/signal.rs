//! Unix signals as futures: [`ctrl_c`] and [`Signal`], driven by the
//! reactor of the worker that listens, with no thread of their own.
//!
//! # How it works
//!
//! A [`Signal`] owns one end of a Unix socket pair, registered with the
//! current worker's reactor like any socket; the other end goes to
//! `signal-hook`, whose handler sends it one byte per delivery (an
//! async-signal-safe `send`). A receive is an ordinary operation on the
//! socket's receive cell: it drains every byte that came and completes, or
//! parks until the reactor sees more.
//!
//! # Invariants and caveats
//!
//! * **Deliveries coalesce**: any number of deliveries between two
//!   receives complete one receive, and a receive completes only for
//!   deliveries since the previous one completed (or since
//!   [`Signal::new`]).
//! * **No extra thread.** A signal thread would share the descriptor
//!   table with the workers, and while two threads share it the kernel
//!   takes and drops a reference on a socket's file at every syscall
//!   (about 40 ns of a 3.4 µs echoed message on the benchmark VM).
//! * **The default action is gone for good**, as with every `signal-hook`
//!   (and tokio) handler: once a `Signal` for `SIGINT` existed, Ctrl-C no
//!   longer ends the process, even after the `Signal` is dropped. Listen
//!   for the signals a program means to handle, for its whole life.
//! * Each `Signal` gets every delivery (each has its own socket pair).
//!   Creating one allocates (the handler's registration); receiving does
//!   not.

use std::fmt;
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use cellio_reactor::{Handle, Registration};
use signal_hook::SigId;

use crate::op::{OpState, Side};

pub use libc::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};

/// Completes when the process receives `SIGINT` (Ctrl-C in a terminal)
/// after this future was first polled.
///
/// From its first poll on, `SIGINT` no longer ends the process (see the
/// [module docs](self)). Fails if there is no cellio reactor on this
/// thread.
///
/// # Examples
///
/// ```no_run
/// let rt = cellio_runtime::Runtime::new()?;
/// rt.block_on(async {
///     cellio_net::signal::ctrl_c().await?;
///     println!("interrupted: shutting down");
///     std::io::Result::Ok(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn ctrl_c() -> io::Result<()> {
    Signal::new(SIGINT)?.recv().await
}

/// A stream of deliveries of one Unix signal.
///
/// # Examples
///
/// A server that shuts down gracefully on `SIGTERM` or `SIGINT`:
///
/// ```no_run
/// use cellio_net::signal::{Signal, SIGINT, SIGTERM};
/// use cellio_runtime::{spawn, until_shutdown, RuntimeHandle};
///
/// let rt = cellio_runtime::Runtime::new()?;
/// rt.block_on(async {
///     // Listening starts here, before the server is up.
///     let (mut term, mut int) = (Signal::new(SIGTERM)?, Signal::new(SIGINT)?);
///     // `until_shutdown`: if the shutdown starts for another reason, this
///     // task ends with it instead of holding the grace period up.
///     spawn(until_shutdown(async move {
///         let either = std::pin::pin!(term.recv());
///         let _ = futures_util::future::select(either, std::pin::pin!(int.recv())).await;
///         RuntimeHandle::current().expect("in the runtime").shutdown();
///     }));
///     // ... accept connections until `shutdown_requested()` completes ...
///     std::io::Result::Ok(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Signal {
    number: libc::c_int,
    /// `None` once unregistered (in `drop`).
    id: Option<SigId>,
    reader: mio::net::UnixStream,
    registration: Registration,
    /// The receive in progress through [`poll_recv`](Self::poll_recv).
    polled: OpState,
}

impl Signal {
    /// Starts listening for `signal` (such as [`SIGTERM`]) on this thread's
    /// reactor: deliveries from now on complete [`recv`](Self::recv).
    ///
    /// Fails with `ErrorKind::InvalidInput` for a signal that cannot be
    /// handled (`SIGKILL`, `SIGSTOP`, `SIGILL`, `SIGFPE`, `SIGSEGV`) or is
    /// not a signal at all; and, as a socket would, if there is no cellio
    /// reactor on this thread (create it inside `Runtime::block_on` or a
    /// task).
    pub fn new(signal: libc::c_int) -> io::Result<Signal> {
        if signal_hook::consts::FORBIDDEN.contains(&signal) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("signal {signal} cannot be handled"),
            ));
        }
        let handle = Handle::current()?;
        let (mut reader, writer) = mio::net::UnixStream::pair()?;
        let registration = handle.register_readable(&mut reader)?;
        let id = match signal_hook::low_level::pipe::register(signal, writer) {
            Ok(id) => id,
            Err(e) => {
                let _ = registration.deregister(&mut reader);
                let kind = match e.raw_os_error() {
                    Some(libc::EINVAL) => io::ErrorKind::InvalidInput,
                    _ => e.kind(),
                };
                return Err(io::Error::new(
                    kind,
                    format!("cannot listen for signal {signal}: {e}"),
                ));
            }
        };
        Ok(Signal {
            number: signal,
            id: Some(id),
            reader,
            registration,
            polled: OpState::new(),
        })
    }

    /// The signal's number.
    pub fn number(&self) -> libc::c_int {
        self.number
    }

    /// Completes once the signal has been delivered since the previous
    /// receive completed (or since [`new`](Self::new)); deliveries in
    /// between count as one. Cancel-safe: a dropped receive loses nothing.
    pub fn recv(&mut self) -> RecvSignal<'_> {
        // A receive `poll_recv` left pending gives way (nothing is lost: a
        // delivery since then is still in the socket).
        let registration = &self.registration;
        self.polled.cancel(|| registration.rx());
        self.polled = OpState::new();
        RecvSignal {
            signal: self,
            op: OpState::new(),
        }
    }

    /// [`recv`](Self::recv) as a poll method, for a hand-written `Future`
    /// or `Stream`: `Ready(Ok(()))` once the signal has been delivered since
    /// the previous receive completed, `Pending` with the task to be woken
    /// at the next delivery. A receive it leaves pending continues at the
    /// next call (from any task; the latest waker is woken), and gives way
    /// to a later [`recv`](Self::recv), losing nothing.
    ///
    /// ```no_run
    /// use std::future::poll_fn;
    /// use cellio_net::signal::{Signal, SIGHUP};
    ///
    /// # async fn f() -> std::io::Result<()> {
    /// let mut hangups = Signal::new(SIGHUP)?;
    /// poll_fn(|cx| hangups.poll_recv(cx)).await?; // reload the configuration...
    /// # Ok(()) }
    /// ```
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = poll_delivery(&mut self.polled, &self.registration, &self.reader, cx);
        if polled.is_ready() {
            self.polled = OpState::new();
        }
        polled
    }
}

/// One poll of a receive of the signal whose handler writes to `reader`.
fn poll_delivery(
    op: &mut OpState,
    registration: &Registration,
    reader: &mio::net::UnixStream,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    op.poll(Side::rx(registration), Some(cx.waker()), || {
        match drain(reader)? {
            // Everything drained: the socket is exhausted.
            true => Ok(((), true)),
            false => Err(io::ErrorKind::WouldBlock.into()),
        }
    })
}

/// Drains every byte the handler sent: `Ok(true)` if there was one,
/// `Ok(false)` if none (`EAGAIN`).
fn drain(mut reader: &mio::net::UnixStream) -> io::Result<bool> {
    let mut got = false;
    let mut buf = [0u8; 64];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Err(io::Error::other("the signal's socket was closed")),
            Ok(_) => got = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(got),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("number", &self.number)
            .finish()
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        // A receive left pending by `poll_recv` gives its reservation back.
        let registration = &self.registration;
        self.polled.cancel(|| registration.rx());
        // Drops the handler's action, which closes the other end.
        if let Some(id) = self.id.take() {
            signal_hook::low_level::unregister(id);
        }
        if let Err(e) = self.registration.deregister(&mut self.reader) {
            tracing::debug!(error = %e, "deregister failed");
        }
    }
}

/// Future of [`Signal::recv`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvSignal<'a> {
    signal: &'a Signal,
    op: OpState,
}

impl fmt::Debug for RecvSignal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvSignal")
            .field("number", &self.signal.number)
            .finish()
    }
}

impl Future for RecvSignal<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let signal = this.signal;
        poll_delivery(&mut this.op, &signal.registration, &signal.reader, cx)
    }
}

impl Drop for RecvSignal<'_> {
    fn drop(&mut self) {
        self.op.cancel(|| self.signal.registration.rx());
    }
}
