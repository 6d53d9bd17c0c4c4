"""Pickling, copy.copy and copy.deepcopy of every buffer kind (zcio._pickling).

Every kind carries ``[position, limit)`` and its state: the loaded buffer has position
0, limit = capacity = the bytes carried, the mark at 0 if it was at the position, the
same order, read-only flag and directness (but for what the dump must copy: a
mapping, a typed view of a composite, which load as heap over that copy).  Protocol 5
copies each block at most once between dump and load: never a heap buffer given
writable bytes back, a direct or pooled one once on load, a mapping or a typed view
of a composite once on dump.  Copies are counted through the callback and
``zcio.metrics`` (path ``pickle_copy``).
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from buffer_kinds import ALL_KINDS, BufferKind, pattern
from zcio import (
    Buffer,
    ByteBuffer,
    CompositeBuffer,
    FileChannel,
    IllegalReferenceCountError,
    MapMode,
    OpenOption,
    PooledAllocator,
    ReleasedBufferError,
    buffer_pools,
    metrics,
)
from zcio._composite import CompositeMemory
from zcio._mapped import MappedMemory
from zcio._pickling import COPY_PATH
from zcio._pool import PooledMemory

TYPED_VIEWS = ["as_char_buffer", "as_short_buffer", "as_int_buffer", "as_long_buffer",
               "as_float_buffer", "as_double_buffer"]
START = 3  # position of the buffer under test: the bytes before it are not carried


def copies() -> tuple[int, int]:
    """(copies, bytes copied) zcio's pickling made so far."""
    stats = metrics.path(COPY_PATH)
    return stats.operations, stats.user_bytes


def out_of_band(buf: object, writable: bool = True) -> tuple[Any, int]:
    """A protocol-5 round trip with a buffer_callback, as Dask and Ray do it: the
    loaded object and how many out-of-band buffers crossed.  The transport hands back
    a ``bytearray`` (``writable``) or ``bytes`` of each, as a socket read would."""
    frames: list[pickle.PickleBuffer] = []
    data = pickle.dumps(buf, protocol=5, buffer_callback=frames.append)
    received = [bytearray(f.raw()) if writable else f.raw().tobytes() for f in frames]
    return pickle.loads(data, buffers=received), len(frames)


def in_band(protocol: int) -> Callable[[object], Any]:
    return lambda b: pickle.loads(pickle.dumps(b, protocol=protocol))


WAYS: list[Callable[[Any], Any]] = [
    *(in_band(p) for p in range(pickle.HIGHEST_PROTOCOL + 1)),
    lambda b: out_of_band(b)[0],
    lambda b: out_of_band(b, writable=False)[0],
    copy.copy,
    copy.deepcopy,
]
WAY_IDS = [*(f"pickle-{p}" for p in range(pickle.HIGHEST_PROTOCOL + 1)),
           "oob-writable", "oob-bytes", "copy", "deepcopy"]


@pytest.fixture
def made() -> Iterator[list[Buffer]]:
    """Buffers to release after the test (strict ones only while referenced)."""
    bufs: list[Buffer] = []
    yield bufs
    for b in bufs:
        if b.ref_cnt() > 0:
            b.release()


def copied_on_dump(buf: Buffer) -> bool:
    """A mapping (a pickler must not read it unguarded) or a typed view of a composite
    (no single block holds it): copied once on dump, loaded as heap over the copy."""
    mem = buf._mem
    return isinstance(mem, MappedMemory) or (
        isinstance(mem, CompositeMemory) and not isinstance(buf, CompositeBuffer))


def loads_direct(buf: Buffer) -> bool:
    return buf.is_direct() and not copied_on_dump(buf)


def assert_like(loaded: ByteBuffer, original: ByteBuffer, content: bytes) -> None:
    """``loaded`` is what ``original.slice()`` would be, in another buffer (a shared
    one arrives as plain direct memory: a pickle cannot carry its descriptor)."""
    assert type(loaded) is (CompositeBuffer if isinstance(original, CompositeBuffer)
                            else ByteBuffer)
    assert bytes(loaded) == content
    assert (loaded.position(), loaded.limit(), loaded.capacity()) == (0, len(content),
                                                                      len(content))
    assert loaded.order() is original.order()
    assert loaded.is_read_only() == original.is_read_only()
    assert loaded.is_direct() == loads_direct(original)
    assert loaded.ref_cnt() == 1
    if isinstance(original, CompositeBuffer):
        assert isinstance(loaded, CompositeBuffer)
        assert loaded.num_components() == len(original.nio_buffers())


@pytest.mark.parametrize("way", WAYS, ids=WAY_IDS)
@pytest.mark.parametrize("kind", ALL_KINDS, ids=str)
def test_every_byte_buffer_kind(kind: BufferKind, way: Callable[[Any], Any],
                                made: list[Buffer]) -> None:
    buf, writer = kind.fresh_with_writer(16, pattern(16))
    made.append(buf)
    if writer is not None and writer is not buf:
        made.append(writer)
    buf.position(START)
    state = (buf.position(), buf.limit(), buf.capacity(), buf.ref_cnt(), buf.mark_value())
    loaded = way(buf)
    made.append(loaded)
    assert_like(loaded, buf, pattern(16)[START:])
    assert (buf.position(), buf.limit(), buf.capacity(), buf.ref_cnt(),
            buf.mark_value()) == state
    assert bytes(buf) == pattern(16)[START:]
    if writer is not None:  # independent memory: writing one leaves the other alone
        writer.put(START, 0x55)
        assert bytes(loaded) == pattern(16)[START:]
    if not loaded.is_read_only():
        loaded.put(0, 0x66)
        assert bytes(buf)[0] != 0x66 or pattern(16)[START] == 0x66
    if kind.pooled and kind.contiguous:  # the slot of this process's default allocator
        assert isinstance(loaded._mem, PooledMemory)
        assert loaded._mem._alloc is PooledAllocator.default()


@pytest.mark.parametrize("kind", ALL_KINDS, ids=str)
def test_out_of_band_copies(kind: BufferKind, made: list[Buffer]) -> None:
    """At most one copy of each piece between dump and load: dumping copies nothing but
    a mapping (once, through the SIGBUS guard: a pickler reads its frames unguarded),
    loading copies nothing into heap buffers given writable bytes (a mapping's copy
    included), and each direct or pooled piece exactly once."""
    buf = kind.fresh(64, pattern(64))
    made.append(buf)
    buf.position(START)
    pieces = buf.nio_buffers() if isinstance(buf, CompositeBuffer) else [buf]
    direct = [p for p in pieces if loads_direct(p)]
    mapped = [p for p in pieces if isinstance(p._mem, MappedMemory)]
    start = copies()
    before = copies()
    frames: list[pickle.PickleBuffer] = []
    data = pickle.dumps(buf, protocol=5, buffer_callback=frames.append)
    dumped = (len(mapped), sum(len(p) for p in mapped))
    assert (copies()[0] - before[0], copies()[1] - before[1]) == dumped, (
        "dumping with a buffer_callback copies only a mapping")
    before = copies()
    assert len(frames) == len(pieces)
    assert len(data) < 400  # the bytes are not in the stream
    received = [bytearray(f.raw()) for f in frames]
    loaded = pickle.loads(data, buffers=received)
    made.append(loaded)
    n, nbytes = copies()
    assert (n - before[0], nbytes - before[1]) == (len(direct), sum(len(p) for p in direct))
    assert (n - start[0], nbytes - start[1]) <= (len(pieces), 64 - START), (
        "more than one copy of a piece")
    if not direct:  # the loaded buffer is the received memory itself
        for r in received:
            r[0] ^= 0xFF
        assert bytes(loaded) == b"".join(received)


def _mapped_file(path: Path, writable: bool) -> ByteBuffer:
    path.write_bytes(pattern(4096))
    options = (OpenOption.READ, OpenOption.WRITE) if writable else (OpenOption.READ,)
    with FileChannel.open(path, *options) as fc:
        return fc.map(MapMode.READ_WRITE if writable else MapMode.READ_ONLY, 0, 4096)


@pytest.mark.parametrize("writable", [True, False], ids=["writable", "read-only"])
@pytest.mark.parametrize("view", [None, *TYPED_VIEWS])
@pytest.mark.parametrize("base", ["heap", "direct", "pooled", "mapped", "composite"])
def test_protocol_5_copies_each_kind_at_most_once(
        base: str, view: str | None, writable: bool, tmp_path: Path,
        made: list[Buffer]) -> None:
    """Counted end to end (dump and load, in band and out of band with writable
    frames): exactly the copies the module doc lists, never more than one."""
    bb: ByteBuffer
    if base == "heap":
        bb = ByteBuffer.wrap(bytearray(pattern(64)))
    elif base == "direct":
        bb = ByteBuffer.allocate_direct(64).put(0, pattern(64))
    elif base == "pooled":
        bb = PooledAllocator.default().allocate(64).put(0, pattern(64))
    elif base == "mapped":
        bb = _mapped_file(tmp_path / "f", writable)
    else:
        bb = CompositeBuffer.of(ByteBuffer.allocate_direct(29).put(0, pattern(64)[:29]),
                                ByteBuffer.allocate_direct(35).put(0, pattern(64)[29:]))
    made.append(bb)
    subject: Buffer = bb if view is None else getattr(bb, view)()
    if not writable:
        subject = subject.as_read_only_buffer()
    subject.position(1)
    carried = len(subject) * (1 if view is None else subject._size)
    # a copy of each block, at most: a composite ByteBuffer carries one per component
    blocks = 2 if base == "composite" and view is None else 1
    expected = 0 if base == "heap" else blocks
    for way in ("in band", "out of band"):
        before = copies()
        if way == "in band":
            loaded = pickle.loads(pickle.dumps(subject, protocol=5))
        else:
            loaded, _ = out_of_band(subject)
        made.append(loaded)
        n, nbytes = copies()
        assert (n - before[0], nbytes - before[1]) == (
            expected, carried if expected else 0), way
        assert loaded.is_read_only() == (not writable)


def test_direct_loads_into_the_direct_pool(made: list[Buffer]) -> None:
    buf = ByteBuffer.allocate_direct(100).put(0, pattern(100))
    made.append(buf)
    direct = next(p for p in buffer_pools() if p.name == "direct")
    loaded, frames = out_of_band(buf)
    made.append(loaded)
    after = next(p for p in buffer_pools() if p.name == "direct")
    assert frames == 1
    assert (after.count - direct.count, after.total_capacity - direct.total_capacity) == (1, 100)
    assert loaded.address() != buf.address()


def test_read_only_bytes_load_a_writable_heap_buffer_with_one_copy(
        made: list[Buffer]) -> None:
    buf = ByteBuffer.wrap(bytearray(pattern(32)))
    before = copies()
    loaded, _ = out_of_band(buf, writable=False)  # bytes: cannot be written
    made.append(loaded)
    assert not loaded.is_read_only()
    assert copies() == (before[0] + 1, before[1] + 32)
    ro, _ = out_of_band(buf.as_read_only_buffer(), writable=False)
    made.append(ro)
    assert ro.is_read_only() and copies() == (before[0] + 1, before[1] + 32)


def test_in_band_protocol_5_carries_the_bytes_once(made: list[Buffer]) -> None:
    """Without a buffer_callback, pickle writes the PickleBuffer in band (its own copy):
    a bytearray for a writable buffer, which the load wraps without another."""
    buf = ByteBuffer.wrap(bytearray(pattern(1000)))
    before = copies()
    data = pickle.dumps(buf, protocol=5)
    assert pattern(1000) in data
    loaded = pickle.loads(data)
    made.append(loaded)
    assert copies() == before
    assert isinstance(loaded.array(), memoryview | bytearray)


def test_mark_at_the_position_is_kept_below_it_is_not(made: list[Buffer]) -> None:
    buf = ByteBuffer.wrap(bytearray(pattern(10)))
    buf.position(4).mark()
    loaded = pickle.loads(pickle.dumps(buf, 5))
    assert loaded.mark_value() == 0
    buf.position(6)
    assert pickle.loads(pickle.dumps(buf, 5)).mark_value() == -1


@pytest.mark.parametrize("way", WAYS, ids=WAY_IDS)
@pytest.mark.parametrize("view", TYPED_VIEWS)
@pytest.mark.parametrize("base", ["heap", "direct", "composite"])
def test_every_typed_view(view: str, base: str, way: Callable[[Any], Any],
                          made: list[Buffer]) -> None:
    bb: ByteBuffer
    if base == "composite":
        bb = CompositeBuffer.of(ByteBuffer.wrap(bytearray(pattern(64)[:29])),
                                ByteBuffer.allocate_direct(35).put(0, pattern(64)[29:]))
    elif base == "direct":
        bb = ByteBuffer.allocate_direct(64).put(0, pattern(64))
    else:
        bb = ByteBuffer.wrap(bytearray(pattern(64)))
    made.append(bb)
    typed = getattr(bb.order(bb.order().LITTLE_ENDIAN), view)()
    typed.position(2).mark()
    expected = [typed.get(i) for i in range(2, typed.limit())]
    loaded = way(typed)
    made.append(loaded)
    assert type(loaded) is type(typed)
    assert (loaded.position(), loaded.limit(), loaded.mark_value()) == (0, len(expected), 0)
    assert [loaded.get(i) for i in range(loaded.limit())] == expected
    assert loaded.order() is typed.order()
    assert loaded.is_direct() == loads_direct(typed)
    assert not loaded.is_read_only()
    ro = way(typed.as_read_only_buffer())
    made.append(ro)
    assert ro.is_read_only()


@pytest.mark.parametrize("way", WAYS, ids=WAY_IDS)
def test_mapped_loads_as_heap(tmp_path: Path, way: Callable[[Any], Any],
                              made: list[Buffer]) -> None:
    (tmp_path / "f").write_bytes(pattern(4096))
    with FileChannel.open(tmp_path / "f", OpenOption.READ, OpenOption.WRITE) as fc, \
            fc.map(MapMode.READ_WRITE, 0, 4096) as mapped:
        mapped.position(100)
        loaded = way(mapped)
        made.append(loaded)
        assert type(loaded) is ByteBuffer and not loaded.is_direct()
        assert bytes(loaded) == pattern(4096)[100:]
        loaded.put(0, 1)  # a private copy: the file is untouched
        longs = way(mapped.as_long_buffer())
        made.append(longs)
        assert longs.get(0) == mapped.as_long_buffer().get(0)
    assert (tmp_path / "f").read_bytes() == pattern(4096)


def test_mapped_reads_through_the_guard_once(tmp_path: Path, made: list[Buffer]) -> None:
    (tmp_path / "f").write_bytes(pattern(4096))
    with FileChannel.open(tmp_path / "f", OpenOption.READ) as fc, \
            fc.map(MapMode.READ_ONLY, 0, 4096) as mapped:
        before = copies()
        loaded, frames = out_of_band(mapped)
        made.append(loaded)
        assert frames == 1 and loaded.is_read_only()
        assert copies() == (before[0] + 1, before[1] + 4096)  # the guarded read only


@pytest.mark.parametrize("way", WAYS, ids=WAY_IDS)
@pytest.mark.parametrize(("make", "error"), [
    (lambda: ByteBuffer.allocate_direct(8), ReleasedBufferError),
    (lambda: PooledAllocator.default().allocate(8), IllegalReferenceCountError),
], ids=["direct", "pooled"])
def test_released_buffer_refuses(make: Callable[[], ByteBuffer], error: type[Exception],
                                 way: Callable[[Any], Any]) -> None:
    buf = make()
    view = buf.as_short_buffer()
    buf.release()
    for released in (buf, view):
        with pytest.raises(error):
            way(released)


def test_release_while_an_out_of_band_frame_is_held(made: list[Buffer]) -> None:
    """A frame the transport still holds is an export: it keeps the memory alive and
    readable past release(), then the pool is back to what it was."""
    buf = ByteBuffer.allocate_direct(4096).put(0, pattern(4096))
    frames: list[pickle.PickleBuffer] = []
    pickle.dumps(buf, protocol=5, buffer_callback=frames.append)
    assert buf.release()
    with pytest.raises(ReleasedBufferError):
        bytes(buf)
    assert bytes(frames[0].raw()) == pattern(4096)
    frames.clear()


def test_composite_of_one_buffer_per_component(made: list[Buffer]) -> None:
    comp = CompositeBuffer.of(ByteBuffer.wrap(bytearray(b"abc")),
                              ByteBuffer.allocate_direct(4).put(0, b"defg"),
                              ByteBuffer.allocate(0),
                              ByteBuffer.wrap(b"hij"))
    made.append(comp)
    comp.position(2).limit(9)
    loaded, frames = out_of_band(comp)
    made.append(loaded)
    assert frames == 3  # "c", "defg", "hi": the empty component is not carried
    assert bytes(loaded) == b"cdefghi" and loaded.num_components() == 3
    parts = [loaded.component(i) for i in range(3)]
    assert [(bytes(p), p.is_direct(), p.is_read_only()) for p in parts] == [
        (b"c", False, True), (b"defg", True, True), (b"hi", False, True)]
    empty = CompositeBuffer.of().as_read_only_buffer()
    made.append(empty)
    again = pickle.loads(pickle.dumps(empty, 5))
    made.append(again)
    assert again.is_read_only() and again.capacity() == 0
