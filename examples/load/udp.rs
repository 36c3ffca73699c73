//! `--udp`: each connection is a UDP socket connected to its server, and a
//! message is one datagram.
//!
//! What differs from TCP:
//! - **Connecting** is a probe: a datagram of the message size (contents
//!   no message has) is sent every `--loss-after` until its echo comes
//!   back, for at most `--timeout`. A refused probe (ICMP port
//!   unreachable), a wrong echo or no echo at all is a failed connect; so
//!   is a socket the kernel gave the server's own address (nothing listens
//!   there, and it would hear its own datagrams: [`crate::not_itself`]).
//! - **Loss** is the transport's right, not an error: a datagram whose echo
//!   has not come back `--loss-after` after it was sent is given up
//!   (counted in `lost` if it was measured) and the connection goes on. An
//!   echo of a datagram already settled (given up, or a duplicate of one
//!   echoed before) counts in `late` and is otherwise ignored.
//! - **Matching.** Echoes are expected in the order the datagrams were
//!   sent. An echo that is not the oldest outstanding datagram's says
//!   which datagram it is: a message's first 8 bytes are its seed, from
//!   which `pattern::seq_of` reads its sequence number back. If the whole
//!   echo is that datagram's, byte for byte, it is a later outstanding
//!   one's (those before it are then given up: overtaken), a settled
//!   one's (late) or the probe's (late, not counted). Otherwise it is the
//!   oldest outstanding datagram's, corrupted: a mismatch.
//! - **Datagrams under 8 bytes** carry no readable sequence number: an
//!   unexpected echo is compared with every outstanding datagram, the
//!   settled ones (echoed or given up) up to [`lookback`] sequence numbers
//!   back, nearest first, and the probe. One that matches none of them is
//!   a mismatch that settles no datagram ([`Echo::Stray`]): it cannot say
//!   whose echo it is, and taking it for the oldest outstanding
//!   datagram's, as above, made that datagram's own echo, when it came,
//!   unrecognisable in turn, and so on for every later echo of the
//!   connection. A corrupted echo is then a mismatch and its datagram
//!   lost; an echo later (or a duplicate older) than the look-back is a
//!   mismatch too. The look-back is short enough that a corrupted echo
//!   passes for a late one with a chance of about
//!   (outstanding + look-back) / 256^size: under 1 in 4000 from 3 bytes
//!   up, but a 1- or 2-byte echo cannot be checked much.
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
use cellio::runtime::timeout;
use cellio::{UdpIo, UdpSocket};

use crate::conn::{
    count_unfinished, join, report_mismatch, send_window, yield_then_now, Conn, Flight, Schedule,
    SendMessage, BUDGET,
};
use crate::pattern::{fill, seq_of};
use crate::stats::Stats;
use crate::watch::{Stop, Watch};

/// The probe's sequence number: no message has it.
const PROBE: u64 = u64::MAX;
/// The fewest and the most settled datagrams an unexpected echo of a
/// datagram under 8 bytes is compared with ([`lookback`]).
const MIN_LOOKBACK: u64 = 32;
const MAX_LOOKBACK: u64 = 65_536;

/// How many sequence numbers back an unexpected echo of a `size`-byte
/// datagram (under 8 bytes: it cannot say which it is) is looked for
/// among the settled ones, to tell late and duplicated echoes from
/// corrupted ones: 1/4096 of the values such a datagram can take (a
/// corrupted echo passes for one of them with that chance), between
/// [`MIN_LOOKBACK`] and [`MAX_LOOKBACK`]: 32 for 1 and 2 bytes, 4096 for
/// 3, 65 536 from 4 bytes up. The comparisons cost some 100 µs at most,
/// for the rare echo that is none of them.
pub fn lookback(size: usize) -> u64 {
    debug_assert!(size < 8);
    ((1u64 << (8 * size)) >> 12).clamp(MIN_LOOKBACK, MAX_LOOKBACK)
}
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
    crate::not_itself(socket.local_addr()?, addr)?;
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
                let why = format!(
                    "no echo of a probe datagram within {limit:?} (or echoes come from \
                     another address than {addr}: this socket is connected, and hears only it)"
                );
                return Err(io::Error::new(io::ErrorKind::TimedOut, why));
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
    /// The echo of a datagram already settled (given up, or echoed before:
    /// a duplicate), or of a probe sent again. `measured`: the datagram
    /// was due after the warm-up.
    Late { measured: bool },
    /// Datagrams under 8 bytes: an echo of the right length that is none
    /// of the datagrams it is compared with ([module docs](self)). A
    /// mismatch that settles no datagram.
    Stray,
}

/// Tells one connection's echoes apart ([module docs](self)).
pub struct Echoes {
    id: u64,
    /// The contents of datagram `expect_seq` (the oldest outstanding one).
    expect: Vec<u8>,
    expect_seq: u64,
    /// For the rare comparisons with other datagrams.
    scratch: Vec<u8>,
    /// The first measured datagram: the later ones are measured too (due
    /// times grow with the sequence number).
    measured_from: Option<u64>,
    /// Datagrams under 8 bytes: how far back an unexpected echo is looked
    /// for among the settled ones ([`lookback`]).
    lookback: u64,
}

impl Echoes {
    /// For connection `id`'s `size`-byte datagrams.
    pub fn new(id: u64, size: usize) -> Self {
        Echoes {
            id,
            expect: vec![0; size],
            expect_seq: PROBE,
            scratch: vec![0; size],
            measured_from: None,
            lookback: if size < 8 { lookback(size) } else { 0 },
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
            return self.echoed(first);
        }
        self.classify_unexpected(got, first, sent)
    }

    /// [`classify`](Self::classify) with one datagram outstanding, `seq`,
    /// whose contents the caller holds: `sent`.
    #[inline]
    pub fn classify_one(&mut self, got: &[u8], sent: &[u8], seq: u64) -> Echo {
        if got == sent {
            return self.echoed(seq);
        }
        self.classify_unexpected(got, seq, seq + 1)
    }

    #[cold]
    fn classify_unexpected(&mut self, got: &[u8], first: u64, sent: u64) -> Echo {
        if got.len() == self.scratch.len() {
            if let Some(head) = got.first_chunk::<8>() {
                // The datagram says which it is; believe it if it is one
                // this connection sent, byte for byte.
                let seq = seq_of(self.id, *head);
                if (seq < sent || seq == PROBE) && self.is_of(got, seq) {
                    return self.echo_of(seq, first);
                }
            } else {
                // Too short to say which it is: compared with the
                // outstanding datagrams, the settled ones nearest first (a
                // duplicate is most often of the last one), the probe.
                let outstanding = first + 1..sent;
                let settled = (first.saturating_sub(self.lookback)..first).rev();
                for seq in outstanding.chain(settled).chain([PROBE]) {
                    if self.is_of(got, seq) {
                        return self.echo_of(seq, first);
                    }
                }
                return Echo::Stray;
            }
        }
        Echo::Of {
            seq: first,
            bad: true,
        }
    }

    /// The echo of datagram `seq` (one this connection sent, or the probe).
    fn echo_of(&mut self, seq: u64, first: u64) -> Echo {
        if seq == PROBE {
            Echo::Late { measured: false }
        } else if seq < first {
            Echo::Late {
                measured: self.measured_from.is_some_and(|from| seq >= from),
            }
        } else {
            self.echoed(seq)
        }
    }

    /// Datagram `seq`'s echo, good.
    #[inline]
    fn echoed(&mut self, seq: u64) -> Echo {
        Echo::Of { seq, bad: false }
    }

    fn is_of(&mut self, got: &[u8], seq: u64) -> bool {
        fill(&mut self.scratch, self.id, seq);
        got == &self.scratch[..]
    }

    /// Datagram `seq`, due after the warm-up, has been settled (echoed or
    /// given up); the first such marks where measuring began.
    #[inline]
    pub fn measured(&mut self, seq: u64) {
        if self.measured_from.is_none() {
            self.measured_from = Some(seq);
        }
    }

    /// Datagram `seq` is given up; `measured`: it counts in `lost`.
    pub fn give_up(&mut self, seq: u64, measured: bool, stats: &Stats) {
        if measured {
            self.measured(seq);
            stats.lost();
        }
    }

    /// Counts and reports `got`, an [`Echo::Stray`]: a mismatch.
    #[cold]
    pub fn stray(&self, stats: &Stats, got: &[u8]) {
        stats.complete(false, true, Default::default(), Default::default());
        stats.report(format_args!(
            "connection {}: an echo ({:02x?}) that is none of the datagrams sent \
             (outstanding, or settled within the last {}): corrupted, or later than \
             that (a datagram under 8 bytes cannot say which; 8 bytes can)",
            self.id, got, self.lookback
        ));
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
    let mut schedule = Schedule::new();
    let mut now = clock.now();
    let (mut seq, mut run) = (0u64, 0u32);
    // The message in flight when the run's end stopped the loop: when it
    // was due.
    let in_flight = 'run: loop {
        let Some((intended, since, recorded)) = schedule.next(&c, seq, now, &stats).await else {
            break None;
        };
        fill(&mut msg, c.id, seq);
        watch.arm(since);
        match watch.guard(io.send(&msg)).await {
            Ok(Ok(n)) if n == msg.len() => {}
            Ok(Ok(n)) => return stats.error(c.id, format_args!("send: {n} of {} bytes", c.size)),
            Ok(Err(e)) => return stats.error(c.id, format_args!("send: {e}")),
            Err(Stop::End) => break Some(intended),
            Err(Stop::Timeout) => return stats.timeout(c.id, seq, c.timeout),
        }
        // Some((n, bad)): the echo, `n` bytes of `rx`; None: given up.
        let echoed = loop {
            let n = match watch.guard(io.recv(&mut rx)).await {
                Ok(result) => match received(result, &rx) {
                    Ok(n) => n,
                    Err(e) => return stats.error(c.id, format_args!("receive: {e}")),
                },
                Err(Stop::End) => break 'run Some(intended),
                Err(Stop::Timeout) => break None,
            };
            match echoes.classify_one(&rx[..n], &msg, seq) {
                Echo::Of { bad, .. } => break Some((n, bad)),
                Echo::Late { measured } => {
                    if measured {
                        stats.late();
                    }
                }
                // Still waiting for datagram `seq`'s echo.
                Echo::Stray => echoes.stray(&stats, &rx[..n]),
            }
        };
        watch.disarm();
        now = clock.now();
        if tl.ended(now) {
            break Some(intended);
        }
        match echoed {
            Some((n, bad)) => {
                if bad {
                    echoes.report(&stats, seq, &rx[..n]);
                }
                if recorded {
                    echoes.measured(seq);
                }
                stats.complete(recorded, bad, intended, now);
            }
            None => echoes.give_up(seq, recorded, &stats),
        }
        seq += 1;
        run += 1;
        if run == BUDGET {
            run = 0;
            now = yield_then_now(&clock).await;
        }
    };
    let sent = seq + u64::from(in_flight.is_some());
    count_unfinished(&c, &stats, seq, sent, |_| in_flight.unwrap_or_default());
}

/// `--pipeline K > 1`: up to K datagrams outstanding, their echoes
/// matched as they come back ([module docs](self)).
pub async fn pipelined(socket: UdpSocket, c: Conn, stats: Rc<Stats>, watch: &Watch) {
    let flight = Flight::new(c.pipeline, c.timeline.clock.now());
    let sender = send_window(&socket, &c, &stats, &flight);
    let receiver = receive_datagrams(&socket, &c, &stats, watch, &flight);
    join(&c, &stats, &flight, sender, receiver).await;
}

/// The receiving half of a pipelined UDP connection.
async fn receive_datagrams(
    socket: &UdpSocket,
    c: &Conn,
    stats: &Stats,
    watch: &Watch,
    flight: &Flight,
) -> bool {
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
                return true;
            }
            continue;
        }
        watch.arm(flight.sent_at[flight.slot(seq)].get());
        let got = watch.guard(socket.recv(&mut rx)).await;
        watch.disarm();
        let n = match got {
            Ok(result) => match received(result, &rx) {
                Ok(n) => n,
                Err(e) => {
                    stats.error(c.id, format_args!("receive: {e}"));
                    return false;
                }
            },
            Err(Stop::End) => return true,
            Err(Stop::Timeout) => {
                let now = clock.now();
                if tl.ended(now) {
                    return true;
                }
                // Every outstanding datagram as old as the oldest's limit
                // goes now, not one per pass of the reaper: a burst of
                // losses as long as the window clears at once.
                let limit = now.sub(c.timeout);
                loop {
                    echoes.give_up(seq, measured(seq), stats);
                    seq += 1;
                    if seq == flight.sent.get() || flight.sent_at[flight.slot(seq)].get() > limit {
                        break;
                    }
                }
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
            Echo::Stray => echoes.stray(stats, &rx[..n]),
            Echo::Of { seq: echoed, bad } => {
                let t = clock.now();
                if tl.ended(t) {
                    return true;
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
                let recorded = due >= tl.warm_end;
                if recorded {
                    echoes.measured(seq);
                }
                stats.complete(recorded, bad, due, t);
                seq += 1;
                flight.done.set(seq);
            }
        }
        run += 1;
        flight.yield_if_spent(&mut run).await;
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
        Stats::new(Rc::new(tally), 0, crate::stats::latency_bound(&[]))
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
        // 2 was due in the warm-up, 3 after it.
        e.give_up(2, false, &stats);
        e.give_up(3, true, &stats);
        assert_eq!(
            e.classify(&datagram(1, 2), 10, 11),
            Echo::Late { measured: false }
        );
        assert_eq!(
            e.classify(&datagram(1, 3), 10, 11),
            Echo::Late { measured: true }
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
    fn an_echo_far_ahead_after_a_burst_of_losses_is_found() {
        let mut e = Echoes::new(1, SIZE);
        assert_eq!(
            e.classify(&datagram(1, 900), 0, 1000),
            Echo::Of {
                seq: 900,
                bad: false
            }
        );
        // Not sent yet: no echo of it can be real.
        assert_eq!(
            e.classify(&datagram(1, 1000), 0, 1000),
            Echo::Of { seq: 0, bad: true }
        );
    }

    #[test]
    fn an_echo_of_any_settled_datagram_is_late_and_measured_from_the_first_measured() {
        let mut e = Echoes::new(1, SIZE);
        // 0..10 were warm-up; 10 was the first measured; 11..5000 settled.
        e.measured(10);
        for (seq, measured) in [(3, false), (10, true), (4321, true)] {
            assert_eq!(
                e.classify(&datagram(1, seq), 5000, 5001),
                Echo::Late { measured },
                "{seq}"
            );
        }
    }

    /// Under 8 bytes a datagram cannot say which it is: only the
    /// outstanding ones, the settled ones within the look-back and the
    /// probe are known, and an echo that is none of them settles no
    /// datagram.
    #[test]
    fn short_datagrams_are_compared_with_the_ones_looked_back_at() {
        const SHORT: usize = 5;
        let short = |seq: u64| {
            let mut d = vec![0; SHORT];
            fill(&mut d, 1, seq);
            d
        };
        let back = lookback(SHORT);
        assert_eq!(back, 65_536);
        let mut e = Echoes::new(1, SHORT);
        e.measured(0);
        assert_eq!(e.classify(&short(7), 2, 9), Echo::Of { seq: 7, bad: false });
        let first = 100_000;
        // A late echo (or a duplicate) from as far back as the look-back.
        for seq in [first - 1, first - back] {
            assert_eq!(
                e.classify(&short(seq), first, first + 1),
                Echo::Late { measured: true },
                "{seq}"
            );
        }
        assert_eq!(
            e.classify(&short(PROBE), first, first + 1),
            Echo::Late { measured: false }
        );
        // Further back, or not a datagram at all: a stray echo, and the
        // oldest outstanding datagram's own echo is still recognised.
        let mut flipped = short(first);
        flipped[2] ^= 1;
        for stray in [short(first - back - 1), flipped] {
            assert_eq!(e.classify(&stray, first, first + 1), Echo::Stray);
            assert_eq!(
                e.classify(&short(first), first, first + 1),
                Echo::Of {
                    seq: first,
                    bad: false
                }
            );
        }
        // A wrong length is still taken for the oldest's, corrupted.
        assert_eq!(
            e.classify(&short(first)[..SHORT - 1], first, first + 1),
            Echo::Of {
                seq: first,
                bad: true
            }
        );
    }

    #[test]
    fn the_look_back_depends_on_the_size() {
        assert_eq!(lookback(1), 32);
        assert_eq!(lookback(2), 32);
        assert_eq!(lookback(3), 4096);
        assert_eq!(lookback(4), 65_536);
        assert_eq!(lookback(7), 65_536);
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
