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
   Goal (the issue's): pooled at most 1.5 microseconds and faster than both.
2. A gather write of 64 buffers of 128 bytes to a connected TCP loopback socket in one
   ``sendmsg`` (``SocketChannel.write(bufs)``), against 64 ``send`` calls and against
   ``b"".join`` then one ``send``.  Every case then drains the 8 KiB at the other end
   in the same thread (``recv_into``), the same work on every side.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Literal

import zcio
from zcio import ByteBuffer, LeakLevel, PooledAllocator, SocketChannel

KIB = 1 << 10
ALLOC = 64 * KIB  # allocation size
ALLOCS = 25  # allocations per timed loop
PARTS, PART = 64, 128  # gather write: 64 buffers of 128 bytes
WRITES = 8  # gather writes per timed loop
GOAL_ALLOC_NS = 1500.0

Kind = Literal["time", "speed", "abs"]


@dataclass
class Case:
    """One timed loop: ``run()`` performs ``ops`` operations.

    ``prepare()`` runs untimed before every timed loop (and warm-up loop), ``restore()``
    after it: state a loop consumes (buffer positions) or settings it needs (the leak
    level) without timing them.
    """

    name: str
    ops: int
    run: Callable[[], None]
    prepare: Callable[[], None] = lambda: None
    restore: Callable[[], None] = lambda: None
    samples: list[float] = field(default_factory=list)  # ns/op, one per round

    @property
    def median(self) -> float:
        return median(self.samples)


@dataclass(frozen=True)
class Compare:
    """A result row.

    kind "time": ratio = subject / anchor time per op (lower is better), goal a maximum.
    kind "speed": ratio = anchor / subject time per op (higher is better), goal a minimum.
    kind "abs": no anchor; goal a maximum in ns per op.
    No anchor and no goal: an information-only row.
    """

    subject: str
    anchor: str | None = None
    kind: Kind = "time"
    goal: float | None = None


@dataclass
class Group:
    title: str
    cases: list[Case]
    compares: list[Compare]
    cleanup: Callable[[], None] = lambda: None


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

    level = zcio.leak_detection().name
    subject = f"pooled allocate(64 KiB).release() [{level}]"
    with_block = f"with pooled allocate(64 KiB) [{level}]"
    disabled = "pooled allocate(64 KiB).release() [DISABLED]"
    paranoid = "pooled allocate(64 KiB).release() [PARANOID]"
    unpooled = "allocate_direct(64 KiB).release()"
    ba = "bytearray(65536), dropped"
    cases = [
        Case(subject, k, pooled),
        Case(with_block, k, pooled_with),
        Case(disabled, k, pooled, *_with_level(LeakLevel.DISABLED)),
        Case(paranoid, k, pooled, *_with_level(LeakLevel.PARANOID)),
        Case(unpooled, k, direct),
        Case(ba, k, heap),
    ]
    compares = [
        Compare(subject, None, "abs", GOAL_ALLOC_NS),
        Compare(subject, unpooled, "time", 1.0),
        Compare(subject, ba, "time", 1.0),
        Compare(with_block, subject),
        Compare(disabled, subject),
        Compare(paranoid, subject),
        Compare(unpooled, ba),
    ]
    return Group("allocate + release of 64 KiB", cases, compares)


# -- 2. gather write of 64 small buffers ----------------------------------------------------


def _loopback() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    for s in (client, peer):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return client, peer


def gather_group(k: int = WRITES) -> Group:
    client, peer = _loopback()
    ch = SocketChannel.from_socket(client)
    pool = PooledAllocator.default()
    total = PARTS * PART
    payload = os.urandom(total)
    parts = [payload[i * PART : (i + 1) * PART] for i in range(PARTS)]
    sets = []  # one set of 64 buffers per write of a loop: rewound untimed
    for _ in range(k):
        bufs = [pool.allocate(PART).put(0, p) for p in parts]
        sets.append(bufs)
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
        send, d, ps = client.sendall, drain, parts
        for _ in range(k):
            for p in ps:
                send(p)
            d()

    def join_send() -> None:
        send, d, ps, join = client.sendall, drain, parts, b"".join
        for _ in range(k):
            send(join(ps))
            d()

    def bare_sendmsg() -> None:
        sendmsg, d, ps = client.sendmsg, drain, parts
        for _ in range(k):
            if sendmsg(ps) != total:
                raise RuntimeError("short sendmsg")
            d()

    gather = "SocketChannel.write(64 pooled bufs): 1 sendmsg"
    each = "SocketChannel.write(buf) x 64"
    send64 = "sock.sendall(bytes) x 64"
    joined = 'sock.sendall(b"".join(64 bytes))'
    bare = "sock.sendmsg(64 bytes): bare Python gather"
    cases = [
        Case(gather, k, zcio_gather, prepare=rewind),
        Case(each, k, zcio_each, prepare=rewind),
        Case(send64, k, sends),
        Case(joined, k, join_send),
        Case(bare, k, bare_sendmsg),
    ]
    compares = [
        Compare(gather, send64, "time", 1.0),
        Compare(gather, joined, "time", 1.0),
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


@contextmanager
def _gc_disabled() -> Iterator[None]:
    """As timeit: no cyclic collection inside a timed loop (refcounting still frees)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def run_group(group: Group, rounds: int) -> None:
    """Warm up every case, then time ``rounds`` interleaved rounds in random order."""
    cases = group.cases
    rng = random.Random(1729)
    clock = time.perf_counter_ns
    order = list(range(len(cases)))
    with _gc_disabled():
        for _ in range(3):
            for case in cases:
                case.prepare()
                case.run()
                case.restore()
    for _ in range(rounds):
        rng.shuffle(order)
        with _gc_disabled():
            for i in order:
                case = cases[i]
                case.prepare()
                t0 = clock()
                case.run()
                t1 = clock()
                case.restore()
                case.samples.append((t1 - t0) / case.ops)
        gc.collect()


@dataclass(frozen=True)
class Row:
    group: str
    name: str
    median_ns: float
    anchor: str | None
    anchor_median_ns: float | None
    kind: Kind
    ratio: float | None  # ratio of the two medians, as ``kind`` defines it
    paired_ratio: float | None  # median of the per-round ratios (robustness check)
    goal: float | None
    met: bool | None


def _ratio(kind: Kind, subject: float, anchor: float) -> float:
    return anchor / subject if kind == "speed" else subject / anchor


def rows_of(group: Group) -> list[Row]:
    by_name = {c.name: c for c in group.cases}
    rows = []
    for cmp in group.compares:
        s = by_name[cmp.subject]
        if cmp.anchor is None:
            met = None if cmp.goal is None else s.median <= cmp.goal
            rows.append(Row(group.title, s.name, s.median, None, None, cmp.kind,
                            None, None, cmp.goal, met))
            continue
        a = by_name[cmp.anchor]
        ratio = _ratio(cmp.kind, s.median, a.median)
        paired = median(
            _ratio(cmp.kind, x, y) for x, y in zip(s.samples, a.samples, strict=True)
        )
        met = None
        if cmp.goal is not None:
            met = ratio >= cmp.goal if cmp.kind == "speed" else ratio <= cmp.goal
        rows.append(Row(group.title, s.name, s.median, a.name, a.median, cmp.kind,
                        ratio, paired, cmp.goal, met))
    return rows


def _fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    return f"{ns:,.0f}" if ns >= 100 else f"{ns:.1f}"


def _goal_text(row: Row) -> str:
    if row.goal is None:
        return "-"
    if row.kind == "abs":
        return f"<= {_fmt_ns(row.goal)} ns"
    return f"{row.kind} {'>=' if row.kind == 'speed' else '<='} {row.goal:.2f}"


def format_table(rows: Sequence[Row]) -> str:
    header = ("benchmark", "median ns/op", "anchor", "anchor ns/op", "ratio", "goal", "met?")
    body: list[tuple[str, ...] | str] = []
    group = None
    for row in rows:
        if row.group != group:
            group = row.group
            body.append(f"-- {group}")
        ratio = "-" if row.ratio is None else f"{row.ratio:.3f} {row.kind}"
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        body.append((row.name, _fmt_ns(row.median_ns), row.anchor or "-",
                     _fmt_ns(row.anchor_median_ns), ratio, _goal_text(row), met))
    cells = [header] + [b for b in body if isinstance(b, tuple)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    right = {1, 3, 4}

    def line(cols: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cols, widths, strict=True))
        ).rstrip()

    out = [line(header), line(tuple("-" * w for w in widths))]
    out += [b if isinstance(b, str) else line(b) for b in body]
    return "\n".join(out)


def machine_info() -> dict[str, Any]:
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = None
    return {
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "zcio": zcio.__version__,
        "leak_detection": zcio.leak_detection().name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="zcio's pooled allocator against unpooled allocation and bytearray; "
        "a gather write against per-buffer sends and joining "
        "(interleaved rounds, medians, ratios from the same run)."
    )
    p.add_argument("--quick", action="store_true",
                   help="a fast smoke run (5 rounds); numbers unreliable")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds per benchmark (default 200, 5 with --quick)")
    p.add_argument("--json", metavar="PATH", help="also write results and machine info to PATH")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 5 if args.quick else 200
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    builders: list[Callable[[], Group]] = [alloc_group, gather_group]
    info = machine_info()
    print(f"zcio {info['zcio']}, Python {platform.python_version()}, {info['platform']}, "
          f"{info['cpu_count']} CPUs; leak detection {info['leak_detection']}")
    print(f"{args.rounds} interleaved rounds per benchmark{' (--quick)' if args.quick else ''}; "
          "medians; loop overhead NOT subtracted on either side (same loop shape both sides)")
    rows: list[Row] = []
    samples: dict[str, dict[str, list[float]]] = {}
    t_start = time.perf_counter()
    for build in builders:
        group = build()
        try:
            run_group(group, args.rounds)
        finally:
            group.cleanup()
        rows += rows_of(group)
        samples[group.title] = {c.name: c.samples for c in group.cases}
    elapsed = time.perf_counter() - t_start
    print()
    print(format_table(rows))
    print()
    print("ratio: 'time' = subject ns / anchor ns (lower is better); "
          "'speed' = anchor ns / subject ns (higher is better).")
    goals = [r for r in rows if r.met is not None]
    print(f"goals met: {sum(bool(r.met) for r in goals)}/{len(goals)}; "
          f"ran in {elapsed:.1f} s")
    if args.json:
        doc = {
            "benchmark": "pool",
            "machine": info,
            "settings": {
                "rounds": args.rounds,
                "quick": args.quick,
                "per_loop": {"allocs": ALLOCS, "gather_writes": WRITES},
                "bytes": {"alloc": ALLOC, "gather_parts": PARTS, "gather_part": PART},
                "loop_overhead_subtracted": False,
                "ratio": "ratio of medians; paired_ratio = median of per-round ratios",
            },
            "results": [r.__dict__ for r in rows],
            "samples_ns_per_op": samples,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
