//! Waiting for readiness: the one blocking call of a reactor turn.
//!
//! mio owns the poller: the epoll/kqueue descriptor, registrations, the
//! cross-thread waker, portability. On Linux the *wait* bypasses mio and
//! calls `epoll_pwait2` through `syscall(2)` on mio's epoll descriptor, into
//! a buffer of our own, for two reasons:
//!
//! * glibc's `epoll_wait` is a POSIX cancellation point: in a multi-threaded
//!   process every call pays `__pthread_enable_asynccancel` and
//!   `__pthread_disable_asynccancel` (about 30 instructions, plus the
//!   wrapper's own 24), which a ping-pong server pays on every message;
//! * `epoll_wait` takes whole milliseconds, so mio rounds a timer's timeout
//!   up and a 100 µs sleep lasts a millisecond. `epoll_pwait2` (Linux 5.11)
//!   takes nanoseconds. On an older kernel (`ENOSYS`), or in a sandbox whose
//!   seccomp profile predates the call and refuses it (`EPERM`, which
//!   `epoll_pwait2` never returns itself: Docker before 20.10, systemd's
//!   `SystemCallFilter=`), the poller falls back to `epoll_pwait` with the
//!   timeout rounded up to a millisecond, as mio does.
//!
//! Elsewhere the wait is mio's `Poll::poll`.
//!
//! # Invariants
//!
//! * An [`Event`] means exactly what mio's `Event` would for the same
//!   readiness bits (the Linux decoding mirrors mio's epoll backend), so the
//!   reactor's dispatch is the same whichever path filled the buffer.
//! * A wait never ends before its timeout for lack of precision: the timeout
//!   is passed to the nanosecond, or, on the fallback, rounded *up* to the
//!   millisecond.

use std::io;
use std::time::Duration;

/// One readiness event: the registration's token and what became ready.
///
/// On Linux it keeps epoll's bits and answers each question the way mio's
/// epoll backend does; elsewhere it keeps mio's answers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    pub(crate) token: u64,
    #[cfg(target_os = "linux")]
    bits: u32,
    #[cfg(not(target_os = "linux"))]
    flags: u8,
}

#[cfg(target_os = "linux")]
impl Event {
    #[inline]
    fn has(self, flag: libc::c_int) -> bool {
        self.bits & flag as u32 != 0
    }

    #[inline]
    pub(crate) fn is_readable(self) -> bool {
        self.has(libc::EPOLLIN | libc::EPOLLPRI)
    }

    #[inline]
    pub(crate) fn is_writable(self) -> bool {
        self.has(libc::EPOLLOUT)
    }

    #[inline]
    pub(crate) fn is_error(self) -> bool {
        self.has(libc::EPOLLERR)
    }

    /// Both halves closed, or FIN received (`shutdown(SHUT_RD)`).
    #[inline]
    pub(crate) fn is_read_closed(self) -> bool {
        self.has(libc::EPOLLHUP) || (self.has(libc::EPOLLIN) && self.has(libc::EPOLLRDHUP))
    }

    /// Both halves closed, or a pipe's other end gone.
    #[inline]
    pub(crate) fn is_write_closed(self) -> bool {
        self.has(libc::EPOLLHUP)
            || (self.has(libc::EPOLLOUT) && self.has(libc::EPOLLERR))
            || self.bits == libc::EPOLLERR as u32
    }

    /// Urgent (TCP) or out-of-band (Unix stream) data is pending: only
    /// stream sockets ask for it (see [`Handle::register_stream`]).
    ///
    /// [`Handle::register_stream`]: crate::Handle::register_stream
    #[inline]
    pub(crate) fn is_priority(self) -> bool {
        self.has(libc::EPOLLPRI)
    }

    /// Whether the event may report an error, a closed direction or urgent
    /// data (rare: once per connection); such events take the careful path.
    /// (One mask either way: the bits tested cost nothing per event.)
    #[inline]
    pub(crate) fn is_final(self) -> bool {
        self.has(libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP | libc::EPOLLPRI)
    }
}

#[cfg(not(target_os = "linux"))]
const READABLE: u8 = 1;
#[cfg(not(target_os = "linux"))]
const WRITABLE: u8 = 1 << 1;
#[cfg(not(target_os = "linux"))]
const ERROR: u8 = 1 << 2;
#[cfg(not(target_os = "linux"))]
const READ_CLOSED: u8 = 1 << 3;
#[cfg(not(target_os = "linux"))]
const WRITE_CLOSED: u8 = 1 << 4;
#[cfg(not(target_os = "linux"))]
const PRIORITY: u8 = 1 << 5;

#[cfg(not(target_os = "linux"))]
impl Event {
    fn from_mio(event: &mio::event::Event) -> Self {
        let mut flags = 0;
        for (yes, flag) in [
            (event.is_readable(), READABLE),
            (event.is_writable(), WRITABLE),
            (event.is_error(), ERROR),
            (event.is_read_closed(), READ_CLOSED),
            (event.is_write_closed(), WRITE_CLOSED),
            (event.is_priority(), PRIORITY),
        ] {
            if yes {
                flags |= flag;
            }
        }
        Self {
            token: event.token().0 as u64,
            flags,
        }
    }

    pub(crate) fn is_readable(self) -> bool {
        self.flags & READABLE != 0
    }

    pub(crate) fn is_writable(self) -> bool {
        self.flags & WRITABLE != 0
    }

    pub(crate) fn is_error(self) -> bool {
        self.flags & ERROR != 0
    }

    pub(crate) fn is_read_closed(self) -> bool {
        self.flags & READ_CLOSED != 0
    }

    pub(crate) fn is_write_closed(self) -> bool {
        self.flags & WRITE_CLOSED != 0
    }

    pub(crate) fn is_priority(self) -> bool {
        self.flags & PRIORITY != 0
    }

    pub(crate) fn is_final(self) -> bool {
        self.flags & (ERROR | READ_CLOSED | WRITE_CLOSED | PRIORITY) != 0
    }
}

/// mio's poller plus the buffer a turn's events land in.
pub(crate) struct Poller {
    poll: mio::Poll,
    #[cfg(target_os = "linux")]
    events: Vec<libc::epoll_event>,
    /// `false` once the kernel said `epoll_pwait2` does not exist, or a
    /// seccomp filter refused it.
    #[cfg(target_os = "linux")]
    #[cfg_attr(miri, allow(dead_code))]
    precise: bool,
    #[cfg(not(target_os = "linux"))]
    events: mio::Events,
    /// Events in the buffer from the last wait.
    ready: usize,
}

impl Poller {
    pub(crate) fn new(poll: mio::Poll, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            poll,
            #[cfg(target_os = "linux")]
            events: Vec::with_capacity(capacity),
            #[cfg(target_os = "linux")]
            precise: true,
            #[cfg(not(target_os = "linux"))]
            events: mio::Events::with_capacity(capacity),
            ready: 0,
        }
    }

    #[cfg(all(test, target_os = "linux"))]
    fn poll(&self) -> &mio::Poll {
        &self.poll
    }

    /// Events fetched per wait at most.
    pub(crate) fn capacity(&self) -> usize {
        self.events.capacity()
    }

    /// The events of the last [`wait`](Self::wait).
    #[inline]
    pub(crate) fn events(&self) -> impl Iterator<Item = Event> + '_ {
        #[cfg(target_os = "linux")]
        {
            self.events[..self.ready].iter().map(|event| {
                // Copies out of the (packed, on x86-64) kernel struct.
                let (token, bits) = (event.u64, event.events);
                Event { token, bits }
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.events.iter().take(self.ready).map(Event::from_mio)
        }
    }

    /// Blocks until readiness, a wake-up or `timeout` (`None`: no limit).
    /// `EINTR` is returned as an error of kind `Interrupted`, with no events.
    #[cfg(target_os = "linux")]
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        use std::os::fd::AsRawFd;

        let epfd = self.poll.as_raw_fd() as usize;
        #[cfg(not(miri))]
        let buf = self.events.as_mut_ptr() as usize;
        // The capacity is at least 1 and fits: `Reactor` asks for far fewer.
        let max = self.events.capacity().min(libc::c_int::MAX as usize);
        // Miri runs no inline `syscall` and knows no `epoll_pwait2`, but it
        // models libc's `epoll_wait`: under Miri the wait goes through it,
        // so that the runtime's tests can run there (millisecond timeouts).
        #[cfg(miri)]
        let n = {
            // SAFETY: the buffer has room for `max` events (the vector's
            // capacity).
            let n = unsafe {
                libc::epoll_wait(
                    epfd as libc::c_int,
                    self.events.as_mut_ptr(),
                    max as libc::c_int,
                    millis_rounded_up(timeout),
                )
            };
            if n < 0 {
                -(io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO) as isize)
            } else {
                n as isize
            }
        };
        #[cfg(not(miri))]
        let n = if self.precise {
            let spec = timeout.map(|t| libc::timespec {
                tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
                tv_nsec: t.subsec_nanos() as _,
            });
            let spec_ptr = spec
                .as_ref()
                .map_or(std::ptr::null(), |s| s as *const libc::timespec);
            // SAFETY: `buf` has room for `max` events (the vector's
            // capacity), `spec_ptr` is null or points at a live timespec,
            // and a null signal mask leaves the mask alone.
            let n = unsafe {
                crate::sys::syscall6(
                    libc::SYS_epoll_pwait2,
                    epfd,
                    buf,
                    max,
                    spec_ptr as usize,
                    0,
                    0,
                )
            };
            // `EPERM` is a seccomp filter's refusal: the call itself has
            // no such error.
            if n == -(libc::ENOSYS as isize) || n == -(libc::EPERM as isize) {
                return self.fall_back(timeout);
            }
            n
        } else {
            // SAFETY: as above; `epoll_pwait` with a null mask is
            // `epoll_wait`, which not every architecture has as a syscall.
            unsafe {
                crate::sys::syscall6(
                    libc::SYS_epoll_pwait,
                    epfd,
                    buf,
                    max,
                    millis_rounded_up(timeout) as usize,
                    0,
                    0,
                )
            }
        };
        if n < 0 {
            self.ready = 0;
            return Err(io::Error::from_raw_os_error(-n as i32));
        }
        self.ready = n as usize;
        // SAFETY: the kernel initialised the first `n <= max <= capacity`
        // entries.
        unsafe { self.events.set_len(self.ready) };
        Ok(())
    }

    /// The kernel has no `epoll_pwait2` (before Linux 5.11), or a seccomp
    /// filter refuses it: millisecond timeouts from now on.
    #[cfg(target_os = "linux")]
    #[cfg_attr(miri, allow(dead_code))]
    #[cold]
    fn fall_back(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.precise = false;
        tracing::debug!("epoll_pwait2 unavailable: timeouts round up to milliseconds");
        self.wait(timeout)
    }

    /// Blocks until readiness, a wake-up or `timeout` (`None`: no limit).
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.ready = 0;
        self.poll.poll(&mut self.events, timeout)?;
        self.ready = self.events.iter().count();
        Ok(())
    }
}

/// `epoll_wait`'s timeout argument: `-1` for none, else whole milliseconds
/// rounded up (so a timer never fires early), capped at `c_int::MAX`.
#[cfg(target_os = "linux")]
fn millis_rounded_up(timeout: Option<Duration>) -> libc::c_int {
    timeout.map_or(-1, |t| {
        let ms = t.as_nanos().div_ceil(1_000_000);
        ms.min(libc::c_int::MAX as u128) as libc::c_int
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn epoll_bits_decode_like_mio() {
        let e = |bits: libc::c_int| Event {
            token: 7,
            bits: bits as u32,
        };
        let plain = e(libc::EPOLLIN | libc::EPOLLOUT);
        assert!(plain.is_readable() && plain.is_writable() && !plain.is_final());
        assert_eq!(plain.token, 7);
        let fin = e(libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLOUT);
        assert!(fin.is_read_closed() && !fin.is_write_closed() && fin.is_final());
        assert!(
            e(libc::EPOLLRDHUP).is_final(),
            "rare bits take the careful path"
        );
        let hup = e(libc::EPOLLHUP);
        assert!(hup.is_read_closed() && hup.is_write_closed() && !hup.is_readable());
        let err = e(libc::EPOLLERR);
        assert!(err.is_error() && err.is_write_closed() && !err.is_read_closed());
        let out_err = e(libc::EPOLLOUT | libc::EPOLLERR);
        assert!(out_err.is_write_closed() && out_err.is_error());
        // RDHUP without IN is not a read close (mio's rule).
        assert!(!e(libc::EPOLLRDHUP).is_read_closed());
        // Urgent data: readable, and the careful path (a hang-up for the
        // receive cell, see `final_event`).
        let urgent = e(libc::EPOLLIN | libc::EPOLLPRI);
        assert!(urgent.is_readable() && urgent.is_priority() && urgent.is_final());
        assert!(!plain.is_priority() && !fin.is_priority());
    }

    #[test]
    fn fallback_timeouts_round_up_to_whole_milliseconds() {
        assert_eq!(millis_rounded_up(None), -1);
        assert_eq!(millis_rounded_up(Some(Duration::ZERO)), 0);
        assert_eq!(millis_rounded_up(Some(Duration::from_nanos(1))), 1);
        assert_eq!(millis_rounded_up(Some(Duration::from_micros(1500))), 2);
        assert_eq!(millis_rounded_up(Some(Duration::from_millis(7))), 7);
        assert_eq!(
            millis_rounded_up(Some(Duration::from_secs(u64::MAX))),
            libc::c_int::MAX
        );
    }

    #[test]
    fn waits_on_both_paths_report_what_is_ready() {
        for precise in [true, false] {
            let mut poller = Poller::new(mio::Poll::new().unwrap(), 8);
            poller.precise = precise;
            poller.wait(Some(Duration::ZERO)).unwrap();
            assert_eq!(poller.events().count(), 0, "nothing registered yet");
            let waker = mio::Waker::new(poller.poll().registry(), mio::Token(42)).unwrap();
            waker.wake().unwrap();
            poller.wait(None).unwrap();
            let events: Vec<Event> = poller.events().collect();
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].token, 42);
            assert!(events[0].is_readable());
        }
    }
}
