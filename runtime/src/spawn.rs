//! Spawning: how a future gets from a public `spawn` function into its
//! task block.
//!
//! # At most one copy of the future
//!
//! A connection's future holds its buffers (the echo example's is 16 KiB),
//! and Rust moves it by copying all of it unless the compiler can prove
//! the old place dead. The way in is written so that it can:
//!
//! * **nothing carries the future on the way**: no closure captures it
//!   (the worker lookup, [`LocalGuard::current`], takes no closure) and no
//!   `Option` or `Result` holds it;
//! * **allocate first, then move**: every check, the worker lookup and the
//!   block's allocation come before the future is moved, and from the move
//!   into the block ([`RawTask::init`]) nothing can unwind. A future moved
//!   into an inlined function and then held across a call that may unwind
//!   stays a copy, because the unwinding path must drop that copy;
//! * **inlined all the way**: the public functions only forward the future
//!   to [`spawn_here`] or [`spawn_on_worker`] (or [`Runtime::spawn`] to
//!   [`Executor::spawn`]), which are inlined into the caller, so the
//!   compiler sees where the future was built and where it goes.
//!
//! Measured (release build; callgrind, and the echo example's copies
//! counted by `tests/outside/count_allocs.py`): the echo example, which
//! passes its connection future through a helper, copied it four times
//! per accepted connection before these rules (a closure capture, two
//! inlined arguments, the write into the block) and once after, with one
//! worker or two, either accept mode and either API (spawning it right in
//! `spawn(connection(incoming, idle))` instead of through the helper still
//! makes one). The compiler may also write a future straight into its
//! block: in a small program a 16 KiB future spawned as `spawn(f(x))` (an
//! `async fn f` of a plain argument) was copied zero times; wrapped as
//! `spawn(async move { f(x).await })`, or passed through a function that
//! is not inlined, once.
//! Non-inlined `spawn_here` and `spawn_on_worker` (tried) made it one copy
//! in every case, and 24 instructions more per spawn. CI fails if the echo
//! example makes more than one copy per connection.
//!
//! [`Runtime::spawn`]: crate::Runtime::spawn
//! [`Executor::spawn`]: crate::worker::Executor::spawn

use std::future::Future;
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::join::JoinHandle;
use crate::shutdown::Shared;
use crate::task::{BlockMemory, RawTask, NO_HOME};
use crate::waker::{Inbox, LocalGuard};
use crate::worker::{release_task, Executor};

/// Spawns `future` on the worker running on this thread.
///
/// # Panics
///
/// Outside a runtime.
// Inlined: see the module doc.
#[inline(always)]
pub(crate) fn spawn_here<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
{
    let Some(executor) = LocalGuard::current() else {
        not_on_a_worker("spawn")
    };
    // SAFETY: `LocalGuard::enter`'s contract keeps the executor valid while
    // it is this thread's current worker, which it is for this whole call.
    let executor = unsafe { &*executor };
    let memory = executor.allocate_block::<F>();
    executor.start(memory, future)
}

/// Spawns `future` on worker `index` of `shared`'s runtime, or of the
/// runtime running this thread's worker when `shared` is `None`. `what`
/// names the public function, for the panic messages.
///
/// # Panics
///
/// If `index` is not a worker of the runtime, or `shared` is `None`
/// outside a runtime.
// Inlined: see the module doc.
#[inline(always)]
pub(crate) fn spawn_on_worker<F>(
    shared: Option<&Arc<Shared>>,
    index: usize,
    future: F,
    what: &'static str,
) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (current, shared) = sender(shared, what);
    let Some(&(worker, incarnation)) = shared.workers.get(index) else {
        panic!(
            "cellio: {what}({index}) on a runtime with {} workers",
            shared.workers.len()
        );
    };
    if let Some(executor) = current.filter(|executor| executor.incarnation() == incarnation) {
        let memory = executor.allocate_block::<F>();
        return executor.start(memory, future);
    }
    let (memory, home) = block_to_send::<F>(current);
    let (task, join) = RawTask::init(memory, future, home);
    if let Err(task) = Inbox::spawn(worker, incarnation, task) {
        // SAFETY: the task was never polled and its future is `Send`, so
        // dropping it on this thread is what its worker would do.
        unsafe { task.cancel() };
        release_task(task);
    }
    JoinHandle::new(join)
}

/// Who sends a task away from this thread (`spawn_on`, `spawn_blocking`):
/// the worker running here, if any, and the runtime the task goes to
/// (`shared`, or the current worker's, or, in a blocking job, the job's).
///
/// # Panics
///
/// With `shared: None` outside a runtime (`what` names the public
/// function).
#[inline(always)]
pub(crate) fn sender<'a>(
    shared: Option<&'a Arc<Shared>>,
    what: &'static str,
) -> (Option<&'a Executor>, Target<'a>) {
    let current = LocalGuard::current();
    // SAFETY: as in `spawn_here`: the executor stays valid while it is
    // this thread's worker, which it is for the whole spawn calling this.
    let current = current.map(|executor| unsafe { &*executor });
    let shared = match (shared, current) {
        (Some(shared), _) => Target::Given(shared),
        (None, Some(executor)) => Target::Given(&executor.shared),
        (None, None) => Target::OfTheJob(job_runtime(what)),
    };
    (current, shared)
}

/// The runtime a task or a job is sent to (see [`sender`]).
pub(crate) enum Target<'a> {
    /// The caller's, or the current worker's.
    Given(&'a Arc<Shared>),
    /// Off any worker, in a blocking job: the job's runtime.
    OfTheJob(Arc<Shared>),
}

impl Deref for Target<'_> {
    type Target = Arc<Shared>;

    #[inline(always)]
    fn deref(&self) -> &Arc<Shared> {
        match self {
            Target::Given(shared) => shared,
            Target::OfTheJob(shared) => shared,
        }
    }
}

/// The runtime of the blocking job running on this thread; panics if none
/// is (`what` names the public function).
#[cold]
#[inline(never)]
fn job_runtime(what: &str) -> Arc<Shared> {
    crate::blocking::current_job_runtime().unwrap_or_else(|| outside_runtime(what))
}

/// The panic of a spawn that needs a worker on this thread (`spawn`,
/// `spawn_local`): in a blocking job or a thread hook there is none, but
/// there is a runtime, and the message says what works there.
#[cold]
#[inline(never)]
pub(crate) fn not_on_a_worker(what: &str) -> ! {
    if crate::thread_hooks::in_hook() {
        panic!(
            "cellio: {what} called in a thread hook (on_thread_start or on_thread_stop): the \
             hook runs outside any task, so no worker runs a task started there with {what}; \
             start it on a worker with spawn_on(index, ..) (or \
             RuntimeHandle::current().unwrap().spawn_on)"
        )
    }
    if crate::blocking::current_job_runtime().is_some() {
        panic!(
            "cellio: {what} called in a spawn_blocking job: it runs on a blocking thread, where \
             no worker runs tasks; start the task on a worker with spawn_on(index, ..) (or \
             RuntimeHandle::current().unwrap().spawn_on), or spawn it from the task that awaits \
             the job"
        )
    }
    outside_runtime(what)
}

/// Memory for a task block that leaves this thread, and its home: from
/// the sending worker's pool, to go back to it when the task ends
/// (through the worker's inbox); off any worker, from the system
/// allocator.
#[inline(always)]
pub(crate) fn block_to_send<F: Future>(current: Option<&Executor>) -> (BlockMemory<F>, (u16, u8)) {
    match current {
        Some(executor) => (executor.allocate_block::<F>(), executor.id()),
        None => (RawTask::allocate::<F>(None), NO_HOME),
    }
}

#[cold]
#[inline(never)]
pub(crate) fn outside_runtime(what: &str) -> ! {
    panic!("cellio: {what} called outside a runtime; call it inside Runtime::block_on or a task")
}

/// The task future of [`spawn_local_on`](crate::spawn_local_on): the `Send`
/// closure `make` until the first poll, which calls it and from then on
/// drives the future it made, which need not be `Send`.
///
/// # Why it may cross threads
///
/// It claims `Send` whenever `M` is `Send`, whatever `F` is. That holds
/// because the runtime moves or drops a task's future on another thread
/// only before its first poll (a task in an inbox, or refused by one: see
/// `task::raw`, "The future is touched only by the owning worker"), and
/// before its first poll this holds only `make`. The first poll, on the
/// owning worker, builds the future there, and from then on the task never
/// leaves that worker. The type is private to the runtime and only ever a
/// task's future, so no other code can move it after that.
///
/// # Why the future has a field of its own
///
/// The made future is written straight into `future`, one copy from
/// `make`'s return. An enum assigned `Run(make())`, or an async block
/// awaiting `make()`, copied it twice (the echo example's 16 KiB future:
/// 1.5 large copies per connection with half the connections handed off,
/// against the one that CI allows).
pub(crate) struct MadeThere<M, F> {
    /// Until the first poll.
    make: Option<M>,
    /// Initialised by the first poll, when `made` becomes `true`; pinned
    /// from then on (never moved until it is dropped in place).
    future: MaybeUninit<F>,
    made: bool,
}

impl<M, F> MadeThere<M, F> {
    /// A task future that will build its future by calling `make`.
    #[inline(always)]
    pub(crate) fn new(make: M) -> Self {
        Self {
            make: Some(make),
            future: MaybeUninit::uninit(),
            made: false,
        }
    }
}

// SAFETY: a `MadeThere` crosses threads only before its first poll, when
// it holds only `make`, which is `Send`: see the type's doc.
unsafe impl<M: Send, F> Send for MadeThere<M, F> {}

impl<M, F> Future for MadeThere<M, F>
where
    M: FnOnce() -> F,
    F: Future,
{
    type Output = F::Output;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: nothing below moves out of `this` but `make`, which is
        // never pinned; `future` stays where it is written.
        let this = unsafe { self.get_unchecked_mut() };
        if !this.made {
            // `None` only if an earlier `make` panicked, after which the
            // runtime never polls a task again.
            let make = this
                .make
                .take()
                .expect("MadeThere polled after its make panicked");
            this.future.write(make());
            this.made = true;
        }
        // SAFETY: `made`, so `future` is initialised; it is pinned because
        // `this` is, and nothing moves it (see `future`'s doc).
        unsafe { Pin::new_unchecked(this.future.assume_init_mut()) }.poll(cx)
    }
}

impl<M, F> Drop for MadeThere<M, F> {
    fn drop(&mut self) {
        if self.made {
            // SAFETY: `made`, so `future` is initialised, and it is dropped
            // once: this is `MadeThere`'s own drop.
            unsafe { self.future.assume_init_drop() }
        }
    }
}
