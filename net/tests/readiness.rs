//! `readable()` and `writable()`: waiting for a socket without holding a
//! buffer, then moving the bytes with the `try_` methods (tokio's pattern).
//! A wait completes when the reactor reports readiness, not before, once a
//! `try_` method has found the socket empty (or full); it moves no data;
//! it sees the end of the stream; and a loop of waits and `try_` calls does
//! not spin: each `WouldBlock` is followed by a wait that parks.

mod util;

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::time::Duration;

use cellio_net::unix::{UnixDatagram, UnixStream};
use cellio_net::{Interest, UdpSocket};
use util::{drain_checking_from, fill_send_buffer, pattern, poll_once, run, std_peer};

/// `result` is `WouldBlock`: a `try_` call found the socket empty.
fn assert_would_block<T: std::fmt::Debug>(result: io::Result<T>) {
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::WouldBlock);
}

/// Once `try_recv` has found the socket empty, the wait parks until data
/// comes, and it takes none of it.
#[test]
fn readable_waits_for_data_and_takes_none_of_it() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut buf = [0u8; 64];
        assert_would_block(ours.try_recv(&mut buf));
        // The socket was found empty: the wait parks.
        {
            let mut readable = pin!(ours.readable());
            assert!(poll_once(readable.as_mut()).await.is_pending());
            peer.write_all(b"hello")?;
            readable.await?;
        }
        // It took nothing: a peek and the receive both see the bytes.
        let mut first = [0u8; 1];
        assert_eq!(ours.try_peek(&mut first)?, 1);
        assert_eq!(&first, b"h");
        // Data is there, so the next wait completes at once.
        assert!(poll_once(pin!(ours.readable())).await.is_ready());
        let n = ours.try_recv(&mut buf)?;
        assert_eq!(&buf[..n], b"hello");
        io::Result::Ok(())
    })
    .unwrap();
}

/// The read loop of tokio's docs, over 200 messages sent 1 ms apart: every
/// byte arrives in order, and the loop sees at most one `WouldBlock` per
/// message sent (plus one): a wait after `WouldBlock` parks until data
/// comes. Without the mark a `WouldBlock` leaves, the wait would complete
/// at once and the loop would spin through thousands of them.
#[test]
fn a_wait_and_try_loop_does_not_spin() {
    const MESSAGES: usize = 200;
    const SIZE: usize = 37;
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let writer = std::thread::spawn(move || -> io::Result<()> {
            for m in 0..MESSAGES {
                let bytes: Vec<u8> = (m * SIZE..(m + 1) * SIZE).map(pattern).collect();
                peer.write_all(&bytes)?;
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        });
        let mut buf = [0u8; 4096];
        let (mut received, mut would_block) = (0usize, 0usize);
        loop {
            ours.readable().await?;
            match ours.try_recv(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    for (i, byte) in buf[..n].iter().enumerate() {
                        assert_eq!(*byte, pattern(received + i), "byte {}", received + i);
                    }
                    received += n;
                    if received == MESSAGES * SIZE {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => would_block += 1,
                Err(e) => return Err(e),
            }
        }
        writer.join().unwrap()?;
        assert_eq!(received, MESSAGES * SIZE);
        assert!(
            would_block <= MESSAGES + 1,
            "{would_block} WouldBlocks for {MESSAGES} messages: the waits did not park"
        );
        io::Result::Ok(())
    })
    .unwrap();
}

/// The end of the stream is readiness too, and stays so: every later wait
/// completes at once and the receive says 0.
#[test]
fn readable_sees_the_end_of_the_stream() {
    run(|| async {
        let (ours, peer) = std_peer().await?;
        let mut buf = [0u8; 16];
        assert_would_block(ours.try_recv(&mut buf));
        let mut readable = pin!(ours.readable());
        assert!(poll_once(readable.as_mut()).await.is_pending());
        drop(peer);
        readable.await?;
        for _ in 0..3 {
            ours.readable().await?;
            assert_eq!(ours.try_recv(&mut buf)?, 0);
        }
        io::Result::Ok(())
    })
    .unwrap();
}

/// A full send buffer: `try_send` says `WouldBlock`, the wait parks, and
/// it completes once the peer has read enough for the sends to go on;
/// every byte arrives in order. (Without write interest armed by the
/// `try_send` that found the buffer full, the wait would never be woken.)
#[test]
fn writable_waits_for_room_after_a_full_send_buffer() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let filled = fill_send_buffer(&ours);
        {
            let mut writable = pin!(ours.writable());
            assert!(poll_once(writable.as_mut()).await.is_pending());
            let reader = std::thread::spawn(move || -> io::Result<(usize, std::net::TcpStream)> {
                let mut got = vec![0u8; filled];
                peer.read_exact(&mut got)?;
                for (i, byte) in got.iter().enumerate() {
                    assert_eq!(*byte, pattern(i), "byte {i}");
                }
                Ok((filled, peer))
            });
            writable.await?;
            let (read, returned) = reader.join().unwrap()?;
            assert_eq!(read, filled);
            peer = returned;
        }
        // Room came: the rest of the pattern goes on from where it stopped.
        let more: Vec<u8> = (filled..filled + 1000).map(pattern).collect();
        let mut sent = 0;
        while sent < more.len() {
            ours.writable().await?;
            match ours.try_send(&more[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        ours.shutdown(std::net::Shutdown::Write)?;
        peer.set_read_timeout(Some(Duration::from_secs(5)))?;
        let tail = std::thread::spawn(move || drain_checking_from(&mut peer, filled))
            .join()
            .unwrap()?;
        assert_eq!(tail, 1000);
        io::Result::Ok(())
    })
    .unwrap();
}

/// Both directions from one task, as tokio's `ready(Interest::READABLE |
/// Interest::WRITABLE)`: a `select` over `readable()` and `writable()`
/// (each holds its own cell, and the one that loses is dropped, which
/// moves nothing). The peer writes 4 MiB before it reads anything, so a
/// task that waited only to send would wait forever once the buffers
/// fill: this one receives all of the peer's bytes while it sends its own,
/// and every byte arrives in order both ways.
#[test]
fn one_task_waits_for_both_directions_with_select() {
    const EACH_WAY: usize = 4 << 20;
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        peer.set_read_timeout(Some(Duration::from_secs(20)))?;
        peer.set_write_timeout(Some(Duration::from_secs(20)))?;
        let peer = std::thread::spawn(move || -> io::Result<usize> {
            let ours: Vec<u8> = (0..EACH_WAY).map(pattern).collect();
            peer.write_all(&ours)?;
            peer.shutdown(std::net::Shutdown::Write)?;
            drain_checking_from(&mut peer, 0)
        });
        let outgoing: Vec<u8> = (0..EACH_WAY).map(pattern).collect();
        let (mut sent, mut received, mut peer_done) = (0usize, 0usize, false);
        let mut buf = vec![0u8; 64 * 1024];
        while sent < outgoing.len() || !peer_done {
            if sent < outgoing.len() && !peer_done {
                let readable = pin!(ours.readable());
                let writable = pin!(ours.writable());
                match futures_util::future::select(readable, writable).await {
                    futures_util::future::Either::Left((ready, _)) => ready?,
                    futures_util::future::Either::Right((ready, _)) => ready?,
                }
            } else if sent < outgoing.len() {
                ours.writable().await?;
            } else {
                ours.readable().await?;
            }
            if !peer_done {
                match ours.try_recv(&mut buf) {
                    Ok(0) => peer_done = true,
                    Ok(n) => {
                        for (i, byte) in buf[..n].iter().enumerate() {
                            assert_eq!(*byte, pattern(received + i), "byte {}", received + i);
                        }
                        received += n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if sent < outgoing.len() {
                match ours.try_send(&outgoing[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if sent == outgoing.len() {
                    ours.shutdown(std::net::Shutdown::Write)?;
                }
            }
        }
        assert_eq!(received, EACH_WAY);
        assert_eq!(peer.join().unwrap()?, EACH_WAY);
        io::Result::Ok(())
    })
    .unwrap();
}

/// A wait moves no data, so dropping it loses nothing: a parked wait
/// dropped, then the data comes, and the next receive gets it all.
#[test]
fn a_dropped_wait_loses_nothing() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut buf = [0u8; 64];
        assert_would_block(ours.try_recv(&mut buf));
        {
            let mut readable = pin!(ours.readable());
            assert!(poll_once(readable.as_mut()).await.is_pending());
        }
        peer.write_all(b"after the drop")?;
        let n = ours.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"after the drop");
        io::Result::Ok(())
    })
    .unwrap();
}

/// UDP: an empty socket's wait parks until a datagram comes, which the
/// wait leaves queued for `try_recv_from`, sender and all.
#[test]
fn udp_readable_waits_for_a_datagram() {
    run(|| async {
        let ours = UdpSocket::bind("127.0.0.1:0")?;
        let peer = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let mut buf = [0u8; 64];
        assert_would_block(ours.try_recv_from(&mut buf));
        let mut readable = pin!(ours.readable());
        assert!(poll_once(readable.as_mut()).await.is_pending());
        peer.send_to(b"datagram", ours.local_addr()?)?;
        readable.await?;
        let (n, from) = ours.try_recv_from(&mut buf)?;
        assert_eq!((&buf[..n], from), (&b"datagram"[..], peer.local_addr()?));
        // A send has room at once.
        ours.writable().await?;
        assert_eq!(ours.try_send_to(b"back", from)?, 4);
        io::Result::Ok(())
    })
    .unwrap();
}

/// A connected UDP socket whose datagram met a closed port gets an ICMP
/// error, which the reactor reports as a hang-up (`EPOLLERR`); once the
/// error is read the socket goes on, and a `WouldBlock` from `try_recv`
/// must still make the next wait park. (It did not: after the hang-up the
/// wait completed at once for ever, and the loop of waits and `try_recv`
/// calls spun on an empty socket.)
#[test]
fn udp_waits_park_again_after_an_icmp_error_is_read() {
    run(|| async {
        // A port with nobody on it, to connect to.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let closed_addr = closed.local_addr()?;
        drop(closed);
        let ours = UdpSocket::bind("127.0.0.1:0")?;
        ours.connect(closed_addr)?;
        let mut buf = [0u8; 64];
        assert_would_block(ours.try_recv(&mut buf));
        {
            let mut readable = pin!(ours.readable());
            assert!(poll_once(readable.as_mut()).await.is_pending());
            // Port unreachable: the error wakes the wait.
            ours.try_send(b"to nobody")?;
            readable.await?;
        }
        assert_eq!(
            ours.try_recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
        // The error is read; the socket is empty and the wait parks.
        assert_would_block(ours.try_recv(&mut buf));
        let mut readable = pin!(ours.readable());
        assert!(
            poll_once(readable.as_mut()).await.is_pending(),
            "the wait completed on an empty socket after the error was read"
        );
        // Somebody is there now: its datagram completes the wait.
        let peer = std::net::UdpSocket::bind(closed_addr)?;
        peer.send_to(b"hello", ours.local_addr()?)?;
        readable.await?;
        assert_eq!(ours.try_recv(&mut buf)?, 5);
        assert_eq!(&buf[..5], b"hello");
        io::Result::Ok(())
    })
    .unwrap();
}

/// Unix streams and datagram sockets have the same waits.
#[test]
fn unix_sockets_wait_the_same_way() {
    run(|| async {
        let (a, b) = UnixStream::pair()?;
        let mut buf = [0u8; 16];
        assert_would_block(a.try_recv(&mut buf));
        let mut readable = pin!(a.readable());
        assert!(poll_once(readable.as_mut()).await.is_pending());
        b.writable().await?;
        assert_eq!(b.try_send(b"stream")?, 6);
        readable.await?;
        let n = a.try_recv(&mut buf)?;
        assert_eq!(&buf[..n], b"stream");

        let (c, d) = UnixDatagram::pair()?;
        assert_would_block(c.try_recv(&mut buf));
        let mut readable = pin!(c.readable());
        assert!(poll_once(readable.as_mut()).await.is_pending());
        d.try_send(b"datagram")?;
        readable.await?;
        let n = c.try_recv(&mut buf)?;
        assert_eq!(&buf[..n], b"datagram");
        io::Result::Ok(())
    })
    .unwrap();
}

/// One `recv(2)` of the caller's own on `fd` (what a `recvmsg` for
/// ancillary data would be), as a `try_io` closure's body.
fn own_recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length; `fd` is the open
    // descriptor of a socket the test holds.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One `send(2)` of the caller's own on `fd`, as a `try_io` closure's body.
fn own_send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length; `fd` is the open
    // descriptor of a socket the test holds.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Once the caller's own receive, run through `try_io`, has said
/// `WouldBlock`, `readable()` parks until data comes, on every socket type
/// (tokio's `try_io`: quinn-udp's `recvmsg`, a C library's read). (There
/// was no `try_io`: nothing recorded that the caller's own syscall found
/// nothing, so `readable()` completed at once for ever and the loop spun;
/// found by a review.)
#[test]
fn readable_waits_after_the_callers_own_receive_said_would_block() {
    /// `try_io` found `a` empty, then `readable()` parks until `send`
    /// (from `b`) has run, and the next `try_io` receives what it sent.
    async fn check<S: AsRawFd>(
        a: &S,
        readable: impl std::future::Future<Output = io::Result<()>>,
        try_io: impl Fn(&mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize>,
        send: impl FnOnce() -> io::Result<usize>,
    ) -> io::Result<()> {
        let fd = a.as_raw_fd();
        let mut buf = [0u8; 16];
        assert_would_block(try_io(&mut || own_recv(fd, &mut buf)));
        let mut readable = pin!(readable);
        assert!(poll_once(readable.as_mut()).await.is_pending());
        assert_eq!(send()?, 4);
        readable.await?;
        let n = try_io(&mut || own_recv(fd, &mut buf))?;
        assert_eq!(&buf[..n], b"data");
        Ok(())
    }
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        check(
            &ours,
            ours.readable(),
            |f| ours.try_io(Interest::READABLE, f),
            || peer.write(b"data"),
        )
        .await?;

        let (a, b) = UnixStream::pair()?;
        check(
            &a,
            a.readable(),
            |f| a.try_io(Interest::READABLE, f),
            || b.try_send(b"data"),
        )
        .await?;

        let a = UdpSocket::bind("127.0.0.1:0")?;
        let b = UdpSocket::bind("127.0.0.1:0")?;
        let to = a.local_addr()?;
        check(
            &a,
            a.readable(),
            |f| a.try_io(Interest::READABLE, f),
            || b.try_send_to(b"data", to),
        )
        .await?;

        let (a, b) = UnixDatagram::pair()?;
        check(
            &a,
            a.readable(),
            |f| a.try_io(Interest::READABLE, f),
            || b.try_send(b"data"),
        )
        .await?;
        io::Result::Ok(())
    })
    .unwrap();
}

/// Once the caller's own send, run through `try_io`, has found the send
/// buffer full, `writable()` parks until the peer makes room, and is woken
/// then (`try_io` armed write interest, as a send that finds the buffer
/// full does).
#[test]
fn writable_waits_after_the_callers_own_send_said_would_block() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let fd = ours.as_raw_fd();
        socket2::SockRef::from(&ours).set_send_buffer_size(64 * 1024)?;
        let chunk = [7u8; 64 * 1024];
        let mut sent = 0;
        loop {
            match ours.try_io(Interest::WRITABLE, || own_send(fd, &chunk)) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let mut writable = pin!(ours.writable());
        assert!(poll_once(writable.as_mut()).await.is_pending());
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            let mut read = 0;
            while read < sent {
                read += peer.read(&mut buf)?;
            }
            io::Result::Ok(peer)
        });
        cellio_runtime::timeout(Duration::from_secs(5), writable)
            .await
            .expect("writable() is woken when the peer makes room")?;
        reader.join().unwrap()?;
        assert!(ours.try_io(Interest::WRITABLE, || own_send(fd, b"more"))? > 0);
        io::Result::Ok(())
    })
    .unwrap();
}
