//! `splice_bidirectional` (Linux): a proxy whose bytes move through the
//! kernel passes every byte both ways in order, passes a half-close
//! through each way on its own, works between TCP and Unix streams, and
//! ends with an error (not a hang) when a side is reset.
#![cfg(target_os = "linux")]

mod util;

use std::io::{self, Read, Write};
use std::net::Shutdown;

use cellio_net::unix::UnixStream;
use cellio_net::{splice_bidirectional, TcpStream};
use cellio_runtime::spawn_local;
use util::{cellio_pair, pattern, run, spawn_echo_server, std_peer};

/// Sends `len` patterned bytes on `client` while reading them back, and
/// checks each one.
async fn exchange(client: &TcpStream, len: usize) -> io::Result<()> {
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
    let (sent, received) = util::join2(sender, receiver).await;
    sent.and(received)
}

#[test]
fn a_spliced_proxy_passes_every_byte_both_ways_and_ends_when_both_sides_close() {
    run(|| async {
        let upstream = spawn_echo_server()?;
        let (client, proxy_in) = cellio_pair().await?;
        let proxy = spawn_local(async move {
            let out = TcpStream::connect(upstream).await?;
            splice_bidirectional(&proxy_in, &out).await
        });
        let len = 4 << 20;
        exchange(&client, len).await?;
        client.shutdown(Shutdown::Write)?;
        let mut rest = [0u8; 16];
        assert_eq!(client.recv(&mut rest).await?, 0);
        assert_eq!(proxy.await.unwrap()?, (len as u64, len as u64));
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

#[test]
fn a_half_close_passes_through_while_the_other_direction_goes_on() {
    run(|| async {
        let (client, proxy_in) = cellio_pair().await?;
        let (proxy_out, mut server) = std_peer().await?;
        let proxy = spawn_local(async move { splice_bidirectional(&proxy_in, &proxy_out).await });
        client.send_all(b"request").await?;
        client.shutdown(Shutdown::Write)?;
        let server = std::thread::spawn(move || {
            let mut request = Vec::new();
            server.read_to_end(&mut request)?;
            server.write_all(b"first part, ")?;
            std::thread::sleep(std::time::Duration::from_millis(20));
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
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

#[test]
fn tcp_to_unix_and_back() {
    run(|| async {
        let upstream = spawn_echo_server()?;
        let (client, proxy_in) = cellio_pair().await?;
        let (unix_a, unix_b) = UnixStream::pair()?;
        let forwarder = spawn_local(async move {
            let out = TcpStream::connect(upstream).await?;
            splice_bidirectional(&unix_b, &out).await
        });
        let proxy = spawn_local(async move { splice_bidirectional(&proxy_in, &unix_a).await });
        let len = 1 << 20;
        exchange(&client, len).await?;
        client.shutdown(Shutdown::Write)?;
        let mut rest = [0u8; 16];
        assert_eq!(client.recv(&mut rest).await?, 0);
        let len = len as u64;
        assert_eq!(proxy.await.unwrap()?, (len, len));
        assert_eq!(forwarder.await.unwrap()?, (len, len));
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

#[test]
fn a_reset_side_ends_the_splice_with_an_error() {
    run(|| async {
        let (client, proxy_in) = cellio_pair().await?;
        let (proxy_out, server) = std_peer().await?;
        let proxy = spawn_local(async move { splice_bidirectional(&proxy_in, &proxy_out).await });
        client.send_all(b"hello").await?;
        socket2::SockRef::from(&server).set_linger(Some(std::time::Duration::ZERO))?;
        drop(server);
        let error = proxy.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

#[test]
fn a_stream_being_spliced_refuses_a_second_reader_and_is_free_again_after() {
    run(|| async {
        let (client, proxy_in) = cellio_pair().await?;
        let (proxy_out, _server) = cellio_pair().await?;
        {
            let mut splice = std::pin::pin!(splice_bidirectional(&proxy_in, &proxy_out));
            assert!(util::poll_once(splice.as_mut()).await.is_pending());
            let mut buf = [0u8; 4];
            let error = proxy_in.recv(&mut buf).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::ResourceBusy, "{error}");
        }
        // Dropped: the cells are free, and nothing was taken.
        client.send_all(b"mine").await?;
        let mut buf = [0u8; 4];
        proxy_in.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"mine");
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

/// Polls `proxy` (in the same task) while `client` sends `data` and
/// `server` reads it back, checking every byte.
async fn through(
    proxy: &mut std::pin::Pin<Box<impl std::future::Future<Output = io::Result<(u64, u64)>>>>,
    client: &TcpStream,
    server: &TcpStream,
    data: &[u8],
) -> io::Result<()> {
    let sender = client.send_all(data);
    let receiver = async {
        let mut got = 0;
        let mut buf = [0u8; 65536];
        while got < data.len() {
            assert!(util::poll_once(proxy.as_mut()).await.is_pending());
            match server.try_recv(&mut buf) {
                Ok(0) => panic!("end of stream after {got} bytes"),
                Ok(n) => {
                    assert_eq!(buf[..n], data[got..got + n], "bytes {got}..");
                    got += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    cellio_runtime::yield_now().await
                }
                Err(e) => return Err(e),
            }
        }
        io::Result::Ok(())
    };
    let (sent, received) = util::join2(sender, receiver).await;
    sent.and(received)
}

#[test]
fn auto_splices_large_reads_and_copies_small_ones() {
    run(|| async {
        let (client, a) = cellio_pair().await?;
        let (b, server) = cellio_pair().await?;
        let mut proxy = Box::pin(cellio_net::splice_bidirectional_auto(&a, &b));
        // Small messages, one at a time: copied, never spliced.
        for round in 0..20u8 {
            through(&mut proxy, &client, &server, &[round; 4]).await?;
        }
        assert_eq!(proxy.spliced(), (0, 0), "small reads are copied");
        // A burst: after a read that fills the buffer, the rest is spliced.
        let burst: Vec<u8> = (0..256 * 1024).map(pattern).collect();
        through(&mut proxy, &client, &server, &burst).await?;
        let (spliced, _) = proxy.spliced();
        assert!(
            spliced >= 128 * 1024,
            "only {spliced} bytes of the burst were spliced"
        );
        // Small messages again: after one small splice, copied again.
        for round in 0..20u8 {
            through(&mut proxy, &client, &server, &[round; 4]).await?;
        }
        let (after, _) = proxy.spliced();
        assert!(
            after - spliced <= 4,
            "{} more bytes spliced",
            after - spliced
        );
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

#[test]
fn auto_passes_every_byte_of_mixed_sizes_both_ways() {
    run(|| async {
        let upstream = spawn_echo_server()?;
        let (client, proxy_in) = cellio_pair().await?;
        let proxy = spawn_local(async move {
            let out = TcpStream::connect(upstream).await?;
            cellio_net::splice_bidirectional_auto(&proxy_in, &out).await
        });
        let mut total = 0;
        for len in [64, 3, 1 << 20, 100, 70_000, 5] {
            exchange(&client, len).await?;
            total += len as u64;
        }
        client.shutdown(Shutdown::Write)?;
        let mut rest = [0u8; 16];
        assert_eq!(client.recv(&mut rest).await?, 0);
        assert_eq!(proxy.await.unwrap()?, (total, total));
        Ok::<_, io::Error>(())
    })
    .unwrap();
}
