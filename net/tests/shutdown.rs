//! Graceful shutdown of socket servers: accept loops written with
//! `until_shutdown` stop when `RuntimeHandle::shutdown` is called from
//! another thread; idle connections are cancelled (and closed) when the
//! grace period ends; and one `SO_REUSEPORT` listener per worker spreads
//! connections over the workers and stops with them.

mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cellio_net::{ListenOptions, TcpListener, TcpStream};
use cellio_runtime::{current_worker, sleep, spawn, until_shutdown, Builder, RuntimeHandle};
use util::{echo, with_timeout, LIMIT};

/// An accept loop that stops when shutdown begins; spawns an echo task per
/// connection. Returns how many connections it accepted.
async fn accept_until_shutdown(listener: TcpListener, served: Arc<AtomicUsize>) -> usize {
    let mut accepted = 0;
    while let Some(result) = until_shutdown(listener.accept()).await {
        let (stream, _) = result.expect("accept");
        accepted += 1;
        let served = served.clone();
        spawn(async move {
            let _ = echo(stream).await;
            served.fetch_add(1, Ordering::SeqCst);
        });
    }
    accepted
}

/// Waits (on a timer) until `flag` is set, for up to 5 s.
async fn wait_flag(flag: &AtomicBool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !flag.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(1)).await;
    }
}

/// One blocking echo round trip on a fresh connection.
fn std_echo_once(addr: SocketAddr, tag: u8) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let msg = [tag; 17];
    s.write_all(&msg).unwrap();
    let mut back = [0u8; 17];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

#[test]
fn shutdown_from_another_thread_stops_an_accept_loop_in_block_on() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(1).build().unwrap();
        let handle = rt.handle();
        let served = Arc::new(AtomicUsize::new(0));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let clients = std::thread::spawn({
            let handle = handle.clone();
            move || {
                let addr = addr_rx.recv().unwrap();
                for tag in 0..3 {
                    std_echo_once(addr, tag);
                }
                // As a signal-handling thread would.
                handle.shutdown();
            }
        });
        let accepted = rt.block_on({
            let served = served.clone();
            async move {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                accept_until_shutdown(listener, served).await
            }
        });
        clients.join().unwrap();
        assert_eq!(accepted, 3);
        assert!(handle.is_shutting_down());
        assert_eq!(rt.shutdown_timeout(Duration::from_secs(2)), 0);
        assert_eq!(served.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn shutdown_from_another_thread_stops_an_accept_loop_on_worker_1() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let served = Arc::new(AtomicUsize::new(0));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let server = handle.spawn_on(1, {
            let served = served.clone();
            async move {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                accept_until_shutdown(listener, served).await
            }
        });
        // Nobody runs block_on meanwhile: worker 1 serves on its own.
        let addr = addr_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        for tag in 0..3 {
            std_echo_once(addr, tag);
        }
        let shutter = {
            let handle = handle.clone();
            std::thread::spawn(move || handle.shutdown())
        };
        shutter.join().unwrap();
        let accepted = rt.block_on(server).unwrap();
        assert_eq!(accepted, 3);
        assert_eq!(rt.shutdown_timeout(Duration::from_secs(2)), 0);
        assert_eq!(served.load(Ordering::SeqCst), 3);
        // The listener was closed with its task: the port refuses now.
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "still listening"
        );
    });
}

/// An echo server with 20 open idle connections on `worker`:
/// `shutdown_timeout` stops the accept loop, cancels the 20 connection
/// tasks after the grace period, and closes their sockets.
fn idle_connections_are_cancelled_and_closed(worker: usize) {
    with_timeout(LIMIT, move || {
        const CONNECTIONS: usize = 20;
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let served = Arc::new(AtomicUsize::new(0));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let server = handle.spawn_on(worker, {
            let served = served.clone();
            async move {
                assert_eq!(current_worker(), Some(worker));
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                accept_until_shutdown(listener, served).await
            }
        });
        let mut clients = Vec::new();
        rt.block_on(async {
            let addr = loop {
                if let Ok(addr) = addr_rx.try_recv() {
                    break addr;
                }
                sleep(Duration::from_millis(1)).await;
            };
            for tag in 0..CONNECTIONS {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                // One round trip each: the connection task is running.
                s.write_all(&[tag as u8; 8]).unwrap();
                let mut back = [0u8; 8];
                // Reading blocks this thread; worker 0's block_on is idle
                // meanwhile, so serve from worker 1 or poll briefly.
                if worker == 0 {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    s.set_nonblocking(true).unwrap();
                    let mut got = 0;
                    while got < 8 {
                        match s.read(&mut back[got..]) {
                            Ok(0) => panic!("closed early"),
                            Ok(n) => got += n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                assert!(Instant::now() < deadline, "no echo");
                                sleep(Duration::from_millis(1)).await;
                            }
                            Err(e) => panic!("read: {e}"),
                        }
                    }
                    s.set_nonblocking(false).unwrap();
                } else {
                    s.read_exact(&mut back).unwrap();
                }
                assert_eq!(back, [tag as u8; 8]);
                clients.push(s);
            }
        });
        drop(server); // detached: it ends with the shutdown
        let grace = Duration::from_millis(100);
        let start = Instant::now();
        let cancelled = rt.shutdown_timeout(grace);
        assert!(start.elapsed() >= grace);
        assert_eq!(
            cancelled, CONNECTIONS,
            "the idle connections (and only they) are cancelled"
        );
        assert_eq!(
            served.load(Ordering::SeqCst),
            0,
            "no echo task ended on its own"
        );
        for (i, mut s) in clients.into_iter().enumerate() {
            let mut buf = [0u8; 8];
            match s.read(&mut buf) {
                Ok(0) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Ok(n) => panic!("client {i}: {n} unexpected bytes"),
                Err(e) => panic!("client {i}: connection not closed: {e}"),
            }
        }
    });
}

#[test]
fn idle_connections_on_worker_0_are_cancelled_and_closed() {
    idle_connections_are_cancelled_and_closed(0);
}

#[test]
fn idle_connections_on_worker_1_are_cancelled_and_closed() {
    idle_connections_are_cancelled_and_closed(1);
}

/// Worker `index`'s reuse-port listener on `port` and its accept loop:
/// counts the connections served into `per_worker[index]`.
fn serve_on(
    handle: &RuntimeHandle,
    index: usize,
    port: Arc<AtomicUsize>,
    ready: Arc<AtomicBool>,
    per_worker: Arc<[AtomicUsize; 2]>,
) -> cellio_runtime::JoinHandle<usize> {
    handle.spawn_on(index, async move {
        let options = ListenOptions {
            reuse_port: true,
            ..Default::default()
        };
        let listener =
            TcpListener::bind_with(("127.0.0.1", port.load(Ordering::SeqCst) as u16), options)
                .unwrap();
        port.store(
            listener.local_addr().unwrap().port() as usize,
            Ordering::SeqCst,
        );
        ready.store(true, Ordering::SeqCst);
        let mut accepted = 0;
        while let Some(result) = until_shutdown(listener.accept()).await {
            let (stream, _) = result.unwrap();
            accepted += 1;
            let per_worker = per_worker.clone();
            spawn(async move {
                let me = current_worker().unwrap();
                assert_eq!(me, index, "a connection task left its worker");
                let _ = echo(stream).await;
                per_worker[me].fetch_add(1, Ordering::SeqCst);
            });
        }
        accepted
    })
}

#[test]
fn reuse_port_listeners_on_two_workers_share_the_connections_and_stop_together() {
    with_timeout(Duration::from_secs(20), || {
        const CLIENTS: usize = 200;
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let per_worker = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let port = Arc::new(AtomicUsize::new(0));
        let (accepted_0, accepted_1) = rt.block_on(async {
            let ready_0 = Arc::new(AtomicBool::new(false));
            let server_0 = serve_on(
                &handle,
                0,
                port.clone(),
                ready_0.clone(),
                per_worker.clone(),
            );
            wait_flag(&ready_0, "worker 0's listener").await;
            let ready_1 = Arc::new(AtomicBool::new(false));
            let server_1 = serve_on(
                &handle,
                1,
                port.clone(),
                ready_1.clone(),
                per_worker.clone(),
            );
            wait_flag(&ready_1, "worker 1's listener").await;
            let addr: SocketAddr = ([127, 0, 0, 1], port.load(Ordering::SeqCst) as u16).into();

            // Clients in this runtime (worker 0), one connection at a time.
            for i in 0..CLIENTS {
                let stream = TcpStream::connect(addr).await.unwrap();
                let msg = [(i % 251) as u8; 64];
                stream.send_all(&msg).await.unwrap();
                let mut back = [0u8; 64];
                stream.recv_exact(&mut back).await.unwrap();
                assert_eq!(back, msg);
            }
            // Every connection task ends once its client has gone.
            let deadline = Instant::now() + Duration::from_secs(5);
            while per_worker[0].load(Ordering::SeqCst) + per_worker[1].load(Ordering::SeqCst)
                < CLIENTS
            {
                assert!(Instant::now() < deadline, "connection tasks did not end");
                sleep(Duration::from_millis(1)).await;
            }
            // Stop both accept loops, from another thread.
            let h = handle.clone();
            std::thread::spawn(move || h.shutdown()).join().unwrap();
            (server_0.await.unwrap(), server_1.await.unwrap())
        });
        let served = [
            per_worker[0].load(Ordering::SeqCst),
            per_worker[1].load(Ordering::SeqCst),
        ];
        eprintln!("SO_REUSEPORT spread {CLIENTS} connections as {served:?}");
        assert_eq!(accepted_0 + accepted_1, CLIENTS);
        assert_eq!([accepted_0, accepted_1], served);
        assert!(
            served[0] > 0 && served[1] > 0,
            "one worker served none of {CLIENTS} connections: {served:?}"
        );
        assert_eq!(rt.shutdown_timeout(Duration::from_secs(2)), 0);
    });
}

/// A connection accepted on worker 1 and served on worker 0 keeps working
/// through the grace period, after worker 1's accept loop stopped: the
/// stream stays registered with worker 1's reactor, which must run on.
/// (It used to get `NotConnected` in the middle of the grace period:
/// worker 1, with no task of its own left, exited and dropped its
/// reactor, which closed the stream; found by a review.)
#[test]
fn a_stream_moved_to_another_worker_keeps_working_during_the_grace_period() {
    with_timeout(LIMIT, || {
        let rt = Builder::new().workers(2).build().unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (failed_tx, failed_rx) = std::sync::mpsc::channel::<String>();
        let echoed_once = Arc::new(AtomicBool::new(false));
        let flag = echoed_once.clone();
        let _accept = rt.handle().spawn_on(1, async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            while let Some(accepted) = until_shutdown(listener.accept()).await {
                let (stream, _) = accepted.unwrap();
                let (flag, failed_tx) = (flag.clone(), failed_tx.clone());
                // Served on worker 0; registered with worker 1's reactor.
                drop(cellio_runtime::spawn_on(0, async move {
                    let mut buf = [0u8; 64];
                    loop {
                        match stream.recv(&mut buf).await {
                            Ok(0) => return,
                            Ok(n) => stream.send_all(&buf[..n]).await.unwrap(),
                            Err(e) => {
                                let _ = failed_tx.send(format!("{e} ({:?})", e.kind()));
                                return;
                            }
                        }
                        flag.store(true, Ordering::SeqCst);
                    }
                }));
            }
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        client.write_all(b"before").unwrap();
        rt.block_on(wait_flag(&echoed_once, "the first echo"));
        let mut back = [0u8; 6];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"before");
        // Once the grace period has begun (and the accept loop stopped),
        // the client sends again.
        let talker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            client.write_all(b"during").unwrap();
            let mut back = [0u8; 6];
            let got = client.read_exact(&mut back).map(|()| back);
            drop(client); // the connection task ends
            got
        });
        let cancelled = rt.shutdown_timeout(Duration::from_secs(5));
        let got = talker.join().unwrap();
        let server_side = failed_rx.try_recv().unwrap_or_default();
        assert!(
            matches!(got, Ok(ref b) if b == b"during"),
            "echo during the grace period: {got:?}; server: {server_side}; cancelled {cancelled}"
        );
        assert_eq!(cancelled, 0);
    });
}
