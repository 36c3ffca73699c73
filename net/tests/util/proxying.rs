//! The scenarios every stream-joining function must pass (for
//! `copy_bidirectional.rs` and `splice_bidirectional.rs`): each takes a
//! `join` that runs the two streams' proxy to its end and returns
//! `(a_to_b, b_to_a)`.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::pin::Pin;
use std::time::Duration;

use cellio_net::unix::UnixStream;
use cellio_net::TcpStream;
use cellio_runtime::{spawn_local, JoinHandle};

use super::{
    cellio_pair, join2, pattern, spawn_echo_server, std_peer, wait_polled, wait_read_closed,
};

/// What a joining function makes of two streams: the future of its end.
pub type Joined = Pin<Box<dyn Future<Output = io::Result<(u64, u64)>>>>;

/// Sends `len` patterned bytes on `client` while reading them back, and
/// checks each one.
pub async fn exchange(client: &TcpStream, len: usize) -> io::Result<()> {
    let sender = async {
        let mut out = [0u8; 4096];
        let mut sent = 0;
        while sent < len {
            let n = out.len().min(len - sent);
            for (i, byte) in out[..n].iter_mut().enumerate() {
                *byte = pattern(sent + i);
            }
            client.send_all(&out[..n]).await?;
            sent += n;
        }
        io::Result::Ok(())
    };
    let receiver = async {
        let mut back = [0u8; 4096];
        let mut got = 0;
        while got < len {
            let n = client.recv(&mut back).await?;
            assert_ne!(n, 0, "end of stream after {got} of {len} bytes");
            for (i, &byte) in back[..n].iter().enumerate() {
                assert_eq!(byte, pattern(got + i), "byte {} corrupted", got + i);
            }
            got += n;
        }
        io::Result::Ok(())
    };
    let (sent, received) = join2(sender, receiver).await;
    sent.and(received)
}

/// Client → proxy (`join`) → the echo server: the exchanges of `lens` bytes
/// come back intact; then the client's end of stream reaches the echo
/// server, which closes, and that comes back; the proxy counted every
/// byte both ways.
pub async fn echoes_every_byte(
    join: impl FnOnce(TcpStream, TcpStream) -> Joined + 'static,
    lens: &[usize],
) -> io::Result<()> {
    let upstream = spawn_echo_server()?;
    let (client, proxy_in) = cellio_pair().await?;
    let proxy: JoinHandle<io::Result<(u64, u64)>> = spawn_local(async move {
        let out = TcpStream::connect(upstream).await?;
        join(proxy_in, out).await
    });
    exchange_then_close(&client, lens, vec![proxy]).await
}

/// Client → `first` (TCP to Unix) → a Unix pair → `second` (Unix to TCP)
/// → the echo server: `len` bytes both ways, then both ends; each proxy
/// counted every byte.
pub async fn echoes_through_a_unix_pair(
    first: impl FnOnce(TcpStream, UnixStream) -> Joined + 'static,
    second: impl FnOnce(UnixStream, TcpStream) -> Joined + 'static,
    len: usize,
) -> io::Result<()> {
    let upstream = spawn_echo_server()?;
    let (client, proxy_in) = cellio_pair().await?;
    let (unix_a, unix_b) = UnixStream::pair()?;
    let forwarder = spawn_local(async move {
        let out = TcpStream::connect(upstream).await?;
        second(unix_b, out).await
    });
    let proxy = spawn_local(first(proxy_in, unix_a));
    exchange_then_close(&client, &[len], vec![proxy, forwarder]).await
}

/// The exchanges of `lens` bytes through `proxies` (chained), then the
/// client's end of stream, which comes back; each proxy counted every
/// byte both ways.
pub async fn exchange_then_close(
    client: &TcpStream,
    lens: &[usize],
    proxies: Vec<JoinHandle<io::Result<(u64, u64)>>>,
) -> io::Result<()> {
    let mut total = 0;
    for &len in lens {
        exchange(client, len).await?;
        total += len as u64;
    }
    client.shutdown(Shutdown::Write)?;
    let mut rest = [0u8; 16];
    assert_eq!(client.recv(&mut rest).await?, 0);
    for proxy in proxies {
        assert_eq!(proxy.await.unwrap()?, (total, total));
    }
    Ok(())
}

/// The client sends a request and closes its side; the server reads it to
/// the end, then answers in two parts: the answer still comes through.
pub async fn passes_a_half_close(
    join: impl FnOnce(TcpStream, TcpStream) -> Joined + 'static,
) -> io::Result<()> {
    let (client, proxy_in) = cellio_pair().await?;
    let (proxy_out, mut server) = std_peer().await?;
    let proxy = spawn_local(join(proxy_in, proxy_out));
    client.send_all(b"request").await?;
    client.shutdown(Shutdown::Write)?;
    let server = std::thread::spawn(move || {
        let mut request = Vec::new();
        server.read_to_end(&mut request)?;
        server.write_all(b"first part, ")?;
        std::thread::sleep(Duration::from_millis(20));
        server.write_all(b"second part")?;
        io::Result::Ok(request)
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let n = client.recv(&mut buf).await?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    assert_eq!(answer, b"first part, second part");
    assert_eq!(server.join().unwrap()?, b"request");
    assert_eq!(proxy.await.unwrap()?, (7, 23));
    Ok(())
}

/// The server resets its connection while the proxy waits on it: the
/// proxy ends with `ConnectionReset`.
pub async fn ends_with_a_reset(
    join: impl FnOnce(TcpStream, TcpStream) -> Joined + 'static,
) -> io::Result<()> {
    let (client, proxy_in) = cellio_pair().await?;
    let (proxy_out, server) = std_peer().await?;
    let proxy = spawn_local(join(proxy_in, proxy_out));
    client.send_all(b"hello").await?;
    // A zero linger makes the close send RST.
    socket2::SockRef::from(&server).set_linger(Some(Duration::ZERO))?;
    drop(server);
    let error = proxy.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
    Ok(())
}

/// The client sends its request and half-closes; the server answers and
/// resets (a close with unread input does); all of it is queued on the
/// proxy's two sockets before the join first polls (two events in one
/// reactor turn, in a busy proxy). The client-to-server direction, polled
/// first, reads the client's end and shuts down the reset socket's
/// sending side: that is no error (Linux says `ENOTCONN`), so the other
/// direction still delivers the answer, then ends the join with the reset.
pub async fn delivers_the_answer_queued_before_a_reset(
    join: impl FnOnce(TcpStream, TcpStream) -> Joined + 'static,
) -> io::Result<()> {
    let (proxy_in, mut client) = std_peer().await?;
    let (proxy_out, mut server) = std_peer().await?;
    client.shutdown(Shutdown::Write)?;
    server.write_all(b"answer")?;
    // A zero linger makes the close send RST.
    socket2::SockRef::from(&server).set_linger(Some(Duration::ZERO))?;
    drop(server);
    wait_read_closed(&proxy_in);
    wait_read_closed(&proxy_out);
    let error = spawn_local(join(proxy_in, proxy_out))
        .await
        .unwrap()
        .expect_err("the server reset");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
    // The join dropped the streams: the client reads the answer, then end
    // of stream.
    let mut answer = Vec::new();
    client.read_to_end(&mut answer)?;
    assert_eq!(answer, b"answer");
    Ok(())
}

/// Waits, without blocking the runtime's thread, for a thread's end: its
/// result.
async fn finished<T>(thread: std::thread::JoinHandle<T>) -> T {
    while !thread.is_finished() {
        cellio_runtime::time::sleep(Duration::from_millis(5)).await;
    }
    thread.join().unwrap()
}

/// The proxy's end after the client's reset: its error's kind, or a note
/// that it still runs 5 s later.
async fn after_the_clients_reset(
    proxy: JoinHandle<io::Result<(u64, u64)>>,
) -> Result<(u64, u64), String> {
    match cellio_runtime::time::timeout(Duration::from_secs(5), proxy).await {
        Ok(ended) => ended.unwrap().map_err(|e| format!("{:?}", e.kind())),
        Err(_) => Err("still running 5 s after the client's reset".into()),
    }
}

/// The client half-closes (its end reaches the idle server through the
/// proxy), then is reset (killed: a close with a zero linger): the proxy
/// ends with `ConnectionReset`, though the client's direction is done and
/// the other one waits on the server, which says nothing. (Before, the
/// proxy waited on the server for ever, holding both connections.)
pub async fn ends_when_a_half_closed_client_resets(
    join: impl FnOnce(TcpStream, TcpStream) -> Joined + 'static,
) -> io::Result<()> {
    let (proxy_in, client) = std_peer().await?;
    let (proxy_out, mut server) = std_peer().await?;
    let proxy = spawn_local(join(proxy_in, proxy_out));
    client.shutdown(Shutdown::Write)?;
    let server = finished(std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        let n = server.read(&mut buf)?;
        io::Result::Ok((n, server))
    }));
    let (n, _server) = server.await?;
    assert_eq!(n, 0, "the client's end reached the server");
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO))?;
    drop(client);
    assert_eq!(
        after_the_clients_reset(proxy).await,
        Err("ConnectionReset".into())
    );
    Ok(())
}

/// `SIOCOUTQ`: the bytes in `stream`'s send queue not yet acknowledged.
fn unacknowledged(stream: &std::net::TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: `SIOCOUTQ` (`TIOCOUTQ`) writes one `c_int` through the
    // pointer, which points at one.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    assert_eq!(rc, 0, "{}", io::Error::last_os_error());
    n as usize
}

/// The client uploads more than the server (alive, busy: not reading yet)
/// takes, until nothing moves, so the proxy holds bytes it waits to write
/// and its socket holds more; then the client is reset (`killed`: a close
/// with a zero linger; else the server answered early and the client
/// closes without reading the answer, which Linux sends as a reset too).
/// Then the server reads: every byte the proxy's kernel acknowledged to
/// the client before the reset reaches it, in order, and the proxy ends
/// with `ConnectionReset`. (Before, the splice joins ended at the reset
/// and dropped what their client's socket still held.)
pub async fn delivers_what_a_client_sent_before_its_reset(
    join: impl FnOnce(TcpStream, TcpStream) -> Joined + 'static,
    killed: bool,
) -> io::Result<()> {
    let (proxy_in, client) = std_peer().await?;
    let (proxy_out, mut server) = std_peer().await?;
    socket2::SockRef::from(&server).set_recv_buffer_size(16 * 1024)?;
    let proxy = spawn_local(join(proxy_in, proxy_out));
    if !killed {
        server.write_all(b"HTTP/1.1 413 Payload Too Large\r\n\r\n")?;
    }
    client.set_nonblocking(true)?;
    let (mut written, mut idle) = (0, 0);
    let mut chunk = [0u8; 16 * 1024];
    while idle < 20 {
        for (i, byte) in chunk.iter_mut().enumerate() {
            *byte = pattern(written + i);
        }
        match (&client).write(&chunk) {
            Ok(n) => (written, idle) = (written + n, 0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                idle += 1;
                cellio_runtime::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e),
        }
    }
    let acknowledged = written - unacknowledged(&client);
    if killed {
        socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO))?;
    }
    drop(client);
    // The reset reaches the proxy while the server is still busy.
    cellio_runtime::time::sleep(Duration::from_millis(100)).await;
    let server = std::thread::spawn(move || super::drain_checking(&mut server));
    let ended = cellio_runtime::time::timeout(Duration::from_secs(10), proxy)
        .await
        .map(|ended| ended.unwrap().map_err(|e| e.kind()));
    let delivered = finished(server).await?;
    assert!(
        delivered >= acknowledged,
        "killed {killed}: {acknowledged} bytes acknowledged to the client, {delivered} delivered"
    );
    assert_eq!(
        ended,
        Ok(Err(io::ErrorKind::ConnectionReset)),
        "killed {killed}"
    );
    Ok(())
}

/// What `poll(2)` reports once a stream's peer has sent its FIN: Linux's
/// `POLLRDHUP`; elsewhere (these tests are only built there, by CI's
/// other-targets step) readability.
#[cfg(any(target_os = "linux", target_os = "android"))]
const PEER_CLOSED: libc::c_short = libc::POLLRDHUP;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const PEER_CLOSED: libc::c_short = libc::POLLIN;

/// The client sends a request; the server, without reading it, answers
/// and half-closes (the proxy's server-to-client direction is done, and
/// the client reads the whole answer and its end); then the server is
/// reset, the request unread, and the client half-closes, both before the
/// join next runs (one reactor turn, as in a busy proxy). The upstream
/// threw the request away: the join ends with `ConnectionReset`, not
/// `Ok`. (Before, the shutdown's `ENOTCONN` counted as done and the reset
/// was left unread in `SO_ERROR`, with no receive to come.)
pub async fn reports_a_reset_after_the_other_direction_is_done(
    join: impl FnOnce(TcpStream, TcpStream) -> Joined + 'static,
) -> io::Result<()> {
    use std::os::fd::AsFd;
    let (proxy_in, mut client) = std_peer().await?;
    let (proxy_out, mut server) = std_peer().await?;
    let (proxy_in_dup, proxy_out_dup) = (
        proxy_in.as_fd().try_clone_to_owned()?,
        proxy_out.as_fd().try_clone_to_owned()?,
    );
    let proxy = spawn_local(join(proxy_in, proxy_out));
    client.write_all(b"req")?;
    let server = finished(std::thread::spawn(move || {
        let mut peek = [0u8; 3];
        while server.peek(&mut peek)? < 3 {}
        server.write_all(b"answer")?;
        server.shutdown(Shutdown::Write)?;
        io::Result::Ok(server)
    }))
    .await?;
    let client = finished(std::thread::spawn(move || {
        let mut answer = Vec::new();
        client.read_to_end(&mut answer)?;
        io::Result::Ok((answer, client))
    }));
    let (answer, client) = client.await?;
    assert_eq!(answer, b"answer");
    // From here no await until both have arrived: the join sees them in
    // one turn.
    socket2::SockRef::from(&server).set_linger(Some(Duration::ZERO))?;
    drop(server);
    wait_polled(&proxy_out_dup, libc::POLLERR);
    client.shutdown(Shutdown::Write)?;
    wait_polled(&proxy_in_dup, PEER_CLOSED);
    let ended = cellio_runtime::time::timeout(Duration::from_secs(5), proxy)
        .await
        .map(|ended| ended.unwrap().map_err(|e| e.kind()));
    assert_eq!(ended, Ok(Err(io::ErrorKind::ConnectionReset)));
    Ok(())
}

/// The upstream answers and half-closes (FIN); the proxy's request reaches
/// it and it closes without reading it: a reset in `CLOSE_WAIT` (`EPIPE`),
/// its answer still queued in the proxy's socket; the client half-closes.
/// All before the join runs, which gets the upstream as `a` when
/// `upstream_first`, else as `b`. The upstream threw the request away:
/// either way the join ends with `ConnectionReset`, and the client has
/// the whole answer. (Linux's receive says a clean end after the answer
/// here, the reset after a FIN being only in `SO_ERROR`: the shutdown of
/// the upstream's side, done while the answer was queued, left it there,
/// and the join ended `Ok` or `ConnectionReset` by argument order.)
pub async fn reports_a_reset_after_the_upstreams_end_with_its_answer_queued(
    join: impl FnOnce(TcpStream, TcpStream) -> Joined + 'static,
    upstream_first: bool,
) -> io::Result<()> {
    use std::os::fd::AsFd;
    let (proxy_in, mut client) = std_peer().await?;
    let (proxy_out, mut server) = std_peer().await?;
    let (proxy_in_dup, proxy_out_dup) = (
        proxy_in.as_fd().try_clone_to_owned()?,
        proxy_out.as_fd().try_clone_to_owned()?,
    );
    server.write_all(b"answer")?;
    server.shutdown(Shutdown::Write)?;
    wait_polled(&proxy_out_dup, PEER_CLOSED);
    // The request the proxy forwarded, written before the join runs.
    std::net::TcpStream::from(proxy_out_dup.try_clone()?).write_all(b"req")?;
    let mut peek = [0u8; 3];
    while server.peek(&mut peek)? < 3 {}
    drop(server); // the request unread: a reset
    wait_polled(&proxy_out_dup, libc::POLLERR);
    client.shutdown(Shutdown::Write)?;
    wait_polled(&proxy_in_dup, PEER_CLOSED);
    drop((proxy_in_dup, proxy_out_dup));
    let proxy = if upstream_first {
        spawn_local(join(proxy_out, proxy_in))
    } else {
        spawn_local(join(proxy_in, proxy_out))
    };
    let ended = cellio_runtime::time::timeout(Duration::from_secs(5), proxy)
        .await
        .map(|ended| ended.unwrap().map_err(|e| e.kind()));
    assert_eq!(
        ended,
        Ok(Err(io::ErrorKind::ConnectionReset)),
        "upstream first: {upstream_first}"
    );
    let mut answer = Vec::new();
    client.read_to_end(&mut answer)?;
    assert_eq!(answer, b"answer");
    Ok(())
}

/// The client and the server each flood the proxy (`join`) and read as
/// fast as they can (threads of their own): both directions move bytes,
/// neither taking nearly all of them. Once `enough / 4` bytes have passed
/// (the sockets' buffers have grown), and until one direction has
/// delivered `enough` more, the other must deliver at least a quarter as
/// many; then both stop and the join ends `Ok` with every byte counted.
/// (The join must be what limits the throughput, not the peers: a join
/// that waits for its peers serves both directions whatever its order.)
pub async fn shares_the_throughput_when_both_ways_are_busy(
    join: impl FnOnce(TcpStream, TcpStream) -> Joined + 'static,
    enough: u64,
) -> io::Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::sync::{mpsc, Arc, OnceLock};
    let warm = enough / 4;
    let (proxy_in, client) = std_peer().await?;
    let (proxy_out, server) = std_peer().await?;
    for peer in [&client, &server] {
        // Bounded by the test's own limit instead.
        peer.set_read_timeout(None)?;
        peer.set_write_timeout(None)?;
    }
    let proxy = spawn_local(join(proxy_in, proxy_out));
    let stop = Arc::new(AtomicBool::new(false));
    // Delivered to the server (client to server) and to the client; both
    // when the sum reached `WARM`.
    let delivered = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let warmed = Arc::new(OnceLock::new());
    let (counts_tx, counts) = mpsc::channel();
    let mut threads = Vec::new();
    for (way, (from, to)) in [(&client, &server), (&server, &client)]
        .into_iter()
        .enumerate()
    {
        let (from, mut to) = (from.try_clone()?, to.try_clone()?);
        let flooding = stop.clone();
        threads.push(std::thread::spawn(move || {
            let chunk = vec![5u8; 256 * 1024];
            while !flooding.load(Relaxed) && (&from).write_all(&chunk).is_ok() {}
            let _ = from.shutdown(Shutdown::Write);
        }));
        let (stop, delivered, warmed, counts_tx) = (
            stop.clone(),
            delivered.clone(),
            warmed.clone(),
            counts_tx.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n @ 1..) = to.read(&mut buf) {
                delivered[way].fetch_add(n as u64, Relaxed);
                let now = [delivered[0].load(Relaxed), delivered[1].load(Relaxed)];
                let Some(from) = warmed.get() else {
                    if now[0] + now[1] >= warm {
                        let _ = warmed.set(now);
                    }
                    continue;
                };
                if now[way] - from[way] >= enough && !stop.swap(true, Relaxed) {
                    let _ = counts_tx.send([now[0] - from[0], now[1] - from[1]]);
                }
            }
        }));
    }
    drop((client, server, counts_tx));
    let moved = proxy.await.unwrap()?;
    for thread in threads {
        thread.join().unwrap();
    }
    let [to_server, to_client]: [u64; 2] = counts
        .recv_timeout(Duration::from_secs(10))
        .expect("one direction delivered enough");
    assert!(
        to_server.min(to_client) >= to_server.max(to_client) / 4,
        "after the first {warm} bytes: client to server {to_server} bytes, server to client {to_client}"
    );
    assert_eq!(
        moved,
        (delivered[0].load(Relaxed), delivered[1].load(Relaxed))
    );
    Ok(())
}
