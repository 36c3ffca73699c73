//! IP multicast on a [`UdpSocket`]: joining and leaving groups, and the
//! options of what it sends to them. The same methods as `std`'s and
//! tokio's `UdpSocket` (and `set_multicast_if_v4`, which they lack), as
//! plain socket options: nothing here touches the socket's cells.
//!
//! A socket receives a group's datagrams once it has joined the group on
//! an interface and is bound to the group's port (bound to the wildcard
//! address, or to the group address itself on Linux).
//!
//! On Linux it may receive them without having joined: membership is the
//! host's (`IP_MULTICAST_ALL`), which `join_multicast_v4`'s docs explain.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use socket2::SockRef;

use crate::udp::UdpSocket;

impl UdpSocket {
    /// Joins the IPv4 multicast group `group` on the interface whose
    /// address is `interface` (`Ipv4Addr::UNSPECIFIED`: the kernel picks
    /// one by its routes) (`IP_ADD_MEMBERSHIP`).
    ///
    /// Fails with `InvalidInput` if `group` is not a multicast address
    /// (the kernel says `EINVAL`), and `AddrInUse` if the socket already
    /// joined it there.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    ///
    /// # cellio_runtime::Runtime::new().unwrap().block_on(async {
    /// let group = Ipv4Addr::new(239, 255, 70, 1);
    /// let listener = cellio_net::UdpSocket::bind("0.0.0.0:0")?;
    /// listener.join_multicast_v4(group, Ipv4Addr::LOCALHOST)?;
    ///
    /// let sender = cellio_net::UdpSocket::bind("127.0.0.1:0")?;
    /// sender.set_multicast_if_v4(Ipv4Addr::LOCALHOST)?; // out through loopback
    /// let port = listener.local_addr()?.port();
    /// sender.send_to(b"to the group", (group, port).into()).await?;
    ///
    /// let mut buf = [0u8; 64];
    /// let (n, _) = listener.recv_from(&mut buf).await?;
    /// assert_eq!(&buf[..n], b"to the group");
    /// # std::io::Result::Ok(()) }).unwrap();
    /// ```
    ///
    /// # On Linux, membership is the host's
    ///
    /// While any socket of the host (another program's too) is a member of
    /// a group on an interface, every socket bound to the port receives the
    /// group's datagrams that arrive there, joined or not
    /// (`IP_MULTICAST_ALL`, on by default; `IPV6_MULTICAST_ALL` for IPv6,
    /// since Linux 4.20). So a socket bound to the wildcard address gets
    /// the datagrams sent to its port for every group any socket of the
    /// host joined; binding to the group address narrows that to one
    /// group, but still needs no membership; and
    /// [`leave_multicast_v4`](Self::leave_multicast_v4) stops the group's
    /// datagrams only once no socket of the host is a member there any
    /// more. To receive only the groups a socket joined itself, turn the
    /// option off through `socket2` (with its `all` feature):
    ///
    /// ```
    /// # cellio_runtime::Runtime::new().unwrap().block_on(async {
    /// let socket = cellio_net::UdpSocket::bind("0.0.0.0:0")?;
    /// socket2::SockRef::from(&socket).set_multicast_all_v4(false)?;
    /// # std::io::Result::Ok(()) }).unwrap();
    /// ```
    pub fn join_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        SockRef::from(self).join_multicast_v4(&group, &interface)
    }

    /// Leaves an IPv4 group joined with
    /// [`join_multicast_v4`](Self::join_multicast_v4) on `interface`
    /// (`IP_DROP_MEMBERSHIP`). Closing the socket leaves every group.
    ///
    /// On Linux the socket still receives the group's datagrams while
    /// another socket of the host is a member on that interface, unless
    /// it turned `IP_MULTICAST_ALL` off (see
    /// [`join_multicast_v4`](Self::join_multicast_v4)).
    pub fn leave_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        SockRef::from(self).leave_multicast_v4(&group, &interface)
    }

    /// Joins the IPv6 multicast group `group` on the interface with index
    /// `interface` (0: the kernel picks one) (`IPV6_ADD_MEMBERSHIP`).
    ///
    /// On Linux the membership is the host's, as for IPv4 (see
    /// [`join_multicast_v4`](Self::join_multicast_v4)): the option is
    /// `IPV6_MULTICAST_ALL`, socket2's `set_multicast_all_v6`.
    pub fn join_multicast_v6(&self, group: &Ipv6Addr, interface: u32) -> io::Result<()> {
        SockRef::from(self).join_multicast_v6(group, interface)
    }

    /// Leaves an IPv6 group joined with
    /// [`join_multicast_v6`](Self::join_multicast_v6) (`IPV6_DROP_MEMBERSHIP`).
    pub fn leave_multicast_v6(&self, group: &Ipv6Addr, interface: u32) -> io::Result<()> {
        SockRef::from(self).leave_multicast_v6(group, interface)
    }

    /// Sets `IP_MULTICAST_LOOP`: whether this host's own members of a group
    /// receive what this socket sends to it out through a network interface
    /// (on by default). Datagrams sent out through loopback come back in
    /// through it whatever this says.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        SockRef::from(self).set_multicast_loop_v4(on)
    }

    /// `IP_MULTICAST_LOOP`.
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        SockRef::from(self).multicast_loop_v4()
    }

    /// Sets `IPV6_MULTICAST_LOOP`, the IPv6 counterpart of
    /// [`set_multicast_loop_v4`](Self::set_multicast_loop_v4).
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        SockRef::from(self).set_multicast_loop_v6(on)
    }

    /// `IPV6_MULTICAST_LOOP`.
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        SockRef::from(self).multicast_loop_v6()
    }

    /// Sets `IP_MULTICAST_TTL`: how many routers a datagram sent to a
    /// group may cross (default 1: this network only; 0: this host only).
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        SockRef::from(self).set_multicast_ttl_v4(ttl)
    }

    /// `IP_MULTICAST_TTL`.
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        SockRef::from(self).multicast_ttl_v4()
    }

    /// Sets `IP_MULTICAST_IF`: the interface (by its address) that
    /// datagrams to a group leave through, instead of the one the routes
    /// pick. `Ipv4Addr::LOCALHOST` keeps them on this host.
    pub fn set_multicast_if_v4(&self, interface: Ipv4Addr) -> io::Result<()> {
        SockRef::from(self).set_multicast_if_v4(&interface)
    }

    /// `IP_MULTICAST_IF`.
    pub fn multicast_if_v4(&self) -> io::Result<Ipv4Addr> {
        SockRef::from(self).multicast_if_v4()
    }
}
