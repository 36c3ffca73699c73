//! `TcpIo`: a stream behind poll methods and the `futures-io` traits, which
//! keeps its cells reserved between operations. Echo through both paths,
//! the traits, large transfers, hang-ups, and giving the cells back.

mod util;

use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use cellio_net::{TcpIo, TcpStream};
use cellio_reactor::CellError;
use cellio_runtime::spawn_local;
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use util::{cellio_pair, drain_checking, join2, pattern, run, run_with, std_peer};

/// Echoes through `TcpIo` until the peer closes; returns the stream.
async fn echo(stream: TcpStream) -> io::Result<TcpStream> {
    // Two small replies in a row: without this the second waits for the
    // client's delayed ACK (Nagle).
    stream.set_nodelay(true)?;
    let mut io = TcpIo::new(stream);
    let mut buf = [0u8; 64];
    loop {
        let n = io.recv(&mut buf).await?;
        if n == 0 {
            return Ok(io.into_inner());
        }
        io.send_all(&buf[..n]).await?;
    }
}

#[test]
fn echoes_every_byte_through_both_the_parked_and_the_synchronous_path() {
    run(|| async {
        let (client, server) = cellio_pair().await?;
        client.set_nodelay(true)?;
        let task = spawn_local(echo(server));
        let rounds = 200;
        let mut out = [0u8; 128];
        let mut back = [0u8; 128];
        for round in 0..rounds {
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = pattern(round * 128 + i);
            }
            // One message: the server's receive parks, waiting for it.
            client.send_all(&out[..64]).await?;
            client.recv_exact(&mut back[..64]).await?;
            assert_eq!(out[..64], back[..64], "round {round}");
            // Two back to back: its 64-byte buffer takes one, and the
            // next receive finds the other already there.
            client.send_all(&out).await?;
            client.recv_exact(&mut back).await?;
            assert_eq!(out, back, "round {round}");
        }
        drop(client);
        let server = task.await.expect("echo task")?;
        let stats = server.stats();
        assert!(stats.recv_parked >= rounds as u64, "{stats:?}");
        assert!(stats.recv_sync >= rounds as u64, "{stats:?}");
        // Small sends never wait for room.
        assert_eq!(stats.send_parked, 0, "{stats:?}");
        assert!(stats.send_sync >= 3 * rounds as u64, "{stats:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn on_the_thread_whose_reactor_owns_the_stream_its_reservations_are_confined() {
    run(|| async {
        // `run` blocks on worker 0, whose reactor registered both streams.
        let (client, server) = cellio_pair().await?;
        let mut io = TcpIo::new(server);
        assert!(
            !io.is_confined(),
            "nothing is held before the first operation"
        );
        let mut buf = [0u8; 64];
        for round in 0..50 {
            let message = [pattern(round); 16];
            // Sent after the receive parks on every other round.
            let (got, sent) = if round % 2 == 0 {
                join2(io.recv(&mut buf), client.send_all(&message)).await
            } else {
                let sent = client.send_all(&message).await;
                (io.recv(&mut buf).await, sent)
            };
            sent?;
            assert_eq!(&buf[..got?], &message[..], "round {round}");
            assert!(io.is_confined(), "round {round}");
            io.send_all(&message).await?;
            let mut back = [0u8; 16];
            client.recv_exact(&mut back).await?;
            assert_eq!(back, message, "round {round}");
        }
        assert!(io.get_ref().stats().recv_parked > 0);
        // Given back, the cells serve the stream's own futures again.
        let server = io.into_inner();
        client.send_all(b"x").await?;
        let mut one = [0u8; 1];
        assert_eq!(server.recv(&mut one).await?, 1);
        server.send_all(b"y").await?;
        client.recv_exact(&mut one).await?;
        assert_eq!(&one, b"y");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_stream_of_another_threads_reactor_is_served_without_confinement() {
    run_with(cellio_runtime::Builder::new().workers(2), || async {
        // Both streams belong to worker 0's reactor; the server side is
        // served on worker 1, whose reactor does not own it.
        let (client, server) = cellio_pair().await?;
        let parked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let parked_seen = parked.clone();
        let served = cellio_runtime::spawn_on(1, async move {
            spawn_local(async move {
                let mut io = TcpIo::new(server);
                let mut buf = [0u8; 64];
                let mut confined = false;
                loop {
                    let n = io.recv(&mut buf).await?;
                    let stats = io.get_ref().stats();
                    parked.store(stats.recv_parked > 0, std::sync::atomic::Ordering::Relaxed);
                    if n == 0 {
                        return io::Result::Ok((confined, stats));
                    }
                    confined |= io.is_confined();
                    io.send_all(&buf[..n]).await?;
                }
            })
            .await
        });
        // 50 rounds back to back, then (a loaded machine can run worker 0's
        // next send between worker 1's echo and its next receive every
        // time: none parks) rounds that wait 10 ms before sending, until
        // worker 1 reports a receive that parked.
        for round in 0..250 {
            if round >= 50 {
                if parked_seen.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                cellio_runtime::time::sleep(Duration::from_millis(10)).await;
            }
            let message = [pattern(round); 16];
            client.send_all(&message).await?;
            let mut back = [0u8; 16];
            client.recv_exact(&mut back).await?;
            assert_eq!(back, message, "round {round}");
        }
        drop(client);
        let (confined, stats) = served.await.expect("task").expect("task")?;
        assert!(
            !confined,
            "confined on a thread that does not turn its reactor"
        );
        assert!(stats.recv_parked > 0, "{stats:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

/// The peer of the trait tests: reads "hello", answers "world", then
/// returns everything it read until our side shuts down.
fn hello_world_peer(mut peer: std::net::TcpStream) -> std::thread::JoinHandle<io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut got = [0u8; 5];
        peer.read_exact(&mut got)?;
        peer.write_all(b"world")?;
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest)?; // ends at our close / shutdown
        Ok([&got[..], &rest].concat())
    })
}

#[test]
fn futures_io_read_write_and_close() {
    run(|| async {
        let (ours, peer) = std_peer().await?;
        let mut io = TcpIo::from(ours);
        let peer_thread = hello_world_peer(peer);
        io.write_all(b"hello").await?;
        let mut reply = [0u8; 5];
        io.read_exact(&mut reply).await?;
        assert_eq!(&reply, b"world");
        io.write_all(b"!").await?;
        io.flush().await?;
        io.close().await?;
        assert_eq!(peer_thread.join().unwrap()?, b"hello!");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_large_transfer_waits_for_room_and_arrives_intact() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let total = 8 << 20;
        let reader = std::thread::spawn(move || drain_checking(&mut peer));
        let mut io = TcpIo::new(ours);
        let msg: Vec<u8> = (0..total).map(pattern).collect();
        io.send_all(&msg).await?;
        let ours = io.into_inner();
        ours.shutdown(Shutdown::Write)?;
        assert_eq!(reader.join().unwrap()?, total);
        // Far more than the socket buffers hold: sends had to park.
        assert!(ours.stats().send_parked > 0, "{:?}", ours.stats());
        io::Result::Ok(())
    })
    .unwrap();
}

/// A receive parks (the cell reserved and parked), then the peer's last
/// bytes and its FIN arrive together. With `reactor_first`, the reactor is
/// given time to record the hang-up before the data is read. Either way the
/// short read that takes the data must not let the next receive park (no
/// event follows a hang-up): both receives after it read end of stream.
async fn last_words_then_end_of_stream(reactor_first: bool) -> io::Result<()> {
    let (ours, mut peer) = std_peer().await?;
    let mut io = TcpIo::new(ours);
    let mut buf = [0u8; 64];
    {
        let mut pending = pin!(io.recv(&mut buf));
        assert!(poll_fn(|cx| Poll::Ready(pending.as_mut().poll(cx)))
            .await
            .is_pending());
    }
    peer.write_all(b"last words")?;
    peer.shutdown(Shutdown::Write)?;
    util::wait_read_closed(io.get_ref());
    if reactor_first {
        cellio_runtime::sleep(Duration::from_millis(50)).await;
    }
    let n = io.recv(&mut buf).await?;
    assert_eq!(&buf[..n], b"last words");
    assert_eq!(io.recv(&mut buf).await?, 0, "end of stream");
    assert_eq!(io.recv(&mut buf).await?, 0, "and again");
    Ok(())
}

#[test]
fn data_then_end_of_stream_in_one_event_reads_both_without_hanging() {
    run(|| last_words_then_end_of_stream(false)).unwrap();
}

/// The reactor has recorded the hang-up when the data is read: the short
/// read then proves nothing, so it must not park the next receive early
/// (this hangs if `HeldCell` ignores the hang-up).
#[test]
fn a_short_read_after_a_recorded_hangup_does_not_park_the_next_receive() {
    run(|| last_words_then_end_of_stream(true)).unwrap();
}

#[test]
fn empty_buffers_complete_at_once_even_after_a_draining_receive() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut io = TcpIo::new(ours);
        peer.write_all(b"abc")?;
        let mut buf = [0u8; 16];
        assert_eq!(io.recv(&mut buf).await?, 3); // short: parks early
        assert_eq!(io.recv(&mut []).await?, 0);
        io.send_all(&[]).await?;
        assert_eq!(poll_fn(|cx| io.poll_send(cx, &[])).await?, 0);
        io::Result::Ok(())
    })
    .unwrap();
}

/// A peer's urgent byte ends a receive short with data queued behind it:
/// the short read must not park the next receive early. (It used to: that
/// receive waited for another event; found by a review.)
#[test]
fn a_peers_urgent_byte_does_not_hang_the_next_receive() {
    run(|| async {
        let (ours, peer) = std_peer().await?;
        let mut io = TcpIo::new(ours);
        assert!(util::send_around_an_urgent_byte(&peer)?);
        // Let the reactor see the arrivals before the receives.
        cellio_runtime::time::sleep(Duration::from_millis(50)).await;
        let mut buf = [0u8; 64];
        let n = io.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"abc", "a receive stops at the urgent mark");
        let n = cellio_runtime::time::timeout(Duration::from_secs(2), io.recv(&mut buf))
            .await
            .expect("the bytes after the urgent one are queued: the receive must not wait")?;
        assert_eq!(&buf[..n], b"def");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_held_direction_makes_the_streams_futures_busy_until_into_inner() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut io = TcpIo::new(ours);
        let mut buf = [0u8; 16];
        // A receive parks and is abandoned: the cell stays reserved.
        {
            let mut pending = pin!(io.recv(&mut buf));
            assert!(poll_fn(|cx| Poll::Ready(pending.as_mut().poll(cx)))
                .await
                .is_pending());
        }
        let err = io
            .get_ref()
            .recv(&mut buf)
            .await
            .expect_err("the receive cell is held");
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
        assert_eq!(CellError::of(&err), Some(CellError::Busy));
        // The send direction was never used: still free for the futures.
        io.get_ref().send_all(b"free").await?;

        // Given back, the stream receives what arrived meanwhile: nothing
        // was lost by the abandoned receive.
        peer.write_all(b"kept")?;
        let ours = io.into_inner();
        let mut got = [0u8; 4];
        ours.recv_exact(&mut got).await?;
        assert_eq!(&got, b"kept");
        let mut echo = [0u8; 4];
        peer.read_exact(&mut echo)?;
        assert_eq!(&echo, b"free");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_send_and_a_receive_run_at_once_from_one_task() {
    run(|| async {
        let (a, b) = cellio_pair().await?;
        let (mut a, mut b) = (TcpIo::new(a), TcpIo::new(b));
        let msg: Vec<u8> = (0..1_000_000).map(pattern).collect();
        let mut got = vec![0u8; msg.len()];
        let (sent, received) = join2(a.send_all(&msg), async {
            let mut filled = 0;
            while filled < got.len() {
                match b.recv(&mut got[filled..]).await? {
                    0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                    n => filled += n,
                }
            }
            io::Result::Ok(())
        })
        .await;
        sent?;
        received?;
        assert!(got == msg, "a million bytes through TcpIo differ");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_reset_peer_is_an_error_not_a_hang() {
    run(|| async {
        let (ours, peer) = std_peer().await?;
        let mut io = TcpIo::new(ours);
        // SO_LINGER 0: close sends a reset.
        socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO))?;
        drop(peer);
        util::wait_read_closed(io.get_ref());
        let mut buf = [0u8; 16];
        let err = io.recv(&mut buf).await.expect_err("the peer reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

/// Closing the sending side of a connection the peer reset is done, not
/// `NotConnected` (Linux's `ENOTCONN` to the `shutdown`), as with tokio's
/// streams: the reset is the next receive's error, after the bytes that
/// came before it. (`copy_bidirectional` closes a side when the other
/// ends: an error there ended the copy before it read those bytes.)
#[test]
fn closing_a_connection_the_peer_reset_is_done_and_its_bytes_still_arrive() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut io = TcpIo::new(ours);
        peer.write_all(b"last words")?;
        // SO_LINGER 0: close sends a reset.
        socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO))?;
        drop(peer);
        util::wait_read_closed(io.get_ref());
        io.close().await?;
        #[cfg(feature = "tokio-io")]
        tokio::io::AsyncWriteExt::shutdown(&mut io).await?;
        let mut buf = [0u8; 16];
        let n = io.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"last words");
        let err = io.recv(&mut buf).await.expect_err("the peer reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

/// A writer that never reads: it sends a response, and the peer closes
/// without reading it (a reset). Nothing is queued to read, so no receive
/// would report the reset: closing the sending side does, with
/// `ConnectionReset` (Linux's `ENOTCONN` to the `shutdown`, the reset
/// taken from `SO_ERROR`). (Before, `close` said `Ok` and the reset stayed
/// unread.)
#[test]
fn closing_after_the_peer_reset_an_unread_response_reports_the_reset() {
    run(|| async {
        let (ours, peer) = std_peer().await?;
        let mut io = TcpIo::new(ours);
        io.write_all(b"response").await?;
        let mut first = [0u8; 1];
        peer.peek(&mut first)?;
        // The response arrived, unread: the peer's close sends a reset.
        drop(peer);
        util::wait_read_closed(io.get_ref());
        let err = io.close().await.expect_err("the peer reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
        // The error is taken: closing again is done.
        io.close().await?;
        io::Result::Ok(())
    })
    .unwrap();
}

/// The scenario of the two tests below: the peer sends "hi" and
/// half-closes, then closes with our "response" unread (a reset after its
/// FIN); once the reset has arrived (`POLLERR`, seen without turning the
/// reactor), we close our sending side, which is done while "hi" waits.
async fn closed_after_the_peers_end_and_reset() -> io::Result<TcpIo> {
    let (ours, mut peer) = std_peer().await?;
    let mut io = TcpIo::new(ours);
    peer.write_all(b"hi")?;
    peer.shutdown(std::net::Shutdown::Write)?;
    util::wait_read_closed(io.get_ref());
    io.write_all(b"response").await?;
    let mut first = [0u8; 1];
    peer.peek(&mut first)?;
    drop(peer); // "response" unread: a reset
    util::wait_polled(io.get_ref(), libc::POLLERR);
    io.close().await?;
    Ok(io)
}

/// The peer sends "hi" and half-closes, then closes with our response
/// unread: a reset after its FIN (`EPIPE` in `CLOSE_WAIT`), which Linux's
/// receive never reports (after "hi" it says a clean end). `close` is done
/// while "hi" waits, and takes the reset for the reads: they deliver "hi",
/// then `ConnectionReset`. (Before, the close left the error in
/// `SO_ERROR`, and the reads said "hi" and a clean end: the lost response
/// was reported nowhere.)
#[test]
fn closing_after_the_peers_end_and_reset_leaves_the_reset_to_the_read() {
    run(|| async {
        let mut io = closed_after_the_peers_end_and_reset().await?;
        let mut got = Vec::new();
        let read = io.read_to_end(&mut got).await.map_err(|e| e.kind());
        assert_eq!(got, b"hi");
        assert_eq!(read, Err(io::ErrorKind::ConnectionReset));
        io::Result::Ok(())
    })
    .unwrap();
}

#[cfg(feature = "tokio-io")]
#[test]
fn tokio_io_read_write_and_shutdown() {
    // Fully qualified: futures' extension traits are in scope too.
    use tokio::io::{AsyncReadExt as TokioRead, AsyncWriteExt as TokioWrite};

    run(|| async {
        let (ours, peer) = std_peer().await?;
        let mut io = TcpIo::new(ours);
        let peer_thread = hello_world_peer(peer);
        TokioWrite::write_all(&mut io, b"hello").await?;
        let mut reply = [0u8; 5];
        TokioRead::read_exact(&mut io, &mut reply).await?;
        assert_eq!(&reply, b"world");
        TokioWrite::write_all(&mut io, b"!").await?;
        TokioWrite::shutdown(&mut io).await?;
        assert_eq!(peer_thread.join().unwrap()?, b"hello!");
        // A read into a tokio ReadBuf after the peer closed: end of stream.
        let mut rest = Vec::new();
        assert_eq!(TokioRead::read_to_end(&mut io, &mut rest).await?, 0);
        io::Result::Ok(())
    })
    .unwrap();
}

/// tokio's read into a fresh `ReadBuf` over memory never initialized (as
/// hyper-util's `TokioIo` hands one at every read): the bytes land in it,
/// exactly as many are marked filled and initialized, and nothing beyond
/// them is touched.
#[cfg(feature = "tokio-io")]
#[test]
fn tokio_read_into_uninitialized_memory_fills_exactly_what_came() {
    use std::future::poll_fn;
    use std::mem::MaybeUninit;
    use std::pin::Pin;
    use tokio::io::{AsyncRead, ReadBuf};

    run(|| async {
        let (client, server) = cellio_pair().await?;
        let mut io = TcpIo::new(server);
        client.send_all(b"hello, uninit").await?;
        let mut memory = [MaybeUninit::<u8>::uninit(); 64];
        let mut buf = ReadBuf::uninit(&mut memory);
        poll_fn(|cx| Pin::new(&mut io).poll_read(cx, &mut buf)).await?;
        assert_eq!(buf.filled(), b"hello, uninit");
        assert_eq!(
            buf.initialized().len(),
            13,
            "initialized: what came, no more"
        );
        assert_eq!(buf.remaining(), 64 - 13);
        // A second read appends after the first.
        client.send_all(b"!").await?;
        poll_fn(|cx| Pin::new(&mut io).poll_read(cx, &mut buf)).await?;
        assert_eq!(buf.filled(), b"hello, uninit!");
        io::Result::Ok(())
    })
    .unwrap();
}

/// `peek` waits for data, copies it without taking it (the next receive
/// gets the same bytes), and reads 0 at the end of the stream; the
/// receiving half of a split peeks the same way.
#[test]
fn peek_waits_copies_and_leaves_the_bytes_queued() {
    run(|| async {
        let (client, server) = cellio_pair().await?;
        let mut io = TcpIo::new(server);
        let writer = spawn_local(async move {
            // After the peek has parked on an empty socket.
            cellio_runtime::yield_now().await;
            client.send_all(b"HELLO").await?;
            io::Result::Ok(client)
        });
        let mut first = [0u8; 2];
        assert_eq!(io.peek(&mut first).await?, 2);
        assert_eq!(&first, b"HE");
        let (mut half, _send) = TcpIo::split(&mut io);
        let mut again = [0u8; 8];
        let n = half.recv_peeked(&mut again).await?;
        assert_eq!(&again[..n], b"HELLO");
        let mut all = [0u8; 8];
        let n = half.recv(&mut all).await?;
        assert_eq!(&all[..n], b"HELLO", "the peeks took nothing");
        let client = writer.await.unwrap()?;
        client.shutdown(Shutdown::Write)?;
        assert_eq!(io.peek(&mut all).await?, 0);
        io::Result::Ok(())
    })
    .unwrap();
}

trait RecvPeeked {
    /// A peek through `poll_peek` that waits until all five bytes are
    /// there (TCP may deliver them in parts).
    fn recv_peeked<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + 'a;
}

impl RecvPeeked for cellio_net::tcp::RecvHalf<'_> {
    fn recv_peeked<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        poll_fn(move |cx| match self.poll_peek(cx, buf) {
            Poll::Ready(Ok(n)) if n < 5 => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        })
    }
}

/// As the test above, but a zero-length `try_recv` (a probe;
/// `recv(&mut []).await` is `Ok(0)` without a syscall) comes before the
/// reads: the kernel's 0 for an empty buffer is not the end of the stream,
/// so it must not take the kept reset while "hi" is still queued (it did:
/// the probe said `ConnectionReset` and the reads a clean end; found by a
/// review).
#[test]
fn a_zero_length_try_recv_does_not_take_the_kept_reset() {
    run(|| async {
        let mut io = closed_after_the_peers_end_and_reset().await?;
        assert_eq!(
            io.get_ref().recv(&mut []).await?,
            0,
            "the future's shortcut"
        );
        let probe = io.get_ref().try_recv(&mut []).map_err(|e| e.kind());
        let mut got = Vec::new();
        let read = io.read_to_end(&mut got).await.map_err(|e| e.kind());
        assert_eq!(got, b"hi");
        assert_eq!(
            (probe, read),
            (Ok(0), Err(io::ErrorKind::ConnectionReset)),
            "(zero-length try_recv, read_to_end)"
        );
        io::Result::Ok(())
    })
    .unwrap();
}
