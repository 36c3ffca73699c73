//! # cellio
//!
//! An async socket runtime with no heap allocation on its hot paths.
//!
//! Every socket owns exactly one reusable receive cell and one reusable send
//! cell. [`TcpStream::recv`] and [`TcpStream::send`] return small,
//! token-stamped futures that complete on their first poll when the kernel
//! already has the data (or the buffer space), and otherwise park on the
//! socket's cell until the epoll/kqueue reactor wakes them — the design of
//! .NET Core 2.1's `Socket` (`ValueTask` over a reusable
//! `IValueTaskSource`), carried over to Rust.
//!
//! This crate re-exports the three member crates:
//!
//! * [`reactor`] (`cellio-reactor`) — the op cells, the registration table,
//!   the event loop;
//! * [`net`] (`cellio-net`) — [`TcpListener`], [`TcpStream`], [`TcpIo`],
//!   [`UdpSocket`], and Unix-domain streams in [`unix`];
//! * [`runtime`] (`cellio-runtime`) — [`Runtime`], [`spawn`],
//!   [`JoinHandle`], [`JoinSet`], [`yield_now`], and [`fs`] (`std::fs` on
//!   the blocking pool).
//!
//! # Example: an echo server
//!
//! ```no_run
//! use cellio::{spawn, Runtime, TcpListener};
//!
//! fn main() -> std::io::Result<()> {
//!     Runtime::new()?.block_on(async {
//!         let listener = TcpListener::bind("127.0.0.1:7000")?;
//!         loop {
//!             let (stream, _peer) = listener.accept().await?;
//!             spawn(async move {
//!                 let mut buf = [0u8; 4096];
//!                 // recv returns 0 when the peer closes; errors end the task.
//!                 while let Ok(n @ 1..) = stream.recv(&mut buf).await {
//!                     if stream.send_all(&buf[..n]).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             });
//!         }
//!     })
//! }
//! ```
#![warn(missing_docs)]

pub use cellio_net as net;
pub use cellio_net::process;
pub use cellio_net::signal;
pub use cellio_net::unix;
pub use cellio_reactor as reactor;
pub use cellio_runtime as runtime;
pub use cellio_runtime::fs;
pub use cellio_runtime::io;
/// Task-local values ([`task_local!`](macro@task_local), `LocalKey`): tokio's.
pub use cellio_runtime::task_local;

pub use cellio_net::{
    ListenOptions, OpStats, TcpIo, TcpListener, TcpSocket, TcpStream, UdpIo, UdpSocket,
};
pub use cellio_reactor::CellError;
pub use cellio_runtime::{
    spawn, spawn_local, yield_now, AbortHandle, Builder, JoinError, JoinHandle, JoinSet, Runtime,
    TaskId,
};

/// Runs `async fn main` on a cellio runtime: tokio's `#[tokio::main]`.
///
/// The function becomes a plain `fn` that builds a runtime
/// ([`Builder::new`]: one worker per core) and runs its body with
/// [`Runtime::block_on`]; what the body returns, `main` returns, so
/// `async fn main() -> std::io::Result<()>` works with `?` as usual.
/// Building the runtime fails only if the system refuses its threads or
/// its `epoll` instance, or if `workers` is an expression worth more than
/// [`MAX_WORKERS`](runtime::MAX_WORKERS); `main` then panics with the error.
///
/// Arguments:
///
/// * `workers = N`: `N` workers (an integer from 1 to
///   [`MAX_WORKERS`](runtime::MAX_WORKERS), 4096, or any `usize` expression
///   such as a constant; a literal 0 is an error, while an expression
///   worth 0 is raised to 1, as [`Builder::workers`] does). `workers = 1` is tokio's
///   `current_thread`: everything on the calling thread; `workers = N` is
///   its `multi_thread` with `worker_threads = N`. tokio's `flavor` and
///   `worker_threads` are refused with an error that names the `workers`
///   to write;
/// * `start_paused = true`: the clock starts paused
///   ([`Builder::start_paused`], [`runtime::time::pause`]); one worker;
/// * `crate = "path"`: where the `cellio` crate is, if it was renamed.
///
/// ```no_run
/// #[cellio::main(workers = 2)]
/// async fn main() -> std::io::Result<()> {
///     let listener = cellio::TcpListener::bind("127.0.0.1:7000")?;
///     loop {
///         let (stream, _) = listener.accept().await?;
///         cellio::spawn(async move {
///             let mut buf = [0u8; 4096];
///             while let Ok(n @ 1..) = stream.recv(&mut buf).await {
///                 if stream.send_all(&buf[..n]).await.is_err() {
///                     break;
///                 }
///             }
///         });
///     }
/// }
/// ```
///
/// Misuse is a compile error that says what is wrong:
///
/// ```compile_fail
/// #[cellio::main]
/// fn main() {} // not `async`
/// ```
///
/// ```compile_fail
/// #[cellio::main(workers = 0)] // a runtime needs a worker
/// async fn main() {}
/// ```
///
/// ```compile_fail
/// #[cellio::main(workers = 5000)] // more than `MAX_WORKERS`, 4096
/// async fn main() {}
/// ```
///
/// ```compile_fail
/// #[cellio::main(threads = 2)] // unknown argument
/// async fn main() {}
/// ```
///
/// ```compile_fail
/// #[cellio::main(flavor = "current_thread")] // tokio's: `workers = 1` here
/// async fn main() {}
/// ```
#[cfg(feature = "macros")]
pub use cellio_macros::main;

/// Runs an `async fn` test on a cellio runtime of one worker: tokio's
/// `#[tokio::test]`. Adds `#[test]` itself.
///
/// Arguments as [`main`]'s: `workers = N` (default 1), `start_paused =
/// true`, `crate = "path"`.
///
/// ```
/// #[cellio::test]
/// async fn a_task_runs() {
///     assert_eq!(cellio::spawn(async { 2 + 2 }).await.unwrap(), 4);
/// }
/// # fn main() {}
/// ```
///
/// A test of a long timeout that takes no real time:
///
/// ```
/// use std::time::Duration;
/// use cellio::runtime::time;
///
/// #[cellio::test(start_paused = true)]
/// async fn the_idle_timeout_fires_after_five_minutes() {
///     let start = time::now();
///     let idle = time::timeout(Duration::from_secs(300), std::future::pending::<()>());
///     assert!(idle.await.is_err());
///     assert_eq!(time::now() - start, Duration::from_secs(300));
/// }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[cellio::test(start_paused = true, workers = 2)] // each worker has its own timers
/// async fn paused() {}
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[cellio::test(start_paused = true, start_paused = false)] // each argument once
/// async fn paused() {}
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[cellio::test]
/// #[test] // added by the attribute already
/// async fn twice() {}
/// # fn main() {}
/// ```
#[cfg(feature = "macros")]
pub use cellio_macros::test;

/// The user guide's and the README's code blocks, compiled (and, where not
/// marked `no_run`, run) as doctests, so that they cannot drift from the
/// API.
#[cfg(doctest)]
mod doc_examples {
    #[doc = include_str!("../docs/guide.md")]
    struct Guide;

    #[doc = include_str!("../README.md")]
    struct Readme;
}
