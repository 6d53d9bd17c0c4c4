"""Accepting clients, and what the server does when descriptors run out.

A mixin of the loop (``zcio.serve._server.Loop``): accept in batches, pause accepting
at ``max_connections`` when no keep-alive connection is idle, and, out of file
descriptors (EMFILE, ENFILE), close idle keep-alive connections oldest first and answer
a client the listener cannot accept with 503 on a descriptor kept in reserve.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket

from .. import _syscalls
from ._conn import IN, Conn, Timeouts
from ._http import Limits

__all__ = ["Accepting"]

_log = logging.getLogger("zcio.serve")

_ACCEPT_BATCH = 64


class Accepting:
    """The loop's accepting half; the loop provides the state annotated here."""

    listener: socket.socket | None
    limits: Limits
    timeouts: Timeouts
    max_connections: int
    _conns: dict[int, Conn]
    _ep: select.epoll
    _view: memoryview
    _now: float
    _date: bytes
    _draining: bool
    _accepting: bool
    _fd_episode: int
    _fd_short_at: float
    _reserve: int

    def _close(self, conn: Conn) -> None:
        raise NotImplementedError  # the loop's


    def _pause_accepting(self) -> None:
        if self._accepting and self.listener is not None:
            self._ep.unregister(self.listener.fileno())
            self._accepting = False

    def _resume_accepting(self) -> None:
        if not self._accepting and not self._draining and self.listener is not None:
            self._ep.register(self.listener.fileno(), IN)
            self._accepting = True

    def _accept(self, batch: int = _ACCEPT_BATCH) -> None:
        listener, conns = self.listener, self._conns
        if listener is None:
            return
        for _ in range(batch):
            victim = None
            if len(conns) >= self.max_connections:
                victim = self._oldest_idle()
                if victim is None:
                    self._pause_accepting()
                    return
            try:
                sock, addr = _syscalls.SYS.accept(listener)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    if self._make_room(e) or self._refuse_one(listener):
                        continue
                    self._pause_accepting()  # resumed by the next sweep
                    return
                if e.errno in (errno.ENOBUFS, errno.ENOMEM):
                    _log.warning("zcio serve: accept: %s; pausing", e.strerror)
                    self._pause_accepting()  # resumed by the next sweep
                    return
                continue  # ECONNABORTED and friends: that client is gone

            if victim is not None:  # make room only for a connection that came
                self._close(victim)
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(sock, addr[0] if isinstance(addr, tuple) else "-", self.limits)
            conn.deadline = self._now + self.timeouts.idle
            conns[conn.fd] = conn
            self._ep.register(conn.fd, IN)

    def _make_room(self, error: OSError) -> bool:
        """Out of descriptors: close idle keep-alive connections (up to half of them,
        at least one, oldest first); whether any was closed.  Logs once an episode.
        A connection that has not had a response yet is not closed: its request may be
        on its way, and closing over unread input resets it, losing the request."""
        self._fd_short_at = self._now
        if not self._fd_episode:
            _log.warning("zcio serve: out of file descriptors (%s, %d connections); "
                         "closing idle ones, answering 503 meanwhile", error.strerror,
                         len(self._conns))
        idle = sorted((c for c in self._conns.values() if c.served and self._is_idle(c)),
                      key=lambda c: c.deadline)
        victims = idle[: max(1, len(idle) // 2)]
        for conn in victims:
            self._close(conn)
        self._fd_episode += len(victims)
        return bool(victims)

    def _refuse_one(self, listener: socket.socket) -> bool:
        """Accept one client on the reserve descriptor, answer 503 and close it, so it
        learns to retry instead of waiting in the accept queue; whether one was."""
        if self._reserve < 0:
            return False
        os.close(self._reserve)
        self._reserve = -1
        try:
            try:
                sock, _ = _syscalls.SYS.accept(listener)
            except OSError:
                return False
            with sock:
                self._fd_episode += 1
                body = b"503 Service Unavailable\n"
                with contextlib.suppress(OSError):
                    # The request is read and dropped (waiting a millisecond at most
                    # for it): closing with unread input would reset the connection,
                    # and the client would lose the answer.
                    sock.settimeout(0.001)
                    with contextlib.suppress(TimeoutError):
                        _syscalls.SYS.recv_into(sock, self._view)
                    sock.setblocking(False)
                    _syscalls.SYS.send(
                        sock, b"HTTP/1.1 503 Service Unavailable\r\nServer: zcio\r\nDate: "
                        + self._date + b"\r\nRetry-After: 1\r\nContent-Type: "
                        b"text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
                        b"Connection: close\r\n\r\n%s" % (len(body), body))
                    _syscalls.SYS.shutdown(sock, socket.SHUT_WR)
            return True
        finally:
            with contextlib.suppress(OSError):
                self._reserve = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)

    def _is_idle(self, conn: Conn) -> bool:
        """Waiting for a next request, with nothing in flight."""
        return (conn.events == IN and conn.started is None and not conn.out
                and conn.body is None and conn.pending is None)

    def _oldest_idle(self) -> Conn | None:
        """The connection idle the longest (waiting for a next request), if any."""
        oldest: Conn | None = None
        for conn in self._conns.values():
            if self._is_idle(conn) and (oldest is None or conn.deadline < oldest.deadline):
                oldest = conn
        return oldest
