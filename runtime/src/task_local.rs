//! Task-local values: tokio's `task_local!`. A value set with
//! [`LocalKey::scope`] is visible to everything the scoped future runs,
//! across its `.await`s, wherever it is polled, and to nothing else.
//!
//! The value lives in the scoping future and is lent to a thread-local for
//! the length of each poll: moved in before the inner future is polled,
//! moved back out after (also if the poll panics). So a task switch on the
//! worker never sees another task's value, and nothing is allocated or
//! locked.
//!
//! # Invariants
//!
//! * Outside a poll of its [`TaskLocalFuture`] (or a
//!   [`sync_scope`](LocalKey::sync_scope) call), a key's thread-local
//!   holds whatever the enclosing scope on this thread put there, or
//!   nothing: every scope swaps its value in and back out, innermost last
//!   in, first out.
//! * The inner future is also dropped with its value in scope (a
//!   destructor that reads the key sees it), as tokio does.

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Declares task-local keys: `static NAME: Type;`, any number, each with
/// its attributes and visibility. tokio's `task_local!`.
///
/// # Examples
///
/// ```
/// cellio_runtime::task_local! {
///     /// The id of the request being served.
///     static REQUEST_ID: u64;
/// }
///
/// async fn log_line() -> String {
///     format!("request {}", REQUEST_ID.get())
/// }
///
/// let rt = cellio_runtime::Runtime::new()?;
/// let line = rt.block_on(REQUEST_ID.scope(42, async {
///     cellio_runtime::yield_now().await;
///     log_line().await
/// }));
/// assert_eq!(line, "request 42");
/// # Ok::<(), std::io::Error>(())
/// ```
#[macro_export]
macro_rules! task_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty; $($rest:tt)*) => {
        $(#[$attr])*
        $vis static $name: $crate::task_local::LocalKey<$t> = {
            ::std::thread_local! {
                static __CELLIO_TASK_LOCAL: ::std::cell::RefCell<::std::option::Option<$t>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }
            $crate::task_local::LocalKey::__new(&__CELLIO_TASK_LOCAL)
        };
        $crate::task_local!($($rest)*);
    };
}

/// A key declared with [`task_local!`](crate::task_local!): set it for a
/// future with [`scope`](Self::scope), read it inside with
/// [`with`](Self::with) or [`get`](Self::get).
pub struct LocalKey<T: 'static> {
    inner: &'static std::thread::LocalKey<RefCell<Option<T>>>,
}

impl<T: 'static> LocalKey<T> {
    /// For [`task_local!`](crate::task_local!) only.
    #[doc(hidden)]
    pub const fn __new(inner: &'static std::thread::LocalKey<RefCell<Option<T>>>) -> Self {
        Self { inner }
    }

    /// Runs `future` with this key set to `value`: each poll of the
    /// returned future sees it, and so does the inner future's drop.
    /// Scopes nest: an inner scope of the same key hides the outer value
    /// until it ends.
    pub fn scope<F: Future>(&'static self, value: T, future: F) -> TaskLocalFuture<T, F> {
        TaskLocalFuture {
            key: self,
            slot: Some(value),
            future: Some(future),
        }
    }

    /// Runs `f` with this key set to `value`, synchronously.
    pub fn sync_scope<R>(&'static self, value: T, f: impl FnOnce() -> R) -> R {
        let mut slot = Some(value);
        let _lent = self.lend(&mut slot).unwrap_or_else(|e| e.panic());
        f()
    }

    /// Calls `f` with a reference to the value in scope.
    ///
    /// # Panics
    ///
    /// Outside any scope of this key (use [`try_with`](Self::try_with)
    /// where that can happen), or inside `f` of another `with` of this key
    /// that enters a new scope of it.
    #[track_caller]
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        match self.try_with(f) {
            Ok(result) => result,
            Err(AccessError) => panic!(
                "cellio: a task-local value was read outside any `scope` of its key \
                 (use `try_with` or `try_get` where that can happen)"
            ),
        }
    }

    /// Calls `f` with a reference to the value in scope, or returns
    /// [`AccessError`] outside any scope of this key.
    pub fn try_with<R>(&'static self, f: impl FnOnce(&T) -> R) -> Result<R, AccessError> {
        self.inner
            .try_with(|cell| cell.borrow().as_ref().map(f))
            .ok()
            .flatten()
            .ok_or(AccessError)
    }

    /// Swaps `slot` into the thread-local and returns the guard that swaps
    /// it back.
    fn lend<'s>(&'static self, slot: &'s mut Option<T>) -> Result<Lent<'s, T>, ScopeError> {
        self.inner
            .try_with(|cell| {
                let mut current = cell.try_borrow_mut().map_err(|_| ScopeError::Borrowed)?;
                std::mem::swap(&mut *current, slot);
                Ok(())
            })
            .map_err(|_| ScopeError::ThreadGone)??;
        Ok(Lent { key: self, slot })
    }
}

impl<T: Clone + 'static> LocalKey<T> {
    /// A copy of the value in scope.
    ///
    /// # Panics
    ///
    /// Outside any scope of this key, as [`with`](Self::with).
    #[track_caller]
    pub fn get(&'static self) -> T {
        self.with(T::clone)
    }

    /// A copy of the value in scope, or [`AccessError`] outside any.
    pub fn try_get(&'static self) -> Result<T, AccessError> {
        self.try_with(T::clone)
    }
}

impl<T: 'static> fmt::Debug for LocalKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKey").finish_non_exhaustive()
    }
}

/// A value swapped into its key's thread-local; swaps it back when
/// dropped (after the poll, or while a panic unwinds through it).
struct Lent<'s, T: 'static> {
    key: &'static LocalKey<T>,
    slot: &'s mut Option<T>,
}

impl<T: 'static> Drop for Lent<'_, T> {
    fn drop(&mut self) {
        let _ = self.key.inner.try_with(|cell| {
            // A `with` cannot be running here: the lending poll or
            // `sync_scope` call is over (or unwinding), and `with` borrows
            // only for the length of its closure.
            std::mem::swap(&mut *cell.borrow_mut(), self.slot);
        });
    }
}

/// Why a scope could not be entered.
enum ScopeError {
    /// A `with` of the same key is running on this thread (the scope was
    /// entered from inside its closure).
    Borrowed,
    /// The thread's locals are being destroyed.
    ThreadGone,
}

impl ScopeError {
    #[track_caller]
    fn panic(self) -> ! {
        match self {
            ScopeError::Borrowed => panic!(
                "cellio: a scope of a task-local key was entered inside `with` of the same key"
            ),
            ScopeError::ThreadGone => panic!(
                "cellio: a task-local scope was entered while its thread's locals were \
                 being destroyed"
            ),
        }
    }
}

/// The key was read outside any scope of it ([`LocalKey::try_with`],
/// [`LocalKey::try_get`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessError;

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task-local value read outside any scope of its key")
    }
}

impl Error for AccessError {}

/// Future of [`LocalKey::scope`]: the inner future's output.
#[must_use = "futures do nothing unless polled"]
pub struct TaskLocalFuture<T: 'static, F> {
    key: &'static LocalKey<T>,
    /// The value, here between polls and lent to the thread-local during
    /// them.
    slot: Option<T>,
    /// `None` once it finished (dropped right away, in scope).
    future: Option<F>,
}

impl<T: 'static, F: Future> Future for TaskLocalFuture<T, F> {
    type Output = F::Output;

    #[track_caller]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // `future` is structurally pinned: never moved out, only dropped
        // in place (`= None`, or with `self`); `slot` and `key` are not
        // pinned, so lending `slot` by `&mut` moves nothing that is.
        // SAFETY: so nothing pinned moves through `this`.
        let this = unsafe { self.get_unchecked_mut() };
        let key = this.key;
        let _lent = key.lend(&mut this.slot).unwrap_or_else(|e| e.panic());
        let Some(future) = this.future.as_mut() else {
            panic!("cellio: a task-local scope's future was polled after it finished");
        };
        // SAFETY: as above, `future` is pinned with `self`.
        let poll = unsafe { Pin::new_unchecked(future) }.poll(cx);
        if poll.is_ready() {
            // Dropped here, with the value still lent (module invariants).
            this.future = None;
        }
        poll
    }
}

impl<T: 'static, F> Drop for TaskLocalFuture<T, F> {
    fn drop(&mut self) {
        if self.future.is_none() {
            return;
        }
        let key = self.key;
        // Dropped in scope when the value can be lent; if not (the thread
        // is going away), dropped all the same.
        let _lent = key.lend(&mut self.slot).ok();
        self.future = None;
    }
}

impl<T: fmt::Debug + 'static, F> fmt::Debug for TaskLocalFuture<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskLocalFuture")
            .field("value", &self.slot)
            .field("finished", &self.future.is_none())
            .finish()
    }
}
