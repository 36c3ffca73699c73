//! Everything that can happen to a connection's operations, at once and at
//! random: many connections on a multi-worker runtime, each byte stream
//! checked end to end.
//!
//! Every operation (the server's `accept`, a client's or the echo server's
//! `recv`, `recv_exact`, `send`, `send_all`, and `TcpIo`'s future and poll
//! methods) meets a seeded random fate: awaited to the end, polled once and
//! dropped if it did not complete, raced against a timer of a few
//! microseconds (so it is dropped while parked, or after the reactor woke
//! it but before its next poll), or started after a yield. Streams are
//! served on the worker that accepted them (confined cells) or moved to
//! another one (the reactor notifies across threads), with the stream's
//! futures, a `TcpIo` that sometimes gives its stream back and takes it
//! again mid-connection, or a split `TcpIo` receiving and sending at once
//! in one task. The runtime's event capacity, budget and event interval are
//! drawn too, down to 1.
//!
//! What must hold, whatever the draw:
//! * every byte comes back exactly once, in order (each connection sends
//!   its own random bytes, and the client checks each chunk it receives
//!   at its offset);
//! * a dropped operation did exactly what it reported: a `send_all` its
//!   `sent()`, a `recv_exact` its `filled()`, a `send` or `recv` nothing,
//!   an `accept` took no connection;
//! * every task ends, the runtime shuts down, and no descriptor is left
//!   open.
//!
//! Each seed is a fresh runtime. `CELLIO_STRESS_SEEDS=N` runs seeds
//! `0..N` (default 6); a failure names its seed, and `CELLIO_STRESS_SEED=S`
//! runs that one alone.

mod util;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use cellio_net::{TcpIo, TcpListener, TcpStream};
use cellio_runtime::RuntimeHandle;
use util::random::{
    draw_builder, meet, open_descriptors, run_seed_traffic, seeds_from_env, Rng, DROPPED,
};
use util::{join2, with_timeout};

/// Connections per seed.
const CONNECTIONS: usize = 48;
/// Largest byte count one connection sends (each draws 0 to this).
const MOST_BYTES: u64 = 192 * 1024;
/// Largest single operation's buffer.
const MOST_CHUNK: u64 = 64 * 1024;

/// An operation's buffer length: often small, sometimes up to
/// [`MOST_CHUNK`].
fn op_len(rng: &mut Rng) -> usize {
    let most = if rng.percent(50) { 64 } else { MOST_CHUNK };
    1 + rng.below(most) as usize
}

/// One receive of a drawn length into `buf`, through the future `recv`
/// makes, meeting a drawn fate: `None` if it was dropped unfinished.
async fn recv_drawn<'b, Fut>(
    rng: &mut Rng,
    buf: &'b mut [u8],
    recv: impl FnOnce(&'b mut [u8]) -> Fut,
) -> Option<io::Result<usize>>
where
    Fut: Future<Output = io::Result<usize>>,
{
    let (head, _) = buf.split_at_mut(op_len(rng).min(buf.len()));
    let fate = rng.fate();
    meet(pin!(recv(head)), fate).await
}

/// `send_all`s dropped after sending part of their buffer: the case where
/// `sent()` matters.
static DROPPED_PART_WAY: AtomicUsize = AtomicUsize::new(0);

/// Checks received bytes against what was sent, at offset `at`.
fn check(got: &[u8], sent: &[u8], at: usize) -> io::Result<()> {
    match sent.get(at..at + got.len()) {
        Some(expected) if expected == got => Ok(()),
        Some(_) => Err(io::Error::other(format!(
            "bytes {at}..{} differ from what was sent",
            at + got.len()
        ))),
        None => Err(io::Error::other(format!(
            "{} bytes came back at offset {at}, but only {} were sent",
            got.len(),
            sent.len()
        ))),
    }
}

/// Sends all of `data` through `stream`'s futures, in random chunks with
/// random fates, counting exactly what each dropped operation sent.
async fn send_randomly(stream: &TcpStream, data: &[u8], rng: &mut Rng) -> io::Result<()> {
    let mut sent = 0;
    while sent < data.len() {
        let chunk = &data[sent..data.len().min(sent + op_len(rng))];
        let fate = rng.fate();
        if rng.percent(50) {
            // A `send` dropped unfinished sent nothing.
            if let Some(n) = meet(pin!(stream.send(chunk)), fate).await {
                sent += n?;
            }
        } else {
            let mut op = pin!(stream.send_all(chunk));
            sent += match meet(op.as_mut(), fate).await {
                Some(done) => done.map(|()| chunk.len())?,
                None => {
                    if op.sent() > 0 {
                        DROPPED_PART_WAY.fetch_add(1, Ordering::Relaxed);
                    }
                    op.sent()
                }
            };
        }
    }
    Ok(())
}

/// Receives through `stream`'s futures until the peer closes, checking
/// every byte against `sent`; returns the bytes received.
async fn recv_checking(stream: &TcpStream, sent: &[u8], rng: &mut Rng) -> io::Result<usize> {
    let mut buf = vec![0u8; MOST_CHUNK as usize];
    let mut got = 0;
    loop {
        let len = op_len(rng);
        let fate = rng.fate();
        let n = if rng.percent(30) && got < sent.len() {
            // Exactly what is still to come, at most: a `recv_exact` must
            // not wait for bytes that were never sent.
            let len = len.min(sent.len() - got);
            let mut op = pin!(stream.recv_exact(&mut buf[..len]));
            match meet(op.as_mut(), fate).await {
                Some(done) => done.map(|()| len)?,
                None => op.filled(),
            }
        } else {
            match meet(pin!(stream.recv(&mut buf[..len])), fate).await {
                Some(Ok(0)) => return Ok(got),
                Some(n) => n?,
                None => 0, // dropped: received nothing
            }
        };
        check(&buf[..n], sent, got)?;
        got += n;
    }
}

/// The server's side with the stream's futures: echoes until the peer
/// closes, then closes its own side. Returns the bytes echoed.
async fn echo_with_futures(stream: TcpStream, mut rng: Rng) -> io::Result<usize> {
    let mut buf = vec![0u8; MOST_CHUNK as usize];
    let mut total = 0;
    loop {
        let n = match recv_drawn(&mut rng, &mut buf, |b| stream.recv(b)).await {
            Some(n) => n?,
            None => continue,
        };
        if n == 0 {
            stream.shutdown(Shutdown::Write)?;
            return Ok(total);
        }
        send_randomly(&stream, &buf[..n], &mut rng).await?;
        total += n;
    }
}

/// The server's side through a `TcpIo`: its receive future with random
/// fates, its `poll_send` sometimes abandoned after one poll (the cell
/// stays held; nothing is lost), and now and then the stream handed back
/// with `into_inner` and taken again.
async fn echo_with_tcp_io(stream: TcpStream, mut rng: Rng) -> io::Result<usize> {
    let mut io = TcpIo::new(stream);
    let mut buf = vec![0u8; MOST_CHUNK as usize];
    let mut total = 0;
    loop {
        if rng.percent(5) {
            io = TcpIo::new(io.into_inner());
        }
        let n = match recv_drawn(&mut rng, &mut buf, |b| io.recv(b)).await {
            Some(n) => n?,
            None => continue,
        };
        if n == 0 {
            io.get_ref().shutdown(Shutdown::Write)?;
            return Ok(total);
        }
        let mut sent = 0;
        while sent < n {
            let once = rng.percent(30);
            let polled = poll_fn(|cx| match io.poll_send(cx, &buf[sent..n]) {
                Poll::Pending if once => Poll::Ready(None),
                other => other.map(Some),
            })
            .await;
            if let Some(wrote) = polled {
                sent += wrote?;
            }
        }
        total += n;
    }
}

/// The server's side through a split `TcpIo`, both directions at once in
/// one task (a proxy's shape): the receive half reads with random fates
/// into a queue while the send half drains it with `poll_send`, sometimes
/// abandoned after one poll. Both halves' cells are held, and often both
/// parked, at the same time.
async fn echo_with_halves(stream: TcpStream, mut rng: Rng) -> io::Result<usize> {
    let mut io = TcpIo::new(stream);
    let (mut rx, mut tx) = io.split();
    let queue = RefCell::new(VecDeque::<u8>::new());
    let ended = Cell::new(false);
    let (mut rx_rng, mut tx_rng) = (rng.fork(), rng.fork());
    // Polled first by `join2`, so whatever it queues in a poll, the sender
    // sees in the same poll: the sender may wait for the queue without a
    // waker of its own.
    let receiving = async {
        let mut buf = vec![0u8; MOST_CHUNK as usize];
        let mut total = 0;
        loop {
            let n = match recv_drawn(&mut rx_rng, &mut buf, |b| rx.recv(b)).await {
                Some(n) => n?,
                None => continue,
            };
            if n == 0 {
                ended.set(true);
                return io::Result::Ok(total);
            }
            queue.borrow_mut().extend(&buf[..n]);
            total += n;
        }
    };
    let sending = async {
        let mut chunk = Vec::with_capacity(MOST_CHUNK as usize);
        loop {
            poll_fn(|_| match queue.borrow().is_empty() && !ended.get() {
                true => Poll::Pending,
                false => Poll::Ready(()),
            })
            .await;
            let len = op_len(&mut tx_rng).min(queue.borrow().len());
            if len == 0 {
                return tx.get_ref().shutdown(Shutdown::Write);
            }
            chunk.clear();
            chunk.extend(queue.borrow().iter().take(len));
            let once = tx_rng.percent(30);
            let polled = poll_fn(|cx| match tx.poll_send(cx, &chunk) {
                Poll::Pending if once => Poll::Ready(None),
                other => other.map(Some),
            })
            .await;
            if let Some(wrote) = polled {
                queue.borrow_mut().drain(..wrote?);
            }
        }
    };
    let (received, sent) = join2(receiving, sending).await;
    sent?;
    received
}

/// Accepts `connections` connections and serves each, by a random draw, on
/// this worker or another, with the stream's futures, a `TcpIo`, or a split
/// `TcpIo`. Returns the bytes each echoed, in accept order.
async fn serve(
    listener: TcpListener,
    connections: usize,
    runtime: RuntimeHandle,
    mut rng: Rng,
) -> io::Result<Vec<usize>> {
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        // An `accept` dropped unfinished took no connection: try again.
        let (stream, _) = loop {
            let fate = rng.fate();
            if let Some(accepted) = meet(pin!(listener.accept()), fate).await {
                break accepted?;
            }
        };
        shrink_buffers(&stream, &mut rng)?;
        let worker = rng.below(runtime.workers() as u64) as usize;
        let conn_rng = rng.fork();
        tasks.push(match rng.below(3) {
            0 => runtime.spawn_on(worker, echo_with_futures(stream, conn_rng)),
            1 => runtime.spawn_local_on(worker, move || echo_with_tcp_io(stream, conn_rng)),
            _ => runtime.spawn_local_on(worker, move || echo_with_halves(stream, conn_rng)),
        });
    }
    let mut echoed = Vec::with_capacity(connections);
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task
            .await
            .map_err(|e| io::Error::other(format!("server task {i}: {e}")))?;
        echoed.push(result.map_err(|e| io::Error::new(e.kind(), format!("server {i}: {e}")))?);
    }
    Ok(echoed)
}

/// Half the time, shrinks the stream's send buffer to its least, so that
/// sends fill it and park, and `send_all`s are dropped part-way. The
/// receive buffer is kept above loopback's 64 KiB segments: below that the
/// kernel drops a segment that does not fit and retransmits it with a
/// backoff of seconds (seen here: a connection stalled for 20 s with
/// `rto:6528 backoff:5`), which is TCP's behaviour, not cellio's.
fn shrink_buffers(stream: &TcpStream, rng: &mut Rng) -> io::Result<()> {
    if rng.percent(50) {
        stream.set_send_buffer_size(4096)?;
        stream.set_recv_buffer_size(65536)?;
    }
    Ok(())
}

/// A client: sends its random bytes while it receives and checks their
/// echo, then closes its side and expects the server's close after
/// exactly what it sent. Returns the byte count.
async fn client(addr: SocketAddr, mut rng: Rng) -> io::Result<usize> {
    let len = rng.below(MOST_BYTES + 1) as usize;
    let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    let stream = TcpStream::connect(addr).await?;
    shrink_buffers(&stream, &mut rng)?;
    let (mut send_rng, mut recv_rng) = (rng.fork(), rng.fork());
    let (sent, received) = join2(
        async {
            send_randomly(&stream, &data, &mut send_rng).await?;
            stream.shutdown(Shutdown::Write)
        },
        recv_checking(&stream, &data, &mut recv_rng),
    )
    .await;
    sent?;
    let received = received?;
    if received != len {
        return Err(io::Error::other(format!(
            "sent {len} bytes, {received} came back before the server closed"
        )));
    }
    Ok(len)
}

/// One seed: a fresh runtime, [`CONNECTIONS`] clients spread over its
/// workers, the server's accept loop on worker 0. Returns the bytes echoed.
fn run_seed(seed: u64) -> usize {
    run_seed_traffic(seed, |handle, mut rng| async move {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = handle.spawn_on(0, serve(listener, CONNECTIONS, handle.clone(), rng.fork()));
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|i| handle.spawn_on(i % handle.workers(), client(addr, rng.fork())))
            .collect();
        let mut sent = Vec::with_capacity(CONNECTIONS);
        for (i, task) in clients.into_iter().enumerate() {
            let result = task
                .await
                .map_err(|e| io::Error::other(format!("client task {i}: {e}")))?;
            sent.push(result.map_err(|e| io::Error::new(e.kind(), format!("client {i}: {e}")))?);
        }
        let mut echoed = server
            .await
            .map_err(|e| io::Error::other(format!("server: {e}")))??;
        // Accept order is not connect order: compare as multisets.
        echoed.sort_unstable();
        sent.sort_unstable();
        if echoed != sent {
            return Err(io::Error::other(format!(
                "the server echoed {echoed:?} bytes, the clients sent {sent:?}"
            )));
        }
        Ok(sent.iter().sum::<usize>())
    })
}

/// The tests of this file count the process's descriptors: one at a time.
static ALONE: Mutex<()> = Mutex::new(());

#[test]
fn every_byte_comes_back_whatever_happens_to_the_operations() {
    let _alone = ALONE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    util::default_sigpipe();
    let seeds = seeds_from_env();
    let (mut bytes, runs) = (0, seeds.end - seeds.start);
    for seed in seeds {
        bytes += run_seed(seed);
    }
    let dropped = DROPPED.load(Ordering::Relaxed);
    let part_way = DROPPED_PART_WAY.load(Ordering::Relaxed);
    eprintln!(
        "{runs} seeds: {bytes} bytes echoed, {dropped} operations dropped unfinished \
         ({part_way} send_alls part-way)"
    );
    // Over the default six seeds (or more) the draws must have reached
    // both cases, or the run proved nothing; one seed alone may miss the
    // rarer one.
    if runs >= 6 {
        assert!(
            dropped > 0,
            "no operation was dropped unfinished: the draws test nothing"
        );
        assert!(
            part_way > 0,
            "no send_all was dropped part-way: the draws miss that case"
        );
    }
}

/// The same traffic, stopped at a random moment (0–30 ms in, while most
/// connections are mid-transfer with operations parked on every worker) by
/// a graceful shutdown with no grace or by dropping the runtime: every task
/// is cancelled where it stands, and every socket must be closed.
#[test]
fn a_runtime_stopped_mid_traffic_closes_every_socket() {
    let _alone = ALONE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    util::default_sigpipe();
    let mut cancelled_in_all = 0;
    for seed in seeds_from_env() {
        let mut rng = Rng(seed);
        let (builder, config) = draw_builder(&mut rng);
        let after = Duration::from_micros(rng.below(30_000));
        let graceful = rng.percent(50);
        let descriptors = open_descriptors();
        let cancelled = with_timeout(Duration::from_secs(60), move || {
            let runtime = builder.build().expect("runtime");
            let handle = runtime.handle();
            runtime
                .block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0")?;
                    let addr = listener.local_addr()?;
                    // The handles are dropped: the tasks run on, detached.
                    handle.spawn_on(0, serve(listener, CONNECTIONS, handle.clone(), rng.fork()));
                    for i in 0..CONNECTIONS {
                        handle.spawn_on(i % handle.workers(), client(addr, rng.fork()));
                    }
                    cellio_runtime::sleep(after).await;
                    io::Result::Ok(())
                })
                .expect("binding the listener");
            if graceful {
                Some(runtime.shutdown_timeout(Duration::ZERO))
            } else {
                drop(runtime);
                None
            }
        });
        cancelled_in_all += cancelled.unwrap_or(0);
        let how = match cancelled {
            Some(n) => format!("shut down with {n} tasks to cancel"),
            None => "dropped".to_string(),
        };
        assert_eq!(
            open_descriptors(),
            descriptors,
            "seed {seed} ({config}; {how} after {after:?}): descriptors left open"
        );
    }
    eprintln!("{cancelled_in_all} tasks cancelled by the graceful shutdowns over all seeds");
}
