"""The methods ``zcio bench`` compares, and the posts' model of each.

Each method moves the first ``count`` bytes of a page-cached file with zcio's own API,
so zcio's path counters (``zcio.measure()``) see every system call and every byte that
crosses user space (``FileChannel.map`` counts its mmap/munmap under ``file_map``).
MSG_ZEROCOPY sends, which zcio's blocking API does not make, the bench makes and counts
itself in the same counters (path ``msg_zerocopy``).

A method raises Unavailable when this machine cannot run it, Failed when it breaks
off; ``_bench_targets`` measures it and checks what arrived.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._byte_buffer import ByteBuffer
from .._errors import ZcioError
from .._file_channel import FileChannel
from .._mapped import MapMode
from .._metrics import metrics
from .._transfer import transfer
from .._zerocopy import _EXTENDED_ERR, _RECVERR, MSG_ZEROCOPY, SO_ZEROCOPY
from .._zerocopy import MSG_ERRQUEUE as _MSG_ERRQUEUE
from .._zerocopy import SO_EE_CODE_ZEROCOPY_COPIED as _SO_EE_CODE_ZEROCOPY_COPIED
from .._zerocopy import SO_EE_ORIGIN_ZEROCOPY as _SO_EE_ORIGIN_ZEROCOPY

__all__ = ["GB", "MIB", "MMAP_WINDOW", "Model", "Method", "Failed", "Unavailable",
           "SOCKET_METHODS", "FILE_METHODS"]

GB = 10**9  # the JSON's GB/s and CPU s/GB are decimal; the table and chart show GiB
MIB = 1 << 20
MMAP_WINDOW = 8 * MIB  # the JDK's transferTo mapping window

_ZC_SLOTS = 4  # buffers in flight: one is refilled while the kernel still holds the others


class Unavailable(Exception):
    """This method cannot run on this machine; the message says why."""


class Failed(Exception):
    """A run delivered the wrong bytes, or broke off; the message says what happened."""


@dataclass(frozen=True)
class Model:
    """The posts' model of one method: copies by DMA and by the CPU, mode switches."""

    dma: int
    cpu: int
    switches: str
    note: str = ""


@dataclass(frozen=True)
class Method:
    """A way to move ``count`` bytes from a FileChannel to a target; returns details."""

    key: str
    label: str
    model: Model
    send: Callable[[FileChannel, Any, int, int], dict[str, int]]


# -- the methods -------------------------------------------------------------------------


def _relay(src: FileChannel, dst: Any, count: int, chunk: int, direct: bool) -> dict[str, int]:
    """read() into a chunk-sized buffer, then write() it out until drained; repeat."""
    buf = ByteBuffer.allocate_direct(chunk) if direct else ByteBuffer.allocate(chunk)
    try:
        left = count
        while left:
            buf.clear().limit(min(chunk, left))
            n = src.read(buf)
            if n < 0:
                raise Failed(f"the source ended {left} bytes early")
            buf.flip()
            while buf.has_remaining():
                dst.write(buf)
            left -= n
    finally:
        if direct:
            buf.release()
    return {}


def _read_write_heap(src: FileChannel, dst: Any, count: int, chunk: int) -> dict[str, int]:
    return _relay(src, dst, count, chunk, direct=False)


def _read_write_direct(src: FileChannel, dst: Any, count: int, chunk: int) -> dict[str, int]:
    return _relay(src, dst, count, chunk, direct=True)


def _mmap_write(src: FileChannel, dst: Any, count: int, chunk: int) -> dict[str, int]:
    """Map 8 MiB read-only windows (as the JDK's transferTo) and write() each one."""
    pos = 0
    while pos < count:
        n = min(MMAP_WINDOW, count - pos)
        with src.map(MapMode.READ_ONLY, pos, n) as window:
            while window.has_remaining():
                dst.write(window)
        pos += n
    return {}


def _by_path(path: str) -> Callable[[FileChannel, Any, int, int], dict[str, int]]:
    def send(src: FileChannel, dst: Any, count: int, chunk: int) -> dict[str, int]:
        moved = transfer(src, dst, count, path=path)
        if moved != count:
            raise Failed(f"transfer moved {moved} of {count} bytes")
        return {}

    return send


class _Completions:
    """MSG_ZEROCOPY bookkeeping: which send ids the kernel still holds pages for.

    Every sendmsg(MSG_ZEROCOPY) that sends bytes gets the socket's next id (0, 1, ...).
    The kernel reports finished ids as ranges on the socket's error queue: a
    ``sock_extended_err`` with origin SO_EE_ORIGIN_ZEROCOPY, ``ee_info`` the first and
    ``ee_data`` the last id, and ``ee_code & SO_EE_CODE_ZEROCOPY_COPIED`` when the kernel
    copied the bytes after all (loopback always does).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.next_id = 0
        self.pending: set[int] = set()
        self.done = self.copied = self.syscalls = 0

    def sent(self) -> int:
        self.pending.add(self.next_id)
        self.next_id += 1
        return self.next_id - 1

    def wait(self, block: bool) -> None:
        """Read every completion queued; if ``block``, first wait for one (POLLERR)."""
        if block:
            poller = select.poll()
            poller.register(self.sock.fileno(), 0)  # POLLERR is always reported
            self.syscalls += 1
            if not poller.poll(10_000):
                raise Failed(f"no MSG_ZEROCOPY completion within 10 s "
                             f"({len(self.pending)} sends outstanding)")
        while True:
            self.syscalls += 1
            try:
                _, ancillary, _, _ = self.sock.recvmsg(0, 256, _MSG_ERRQUEUE | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            for level, kind, data in ancillary:
                if (level, kind) not in _RECVERR or len(data) < _EXTENDED_ERR.size:
                    continue
                err, origin, _, code, _, first, last = _EXTENDED_ERR.unpack_from(data)
                if origin != _SO_EE_ORIGIN_ZEROCOPY:
                    raise OSError(err, f"error queue: {os.strerror(err)}")
                ids = set(range(first, last + 1))
                self.done += len(ids & self.pending)
                if code & _SO_EE_CODE_ZEROCOPY_COPIED:
                    self.copied += len(ids & self.pending)
                self.pending -= ids


def _msg_zerocopy(src: FileChannel, dst: Any, count: int, chunk: int) -> dict[str, int]:
    """read() into direct buffers, sendmsg(MSG_ZEROCOPY) them; reuse one only once done.

    The kernel pins the buffer's pages and sends from them; a buffer may be refilled
    only after the completion for every send from it has arrived.
    """
    sock: socket.socket = dst.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ZEROCOPY, 1)
    except OSError as e:
        raise Unavailable(f"setsockopt(SO_ZEROCOPY): {e.strerror or e}") from e
    zc = _Completions(sock)
    slots = [ByteBuffer.allocate_direct(chunk) for _ in range(_ZC_SLOTS)]
    ids: list[list[int]] = [[] for _ in slots]
    calls = sent_bytes = 0
    try:
        left, i = count, 0
        while left:
            slot = i % _ZC_SLOTS
            while zc.pending.intersection(ids[slot]):
                zc.wait(block=True)
            ids[slot].clear()
            buf = slots[slot]
            buf.clear().limit(min(chunk, left))
            n = src.read(buf)
            if n < 0:
                raise Failed(f"the source ended {left} bytes early")
            buf.flip()
            with buf.memoryview() as view:
                done = 0
                while done < n:
                    calls += 1
                    try:
                        with view[done:n] as part:
                            k = sock.sendmsg([part], [], MSG_ZEROCOPY)
                    except OSError as e:  # ENOBUFS: too many pinned pages (optmem, memlock)
                        if e.errno != errno.ENOBUFS:
                            raise
                        if not zc.pending:
                            raise Unavailable("sendmsg(MSG_ZEROCOPY): ENOBUFS with nothing "
                                              "in flight (locked-memory limit?)") from e
                        zc.wait(block=True)
                        continue
                    ids[slot].append(zc.sent())
                    done += k
            sent_bytes += n
            left -= n
            i += 1
            zc.wait(block=False)
        while zc.pending:
            zc.wait(block=True)
    finally:
        metrics.record("msg_zerocopy", syscalls=calls + zc.syscalls, kernel_bytes=sent_bytes)
        if zc.pending:  # an error left sends in flight: the kernel may still read these pages
            with contextlib.suppress(OSError, ZcioError):
                while zc.pending:
                    zc.wait(block=True)
        for b in slots:
            b.release()
    return {"zerocopy_sends": zc.next_id, "zerocopy_completed": zc.done,
            "zerocopy_copied": zc.copied}


# The posts' model, per method: copies of each byte (DMA and CPU) and mode switches.
_RW = Model(2, 2, "4 per chunk")
SOCKET_METHODS = [
    Method("read_write_heap", "read/write (heap)", _RW, _read_write_heap),
    Method("read_write_direct", "read/write (direct)", _RW, _read_write_direct),
    Method("mmap_write", "mmap+write", Model(2, 1, "4 per window"), _mmap_write),
    Method("sendfile", "sendfile", Model(2, 1, "2 per call", "2 + 0 with a NIC that gathers"),
           _by_path("sendfile")),
    Method("splice", "splice (pipe)", Model(2, 0, "2 per call"), _by_path("splice")),
    Method("msg_zerocopy", "MSG_ZEROCOPY", Model(2, 1, "4 per chunk",
           "the read copies into the buffer, the NIC sends from it"), _msg_zerocopy),
]
FILE_METHODS = [
    Method("copy_file_range", "copy_file_range", Model(2, 1, "2 per call",
           "0 + 0 where the file system reflinks"), _by_path("copy_file_range")),
    Method("sendfile", "sendfile", Model(2, 1, "2 per call"), _by_path("sendfile")),
    Method("mmap_write", "mmap+write", Model(2, 1, "4 per window"), _by_path("mmap_write")),
    Method("read_write", "read/write", _RW, _by_path("read_write")),
]


