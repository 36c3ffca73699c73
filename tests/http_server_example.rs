//! The HTTP example (`examples/http_server.rs`: hyper on cellio) as a
//! process, driven by a hand-written HTTP/1.1 client over `std` sockets:
//! keep-alive and pipelined requests are answered in order, a 1 MiB body
//! comes back byte for byte, unknown paths are 404, a client that sends
//! garbage does not disturb the others, one that never finishes its
//! headers is closed after the timeout (hyper's timer on cellio's), and
//! SIGTERM ends it cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[path = "util/example_bin.rs"]
mod example_bin;

/// The running example, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start() -> Server {
        Self::start_with(&[])
    }

    fn start_with(args: &[&str]) -> Server {
        let mut child = Command::new(example_bin::build_example("http_server"))
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the http server");
        let addr = example_bin::listening_addr(&mut child);
        Server { child, addr }
    }

    fn connect(&self) -> BufReader<TcpStream> {
        let stream = TcpStream::connect(&self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        BufReader::new(stream)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One response: its status code and body (read by `Content-Length`).
fn read_response(conn: &mut BufReader<TcpStream>) -> (u16, Vec<u8>) {
    let mut status_line = String::new();
    conn.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut length = None;
    loop {
        let mut header = String::new();
        conn.read_line(&mut header).expect("header");
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse::<usize>().expect("a length"));
            }
        }
    }
    let mut body = vec![0u8; length.expect("a Content-Length")];
    conn.read_exact(&mut body).expect("body");
    (status, body)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

#[test]
fn keep_alive_and_pipelined_requests_are_answered_in_order() {
    let server = Server::start();
    let mut conn = server.connect();
    for _ in 0..100 {
        conn.get_mut().write_all(get("/").as_bytes()).unwrap();
        assert_eq!(
            read_response(&mut conn),
            (200, b"hello from cellio\n".to_vec())
        );
    }
    // Twenty at once, alternating paths: the answers come in order.
    let burst: String = (0..20)
        .map(|i| get(if i % 2 == 0 { "/" } else { "/missing" }))
        .collect();
    conn.get_mut().write_all(burst.as_bytes()).unwrap();
    for i in 0..20 {
        let (status, _) = read_response(&mut conn);
        assert_eq!(status, if i % 2 == 0 { 200 } else { 404 }, "response {i}");
    }
}

#[test]
fn a_megabyte_posted_to_echo_comes_back_byte_for_byte() {
    let server = Server::start();
    let mut conn = server.connect();
    let body: Vec<u8> = (0..1 << 20).map(|i: usize| (i % 251) as u8).collect();
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let writer = {
        let mut stream = conn.get_ref().try_clone().unwrap();
        let body = body.clone();
        std::thread::spawn(move || {
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body)
        })
    };
    let (status, echoed) = read_response(&mut conn);
    writer.join().unwrap().unwrap();
    assert_eq!(status, 200);
    assert!(echoed == body, "the echoed body differs");
}

#[test]
fn a_client_sending_garbage_disturbs_no_one_else() {
    let server = Server::start();
    let mut good = server.connect();
    let mut bad = server.connect();
    bad.get_mut()
        .write_all(b"\x00\x01 not http at all\r\n\r\n")
        .unwrap();
    // hyper answers 400 and closes, or just closes: either way, the end.
    let mut rest = Vec::new();
    let _ = bad.read_to_end(&mut rest);
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    good.get_mut().write_all(get("/").as_bytes()).unwrap();
    assert_eq!(read_response(&mut good).0, 200);
}

#[test]
fn a_client_that_never_finishes_its_headers_is_closed_after_the_timeout() {
    let server = Server::start_with(&["--header-timeout-ms", "200"]);
    let mut slow = server.connect();
    slow.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: te")
        .unwrap();
    // The server closes it (hyper may answer 408 first); without a timer
    // this read would wait for its 10 s limit and fail.
    let mut rest = Vec::new();
    slow.read_to_end(&mut rest)
        .expect("closed by the server, not timed out here");
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    // Others are served.
    let mut good = server.connect();
    good.get_mut().write_all(get("/").as_bytes()).unwrap();
    assert_eq!(read_response(&mut good).0, 200);
}

#[test]
fn sigterm_ends_it_cleanly() {
    let mut server = Server::start();
    let mut conn = server.connect();
    conn.get_mut().write_all(get("/").as_bytes()).unwrap();
    assert_eq!(read_response(&mut conn).0, 200);
    drop(conn);
    let pid = server.child.id() as libc::pid_t;
    // SAFETY: `kill` sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = server.child.wait().expect("wait for the server");
    assert!(status.success(), "{status:?}");
}
