//! The echo server example started by socket activation (systemd's
//! `LISTEN_FDS`, `examples/common/restart.rs`): it serves the listening
//! socket it was given as descriptor 3 instead of binding `--addr`, and a
//! descriptor that is not a TCP listener is a clear error.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "util/example_bin.rs"]
mod example_bin;

/// The echo server, started by `sh` with descriptor `fd` of this process
/// as its descriptor 3 and `LISTEN_FDS=1`, `LISTEN_PID` its own pid (as
/// systemd starts a socket-activated service).
fn activated(fd: i32) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "exec 3<&{fd}; LISTEN_FDS=1 LISTEN_PID=$$ exec \"$0\" --addr 127.0.0.1:1"
        ))
        .arg(example_bin::build_example("echo_server"))
        .stdin(Stdio::null());
    command
}

/// Lets `fd` pass into a child process (clears close-on-exec).
fn inheritable(fd: i32) {
    // SAFETY: `fcntl(F_SETFD)` on a descriptor this test owns and keeps
    // open while the child starts.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
}

#[test]
fn the_listener_systemd_passes_is_served() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    inheritable(listener.as_raw_fd());
    let mut server = activated(listener.as_raw_fd())
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
    let output = activated(file.as_raw_fd())
        .output()
        .expect("run the echo server");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot use the sockets systemd passed"),
        "{stderr}"
    );
}
