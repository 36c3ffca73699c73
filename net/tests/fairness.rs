//! The cooperative budget: a task whose socket is always ready (its peer
//! keeps the receive buffer full, so every `recv` completes synchronously)
//! must not starve the other tasks of its worker; a budget as small as
//! one operation per poll still moves every byte exactly; and operations
//! that wait (parked, with nothing to do) spend no budget, so they cannot
//! starve the operations polled after them in the same task. An operation
//! refused with `ResourceBusy` spends budget too, so that a loop retrying
//! it yields. A `send_many` whose batch takes several `sendmmsg` calls pays
//! for them as it goes, and yields between them.

mod util;

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io;
use std::io::{Read, Write};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use cellio_net::TcpStream;
use cellio_runtime::{spawn, yield_now, Builder};
use util::{cellio_pair, echo, pattern, poll_once, run_with, spawn_echo_server, std_peer};

/// The peer of a hog: one thread writes the test pattern as fast as it can
/// until `stop`, then half-closes; another reads back whatever comes and
/// checks it against the pattern (when `echoed`) until EOF.
struct Flood {
    stop: Arc<AtomicBool>,
    writer: ThreadHandle<usize>,
    reader: ThreadHandle<usize>,
}

impl Flood {
    fn start(peer: std::net::TcpStream, echoed: bool) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let mut out = peer.try_clone().unwrap();
        let mut back = peer;
        let writer = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let chunk: Vec<u8> = (0..64 * 1024 * 251).map(pattern).collect();
                let mut sent = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // Continue the pattern where the last write stopped.
                    let at = sent % (251 * 7);
                    let piece = &chunk[at..at + 64 * 1024];
                    match out.write(piece) {
                        Ok(n) => sent += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(e) => panic!("flood write failed: {e}"),
                    }
                }
                out.shutdown(std::net::Shutdown::Write).unwrap();
                sent
            }
        });
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0usize;
            loop {
                let n = match back.read(&mut buf) {
                    Ok(0) => return total,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("flood read failed: {e}"),
                };
                if echoed {
                    for (k, &byte) in buf[..n].iter().enumerate() {
                        assert_eq!(
                            byte,
                            pattern(total + k),
                            "echoed byte {} corrupted",
                            total + k
                        );
                    }
                }
                total += n;
            }
        });
        Flood {
            stop,
            writer,
            reader,
        }
    }

    /// Stops writing; returns `(bytes written, bytes read back)` once the
    /// other side has closed.
    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let written = self.writer.join().unwrap();
        let read = self.reader.join().unwrap();
        (written, read)
    }
}

/// A hog: echoes through a small buffer, so every `recv` fills it and
/// (with the buffer kept full by the peer) completes synchronously.
async fn echo_hog(stream: TcpStream, progress: Arc<AtomicU64>) -> std::io::Result<TcpStream> {
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.recv(&mut buf).await?;
        if n == 0 {
            return Ok(stream);
        }
        stream.send_all(&buf[..n]).await?;
        progress.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A hog that only receives (and discards).
async fn recv_hog(stream: TcpStream, progress: Arc<AtomicU64>) -> std::io::Result<TcpStream> {
    let mut buf = [0u8; 512];
    loop {
        let n = stream.recv(&mut buf).await?;
        if n == 0 {
            return Ok(stream);
        }
        progress.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Waits (yielding to the hog) until it has moved `bytes`.
async fn hog_flowing(progress: &AtomicU64, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while progress.load(Ordering::Relaxed) < bytes {
        assert!(Instant::now() < deadline, "the hog never got going");
        yield_now().await;
    }
}

/// What the other tasks must achieve while a hog runs, within `limit`:
/// `YIELDS` iterations of a yield loop and `PINGS` round trips on another
/// connection.
const YIELDS: u64 = 2_000;
const PINGS: usize = 200;

async fn neighbours_make_progress(limit: Duration) {
    // Round trips need the reactor: a hog must not keep the worker from
    // turning it for long. 200 round trips take well under 100 ms on an
    // idle loopback; 2 s allows 10 ms each.
    let ping_limit = limit.min(Duration::from_secs(2));
    // A task that only yields.
    let start = Instant::now();
    let counter = Arc::new(AtomicU64::new(0));
    let yielder = spawn({
        let counter = counter.clone();
        async move {
            for _ in 0..YIELDS {
                counter.fetch_add(1, Ordering::Relaxed);
                yield_now().await;
            }
        }
    });
    yielder.await.unwrap();
    let took = start.elapsed();
    assert_eq!(counter.load(Ordering::Relaxed), YIELDS);
    assert!(
        took < limit,
        "{YIELDS} yields took {took:?} next to the hog"
    );

    // Ping-pong on another connection: needs the reactor too.
    let start = Instant::now();
    let (client, server) = cellio_pair().await.unwrap();
    let server = spawn(echo(server));
    let mut back = [0u8; 32];
    for i in 0..PINGS {
        let msg = [i as u8; 32];
        client.send_all(&msg).await.unwrap();
        client.recv_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }
    let took = start.elapsed();
    eprintln!("{PINGS} round trips next to a hog: {took:?}");
    drop(client);
    assert_eq!(server.await.unwrap().unwrap(), (PINGS * 32) as u64);
    assert!(
        took < ping_limit,
        "{PINGS} round trips took {took:?} next to the hog: the worker turns its reactor too \
         rarely while a budget-exhausted task stays queued"
    );
}

/// Stops the flood and lets the hog drain to EOF: the peer threads are
/// joined off this worker while the hog (on it) keeps running. Returns the
/// hog's stream (for its stats) and `(bytes written, bytes read back)`.
async fn stop_flood(
    flood: Flood,
    hog: cellio_runtime::JoinHandle<std::io::Result<TcpStream>>,
) -> (TcpStream, usize, usize) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(flood.finish());
    });
    let stream = hog.await.unwrap().unwrap();
    // The peer's reader finishes once we stop sending too.
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (written, read) = loop {
        match rx.try_recv() {
            Ok(result) => break result,
            Err(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the flood threads did not finish"
                );
                cellio_runtime::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    (stream, written, read)
}

#[test]
fn an_always_ready_echo_does_not_starve_its_neighbours() {
    run_with(Builder::new().workers(1), || async {
        let (ours, peer) = std_peer().await.unwrap();
        let flood = Flood::start(peer, true);
        let progress = Arc::new(AtomicU64::new(0));
        let hog = spawn(echo_hog(ours, progress.clone()));
        hog_flowing(&progress, 1 << 20).await;

        neighbours_make_progress(Duration::from_secs(4)).await;
        assert!(!hog.is_finished(), "the hog stopped early");

        let (stream, written, read) = stop_flood(flood, hog).await;
        assert_eq!(written, read, "the echo lost or added bytes");
        assert_eq!(progress.load(Ordering::Relaxed), read as u64);
        let stats = stream.stats();
        eprintln!("echo hog: {written} bytes, {stats:?}");
        assert!(
            stats.recv_sync > stats.recv_parked,
            "the hog's receives were not mostly synchronous: {stats:?}"
        );
    });
}

#[test]
fn an_always_ready_receiver_does_not_starve_its_neighbours() {
    run_with(Builder::new().workers(1), || async {
        let (ours, peer) = std_peer().await.unwrap();
        let flood = Flood::start(peer, false);
        let progress = Arc::new(AtomicU64::new(0));
        let hog = spawn(recv_hog(ours, progress.clone()));
        hog_flowing(&progress, 1 << 20).await;

        neighbours_make_progress(Duration::from_secs(4)).await;
        assert!(!hog.is_finished(), "the hog stopped early");

        let (stream, written, read) = stop_flood(flood, hog).await;
        assert_eq!(read, 0, "nothing is sent back");
        assert_eq!(progress.load(Ordering::Relaxed), written as u64);
        let stats = stream.stats();
        eprintln!("receive hog: {written} bytes, {stats:?}");
        assert!(
            stats.recv_sync > stats.recv_parked,
            "the hog's receives were not mostly synchronous: {stats:?}"
        );
    });
}

/// `block_on`'s own future gets the same budget as a task: a server whose
/// main future reads an always-ready socket (here the receive hog itself,
/// inline) must still let the tasks of worker 0, which it shares, run and
/// reach the reactor. With an unlimited budget the main future looped on
/// synchronous receives and the neighbours never got a turn.
#[test]
fn an_always_ready_block_on_future_does_not_starve_its_workers_tasks() {
    run_with(Builder::new().workers(1), || async {
        let (ours, peer) = std_peer().await.unwrap();
        let flood = Flood::start(peer, false);
        // Small reads, so the flood keeps the receive buffer full and every
        // receive completes at once.
        let mut small = [0u8; 8];
        let mut received = 0usize;
        // The flood going first (nothing else to run yet).
        while received < 1 << 20 {
            received += ours.recv(&mut small).await.unwrap();
        }
        let neighbours = spawn(neighbours_make_progress(Duration::from_secs(4)));
        while !neighbours.is_finished() {
            let n = ours.recv(&mut small).await.unwrap();
            assert_ne!(n, 0, "the flood ended early");
            received += n;
        }
        // A panic in the neighbours (one of their limits) fails us here.
        neighbours.await.unwrap();
        assert!(received > 0);

        // Stop the flood (joined off this worker) and drain it to EOF.
        let mut buf = vec![0u8; 256 * 1024];
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(flood.finish());
        });
        loop {
            let n = ours.recv(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            received += n;
        }
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        let (written, read) = loop {
            match rx.try_recv() {
                Ok(result) => break result,
                Err(_) => cellio_runtime::sleep(Duration::from_millis(1)).await,
            }
        };
        assert_eq!(read, 0, "nothing is sent back");
        assert_eq!(received, written, "bytes lost or added");
        let stats = ours.stats();
        eprintln!("block_on hog: {written} bytes, {stats:?}");
        assert!(
            stats.recv_sync > stats.recv_parked,
            "the main future's receives were not mostly synchronous: {stats:?}"
        );
    });
}

#[test]
fn a_budget_of_one_still_echoes_every_byte() {
    run_with(Builder::new().workers(1).budget(1), || async {
        let addr = spawn_echo_server().unwrap();
        // A std client on its own thread: 2 MiB through the echo server.
        const TOTAL: usize = 2 << 20;
        let std_client = std::thread::spawn(move || {
            let stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut out = stream.try_clone().unwrap();
            let writer = std::thread::spawn(move || {
                let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
                for piece in data.chunks(7_001) {
                    out.write_all(piece).unwrap();
                }
                out.shutdown(std::net::Shutdown::Write).unwrap();
            });
            let mut back = stream;
            let got = util::drain_checking(&mut back).unwrap();
            writer.join().unwrap();
            got
        });

        // Cellio clients in this runtime too, several at once.
        let clients: Vec<_> = (0..4u8)
            .map(|id| {
                spawn(async move {
                    let stream = TcpStream::connect(addr).await.unwrap();
                    let mut back = vec![0u8; 3000];
                    for round in 0..50usize {
                        let len = 1 + (round * 997 + id as usize * 31) % 3000;
                        let msg: Vec<u8> = (0..len)
                            .map(|i| (i as u8) ^ id ^ (round as u8).wrapping_mul(13))
                            .collect();
                        stream.send_all(&msg).await.unwrap();
                        stream.recv_exact(&mut back[..len]).await.unwrap();
                        assert_eq!(&back[..len], &msg[..], "client {id} round {round}");
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
        // Wait for the std client without blocking this worker.
        let deadline = Instant::now() + Duration::from_secs(8);
        while !std_client.is_finished() {
            assert!(Instant::now() < deadline, "the std client never finished");
            cellio_runtime::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(std_client.join().unwrap(), TOTAL);
    });
}

#[test]
fn a_budget_of_one_keeps_neighbours_going_next_to_a_hog() {
    run_with(Builder::new().workers(1).budget(1), || async {
        let (ours, peer) = std_peer().await.unwrap();
        let flood = Flood::start(peer, true);
        let progress = Arc::new(AtomicU64::new(0));
        let hog = spawn(echo_hog(ours, progress.clone()));
        hog_flowing(&progress, 256 << 10).await;
        neighbours_make_progress(Duration::from_secs(4)).await;
        let (_, written, read) = stop_flood(flood, hog).await;
        assert_eq!(written, read);
    });
}

/// One task waits on `waiting` parked receives (their peers are silent)
/// and, polled after them, on one more receive whose data a thread writes
/// 50 ms later. The wake-up for that data polls the parked receives again.
/// Had re-parking spent the budget, `waiting` operations at or above it
/// would leave the last receive none at every poll, and the task would
/// spin for ever instead of receiving (as it did before 2026-12-05).
fn a_receive_behind_parked_operations_is_not_starved(builder: Builder, waiting: usize) {
    // In a spawned task (written when `block_on`'s own future ran without a
    // budget; it has one now, but a task is what the bug met).
    run_with(builder, move || async move {
        spawn(async move {
            let mut silent = Vec::with_capacity(waiting);
            for _ in 0..waiting {
                silent.push(std_peer().await.unwrap());
            }
            let mut bufs = vec![[0u8; 16]; waiting];
            let mut parked: Vec<_> = silent
                .iter()
                .zip(&mut bufs)
                .map(|((ours, _), buf)| Box::pin(ours.recv(buf)))
                .collect();
            let (receiver, mut sender) = std_peer().await.unwrap();
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                sender.write_all(b"hello").unwrap();
                sender
            });
            let mut buf = [0u8; 16];
            let mut polls = 0u32;
            let received = {
                let mut recv = pin!(receiver.recv(&mut buf));
                poll_fn(|cx| {
                    polls += 1;
                    for op in &mut parked {
                        assert!(op.as_mut().poll(cx).is_pending(), "a silent peer sent data");
                    }
                    recv.as_mut().poll(cx)
                })
                .await
                .unwrap()
            };
            assert_eq!(&buf[..received], b"hello");
            // Polled once to park everything, then woken by the data: a
            // handful of polls, not a spin.
            assert!(polls <= 4, "{polls} polls to receive one message");
            drop(writer.join().unwrap());
        })
        .await
        .unwrap()
    });
}

#[test]
fn a_receive_behind_a_parked_one_gets_a_budget_of_one() {
    a_receive_behind_parked_operations_is_not_starved(Builder::new().workers(1).budget(1), 1);
}

#[test]
fn a_receive_behind_more_parked_operations_than_the_budget_is_not_starved() {
    let budget = cellio_reactor::budget::DEFAULT_BUDGET as usize;
    a_receive_behind_parked_operations_is_not_starved(Builder::new().workers(1), budget + 1);
}

/// A task of the current worker that counts how often it runs: one tick
/// per poll, yielding after each.
fn ticker() -> (Rc<Cell<u64>>, cellio_runtime::JoinHandle<()>) {
    let ticks = Rc::new(Cell::new(0u64));
    let handle = cellio_runtime::spawn_local({
        let ticks = Rc::clone(&ticks);
        async move {
            loop {
                ticks.set(ticks.get() + 1);
                yield_now().await;
            }
        }
    });
    (ticks, handle)
}

/// How many `ResourceBusy` failures in a row the loops below retry: a few
/// budgets' worth, so that even a small budget must have yielded.
const BUSY_RETRIES: u32 = 16 * cellio_reactor::budget::DEFAULT_BUDGET;

/// A second accept on one listener while the first waits is refused with
/// `ResourceBusy` at once. A server loop that logs the error and accepts
/// again (tokio's examples do) must still yield: each refusal spends
/// budget, so the worker's other tasks run meanwhile. Before, a refusal
/// spent nothing, and the loop never yielded: the worker ran nothing else,
/// and the waiting accept was never polled again.
#[test]
fn an_accept_retried_while_busy_yields_to_the_other_tasks() {
    run_with(Builder::new().workers(1), || async {
        let listener = cellio_net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut waiting = pin!(listener.accept());
        assert!(poll_once(waiting.as_mut()).await.is_pending());
        let (ticks, ticker) = ticker();
        for _ in 0..BUSY_RETRIES {
            let refused = listener.accept().await.map(drop).unwrap_err();
            assert_eq!(refused.kind(), io::ErrorKind::ResourceBusy);
        }
        assert!(
            ticks.get() > 0,
            "{BUSY_RETRIES} accepts refused in a row and no other task ran"
        );
        ticker.abort();
        // The waiting accept still takes its connection.
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_, from) = waiting.await.unwrap();
        assert_eq!(from, client.local_addr().unwrap());
    });
}

/// The same for a `TcpIo` whose receive direction a future holds (made
/// through the send half's `get_ref`): its receive is refused at once, and
/// a loop retrying it yields.
#[test]
fn a_tcp_io_receive_retried_while_busy_yields_to_the_other_tasks() {
    run_with(Builder::new().workers(1), || async {
        let (ours, mut peer) = std_peer().await.unwrap();
        let mut io = cellio_net::TcpIo::new(ours);
        let (mut rx, tx) = cellio_net::TcpIo::split(&mut io);
        let mut held_buf = [0u8; 16];
        let mut holder = Box::pin(tx.get_ref().recv(&mut held_buf));
        assert!(poll_once(holder.as_mut()).await.is_pending());
        let (ticks, ticker) = ticker();
        let mut buf = [0u8; 16];
        for _ in 0..BUSY_RETRIES {
            let refused = rx.recv(&mut buf).await.unwrap_err();
            assert_eq!(refused.kind(), io::ErrorKind::ResourceBusy);
        }
        assert!(
            ticks.get() > 0,
            "{BUSY_RETRIES} receives refused in a row and no other task ran"
        );
        ticker.abort();
        peer.write_all(b"hi").unwrap();
        let n = holder.as_mut().await.unwrap();
        drop(holder);
        assert_eq!(&held_buf[..n], b"hi");
    });
}

/// Which API sends the batch.
#[derive(Clone, Copy, Debug)]
enum BatchApi {
    /// `UdpSocket::send_many`.
    Socket,
    /// `UdpIo::send_many` (`poll_send_many`).
    Io,
}

/// A long `send_many` (a batch that takes several `sendmmsg` calls: the
/// guide's segment-offload example where segmenting is refused, replies to
/// many peers) pays for each call after the first with the datagrams the
/// call before it sent, a unit each: one call of `MAX_BATCH` spends a
/// default budget, so the send yields after it and the worker's other
/// tasks run between its calls. One of them drains the receiver, so every
/// datagram arrives, once and in order (where the system lets the
/// receiver queue one call's worth: the check needs a receive buffer of
/// 2 MiB). Before, the whole batch went in one poll: the other tasks did
/// not run until it was all sent (a 48 MB batch held its worker for 254 ms,
/// 200 000 datagrams for 0.9 s in a release build; found by a review).
fn a_long_send_many_lets_the_workers_other_tasks_run_between_its_calls(api: BatchApi) {
    use cellio_net::udp::{SendBatch, UdpIo, UdpSocket, MAX_BATCH};
    use std::cell::RefCell;

    const CALLS: usize = 8;
    run_with(Builder::new().workers(1), move || async move {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_recv_buffer_size(4 << 20).unwrap();
        let holds_a_call = receiver.recv_buffer_size().unwrap() >= 2 << 20;
        let mut batch = SendBatch::new();
        for seq in 0..(CALLS * MAX_BATCH) as u32 {
            batch
                .push(&seq.to_le_bytes(), receiver.local_addr().unwrap())
                .unwrap();
        }
        // The worker's other task: drains the receiver at each of its
        // polls, and counts them.
        let runs = Rc::new(Cell::new(0u64));
        let received = Rc::new(RefCell::new(Vec::new()));
        let other = cellio_runtime::spawn_local({
            let (runs, received) = (Rc::clone(&runs), Rc::clone(&received));
            async move {
                let mut buf = [0u8; 8];
                loop {
                    runs.set(runs.get() + 1);
                    while let Ok(n) = receiver.try_recv(&mut buf) {
                        assert_eq!(n, 4);
                        let seq = u32::from_le_bytes(buf[..4].try_into().unwrap());
                        received.borrow_mut().push(seq);
                    }
                    yield_now().await;
                }
            }
        });
        yield_now().await; // it starts
                           // The other task's runs as each poll of the send began.
        let mut runs_at_polls = Vec::new();
        let mut io;
        let mut send: std::pin::Pin<Box<dyn Future<Output = io::Result<usize>>>> = match api {
            BatchApi::Socket => Box::pin(sender.send_many(&mut batch)),
            BatchApi::Io => {
                io = UdpIo::new(sender);
                Box::pin(io.send_many(&mut batch))
            }
        };
        let sent = poll_fn(|cx| {
            runs_at_polls.push(runs.get());
            send.as_mut().poll(cx)
        })
        .await
        .unwrap();
        drop(send);
        assert_eq!(sent, CALLS * MAX_BATCH);
        assert!(batch.is_empty());
        assert!(
            runs_at_polls.len() >= CALLS,
            "{api:?}: {} datagrams ({CALLS} sendmmsg calls) went in {} polls",
            sent,
            runs_at_polls.len()
        );
        assert!(
            runs_at_polls.windows(2).all(|two| two[1] > two[0]),
            "{api:?}: the other task did not run between two polls of the send: {runs_at_polls:?}"
        );
        yield_now().await; // it drains the last call's datagrams
        other.abort();
        let received = received.borrow();
        assert!(
            received.windows(2).all(|two| two[1] > two[0]),
            "{api:?}: not once each, in order"
        );
        if holds_a_call {
            assert_eq!(received.len(), sent, "{api:?}: datagrams lost");
        }
    });
}

#[test]
fn a_long_send_many_lets_the_workers_other_tasks_run() {
    a_long_send_many_lets_the_workers_other_tasks_run_between_its_calls(BatchApi::Socket);
}

#[test]
fn a_long_udp_io_send_many_lets_the_workers_other_tasks_run() {
    a_long_send_many_lets_the_workers_other_tasks_run_between_its_calls(BatchApi::Io);
}
