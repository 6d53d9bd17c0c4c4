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

The compiled hit path: with ``zcio._native`` in use, a read on a connection at rest
(nothing queued, pending or half-parsed) is one call to ``serve_hit``
(``native/serve.c``): it reads and, when the bytes are exactly one simple GET of a
cached small file whose response was made this second, sends that response (its stat
check included, or, for an entry the loop's :class:`~zcio.serve._watch.Watcher`
covers, no stat: the watcher reads change notices once per turn, right after
``epoll_wait`` and before any request of the turn is answered, and drops each entry a
notice concerns); anything else is handed to the parser as any read.  It takes only
what the Python path answers the same way, byte for byte (``_answered`` then does to
the counts, deadlines and queue what the Python path does); it is off while a test's
syscall layer is in (``_syscalls.NATIVE_IO``), while an access log is kept and during a
stop.  ``hits`` counts its answers.

Fairness: no connection holds the loop for long.  Reading (and so parsing) stops while
responses wait unsent (backpressure: a client that does not read cannot make the server
buffer more); responses are made only while less than 64 KiB waits to go out on that
connection; one connection gets at most 16 responses per turn of the loop, then waits
for the next turn on a ready list, behind every other connection.  A response that
takes long to make (a listing of a large directory, see ``_listing``) is made a slice
of about a millisecond per turn; if the client goes meanwhile, the work is dropped.
Socket reads and writes are counted in ``zcio.metrics`` as ``socket_read`` and
``socket_write``, added once per turn of the loop (the counts are per call, as
elsewhere; only their publication is batched, so no lock is taken per request); every
socket call (accept, recv, send, sendmsg, shutdown) goes through
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
import sys
import time
from collections import deque
from email.utils import formatdate

from .. import _accel, _syscalls
from .._metrics import metrics
from ._accepting import Accepting
from ._access_log import AccessLog, request_line
from ._conn import IN, OUT, Body, Conn, Timeouts
from ._files import FileCache
from ._http import (
    CONTINUE,
    CONTINUE_LINE,
    NEED_DATA,
    Limits,
    Request,
    RequestError,
)
from ._respond import Responder, Response
from ._watch import Watcher

__all__ = ["Timeouts", "Loop"]

_log = logging.getLogger("zcio.serve")

_RECV_SIZE = 65536
_TURN_RESPONSES = 16  # responses one connection may make per turn of the loop
OUT_CAP = 64 << 10  # make no further response while this much waits to go out
_SLICE = 0.001  # seconds of slow work (a listing) per connection per turn
_FD_QUIET = 1.0  # seconds without running out of descriptors that end an episode


class Loop(Accepting):
    """One worker's event loop over a listening socket (see the module docstring)."""

    def __init__(self, listener: socket.socket, responder: Responder, *,
                 limits: Limits | None = None, timeouts: Timeouts | None = None,
                 max_connections: int = 4096, access_log: AccessLog | None = None,
                 workers: int = 1) -> None:
        self.listener: socket.socket | None = listener
        self.responder = responder
        self.limits = limits or Limits()
        self.timeouts = timeouts or Timeouts()
        self.max_connections = max_connections
        self.access_log = access_log
        self.requests = 0  # responses queued since start
        self._conns: dict[int, Conn] = {}
        self._ready: deque[Conn] = deque()
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
        self._starved = False  # the last _produce stopped for want of data
        self._reserve = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        # socket calls and their bytes this turn, published to zcio.metrics per turn
        self._reads = self._read_bytes = self._writes = self._written = 0
        self._idle = self.timeouts.idle
        #: The compiled hit path (``zcio._native.serve_hit``), where it answers exactly
        #: as the Python path would: the stock Responder and FileCache, paths that
        #: encode as UTF-8.  It runs per read only while no test syscall layer is in,
        #: no access log is kept, no stop is under way and the connection is at rest.
        native = _accel.native
        cache = responder.cache
        self._hit = (native.serve_hit if native is not None and type(responder) is Responder
                     and type(cache) is FileCache and sys.getfilesystemencoding() == "utf-8"
                     else None)
        self._entries = cache.entries
        if cache.watcher is not None:  # another loop's, checked in its turns, not ours
            self._hit = None
        #: Change notices in place of the hit path's stat (``_watch``), read each turn.
        self._watcher = (Watcher.open(responder.root.path, workers)  # their budget's share
                         if self._hit is not None else None)
        if self._watcher is not None:
            cache.watch(self._watcher)
        lim = self.limits
        self._hit_limits = (lim.max_target, lim.max_header_bytes, lim.max_headers,
                            responder.precompressed)
        self.hits = 0  # requests the compiled hit path answered
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
        if self._watcher is not None:
            if self.responder.cache.watcher is self._watcher:
                self.responder.cache.watch(None)
            self._watcher.close()
            self._watcher = None

    def run(self) -> None:
        """Serve until a graceful stop completes."""
        ep, conns = self._ep, self._conns
        listener = self.listener
        assert listener is not None
        listen_fd, wake_fd = listener.fileno(), self._wake
        ep.register(listen_fd, IN)
        self._accepting = True
        ep.register(wake_fd, IN)
        read, drive, log = self._read, self._drive, self.access_log
        watcher = self._watcher
        next_sweep = time.monotonic() + self._tick
        self._update_date()
        while True:
            events = ep.poll(0.0 if self._ready else max(next_sweep - self._now, 0.0))
            if watcher is not None:  # after the poll, before any request of this turn
                watcher.check()
            self._now = now = time.monotonic()
            if int(time.time()) != self._date_second:
                self._update_date()
            for fd, _ in events:
                conn = conns.get(fd)
                if conn is not None:
                    step = conn.events
                    if step:  # else: on the ready list (a hang-up shows when driven)
                        try:
                            if step == IN:
                                read(conn)
                            else:
                                drive(conn)
                        except Exception:
                            self._failed(conn)
                elif fd == listen_fd and self._accepting:
                    self._accept()
                elif fd == wake_fd:
                    self._begin_drain()
            if self._ready:
                self._run_ready()
            if now >= next_sweep:
                self._sweep()
                next_sweep = now + self._tick
            if self._reads or self._writes:
                self._count()
            if log is not None:
                log = self._flush_log(log)
            if self._draining and (not conns or now >= self._drain_deadline):
                break
        for conn in list(conns.values()):
            self._close(conn)
        self._count()
        if log is not None:
            self._flush_log(log)

    def _count(self) -> None:
        """Publish this turn's socket calls to ``zcio.metrics``."""
        if self._reads:
            metrics.record("socket_read", syscalls=self._reads, user_bytes=self._read_bytes,
                           operations=self._reads)
        if self._writes:
            metrics.record("socket_write", syscalls=self._writes, user_bytes=self._written,
                           operations=self._writes)
        self._reads = self._read_bytes = self._writes = self._written = 0

    def _failed(self, conn: Conn) -> None:
        """Log the exception being handled and close ``conn``: never let one connection
        stop the server."""
        _log.exception("zcio serve: connection from %s failed", conn.peer)
        self._close(conn)

    def _run_ready(self) -> None:
        """Drive each connection that was on the ready list when this turn began."""
        ready, conns = self._ready, self._conns
        for _ in range(len(ready)):
            conn = ready.popleft()
            conn.ready = False
            if conns.get(conn.fd) is conn:
                try:
                    self._drive(conn)
                except Exception:
                    self._failed(conn)

    def _later(self, conn: Conn) -> None:
        """Stop reading ``conn`` and drive it again next turn, after the others."""
        if not conn.ready:
            conn.ready = True
            self._ready.append(conn)
        conn.deadline = self._now + self.timeouts.send
        self._set_events(conn, 0)

    def _set_events(self, conn: Conn, events: int) -> None:
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

    # -- reading and responding -------------------------------------------------------

    def _read(self, conn: Conn) -> None:
        """Read what ``conn`` sent and answer what can be answered.

        Syscalls: one ``recv`` into the loop's buffer, by ``serve_hit`` (the compiled
        hit path, see the module docstring; then, for a hit, ``stat`` of the cached
        file unless the watcher covers it, and one ``send``) or by ``SYS.recv_into``.
        EAGAIN or EINTR: nothing read, nothing changes.  Any other error closes the
        connection.
        """
        hit = self._hit
        if (hit is not None and _syscalls.NATIVE_IO is not None and self.access_log is None
                and not self._draining and not conn.out and conn.body is None
                and conn.pending is None and not conn.closing and conn.proto.at_rest()):
            try:
                got = hit(conn.fd, self._buf, self._entries, self._date, self._hit_limits)
            except OSError:
                self._close(conn)
                return
            if type(got) is tuple:
                self._answered(conn, *got)
                return
            if got < 0:  # EAGAIN, EINTR
                return
            n = got
        else:
            try:
                n = _syscalls.SYS.recv_into(conn.sock, self._view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(conn)
                return
        self._reads += 1
        self._read_bytes += n
        conn.proto.receive_data(self._view[:n] if n else b"")
        self._drive(conn)

    def _answered(self, conn: Conn, n: int, head: bytes, sent: int) -> None:
        """Account for a request the compiled hit path answered (see ``_hit``): what
        the Python path does for the same request after its read, to every count,
        deadline and queue.  ``sent``: what of ``head`` went out, -1 for a failed send."""
        self._reads += 1
        self._read_bytes += n
        self.requests += 1
        self.hits += 1
        conn.served = True
        if sent < 0:  # as after a failed send in _write
            self._close(conn)
            return
        if sent:
            self._writes += 1
            self._written += sent
        if sent < len(head):
            conn.out.append(memoryview(head)[sent:] if sent else head)
            self._want_write(conn)
            return
        conn.started = None
        conn.deadline = self._now + self._idle

    def _drive(self, conn: Conn) -> None:
        """Write what is queued, make the next responses, until blocked, idle or out of
        this turn's share (then the connection waits on the ready list)."""
        budget = _TURN_RESPONSES
        starved = False  # the parser has nothing more: once written, wait for input
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
            if starved:
                break
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
            starved = self._starved
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
            conn.deadline = self._now + self._idle
        if conn.events != IN:
            self._set_events(conn, IN)

    def _produce(self, conn: Conn, budget: int) -> int:
        """Make responses for the requests parsed so far, at most ``budget``, while
        less than OUT_CAP waits to go out; how many were made."""
        proto, out, responder = conn.proto, conn.out, self.responder
        made = 0
        logged = self.access_log is not None
        self._starved = False
        while (made < budget and conn.body is None and conn.pending is None
               and not conn.closing and (not out or sum(map(len, out)) < OUT_CAP)):
            event = proto.next_event()
            if type(event) is Request:
                keep_alive = event.keep_alive and not self._draining
                line = request_line(event.method, event.target, event.version) if logged else ""
                try:
                    response = responder.respond(event, self._date, keep_alive)
                except Exception:
                    _log.exception("zcio serve: %r failed", event)
                    response = responder.error(500, self._date, False)
                if response.later is not None and not logged:  # for its error log
                    line = request_line(event.method, event.target, event.version)
            elif isinstance(event, RequestError):
                line = "-"
                response = responder.error(event.status, self._date, False)
            elif event is CONTINUE:  # the client waits for this before its body
                out.append(CONTINUE_LINE)
                made += 1
                continue
            elif event is NEED_DATA:
                self._starved = True
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

    def _advance_pending(self, conn: Conn) -> bool:
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

    def _queue(self, conn: Conn, response: Response, line: str) -> None:
        """Log ``response`` and queue it on ``conn`` (a file body: as conn.body)."""
        if self.access_log is not None:
            self.access_log.record(conn.peer, line, response.status, response.length)
        conn.served = True
        conn.out.append(response.head)
        if response.body:
            conn.out.append(response.body)
        if response.fd >= 0:
            conn.body = Body(response, conn.sock, conn.fd)
        if not response.keep_alive:
            conn.closing = True

    # -- writing -------------------------------------------------------------------------

    def _write(self, conn: Conn) -> bool:
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
            self._writes += 1
            self._written += n
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

    def _want_write(self, conn: Conn) -> None:
        conn.deadline = self._now + self.timeouts.send
        self._set_events(conn, OUT)  # stop reading until the response is out

    # -- closing and timing out ---------------------------------------------------------

    def _close(self, conn: Conn) -> None:
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
            if (conn.events == IN and not conn.proto.in_request and not conn.out
                    and conn.body is None):
                # idle, or just accepted: answer anything already received, then close
                self._drive(conn)
