// user_time.so: a process's user time between its syscalls, read from the time-stamp counter.
//
// Preloaded into a server (LD_PRELOAD), it wraps the libc functions through which servers
// make their syscalls (recv/send and friends, read/write, epoll_wait/epoll_pwait, accept4,
// close, epoll_ctl, poll, nanosleep, and `syscall(2)` itself). Each wrapper reads the TSC
// before and after the real call. The stretch from one call's return to the thread's next
// call is a **user segment**: the thread ran its own code (or was interrupted, or preempted:
// see the long-segment limit below). Its length is added to shared counters in a page that
// the driver maps from the file named by USER_TIME_FILE and reads whenever it likes; the
// counters only grow. A thread's first segment (from its start to its first call) is not
// counted, and neither is the time inside the calls.
//
// What it measures is user time in wall-clock TSC cycles, exact to a few cycles per segment,
// where tick sampling (/proc utime) is statistical and biased (it books part of every
// syscall as user time). It includes what user code pays after each syscall (cold lines,
// a drained pipeline), which is real user cost, and the wrapper's own few instructions,
// which are the same for every server. It needs every hot syscall to go through a wrapped
// libc function: a raw `syscall` instruction inlined in a program is invisible to it, which
// is why cellio is measured in a build that routes its syscalls through `syscall(2)` (the
// `cellio_libc_syscalls` cfg). The `calls` counter lets the driver compare against strace.
//
// Segments longer than USER_TIME_LONG_CYCLES (default 2 000 000, about 1 ms) are counted
// apart: a thread that long between two syscalls in an echo server was descheduled or the
// VM was stalled, and the driver reports them instead of mixing them in.
//
// Page layout (little-endian u64s): [0] magic, [1] user cycles, [2] segments, [3] calls,
// [4] long cycles, [5] long segments, [6] the long limit in use, [7] zero, then the user
// cycles [8..24) and the segment counts [24..40) of each transition from the kind of the
// call before a segment to the kind of the call after it (index before * 4 + after; kinds:
// 0 receive, 1 send, 2 readiness wait, 3 other).

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441 /* x86-64; older headers lack it */
#endif

#define MAGIC 0x5553455254494d45ull /* "USERTIME" in ASCII, big-endian: the layout version */
enum { RECEIVE = 0, SEND = 1, WAIT = 2, OTHER = 3, KINDS = 4 };

struct counters {
    uint64_t magic, user, segments, calls, long_cycles, long_segments, long_limit, zero;
    uint64_t pair_cycles[KINDS * KINDS];
    uint64_t pair_segments[KINDS * KINDS];
};

static struct counters fallback; // when USER_TIME_FILE is missing: count, but nobody reads
static struct counters *counters = &fallback;
static uint64_t long_limit = 2000000;
static __thread __attribute__((tls_model("initial-exec"))) uint64_t last_exit;
static __thread __attribute__((tls_model("initial-exec"))) int last_kind;

__attribute__((constructor)) static void init(void) {
    const char *limit = getenv("USER_TIME_LONG_CYCLES");
    if (limit) {
        uint64_t v = strtoull(limit, 0, 10);
        if (v > 0) long_limit = v;
    }
    const char *path = getenv("USER_TIME_FILE");
    if (path) {
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            if (ftruncate(fd, 4096) == 0) {
                void *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (p != MAP_FAILED) counters = p;
            }
            close(fd);
        }
    }
    counters->long_limit = long_limit;
    __atomic_store_n(&counters->magic, MAGIC, __ATOMIC_RELEASE);
}

#define ADD(field, v) __atomic_fetch_add(&counters->field, (v), __ATOMIC_RELAXED)

// Ends the thread's user segment (if it has one) as it enters a call of `kind`.
static inline __attribute__((always_inline)) void enter(int kind) {
    uint64_t now = __rdtsc();
    uint64_t last = last_exit;
    if (last) {
        uint64_t d = now - last;
        if (d < long_limit) {
            ADD(user, d);
            ADD(segments, 1);
            ADD(pair_cycles[last_kind * KINDS + kind], d);
            ADD(pair_segments[last_kind * KINDS + kind], 1);
        } else {
            ADD(long_cycles, d);
            ADD(long_segments, 1);
        }
    }
    ADD(calls, 1);
}

// Starts the thread's next user segment as a call of `kind` returns.
static inline __attribute__((always_inline)) void leave(int kind) {
    last_kind = kind;
    last_exit = __rdtsc();
}

// Each wrapper makes its syscall itself, with an inline `syscall` instruction, instead of
// calling libc's function: a wrapper that called on would put one more frame between the
// program and the kernel, and the program's returns after a syscall would then sit one frame
// deeper. That is not free: a syscall with a long kernel path (a loopback send) overwrites the
// return-stack predictor, and only the few returns nearest the syscall still find their
// entries (a raw mio loop with two more levels of calls around its send pays ~16 ns more per
// message). Replacing libc's wrapper keeps every program's call depth at the syscall as it is
// without the shim. Build with -DUSER_TIME_CALL_LIBC for the old, calling wrappers.
#ifdef USER_TIME_CALL_LIBC
#define WRAP(kind, ret, name, nr, params, args, sysargs)                                   \
    ret name params {                                                                      \
        static __typeof__(name) *real;                                                     \
        if (!real) real = (__typeof__(name) *)dlsym(RTLD_NEXT, #name);                     \
        enter(kind);                                                                       \
        ret r = real args;                                                                 \
        leave(kind);                                                                       \
        return r;                                                                          \
    }
#else
// The kernel's result to libc's convention: -1 with errno set, or the value.
static inline __attribute__((always_inline)) long result(long r) {
    if ((unsigned long)r > -4096ul) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

static inline __attribute__((always_inline)) long raw6(long nr, long a, long b, long c, long d,
                                                       long e, long f) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return r;
}

#define WRAP(kind, ret, name, nr, params, args, sysargs)                                   \
    ret name params {                                                                      \
        enter(kind);                                                                       \
        long r = raw6 sysargs;                                                             \
        leave(kind);                                                                       \
        return (ret)result(r);                                                             \
    }
#endif

#define L(x) ((long)(x))
WRAP(RECEIVE, ssize_t, read, SYS_read, (int fd, void *b, size_t n), (fd, b, n),
     (SYS_read, L(fd), L(b), L(n), 0, 0, 0))
WRAP(RECEIVE, ssize_t, readv, SYS_readv, (int fd, const struct iovec *v, int n), (fd, v, n),
     (SYS_readv, L(fd), L(v), L(n), 0, 0, 0))
WRAP(RECEIVE, ssize_t, recv, SYS_recvfrom, (int fd, void *b, size_t n, int f), (fd, b, n, f),
     (SYS_recvfrom, L(fd), L(b), L(n), L(f), 0, 0))
WRAP(RECEIVE, ssize_t, recvfrom, SYS_recvfrom,
     (int fd, void *b, size_t n, int f, struct sockaddr *a, socklen_t *l), (fd, b, n, f, a, l),
     (SYS_recvfrom, L(fd), L(b), L(n), L(f), L(a), L(l)))
WRAP(RECEIVE, ssize_t, recvmsg, SYS_recvmsg, (int fd, struct msghdr *m, int f), (fd, m, f),
     (SYS_recvmsg, L(fd), L(m), L(f), 0, 0, 0))
WRAP(SEND, ssize_t, write, SYS_write, (int fd, const void *b, size_t n), (fd, b, n),
     (SYS_write, L(fd), L(b), L(n), 0, 0, 0))
WRAP(SEND, ssize_t, writev, SYS_writev, (int fd, const struct iovec *v, int n), (fd, v, n),
     (SYS_writev, L(fd), L(v), L(n), 0, 0, 0))
WRAP(SEND, ssize_t, send, SYS_sendto, (int fd, const void *b, size_t n, int f), (fd, b, n, f),
     (SYS_sendto, L(fd), L(b), L(n), L(f), 0, 0))
WRAP(SEND, ssize_t, sendto, SYS_sendto,
     (int fd, const void *b, size_t n, int f, const struct sockaddr *a, socklen_t l),
     (fd, b, n, f, a, l), (SYS_sendto, L(fd), L(b), L(n), L(f), L(a), L(l)))
WRAP(SEND, ssize_t, sendmsg, SYS_sendmsg, (int fd, const struct msghdr *m, int f), (fd, m, f),
     (SYS_sendmsg, L(fd), L(m), L(f), 0, 0, 0))
WRAP(WAIT, int, epoll_wait, SYS_epoll_wait, (int fd, struct epoll_event *e, int n, int t),
     (fd, e, n, t), (SYS_epoll_wait, L(fd), L(e), L(n), L(t), 0, 0))
// The kernel takes the signal set's size: 8 bytes (64 signals) on Linux.
WRAP(WAIT, int, epoll_pwait, SYS_epoll_pwait,
     (int fd, struct epoll_event *e, int n, int t, const sigset_t *s), (fd, e, n, t, s),
     (SYS_epoll_pwait, L(fd), L(e), L(n), L(t), L(s), 8))
WRAP(WAIT, int, poll, SYS_poll, (struct pollfd *p, nfds_t n, int t), (p, n, t),
     (SYS_poll, L(p), L(n), L(t), 0, 0, 0))
WRAP(OTHER, int, epoll_ctl, SYS_epoll_ctl, (int fd, int op, int f, struct epoll_event *e),
     (fd, op, f, e), (SYS_epoll_ctl, L(fd), L(op), L(f), L(e), 0, 0))
WRAP(OTHER, int, accept4, SYS_accept4, (int fd, struct sockaddr *a, socklen_t *l, int f),
     (fd, a, l, f), (SYS_accept4, L(fd), L(a), L(l), L(f), 0, 0))
WRAP(OTHER, int, close, SYS_close, (int fd), (fd), (SYS_close, L(fd), 0, 0, 0, 0, 0))
WRAP(OTHER, int, nanosleep, SYS_nanosleep, (const struct timespec *a, struct timespec *b), (a, b),
     (SYS_nanosleep, L(a), L(b), 0, 0, 0, 0))
// clock_nanosleep reports an error by returning its number (errno untouched).
int clock_nanosleep(clockid_t c, int f, const struct timespec *a, struct timespec *b) {
#ifdef USER_TIME_CALL_LIBC
    static __typeof__(clock_nanosleep) *real;
    if (!real) real = (__typeof__(clock_nanosleep) *)dlsym(RTLD_NEXT, "clock_nanosleep");
    enter(OTHER);
    int r = real(c, f, a, b);
#else
    enter(OTHER);
    long k = raw6(SYS_clock_nanosleep, L(c), L(f), L(a), L(b), 0, 0);
    int r = k < 0 ? (int)-k : 0;
#endif
    leave(OTHER);
    return r;
}

// Hooks for a program that makes its syscalls with an inline `syscall` instruction, which no
// wrapper can see (cellio built with `--cfg cellio_user_time_hooks`): it calls
// `user_time_enter(kind)` right before the syscall and `user_time_leave(kind)` right after,
// so that, unlike with a wrapper, no frame of the shim is live across the syscall.
void user_time_enter(int kind) {
    if (kind < 0 || kind >= KINDS) kind = OTHER;
    enter(kind);
}

void user_time_leave(int kind) {
    if (kind < 0 || kind >= KINDS) kind = OTHER;
    leave(kind);
}

// `syscall(2)`: variadic; every syscall takes at most six word-sized arguments, and reading
// unused ones is harmless in the x86-64 calling convention (they are registers or stack slots
// of the caller's frame).
long syscall(long nr, ...) {
#ifdef USER_TIME_CALL_LIBC
    static long (*real)(long, ...);
    if (!real) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
#endif
    va_list ap;
    va_start(ap, nr);
    long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
    long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
    va_end(ap);
    int kind = OTHER;
    switch (nr) {
    case SYS_recvfrom: case SYS_read: case SYS_recvmsg: kind = RECEIVE; break;
    case SYS_sendto: case SYS_write: case SYS_sendmsg: kind = SEND; break;
    case SYS_epoll_pwait2: case SYS_epoll_wait: case SYS_epoll_pwait: kind = WAIT; break;
    }
    enter(kind);
#ifdef USER_TIME_CALL_LIBC
    long r = real(nr, a, b, c, d, e, f);
#else
    long r = result(raw6(nr, a, b, c, d, e, f));
#endif
    leave(kind);
    return r;
}
