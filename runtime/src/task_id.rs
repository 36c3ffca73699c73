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
