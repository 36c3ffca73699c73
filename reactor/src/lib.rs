//! cellio's reactor: the reusable operation cells, the registration table
//! that stores two of them inline per socket, and the mio event loop that
//! notifies them.
//!
//! * [`OpCell`] — one direction's reusable, token-stamped completion cell
//!   (the Rust counterpart of .NET's `ManualResetValueTaskSourceCore`). Its
//!   module docs draw the state machine.
//! * [`Reactor`] — owns the mio `Poll`; [`Reactor::turn`] dispatches
//!   readiness to cells.
//! * [`Handle`] / [`Registration`] — how sockets find the reactor and their
//!   slot in it.
//! * [`budget`] and [`thread_words`] — the per-task cooperative budget, in
//!   one per-thread cache line with the runtime's current-worker words.
//! * [`sigpipe`] — `SIGPIPE` kept from the calls that cannot be told not
//!   to raise it (`splice`, `sendfile`, a pipe's `write`).
//! * [`sys`] (Linux) — the raw syscall the reactor's wait and `cellio-net`'s
//!   `recv`/`send` use instead of glibc's cancellation-point wrappers.
//!
//! Users of cellio rarely touch this crate directly; the socket types in
//! `cellio-net` and the runtime in `cellio-runtime` are built on it.
//!
//! # Example: an operation's whole life on one cell
//!
//! ```
//! use cellio_reactor::{CellError, OpCell, Park};
//! use std::task::Waker;
//!
//! let cell = OpCell::new();
//! let seen = cell.observe()?;
//! let token = cell.reserve()?; // the syscall said EAGAIN
//! assert_eq!(cell.park(token, seen, Waker::noop())?, Park::Parked);
//! cell.notify(); // readiness arrived
//! cell.release(token)?; // the retried syscall completed
//! assert_eq!(cell.observe_reserved(token), Err(CellError::Stale));
//! # Ok::<(), CellError>(())
//! ```
#![warn(missing_docs)]

pub mod budget;
pub mod cell;
mod poller;
mod reactor;
#[cfg(unix)]
pub mod sigpipe;
mod sync;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod sys;
mod table;
#[cfg(all(test, not(loom)))]
mod test_waker;
pub mod thread_words;
mod waker_slot;

pub use cell::{CellError, OpCell, Park, Readiness, Token};
pub use reactor::{
    Completions, EnterGuard, Handle, OutsideWork, Reactor, Registration, DEFAULT_EVENT_CAPACITY,
};
