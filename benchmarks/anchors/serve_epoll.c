/* The floor for benchmarks/serve.py's small-file case: a minimal HTTP/1.1 server in C,
 * one thread, level-triggered epoll, the file's bytes and its response head kept in
 * memory, each response one sendmsg of head and body.  Built on the spot with
 * `gcc -O2`.
 *
 *   serve_epoll PORT FILE
 *
 * It answers every complete request head (up to an empty line) on a connection with
 * 200 and FILE's bytes as read at start, whatever the method and target: no routing,
 * no stat, no validation, no limits, no timeouts.  Not a server: the cost of the
 * system calls a server cannot avoid (epoll_wait, recv, sendmsg) and little more.  The
 * Date field is made once a second, as servers do.  A write the socket cannot take
 * whole closes the connection (wrk on loopback, 1 KiB, never hits it).  Prints
 * "ready" once listening; runs until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 65536

static unsigned char state[MAX_FDS]; /* bytes of "\r\n\r\n" matched so far, per fd */

static void die(const char *what) {
    perror(what);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: serve_epoll PORT FILE\n");
        return 1;
    }
    int port = atoi(argv[1]);
    int file = open(argv[2], O_RDONLY);
    struct stat st;
    if (file < 0 || fstat(file, &st) < 0) die("open");
    char *body = malloc(st.st_size + 1);
    if (body == NULL || read(file, body, st.st_size) != st.st_size) die("read");
    close(file);

    int lsock = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lsock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lsock, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lsock, 1024) < 0) die("listen");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lsock};
    epoll_ctl(ep, EPOLL_CTL_ADD, lsock, &ev);
    printf("ready\n");
    fflush(stdout);

    char head[512], buf[65536];
    int head_len = 0;
    time_t head_second = -1;
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(ep, events, 512, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        time_t now = time(NULL);
        if (now != head_second) {
            char date[64];
            struct tm tm;
            gmtime_r(&now, &tm);
            strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
            head_len = snprintf(head, sizeof head,
                                "HTTP/1.1 200 OK\r\nServer: anchor\r\nDate: %s\r\n"
                                "Content-Type: application/octet-stream\r\n"
                                "Content-Length: %lld\r\n\r\n",
                                date, (long long)st.st_size);
            head_second = now;
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lsock) {
                int c;
                while ((c = accept4(lsock, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAX_FDS) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    state[c] = 0;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            ssize_t got = recv(fd, buf, sizeof buf, 0);
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (got <= 0) {
                close(fd);
                continue;
            }
            int complete = 0, s = state[fd];
            for (ssize_t k = 0; k < got; k++) { /* count the ends of request heads */
                char want = (s & 1) ? '\n' : '\r';
                if (buf[k] == want) {
                    if (++s == 4) {
                        complete++;
                        s = 0;
                    }
                } else {
                    s = buf[k] == '\r' ? 1 : 0;
                }
            }
            state[fd] = s;
            for (; complete > 0; complete--) {
                struct iovec iov[2] = {{head, head_len}, {body, st.st_size}};
                struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
                if (sendmsg(fd, &msg, MSG_NOSIGNAL) != head_len + st.st_size) {
                    close(fd);
                    break;
                }
            }
        }
    }
}
