"""Every kind of zcio byte channel, for the channel contract suite (test_channel_contract).

As ``buffer_kinds`` does for buffers: each kind opens a reading channel and a writing
channel, and plain ``os``/``socket`` calls on the other side (``feed`` puts bytes where
the reader will find them, ``take`` gets what the writer wrote), so every channel is
checked against the kernel directly.  ``Ends.close`` closes everything it opened.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zcio import FileChannel, OpenOption, Pipe, SocketChannel


@dataclass
class Ends:
    """A reading and a writing channel of one kind, with their plain-call other sides."""

    reader: Any
    writer: Any
    feed: Callable[[bytes], None]  # make bytes readable by ``reader``
    end_input: Callable[[], None]  # the reader's end of stream/file after what was fed
    take: Callable[[int], bytes]  # up to n of the bytes ``writer`` wrote, in order
    stream: bool  # socket or pipe: reads block/wait; a file's never do
    blocking: bool
    closers: list[Callable[[], None]] = field(default_factory=list)

    def read_eventually(self, dst: Any) -> int:
        """``reader.read(dst)``, retried while a non-blocking reader has nothing yet."""
        deadline = time.monotonic() + 10
        while True:
            n = int(self.reader.read(dst))
            if n != 0 or self.blocking or time.monotonic() > deadline:
                return n
            time.sleep(0.001)

    def close(self) -> None:
        for c in self.closers:
            c()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    sock.settimeout(10)
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _read_fd(fd: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def file_ends(tmp: Path, blocking: bool = True) -> Ends:
    src, dst = tmp / "reader-file", tmp / "writer-file"
    src.write_bytes(b"")
    reader = FileChannel.open(src)
    writer = FileChannel.open(dst, OpenOption.WRITE, OpenOption.CREATE)
    taken = [0]

    def feed(data: bytes) -> None:
        with open(src, "ab") as f:
            f.write(data)

    def take(n: int) -> bytes:
        with open(dst, "rb") as f:
            f.seek(taken[0])
            out = f.read(n)
        taken[0] += len(out)
        return out

    return Ends(reader, writer, feed, lambda: None, take, stream=False, blocking=True,
                closers=[reader.close, writer.close])


#: Socket buffer sizes: small, so a peer that does not read fills them fast.
SOCKET_BUFFER = 64 << 10


def _socket_ends(ours: socket.socket, peer: socket.socket, blocking: bool) -> Ends:
    for s in (ours, peer):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    ch = SocketChannel.from_socket(ours)
    ch.configure_blocking(blocking)
    return Ends(ch, ch, peer.sendall, lambda: peer.shutdown(socket.SHUT_WR),
                lambda n: _recv_exactly(peer, n), stream=True, blocking=blocking,
                closers=[ch.close, peer.close])


def tcp_ends(tmp: Path, blocking: bool = True) -> Ends:
    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = socket.create_connection(server.getsockname())
        ours, _ = server.accept()
    return _socket_ends(ours, peer, blocking)


def unix_ends(tmp: Path, blocking: bool = True) -> Ends:
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return _socket_ends(ours, peer, blocking)


def pipe_ends(tmp: Path, blocking: bool = True) -> Ends:
    inbound, outbound = Pipe.open(), Pipe.open()
    reader, writer = inbound.source(), outbound.sink()
    reader.configure_blocking(blocking)
    writer.configure_blocking(blocking)
    feed_fd, take_fd = inbound.sink().fileno(), outbound.source().fileno()
    return Ends(reader, writer, lambda data: _write_all(feed_fd, data), inbound.sink().close,
                lambda n: _read_fd(take_fd, n), stream=True, blocking=blocking,
                closers=[inbound.close, outbound.close])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


#: (id, factory, blocking): every kind; STREAMS: the blocking socket and pipe kinds;
#: NONBLOCKING: the non-blocking ones.
KINDS: list[tuple[str, Callable[..., Ends], bool]] = [
    ("file", file_ends, True),
    ("tcp", tcp_ends, True),
    ("tcp-nonblocking", tcp_ends, False),
    ("unix", unix_ends, True),
    ("unix-nonblocking", unix_ends, False),
    ("pipe", pipe_ends, True),
    ("pipe-nonblocking", pipe_ends, False),
]
STREAMS = [k for k in KINDS if k[0] != "file" and k[2]]
NONBLOCKING = [k for k in KINDS if not k[2]]


def close_while_blocked(ch: Any, call: Callable[[], object],
                        wait: float = 10.0) -> BaseException | None:
    """``call()`` in another thread; once it is in ``ch``'s in-flight registry (and
    0.05 s more, to block in the kernel), ``ch.close()`` from this one.  What ``call``
    raised (None if it returned), after asserting that the close woke it within
    ``wait`` seconds."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as e:
            outcome.append(e)
        else:
            outcome.append(None)

    t = threading.Thread(target=run, daemon=True)  # a failure must not hang the run
    t.start()
    deadline = time.monotonic() + wait
    while not ch._users and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.05)
    ch.close()
    t.join(wait)
    assert not t.is_alive(), "close() did not wake the blocked thread"
    return outcome[0]
