//! `#[cellio::main]` and `#[cellio::test]`: the body runs to its end on a
//! cellio runtime with the workers asked for, returns what it returns
//! (`?` included), and panics in it fail the test as in a plain one.

use std::io;
use std::time::Duration;

#[cellio::test]
async fn a_test_body_runs_on_one_worker() {
    assert_eq!(cellio::runtime::current_worker(), Some(0));
    let handle = cellio::runtime::RuntimeHandle::current().unwrap();
    assert_eq!(handle.workers(), 1);
    assert_eq!(cellio::spawn(async { 40 + 2 }).await.unwrap(), 42);
}

#[cellio::test(workers = 3)]
async fn workers_can_be_asked_for() {
    let handle = cellio::runtime::RuntimeHandle::current().unwrap();
    assert_eq!(handle.workers(), 3);
    let there = cellio::runtime::spawn_on(2, async { cellio::runtime::current_worker() });
    assert_eq!(there.await.unwrap(), Some(2));
}

const NO_WORKERS: usize = 0;

/// A literal `workers = 0` is a compile error; an expression worth 0 goes to
/// `Builder::workers`, which raises it to 1, as its docs say.
#[cellio::test(workers = NO_WORKERS)]
async fn workers_zero_through_a_constant_runs_one_worker() {
    let handle = cellio::runtime::RuntimeHandle::current().unwrap();
    assert_eq!(handle.workers(), 1);
}

/// The macros refuse a literal `workers` above 4096 at compile time
/// (cellio-macros cannot name the runtime's constant, so it keeps its own):
/// that must be the runtime's limit, or they would refuse a count that
/// works, or let through one that panics at start.
#[test]
fn the_macros_worker_limit_is_the_runtimes() {
    assert_eq!(cellio::runtime::MAX_WORKERS, 4096);
}

#[cellio::test]
async fn a_test_may_return_a_result() -> io::Result<()> {
    let listener = cellio::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let client = cellio::spawn(async move { cellio::TcpStream::connect(address).await.map(drop) });
    listener.accept().await?;
    client.await??;
    Ok(())
}

#[cellio::test]
#[should_panic(expected = "inside the body")]
async fn a_panic_in_the_body_fails_the_test() {
    cellio::yield_now().await;
    panic!("inside the body");
}

/// `main`'s expansion, called as a function: it returns the body's value.
#[cellio::main(workers = 1)]
async fn main_like() -> io::Result<u32> {
    let sum = cellio::spawn(async { 1 + 2 }).await?;
    Ok(sum)
}

#[test]
fn main_returns_what_its_body_returns() {
    assert_eq!(main_like().unwrap(), 3);
}

mod renamed {
    extern crate cellio as other_name;

    #[other_name::test(crate = "other_name")]
    async fn a_renamed_crate_is_found() {
        other_name::yield_now().await;
    }
}

#[cellio::test(start_paused = true)]
async fn start_paused_runs_a_five_minute_timeout_on_the_paused_clock() {
    use cellio::runtime::time;
    let start = time::now();
    let idle = time::timeout(Duration::from_secs(300), std::future::pending::<()>());
    assert!(idle.await.is_err());
    assert_eq!(time::now() - start, Duration::from_secs(300));
    // Paused, so a second `now` has not moved.
    assert_eq!(time::now() - start, Duration::from_secs(300));
}

/// `main` with `start_paused` and no `workers`: one worker, paused.
#[cellio::main(start_paused = true)]
async fn paused_main() -> usize {
    let start = cellio::runtime::time::now();
    cellio::runtime::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        cellio::runtime::time::now() - start,
        Duration::from_secs(60)
    );
    cellio::runtime::RuntimeHandle::current()
        .expect("inside the runtime")
        .workers()
}

#[test]
fn main_with_start_paused_has_one_paused_worker() {
    assert_eq!(paused_main(), 1);
}
