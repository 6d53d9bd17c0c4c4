"""The I/O side of the send/receive protocol, shared by ``send_file`` and ``FileReceiver``.

``zcio._wire`` decides what each side says; this module moves those bytes over a
blocking :class:`SocketChannel`: it reads exactly what the protocol ``needed()`` (so no
byte of the body is ever swallowed by the header parser), with a deadline, writes the
replies whole, hashes files, moves the body in chunks under ``zcio.measure()``, and
drops a connection that stops making progress (:class:`Watchdog`).  The results of a
verified transfer (:class:`SendResult`, :class:`ReceiveResult`) and the one error of a
transfer that did not complete (:class:`TransferFailed`) live here too.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._byte_buffer import ByteBuffer
from ._errors import TransferError, ZcioError
from ._file_channel import FileChannel
from ._metrics import Measurement, PathStats, measure
from ._progress import Meter
from ._socket_channel import SocketChannel
from ._syscalls import SYS, retry
from ._wire import NEED_DATA, Header, Receiver, Sender, new_digest

__all__ = ["TransferFailed", "SendResult", "ReceiveResult", "Watchdog", "CHUNK",
           "where", "readable", "read_event", "write_all", "digest", "chunked", "strerror",
           "result_fields"]

CHUNK = 16 << 20  # bytes per transfer call: progress, and the sender's check for an ABORT
HASH_CHUNK = 1 << 20


class TransferFailed(ZcioError):
    """A send or receive did not complete: refused, discarded, lost or stalled.

    The message is one line that says which peer and why, with the byte counts (``zcio
    send`` prints it as it is).  Other failures come as the OSError of the call that
    failed (a refused connection, a full disk) with the peer or file as its filename,
    or as :class:`~zcio._wire.ProtocolError` for a peer that broke the protocol.
    """


@dataclass(frozen=True)
class _Verified:
    """What a verified transfer did (the fields both sides report)."""

    #: The file's name on the receiver.
    name: str
    #: The whole file's size in bytes.
    size: int
    #: Bytes the receiver already had (a resumed transfer), not sent again.
    resumed_from: int
    #: Seconds the body took to move.
    seconds: float
    #: The path that moved most of the body (``"sendfile"``, ``"splice"``...; ``"none"``).
    path: str
    #: Every path counted while the body moved (``zcio.measure()``).
    paths: dict[str, PathStats]
    #: The checksum algorithm (``"sha256"``) and the whole file's digest, as verified.
    algorithm: str
    digest: bytes

    @property
    def moved(self) -> int:
        """Bytes that crossed the connection: ``size - resumed_from``."""
        return self.size - self.resumed_from

    @property
    def gb_per_s(self) -> float | None:
        return self.moved / self.seconds / 1e9 if self.seconds > 0 else None

    @property
    def checksum(self) -> str:
        """``"sha256:<hex digest>"``."""
        return f"{self.algorithm}:{self.digest.hex()}"


@dataclass(frozen=True)
class SendResult(_Verified):
    """A file ``send_file`` sent, checked by the receiver and saved under its name."""

    #: The receiver, ``"host:port"`` (``"[v6]:port"``).
    address: str
    #: Seconds from the call to the verdict (checksum pass included).
    total_seconds: float


@dataclass(frozen=True)
class ReceiveResult(_Verified):
    """A file a ``FileReceiver`` took in, verified and renamed to its name."""

    #: The sender, ``"host:port"``.
    peer: str
    #: Where the file now is: DEST/NAME.
    saved_to: str


def result_fields(m: Measurement, header: Header, offset: int) -> dict[str, Any]:
    """The fields of a :class:`_Verified` for ``header``'s file moved under ``m``."""
    moved = {p.path: p.kernel_bytes + p.user_bytes for p in m.paths.values()
             if not p.path.startswith("socket_")}
    main = max(moved, key=lambda p: moved[p]) if any(moved.values()) else "none"
    return {"name": header.name, "size": header.size, "resumed_from": offset,
            "seconds": m.wall_seconds, "path": main, "paths": dict(m.paths),
            "algorithm": header.algorithm_name, "digest": header.digest}


# -- small I/O helpers -----------------------------------------------------------------


def where(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def readable(fd: int, timeout: float | None) -> bool:
    """Whether ``fd`` becomes readable (or hung up) within ``timeout`` seconds.

    Syscalls: ``poll``."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(int(timeout * 1000), 0)))


def read_event(proto: Sender | Receiver, ch: SocketChannel, timeout: float | None,
               what: str, peer: str) -> Any:
    """Read exactly what ``proto`` needs until it has an event; ``timeout`` in total.

    Syscalls: ``poll`` and ``read`` per piece; TimeoutError (ETIMEDOUT, naming ``peer``)
    when the deadline passes, with whatever was read kept in ``proto``.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while (event := proto.next_event()) is NEED_DATA:
        left = None if deadline is None else deadline - time.monotonic()
        if not readable(ch.fileno(), left):
            raise TimeoutError(errno.ETIMEDOUT, f"timed out waiting for {what}", peer)
        buf = ByteBuffer.allocate(proto.needed())
        n = ch.read(buf)
        proto.receive_data(b"" if n < 0 else bytes(buf.array()[:n]))
    return event


def write_all(ch: SocketChannel, data: bytes) -> None:
    """Write all of ``data``.  Syscalls: ``write`` until done (blocking channel)."""
    buf = ByteBuffer.wrap(data)
    while buf.has_remaining():
        ch.write(buf)


def digest(fc: FileChannel, size: int, algorithm: int, bar: Meter, path: str) -> bytes:
    """The digest of ``fc``'s first ``size`` bytes, read back with pread.

    Syscalls: ``preadv`` through ``SYS`` (EINTR retried), 1 MiB at a time (``fc``'s
    position is not used); ENODATA naming ``path`` if the file ends before ``size``.
    """
    h, buf, pos, fd = new_digest(algorithm), bytearray(HASH_CHUNK), 0, fc.fileno()
    with memoryview(buf) as view:
        while pos < size:
            n = retry(SYS.preadv, fd, [view[: min(HASH_CHUNK, size - pos)]], pos)
            if n == 0:
                raise OSError(errno.ENODATA, f"file ended at {pos} of {size} bytes", path)
            h.update(view[:n])
            pos += n
            bar.advance(n)
    return bytes(h.digest())


def chunked(total: int, offset: int, bar: Meter, step: Callable[[int], int],
            after: Callable[[int], None]) -> Measurement:
    """Call ``step(n)`` (at most CHUNK) until ``total - offset`` bytes moved, under
    ``measure()``; ``after(moved so far)`` after each step."""
    with measure() as m:
        left = total - offset
        while left:
            n = step(min(CHUNK, left))
            left -= n
            bar.advance(n)
            after(total - offset - left)
    return m


def strerror(e: OSError) -> str:
    """The kernel's words, without TransferError's per-call count."""
    cause = e.__cause__ if isinstance(e, TransferError) and e.__cause__ else e
    return getattr(cause, "strerror", None) or str(cause)


class Watchdog:
    """Drops a connection whose body makes no progress for ``timeout`` seconds.

    ``progress()`` is a number that grows while bytes move (the partial file's size on
    the receiver, the bytes the receiver acknowledged on the sender).  A thread looks at
    it a few times per ``timeout``; when it has not grown for ``timeout`` seconds, the
    socket is shut down, so the transfer blocked on it ends with an error and the
    session fails as for a lost connection (a receiver keeps its partial file).
    ``fired`` says whether it did.

    Syscalls: ``shutdown(SHUT_RDWR)`` on the socket when it fires.
    """

    def __init__(self, ch: SocketChannel, timeout: float, progress: Callable[[], int]
                 ) -> None:
        self.ch, self.timeout, self.progress = ch, timeout, progress
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="zcio-watchdog",
                                        daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        last, since = -1, time.monotonic()
        while not self._stop.wait(min(self.timeout / 4, 1.0)):
            try:
                now_at = self.progress()
            except OSError:
                return
            if now_at != last:
                last, since = now_at, time.monotonic()
            elif time.monotonic() - since >= self.timeout:
                self.fired = True
                with contextlib.suppress(OSError):
                    self.ch.socket().shutdown(socket.SHUT_RDWR)
                return
