/* The floor for benchmarks/share.py's zero-copy cases: the same hand-off in C, by
 * descriptor passing and by a POSIX shared memory name.  Built with `gcc -O2` by hand:
 *
 *   gcc -O2 -o /tmp/handoff benchmarks/anchors/handoff.c && /tmp/handoff fd 2000
 *   /tmp/handoff shm 2000        (taskset -c 0 before either: both processes on one CPU)
 *
 * A 256 MiB memfd (sealed against shrinking and growing, as ByteBuffer.allocate_shared
 * makes it) or shm_open block, mapped in the parent as zcio and shared_memory map it;
 * one child.  Per hand-off: the parent sends the 48-byte header with the descriptor
 * (SCM_RIGHTS), or the name; the child receives it (recvmsg with MSG_CMSG_CLOEXEC and
 * F_GET_SEALS, or shm_open), fstats, maps the block, reads its first and last byte,
 * unmaps and closes it, and answers one byte.  Prints the mean wall time per hand-off
 * seen by the parent.  No checks beyond what the work needs: the cost of the system
 * calls and the two wake-ups, nothing of Python.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIZE (256UL << 20)

static double
now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void
die(const char *what)
{
    perror(what);
    exit(1);
}

/* The child: take n hand-offs on sock. */
static void
child(int sock, int by_fd, int n)
{
    long sum = 0;
    for (int i = 0; i < n; i++) {
        char head[64];
        int fd;
        if (by_fd) {
            char cbuf[CMSG_SPACE(sizeof(int) * 4)];
            struct iovec iov = {head, 48};
            struct msghdr m = {0};
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            m.msg_control = cbuf;
            m.msg_controllen = sizeof cbuf;
            if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 48 || CMSG_FIRSTHDR(&m) == NULL)
                die("recvmsg");
            memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
            if (fcntl(fd, F_GET_SEALS) < 0)
                die("F_GET_SEALS");
        } else {
            ssize_t k = recv(sock, head, sizeof head - 1, 0);
            if (k <= 0)
                die("recv");
            head[k] = 0;
            if ((fd = shm_open(head, O_RDWR | O_CLOEXEC, 0)) < 0)
                die("shm_open");
        }
        struct stat st;
        if (fstat(fd, &st) < 0 || (size_t)st.st_size < SIZE)
            die("fstat");
        char *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            die("mmap");
        sum += p[0] + p[SIZE - 1];
        munmap(p, SIZE);
        close(fd);
        if (send(sock, "k", 1, 0) != 1)
            die("send");
    }
    _exit(sum == 1); /* the bytes are zero: 0 */
}

int
main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "fd") != 0 && strcmp(argv[1], "shm") != 0)) {
        fprintf(stderr, "usage: handoff fd|shm N\n");
        return 2;
    }
    int by_fd = argv[1][0] == 'f', n = atoi(argv[2]), sv[2], block;
    char name[64];
    snprintf(name, sizeof name, "/zcio-handoff-%d", (int)getpid());
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair");
    block = by_fd ? memfd_create("zcio-handoff", MFD_CLOEXEC | MFD_ALLOW_SEALING)
                  : shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (block < 0 || ftruncate(block, SIZE) < 0)
        die("block");
    if (by_fd && fcntl(block, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
        die("F_ADD_SEALS");
    if (mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, block, 0) == MAP_FAILED)
        die("mmap");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        close(sv[0]);
        child(sv[1], by_fd, n);
    }
    close(sv[1]);
    double t0 = now_ns();
    for (int i = 0; i < n; i++) {
        if (by_fd) {
            char cbuf[CMSG_SPACE(sizeof(int))], head[48] = "zcioSHM";
            memset(cbuf, 0, sizeof cbuf);
            struct iovec iov = {head, sizeof head};
            struct msghdr m = {0};
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            m.msg_control = cbuf;
            m.msg_controllen = sizeof cbuf;
            struct cmsghdr *c = CMSG_FIRSTHDR(&m);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &block, sizeof block);
            if (sendmsg(sv[0], &m, 0) != 48)
                die("sendmsg");
        } else if (send(sv[0], name, strlen(name), 0) < 0) {
            die("send");
        }
        char k;
        if (recv(sv[0], &k, 1, 0) != 1)
            die("recv");
    }
    double elapsed = now_ns() - t0;
    int status;
    waitpid(pid, &status, 0);
    if (!by_fd)
        shm_unlink(name);
    printf("%s: %.1f us per hand-off (%d hand-offs)\n", argv[1], elapsed / n / 1000, n);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
