//! cellio's runtime: [`Runtime`] and [`Builder`], [`Runtime::block_on`],
//! [`spawn()`] (and [`spawn_local`], [`spawn_on`], [`spawn_local_on`]) with
//! [`JoinHandle`] and [`AbortHandle`], [`JoinSet`], [`spawn_blocking`] (and
//! [`fs`], `std::fs` on the blocking pool, and [`io`], the standard
//! streams), [`local_channel`] (messages
//! between tasks of one worker), [`task_local!`] values, and [`yield_now`].
//!
//! A runtime is a set of workers (one per core by default), each a thread
//! with its own executor and the reactor that drives its sockets. Tasks
//! are polled only by their worker's loop, never inline in a wake; wakers
//! are plain integers naming `(worker, slot, generation)`, so cloning one
//! costs nothing and a stale one cannot reach a task that reused its slot.
//!
//! # Example
//!
//! ```
//! use cellio_runtime::{spawn, yield_now, Runtime};
//!
//! let rt = Runtime::new()?;
//! let sum = rt.block_on(async {
//!     let tasks: Vec<_> = (0..10u64)
//!         .map(|i| spawn(async move {
//!             yield_now().await;
//!             i * i
//!         }))
//!         .collect();
//!     let mut sum = 0;
//!     for task in tasks {
//!         sum += task.await.unwrap();
//!     }
//!     sum
//! });
//! assert_eq!(sum, 285);
//! # Ok::<(), std::io::Error>(())
//! ```
#![warn(missing_docs)]

mod abort;
mod affinity;
mod blocking;
mod builder;
pub mod fs;
pub mod io;
mod join;
mod join_set;
pub mod local_channel;
mod mailbox;
mod metrics;
mod runtime;
mod shutdown;
mod sleep_gate;
mod spawn;
mod sync;
mod task;
mod task_id;
pub mod task_local;
mod thread_hooks;
pub mod time;
mod waker;
mod worker;

pub use abort::AbortHandle;
pub use blocking::{spawn_blocking, DEFAULT_BLOCKING_KEEP_ALIVE, DEFAULT_MAX_BLOCKING_THREADS};
pub use builder::{Builder, DEFAULT_EVENT_INTERVAL, MAX_EVENT_CAPACITY, MAX_WORKERS};
pub use join::{JoinError, JoinHandle};
pub use join_set::JoinSet;
pub use metrics::{RuntimeMetrics, WorkerMetrics};
pub use runtime::{
    current_worker, spawn, spawn_local, spawn_local_on, spawn_on, yield_now, Runtime, RuntimeHandle,
};
pub use shutdown::{shutdown_requested, until_shutdown, ShutdownRequested, UntilShutdown};
pub use task::DEFAULT_TASK_POOL_CAP;
pub use task_id::TaskId;
pub use time::{
    interval, interval_at, sleep, sleep_until, timeout, timeout_at, Elapsed, Interval,
    MissedTickBehavior, Sleep, Timeout,
};
