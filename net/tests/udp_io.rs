//! `UdpIo`: a UDP socket driven through `&mut self`, keeping its cells
//! reserved between datagrams. Echo through both paths with confined
//! cells, an unconfined socket of another worker's reactor, the socket's
//! own futures refused while it holds the cells, giving them back with
//! nothing lost, and datagrams that do not fit.

mod util;

use std::io;

use cellio_net::udp::{UdpIo, UdpSocket};
use cellio_reactor::CellError;
use cellio_runtime::{spawn_local, spawn_local_on};
use util::{pattern, poll_once, run, run_with};

/// Echoes through a `UdpIo` until a datagram of 0 bytes arrives; returns
/// whether its cells were confined, and the socket.
async fn echo(socket: UdpSocket) -> io::Result<(bool, UdpSocket)> {
    let mut io = UdpIo::new(socket);
    let mut buf = [0u8; 256];
    let mut confined = true;
    loop {
        let (n, from) = io.recv_from(&mut buf).await?;
        confined &= io.is_confined();
        if n == 0 {
            return Ok((confined, io.into_inner()));
        }
        io.send_to(&buf[..n], from).await?;
    }
}

/// `rounds` of: one datagram alone, then two back to back; checked.
async fn client_rounds(client: &UdpSocket, rounds: usize) -> io::Result<()> {
    let mut back = [0u8; 256];
    for round in 0..rounds {
        for burst in [1usize, 2] {
            let msgs: Vec<Vec<u8>> = (0..burst)
                .map(|k| (0..64).map(|i| pattern(round * 131 + k * 17 + i)).collect())
                .collect();
            for msg in &msgs {
                client.send(msg).await?;
            }
            for msg in &msgs {
                let n = client.recv(&mut back).await?;
                assert_eq!(&back[..n], &msg[..], "round {round}");
            }
        }
    }
    Ok(())
}

#[test]
fn echoes_through_both_paths_with_its_cells_confined_on_its_own_worker() {
    run(|| async {
        let server = UdpSocket::bind("127.0.0.1:0")?;
        let to = server.local_addr()?;
        let task = spawn_local(echo(server));
        let client = UdpSocket::bind("127.0.0.1:0")?;
        client.connect(to)?;
        client_rounds(&client, 100).await?;
        client.send(&[]).await?;
        let (confined, server) = task.await.expect("echo task")?;
        assert!(
            confined,
            "the socket's own worker did not confine its cells"
        );
        let stats = server.stats();
        // 300 datagrams and the empty one: every receive counted once, and
        // both paths taken (the second of two back to back is queued).
        assert_eq!(stats.recv_sync + stats.recv_parked, 301, "{stats:?}");
        assert!(stats.recv_parked >= 100, "{stats:?}");
        assert!(stats.recv_sync >= 1, "{stats:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_socket_of_another_workers_reactor_is_served_without_confinement() {
    run_with(cellio_runtime::Builder::new().workers(2), || async {
        // Bound on worker 0, served on worker 1.
        let server = UdpSocket::bind("127.0.0.1:0")?;
        let to = server.local_addr()?;
        let task = spawn_local_on(1, move || echo(server));
        let client = UdpSocket::bind("127.0.0.1:0")?;
        client.connect(to)?;
        client_rounds(&client, 50).await?;
        client.send(&[]).await?;
        let (confined, _) = task.await.expect("echo task")?;
        assert!(
            !confined,
            "confined on a thread that does not turn its reactor"
        );
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn while_held_the_sockets_futures_are_busy_and_into_inner_loses_nothing() {
    run(|| async {
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0")?,
            UdpSocket::bind("127.0.0.1:0")?,
        );
        let mut io = UdpIo::new(b);
        let mut buf = [0u8; 32];
        {
            // Parks: nothing queued yet.
            let mut parked = Box::pin(io.recv_from(&mut buf));
            assert!(poll_once(parked.as_mut()).await.is_pending());
        }
        // The receive cell is still held by the UdpIo.
        let mut other = [0u8; 32];
        let err = io.get_ref().recv_from(&mut other).await.unwrap_err();
        assert_eq!(CellError::of(&err), Some(CellError::Busy), "{err}");
        // A datagram arrives while nobody waits; giving the socket back
        // loses nothing: its futures receive it.
        a.send_to(b"kept", io.get_ref().local_addr()?).await?;
        let b = io.into_inner();
        let (n, from) = b.recv_from(&mut buf).await?;
        assert_eq!((&buf[..n], from), (&b"kept"[..], a.local_addr()?));
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_datagram_longer_than_the_buffer_is_an_error_here_too() {
    run(|| async {
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0")?,
            UdpSocket::bind("127.0.0.1:0")?,
        );
        let to = b.local_addr()?;
        b.connect(a.local_addr()?)?;
        let mut io = UdpIo::new(b);
        a.send_to(&[7u8; 40], to).await?;
        a.send_to(b"fits", to).await?;
        let mut small = [0u8; 8];
        let err = io.recv(&mut small).await.expect_err("40 bytes into 8");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(small, [7u8; 8]);
        let n = io.recv(&mut small).await?;
        assert_eq!(&small[..n], b"fits");
        // And sends, connected and not.
        assert_eq!(io.send(b"back").await?, 4);
        assert_eq!(io.send_to(b"to", a.local_addr()?).await?, 2);
        let mut got = [0u8; 8];
        let n = a.recv(&mut got).await?;
        assert_eq!(&got[..n], b"back");
        let n = a.recv(&mut got).await?;
        assert_eq!(&got[..n], b"to");
        io::Result::Ok(())
    })
    .unwrap();
}
