//! The UDP echo server example started by socket activation (systemd's
//! `LISTEN_FDS`, `examples/common/restart_udp.rs`): it serves the UDP
//! socket it was given as descriptor 3 instead of binding `--addr`, with
//! `--recv-buffer` set on it (and on it again by a successor that takes it
//! over with a `--recv-buffer` of its own), and a descriptor that is not a
//! UDP socket, or one not open, is a clear error. A passed socket with
//! receive offload (`UDP_GRO`) on is served, merged datagrams echoed each
//! on its own, whatever `--api` says.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "util/example_bin.rs"]
mod example_bin;
#[path = "util/socket_activation.rs"]
mod socket_activation;

use socket_activation::{inheritable, refusal};

/// The UDP echo server with `args`, with descriptor `fd` of this process as
/// its descriptor 3, `LISTEN_FDS=1` and `LISTEN_PID` its own pid (as
/// systemd starts a socket-activated service).
fn activated(fd: i32, args: &str) -> Command {
    socket_activation::started_with(
        &example_bin::build_example("udp_echo_server"),
        fd,
        "LISTEN_PID=$$",
        &format!("--addr 127.0.0.1:1 {args}"),
    )
}

/// The kernel receive buffer of `socket` (`SO_RCVBUF`, which Linux reports
/// doubled).
fn recv_buffer(socket: &UdpSocket) -> usize {
    let mut size: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `getsockopt` writes at most `len` bytes into `size`, an
    // integer that lives across the call, on a descriptor `socket` owns.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut size as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt(SO_RCVBUF)");
    usize::try_from(size).expect("a size")
}

#[test]
fn the_socket_systemd_passes_is_served_with_the_servers_options() {
    let passed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = passed.local_addr().unwrap();
    let before = recv_buffer(&passed);
    inheritable(passed.as_raw_fd());
    let mut server = activated(passed.as_raw_fd(), "--recv-buffer 400000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the UDP echo server");
    let announced = example_bin::listening_addr(&mut server);
    // Not 127.0.0.1:1 (`--addr`): the socket it was given.
    assert_eq!(announced, addr.to_string());
    // `--recv-buffer` reached the passed socket (this process holds the
    // same kernel socket).
    let after = recv_buffer(&passed);
    assert_ne!(
        after, before,
        "--recv-buffer was not set on the passed socket"
    );
    assert!(after >= 400_000, "SO_RCVBUF {after}");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for n in 0..20u32 {
        let datagram = format!("activated {n}");
        client.send_to(datagram.as_bytes(), addr).unwrap();
        let mut back = [0u8; 64];
        let (len, from) = client.recv_from(&mut back).expect("the echo");
        assert_eq!(from, addr);
        assert_eq!(&back[..len], datagram.as_bytes());
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// Sets the integer option `name` at `level` on `socket`.
#[cfg(target_os = "linux")]
fn set_int_option(socket: &UdpSocket, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
    // SAFETY: `setsockopt` reads `size_of::<c_int>()` bytes from `value`,
    // an integer that lives across the call, on a descriptor `socket` owns.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt({level}, {name})");
}

/// A passed socket with receive offload (`UDP_GRO`) on, as another program
/// or a predecessor may have left it: each API serves it (through
/// `recv_many` with slots for a merged buffer), and three datagrams sent
/// as one segmented buffer (`UDP_SEGMENT`), which the kernel hands over
/// merged, come back as three. (Every receive failed at once with
/// `InvalidInput` and the loop logged and tried again: 100% of a core, a
/// flood of log and no echo; found by a review.)
#[test]
#[cfg(target_os = "linux")] // UDP_GRO and UDP_SEGMENT are Linux's
fn a_passed_socket_with_receive_offload_on_is_served() {
    for api in ["futures", "poll", "batch"] {
        let passed = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_int_option(&passed, libc::SOL_UDP, libc::UDP_GRO, 1);
        let addr = passed.local_addr().unwrap();
        inheritable(passed.as_raw_fd());
        let mut server = activated(passed.as_raw_fd(), &format!("--api {api}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the UDP echo server");
        assert_eq!(example_bin::listening_addr(&mut server), addr.to_string());
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client.send_to(b"plain", addr).unwrap();
        let run: Vec<u8> = (0..3u8).flat_map(|k| [b'a' + k; 100]).collect();
        set_int_option(&client, libc::SOL_UDP, libc::UDP_SEGMENT, 100);
        assert_eq!(client.send_to(&run, addr).unwrap(), 300);
        let mut echoes = Vec::new();
        for _ in 0..4 {
            let mut back = [0u8; 512];
            match client.recv_from(&mut back) {
                Ok((len, from)) => {
                    assert_eq!(from, addr);
                    echoes.push(String::from_utf8_lossy(&back[..len]).into_owned());
                }
                Err(e) => {
                    echoes.push(format!("no echo: {e}"));
                    break;
                }
            }
        }
        let _ = server.kill();
        let _ = server.wait();
        let mut want = vec!["plain".to_owned()];
        want.extend(
            run.chunks(100)
                .map(|d| String::from_utf8_lossy(d).into_owned()),
        );
        assert_eq!(echoes, want, "--api {api}");
    }
}

#[test]
fn a_passed_descriptor_that_is_not_a_udp_socket_is_a_clear_error() {
    // A TCP listener: what a `.socket` unit with `ListenStream=` passes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    inheritable(listener.as_raw_fd());
    let stderr = refusal(activated(listener.as_raw_fd(), ""));
    assert!(
        stderr.contains("cannot use the sockets systemd passed"),
        "{stderr}"
    );
}

/// A restart is how new flags take effect: a successor's `--recv-buffer`
/// is set on the sockets it takes over (it used to keep the
/// predecessor's).
/// `LISTEN_FDS` naming a descriptor that is not open: an error that says
/// so, not "not a socket" about the runtime's own descriptor.
#[test]
fn a_passed_descriptor_that_is_not_open_is_a_clear_error() {
    let program = example_bin::build_example("udp_echo_server");
    let stderr = refusal(socket_activation::started_with_3_closed(&program));
    assert!(
        stderr.contains("LISTEN_FDS=1 passes descriptors 3 to 3, but fd 3 is not open"),
        "{stderr}"
    );
}

#[test]
fn a_successor_sets_its_recv_buffer_on_the_sockets_it_takes_over() {
    let passed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = passed.local_addr().unwrap();
    let path = std::env::temp_dir().join(format!("cellio-udp-activated-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let path_arg = path.to_str().unwrap();
    inheritable(passed.as_raw_fd());
    let mut first = activated(passed.as_raw_fd(), &format!("--restart-socket {path_arg}"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the UDP echo server");
    assert_eq!(example_bin::listening_addr(&mut first), addr.to_string());
    let before = recv_buffer(&passed);
    let mut successor = Command::new(example_bin::build_example("udp_echo_server"))
        .args(["--addr", "127.0.0.1:1", "--take-over", path_arg])
        .args(["--recv-buffer", "400000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the successor");
    assert_eq!(
        example_bin::listening_addr(&mut successor),
        addr.to_string()
    );
    let after = recv_buffer(&passed);
    let _ = successor.kill();
    let _ = successor.wait();
    let _ = first.kill();
    let _ = first.wait();
    let _ = std::fs::remove_file(&path);
    assert_ne!(after, before, "the successor's --recv-buffer was not set");
    assert!(after >= 400_000, "SO_RCVBUF {after}");
}
