//! Shared helpers for cellio-net's integration tests.
//!
//! Every test runs its body through [`run`], which builds a fresh runtime on
//! a watchdog thread: a hang (a lost wake-up, a future that parks forever)
//! fails the test after [`LIMIT`] instead of blocking the test binary.
#![allow(dead_code)]

pub mod datagrams;
pub mod proxying;
pub mod random;

use std::future::{poll_fn, Future};
use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::task::Poll;
use std::time::{Duration, Instant};

use cellio_net::{TcpListener, TcpStream};
use cellio_runtime::{spawn, Builder};

/// How long any single test body may run before it counts as hung.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Runs `body` on its own thread and fails the test if it does not finish
/// within `limit`. Panics inside `body` propagate with their payload.
pub fn with_timeout<T, F>(limit: Duration, body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("test-body".into())
        .spawn(move || {
            let out = body();
            let _ = done_tx.send(());
            out
        })
        .expect("spawn test thread");
    match done_rx.recv_timeout(limit) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match thread.join() {
            Ok(out) => out,
            Err(payload) => std::panic::resume_unwind(payload),
        },
        Err(RecvTimeoutError::Timeout) => {
            panic!("test body did not finish within {limit:?}: something hangs")
        }
    }
}

/// Builds a runtime on a watchdog thread and `block_on`s the future that
/// `make` returns (created on that thread, so it need not be `Send`).
pub fn run<M, Fut>(make: M) -> Fut::Output
where
    M: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    run_within(LIMIT, make)
}

/// [`run`] with an explicit time limit.
pub fn run_within<M, Fut>(limit: Duration, make: M) -> Fut::Output
where
    M: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    run_built(limit, Builder::new(), make)
}

/// [`run`] with a runtime built from `builder` (a worker count, a budget).
pub fn run_with<M, Fut>(builder: Builder, make: M) -> Fut::Output
where
    M: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    run_built(LIMIT, builder, make)
}

/// Runs `make()` on a runtime built from `builder`, within `limit`.
fn run_built<M, Fut>(limit: Duration, builder: Builder, make: M) -> Fut::Output
where
    M: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    with_timeout(limit, move || {
        builder.build().expect("runtime").block_on(make())
    })
}

/// Echoes everything it receives until the peer closes; returns the number
/// of bytes echoed.
pub async fn echo(stream: TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.recv(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        stream.send_all(&buf[..n]).await?;
        total += n as u64;
    }
}

/// Binds an echo listener on `127.0.0.1:0` inside the current runtime and
/// spawns its accept loop (one task per connection). Returns its address.
pub fn spawn_echo_server() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind_with(
        "127.0.0.1:0",
        cellio_net::ListenOptions {
            backlog: 4096,
            ..Default::default()
        },
    )?;
    let addr = listener.local_addr()?;
    spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    spawn(async move {
                        if let Err(e) = echo(stream).await {
                            eprintln!("echo connection failed: {e}");
                        }
                    });
                }
                Err(e) => {
                    eprintln!("echo accept failed: {e}");
                    return;
                }
            }
        }
    });
    Ok(addr)
}

/// A connected pair of cellio streams: `(client, server)`.
pub async fn cellio_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let (server, _) = listener.accept().await?;
    Ok((client, server))
}

/// A cellio stream connected to a blocking `std` peer (with 5 s read and
/// write timeouts, so a test never blocks forever on it):
/// `(ours, peer)`.
pub async fn std_peer() -> io::Result<(TcpStream, std::net::TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    // The kernel completes the handshake from the backlog: this blocking
    // connect returns before we accept.
    let peer = std::net::TcpStream::connect(listener.local_addr()?)?;
    peer.set_read_timeout(Some(Duration::from_secs(5)))?;
    peer.set_write_timeout(Some(Duration::from_secs(5)))?;
    let (ours, from) = listener.accept().await?;
    assert_eq!(from, peer.local_addr()?);
    Ok((ours, peer))
}

/// Polls `fut` exactly once with the current task's context.
pub async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// Runs both futures concurrently on the current task.
pub async fn join2<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let mut out_a = None;
    let mut out_b = None;
    poll_fn(|cx| {
        if out_a.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                out_a = Some(v);
            }
        }
        if out_b.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                out_b = Some(v);
            }
        }
        if out_a.is_some() && out_b.is_some() {
            Poll::Ready((out_a.take().unwrap(), out_b.take().unwrap()))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Blocks (briefly, polling with `MSG_PEEK`) until at least `n` bytes are
/// buffered on `stream`'s receive side, without consuming them. Panics after
/// 5 s.
pub fn wait_buffered(stream: &TcpStream, n: usize) {
    let sock = socket2::SockRef::from(stream);
    let mut buf = vec![MaybeUninit::<u8>::uninit(); n];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sock.peek(&mut buf) {
            Ok(got) if got >= n => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("peek failed: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "{n} bytes never arrived in the receive buffer"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Blocks (briefly) until the peer's FIN has arrived on `stream`, through
/// a probe that does not touch the reactor's edge-triggered registration.
/// Panics after 5 s.
pub fn wait_read_closed(stream: &TcpStream) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !read_closed(stream) {
        assert!(Instant::now() < deadline, "the peer's FIN never arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Blocks (briefly) until `poll(2)` reports one of `events` on `fd` (a
/// stream, or a duplicate of one a join owns), without turning the reactor:
/// e.g. `POLLERR` once a reset has arrived. Panics after 5 s.
pub fn wait_polled(fd: impl std::os::fd::AsFd, events: libc::c_short) {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut polled = libc::pollfd {
            fd: fd.as_fd().as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: one valid `pollfd`, zero timeout.
        let ready = unsafe { libc::poll(&mut polled, 1, 0) };
        if ready > 0 && polled.revents & events != 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{events:#x} never came");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `poll(2)` with `POLLRDHUP`: set once the FIN (or a reset) has arrived,
/// whatever data is still buffered before it.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_closed(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let rc = unsafe { libc::poll(&mut fd, 1, 0) };
    assert!(rc >= 0, "poll: {}", io::Error::last_os_error());
    fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// A kqueue of its own (registrations are per queue, so the reactor's is
/// untouched) asked whether the read filter carries `EV_EOF`: set once the
/// FIN (or a reset) has arrived, whatever data is still buffered before it.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn read_closed(stream: &TcpStream) -> bool {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: kqueue takes no arguments; the new descriptor is owned below.
    let kq = unsafe { libc::kqueue() };
    assert!(kq >= 0, "kqueue: {}", io::Error::last_os_error());
    // SAFETY: `kq` is a new descriptor that nothing else owns.
    let _kq = unsafe { OwnedFd::from_raw_fd(kq) };
    // SAFETY: kevent is a plain C struct; all zeros is a valid value.
    let mut change: libc::kevent = unsafe { std::mem::zeroed() };
    change.ident = stream.as_raw_fd() as _;
    change.filter = libc::EVFILT_READ;
    change.flags = libc::EV_ADD;
    // SAFETY: as above.
    let mut event: libc::kevent = unsafe { std::mem::zeroed() };
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: one change and room for one event, both valid for the call.
    let n = unsafe { libc::kevent(kq, &change, 1, &mut event, 1, &zero) };
    assert!(n >= 0, "kevent: {}", io::Error::last_os_error());
    n == 1 && event.flags & libc::EV_EOF != 0
}

/// Bytes available to read on `stream` right now (`FIONREAD`).
pub fn bytes_buffered(stream: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "ioctl(FIONREAD): {}", io::Error::last_os_error());
    n as usize
}

/// Fills `stream`'s send path (send buffer plus the peer's receive buffer)
/// with `try_send` until it says `WouldBlock`; returns the bytes written.
/// The bytes are `pattern(offset)`.
///
/// Tests call this to make their next send park, so "full" must stay full
/// until the peer reads. With the kernel's send-buffer autotuning it did
/// not: ACKs that arrived after the `WouldBlock` grew the buffer, and under
/// valgrind a send right after the fill completed in 4 of 6 runs. So the
/// send buffer's size is fixed first (`SO_SNDBUF` ends autotuning; 16 of
/// 16 runs then parked). Fixed small (64 KiB, which the kernel doubles),
/// it also keeps the fills short: `write_interest` fills 20 times and under
/// valgrind outlasted its 10 s watchdog with autotuned buffers (21.9 s,
/// 24.6 s); now it takes 11 s for all three of its tests.
pub fn fill_send_buffer(stream: &TcpStream) -> usize {
    const PIECE: usize = 64 * 1024;
    lock_send_buffer(stream, 64 * 1024);
    // `pattern` repeats every PERIOD bytes: one period plus a piece, made
    // once, holds every piece (building each piece byte by byte took most of
    // this helper's time under valgrind, close to its deadline).
    let cycle: Vec<u8> = (0..PERIOD + PIECE).map(pattern).collect();
    let mut total = 0usize;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Continue the byte pattern where the last (maybe partial) write
        // stopped.
        let start = total % PERIOD;
        let piece = &cycle[start..start + PIECE];
        match stream.try_send(piece) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) => panic!("try_send failed while filling: {e}"),
        }
        assert!(Instant::now() < deadline, "send buffer never filled");
    }
}

/// Fixes `stream`'s send buffer size (which also ends its autotuning).
fn lock_send_buffer(stream: &TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads one c_int through the pointer.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_SNDBUF: {}", io::Error::last_os_error());
}

/// Whether this host has an IPv6 loopback (`[::1]` can be bound). Prints
/// why a test is skipped when it has not (Docker's default networks and
/// many CI containers disable IPv6); any other error is a failure.
pub fn has_ipv6_loopback() -> bool {
    match std::net::UdpSocket::bind("[::1]:0") {
        Ok(_) => true,
        Err(e)
            if e.kind() == io::ErrorKind::AddrNotAvailable
                || e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
        {
            eprintln!("skipped: no IPv6 loopback here ([::1]: {e})");
            false
        }
        Err(e) => panic!("binding [::1]: {e}"),
    }
}

/// The test byte at stream offset `i`: not periodic at any power of two, so
/// a lost, duplicated or reordered chunk is caught.
pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8 ^ ((i / 251) % 7) as u8
}

/// Reads until end of stream through `AsyncRead` (a `TcpIo` or either
/// kind of receiving half), checking every byte against [`pattern`];
/// returns how many came.
#[allow(dead_code)] // not every test file uses it
pub async fn read_checking(
    rx: &mut (impl futures_util::io::AsyncRead + Unpin),
) -> io::Result<usize> {
    use futures_util::io::AsyncReadExt;
    let mut buf = vec![0u8; 32 * 1024];
    let mut got = 0;
    loop {
        let n = rx.read(&mut buf).await?;
        if n == 0 {
            return Ok(got);
        }
        for (i, byte) in buf[..n].iter().enumerate() {
            assert_eq!(*byte, pattern(got + i), "byte {} corrupted", got + i);
        }
        got += n;
    }
}

/// [`pattern`]'s period: `pattern(i + PERIOD) == pattern(i)`.
pub const PERIOD: usize = 251 * 7;

/// Reads from the std peer until EOF, checking every byte against
/// [`pattern`] from offset 0, and returns the count.
pub fn drain_checking(peer: &mut std::net::TcpStream) -> io::Result<usize> {
    drain_checking_from(peer, 0)
}

/// [`drain_checking`] for a stream whose bytes continue [`pattern`] from
/// offset `from`; returns the count read.
pub fn drain_checking_from(peer: &mut std::net::TcpStream, from: usize) -> io::Result<usize> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    loop {
        let n = peer.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        for (k, &byte) in buf[..n].iter().enumerate() {
            let at = from + total + k;
            assert_eq!(byte, pattern(at), "byte {at} corrupted");
        }
        total += n;
    }
}

/// Has `peer` send `"abc"`, then `"X"` as urgent (TCP) or out-of-band
/// (Unix stream) data, then `"def"`. A receive stops short at the urgent
/// byte: the first one gets `"abc"` although `"def"` is queued behind it.
///
/// `Ok(false)` when the socket refuses `MSG_OOB` (a Unix stream on a kernel
/// built without `CONFIG_AF_UNIX_OOB`): nothing was sent.
pub fn send_around_an_urgent_byte(peer: &impl std::os::fd::AsRawFd) -> io::Result<bool> {
    for (bytes, flags) in [(&b"abc"[..], 0), (b"X", libc::MSG_OOB), (b"def", 0)] {
        // SAFETY: `bytes` is valid for reads of its length.
        let n = unsafe { libc::send(peer.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), flags) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if flags != 0 && error.raw_os_error() == Some(libc::EOPNOTSUPP) {
                return Ok(false);
            }
            return Err(error);
        }
        assert_eq!(n as usize, bytes.len(), "a short send of {bytes:?}");
    }
    Ok(true)
}

/// Sets `SIGPIPE` back to its default action (terminate). Rust programs
/// ignore it by default, which would hide a write that raises it.
pub fn default_sigpipe() {
    // SAFETY: installing the default disposition for a signal.
    let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_ne!(previous, libc::SIG_ERR, "signal(SIGPIPE, SIG_DFL) failed");
}

/// A fresh directory for Unix socket files, removed with everything in it
/// when dropped. Each call makes a new one (tests run in parallel threads).
///
/// Under `TMPDIR`, or under `/tmp` where `TMPDIR` is too long to leave
/// [`SocketDir::ROOM`] bytes of a socket address's 107 for the file names
/// (Nix builders and some CI workspaces have long ones: binds failed with
/// "path must be shorter than SUN_LEN"; found by a review).
pub struct SocketDir(std::path::PathBuf);

impl SocketDir {
    /// Bytes of `sun_path` (107 and its NUL) left for names in the directory.
    pub const ROOM: usize = 48;

    pub fn new() -> Self {
        use std::os::unix::ffi::OsStrExt;
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("cellio-test-{}-{n}", std::process::id());
        let mut dir = std::env::temp_dir().join(&name);
        if dir.as_os_str().as_bytes().len() + Self::ROOM > 107 {
            dir = std::path::Path::new("/tmp").join(&name);
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a socket directory");
        Self(dir)
    }

    /// `name` inside the directory.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends numbered 4-byte datagrams from `socket` to its connected peer
/// until the kernel refuses one (`WouldBlock`): the peer's queue (or this
/// socket's send buffer) is full. Returns how many went.
pub fn fill_datagram_queue(socket: &cellio_net::unix::UnixDatagram) -> io::Result<u32> {
    let mut sent = 0u32;
    loop {
        match socket.try_send(&sent.to_le_bytes()) {
            Ok(_) => sent += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(sent),
            Err(e) => return Err(e),
        }
        assert!(sent < 1_000_000, "the queue never filled");
    }
}

/// Receives the numbered datagrams `0..=last` on `socket`, failing on one
/// out of order or missing.
pub async fn recv_numbered(socket: &cellio_net::unix::UnixDatagram, last: u32) -> io::Result<()> {
    let mut buf = [0u8; 4];
    for expected in 0..=last {
        assert_eq!(socket.recv(&mut buf).await?, 4);
        assert_eq!(u32::from_le_bytes(buf), expected, "out of order or lost");
    }
    Ok(())
}

/// Asks `set` for sizes of 2^32 and more, which the option's C `int`
/// cannot hold, and checks that each gives the kernel's cap (what
/// `usize::MAX` gives), not what their low 32 bits say (2^32: the
/// minimum). `name` names the option in the failure message.
#[cfg(target_pointer_width = "64")]
pub fn assert_huge_buffer_sizes_capped(
    name: &str,
    set: impl Fn(usize) -> io::Result<()>,
    get: impl Fn() -> io::Result<usize>,
) -> io::Result<()> {
    set(usize::MAX)?;
    let cap = get()?;
    for asked in [1usize << 32, (1 << 32) + (1 << 20), i32::MAX as usize + 1] {
        set(asked)?;
        let got = get()?;
        assert_eq!(
            got, cap,
            "{name}: asked for {asked}, got {got} (the cap is {cap})"
        );
    }
    Ok(())
}
