"""The compiled pool (``native/pool.c``) against the Python pool it accelerates.

``PooledAllocator.allocate``, ``Buffer.retain``/``release`` and ``PooledMemory.__del__``
have a C fast path when ``zcio._native`` is loaded; the Python methods stay as the
reference and the slow path (``zcio._pool.POOL_REFERENCE``).  A hypothesis state machine
drives two allocators with the same random calls, one through the installed methods (the
fast paths when compiled) and one through the reference methods, and compares every
observable after each step: results, exception types and messages, reference counts,
indexes, bytes, ``is_released``, and both pools' figures (``pool_infos``).  It also holds
both to a model of the reference counts, so with ``ZCIO_PURE_PYTHON=1`` (when the two
sides are the same Python code) it still tests the pure pool.

Then: threads allocating, retaining and releasing across threads (no slot ever handed to
two live buffers, figures exact at the end); leak detection through the fast path (the
sampling countdown, and a leaked unsampled buffer's slot coming back); the C size-class
arithmetic against ``size_class``; the slot exporter.  Native-only tests skip, saying why.
"""

from __future__ import annotations

import gc
import logging
import mmap
import queue
import random
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

import zcio
from zcio import ByteBuffer, LeakLevel, LeakWarning, PooledAllocator, _accel
from zcio._buffer import Buffer
from zcio._pool import POOL_REFERENCE, PooledMemory, size_class

NATIVE = _accel.native is not None
native_only = pytest.mark.skipif(
    not NATIVE, reason=f"the compiled pool is not in use: {_accel.unavailability_cause()}")

CHUNK = 64 << 10  # small slabs; CHUNK + 1 is served unpooled
SIZES = [0, 1, 16, 17, 100, 1000, 1024, 4096, 5000, CHUNK // 2, CHUNK, CHUNK + 1]


def _ref(name: str, default: Callable[..., Any]) -> Callable[..., Any]:
    """The Python method the compiled one replaced (the installed one when pure)."""
    fn: Callable[..., Any] = POOL_REFERENCE.get(name, default)
    return fn


REF_ALLOCATE = _ref("allocate", PooledAllocator.allocate)
REF_RELEASE = _ref("release", Buffer.release)
REF_RETAIN = _ref("retain", Buffer.retain)
REF_EXIT = _ref("__exit__", Buffer.__exit__)


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception as e:  # every exception is an outcome to compare
        return type(e).__name__, str(e)


def _figures(pool: PooledAllocator) -> list[tuple[int, int, int]]:
    return [(p.count, p.total_capacity, p.memory_used) for p in pool.pool_infos()]


class Twin:
    """One allocation group on both sides: the buffers derived from it, pairwise."""

    def __init__(self, fast: ByteBuffer, ref: ByteBuffer, size: int) -> None:
        self.pairs: list[tuple[Any, Any]] = [(fast, ref)]
        self.size = size
        self.refcnt = 1  # the model


class PoolMachine(RuleBasedStateMachine):
    """Same calls on a pool through the installed methods and one through the reference."""

    twins = Bundle("twins")

    def __init__(self) -> None:
        super().__init__()
        self.fast = PooledAllocator(chunk_size=CHUNK, cache_size=2, name="native-pool-fast")
        self.ref = PooledAllocator(chunk_size=CHUNK, cache_size=2, name="native-pool-ref")
        self.saved = zcio.leak_detection()
        self.all: list[Twin] = []

    @initialize(level=st.sampled_from([LeakLevel.DISABLED, LeakLevel.SIMPLE,
                                       LeakLevel.PARANOID]))
    def leak_level(self, level: LeakLevel) -> None:
        zcio.set_leak_detection(level)

    def both(self, twin: Twin, call: Callable[[Any, bool], Any]) -> tuple[str, Any]:
        """call(buffer, fast?) on every pair's fast side and ref side: same outcomes."""
        out_fast = _outcome(lambda: call(twin.pairs[0][0], True))
        out_ref = _outcome(lambda: call(twin.pairs[0][1], False))
        if out_fast[0] == "ok" and isinstance(out_fast[1], Buffer):
            assert out_fast[1] is twin.pairs[0][0] and out_ref[1] is twin.pairs[0][1]
            return out_fast
        assert out_fast == out_ref
        return out_fast

    @rule(target=twins, size=st.sampled_from(SIZES))
    def allocate(self, size: int) -> Twin:
        fast = self.fast.allocate(size)
        ref = REF_ALLOCATE(self.ref, size)
        assert type(fast) is type(ref)
        twin = Twin(fast, ref, size)
        self.all.append(twin)
        return twin

    @rule(twin=twins, n=st.sampled_from([1, 1, 2, 0, -1, True]))
    def retain(self, twin: Twin, n: int) -> None:
        kind, _ = self.both(twin, lambda b, fast: (b.retain(n) if fast else REF_RETAIN(b, n)))
        if kind == "ok":
            twin.refcnt += n
        else:
            assert n < 1 or n is True or twin.refcnt == 0, (kind, n, twin.refcnt)

    @rule(twin=twins, n=st.sampled_from([1, 1, 1, 2, 0, True]), which=st.integers(0, 3))
    def release(self, twin: Twin, n: int, which: int) -> None:
        i = which % len(twin.pairs)
        fast, ref = twin.pairs[i]
        out = _outcome(lambda: fast.release(n))
        assert out == _outcome(lambda: REF_RELEASE(ref, n))
        if out[0] == "ok" and twin.refcnt == 0:  # unpooled (oversize): lenient, a no-op
            assert twin.size > CHUNK and out[1] is False
        elif out[0] == "ok":
            twin.refcnt -= n
            assert out[1] == (twin.refcnt == 0)
        else:
            assert n < 1 or n is True or n > twin.refcnt, (out, n, twin.refcnt)

    @rule(twin=twins, which=st.integers(0, 3))
    def with_block(self, twin: Twin, which: int) -> None:
        """A ``with`` block's end: one release, nothing once the count is zero."""
        fast, ref = twin.pairs[which % len(twin.pairs)]
        with fast:
            pass
        REF_EXIT(ref, None, None, None)
        twin.refcnt = max(twin.refcnt - 1, 0)

    @rule(twin=twins, how=st.sampled_from(["slice", "duplicate", "read_only", "ints"]))
    def derive(self, twin: Twin, how: str) -> None:
        def make(b: ByteBuffer) -> Any:
            if how == "slice":
                return b.slice(0, b.capacity() // 2)
            if how == "duplicate":
                return b.duplicate()
            if how == "read_only":
                return b.as_read_only_buffer()
            return b.as_int_buffer()

        fast, ref = twin.pairs[0]
        a, b = _outcome(lambda: make(fast)), _outcome(lambda: make(ref))
        assert a[0] == b[0]
        if a[0] == "ok":
            twin.pairs.append((a[1], b[1]))
        else:
            assert a == b

    @rule(twin=twins, value=st.integers(0, 255))
    def touch_memory(self, twin: Twin, value: int) -> None:
        """Use after release raises the same on both sides; before, bytes agree."""
        for fast, ref in twin.pairs:
            if not isinstance(fast, ByteBuffer) or fast.capacity() == 0 or fast.is_read_only():
                continue
            outcomes = [(_outcome(lambda b=b: b.put(0, value) is b), _outcome(lambda b=b: b.get(0)))
                        for b in (fast, ref)]
            assert outcomes[0] == outcomes[1]

    @rule(twin=consumes(twins))
    def release_all(self, twin: Twin) -> None:
        while twin.refcnt > 0:
            self.release(twin, 1, 0)

    @invariant()
    def agree(self) -> None:
        for twin in self.all:
            for fast, ref in twin.pairs:
                assert fast.ref_cnt() == ref.ref_cnt() == twin.refcnt
                assert fast.is_released() == ref.is_released() == (twin.refcnt == 0)
                assert (fast.position(), fast.limit(), fast.capacity()) == (
                    ref.position(), ref.limit(), ref.capacity())
        assert _figures(self.fast) == _figures(self.ref)
        live = [t for t in self.all if t.refcnt > 0 and t.size <= CHUNK]
        assert _figures(self.fast)[0][:2] == (len(live), sum(t.size for t in live))

    def teardown(self) -> None:
        try:
            for twin in self.all:
                while twin.refcnt > 0:
                    self.release(twin, 1, 0)
            assert _figures(self.fast) == _figures(self.ref)
            self.all.clear()
            gc.collect()
            for pool in (self.fast, self.ref):
                pool.trim()
                assert _figures(pool) == [(0, 0, 0), (0, 0, 0)]
        finally:
            zcio.set_leak_detection(self.saved)


PoolMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40,
                                         deadline=None)
TestPoolMachine = PoolMachine.TestCase


# -- threads ------------------------------------------------------------------------------


def test_threads_allocate_retain_and_release_across_threads() -> None:
    """Four threads allocate, retain and release (some released by another thread):
    every live buffer's bytes stay its own (no slot lent twice), and the figures come
    back to zero.  The GIL is held across each C fast path; the Python paths lock."""
    pool = PooledAllocator(chunk_size=CHUNK, cache_size=4, name="native-pool-threads")
    handoff: queue.Queue[tuple[ByteBuffer, bytes] | None] = queue.Queue()
    errors: list[BaseException] = []

    def check(buf: ByteBuffer, mark: bytes) -> None:
        assert bytes(buf.duplicate().clear().limit(len(mark))) == mark

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[tuple[ByteBuffer, bytes]] = []
        try:
            for step in range(1500):
                size = rng.choice([16, 100, 1000, 4096, CHUNK // 2])
                buf = pool.allocate(size)
                mark = f"{seed}:{step}:".encode()[:size].ljust(min(size, 12), b".")
                buf.put(0, mark)
                mine.append((buf, mark))
                if rng.random() < 0.3:
                    buf.retain()
                    buf.release()
                if len(mine) > 8:
                    old, old_mark = mine.pop(rng.randrange(len(mine)))
                    check(old, old_mark)
                    if rng.random() < 0.25:
                        handoff.put((old, old_mark))  # released by the other thread
                    else:
                        assert old.release() is True
            for buf, mark in mine:
                check(buf, mark)
                buf.release()
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    def releaser() -> None:
        try:
            while (item := handoff.get()) is not None:
                check(*item)
                assert item[0].release() is True
        except BaseException as e:
            errors.append(e)

    rel = threading.Thread(target=releaser)
    rel.start()
    workers = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    handoff.put(None)
    rel.join()
    assert not errors, errors
    live, _ = _figures(pool)
    assert live[:2] == (0, 0)
    del workers
    gc.collect()  # the dead threads' caches go back to the arena
    pool.trim()
    assert _figures(pool) == [(0, 0, 0), (0, 0, 0)]


# -- leak detection -------------------------------------------------------------------------


@pytest.fixture
def leak_level() -> Any:
    saved = zcio.leak_detection()
    yield zcio.set_leak_detection
    zcio.set_leak_detection(saved)


def test_simple_level_samples_one_allocation_in_128(leak_level: Any) -> None:
    """The fast path moves the sampling countdown as track() does: 256 allocations,
    whatever the countdown's start, record exactly two."""
    leak_level(LeakLevel.SIMPLE)
    pool = PooledAllocator(chunk_size=CHUNK, name="native-pool-sampling")
    bufs = [pool.allocate(64) for _ in range(256)]
    sampled = sum(b._mem._record is not None for b in bufs)
    for b in bufs:
        b.release()
    pool.trim()
    assert sampled == 2


def test_a_leaked_buffer_is_reported_and_its_slot_comes_back(
        leak_level: Any, caplog: pytest.LogCaptureFixture) -> None:
    leak_level(LeakLevel.PARANOID)
    pool = PooledAllocator(chunk_size=CHUNK, name="native-pool-leak")
    caplog.set_level(logging.ERROR, logger="zcio.leak")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        buf = pool.allocate(1000)
        buf.retain().release()
        del buf
        gc.collect()
    assert [w for w in caught if issubclass(w.category, LeakWarning)]
    assert any("pooled buffer of 1000 bytes (refCnt 1)" in r.getMessage()
               for r in caplog.records)
    assert _figures(pool)[0][:2] == (0, 0)
    pool.trim()
    assert _figures(pool) == [(0, 0, 0), (0, 0, 0)]


def test_an_unsampled_leak_gives_its_slot_back_silently(
        leak_level: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Leak detection off: the fast path made the buffer, __del__ (collected with a
    count above zero) still returns the slot and uncounts it."""
    leak_level(LeakLevel.DISABLED)
    pool = PooledAllocator(chunk_size=CHUNK, name="native-pool-silent")
    caplog.set_level(logging.ERROR, logger="zcio.leak")
    buf = pool.allocate(4096)
    assert _figures(pool)[0][:2] == (1, 4096)
    del buf
    gc.collect()
    assert _figures(pool)[0][:2] == (0, 0)
    assert not [r for r in caplog.records if r.name == "zcio.leak"]
    pool.trim()
    assert _figures(pool) == [(0, 0, 0), (0, 0, 0)]


def test_slots_of_leaked_buffers_are_lent_again_after_their_slabs_are_trimmed(
        leak_level: Any) -> None:
    """Many buffers collected unreleased wait in quarantine (their own views still reach
    their slots while __del__ runs); the next allocation drains it, which can unmap an
    emptied slab.  The allocation then goes on with a live slot, never one of that slab
    (a regression: _take popped from the free list _unmap had just replaced)."""
    leak_level(LeakLevel.DISABLED)
    pool = PooledAllocator(chunk_size=CHUNK, cache_size=1000, name="native-pool-drain")
    per_slab = CHUNK // 4096
    bufs = [pool.allocate(4096) for _ in range(5 * per_slab)]
    del bufs
    gc.collect()
    again = [pool.allocate(4096) for _ in range(5 * per_slab)]
    for i, b in enumerate(again):
        b.put(0, bytes([i % 256]))
    assert [b.get(0) for b in again] == [i % 256 for i in range(len(again))]
    assert len({b.address() for b in again}) == len(again)
    for b in again:
        b.release()
    pool.trim()
    assert _figures(pool) == [(0, 0, 0), (0, 0, 0)]


# -- the compiled parts themselves -----------------------------------------------------------


@native_only
def test_the_fast_paths_are_installed_with_their_references() -> None:
    assert set(POOL_REFERENCE) == {"allocate", "release", "retain", "__del__", "__exit__"}
    assert PooledAllocator.__dict__["allocate"] is not POOL_REFERENCE["allocate"]
    assert type(PooledAllocator.__dict__["allocate"]).__name__ == "method_descriptor"
    assert (PooledAllocator.allocate.__doc__ or "").startswith(
        "A zero-position direct ByteBuffer")


@native_only
@pytest.mark.parametrize("level", [LeakLevel.DISABLED, LeakLevel.SIMPLE])
def test_a_fast_buffer_has_every_slot_the_python_path_sets(leak_level: Any,
                                                           level: LeakLevel) -> None:
    leak_level(level)
    fast_pool = PooledAllocator(chunk_size=CHUNK, name="native-pool-slots")
    ref_pool = PooledAllocator(chunk_size=CHUNK, name="native-pool-slots-ref")
    for size in (1000, 1024):  # a slice of the block's view, and the view itself
        fast_pool.allocate(size).release()  # a warm cache: the fast path's case
        fast = fast_pool.allocate(size)
        ref = REF_ALLOCATE(ref_pool, size)
        names = {n for cls in type(fast).__mro__ for n in getattr(cls, "__slots__", ())}
        names.discard("__weakref__")
        for name in sorted(names):
            a, b = getattr(fast, name), getattr(ref, name)
            if name not in ("_mem", "_mv"):
                assert a == b, name
        mem_names = {n for cls in PooledMemory.__mro__ for n in getattr(cls, "__slots__", ())}
        mem_names -= {"__weakref__", "_base", "_slot", "_alloc", "_views", "_record"}
        for name in sorted(mem_names):
            assert getattr(fast._mem, name) == getattr(ref._mem, name), name
        assert fast._mv.format == "B" and len(fast._mv) == size and not fast._mv.readonly
        assert len(fast._mem._views) == len(ref._mem._views)
        fast.release()
        ref.release()
    for pool in (fast_pool, ref_pool):
        pool.trim()


@native_only
def test_the_c_size_classes_are_size_class() -> None:
    """Every size up to a chunk lands in the slot class size_class() names."""
    pool = PooledAllocator(chunk_size=CHUNK, max_cached_capacity=CHUNK,
                           name="native-pool-classes")
    sizes = sorted({*range(0, 70), *(1 << k for k in range(16)),
                    *((1 << k) + d for k in range(4, 16) for d in (-1, 1)),
                    *random.Random(13).sample(range(CHUNK + 1), 300), CHUNK})
    for n in sizes:
        pool.allocate(n).release()  # warm: the next one is the fast path's
        buf = pool.allocate(n)
        slot = buf._mem._slot
        assert (slot.klass, slot.slab.size) == size_class(n), n
        buf.release()
    pool.trim()


@native_only
def test_the_slot_exporter_lends_flat_writable_bytes_and_pins_the_mapping() -> None:
    assert _accel.native is not None
    mm = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE)
    export = _accel.native.SlotExport(mm, 64, 32)
    view = memoryview(export)
    assert (view.format, view.itemsize, view.ndim, len(view), view.readonly) == (
        "B", 1, 1, 32, False)
    view[0:3] = b"abc"
    assert mm[64:67] == b"abc"
    view.release()
    with pytest.raises(BufferError):
        mm.close()  # the exporter holds an export of the mapping
    with pytest.raises(ValueError, match="outside"):
        _accel.native.SlotExport(mm, mmap.PAGESIZE - 8, 16)
    del export
    mm.close()
