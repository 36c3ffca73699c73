//! One stream connection's traffic (TCP, or a Unix-domain stream with
//! `--unix`): the closed loop (`--pipeline 1`) and the
//! pipelined loop (a sender and a receiver joined inside one task); and
//! what `udp.rs` shares with them: the next message's turn ([`Schedule`]), the
//! pipelined sender ([`send_window`]) and the join of the two halves
//! ([`join`], over a [`Flight`]).
//!
//! A message larger than [`CLOSED_LOOP_MAX_SIZE`] goes through the
//! pipelined loop even at `--pipeline 1` (a window of one): the closed loop
//! sends the whole message before it reads any of the echo, and an echo
//! server that writes back what it reads stops reading once its send
//! buffer and the client's receive buffer are full, so a message larger
//! than those deadlocked both until `--timeout` (16 MiB over TCP, 512 KiB
//! over a Unix socket on the test VM).
//!
//! When a connection ends with every echo in, it shuts down its sending
//! side and reads until the server closes its own ([`expect_close`]): a
//! byte that comes then (a duplicated last echo, trailing bytes) is one
//! more than the server was sent, a mismatch, as it is before a later
//! message's echo.
//!
//! All reuse their buffers: after a connection's task has started, sending,
//! receiving, checking and recording a message allocates nothing.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io;
use std::net::Shutdown;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use cellio::net::stream::{StreamIo, StreamSocket};
use cellio::runtime::{sleep_until, Sleep};
use cellio::unix::UnixStream;
use cellio::{yield_now, TcpStream};

use crate::clock::{Clock, Stamp};
use crate::pattern::fill;
use crate::stats::Stats;
use crate::watch::{Stop, Watch};

/// A task yields to the others after this many messages in a row.
pub const BUDGET: u32 = 64;

/// A closed loop's yield to the worker's other tasks, after [`BUDGET`]
/// messages in a row: returns the clock's reading after it. The loop's
/// next message is sent only then, so it is timed from this reading, not
/// from the arrival of the echo before the yield (which would count the
/// other tasks' turn, client time with nothing on the wire, in its
/// latency). One more clock read per `BUDGET` messages; every other send is
/// still timed by the echo's arrival before it.
pub async fn yield_then_now(clock: &Clock) -> Stamp {
    yield_now().await;
    clock.now()
}
/// Smallest receive buffer of a pipelined connection.
const MIN_RX: usize = 16 * 1024;

/// When things happen, shared by all connections of the run.
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    /// The run's clock: every time below is one of its stamps.
    pub clock: Clock,
    /// Messages whose intended send time is before this are warm-up.
    pub warm_end: Stamp,
    /// Duration mode: nothing is sent or recorded at or after this.
    pub end: Option<Stamp>,
}

impl Timeline {
    #[inline]
    pub fn ended(&self, now: Stamp) -> bool {
        self.end.is_some_and(|end| now >= end)
    }
}

/// Open loop: message `seq` of this connection is due at
/// `t0 + (offset + seq * stride) / rate`.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub t0: Stamp,
    pub rate: f64,
    /// The connection's global index: starts are staggered by 1/rate.
    pub offset: u64,
    /// The total number of connections.
    pub stride: u64,
    /// Busy-wait the last stretch before each due time.
    pub spin: bool,
}

impl Pace {
    /// When message `seq` is due. A time past what a `Duration` or a
    /// stamp holds (which `--rate`'s bounds keep out of reach) saturates at
    /// the last stamp: never due within a run, and no panic.
    #[inline]
    fn due(&self, seq: u64) -> Stamp {
        let at = (self.offset as f64 + seq as f64 * self.stride as f64) / self.rate;
        self.t0
            .add(Duration::try_from_secs_f64(at).unwrap_or(Duration::MAX))
    }

    /// The first message from `from` on that is due at or after `at`.
    fn first_due_at(&self, at: Stamp, from: u64) -> u64 {
        let secs = at.nanos_since(self.t0) as f64 / 1e9;
        // Exact but for rounding (`as` saturates, and NaN gives 0) ...
        let guess = ((secs * self.rate - self.offset as f64) / self.stride as f64).ceil();
        let mut seq = (guess as u64).max(from);
        // ... which a step or two puts right (`due` never decreases).
        while seq > from && self.due(seq - 1) >= at {
            seq -= 1;
        }
        while seq < u64::MAX && self.due(seq) < at {
            seq += 1;
        }
        seq
    }
}

/// How much earlier than due a spinning sender stops sleeping: enough for
/// the coarsest reactor wait (whole milliseconds, rounded up, where
/// `epoll_pwait2` is missing).
const SPIN_WINDOW: Duration = Duration::from_millis(1);

/// Waits until `due`, sleeping on `sleep` (reused: re-arming it allocates
/// nothing), and with `spin` yielding in a loop through the last
/// millisecond so the send is not up to a timer tick late.
async fn wait_due(sleep: &mut Sleep, clock: &Clock, due: Stamp, spin: bool) {
    let coarse = if spin { due.sub(SPIN_WINDOW) } else { due };
    sleep.reset(clock.instant_of(coarse));
    sleep.await;
    if spin {
        while clock.now() < due {
            yield_now().await;
        }
    }
}

/// What decides when a connection's next message goes: its quota
/// (`--requests`), its pace (`--rate`) and the run's end.
pub struct Schedule {
    /// `--rate`: the timer a paced sender waits on (reset, never remade).
    sleep: Sleep,
    /// Measured messages handed out so far, against the quota.
    counted: u64,
}

impl Schedule {
    pub fn new() -> Self {
        Schedule {
            sleep: sleep_until(Instant::now()),
            counted: 0,
        }
    }

    /// Message `seq`'s turn: with `--rate`, after waiting for its due time.
    /// Returns when it was meant to go (its due time, or `now` in a closed
    /// loop), the clock's reading and whether it is measured (due after
    /// the warm-up); `None` once the quota is sent or the run has ended.
    /// `now` is the clock's latest reading.
    ///
    /// Nothing goes at or after the run's end, by the clock, however far
    /// behind its schedule the connection is: a message due before the
    /// end that has not gone by then is left to [`count_unfinished`]
    /// (never sent, at its age at the end), on every path alike (closed,
    /// pipelined, UDP). So a run ends at its end (plus the drain of the
    /// messages in flight), and a sender never has more than its window
    /// outstanding past it.
    pub async fn next(
        &mut self,
        c: &Conn,
        seq: u64,
        now: Stamp,
        stats: &Stats,
    ) -> Option<(Stamp, Stamp, bool)> {
        if c.quota.is_some_and(|q| self.counted >= q) {
            return None;
        }
        let tl = c.timeline;
        let (intended, now) = match &c.pace {
            Some(pace) => {
                let due = pace.due(seq);
                if tl.ended(due) || tl.ended(now) {
                    return None;
                }
                wait_due(&mut self.sleep, &tl.clock, due, pace.spin).await;
                let now = tl.clock.now();
                if tl.ended(now) {
                    // The wait (a late timer) ran past the end: not sent.
                    return None;
                }
                if due >= tl.warm_end {
                    stats.send_lag(now.nanos_since(due));
                }
                (due, now)
            }
            None if tl.ended(now) => return None,
            None => (now, now),
        };
        let measured = intended >= tl.warm_end;
        self.counted += measured as u64;
        Some((intended, now, measured))
    }
}

/// Records what the run's end (duration mode) cut off on a connection that
/// was still going: every measured message from `settled` (the first not
/// yet echoed or, with `--udp`, given up) to `sent` (those handed to the
/// socket, due at `intended_of(seq)`), and with `--rate` every measured
/// message due before the end that the connection never sent because it
/// had fallen behind. Each counts in `unfinished` and in the latencies at
/// its age at the end ([`Stats::unfinished`]), so that a run that cannot
/// keep up with `--rate` reports the backlog it built instead of hiding it
/// (coordinated omission at the end of the run). Connections that failed
/// are not asked: their errors fail the run.
///
/// An open loop far behind can leave millions unsent: those go into the
/// histograms in runs whose ages differ by less than the histograms can
/// tell apart (1/2048 of the age), never across a `--window` boundary.
pub fn count_unfinished(
    c: &Conn,
    stats: &Stats,
    settled: u64,
    sent: u64,
    intended_of: impl Fn(u64) -> Stamp,
) {
    let tl = c.timeline;
    let Some(end) = tl.end else {
        return; // --requests: every message is waited for
    };
    for seq in settled..sent {
        let due = intended_of(seq);
        if due >= tl.warm_end && due < end {
            stats.unfinished(due, end.nanos_since(due), 1, false);
        }
    }
    let Some(pace) = &c.pace else {
        return; // closed loop: nothing is due before it is sent
    };
    let interval = pace.stride as f64 / pace.rate * 1e9;
    let mut seq = pace.first_due_at(tl.warm_end, sent);
    let last = pace.first_due_at(end, seq);
    while seq < last {
        let due = pace.due(seq);
        let age = end.nanos_since(due);
        let mut n = ((age as f64 / 2048.0 / interval) as u64).clamp(1, last - seq);
        if let Some(boundary) = stats.end_of_window(due) {
            n = n.min(pace.first_due_at(boundary, seq) - seq).max(1);
        }
        // The run's middle message stands for all of it.
        let mid = age.saturating_sub(((n - 1) as f64 * interval / 2.0) as u64);
        stats.unfinished(due, mid, n, true);
        seq += n;
    }
}

/// Everything one connection needs to know.
#[derive(Clone, Debug)]
pub struct Conn {
    pub id: u64,
    pub size: usize,
    pub pipeline: usize,
    /// Requests mode: how many measured messages this connection sends.
    pub quota: Option<u64>,
    pub pace: Option<Pace>,
    pub timeline: Timeline,
    /// The watch's limit on a wait for the server: `--timeout`, or with
    /// `--udp` `--loss-after`.
    pub timeout: Duration,
}

/// Where the first differing byte is, for the report.
#[cold]
pub fn report_mismatch(stats: &Stats, id: u64, seq: u64, at: usize, got: &[u8], want: &[u8]) {
    let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
    stats.report(format_args!(
        "connection {id}: message {seq}: echo differs at byte {}: got {:#04x}, want {:#04x}",
        at + i,
        got[i],
        want[i]
    ));
}

/// The server sent back more bytes than it was sent: counted as a
/// mismatch, and the connection ends (its byte stream is out of step).
#[cold]
fn overrun(stats: &Stats, id: u64, seq: u64, extra: usize) {
    stats.complete(false, true, Stamp::default(), Stamp::default());
    stats.report(format_args!(
        "connection {id}: message {seq}: the server sent {extra} more bytes than it was sent"
    ));
}

/// The end of a stream connection whose every echo is in (`sent`
/// messages): shuts down its sending side and reads until the server
/// closes its own, as an echo server does once it has read the end of the
/// stream. A byte that comes first is more than the server was sent (a
/// duplicated last echo, trailing bytes): a mismatch, reported; a receive
/// error is an error, as anywhere. The wait is the watch's, `--timeout`
/// from the shutdown: a server that keeps the connection open that long
/// is taken to have sent nothing more (not an error), so the run's end
/// waits for it once, up to `--timeout` and an eighth. Otherwise it costs
/// a round trip per connection, after the last echo (outside what is
/// measured).
pub async fn expect_close(
    stream: &impl RecvBytes,
    c: &Conn,
    stats: &Stats,
    watch: &Watch,
    rx: &mut [u8],
    sent: u64,
) {
    // A shutdown that fails (a connection the server has reset) leaves the
    // receive to say what is left.
    let _ = stream.shutdown_write();
    watch.arm(c.timeline.clock.now());
    let got = watch.guard(stream.recv_bytes(rx)).await;
    watch.disarm();
    match got {
        Ok(Ok(0)) | Err(Stop::Timeout | Stop::End) => {}
        Ok(Ok(n)) => {
            stats.complete(false, true, Stamp::default(), Stamp::default());
            stats.report(format_args!(
                "connection {}: after the echo of its last message ({sent} sent) the server \
                 sent {n} more bytes than it was sent",
                c.id
            ));
        }
        Ok(Err(e)) => stats.error(
            c.id,
            format_args!("receive after the last echo ({sent} messages): {e}"),
        ),
    }
}

/// Closed loop (or paced with one message in flight): send a message, wait
/// for its whole echo, check it, record it, repeat. Through a [`StreamIo`]
/// (`TcpIo` for TCP): the
/// connection keeps its receive and send cells reserved for its whole life
/// instead of taking and returning them at every operation. Its end:
/// [`expect_close`].
pub async fn closed<S: StreamSocket + RecvBytes>(
    stream: S,
    c: Conn,
    stats: Rc<Stats>,
    watch: &Watch,
) {
    let mut io = StreamIo::new(stream);
    let size = c.size;
    let tl = c.timeline;
    let mut msg = vec![0u8; size];
    // Larger than a message: the read that completes a message is then a
    // short read, which tells cellio the socket is drained, so the next
    // message's receive parks without a syscall that would say EAGAIN.
    let mut rx = vec![0u8; size + MIN_RX];
    let clock = tl.clock;
    let mut schedule = Schedule::new();
    // One clock read per message: the echo's arrival is the next send
    // (read again after a yield, see `yield_then_now`).
    let mut now = clock.now();
    let mut seq = 0u64;
    let mut run = 0u32;
    // The message in flight when the run's end stopped the loop (when it
    // was due), and whether every message sent was echoed in full.
    let (in_flight, echoed_all) = 'run: loop {
        let Some((intended, since, recorded)) = schedule.next(&c, seq, now, &stats).await else {
            break (None, true);
        };
        fill(&mut msg, c.id, seq);
        watch.arm(since);
        match watch.guard(io.send_all(&msg)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return stats.error(c.id, format_args!("send: {e}")),
            Err(Stop::End) => break (Some(intended), false),
            Err(Stop::Timeout) => return stats.timeout(c.id, seq, c.timeout),
        }
        let mut got = 0;
        while got < size {
            match watch.guard(io.recv(&mut rx[got..])).await {
                Ok(Ok(0)) => {
                    return stats.error(
                        c.id,
                        format_args!("message {seq}: unexpected EOF after {got} of {size} bytes"),
                    )
                }
                Ok(Ok(n)) => {
                    got += n;
                    if got < size {
                        // Part of the echo: progress, so `--timeout` counts
                        // from now (a clock read only for a partial echo).
                        watch.progress(clock.now());
                    }
                }
                Ok(Err(e)) => return stats.error(c.id, format_args!("receive: {e}")),
                Err(Stop::End) => break 'run (Some(intended), false),
                Err(Stop::Timeout) => return stats.timeout(c.id, seq, c.timeout),
            }
        }
        watch.disarm();
        now = clock.now();
        if got > size {
            return overrun(&stats, c.id, seq, got - size);
        }
        let bad = rx[..size] != msg[..];
        if bad {
            report_mismatch(&stats, c.id, seq, 0, &rx[..size], &msg);
        }
        if tl.ended(now) {
            // Echoed after the end (the watch drains): checked, not
            // recorded; `unfinished` below.
            stats.complete(false, bad, intended, now);
            break (Some(intended), true);
        }
        stats.complete(recorded, bad, intended, now);
        seq += 1;
        run += 1;
        if run == BUDGET {
            run = 0;
            now = yield_then_now(&clock).await;
        }
    };
    let sent = seq + u64::from(in_flight.is_some());
    count_unfinished(&c, &stats, seq, sent, |_| in_flight.unwrap_or_default());
    if echoed_all {
        // (The stream's own receive: the `StreamIo` holds its cells.)
        expect_close(&io.into_inner(), &c, &stats, watch, &mut rx, sent).await;
    }
}

/// What the two halves of a pipelined connection share: they run inside
/// one task, so plain cells.
pub struct Flight {
    /// Messages handed to the sender's send.
    pub sent: Cell<u64>,
    /// Messages settled by the receiver (echoed, or with `--udp` lost).
    pub done: Cell<u64>,
    pub sender_finished: Cell<bool>,
    /// The receiver has queued the task again (`yield_now`).
    pub yielding: Cell<bool>,
    /// Per in-flight slot (message seq % K): when it was due (sent, in a
    /// closed loop). A slot holds its message's times from its send until
    /// it settles: the window keeps at most K messages outstanding, and
    /// nothing is sent at or after the end ([`Schedule::next`]), so the
    /// messages [`join`] counts as unfinished (at most K) each still have
    /// their own slot.
    pub intended: Vec<Cell<Stamp>>,
    /// Per in-flight slot: when it was sent.
    pub sent_at: Vec<Cell<Stamp>>,
    /// Messages settled when the run ended, if a stream's receiver went on
    /// draining echoes after it (counted as unfinished, not `done`'s).
    pub settled_at_end: Cell<Option<u64>>,
}

impl Flight {
    /// Nothing in flight yet; `k` slots, stamped `start`.
    pub fn new(k: usize, start: Stamp) -> Self {
        Flight {
            sent: Cell::new(0),
            done: Cell::new(0),
            sender_finished: Cell::new(false),
            yielding: Cell::new(false),
            intended: vec![Cell::new(start); k],
            sent_at: vec![Cell::new(start); k],
            settled_at_end: Cell::new(None),
        }
    }

    /// Message `seq`'s slot.
    #[inline]
    pub fn slot(&self, seq: u64) -> usize {
        (seq % self.intended.len() as u64) as usize
    }

    /// Waits until the sender has sent past `seq` (true) or has finished
    /// (false). No waker needed: only the sender's progress ends the wait,
    /// and [`join`] polls the receiver again after it.
    pub async fn sent_past(&self, seq: u64) -> bool {
        poll_fn(|_| {
            if self.sent.get() > seq {
                Poll::Ready(true)
            } else if self.sender_finished.get() {
                Poll::Ready(false)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// After a receiver has handled `*run` messages in a row: once they
    /// reach [`BUDGET`], the count starts again and the task yields to the
    /// worker's other tasks.
    pub async fn yield_if_spent(&self, run: &mut u32) {
        if *run >= BUDGET {
            *run = 0;
            self.yielding.set(true);
            yield_now().await;
        }
    }
}

/// A socket a pipelined sender sends whole messages on.
pub trait SendMessage {
    /// Sends all of `msg` (over UDP, as one datagram).
    fn send_message<'a>(&'a self, msg: &'a [u8]) -> impl Future<Output = io::Result<()>> + 'a;
}

impl SendMessage for TcpStream {
    fn send_message<'a>(&'a self, msg: &'a [u8]) -> impl Future<Output = io::Result<()>> + 'a {
        self.send_all(msg)
    }
}

impl SendMessage for UnixStream {
    fn send_message<'a>(&'a self, msg: &'a [u8]) -> impl Future<Output = io::Result<()>> + 'a {
        self.send_all(msg)
    }
}

/// A stream a pipelined receiver reads echoes from, and whose sending side
/// a connection shuts down at its end ([`expect_close`]): a TCP or a Unix
/// one.
pub trait RecvBytes {
    /// Receives into `buf`: the bytes received, 0 at end of stream.
    fn recv_bytes<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Unpin + 'a;

    /// Shuts down the sending side: the server reads the end of the stream.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl RecvBytes for TcpStream {
    fn recv_bytes<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Unpin + 'a {
        self.recv(buf)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl RecvBytes for UnixStream {
    fn recv_bytes<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Unpin + 'a {
        self.recv(buf)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// The sending half of a pipelined connection: keeps up to K messages
/// outstanding, paced with `--rate`. Returns false if a send failed
/// (reported): the connection is then done.
pub async fn send_window(
    socket: &impl SendMessage,
    c: &Conn,
    stats: &Stats,
    flight: &Flight,
) -> bool {
    let clock = c.timeline.clock;
    let k = flight.intended.len() as u64;
    let mut msg = vec![0u8; c.size];
    let mut schedule = Schedule::new();
    let mut seq = 0u64;
    loop {
        // Window: at most K outstanding. No waker needed: only the
        // receiver's progress opens it, and the join re-polls us then.
        poll_fn(|_| {
            if seq - flight.done.get() < k {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        let Some((due, now, _)) = schedule.next(c, seq, clock.now(), stats).await else {
            break;
        };
        fill(&mut msg, c.id, seq);
        let slot = flight.slot(seq);
        flight.intended[slot].set(due);
        flight.sent_at[slot].set(now);
        flight.sent.set(seq + 1);
        if let Err(e) = socket.send_message(&msg).await {
            stats.error(c.id, format_args!("send: {e}"));
            return false;
        }
        seq += 1;
    }
    flight.sender_finished.set(true);
    true
}

/// Runs a pipelined connection's sender and receiver inside the calling
/// task until the receiver ends or a send fails. Each half returns false
/// if it failed (reported). If neither did, [`count_unfinished`] then
/// takes what the run's end cut off, and it returns true.
pub async fn join(
    c: &Conn,
    stats: &Stats,
    flight: &Flight,
    sender: impl Future<Output = bool>,
    receiver: impl Future<Output = bool>,
) -> bool {
    let mut sender = pin!(sender);
    let mut receiver = pin!(receiver);
    let mut sender_live = true;
    let progress = || {
        (
            flight.sent.get(),
            flight.done.get(),
            flight.sender_finished.get(),
        )
    };
    let ok = poll_fn(|cx| {
        for _ in 0..BUDGET {
            let mark = progress();
            if sender_live {
                if let Poll::Ready(ok) = sender.as_mut().poll(cx) {
                    sender_live = false;
                    if !ok {
                        return Poll::Ready(false); // send failed: the connection is done
                    }
                }
            }
            if let Poll::Ready(ok) = receiver.as_mut().poll(cx) {
                return Poll::Ready(ok);
            }
            if flight.yielding.replace(false) {
                return Poll::Pending; // yield_now already queued us again
            }
            if progress() == mark {
                return Poll::Pending; // both halves wait on real wakers
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
    if ok {
        let settled = flight.settled_at_end.get().unwrap_or(flight.done.get());
        let sent = flight.sent.get();
        debug_assert!(
            sent - settled <= flight.intended.len() as u64,
            "{sent} sent, {settled} settled: more than the window outstanding at the end"
        );
        // A paced message's due time from the schedule itself; a closed
        // loop's send time from its slot (see `Flight::intended`).
        count_unfinished(c, stats, settled, sent, |seq| match &c.pace {
            Some(pace) => pace.due(seq),
            None => flight.intended[flight.slot(seq)].get(),
        });
    }
    ok
}

/// The largest message the closed loop sends whole before reading its echo
/// (see the module docs); larger ones take the pipelined loop, which
/// receives while it sends. 64 KiB: far below what the kernel's socket
/// buffers hold on a loopback connection (TCP or Unix).
pub const CLOSED_LOOP_MAX_SIZE: usize = 64 * 1024;

/// `--pipeline K > 1`: a sender keeps up to K messages outstanding while a
/// receiver checks the echoes as they stream back; both run inside this
/// task ([`join`]). Its end, once every echo is in: [`expect_close`].
pub async fn pipelined<S: SendMessage + RecvBytes>(
    stream: S,
    c: Conn,
    stats: Rc<Stats>,
    watch: &Watch,
) {
    let flight = Flight::new(c.pipeline, c.timeline.clock.now());
    let size = c.size;
    let rx_len = size.saturating_mul(c.pipeline).clamp(MIN_RX, 1 << 20);
    let mut rx = vec![0u8; rx_len.max(size)];
    let sender = send_window(&stream, &c, &stats, &flight);
    let receiver = receive_stream(&stream, &c, &stats, watch, &flight, &mut rx);
    let ok = join(&c, &stats, &flight, sender, receiver).await;
    // (A receiver that the run's end stopped, were that to happen over a
    // stream, would leave echoes outstanding.)
    let sent = flight.sent.get();
    if ok && flight.done.get() == sent {
        expect_close(&stream, &c, &stats, watch, &mut rx, sent).await;
    }
}

/// The receiving half of a pipelined stream connection: checks the echoes
/// as they stream back, whatever the reads' boundaries, reading into `rx`.
async fn receive_stream(
    stream: &impl RecvBytes,
    c: &Conn,
    stats: &Stats,
    watch: &Watch,
    flight: &Flight,
    rx: &mut [u8],
) -> bool {
    let size = c.size;
    let tl = c.timeline;
    let clock = tl.clock;
    let mut expect = vec![0u8; size];
    let mut seq = 0u64; // message being received
    let mut off = 0usize; // its bytes received so far
    let mut expect_seq = u64::MAX; // message `expect` holds
    let mut bad = false;
    let mut last_progress = clock.now();
    let mut run = 0u32;
    loop {
        if seq == flight.sent.get() {
            // Nothing outstanding: wait for the sender.
            if !flight.sent_past(seq).await {
                return true;
            }
            continue;
        }
        // Read as much as fits, not only what is outstanding: a short
        // read tells cellio the socket is drained (no EAGAIN syscall
        // before the next wait).
        watch.arm(last_progress.max(flight.sent_at[flight.slot(seq)].get()));
        let n = match watch.guard(stream.recv_bytes(rx)).await {
            Ok(Ok(0)) => {
                stats.error(
                    c.id,
                    format_args!("message {seq}: unexpected EOF after {off} of {size} bytes"),
                );
                return false;
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                stats.error(c.id, format_args!("receive: {e}"));
                return false;
            }
            Err(Stop::End) => return true,
            Err(Stop::Timeout) => {
                stats.timeout(c.id, seq, c.timeout);
                return false;
            }
        };
        watch.disarm();
        // Any bytes are progress: `--timeout` counts from the last read
        // (one clock read per read, which also stamps the messages it
        // completes).
        let t = clock.now();
        last_progress = t;
        // (`sent` may have grown while we waited.)
        let outstanding = ((flight.sent.get() - seq) as usize).saturating_mul(size) - off;
        if n > outstanding {
            overrun(stats, c.id, seq, n - outstanding);
            return false;
        }
        let mut pos = 0;
        while pos < n {
            if expect_seq != seq {
                fill(&mut expect, c.id, seq);
                expect_seq = seq;
            }
            let take = (size - off).min(n - pos);
            let (got, want) = (&rx[pos..pos + take], &expect[off..off + take]);
            if got != want {
                if !bad {
                    report_mismatch(stats, c.id, seq, off, got, want);
                }
                bad = true;
            }
            pos += take;
            off += take;
            if off == size {
                let due = flight.intended[flight.slot(seq)].get();
                if tl.ended(t) {
                    // Echoed after the end (the watch drains until the
                    // sender's last message is back): checked, not
                    // recorded; `unfinished` in `join`.
                    if flight.settled_at_end.get().is_none() {
                        flight.settled_at_end.set(Some(seq));
                    }
                    stats.complete(false, bad, due, t);
                } else {
                    stats.complete(due >= tl.warm_end, bad, due, t);
                }
                seq += 1;
                flight.done.set(seq);
                off = 0;
                bad = false;
                run += 1;
            }
        }
        flight.yield_if_spent(&mut run).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    fn pace(rate: f64) -> Pace {
        Pace {
            t0: Stamp::default().add(Duration::from_secs(3)),
            rate,
            offset: 1,
            stride: 10,
            spin: false,
        }
    }

    /// The stamp a closed loop sends its next message with after its
    /// yield is read after the other tasks' turn, not before it.
    #[test]
    fn the_send_after_a_yield_is_timed_from_after_the_yield() {
        use cellio::{spawn_local, Runtime};

        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            let clock = Clock::on_instant();
            let before = clock.now();
            // Another ready task: it runs during the yield and holds the
            // worker until the clock has moved on.
            let other = spawn_local(async move {
                let start = clock.now();
                while clock.now() <= start {
                    std::hint::spin_loop();
                }
                clock.now()
            });
            let after = yield_then_now(&clock).await;
            let other_ended = other.await.unwrap();
            assert!(
                before < other_ended && other_ended <= after,
                "the send is stamped {} ns after the last echo, but the other \
                 task ran until {} ns after it",
                after.nanos_since(before),
                other_ended.nanos_since(before)
            );
        });
    }

    #[test]
    fn due_times_follow_the_rate() {
        let p = pace(1000.0);
        // (1 + 2 * 10) / 1000 s after t0.
        assert_eq!(p.due(2).nanos_since(p.t0), 21_000_000);
    }

    #[test]
    fn first_due_at_finds_the_exact_message() {
        let p = pace(1000.0);
        // Message s is due (1 + 10 s) ms after t0.
        let at = |ms: u64| p.t0.add(Duration::from_millis(ms));
        assert_eq!(p.first_due_at(at(0), 0), 0);
        assert_eq!(p.first_due_at(at(1), 0), 0);
        assert_eq!(p.first_due_at(at(2), 0), 1);
        assert_eq!(p.first_due_at(at(21), 0), 2);
        assert_eq!(p.first_due_at(at(22), 0), 3);
        assert_eq!(p.first_due_at(at(22), 7), 7);
        assert_eq!(p.first_due_at(p.t0.sub(Duration::from_secs(1)), 0), 0);
    }

    /// A connection at 1/3 of 100 000 msg/s that never sent a message of
    /// a 2 s window, after two in flight: each is counted once, in its
    /// `--window`, at its age at the end to the histogram's resolution,
    /// although most are recorded in runs.
    #[test]
    fn unfinished_messages_are_counted_once_at_their_age() {
        use std::sync::atomic::AtomicU64;
        use std::sync::Arc;

        use crate::stats::{latency_bound, Recorder, Tally, Totals, Windows};

        let t0 = Stamp::default().add(Duration::from_secs(5));
        let p = Pace {
            t0,
            rate: 1e5,
            offset: 1,
            stride: 3,
            spin: false,
        };
        let warm_end = t0.add(Duration::from_millis(100));
        let end = warm_end.add(Duration::from_secs(2));
        let c = Conn {
            id: 1,
            size: 8,
            pipeline: 2,
            quota: None,
            pace: Some(p),
            timeline: Timeline {
                clock: Clock::on_instant(),
                warm_end,
                end: Some(end),
            },
            timeout: Duration::from_secs(1),
        };
        let bound = latency_bound(&[]);
        let mut windows = Windows::new(Duration::from_millis(300), 7, bound);
        windows.begin(warm_end);
        let tally = Rc::new(Tally::new(
            Arc::new(AtomicU64::new(0)),
            vec![Recorder::new(Some(windows), bound)],
        ));
        let stats = Stats::new(tally.clone(), 0, bound);
        // Messages 4000 and 4001 were sent; none after them.
        count_unfinished(&c, &stats, 4000, 4002, |seq| p.due(seq));

        // By hand: every message due in [warm_end, end) from 4000 on.
        let due: Vec<Stamp> = (4000..)
            .map(|seq| p.due(seq))
            .take_while(|&d| d < end)
            .filter(|&d| d >= warm_end)
            .collect();
        let mut total = Totals::empty(bound);
        stats.move_into(&mut total);
        assert_eq!(total.unfinished, due.len() as u64);
        assert_eq!(total.lag.len(), due.len() as u64 - 2); // the unsent ones
        let out = Rc::try_unwrap(tally)
            .unwrap_or_else(|_| unreachable!("no other reference"))
            .into_worker_totals(vec![total]);
        let t = &out.targets[0];
        assert_eq!(t.msgs, 0);
        assert_eq!(t.hist.len(), due.len() as u64);
        let ages: Vec<u64> = due.iter().map(|&d| end.nanos_since(d)).collect();
        let mean = ages.iter().sum::<u64>() as f64 / ages.len() as f64;
        assert!(
            (t.hist.mean() / mean - 1.0).abs() < 1e-3,
            "{} vs {mean}",
            t.hist.mean()
        );
        for q in [0.01, 0.5, 0.99] {
            let mut sorted = ages.clone();
            sorted.sort_unstable();
            let want = sorted[((sorted.len() - 1) as f64 * q) as usize];
            let got = t.hist.value_at_quantile(q);
            assert!(got.abs_diff(want) <= want / 500, "q {q}: {got} vs {want}");
        }
        let w = t.windows.as_ref().expect("windows");
        for (i, h) in w.hists.iter().enumerate() {
            let lo = warm_end.add(w.len * i as u32);
            let hi = warm_end.add(w.len * (i as u32 + 1));
            let n = due
                .iter()
                .filter(|&&d| d >= lo && (d < hi || i + 1 == w.hists.len()))
                .count();
            assert_eq!(h.len(), n as u64, "window {i}");
        }
    }

    #[test]
    fn due_times_past_an_instant_saturate_instead_of_panicking() {
        let p = pace(1e-300);
        let last = Stamp::default().add(Duration::MAX);
        assert_eq!(p.due(0), last);
        let q = pace(1.0);
        assert_eq!(q.due(u64::MAX), last);
    }
}
