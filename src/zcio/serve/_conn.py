"""A connection of the file server and the file body in flight on it.

``_Conn`` is one client socket's state in the loop (``zcio.serve._server``): its
sans-IO HTTP connection, what waits to go out, the body being sent, its deadline and
its place on the ready list.  ``_Body`` steps the transfer engine's ladder for one file
body (see the loop's module docstring for the policy).
"""

from __future__ import annotations

import os
import select
import socket
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass

from .._endpoint import FILE, SOCKET, End
from .._metrics import metrics
from .._rungs import Ladder, Lost
from .._transfer import default_ladder
from ._http import Limits, ServerConnection
from ._respond import Response

__all__ = ["Timeouts", "Body", "Conn", "IN", "OUT"]

IN = select.EPOLLIN
OUT = select.EPOLLOUT
_LADDER = default_ladder(FILE, SOCKET)[0]  # sendfile, mmap_write, read_write


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each phase of a connection (see the module docstring)."""

    idle: float = 15.0
    request: float = 10.0
    send: float = 30.0
    shutdown: float = 10.0


class Body:
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


class Conn:
    __slots__ = ("sock", "fd", "peer", "proto", "out", "body", "closing", "events",
                 "deadline", "started", "pending", "pending_line", "ready", "served")

    def __init__(self, sock: socket.socket, peer: str, limits: Limits) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.proto = ServerConnection(limits)
        self.out: deque[bytes | memoryview] = deque()
        self.body: Body | None = None
        self.closing = False
        self.events = IN
        self.deadline = 0.0
        self.started: float | None = None  # when the request being read began
        #: A response being made a slice per turn (Response.later), for request line...
        self.pending: Generator[None, None, Response] | None = None
        self.pending_line = ""
        self.ready = False  # on the loop's ready list: driven next turn, events off
        self.served = False  # a response was made: idle now means kept alive
