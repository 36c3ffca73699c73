//! `Reactor::turn` and a waker that panics: the events fetched in the same
//! turn after the panicking one are not lost. (The edge-triggered poller
//! reports each readiness change once, so a dropped event could leave an
//! operation parked forever.)

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use cellio_reactor::{Park, Reactor, Registration};
use mio::net::UdpSocket;

/// Counts its wakes.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct PanickingWaker;

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("a waker that panics, on purpose");
    }
}

/// Parks an operation on `registration`'s receive cell with `waker`.
fn park_receive(registration: &Registration, waker: &Waker) {
    let cell = registration.rx();
    let seen = cell.observe().unwrap();
    let token = cell.reserve().unwrap();
    assert!(matches!(cell.park(token, seen, waker), Ok(Park::Parked)));
}

fn bound() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

#[test]
fn a_turn_cut_short_by_a_panicking_waker_loses_no_readiness() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let on_purpose = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|text| text.ends_with("on purpose"));
        if !on_purpose {
            previous(info);
        }
    }));
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let ((mut first, first_addr), (mut second, second_addr)) = (bound(), bound());
    let first_registration = handle.register(&mut first).unwrap();
    let second_registration = handle.register(&mut second).unwrap();
    // The initial writable events.
    reactor.turn(Some(Duration::ZERO)).unwrap();

    let woken = Arc::new(CountingWaker(AtomicUsize::new(0)));
    park_receive(&first_registration, &Waker::from(Arc::new(PanickingWaker)));
    park_receive(&second_registration, &Waker::from(woken.clone()));

    // Both datagrams are queued before the turn, the first socket's first:
    // one batch, in that order.
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"first", first_addr).unwrap();
    sender.send_to(b"second", second_addr).unwrap();

    let turned = catch_unwind(AssertUnwindSafe(|| {
        reactor.turn(Some(Duration::from_secs(5)))
    }));
    assert!(
        turned.is_err(),
        "the first waker's panic unwinds out of turn"
    );
    assert_eq!(
        woken.0.load(Ordering::SeqCst),
        0,
        "the second socket's event came after the panic in the same batch"
    );

    // The next turn makes up for it, without blocking.
    let started = Instant::now();
    reactor.turn(Some(Duration::from_secs(5))).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the recovering turn blocked"
    );
    assert_eq!(woken.0.load(Ordering::SeqCst), 1, "the lost readiness");
    // And the one after that is an ordinary turn again.
    assert_eq!(reactor.turn(Some(Duration::ZERO)).unwrap(), 0);
    assert_eq!(woken.0.load(Ordering::SeqCst), 1);

    let mut buf = [0u8; 16];
    let (n, _) = second.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"second");
    first_registration.deregister(&mut first).unwrap();
    second_registration.deregister(&mut second).unwrap();
}
