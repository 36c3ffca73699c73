//! The echo server example's `--idle-timeout-ms`: a connection that makes
//! no progress for that long is closed, whether it is silent or sends
//! without ever reading its echoes (which used to hold its task and its
//! descriptor for good, the echo's send waiting forever); one that reads
//! its echoes, however slowly, is not.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

#[path = "util/echo_server_process.rs"]
mod echo_server_process;

use echo_server_process::EchoServer;

/// How a read from the server ended once the connection had gone quiet.
#[derive(Debug, PartialEq)]
enum Ended {
    /// The server closed the connection (EOF, or a reset: it closed with
    /// our bytes unread).
    Closed,
    /// Nothing came for the read timeout: the connection is still open.
    StillOpen,
}

/// Reads (and drops) everything the server sends, until it closes or
/// sends nothing for `quiet`.
fn drain(stream: &mut TcpStream, quiet: Duration) -> Ended {
    stream.set_read_timeout(Some(quiet)).expect("read timeout");
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ended::Closed,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ended::StillOpen
            }
            Err(_) => return Ended::Closed,
        }
    }
}

/// Sends until the send buffers on both sides are full: the server is then
/// stuck sending an echo this peer does not read.
fn flood(stream: &mut TcpStream) {
    stream.set_nonblocking(true).expect("nonblocking");
    let chunk = [7u8; 64 * 1024];
    let mut stalled = 0;
    // A few rounds of WouldBlock in a row: the server has stopped taking.
    while stalled < 20 {
        match stream.write(&chunk) {
            Ok(_) => stalled = 0,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                stalled += 1;
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("send: {e}"),
        }
    }
    stream.set_nonblocking(false).expect("blocking");
}

#[test]
fn a_peer_that_never_reads_is_closed_after_the_idle_timeout() {
    for api in ["futures", "poll", "readiness"] {
        let server = EchoServer::start(&["--idle-timeout-ms", "300", "--api", api], None);
        let mut peer = TcpStream::connect(&server.addr).expect("connect");
        flood(&mut peer);
        // Well past the idle timeout, then take what was echoed: the server
        // must have given up on this connection by now.
        thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            drain(&mut peer, Duration::from_secs(3)),
            Ended::Closed,
            "--api {api}"
        );
        // Closing an idle connection is routine: nothing on stderr.
        let said: Vec<String> = server.lines.try_iter().collect();
        assert!(said.is_empty(), "--api {api}: {said:?}");
    }
}

#[test]
fn a_silent_peer_is_closed_and_a_busy_one_is_not() {
    for api in ["futures", "readiness"] {
        let server = EchoServer::start(&["--idle-timeout-ms", "300", "--api", api], None);
        let mut silent = TcpStream::connect(&server.addr).expect("connect");
        let mut busy = TcpStream::connect(&server.addr).expect("connect");
        busy.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        // The busy peer echoes a message every 100 ms for 1.5 s: never idle.
        for i in 0..15u8 {
            busy.write_all(&[i; 16]).expect("send");
            let mut echo = [0u8; 16];
            busy.read_exact(&mut echo).expect("echo");
            assert_eq!(echo, [i; 16], "--api {api}");
            thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            drain(&mut silent, Duration::from_secs(3)),
            Ended::Closed,
            "--api {api}"
        );
        busy.write_all(b"still here").expect("send");
        let mut echo = [0u8; 10];
        busy.read_exact(&mut echo).expect("echo");
        assert_eq!(&echo, b"still here", "--api {api}");
    }
}

/// A peer that sent a lot and then reads its echoes steadily but slowly
/// (64 KiB every 50 ms) makes progress all the time: three idle periods of
/// it are not idle. (It was cut, with a reset, within the first: only data
/// received counted as progress, and a send waiting for room woke only
/// once a third of a send buffer of megabytes had drained, which took the
/// peer longer than the limit; found by a review.)
#[test]
fn a_peer_that_reads_its_echoes_slowly_is_not_closed() {
    for api in ["futures", "poll", "readiness"] {
        let server = EchoServer::start(&["--idle-timeout-ms", "1000", "--api", api], None);
        let mut peer = TcpStream::connect(&server.addr).expect("connect");
        flood(&mut peer);
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let mut buf = vec![0u8; 64 * 1024];
        let start = std::time::Instant::now();
        let mut read = 0usize;
        while start.elapsed() < Duration::from_secs(3) {
            thread::sleep(Duration::from_millis(50));
            match peer.read(&mut buf) {
                Ok(0) => panic!(
                    "--api {api}: closed after {:?}, the peer having read {read} bytes",
                    start.elapsed()
                ),
                Ok(n) => {
                    assert!(buf[..n].iter().all(|&b| b == 7), "--api {api}: the echo");
                    read += n;
                }
                Err(e) => panic!(
                    "--api {api}: {e} after {:?}, the peer having read {read} bytes",
                    start.elapsed()
                ),
            }
        }
        let said: Vec<String> = server.lines.try_iter().collect();
        assert!(said.is_empty(), "--api {api}: {said:?}");
    }
}

/// Sends without pause and reads `burst` bytes every `gap`, for `run`:
/// `Err` with when the server closed the connection.
fn burst_reader(addr: &str, burst: usize, gap: Duration, run: Duration) -> Result<(), String> {
    let mut peer = TcpStream::connect(addr).expect("connect");
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut writer = peer.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let chunk = vec![7u8; 65536];
        while writer.write_all(&chunk).is_ok() {}
    });
    let start = Instant::now();
    let mut buf = vec![0u8; burst];
    let mut read = 0usize;
    let mut ended = Ok(());
    'run: while start.elapsed() < run {
        let mut want = burst;
        while want > 0 {
            match peer.read(&mut buf[..want]) {
                Ok(0) | Err(_) => {
                    ended = Err(format!(
                        "closed after {:?}, the peer having read {read} bytes",
                        start.elapsed()
                    ));
                    break 'run;
                }
                Ok(n) => {
                    want -= n;
                    read += n;
                }
            }
        }
        thread::sleep(gap);
    }
    let _ = peer.shutdown(std::net::Shutdown::Both);
    sender.join().expect("the sending thread");
    ended
}

/// Peers that send without pause and read 100 KB of echoes every 300 ms
/// are not closed by a 1.5 s idle limit: their kernels acknowledge the
/// echoes they read (`tcpi_bytes_acked`, a count that only grows, where a
/// refill can bring the send queue back to the same length). With a
/// 500 ms limit they are (found by a review): the peer's kernel, its
/// receive buffer full, reopens its window only once the room is worth
/// announcing, and nothing on the connection moves for over 700 ms while
/// its application reads; documented on `--idle-timeout-ms`.
#[test]
fn peers_reading_their_echoes_in_steady_bursts_are_not_closed() {
    for api in ["futures", "poll", "readiness"] {
        let server = EchoServer::start(&["--idle-timeout-ms", "1500", "--api", api], None);
        let peers: Vec<_> = (0..8)
            .map(|_| {
                let addr = server.addr.clone();
                thread::spawn(move || {
                    burst_reader(
                        &addr,
                        100_000,
                        Duration::from_millis(300),
                        Duration::from_secs(4),
                    )
                })
            })
            .collect();
        let closed: Vec<String> = peers
            .into_iter()
            .filter_map(|p| p.join().unwrap().err())
            .collect();
        assert!(
            closed.is_empty(),
            "--api {api}: {} of 8 closed: {closed:?}",
            closed.len()
        );
    }
}
