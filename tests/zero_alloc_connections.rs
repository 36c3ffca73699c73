//! After a warm-up, whole connection lives — connect (to a `SocketAddr`,
//! to the same address as text, which is parsed, not looked up, or to a
//! slice of addresses, which is borrowed, not copied), a few echoed
//! messages, close on the client; accept, `spawn` a task, echo, close on
//! the server — make exactly zero heap allocations in the whole process.
//!
//! Set-up: a runtime with two workers, and one `SO_REUSEPORT` listener per
//! worker (each with its own accept loop, written with `until_shutdown`),
//! so both workers' reactors, task tables and task pools take part. The
//! client runs inside the runtime too, in the `block_on` future on worker
//! 0, one connection at a time; it waits for the server to close before it
//! opens the next connection, so each worker has at most one connection
//! task alive and its pool, task table and registration table reach their
//! steady size during the warm-up.
//!
//! A counting `#[global_allocator]` sees every allocation of every thread;
//! this file holds a single test so that nothing else runs in the process
//! while it counts. When it counts something, the sizes of the first
//! allocations are recorded (into a fixed static array: the allocator must
//! not allocate) and printed with the failure.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cellio::runtime::{current_worker, sleep, spawn_on, until_shutdown};
use cellio::{spawn, Builder, ListenOptions, TcpListener, TcpStream};

#[path = "util/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{assert_counter_works, recorded_sizes, start_counting, stop_counting};

const WARM_UP: usize = 200;
const MEASURED: usize = 500;
const MESSAGES: usize = 4;
const MESSAGE: usize = 64;
/// An address nothing listens on (port 1 of loopback): a connect to it is
/// refused at once.
const REFUSED: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

/// Connections served to the end, per worker.
static SERVED: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// Server side of one connection: echo until the peer closes, then close.
async fn echo(stream: TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match stream.recv(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.send_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    drop(stream);
    if let Some(worker) = current_worker() {
        SERVED[worker].fetch_add(1, Ordering::Relaxed);
    }
}

/// Worker `index`'s listener on `port` (0: pick one) and its accept loop,
/// one spawned task per connection, until shutdown.
async fn serve(port: Arc<AtomicUsize>, ready: Arc<AtomicBool>) -> usize {
    let options = ListenOptions {
        reuse_port: true,
        backlog: 1024,
        ..Default::default()
    };
    let listener =
        TcpListener::bind_with(("127.0.0.1", port.load(Ordering::SeqCst) as u16), options)
            .expect("bind");
    port.store(
        listener.local_addr().unwrap().port() as usize,
        Ordering::SeqCst,
    );
    ready.store(true, Ordering::SeqCst);
    let mut accepted = 0;
    while let Some(result) = until_shutdown(listener.accept()).await {
        let (stream, _) = result.expect("accept");
        accepted += 1;
        // Detached: the handle is dropped at once.
        drop(spawn(echo(stream)));
    }
    accepted
}

fn fill(buf: &mut [u8; MESSAGE], life: usize, message: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = (life as u8) ^ (message as u8).wrapping_mul(31) ^ (i as u8);
    }
}

/// One whole connection life, client side: one in three connects to
/// `addr`, one to `addr` given as text (`"127.0.0.1:port"`: parsed, never
/// looked up), and one to a slice of addresses whose first refuses (the
/// slice was copied into a `Vec` at each connect; found by a review).
async fn life(addr: SocketAddr, text: &str, n: usize) {
    let stream = match n % 3 {
        0 => TcpStream::connect(addr).await,
        1 => TcpStream::connect(text).await,
        _ => TcpStream::connect(&[REFUSED, addr][..]).await,
    }
    .expect("connect");
    let mut out = [0u8; MESSAGE];
    let mut back = [0u8; MESSAGE];
    for m in 0..MESSAGES {
        fill(&mut out, n, m);
        stream.send_all(&out).await.expect("send");
        stream.recv_exact(&mut back).await.expect("recv");
        assert!(out == back, "echo mismatch in life {n}, message {m}");
    }
    // Close our side; the server closes after us. Waiting for its FIN
    // means its task has ended before the next life begins.
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let closed = stream.recv(&mut back).await.expect("recv after close");
    assert!(closed == 0, "data after the echo in life {n}");
}

async fn wait_flag(flag: &AtomicBool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !flag.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "a listener never came up");
        sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn connection_lives_allocate_nothing_after_warm_up() {
    assert_counter_works();
    assert_eq!(recorded_sizes(), [8]);

    let (tx, rx) = std::sync::mpsc::channel();
    let body = std::thread::spawn(move || {
        let rt = Builder::new().workers(2).build().unwrap();
        let handle = rt.handle();
        let result = rt.block_on(async {
            assert_eq!(current_worker(), Some(0));
            // Worker 0's listener first (it picks the port), then worker 1's
            // on the same port.
            let port = Arc::new(AtomicUsize::new(0));
            let ready = Arc::new(AtomicBool::new(false));
            let server_0 = spawn_on(0, serve(port.clone(), ready.clone()));
            wait_flag(&ready).await;
            let ready = Arc::new(AtomicBool::new(false));
            let server_1 = spawn_on(1, serve(port.clone(), ready.clone()));
            wait_flag(&ready).await;
            let addr: SocketAddr = ([127, 0, 0, 1], port.load(Ordering::SeqCst) as u16).into();
            let text = addr.to_string();

            for n in 0..WARM_UP {
                life(addr, &text, n).await;
            }
            let warm = [
                SERVED[0].load(Ordering::SeqCst),
                SERVED[1].load(Ordering::SeqCst),
            ];

            start_counting();
            for n in 0..MEASURED {
                life(addr, &text, WARM_UP + n).await;
            }
            let allocations = stop_counting();
            let sizes = recorded_sizes();

            let measured = [
                SERVED[0].load(Ordering::SeqCst) - warm[0],
                SERVED[1].load(Ordering::SeqCst) - warm[1],
            ];
            handle.shutdown();
            let accepted = (server_0.await.unwrap(), server_1.await.unwrap());
            (allocations, sizes, warm, measured, accepted)
        });
        let _ = tx.send(result);
        // (Dropping the runtime is other tests' business: not waited for.)
        drop(rt);
    });
    let (allocations, sizes, warm, measured, accepted) =
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match body.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!("the body sends its result before it ends"),
            },
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("the connection lives did not finish within 60 s")
            }
        };
    eprintln!(
        "warm-up served {warm:?}, measured window served {measured:?} per worker; \
         accepted {accepted:?}"
    );
    assert_eq!(accepted.0 + accepted.1, WARM_UP + MEASURED);
    // The server's task for the last life may finish just after its client
    // saw the close; every earlier one has.
    assert!(measured[0] + measured[1] >= MEASURED - 1);
    assert!(
        measured[0] > 0 && measured[1] > 0,
        "SO_REUSEPORT sent every connection to one worker: {measured:?}"
    );
    assert_eq!(
        allocations, 0,
        "heap allocations during {MEASURED} connection lives ({} messages each); \
         sizes of the first ones: {sizes:?}",
        MESSAGES
    );
}
