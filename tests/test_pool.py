"""PooledAllocator: size classes, slot reuse, thread caches, trimming, the direct cap,
quarantine of slots a user's view still reaches, and a threaded stress test.

Most tests use their own small allocators (64 KiB chunks: slabs are cheap to make), each
checked at teardown: trimmed, no live buffer, nothing mapped.  The suite's own leak
check then requires the direct pool back at zero.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import mmap
import os
import queue
import random
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pytest

import zcio
from buffer_kinds import STRICT_POOLED, pattern
from zcio import (
    ByteBuffer,
    ByteOrder,
    IllegalArgumentError,
    IndexOutOfBoundsError,
    OutOfDirectMemoryError,
    PooledAllocator,
)
from zcio._pool import size_class, slab_length

PAGE = mmap.PAGESIZE
KIB = 1 << 10
CHUNK = 64 * KIB

T = TypeVar("T", bound=Callable[..., None])
_names = itertools.count()


@pytest.fixture(autouse=True)
def _gc_freeze() -> Iterator[None]:
    """Speed only (as in test_contract): gc.collect() scans what the test made."""
    gc.freeze()
    yield
    gc.unfreeze()


class Pools:
    """Makes small allocators; ``check()`` trims each and requires it to hold nothing."""

    def __init__(self) -> None:
        self.made: list[PooledAllocator] = []

    def __call__(self, chunk_size: int = CHUNK, **kw: int) -> PooledAllocator:
        pool = PooledAllocator(chunk_size=chunk_size, name=f"test-pool-{next(_names)}", **kw)
        self.made.append(pool)
        return pool

    def check(self) -> None:
        gc.collect()
        problems = []
        for pool in self.made:
            try:
                pool.trim()
            except Exception as e:
                problems.append(f"{pool.name}.trim() raised {e!r}")
            live, cache = pool.pool_infos()
            if (live.count, live.total_capacity, live.memory_used, cache.count) != (0, 0, 0, 0):
                problems.append(f"{pool!r} not back at zero")
        assert not problems, "; ".join(problems)


MakePool = Pools


@pytest.fixture
def make_pool() -> Iterator[Pools]:
    pools = Pools()
    yield pools
    pools.check()


def isolated(test: T) -> T:
    """Run the test in a forked child, with its allocators' checks and the suite's own
    (direct pool back where it was) done there too.

    For tests that map several slabs of a class: if unmapping one fails, the direct pool
    stays counted for good, and in this process that would fail every later test's leak
    check.  The child's failure (traceback) fails the test here.
    """

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            report = b""
            try:
                os.close(r)
                before = zcio.buffer_pools()[0]
                test(*args, **kwargs)
                for arg in (*args, *kwargs.values()):
                    if isinstance(arg, Pools):
                        arg.check()
                gc.collect()
                after = zcio.buffer_pools()[0]
                assert after == before, f"direct pool {after}, was {before}"
            except BaseException:
                report = traceback.format_exc().encode()
            finally:
                with os.fdopen(w, "wb") as f:
                    f.write(report)
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            report = f.read()
        _, status = os.waitpid(pid, 0)
        if report:
            pytest.fail(f"in a forked child:\n{report.decode()}", pytrace=False)
        assert status == 0, f"child exited with status {status}"

    return run  # type: ignore[return-value]


def direct() -> tuple[int, int]:
    """The direct pool's (count, memory used)."""
    info = zcio.buffer_pools()[0]
    assert info.name == "direct"
    return info.count, info.memory_used


def live(pool: PooledAllocator) -> tuple[int, int]:
    """(live buffers, their capacity)."""
    info = pool.pool_infos()[0]
    return info.count, info.total_capacity


def mapped(pool: PooledAllocator) -> int:
    return pool.pool_infos()[0].memory_used


def cached(pool: PooledAllocator) -> int:
    return pool.pool_infos()[1].count


# -- size classes ----------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "expected"), [
    (0, (0, 16)), (1, (0, 16)), (16, (0, 16)), (17, (1, 20)), (20, (1, 20)), (21, (2, 24)),
    (28, (3, 28)), (29, (4, 32)), (32, (4, 32)), (33, (5, 40)), (40, (5, 40)),
    (41, (6, 48)), (57, (8, 64)), (64, (8, 64)), (65, (9, 80)), (100, (11, 112)),
    (1000, (24, 1024)), (1024, (24, 1024)), (1025, (25, 1280)), (4096, (32, 4096)),
    (4097, (33, 5120)), (65536, (48, 65536)), (65537, (49, 81920)),
    (4 << 20, (72, 4 << 20)),
])
def test_size_class_table(n: int, expected: tuple[int, int]) -> None:
    assert size_class(n) == expected


def test_size_classes_are_contiguous_and_waste_under_a_quarter() -> None:
    previous = (0, 16)
    for n in range(1, (1 << 17) + 2):
        index, size = size_class(n)
        assert size >= n
        assert size == 16 or size - n < n / 4, n  # four steps per power of two
        assert index in (previous[0], previous[0] + 1), n
        assert (index == previous[0]) == (size == previous[1]), n
        previous = (index, size)


def test_class_sizes_are_the_boundaries() -> None:
    sizes = [16]
    while sizes[-1] < 1 << 20:
        sizes.append(size_class(sizes[-1] + 1)[1])
    assert sizes[:10] == [16, 20, 24, 28, 32, 40, 48, 56, 64, 80]
    for i, size in enumerate(sizes):
        assert size_class(size) == (i, size)
        if size < 1 << 20:
            assert size_class(size + 1) == (i + 1, sizes[i + 1])


# -- allocation -------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, 1, 15, 16, 17, 100, 1000, 1024, 1025, CHUNK])
def test_allocate_gives_a_fresh_buffer_of_exactly_the_capacity(
    make_pool: MakePool, capacity: int
) -> None:
    pool = make_pool()
    buf = pool.allocate(capacity)
    assert (buf.capacity(), buf.limit(), buf.position(), buf.mark_value()) == (
        capacity, capacity, 0, -1)
    assert buf.order() is ByteOrder.BIG_ENDIAN
    assert buf.is_direct() and not buf.is_read_only() and not buf.has_array()
    assert buf.ref_cnt() == 1
    assert len(buf.memoryview()) == capacity
    assert repr(buf) == f"zcio.DirectByteBuffer[pos=0 lim={capacity} cap={capacity}]"
    assert live(pool) == (1, capacity)
    buf.put(0, b"\x01" * capacity)
    with pytest.raises(IndexOutOfBoundsError):
        buf.put(capacity, 1)
    assert buf.release() is True
    assert live(pool) == (0, 0)


def test_a_1000_byte_buffer_in_the_1024_class_sees_only_its_1000_bytes(
    make_pool: MakePool,
) -> None:
    pool = make_pool(cache_size=0)
    bufs = [pool.allocate(1000) for _ in range(3)]
    addresses = [b.address() for b in bufs]
    assert len(set(addresses)) == 3
    assert all((a - addresses[0]) % 1024 == 0 for a in addresses)  # slots of the class
    for i, buf in enumerate(bufs):
        buf.put(0, bytes([0x10 + i]) * 1000)
    for i, buf in enumerate(bufs):
        assert bytes(buf) == bytes([0x10 + i]) * 1000  # no neighbour wrote over it
        with pytest.raises(IndexOutOfBoundsError):
            buf.put(1000, 1)
        with pytest.raises(IndexOutOfBoundsError):
            buf.slice(0, 1001)
        with pytest.raises(IndexOutOfBoundsError):
            buf.get(0, bytearray(1024))
    assert live(pool) == (3, 3000)
    for buf in bufs:
        buf.release()


@pytest.mark.parametrize("capacity", [10.5, 100.5, "8", None, True],
                         ids=["float", "float-large", "str", "none", "bool"])
def test_allocate_checks_the_capacity_like_byte_buffer_allocate(
    make_pool: MakePool, capacity: Any
) -> None:
    """As ``ByteBuffer.allocate``/``allocate_direct``: TypeError for anything but an
    integer, and a failed call takes no slot."""
    with pytest.raises(TypeError):
        ByteBuffer.allocate_direct(capacity)
    pool = make_pool()
    with pytest.raises(TypeError):
        pool.allocate(capacity)
    gc.collect()
    assert live(pool) == (0, 0)


def test_allocate_takes_a_numpy_integer_capacity(make_pool: MakePool) -> None:
    """An integer is anything with ``__index__`` (operator.index), numpy's included."""
    pool = make_pool()
    with pool.allocate(np.int64(100)) as buf:
        assert buf.capacity() == 100
    assert live(pool) == (0, 0)


def test_the_strict_pooled_kinds_build_what_the_contract_expects() -> None:
    """The pooled kinds waiting in buffer_kinds.STRICT_POOLED (see there), checked here
    meanwhile: content exactly as asked whatever the slot held before, fresh indexes,
    strict counts."""
    for kind in STRICT_POOLED:
        for capacity in (100, 1000, 3000):  # no tiny classes: their slabs are slow (see
            data = pattern(capacity, seed=capacity)  # test_a_new_slab_costs_...)
            buf = kind.fresh(capacity, data)
            assert (buf.position(), buf.limit(), buf.capacity()) == (0, capacity, capacity)
            assert buf.is_direct() and not buf.is_read_only()
            assert bytes(buf) == data, (kind, capacity)
            zeros = kind.fresh(capacity)  # no content: zeros, though the slot held dirt
            assert bytes(zeros) == bytes(capacity), (kind, capacity)
            assert buf.release() is True and zeros.release() is True
            with pytest.raises(zcio.IllegalReferenceCountError):
                buf.release()


def test_allocate_rejects_a_negative_capacity(make_pool: MakePool) -> None:
    with pytest.raises(IllegalArgumentError):
        make_pool().allocate(-1)


@pytest.mark.parametrize("kwargs", [
    {"chunk_size": 1000}, {"chunk_size": PAGE // 2}, {"chunk_size": 3 * PAGE},
    {"cache_size": -1}, {"max_cached_capacity": -1},
])
def test_constructor_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(IllegalArgumentError):
        PooledAllocator(**kwargs)


def test_default_is_one_allocator_even_when_threads_race_to_create_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(PooledAllocator, "_default", None)
    start = threading.Barrier(8)
    got: list[PooledAllocator] = []

    def get() -> None:
        start.wait()
        got.append(PooledAllocator.default())

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(a is got[0] for a in got)
    assert PooledAllocator.default() is got[0]


def test_pools_are_listed_by_name_in_buffer_pools(make_pool: MakePool) -> None:
    pool = make_pool()
    buf = pool.allocate(100)
    by_name = {p.name: p for p in zcio.buffer_pools()}
    assert by_name[pool.name] == zcio.BufferPoolInfo(pool.name, 1, 100, slab_length(112, CHUNK))
    assert by_name[f"{pool.name}-cache"].count == 0
    assert repr(pool) == (f"zcio.PooledAllocator[chunk={CHUNK} live=1 "
                          f"mapped={slab_length(112, CHUNK)} cached=0]")
    buf.release()
    assert cached(pool) == 1
    assert pool.pool_infos()[1] == zcio.BufferPoolInfo(f"{pool.name}-cache", 1, 112, 0)


def test_slabs_count_in_the_direct_pool(make_pool: MakePool) -> None:
    before = direct()
    pool = make_pool()
    bufs = [pool.allocate(n) for n in (16, 16, 1000, 4096)]
    slabs = sum(slab_length(size, CHUNK) for size in (16, 1024, 4096))  # one per class
    assert direct() == (before[0] + 3, before[1] + slabs)
    assert mapped(pool) == slabs
    for buf in bufs:
        buf.release()
    pool.trim()
    assert direct() == before


def test_a_new_slab_costs_no_python_object_per_slot() -> None:
    """A 1 MiB chunk holds 65536 slots of 16 bytes (the default 4 MiB chunk, 262144): a
    first small allocation must not build a Python object for each (~0.8 KiB of heap a
    slot: 200 MiB and seconds for the default chunk, every time a slab is remade)."""
    pool = PooledAllocator(chunk_size=1 << 20, name="test-slab-cost")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        buf = pool.allocate(16)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    buf.release()
    pool.trim()
    assert grown < 1 << 20, f"{grown / (1 << 20):.0f} MiB of Python heap for one 1 MiB slab"


@isolated
def test_a_dropped_allocator_is_collected_and_gives_its_slabs_back() -> None:
    """An allocator nobody references any more goes away with its memory, as any
    Python object would (in a child: its slab would otherwise stay counted for good)."""
    before = direct()
    pool = PooledAllocator(chunk_size=CHUNK, name="test-dropped")
    pool.allocate(100).release()  # a thread cache, and a slab with a free slot
    assert direct()[0] == before[0] + 1
    ref = weakref.ref(pool)
    del pool
    gc.collect()
    assert ref() is None, "the allocator is still alive"
    assert direct() == before
    assert "test-dropped" not in {p.name for p in zcio.buffer_pools()}


# -- reuse and thread caches ---------------------------------------------------------------------


def test_a_released_slot_is_reused_in_the_same_thread(make_pool: MakePool) -> None:
    pool = make_pool()
    a = pool.allocate(100)
    address = a.address()
    a.put(0, b"previous owner")
    a.release()
    b = pool.allocate(110)  # the same 112-byte class
    assert b.address() == address
    # Not zeroed (as Netty's pooled buffers): the previous content shows.
    assert bytes(b.duplicate().limit(14)) == b"previous owner"
    b.release()


def test_different_classes_never_share_a_slot(make_pool: MakePool) -> None:
    pool = make_pool()
    a = pool.allocate(100)
    address = a.address()
    a.release()
    b = pool.allocate(200)
    assert b.address() != address
    b.release()


def test_thread_cache_keeps_at_most_cache_size_per_class(make_pool: MakePool) -> None:
    pool = make_pool(cache_size=4)
    bufs = [pool.allocate(256) for _ in range(10)]
    for buf in bufs:
        buf.release()
    assert cached(pool) == 4
    assert live(pool) == (0, 0)
    more = [pool.allocate(512) for _ in range(3)]
    for buf in more:
        buf.release()
    assert cached(pool) == 7  # per class


def test_classes_above_max_cached_capacity_are_not_cached(make_pool: MakePool) -> None:
    pool = make_pool(max_cached_capacity=1024)
    for size in (1024, 1025, 4096):
        pool.allocate(size).release()
    assert pool.pool_infos()[1].total_capacity == 1024


def test_cache_size_zero_caches_nothing(make_pool: MakePool) -> None:
    pool = make_pool(cache_size=0)
    for _ in range(3):
        pool.allocate(100).release()
    assert cached(pool) == 0


def _in_thread(target: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert not t.is_alive()
    if errors:
        raise errors[0]


@isolated
def test_a_dead_thread_s_cache_goes_back_to_the_arena(make_pool: MakePool) -> None:
    pool = make_pool()
    cached_now = threading.Event()
    finish = threading.Event()
    addresses: list[int] = []

    def work() -> None:
        bufs = [pool.allocate(300) for _ in range(8)]
        addresses.extend(b.address() for b in bufs)
        for b in bufs:
            b.release()
        cached_now.set()
        finish.wait(30)

    t = threading.Thread(target=work)
    t.start()
    assert cached_now.wait(30)
    assert cached(pool) == 8  # counted from the main thread, across threads
    pool.trim()  # trims this thread's cache only: the worker's slots keep the slab
    assert mapped(pool) == slab_length(320, CHUNK)
    finish.set()
    t.join(30)
    gc.collect()
    assert cached(pool) == 0
    assert live(pool) == (0, 0)
    again = pool.allocate(300)
    assert again.address() in addresses  # from the arena, where the cache went
    again.release()
    pool.trim()
    assert mapped(pool) == 0


@isolated
def test_a_dead_thread_s_cache_never_waits_for_the_lock(make_pool: MakePool) -> None:
    """A dead thread's cache is given back wherever its last reference goes: the
    thread's own teardown, or the garbage collector at any allocation, also while some
    thread holds the allocator's lock.  Its finalizer must not wait for that lock (the
    thread would never finish, or a thread would wait for itself); its slots and counts
    are folded in the next time the lock is taken."""
    pool = make_pool()
    handed: list[ByteBuffer] = []
    ready, may_exit = threading.Event(), threading.Event()

    def work() -> None:
        bufs = [pool.allocate(300) for _ in range(3)]
        for b in bufs[1:]:
            b.release()  # two slots in this thread's cache
        handed.append(bufs[0])  # one still live, released by the main thread
        ready.set()
        may_exit.wait(30)

    t = threading.Thread(target=work)
    t.start()
    assert ready.wait(30)  # done allocating: the lock is taken only for its exit
    with pool._lock:
        may_exit.set()
        t.join(10)
        finished = not t.is_alive()
    t.join(30)
    assert finished, "the dying thread waited for the allocator's lock"
    gc.collect()
    assert cached(pool) == 0
    assert live(pool) == (1, 300)  # the dead thread's count, folded in
    handed[0].release()
    assert live(pool) == (0, 0)
    pool.trim()
    assert mapped(pool) == 0


def test_release_in_another_thread(make_pool: MakePool) -> None:
    pool = make_pool()
    bufs = [pool.allocate(64) for _ in range(5)]
    for buf in bufs:
        buf.put(0, b"x" * 64)

    def release_all() -> None:
        for buf in bufs:
            assert buf.release() is True

    _in_thread(release_all)
    gc.collect()
    assert live(pool) == (0, 0)
    assert cached(pool) == 0


# -- trim and automatic unmapping ----------------------------------------------------------------


@isolated
def test_trim_unmaps_every_free_slab(make_pool: MakePool) -> None:
    before = direct()
    pool = make_pool()
    for size in (16, 100, 1000, 5000, CHUNK):
        bufs = [pool.allocate(size) for _ in range(3)]
        for b in bufs:
            b.release()
    assert direct()[0] == before[0] + 4 + 3  # a chunk-sized class has one slot a slab
    pool.trim()
    assert direct() == before
    assert (mapped(pool), cached(pool)) == (0, 0)


@isolated
def test_trim_keeps_slabs_that_hold_live_buffers(make_pool: MakePool) -> None:
    before = direct()
    pool = make_pool()
    keep = pool.allocate(1000)
    pool.allocate(1000).release()
    pool.allocate(5000).release()
    pool.trim()
    assert direct() == (before[0] + 1, before[1] + slab_length(1024, CHUNK))
    assert mapped(pool) == slab_length(1024, CHUNK)
    keep.put(0, b"still mine")
    assert bytes(keep.duplicate().limit(10)) == b"still mine"
    keep.release()
    pool.trim()
    assert direct() == before


@isolated
def test_an_emptied_slab_is_unmapped_when_another_has_room(make_pool: MakePool) -> None:
    before = direct()
    pool = make_pool(cache_size=0)
    size = CHUNK // 4  # 4 slots a slab
    bufs = [pool.allocate(size) for _ in range(8)]
    assert direct()[0] == before[0] + 2
    first = sorted(b.address() for b in bufs[:4])
    assert first[-1] - first[0] == 3 * size  # the first four share a slab
    bufs[4].release()  # the second slab has room now
    for b in bufs[:3]:
        b.release()
    assert direct()[0] == before[0] + 2
    bufs[3].release()  # empties the first slab: unmapped at once
    assert direct() == (before[0] + 1, before[1] + CHUNK)
    assert mapped(pool) == CHUNK
    for b in bufs[5:]:
        b.release()
    assert mapped(pool) == CHUNK  # the last free slab stays (for trim)
    pool.trim()
    assert direct() == before


# -- huge allocations and the direct cap -------------------------------------------------------


def test_huge_allocations_are_unpooled(make_pool: MakePool) -> None:
    before = direct()
    pool = make_pool()
    huge = pool.allocate(CHUNK + 1)
    assert huge.capacity() == CHUNK + 1 and huge.is_direct()
    assert huge.address() % PAGE == 0  # a mapping of its own
    assert bytes(huge) == bytes(CHUNK + 1)
    assert live(pool) == (0, 0) and mapped(pool) == 0
    info = zcio.buffer_pools()[0]
    assert (info.count, info.total_capacity) == (before[0] + 1, CHUNK + 1)
    assert huge.release() is True
    assert direct() == before  # freed at once, not kept
    whole = pool.allocate(CHUNK)  # exactly one chunk: still pooled
    assert live(pool) == (1, CHUNK)
    whole.release()


@isolated
def test_the_direct_cap_applies_to_slabs(make_pool: MakePool) -> None:
    before = direct()
    pool = make_pool()
    zcio.set_max_direct_memory(before[1] + CHUNK // 2)
    with pytest.raises(OutOfDirectMemoryError):
        pool.allocate(CHUNK // 4)  # a class whose slab is a whole chunk
    with pytest.raises(OutOfDirectMemoryError):
        pool.allocate(CHUNK + 1)
    assert direct() == before
    assert live(pool) == (0, 0) and mapped(pool) == 0
    zcio.set_max_direct_memory(before[1] + CHUNK)
    bufs = [pool.allocate(CHUNK // 4) for _ in range(4)]  # the one slab the cap allows
    with pytest.raises(OutOfDirectMemoryError):
        pool.allocate(CHUNK // 4)
    with pytest.raises(OutOfDirectMemoryError):
        pool.allocate(16)
    assert live(pool) == (4, CHUNK)
    bufs[0].release()
    again = pool.allocate(CHUNK // 4)  # a free slot needs no new memory
    assert live(pool) == (4, CHUNK)
    for b in (*bufs[1:], again):
        b.release()
    pool.trim()
    assert direct() == before


# -- quarantine ----------------------------------------------------------------------------------


def _reused(pool: PooledAllocator, size: int, address: int, tries: int) -> bool:
    """Whether one of ``tries`` fresh allocations lands on ``address``."""
    bufs = [pool.allocate(size) for _ in range(tries)]
    found = any(b.address() == address for b in bufs)
    for b in bufs:
        b.release()
    return found


@pytest.mark.parametrize("cache_size", [64, 0])
def test_a_view_sliced_from_a_pooled_buffer_keeps_its_slot_out_of_reuse(
    make_pool: MakePool, cache_size: int
) -> None:
    pool = make_pool(cache_size=cache_size)
    size = 4096  # 16 slots a slab
    buf = pool.allocate(size)
    address = buf.address()
    held = buf.memoryview()[100:200]  # sliced further: release cannot revoke it
    buf.release()
    assert live(pool) == (0, 0)  # the buffer is gone; its slot is not free
    others = [pool.allocate(size) for _ in range(15)]
    assert address not in {b.address() for b in others}
    for b in others:
        b.put(0, bytes(size))
    held[:] = b"\xab" * 100  # the stale view writes only to the quarantined slot
    assert all(bytes(b) == bytes(size) for b in others)
    for b in others:
        b.release()
    pool.trim()
    assert mapped(pool) == CHUNK  # trim cannot unmap the slab either
    del held
    assert _reused(pool, size, address, 16)
    pool.trim()
    assert mapped(pool) == 0


def test_a_numpy_array_over_a_pooled_buffer_keeps_its_slot_out_of_reuse(
    make_pool: MakePool,
) -> None:
    pool = make_pool()
    buf = pool.allocate(1000)
    address = buf.address()
    arr = np.frombuffer(buf.memoryview(), dtype=np.uint8)
    buf.release()
    other = pool.allocate(1000)
    assert other.address() != address
    other.put(0, bytes(1000))
    arr[:] = 7  # writable still: it is the quarantined slot, not other's
    assert bytes(other) == bytes(1000)
    other.release()
    del arr
    assert _reused(pool, 1000, address, 64)


def test_a_memoryview_zcio_can_revoke_does_not_quarantine(make_pool: MakePool) -> None:
    pool = make_pool()
    buf = pool.allocate(1000)
    address = buf.address()
    view = buf.memoryview()
    buf.release()
    with pytest.raises(ValueError):
        view[0]
    again = pool.allocate(1000)
    assert again.address() == address  # straight back: nothing can reach it
    again.release()


def test_quarantined_slots_of_a_dead_thread_are_freed_later(make_pool: MakePool) -> None:
    pool = make_pool()
    held: list[memoryview] = []

    def work() -> None:
        buf = pool.allocate(2000)
        held.append(buf.memoryview()[0:10])
        buf.release()

    _in_thread(work)
    gc.collect()
    pool.trim()
    assert mapped(pool) > 0
    held.clear()
    pool.trim()
    assert mapped(pool) == 0


# -- threaded stress -----------------------------------------------------------------------------

THREADS = 8
OPS = 3000
MAX_HELD = 24
_tokens = itertools.count(1)


@dataclass(eq=False)
class Allocation:
    """One allocation: its pattern, and a model of the references handles hold."""

    token: int
    pattern: bytes
    span: tuple[int, int]
    refs: int = 1
    frees: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(eq=False)
class Handle:
    """A buffer object holding one reference; used by one thread at a time."""

    buf: ByteBuffer
    alloc: Allocation
    offset: int  # where buf's index 0 lies in the allocation


class Spans:
    """Address ranges of live allocations: a new one must overlap none."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[int, tuple[int, int]] = {}

    def add(self, alloc: Allocation) -> None:
        lo, hi = alloc.span
        if hi == lo:
            return
        with self.lock:
            clash = [t for t, (a, b) in self.live.items() if a < hi and lo < b]
            assert not clash, f"allocation {alloc.token} overlaps live {clash}"
            self.live[alloc.token] = alloc.span

    def remove(self, alloc: Allocation) -> None:
        with self.lock:
            self.live.pop(alloc.token, None)


def _size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.55:
        return rng.randint(0, 256)
    if r < 0.85:
        return rng.randint(257, 8192)
    if r < 0.98:
        return rng.randint(8193, CHUNK)
    return rng.randint(CHUNK + 1, 3 * CHUNK)  # huge: unpooled


def _pattern(token: int, n: int) -> bytes:
    unit = token.to_bytes(8, "little")[:7] + bytes([token * 37 & 0xFF])
    return (unit * (n // 8 + 1))[:n]


class Worker:
    def __init__(self, pool: PooledAllocator, index: int, inboxes: list[queue.Queue[Handle]],
                 spans: Spans, allocs: list[Allocation], seed: int) -> None:
        self.pool, self.index, self.inboxes = pool, index, inboxes
        self.spans, self.allocs = spans, allocs
        self.rng = random.Random(seed)
        self.held: list[Handle] = []

    def check(self, h: Handle) -> None:
        expected = h.alloc.pattern[h.offset : h.offset + h.buf.capacity()]
        got = bytes(h.buf.duplicate().clear())
        assert got == expected, f"allocation {h.alloc.token}: memory used twice"

    def allocate(self) -> None:
        n = _size(self.rng)
        buf = self.pool.allocate(n)
        address = buf.address()
        token = next(_tokens)
        alloc = Allocation(token, _pattern(token, n), (address, address + n))
        self.allocs.append(alloc)
        self.spans.add(alloc)
        buf.put(0, alloc.pattern)
        self.held.append(Handle(buf, alloc, 0))

    def derive(self) -> None:
        h = self.rng.choice(self.held)
        cap = h.buf.capacity()
        how = self.rng.randrange(3)
        start = self.rng.randint(0, cap)
        length = self.rng.randint(0, cap - start)
        if how == 0:
            new = Handle(h.buf.retained_slice(start, length), h.alloc, h.offset + start)
        elif how == 1:
            new = Handle(h.buf.retained_duplicate(), h.alloc, h.offset)
        else:
            new = Handle(h.buf.slice(start, length).retain(), h.alloc, h.offset + start)
        with h.alloc.lock:
            h.alloc.refs += 1
        self.held.append(new)

    def release(self, h: Handle) -> None:
        self.check(h)
        alloc = h.alloc
        with alloc.lock:
            alloc.refs -= 1
            last = alloc.refs == 0
            if last:
                self.spans.remove(alloc)  # before the slot can go to anyone else
            freed = h.buf.release()
            alloc.frees += freed
        assert freed == last, f"allocation {alloc.token}: release() returned {freed}"

    def take_inbox(self) -> None:
        inbox = self.inboxes[self.index]
        while True:
            try:
                self.held.append(inbox.get_nowait())
            except queue.Empty:
                return

    def step(self) -> None:
        self.take_inbox()
        held, rng = self.held, self.rng
        r = rng.random()
        room = len(held) < MAX_HELD
        if not held or (r < 0.25 and room):
            self.allocate()
        elif r < 0.45 and room:
            self.derive()
        elif 0.45 <= r < 0.6:
            h = held.pop(rng.randrange(len(held)))
            target = rng.choice([i for i in range(THREADS) if i != self.index])
            self.inboxes[target].put(h)
        elif 0.6 <= r < 0.7:
            self.check(rng.choice(held))
        else:
            self.release(held.pop(rng.randrange(len(held))))

    def finish(self) -> None:
        self.take_inbox()
        while self.held:
            self.release(self.held.pop())


@isolated
@pytest.mark.parametrize("cache_size", [64, 0], ids=["cached", "uncached"])
def test_threaded_stress_never_uses_memory_twice(make_pool: MakePool, cache_size: int) -> None:
    before = direct()
    pool = make_pool(cache_size=cache_size)
    spans = Spans()
    inboxes: list[queue.Queue[Handle]] = [queue.Queue() for _ in range(THREADS)]
    allocs: list[list[Allocation]] = [[] for _ in range(THREADS)]
    workers = [Worker(pool, i, inboxes, spans, allocs[i], seed=1000 * cache_size + i)
               for i in range(THREADS)]
    errors: list[BaseException] = []
    done = threading.Barrier(THREADS, timeout=60)
    start = threading.Barrier(THREADS, timeout=60)

    def run(w: Worker) -> None:
        try:
            start.wait()
            for _ in range(OPS):
                w.step()
        except BaseException as e:
            errors.append(e)
            done.abort()
        with contextlib.suppress(threading.BrokenBarrierError):
            done.wait()  # no more hand-overs: every handle is held or in an inbox
        try:
            w.finish()
        except BaseException as e:
            errors.append(e)

    t0 = time.monotonic()
    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - t0
    assert not any(t.is_alive() for t in threads), "stress threads hung"
    if errors:
        raise errors[0]
    everything = [a for per in allocs for a in per]
    assert len(everything) > THREADS * OPS // 10
    assert all((a.refs, a.frees) == (0, 1) for a in everything)
    assert spans.live == {}
    del threads, workers
    gc.collect()  # the workers' thread caches go back to the arena
    assert live(pool) == (0, 0)
    assert cached(pool) == 0
    pool.trim()
    assert mapped(pool) == 0
    assert direct() == before
    assert elapsed < 60  # a bound against pathologies; typical runs take a few seconds


def test_a_leak_collected_in_a_thread_without_a_cache_does_not_deadlock() -> None:
    """The same, in a thread with no cache of that allocator (one that never used it,
    or one being torn down, whose cache is already gone): giving the slot back must
    not make it a cache, which takes the lock.  The count goes out through the
    allocator's parked counts, as a dead cache's does."""
    code = textwrap.dedent("""
        import gc, threading, warnings
        import zcio
        warnings.simplefilter("ignore")
        zcio.set_leak_detection(zcio.LeakLevel.DISABLED)
        pool = zcio.PooledAllocator()
        buf = pool.allocate(1000)
        cycle = [buf]
        cycle.append(cycle)
        del buf, cycle

        def other():  # never allocated from pool: no cache
            with pool._lock:
                gc.collect()  # runs the leaked buffer's __del__ here

        t = threading.Thread(target=other)
        t.start()
        t.join()
        live, _ = pool.pool_infos()
        assert (live.count, live.total_capacity) == (0, 0), live
        pool.trim()
        assert pool.allocate(1000).release()
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_leak_collected_while_this_thread_holds_the_lock_does_not_deadlock() -> None:
    """The garbage collector can run a leaked buffer's __del__ at any allocation, also
    while this very thread holds the allocator's lock (in _take, trim...): giving the
    slot back must not wait for that lock.  In a child, under a timeout: a deadlock
    there must fail the test, not hang it."""
    code = textwrap.dedent("""
        import gc, warnings
        import zcio
        warnings.simplefilter("ignore")
        zcio.set_leak_detection(zcio.LeakLevel.DISABLED)
        pool = zcio.PooledAllocator(cache_size=0)
        buf = pool.allocate(1000)
        cycle = [buf]
        cycle.append(cycle)
        del buf, cycle
        with pool._lock:
            gc.collect()  # runs the leaked buffer's __del__ here
        pool.trim()  # the slot, parked meanwhile, is back in the arena
        assert pool.allocate(1000).release()
        pool.trim()
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
