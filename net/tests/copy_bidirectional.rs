//! `copy_bidirectional` and `copy`: a proxy between a client and an
//! upstream server passes every byte both ways in order, passes a
//! half-close through each way on its own, works between TCP and Unix
//! streams with buffers of any size, and ends with an error (not a hang)
//! when a side is reset.

mod util;

use std::io::{self, Read, Write};
use std::net::Shutdown;

use cellio_net::unix::{UnixIo, UnixStream};
use cellio_net::{copy, copy_bidirectional, copy_bidirectional_with_buffers, TcpIo, TcpStream};
use cellio_runtime::spawn_local;
use futures_util::io::AsyncReadExt;
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
fn a_proxy_passes_every_byte_both_ways_and_ends_when_both_sides_close() {
    run(|| async {
        let upstream = spawn_echo_server()?;
        let (client, proxy_in) = cellio_pair().await?;
        let proxy = spawn_local(async move {
            let out = TcpStream::connect(upstream).await?;
            let (mut a, mut b) = (TcpIo::new(proxy_in), TcpIo::new(out));
            copy_bidirectional(&mut a, &mut b).await
        });
        let len = 1 << 20;
        exchange(&client, len).await?;
        // The client's end of stream reaches the echo server through the
        // proxy; the server closes, and that reaches the client.
        client.shutdown(Shutdown::Write)?;
        let mut rest = [0u8; 16];
        assert_eq!(client.recv(&mut rest).await?, 0);
        let (a_to_b, b_to_a) = proxy.await.unwrap()?;
        assert_eq!((a_to_b, b_to_a), (len as u64, len as u64));
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

#[test]
fn a_half_close_passes_through_while_the_other_direction_goes_on() {
    run(|| async {
        let (client, proxy_in) = cellio_pair().await?;
        let (proxy_out, mut server) = std_peer().await?;
        let proxy = spawn_local(async move {
            let (mut a, mut b) = (TcpIo::new(proxy_in), TcpIo::new(proxy_out));
            copy_bidirectional(&mut a, &mut b).await
        });
        client.send_all(b"request").await?;
        client.shutdown(Shutdown::Write)?;
        // The server reads the request and the end of stream, then answers
        // in two parts, the client having closed its side long before.
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
fn tcp_to_unix_with_buffers_of_one_and_seven_bytes() {
    run(|| async {
        let upstream = spawn_echo_server()?;
        let (client, proxy_in) = cellio_pair().await?;
        // TCP client → proxy → Unix pair → a forwarder → TCP echo server.
        let (unix_a, unix_b) = UnixStream::pair()?;
        let forwarder = spawn_local(async move {
            let out = TcpStream::connect(upstream).await?;
            let (mut a, mut b) = (UnixIo::new(unix_b), TcpIo::new(out));
            copy_bidirectional(&mut a, &mut b).await
        });
        let proxy = spawn_local(async move {
            let (mut a, mut b) = (TcpIo::new(proxy_in), UnixIo::new(unix_a));
            let (mut one, mut seven) = ([0u8; 1], [0u8; 7]);
            copy_bidirectional_with_buffers(&mut a, &mut b, &mut one, &mut seven).await
        });
        let len = 64 * 1024 + 3;
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
fn a_reset_side_ends_the_copy_with_an_error() {
    run(|| async {
        let (client, proxy_in) = cellio_pair().await?;
        let (proxy_out, server) = std_peer().await?;
        let proxy = spawn_local(async move {
            let (mut a, mut b) = (TcpIo::new(proxy_in), TcpIo::new(proxy_out));
            copy_bidirectional(&mut a, &mut b).await
        });
        client.send_all(b"hello").await?;
        // The server resets its connection (a zero linger makes the close
        // send RST) with the proxy still waiting on it.
        socket2::SockRef::from(&server).set_linger(Some(std::time::Duration::ZERO))?;
        drop(server);
        let error = proxy.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

#[test]
fn copy_moves_a_stream_one_way_and_closes_the_writer() {
    run(|| async {
        let (from, mut source) = std_peer().await?;
        let (to, sink) = cellio_pair().await?;
        let copier =
            spawn_local(async move { copy(&mut TcpIo::new(from), &mut TcpIo::new(to)).await });
        let len = 300 * 1024;
        let writer = std::thread::spawn(move || {
            let data: Vec<u8> = (0..len).map(pattern).collect();
            source.write_all(&data)
        });
        let mut got = Vec::new();
        TcpIo::new(sink).read_to_end(&mut got).await?;
        writer.join().unwrap()?;
        assert_eq!(got.len(), len);
        assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)));
        assert_eq!(copier.await.unwrap()?, len as u64);
        Ok::<_, io::Error>(())
    })
    .unwrap();
}
