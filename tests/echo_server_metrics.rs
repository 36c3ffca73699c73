//! The echo server example's `--metrics-ms`: a line per worker on stderr
//! at every interval, from the runtime's metrics, whose rates and busy
//! share show the echoes a client makes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[path = "util/echo_server_process.rs"]
mod echo_server_process;

use echo_server_process::EchoServer;

/// The number after `label` in a metrics line (`"2000 polls"` → 2000).
fn figure(line: &str, label: &str) -> f64 {
    let before = line
        .split(label)
        .next()
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"));
    before
        .rsplit(' ')
        .find(|word| !word.is_empty())
        .and_then(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no figure before {label:?} in {line:?}"))
}

#[test]
fn every_worker_reports_and_the_echoes_show_as_polls() {
    let server = EchoServer::start(&["--workers", "2", "--metrics-ms", "50"], None);
    let mut client = TcpStream::connect(&server.addr).expect("connect");
    let start = Instant::now();
    let mut seen = [false; 2];
    let mut busiest = 0.0f64;
    let mut most_busy = 0.0f64;
    // Echo until both workers reported and one reported polls at the
    // rate of the echoes (each echo is at least one poll), and time busy.
    while !(seen[0] && seen[1] && busiest >= 100.0 && most_busy > 0.0) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no such metrics lines in 10 s (workers seen: {seen:?}, most polls/s: {busiest}, \
             most busy: {most_busy}%)"
        );
        for _ in 0..50 {
            client.write_all(&[7u8; 64]).unwrap();
            let mut echo = [0u8; 64];
            client.read_exact(&mut echo).unwrap();
            assert_eq!(echo, [7u8; 64]);
        }
        for line in server.lines.try_iter() {
            let Some(rest) = line.strip_prefix("metrics: worker ") else {
                continue;
            };
            let worker: usize = rest[..1].parse().expect("a worker number");
            seen[worker] = true;
            busiest = busiest.max(figure(&line, " polls"));
            let busy = figure(&line, "% busy");
            // At most the whole interval, give or take the last turns'
            // time, published late (`WorkerMetrics::busy_time`).
            assert!((0.0..=150.0).contains(&busy), "{line}");
            most_busy = most_busy.max(busy);
            assert!(figure(&line, " tasks alive") >= 1.0, "{line}");
        }
    }
}
