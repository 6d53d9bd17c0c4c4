"""Relative cost of zcio's ByteBuffer operations against bare-Python anchors.

Run by hand, not by CI::

    .venv/bin/python benchmarks/buffer_ops.py [--quick] [--rounds N] [--json PATH]

Every benchmark is a group of cases (subjects and their anchors) that touch the same
memory.  A round times one short loop (well under a millisecond) of every case in the
group with ``perf_counter_ns``, in a fresh random order, so subject and anchor are
interleaved and share whatever the machine is doing; loops that short mostly run
undisturbed, so the median is robust to preemption on a loaded machine.  Each case's
ns/op is the median over the rounds (200 by default), and a ratio is formed from two
medians of the same run.  Absolute times are noise on a shared machine; only ratios
mean anything.

Nothing is subtracted: loop overhead stays in both sides, which run the same loop
shape (``for x in range(...): f(...)`` with ``f`` hoisted into a local).  The empty
loop's cost is printed for information only.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import _harness
from _harness import Case, Compare, Group

from zcio import ByteBuffer, ByteOrder

KIB = 1 << 10
MIB = 1 << 20
INT_BUF = 16 * KIB  # buffer walked by the get_int/put_int loops: 4096 ops a pass
BULK = 1 * MIB  # bulk put/get size
ALLOC = 64 * KIB  # allocation size
VALUE = 0x12345678  # what put_int writes


@dataclass(frozen=True)
class Sizes:
    """Work per timed loop (one loop per case per round)."""

    int_passes: int  # passes over the int buffer (INT_BUF // 4 ops each)
    bulk_copies: int  # 1 MiB copies
    allocs: int  # 64 KiB allocations


SIZES = Sizes(int_passes=1, bulk_copies=4, allocs=25)


# -- get_int / put_int ----------------------------------------------------------------


def _int_group(direct: bool, op: Literal["get", "put"], sz: Sizes) -> Group:
    kind = "direct" if direct else "heap"
    buf = ByteBuffer.allocate_direct(INT_BUF) if direct else ByteBuffer.allocate(INT_BUF)
    mv = buf.memoryview()  # the very bytes buf reads and writes
    n, passes = INT_BUF, sz.int_passes
    count = n // 4
    ops = count * passes
    st = struct.Struct(">i")

    def zcio_get_rel() -> None:
        rewind, get_int = buf.rewind, buf.get_int
        for _ in range(passes):
            rewind()
            for _ in range(count):
                get_int()

    def zcio_get_abs() -> None:
        get_int = buf.get_int
        for _ in range(passes):
            for off in range(0, n, 4):
                get_int(off)

    def struct_get() -> None:
        unpack_from, m = struct.unpack_from, mv
        for _ in range(passes):
            for off in range(0, n, 4):
                unpack_from(">i", m, off)

    def struct_obj_get() -> None:
        unpack_from, m = st.unpack_from, mv
        for _ in range(passes):
            for off in range(0, n, 4):
                unpack_from(m, off)

    def zcio_put_rel() -> None:
        clear, put_int, v = buf.clear, buf.put_int, VALUE
        for _ in range(passes):
            clear()
            for _ in range(count):
                put_int(v)

    def zcio_put_abs() -> None:
        put_int, v = buf.put_int, VALUE
        for _ in range(passes):
            for off in range(0, n, 4):
                put_int(off, v)

    def struct_put() -> None:
        pack_into, m, v = struct.pack_into, mv, VALUE
        for _ in range(passes):
            for off in range(0, n, 4):
                pack_into(">i", m, off, v)

    def struct_obj_put() -> None:
        pack_into, m, v = st.pack_into, mv, VALUE
        for _ in range(passes):
            for off in range(0, n, 4):
                pack_into(m, off, v)

    def empty_loop() -> None:
        for _ in range(passes):
            for _ in range(count):
                pass

    bare = f"struct.{'unpack_from' if op == 'get' else 'pack_into'}('>i', mv, off) [{kind}]"
    precompiled = f"Struct('>i').{'unpack_from' if op == 'get' else 'pack_into'} [{kind}]"
    if op == "get":
        rel, ab = f"{kind}.get_int()", f"{kind}.get_int(i)"
        funcs = [zcio_get_rel, zcio_get_abs, struct_get, struct_obj_get]
    else:
        rel, ab = f"{kind}.put_int(v)", f"{kind}.put_int(i, v)"
        funcs = [zcio_put_rel, zcio_put_abs, struct_put, struct_obj_put]
    names = [rel, ab, bare, precompiled]
    cases = [Case(name, ops, f) for name, f in zip(names, funcs, strict=True)]
    compares = [
        Compare(rel, bare, "time", 2.0),  # the goal
        Compare(rel, precompiled),
        Compare(ab, bare),
        Compare(ab, precompiled),
    ]
    if op == "get" and not direct:
        loop = "empty loop: for _ in range(n): pass"
        cases.append(Case(loop, ops, empty_loop))
        compares.append(Compare(loop))

    def cleanup() -> None:
        mv.release()
        buf.release()

    return Group(f"{op}_int over {INT_BUF // KIB} KiB, {kind}", cases, compares, cleanup)


# -- typed views: IntBuffer get/put ---------------------------------------------------


def _view_group(op: Literal["get", "put"], sz: Sizes) -> Group:
    """An IntBuffer view of a little-endian direct buffer against indexing a
    ``memoryview.cast("i")`` of the same memory (native order: the same ints)."""
    buf = ByteBuffer.allocate_direct(INT_BUF).order(ByteOrder.LITTLE_ENDIAN)
    view = buf.as_int_buffer()
    mv = buf.memoryview()
    ints = mv.cast("i")
    passes, count = sz.int_passes, INT_BUF // 4
    ops = count * passes

    def view_get_rel() -> None:
        rewind, get = view.rewind, view.get
        for _ in range(passes):
            rewind()
            for _ in range(count):
                get()

    def view_get_abs() -> None:
        get = view.get
        for _ in range(passes):
            for i in range(count):
                get(i)

    def cast_get() -> None:
        m = ints
        for _ in range(passes):
            for i in range(count):
                m[i]

    def view_put_rel() -> None:
        clear, put, v = view.clear, view.put, VALUE
        for _ in range(passes):
            clear()
            for _ in range(count):
                put(v)

    def view_put_abs() -> None:
        put, v = view.put, VALUE
        for _ in range(passes):
            for i in range(count):
                put(i, v)

    def cast_put() -> None:
        m, v = ints, VALUE
        for _ in range(passes):
            for i in range(count):
                m[i] = v

    anchor = f"memoryview.cast('i'){'[i]' if op == 'get' else '[i] = v'}"
    if op == "get":
        rel, ab, funcs = "IntBuffer.get()", "IntBuffer.get(i)", [view_get_rel, view_get_abs]
    else:
        rel, ab, funcs = "IntBuffer.put(v)", "IntBuffer.put(i, v)", [view_put_rel, view_put_abs]
    cases = [Case(rel, ops, funcs[0]), Case(ab, ops, funcs[1]),
             Case(anchor, ops, cast_get if op == "get" else cast_put)]
    compares = [Compare(rel, anchor, "time", 1.0), Compare(ab, anchor, "time", 1.0)]

    def cleanup() -> None:
        ints.release()
        mv.release()
        buf.release()

    return Group(f"typed view {op} over {INT_BUF // KIB} KiB (IntBuffer, little-endian)",
                 cases, compares, cleanup)


# -- bulk put / get -------------------------------------------------------------------


def _bulk_group(direct: bool, sz: Sizes) -> Group:
    kind = "direct" if direct else "heap"
    buf = ByteBuffer.allocate_direct(BULK) if direct else ByteBuffer.allocate(BULK)
    mv_buf = buf.memoryview()
    src = os.urandom(BULK)  # bytes, as most callers would pass
    dst = bytearray(BULK)
    mv_src, mv_dst = memoryview(src), memoryview(dst)
    n, copies = BULK, sz.bulk_copies

    def zcio_put() -> None:
        clear, put, s = buf.clear, buf.put, src
        for _ in range(copies):
            clear()
            put(s)

    def mv_copy_in() -> None:
        d, s = mv_buf, mv_src
        for _ in range(copies):
            d[0:n] = s[0:n]

    def zcio_get() -> None:
        clear, get, d = buf.clear, buf.get, dst
        for _ in range(copies):
            clear()
            get(d)

    def mv_copy_out() -> None:
        d, s = mv_dst, mv_buf
        for _ in range(copies):
            d[0:n] = s[0:n]

    put_name, in_name = f"{kind}.put(bytes 1 MiB)", f"mv_buf[0:n] = mv_bytes[0:n] [{kind}]"
    get_name, out_name = f"{kind}.get(bytearray 1 MiB)", f"mv_ba[0:n] = mv_buf[0:n] [{kind}]"
    cases = [
        Case(put_name, copies, zcio_put),
        Case(in_name, copies, mv_copy_in),
        Case(get_name, copies, zcio_get),
        Case(out_name, copies, mv_copy_out),
    ]
    compares = [Compare(put_name, in_name, "speed", 0.8), Compare(get_name, out_name, "speed", 0.8)]

    def cleanup() -> None:
        for m in (mv_buf, mv_src, mv_dst):
            m.release()
        buf.release()

    return Group(f"bulk put/get of 1 MiB, {kind}", cases, compares, cleanup)


# -- allocation -----------------------------------------------------------------------


def _alloc_group(sz: Sizes) -> Group:
    k, size = sz.allocs, ALLOC

    def direct_release() -> None:
        alloc = ByteBuffer.allocate_direct
        for _ in range(k):
            alloc(size).release()

    def direct_drop() -> None:
        alloc = ByteBuffer.allocate_direct
        for _ in range(k):
            alloc(size)  # freed by refcounting when the result is dropped

    def heap_drop() -> None:
        alloc = ByteBuffer.allocate
        for _ in range(k):
            alloc(size)

    def bytearray_drop() -> None:
        alloc = bytearray
        for _ in range(k):
            alloc(size)

    def mmap_close() -> None:
        alloc = mmap.mmap
        for _ in range(k):
            alloc(-1, size).close()

    def mmap_private_close() -> None:
        alloc, flags = mmap.mmap, mmap.MAP_PRIVATE
        for _ in range(k):
            alloc(-1, size, flags=flags).close()

    d_rel = "allocate_direct(64 KiB).release()"
    d_drop = "allocate_direct(64 KiB), dropped"
    h_drop = "allocate(64 KiB), dropped"
    ba = "bytearray(65536), dropped"
    mm = "mmap.mmap(-1, 65536).close()"
    mmp = "mmap.mmap(-1, 65536, MAP_PRIVATE).close()"
    cases = [
        Case(d_rel, k, direct_release),
        Case(d_drop, k, direct_drop),
        Case(h_drop, k, heap_drop),
        Case(ba, k, bytearray_drop),
        Case(mm, k, mmap_close),
        Case(mmp, k, mmap_private_close),
    ]
    compares = [
        Compare(d_rel, mm),
        Compare(d_rel, ba),
        Compare(d_drop, mm),
        Compare(d_drop, ba),
        Compare(h_drop, ba),
        Compare(mmp),  # what allocate_direct maps, for information
    ]
    return Group("allocation of 64 KiB", cases, compares)


# -- running --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    sz = SIZES
    builders: list[Callable[[], Group]] = [
        lambda: _int_group(False, "get", sz),
        lambda: _int_group(True, "get", sz),
        lambda: _int_group(False, "put", sz),
        lambda: _int_group(True, "put", sz),
        lambda: _view_group("get", sz),
        lambda: _view_group("put", sz),
        lambda: _bulk_group(False, sz),
        lambda: _bulk_group(True, sz),
        lambda: _alloc_group(sz),
    ]
    # options "--quick", "--rounds", "--json" (run_all.py looks for them in this file)
    return _harness.main(
        argv,
        benchmark="buffer_ops",
        description="zcio ByteBuffer operations against bare-Python anchors "
        "(interleaved rounds, medians, ratios from the same run).",
        builders=builders,
        settings={
            "per_loop": sz.__dict__,
            "bytes": {"int_buffer": INT_BUF, "bulk": BULK, "alloc": ALLOC},
        },
    )


if __name__ == "__main__":
    sys.exit(main())
