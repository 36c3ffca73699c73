//! criterion micro-benchmarks of cellio's hot paths:
//!
//! * `recv/sync` — a `recv` that completes on its first poll (data already
//!   buffered): one atomic load, one `read(2)`, the completion bookkeeping;
//! * `recv/park_wake` — a message whose `recv` parks and is woken by the
//!   reactor: write on one end, the receiving task parks, the reactor turn
//!   notifies the cell, the task runs again;
//! * `readable_try_recv/sync` and `readable_try_recv/park_wake` — the same
//!   two receives as a `readable()` wait and a `try_recv`;
//! * `cell/park_notify` — the op cell alone: reserve, park, notify,
//!   release (no syscalls);
//! * `spawn/pooled` and `spawn/unpooled` — spawning and finishing a task,
//!   with the task pool on and off;
//! * `spawn/pooled_16k` — the same with a future that holds a 16 KiB
//!   buffer, like a connection's: the future is copied once, into its
//!   block (the runtime's `spawn` module), so this costs `spawn/pooled`
//!   plus building the buffer and one 16 KiB copy.
//!
//! * `join_set/100_tasks/{cellio,tokio}` — spawning 100 tasks (each yields
//!   once) into a `JoinSet` and joining them all, against tokio's
//!   `JoinSet` on a `current_thread` runtime; the set is reused, as a
//!   server's would be;
//! * `join_set/1_of_1000/{cellio,tokio}` — one task spawned into and
//!   joined from a set that already holds 1 000 waiting tasks: what a
//!   finished task costs a big set.
//! * `spawn_blocking/{cellio,tokio}` — a `spawn_blocking` job that returns
//!   at once, awaited: the hand-over to an idle pool thread and back.
//! * `send_file/1MiB/{send_file,read_and_send}` — 1 MiB of a cached file
//!   to a TCP peer that a spawned task drains: `send_file` (`sendfile(2)`)
//!   against a positioned read into 64 KiB and `send_all`.
//! * `channel/1000_messages/{cellio_local,tokio_mpsc}` — a spawned task
//!   sends 1 000 numbers through a channel of 16 to the `block_on` task, on
//!   one thread: cellio's `local_channel` against tokio's `mpsc` on
//!   `current_thread`.
//! * `udp_bulk/64x1200/{segmented,segmented_merged,unsegmented,send_to}` —
//!   64 datagrams of 1 200 bytes to one peer, which the same task then
//!   takes with `recv_many`: `push_segmented` and one `send_many` (two
//!   messages of 54 and 10, which the kernel segments: `UDP_SEGMENT`); the
//!   same to a receiver with receive offload on (`UDP_GRO`: it takes each
//!   message as one buffer and the batch splits it); segment offload off
//!   (64 messages in one `sendmmsg`); and 64 `send_to`s.
//! * `process/true/{cellio,tokio,std}` — start `/bin/true` and wait for
//!   its exit: cellio's `Command::status` (a `pidfd` on the reactor),
//!   tokio's on `current_thread`, and `std`'s (a blocking `waitpid`).
//! * `file/4KiB_round/{cellio,tokio}` — on an open file: seek to the
//!   start, write 4 KiB, flush, seek back, read it (four blocking-pool
//!   hand-overs each way), cellio's `fs::File` against tokio's on
//!   `current_thread`.
//!
//! ```text
//! cargo bench -p cellio-benches --bench hot_paths
//! ```

use std::hint::black_box;
use std::task::Waker;

use cellio::reactor::{OpCell, Park};
use cellio::{Builder, Runtime, TcpListener, TcpStream};
use criterion::{criterion_group, criterion_main, Criterion};

fn one_worker(pooling: bool) -> Runtime {
    Builder::new()
        .workers(1)
        .task_pooling(pooling)
        .build()
        .expect("runtime")
}

/// A connected pair inside `rt`.
fn pair(rt: &Runtime) -> (TcpStream, TcpStream) {
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.set_nodelay(true).unwrap();
        server.set_nodelay(true).unwrap();
        (client, server)
    })
}

fn recv_sync(c: &mut Criterion) {
    let rt = one_worker(true);
    let (client, server) = pair(&rt);
    let mut buf = [0u8; 64];
    c.bench_function("recv/sync", |b| {
        b.iter(|| {
            rt.block_on(async {
                // 64 bytes buffered before recv is called: the receive
                // completes on its first poll. try_send cannot block here:
                // the receiver drains what we write each iteration.
                client.try_send(&[7u8; 64]).unwrap();
                let mut op = server.recv(&mut buf);
                match op.try_complete() {
                    Some(n) => black_box(n.unwrap()),
                    None => black_box(op.await.unwrap()),
                }
            })
        })
    });
}

/// `recv/sync`'s receive as a wait and a `try_recv` (the guide's "Many
/// idle connections"): the wait completes at once, the bytes are there.
fn readable_sync(c: &mut Criterion) {
    let rt = one_worker(true);
    let (client, server) = pair(&rt);
    let mut buf = [0u8; 64];
    c.bench_function("readable_try_recv/sync", |b| {
        b.iter(|| {
            rt.block_on(async {
                client.try_send(&[7u8; 64]).unwrap();
                server.readable().await.unwrap();
                black_box(server.try_recv(&mut buf).unwrap())
            })
        })
    });
}

/// `recv/park_wake` as a wait and a `try_recv`: the wait completes at
/// once (a full 64-byte read proved nothing), `try_recv` says `WouldBlock`
/// and marks the socket, the next wait parks and the send wakes it: the
/// same two receive syscalls as `recv/park_wake`'s `recv`.
fn readable_park_wake(c: &mut Criterion) {
    let rt = one_worker(true);
    let (client, server) = pair(&rt);
    c.bench_function("readable_try_recv/park_wake", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut buf = [0u8; 64];
                let receiver = async {
                    loop {
                        server.readable().await.unwrap();
                        match server.try_recv(&mut buf) {
                            Ok(n) => break black_box(n),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) => panic!("try_recv: {e}"),
                        }
                    }
                };
                let sender = async {
                    cellio::yield_now().await;
                    client.send_all(&[1u8; 64]).await.unwrap();
                };
                join(receiver, sender).await
            })
        })
    });
}

fn recv_park_wake(c: &mut Criterion) {
    let rt = one_worker(true);
    let (client, server) = pair(&rt);
    c.bench_function("recv/park_wake", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut buf = [0u8; 64];
                // recv parks (nothing buffered), the send below makes the
                // socket readable, the reactor wakes the receiver.
                let receiver = async {
                    let n = server.recv(&mut buf).await.unwrap();
                    black_box(n)
                };
                let sender = async {
                    cellio::yield_now().await;
                    client.send_all(&[1u8; 64]).await.unwrap();
                };
                join(receiver, sender).await
            })
        })
    });
}

/// Polls two futures together until both are done (no allocation).
async fn join<A: std::future::Future, B: std::future::Future>(a: A, b: B) -> A::Output {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut out_a, mut done_b) = (None, false);
    std::future::poll_fn(|cx| {
        if out_a.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                out_a = Some(v);
            }
        }
        if !done_b {
            done_b = b.as_mut().poll(cx).is_ready();
        }
        if done_b {
            if let Some(v) = out_a.take() {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

fn cell_park_notify(c: &mut Criterion) {
    let cell = OpCell::new();
    c.bench_function("cell/park_notify", |b| {
        b.iter(|| {
            let seen = cell.observe().unwrap();
            let token = cell.reserve().unwrap();
            assert_eq!(cell.park(token, seen, Waker::noop()), Ok(Park::Parked));
            cell.notify();
            black_box(cell.observe_reserved(token).unwrap());
            cell.release(token).unwrap();
        })
    });
}

fn spawn(c: &mut Criterion) {
    for (name, pooling) in [("spawn/pooled", true), ("spawn/unpooled", false)] {
        let rt = one_worker(pooling);
        c.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let handle = cellio::spawn(async { black_box(1u64) });
                    handle.await.unwrap()
                })
            })
        });
    }
    let rt = one_worker(true);
    c.bench_function("spawn/pooled_16k", |b| {
        b.iter(|| {
            rt.block_on(async {
                let buf = [black_box(7u8); 16 * 1024];
                let handle = cellio::spawn(async move { black_box(&buf)[100] as u64 });
                handle.await.unwrap()
            })
        })
    });
}

/// Tasks per `join_set/100_tasks` iteration; waiting tasks in
/// `join_set/1_of_1000`.
const SET_TASKS: usize = 100;
const WAITING: usize = 1000;

fn join_set(c: &mut Criterion) {
    let rt = one_worker(true);
    let mut set = cellio::JoinSet::new();
    c.bench_function("join_set/100_tasks/cellio", |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 0..SET_TASKS as u64 {
                    set.spawn(async move {
                        cellio::yield_now().await;
                        black_box(i)
                    });
                }
                let mut sum = 0;
                while let Some(output) = set.join_next().await {
                    sum += output.unwrap();
                }
                sum
            })
        })
    });
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let mut tokio_set = tokio::task::JoinSet::new();
    c.bench_function("join_set/100_tasks/tokio", |b| {
        b.iter(|| {
            tokio_rt.block_on(async {
                for i in 0..SET_TASKS as u64 {
                    tokio_set.spawn(async move {
                        tokio::task::yield_now().await;
                        black_box(i)
                    });
                }
                let mut sum = 0;
                while let Some(output) = tokio_set.join_next().await {
                    sum += output.unwrap();
                }
                sum
            })
        })
    });

    // A set of waiting tasks, plus one that finishes at once.
    rt.block_on(async {
        for _ in 0..WAITING {
            set.spawn(std::future::pending::<u64>());
        }
    });
    c.bench_function("join_set/1_of_1000/cellio", |b| {
        b.iter(|| {
            rt.block_on(async {
                set.spawn(async { black_box(1) });
                set.join_next().await.unwrap().unwrap()
            })
        })
    });
    let _guard = tokio_rt.enter();
    for _ in 0..WAITING {
        tokio_set.spawn(std::future::pending::<u64>());
    }
    c.bench_function("join_set/1_of_1000/tokio", |b| {
        b.iter(|| {
            tokio_rt.block_on(async {
                tokio_set.spawn(async { black_box(1) });
                tokio_set.join_next().await.unwrap().unwrap()
            })
        })
    });
}

fn spawn_blocking(c: &mut Criterion) {
    let rt = one_worker(true);
    c.bench_function("spawn_blocking/cellio", |b| {
        b.iter(|| {
            rt.block_on(async {
                cellio::runtime::spawn_blocking(|| black_box(1u64))
                    .await
                    .unwrap()
            })
        })
    });
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    c.bench_function("spawn_blocking/tokio", |b| {
        b.iter(|| {
            tokio_rt.block_on(async {
                tokio::task::spawn_blocking(|| black_box(1u64))
                    .await
                    .unwrap()
            })
        })
    });
}

/// Bytes the file benchmark sends per iteration.
const FILE_BYTES: usize = 1 << 20;

fn send_file(c: &mut Criterion) {
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    let rt = one_worker(true);
    let (client, server) = pair(&rt);
    let path = std::env::temp_dir().join(format!("cellio-bench-file-{}", std::process::id()));
    let mut file = std::fs::File::create(&path).expect("a temporary file");
    file.write_all(&vec![7u8; FILE_BYTES]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let server = std::rc::Rc::new(server);
    // Each iteration: a task drains FILE_BYTES while this one sends them.
    let drain = |server: std::rc::Rc<TcpStream>| async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < FILE_BYTES {
            got += server.recv(&mut buf).await.unwrap();
        }
    };
    c.bench_function("send_file/1MiB/send_file", |b| {
        b.iter(|| {
            rt.block_on(async {
                let reader = cellio::runtime::spawn_local(drain(server.clone()));
                let mut sent = 0;
                while sent < FILE_BYTES {
                    sent += client
                        .send_file(&file, sent as u64, FILE_BYTES - sent)
                        .await
                        .unwrap();
                }
                reader.await.unwrap();
            })
        })
    });
    let mut buf = vec![0u8; 64 * 1024];
    c.bench_function("send_file/1MiB/read_and_send", |b| {
        b.iter(|| {
            rt.block_on(async {
                let reader = cellio::runtime::spawn_local(drain(server.clone()));
                let mut sent = 0;
                while sent < FILE_BYTES {
                    let n = file.read_at(&mut buf, sent as u64).unwrap();
                    client.send_all(&buf[..n]).await.unwrap();
                    sent += n;
                }
                reader.await.unwrap();
            })
        })
    });
    let _ = std::fs::remove_file(&path);
}

/// Messages the channel benchmark sends per iteration.
const MESSAGES: u64 = 1_000;

fn channel(c: &mut Criterion) {
    let rt = one_worker(true);
    c.bench_function("channel/1000_messages/cellio_local", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (tx, mut rx) = cellio::runtime::local_channel::channel(16);
                cellio::runtime::spawn_local(async move {
                    for i in 0..MESSAGES {
                        tx.send(black_box(i)).await.unwrap();
                    }
                });
                let mut sum = 0;
                while let Some(i) = rx.recv().await {
                    sum += i;
                }
                sum
            })
        })
    });
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    c.bench_function("channel/1000_messages/tokio_mpsc", |b| {
        b.iter(|| {
            tokio_rt.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::channel(16);
                tokio::spawn(async move {
                    for i in 0..MESSAGES {
                        tx.send(black_box(i)).await.unwrap();
                    }
                });
                let mut sum = 0;
                while let Some(i) = rx.recv().await {
                    sum += i;
                }
                sum
            })
        })
    });
}

/// Takes an iteration's datagrams.
async fn drain(receiver: &cellio::net::udp::UdpSocket, received: &mut cellio::net::udp::RecvBatch) {
    let mut got = 0;
    while got < BULK_DATAGRAMS {
        got += receiver.recv_many(received).await.unwrap();
    }
}

/// Datagrams per `udp_bulk` iteration, and their length.
const BULK_DATAGRAMS: usize = 64;
const BULK_LEN: usize = 1200;

fn udp_bulk(c: &mut Criterion) {
    use cellio::net::udp::{RecvBatch, SendBatch, UdpSocket};

    let rt = one_worker(true);
    let (sender, receiver) = rt.block_on(async {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_recv_buffer_size(1 << 20).unwrap();
        (UdpSocket::bind("127.0.0.1:0").unwrap(), receiver)
    });
    let to = receiver.local_addr().unwrap();
    let payload = vec![5u8; BULK_DATAGRAMS * BULK_LEN];
    let mut received = RecvBatch::new(BULK_DATAGRAMS, 2048);
    for (name, segment) in [("segmented", true), ("unsegmented", false)] {
        let mut batch = SendBatch::new();
        batch.set_segment_offload(segment);
        c.bench_function(&format!("udp_bulk/64x1200/{name}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    batch.push_segmented(&payload, BULK_LEN, to).unwrap();
                    sender.send_many(&mut batch).await.unwrap();
                    drain(&receiver, &mut received).await;
                })
            })
        });
        assert_eq!(
            batch.segment_offload(),
            segment && cfg!(target_os = "linux")
        );
    }
    // The receiving side merged too: `UDP_GRO` on a second receiver,
    // which takes each segmented message as one buffer.
    let (merging, mut merged) = rt.block_on(async {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_recv_buffer_size(1 << 20).unwrap();
        socket.enable_receive_offload().unwrap();
        (socket, RecvBatch::new(4, cellio::net::udp::MAX_MERGED))
    });
    let to_merging = merging.local_addr().unwrap();
    let mut batch = SendBatch::new();
    c.bench_function("udp_bulk/64x1200/segmented_merged", |b| {
        b.iter(|| {
            rt.block_on(async {
                batch
                    .push_segmented(&payload, BULK_LEN, to_merging)
                    .unwrap();
                sender.send_many(&mut batch).await.unwrap();
                drain(&merging, &mut merged).await;
            })
        })
    });
    c.bench_function("udp_bulk/64x1200/send_to", |b| {
        b.iter(|| {
            rt.block_on(async {
                for datagram in payload.chunks(BULK_LEN) {
                    sender.send_to(datagram, to).await.unwrap();
                }
                drain(&receiver, &mut received).await;
            })
        })
    });
}

fn process(c: &mut Criterion) {
    let rt = one_worker(true);
    let mut group = c.benchmark_group("process/true");
    group.sample_size(30);
    group.bench_function("cellio", |b| {
        b.iter(|| {
            rt.block_on(cellio::process::Command::new("/bin/true").status())
                .unwrap()
        })
    });
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    group.bench_function("tokio", |b| {
        b.iter(|| {
            tokio_rt
                // In a block: tokio's `status` starts the process when
                // called, which needs the runtime's context.
                .block_on(async { tokio::process::Command::new("/bin/true").status().await })
                .unwrap()
        })
    });
    group.bench_function("std", |b| {
        b.iter(|| std::process::Command::new("/bin/true").status().unwrap())
    });
    group.finish();
}

fn file(c: &mut Criterion) {
    use std::io::SeekFrom;
    let path = std::env::temp_dir().join(format!("cellio-bench-file-{}", std::process::id()));
    let mut group = c.benchmark_group("file/4KiB_round");
    let rt = one_worker(true);
    let mut file = rt
        .block_on(
            cellio::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path),
        )
        .expect("open");
    let out = [7u8; 4096];
    let mut back = [0u8; 4096];
    group.bench_function("cellio", |b| {
        b.iter(|| {
            rt.block_on(async {
                file.seek(SeekFrom::Start(0)).await.unwrap();
                file.write_all(&out).await.unwrap();
                file.flush().await.unwrap();
                file.seek(SeekFrom::Start(0)).await.unwrap();
                let mut got = 0;
                while got < back.len() {
                    got += file.read(&mut back[got..]).await.unwrap();
                }
            })
        })
    });
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let mut file = tokio_rt
        .block_on(
            tokio::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path),
        )
        .expect("open");
    group.bench_function("tokio", |b| {
        use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
        b.iter(|| {
            tokio_rt.block_on(async {
                file.seek(SeekFrom::Start(0)).await.unwrap();
                file.write_all(&out).await.unwrap();
                file.flush().await.unwrap();
                file.seek(SeekFrom::Start(0)).await.unwrap();
                file.read_exact(&mut back).await.unwrap();
            })
        })
    });
    group.finish();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(
    benches,
    cell_park_notify,
    recv_sync,
    recv_park_wake,
    readable_sync,
    readable_park_wake,
    spawn,
    join_set,
    spawn_blocking,
    send_file,
    channel,
    udp_bulk,
    process,
    file
);
criterion_main!(benches);
