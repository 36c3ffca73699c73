//! `UnixDatagramIo`: a `UnixDatagram` one task drives alone, as `UdpIo`
//! is for UDP: an echo through a path with the cells held and confined, a
//! parked receive, a send that waits for a full peer, the socket's own
//! futures refused while a direction is held, and `into_inner`.

mod util;

use std::future::poll_fn;
use std::io;
use std::pin::pin;
use std::task::Poll;

use cellio_net::unix::{UnixDatagram, UnixDatagramIo};
use cellio_reactor::CellError;
use util::{fill_datagram_queue, join2, poll_once, recv_numbered, run, SocketDir};

#[test]
fn an_echo_through_a_path_holds_and_confines_the_cells() {
    let dir = SocketDir::new();
    let (server_path, client_path) = (dir.path("server.sock"), dir.path("client.sock"));
    run(move || async move {
        let mut server = UnixDatagramIo::new(UnixDatagram::bind(&server_path)?);
        let client = UnixDatagram::bind(&client_path)?;
        assert!(!server.is_confined(), "nothing reserved yet");
        let mut buf = [0u8; 64];
        for round in 0..50u8 {
            let msg = [round; 33];
            // The client sends after the server's receive parks, in odd
            // rounds; before it, in even ones.
            let (n, from) = if round % 2 == 0 {
                client.send_to(&msg, &server_path).await?;
                server.recv_from(&mut buf).await?
            } else {
                let mut recv = pin!(server.recv_from(&mut buf));
                assert!(poll_once(recv.as_mut()).await.is_pending());
                client.send_to(&msg, &server_path).await?;
                recv.await?
            };
            assert_eq!(from.as_pathname(), Some(client_path.as_path()));
            let reply = buf;
            server
                .send_to(&reply[..n], from.as_pathname().unwrap())
                .await?;
            let mut back = [0u8; 64];
            let m = client.recv(&mut back).await?;
            assert_eq!(back[..m], msg[..], "round {round}");
        }
        assert!(server.is_confined());
        let stats = server.get_ref().stats();
        assert_eq!(stats.recv_parked, 25, "{stats:?}");
        assert_eq!(stats.recv_sync, 25, "{stats:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_held_direction_refuses_the_sockets_own_futures_until_into_inner() {
    run(|| async {
        let (a, b) = UnixDatagram::pair()?;
        let mut io = UnixDatagramIo::new(b);
        let mut buf = [0u8; 8];
        assert!(poll_fn(|cx| Poll::Ready(io.poll_recv(cx, &mut buf)))
            .await
            .is_pending());
        let err = io.get_ref().recv(&mut buf).await.unwrap_err();
        assert_eq!(CellError::of(&err), Some(CellError::Busy), "{err:?}");
        a.send(b"kept").await?;
        let b = io.into_inner(); // the parked receive is abandoned, nothing lost
        let n = b.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"kept");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_send_to_a_full_peer_waits_and_nothing_is_lost() {
    run(|| async {
        let (a, b) = UnixDatagram::pair()?;
        let sent = fill_datagram_queue(&a)?;
        let mut a = UnixDatagramIo::new(a);
        let next = sent.to_le_bytes();
        let (sent_late, received) = join2(a.send(&next), recv_numbered(&b, sent)).await;
        assert_eq!(sent_late?, 4);
        received?;
        assert_eq!(a.get_ref().stats().send_parked, 1);
        io::Result::Ok(())
    })
    .unwrap();
}
