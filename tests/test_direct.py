"""Direct memory: accounting, the cap, gc-and-retry, and release in every order."""

from __future__ import annotations

import gc
import itertools
import mmap
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import zcio
from zcio import ByteBuffer

PAGE = mmap.PAGESIZE


def direct_pool() -> zcio.BufferPoolInfo:
    return zcio.buffer_pools()[0]


def test_pools_are_named_like_java() -> None:
    """Java's two pools come first; pooled allocators add theirs after them."""
    assert [p.name for p in zcio.buffer_pools()][:2] == ["direct", "mapped"]


def test_allocate_direct_is_zero_filled_page_aligned_and_counted() -> None:
    with ByteBuffer.allocate_direct(10_000) as buf:
        assert buf.is_direct()
        assert buf.address() % PAGE == 0
        assert bytes(buf) == bytes(10_000)
        pool = direct_pool()
        assert (pool.count, pool.total_capacity) == (1, 10_000)
        assert pool.memory_used == 3 * PAGE  # whole pages: what the kernel maps
    assert direct_pool().count == 0


def test_slices_and_views_are_not_counted_again() -> None:
    with ByteBuffer.allocate_direct(4096) as buf:
        derived = [buf.slice(), buf.duplicate(), buf.as_read_only_buffer(), buf.as_int_buffer()]
        assert direct_pool().count == 1
        assert len(derived) == 4


def test_zero_capacity_direct_buffer() -> None:
    buf = ByteBuffer.allocate_direct(0)
    assert (buf.capacity(), buf.remaining(), bytes(buf)) == (0, 0, b"")
    assert direct_pool().count == 1
    buf.release()
    assert direct_pool().count == 0


def test_dropped_buffer_is_freed_by_its_cleaner() -> None:
    buf = ByteBuffer.allocate_direct(1 << 20)
    assert direct_pool().memory_used == 1 << 20
    del buf
    assert direct_pool().memory_used == 0  # refcounting frees it at once


def test_slice_keeps_memory_alive_after_parent_is_dropped() -> None:
    parent = ByteBuffer.allocate_direct(100)
    parent.put(5, 42)
    child = parent.slice(5, 10)
    del parent
    gc.collect()
    assert direct_pool().count == 1
    assert child.get(0) == 42
    del child
    assert direct_pool().count == 0


def test_cap_refuses_with_the_numbers() -> None:
    zcio.set_max_direct_memory(4 * PAGE)
    with ByteBuffer.allocate_direct(3 * PAGE):
        with pytest.raises(zcio.OutOfDirectMemoryError) as info:
            ByteBuffer.allocate_direct(2 * PAGE)
        assert isinstance(info.value, MemoryError)
        message = str(info.value)
        assert str(2 * PAGE) in message and str(3 * PAGE) in message and str(4 * PAGE) in message
        assert direct_pool().count == 1  # the failed reservation left nothing behind


def test_cap_collects_garbage_and_retries() -> None:
    """Unreachable buffers in a reference cycle are freed by the gc the reservation runs."""
    zcio.set_max_direct_memory(2 * PAGE)

    class Holder:
        pass

    def make_cycle() -> None:
        a, b = Holder(), Holder()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        a.buf = ByteBuffer.allocate_direct(2 * PAGE)  # type: ignore[attr-defined]

    gc.disable()
    try:
        make_cycle()
        assert direct_pool().memory_used == 2 * PAGE  # garbage, but not yet collected
        with ByteBuffer.allocate_direct(PAGE) as buf:  # succeeds only after gc
            assert buf.capacity() == PAGE
    finally:
        gc.enable()


def test_cap_waits_for_another_thread_to_release() -> None:
    zcio.set_max_direct_memory(PAGE)
    held = ByteBuffer.allocate_direct(PAGE)
    releaser = threading.Timer(0.005, held.release)
    releaser.start()
    try:
        with ByteBuffer.allocate_direct(PAGE) as buf:
            assert buf.capacity() == PAGE
    finally:
        releaser.join()


def test_set_max_direct_memory_accepts_sizes_and_rejects_nonsense() -> None:
    zcio.set_max_direct_memory("512m")
    assert zcio.max_direct_memory() == 512 << 20
    zcio.set_max_direct_memory(12345)
    assert zcio.max_direct_memory() == 12345
    with pytest.raises(zcio.IllegalArgumentError):
        zcio.set_max_direct_memory("12 parsecs")
    with pytest.raises(ValueError):
        zcio.set_max_direct_memory(-1)


@pytest.mark.parametrize(
    ("text", "size"),
    [("65536", 65536), ("64k", 65536), ("512m", 512 << 20), ("2G", 2 << 30), ("1gb", 1 << 30),
     ("8MiB", 8 << 20)],
)
def test_parse_size(text: str, size: int) -> None:
    assert zcio.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "m", "-1", "1.5g", "12 parsecs", "1x"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(zcio.IllegalArgumentError):
        zcio.parse_size(text)


def test_environment_variable_sets_the_cap() -> None:
    code = (
        "import zcio\n"
        "print(zcio.max_direct_memory())\n"
        "try:\n"
        "    zcio.ByteBuffer.allocate_direct(2 << 20)\n"
        "except zcio.OutOfDirectMemoryError as e:\n"
        "    print('refused')\n"
    )
    env = dict(os.environ, ZCIO_MAX_DIRECT_MEMORY="1m")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [str(1 << 20), "refused"]


_FINALIZER_UNDER_LOCK = """
import gc, sys
from zcio import ByteBuffer
from zcio._direct import DIRECT
buf = ByteBuffer.allocate_direct(8192)
cycle = [buf]
cycle.append(cycle)  # only the collector frees it
del buf, cycle
before = DIRECT.snapshot()
# The collector runs finalizers at any bytecode boundary, as while this thread holds
# the accounting lock (3.13 seen: a finalizer inside _try_reserve's critical section).
with DIRECT.lock:
    gc.collect()
after = DIRECT.snapshot()
print(before.count - after.count, before.memory_used - after.memory_used)
"""


def test_a_finalizer_run_while_its_thread_holds_the_accounting_lock_does_not_wait() -> None:
    """The collector may run a buffer's finalizer while the same thread holds the
    direct pool's lock; counting the buffer out must not wait for that lock (it would
    wait forever), and the count is still exact once the lock is free."""
    run = subprocess.run([sys.executable, "-c", _FINALIZER_UNDER_LOCK], capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1", "8192"]


# -- release -------------------------------------------------------------------------------


def family(buf: ByteBuffer) -> dict[str, object]:
    """Everything that can be derived from one allocation."""
    return {
        "buffer": buf,
        "slice": buf.slice(1, 8),
        "duplicate": buf.duplicate(),
        "read_only": buf.as_read_only_buffer(),
        "int_view": buf.as_int_buffer(),
        "memoryview": buf.memoryview(),
    }


@pytest.mark.parametrize("releaser", ["buffer", "slice", "duplicate", "read_only"])
def test_release_through_any_member_revokes_all(releaser: str) -> None:
    members = family(ByteBuffer.allocate_direct(64))
    target = members[releaser]
    assert isinstance(target, ByteBuffer)
    target.release()
    assert direct_pool().count == 0  # unmapped at once: zcio revoked every view
    for name, member in members.items():
        if isinstance(member, memoryview):
            with pytest.raises(ValueError, match="released"):
                member[0]
        else:
            assert isinstance(member, (ByteBuffer, zcio.IntBuffer))
            with pytest.raises(zcio.ReleasedBufferError):
                member.get(0)
            assert member.is_released(), name
            member.release()  # idempotent


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_dropping_in_any_order_frees_exactly_once(order: tuple[int, ...]) -> None:
    members = list(family(ByteBuffer.allocate_direct(64)).values())[:4]
    members[0].put(3, 7)  # type: ignore[attr-defined]
    for i in order:
        assert direct_pool().count == 1
        members[i] = None
    gc.collect()
    assert direct_pool().count == 0


def test_user_view_sliced_further_defers_the_unmap_safely() -> None:
    buf = ByteBuffer.allocate_direct(64)
    buf.put(0, 9)
    view = buf.memoryview()[0:8]  # sliced by the user: zcio cannot revoke this one
    buf.release()
    with pytest.raises(zcio.ReleasedBufferError):
        buf.get(0)
    assert direct_pool().count == 1  # still mapped, still counted: no use-after-free
    assert view[0] == 9
    view[1] = 5
    del view
    assert direct_pool().count == 0


def test_numpy_export_defers_the_unmap_safely() -> None:
    buf = ByteBuffer.allocate_direct(16)
    arr = np.frombuffer(buf.memoryview(), dtype=np.uint8)
    buf.release()
    assert direct_pool().count == 1
    assert int(arr.sum()) == 0
    del arr
    gc.collect()
    assert direct_pool().count == 0


def test_release_from_many_threads_is_safe() -> None:
    for _ in range(20):
        members = [m for m in family(ByteBuffer.allocate_direct(64)).values()
                   if not isinstance(m, memoryview)]
        threads = [threading.Thread(target=m.release) for m in members]  # type: ignore[attr-defined]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    gc.collect()
    assert direct_pool().count == 0


def test_heap_release_frees_the_bytearray_for_resizing() -> None:
    data = bytearray(b"abc")
    buf = ByteBuffer.wrap(data)
    with pytest.raises(BufferError):
        data.extend(b"d")  # exported while the buffer lives
    buf.release()
    data.extend(b"d")
    assert data == b"abcd"
    with pytest.raises(zcio.ReleasedBufferError):
        buf.get()


def test_released_buffer_still_reports_its_indexes() -> None:
    buf = ByteBuffer.allocate_direct(8).position(3)
    buf.release()
    assert (buf.position(), buf.limit(), buf.capacity()) == (3, 8, 8)
    for call in (buf.get, buf.slice, buf.duplicate, buf.memoryview, buf.as_int_buffer,
                 lambda: bytes(buf), lambda: buf.put(1), lambda: buf.put_int(1), buf.compact):
        with pytest.raises(zcio.ReleasedBufferError):
            call()
