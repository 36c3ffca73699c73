//! The echo server example started by socket activation (systemd's
//! `LISTEN_FDS`, `examples/common/restart.rs`): it serves the listening
//! socket it was given as descriptor 3 instead of binding `--addr`; a
//! descriptor that is not a TCP listener, a TCP socket that does not
//! listen, or a descriptor not open, is a clear error; and descriptors passed without `LISTEN_PID`
//! naming the server are not its to use.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "util/example_bin.rs"]
mod example_bin;
#[path = "util/socket_activation.rs"]
mod socket_activation;

use socket_activation::{inheritable, inheritable_copy_above_99, refusal};

/// The echo server with descriptor `fd` of this process as its descriptor
/// 3, `LISTEN_FDS=1` and `LISTEN_PID` its own pid (as systemd starts a
/// socket-activated service).
fn activated(fd: i32) -> Command {
    started_with(fd, "LISTEN_PID=$$", "--addr 127.0.0.1:1")
}

/// The echo server with descriptor `fd` as its descriptor 3, `LISTEN_FDS=1`
/// and `env` (`LISTEN_PID=...`, or nothing), and `args`.
fn started_with(fd: i32, env: &str, args: &str) -> Command {
    socket_activation::started_with(&example_bin::build_example("echo_server"), fd, env, args)
}

#[test]
fn the_listener_systemd_passes_is_served() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    inheritable(listener.as_raw_fd());
    is_served(&listener, listener.as_raw_fd());
}

/// Passed from a descriptor numbered 10 or more (as a test's are when its
/// harness passed on a few), the listener is served all the same. (`sh`
/// put it in place: dash said "Bad fd number" and the server never ran;
/// found by a review.)
#[test]
fn a_listener_passed_from_a_high_descriptor_number_is_served() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let copy = inheritable_copy_above_99(listener.as_fd());
    is_served(&listener, copy.as_raw_fd());
}

/// The echo server started with `fd`, a copy of `listener`, as its
/// descriptor 3 serves that listener: it says so, and echoes.
fn is_served(listener: &TcpListener, fd: i32) {
    let addr = listener.local_addr().unwrap();
    let mut server = activated(fd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the echo server");
    let announced = example_bin::listening_addr(&mut server);
    // Not 127.0.0.1:1 (`--addr`): the socket it was given.
    assert_eq!(announced, addr.to_string());
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"activated").unwrap();
    let mut back = [0u8; 9];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"activated");
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_passed_descriptor_that_is_not_a_tcp_listener_is_a_clear_error() {
    let file = std::fs::File::open("Cargo.toml").unwrap();
    inheritable(file.as_raw_fd());
    let stderr = refusal(activated(file.as_raw_fd()));
    assert!(
        stderr.contains("cannot use the sockets systemd passed"),
        "{stderr}"
    );
}

/// A TCP socket that is bound but does not listen (a `.socket` unit with
/// `Accept=yes` passes connections, which do not either): every accept
/// would fail with `EINVAL`, and the server spun printing so. It refuses
/// the socket instead.
#[test]
fn a_passed_tcp_socket_that_does_not_listen_is_a_clear_error() {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    inheritable(socket.as_raw_fd());
    let stderr = refusal(activated(socket.as_raw_fd()));
    assert!(
        stderr.contains("fd 3 is a TCP socket that is not listening"),
        "{stderr}"
    );
}

/// `LISTEN_FDS` naming a descriptor that is not open: an error that says
/// so. (The runtime's epoll took the free number 3, and the server called
/// it "not a socket".)
#[test]
fn a_passed_descriptor_that_is_not_open_is_a_clear_error() {
    let program = example_bin::build_example("echo_server");
    let stderr = refusal(socket_activation::started_with_3_closed(&program));
    assert!(
        stderr.contains("LISTEN_FDS=1 passes descriptors 3 to 3, but fd 3 is not open"),
        "{stderr}"
    );
}

/// Without `LISTEN_PID`, or with another process's, the descriptors are
/// not this server's (systemd's `sd_listen_fds` rule): it binds `--addr`.
#[test]
fn descriptors_passed_without_listen_pid_are_left_alone() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let passed = listener.local_addr().unwrap().to_string();
    inheritable(listener.as_raw_fd());
    for env in ["", "LISTEN_PID=1"] {
        let mut server = started_with(listener.as_raw_fd(), env, "--addr 127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the echo server");
        let announced = example_bin::listening_addr(&mut server);
        let _ = server.kill();
        let _ = server.wait();
        assert_ne!(
            announced, passed,
            "it served the passed socket with {env:?}"
        );
    }
}
