/* File-to-socket anchor loops for benchmarks/transfer.py, built on the spot with
 * `gcc -O2`.
 *
 *   send_loop MODE FILE PORT CHUNK [PIPE_SIZE]
 *
 * MODE sendfile: sendfile(sock, file, &off, CHUNK) until the end (CHUNK 0 = the rest
 *                of the file in each call, capped by the kernel at 0x7ffff000)
 *      rw:       read(file, buf, CHUNK) then write() all of it to the socket
 *      splice:   splice(file -> pipe, CHUNK), then splice(pipe -> socket) until the
 *                pipe is empty; the pipe is enlarged to PIPE_SIZE with F_SETPIPE_SZ
 *                (0 = leave it at the default 64 KiB).  Flags: SPLICE_F_MOVE, as zcio.
 *
 * Protocol with the harness: connect to 127.0.0.1:PORT, open the file, then print
 * "ready", wait for one byte on stdin ("go"), move the whole file, close the socket
 * and print "done BYTES CPU_SECONDS VOLUNTARY INVOLUNTARY info" where CPU and the
 * context switches are getrusage(RUSAGE_SELF) deltas from before "ready" to after
 * the close.  Any failure: a message on stderr and exit status 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_RW 0x7ffff000L

static void die(const char *what) {
    fprintf(stderr, "send_loop: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double seconds(struct timeval tv) { return tv.tv_sec + tv.tv_usec / 1e6; }

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            die("write");
        }
        p += k;
        n -= (size_t)k;
    }
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: send_loop sendfile|rw|splice FILE PORT CHUNK [PIPE_SIZE]\n");
        return 2;
    }
    const char *mode = argv[1];
    long chunk = atol(argv[4]);
    long pipe_size = argc > 5 ? atol(argv[5]) : 0;
    if (chunk <= 0 || chunk > MAX_RW) chunk = MAX_RW;

    int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open");
    struct stat st;
    if (fstat(fd, &st) < 0) die("fstat");
    off_t size = st.st_size;

    int sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0) die("socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");

    char *buf = NULL;
    int p[2] = {-1, -1};
    long pipe_cap = 0;
    if (strcmp(mode, "rw") == 0) {
        if (posix_memalign((void **)&buf, 4096, (size_t)chunk) != 0) die("posix_memalign");
        memset(buf, 0, (size_t)chunk);  /* fault the buffer in before the clock starts */
    } else if (strcmp(mode, "splice") == 0) {
        if (pipe2(p, O_CLOEXEC) < 0) die("pipe2");
        if (pipe_size > 0 && fcntl(p[1], F_SETPIPE_SZ, (int)pipe_size) < 0) die("F_SETPIPE_SZ");
        pipe_cap = fcntl(p[1], F_GETPIPE_SZ);
        if (pipe_cap < 0) die("F_GETPIPE_SZ");
    } else if (strcmp(mode, "sendfile") != 0) {
        fprintf(stderr, "send_loop: unknown mode %s\n", mode);
        return 2;
    }

    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    printf("ready\n");
    fflush(stdout);
    char go;
    if (read(0, &go, 1) != 1) die("read go");

    long long moved = 0, calls = 0;
    if (strcmp(mode, "sendfile") == 0) {
        off_t off = 0;
        while (off < size) {
            long want = size - off < chunk ? (long)(size - off) : chunk;
            ssize_t n = sendfile(sock, fd, &off, (size_t)want);
            calls++;
            if (n < 0) {
                if (errno == EINTR) continue;
                die("sendfile");
            }
            if (n == 0) break;
            moved += n;
        }
    } else if (strcmp(mode, "rw") == 0) {
        for (;;) {
            ssize_t n = read(fd, buf, (size_t)chunk);
            calls++;
            if (n < 0) {
                if (errno == EINTR) continue;
                die("read");
            }
            if (n == 0) break;
            write_all(sock, buf, (size_t)n);
            moved += n;
        }
    } else {
        loff_t off = 0;
        long step = chunk < pipe_cap ? chunk : pipe_cap;
        while (off < size) {
            long want = size - off < step ? (long)(size - off) : step;
            ssize_t n = splice(fd, &off, p[1], NULL, (size_t)want, SPLICE_F_MOVE);
            calls++;
            if (n < 0) {
                if (errno == EINTR) continue;
                die("splice in");
            }
            if (n == 0) break;
            while (n > 0) {
                ssize_t k = splice(p[0], NULL, sock, NULL, (size_t)n, SPLICE_F_MOVE);
                calls++;
                if (k < 0) {
                    if (errno == EINTR) continue;
                    die("splice out");
                }
                n -= k;
                moved += k;
            }
        }
    }
    if (close(sock) < 0) die("close");
    getrusage(RUSAGE_SELF, &r1);
    double cpu = seconds(r1.ru_utime) - seconds(r0.ru_utime) + seconds(r1.ru_stime) -
                 seconds(r0.ru_stime);
    printf("done %lld %.6f %ld %ld calls=%lld,pipe=%ld\n", moved, cpu, r1.ru_nvcsw - r0.ru_nvcsw,
           r1.ru_nivcsw - r0.ru_nivcsw, calls, pipe_cap);
    fflush(stdout);
    return 0;
}
