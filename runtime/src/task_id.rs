//! [`TaskId`]: which task a handle, or a [`JoinSet`](crate::JoinSet)
//! result, belongs to.
//!
//! A task's id is the address of its block (the memory that holds its
//! header and future), which is unique among the blocks that exist and
//! costs nothing to keep: no counter is bumped per spawn, no header field
//! added. A block exists while its task runs and while any handle that can
//! still reach the task holds a reference to it, so no two such tasks
//! share an id; once a task has ended and its handles have let it go,
//! its block goes back to the task pool and a later task may get the same
//! id, as tokio allows for its `task::Id` ("when a task completes, the
//! same ID may be used for another task").

use std::fmt;
use std::num::NonZeroU64;

/// An opaque identifier of a spawned task: tokio's `task::Id`. From
/// [`JoinHandle::id`](crate::JoinHandle::id),
/// [`AbortHandle::id`](crate::AbortHandle::id) and
/// [`JoinSet::join_next_with_id`](crate::JoinSet::join_next_with_id).
///
/// No two tasks that are running, or that a `JoinHandle` or `AbortHandle`
/// can still reach, have the same id. After a task has ended and its
/// handles are gone (or its `JoinHandle` returned the output), a later
/// task may get its id: task memory is reused. Ids are for telling tasks
/// apart (keys in a map of what each task is doing, say); their values
/// mean nothing else.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
///
/// let rt = cellio_runtime::Runtime::new()?;
/// rt.block_on(async {
///     let mut set = cellio_runtime::JoinSet::new();
///     let mut names = HashMap::new();
///     for name in ["alpha", "beta"] {
///         let id = set.spawn(async move { name.len() }).id();
///         names.insert(id, name);
///     }
///     while let Some((id, output)) = set.join_next_with_id().await {
///         assert_eq!(output.unwrap(), names[&id].len());
///     }
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(NonZeroU64);

impl TaskId {
    /// The id of the task running this code: tokio's `task::try_id()`.
    ///
    /// `Some` inside a spawned task's poll (including while its future
    /// is dropped: when it completes, is aborted, or is cancelled by the
    /// runtime's shutdown) and inside a
    /// [`spawn_blocking`](crate::spawn_blocking) closure; the id is the
    /// one its [`JoinHandle::id`](crate::JoinHandle::id) returns. `None`
    /// anywhere else: in the future given to
    /// [`Runtime::block_on`](crate::Runtime::block_on) (which is no
    /// spawned task, also when a blocking job runs it), on a thread of no runtime, in a waker called from
    /// outside a poll.
    ///
    /// A call costs a thread-local read and, inside a task, a look-up in
    /// the worker's task table. To make it work the worker writes the
    /// polled task's slot beside the poll's cooperative budget: one store
    /// a poll (`docs/design.md`, "Task ids").
    ///
    /// # Examples
    ///
    /// ```
    /// use cellio_runtime::TaskId;
    ///
    /// let rt = cellio_runtime::Runtime::new()?;
    /// rt.block_on(async {
    ///     assert_eq!(TaskId::try_current(), None, "block_on's future is no task");
    ///     let task = cellio_runtime::spawn(async { TaskId::try_current() });
    ///     let id = task.id();
    ///     assert_eq!(task.await.unwrap(), Some(id));
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_current() -> Option<TaskId> {
        crate::worker::current_task_id().or_else(crate::blocking::current_job_id)
    }

    /// The id of the task running this code: tokio's `task::id()`.
    ///
    /// # Panics
    ///
    /// Outside a spawned task or blocking job (where
    /// [`try_current`](Self::try_current) returns `None`), with a message
    /// that says so: in `block_on`'s own future, for instance. Use
    /// `try_current` where that can happen.
    ///
    /// # Examples
    ///
    /// ```
    /// use cellio_runtime::TaskId;
    ///
    /// let rt = cellio_runtime::Runtime::new()?;
    /// rt.block_on(async {
    ///     let task = cellio_runtime::spawn(async {
    ///         tracing::info!(task = %TaskId::current(), "started");
    ///     });
    ///     task.await.unwrap();
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn current() -> TaskId {
        Self::try_current().expect(
            "cellio: TaskId::current() called outside a spawned task or blocking job \
             (block_on's own future is not a task); use TaskId::try_current()",
        )
    }

    /// The id of the task whose block starts at `address` (never 0).
    pub(crate) fn from_address(address: NonZeroU64) -> Self {
        Self(address)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({:x})", self.0)
    }
}
