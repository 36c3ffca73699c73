//! Socket addresses as a send hands them to the kernel: a pointer and a
//! length ([`RawSockAddr`]), from socket2's `SockAddr` (Unix paths) or
//! from [`IpSockAddr`], an IP address in the 28 bytes of a `sockaddr_in6`.
//!
//! `SockAddr` holds a whole `sockaddr_storage` (128 bytes, zeroed when
//! built from a `SocketAddr`); a UDP send builds its destination for every
//! datagram, and a `SendBatch` keeps one per queued datagram, so the
//! smaller form saves zeroing and moving 100 bytes per datagram (callgrind:
//! about 35 instructions a datagram on the batch echo, 7 on the futures
//! echo).
//!
//! Both are `pub` in this private module only because the sealed
//! `DatagramSocket` trait names them; nothing outside the crate reaches
//! them.
//!
//! # Invariants
//!
//! * `as_ptr()` points at `len()` initialised bytes of one socket address
//!   of the family its first field names, valid while the value lives.

use std::net::SocketAddr;

use socket2::SockAddr;

/// A socket address the kernel can read: `len()` bytes at `as_ptr()`.
pub trait RawSockAddr {
    /// The address, as `sendto(2)` and a `msghdr` take it.
    fn as_ptr(&self) -> *const libc::sockaddr;
    /// How many bytes of it the kernel reads.
    fn len(&self) -> libc::socklen_t;
}

impl RawSockAddr for SockAddr {
    #[inline(always)]
    fn as_ptr(&self) -> *const libc::sockaddr {
        SockAddr::as_ptr(self).cast()
    }

    #[inline(always)]
    fn len(&self) -> libc::socklen_t {
        SockAddr::len(self)
    }
}

/// An IPv4 or IPv6 socket address laid out for the kernel, in the room
/// of the larger (`sockaddr_in6`, 28 bytes).
#[derive(Clone, Copy)]
pub struct IpSockAddr {
    storage: IpStorage,
    len: libc::socklen_t,
}

/// A `sockaddr_in` or a `sockaddr_in6`; `IpSockAddr::len` says which.
#[repr(C)]
#[derive(Clone, Copy)]
union IpStorage {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl IpSockAddr {
    /// `addr` as the kernel reads it (as socket2's `SockAddr::from` lays
    /// it out, field by field, without zeroing 128 bytes first).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[inline]
    pub(crate) fn new(addr: &SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(addr) => Self {
                storage: IpStorage {
                    v4: libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: addr.port().to_be(),
                        sin_addr: libc::in_addr {
                            s_addr: u32::from_ne_bytes(addr.ip().octets()),
                        },
                        sin_zero: [0; 8],
                    },
                },
                len: size_of::<libc::sockaddr_in>() as libc::socklen_t,
            },
            SocketAddr::V6(addr) => Self {
                storage: IpStorage {
                    v6: libc::sockaddr_in6 {
                        sin6_family: libc::AF_INET6 as libc::sa_family_t,
                        sin6_port: addr.port().to_be(),
                        sin6_flowinfo: addr.flowinfo(),
                        sin6_addr: libc::in6_addr {
                            s6_addr: addr.ip().octets(),
                        },
                        sin6_scope_id: addr.scope_id(),
                    },
                },
                len: size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            },
        }
    }

    /// `addr` as the kernel reads it: socket2 lays it out (with the
    /// fields BSDs add), and the first `len` bytes are kept.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub(crate) fn new(addr: &SocketAddr) -> Self {
        let full = SockAddr::from(*addr);
        // SAFETY: all-zero is a valid `sockaddr_in6` (integers).
        let mut storage: IpStorage = unsafe { std::mem::zeroed() };
        let len = full.len();
        // `SockAddr::from` of an IP address writes a `sockaddr_in` or a
        // `sockaddr_in6` and sets `len` to its size, which `IpStorage`
        // holds; the two do not overlap.
        // SAFETY: so the copy reads and writes `len` valid bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                full.as_ptr().cast::<u8>(),
                std::ptr::from_mut(&mut storage).cast::<u8>(),
                len as usize,
            );
        }
        Self { storage, len }
    }
}

impl RawSockAddr for IpSockAddr {
    #[inline(always)]
    fn as_ptr(&self) -> *const libc::sockaddr {
        std::ptr::from_ref(&self.storage).cast()
    }

    #[inline(always)]
    fn len(&self) -> libc::socklen_t {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes the kernel would read.
    fn bytes(addr: &impl RawSockAddr) -> Vec<u8> {
        let len = addr.len() as usize;
        // SAFETY: `as_ptr` points at `len` initialised bytes (the module's
        // invariant), alive while `addr` is borrowed.
        unsafe { std::slice::from_raw_parts(addr.as_ptr().cast::<u8>(), len).to_vec() }
    }

    #[test]
    fn the_same_bytes_as_socket2_lays_out() {
        let addrs: [SocketAddr; 4] = [
            "127.0.0.1:7001".parse().unwrap(),
            "10.1.2.3:65535".parse().unwrap(),
            "[::1]:443".parse().unwrap(),
            SocketAddr::V6(std::net::SocketAddrV6::new(
                "fe80::1:2:3".parse().unwrap(),
                9,
                0x12345,
                7,
            )),
        ];
        for addr in addrs {
            assert_eq!(
                bytes(&IpSockAddr::new(&addr)),
                bytes(&SockAddr::from(addr)),
                "{addr}"
            );
        }
    }
}
