//! Restarts of the HTTP example under a stream of new connections, each
//! sending its request at once (as every HTTP client does) and reading its
//! answer to the end: every request must be answered, by the old server
//! or its successor. Included by the restart tests, which say how a server
//! starts and how a client asks (in cleartext, over TLS).
#![allow(dead_code)]

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::example_bin::{self, RunningExample};

/// Restarts in one run.
pub const RESTARTS: usize = 5;
/// Client threads, each asking one request per connection.
const CLIENTS: usize = 8;
/// The most requests one client asks.
const MOST_PER_CLIENT: usize = 10_000;
/// Requests answered before the first restart and between two restarts.
const BETWEEN_RESTARTS: usize = 50;

/// Starts a server with `start` and `--restart-socket`, then restarts it
/// [`RESTARTS`] times (`--take-over`) while [`CLIENTS`] threads each open
/// connection after connection and send one request on each with
/// `request(addr)` (the response's bytes to the end of the stream, which
/// must be a `200` with `hello from cellio`). Panics, saying what was seen,
/// if any request was not answered.
pub fn restarts_answer_every_request<S, R>(name: &str, start: S, request: R)
where
    S: Fn(&[&str]) -> RunningExample,
    R: Fn(&str) -> io::Result<Vec<u8>> + Clone + Send + 'static,
{
    let path = std::env::temp_dir().join(format!(
        "cellio-http-restart-churn-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let path_arg = path.to_str().unwrap();
    let mut server = start(&["--restart-socket", path_arg]);
    let addr = server.addr.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (addr, request) = (addr.clone(), request.clone());
            let (stop, answered, done, failures) = (
                stop.clone(),
                answered.clone(),
                done.clone(),
                failures.clone(),
            );
            thread::spawn(move || {
                for _ in 0..MOST_PER_CLIENT {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match request(&addr) {
                        Ok(all)
                            if all.starts_with(b"HTTP/1.1 200")
                                && all.ends_with(b"hello from cellio\n") =>
                        {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(all) if all.is_empty() => failures
                            .lock()
                            .unwrap()
                            .push("closed, no answer".to_string()),
                        Ok(all) => failures
                            .lock()
                            .unwrap()
                            .push(format!("{:?}", String::from_utf8_lossy(&all))),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    // The clients have been answered `BETWEEN_RESTARTS` more times (or
    // have all asked their most), within a generous limit.
    let more_answered = || {
        let from = answered.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while answered.load(Ordering::Relaxed) < from + BETWEEN_RESTARTS
            && done.load(Ordering::Relaxed) < CLIENTS
        {
            assert!(
                Instant::now() < deadline,
                "{name}: the clients were not answered {BETWEEN_RESTARTS} times in 30 s"
            );
            thread::sleep(Duration::from_millis(5));
        }
    };
    more_answered();
    for _ in 0..RESTARTS {
        let successor = start(&["--restart-socket", path_arg, "--take-over", path_arg]);
        assert_eq!(successor.addr, addr);
        let status = example_bin::wait_exit(&mut server.child, Duration::from_secs(20))
            .expect("the old server exits");
        assert!(status.success(), "{name}: the old server: {status:?}");
        server = successor;
        more_answered();
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let _ = std::fs::remove_file(&path);
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{name}: {} requests answered, {} not through {RESTARTS} restarts: {:?}",
        answered.load(Ordering::Relaxed),
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}
