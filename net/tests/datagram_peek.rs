//! Peeking at datagrams (`peek_from`, `peek_sender` and their `try_`
//! forms) on UDP and Unix datagram sockets: the datagram stays queued for
//! the next receive, a peek waits like a receive, and a datagram longer
//! than the buffer is an error that leaves it queued whole.

mod util;

use std::io::ErrorKind;
use std::pin::pin;

use cellio_net::unix::UnixDatagram;
use cellio_net::UdpSocket;
use util::{poll_once, run};

fn udp_pair() -> (UdpSocket, UdpSocket) {
    (
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    )
}

#[test]
fn a_peeked_datagram_is_received_again() {
    run(|| async {
        let (a, b) = udp_pair();
        let to_b = b.local_addr().unwrap();
        a.send_to(b"first", to_b).await.unwrap();
        a.send_to(b"second", to_b).await.unwrap();
        let mut buf = [0u8; 32];
        for _ in 0..2 {
            let (n, from) = b.peek_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"first"[..], a.local_addr().unwrap()));
        }
        assert_eq!(b.peek_sender().await.unwrap(), a.local_addr().unwrap());
        let (n, _) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"first");
        let (n, _) = b.try_peek_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"second");
        assert_eq!(b.try_peek_sender().unwrap(), a.local_addr().unwrap());
        let (n, _) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"second");
        assert_eq!(
            b.try_peek_from(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        assert_eq!(
            b.try_peek_sender().unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    });
}

#[test]
fn a_peek_waits_for_a_datagram() {
    run(|| async {
        let (a, b) = udp_pair();
        {
            let mut sender = pin!(b.peek_sender());
            assert!(poll_once(sender.as_mut()).await.is_pending());
            a.send_to(b"x", b.local_addr().unwrap()).await.unwrap();
            assert_eq!(sender.await.unwrap(), a.local_addr().unwrap());
        }
        let mut buf = [0u8; 4];
        // The datagram is still there: the next peek completes at once.
        let mut peek = pin!(b.peek_from(&mut buf));
        match poll_once(peek.as_mut()).await {
            std::task::Poll::Ready(got) => assert_eq!(got.unwrap().0, 1),
            std::task::Poll::Pending => panic!("the peeked datagram is gone"),
        }
    });
}

#[test]
fn a_datagram_longer_than_the_peek_buffer_stays_queued_whole() {
    run(|| async {
        let (a, b) = udp_pair();
        let long: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        a.send_to(&long, b.local_addr().unwrap()).await.unwrap();
        let mut small = [0u8; 100];
        let error = b.peek_from(&mut small).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidData);
        assert!(error.to_string().contains("still queued"), "{error}");
        assert_eq!(&small[..], &long[..100], "the first bytes were copied");
        let mut big = [0u8; 2000];
        let (n, _) = b.recv_from(&mut big).await.unwrap();
        assert_eq!(&big[..n], &long[..], "then received whole");
    });
}

#[test]
fn unix_datagrams_peek_too() {
    run(|| async {
        let (a, b) = UnixDatagram::pair().unwrap();
        a.send(b"hello").await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = b.peek_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        // A socket pair's ends are unnamed.
        assert!(from.as_pathname().is_none());
        assert!(b.peek_sender().await.unwrap().as_pathname().is_none());
        let n = b.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
    });
}
