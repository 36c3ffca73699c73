//! `into_std` at the descriptor limit: every socket type hands over its own
//! descriptor, so leaving the reactor needs no free one.
//!
//! Its own binary: it lowers the process's descriptor limit, which would
//! fail any test running beside it. Linux: it finds the open descriptors
//! in `/proc/self/fd`.
#![cfg(any(target_os = "linux", target_os = "android"))]

mod util;

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

use cellio_net::unix::{UnixDatagram, UnixStream};
use cellio_net::UdpSocket;
use util::{run, std_peer};

fn nofile() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit
}

fn set_nofile(limit: libc::rlimit) {
    // SAFETY: setrlimit reads one rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// Runs `f` with no descriptor free: the limit just above the highest one
/// open, the holes below it filled. Restores the limit before returning.
fn with_no_descriptor_left<T>(f: impl FnOnce() -> T) -> T {
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| {
            entry
                .ok()?
                .file_name()
                .to_str()?
                .parse::<libc::rlim_t>()
                .ok()
        })
        .max()
        .unwrap();
    let saved = nofile();
    set_nofile(libc::rlimit {
        rlim_cur: highest + 1,
        rlim_max: saved.rlim_max,
    });
    let mut fillers: Vec<OwnedFd> = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => fillers.push(file.into()),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
            Err(e) => {
                set_nofile(saved);
                panic!("filling the descriptor table: {e}");
            }
        }
    }
    let result = f();
    drop(fillers);
    set_nofile(saved);
    result
}

/// Each socket type's `into_std` succeeds with no descriptor free, and the
/// connection lives on through the `std` socket. (It used to `dup` the
/// descriptor: at the limit that failed with `EMFILE`, and the consumed
/// stream closed, so its peer read end of stream; found by a review.)
#[test]
fn into_std_needs_no_free_descriptor_and_keeps_the_connection() {
    run(|| async {
        let (tcp, mut tcp_peer) = std_peer().await?;
        let (unix, unix_peer) = UnixStream::pair()?;
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let (datagram, datagram_peer) = UnixDatagram::pair()?;
        let (tcp, unix, udp, datagram) = with_no_descriptor_left(|| {
            (
                tcp.into_std(),
                unix.into_std(),
                udp.into_std(),
                datagram.into_std(),
            )
        });
        let mut tcp = tcp.expect("TcpStream::into_std at the descriptor limit");
        let unix = unix.expect("UnixStream::into_std at the descriptor limit");
        let udp = udp.expect("UdpSocket::into_std at the descriptor limit");
        let datagram = datagram.expect("UnixDatagram::into_std at the descriptor limit");
        // The connections are alive, both ways, through the std sockets.
        tcp.set_nonblocking(false)?;
        tcp.set_read_timeout(Some(Duration::from_secs(2)))?;
        tcp.write_all(b"still here")?;
        let mut buf = [0u8; 16];
        tcp_peer.read_exact(&mut buf[..10])?;
        assert_eq!(&buf[..10], b"still here");
        tcp_peer.write_all(b"ok")?;
        tcp.read_exact(&mut buf[..2])?;
        assert_eq!(&buf[..2], b"ok");
        (&unix).write_all(b"unix")?;
        assert_eq!(unix_peer.recv(&mut buf).await?, 4);
        datagram.send(b"datagram")?;
        assert_eq!(datagram_peer.recv(&mut buf).await?, 8);
        assert!(udp.local_addr()?.port() != 0);
        io::Result::Ok(())
    })
    .unwrap();
}
