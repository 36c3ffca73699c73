//! `UnixIo`: a `UnixStream` behind poll methods and the `futures-io`
//! traits, as `TcpIo` is for TCP: round trips through the traits, halves
//! moving a large transfer both ways at once, confinement on the stream's
//! worker, the one-operation-per-direction rule, and `into_inner`.

mod util;

use std::io;

use cellio_net::unix::{UnixIo, UnixStream};
use cellio_reactor::CellError;
use futures_util::future::try_join;
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use util::{pattern, run};

#[test]
fn the_futures_io_traits_round_trip_and_close_sends_end_of_stream() {
    run(|| async {
        let (a, b) = UnixStream::pair()?;
        let (mut a, mut b) = (UnixIo::new(a), UnixIo::new(b));
        for size in [1usize, 100, 4096, 100_000] {
            let msg: Vec<u8> = (0..size).map(|i| pattern(i + size)).collect();
            let mut back = vec![0u8; size];
            // b echoes what a sends; a sends and reads at once through its
            // own halves, so a large message cannot deadlock. (With
            // `AsyncReadExt` in scope, `a.split()` would be that trait's
            // by-value split: method resolution tries it first.)
            let (mut a_rx, mut a_tx) = UnixIo::split(&mut a);
            try_join(
                async {
                    a_tx.send_all(&msg).await?;
                    let mut got = vec![0u8; size];
                    b.read_exact(&mut got).await?;
                    b.write_all(&got).await
                },
                a_rx.read_exact(&mut back),
            )
            .await?;
            assert!(back == msg, "{size} bytes came back different");
        }
        a.close().await?;
        let mut rest = Vec::new();
        assert_eq!(b.read_to_end(&mut rest).await?, 0);
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn halves_move_a_large_transfer_both_ways_byte_exact() {
    const SIZE: usize = 4 << 20;
    run(|| async {
        let (a, b) = UnixStream::pair()?;
        a.set_send_buffer_size(16 * 1024)?;
        b.set_send_buffer_size(16 * 1024)?;
        let (mut a, mut b) = (UnixIo::new(a), UnixIo::new(b));
        let (mut a_rx, mut a_tx) = UnixIo::split(&mut a);
        let (mut b_rx, mut b_tx) = UnixIo::split(&mut b);
        let to_b: Vec<u8> = (0..SIZE).map(pattern).collect();
        let to_a: Vec<u8> = (0..SIZE).map(|i| pattern(i + 11)).collect();
        let (mut at_a, mut at_b) = (vec![0u8; SIZE], vec![0u8; SIZE]);
        futures_util::future::try_join4(
            a_tx.send_all(&to_b),
            b_tx.send_all(&to_a),
            a_rx.read_exact(&mut at_a),
            b_rx.read_exact(&mut at_b),
        )
        .await?;
        assert!(at_b == to_b, "a to b differs");
        assert!(at_a == to_a, "b to a differs");
        let stats = a.get_ref().stats();
        assert!(stats.send_parked > 0, "no send waited: {stats:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn on_its_worker_a_unix_io_is_confined_and_holds_its_cells() {
    run(|| async {
        let (a, b) = UnixStream::pair()?;
        let mut io = UnixIo::new(a);
        assert!(
            !io.is_confined(),
            "nothing reserved before the first operation"
        );
        b.send_all(b"ping").await?;
        let mut buf = [0u8; 4];
        io.read_exact(&mut buf).await?;
        assert!(io.is_confined());
        // The UnixIo holds the receive cell: the stream's own receive future
        // is refused instead of racing it.
        let err = io.get_ref().recv(&mut buf).await.unwrap_err();
        assert_eq!(CellError::of(&err), Some(CellError::Busy), "{err:?}");
        // into_inner gives the cells back.
        let a = io.into_inner();
        b.send_all(b"pong").await?;
        a.recv_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        io::Result::Ok(())
    })
    .unwrap();
}
