//! One runtime hosts an echo server and, in the same `block_on`, 1,000
//! concurrent client connections (one task each), each sending 20 messages
//! of varying sizes and checking every echoed byte.

mod util;

use std::io;
use std::time::{Duration, Instant};

use cellio_net::TcpStream;
use cellio_runtime::spawn;
use util::{run_within, spawn_echo_server};

const CLIENTS: usize = 1_000;
const MESSAGES: usize = 20;
/// Two sockets per connection, a listener, and headroom for the runtime,
/// the test harness and stdio.
const FDS_NEEDED: libc::rlim_t = 2 * CLIENTS as libc::rlim_t + 200;

/// Raises the soft `RLIMIT_NOFILE` to at least `need`. Returns `false` if
/// the hard limit does not allow it.
fn ensure_fd_limit(need: libc::rlim_t) -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through the pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur >= need {
        return true;
    }
    if lim.rlim_max < need {
        return false;
    }
    lim.rlim_cur = need;
    // SAFETY: setrlimit reads one rlimit through the pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 }
}

/// The bytes of message `msg` of client `client`: sizes from 1 byte to
/// 4 KiB, contents unique per (client, message, offset).
fn message(client: usize, msg: usize) -> Vec<u8> {
    let size = 1 + (client * 7_919 + msg * 104_729) % 4_096;
    (0..size)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add((client * 131 + msg * 17) as u32) as u8
        })
        .collect()
}

async fn client(addr: std::net::SocketAddr, id: usize) -> io::Result<usize> {
    let stream = TcpStream::connect(addr).await?;
    let mut echoed = 0;
    let mut back = Vec::new();
    for msg in 0..MESSAGES {
        let out = message(id, msg);
        back.resize(out.len(), 0);
        let (sent, received) =
            util::join2(stream.send_all(&out), stream.recv_exact(&mut back)).await;
        sent?;
        received?;
        if back != out {
            return Err(io::Error::other(format!(
                "client {id} message {msg}: echo differs"
            )));
        }
        echoed += out.len();
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut tail = [0u8; 1];
    let n = stream.recv(&mut tail).await?;
    if n != 0 {
        return Err(io::Error::other(format!(
            "client {id}: extra bytes after the echo"
        )));
    }
    Ok(echoed)
}

#[test]
fn a_thousand_concurrent_echo_clients_on_one_runtime() {
    if !ensure_fd_limit(FDS_NEEDED) {
        eprintln!(
            "SKIPPED a_thousand_concurrent_echo_clients_on_one_runtime: \
             RLIMIT_NOFILE hard limit is below {FDS_NEEDED}"
        );
        return;
    }
    let started = Instant::now();
    let total = run_within(Duration::from_secs(60), || async {
        let addr = spawn_echo_server()?;
        let handles: Vec<_> = (0..CLIENTS).map(|id| spawn(client(addr, id))).collect();
        let mut total = 0usize;
        let mut failures = Vec::new();
        for (id, handle) in handles.into_iter().enumerate() {
            match handle.await {
                Ok(Ok(bytes)) => total += bytes,
                Ok(Err(e)) => failures.push(format!("client {id}: {e}")),
                Err(e) => failures.push(format!("client {id} task: {e}")),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {CLIENTS} clients failed, first: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        io::Result::Ok(total)
    })
    .unwrap();
    let expected: usize = (0..CLIENTS)
        .flat_map(|c| (0..MESSAGES).map(move |m| message(c, m).len()))
        .sum();
    assert_eq!(total, expected);
    eprintln!(
        "{CLIENTS} clients x {MESSAGES} messages ({} MiB each way) in {:?}",
        expected >> 20,
        started.elapsed()
    );
}
