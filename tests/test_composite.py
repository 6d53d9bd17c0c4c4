"""CompositeBuffer beyond the ByteBuffer contract (which test_contract runs over composite
kinds): values straddling components, components and slices, ownership and reference
counts, what is (not) copied, and channel I/O as one gather/scatter call.

Syscall counts come from the fault-injection layer (``faults.Faults`` logs every call with
the length of each iovec); copies from ``zcio.metrics`` under ``"composite_copy"``.
"""

from __future__ import annotations

import gc
import os
import socket
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zcio
from faults import Faults, short
from zcio import (
    ByteBuffer,
    ByteOrder,
    FileChannel,
    IllegalArgumentError,
    IllegalReferenceCountError,
    IndexOutOfBoundsError,
    OpenOption,
    Pipe,
    PooledAllocator,
    ReadOnlyBufferError,
    ReleasedBufferError,
    SocketChannel,
    UnsupportedOperationError,
    _syscalls,
)
from zcio._composite import COPY_PATH, CompositeBuffer
from zcio._syscalls import IOV_MAX

BE, LE = ByteOrder.BIG_ENDIAN, ByteOrder.LITTLE_ENDIAN
DIRT = 0xEE


def pattern(n: int, seed: int = 0) -> bytes:
    return bytes((i * 37 + 11 + seed * 101) & 0xFF for i in range(n))


def window(data: bytes, lead: int = 2, tail: int = 3) -> ByteBuffer:
    """A heap buffer whose [position, limit) holds ``data``, dirt around it."""
    arr = bytearray([DIRT] * lead) + bytearray(data) + bytearray([DIRT] * tail)
    return ByteBuffer.wrap(arr, lead, len(data))


def cut(data: bytes, lengths: Sequence[int]) -> list[bytes]:
    out, at = [], 0
    for n in lengths:
        out.append(data[at : at + n])
        at += n
    assert at == len(data)
    return out


def composite(data: bytes, lengths: Sequence[int]) -> CompositeBuffer:
    return CompositeBuffer.of(*(window(part) for part in cut(data, lengths)))


def copies() -> int:
    return zcio.metrics.path(COPY_PATH).user_bytes


@pytest.fixture
def made() -> Iterator[list[ByteBuffer]]:
    """Buffers to release after the test (those still referenced)."""
    bufs: list[ByteBuffer] = []
    yield bufs
    for b in bufs:
        if b.ref_cnt() > 0:
            b.release()


# -- values across component boundaries ---------------------------------------------------

PRIMS = [  # (getter, putter, struct code, a value)
    ("get_short", "put_short", "h", -12345),
    ("get_unsigned_short", "put_short", "H", 0xBEEF),
    ("get_int", "put_int", "i", -19088744),
    ("get_unsigned_int", "put_int", "I", 0xCAFEBABE),
    ("get_long", "put_long", "q", -0x0123456789ABCDEF),
    ("get_float", "put_float", "f", -2.5),
    ("get_double", "put_double", "d", 1e-300),
]
SPLITS = {
    "bytes": [1] * 23,
    "uneven": [5, 6, 1, 11],
    "with-empty": [3, 0, 2, 0, 0, 18],
    "one": [23],
}


@pytest.mark.parametrize("split", SPLITS, ids=str)
@pytest.mark.parametrize("order", [BE, LE], ids=str)
@pytest.mark.parametrize(("getter", "putter", "fmt", "value"), PRIMS, ids=[p[0] for p in PRIMS])
def test_typed_values_straddle_components(
    split: str, order: ByteOrder, getter: str, putter: str, fmt: str, value: object,
    made: list[ByteBuffer],
) -> None:
    data = pattern(23)
    buf = composite(data, SPLITS[split]).order(order)
    made.append(buf)
    st = struct.Struct(order.prefix + fmt)
    for i in range(23 - st.size + 1):  # absolute, at every offset
        assert getattr(buf, getter)(i) == st.unpack_from(data, i)[0], i
    buf.position(1)
    at = 1
    while at + st.size <= 23:  # relative
        assert getattr(buf, getter)() == st.unpack_from(data, at)[0]
        at += st.size
    expected = bytearray(data)
    for i in range(0, 23 - st.size + 1, 3):
        getattr(buf, putter)(i, value)
        st.pack_into(expected, i, value)
        assert bytes(buf.duplicate().clear()) == expected, i
    got = b"".join(bytes(buf.component(k)) for k in range(buf.num_components()))
    assert got == expected  # the components' own memory holds the writes


def test_char_and_typed_view_straddle(made: list[ByteBuffer]) -> None:
    text = "zero-copy \u20ac\uffff!"
    raw = text.encode("utf-16-le")
    buf = composite(raw, [3, 4, 1, len(raw) - 8]).order(LE)
    made.append(buf)
    assert "".join(buf.get_char(2 * i) for i in range(len(text))) == text
    assert str(buf.as_char_buffer()) == text
    longs = buf.position(1).as_long_buffer()
    assert longs.get(0) == struct.unpack_from("<q", raw, 1)[0]
    longs.put(1, -2)
    assert buf.get_long(9) == -2
    assert longs.is_direct() is False


# -- components ---------------------------------------------------------------------------


def test_a_component_contributes_its_position_to_limit_at_add_time() -> None:
    arr = bytearray(b"..abc..")
    a = ByteBuffer.wrap(arr, 2, 3)
    with CompositeBuffer.of(a, window(b"de")) as buf:
        a.clear()  # later index changes of the added buffer do not matter...
        assert bytes(buf) == b"abcde"
        arr[3] = ord("X")  # ...its bytes do: shared, not copied
        assert bytes(buf) == b"aXcde"
        assert (buf.position(), buf.limit(), buf.capacity()) == (0, 5, 5)
        assert buf.num_components() == 2
        first = buf.component(0)
        assert (first.position(), first.limit(), first.capacity()) == (0, 3, 3)
        first.put(0, ord("Y"))
        assert arr == bytearray(b"..YXc..")
        first.position(2)  # a new buffer each time: the composite's own stay
        assert buf.component(0).position() == 0


def test_components_of_slices_and_empty_components() -> None:
    with composite(b"abcdefghi", [3, 0, 2, 4]) as buf:
        assert buf.num_components() == 4  # an empty buffer added is a component
        assert [bytes(buf.component(i)) for i in range(4)] == [b"abc", b"", b"de", b"fghi"]
        s = buf.slice(1, 6)
        assert [bytes(s.component(i)) for i in range(s.num_components())] == [
            b"bc", b"", b"de", b"fg"]
        assert s.num_components() == 4  # the empty one lies strictly inside
        t = buf.slice(3, 2)
        assert [bytes(t.component(i)) for i in range(t.num_components())] == [b"de"]
        assert buf.slice(4, 0).num_components() == 0
        ss = s.slice(3, 3)  # a slice of a slice
        assert bytes(ss) == b"efg"
        assert [bytes(ss.component(i)) for i in range(ss.num_components())] == [b"e", b"fg"]
        ss.put(0, ord("E"))
        assert bytes(buf) == b"abcdEfghi"  # all share the components' memory
        for bad in (-1, 4):
            with pytest.raises(IndexOutOfBoundsError):
                buf.component(bad)
        ro = buf.as_read_only_buffer()
        assert ro.component(0).is_read_only() is True
        with pytest.raises(ReadOnlyBufferError):
            ro.component(0).put(0, 1)


def test_add_component_grows_capacity_and_limit() -> None:
    with CompositeBuffer() as buf:
        assert (buf.capacity(), buf.num_components(), buf.is_direct()) == (0, 0, False)
        buf.add_component(window(b"ab")).position(1).mark()
        buf.add_component(window(b"cde"))
        assert (buf.position(), buf.limit(), buf.capacity(), buf.mark_value()) == (1, 5, 5, 1)
        buf.add_component(window(b"fg"), increase_limit=False)
        assert (buf.position(), buf.limit(), buf.capacity()) == (1, 5, 7)
        assert bytes(buf.limit(7)) == b"bcdefg"


def test_growing_a_duplicate_or_slice_leaves_the_original_alone() -> None:
    with composite(b"abcdef", [2, 4]) as buf:
        dup = buf.duplicate()
        buf.add_component(window(b"XY"))  # at the end of the shared space: appended
        dup.add_component(window(b"123"))  # not at the end: lays its pieces again first
        part = buf.slice(1, 3)
        part.add_component(window(b"!"))
        assert bytes(buf) == b"abcdefXY"
        assert bytes(dup) == b"abcdef123"
        assert bytes(part) == b"bcd!"
        assert (buf.num_components(), dup.num_components(), part.num_components()) == (3, 3, 3)
        buf.put(2, ord("C"))  # still one memory
        assert bytes(dup) == b"abCdef123"
        assert bytes(part) == b"bCd!"


def test_adding_a_composite_adds_its_components() -> None:
    x, y = window(b"xx"), ByteBuffer.allocate_direct(3).put(0, b"yyy")
    inner = CompositeBuffer.of(x, y).position(1)
    outer = CompositeBuffer.of(window(b"a"), inner)
    assert inner.is_released()  # its reference was handed over...
    assert (x.ref_cnt(), y.ref_cnt()) == (1, 1)  # ...its components retained
    assert bytes(outer) == b"axyyy"  # inner's [position, limit)
    assert outer.num_components() == 3
    outer.release()
    assert x.is_released() and y.is_released()


def test_add_own_retained_duplicate() -> None:
    with composite(b"abc", [1, 2]) as buf:
        buf.add_component(buf.retained_duplicate())
        assert bytes(buf) == b"abcabc"
        assert buf.ref_cnt() == 1
        buf.put(0, ord("A"))
        assert bytes(buf) == b"AbcAbc"  # the same memory twice
        with pytest.raises(IllegalArgumentError, match="retained"):
            buf.add_component(buf.duplicate())  # would hand over its only reference


def test_a_failed_add_takes_nothing() -> None:
    a, dead = window(b"abc"), window(b"z")
    dead.release()
    with CompositeBuffer.of(window(b"q")) as buf:
        for bad in ([a, b"not a buffer"], [a, dead]):
            with pytest.raises((TypeError, ReleasedBufferError)):
                buf.add_components(*bad)
            assert a.ref_cnt() == 1
            assert (buf.num_components(), bytes(buf)) == (1, b"q")
    assert a.ref_cnt() == 1
    a.release()


def test_a_read_only_component_makes_the_composite_read_only() -> None:
    with CompositeBuffer.of(window(b"ab"), ByteBuffer.wrap(b"cd")) as buf:
        assert buf.is_read_only() is True
        with pytest.raises(ReadOnlyBufferError):
            buf.put(0, 1)
        assert repr(buf) == "zcio.CompositeBufferR[pos=0 lim=4 cap=4]"


def test_a_read_only_composite_added_to_another_keeps_it_read_only() -> None:
    """Its components are writable underneath; added to a new composite, they must come
    as the read-only composite showed them (they once came writable, and the new
    composite wrote through to the original's memory)."""
    a = ByteBuffer.allocate(4)
    ro = CompositeBuffer.of(a.retained_duplicate()).as_read_only_buffer()
    with CompositeBuffer.of(ro.retained_duplicate()) as nested:
        assert nested.is_read_only() is True
        with pytest.raises(ReadOnlyBufferError):
            nested.put(0, 0x7F)
        assert all(b.is_read_only() for b in nested.nio_buffers())
    assert a.get(0) == 0
    ro.release()


def test_kind_queries() -> None:
    d = ByteBuffer.allocate_direct(8).put(0, b"01234567")
    with CompositeBuffer.of(d.slice(0, 4).retain(), d.slice(4, 4)) as buf:
        assert buf.is_direct() is True
        assert buf.has_array() is False
        with pytest.raises(UnsupportedOperationError):
            buf.array()
        with pytest.raises(UnsupportedOperationError, match="single address"):
            buf.address()
        inside = buf.slice(4, 3)  # in one component: it has an address
        assert inside.address() == d.address() + 4
        assert inside.alignment_offset(0, 4) == 0
        with pytest.raises(UnsupportedOperationError):
            CompositeBuffer.allocate(4)
    assert d.is_released()
    with CompositeBuffer.of(window(b"a"), ByteBuffer.allocate_direct(1)) as mixed:
        assert mixed.is_direct() is False


# -- reference counts ---------------------------------------------------------------------


def test_reference_counts_follow_netty() -> None:
    pooled = PooledAllocator.default().allocate(16 << 10).put(0, b"pool").limit(4)
    heap, direct = window(b"heap"), ByteBuffer.allocate_direct(6).put(0, b"direct")
    buf = CompositeBuffer.of(heap, direct, pooled)
    view = buf.as_int_buffer()
    part = buf.slice(2, 8)
    assert buf.ref_cnt() == part.ref_cnt() == view.ref_cnt() == 1
    assert buf.retain(2) is buf
    assert part.ref_cnt() == 3
    with pytest.raises(IllegalReferenceCountError, match="refCnt: 3, decrement: 4"):
        buf.release(4)
    assert buf.release(2) is False
    assert bytes(part) == b"apdirect"
    assert part.release() is True  # the last reference, through a slice
    assert heap.is_released() and direct.is_released() and pooled.is_released()
    assert zcio.buffer_pools()[0].count == 1  # only the pool's slab is left mapped
    for target, call in ((buf, lambda b: b.get(0)), (part, lambda b: b.get_int()),
                         (buf, lambda b: bytes(b)), (buf, lambda b: b.memoryviews()),
                         (view, lambda v: v.get(0)), (buf, lambda b: b.slice())):
        with pytest.raises(IllegalReferenceCountError, match="refCnt: 0"):
            call(target)
    with pytest.raises(IllegalReferenceCountError, match="refCnt: 0, decrement: 1"):
        buf.release()
    with pytest.raises(IllegalReferenceCountError, match="refCnt: 0, increment: 1"):
        buf.retain()
    assert (buf.position(), buf.limit()) == (0, 14)  # indexes stay readable


def test_a_component_retained_elsewhere_outlives_the_composite() -> None:
    a = window(b"keep").retain()
    buf = CompositeBuffer.of(a, window(b"go"))
    buf.release()
    assert a.ref_cnt() == 1
    assert bytes(a) == b"keep"
    with pytest.raises(IllegalReferenceCountError):
        buf.get(0)  # the composite is gone even though its memory is not
    a.release()


def test_a_component_released_behind_the_composites_back_is_reported() -> None:
    pooled = PooledAllocator.default().allocate(16 << 10).limit(4)
    buf = CompositeBuffer.of(window(b"x"), pooled)
    pooled.release()  # a wrong decrement: that reference belonged to the composite
    with pytest.raises(IllegalReferenceCountError):
        buf.get(2)
    with pytest.raises(IllegalReferenceCountError, match="component reference 1"):
        buf.release()  # every other component is still released
    assert buf.is_released()


def test_memory_is_not_reused_while_a_view_can_reach_it() -> None:
    alloc = PooledAllocator.default()
    pooled = alloc.allocate(16 << 10).put(0, b"secret").limit(6)
    buf = CompositeBuffer.of(window(b"a"), pooled)
    kept = buf.memoryviews()[1][1:]  # exported further: cannot be revoked
    buf.release()
    others = [alloc.allocate(16 << 10) for _ in range(4)]
    for o in others:
        o.put(0, b"XXXXXX")
    assert bytes(kept) == b"ecret"  # the slot waits until the view is gone
    for o in others:
        o.release()
    del kept
    gc.collect()


# -- copies -------------------------------------------------------------------------------


def test_memoryview_is_zero_copy_or_refused() -> None:
    with composite(b"abcdefgh", [3, 5]) as buf:
        before = copies()
        mv = buf.position(4).memoryview()  # in one component
        mv[0] = ord("E")
        assert buf.get(4) == ord("E")
        mv.release()
        buf.position(1)
        with pytest.raises(UnsupportedOperationError, match="memoryviews"):
            buf.memoryview()
        views = buf.memoryviews()
        assert [bytes(v) for v in views] == [b"bc", b"dEfgh"]
        views[0][0] = ord("B")
        parts = buf.nio_buffers()
        assert [bytes(p) for p in parts] == [b"Bc", b"dEfgh"]
        assert copies() == before  # none of that copied
        whole = buf.memoryview(allow_copy=True)
        assert (bytes(whole), whole.readonly) == (b"BcdEfgh", True)
        assert copies() == before + 7
        assert bytes(buf) == b"BcdEfgh"  # bytes() is a copy, and says so
        assert copies() == before + 14
        assert bytes(buf.position(8).memoryview()) == b""


def test_reads_writes_compares_and_compact_copy_nothing() -> None:
    data = pattern(40)
    with composite(data, [7, 1, 13, 19]) as buf, CompositeBuffer.of(
            window(data[:20]), window(data[20:])) as other:
        before = copies()
        buf.put_long(5, 7).get_long(5)
        dst = bytearray(30)
        buf.get(3, dst)
        buf.put(2, bytes(range(25)))
        buf.duplicate().put(ByteBuffer.wrap(data))
        plain = ByteBuffer.allocate(40)
        plain.put(buf.duplicate())
        assert buf.equals(other) and other.equals(buf) and buf == plain.flip()
        assert buf.hash_code() == ByteBuffer.wrap(data).hash_code()
        assert buf.position(9).compact().position() == 31
        assert copies() == before


def test_overlapping_copies_go_through_a_counted_temporary() -> None:
    data = pattern(10)
    with composite(data, [4, 6]) as buf:
        before = copies()
        buf.put(2, buf, 0, 7)  # forward, across the boundary: as if through a temporary
        assert copies() == before + 7
        assert bytes(buf) == data[:2] + data[:7] + data[9:]
    with composite(data, [4, 6]) as buf:
        src = buf.component(1).memoryview()  # memory of the second component
        buf.put(1, src, 0, 5)
        assert bytes(buf) == data[:1] + data[4:9] + data[6:]
        src.release()


def test_compact_with_components_sharing_memory() -> None:
    base = ByteBuffer.wrap(bytearray(b"abcdef"))
    base.retain()  # two references: one per component below
    with CompositeBuffer.of(base.slice(0, 4), base.slice(2, 4)) as buf:
        assert bytes(buf) == b"abcdcdef"
        before = copies()
        buf.position(3).compact()
        model = bytearray(b"abcdef")
        where = [0, 1, 2, 3, 2, 3, 4, 5]  # composite index -> byte of base
        for i, v in enumerate(b"dcdef"):  # Java: as if through a temporary
            model[where[i]] = v
        assert bytes(base.duplicate().clear()) == model
        assert copies() == before + 5


def test_comparisons_between_composites_of_different_shapes() -> None:
    a = pattern(30)
    b = a[:17] + bytes([a[17] ^ 0xFF]) + a[18:]
    with composite(a, [1, 10, 19]) as x, composite(b, [20, 10]) as y:
        assert x.mismatch(y) == y.mismatch(x) == 17
        assert x.compare_to(y) == ByteBuffer.wrap(a).compare_to(ByteBuffer.wrap(b))
        assert y.compare_to(x) == -x.compare_to(y)
        assert not x.equals(y)
        y.put(17, a[17])
        assert x.equals(y) and x.hash_code() == y.hash_code()
        assert x.limit(29).compare_to(y) == -1


# -- channels: one gather (scatter) call --------------------------------------------------


def _lengths(calls: list[tuple[str, tuple[object, ...]]], name: str) -> list[object]:
    return [args[1] for n, args in calls if n == name]


def test_file_write_is_one_writev_of_the_components(tmp_path: Path) -> None:
    data = pattern(100)
    path = tmp_path / "f"
    layer = Faults({})
    with composite(data, [10, 0, 30, 60]).position(5) as buf, \
            FileChannel.open(path, OpenOption.WRITE, OpenOption.CREATE) as ch, \
            _syscalls.override(layer), zcio.measure() as m:
        assert ch.write(buf) == 95
        assert buf.position() == 100
        assert ch.write(buf) == 0  # nothing left: no call
        buf.position(30)
        assert ch.write(buf, 200) == 70  # at a position: pwritev, the channel's stays
        assert ch.position() == 95
    assert _lengths(layer.calls, "writev") == [[5, 30, 60]]
    assert _lengths(layer.calls, "pwritev") == [[10, 60]]
    assert [n for n, _ in layer.calls if n in ("write", "pwrite")] == []
    assert path.read_bytes() == data[5:] + bytes(105) + data[30:]
    assert m.paths["file_write"].syscalls == 2
    assert COPY_PATH not in m.paths


def test_more_than_iov_max_components_are_chunked(tmp_path: Path) -> None:
    parts = [pattern(3, seed=i) for i in range(IOV_MAX + 476)]
    path = tmp_path / "f"
    layer = Faults({})
    with CompositeBuffer.of(*(window(p) for p in parts)) as buf, \
            FileChannel.open(path, OpenOption.WRITE, OpenOption.CREATE) as ch, \
            _syscalls.override(layer):
        assert buf.num_components() == IOV_MAX + 476
        assert ch.write(buf) == 3 * len(parts)
        assert not buf.has_remaining()
    assert [len(v) for v in _lengths(layer.calls, "writev")] == [IOV_MAX, 476]  # type: ignore[arg-type]
    assert path.read_bytes() == b"".join(parts)


def test_a_short_write_advances_exactly_what_the_kernel_took(tmp_path: Path) -> None:
    data = pattern(20)
    path = tmp_path / "f"
    layer = Faults({"writev": [short(7)]})
    with composite(data, [4, 4, 12]) as buf, \
            FileChannel.open(path, OpenOption.WRITE, OpenOption.CREATE) as ch, \
            _syscalls.override(layer):
        assert ch.write(buf) == 7  # the kernel took less: stop there
        assert buf.position() == 7
        assert ch.write(buf) == 13
        assert buf.position() == 20
    assert _lengths(layer.calls, "writev") == [[4, 4, 12], [1, 12]]
    assert path.read_bytes() == data


def test_gather_of_composites_and_plain_buffers(tmp_path: Path) -> None:
    path = tmp_path / "f"
    layer = Faults({})
    with composite(b"bcde", [1, 3]) as c1, composite(b"ghi", [2, 1]) as c2, \
            FileChannel.open(path, OpenOption.WRITE, OpenOption.CREATE) as ch, \
            _syscalls.override(layer):
        srcs = [ByteBuffer.wrap(b"a"), c1, ByteBuffer.wrap(b"f"), c2]
        assert ch.write(srcs) == 9
        assert [s.remaining() for s in srcs] == [0, 0, 0, 0]
    assert _lengths(layer.calls, "writev") == [[1, 1, 3, 1, 2, 1]]
    assert path.read_bytes() == b"abcdefghi"


def test_file_read_is_one_readv_into_the_components(tmp_path: Path) -> None:
    data = pattern(50)
    path = tmp_path / "f"
    path.write_bytes(data)
    layer = Faults({})
    parts = [ByteBuffer.allocate(10), ByteBuffer.allocate_direct(5), ByteBuffer.allocate(40)]
    with CompositeBuffer.of(*parts).position(3) as buf, FileChannel.open(path) as ch, \
            _syscalls.override(layer):
        assert ch.read(buf) == 50  # what the file holds, into 7 + 5 + 38 bytes
        assert buf.position() == 53
        assert bytes(buf.flip().position(3)) == data
        assert bytes(parts[1]) == data[7:12]  # the components' own memory
        assert ch.read(buf.clear()) == -1
    assert _lengths(layer.calls, "readv") == [[7, 5, 40], [10, 5, 40]]


def test_read_into_a_read_only_composite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    with composite(b"xyz", [1, 2]) as buf, FileChannel.open(path) as ch:
        with pytest.raises(IllegalArgumentError):
            ch.read(buf.as_read_only_buffer())
        assert bytes(buf) == b"xyz"


@pytest.fixture
def sockets() -> Iterator[tuple[SocketChannel, socket.socket]]:
    a, b = socket.socketpair()
    with SocketChannel.from_socket(a) as ch, b:
        b.settimeout(10)
        yield ch, b


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk
        out += chunk
    return bytes(out)


def test_socket_write_is_one_sendmsg(sockets: tuple[SocketChannel, socket.socket]) -> None:
    ch, peer = sockets
    data = pattern(64)
    layer = Faults({"sendmsg": [short(10)]})
    with composite(data, [8, 16, 40]) as buf, _syscalls.override(layer):
        assert ch.write(buf) == 10  # a short send: positions say exactly that
        assert buf.position() == 10
        assert ch.write(buf) == 54
        assert recv_exactly(peer, 64) == data
    assert _lengths(layer.calls, "sendmsg") == [[8, 16, 40], [14, 40]]
    assert _lengths(layer.calls, "send") == []


def test_socket_read_is_one_recvmsg_into(sockets: tuple[SocketChannel, socket.socket]) -> None:
    ch, peer = sockets
    data = pattern(30)
    peer.sendall(data)
    layer = Faults({})
    with composite(bytes(30), [10, 5, 15]) as buf, _syscalls.override(layer):
        got = 0
        while got < 30:
            got += ch.read(buf)
        assert bytes(buf.flip()) == data
    assert _lengths(layer.calls, "recvmsg_into")[0] == [10, 5, 15]
    assert _lengths(layer.calls, "recv_into") == []


def test_pipe_write_and_read_are_one_call_each() -> None:
    data = pattern(40)
    layer = Faults({})
    with Pipe.open() as p, composite(data, [1, 19, 20]) as src, \
            composite(bytes(40), [25, 15]) as dst, _syscalls.override(layer):
        assert p.sink().write(src) == 40
        assert p.source().read(dst) == 40
        assert bytes(dst.flip()) == data
    assert _lengths(layer.calls, "writev") == [[1, 19, 20]]
    assert _lengths(layer.calls, "readv") == [[25, 15]]


def test_vmsplice_takes_each_component(tmp_path: Path) -> None:
    data = pattern(12)
    with Pipe.open() as p, composite(data, [5, 7]) as buf:
        assert zcio.vmsplice(p.sink(), buf) == 12
        assert buf.position() == 12
        out = ByteBuffer.allocate(12)
        assert p.source().read(out) == 12
        assert bytes(out.flip()) == data


def test_nonblocking_pipe_write_of_a_composite_to_a_full_pipe() -> None:
    with Pipe.open() as p, composite(pattern(10), [5, 5]) as buf:
        sink = p.sink().configure_blocking(False)
        filler = ByteBuffer.allocate(1 << 20)
        while sink.write(filler.clear()) > 0:
            pass
        assert sink.write(buf) == 0
        assert buf.position() == 0
        os.read(p.source().fileno(), 1 << 20)


# -- properties -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=40), st_data=st.data())
def test_slices_of_slices_and_growth_agree_with_a_model(data: bytes, st_data: st.DataObject
                                                        ) -> None:
    lengths: list[int] = []
    left = len(data)
    for _ in range(12):  # bounded: a run of drawn zeros once exhausted hypothesis' entropy
        if not left:
            break
        n = st_data.draw(st.integers(0, left), label="component")
        lengths.append(n)
        left -= n
    if left:
        lengths.append(left)
    buf = composite(data, lengths)
    model = bytearray(data)
    try:
        current, view = buf, model
        for _ in range(st_data.draw(st.integers(0, 4), label="depth")):
            i = st_data.draw(st.integers(0, len(view)), label="index")
            n = st_data.draw(st.integers(0, len(view) - i), label="length")
            current, view = current.slice(i, n), view[i : i + n]
            assert bytes(current) == bytes(view)
            parts = [bytes(current.component(k)) for k in range(current.num_components())]
            assert b"".join(parts) == bytes(view)
            assert [len(p) for p in current.memoryviews()] == [len(p) for p in parts if p]
        extra = st_data.draw(st.binary(max_size=5), label="extra")
        grown = current.duplicate()
        grown.add_component(window(extra))
        assert bytes(grown) == bytes(view) + extra
        assert bytes(current) == bytes(view)  # the original keeps its components
        for i in range(len(view) - 3):
            assert grown.get_int(i) == struct.unpack_from(">i", bytes(view) + extra, i)[0]
    finally:
        buf.release()
