//! `UnixDatagramIo`: a `UnixDatagram` one task drives alone, as `UdpIo`
//! is for UDP: an echo through a path with the cells held and confined, a
//! parked receive, a send that waits for a full peer (and one given up
//! there, waiting out a delay or parked, which holds back no send
//! elsewhere), the socket's own
//! futures refused while a direction is held, `into_inner`, and a path
//! with a NUL byte refused.

mod util;

use std::future::poll_fn;
use std::io;
use std::pin::pin;
use std::task::Poll;

use cellio_net::unix::{SendBatch, UnixDatagram, UnixDatagramIo};
use cellio_reactor::CellError;
use util::{fill_datagram_queue, join2, poll_once, recv_numbered, run, SocketDir};

#[test]
fn an_echo_through_a_path_holds_and_confines_the_cells() {
    let dir = SocketDir::new();
    let (server_path, client_path) = (dir.path("server.sock"), dir.path("client.sock"));
    run(move || async move {
        let mut server = UnixDatagramIo::new(UnixDatagram::bind(&server_path)?);
        let client = UnixDatagram::bind(&client_path)?;
        assert!(!server.is_confined(), "nothing reserved yet");
        let mut buf = [0u8; 64];
        for round in 0..50u8 {
            let msg = [round; 33];
            // The client sends after the server's receive parks, in odd
            // rounds; before it, in even ones.
            let (n, from) = if round % 2 == 0 {
                client.send_to(&msg, &server_path).await?;
                server.recv_from(&mut buf).await?
            } else {
                let mut recv = pin!(server.recv_from(&mut buf));
                assert!(poll_once(recv.as_mut()).await.is_pending());
                client.send_to(&msg, &server_path).await?;
                recv.await?
            };
            assert_eq!(from.as_pathname(), Some(client_path.as_path()));
            let reply = buf;
            server
                .send_to(&reply[..n], from.as_pathname().unwrap())
                .await?;
            let mut back = [0u8; 64];
            let m = client.recv(&mut back).await?;
            assert_eq!(back[..m], msg[..], "round {round}");
        }
        assert!(server.is_confined());
        let stats = server.get_ref().stats();
        assert_eq!(stats.recv_parked, 25, "{stats:?}");
        assert_eq!(stats.recv_sync, 25, "{stats:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_held_direction_refuses_the_sockets_own_futures_until_into_inner() {
    run(|| async {
        let (a, b) = UnixDatagram::pair()?;
        let mut io = UnixDatagramIo::new(b);
        let mut buf = [0u8; 8];
        assert!(poll_fn(|cx| Poll::Ready(io.poll_recv(cx, &mut buf)))
            .await
            .is_pending());
        let err = io.get_ref().recv(&mut buf).await.unwrap_err();
        assert_eq!(CellError::of(&err), Some(CellError::Busy), "{err:?}");
        a.send(b"kept").await?;
        let b = io.into_inner(); // the parked receive is abandoned, nothing lost
        let n = b.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"kept");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_send_to_a_full_peer_waits_and_nothing_is_lost() {
    run(|| async {
        let (a, b) = UnixDatagram::pair()?;
        let sent = fill_datagram_queue(&a)?;
        let mut a = UnixDatagramIo::new(a);
        let next = sent.to_le_bytes();
        let (sent_late, received) = join2(a.send(&next), recv_numbered(&b, sent)).await;
        assert_eq!(sent_late?, 4);
        received?;
        assert_eq!(a.get_ref().stats().send_parked, 1);
        io::Result::Ok(())
    })
    .unwrap();
}

/// A send to a full peer given up while it waited out its retry delay
/// leaves no delay behind for a send to another peer: that one goes at the
/// first poll. (The delay belonged to the Io, whatever the destination, and
/// the next send anywhere waited out what was left of it, up to 50 ms;
/// found by a review.)
#[test]
fn a_given_up_send_to_a_full_peer_does_not_delay_a_send_elsewhere() {
    let dir = SocketDir::new();
    let (full_path, free_path) = (dir.path("full.sock"), dir.path("free.sock"));
    run(move || async move {
        let full = UnixDatagram::bind(&full_path)?;
        let free = UnixDatagram::bind(&free_path)?;
        let filler = UnixDatagram::unbound()?;
        filler.connect(&full_path)?;
        fill_datagram_queue(&filler)?;
        let mut io = UnixDatagramIo::new(UnixDatagram::unbound()?);
        // Attempts at the full peer, each after the last one's delay
        // (1, 2, 4, ... ms), until a delay of 32 ms or more is under way;
        // then the caller gives that datagram up.
        for round in 0..7 {
            if round > 0 {
                cellio_runtime::time::sleep(std::time::Duration::from_millis(60)).await;
            }
            let polled = poll_fn(|cx| Poll::Ready(io.poll_send_to(cx, b"late", &full_path))).await;
            assert!(polled.is_pending(), "round {round}: {polled:?}");
        }
        let now = poll_fn(|cx| Poll::Ready(io.poll_send_to(cx, b"now", &free_path))).await;
        assert!(
            matches!(now, Poll::Ready(Ok(3))),
            "a send to a peer with room, after the given-up one: {now:?}"
        );
        let mut buf = [0u8; 8];
        assert_eq!(free.try_recv(&mut buf)?, 3);
        drop(full);
        io::Result::Ok(())
    })
    .unwrap();
}

/// A send to the connected peer that found its queue full parks the held
/// send cell (that peer's room raises an event); given up, it must not
/// keep a send by address to another peer, which has room, asleep: that
/// one goes at its first poll, and so does the next. (The held cell
/// stayed parked and every later send kept sleeping on it, until the full
/// peer read; found by a review.) A send to the full peer again still
/// waits, and goes once that peer reads.
#[test]
fn a_given_up_connected_send_does_not_hold_back_a_send_elsewhere() {
    let dir = SocketDir::new();
    let (full_path, free_path) = (dir.path("full.sock"), dir.path("free.sock"));
    run(move || async move {
        let full = UnixDatagram::bind(&full_path)?;
        let free = UnixDatagram::bind(&free_path)?;
        let client = UnixDatagram::unbound()?;
        client.connect(&full_path)?;
        let queued = fill_datagram_queue(&client)?;
        let mut io = UnixDatagramIo::new(client);
        let late = poll_fn(|cx| Poll::Ready(io.poll_send(cx, b"late"))).await;
        assert!(late.is_pending(), "the connected peer is full: {late:?}");
        // "late" is given up.
        let now = poll_fn(|cx| Poll::Ready(io.poll_send_to(cx, b"now", &free_path))).await;
        assert!(
            matches!(now, Poll::Ready(Ok(3))),
            "a send to a peer with room, after the given-up one: {now:?}"
        );
        assert_eq!(io.send_to(b"next", &free_path).await?, 4);
        let mut buf = [0u8; 8];
        assert_eq!(free.try_recv(&mut buf)?, 3);
        assert_eq!(free.try_recv(&mut buf)?, 4);
        // The full peer is still full; it reads, and the send goes.
        let number = queued.to_le_bytes();
        let (sent, received) = join2(io.send(&number), recv_numbered(&full, queued)).await;
        assert_eq!(sent?, 4);
        received?;
        io::Result::Ok(())
    })
    .unwrap();
}

/// A `send_many` to the connected peer, whose queue is full, parks and is
/// given up; the application drops the stuck datagram (`clear`, or
/// `skip_next`) and queues one to another peer, which has room, in the
/// same batch. That send goes at its first poll. (The wait was keyed by
/// the batch, not its next datagram's destination, so the refilled batch
/// kept sleeping on the full peer's wait; found by a review.)
#[test]
fn a_batch_refilled_for_another_peer_after_a_given_up_send_goes_at_once() {
    use std::os::unix::net::SocketAddr;
    let dir = SocketDir::new();
    let (full_path, free_path) = (dir.path("full.sock"), dir.path("free.sock"));
    for skip in [false, true] {
        let (full_path, free_path) = (full_path.clone(), free_path.clone());
        let _ = std::fs::remove_file(&full_path);
        let _ = std::fs::remove_file(&free_path);
        run(move || async move {
            let _full = UnixDatagram::bind(&full_path)?;
            let free = UnixDatagram::bind(&free_path)?;
            let client = UnixDatagram::unbound()?;
            client.connect(&full_path)?;
            fill_datagram_queue(&client)?;
            let mut io = UnixDatagramIo::new(client);
            let mut batch = SendBatch::new();
            batch.push(b"late", SocketAddr::from_pathname(&full_path)?)?;
            let late = poll_fn(|cx| Poll::Ready(io.poll_send_many(cx, &mut batch))).await;
            assert!(late.is_pending(), "the connected peer is full: {late:?}");
            // Given up: the stuck datagram goes, one for `free` comes.
            if skip {
                assert!(batch.skip_next());
            } else {
                batch.clear();
            }
            batch.push(b"now", SocketAddr::from_pathname(&free_path)?)?;
            let now = poll_fn(|cx| Poll::Ready(io.poll_send_many(cx, &mut batch))).await;
            assert!(
                matches!(now, Poll::Ready(Ok(()))),
                "skip {skip}: a send to a peer with room: {now:?}"
            );
            let mut buf = [0u8; 8];
            assert_eq!(free.try_recv(&mut buf)?, 3);
            io::Result::Ok(())
        })
        .unwrap();
    }
}

/// `send_to` a path with a NUL byte is refused with `InvalidInput`, as
/// `UnixDatagram::send_to` refuses it: the kernel would read the path up
/// to the NUL and send to the socket there. (It was sent there; found by a
/// review.)
#[test]
fn send_to_a_path_with_a_nul_byte_is_refused_not_sent_to_another_socket() {
    use std::os::unix::ffi::OsStrExt;
    let dir = SocketDir::new();
    let a = dir.path("a");
    let mut with_nul = a.clone().into_os_string();
    with_nul.push(std::ffi::OsStr::from_bytes(b"\0b"));
    run(move || async move {
        let server = UnixDatagram::bind(&a)?;
        let mut io = UnixDatagramIo::new(UnixDatagram::unbound()?);
        let sent = io.send_to(b"future", &with_nul).await;
        assert!(
            matches!(&sent, Err(e) if e.kind() == io::ErrorKind::InvalidInput),
            "{sent:?}"
        );
        let polled =
            poll_fn(|cx| Poll::Ready(io.poll_send_to(cx, b"poll", with_nul.as_ref()))).await;
        assert!(
            matches!(&polled, Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::InvalidInput),
            "{polled:?}"
        );
        assert_eq!(
            server.try_recv(&mut [0u8; 16]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        io::Result::Ok(())
    })
    .unwrap();
}
