//! Vectored sends: `send_vectored` and `try_send_vectored` on TCP and Unix
//! streams, and `poll_write_vectored` on `TcpIo` and its sending half.
//! The slices arrive whole and in order; a send to a full peer parks and
//! loses nothing; more slices than one `sendmsg` takes (1024) are sent in
//! more calls without the stream ever waiting for room it has.

mod util;

use std::io::{IoSlice, Read};
use std::pin::pin;
use std::task::Poll;
use std::thread;

use cellio_net::unix::UnixStream;
use cellio_net::TcpIo;
use futures_util::io::AsyncWriteExt;
use util::{cellio_pair, drain_checking, fill_send_buffer, pattern, poll_once, run, std_peer};

/// `total` pattern bytes cut into slices of varied lengths (with empty
/// ones among them).
fn slices_of(bytes: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let (mut at, mut k) = (0, 0usize);
    while at < bytes.len() {
        let len = [0, 1, 7, 300, 4096, 65_000][k % 6].min(bytes.len() - at);
        pieces.push(&bytes[at..at + len]);
        at += len;
        k += 1;
    }
    pieces
}

#[test]
fn slices_arrive_whole_and_in_order() {
    run(|| async {
        let (client, server) = cellio_pair().await.unwrap();
        let (header, empty, body) = (b"LEN 11\n".as_slice(), b"".as_slice(), b"hello world");
        let n = client
            .send_vectored(&[
                IoSlice::new(header),
                IoSlice::new(empty),
                IoSlice::new(body),
            ])
            .await
            .unwrap();
        assert_eq!(n, header.len() + body.len(), "a small send is taken whole");
        let mut got = [0u8; 18];
        server.recv_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"LEN 11\nhello world");
        // Nothing at all to send: 0, at once.
        assert_eq!(
            client.send_vectored(&[IoSlice::new(empty)]).await.unwrap(),
            0
        );
        assert_eq!(client.send_vectored(&[]).await.unwrap(), 0);
    });
}

#[test]
fn a_vectored_send_to_a_full_peer_parks_and_loses_nothing() {
    run(|| async {
        let (ours, peer) = std_peer().await.unwrap();
        let mut peer = Some(peer);
        let filled = fill_send_buffer(&ours);
        let bytes: Vec<u8> = (filled..filled + 3_000_000).map(pattern).collect();
        let pieces = slices_of(&bytes);
        let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|piece| IoSlice::new(piece)).collect();
        let mut rest = &mut slices[..];
        // The peer reads nothing yet: send until a send has to wait (ACKs
        // may still free some room after the fill).
        let mut reader = None;
        while reader.is_none() {
            let n = {
                let mut op = pin!(ours.send_vectored(rest));
                match poll_once(op.as_mut()).await {
                    Poll::Ready(n) => n.unwrap(),
                    Poll::Pending => {
                        // Parked on a full buffer: now the peer reads, and
                        // the parked send is woken by the room it makes.
                        let mut peer = peer.take().expect("the reader starts once");
                        reader = Some(thread::spawn(move || drain_checking(&mut peer).unwrap()));
                        op.await.unwrap()
                    }
                }
            };
            assert!(n > 0);
            IoSlice::advance_slices(&mut rest, n);
        }
        while !rest.is_empty() {
            let n = ours.send_vectored(rest).await.unwrap();
            IoSlice::advance_slices(&mut rest, n);
        }
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        let received = reader.unwrap().join().unwrap();
        assert_eq!(received, filled + bytes.len(), "every byte, in order");
    });
}

#[test]
fn more_slices_than_one_call_takes_never_wait_for_room_they_have() {
    run(|| async {
        let (client, server) = cellio_pair().await.unwrap();
        let bytes: Vec<u8> = (0..3000).map(pattern).collect();
        let one_byte_each: Vec<IoSlice<'_>> = bytes.chunks(1).map(IoSlice::new).collect();
        // 3000 slices: the first call passes 1024 and the kernel takes
        // them all. That is not a full buffer, so the next call must not
        // park (nothing would wake it): it completes on its first poll.
        let first = client.send_vectored(&one_byte_each).await.unwrap();
        assert_eq!(first, 1024);
        let mut second = client.send_vectored(&one_byte_each[first..]);
        assert_eq!(second.try_complete().unwrap().unwrap(), 1024);
        drop(second);
        let third = client.try_send_vectored(&one_byte_each[2048..]).unwrap();
        assert_eq!(third, 3000 - 2048);
        let mut got = vec![0u8; 3000];
        server.recv_exact(&mut got).await.unwrap();
        assert_eq!(got, bytes);
    });
}

#[test]
fn unix_streams_send_vectored_too() {
    run(|| async {
        let (a, b) = UnixStream::pair().unwrap();
        let n = a
            .send_vectored(&[IoSlice::new(b"abc"), IoSlice::new(b"def")])
            .await
            .unwrap();
        assert_eq!(n, 6);
        assert_eq!(b.try_send_vectored(&[IoSlice::new(b"xy")]).unwrap(), 2);
        let mut got = [0u8; 6];
        b.recv_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abcdef");
        let mut got = [0u8; 2];
        a.recv_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"xy");
    });
}

#[test]
fn tcp_io_and_its_sending_half_write_vectored() {
    run(|| async {
        let (client, server) = cellio_pair().await.unwrap();
        let mut io = TcpIo::new(client);
        let n = io
            .write_vectored(&[IoSlice::new(b"one "), IoSlice::new(b"two ")])
            .await
            .unwrap();
        assert_eq!(n, 8);
        {
            let (_rx, mut tx) = TcpIo::split(&mut io);
            let n = tx
                .write_vectored(&[IoSlice::new(b"three "), IoSlice::new(b"four")])
                .await
                .unwrap();
            assert_eq!(n, 10);
        }
        // A big one through the poll method, to the end.
        let bytes: Vec<u8> = (0..2_000_000).map(pattern).collect();
        let pieces = slices_of(&bytes);
        let reader = async {
            let mut got = vec![0u8; 18 + bytes.len()];
            server.recv_exact(&mut got).await.unwrap();
            got
        };
        let writer = async {
            let mut slices: Vec<IoSlice<'_>> =
                pieces.iter().map(|piece| IoSlice::new(piece)).collect();
            let mut rest = &mut slices[..];
            while !rest.is_empty() {
                let n = std::future::poll_fn(|cx| io.poll_send_vectored(cx, rest))
                    .await
                    .unwrap();
                IoSlice::advance_slices(&mut rest, n);
            }
        };
        let (got, ()) = util::join2(reader, writer).await;
        assert_eq!(&got[..18], b"one two three four");
        assert!(got[18..] == bytes[..], "the big send arrived intact");
    });
}

#[cfg(feature = "tokio-io")]
#[test]
fn tokio_writers_see_a_vectored_stream() {
    use tokio::io::AsyncWrite;
    run(|| async {
        let (client, _server) = cellio_pair().await.unwrap();
        let io = TcpIo::new(client);
        assert!(AsyncWrite::is_write_vectored(&io));
    });
}

#[test]
fn a_blocking_read_of_what_was_sent() {
    // The std side reads exactly what the vectored send wrote, nothing
    // more, in one stream.
    run(|| async {
        let (ours, mut peer) = std_peer().await.unwrap();
        let n = ours
            .send_vectored(&[IoSlice::new(b"12"), IoSlice::new(b"345")])
            .await
            .unwrap();
        assert_eq!(n, 5);
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        thread::spawn(move || peer.read_to_end(&mut got).map(|_| got))
            .join()
            .unwrap()
            .map(|got| assert_eq!(got, b"12345"))
            .unwrap();
    });
}

/// A list longer than one call takes whose first 1024 slices are empty
/// still sends its data: the empty ones are skipped, so a count of 0
/// means every slice was empty. On every vectored send: the futures, the
/// `try_` methods, `TcpIo`'s `poll_write_vectored`, and Unix streams.
/// (They sent the first 1024 empty slices and returned 0, which writers
/// read as `WriteZero`; found by a review.)
#[test]
fn a_long_list_whose_first_slices_are_empty_still_sends_its_data() {
    run(|| async {
        let mut slices = vec![IoSlice::new(&[]); 1100];
        slices.push(IoSlice::new(b"data"));
        let (client, server) = cellio_pair().await.unwrap();
        assert_eq!(client.send_vectored(&slices).await.unwrap(), 4);
        assert_eq!(client.try_send_vectored(&slices).unwrap(), 4);
        let mut io = TcpIo::new(client);
        assert_eq!(io.write_vectored(&slices).await.unwrap(), 4);
        let mut got = [0u8; 12];
        server.recv_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"datadatadata");
        let (a, b) = UnixStream::pair().unwrap();
        assert_eq!(a.send_vectored(&slices).await.unwrap(), 4);
        assert_eq!(a.try_send_vectored(&slices).unwrap(), 4);
        let mut got = [0u8; 8];
        b.recv_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"datadata");
        // Only empty slices, however many: 0.
        assert_eq!(b.send_vectored(&slices[..1100]).await.unwrap(), 0);
    });
}
