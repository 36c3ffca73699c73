//! The echo server example's shutdown on SIGTERM or SIGINT
//! (`examples/common/shutdown_signals.rs`): the first signal stops the
//! accepting and gives open connections `--grace-ms` to finish, then says
//! how many it closed (`examples/common/worker_listeners.rs`); a second
//! one, during that grace period, ends the process at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

#[path = "util/echo_server_process.rs"]
mod echo_server_process;

use echo_server_process::EchoServer;

/// A connection to `server`, served: one byte echoed.
fn served(server: &EchoServer) -> TcpStream {
    let mut stream = TcpStream::connect(&server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"x").expect("send");
    stream.read_exact(&mut [0u8; 1]).expect("the echo");
    stream
}

/// Waits (up to 10 s) for `server` to refuse connections: its accept loop
/// has seen the shutdown.
fn refuses_connections(server: &EchoServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&server.addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting 10 s after the signal"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The second SIGTERM (or Ctrl-C) during the grace period ends the server
/// at once, by the signal's default action, closing the connection that
/// held the grace period up. (It was ignored: the server stayed until the
/// grace period ended, for good with a long enough one; found by a review.)
#[test]
fn a_second_signal_during_the_grace_period_ends_the_server_at_once() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut server = EchoServer::start(&["--grace-ms", "600000"], None);
        let mut held = served(&server);
        server.signal(signal);
        refuses_connections(&server);
        // The open connection holds the grace period up.
        assert!(
            server.wait_exit(Duration::ZERO).is_none(),
            "signal {signal}: exited with a connection open"
        );
        server.signal(signal);
        let status = server
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("signal {signal}: still running 10 s after the second"));
        assert_eq!(status.signal(), Some(signal), "{status}");
        // Closed by the kernel as the process ended.
        assert!(
            matches!(held.read(&mut [0u8; 1]), Ok(0) | Err(_)),
            "signal {signal}: the connection is still open"
        );
        let said: Vec<String> = server.lines.try_iter().collect();
        assert!(said.is_empty(), "signal {signal}: {said:?}");
    }
}

/// The line on the connections the grace period's end closed counts
/// connections, and only them: none with no client (however many workers'
/// accept loops there are), two with two held open, whichever worker
/// serves them. (The runtime's count of cancelled tasks was printed: other
/// workers' accept loops that had not yet seen the shutdown came out as
/// connections, 1 or 2 with `--workers 3` and no client; found by a
/// review.)
#[test]
fn only_connections_count_as_closed_after_the_grace_period() {
    let closed_line = |said: &[String]| -> Option<String> {
        let lines: Vec<&String> = said.iter().filter(|l| l.contains("still open")).collect();
        assert!(lines.len() <= 1, "{said:?}");
        lines.first().map(|l| l.to_string())
    };
    for accept in ["reuseport", "handoff"] {
        let args = ["--workers", "3", "--grace-ms", "0", "--accept", accept];
        // No client: the other workers' accept loops may not have seen the
        // shutdown when the grace period (none) ends. A race: run it a few
        // times.
        for _ in 0..5 {
            let mut server = EchoServer::start(&args, None);
            server.signal(libc::SIGTERM);
            let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
            assert!(status.success(), "--accept {accept}: {status}");
            let said: Vec<String> = server.lines.iter().collect();
            assert_eq!(closed_line(&said), None, "--accept {accept}");
        }
        let mut server = EchoServer::start(&args, None);
        let held = [served(&server), served(&server)];
        server.signal(libc::SIGTERM);
        let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
        assert!(status.success(), "--accept {accept}: {status}");
        let said: Vec<String> = server.lines.iter().collect();
        assert_eq!(
            closed_line(&said).as_deref(),
            Some("echo_server: closed 2 connections still open after the grace period"),
            "--accept {accept}"
        );
        drop(held);
    }
}
