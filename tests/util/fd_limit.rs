//! Starting a program under a limit on open files (`ulimit -n`) that means
//! the same whatever descriptors this test inherited: `bash` closes every
//! descriptor above 2 (the standard streams), then sets the limit, then
//! `exec`s the program, which so starts with exactly three descriptors
//! open and `N - 3` free under `ulimit -n N`, however many the test harness
//! (a CI runner, an agent, make's jobserver) passed on. (A fixed `ulimit`
//! on top of what was inherited left a number free that depended on the
//! harness: with a few descriptors more, a server under `-n 40` died
//! before listening, and one under `-n 5` could not even load its shared
//! libraries; found by a review.)
//!
//! `bash`, not `sh`: dash takes only single-digit descriptors in a
//! redirection. The program is the child itself (`exec`), so signals and
//! `/proc/PID` reach it.

use std::ffi::OsStr;
use std::process::Command;

/// Closes every descriptor of the shell above 2 (`/proc/$$/fd`; the
/// glob's own directory descriptor is closed again, harmlessly).
const CLOSE_INHERITED: &str = "for fd in /proc/$$/fd/*; do fd=${fd##*/}; \
     if [ \"$fd\" -gt 2 ]; then eval \"exec $fd<&-\"; fi; done";

/// `program` (the caller adds its arguments) started with only the
/// standard streams open, under `ulimit LIMIT` (e.g. `-n 40`: the soft
/// and the hard limit, `-S -n 40`: the soft limit only).
#[allow(dead_code)] // not every includer uses it
pub fn under_ulimit(program: impl AsRef<OsStr>, limit: &str) -> Command {
    under_ulimit_holding(program, limit, 0)
}

/// As [`under_ulimit`], but with `held` descriptors more open than the
/// standard streams (3 and up, `/dev/null`), as a harness may pass them
/// on: for a program that must count the descriptors it starts with.
#[allow(dead_code)] // not every includer uses it
pub fn under_ulimit_holding(program: impl AsRef<OsStr>, limit: &str, held: usize) -> Command {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!(
            "{CLOSE_INHERITED}; for ((fd = 3; fd < {}; fd++)); do eval \"exec $fd</dev/null\"; \
             done; ulimit {limit} && exec \"$0\" \"$@\"",
            held + 3
        ))
        .arg(program);
    command
}

/// `command` (its program and arguments only) started with `count`
/// descriptors more than the standard streams (3 and up, `/dev/null`, not
/// close-on-exec), as a test harness may pass them on: to check that a
/// limit set by [`under_ulimit`] does not depend on them.
#[allow(dead_code)] // not every includer checks it
pub fn with_inherited(command: &Command, count: usize) -> Command {
    let mut outer = Command::new("bash");
    outer
        .arg("-c")
        .arg(format!(
            "for ((fd = 3; fd < {}; fd++)); do eval \"exec $fd</dev/null\"; done; \
             exec \"$0\" \"$@\"",
            count + 3
        ))
        .arg(command.get_program())
        .args(command.get_args());
    outer
}
