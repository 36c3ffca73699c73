//! Batched datagrams (`recv_many`/`send_many` with a `RecvBatch` and a
//! `SendBatch`, and their `try_` forms) on UDP and Unix datagram sockets:
//! every datagram arrives whole, once and in order; a receive waits like
//! `recv_from` and takes no more than the batch holds; a datagram too long
//! for its slot is an error for it alone; a send to a full socket parks
//! and loses nothing, even when dropped; an error leaves the datagram it
//! belongs to first in the batch. The same through `UdpIo` and
//! `UnixDatagramIo`.

mod util;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use cellio_net::udp::{self, UdpIo, UdpSocket, MAX_BATCH};
use cellio_net::unix::{self, UnixDatagram, UnixDatagramIo};
use cellio_runtime::{spawn_local, timeout};
use util::{poll_once, run};

fn udp_pair() -> (UdpSocket, UdpSocket) {
    (
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    )
}

/// Datagram `i`: its number, then bytes that depend on it, `len` in all.
fn datagram(i: u32, len: usize) -> Vec<u8> {
    let mut bytes = i.to_le_bytes().to_vec();
    bytes.extend((0..len.saturating_sub(4)).map(|k| (k as u32 * 7 + i) as u8));
    bytes.truncate(len);
    bytes
}

/// Receives into `batch` until `count` datagrams came, checking each is
/// `datagram(next, len)` from `from`, in order.
async fn expect_udp(
    socket: &UdpSocket,
    batch: &mut udp::RecvBatch,
    count: u32,
    len: usize,
    from: SocketAddr,
) {
    let mut next = 0;
    while next < count {
        let n = socket.recv_many(batch).await.unwrap();
        assert!(n >= 1 && n == batch.len());
        for got in batch.iter() {
            let (bytes, sender) = got.unwrap();
            assert_eq!((bytes, sender), (&datagram(next, len)[..], from));
            next += 1;
        }
    }
    assert_eq!(next, count, "more datagrams than were sent");
}

#[test]
fn one_receive_takes_every_queued_datagram_in_order() {
    run(|| async {
        let (a, b) = udp_pair();
        let to_b = b.local_addr().unwrap();
        for i in 0..10 {
            a.send_to(&datagram(i, 100), to_b).await.unwrap();
        }
        let mut batch = udp::RecvBatch::new(32, 2048);
        assert!(batch.is_empty());
        assert_eq!(b.recv_many(&mut batch).await.unwrap(), 10);
        let from = a.local_addr().unwrap();
        for (i, got) in batch.iter().enumerate() {
            assert_eq!(got.unwrap(), (&datagram(i as u32, 100)[..], from));
        }
        assert!(batch.get(10).is_none());
        assert_eq!(
            b.try_recv_many(&mut batch).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        assert!(
            batch.is_empty(),
            "a receive that got nothing leaves nothing"
        );
    });
}

/// IPv6 senders are read in place too: address, port, scope. (Skipped
/// where there is no IPv6 loopback.)
#[test]
fn ipv6_senders_and_destinations() {
    if !util::has_ipv6_loopback() {
        return;
    }
    run(|| async {
        let a = UdpSocket::bind("[::1]:0").unwrap();
        let b = UdpSocket::bind("[::1]:0").unwrap();
        let mut batch = udp::SendBatch::new();
        for i in 0..3 {
            batch
                .push(&datagram(i, 40), b.local_addr().unwrap())
                .unwrap();
        }
        assert_eq!(a.send_many(&mut batch).await.unwrap(), 3);
        let mut received = udp::RecvBatch::new(8, 64);
        let from = a.local_addr().unwrap();
        assert!(from.is_ipv6());
        expect_udp(&b, &mut received, 3, 40, from).await;
    });
}

#[test]
fn a_receive_takes_no_more_than_the_batch_holds() {
    run(|| async {
        let (a, b) = udp_pair();
        let to_b = b.local_addr().unwrap();
        for i in 0..12 {
            a.send_to(&datagram(i, 8), to_b).await.unwrap();
        }
        let mut batch = udp::RecvBatch::new(5, 8);
        let mut counts = Vec::new();
        let mut next = 0;
        while next < 12 {
            counts.push(b.try_recv_many(&mut batch).unwrap());
            for got in batch.iter() {
                assert_eq!(got.unwrap().0, &datagram(next, 8)[..]);
                next += 1;
            }
        }
        assert_eq!(counts, [5, 5, 2]);
    });
}

#[test]
fn a_receive_waits_for_a_datagram() {
    run(|| async {
        let (a, b) = udp_pair();
        let mut batch = udp::RecvBatch::new(4, 64);
        {
            let mut receive = pin!(b.recv_many(&mut batch));
            assert!(poll_once(receive.as_mut()).await.is_pending());
            a.send_to(&datagram(0, 64), b.local_addr().unwrap())
                .await
                .unwrap();
            assert_eq!(receive.await.unwrap(), 1);
        }
        assert_eq!(batch.get(0).unwrap().unwrap().0, &datagram(0, 64)[..]);
    });
}

#[test]
fn a_datagram_too_long_for_its_slot_is_an_error_for_it_alone() {
    run(|| async {
        let (a, b) = udp_pair();
        let to_b = b.local_addr().unwrap();
        for (i, len) in [(0, 10), (1, 100), (2, 50)] {
            a.send_to(&datagram(i, len), to_b).await.unwrap();
        }
        let mut batch = udp::RecvBatch::new(8, 50);
        assert_eq!(batch.datagram_size(), 50);
        assert_eq!(b.recv_many(&mut batch).await.unwrap(), 3);
        assert_eq!(batch.get(0).unwrap().unwrap().0, &datagram(0, 10)[..]);
        let error = batch.get(1).unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidData);
        assert!(error.to_string().contains("50-byte"), "{error}");
        assert_eq!(batch.get(2).unwrap().unwrap().0, &datagram(2, 50)[..]);
    });
}

#[test]
fn capacity_is_clamped_to_one_through_max_batch() {
    assert_eq!(udp::RecvBatch::new(0, 16).capacity(), 1);
    assert_eq!(udp::RecvBatch::new(MAX_BATCH + 1, 1).capacity(), MAX_BATCH);
    assert_eq!(udp::RecvBatch::new(7, 16).capacity(), 7);
}

#[test]
#[should_panic(expected = "RecvBatch::new: 1024 slots of")]
fn buffers_larger_than_memory_are_refused_with_a_message() {
    let _ = udp::RecvBatch::new(MAX_BATCH, usize::MAX / 512);
}

#[test]
fn one_send_delivers_every_datagram_to_its_destination() {
    run(|| async {
        let (a, b) = udp_pair();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (to_b, to_c) = (b.local_addr().unwrap(), c.local_addr().unwrap());
        let mut batch = udp::SendBatch::new();
        for i in 0..100 {
            batch.push(&datagram(i / 2, 200), if i % 2 == 0 { to_b } else { to_c })?;
        }
        assert_eq!(batch.len(), 100);
        assert_eq!(a.send_many(&mut batch).await.unwrap(), 100);
        assert!(batch.is_empty());
        let from = a.local_addr().unwrap();
        let mut received = udp::RecvBatch::new(16, 256);
        expect_udp(&b, &mut received, 50, 200, from).await;
        expect_udp(&c, &mut received, 50, 200, from).await;
        // The batch is reused, and an empty one sends nothing.
        batch.push(&datagram(0, 200), to_b)?;
        assert_eq!(a.try_send_many(&mut batch).unwrap(), 1);
        assert_eq!(a.send_many(&mut batch).await.unwrap(), 0);
        expect_udp(&b, &mut received, 1, 200, from).await;
        Ok::<_, std::io::Error>(())
    })
    .unwrap();
}

#[test]
fn more_than_max_batch_datagrams_go_in_several_calls() {
    run(|| async {
        let (a, b) = udp_pair();
        b.set_recv_buffer_size(8 << 20).unwrap();
        let to_b = b.local_addr().unwrap();
        let count = MAX_BATCH as u32 + 500;
        let mut batch = udp::SendBatch::with_capacity(count as usize, count as usize * 16);
        for i in 0..count {
            batch.push(&datagram(i, 16), to_b).unwrap();
        }
        assert_eq!(a.send_many(&mut batch).await.unwrap(), count as usize);
        let mut received = udp::RecvBatch::new(MAX_BATCH, 16);
        expect_udp(&b, &mut received, count, 16, a.local_addr().unwrap()).await;
    });
}

#[test]
fn an_error_leaves_its_datagram_first_and_the_rest_queued() {
    run(|| async {
        let (a, b) = udp_pair();
        let to_b = b.local_addr().unwrap();
        let mut batch = udp::SendBatch::new();
        batch.push(&datagram(0, 10), to_b).unwrap();
        batch.push(&datagram(1, 10), to_b).unwrap();
        batch.push(&vec![0u8; 70_000], to_b).unwrap(); // longer than UDP allows
        batch.push(&datagram(2, 10), to_b).unwrap();
        let error = a.send_many(&mut batch).await.unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EMSGSIZE), "{error}");
        assert_eq!(batch.len(), 2, "the two before the long one were sent");
        // The same error again, until the datagram is skipped.
        assert!(a.try_send_many(&mut batch).is_err());
        assert!(batch.skip_next());
        assert_eq!(a.send_many(&mut batch).await.unwrap(), 1);
        assert!(!batch.skip_next());
        let mut received = udp::RecvBatch::new(8, 16);
        expect_udp(&b, &mut received, 3, 10, a.local_addr().unwrap()).await;
    });
}

#[test]
fn a_batch_to_the_connected_peer() {
    run(|| async {
        let (a, b) = udp_pair();
        let mut batch = udp::SendBatch::new();
        batch.push_to_peer(b"nobody");
        let error = a.send_many(&mut batch).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotConnected, "{error}");
        assert_eq!(batch.len(), 1);
        batch.clear();
        a.connect(b.local_addr().unwrap()).unwrap();
        for i in 0..5 {
            batch.push_to_peer(&datagram(i, 30));
        }
        assert_eq!(a.send_many(&mut batch).await.unwrap(), 5);
        let mut received = udp::RecvBatch::new(8, 64);
        expect_udp(&b, &mut received, 5, 30, a.local_addr().unwrap()).await;
    });
}

/// Unix datagram sockets: a full peer makes a send park (they block where
/// UDP drops), and a send dropped while parked leaves exactly the
/// datagrams not sent, which a second send delivers.
#[test]
fn a_send_to_a_full_peer_parks_and_a_dropped_one_loses_nothing() {
    run(|| async {
        let (a, b) = UnixDatagram::pair().unwrap();
        let total = 3_000u32;
        let mut batch = unix::SendBatch::new();
        for i in 0..total {
            batch.push_to_peer(&datagram(i, 64));
        }
        {
            let mut send = pin!(a.send_many(&mut batch));
            assert!(
                poll_once(send.as_mut()).await.is_pending(),
                "3 000 datagrams fit a Unix socket's queue"
            );
        } // dropped while parked
        let queued = batch.len() as u32;
        assert!(queued > 0 && queued < total, "{queued} left");
        let mut received = unix::RecvBatch::new(64, 64);
        let mut next = 0;
        let reader = async {
            while next < total {
                b.recv_many(&mut received).await.unwrap();
                for got in received.iter() {
                    let (bytes, _) = got.unwrap();
                    assert_eq!(bytes, &datagram(next, 64)[..]);
                    next += 1;
                }
            }
        };
        let (sent, ()) = util::join2(a.send_many(&mut batch), reader).await;
        assert_eq!(sent.unwrap(), queued as usize);
        assert!(batch.is_empty());
    });
}

/// The same through a `UdpIo` (cells held between batches): an echo task
/// that waits for each batch and answers it in one call.
#[test]
fn batches_through_a_udp_io() {
    run(|| async {
        let (client, server) = udp_pair();
        let to_server = server.local_addr().unwrap();
        let echo = spawn_local(async move {
            let mut io = UdpIo::new(server);
            let (mut received, mut replies) = (udp::RecvBatch::new(16, 64), udp::SendBatch::new());
            let mut echoed = 0;
            while echoed < 40 {
                io.recv_many(&mut received).await?;
                for got in received.iter() {
                    let (bytes, from) = got?;
                    replies.push(bytes, from)?;
                }
                echoed += io.send_many(&mut replies).await?;
            }
            std::io::Result::Ok((echoed, io.is_confined()))
        });
        let mut batch = udp::SendBatch::new();
        let mut received = udp::RecvBatch::new(16, 64);
        for round in 0..4 {
            for i in 0..10 {
                batch
                    .push(&datagram(round * 10 + i, 20), to_server)
                    .unwrap();
            }
            assert_eq!(client.send_many(&mut batch).await.unwrap(), 10);
            let mut got = 0;
            while got < 10 {
                client.recv_many(&mut received).await.unwrap();
                for echoed in received.iter() {
                    let (bytes, _) = echoed.unwrap();
                    assert_eq!(bytes, &datagram(round * 10 + got, 20)[..]);
                    got += 1;
                }
            }
        }
        let (echoed, confined) = echo.await.unwrap().unwrap();
        assert_eq!(echoed, 40);
        assert!(confined, "bound on this worker: its cells are confined");
    });
}

/// A `UnixDatagramIo`'s batch send parks on a full peer and finishes once
/// the peer reads.
#[test]
fn a_unix_datagram_io_batch_send_parks_until_the_peer_reads() {
    run(|| async {
        let (a, b) = UnixDatagram::pair().unwrap();
        let mut io = UnixDatagramIo::new(a);
        let total = 2_000u32;
        let mut batch = unix::SendBatch::new();
        for i in 0..total {
            batch.push_to_peer(&datagram(i, 32));
        }
        let mut received = unix::RecvBatch::new(64, 32);
        let mut next = 0;
        let reader = async {
            while next < total {
                b.recv_many(&mut received).await.unwrap();
                for got in received.iter() {
                    assert_eq!(got.unwrap().0, &datagram(next, 32)[..]);
                    next += 1;
                }
            }
        };
        {
            let mut send = pin!(io.send_many(&mut batch));
            assert!(
                poll_once(send.as_mut()).await.is_pending(),
                "2 000 datagrams fit a Unix socket's queue"
            );
            let (sent, ()) = util::join2(send, reader).await;
            assert_eq!(sent.unwrap(), total as usize);
        }
        assert!(batch.is_empty());
    });
}

#[test]
fn unix_senders_named_and_unnamed() {
    run(|| async {
        let dir = util::SocketDir::new();
        let (path_a, path_b) = (dir.path("a"), dir.path("b"));
        let a = UnixDatagram::bind(&path_a).unwrap();
        let b = UnixDatagram::bind(&path_b).unwrap();
        let unnamed = UnixDatagram::unbound().unwrap();
        let mut batch = unix::SendBatch::new();
        batch.push(b"from a", b.local_addr().unwrap()).unwrap();
        assert_eq!(a.send_many(&mut batch).await.unwrap(), 1);
        batch.push(b"from nobody", b.local_addr().unwrap()).unwrap();
        assert_eq!(unnamed.send_many(&mut batch).await.unwrap(), 1);
        let error = batch
            .push(b"to nobody", unnamed.local_addr().unwrap())
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");

        let mut received = unix::RecvBatch::new(4, 32);
        assert_eq!(b.recv_many(&mut received).await.unwrap(), 2);
        let (bytes, from) = received.get(0).unwrap().unwrap();
        assert_eq!(
            (bytes, from.as_pathname()),
            (&b"from a"[..], Some(&*path_a))
        );
        let (bytes, from) = received.get(1).unwrap().unwrap();
        assert_eq!(bytes, b"from nobody");
        assert!(from.is_unnamed());
    });
}

#[test]
fn batches_and_their_futures_are_send_and_debug() {
    fn send<T: Send + Sync>() {}
    send::<udp::RecvBatch>();
    send::<udp::SendBatch>();
    send::<udp::RecvMany<'static>>();
    send::<udp::SendMany<'static>>();
    let batch = udp::RecvBatch::new(3, 10);
    assert_eq!(
        format!("{batch:?}"),
        "RecvBatch { capacity: 3, datagram_size: 10, len: 0, slots_filled: 0 }"
    );
    let mut batch = udp::SendBatch::default();
    batch
        .push(b"abc", SocketAddr::from(([127, 0, 0, 1], 9)))
        .unwrap();
    assert_eq!(format!("{batch:?}"), "SendBatch { len: 1, bytes: 3 }");
}

/// A batch that is never quite empty when a send returns (a producer a
/// little ahead of a slow reader: one datagram left over each round) holds
/// about what is pending, not everything it ever sent. (It used to drop
/// what was sent only once all of it was, so its bytes and entries grew
/// with every datagram while `len()` stayed 1; found by a review.)
#[test]
fn a_batch_that_never_empties_does_not_keep_what_it_sent() {
    run(|| async {
        let (a, b) = UnixDatagram::pair().unwrap();
        let payload = [7u8; 1024];
        while a.try_send(&payload).is_ok() {} // b's queue is full
        let mut batch = unix::SendBatch::new();
        let mut buf = [0u8; 2048];
        batch.push_to_peer(&payload);
        for _ in 0..2_000 {
            b.recv(&mut buf).await.unwrap(); // room for one
            batch.push_to_peer(&payload);
            assert_eq!(a.try_send_many(&mut batch).unwrap(), 1, "one goes");
            assert_eq!(batch.len(), 1, "one stays");
        }
        let debug = format!("{batch:?}");
        let held: usize = debug
            .strip_prefix("SendBatch { len: 1, bytes: ")
            .and_then(|rest| rest.strip_suffix(" }"))
            .and_then(|bytes| bytes.parse().ok())
            .unwrap_or_else(|| panic!("{debug}"));
        assert!(held <= 2 * payload.len(), "one datagram queued: {debug}");
    });
}

/// An ICMP report for an earlier datagram (the peer was down for a moment)
/// is not the error of the batch's first datagram, which the kernel did not
/// send: following the docs (`skip_next` after an error) loses nothing.
/// (`send_many` used to return the report as the first datagram's error,
/// and the documented loop then dropped that datagram, never sent; found by
/// a review.)
#[test]
fn an_earlier_datagrams_icmp_report_is_not_the_first_ones_error() {
    run(|| async {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(addr).unwrap();
        drop(server); // a restart: down for a moment
        client.send(b"lost").await.unwrap(); // refused: an ICMP report comes back
        cellio_runtime::sleep(Duration::from_millis(50)).await;
        let server = UdpSocket::bind(addr).unwrap(); // back up
        let mut batch = udp::SendBatch::new();
        batch.push_to_peer(&datagram(0, 8));
        batch.push_to_peer(&datagram(1, 8));
        let mut errors = Vec::new();
        while let Err(e) = client.send_many(&mut batch).await {
            errors.push(e); // what the guide does
            batch.skip_next();
        }
        assert!(errors.is_empty(), "{errors:?}");
        let mut received = udp::RecvBatch::new(4, 16);
        timeout(
            Duration::from_secs(5),
            expect_udp(&server, &mut received, 2, 8, client.local_addr().unwrap()),
        )
        .await
        .expect("both datagrams arrive");
    });
}
