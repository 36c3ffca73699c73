//! Addresses for [`TcpStream::connect`](crate::TcpStream::connect), and
//! [`lookup_host`]: host names resolved off the worker.
//!
//! `std`'s resolver (`getaddrinfo`) blocks, for as long as DNS takes: on a
//! worker, every task would wait with it. So host names resolve on the
//! process's lookup threads, and the future waits for the answer as for
//! any other event; addresses given as such (a `SocketAddr`, an IP and a
//! port, `"127.0.0.1:80"`, a slice of `SocketAddr`s, which `connect`
//! borrows while it tries them) are used at once, with no thread and no
//! allocation (`lookup_host` copies a slice into the iterator it returns).
//! tokio resolves on its blocking pool for the same reason; this crate has
//! no runtime pool (it needs only a reactor), so it keeps a small one of
//! its own.
//!
//! # Invariants
//!
//! * At most [`MAX_LOOKUP_THREADS`] lookups run at once, process-wide;
//!   more wait in a queue, in order (a burst of connections to one name
//!   cannot start a thread each). Threads start on demand and leave after
//!   [`LOOKUP_KEEP_ALIVE`] without work.
//! * A job, once queued, runs: a dropped wait leaves it to finish, and
//!   its answer unread. Only when no lookup thread is alive and none can
//!   be started are the queued jobs dropped unrun, every one of them (not
//!   only the submitter's own, which may be another's by then), and a job
//!   dropped unrun answers its waiter with an error ([`Answerer`]): no
//!   lookup waits for ever, nor sits queued with no thread to take it.
//! * A lookup started on a reactor's thread is that reactor's
//!   [`OutsideWork`] from its submission until its job has answered (or
//!   was dropped unrun): a runtime's paused clock does not jump to a
//!   timeout while the lookup runs, as tokio's does not while its
//!   blocking pool resolves.
//!
//! [`ToSocketAddrs`] is sealed: it covers what `std`'s trait of the same
//! name covers for `connect` (`SocketAddr`s, IPs with ports, `"host:port"`,
//! `(host, port)`, slices of addresses, and references to any of them).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use cellio_reactor::{Handle, OutsideWork};

/// The most host-name lookups that run at once in a process.
pub const MAX_LOOKUP_THREADS: usize = 16;

/// How long a lookup thread waits for another lookup before it leaves.
pub const LOOKUP_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// What [`TcpStream::connect`](crate::TcpStream::connect) and
/// [`lookup_host`] take: one address or several, or a host name to
/// resolve (off the worker). tokio's trait of the same name; implemented
/// for the same types as `std::net::ToSocketAddrs` (`SocketAddr`,
/// `(IpAddr, u16)`, `&str` and `String` as `"host:port"`, `(&str, u16)`,
/// `&[SocketAddr]`, …) and sealed.
///
/// # Examples
///
/// ```no_run
/// # cellio_runtime::Runtime::new()?.block_on(async {
/// use std::net::{Ipv4Addr, SocketAddr};
/// use cellio_net::TcpStream;
///
/// // Used as they are: no lookup.
/// TcpStream::connect("127.0.0.1:7000").await?;
/// TcpStream::connect((Ipv4Addr::LOCALHOST, 7000)).await?;
/// TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], 7000))).await?;
/// // Resolved on a thread of its own, each address tried in turn.
/// TcpStream::connect("localhost:7000").await?;
/// TcpStream::connect(("localhost", 7000)).await?;
/// # Ok::<(), std::io::Error>(())
/// # })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait ToSocketAddrs: sealed::Sealed {}

mod sealed {
    use super::Target;

    /// The addresses, or what to look up.
    pub trait Sealed {
        fn target(&self) -> Target<'_>;
    }
}

/// Addresses given as such, or a name to resolve.
#[derive(Debug)]
pub enum Target<'a> {
    /// Addresses known without a lookup (a slice of them borrowed).
    Ready(Addresses<'a>),
    /// `"host:port"` to resolve.
    Name(String),
    /// `(host, port)` to resolve.
    HostPort(String, u16),
}

/// The addresses a target stands for, in order. A slice of addresses is
/// borrowed, not copied: `connect` holds its argument for as long as it
/// tries them, so no address it is given costs an allocation.
#[derive(Debug)]
pub struct Addresses<'a>(AddressesInner<'a>);

#[derive(Debug)]
enum AddressesInner<'a> {
    One(Option<SocketAddr>),
    Borrowed(std::slice::Iter<'a, SocketAddr>),
    Many(std::vec::IntoIter<SocketAddr>),
}

impl<'a> Addresses<'a> {
    fn one(address: SocketAddr) -> Self {
        Self(AddressesInner::One(Some(address)))
    }

    fn borrowed(addresses: &'a [SocketAddr]) -> Self {
        Self(AddressesInner::Borrowed(addresses.iter()))
    }

    fn many(addresses: Vec<SocketAddr>) -> Self {
        Self(AddressesInner::Many(addresses.into_iter()))
    }

    /// The same addresses, owned (a borrowed slice is copied), to outlive
    /// what they were borrowed from.
    fn into_owned(self) -> Addresses<'static> {
        Addresses(match self.0 {
            AddressesInner::One(address) => AddressesInner::One(address),
            AddressesInner::Borrowed(addresses) => {
                AddressesInner::Many(addresses.as_slice().to_vec().into_iter())
            }
            AddressesInner::Many(addresses) => AddressesInner::Many(addresses),
        })
    }
}

impl Iterator for Addresses<'_> {
    type Item = SocketAddr;

    fn next(&mut self) -> Option<SocketAddr> {
        match &mut self.0 {
            AddressesInner::One(address) => address.take(),
            AddressesInner::Borrowed(addresses) => addresses.next().copied(),
            AddressesInner::Many(addresses) => addresses.next(),
        }
    }
}

macro_rules! one_address {
    ($($type:ty),* $(,)?) => {$(
        impl ToSocketAddrs for $type {}
        impl sealed::Sealed for $type {
            fn target(&self) -> Target<'_> {
                Target::Ready(Addresses::one(SocketAddr::from(*self)))
            }
        }
    )*};
}

one_address!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16),
);

impl ToSocketAddrs for [SocketAddr] {}
impl sealed::Sealed for [SocketAddr] {
    fn target(&self) -> Target<'_> {
        Target::Ready(Addresses::borrowed(self))
    }
}

impl ToSocketAddrs for str {}
impl sealed::Sealed for str {
    fn target(&self) -> Target<'_> {
        match self.parse::<SocketAddr>() {
            Ok(address) => Target::Ready(Addresses::one(address)),
            Err(_) => Target::Name(self.to_owned()),
        }
    }
}

impl ToSocketAddrs for String {}
impl sealed::Sealed for String {
    fn target(&self) -> Target<'_> {
        self.as_str().target()
    }
}

/// `(host, port)`: an IP used as it is, else a name to resolve.
fn host_port(host: &str, port: u16) -> Target<'static> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Target::Ready(Addresses::one(SocketAddr::new(ip, port))),
        Err(_) => Target::HostPort(host.to_owned(), port),
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl sealed::Sealed for (&str, u16) {
    fn target(&self) -> Target<'_> {
        host_port(self.0, self.1)
    }
}

impl ToSocketAddrs for (String, u16) {}
impl sealed::Sealed for (String, u16) {
    fn target(&self) -> Target<'_> {
        host_port(&self.0, self.1)
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: ToSocketAddrs + ?Sized> sealed::Sealed for &T {
    fn target(&self) -> Target<'_> {
        (**self).target()
    }
}

/// The addresses `addr` stands for: at once if it names them, else
/// resolved on a thread of its own while the caller's task waits.
/// A slice of addresses is borrowed from `addr`, not copied.
pub(crate) async fn resolve<A: ToSocketAddrs + ?Sized>(addr: &A) -> io::Result<Addresses<'_>> {
    match sealed::Sealed::target(addr) {
        Target::Ready(addresses) => Ok(addresses),
        Target::Name(name) => {
            look_up(move || std::net::ToSocketAddrs::to_socket_addrs(&name)).await
        }
        Target::HostPort(host, port) => {
            look_up(move || std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))).await
        }
    }
}

/// Resolves `host` (a `"host:port"`, a `(host, port)`, or addresses), as
/// tokio's `lookup_host`: a name on a thread of its own, so the worker runs
/// on meanwhile; addresses given as such at once. It needs no reactor: the
/// lookup's thread wakes the waiting task through its waker, so it works
/// under any executor.
///
/// # Examples
///
/// ```
/// # cellio_runtime::Runtime::new()?.block_on(async {
/// let addresses: Vec<_> = cellio_net::lookup_host("localhost:7000").await?.collect();
/// assert!(addresses.iter().all(|a| a.ip().is_loopback() && a.port() == 7000));
/// # Ok::<(), std::io::Error>(())
/// # })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn lookup_host<A: ToSocketAddrs>(
    host: A,
) -> io::Result<impl Iterator<Item = SocketAddr>> {
    Ok(resolve(&host).await?.into_owned())
}

/// The answer a lookup thread leaves, and the task waiting for it.
#[derive(Default)]
struct Answer {
    addresses: Option<io::Result<Addresses<'static>>>,
    waiter: Option<Waker>,
}

/// A queued lookup.
type Job = Box<dyn FnOnce() + Send>;

/// The process's lookup threads and their queue (module invariants).
struct LookupPool {
    state: Mutex<PoolState>,
    work: Condvar,
    /// Starts a thread that runs [`run_thread`](Self::run_thread):
    /// [`start_lookup_thread`], or in tests one that fails.
    start_thread: fn(&'static LookupPool) -> io::Result<()>,
}

struct PoolState {
    queue: VecDeque<Job>,
    /// Threads alive.
    threads: usize,
    /// Threads waiting for work.
    idle: usize,
}

static POOL: LookupPool = LookupPool {
    state: Mutex::new(PoolState {
        queue: VecDeque::new(),
        threads: 0,
        idle: 0,
    }),
    work: Condvar::new(),
    start_thread: start_lookup_thread,
};

fn start_lookup_thread(pool: &'static LookupPool) -> io::Result<()> {
    std::thread::Builder::new()
        .name("cellio-lookup".into())
        .spawn(move || pool.run_thread())
        .map(drop)
}

impl LookupPool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A job runs outside the lock, so a panic never poisons it with
        // the state half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job`, and starts a thread for it if the queue holds more
    /// jobs than there are idle threads to take them, and fewer than
    /// [`MAX_LOOKUP_THREADS`] run. (An idle thread counts as idle until it
    /// takes a job, and a job as queued until taken, so a burst of submits
    /// sees one idle thread as one, not as one for each.)
    fn submit(&'static self, job: Job) -> io::Result<()> {
        let mut state = self.lock();
        state.queue.push_back(job);
        if state.idle > 0 {
            self.work.notify_one();
        }
        if state.queue.len() <= state.idle || state.threads >= MAX_LOOKUP_THREADS {
            return Ok(()); // an idle thread, or a busy one later, takes it
        }
        state.threads += 1;
        drop(state);
        if let Err(e) = (self.start_thread)(self) {
            let mut state = self.lock();
            state.threads -= 1;
            if state.threads == 0 {
                // No thread would ever take them: every queued job, this
                // one and any other submitter left while its own thread
                // was starting (the last one queued need not be ours), is
                // dropped unrun, outside the lock, which answers its
                // waiter with an error (`Answerer`).
                let unrun = std::mem::take(&mut state.queue);
                drop(state);
                drop(unrun);
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot start a thread for a DNS lookup: {e}"),
                ));
            }
        }
        Ok(())
    }

    /// A lookup thread: jobs in order until none comes for the keep-alive.
    fn run_thread(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                job();
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let (guard, waited) = self
                .work
                .wait_timeout(state, LOOKUP_KEEP_ALIVE)
                .unwrap_or_else(PoisonError::into_inner);
            state = guard;
            state.idle -= 1;
            if waited.timed_out() && state.queue.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

/// A job's end of its [`Answer`]: [`answer`](Self::answer) gives it once;
/// a job dropped unrun (no thread could be started to run it) answers with
/// an error instead, so its waiter does not wait for ever. Holds the
/// waiting task's reactor's [`OutsideWork`] (a paused clock does not jump
/// while the lookup runs) until it has answered.
struct Answerer {
    answer: Option<Arc<Mutex<Answer>>>,
    /// Only held: dropped after the answer was given.
    _outside_work: Option<OutsideWork>,
}

impl Answerer {
    fn answer(mut self, addresses: io::Result<Addresses<'static>>) {
        if let Some(answer) = self.answer.take() {
            Self::give(&answer, addresses);
        }
    }

    fn give(answer: &Mutex<Answer>, addresses: io::Result<Addresses<'static>>) {
        let waiter = {
            let mut answer = answer.lock().unwrap_or_else(PoisonError::into_inner);
            answer.addresses = Some(addresses);
            answer.waiter.take()
        };
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        if let Some(answer) = self.answer.take() {
            Self::give(
                &answer,
                Err(io::Error::other(
                    "cellio: no thread could be started for the host-name lookup",
                )),
            );
        }
    }
}

/// A job that runs `query` and answers with what it found, and the answer;
/// `outside_work` is dropped once it has answered.
fn lookup_job<I, Q>(query: Q, outside_work: Option<OutsideWork>) -> (Job, Arc<Mutex<Answer>>)
where
    I: Iterator<Item = SocketAddr>,
    Q: FnOnce() -> io::Result<I> + Send + 'static,
{
    let answer = Arc::new(Mutex::new(Answer::default()));
    let theirs = Answerer {
        answer: Some(Arc::clone(&answer)),
        _outside_work: outside_work,
    };
    let job = Box::new(move || {
        // A panicking lookup must still answer (its waiter would wait for
        // ever) and must not end the thread (the pool would count it).
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(query))
            .unwrap_or_else(|_| Err(io::Error::other("cellio: the host-name lookup panicked")));
        theirs.answer(found.map(|found| Addresses::many(found.collect())));
    });
    (job, answer)
}

/// Runs `query` (a blocking `std` lookup) on a lookup thread and waits for
/// its answer. A dropped wait leaves the job to finish and its answer
/// unread. On a thread with a reactor (a runtime's worker), the lookup is
/// that reactor's [`OutsideWork`] until it has answered: a paused clock
/// does not jump past a timeout meanwhile.
async fn look_up<I, Q>(query: Q) -> io::Result<Addresses<'static>>
where
    I: Iterator<Item = SocketAddr>,
    Q: FnOnce() -> io::Result<I> + Send + 'static,
{
    let outside_work = Handle::current().ok().map(|reactor| reactor.outside_work());
    let (job, answer) = lookup_job(query, outside_work);
    POOL.submit(job)?;
    poll_fn(|cx| {
        let mut answer = answer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(addresses) = answer.addresses.take() {
            return Poll::Ready(addresses);
        }
        match &answer.waiter {
            Some(waiter) if waiter.will_wake(cx.waker()) => {}
            _ => answer.waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    /// On a paused clock, a lookup that takes 50 ms of real time is not
    /// timed out by the clock's jump to its 10 s timeout: the lookup holds
    /// the jump back while it runs.
    #[test]
    fn a_paused_clock_does_not_jump_past_a_running_lookup() {
        let rt = cellio_runtime::Builder::new()
            .workers(1)
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let slow = look_up(|| {
                std::thread::sleep(Duration::from_millis(50));
                Ok(vec![SocketAddr::from(([127, 0, 0, 1], 9))].into_iter())
            });
            let got = cellio_runtime::time::timeout(Duration::from_secs(10), slow).await;
            assert!(
                got.is_ok(),
                "the clock jumped to the timeout while the lookup ran"
            );
        });
    }

    /// A lookup that blocks for 100 ms does so on its own thread: a task
    /// on the same worker runs meanwhile (on the worker, it could not run
    /// before the lookup returned).
    #[test]
    fn the_worker_runs_on_while_a_lookup_blocks() {
        let rt = cellio_runtime::Builder::new().workers(1).build().unwrap();
        let (ticks, during) = rt.block_on(async {
            let ticks = Rc::new(Cell::new(0u32));
            let ticker = {
                let ticks = Rc::clone(&ticks);
                cellio_runtime::spawn_local(async move {
                    loop {
                        cellio_runtime::sleep(Duration::from_millis(1)).await;
                        ticks.set(ticks.get() + 1);
                    }
                })
            };
            let found = look_up(|| {
                std::thread::sleep(Duration::from_millis(100));
                Ok(vec![SocketAddr::from(([127, 0, 0, 1], 9))].into_iter())
            })
            .await
            .unwrap();
            let during = ticks.get();
            ticker.abort();
            (found.collect::<Vec<_>>(), during)
        });
        assert_eq!(ticks, [SocketAddr::from(([127, 0, 0, 1], 9))]);
        assert!(
            during >= 10,
            "the worker ticked {during} times during a 100 ms lookup"
        );
    }

    /// 64 lookups at once, each blocking 20 ms: at most
    /// `MAX_LOOKUP_THREADS` run together (the rest queue), several do run
    /// together, and every one gets its own answer.
    #[test]
    fn a_burst_of_lookups_shares_a_bounded_set_of_threads() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let rt = cellio_runtime::Builder::new().workers(1).build().unwrap();
        let answers = rt.block_on(async {
            let lookups: Vec<_> = (0..64u16)
                .map(|port| {
                    cellio_runtime::spawn(look_up(move || {
                        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
                        MOST.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        RUNNING.fetch_sub(1, Ordering::SeqCst);
                        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))].into_iter())
                    }))
                })
                .collect();
            let mut answers = Vec::new();
            for lookup in lookups {
                answers.push(lookup.await.unwrap().unwrap().next().unwrap().port());
            }
            answers
        });
        assert_eq!(answers, (0..64).collect::<Vec<u16>>());
        let most = MOST.load(Ordering::SeqCst);
        assert!(
            (2..=MAX_LOOKUP_THREADS).contains(&most),
            "{most} lookups ran at once"
        );
    }

    #[test]
    fn a_panicking_lookup_is_an_error_and_the_pool_goes_on() {
        let rt = cellio_runtime::Builder::new().workers(1).build().unwrap();
        let error = rt
            .block_on(look_up(|| -> io::Result<std::vec::IntoIter<SocketAddr>> {
                panic!("a resolver bug")
            }))
            .err()
            .unwrap();
        assert!(error.to_string().contains("lookup panicked"), "{error}");
        let after = rt.block_on(look_up(|| {
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], 1))].into_iter())
        }));
        assert_eq!(after.unwrap().count(), 1);
    }

    /// Two lookups submitted while no lookup thread is alive, whose
    /// threads both fail to start, the later one's failure first: both
    /// are answered with an error, and none stays queued. (The first
    /// submitter used to take back the last job queued as its own: it
    /// dropped the other's unrun, whose lookup then waited for ever, and
    /// left its own queued with no thread to take it; found by a review.)
    #[test]
    fn when_no_lookup_thread_can_start_every_queued_lookup_is_answered() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        /// The second submit's result, and its lookup's answer.
        type Submitted = (io::Result<()>, Arc<Mutex<Answer>>);
        static SECOND: Mutex<Option<Submitted>> = Mutex::new(None);
        static FAILING: LookupPool = LookupPool {
            state: Mutex::new(PoolState {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
            }),
            work: Condvar::new(),
            start_thread: start_after_a_second_submit,
        };
        fn one_address() -> io::Result<std::vec::IntoIter<SocketAddr>> {
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], 1))].into_iter())
        }
        /// Fails every start; the first lets a second submitter queue its
        /// job, and see its own start fail, before failing.
        fn start_after_a_second_submit(pool: &'static LookupPool) -> io::Result<()> {
            if STARTS.fetch_add(1, Ordering::SeqCst) == 0 {
                let (job, answer) = lookup_job(one_address, None);
                let submitted = pool.submit(job);
                *SECOND.lock().unwrap() = Some((submitted, answer));
            }
            Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "no threads (test)",
            ))
        }
        fn answered(answer: &Mutex<Answer>) -> Option<String> {
            let addresses = answer.lock().unwrap().addresses.take()?;
            Some(addresses.err().map_or("Ok".into(), |e| e.to_string()))
        }

        let (job, first) = lookup_job(one_address, None);
        let error = FAILING.submit(job).expect_err("no thread, so an error");
        assert!(error.to_string().contains("no threads (test)"), "{error}");
        assert_eq!(STARTS.load(Ordering::SeqCst), 2);
        let (submitted, second) = SECOND.lock().unwrap().take().unwrap();
        // The second submitter saw the first's thread still starting.
        submitted.expect("queued for the first's thread");
        let unrun = "cellio: no thread could be started for the host-name lookup";
        assert_eq!(
            answered(&second).as_deref(),
            Some(unrun),
            "the second lookup"
        );
        assert_eq!(answered(&first).as_deref(), Some(unrun), "the first lookup");
        let state = FAILING.lock();
        assert_eq!((state.queue.len(), state.threads), (0, 0));
    }

    #[test]
    fn a_failed_lookup_returns_its_error() {
        let rt = cellio_runtime::Builder::new().workers(1).build().unwrap();
        let error = rt
            .block_on(look_up(|| {
                Err::<std::vec::IntoIter<SocketAddr>, _>(io::Error::other("no such host"))
            }))
            .err()
            .unwrap();
        assert_eq!(error.to_string(), "no such host");
    }
}
