//! The echo server example's shutdown on SIGTERM or SIGINT
//! (`examples/common/shutdown_signals.rs`): the first signal stops the
//! accepting and gives open connections `--grace-ms` to finish; a second
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
