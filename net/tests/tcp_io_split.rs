//! `TcpIo::split`: one task receiving and sending at the same time through
//! the two halves, a proxy copying both ways with `futures-io`'s `copy`,
//! and what is left with the `TcpIo` when the halves are gone.

mod util;

use std::io::{self, Read, Write};
use std::net::Shutdown;

use cellio_net::{TcpIo, TcpStream};
use cellio_reactor::CellError;
use cellio_runtime::{spawn_local, JoinHandle};
use futures_util::io::AsyncWriteExt;
use util::{cellio_pair, join2, pattern, read_checking, run, std_peer};

/// Bytes moved both ways: far more than the fixed 64 KiB buffers below
/// hold, so a sender that does not receive meanwhile would wait forever.
const TOTAL: usize = 4 << 20;

/// Echoes with `TcpIo` until the peer closes, with small fixed buffers.
async fn echo_io(stream: TcpStream) -> io::Result<()> {
    let mut io = TcpIo::new(stream);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match io.recv(&mut buf).await? {
            0 => return io.get_ref().shutdown(Shutdown::Write),
            n => io.send_all(&buf[..n]).await?,
        }
    }
}

/// Fixes `stream`'s kernel buffers at 64 KiB each way (loopback
/// autotuning could otherwise let megabytes through without waiting).
fn small_buffers(stream: &TcpStream) -> io::Result<()> {
    stream.set_send_buffer_size(64 * 1024)?;
    stream.set_recv_buffer_size(64 * 1024)
}

/// A client `TcpIo` whose peer echoes it through small buffers (the echo
/// task's handle), and the [`TOTAL`] bytes to send through it.
async fn echoed_client() -> io::Result<(TcpIo, JoinHandle<io::Result<()>>, Vec<u8>)> {
    let (client, server) = cellio_pair().await?;
    small_buffers(&client)?;
    small_buffers(&server)?;
    let echo = spawn_local(echo_io(server));
    let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
    Ok((TcpIo::new(client), echo, data))
}

#[test]
fn one_task_sends_and_receives_at_once_through_the_halves() {
    run(|| async {
        let (mut io, echo, data) = echoed_client().await?;
        let (mut rx, mut tx) = io.split();
        let (sent, got) = join2(
            async {
                tx.send_all(&data).await?;
                tx.get_ref().shutdown(Shutdown::Write)
            },
            read_checking(&mut rx),
        )
        .await;
        sent?;
        assert_eq!(got?, TOTAL);
        echo.await.expect("echo task")?;
        // Both directions waited on their own cells, and both were
        // confined: the stream belongs to this thread's reactor.
        assert!(io.is_confined());
        let stats = io.get_ref().stats();
        assert!(stats.send_parked > 0, "the sender never waited: {stats:?}");
        assert!(
            stats.recv_parked > 0,
            "the receiver never waited: {stats:?}"
        );
        io::Result::Ok(())
    })
    .unwrap();
}

/// client -> proxy -> echo server and back, the proxy being two `copy`s
/// over the halves of its two streams, run by one task.
#[test]
fn a_proxy_copies_both_ways_through_the_halves_of_two_streams() {
    run(|| async {
        let (client, proxy_front) = cellio_pair().await?;
        let (proxy_back, server) = cellio_pair().await?;
        for stream in [&client, &proxy_front, &proxy_back, &server] {
            small_buffers(stream)?;
        }
        let echo = spawn_local(echo_io(server));
        let proxy = spawn_local(async move {
            let mut front = TcpIo::new(proxy_front);
            let mut back = TcpIo::new(proxy_back);
            let (mut front_rx, mut front_tx) = front.split();
            let (mut back_rx, mut back_tx) = back.split();
            let (up, down) = join2(
                async {
                    let n = futures_util::io::copy(&mut front_rx, &mut back_tx).await?;
                    back_tx.close().await?; // the client's end of stream, passed on
                    io::Result::Ok(n)
                },
                async {
                    let n = futures_util::io::copy(&mut back_rx, &mut front_tx).await?;
                    front_tx.close().await?;
                    io::Result::Ok(n)
                },
            )
            .await;
            io::Result::Ok((up?, down?))
        });
        let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
        let mut io = TcpIo::new(client);
        let (mut rx, mut tx) = io.split();
        let (sent, got) = join2(
            async {
                tx.send_all(&data).await?;
                tx.close().await
            },
            read_checking(&mut rx),
        )
        .await;
        sent?;
        assert_eq!(got?, TOTAL);
        assert_eq!(
            proxy.await.expect("proxy task")?,
            (TOTAL as u64, TOTAL as u64)
        );
        echo.await.expect("echo task")?;
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn the_tcp_io_keeps_its_cells_and_goes_on_after_the_halves_are_dropped() {
    run(|| async {
        let (ours, mut peer) = std_peer().await?;
        let mut io = TcpIo::new(ours);
        {
            let (mut rx, mut tx) = io.split();
            tx.send_all(b"ping").await?;
            let mut buf = [0u8; 4];
            peer.read_exact(&mut buf)?;
            assert_eq!(&buf, b"ping");
            peer.write_all(b"pong")?;
            let n = rx.recv(&mut buf).await?;
            assert_eq!(&buf[..n], &b"pong"[..n]);
        }
        // The halves are gone; the reservations stayed with the TcpIo: the
        // stream's own futures are still refused.
        let mut buf = [0u8; 8];
        let busy = io.get_ref().recv(&mut buf).await.unwrap_err();
        assert_eq!(CellError::of(&busy), Some(CellError::Busy), "{busy}");
        // And the TcpIo goes on where the halves stopped.
        peer.write_all(b"after")?;
        let mut got = Vec::new();
        while got.len() < 5 {
            let n = io.recv(&mut buf).await?;
            assert!(n > 0, "end of stream too early");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"after");
        io.send_all(b"bye").await?;
        let mut bye = [0u8; 3];
        peer.read_exact(&mut bye)?;
        assert_eq!(&bye, b"bye");
        // Given back, the stream's futures work again.
        let ours = io.into_inner();
        peer.write_all(b"x")?;
        assert_eq!(ours.recv(&mut buf).await?, 1);
        io::Result::Ok(())
    })
    .unwrap();
}

/// With the `tokio-io` feature, the halves implement tokio's traits too.
#[cfg(feature = "tokio-io")]
#[test]
fn the_halves_implement_tokios_read_and_write() {
    // Fully qualified: futures' extension traits are in scope too.
    use tokio::io::{AsyncReadExt as TokioRead, AsyncWriteExt as TokioWrite};

    run(|| async {
        let (mut io, echo, data) = echoed_client().await?;
        let (mut rx, mut tx) = io.split();
        let mut back = vec![0u8; TOTAL];
        let (sent, got) = join2(
            async {
                TokioWrite::write_all(&mut tx, &data).await?;
                TokioWrite::shutdown(&mut tx).await
            },
            TokioRead::read_exact(&mut rx, &mut back),
        )
        .await;
        sent?;
        assert_eq!(got?, TOTAL);
        assert!(back == data, "bytes corrupted or reordered");
        let mut rest = Vec::new();
        assert_eq!(TokioRead::read_to_end(&mut rx, &mut rest).await?, 0);
        echo.await.expect("echo task")?;
        io::Result::Ok(())
    })
    .unwrap();
}
