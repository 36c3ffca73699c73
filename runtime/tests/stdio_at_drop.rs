//! `io::{stdout, stderr}` at the runtime's drop: what was written (and
//! not flushed) reaches the descriptor before the drop returns, as the
//! `io` docs promise, even when the write's job is still queued. A binary
//! of its own, with one test: it points descriptors 1 and 2 of the whole
//! test process at pipes.
//!
//! Not under Miri: its isolation has no descriptors to redirect.
#![cfg(not(miri))]

#[path = "util/redirect.rs"]
mod redirect;
mod util;

use std::io::Read;
use std::os::fd::RawFd;
use std::time::Duration;

use redirect::{pipe, redirect, restore};

use cellio_runtime::io::{stderr, stdout};

/// What reaches descriptor `target` (1 or 2, pointed at a pipe
/// meanwhile) when a runtime whose one blocking thread is busy writes
/// `message` to it through `stdout()` or `stderr()` and is dropped at
/// once.
fn written_before_the_drop(target: RawFd, message: &'static [u8]) -> Vec<u8> {
    let (mut read, write_end) = pipe();
    let saved = redirect(target, &write_end);
    drop(write_end);
    let collector = std::thread::spawn(move || {
        let mut all = Vec::new();
        read.read_to_end(&mut all).map(|_| all)
    });
    util::with_timeout(util::LIMIT, move || {
        let runtime = cellio_runtime::Builder::new()
            .workers(1)
            .max_blocking_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async move {
            // The pool's one thread is busy until after the drop began, so
            // the write's job is still queued then.
            let (started, started_rx) = std::sync::mpsc::channel();
            drop(cellio_runtime::spawn_blocking(move || {
                started.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(200));
            }));
            started_rx.recv_timeout(util::LIMIT).unwrap();
            match target {
                1 => stdout().unwrap().write_all(message).await.unwrap(),
                _ => stderr().unwrap().write_all(message).await.unwrap(),
            }
        });
    });
    // The descriptor back before anything can fail: the collector sees
    // the end once the last write end (`target`) is gone.
    restore(target, saved);
    collector.join().unwrap().unwrap()
}

/// A write to stdout, then one to stderr, each accepted (`Ok`, no
/// `flush`) while the pool's one thread is busy, reach their descriptors
/// before the runtime's drop returns. (The drop used to cancel the queued
/// write jobs, and a program whose last act was such a write printed
/// nothing; found by a review.)
#[test]
fn stdout_and_stderr_written_before_the_drop_reach_their_descriptors() {
    let out = written_before_the_drop(1, b"to stdout\n");
    let err = written_before_the_drop(2, b"to stderr\n");
    assert_eq!(String::from_utf8_lossy(&out), "to stdout\n");
    assert_eq!(String::from_utf8_lossy(&err), "to stderr\n");
}
