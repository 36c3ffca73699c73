//! What a server process says on stderr, line by line, for the tests that
//! read it (the echo servers' backoff reports, for one). Not every test
//! that includes it uses every function.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// Reads `stderr` on a thread of its own, echoing each line on this test's
/// stderr (shown when it fails) and sending it on.
pub fn lines_of(stderr: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("server: {line}");
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// The out-of-descriptors check both echo servers' tests make: since
/// `start`, the accept loop reported failing at least once and at most about
/// once a second.
pub fn assert_backoff_reported_rarely(lines: &Receiver<String>, start: Instant) {
    assert_reported_rarely(lines, start, "accept failed");
}

/// Since `start`, lines containing `needle` came at least once and at most
/// about once a second (an accept loop's backoff reports).
pub fn assert_reported_rarely(lines: &Receiver<String>, start: Instant, needle: &str) {
    let failures = lines.try_iter().filter(|l| l.contains(needle)).count() as u64;
    let bound = 2 + start.elapsed().as_secs();
    assert!(
        (1..=bound).contains(&failures),
        "{failures} lines with {needle:?} in {:?}",
        start.elapsed()
    );
}

/// Whether a line containing `needle` comes within `within`.
pub fn says_within(lines: &Receiver<String>, needle: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    std::iter::from_fn(|| {
        let left = deadline.checked_duration_since(Instant::now())?;
        lines.recv_timeout(left).ok()
    })
    .any(|l| l.contains(needle))
}
