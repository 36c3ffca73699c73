//! UDP multicast: a socket that joined a group on the loopback interface
//! receives what is sent to the group, and stops when it leaves (unless,
//! on Linux, another socket of the host is still a member); the
//! sender's options (loop, TTL, interface) read back what was set (what
//! loop does cannot be seen through loopback); joining
//! something that is not a group, or a group twice, is an error.

mod util;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use cellio_net::UdpSocket;
use util::run;

/// Administratively scoped groups, one per test (tests run at once).
fn group(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(239, 255, 70, n)
}

/// A socket on a fresh port that joined `group` on loopback, and a sender
/// whose group datagrams leave through loopback.
fn member_and_sender(group: Ipv4Addr) -> (UdpSocket, UdpSocket, SocketAddr) {
    let member = UdpSocket::bind("0.0.0.0:0").unwrap();
    member
        .join_multicast_v4(group, Ipv4Addr::LOCALHOST)
        .unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.set_multicast_if_v4(Ipv4Addr::LOCALHOST).unwrap();
    let target = SocketAddr::from((group, member.local_addr().unwrap().port()));
    (member, sender, target)
}

#[test]
fn a_member_receives_what_is_sent_to_the_group_until_it_leaves() {
    run(|| async {
        let group = group(1);
        let (member, sender, target) = member_and_sender(group);
        let mut buf = [0u8; 64];
        for i in 0..5u8 {
            sender.send_to(&[i; 10], target).await.unwrap();
            let (n, from) = member.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &[i; 10]);
            assert_eq!(from, sender.local_addr().unwrap());
        }
        member
            .leave_multicast_v4(group, Ipv4Addr::LOCALHOST)
            .unwrap();
        sender.send_to(b"after leaving", target).await.unwrap();
        // Loopback delivers within the send: nothing is queued for it.
        // (Only because no other socket of the host is a member of this
        // group: see the next test.)
        assert_eq!(
            member.try_recv_from(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        // Leaving again: not a member.
        assert!(member
            .leave_multicast_v4(group, Ipv4Addr::LOCALHOST)
            .is_err());
    });
}

/// On Linux membership is the host's: while any socket of the host is a
/// member of a group on an interface, a socket bound to the port receives
/// the group's datagrams there though it never joined, or left
/// (`IP_MULTICAST_ALL`, on by default), as the module docs say. With the
/// option off it receives only what it joined itself.
#[cfg(target_os = "linux")]
#[test]
fn a_socket_receives_a_groups_datagrams_while_any_socket_of_the_host_is_a_member() {
    run(|| async {
        let group = group(4);
        // Another socket of the host (another program's, say), on another
        // port, joins.
        let other = UdpSocket::bind("0.0.0.0:0").unwrap();
        other.join_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap();
        let (left, sender, _) = member_and_sender(group);
        left.leave_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap();
        let never_joined = UdpSocket::bind("0.0.0.0:0").unwrap();
        let mut buf = [0u8; 64];
        for socket in [&left, &never_joined] {
            let target = SocketAddr::from((group, socket.local_addr().unwrap().port()));
            sender.send_to(b"to the group", target).await.unwrap();
            // Loopback delivers within the send.
            let (n, _) = socket.try_recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"to the group");
        }

        // IP_MULTICAST_ALL off: only the socket's own groups.
        socket2::SockRef::from(&never_joined)
            .set_multicast_all_v4(false)
            .unwrap();
        let target = SocketAddr::from((group, never_joined.local_addr().unwrap().port()));
        sender.send_to(b"to the group", target).await.unwrap();
        assert_eq!(
            never_joined.try_recv_from(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        never_joined
            .join_multicast_v4(group, Ipv4Addr::LOCALHOST)
            .unwrap();
        sender.send_to(b"joined now", target).await.unwrap();
        let (n, _) = never_joined.try_recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"joined now");
    });
}

#[test]
fn the_senders_options_read_back() {
    run(|| async {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(socket.multicast_ttl_v4().unwrap(), 1, "this network only");
        socket.set_multicast_ttl_v4(8).unwrap();
        assert_eq!(socket.multicast_ttl_v4().unwrap(), 8);
        socket.set_multicast_if_v4(Ipv4Addr::LOCALHOST).unwrap();
        assert_eq!(socket.multicast_if_v4().unwrap(), Ipv4Addr::LOCALHOST);
        // (Loop cannot be seen working here: a datagram sent out through
        // loopback comes back in through it whatever the option says.)
        assert!(socket.multicast_loop_v4().unwrap(), "on by default");
        socket.set_multicast_loop_v4(false).unwrap();
        assert!(!socket.multicast_loop_v4().unwrap());
    });
}

/// (Skipped where there is no IPv6 loopback.)
#[test]
fn the_senders_ipv6_loop_option_reads_back() {
    if !util::has_ipv6_loopback() {
        return;
    }
    run(|| async {
        let v6 = UdpSocket::bind("[::1]:0").unwrap();
        assert!(v6.multicast_loop_v6().unwrap(), "on by default");
        v6.set_multicast_loop_v6(false).unwrap();
        assert!(!v6.multicast_loop_v6().unwrap());
    });
}

#[test]
fn joining_what_is_not_a_group_or_a_group_twice_fails() {
    run(|| async {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        let not_a_group = socket
            .join_multicast_v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::LOCALHOST)
            .unwrap_err();
        assert_eq!(not_a_group.kind(), ErrorKind::InvalidInput, "{not_a_group}");
        socket
            .join_multicast_v4(group(3), Ipv4Addr::LOCALHOST)
            .unwrap();
        let twice = socket
            .join_multicast_v4(group(3), Ipv4Addr::LOCALHOST)
            .unwrap_err();
        assert_eq!(twice.kind(), ErrorKind::AddrInUse, "{twice}");
    });
}

#[test]
fn ipv6_groups_are_joined_and_left() {
    run(|| async {
        // Joining needs no route (sending would, and this machine's
        // loopback has none for IPv6 multicast).
        let socket = UdpSocket::bind("[::]:0").unwrap();
        let group: Ipv6Addr = "ff12::7001".parse().unwrap();
        socket.join_multicast_v6(&group, 1).unwrap();
        assert!(
            socket.join_multicast_v6(&group, 1).is_err(),
            "joined already"
        );
        socket.leave_multicast_v6(&group, 1).unwrap();
        let not_a_group: Ipv6Addr = "fd00::1".parse().unwrap();
        assert!(socket.join_multicast_v6(&not_a_group, 1).is_err());
    });
}
