//! `mio_echo`: the floor. A raw single-threaded mio event loop echo server with no runtime.
//!
//! What it measures: the least user-space CPU an echo server on this kernel can spend per
//! message. Anything a runtime spends above this server's user ns/msg is the runtime's cost.
//!
//! The loop is as lean as a hand-written server gets while staying correct:
//! - edge-triggered readiness (mio always is), each connection registered once for
//!   read + write;
//! - one 64 KiB read buffer shared by all connections;
//! - on a readable event, read until `WouldBlock` or a *short read* (`n < buf.len()`): a read
//!   that does not fill the buffer drained the socket, so no extra read that would only return
//!   `EAGAIN` is issued (unless the event also reported the peer's read-side close, in which
//!   case we read on until EOF so that the close is not missed);
//! - everything read is written straight back; the unwritten tail of a partial write is kept in
//!   a per-connection pending buffer, reading from that connection stops (back-pressure) and
//!   resumes when a writable event has let the pending bytes go out;
//! - connections live in a `slab`; EOF, reset and other errors close only that connection.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use cellio_benches::{announce_listening, parse_args, raise_fd_limit, run_main};
use clap::Parser;
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const PROG: &str = "mio_echo";
const READ_BUF: usize = 64 * 1024;
/// The listener's token; connections use their slab key.
const LISTENER: Token = Token(usize::MAX);

/// Raw single-threaded mio echo server (the floor: no runtime).
#[derive(Parser, Debug)]
#[command(name = PROG, version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:7000")]
    addr: SocketAddr,
    /// Events fetched per epoll_wait.
    #[arg(long, default_value_t = 1024)]
    events: usize,
}

struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet written back.
    pending: Vec<u8>,
    /// How much of `pending` has already been written.
    pending_off: usize,
    /// Set when an event reported that the peer closed its write side; reading then
    /// continues until EOF instead of stopping at a short read.
    read_closed: bool,
}

/// What to do with a connection after driving it.
enum Next {
    Keep,
    Close,
}

fn main() -> ExitCode {
    let args: Args = parse_args(PROG);
    run_main(PROG, || serve(&args))
}

fn serve(args: &Args) -> Result<(), String> {
    raise_fd_limit();
    let mut listener =
        TcpListener::bind(args.addr).map_err(|e| format!("cannot bind {}: {e}", args.addr))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    let mut poll = Poll::new().map_err(|e| format!("epoll_create: {e}"))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| format!("register listener: {e}"))?;
    announce_listening(local);

    let mut events = Events::with_capacity(args.events.max(1));
    let mut conns: Slab<Conn> = Slab::with_capacity(1024);
    let mut buf = vec![0u8; READ_BUF].into_boxed_slice();

    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("epoll_wait: {e}"));
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut conns);
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue; // closed earlier in this batch
            };
            if let Next::Close = on_event(conn, event, &mut buf) {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

fn accept_all(listener: &TcpListener, poll: &Poll, conns: &mut Slab<Conn>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let entry = conns.vacant_entry();
                let token = Token(entry.key());
                if let Err(e) = poll.registry().register(
                    &mut stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    eprintln!("{PROG}: register connection: {e}");
                    continue;
                }
                entry.insert(Conn {
                    stream,
                    pending: Vec::new(),
                    pending_off: 0,
                    read_closed: false,
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE, ECONNABORTED, ...: report and wait for the next event rather than
                // spin; the listener stays registered.
                eprintln!("{PROG}: accept: {e}");
                return;
            }
        }
    }
}

fn on_event(conn: &mut Conn, event: &Event, buf: &mut [u8]) -> Next {
    if event.is_read_closed() || event.is_error() {
        conn.read_closed = true;
    }
    // Finish any pending write first; while bytes are pending, reading is paused.
    if conn.pending_off < conn.pending.len() {
        match flush_pending(conn) {
            Ok(true) => {}
            Ok(false) => return Next::Keep, // still pending: wait for writable
            Err(_) => return Next::Close,
        }
        // The pending bytes are out. Reading was paused, so the socket may hold unread data
        // whose readable edge has already been consumed: fall through and read.
    } else if !event.is_readable() && !conn.read_closed {
        return Next::Keep; // a writable edge with nothing to write
    }
    read_and_echo(conn, buf)
}

/// Reads until drained (short read or `WouldBlock`) and echoes everything back.
fn read_and_echo(conn: &mut Conn, buf: &mut [u8]) -> Next {
    loop {
        let n = match conn.stream.read(buf) {
            Ok(0) => return Next::Close,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Keep,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Next::Close,
        };
        match write_all_or_stash(conn, &buf[..n]) {
            Ok(true) => {}
            Ok(false) => return Next::Keep, // back-pressure: resume on writable
            Err(_) => return Next::Close,
        }
        if n < buf.len() && !conn.read_closed {
            return Next::Keep; // short read: the socket is drained
        }
    }
}

/// Writes `data`; returns `Ok(false)` if the socket filled up and the rest was stashed.
fn write_all_or_stash(conn: &mut Conn, mut data: &[u8]) -> io::Result<bool> {
    while !data.is_empty() {
        match conn.stream.write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                conn.pending.clear();
                conn.pending.extend_from_slice(data);
                conn.pending_off = 0;
                return Ok(false);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes pending bytes; returns `Ok(true)` once all are out.
fn flush_pending(conn: &mut Conn) -> io::Result<bool> {
    while conn.pending_off < conn.pending.len() {
        match conn.stream.write(&conn.pending[conn.pending_off..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => conn.pending_off += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    conn.pending.clear();
    conn.pending_off = 0;
    Ok(true)
}
