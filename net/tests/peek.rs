//! `peek` on streams: the bytes it copies stay queued for the next
//! receive; it waits like a receive when nothing has arrived; and a short
//! peek never lets the next receive believe the socket drained (the bytes
//! are still there).

mod util;

use std::io::ErrorKind;
use std::net::Shutdown;
use std::pin::pin;

use cellio_net::unix::UnixStream;
use util::{cellio_pair, poll_once, run};

#[test]
fn peeked_bytes_are_received_again() {
    run(|| async {
        let (client, server) = cellio_pair().await.unwrap();
        client.send_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut head = [0u8; 3];
        assert_eq!(server.peek(&mut head).await.unwrap(), 3);
        assert_eq!(&head, b"GET");
        // Again: still there.
        let mut again = [0u8; 4];
        assert_eq!(server.try_peek(&mut again).unwrap(), 4);
        assert_eq!(&again, b"GET ");
        let mut all = [0u8; 16];
        server.recv_exact(&mut all).await.unwrap();
        assert_eq!(&all, b"GET / HTTP/1.1\r\n");
    });
}

#[test]
fn a_short_peek_does_not_make_the_next_receive_wait() {
    run(|| async {
        let (client, server) = cellio_pair().await.unwrap();
        client.send_all(b"abc").await.unwrap();
        let mut big = [0u8; 64];
        // Fewer bytes than the buffer holds: for a receive that would
        // mean "drained", for a peek it does not (they are still queued).
        assert_eq!(server.peek(&mut big).await.unwrap(), 3);
        let mut recv = server.recv(&mut big);
        assert_eq!(
            recv.try_complete().expect("the bytes are there").unwrap(),
            3,
            "the receive completed on its first attempt"
        );
    });
}

#[test]
fn a_peek_waits_until_something_arrives_and_sees_end_of_stream() {
    run(|| async {
        let (client, server) = cellio_pair().await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            server.try_peek(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        {
            let mut peek = pin!(server.peek(&mut buf));
            assert!(poll_once(peek.as_mut()).await.is_pending(), "nothing yet");
            client.send_all(b"hi").await.unwrap();
            assert_eq!(peek.await.unwrap(), 2);
        }
        assert_eq!(&buf[..2], b"hi");
        let mut two = [0u8; 2];
        server.recv_exact(&mut two).await.unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(server.peek(&mut buf).await.unwrap(), 0, "end of stream");
        assert_eq!(server.recv(&mut buf).await.unwrap(), 0);
    });
}

#[test]
fn unix_streams_peek_too() {
    run(|| async {
        let (a, b) = UnixStream::pair().unwrap();
        a.send_all(b"\x02rest").await.unwrap();
        let mut version = [0u8; 1];
        assert_eq!(b.peek(&mut version).await.unwrap(), 1);
        assert_eq!(version, [2]);
        let mut all = [0u8; 5];
        b.recv_exact(&mut all).await.unwrap();
        assert_eq!(&all, b"\x02rest");
        let mut empty = [0u8; 4];
        assert_eq!(
            b.try_peek(&mut empty).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    });
}
