//! `UnixDatagram` while the process is out of descriptors: a receive needs
//! none, not even for the first unnamed sender the process sees. Alone in
//! its binary: it lowers `RLIMIT_NOFILE`, and the unnamed address is made
//! once per process.

mod util;

use std::io;

use cellio_net::unix::UnixDatagram;
use util::{run, SocketDir};

/// The first unnamed sender a process sees, received while the process is
/// out of descriptors: its datagram is delivered. (Receiving it made a
/// socket for the unnamed address after the datagram was dequeued, and
/// with `EMFILE` the datagram was lost, the receive failing with "Too many
/// open files"; found by a review.)
#[test]
fn the_first_unnamed_sender_out_of_descriptors_loses_no_datagram() {
    let dir = SocketDir::new();
    let path = dir.path("server.sock");
    run(move || async move {
        let server = UnixDatagram::bind(&path)?;
        let client = std::os::unix::net::UnixDatagram::unbound()?;
        client.send_to(b"one", &path)?;
        client.send_to(b"two", &path)?;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid `rlimit` for the call to write.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        let lowest_free = {
            let probe = std::fs::File::open("/dev/null")?;
            std::os::fd::AsRawFd::as_raw_fd(&probe) as libc::rlim_t
        };
        // Out of descriptors: the soft limit at the lowest free one.
        let tight = libc::rlimit {
            rlim_cur: lowest_free,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `tight` is a valid `rlimit` for the call to read.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &tight) }, 0);
        let mut buf = [0u8; 8];
        let first = server
            .try_recv_from(&mut buf)
            .map(|(n, from)| (buf[..n].to_vec(), from));
        // SAFETY: `limit` is a valid `rlimit` for the call to read.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        let (bytes, from) = first.expect("\"one\" is delivered");
        assert_eq!((&bytes[..], from.is_unnamed()), (&b"one"[..], true));
        let (n, _) = server.try_recv_from(&mut buf)?;
        assert_eq!(&buf[..n], b"two");
        io::Result::Ok(())
    })
    .unwrap();
}
