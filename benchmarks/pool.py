"""Pooled buffers against their alternatives: allocation, and gather writes.

Run by hand, not by CI::

    .venv/bin/python benchmarks/pool.py [--quick] [--rounds N] [--json PATH]

Two benchmarks, each a group of cases timed as in ``buffer_ops.py``: every round times
one short loop (well under a millisecond) of every case of the group, in a fresh random
order, so subjects and anchors are interleaved and share the machine's noise; a case's
figure is the median over the rounds, and ratios are ratios of medians of the same run.
Nothing is subtracted: loop overhead stays in every case (same loop shape everywhere).

1. ``PooledAllocator.default().allocate(65536).release()`` against
   ``ByteBuffer.allocate_direct(65536).release()`` and ``bytearray(65536)`` (dropped).
   Goal (issue 13): pooled at most 1 microsecond and faster than both.  Also
   ``retain().release()`` on a live pooled buffer: the reference counts of the same path.
2. A gather write of 64 buffers of 128 bytes to a connected TCP loopback socket in one
   ``sendmsg`` (``SocketChannel.write(bufs)``), against 64 ``send`` calls and against
   ``b"".join`` then one ``send``.  Every case then drains the 8 KiB at the other end
   in the same thread (``recv_into``), the same work on every side.  Each write of a
   loop sends its own set of 64 parts on every side (zcio's buffers are consumed by a
   write; an anchor reusing one set would read cache-hot parts against zcio's eight
   sets); the join of one set every time is kept as an informational row.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

import _harness
from _harness import Case, Compare, Group

import zcio
from zcio import ByteBuffer, LeakLevel, PooledAllocator, SocketChannel

KIB = 1 << 10
ALLOC = 64 * KIB  # allocation size
ALLOCS = 25  # allocations per timed loop
PARTS, PART = 64, 128  # gather write: 64 buffers of 128 bytes
WRITES = 8  # gather writes per timed loop
GOAL_ALLOC_NS = 1000.0


# -- 1. allocate and release 64 KiB -------------------------------------------------------


def _with_level(level: LeakLevel) -> tuple[Callable[[], None], Callable[[], None]]:
    saved: list[LeakLevel] = []

    def prepare() -> None:
        saved.append(zcio.leak_detection())
        zcio.set_leak_detection(level)

    def restore() -> None:
        zcio.set_leak_detection(saved.pop())

    return prepare, restore


def alloc_group(k: int = ALLOCS) -> Group:
    pool = PooledAllocator.default()
    size = ALLOC

    def pooled() -> None:
        allocate = pool.allocate
        for _ in range(k):
            allocate(size).release()

    def pooled_with() -> None:
        allocate = pool.allocate
        for _ in range(k):
            with allocate(size):
                pass

    def direct() -> None:
        allocate = ByteBuffer.allocate_direct
        for _ in range(k):
            allocate(size).release()

    def heap() -> None:
        allocate = bytearray
        for _ in range(k):
            allocate(size)

    held: list[ByteBuffer] = []

    def hold() -> None:
        held.append(pool.allocate(size))

    def let_go() -> None:
        held.pop().release()

    def counts() -> None:
        buf = held[-1]
        for _ in range(k):
            buf.retain().release()

    level = zcio.leak_detection().name
    subject = f"pooled allocate(64 KiB).release() [{level}]"
    with_block = f"with pooled allocate(64 KiB) [{level}]"
    disabled = "pooled allocate(64 KiB).release() [DISABLED]"
    paranoid = "pooled allocate(64 KiB).release() [PARANOID]"
    unpooled = "allocate_direct(64 KiB).release()"
    ba = "bytearray(65536), dropped"
    refcount = "pooled buf.retain().release()"
    cases = [
        Case(subject, k, pooled),
        Case(with_block, k, pooled_with),
        Case(disabled, k, pooled, *_with_level(LeakLevel.DISABLED)),
        Case(paranoid, k, pooled, *_with_level(LeakLevel.PARANOID)),
        Case(unpooled, k, direct),
        Case(ba, k, heap),
        Case(refcount, k, counts, hold, let_go),
    ]
    compares = [
        Compare(subject, None, "abs", GOAL_ALLOC_NS),
        Compare(subject, unpooled, "time", 1.0),
        Compare(subject, ba, "time", 1.0),
        Compare(with_block, subject),
        Compare(disabled, subject),
        Compare(paranoid, subject),
        Compare(unpooled, ba),
        Compare(refcount, subject),
    ]
    return Group("allocate + release of 64 KiB", cases, compares)


# -- 2. gather write of 64 small buffers ----------------------------------------------------


def gather_group(k: int = WRITES) -> Group:
    client, peer = _harness.loopback_pair()
    ch = SocketChannel.from_socket(client)
    pool = PooledAllocator.default()
    total = PARTS * PART
    # One set of 64 parts per write of a loop, on every side: zcio's buffers are
    # consumed by a write (rewound untimed), so it sends k distinct sets, and so must
    # the anchors, or they would read one cache-hot set against zcio's k.
    part_sets = []
    for _ in range(k):
        payload = os.urandom(total)
        part_sets.append([payload[i * PART : (i + 1) * PART] for i in range(PARTS)])
    parts = part_sets[0]
    sets = [[pool.allocate(PART).put(0, p) for p in ps] for ps in part_sets]
    sink = bytearray(total)
    sink_mv = memoryview(sink)

    def drain() -> None:
        got, recv_into, mv = 0, peer.recv_into, sink_mv
        while got < total:
            got += recv_into(mv[got:])

    def rewind() -> None:
        for bufs in sets:
            for b in bufs:
                b.clear()

    def zcio_gather() -> None:
        write, d = ch.write, drain
        for bufs in sets:
            if write(bufs) != total:
                raise RuntimeError("short gather write")
            d()

    def zcio_each() -> None:
        write, d = ch.write, drain
        for bufs in sets:
            for b in bufs:
                write(b)
            d()

    def sends() -> None:
        send, d = client.sendall, drain
        for ps in part_sets:
            for p in ps:
                send(p)
            d()

    def join_send() -> None:
        send, d, join = client.sendall, drain, b"".join
        for ps in part_sets:
            send(join(ps))
            d()

    def join_send_hot() -> None:
        send, d, ps, join = client.sendall, drain, parts, b"".join
        for _ in range(k):
            send(join(ps))
            d()

    def bare_sendmsg() -> None:
        sendmsg, d = client.sendmsg, drain
        for ps in part_sets:
            if sendmsg(ps) != total:
                raise RuntimeError("short sendmsg")
            d()

    gather = "SocketChannel.write(64 pooled bufs): 1 sendmsg"
    each = "SocketChannel.write(buf) x 64"
    send64 = "sock.sendall(bytes) x 64"
    joined = 'sock.sendall(b"".join(64 bytes))'
    hot = 'sock.sendall(b"".join(64 bytes)), one set every time'
    bare = "sock.sendmsg(64 bytes): bare Python gather"
    cases = [
        Case(gather, k, zcio_gather, prepare=rewind),
        Case(each, k, zcio_each, prepare=rewind),
        Case(send64, k, sends),
        Case(joined, k, join_send),
        Case(hot, k, join_send_hot),
        Case(bare, k, bare_sendmsg),
    ]
    compares = [
        Compare(gather, send64, "time", 1.0),
        Compare(gather, joined, "time", 1.0),
        Compare(gather, hot),
        Compare(gather, bare),
        Compare(each, send64),
    ]

    def cleanup() -> None:
        for bufs in sets:
            for b in bufs:
                b.release()
        sink_mv.release()
        ch.close()
        client.close()
        peer.close()

    return Group(f"gather write of {PARTS} x {PART} B to TCP loopback (+ drain)", cases,
                 compares, cleanup)


# -- running --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    # options "--quick", "--rounds", "--json" (run_all.py looks for them in this file)
    return _harness.main(
        argv,
        benchmark="pool",
        description="zcio's pooled allocator against unpooled allocation and bytearray; "
        "a gather write against per-buffer sends and joining "
        "(interleaved rounds, medians, ratios from the same run).",
        builders=[alloc_group, gather_group],
        settings={
            "per_loop": {"allocs": ALLOCS, "gather_writes": WRITES},
            "bytes": {"alloc": ALLOC, "gather_parts": PARTS, "gather_part": PART},
        },
        leak_detection=True,
    )


if __name__ == "__main__":
    sys.exit(main())
