//! Receive offload (`UDP_GRO`, `UdpSocket::enable_receive_offload`): the
//! kernel hands several datagrams of one sender over as one buffer, and a
//! `RecvBatch` splits it back into those datagrams, each whole, in order,
//! with its sender (and its `Debug` counts datagrams as `len`, the slots
//! apart); single receives on such a socket are refused before
//! they take anything, and so are batches whose slots are too small;
//! `from_std` notices a socket that already has it on. (It cannot be
//! turned off: the kernel gives a merged buffer's datagram length only
//! while it is on. A test here shows why.) Without the
//! recvmmsg path (`--cfg cellio_portable_datagrams`), turning it on is an
//! `Unsupported` error.

mod util;

use cellio_net::udp::UdpSocket;
use util::run;

#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
))]
mod merged {
    use std::io::ErrorKind;
    use std::net::UdpSocket as StdUdpSocket;
    use std::os::fd::AsRawFd;

    use crate::util::datagrams::{datagram, run_of, set_int_option};
    use crate::util::run;
    use cellio_net::udp::{self, UdpSocket, MAX_MERGED};

    /// A receiver with receive offload on.
    fn merging_receiver() -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_recv_buffer_size(4 << 20).unwrap();
        socket.enable_receive_offload().unwrap();
        assert!(socket.receive_offload());
        socket
    }

    #[test]
    fn a_merged_buffer_comes_out_as_its_datagrams() {
        run(|| async {
            let receiver = merging_receiver();
            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            let (to, from) = (receiver.local_addr().unwrap(), sender.local_addr().unwrap());
            let (first, bytes) = run_of(0, 10, 1200, 500);
            let mut out = udp::SendBatch::new();
            out.push_segmented(&bytes, 1200, to).unwrap();
            out.push(&datagram(10, 300), to).unwrap();
            let (last, bytes) = run_of(11, 5, 100, 100);
            out.push_segmented(&bytes, 100, to).unwrap();
            assert_eq!(sender.send_many(&mut out).await.unwrap(), 16);

            // One slot: a receive takes one buffer, however many datagrams.
            let mut batch = udp::RecvBatch::new(1, MAX_MERGED);
            assert_eq!(receiver.recv_many(&mut batch).await.unwrap(), 10, "merged");
            for (got, want) in batch.iter().zip(&first) {
                assert_eq!(got.unwrap(), (&want[..], from));
            }
            assert_eq!(receiver.recv_many(&mut batch).await.unwrap(), 1);
            assert_eq!(
                batch.get(0).unwrap().unwrap(),
                (&datagram(10, 300)[..], from)
            );
            assert_eq!(receiver.recv_many(&mut batch).await.unwrap(), 5);
            let got: Vec<Vec<u8>> = batch.iter().map(|d| d.unwrap().0.to_vec()).collect();
            assert_eq!(got, last);
        });
    }

    /// A batch's `Debug` says `len` for `len()` (datagrams), and how many
    /// slots the kernel filled apart. (It showed the slots as `len`: 1 for
    /// a merged buffer of 3 datagrams; found by a review.)
    #[test]
    fn a_batch_debug_shows_its_datagrams_as_len() {
        run(|| async {
            let receiver = merging_receiver();
            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            let (_, bytes) = run_of(0, 3, 1000, 1000);
            let mut out = udp::SendBatch::new();
            out.push_segmented(&bytes, 1000, receiver.local_addr().unwrap())
                .unwrap();
            sender.send_many(&mut out).await.unwrap();
            let mut batch = udp::RecvBatch::new(4, MAX_MERGED);
            assert_eq!(receiver.recv_many(&mut batch).await.unwrap(), 3);
            assert_eq!(
                format!("{batch:?}"),
                format!(
                    "RecvBatch {{ capacity: 4, datagram_size: {MAX_MERGED}, len: 3, \
                     slots_filled: 1 }}"
                )
            );
        });
    }

    #[test]
    fn datagrams_of_two_senders_come_apart_in_each_senders_order() {
        run(|| async {
            let receiver = merging_receiver();
            let to = receiver.local_addr().unwrap();
            let (a, b) = (
                UdpSocket::bind("127.0.0.1:0").unwrap(),
                UdpSocket::bind("127.0.0.1:0").unwrap(),
            );
            let mut from_a = Vec::new();
            let mut from_b = Vec::new();
            let mut next = 0;
            for round in 0..12u32 {
                let (sender, list) = if round % 2 == 0 {
                    (&a, &mut from_a)
                } else {
                    (&b, &mut from_b)
                };
                let size = [1200, 64, 8000][round as usize % 3];
                let count = 1 + round * 5 % 70;
                let (datagrams, bytes) = run_of(next, count, size, size / 3 + 1);
                next += count;
                let mut out = udp::SendBatch::new();
                out.push_segmented(&bytes, size, to).unwrap();
                sender.send_many(&mut out).await.unwrap();
                let addr = sender.local_addr().unwrap();
                list.extend(datagrams.into_iter().map(|d| (d, addr)));
            }
            // Everything is queued: one sender's datagrams stay in its order.
            let mut batch = udp::RecvBatch::new(8, MAX_MERGED);
            let mut got = Vec::new();
            while got.len() < from_a.len() + from_b.len() {
                let n = receiver.recv_many(&mut batch).await.unwrap();
                assert_eq!((n, batch.iter().len()), (batch.len(), n));
                for (k, d) in batch.iter().enumerate() {
                    let (bytes, from) = d.unwrap();
                    assert_eq!(batch.get(k).unwrap().unwrap(), (bytes, from), "get({k})");
                    got.push((bytes.to_vec(), from));
                }
                assert!(batch.get(n).is_none());
            }
            let a_addr = a.local_addr().unwrap();
            let (got_a, got_b): (Vec<_>, Vec<_>) = got.into_iter().partition(|d| d.1 == a_addr);
            assert_eq!(got_a, from_a);
            assert_eq!(got_b, from_b);
        });
    }

    #[test]
    fn single_receives_are_refused_and_take_nothing() {
        run(|| async {
            let receiver = merging_receiver();
            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = receiver.local_addr().unwrap();
            sender.send_to(b"still here", to).await.unwrap();
            let mut buf = [0u8; 2048];
            let refused = [
                receiver.recv_from(&mut buf).await.map(|_| ()),
                receiver.try_recv_from(&mut buf).map(|_| ()),
                receiver.peek_from(&mut buf).await.map(|_| ()),
                receiver.try_recv(&mut buf).map(|_| ()),
            ];
            for error in refused {
                let error = error.unwrap_err();
                assert_eq!(error.kind(), ErrorKind::InvalidInput);
                assert!(error.to_string().contains("recv_many"), "{error}");
            }
            assert_eq!(
                receiver.peek_sender().await.unwrap(),
                sender.local_addr().unwrap()
            );
            // A batch of slots too small for a merged buffer: refused too.
            let mut small = udp::RecvBatch::new(4, 2048);
            let error = receiver.recv_many(&mut small).await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidInput);
            assert!(error.to_string().contains("MAX_MERGED"), "{error}");
            assert!(small.is_empty());
            // The datagram is still there, for a batch that can hold it, and
            // for a single receive once offload is off.
            let mut batch = udp::RecvBatch::new(4, MAX_MERGED);
            assert_eq!(receiver.try_recv_many(&mut batch).unwrap(), 1);
            assert_eq!(batch.get(0).unwrap().unwrap().0, b"still here");
        });
    }

    #[test]
    fn a_udp_io_splits_merged_buffers_and_refuses_single_receives() {
        run(|| async {
            let receiver = merging_receiver();
            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            let (to, from) = (receiver.local_addr().unwrap(), sender.local_addr().unwrap());
            let mut io = udp::UdpIo::new(receiver);
            let (datagrams, bytes) = run_of(0, 20, 500, 20);
            let mut out = udp::SendBatch::new();
            out.push_segmented(&bytes, 500, to).unwrap();
            sender.send_many(&mut out).await.unwrap();
            let error = io.recv_from(&mut [0u8; 2048]).await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidInput);
            let mut batch = udp::RecvBatch::new(1, MAX_MERGED);
            assert_eq!(io.recv_many(&mut batch).await.unwrap(), 20);
            for (got, want) in batch.iter().zip(&datagrams) {
                assert_eq!(got.unwrap(), (&want[..], from));
            }
        });
    }

    /// Why there is no turning it off: with `UDP_GRO` turned off, a
    /// buffer merged before comes whole and without its datagrams'
    /// length (std's socket, through libc, since cellio offers no off).
    #[test]
    fn the_kernel_drops_the_length_of_buffers_merged_before_the_option_went_off() {
        let receiver = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        set_gro(&receiver, 1);
        let sender = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        // Two datagrams of 1 000 bytes as one segmented message.
        let payload = [7u8; 2000];
        let segment: u16 = 1000;
        let mut control = [0u8; 64];
        let to = socket2::SockAddr::from(receiver.local_addr().unwrap());
        // SAFETY: `msg` points at `payload`, `control` and `to`, all alive
        // and of the lengths given, for the whole call; the control
        // message is written inside `control` before it.
        let sent = unsafe {
            let mut iov = libc::iovec {
                iov_base: payload.as_ptr().cast_mut().cast(),
                iov_len: payload.len(),
            };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = to.as_ptr().cast_mut().cast();
            msg.msg_namelen = to.len();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(2) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
            libc::sendmsg(sender.as_raw_fd(), &msg, 0)
        };
        assert_eq!(sent, 2000);
        set_gro(&receiver, 0);
        let mut buf = [0u8; 65_536];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(
            n, 2000,
            "both datagrams in one buffer, with nothing to split them by"
        );
    }

    /// `setsockopt(UDP_GRO, on)` on a std socket.
    fn set_gro(socket: &StdUdpSocket, on: libc::c_int) {
        set_int_option(socket.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, on);
    }

    #[test]
    fn from_std_notices_receive_offload_already_on() {
        run(|| async {
            let std = StdUdpSocket::bind("127.0.0.1:0").unwrap();
            set_gro(&std, 1);
            let socket = UdpSocket::from_std(std).unwrap();
            assert!(socket.receive_offload());
            let error = socket.try_recv_from(&mut [0u8; 64]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidInput);
            let plain = UdpSocket::from_std(StdUdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
            assert!(!plain.receive_offload());
        });
    }
}

#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
)))]
#[test]
fn without_recvmmsg_receive_offload_is_unsupported() {
    use std::io::ErrorKind;
    run(|| async {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let error = socket.enable_receive_offload().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unsupported);
        assert!(!socket.receive_offload());
    });
}

#[test]
fn off_by_default() {
    run(|| async {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(!socket.receive_offload());
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender
            .send_to(b"plain", socket.local_addr().unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = socket.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"plain");
    });
}
