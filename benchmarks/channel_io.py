"""Per-call channel I/O against the bare Python call on the same memory.

Run by hand, not by CI::

    .venv/bin/python benchmarks/channel_io.py [--quick] [--rounds N] [--json PATH]

Three groups, each timed as in ``buffer_ops.py`` (``_harness``): every round times one
short loop of every case of the group, in a fresh random order, so subject and anchor
are interleaved and share the machine's noise; a case's figure is the median over the
rounds, and ratios are ratios of medians of the same run.  Nothing is subtracted.

1. ``SocketChannel.write(buf)`` of 1 KiB (a direct buffer) to a connected TCP loopback
   socket, against ``sock.sendall`` of a memoryview of the same memory; each write is
   drained at the other end in the same thread (``recv_into``), the same work on both
   sides.  Elapsed time.  Goal (issue 13): at most 1.1x.
2. ``FileChannel.read(buf, position)`` of 4 KiB from the page cache into a direct
   buffer, against ``os.preadv(fd, [view], position)`` into the same memory.  CPU time
   of the thread (``time.thread_time_ns``).  Goal: at most 1.2x.
3. ``FileChannel.write(buf, position)`` of 4 KiB into the page cache, against
   ``os.pwritev`` from the same memory.  Thread CPU time.  Goal: at most 1.2x.

zcio's buffers are rewound between loops, untimed (``prepare``): each loop uses its
own set of buffers, one per call, as a program sending or reading several would.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Sequence

import _harness
from _harness import Case, Compare, Group

from zcio import ByteBuffer, FileChannel, OpenOption, SocketChannel

KIB = 1 << 10
SOCKET_SIZE = 1 * KIB
FILE_SIZE = 4 * KIB
CALLS = 16  # calls per timed loop
GOAL_SOCKET = 1.1
GOAL_FILE = 1.2


def _buffers(k: int, size: int) -> tuple[list[ByteBuffer], list[memoryview]]:
    """k direct buffers of ``size`` random bytes, and a memoryview of each one's memory."""
    bufs = [ByteBuffer.allocate_direct(size).put(os.urandom(size)).clear() for _ in range(k)]
    return bufs, [b.memoryview() for b in bufs]


def socket_group(k: int = CALLS) -> Group:
    client, peer = _harness.loopback_pair()
    ch = SocketChannel.from_socket(client)
    bufs, views = _buffers(k, SOCKET_SIZE)
    sink = bytearray(SOCKET_SIZE)
    sink_mv = memoryview(sink)
    size = SOCKET_SIZE

    def drain() -> None:
        got, recv_into, mv = 0, peer.recv_into, sink_mv
        while got < size:
            got += recv_into(mv[got:])

    def rewind() -> None:
        for b in bufs:
            b.clear()

    def zcio_write() -> None:
        write, d = ch.write, drain
        for b in bufs:
            write(b)
            d()

    def sendall() -> None:
        send, d = client.sendall, drain
        for v in views:
            send(v)
            d()

    subject = f"SocketChannel.write(buf) {size} B"
    anchor = f"sock.sendall(memoryview) {size} B"

    def cleanup() -> None:
        for v in views:
            v.release()
        for b in bufs:
            b.release()
        sink_mv.release()
        ch.close()
        client.close()
        peer.close()

    return Group(f"one socket write of {size} B to TCP loopback (+ drain)",
                 [Case(subject, k, zcio_write, prepare=rewind), Case(anchor, k, sendall)],
                 [Compare(subject, anchor, "time", GOAL_SOCKET)], cleanup)


def _file_group(k: int, writing: bool) -> Group:
    fd, path = tempfile.mkstemp(prefix="zcio-channel-io-")
    os.write(fd, os.urandom(FILE_SIZE * (k + 1)))
    os.close(fd)
    ch = FileChannel.open(path, OpenOption.READ, OpenOption.WRITE)
    fd = ch.fileno()
    bufs, views = _buffers(k, FILE_SIZE)
    size = FILE_SIZE
    at = [i * size for i in range(k)]
    pairs = list(zip(bufs, at, strict=True))
    vpairs = [([v], p) for v, p in zip(views, at, strict=True)]

    def rewind() -> None:
        for b in bufs:
            b.clear()

    if writing:
        def subject_run() -> None:
            write = ch.write
            for b, p in pairs:
                write(b, p)

        def anchor_run() -> None:
            pwritev = os.pwritev
            for vs, p in vpairs:
                pwritev(fd, vs, p)

        subject, anchor = f"FileChannel.write(buf, pos) {size} B", f"os.pwritev {size} B"
    else:
        def subject_run() -> None:
            read = ch.read
            for b, p in pairs:
                read(b, p)

        def anchor_run() -> None:
            preadv = os.preadv
            for vs, p in vpairs:
                preadv(fd, vs, p)

        subject, anchor = f"FileChannel.read(buf, pos) {size} B", f"os.preadv {size} B"

    def cleanup() -> None:
        for v in views:
            v.release()
        for b in bufs:
            b.release()
        ch.close()
        os.unlink(path)

    what = "write into" if writing else "read from"
    return Group(f"one file {what} the page cache, {size} B (thread CPU time)",
                 [Case(subject, k, subject_run, prepare=rewind), Case(anchor, k, anchor_run)],
                 [Compare(subject, anchor, "time", GOAL_FILE)], cleanup,
                 clock=time.thread_time_ns)


def file_read_group(k: int = CALLS) -> Group:
    return _file_group(k, writing=False)


def file_write_group(k: int = CALLS) -> Group:
    return _file_group(k, writing=True)


def main(argv: Sequence[str] | None = None) -> int:
    # options "--quick", "--rounds", "--json" (run_all.py looks for them in this file)
    return _harness.main(
        argv,
        benchmark="channel_io",
        description="zcio's per-call channel I/O (one buffer, one system call) against "
        "sock.sendall and os.preadv/os.pwritev on the same memory "
        "(interleaved rounds, medians, ratios from the same run).",
        builders=[socket_group, file_read_group, file_write_group],
        settings={
            "per_loop": {"calls": CALLS},
            "bytes": {"socket_write": SOCKET_SIZE, "file": FILE_SIZE},
        },
    )


if __name__ == "__main__":
    sys.exit(main())
