//! `Reactor`: a turn and a waker that panics (the events fetched in the
//! same turn after the panicking one are not lost: the edge-triggered
//! poller reports each readiness change once, so a dropped event could
//! leave an operation parked forever), and the drop, which closes every
//! live cell and refuses later registrations; the count of work off the
//! reactor's thread that a paused clock waits for.

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use cellio_reactor::{CellError, Park, Reactor, Registration, Token};
use mio::event::Source;
use mio::net::UdpSocket;
use mio::{Interest, Registry};

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

/// Parks an operation on `registration`'s receive cell with `waker`, and
/// returns its token.
fn park_receive(registration: &Registration, waker: &Waker) -> Token {
    let cell = registration.rx();
    let seen = cell.observe().unwrap();
    let token = cell.reserve().unwrap();
    assert!(matches!(cell.park(token, seen, waker), Ok(Park::Parked)));
    token
}

fn bound() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// Panics whose message ends "on purpose" (the tests' panicking wakers)
/// print nothing; others print as before. Installed once per process.
fn quiet_about_panics_on_purpose() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
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
    });
}

#[test]
fn a_turn_cut_short_by_a_panicking_waker_loses_no_readiness() {
    quiet_about_panics_on_purpose();
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

/// A source whose (de)registration does nothing: registering one costs only
/// the table's work, so a loop of them is tight.
struct Nothing;

impl Source for Nothing {
    fn register(&mut self, _: &Registry, _: mio::Token, _: Interest) -> io::Result<()> {
        Ok(())
    }
    fn reregister(&mut self, _: &Registry, _: mio::Token, _: Interest) -> io::Result<()> {
        Ok(())
    }
    fn deregister(&mut self, _: &Registry) -> io::Result<()> {
        Ok(())
    }
}

/// A registration made on another thread while the reactor drops is either
/// refused (`NotConnected`) or closed by the drop (a park on it fails with
/// `Closed`). (It used to be neither now and then: `register` checked
/// `shut_down` before taking its slot, the drop listed the live slots in
/// between, and an operation parked on the new cell slept for ever; found by
/// a review.) The race is narrow: up to 20 000 rounds (20 s at most).
#[test]
fn a_registration_racing_the_reactors_drop_is_refused_or_closed() {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut stranded, mut rounds, mut total) = (0, 0, 0);
    while rounds < 20_000 && Instant::now() < deadline {
        rounds += 1;
        let reactor = Reactor::new().unwrap();
        let handle = reactor.handle();
        let go = Arc::new(Barrier::new(2));
        let registering = std::thread::spawn({
            let go = go.clone();
            move || {
                let mut made = Vec::new();
                go.wait();
                loop {
                    match handle.register(&mut Nothing) {
                        Ok(registration) => made.push(registration),
                        Err(e) => {
                            assert_eq!(e.kind(), io::ErrorKind::NotConnected);
                            return made;
                        }
                    }
                    assert!(made.len() < 10_000_000, "the drop never came");
                }
            }
        });
        go.wait();
        for _ in 0..2000 {
            std::hint::spin_loop(); // let the other thread get going
        }
        drop(reactor); // returns once every live cell is closed
        let made = registering.join().unwrap();
        total += made.len();
        for registration in &made {
            let cell = registration.rx();
            let seen = cell.observe().unwrap();
            let token = cell.reserve().unwrap();
            match cell.park(token, seen, Waker::noop()) {
                Err(CellError::Closed) => {}
                Ok(Park::Parked) => stranded += 1,
                other => panic!("unexpected {other:?}"),
            }
            cell.release(token).unwrap();
        }
    }
    assert_eq!(
        stranded, 0,
        "{stranded} of {total} registrations (in {rounds} rounds) outlived the reactor's \
         drop unclosed: an operation parked on one sleeps for ever"
    );
}

/// Installs, on the calling thread only, a seccomp filter under which
/// `epoll_pwait2` fails with `EPERM`, as sandbox profiles that predate the
/// call (Linux 5.11) make it (Docker before 20.10, systemd's
/// `SystemCallFilter=`). Says why where it cannot (a kernel without seccomp
/// filters, a sandbox that refuses `prctl`).
#[cfg(target_os = "linux")]
fn deny_epoll_pwait2_with_eperm() -> io::Result<()> {
    // `seccomp_data.nr`, the syscall number, is the struct's first field.
    let (load, jump, ret) = (
        (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        (libc::BPF_RET | libc::BPF_K) as u16,
    );
    let nr = libc::SYS_epoll_pwait2 as u32;
    let refuse = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let filter = [
        libc::sock_filter {
            code: load,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: jump,
            jt: 0,
            jf: 1,
            k: nr,
        },
        libc::sock_filter {
            code: ret,
            jt: 0,
            jf: 0,
            k: refuse,
        },
        libc::sock_filter {
            code: ret,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl calls with valid arguments: `program` points at
    // `filter`, which outlives the call (the kernel copies it). Both apply
    // to the calling thread only (no `SECCOMP_FILTER_FLAG_TSYNC`).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
            ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where a seccomp profile refuses `epoll_pwait2` with `EPERM` (not
/// `ENOSYS`), the reactor turns through `epoll_pwait`, as on a kernel
/// without the call. (It used to fail every turn with "Operation not
/// permitted", and the runtime's workers panicked; found by a review.) The
/// filter is installed on a thread of its own, which ends with the test;
/// where seccomp is unavailable the test says so and passes.
#[cfg(target_os = "linux")]
#[test]
fn a_reactor_turns_where_a_sandbox_refuses_epoll_pwait2() {
    std::thread::spawn(|| {
        if let Err(e) = deny_epoll_pwait2_with_eperm() {
            eprintln!("skipped: cannot install a seccomp filter here: {e}");
            return;
        }
        let mut reactor = Reactor::new().unwrap();
        let handle = reactor.handle();
        for _ in 0..2 {
            handle.wake().unwrap();
            let turned = reactor.turn(Some(Duration::from_secs(5)));
            assert!(matches!(turned, Ok(1)), "the turn failed: {turned:?}");
        }
        let started = Instant::now();
        let turned = reactor.turn(Some(Duration::from_millis(1)));
        assert!(matches!(turned, Ok(0)), "the turn failed: {turned:?}");
        assert!(started.elapsed() < Duration::from_secs(4), "the turn hung");
    })
    .join()
    .unwrap();
}

/// A waker that panics as the reactor's drop closes its cell does not leave
/// the cells after it open: every parked operation is woken and refused, and
/// the first panic unwinds out of the drop. (The panic used to stop the
/// drop, and the later operations slept for ever: neither woken nor
/// refused; found by a review.)
#[test]
fn a_waker_that_panics_in_the_reactors_drop_leaves_no_cell_open() {
    quiet_about_panics_on_purpose();
    let reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let first = handle.register(&mut Nothing).unwrap();
    let second = handle.register(&mut Nothing).unwrap();
    let first_token = park_receive(&first, &Waker::from(Arc::new(PanickingWaker)));
    let woken = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(woken.clone());
    let token = park_receive(&second, &waker);

    let dropped = catch_unwind(AssertUnwindSafe(|| drop(reactor)));
    assert!(
        dropped.is_err(),
        "the first waker's panic unwinds out of the drop"
    );
    for (which, registration, token) in [("first", &first, first_token), ("second", &second, token)]
    {
        let cell = registration.rx();
        let seen = cell.observe_reserved(token).unwrap();
        let parked_again = cell.park(token, seen, &waker);
        assert_eq!(
            parked_again,
            Err(CellError::Closed),
            "the {which} operation parked again after the drop"
        );
        cell.release(token).unwrap();
    }
    assert_eq!(
        woken.0.load(Ordering::SeqCst),
        1,
        "the second operation's wakes"
    );
}

/// `outside_work` holds while its guard lives, from any thread;
/// `outside_retry` never holds: once the clock moved since it was taken,
/// `wake_retries_after_move` wakes its task (once) instead, and
/// `clock_moves` tells the task the clock moved.
#[test]
fn outside_work_is_counted_until_its_guard_drops() {
    let reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    assert!(!reactor.has_outside_work());
    let work = handle.outside_work();
    assert!(reactor.has_outside_work());
    std::thread::spawn(move || drop(work)).join().unwrap();
    assert!(!reactor.has_outside_work());

    let woken = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&woken));
    let retry = handle.outside_retry(&waker);
    assert!(!reactor.has_outside_work(), "a retry never holds the clock");
    assert!(
        !reactor.wake_retries_after_move(),
        "the clock has not moved since: it may move once"
    );
    assert_eq!(woken.0.load(Ordering::SeqCst), 0);
    let moves = handle.clock_moves();
    reactor.note_time_moved();
    assert_eq!(handle.clock_moves(), moves + 1);
    let next = handle.outside_retry(&waker);
    assert!(
        reactor.wake_retries_after_move(),
        "the clock moved: the retry first"
    );
    assert_eq!(woken.0.load(Ordering::SeqCst), 1, "woken once, at once");
    assert!(!reactor.wake_retries_after_move(), "only once");
    drop(retry);
    reactor.note_time_moved();
    assert!(
        reactor.wake_retries_after_move(),
        "the retry after the move"
    );
    assert_eq!(woken.0.load(Ordering::SeqCst), 2);
    drop(next);
    let dropped = handle.outside_retry(&waker);
    drop(dropped);
    reactor.note_time_moved();
    assert!(
        !reactor.wake_retries_after_move(),
        "a retry given up is not woken"
    );
    assert_eq!(woken.0.load(Ordering::SeqCst), 2);
}
