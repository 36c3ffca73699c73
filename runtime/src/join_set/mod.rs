//! [`JoinSet`]: a set of spawned tasks, joined in the order they finish.
//!
//! The set owns its members' `JoinHandle`s (in a slab, keyed by a small
//! integer) and polls a member only when its task has finished: each
//! handle is polled with a waker of the set's ready list (`ready`), which
//! the task's join cell wakes when the output is written. Waiting on a set
//! of ten thousand tasks costs the same per finished task as waiting on
//! one.
//!
//! # Invariants
//!
//! * Every key in the slab has an entry in the ready list, and a member's
//!   handle is polled only with that entry's waker (a poll with any other
//!   waker would replace it in the join cell and the set would never hear
//!   of the finish).
//! * A new member is queued in the ready list at once: it has not been
//!   polled, so no waker of the set's is in its join cell yet.
//! * Dropping the set aborts every member (as tokio's does); a member's
//!   output is delivered to the set or dropped with the task, never lost
//!   in between while the set lives.

mod ready;

use std::fmt;
use std::future::{poll_fn, Future};
use std::task::{Context, Poll};

use cellio_reactor::budget;
use slab::Slab;

use crate::abort::AbortHandle;
use crate::join::{JoinError, JoinHandle};
use crate::spawn::MadeThere;
use crate::TaskId;
use ready::ReadyList;

/// A set of spawned tasks whose outputs are taken as they finish, in
/// whatever order that is: tokio's `JoinSet`.
///
/// Spawn into it with [`spawn`](JoinSet::spawn) (and
/// [`spawn_local`](JoinSet::spawn_local), [`spawn_on`](JoinSet::spawn_on),
/// [`spawn_local_on`](JoinSet::spawn_local_on),
/// [`spawn_blocking`](JoinSet::spawn_blocking)), or add a task spawned
/// elsewhere with [`insert`](JoinSet::insert); take outputs with
/// [`join_next`](JoinSet::join_next). Each spawn returns an
/// [`AbortHandle`] for that one task. **Dropping the set aborts every task
/// still in it**; [`detach_all`](JoinSet::detach_all) lets them run on
/// instead.
///
/// The set polls a member only once its task has finished (its waker
/// points at the member, not at the set), so `join_next` costs the same
/// per finished task whether the set holds two tasks or ten thousand.
/// Once the set has held as many tasks as it holds now, spawning into it
/// and joining allocate nothing beyond the task itself.
///
/// # Examples
///
/// ```
/// use cellio_runtime::{JoinSet, Runtime};
///
/// let rt = Runtime::new()?;
/// let total = rt.block_on(async {
///     let mut set = JoinSet::new();
///     for i in 0..10u64 {
///         set.spawn(async move { i * i });
///     }
///     let mut total = 0;
///     while let Some(output) = set.join_next().await {
///         total += output.unwrap();
///     }
///     total
/// });
/// assert_eq!(total, 285);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct JoinSet<T> {
    tasks: Slab<JoinHandle<T>>,
    ready: ReadyList,
}

impl<T> JoinSet<T> {
    /// An empty set. Allocates nothing until the first task joins it but
    /// its ready list's shared block.
    pub fn new() -> Self {
        Self {
            tasks: Slab::new(),
            ready: ReadyList::new(),
        }
    }

    /// How many tasks are in the set: spawned and not yet joined (a task
    /// that finished stays until [`join_next`](Self::join_next) takes its
    /// output).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// `true` if the set holds no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Spawns `future` on this worker, as [`spawn`](fn@crate::spawn) does, as
    /// a member of the set.
    ///
    /// # Panics
    ///
    /// Outside a cellio runtime.
    #[inline(always)]
    pub fn spawn<F>(&mut self, future: F) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        // Only forwarded: see the `spawn` module on keeping the future to
        // one copy.
        self.insert(crate::spawn::spawn_here(future))
    }

    /// Spawns a future that need not be `Send` on this worker, as
    /// [`spawn_local`](crate::spawn_local) does, as a member of the set.
    ///
    /// # Panics
    ///
    /// Outside a cellio runtime.
    #[inline(always)]
    pub fn spawn_local<F>(&mut self, future: F) -> AbortHandle
    where
        F: Future<Output = T> + 'static,
        T: 'static,
    {
        self.insert(crate::spawn::spawn_here(future))
    }

    /// Spawns `future` on worker `index`, as [`spawn_on`](crate::spawn_on)
    /// does, as a member of the set.
    ///
    /// # Panics
    ///
    /// Outside a cellio runtime, or if `index` is not one of its workers.
    #[inline(always)]
    pub fn spawn_on<F>(&mut self, index: usize, future: F) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.insert(crate::spawn::spawn_on_worker(
            None, index, future, "spawn_on",
        ))
    }

    /// Spawns the future `make` builds on worker `index`, as
    /// [`spawn_local_on`](crate::spawn_local_on) does, as a member of the
    /// set.
    ///
    /// # Panics
    ///
    /// Outside a cellio runtime, or if `index` is not one of its workers.
    #[inline(always)]
    pub fn spawn_local_on<M, F>(&mut self, index: usize, make: M) -> AbortHandle
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        self.insert(crate::spawn::spawn_on_worker(
            None,
            index,
            MadeThere::new(make),
            "spawn_local_on",
        ))
    }

    /// Runs `job` on the blocking pool, as
    /// [`spawn_blocking`](crate::spawn_blocking) does, as a member of the
    /// set. Aborting it (or dropping the set) stops it only if it has not
    /// started.
    ///
    /// # Panics
    ///
    /// Outside a cellio runtime.
    pub fn spawn_blocking<F>(&mut self, job: F) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.insert(crate::blocking::spawn_blocking_in(None, job))
    }

    /// Adds a task spawned some other way (through a
    /// [`RuntimeHandle`](crate::RuntimeHandle), say) by its handle. A
    /// handle that already returned its output joins as a member that
    /// finishes at once with [`JoinError::Consumed`].
    pub fn insert(&mut self, handle: JoinHandle<T>) -> AbortHandle {
        let abort = handle.abort_handle();
        let key = self.tasks.insert(handle);
        let Ok(key) = u32::try_from(key) else {
            // Four thousand million members: the task table refuses long
            // before (its limit is far lower); say so rather than wrap.
            panic!("cellio: a JoinSet holds at most u32::MAX tasks");
        };
        self.ready.insert(key);
        abort
    }

    /// Waits for any member to finish and returns its output, or `None` if
    /// the set is empty. Members finish in any order; each output is
    /// returned once.
    ///
    /// Cancel safe: dropping the future loses no output (a finished task
    /// stays in the set until a later call takes it).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = cellio_runtime::Runtime::new()?;
    /// rt.block_on(async {
    ///     let mut set = cellio_runtime::JoinSet::new();
    ///     set.spawn(async {
    ///         cellio_runtime::sleep(Duration::from_millis(50)).await;
    ///         "slow"
    ///     });
    ///     set.spawn(async { "fast" });
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), "fast");
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), "slow");
    ///     assert!(set.join_next().await.is_none());
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        poll_fn(|cx| self.poll_join_next(cx)).await
    }

    /// [`join_next`](Self::join_next), with the finished member's
    /// [`TaskId`] (the id its spawn's [`AbortHandle`] has) beside its
    /// output or error: tokio's `join_next_with_id`, with the id outside
    /// the `Result` since [`JoinError`] has none of its own.
    ///
    /// ```
    /// let rt = cellio_runtime::Runtime::new()?;
    /// rt.block_on(async {
    ///     let mut set = cellio_runtime::JoinSet::new();
    ///     let failing = set.spawn(async { panic!("on purpose") }).id();
    ///     # std::panic::set_hook(Box::new(|_| {}));
    ///     let (id, output) = set.join_next_with_id().await.unwrap();
    ///     assert_eq!(id, failing);
    ///     assert!(output.unwrap_err().is_panic());
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn join_next_with_id(&mut self) -> Option<(TaskId, Result<T, JoinError>)> {
        poll_fn(|cx| self.poll_join_next_with_id(cx)).await
    }

    /// Waits for every member and returns their outputs, in the order they
    /// finished (tokio's `join_all`).
    ///
    /// # Panics
    ///
    /// If a member panicked, its panic resumes here; if one was aborted or
    /// its runtime ended, this panics with that [`JoinError`]. Either way
    /// the members still running are aborted (the set is dropped). To
    /// handle each member's error, loop over [`join_next`](Self::join_next).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = cellio_runtime::Runtime::new()?;
    /// let mut squares = rt.block_on(async {
    ///     let mut set = cellio_runtime::JoinSet::new();
    ///     for i in 0..5u64 {
    ///         set.spawn(async move { i * i });
    ///     }
    ///     set.join_all().await
    /// });
    /// squares.sort_unstable();
    /// assert_eq!(squares, [0, 1, 4, 9, 16]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn join_all(mut self) -> Vec<T> {
        let mut outputs = Vec::with_capacity(self.len());
        while let Some(output) = self.join_next().await {
            match output {
                Ok(value) => outputs.push(value),
                Err(error) => match error.try_into_panic() {
                    Ok(payload) => std::panic::resume_unwind(payload),
                    Err(error) => panic!("JoinSet::join_all: a member did not finish: {error}"),
                },
            }
        }
        outputs
    }

    /// `join_next` as a poll method: `Ready(None)` if the set is empty,
    /// `Ready(Some(output))` for a finished member, else `Pending` (and `cx`
    /// is woken when a member finishes).
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, JoinError>>> {
        self.poll_join_next_with_id(cx)
            .map(|joined| joined.map(|(_, output)| output))
    }

    /// [`join_next_with_id`](Self::join_next_with_id) as a poll method.
    pub fn poll_join_next_with_id(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(TaskId, Result<T, JoinError>)>> {
        if self.tasks.is_empty() {
            return Poll::Ready(None);
        }
        // An output spends a unit of the task's budget, as tokio's do, so
        // a loop over a set whose members have finished yields now and
        // then. An output is out of its member before it can be counted,
        // so the check comes first (with the budget spent, `Pending` and
        // the task woken whether or not a member is ready, as tokio's
        // handles do: one spurious poll at most, once the task has spent
        // its budget) and the unit is spent once one is taken.
        if !budget::has_remaining() {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            // Before looking: a member woken after the look moves this on,
            // and the park below refuses to sleep (see `ready`).
            let seen = self.ready.observe();
            if let Some(output) = self.take_finished() {
                budget::consume(1);
                return Poll::Ready(Some(output));
            }
            // Still not empty: only a member taken out of it (above) leaves.
            if self.ready.park(seen, cx.waker()) {
                return Poll::Pending;
            }
        }
    }

    /// The output of a member that has finished, if there is one now;
    /// never waits. `None` says nothing finished yet, or the set is empty.
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        self.take_finished().map(|(_, output)| output)
    }

    /// [`try_join_next`](Self::try_join_next), with the member's
    /// [`TaskId`].
    pub fn try_join_next_with_id(&mut self) -> Option<(TaskId, Result<T, JoinError>)> {
        self.take_finished()
    }

    /// Polls the members the ready list names until one is finished.
    fn take_finished(&mut self) -> Option<(TaskId, Result<T, JoinError>)> {
        while let Some(key) = self.ready.next() {
            // An empty key: a stale wake of a member already joined.
            let Some(handle) = self.tasks.get_mut(key as usize) else {
                continue;
            };
            let waker = self.ready.waker(key);
            let mut cx = Context::from_waker(&waker);
            // Without spending: the entry's waker must be woken only by
            // the finish (see `JoinHandle::poll_join`).
            if let Poll::Ready(output) = handle.poll_join(&mut cx, false) {
                let handle = self.tasks.remove(key as usize);
                return Some((handle.id(), output));
            }
        }
        None
    }

    /// Aborts every member (see [`AbortHandle::abort`]). They stay in the
    /// set: [`join_next`](Self::join_next) returns each one's
    /// [`JoinError::Aborted`], or its output if it finished first.
    pub fn abort_all(&mut self) {
        for (_, handle) in &self.tasks {
            handle.abort();
        }
    }

    /// Removes every member without stopping it: the tasks run on, and
    /// their outputs are dropped.
    pub fn detach_all(&mut self) {
        self.tasks.clear();
    }

    /// Aborts every member and waits until each has stopped (its future
    /// dropped) or finished; the set is empty afterwards. Outputs that
    /// were ready are dropped. A blocking member still queued stops only
    /// once a pool thread takes it (see
    /// [`JoinHandle::abort`](crate::JoinHandle::abort)), and one running
    /// runs to its end: with the pool's threads all busy, this waits for
    /// them.
    pub async fn shutdown(&mut self) {
        self.abort_all();
        while self.join_next().await.is_some() {}
    }
}

impl<T> Default for JoinSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet").field("len", &self.len()).finish()
    }
}

impl<T> Drop for JoinSet<T> {
    fn drop(&mut self) {
        self.abort_all();
    }
}
