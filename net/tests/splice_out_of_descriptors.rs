//! `splice_bidirectional_auto` with no descriptor left for a pipe: an
//! adapting direction keeps copying, and every byte arrives, instead of
//! ending the connection with `EMFILE` (a direction makes its pipe only
//! when a read first fills its buffer, which at a proxy's descriptor
//! limit is exactly when the pipe cannot be made). The one test here
//! lowers the process's descriptor limit, so it has a binary of its own.
#![cfg(target_os = "linux")]

mod util;

use std::io;

use cellio_net::splice_bidirectional_auto;
use cellio_runtime::spawn_local;
use util::{cellio_pair, echo, proxying, run};

/// The process's soft limit on open descriptors lowered to the lowest
/// free descriptor number: no new descriptor can be opened until it is
/// dropped, which restores the limit.
struct NoNewDescriptors {
    before: libc::rlimit,
}

impl NoNewDescriptors {
    fn now() -> io::Result<NoNewDescriptors> {
        let mut before = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `before` is a valid rlimit for getrlimit to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut before) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The next descriptor opened takes the lowest free number.
        let lowest_free = {
            use std::os::fd::AsRawFd;
            std::fs::File::open("/dev/null")?.as_raw_fd()
        };
        let lowered = libc::rlimit {
            rlim_cur: lowest_free as libc::rlim_t,
            rlim_max: before.rlim_max,
        };
        // SAFETY: `lowered` is a valid rlimit, read by setrlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let no_more = std::fs::File::open("/dev/null").map(drop);
        assert_eq!(no_more.unwrap_err().raw_os_error(), Some(libc::EMFILE));
        Ok(NoNewDescriptors { before })
    }
}

impl Drop for NoNewDescriptors {
    fn drop(&mut self) {
        // SAFETY: `self.before` is the valid rlimit getrlimit returned.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.before) };
    }
}

#[test]
fn out_of_descriptors_for_a_pipe_an_adapting_direction_keeps_copying() {
    run(|| async {
        let (client, proxy_in) = cellio_pair().await?;
        let (proxy_out, server) = cellio_pair().await?;
        spawn_local(echo(server));
        let proxy =
            spawn_local(async move { splice_bidirectional_auto(&proxy_in, &proxy_out).await });
        let _limit = NoNewDescriptors::now()?;
        // Large exchanges fill the copy buffer: each direction would
        // splice, and has no pipe.
        proxying::exchange_then_close(&client, &[1 << 20, 100, 300_000], vec![proxy]).await
    })
    .unwrap();
}
