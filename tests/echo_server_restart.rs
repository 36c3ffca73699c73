//! The echo server example's restart (`--restart-socket PATH` and
//! `--take-over PATH`, `examples/common/restart.rs`): a successor takes
//! the listening sockets over a Unix socket, no connection attempt is
//! refused meanwhile, the old server's open connections finish before it
//! exits, and the successor can be replaced the same way. A successor that
//! fails leaves the old server serving; bad paths are clear errors. A
//! server stopped by a signal stops listening at once, and one that handed
//! its sockets over holds none of them while it drains.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[path = "util/restart_path.rs"]
mod restart_path;
use restart_path::RestartPath;

#[path = "util/fake_predecessor.rs"]
mod fake_predecessor;
use fake_predecessor::FakePredecessor;

#[path = "util/echo_server_process.rs"]
mod echo_server_process;

// The examples' rule for who may hand sockets over, or take them.
#[path = "../examples/common/peer_user.rs"]
mod peer_user;

use echo_server_process::{command, example_bin, EchoServer};

/// A restart socket path of this test's own, removed when it ends.
fn socket_path(name: &str) -> RestartPath {
    RestartPath::new("cellio-restart", name)
}

/// A directory of the test's own in which user `nobody` (65534) may make
/// and use socket files (mode 0777), removed with what is in it when
/// dropped. `None`, with a line that says why, where `nobody` cannot reach
/// it (a parent it may not search, as a TMPDIR of mode 700). (The tests
/// used TMPDIR itself, which `nobody` may not write in unless it is /tmp's
/// 1777; found by a review.)
struct NobodysDir(std::path::PathBuf);

impl NobodysDir {
    fn new(name: &str) -> Option<NobodysDir> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("cellio-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("make a directory for user nobody");
        let made = NobodysDir(dir);
        // Not through `create_dir`'s mode: the umask would take from it.
        std::fs::set_permissions(&made.0, std::fs::Permissions::from_mode(0o777)).unwrap();
        let reachable = std::process::Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["/usr/bin/test", "-w"])
            .arg(&made.0)
            .args(["-a", "-x"])
            .arg(&made.0)
            .status()
            .is_ok_and(|status| status.success());
        if !reachable {
            eprintln!(
                "skipped: user nobody cannot use {} (a parent directory it may not search)",
                made.0.display()
            );
            return None;
        }
        Some(made)
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for NobodysDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends `message` on `stream` and reads its echo back.
fn echo(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).expect("send");
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back).expect("echo");
    assert_eq!(back, message);
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// A client that opens a connection, echoes one message and closes, over
/// and over, until stopped: how many succeeded, and every failure.
fn churn(addr: String, stop: Arc<AtomicBool>) -> thread::JoinHandle<(usize, Vec<String>)> {
    thread::spawn(move || {
        let (mut ok, mut failures) = (0, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            let attempt = (|| -> std::io::Result<()> {
                let mut stream = TcpStream::connect(&addr)?;
                stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                let message = format!("message {ok:08}");
                stream.write_all(message.as_bytes())?;
                let mut back = vec![0u8; message.len()];
                stream.read_exact(&mut back)?;
                if back != message.as_bytes() {
                    return Err(std::io::Error::other("a corrupted echo"));
                }
                Ok(())
            })();
            match attempt {
                Ok(()) => ok += 1,
                Err(e) => failures.push(e.to_string()),
            }
            thread::sleep(Duration::from_millis(1));
        }
        (ok, failures)
    })
}

/// An echo server with two workers offering restarts at `path`, with a
/// grace period of `grace_ms`.
fn offering_restarts(path: &str, grace_ms: &str) -> EchoServer {
    EchoServer::start(
        &[
            "--workers",
            "2",
            "--restart-socket",
            path,
            "--grace-ms",
            grace_ms,
        ],
        None,
    )
}

#[test]
fn a_restart_refuses_no_connection_and_lets_open_ones_finish() {
    let path = socket_path("twice");
    let path_arg = path.to_str().unwrap();
    let mut first = offering_restarts(path_arg, "10000");
    let mut open = connect(&first.addr);
    echo(&mut open, b"before the restart");

    let stop = Arc::new(AtomicBool::new(false));
    let client = churn(first.addr.clone(), Arc::clone(&stop));
    thread::sleep(Duration::from_millis(200));

    // The successor serves the same listening sockets.
    let mut second = EchoServer::start(
        &[
            "--workers",
            "2",
            "--take-over",
            path_arg,
            "--restart-socket",
            path_arg,
        ],
        None,
    );
    assert_eq!(second.addr, first.addr);
    // The first server stops accepting but serves its open connection
    // until the client closes it (the grace period is 10 s).
    thread::sleep(Duration::from_millis(300));
    assert!(first.wait_exit(Duration::ZERO).is_none(), "exited early");
    echo(&mut open, b"after the restart");
    drop(open);
    let status = first
        .wait_exit(Duration::from_secs(10))
        .expect("the first server exits");
    assert!(status.success(), "{status:?}");

    // And once more: the successor offers its sockets at the same path.
    thread::sleep(Duration::from_millis(200));
    let third = EchoServer::start(&["--take-over", path_arg], None);
    assert_eq!(third.addr, second.addr);
    let status = second
        .wait_exit(Duration::from_secs(10))
        .expect("the second server exits");
    assert!(status.success(), "{status:?}");
    thread::sleep(Duration::from_millis(200));

    stop.store(true, Ordering::SeqCst);
    let (ok, failures) = client.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} attempts failed: {failures:?}",
        failures.len(),
        ok + failures.len()
    );
    assert!(ok >= 100, "only {ok} connections in the whole run");
    echo(&mut connect(&third.addr), b"served by the third");
}

#[test]
fn a_successor_that_fails_leaves_the_server_serving_and_offering() {
    let path = socket_path("failed");
    let path_arg = path.to_str().unwrap();
    let server = EchoServer::start(&["--restart-socket", path_arg], None);
    // A "successor" that takes the offer and declines it (a plain read:
    // the kernel closes the descriptors it has no room for).
    let mut fake = UnixStream::connect(&path).expect("connect to the restart socket");
    let mut header = [0u8; 64];
    let n = fake.read(&mut header).unwrap();
    assert_eq!(&header[..n], b"cellio-listeners 1");
    fake.write_all(b"not today").unwrap();
    drop(fake);
    let said = server
        .lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the server says so");
    assert!(
        said.contains("failed to take over") && said.contains("still serving"),
        "{said}"
    );
    echo(&mut connect(&server.addr), b"still here");
    // A real successor then takes over.
    let successor = EchoServer::start(&["--take-over", path_arg], None);
    assert_eq!(successor.addr, server.addr);
    echo(&mut connect(&successor.addr), b"the successor");
}

/// After a hand-over, the old server, draining its open connections, no
/// longer holds the listening sockets: once its successor stops (a signal,
/// or a new build that crashes), a connection attempt is refused rather
/// than queued where nobody accepts it, and a replacement can listen on the
/// port, while the old server's open connection is still served. (It kept
/// the duplicates of its listeners it had held for a successor until it
/// exited: connects were accepted by nobody, and a replacement failed with
/// "Address already in use"; found by a review.)
#[test]
fn once_its_successor_stops_a_draining_server_no_longer_listens() {
    let path = socket_path("successor-stops");
    let path_arg = path.to_str().unwrap();
    let mut old = offering_restarts(path_arg, "30000");
    // It keeps the old server draining after the hand-over.
    let mut open = connect(&old.addr);
    echo(&mut open, b"before");
    let mut new = EchoServer::start(&["--workers", "2", "--take-over", path_arg], None);
    assert_eq!(new.addr, old.addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let said = old
            .lines
            .recv_timeout(left)
            .expect("the old server's hand-over");
        if said.contains("a successor took over") {
            break;
        }
    }
    new.sigterm();
    let status = new
        .wait_exit(Duration::from_secs(10))
        .expect("the successor exits");
    assert!(status.success(), "{status:?}");
    assert!(
        old.wait_exit(Duration::ZERO).is_none(),
        "the old one drains"
    );

    match TcpStream::connect(&old.addr) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        other => panic!("nobody serves the port, yet a connect gave {other:?}"),
    }
    // A replacement (one listener, without SO_REUSEPORT) listens there.
    let port = old.addr.rsplit(':').next().unwrap();
    let mut replacement = std::process::Command::new(example_bin::build_example("echo_server"))
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the replacement");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(replacement.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let _ = replacement.kill();
    let output = replacement.wait_with_output().unwrap();
    assert!(
        first.starts_with("listening on"),
        "the replacement on port {port}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    echo(&mut open, b"still draining");
    drop(open);
    let status = old
        .wait_exit(Duration::from_secs(10))
        .expect("the old server exits");
    assert!(status.success(), "{status:?}");
}

/// A successor whose `serving` its predecessor did not take (it had given
/// up waiting, and serves on) stops and exits 1 saying so, serving nothing
/// more: one server serves the port, not two. (Both served it for good;
/// found by a review.) One whose predecessor is gone by then (it died)
/// serves on.
#[test]
fn a_successor_whose_predecessor_gave_up_on_it_stops() {
    for predecessor_lives in [true, false] {
        let path = socket_path(if predecessor_lives { "gave-up" } else { "died" });
        let predecessor = FakePredecessor::listen(&path);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut successor = command(&["--take-over", path.to_str().unwrap()], None)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the successor");
        let connection =
            predecessor.hand_over_unanswered(b"cellio-listeners 1", &[listener.as_fd()]);
        assert_eq!(example_bin::listening_addr(&mut successor), addr);
        if predecessor_lives {
            // Given up: closed, its restart socket still listening.
            drop(connection);
            let status = example_bin::wait_exit(&mut successor, Duration::from_secs(10))
                .expect("the successor exits");
            let mut stderr = String::new();
            successor
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            assert_eq!(status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains("did not take this server's `serving`"),
                "{stderr}"
            );
            // A connection now waits for the predecessor, which still has
            // the listener.
            let mut client = connect(&addr);
            client.write_all(b"hello").unwrap();
            listener.set_nonblocking(true).unwrap();
            let (mut accepted, _) = listener.accept().expect("in the predecessor's backlog");
            accepted.set_nonblocking(false).unwrap();
            let mut request = [0u8; 5];
            accepted.read_exact(&mut request).unwrap();
            assert_eq!(&request, b"hello");
        } else {
            // Gone: its restart socket first, then the connection.
            drop(predecessor);
            drop(connection);
            drop(listener);
            let mut client = connect(&addr);
            echo(&mut client, b"served on");
            assert!(
                example_bin::wait_exit(&mut successor, Duration::ZERO).is_none(),
                "the successor exited"
            );
            let _ = successor.kill();
            let _ = successor.wait();
        }
    }
}

/// A server offering restarts that a signal stops (no successor) stops
/// listening when its shutdown begins, as one without `--restart-socket`
/// does: a connection attempt during its grace period is refused, not
/// queued where nobody accepts it (and reset when the server exits). Its
/// open connections are served on. (It kept the duplicates of its
/// listeners it holds for a successor open until it exited; found by a
/// review.)
#[test]
fn a_server_stopped_by_a_signal_stops_listening_though_it_offered_restarts() {
    let path = socket_path("signalled");
    let path_arg = path.to_str().unwrap();
    let mut server = offering_restarts(path_arg, "10000");
    let mut open = connect(&server.addr);
    echo(&mut open, b"before the signal");
    server.sigterm();
    // Its shutdown has begun once it no longer offers restarts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while path.exists() {
        assert!(Instant::now() < deadline, "it still offers restarts");
        thread::sleep(Duration::from_millis(10));
    }
    // Its accept loops stop at once; the grace period is 10 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(&server.addr) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            Err(e) => panic!("connect: {e}"),
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "still listening 5 s into its shutdown"
                );
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    assert!(server.wait_exit(Duration::ZERO).is_none(), "exited early");
    echo(&mut open, b"in the grace period");
    drop(open);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn taking_over_from_nothing_and_a_busy_or_foreign_restart_path_are_clear_errors() {
    let path = socket_path("nothing");
    let output = command(&["--take-over", path.to_str().unwrap()], None)
        .output()
        .expect("run the echo server");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot take over from"), "{stderr}");

    let busy = socket_path("busy");
    let _server = EchoServer::start(&["--restart-socket", busy.to_str().unwrap()], None);
    let output = command(&["--restart-socket", busy.to_str().unwrap()], None)
        .output()
        .expect("run the echo server");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot offer restarts at"), "{stderr}");

    // A file that is not a socket is left alone.
    let file = socket_path("a-file");
    std::fs::write(&file, "keep me").unwrap();
    let output = command(&["--restart-socket", file.to_str().unwrap()], None)
        .output()
        .expect("run the echo server");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    std::fs::remove_file(&file).unwrap();
}

/// A start refused because its restart socket is a live server's binds
/// nothing first. (It bound its listeners, joining the live server's
/// `SO_REUSEPORT` group, before it found the restart socket live and
/// exited: the connections the kernel had queued on them were reset; found
/// by a review.) Shown with the port held by a listener without
/// `SO_REUSEPORT`: a start that binds first fails on the port, one that
/// claims its restart socket first fails on that.
#[test]
fn a_start_refused_for_a_live_restart_socket_binds_nothing() {
    let path = socket_path("live");
    let _live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut start = std::process::Command::new(example_bin::build_example("echo_server"));
    start
        .args(["--addr", &addr, "--workers", "2", "--restart-socket"])
        .arg(&*path)
        .stdin(std::process::Stdio::null());
    let output = start.output().expect("run the echo server");
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
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!path.exists(), "it left its restart socket's file");
}

/// A start refused because a server offers restarts at its path probes
/// the path (connects, says it only probes, and closes): the live server
/// takes that for no successor, says nothing of a failed hand-over, and a
/// real successor takes over afterwards. (It handed its sockets to each probe and logged
/// "a successor failed to take over (Broken pipe)"; found by a review.)
#[test]
fn a_start_probing_the_restart_socket_is_not_taken_for_a_successor() {
    let path = socket_path("probed");
    let path_arg = path.to_str().unwrap();
    let server = EchoServer::start(&["--restart-socket", path_arg], None);
    for _ in 0..10 {
        let output = command(&["--restart-socket", path_arg], None)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the echo server");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("another server is listening"), "{stderr}");
    }
    let successor = EchoServer::start(&["--take-over", path_arg], None);
    assert_eq!(successor.addr, server.addr);
    // Every line the server wrote before the hand-over.
    loop {
        let said = server
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the server says it was taken over");
        assert!(!said.contains("failed to take over"), "{said}");
        if said.contains("a successor took over") {
            break;
        }
    }
}

/// A successor whose predecessor says nothing (stopped, wedged, or another
/// program at the path) does not wait for ever: a signal ends its wait, and
/// without one it gives up after 10 s, each with an error that says so.
/// (It used to wait for ever and swallow SIGTERM.)
#[test]
fn a_successor_facing_a_silent_restart_socket_gives_up() {
    let path = socket_path("silent");
    let silent = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let successor = |stderr: std::process::Stdio| {
        command(&["--take-over", path.to_str().unwrap()], None)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the successor")
    };
    let output_of = |mut child: std::process::Child, limit: Duration| {
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the successor still waits after {limit:?}");
            }
            thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().unwrap()
    };

    let signalled = successor(std::process::Stdio::piped());
    // Connected: it waits for the hand-over message (its signal handlers
    // are in place by then).
    let (_first, _) = silent.accept().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &signalled.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = output_of(signalled, Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot take over from") && stderr.contains("stopped by a signal"),
        "{stderr}"
    );

    let waiting = successor(std::process::Stdio::piped());
    let (_second, _) = silent.accept().unwrap();
    let output = output_of(waiting, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no hand-over message within 10 s"),
        "{stderr}"
    );
}

/// A successor that cannot register one of the sockets it was given (here
/// a file among the listeners, which epoll refuses; in a real hand-over a
/// failed `epoll_ctl`) exits with an error before it says `serving`, so its
/// predecessor keeps serving. (It used to log the failure, say `serving`,
/// and leave that socket to nobody.)
#[test]
fn a_successor_that_cannot_serve_a_socket_does_not_say_serving() {
    let path = socket_path("unservable");
    let predecessor = FakePredecessor::listen(&path);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let file = std::fs::File::open("Cargo.toml").unwrap();
    let successor = command(
        &["--workers", "2", "--take-over", path.to_str().unwrap()],
        None,
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("start the successor");
    let offered = [listener.as_fd(), file.as_fd()];
    predecessor.expect_refused(successor, b"cellio-listeners 2", &offered, &path);
}

/// A successor that cannot register one of its sockets serves none of
/// them, not even those registered already: a connection waiting in
/// another listener's backlog stays there for the predecessor, which
/// serves on. (The successor used to start accepting on each listener as
/// soon as it was registered: it accepted the waiting connection, and
/// closed it when it exited; found by a review.)
#[test]
fn a_successor_that_cannot_serve_a_socket_takes_no_connection() {
    let path = socket_path("partly-unservable");
    let predecessor = FakePredecessor::listen(&path);
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let file = std::fs::File::open("Cargo.toml").unwrap();
    // A client waiting in the second listener's backlog, its request sent.
    let mut waiting = connect(&second.local_addr().unwrap().to_string());
    waiting.write_all(b"hello").unwrap();
    // `first` goes to worker 0, `second` to worker 1, the file (which
    // epoll refuses) to worker 0.
    let successor = command(
        &["--workers", "2", "--take-over", path.to_str().unwrap()],
        None,
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("start the successor");
    let offered = [first.as_fd(), second.as_fd(), file.as_fd()];
    predecessor.expect_refused(successor, b"cellio-listeners 3", &offered, &path);
    // The successor has exited: the connection is still the predecessor's.
    second.set_nonblocking(true).unwrap();
    let (mut accepted, _) = second
        .accept()
        .expect("the waiting connection is still in the backlog");
    accepted.set_nonblocking(false).unwrap();
    let mut request = [0u8; 5];
    accepted.read_exact(&mut request).unwrap();
    assert_eq!(&request, b"hello");
    accepted.write_all(b"world").unwrap();
    let mut reply = [0u8; 5];
    waiting.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"world");
}

/// A successor must run as the server's user (or root): one of another
/// user that can connect (the socket file made writable for everyone
/// here) gets nothing, and the server keeps serving and offering. Needs
/// root, to run the other user's client (`setpriv`); otherwise it says so
/// and checks nothing.
#[test]
fn a_successor_of_another_user_is_refused() {
    // SAFETY: `geteuid` reads this process's credentials.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to act as another user");
        return;
    }
    let Some(dir) = NobodysDir::new("nobody-successor") else {
        return;
    };
    let path = dir.path("restart.sock");
    let path_arg = path.to_str().unwrap();
    let server = EchoServer::start(&["--restart-socket", path_arg], None);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    // As user `nobody`: connect and read what the server sends.
    let script = format!(
        "import socket; s = socket.socket(socket.AF_UNIX); s.connect({path_arg:?}); \
         print(repr(s.recv(64)))"
    );
    let output = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["/usr/bin/python3", "-c", &script])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run a client as nobody");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "b''", "the other user got something");
    let said = server
        .lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the server says so");
    assert!(said.contains("refused a successor of user 65534"), "{said}");
    echo(&mut connect(&server.addr), b"still here");
    let successor = EchoServer::start(&["--take-over", path_arg], None);
    assert_eq!(successor.addr, server.addr);
}

/// Who may be the other end of a hand-over, either way: a process of the
/// server's own user, or root.
#[test]
fn only_the_same_user_or_root_may_hand_over_or_take_sockets() {
    assert!(peer_user::trusted(1000, 1000));
    assert!(peer_user::trusted(0, 1000), "root");
    assert!(peer_user::trusted(0, 0));
    assert!(!peer_user::trusted(65534, 1000));
    assert!(!peer_user::trusted(1000, 0), "root trusts only root");
    assert!(!peer_user::trusted(1001, 1000));
}

/// A successor takes sockets only from a predecessor of its own user (or
/// root): another user's process listening at the restart path (free
/// whenever no server offers restarts, maybe in a directory every user
/// may write to) is refused before anything is taken, with an error that
/// says so. (The successor served whatever it was handed, a listener that
/// user kept accepting on, stealing its connections; found by a review.)
/// Needs root, to run the other user's predecessor (`setpriv`); otherwise
/// it says so and checks nothing.
#[test]
fn a_predecessor_of_another_user_is_refused() {
    if peer_user::euid() != 0 || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to act as another user");
        return;
    }
    let Some(dir) = NobodysDir::new("nobody-predecessor") else {
        return;
    };
    let path = dir.path("restart.sock");
    let path_arg = path.to_str().unwrap();
    // As user `nobody`: listen at the path, hand over a listener of its
    // own, and print the successor's answer (`b''`: it closed).
    let script = format!(
        "import os, socket\n\
         listener = socket.socket(); listener.bind(('127.0.0.1', 0)); listener.listen(16)\n\
         restart = socket.socket(socket.AF_UNIX); restart.bind({path_arg:?})\n\
         os.chmod({path_arg:?}, 0o777); restart.listen(1); restart.settimeout(10)\n\
         print('ready', flush=True)\n\
         successor, _ = restart.accept(); successor.settimeout(10)\n\
         try:\n\
         \x20   socket.send_fds(successor, [b'cellio-listeners 1'], [listener.fileno()])\n\
         \x20   answer = successor.recv(16)\n\
         except OSError:\n\
         \x20   answer = b''\n\
         print(repr(answer), flush=True)\n"
    );
    let mut predecessor = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["/usr/bin/python3", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run a predecessor as nobody");
    let mut said = std::io::BufReader::new(predecessor.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut said, &mut line).unwrap();
    if line.trim() != "ready" {
        let _ = predecessor.kill();
        let mut stderr = String::new();
        let _ = predecessor
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr);
        let _ = predecessor.wait();
        panic!("the predecessor did not start: {line:?}\n{stderr}");
    }
    let mut successor = command(&["--take-over", path_arg], None)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the successor");
    let status = example_bin::wait_exit(&mut successor, Duration::from_secs(10));
    let _ = successor.kill();
    let _ = successor.wait();
    let mut stderr = String::new();
    successor
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut said, &mut line).unwrap();
    let _ = predecessor.kill();
    let _ = predecessor.wait();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot take over from")
            && stderr.contains("runs as user 65534")
            && stderr.contains("refused"),
        "{stderr}"
    );
    assert_eq!(line.trim(), "b''", "the successor answered");
}
