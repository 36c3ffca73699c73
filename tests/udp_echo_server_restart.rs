//! The UDP echo server's restart (`--restart-socket PATH` and
//! `--take-over PATH`, `examples/common/restart_udp.rs`): a successor takes
//! the sockets over while clients keep sending, and every datagram is
//! answered once, byte for byte, by one server or the other; the old one
//! exits 0. A UDP server cannot take over a TCP server's listeners: a
//! clear error, and the TCP server keeps serving.

use std::collections::HashSet;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[path = "util/restart_path.rs"]
mod restart_path;
use restart_path::RestartPath;

#[path = "util/fake_predecessor.rs"]
mod fake_predecessor;
use fake_predecessor::FakePredecessor;

#[path = "util/example_bin.rs"]
mod example_bin;
use example_bin::RunningExample;

/// A restart socket path of this test's own, removed when it ends.
fn socket_path(name: &str) -> RestartPath {
    RestartPath::new("cellio-udp-restart", name)
}

/// The datagram numbered `n`: its number, then bytes that depend on it, of
/// a length that varies (12 to 1 011 bytes).
fn datagram(n: u32) -> Vec<u8> {
    let len = 12 + (n as usize * 37) % 1000;
    let mut bytes = n.to_be_bytes().to_vec();
    bytes.extend((4..len).map(|i| (i as u32).wrapping_mul(n | 1) as u8));
    bytes
}

/// Datagrams a client has in flight at most: the kernel queues (the
/// servers' and the client's) never overflow, however long a loaded
/// machine starves a process, so a datagram missing at the end was lost by
/// the restart, not dropped for want of room.
const WINDOW: u32 = 16;

/// A client on its own socket: sends numbered datagrams, one every 200 µs
/// while fewer than [`WINDOW`] await their echo, until `stop`, while a
/// second thread takes the echoes. Returns how many it sent and the
/// numbers echoed (each checked byte for byte; a number echoed twice or a
/// corrupted echo fails the test).
fn client(addr: String, first: u32, stop: Arc<AtomicBool>) -> thread::JoinHandle<(u32, Vec<u32>)> {
    thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(&addr).unwrap();
        let receiver = socket.try_clone().unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let echoed = Arc::new(AtomicU32::new(0));
        let echoes = {
            let (done, echoed) = (done.clone(), echoed.clone());
            thread::spawn(move || {
                let (mut seen, mut buf) = (Vec::new(), vec![0u8; 2048]);
                loop {
                    match receiver.recv(&mut buf) {
                        Ok(got) => {
                            let n = u32::from_be_bytes(buf[..4].try_into().unwrap());
                            assert_eq!(&buf[..got], &datagram(n)[..], "datagram {n}");
                            seen.push(n);
                            echoed.fetch_add(1, Ordering::SeqCst);
                        }
                        // Quiet for 500 ms after the sender stopped: done.
                        Err(_) if done.load(Ordering::SeqCst) => return seen,
                        Err(_) => {}
                    }
                }
            })
        };
        let mut n = first;
        while !stop.load(Ordering::SeqCst) {
            if n - first - echoed.load(Ordering::SeqCst) < WINDOW {
                socket.send(&datagram(n)).unwrap();
                n += 1;
            }
            thread::sleep(Duration::from_micros(200));
        }
        done.store(true, Ordering::SeqCst);
        (n - first, echoes.join().unwrap())
    })
}

#[test]
fn a_restart_loses_no_datagram() {
    let path = socket_path("lossless");
    let path_arg = path.to_str().unwrap();
    // Two workers each side: four clients spread over both sockets.
    let mut old = RunningExample::start(
        "udp_echo_server",
        &["--workers", "2", "--restart-socket", path_arg],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|i| client(old.addr.clone(), i * 1_000_000, stop.clone()))
        .collect();
    thread::sleep(Duration::from_millis(300));

    let new = RunningExample::start(
        "udp_echo_server",
        &["--workers", "2", "--take-over", path_arg],
    );
    assert_eq!(new.addr, old.addr);
    let status = example_bin::wait_exit(&mut old.child, Duration::from_secs(10))
        .expect("the old server exits");
    assert!(status.success(), "{status:?}");
    // The new one alone, for a while.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for (i, client) in clients.into_iter().enumerate() {
        let (sent, echoed) = client.join().expect("a client");
        let first = i as u32 * 1_000_000;
        let unique: HashSet<u32> = echoed.iter().copied().collect();
        assert_eq!(
            unique.len(),
            echoed.len(),
            "client {i}: a datagram echoed twice"
        );
        let missing: Vec<u32> = (first..first + sent)
            .filter(|n| !unique.contains(n))
            .collect();
        assert!(
            missing.is_empty(),
            "client {i}: {} of {sent} datagrams unanswered, the first {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        assert!(sent > 200, "client {i} sent only {sent}");
    }
}

#[test]
fn a_udp_server_cannot_take_over_tcp_listeners() {
    let path = socket_path("kinds");
    let path_arg = path.to_str().unwrap();
    let tcp = RunningExample::start("echo_server", &["--restart-socket", path_arg]);
    let started = Instant::now();
    let output = Command::new(example_bin::build_example("udp_echo_server"))
        .args(["--addr", "127.0.0.1:0", "--take-over", path_arg])
        .stdin(Stdio::null())
        .output()
        .expect("run the udp server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot take over from")
            && stderr
                .contains("that server hands over TCP listeners, and this one serves UDP sockets"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // The TCP server still serves, and still offers its listeners.
    let mut stream = std::net::TcpStream::connect(&tcp.addr).expect("connect");
    std::io::Write::write_all(&mut stream, b"still here").unwrap();
    let mut back = [0u8; 10];
    std::io::Read::read_exact(&mut stream, &mut back).unwrap();
    assert_eq!(&back, b"still here");
    assert!(path.exists(), "the TCP server stopped offering");
}

/// A successor that cannot register one of the sockets it was given (a
/// file among them, which epoll refuses) exits with an error before it
/// says `serving`, so its predecessor keeps serving.
#[test]
fn a_successor_that_cannot_serve_a_socket_does_not_say_serving() {
    let path = socket_path("unservable");
    let predecessor = FakePredecessor::listen(&path);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let file = std::fs::File::open("Cargo.toml").unwrap();
    let successor = Command::new(example_bin::build_example("udp_echo_server"))
        .args(["--addr", "127.0.0.1:0", "--workers", "2", "--take-over"])
        .arg(&*path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the successor");
    let offered = [socket.as_fd(), file.as_fd()];
    predecessor.expect_refused(successor, b"cellio-udp-sockets 2", &offered, &path);
}

/// A successor that cannot register one of its sockets serves none of
/// them, not even those registered already: a datagram waiting in another
/// socket's queue stays there for the predecessor. (The successor used to
/// start receiving on each socket as soon as it was registered: it took
/// the datagram, and the predecessor never saw it; found by a review.)
#[test]
fn a_successor_that_cannot_serve_a_socket_takes_no_datagram() {
    let path = socket_path("partly-unservable");
    let predecessor = FakePredecessor::listen(&path);
    let first = UdpSocket::bind("127.0.0.1:0").unwrap();
    let second = UdpSocket::bind("127.0.0.1:0").unwrap();
    let file = std::fs::File::open("Cargo.toml").unwrap();
    // A datagram waiting in the second socket's queue.
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender
        .send_to(b"waiting", second.local_addr().unwrap())
        .unwrap();
    // `first` goes to worker 0, `second` to worker 1, the file (which
    // epoll refuses) to worker 0.
    let successor = Command::new(example_bin::build_example("udp_echo_server"))
        .args(["--addr", "127.0.0.1:0", "--workers", "2", "--take-over"])
        .arg(&*path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the successor");
    let offered = [first.as_fd(), second.as_fd(), file.as_fd()];
    predecessor.expect_refused(successor, b"cellio-udp-sockets 3", &offered, &path);
    // The successor has exited: the datagram is still the predecessor's.
    second.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = second
        .recv_from(&mut buf)
        .expect("the waiting datagram is still queued");
    assert_eq!(&buf[..n], b"waiting");
    assert_eq!(from, sender.local_addr().unwrap());
}

/// A start refused because its restart socket is a live server's binds
/// nothing first. (It bound its sockets, joining the live server's
/// `SO_REUSEPORT` group, before it found the restart socket live and
/// exited: the datagrams the kernel had queued on them were lost; found by
/// a review.) Shown with the port held by a socket without
/// `SO_REUSEPORT`: a start that binds first fails on the port, one that
/// claims its restart socket first fails on that.
#[test]
fn a_start_refused_for_a_live_restart_socket_binds_nothing() {
    let path = socket_path("live");
    let _live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut start = Command::new(example_bin::build_example("udp_echo_server"));
    start
        .args(["--addr", &addr, "--workers", "2", "--restart-socket"])
        .arg(&*path)
        .stdin(Stdio::null());
    let output = start.output().expect("run the udp server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot offer restarts at")
            && stderr.contains("another server is listening"),
        "{stderr}"
    );
    assert!(
        path.exists(),
        "the live server's restart socket was removed"
    );
    // With the path free, the port refuses the start, and the restart
    // socket it had claimed is gone with it.
    std::fs::remove_file(&path).unwrap();
    let output = start.output().expect("run the server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot bind"), "{stderr}");
    assert!(!path.exists(), "it left its restart socket's file");
}

/// One message carries at most 253 descriptors (Linux's `SCM_MAX_FD`): a
/// server with more sockets than that refuses `--restart-socket` at start,
/// where it used to serve and then fail every hand-over, as a flag error
/// (exit status 2) before its runtime starts (it was refused with exit
/// status 1 once every worker had started; found by a review).
#[test]
fn more_sockets_than_one_hand_over_carries_is_refused_at_start() {
    let path = socket_path("many");
    let mut server = Command::new(example_bin::build_example("udp_echo_server"))
        .args(["--addr", "127.0.0.1:0", "--workers", "254"])
        .args(["--restart-socket", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the udp server");
    if example_bin::wait_exit(&mut server, Duration::from_secs(20)).is_none() {
        let _ = server.kill();
        let _ = server.wait();
        panic!("it started serving with 254 sockets and --restart-socket");
    }
    let output = server.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--restart-socket hands over at most 253 UDP sockets"),
        "{stderr}"
    );
    assert!(stderr.contains("\nUsage: udp_echo_server "), "{stderr}");
    assert!(!path.exists(), "it offered restarts all the same");
}
