/* The floor for benchmarks/pool.py's gather write: the same 64 x 128 B in C, as one
 * writev of 64 iovecs against a memcpy of the parts into one block and one write.
 * Built with `gcc -O2` by hand:
 *
 *   gcc -O2 -o /tmp/gather benchmarks/anchors/gather.c && /tmp/gather
 *
 * A TCP loopback connection (TCP_NODELAY), 64 separately allocated parts; each timed
 * loop makes 8 writes of the 8 KiB, each drained at once by the other end in the same
 * thread (as pool.py does).  Prints the median of 400 loops per write, five times,
 * alternating the two ways.  What it shows on a given kernel: whether a true gather of
 * many short parts can beat copying them together (no Python involved).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PARTS 64
#define PART 128
#define TOTAL (PARTS * PART)
#define WRITES 8
#define LOOPS 400

static double
now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int
main(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &al))
        return perror("listen"), 1;
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (void *)&a, sizeof a))
        return perror("connect"), 1;
    int p = accept(l, NULL, NULL);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char *parts[PARTS], *joined = malloc(TOTAL), *sink = malloc(TOTAL);
    struct iovec iov[PARTS];
    for (int i = 0; i < PARTS; i++) {
        parts[i] = malloc(PART);
        memset(parts[i], i, PART);
        iov[i].iov_base = parts[i];
        iov[i].iov_len = PART;
    }
    static double t[LOOPS];
    for (int rep = 0; rep < 5; rep++) {
        for (int mode = 0; mode < 2; mode++) {
            for (int r = 0; r < LOOPS; r++) {
                double t0 = now_ns();
                for (int k = 0; k < WRITES; k++) {
                    ssize_t n;
                    if (mode == 0) {
                        n = writev(c, iov, PARTS);
                    } else {
                        for (int i = 0; i < PARTS; i++)
                            memcpy(joined + i * PART, parts[i], PART);
                        n = write(c, joined, TOTAL);
                    }
                    if (n != TOTAL)
                        return fprintf(stderr, "short write: %zd\n", n), 1;
                    for (ssize_t got = 0; got < TOTAL; got += n)
                        if ((n = read(p, sink + got, TOTAL - got)) <= 0)
                            return perror("read"), 1;
                }
                t[r] = (now_ns() - t0) / WRITES;
            }
            qsort(t, LOOPS, sizeof t[0], cmp);
            printf("%s %.0f ns   ", mode ? "memcpy+write" : "writev(64)", t[LOOPS / 2]);
        }
        printf("\n");
    }
    return 0;
}
