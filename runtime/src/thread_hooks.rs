//! [`ThreadHooks`]: code a runtime runs on each of its own threads as the
//! thread starts and as it ends
//! ([`Builder::on_thread_start`](crate::Builder::on_thread_start),
//! [`Builder::on_thread_stop`](crate::Builder::on_thread_stop)).
//!
//! # Invariants
//!
//! * A hook never unwinds into the runtime: a panic in it is caught and
//!   logged, and the thread goes on (a blocking thread that unwound would
//!   leave the pool counting a thread that is gone; a worker, its tasks).
//! * A thread's stop hook runs only if its start hook ran, once, as the
//!   thread ends, also when it ends by a panic ([`Started`]'s drop).
//! * While a hook runs, its runtime is the thread's current one (as a
//!   blocking job's is: `RuntimeHandle::current()` returns it, as tokio's
//!   `Handle::current()` does in its hooks), when the runtime is still
//!   there; nothing of it is made current when no hook is set.
//! * While a hook runs, [`in_hook`] says so (a flag of the thread's, set
//!   and cleared around the hook, also when it panics), for the panic of a
//!   `spawn` there to name the hook rather than a blocking job.

use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};

use crate::shutdown::Shared;

thread_local! {
    /// Whether a thread hook is running on this thread.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is running a thread hook (`on_thread_start`,
/// `on_thread_stop`).
pub(crate) fn in_hook() -> bool {
    IN_HOOK.try_with(Cell::get).unwrap_or(false)
}

/// Sets [`IN_HOOK`] until dropped.
struct InHook;

impl InHook {
    fn enter() -> Self {
        let _ = IN_HOOK.try_with(|flag| flag.set(true));
        InHook
    }
}

impl Drop for InHook {
    fn drop(&mut self) {
        let _ = IN_HOOK.try_with(|flag| flag.set(false));
    }
}

/// A hook: shared by every thread it runs on.
type Hook = Arc<dyn Fn() + Send + Sync>;

/// The start and stop hooks a runtime's threads run.
#[derive(Clone, Default)]
pub(crate) struct ThreadHooks {
    pub(crate) start: Option<Hook>,
    pub(crate) stop: Option<Hook>,
}

impl ThreadHooks {
    /// Runs the start hook on this thread, with `runtime` current; the
    /// stop hook runs when the result drops.
    pub(crate) fn started(&self, runtime: &Arc<Shared>) -> Started<'_> {
        let runtime = Arc::downgrade(runtime);
        self.run_start(&runtime);
        Started(self, runtime)
    }

    /// Runs the start hook, if any, on this thread, with `runtime`
    /// current.
    pub(crate) fn run_start(&self, runtime: &Weak<Shared>) {
        run("start", self.start.as_ref(), runtime);
    }

    /// Runs the stop hook, if any, on this thread, with `runtime` current
    /// if it is still there.
    pub(crate) fn run_stop(&self, runtime: &Weak<Shared>) {
        run("stop", self.stop.as_ref(), runtime);
    }
}

/// A thread whose start hook ran: dropping it runs the stop hook.
pub(crate) struct Started<'a>(&'a ThreadHooks, Weak<Shared>);

impl Drop for Started<'_> {
    fn drop(&mut self) {
        self.0.run_stop(&self.1);
    }
}

/// Runs `hook`, if any, with `runtime` current (if it is still there),
/// catching a panic (see the module's invariants).
fn run(which: &str, hook: Option<&Hook>, runtime: &Weak<Shared>) {
    let Some(hook) = hook else { return };
    let _current = runtime.upgrade().map(crate::blocking::JobRuntime::enter);
    let _in_hook = InHook::enter();
    // Unwind safety: the hook is the user's, and nothing of the runtime's
    // is borrowed across it.
    if catch_unwind(AssertUnwindSafe(|| hook())).is_err() {
        tracing::error!(
            thread = std::thread::current().name().unwrap_or("?"),
            "cellio: a thread {which} hook panicked; the thread goes on"
        );
    }
}

impl fmt::Debug for ThreadHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadHooks")
            .field("start", &self.start.is_some())
            .field("stop", &self.stop.is_some())
            .finish()
    }
}
