//! `signal::Signal` and `signal::ctrl_c`: a delivery completes a receive,
//! deliveries in between coalesce, every `Signal` gets every delivery, a
//! dropped receive loses none, a worker's reactor wakes for them, and bad
//! signal numbers are refused with an error; `poll_recv` does what `recv`
//! does, and gives way to it.
//!
//! Each test listens for a signal of its own (the tests of this file share
//! one process, and a delivery goes to every listener in it).

mod util;

use std::io;
use std::pin::pin;
use std::time::Duration;

use cellio_net::signal::{ctrl_c, Signal, SIGINT, SIGUSR1, SIGUSR2};
use signal_hook::low_level::raise;
use util::{poll_once, run, run_with};

/// Raises `signal` from a plain thread after `delay`.
fn raise_later(signal: libc::c_int, delay: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        raise(signal).unwrap();
    })
}

#[test]
fn a_delivery_completes_a_parked_receive() {
    run(|| async {
        let mut signal = Signal::new(SIGUSR1)?;
        assert_eq!(signal.number(), SIGUSR1);
        {
            let mut recv = pin!(signal.recv());
            assert!(poll_once(recv.as_mut()).await.is_pending(), "nothing yet");
            let raiser = raise_later(SIGUSR1, Duration::from_millis(20));
            recv.await?;
            raiser.join().unwrap();
        }
        assert!(
            poll_once(pin!(signal.recv())).await.is_pending(),
            "one delivery, one receive"
        );
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn deliveries_between_two_receives_count_as_one() {
    run(|| async {
        let mut signal = Signal::new(SIGUSR2)?;
        for _ in 0..3 {
            raise(SIGUSR2)?;
        }
        signal.recv().await?;
        assert!(poll_once(pin!(signal.recv())).await.is_pending());
        raise(SIGUSR2)?;
        signal.recv().await?;
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn every_signal_gets_every_delivery() {
    run(|| async {
        let (mut first, mut second) = (Signal::new(libc::SIGWINCH)?, Signal::new(libc::SIGWINCH)?);
        raise(libc::SIGWINCH)?;
        first.recv().await?;
        second.recv().await?;
        drop(first);
        raise(libc::SIGWINCH)?;
        second.recv().await?;
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_dropped_receive_loses_no_delivery() {
    run(|| async {
        let mut signal = Signal::new(libc::SIGURG)?;
        {
            let recv = pin!(signal.recv());
            assert!(poll_once(recv).await.is_pending());
            // Dropped while parked, with nothing delivered.
        }
        {
            let mut recv = pin!(signal.recv());
            assert!(poll_once(recv.as_mut()).await.is_pending());
            raise(libc::SIGURG)?;
            // Dropped after the delivery, before it is polled again.
        }
        signal.recv().await?;
        assert!(poll_once(pin!(signal.recv())).await.is_pending());
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn a_signal_on_another_worker_wakes_that_worker() {
    run_with(cellio_runtime::Builder::new().workers(2), || async {
        let listening = cellio_runtime::spawn_on(1, async {
            let mut signal = Signal::new(libc::SIGALRM)?;
            let raiser = raise_later(libc::SIGALRM, Duration::from_millis(20));
            signal.recv().await?;
            raiser.join().unwrap();
            io::Result::Ok(cellio_runtime::current_worker())
        });
        assert_eq!(listening.await.unwrap()?, Some(1));
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn ctrl_c_completes_on_sigint() {
    run(|| async {
        let mut interrupted = pin!(ctrl_c());
        // The first poll starts listening.
        assert!(poll_once(interrupted.as_mut()).await.is_pending());
        let raiser = raise_later(SIGINT, Duration::from_millis(20));
        interrupted.await?;
        raiser.join().unwrap();
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn signals_that_cannot_be_handled_are_refused() {
    run(|| async {
        for number in [libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV, 0, 4096, -1] {
            let err = Signal::new(number).expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{number}: {err}");
        }
        io::Result::Ok(())
    })
    .unwrap();
}

#[test]
fn outside_a_runtime_it_fails_instead_of_panicking() {
    let err = Signal::new(libc::SIGHUP).expect_err("no reactor here");
    assert!(err.to_string().contains("no cellio reactor"), "{err}");
}

#[test]
fn poll_recv_completes_on_a_delivery_and_gives_way_to_recv() {
    use std::future::poll_fn;
    use std::task::Poll;
    run(|| async {
        let mut signal = Signal::new(libc::SIGVTALRM)?;
        // Pending first, then completed by a delivery from another thread.
        let mut polls = 0;
        let raiser = raise_later(libc::SIGVTALRM, Duration::from_millis(20));
        poll_fn(|cx| {
            polls += 1;
            signal.poll_recv(cx)
        })
        .await?;
        raiser.join().unwrap();
        assert!(polls >= 2, "it completed without waiting: {polls} poll");
        // Nothing since: pending again; and again it can be completed.
        assert!(poll_fn(|cx| Poll::Ready(signal.poll_recv(cx)))
            .await
            .is_pending());
        raise(libc::SIGVTALRM)?;
        poll_fn(|cx| signal.poll_recv(cx)).await?;
        // A receive left pending gives way to `recv`, which then gets the
        // next delivery.
        assert!(poll_fn(|cx| Poll::Ready(signal.poll_recv(cx)))
            .await
            .is_pending());
        raise(libc::SIGVTALRM)?;
        signal.recv().await?;
        assert!(poll_once(pin!(signal.recv())).await.is_pending());
        io::Result::Ok(())
    })
    .unwrap();
}
