//! Panics raised on purpose by tests: their text, a hook that keeps them
//! out of the output, and a waker that panics. Shared by cellio-runtime's
//! tests (through `util`) and cellio-net's (by path).
#![allow(dead_code)]

use std::sync::Arc;
use std::task::{Wake, Waker};

/// The text a panicking waker's panic ends with.
pub const ON_PURPOSE: &str = "on purpose";

/// The text of a panic payload (`&str` or `String`).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Keeps the messages of panics raised on purpose (their text ends with
/// `suffix`) out of the test output; every other panic is reported by the
/// hook that was installed before. Process-wide, like the hook itself.
pub fn quiet_panics_ending_with(suffix: &'static str) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !panic_text(info.payload()).ends_with(suffix) {
            previous(info);
        }
    }));
}

/// A waker whose `wake` panics (with a text ending in [`ON_PURPOSE`]): the
/// one piece of user code a worker's loop runs outside a task's poll (the
/// reactor or a timer wakes it there).
pub fn panicking_waker() -> Waker {
    Waker::from(Arc::new(PanickingWaker))
}

struct PanickingWaker;

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("a waker that panics, on purpose");
    }
}
