"""Reference counts: Netty's rules for pooled buffers, and every way to misuse them.

Pooled buffers (``PooledAllocator``) are strict, as Netty's: a decrement past zero, a
retain at zero and any access at zero raise IllegalReferenceCountError with the numbers
in the message.  Plain buffers (``allocate``, ``allocate_direct``) share the counting but
a second release is a no-op, as closing a closed file.

Buffers come from the default allocator at 4 KiB (the 4096 class: cheap slabs).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from zcio import (
    ByteBuffer,
    IllegalArgumentError,
    IllegalReferenceCountError,
    IndexOutOfBoundsError,
    PooledAllocator,
    ReleasedBufferError,
)

SIZE = 4096
IRC = IllegalReferenceCountError
Factory = Callable[[], ByteBuffer]


def pooled() -> ByteBuffer:
    return PooledAllocator.default().allocate(SIZE)


def pooled_slice() -> ByteBuffer:
    return PooledAllocator.default().allocate(SIZE + 16).slice(8, SIZE)


def direct() -> ByteBuffer:
    return ByteBuffer.allocate_direct(SIZE)


def heap() -> ByteBuffer:
    return ByteBuffer.allocate(SIZE)


STRICT: list[Factory] = [pooled, pooled_slice]
LENIENT: list[Factory] = [direct, heap]
ALL = STRICT + LENIENT
every = pytest.mark.parametrize("make", ALL, ids=lambda f: f.__name__)
strict = pytest.mark.parametrize("make", STRICT, ids=lambda f: f.__name__)
lenient = pytest.mark.parametrize("make", LENIENT, ids=lambda f: f.__name__)


def live_pooled() -> int:
    """Buffers of the default allocator not yet released."""
    return PooledAllocator.default().pool_infos()[0].count


@pytest.fixture(autouse=True)
def _default_pool_balanced() -> Iterator[None]:
    before = live_pooled()
    yield
    gc.collect()
    assert live_pooled() == before


def expect_irc(message: str, call: Callable[[], object]) -> IllegalReferenceCountError:
    with pytest.raises(IRC) as info:
        call()
    assert str(info.value) == message
    return info.value


# -- arithmetic ---------------------------------------------------------------------------


@every
def test_retain_and_release_arithmetic(make: Factory) -> None:
    buf = make()
    assert buf.ref_cnt() == 1
    assert buf.retain() is buf
    assert buf.ref_cnt() == 2
    assert buf.retain(3) is buf
    assert buf.ref_cnt() == 5
    assert buf.release(2) is False
    assert buf.ref_cnt() == 3
    assert buf.release() is False
    assert buf.is_released() is False
    assert buf.release(2) is True
    assert (buf.ref_cnt(), buf.is_released()) == (0, True)


@every
def test_release_returns_true_exactly_once(make: Factory) -> None:
    buf = make().retain(3)
    assert [buf.release() for _ in range(4)] == [False, False, False, True]


@every
def test_increments_and_decrements_must_be_positive(make: Factory) -> None:
    buf = make()
    for bad in (0, -1):
        with pytest.raises(IllegalArgumentError):
            buf.retain(bad)
        with pytest.raises(IllegalArgumentError):
            buf.release(bad)
    assert buf.ref_cnt() == 1
    buf.release()


@every
def test_decrement_past_the_count_raises_and_changes_nothing(make: Factory) -> None:
    buf = make()
    buf.put(0, b"kept")
    err = expect_irc("refCnt: 1, decrement: 2", lambda: buf.release(2))
    assert isinstance(err, ReleasedBufferError) and isinstance(err, ValueError)
    assert (buf.ref_cnt(), buf.is_released()) == (1, False)
    assert bytes(buf.duplicate().limit(4)) == b"kept"  # still usable
    buf.retain(2)
    expect_irc("refCnt: 3, decrement: 5", lambda: buf.release(5))
    assert buf.ref_cnt() == 3
    assert buf.release(3) is True


@every
def test_retain_at_zero_raises(make: Factory) -> None:
    buf = make()
    buf.release()
    expect_irc("refCnt: 0, increment: 1", buf.retain)
    expect_irc("refCnt: 0, increment: 4", lambda: buf.retain(4))
    assert buf.ref_cnt() == 0


@strict
def test_pooled_release_at_zero_raises(make: Factory) -> None:
    buf = make()
    assert buf.release() is True
    expect_irc("refCnt: 0, decrement: 1", buf.release)
    expect_irc("refCnt: 0, decrement: 3", lambda: buf.release(3))
    assert buf.ref_cnt() == 0


@lenient
def test_plain_second_release_is_a_no_op(make: Factory) -> None:
    buf = make()
    assert buf.release() is True
    assert buf.release() is False
    assert buf.release(5) is False  # lenient whatever the decrement, once at zero
    assert buf.ref_cnt() == 0


@lenient
def test_plain_decrement_past_a_positive_count_still_raises(make: Factory) -> None:
    buf = make()
    expect_irc("refCnt: 1, decrement: 2", lambda: buf.release(2))
    assert buf.release() is True


# -- any use at zero ------------------------------------------------------------------------

USES: list[tuple[str, Callable[[ByteBuffer], object]]] = [
    ("get", lambda b: b.get()),
    ("get-abs", lambda b: b.get(0)),
    ("get-bulk", lambda b: b.get(bytearray(4))),
    ("get-int", lambda b: b.get_int(0)),
    ("get-long", lambda b: b.get_long()),
    ("put", lambda b: b.put(1)),
    ("put-abs", lambda b: b.put(0, 1)),
    ("put-bytes", lambda b: b.put(b"abcd")),
    ("put-int", lambda b: b.put_int(0, 7)),
    ("put-buffer", lambda b: b.put(ByteBuffer.allocate(2))),
    ("slice", lambda b: b.slice()),
    ("slice-abs", lambda b: b.slice(1, 2)),
    ("duplicate", lambda b: b.duplicate()),
    ("read-only", lambda b: b.as_read_only_buffer()),
    ("retained-slice", lambda b: b.retained_slice()),
    ("retained-duplicate", lambda b: b.retained_duplicate()),
    ("as-int-buffer", lambda b: b.as_int_buffer()),
    ("memoryview", lambda b: b.memoryview()),
    ("bytes", lambda b: bytes(b)),
    ("address", lambda b: b.address()),
    ("compact", lambda b: b.compact()),
    ("hash-code", lambda b: b.hash_code()),
    ("equals", lambda b: b.equals(ByteBuffer.allocate(SIZE))),
    ("put-into-other", lambda b: ByteBuffer.allocate(SIZE).put(b)),
]


@strict
@pytest.mark.parametrize(("name", "use"), USES, ids=[u[0] for u in USES])
def test_any_use_at_zero_raises_illegal_reference_count(
    make: Factory, name: str, use: Callable[[ByteBuffer], object]
) -> None:
    buf = make()
    derived = [buf, buf.slice(2, 16), buf.duplicate(), buf.as_read_only_buffer()]
    buf.release()
    for target in derived:
        if name.startswith(("put", "compact")) and target.is_read_only():
            continue
        before = (target.position(), target.limit(), target.capacity())
        expect_irc("refCnt: 0", lambda t=target: use(t))  # type: ignore[misc]
        assert (target.position(), target.limit(), target.capacity()) == before
        assert target.ref_cnt() == 0


@strict
def test_typed_views_at_zero_raise_illegal_reference_count(make: Factory) -> None:
    buf = make()
    ints = buf.as_int_buffer()
    buf.release()
    expect_irc("refCnt: 0", ints.get)
    expect_irc("refCnt: 0", lambda: ints.put(0, 1))
    expect_irc("refCnt: 0, increment: 1", ints.retain)
    expect_irc("refCnt: 0, decrement: 1", ints.release)


# -- derived buffers share the count ----------------------------------------------------------


@every
def test_derived_buffers_share_one_count(make: Factory) -> None:
    buf = make()
    family = [buf, buf.slice(), buf.slice(3, 10), buf.duplicate(), buf.as_read_only_buffer(),
              buf.as_int_buffer(), buf.as_long_buffer().slice()]
    family[2].retain()
    family[5].retain(2)
    assert {b.ref_cnt() for b in family} == {4}
    assert family[4].release(3) is False
    assert {b.ref_cnt() for b in family} == {1}
    assert family[6].release() is True
    assert all(b.is_released() for b in family)


@every
def test_retained_slice_and_duplicate_add_one_reference(make: Factory) -> None:
    buf = make()
    buf.put(0, bytes(range(64)))
    part = buf.retained_slice(10, 20)
    assert (buf.ref_cnt(), part.ref_cnt()) == (2, 2)
    assert bytes(part) == bytes(range(10, 30))
    buf.position(40).limit(50)
    rest = buf.retained_slice()
    dup = buf.retained_duplicate()
    assert buf.ref_cnt() == 4
    assert bytes(rest) == bytes(range(40, 50))
    assert (dup.position(), dup.limit()) == (40, 50)
    assert bytes(dup) == bytes(range(40, 50))
    part.put(0, 0xAA)  # one memory: the write shows through every buffer
    assert buf.get(10) == -0x56
    assert [b.release() for b in (buf, part, rest)] == [False, False, False]
    assert dup.get(10) == -0x56  # the last reference still reads
    assert dup.release() is True
    assert part.is_released() and rest.is_released()


@every
def test_a_failed_retained_slice_takes_no_reference(make: Factory) -> None:
    buf = make()
    with pytest.raises(IndexOutOfBoundsError):
        buf.retained_slice(SIZE - 2, 5)
    with pytest.raises(IndexOutOfBoundsError):
        buf.retained_slice(-1, 2)
    assert buf.ref_cnt() == 1
    assert buf.release() is True


@strict
def test_retained_slice_and_duplicate_at_zero_take_no_reference(make: Factory) -> None:
    buf = make()
    buf.release()
    expect_irc("refCnt: 0", buf.retained_slice)
    expect_irc("refCnt: 0", lambda: buf.retained_slice(0, 4))
    expect_irc("refCnt: 0", buf.retained_duplicate)
    assert buf.ref_cnt() == 0


@every
def test_touch_returns_the_buffer_and_leaves_the_count(make: Factory) -> None:
    buf = make()
    assert buf.touch() is buf
    assert buf.touch("hint") is buf
    assert buf.ref_cnt() == 1
    buf.release()


# -- with -------------------------------------------------------------------------------------


@every
def test_with_releases_one_reference(make: Factory) -> None:
    with make() as buf:
        assert buf.ref_cnt() == 1
    assert buf.is_released()
    other = make().retain()
    with other:
        pass
    assert other.ref_cnt() == 1  # the block held one reference of two
    with pytest.raises(KeyError), other:
        raise KeyError("boom")
    assert other.is_released()


@every
def test_with_after_an_explicit_release_does_not_raise(make: Factory) -> None:
    with make() as buf:
        assert buf.release() is True
    assert buf.ref_cnt() == 0


# -- released memory stays unreachable after reuse ---------------------------------------------


def test_a_released_pooled_buffer_cannot_touch_the_slot_s_next_owner() -> None:
    alloc = PooledAllocator.default()
    old = alloc.allocate(SIZE)
    address = old.address()
    part, dup, ints = old.slice(0, 8), old.duplicate(), old.as_int_buffer()
    view = old.memoryview()  # not sliced further: revoked by release
    old.release()
    new = alloc.allocate(SIZE)
    assert new.address() == address  # the slot came straight back (this thread's cache)
    new.put(0, bytes(SIZE))
    for use in (lambda: old.put(0, 1), lambda: part.put(0, 1),
                lambda: dup.put_int(0, -1), lambda: ints.put(0, -1)):
        with pytest.raises(IRC):
            use()
    with pytest.raises(ValueError):
        view[0] = 1
    assert bytes(new) == bytes(SIZE)
    assert new.ref_cnt() == 1
    new.release()


def test_numpy_view_of_a_pooled_buffer_is_refused_after_release_unless_exported() -> None:
    alloc = PooledAllocator.default()
    buf = alloc.allocate(SIZE)
    arr = np.frombuffer(buf.memoryview(), dtype=np.uint8)  # exported: keeps the memory
    buf.release()
    assert int(arr[0]) >= 0  # still valid memory: quarantined, not reused
    new = alloc.allocate(SIZE)
    assert new.address() != arr.ctypes.data
    new.release()
    del arr


# -- concurrency --------------------------------------------------------------------------------


def _release_together(buf: ByteBuffer, threads_n: int) -> list[bool]:
    """``release()`` once from each of ``threads_n`` threads at the same moment."""
    start = threading.Barrier(threads_n)
    results: list[bool] = []

    def release() -> None:
        start.wait()
        results.append(buf.release())

    threads = [threading.Thread(target=release) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@every
def test_concurrent_releases_free_exactly_once(make: Factory) -> None:
    threads_n = 8
    for _ in range(20):
        buf = make().retain(threads_n - 1)
        results = _release_together(buf, threads_n)
        assert sorted(results) == [False] * (threads_n - 1) + [True]
        assert buf.ref_cnt() == 0


@every
def test_concurrent_retain_release_pairs_keep_the_count(make: Factory) -> None:
    buf = make()
    start = threading.Barrier(4)

    def churn() -> None:
        start.wait()
        for _ in range(2000):
            buf.retain()
            buf.slice(0, 4).retain(2)
            buf.release()
            buf.duplicate().release(2)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert buf.ref_cnt() == 1
    assert buf.release() is True
