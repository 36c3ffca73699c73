//! The HTTP example's tests' client side: an HTTP/1.1 response read by
//! hand from any buffered stream (a plain socket or a TLS one), a `GET`
//! request, and hyper's executor on cellio for the HTTP/2 clients. Not
//! every test that includes it uses every item.
#![allow(dead_code)]

use std::io::BufRead;

/// One response: its status code and body (read by `Content-Length`).
pub fn read_response(conn: &mut impl BufRead) -> (u16, Vec<u8>) {
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

/// A `GET` of `path` (HTTP/1.1, host `localhost`).
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// hyper's executor on cellio for an HTTP/2 client: the connection's task
/// and its streams on the test's worker.
#[derive(Clone, Copy)]
pub struct LocalExecutor;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExecutor {
    fn execute(&self, future: F) {
        cellio::spawn_local(future);
    }
}
