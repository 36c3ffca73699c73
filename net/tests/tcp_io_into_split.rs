//! `TcpIo::into_split`: owned halves in two tasks of their own (tokio's
//! `into_split`), every byte through intact both ways; `reunite` gives the
//! `TcpIo` back and refuses halves of two streams; dropping a half gives
//! its direction back to the stream's futures, and dropping the send half
//! shuts down the sending side (as tokio's does) unless it is reunited or
//! forgotten; the `AsyncRead` and `AsyncWrite` traits, tokio's with the
//! `tokio-io` feature; Unix streams.

mod util;

use std::io::{self, ErrorKind};
use std::net::Shutdown;

use cellio_net::stream::{OwnedRecvHalf, OwnedSendHalf, StreamIo, StreamSocket};
use cellio_net::unix::{UnixIo, UnixStream};
use cellio_net::TcpIo;
use cellio_runtime::spawn_local;
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use util::{cellio_pair, pattern, read_checking, run, std_peer, wait_buffered};

/// Bytes sent: far more than the socket buffers hold, so the sender and
/// the receiver must run at once.
const TOTAL: usize = 2 << 20;

#[test]
fn halves_in_two_tasks_move_every_byte_and_reunite() {
    run(|| async {
        let (client, server) = cellio_pair().await?;
        let (mut client_rx, mut client_tx) = TcpIo::new(client).into_split();
        let (mut server_rx, mut server_tx) = TcpIo::new(server).into_split();
        // The server's task echoes through its two halves; the client
        // sends from this task and checks the echo in another.
        let echo = spawn_local(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match server_rx.recv(&mut buf).await? {
                    0 => break,
                    n => server_tx.send_all(&buf[..n]).await?,
                }
            }
            server_tx.get_ref().shutdown(Shutdown::Write)?;
            io::Result::Ok((server_rx, server_tx))
        });
        let checker = spawn_local(async move {
            let got = read_checking(&mut client_rx).await?;
            io::Result::Ok((client_rx, got))
        });
        let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
        client_tx.send_all(&data).await?;
        client_tx.get_ref().shutdown(Shutdown::Write)?;
        let (client_rx, got) = checker.await.unwrap()?;
        assert_eq!(got, TOTAL);
        let (server_rx, server_tx) = echo.await.unwrap()?;

        // Back together, the TcpIo goes on.
        let mut client = client_rx.reunite(client_tx).unwrap();
        let mut server = server_tx.reunite(server_rx).unwrap();
        assert_eq!(client.recv(&mut [0u8; 8]).await?, 0, "end of stream stays");
        assert_eq!(server.recv(&mut [0u8; 8]).await?, 0);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn halves_of_two_streams_do_not_reunite() {
    run(|| async {
        let (a, b) = cellio_pair().await?;
        let (a_rx, a_tx) = TcpIo::new(a).into_split();
        let (b_rx, b_tx) = TcpIo::new(b).into_split();
        let error = a_rx.reunite(b_tx).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the two halves were not split from the same stream"
        );
        let cellio_net::stream::ReuniteError(a_rx, b_tx) = error;
        assert!(a_rx.reunite(a_tx).is_ok());
        assert!(b_rx.reunite(b_tx).is_ok());
        io::Result::Ok(())
    })
    .unwrap();
}

/// A half holds its direction's cell (the stream's futures that way get
/// `ResourceBusy`) until it is dropped.
#[test]
fn a_dropped_half_gives_its_direction_back() {
    run(|| async {
        let (a, b) = cellio_pair().await?;
        let (mut rx, tx) = TcpIo::new(a).into_split();
        b.send(b"one").await?;
        let mut buf = [0u8; 8];
        assert_eq!(rx.recv(&mut buf).await?, 3);
        let busy = tx.get_ref().recv(&mut buf).await.unwrap_err();
        assert_eq!(busy.kind(), ErrorKind::ResourceBusy, "{busy}");
        drop(rx);
        b.send(b"two").await?;
        assert_eq!(tx.get_ref().recv(&mut buf).await?, 3);
        assert_eq!(&buf[..3], b"two");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn the_halves_read_and_write_through_the_futures_io_traits() {
    run(|| async {
        let (a, b) = cellio_pair().await?;
        let (mut a_rx, mut a_tx) = TcpIo::new(a).into_split();
        let (mut b_rx, mut b_tx) = TcpIo::new(b).into_split();
        a_tx.write_all(b"ping").await?;
        a_tx.close().await?; // shuts down a's sending side
        let mut got = Vec::new();
        b_rx.read_to_end(&mut got).await?;
        assert_eq!(got, b"ping");
        b_tx.write_all(b"pong").await?;
        let mut reply = [0u8; 4];
        a_rx.read_exact(&mut reply).await?;
        assert_eq!(&reply, b"pong");
        io::Result::Ok(())
    })
    .unwrap();
}

/// The peer sends part of a response and resets. The reading half reads
/// what came; the writing half closes, which takes the reset (Linux's
/// `ENOTCONN` to the shutdown, the error read from `SO_ERROR`, which
/// clears it). The reading half's next read must still say
/// `ConnectionReset`, not a clean end that makes the cut-off response look
/// complete: the stream keeps the error the close took for it.
#[test]
fn a_reset_taken_by_the_writing_halfs_close_is_still_the_reading_halfs_error() {
    run(|| async {
        let (ours, mut peer) = util::std_peer().await?;
        let (mut rx, mut tx) = TcpIo::new(ours).into_split();
        std::io::Write::write_all(&mut peer, b"partial")?;
        // SO_LINGER 0: close sends a reset after the bytes.
        socket2::SockRef::from(&peer).set_linger(Some(std::time::Duration::ZERO))?;
        drop(peer);
        let mut got = [0u8; 7];
        rx.read_exact(&mut got).await?;
        util::wait_read_closed(tx.get_ref());
        let closed = tx.close().await.map_err(|e| e.kind());
        assert_eq!(
            closed,
            Err(ErrorKind::ConnectionReset),
            "the writer's close"
        );
        let mut more = [0u8; 16];
        let read = rx.read(&mut more).await.map_err(|e| e.kind());
        assert_eq!(
            read,
            Err(ErrorKind::ConnectionReset),
            "the reader after the close"
        );
        // Reported once, as the kernel reports an error: then the end.
        assert_eq!(rx.read(&mut more).await?, 0);
        io::Result::Ok(())
    })
    .unwrap();
}

#[cfg(feature = "tokio-io")]
#[test]
fn the_halves_read_and_write_through_tokios_traits() {
    run(|| async {
        let (a, b) = cellio_pair().await?;
        let (_, mut a_tx) = TcpIo::new(a).into_split();
        let (mut b_rx, _) = TcpIo::new(b).into_split();
        tokio::io::AsyncWriteExt::write_all(&mut a_tx, b"tokio").await?;
        tokio::io::AsyncWriteExt::shutdown(&mut a_tx).await?;
        let mut got = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut b_rx, &mut got).await?;
        assert_eq!(got, "tokio");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn unix_streams_split_too() {
    run(|| async {
        let (a, b) = UnixStream::pair()?;
        let (mut a_rx, mut a_tx) = UnixIo::new(a).into_split();
        let echo = spawn_local(async move {
            let mut buf = [0u8; 64];
            let n = a_rx.recv(&mut buf).await?;
            a_tx.send_all(&buf[..n]).await?;
            io::Result::Ok(a_rx.reunite(a_tx).is_ok())
        });
        b.send_all(b"unix").await?;
        let mut buf = [0u8; 4];
        b.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"unix");
        assert!(echo.await.unwrap()?);
        io::Result::Ok(())
    })
    .unwrap();
}

/// A request-reply client written as with tokio: a writer task sends the
/// request and ends, dropping its half; the peer reads to the end of the
/// stream, answers, and the receive half, still alive, reads the answer.
async fn writer_task_ends_and_the_reply_comes_back<S: StreamSocket + 'static, P: StreamSocket>(
    (mut rx, mut tx): (OwnedRecvHalf<S>, OwnedSendHalf<S>),
    mut peer: StreamIo<P>,
) -> io::Result<()> {
    let writer = spawn_local(async move { tx.write_all(b"request").await });
    writer.await.unwrap()?;
    let mut request = Vec::new();
    peer.read_to_end(&mut request).await?; // hangs unless the drop shut down
    assert_eq!(request, b"request");
    peer.write_all(b"reply").await?;
    peer.close().await?;
    let mut reply = Vec::new();
    rx.read_to_end(&mut reply).await?;
    assert_eq!(reply, b"reply");
    Ok(())
}

#[test]
fn dropping_the_send_half_shuts_down_the_sending_side() {
    run(|| async {
        let (a, b) = cellio_pair().await?;
        writer_task_ends_and_the_reply_comes_back(TcpIo::new(a).into_split(), TcpIo::new(b))
            .await?;
        let (a, b) = UnixStream::pair()?;
        writer_task_ends_and_the_reply_comes_back(UnixIo::new(a).into_split(), UnixIo::new(b)).await
    })
    .unwrap();
}

/// The receive half dropped first with a request unread, then the send
/// half after its answer: the peer reads the answer and then a clean end,
/// as with tokio's halves. (The send half held the last reference, and
/// its drop skipped the shutdown: the close of a socket with unread bytes
/// sends only a reset, which the peer read after the answer.)
#[test]
fn the_send_half_dropped_last_with_bytes_unread_ends_the_stream_cleanly() {
    run(|| async {
        use std::io::{Read, Write};
        let (ours, mut peer) = std_peer().await?;
        peer.write_all(b"request that nobody reads")?;
        wait_buffered(&ours, 25);
        let (rx, mut tx) = TcpIo::new(ours).into_split();
        drop(rx);
        tx.write_all(b"answer").await?;
        drop(tx);
        let mut got = Vec::new();
        let end = peer.read_to_end(&mut got); // FIN or RST: no wait
        assert_eq!(got, b"answer");
        assert!(end.is_ok(), "the peer read the answer, then {end:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

/// Reunited, or forgotten, the send half shuts nothing down: the stream
/// sends on, and the peer reads what it sends after.
#[test]
fn a_reunited_or_forgotten_send_half_does_not_shut_down() {
    run(|| async {
        let (a, b) = UnixStream::pair()?;
        let (rx, tx) = UnixIo::new(a).into_split();
        let mut io = rx.reunite(tx).unwrap();
        io.send_all(b"after reunite").await?;
        let mut buf = [0u8; 13];
        b.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"after reunite");

        let (rx, tx) = io.into_split();
        tx.forget();
        rx.get_ref().send_all(b"after forget").await?;
        let mut buf = [0u8; 12];
        b.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"after forget");

        let (a, b) = cellio_pair().await?;
        let (rx, tx) = TcpIo::new(a).into_split();
        tx.forget();
        rx.get_ref().send_all(b"tcp").await?;
        let mut buf = [0u8; 3];
        b.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"tcp");
        io::Result::Ok(())
    })
    .unwrap();
}
