"""The I/O loop of one worker: epoll, non-blocking sockets, sendfile.

One thread, one ``epoll`` (level-triggered), every socket non-blocking.  For each
connection the loop reads into one shared buffer, feeds the sans-IO core
(``_http.ServerConnection``), asks the :class:`~zcio.serve._respond.Responder` for each
complete request's response in order, and writes:

* a head and an in-memory body (a cached small file, an error page, a listing) go out
  together in one gather write (``sendmsg``), several pipelined responses in one call;
* a file body goes out by the transfer engine's ladder for a file and a socket,
  built once per response (``zcio._rungs.Ladder``: sendfile, then mmap_write, then
  read_write where the file system refuses sendfile), stepped once per turn: each
  step one ``sendfile`` through ``_syscalls.SYS`` (faults can be injected), counted
  by the engine in ``zcio.metrics`` (one operation per body, its bytes as kernel
  bytes).  The head goes first with ``MSG_MORE`` so the kernel holds it for the
  file's first bytes: no small segment goes out alone to wait for a delayed ACK
  (sockets have ``TCP_NODELAY``).  A partial send resumes when the socket is
  writable.  No loopback probe: the server always prefers sendfile.  Exactly the
  announced ``Content-Length`` goes out, whatever happens to the file meanwhile: a file
  that grows (a log being appended) or is touched still completes, as with nginx; one
  that shrinks below the announced length ends the body early (sendfile returns 0),
  and the connection is closed, so the client sees the short body; the server goes on.

Fairness: no connection holds the loop for long.  Reading (and so parsing) stops while
responses wait unsent (backpressure: a client that does not read cannot make the server
buffer more); responses are made only while less than 64 KiB waits to go out on that
connection; one connection gets at most 16 responses per turn of the loop, then waits
for the next turn on a ready list, behind every other connection.  A response that
takes long to make (a listing of a large directory, see ``_listing``) is made a slice
of about a millisecond per turn; if the client goes meanwhile, the work is dropped.
Socket reads and writes are counted in ``zcio.metrics`` as ``socket_read`` and
``socket_write``; every socket call (accept, recv, send, sendmsg, shutdown) goes through
``zcio._syscalls.SYS``.

Out of file descriptors (EMFILE, ENFILE), in ``accept`` or when a request opens its file:
idle keep-alive connections are closed first, oldest first; a request that still
cannot open its file gets 503 with ``Retry-After: 1`` (see ``_respond``); a client the
listener cannot accept is accepted on a descriptor kept in reserve for this, answered
503 and closed, so it does not starve in the accept queue.  One warning is logged when
such an episode begins, one line when it ends (a second without running out).

Timeouts (checked a few times a second): ``idle`` between requests, ``request`` from a
request's first byte to its last (slowloris), ``send`` without write progress (a
client that stops reading).  At ``max_connections`` the longest-idle keep-alive
connection is closed to make room; if none is idle, accepting pauses until one closes.

:meth:`Loop.request_stop` (thread- and signal-safe) starts a graceful stop: accept what
is already queued, close the listener, close idle connections, answer what is in
flight with ``Connection: close``, and return when no connection is left (or after
``shutdown`` seconds).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from email.utils import formatdate

from .. import _syscalls
from .._endpoint import FILE, SOCKET, End
from .._metrics import metrics
from .._rungs import Ladder, Lost
from .._transfer import default_ladder
from ._access_log import AccessLog, request_line
from ._http import (
    CONTINUE,
    CONTINUE_LINE,
    NEED_DATA,
    Limits,
    Request,
    RequestError,
    ServerConnection,
)
from ._respond import Responder, Response

__all__ = ["Timeouts", "Loop"]

_log = logging.getLogger("zcio.serve")

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_RECV_SIZE = 65536
_TURN_RESPONSES = 16  # responses one connection may make per turn of the loop
_OUT_CAP = 64 << 10  # make no further response while this much waits to go out
_SLICE = 0.001  # seconds of slow work (a listing) per connection per turn
_FD_QUIET = 1.0  # seconds without running out of descriptors that end an episode
_ACCEPT_BATCH = 64
_LADDER = default_ladder(FILE, SOCKET)[0]  # sendfile, mmap_write, read_write


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each phase of a connection (see the module docstring)."""

    idle: float = 15.0
    request: float = 10.0
    send: float = 30.0
    shutdown: float = 10.0


class _Body:
    """A file body in flight: its descriptor (owned), what is left, and the engine's
    ladder over it (sendfile, then mmap_write, then read_write), built once per
    response: no per-step classification, no loopback probe (a server always uses
    sendfile where the file system allows it)."""

    __slots__ = ("fd", "path", "remaining", "src", "ladder")

    def __init__(self, response: Response, sock: socket.socket, fd: int) -> None:
        self.fd = response.fd
        self.path = response.path
        self.remaining = response.count
        self.src = End(None, self.fd, FILE, response.offset)
        self.ladder = Ladder(self.src, End(sock, fd, SOCKET), _LADDER, nonblocking=True)
        metrics.record(self.ladder.path, syscalls=0)  # one operation per body

    @property
    def offset(self) -> int:
        """The file offset of the next byte to send."""
        assert self.src.offset is not None
        return self.src.offset

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        self.ladder.close()
        if fd >= 0:
            os.close(fd)

    def send(self) -> int:
        """One step of the engine: what reached the socket; 0 when the file ends before
        ``offset``; -1 when the socket has no room.

        Syscalls: sendfile (or, where the file system refuses it, mmap+write, then
        pread+write), at most ``remaining`` bytes; ``offset`` and ``remaining`` move by
        what was sent.  An error: OSError, nothing more is sent.
        """
        try:
            n = self.ladder.try_step(self.remaining)
        except Lost as e:
            raise e.error from e
        if n > 0:
            self.remaining -= n
        return n


class _Conn:
    __slots__ = ("sock", "fd", "peer", "proto", "out", "body", "closing", "events",
                 "deadline", "started", "pending", "pending_line", "ready", "served")

    def __init__(self, sock: socket.socket, peer: str, limits: Limits) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.proto = ServerConnection(limits)
        self.out: deque[bytes | memoryview] = deque()
        self.body: _Body | None = None
        self.closing = False
        self.events = _IN
        self.deadline = 0.0
        self.started: float | None = None  # when the request being read began
        #: A response being made a slice per turn (Response.later), for request line...
        self.pending: Generator[None, None, Response] | None = None
        self.pending_line = ""
        self.ready = False  # on the loop's ready list: driven next turn, events off
        self.served = False  # a response was made: idle now means kept alive


class Loop:
    """One worker's event loop over a listening socket (see the module docstring)."""

    def __init__(self, listener: socket.socket, responder: Responder, *,
                 limits: Limits | None = None, timeouts: Timeouts | None = None,
                 max_connections: int = 4096, access_log: AccessLog | None = None) -> None:
        self.listener: socket.socket | None = listener
        self.responder = responder
        self.limits = limits or Limits()
        self.timeouts = timeouts or Timeouts()
        self.max_connections = max_connections
        self.access_log = access_log
        self.requests = 0  # responses queued since start
        self._conns: dict[int, _Conn] = {}
        self._ready: deque[_Conn] = deque()
        self._ep = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._buf = bytearray(_RECV_SIZE)
        self._view = memoryview(self._buf)
        self._now = time.monotonic()
        self._date = b""
        self._date_second = -1
        self._draining = False
        self._drain_deadline = 0.0
        self._accepting = False
        self._fd_episode = 0  # connections refused or closed for want of descriptors
        self._fd_short_at = 0.0  # when descriptors last ran out
        self._reserve = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        ticks = [t for t in (self.timeouts.idle, self.timeouts.request, self.timeouts.send)
                 if t > 0]
        self._tick = min(1.0, max(0.02, min(ticks, default=1.0) / 4))

    # -- control -----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful stop; safe from any thread and from a signal handler."""
        with contextlib.suppress(OSError):  # closed: the loop is over already
            os.eventfd_write(self._wake, 1)

    @property
    def connections(self) -> int:
        return len(self._conns)

    def close(self) -> None:
        """Close every connection, the wake-up descriptor and epoll (not the listener)."""
        for conn in list(self._conns.values()):
            self._close(conn)
        if self._reserve >= 0:
            reserve, self._reserve = self._reserve, -1
            os.close(reserve)
        if self._wake >= 0:
            wake, self._wake = self._wake, -1
            os.close(wake)
        self._ep.close()
        self._view.release()

    def run(self) -> None:
        """Serve until a graceful stop completes."""
        ep, conns = self._ep, self._conns
        listener = self.listener
        assert listener is not None
        listen_fd, wake_fd = listener.fileno(), self._wake
        ep.register(listen_fd, _IN)
        self._accepting = True
        ep.register(wake_fd, _IN)
        read, drive, log = self._read, self._drive, self.access_log
        next_sweep = time.monotonic() + self._tick
        self._update_date()
        while True:
            events = ep.poll(0.0 if self._ready else max(next_sweep - self._now, 0.0))
            self._now = now = time.monotonic()
            if int(time.time()) != self._date_second:
                self._update_date()
            for fd, _ in events:
                conn = conns.get(fd)
                if conn is not None:
                    if conn.events == _OUT:
                        self._guarded(drive, conn)
                    elif conn.events == _IN:
                        self._guarded(read, conn)
                    # else: on the ready list (a hang-up shows when it is driven)
                elif fd == listen_fd and self._accepting:
                    self._accept()
                elif fd == wake_fd:
                    self._begin_drain()
            if self._ready:
                self._run_ready()
            if now >= next_sweep:
                self._sweep()
                next_sweep = now + self._tick
            if log is not None:
                log = self._flush_log(log)
            if self._draining and (not conns or now >= self._drain_deadline):
                break
        for conn in list(conns.values()):
            self._close(conn)
        if log is not None:
            self._flush_log(log)

    def _guarded(self, step: Callable[[_Conn], None], conn: _Conn) -> None:
        try:
            step(conn)
        except Exception:  # never let one connection stop the server
            _log.exception("zcio serve: connection from %s failed", conn.peer)
            self._close(conn)

    def _run_ready(self) -> None:
        """Drive each connection that was on the ready list when this turn began."""
        ready, conns = self._ready, self._conns
        for _ in range(len(ready)):
            conn = ready.popleft()
            conn.ready = False
            if conns.get(conn.fd) is conn:
                self._guarded(self._drive, conn)

    def _later(self, conn: _Conn) -> None:
        """Stop reading ``conn`` and drive it again next turn, after the others."""
        if not conn.ready:
            conn.ready = True
            self._ready.append(conn)
        conn.deadline = self._now + self.timeouts.send
        self._set_events(conn, 0)

    def _set_events(self, conn: _Conn, events: int) -> None:
        if conn.events != events:
            self._ep.modify(conn.fd, events)
            conn.events = events

    def _flush_log(self, log: AccessLog) -> AccessLog | None:
        """Write the access log; a log that cannot be written is dropped, not fatal."""
        try:
            log.flush()
        except (OSError, ValueError) as e:
            _log.error("zcio serve: access log failed (%s); logging stops", e)
            self.access_log = None
            return None
        return log

    def _update_date(self) -> None:
        now = time.time()
        self._date_second = int(now)
        self._date = formatdate(int(now), usegmt=True).encode()

    # -- accepting -----------------------------------------------------------------------

    def _pause_accepting(self) -> None:
        if self._accepting and self.listener is not None:
            self._ep.unregister(self.listener.fileno())
            self._accepting = False

    def _resume_accepting(self) -> None:
        if not self._accepting and not self._draining and self.listener is not None:
            self._ep.register(self.listener.fileno(), _IN)
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
            conn = _Conn(sock, addr[0] if isinstance(addr, tuple) else "-", self.limits)
            conn.deadline = self._now + self.timeouts.idle
            conns[conn.fd] = conn
            self._ep.register(conn.fd, _IN)

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

    def _is_idle(self, conn: _Conn) -> bool:
        """Waiting for a next request, with nothing in flight."""
        return (conn.events == _IN and conn.started is None and not conn.out
                and conn.body is None and conn.pending is None)

    def _oldest_idle(self) -> _Conn | None:
        """The connection idle the longest (waiting for a next request), if any."""
        oldest: _Conn | None = None
        for conn in self._conns.values():
            if self._is_idle(conn) and (oldest is None or conn.deadline < oldest.deadline):
                oldest = conn
        return oldest

    # -- reading and responding -------------------------------------------------------

    def _read(self, conn: _Conn) -> None:
        try:
            n = _syscalls.SYS.recv_into(conn.sock, self._view)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        metrics.record("socket_read", user_bytes=n)
        if n:
            conn.proto.receive_data(self._view[:n])
        else:
            conn.proto.receive_data(b"")
        self._drive(conn)

    def _drive(self, conn: _Conn) -> None:
        """Write what is queued, make the next responses, until blocked, idle or out of
        this turn's share (then the connection waits on the ready list)."""
        budget = _TURN_RESPONSES
        while True:
            if (conn.out or conn.body is not None) and not self._write(conn):
                return
            if conn.closing:
                self._close(conn)
                return
            if conn.pending is not None:
                if not self._advance_pending(conn):
                    self._later(conn)
                    return
                continue
            if budget <= 0:
                self._later(conn)
                return
            made = self._produce(conn, budget)
            if not made:
                if conn.closing:
                    self._close(conn)
                    return
                break
            budget -= made
        # Nothing to write: wait for (the rest of) a request.
        if conn.proto.in_request:
            if conn.started is None:
                conn.started = self._now
            conn.deadline = conn.started + self.timeouts.request
        elif self._draining:
            self._close(conn)
            return
        else:
            conn.started = None
            conn.deadline = self._now + self.timeouts.idle
        self._set_events(conn, _IN)

    def _produce(self, conn: _Conn, budget: int) -> int:
        """Make responses for the requests parsed so far, at most ``budget``, while
        less than _OUT_CAP waits to go out; how many were made."""
        proto, out, responder = conn.proto, conn.out, self.responder
        made = 0
        while (made < budget and conn.body is None and conn.pending is None
               and not conn.closing and sum(map(len, out)) < _OUT_CAP):
            event = proto.next_event()
            if isinstance(event, Request):
                keep_alive = event.keep_alive and not self._draining
                line = request_line(event.method, event.target, event.version)
                try:
                    response = responder.respond(event, self._date, keep_alive)
                except Exception:
                    _log.exception("zcio serve: %r failed", event)
                    response = responder.error(500, self._date, False)
            elif isinstance(event, RequestError):
                line = "-"
                response = responder.error(event.status, self._date, False)
            elif event is CONTINUE:  # the client waits for this before its body
                out.append(CONTINUE_LINE)
                made += 1
                continue
            elif event is NEED_DATA:
                break
            else:  # CLOSED: the peer is done and so is every request
                conn.closing = True
                break
            self.requests += 1
            made += 1
            if responder.out_of_fds:  # the 503 is made; make room for the next ones
                responder.out_of_fds = False
                self._make_room(OSError(errno.EMFILE, os.strerror(errno.EMFILE)))
            if response.later is not None:
                conn.pending, conn.pending_line = response.later, line
            else:
                self._queue(conn, response, line)
        return made

    def _advance_pending(self, conn: _Conn) -> bool:
        """Run the pending response for up to _SLICE seconds; True once it is queued."""
        steps = conn.pending
        assert steps is not None
        deadline = time.monotonic() + _SLICE
        try:
            while True:
                next(steps)
                if time.monotonic() >= deadline:
                    return False
        except StopIteration as done:
            response: Response = done.value
        except Exception:
            _log.exception("zcio serve: %s failed", conn.pending_line)
            response = self.responder.error(500, self._date, False)
        conn.pending = None
        self._queue(conn, response, conn.pending_line)
        return True

    def _queue(self, conn: _Conn, response: Response, line: str) -> None:
        """Log ``response`` and queue it on ``conn`` (a file body: as conn.body)."""
        if self.access_log is not None:
            self.access_log.record(conn.peer, line, response.status, response.length)
        conn.served = True
        conn.out.append(response.head)
        if response.body:
            conn.out.append(response.body)
        if response.fd >= 0:
            conn.body = _Body(response, conn.sock, conn.fd)
        if not response.keep_alive:
            conn.closing = True

    # -- writing -------------------------------------------------------------------------

    def _write(self, conn: _Conn) -> bool:
        """Send the queue, then the file body; True when everything went out."""
        sock, out, sys_ = conn.sock, conn.out, _syscalls.SYS
        while out:
            flags = socket.MSG_MORE if conn.body is not None else 0
            try:
                if len(out) == 1:
                    n = sys_.send(sock, out[0], flags)
                else:
                    n = sys_.sendmsg(sock, list(out), flags)
            except (BlockingIOError, InterruptedError):
                self._want_write(conn)
                return False
            except OSError:
                self._close(conn)
                return False
            metrics.record("socket_write", user_bytes=n)
            while n:
                first = out[0]
                if n >= len(first):
                    out.popleft()
                    n -= len(first)
                else:
                    out[0] = memoryview(first)[n:]
                    n = 0
            if out:
                self._want_write(conn)
                return False
        body = conn.body
        if body is None:
            return True
        try:
            n = body.send()
        except OSError:  # the client went away (EPIPE, ECONNRESET), or the disk failed
            self._close(conn)
            return False
        if n == 0:  # the file ended before the announced length: it shrank
            _log.warning("zcio serve: %s shrank during a send; connection closed",
                         body.path)
            self._close(conn)
            return False
        if body.remaining:
            self._want_write(conn)
            return False
        conn.body = None
        body.close()
        return True

    def _want_write(self, conn: _Conn) -> None:
        conn.deadline = self._now + self.timeouts.send
        self._set_events(conn, _OUT)  # stop reading until the response is out

    # -- closing and timing out ---------------------------------------------------------

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.fd, None) is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self._ep.unregister(conn.fd)
        conn.sock.close()
        if conn.body is not None:
            conn.body.close()
            conn.body = None
        if conn.pending is not None:  # work for a closed connection is dropped
            conn.pending.close()
            conn.pending = None
        conn.out.clear()
        if not self._accepting and len(self._conns) < self.max_connections:
            self._resume_accepting()

    def _sweep(self) -> None:
        now = self._now
        if self._fd_episode and now - self._fd_short_at > _FD_QUIET:
            _log.warning("zcio serve: file descriptors available again (%d connections "
                         "closed or refused meanwhile)", self._fd_episode)
            self._fd_episode = 0
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            self._close(conn)
        if not self._accepting and len(self._conns) < self.max_connections:
            self._resume_accepting()

    def _begin_drain(self) -> None:
        try:
            os.eventfd_read(self._wake)
        except BlockingIOError:
            return
        if self._draining:
            return
        listener = self.listener
        if listener is not None and self._accepting:
            self._accept(batch=self.max_connections)  # what the kernel already queued
        self._pause_accepting()
        if listener is not None:  # refuse new connections from now on
            self.listener = None
            listener.close()
        self._draining = True
        self._drain_deadline = self._now + self.timeouts.shutdown
        for conn in list(self._conns.values()):
            if (conn.events == _IN and not conn.proto.in_request and not conn.out
                    and conn.body is None):
                # idle, or just accepted: answer anything already received, then close
                self._drive(conn)
