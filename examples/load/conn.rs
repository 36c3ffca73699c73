//! One connection's traffic: the closed loop (`--pipeline 1`) and the
//! pipelined loop (a sender and a receiver joined inside one task).
//!
//! Both reuse their buffers: after a connection's task has started, sending,
//! receiving, checking and recording a message allocates nothing.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use cellio::runtime::{sleep_until, Sleep};
use cellio::{yield_now, TcpIo, TcpStream};

use crate::clock::{Clock, Stamp};
use crate::pattern::fill;
use crate::stats::Stats;
use crate::watch::{Stop, Watch};

/// A task yields to the others after this many messages in a row.
const BUDGET: u32 = 64;
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
    fn ended(&self, now: Stamp) -> bool {
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
    pub timeout: Duration,
}

/// Where the first differing byte is, for the report.
#[cold]
fn report_mismatch(stats: &Stats, id: u64, seq: u64, at: usize, got: &[u8], want: &[u8]) {
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

/// Closed loop (or paced with one message in flight): send a message, wait
/// for its whole echo, check it, record it, repeat. Through [`TcpIo`]: the
/// connection keeps its receive and send cells reserved for its whole life
/// instead of taking and returning them at every operation.
pub async fn closed(stream: TcpStream, c: Conn, stats: Rc<Stats>, watch: &Watch) {
    let mut io = TcpIo::new(stream);
    let size = c.size;
    let tl = c.timeline;
    let mut msg = vec![0u8; size];
    // Larger than a message: the read that completes a message is then a
    // short read, which tells cellio the socket is drained, so the next
    // message's receive parks without a syscall that would say EAGAIN.
    let mut rx = vec![0u8; size + MIN_RX];
    let clock = tl.clock;
    let mut pace_sleep = sleep_until(Instant::now());
    // One clock read per message: the echo's arrival is the next send.
    let mut now = clock.now();
    let mut seq = 0u64;
    let mut counted = 0u64;
    let mut run = 0u32;
    loop {
        if c.quota.is_some_and(|q| counted >= q) {
            break;
        }
        let (intended, since) = match &c.pace {
            Some(pace) => {
                let due = pace.due(seq);
                if tl.ended(due) {
                    break;
                }
                wait_due(&mut pace_sleep, &clock, due, pace.spin).await;
                now = clock.now();
                if due >= tl.warm_end {
                    stats.send_lag(now.nanos_since(due));
                }
                (due, now)
            }
            None => {
                if tl.ended(now) {
                    break;
                }
                (now, now)
            }
        };
        let recorded = intended >= tl.warm_end;
        counted += recorded as u64;
        fill(&mut msg, c.id, seq);
        watch.arm(since);
        match watch.guard(io.send_all(&msg)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return stats.error(c.id, format_args!("send: {e}")),
            Err(Stop::End) => return,
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
                Ok(Ok(n)) => got += n,
                Ok(Err(e)) => return stats.error(c.id, format_args!("receive: {e}")),
                Err(Stop::End) => return,
                Err(Stop::Timeout) => return stats.timeout(c.id, seq, c.timeout),
            }
        }
        watch.disarm();
        now = clock.now();
        if tl.ended(now) {
            return;
        }
        if got > size {
            return overrun(&stats, c.id, seq, got - size);
        }
        let bad = rx[..size] != msg[..];
        if bad {
            report_mismatch(&stats, c.id, seq, 0, &rx[..size], &msg);
        }
        stats.complete(recorded, bad, intended, now);
        seq += 1;
        run += 1;
        if run == BUDGET {
            run = 0;
            yield_now().await;
        }
    }
}

/// `--pipeline K > 1`: a sender keeps up to K messages outstanding while a
/// receiver checks the echoes as they stream back; both run inside this
/// task, joined by hand.
pub async fn pipelined(stream: TcpStream, c: Conn, stats: Rc<Stats>, watch: &Watch) {
    let size = c.size;
    let k = c.pipeline;
    let tl = c.timeline;
    let stream = &stream;
    let stats = &*stats;

    // Shared between the two halves (same task, so plain cells).
    let sent = Cell::new(0u64); // messages handed to the sender's send_all
    let done = Cell::new(0u64); // messages whose echo came back in full
    let sender_finished = Cell::new(false);
    let yielding = Cell::new(false);
    let clock = tl.clock;
    let start = clock.now();
    // Per in-flight slot (message seq % K): intended and actual send time.
    let intended: Vec<Cell<Stamp>> = vec![Cell::new(start); k];
    let sent_at: Vec<Cell<Stamp>> = vec![Cell::new(start); k];
    let (intended, sent_at) = (&intended[..], &sent_at[..]);
    let (sent, done, sender_finished, yielding) = (&sent, &done, &sender_finished, &yielding);

    let sender = async {
        let mut msg = vec![0u8; size];
        let mut pace_sleep = sleep_until(clock.instant_of(start));
        let mut seq = 0u64;
        let mut counted = 0u64;
        loop {
            if c.quota.is_some_and(|q| counted >= q) {
                break;
            }
            // Window: at most K outstanding. No waker needed: only the
            // receiver's progress opens it, and the join re-polls us then.
            poll_fn(|_| {
                if seq - done.get() < k as u64 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            let (due, now) = match &c.pace {
                Some(pace) => {
                    let due = pace.due(seq);
                    if tl.ended(due) {
                        break;
                    }
                    wait_due(&mut pace_sleep, &clock, due, pace.spin).await;
                    let now = clock.now();
                    if due >= tl.warm_end {
                        stats.send_lag(now.nanos_since(due));
                    }
                    (due, now)
                }
                None => {
                    let now = clock.now();
                    if tl.ended(now) {
                        break;
                    }
                    (now, now)
                }
            };
            counted += (due >= tl.warm_end) as u64;
            fill(&mut msg, c.id, seq);
            let slot = (seq % k as u64) as usize;
            intended[slot].set(due);
            sent_at[slot].set(now);
            sent.set(seq + 1);
            if let Err(e) = stream.send_all(&msg).await {
                stats.error(c.id, format_args!("send: {e}"));
                return false;
            }
            seq += 1;
        }
        sender_finished.set(true);
        true
    };

    let receiver = async {
        let mut rx = vec![0u8; size.saturating_mul(k).clamp(MIN_RX, 1 << 20).max(size)];
        let mut expect = vec![0u8; size];
        let mut seq = 0u64; // message being received
        let mut off = 0usize; // its bytes received so far
        let mut expect_seq = u64::MAX; // message `expect` holds
        let mut bad = false;
        let mut last_progress = start;
        let mut run = 0u32;
        loop {
            if seq == sent.get() {
                if sender_finished.get() {
                    return;
                }
                // Nothing outstanding: wait for the sender (the join
                // re-polls us when it makes progress).
                poll_fn(|_| {
                    if sent.get() > seq || sender_finished.get() {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
                continue;
            }
            // Read as much as fits, not only what is outstanding: a short
            // read tells cellio the socket is drained (no EAGAIN syscall
            // before the next wait).
            watch.arm(last_progress.max(sent_at[(seq % k as u64) as usize].get()));
            let n = match watch.guard(stream.recv(&mut rx)).await {
                Ok(Ok(0)) => {
                    return stats.error(
                        c.id,
                        format_args!("message {seq}: unexpected EOF after {off} of {size} bytes"),
                    )
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return stats.error(c.id, format_args!("receive: {e}")),
                Err(Stop::End) => return,
                Err(Stop::Timeout) => return stats.timeout(c.id, seq, c.timeout),
            };
            watch.disarm();
            // (`sent` may have grown while we waited.)
            let outstanding = ((sent.get() - seq) as usize).saturating_mul(size) - off;
            if n > outstanding {
                return overrun(stats, c.id, seq, n - outstanding);
            }
            let mut pos = 0;
            let mut now = None;
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
                    let t = *now.get_or_insert_with(|| clock.now());
                    if tl.ended(t) {
                        return;
                    }
                    let due = intended[(seq % k as u64) as usize].get();
                    stats.complete(due >= tl.warm_end, bad, due, t);
                    last_progress = t;
                    seq += 1;
                    done.set(seq);
                    off = 0;
                    bad = false;
                    run += 1;
                }
            }
            if run >= BUDGET {
                run = 0;
                yielding.set(true);
                yield_now().await;
            }
        }
    };

    let mut sender = pin!(sender);
    let mut receiver = pin!(receiver);
    let mut sender_live = true;
    poll_fn(|cx| {
        for _ in 0..BUDGET {
            let mark = (sent.get(), done.get(), sender_finished.get());
            if sender_live {
                if let Poll::Ready(ok) = sender.as_mut().poll(cx) {
                    sender_live = false;
                    if !ok {
                        return Poll::Ready(()); // send failed: the connection is done
                    }
                }
            }
            if receiver.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            if yielding.replace(false) {
                return Poll::Pending; // yield_now already queued us again
            }
            if (sent.get(), done.get(), sender_finished.get()) == mark {
                return Poll::Pending; // both halves wait on real wakers
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(rate: f64) -> Pace {
        Pace {
            t0: Stamp::default().add(Duration::from_secs(3)),
            rate,
            offset: 1,
            stride: 10,
            spin: false,
        }
    }

    #[test]
    fn due_times_follow_the_rate() {
        let p = pace(1000.0);
        // (1 + 2 * 10) / 1000 s after t0.
        assert_eq!(p.due(2).nanos_since(p.t0), 21_000_000);
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
