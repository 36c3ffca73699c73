//! `--udp`: each connection is a UDP socket connected to its server, and a
//! message is one datagram.
//!
//! What differs from TCP:
//! - **Connecting** is a probe: a datagram of the message size (contents
//!   no message has) is sent every `--loss-after` until its echo comes
//!   back, for at most `--timeout`. A refused probe (ICMP port
//!   unreachable), a wrong echo or no echo at all is a failed connect.
//! - **Loss** is the transport's right, not an error: a datagram whose echo
//!   has not come back `--loss-after` after it was sent is given up
//!   (counted in `lost` if it was measured) and the connection goes on. An
//!   echo of a given-up datagram that comes back later counts in `late`
//!   and is otherwise ignored.
//! - **Matching.** Echoes are expected in the order the datagrams were
//!   sent. An echo that is not the oldest outstanding datagram's is
//!   compared with the next [`REORDER`] outstanding ones (those before the
//!   one it matches are then given up: overtaken), then with the last
//!   [`REMEMBERED`] given-up ones and the probe (late). If it is none of
//!   these, it is the oldest outstanding datagram's, corrupted: a mismatch.
//!
//! Invariants:
//! - A connection's buffers are made before its first message: the common
//!   case (the expected echo) costs one comparison, and the rare ones
//!   compare against a scratch buffer. Nothing allocates per message.
//! - The receive buffer is one byte longer than a message, so an echo
//!   longer than its datagram is always seen as longer (cellio reports a
//!   datagram that does not fit as `InvalidData`; it counts the same).
//! - Latency is recorded for echoed datagrams only; lost ones are counted
//!   apart, as wrk2 counts timeouts.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use cellio::net::udp::MAX_DATAGRAM;
use cellio::runtime::{sleep_until, timeout};
use cellio::{UdpIo, UdpSocket};

use crate::conn::{
    join, next_send, report_mismatch, send_window, Conn, Flight, SendMessage, BUDGET,
};
use crate::pattern::fill;
use crate::stats::Stats;
use crate::watch::{Stop, Watch};

/// The probe's sequence number: no message has it.
const PROBE: u64 = u64::MAX;
/// Given-up datagrams each connection remembers, to tell their late echoes
/// from corrupted ones.
pub const REMEMBERED: usize = 32;
/// How far ahead of the oldest outstanding datagram an echo is looked for.
pub const REORDER: u64 = 64;
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM_V4: usize = 65_507;

/// The largest `--size` for datagrams to `addrs`: 65 507 bytes, or 65 527
/// if every address is IPv6.
pub fn max_size<'a>(addrs: impl IntoIterator<Item = &'a SocketAddr>) -> usize {
    if addrs.into_iter().all(SocketAddr::is_ipv6) {
        MAX_DATAGRAM
    } else {
        MAX_DATAGRAM_V4
    }
}

/// Opens connection `id`'s socket to the first of `addrs` that echoes its
/// probe ([module docs](self)): probes every `retry`, for at most `limit`
/// per address.
pub async fn connect(
    id: u64,
    addrs: &[SocketAddr],
    size: usize,
    retry: Duration,
    limit: Duration,
) -> io::Result<UdpSocket> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
    for &addr in addrs {
        match probe(id, addr, size, retry, limit).await {
            Ok(socket) => return Ok(socket),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn probe(
    id: u64,
    addr: SocketAddr,
    size: usize,
    retry: Duration,
    limit: Duration,
) -> io::Result<UdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    let mut probe = vec![0u8; size];
    fill(&mut probe, id, PROBE);
    let mut rx = vec![0u8; size + 1];
    let deadline = Instant::now() + limit;
    loop {
        socket.send_message(&probe).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(retry.min(left), socket.recv(&mut rx)).await {
            Ok(Ok(n)) if rx[..n] == probe[..] => return Ok(socket),
            Ok(Ok(n)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the echo of a {size}-byte probe datagram differs from it ({n} bytes)"),
                ))
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the echo of a {size}-byte probe datagram is longer"),
                ))
            }
            Ok(Err(e)) => return Err(e),
            Err(_) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                    "no echo of a probe datagram within {limit:?} (is a UDP echo server there?)"
                ),
                ))
            }
            Err(_) => {} // probe again
        }
    }
}

impl SendMessage for UdpSocket {
    async fn send_message(&self, msg: &[u8]) -> io::Result<()> {
        let sent = self.send(msg).await?;
        if sent == msg.len() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "sent {sent} of a {}-byte datagram",
                msg.len()
            )))
        }
    }
}

/// What an echo is ([`Echoes::classify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Echo {
    /// Datagram `seq`'s echo. `bad`: its bytes differ from the datagram's;
    /// it is then taken for the oldest outstanding one's.
    Of { seq: u64, bad: bool },
    /// The echo of a datagram given up earlier (`measured`: one that
    /// counted in `lost`), or of a probe sent again.
    Late { measured: bool },
}

/// Tells one connection's echoes apart ([module docs](self)).
pub struct Echoes {
    id: u64,
    /// The contents of datagram `expect_seq` (the oldest outstanding one).
    expect: Vec<u8>,
    expect_seq: u64,
    /// For the rare comparisons with other datagrams.
    scratch: Vec<u8>,
    /// The last given-up datagrams, `(seq, measured)`; `PROBE` marks an
    /// unused entry.
    given_up: [(u64, bool); REMEMBERED],
    next: usize,
}

impl Echoes {
    /// For connection `id`'s `size`-byte datagrams.
    pub fn new(id: u64, size: usize) -> Self {
        Echoes {
            id,
            expect: vec![0; size],
            expect_seq: PROBE,
            scratch: vec![0; size],
            given_up: [(PROBE, false); REMEMBERED],
            next: 0,
        }
    }

    /// What `got` is, with datagrams `first..sent` outstanding
    /// (`first < sent`).
    #[inline]
    pub fn classify(&mut self, got: &[u8], first: u64, sent: u64) -> Echo {
        if self.expect_seq != first {
            fill(&mut self.expect, self.id, first);
            self.expect_seq = first;
        }
        if got == &self.expect[..] {
            return Echo::Of {
                seq: first,
                bad: false,
            };
        }
        self.classify_unexpected(got, first, sent)
    }

    /// [`classify`](Self::classify) with one datagram outstanding, `seq`,
    /// whose contents the caller holds: `sent`.
    #[inline]
    pub fn classify_one(&mut self, got: &[u8], sent: &[u8], seq: u64) -> Echo {
        if got == sent {
            return Echo::Of { seq, bad: false };
        }
        self.classify_unexpected(got, seq, seq + 1)
    }

    #[cold]
    fn classify_unexpected(&mut self, got: &[u8], first: u64, sent: u64) -> Echo {
        if got.len() == self.scratch.len() {
            for seq in first + 1..sent.min(first + 1 + REORDER) {
                if self.is_of(got, seq) {
                    return Echo::Of { seq, bad: false };
                }
            }
            if self.is_of(got, PROBE) {
                return Echo::Late { measured: false };
            }
            for (seq, measured) in self.given_up {
                if seq != PROBE && self.is_of(got, seq) {
                    return Echo::Late { measured };
                }
            }
        }
        Echo::Of {
            seq: first,
            bad: true,
        }
    }

    fn is_of(&mut self, got: &[u8], seq: u64) -> bool {
        fill(&mut self.scratch, self.id, seq);
        got == &self.scratch[..]
    }

    /// Datagram `seq` is given up; `measured`: it counts in `lost`.
    pub fn give_up(&mut self, seq: u64, measured: bool, stats: &Stats) {
        if measured {
            stats.lost();
        }
        self.given_up[self.next] = (seq, measured);
        self.next = (self.next + 1) % REMEMBERED;
    }

    /// Reports how `got`, taken for datagram `seq`'s echo, differs from it.
    #[cold]
    pub fn report(&mut self, stats: &Stats, seq: u64, got: &[u8]) {
        fill(&mut self.scratch, self.id, seq);
        let want = &self.scratch[..];
        if got.len() == want.len() {
            report_mismatch(stats, self.id, seq, 0, got, want);
        } else if got.len() > want.len() {
            stats.report(format_args!(
                "connection {}: datagram {seq}: the echo is longer than the {} bytes sent",
                self.id,
                want.len()
            ));
        } else {
            stats.report(format_args!(
                "connection {}: datagram {seq}: an echo of {} bytes for {} sent",
                self.id,
                got.len(),
                want.len()
            ));
        }
    }
}

/// How much of `rx` a receive filled: all of it when the datagram did not
/// fit (longer than any echo should be); the error otherwise.
fn received(result: io::Result<usize>, rx: &[u8]) -> io::Result<usize> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(rx.len()),
        other => other,
    }
}

/// Closed loop (or paced with one datagram in flight), through [`UdpIo`]:
/// send a datagram, wait for its echo or give it up, repeat.
pub async fn closed(socket: UdpSocket, c: Conn, stats: Rc<Stats>, watch: &Watch) {
    let mut io = UdpIo::new(socket);
    let tl = c.timeline;
    let clock = tl.clock;
    let mut msg = vec![0u8; c.size];
    let mut rx = vec![0u8; c.size + 1];
    let mut echoes = Echoes::new(c.id, c.size);
    let mut pace_sleep = sleep_until(Instant::now());
    let mut now = clock.now();
    let (mut seq, mut counted, mut run) = (0u64, 0u64, 0u32);
    loop {
        if c.quota.is_some_and(|q| counted >= q) {
            break;
        }
        let Some((intended, since)) = next_send(&c, seq, now, &mut pace_sleep, &stats).await else {
            break;
        };
        let recorded = intended >= tl.warm_end;
        counted += recorded as u64;
        fill(&mut msg, c.id, seq);
        watch.arm(since);
        match watch.guard(io.send(&msg)).await {
            Ok(Ok(n)) if n == msg.len() => {}
            Ok(Ok(n)) => return stats.error(c.id, format_args!("send: {n} of {} bytes", c.size)),
            Ok(Err(e)) => return stats.error(c.id, format_args!("send: {e}")),
            Err(Stop::End) => return,
            Err(Stop::Timeout) => return stats.timeout(c.id, seq, c.timeout),
        }
        // Some((n, bad)): the echo, `n` bytes of `rx`; None: given up.
        let echoed = loop {
            let n = match watch.guard(io.recv(&mut rx)).await {
                Ok(result) => match received(result, &rx) {
                    Ok(n) => n,
                    Err(e) => return stats.error(c.id, format_args!("receive: {e}")),
                },
                Err(Stop::End) => return,
                Err(Stop::Timeout) => break None,
            };
            match echoes.classify_one(&rx[..n], &msg, seq) {
                Echo::Of { bad, .. } => break Some((n, bad)),
                Echo::Late { measured } => {
                    if measured {
                        stats.late();
                    }
                }
            }
        };
        watch.disarm();
        now = clock.now();
        if tl.ended(now) {
            return;
        }
        match echoed {
            Some((n, bad)) => {
                if bad {
                    echoes.report(&stats, seq, &rx[..n]);
                }
                stats.complete(recorded, bad, intended, now);
            }
            None => echoes.give_up(seq, recorded, &stats),
        }
        seq += 1;
        run += 1;
        if run == BUDGET {
            run = 0;
            cellio::yield_now().await;
        }
    }
}

/// `--pipeline K > 1`: up to K datagrams outstanding, their echoes
/// matched as they come back ([module docs](self)).
pub async fn pipelined(socket: UdpSocket, c: Conn, stats: Rc<Stats>, watch: &Watch) {
    let flight = Flight::new(c.pipeline, c.timeline.clock.now());
    let sender = send_window(&socket, &c, &stats, &flight);
    let receiver = receive_datagrams(&socket, &c, &stats, watch, &flight);
    join(&flight, sender, receiver).await
}

/// The receiving half of a pipelined UDP connection.
async fn receive_datagrams(
    socket: &UdpSocket,
    c: &Conn,
    stats: &Stats,
    watch: &Watch,
    flight: &Flight,
) {
    let tl = c.timeline;
    let clock = tl.clock;
    let mut rx = vec![0u8; c.size + 1];
    let mut echoes = Echoes::new(c.id, c.size);
    let measured = |seq: u64| flight.intended[flight.slot(seq)].get() >= tl.warm_end;
    let mut seq = 0u64; // the oldest outstanding datagram
    let mut run = 0u32;
    loop {
        if seq == flight.sent.get() {
            // Nothing outstanding: wait for the sender.
            if !flight.sent_past(seq).await {
                return;
            }
            continue;
        }
        watch.arm(flight.sent_at[flight.slot(seq)].get());
        let got = watch.guard(socket.recv(&mut rx)).await;
        watch.disarm();
        let n = match got {
            Ok(result) => match received(result, &rx) {
                Ok(n) => n,
                Err(e) => return stats.error(c.id, format_args!("receive: {e}")),
            },
            Err(Stop::End) => return,
            Err(Stop::Timeout) => {
                if tl.ended(clock.now()) {
                    return;
                }
                echoes.give_up(seq, measured(seq), stats);
                seq += 1;
                flight.done.set(seq);
                continue;
            }
        };
        match echoes.classify(&rx[..n], seq, flight.sent.get()) {
            Echo::Late { measured } => {
                if measured {
                    stats.late();
                }
            }
            Echo::Of { seq: echoed, bad } => {
                let t = clock.now();
                if tl.ended(t) {
                    return;
                }
                // Overtaken: given up.
                while seq < echoed {
                    echoes.give_up(seq, measured(seq), stats);
                    seq += 1;
                }
                if bad {
                    echoes.report(stats, seq, &rx[..n]);
                }
                let due = flight.intended[flight.slot(seq)].get();
                stats.complete(due >= tl.warm_end, bad, due, t);
                seq += 1;
                flight.done.set(seq);
            }
        }
        run += 1;
        if run >= BUDGET {
            run = 0;
            flight.yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    use super::*;
    use crate::stats::Tally;

    const SIZE: usize = 24;

    fn stats() -> Stats {
        let tally = Tally::new(Arc::new(AtomicU64::new(0)), Vec::new());
        Stats::new(Rc::new(tally), 0)
    }

    fn datagram(id: u64, seq: u64) -> Vec<u8> {
        let mut d = vec![0; SIZE];
        fill(&mut d, id, seq);
        d
    }

    #[test]
    fn the_expected_echo_and_an_overtaking_one() {
        let mut e = Echoes::new(7, SIZE);
        assert_eq!(
            e.classify(&datagram(7, 3), 3, 5),
            Echo::Of { seq: 3, bad: false }
        );
        assert_eq!(
            e.classify(&datagram(7, 4), 3, 5),
            Echo::Of { seq: 4, bad: false }
        );
        // Not outstanding (5 is not sent yet): a corrupted echo of 3.
        assert_eq!(
            e.classify(&datagram(7, 5), 3, 5),
            Echo::Of { seq: 3, bad: true }
        );
    }

    #[test]
    fn one_outstanding_datagram_compared_with_what_was_sent() {
        let stats = stats();
        let mut e = Echoes::new(7, SIZE);
        let sent = datagram(7, 3);
        assert_eq!(
            e.classify_one(&sent, &sent, 3),
            Echo::Of { seq: 3, bad: false }
        );
        e.give_up(2, true, &stats);
        assert_eq!(
            e.classify_one(&datagram(7, 2), &sent, 3),
            Echo::Late { measured: true }
        );
        assert_eq!(
            e.classify_one(&datagram(7, 4), &sent, 3),
            Echo::Of { seq: 3, bad: true }
        );
    }

    #[test]
    fn late_echoes_of_given_up_datagrams_and_probes() {
        let stats = stats();
        let mut e = Echoes::new(1, SIZE);
        e.give_up(2, true, &stats);
        e.give_up(3, false, &stats);
        assert_eq!(
            e.classify(&datagram(1, 2), 10, 11),
            Echo::Late { measured: true }
        );
        assert_eq!(
            e.classify(&datagram(1, 3), 10, 11),
            Echo::Late { measured: false }
        );
        assert_eq!(
            e.classify(&datagram(1, PROBE), 10, 11),
            Echo::Late { measured: false }
        );
        // Another connection's datagram, a short one, a flipped bit.
        assert_eq!(
            e.classify(&datagram(2, 10), 10, 11),
            Echo::Of { seq: 10, bad: true }
        );
        assert_eq!(
            e.classify(&datagram(1, 10)[..SIZE - 1], 10, 11),
            Echo::Of { seq: 10, bad: true }
        );
        let mut flipped = datagram(1, 10);
        flipped[5] ^= 1;
        assert_eq!(
            e.classify(&flipped, 10, 11),
            Echo::Of { seq: 10, bad: true }
        );
    }

    #[test]
    fn only_the_last_given_up_datagrams_are_remembered() {
        let stats = stats();
        let mut e = Echoes::new(1, SIZE);
        for seq in 0..REMEMBERED as u64 + 1 {
            e.give_up(seq, true, &stats);
        }
        assert_eq!(
            e.classify(&datagram(1, 0), 100, 101),
            Echo::Of {
                seq: 100,
                bad: true
            }
        );
        assert_eq!(
            e.classify(&datagram(1, 1), 100, 101),
            Echo::Late { measured: true }
        );
    }

    #[test]
    fn echoes_are_looked_for_at_most_reorder_ahead() {
        let mut e = Echoes::new(1, SIZE);
        assert_eq!(
            e.classify(&datagram(1, REORDER), 0, 1000),
            Echo::Of {
                seq: REORDER,
                bad: false
            }
        );
        assert_eq!(
            e.classify(&datagram(1, REORDER + 1), 0, 1000),
            Echo::Of { seq: 0, bad: true }
        );
    }

    #[test]
    fn the_largest_datagram_depends_on_the_family() {
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(max_size([&v4]), 65_507);
        assert_eq!(max_size([&v6]), 65_527);
        assert_eq!(max_size([&v6, &v4]), 65_507);
    }
}
