// The user-time shim's floor: a loop that does nothing between its syscalls but count.
// Under user_time.so, its user time per segment is what the wrappers and the TSC reads add
// to every segment of every server (a few ns), measured rather than guessed.
//
//     user_time_floor N: N receives on an empty non-blocking socket (each fails with EAGAIN)
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
        perror("socketpair");
        return 2;
    }
    char byte;
    for (long i = 0; i < n; i++) {
        if (recv(sv[0], &byte, 1, 0) >= 0 || errno != EAGAIN) {
            fprintf(stderr, "user_time_floor: a receive on an empty socket did not say EAGAIN\n");
            return 2;
        }
    }
    return 0;
}
