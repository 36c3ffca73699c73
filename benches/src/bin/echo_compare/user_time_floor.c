// The user-time shim's floor: a loop that does nothing between its syscalls but count.
// Under user_time.so, its user time per segment is what the shim and the TSC reads add to
// every segment of every server (a few ns), measured rather than guessed.
//
//     user_time_floor N          N calls through libc's `write` and `read`, which the shim
//                                replaces
//     user_time_floor N hooks    N inline `syscall` instructions bracketed by the shim's
//                                user_time_enter/user_time_leave hooks, as in a cellio build
//                                with `--cfg cellio_user_time_hooks`
//
// The calls alternate: a one-byte write into a socket pair, then a one-byte read of it back.
// Both succeed, as a busy server's calls do (a failing call would add the errno handling to
// the floor, which a server's successful calls do not pay).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static long raw3(long nr, long fd, void *b, long n) {
    register long r10 __asm__("r10") = 0;
    register long r8 __asm__("r8") = 0;
    register long r9 __asm__("r9") = 0;
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(nr), "D"(fd), "S"(b), "d"(n), "r"(r10), "r"(r8),
                       "r"(r9)
                     : "rcx", "r11", "memory");
    return r;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    int hooks = argc > 2 && strcmp(argv[2], "hooks") == 0;
    void (*enter)(int) = 0, (*leave)(int) = 0;
    if (hooks) {
        enter = (void (*)(int))dlsym(RTLD_DEFAULT, "user_time_enter");
        leave = (void (*)(int))dlsym(RTLD_DEFAULT, "user_time_leave");
        if (!enter || !leave) {
            fprintf(stderr, "user_time_floor: the shim's hooks are not loaded\n");
            return 2;
        }
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
        perror("socketpair");
        return 2;
    }
    char byte = 'x';
    for (long i = 0; i < n; i += 2) {
        long w, r;
        if (hooks) {
            enter(1);
            w = raw3(SYS_write, sv[1], &byte, 1);
            leave(1);
            enter(0);
            r = raw3(SYS_read, sv[0], &byte, 1);
            leave(0);
        } else {
            w = write(sv[1], &byte, 1);
            r = read(sv[0], &byte, 1);
        }
        if (w != 1 || r != 1) {
            fprintf(stderr, "user_time_floor: a one-byte write or read on a socket pair failed\n");
            return 2;
        }
    }
    return 0;
}
