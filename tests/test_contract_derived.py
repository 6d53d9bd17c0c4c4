"""The ByteBuffer contract (Java 17) over every buffer kind: derived buffers, comparison,
Python views, arrays and alignment.

Sections 7, 8, 9, 10 of the contract; what the files share is in
``contract_helpers`` and ``conftest`` (see ``contract_helpers`` for how kinds are
registered).
"""

from __future__ import annotations

import random
import sys

import pytest

from buffer_kinds import (
    BufferKind,
    pattern,
)
from contract_helpers import (
    BE,
    IOOB,
    LE,
    RO,
    UOE,
    Made,
    content,
    every_kind,
    indexes,
    other,
    ref_compare,
    ref_hash,
    ref_mismatch,
    snapshot,
    to_int32,
    writable_kinds,
)
from zcio import (
    ByteBuffer,
)

# == 7. derived buffers ====================================================================


@every_kind
def test_slice(kind: BufferKind, mk: Made) -> None:
    data = pattern(10)
    buf, writer = mk.pair(kind, 10, data)
    buf.order(LE).position(2).limit(7).mark().position(3)
    s = buf.slice()
    assert indexes(s) == (0, 4, -1, 4)
    assert s.order() is BE
    assert s.is_read_only() is kind.is_read_only
    assert s.is_direct() is kind.is_direct
    assert bytes(s) == data[3:7]
    assert indexes(buf) == (3, 7, 2, 10)
    assert buf.order() is LE
    if writer is not None:
        writer.put(4, 0x55)
        assert s.get(1) == 0x55
    if not kind.is_read_only:
        s.put(0, 0x66)
        assert buf.get(3) == 0x66
    expected = bytearray(data)
    if writer is not None:
        expected[4] = 0x55
    if not kind.is_read_only:
        expected[3] = 0x66
    s2 = buf.slice(1, 5)
    assert indexes(s2) == (0, 5, -1, 5)
    assert s2.order() is BE
    assert bytes(s2) == expected[1:6]
    assert bytes(buf.slice(3, 4)) == expected[3:7]  # up to the limit
    assert bytes(buf.slice(7, 0)) == b""
    with pytest.raises(IOOB):
        buf.slice(3, 5)  # past the limit 7, though within the capacity
    assert bytes(s2.slice(1, 2)) == expected[2:4]  # slice of a slice
    assert indexes(buf) == (3, 7, 2, 10)
    if kind.has_array:
        assert s.array() is buf.array()
        assert s.array_offset() == kind.array_offset + 3
        assert s2.array_offset() == kind.array_offset + 1
        assert s2.slice(1, 2).array_offset() == kind.array_offset + 2


@every_kind
def test_duplicate(kind: BufferKind, mk: Made) -> None:
    data = pattern(10)
    buf, writer = mk.pair(kind, 10, data)
    buf.order(LE).position(2).mark().position(3).limit(7)
    d = buf.duplicate()
    assert indexes(d) == (3, 7, 2, 10)
    assert d.order() is BE
    assert d.is_read_only() is kind.is_read_only
    assert d.is_direct() is kind.is_direct
    assert d.has_array() is kind.has_array
    if kind.has_array:
        assert d.array() is buf.array()
        assert d.array_offset() == buf.array_offset()
    d.position(5).limit(9)
    d.reset()
    assert indexes(buf) == (3, 7, 2, 10)
    assert indexes(d) == (2, 9, 2, 10)
    if writer is not None:
        writer.put(5, 0x11)
        assert d.get(5) == 0x11
    if not kind.is_read_only:
        d.put(0, 0x22)
        assert buf.get(0) == 0x22


@every_kind
def test_as_read_only_buffer(kind: BufferKind, mk: Made) -> None:
    data = pattern(10)
    buf, writer = mk.pair(kind, 10, data)
    buf.order(LE).position(2).mark().position(4).limit(8)
    r = buf.as_read_only_buffer()
    assert indexes(r) == (4, 8, 2, 10)
    assert r.is_read_only() is True
    assert r.order() is BE
    assert r.is_direct() is kind.is_direct
    assert r.has_array() is False
    with pytest.raises(kind.no_array_error) as info:
        r.array()
    assert type(info.value) is kind.no_array_error
    assert repr(r).startswith(f"zcio.{kind.read_only_class_name}[")
    if writer is not None:
        writer.put(5, 0x33)
        assert r.get(5) == 0x33
    r.position(6)
    assert buf.position() == 4
    with pytest.raises(RO):
        r.put(0)


@writable_kinds
def test_compact(kind: BufferKind, mk: Made) -> None:
    data = pattern(8)
    buf = mk.fresh(kind, 8, data)
    buf.position(1).mark().position(2).limit(5)
    assert buf.compact() is buf
    assert content(buf) == data[2:5] + data[3:]
    assert indexes(buf) == (3, 8, -1, 8)
    buf = mk.fresh(kind, 8, data).position(6).limit(6)
    buf.compact()  # nothing remaining
    assert content(buf) == data
    assert indexes(buf) == (0, 8, -1, 8)
    buf = mk.fresh(kind, 8, data)
    buf.compact()  # everything remaining
    assert content(buf) == data
    assert indexes(buf) == (8, 8, -1, 8)


@every_kind
def test_order(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8, bytes([1, 2, 3, 4, 5, 6, 7, 8]))
    assert buf.order() is kind.order
    assert buf.order(BE) is buf
    assert buf.get_int(0) == 0x01020304
    buf.order(LE)
    assert buf.get_int(0) == 0x04030201
    assert buf.get_short(6) == 0x0807
    with pytest.raises(TypeError):
        buf.order("little")  # type: ignore[call-overload]
    assert buf.order() is LE


# == 8. comparison =========================================================================


def _comparison_pairs() -> list[tuple[bytes, bytes]]:
    pairs = [
        (b"", b""),
        (b"", b"\x01"),
        (b"abc", b"abc"),
        (b"abc", b"abcd"),
        (b"\x7f", b"\x80"),  # 127 vs -128: signed compare says greater by 255
        (b"\x00", b"\xff"),  # 0 vs -1
        (b"\x80\x00", b"\x80\x01"),
        (b"\xff" * 3, b"\xff" * 3 + b"\x00"),
        (bytes(200), bytes(150) + b"\x01" + bytes(49)),  # a mismatch deep in a long run
        (pattern(100), pattern(100, seed=1)),
    ]
    rng = random.Random(20240611)
    for _ in range(12):
        a = bytes(rng.choice(b"\x00\x7f\x80\xff\x01") for _ in range(rng.randrange(0, 9)))
        b = bytearray(a)
        if b and rng.random() < 0.6:
            b[rng.randrange(len(b))] = rng.choice(b"\x00\x7f\x80\xff\x01")
        if rng.random() < 0.3:
            b += bytes([rng.randrange(256)])
        pairs.append((a, bytes(b)))
    return pairs + [(b, a) for a, b in pairs]


COMPARISON_PAIRS = _comparison_pairs()


@every_kind
def test_equals_compare_mismatch_hash(kind: BufferKind, mk: Made) -> None:
    for a, b in COMPARISON_PAIRS:
        x = mk.fresh(kind, len(a) + 3, b"\x01\x02" + a + b"\x03").position(2).limit(2 + len(a))
        y = ByteBuffer.wrap(bytearray(b"\x09" + b + b"\x08\x07"), 1, len(b))
        before_x, before_y = snapshot(x), snapshot(y)
        eq, cmp = a == b, ref_compare(a, b)
        assert x.equals(y) is eq, (a, b)
        assert y.equals(x) is eq
        assert x.compare_to(y) == cmp, (a, b)
        assert y.compare_to(x) == ref_compare(b, a)
        assert x.mismatch(y) == ref_mismatch(a, b), (a, b)
        assert y.mismatch(x) == ref_mismatch(b, a)
        assert x.hash_code() == ref_hash(a), a
        assert (x == y) is eq
        assert (x != y) is (not eq)
        assert (x < y) is (cmp < 0)
        assert (x <= y) is (cmp <= 0)
        assert (x > y) is (cmp > 0)
        assert (x >= y) is (cmp >= 0)
        assert snapshot(x) == before_x
        assert snapshot(y) == before_y


def test_reference_comparison_against_known_java_values() -> None:
    """Values computed with Java 17 (ByteBuffer.wrap(...).hashCode()/compareTo())."""
    assert ref_hash(b"") == 1
    assert ref_hash(b"\x01\x02\x03") == 31 * (31 * (31 + 3) + 2) + 1
    assert ref_hash(bytes([0xFF] * 10)) == to_int32(
        sum(-1 * 31**i for i in range(10)) + 31**10
    )
    assert ref_compare(b"\x7f", b"\x80") == 255
    assert ref_compare(b"ab", b"abc") == -1


@every_kind
def test_equality_ignores_order_and_other_types(kind: BufferKind, mk: Made) -> None:
    data = pattern(8)
    x = mk.fresh(kind, 8, data)
    y = ByteBuffer.wrap(bytearray(data)).order(other(kind.order))
    assert x.equals(y) is True
    assert x == y
    assert x == x.duplicate()
    assert x.equals(x) is True
    assert x.equals(data) is False
    assert (x == data) is False
    assert x != data
    assert x.equals(x.as_char_buffer()) is False
    assert x.equals(None) is False


@every_kind
def test_ordering_against_a_non_buffer_raises_type_error(kind: BufferKind, mk: Made) -> None:
    x = mk.fresh(kind, 4)
    for op in (
        lambda: x < b"abc",  # type: ignore[operator]
        lambda: x <= 1,  # type: ignore[operator]
        lambda: x > "x",  # type: ignore[operator]
        lambda: x >= None,  # type: ignore[operator]
    ):
        with pytest.raises(TypeError):
            op()


@every_kind
def test_buffers_are_unhashable(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 4)
    with pytest.raises(TypeError):
        hash(buf)
    with pytest.raises(TypeError):
        {buf}  # noqa: B018
    with pytest.raises(TypeError):
        hash(buf.as_int_buffer())


# == 9. Python views =======================================================================


@every_kind
def test_memoryview_is_zero_copy(kind: BufferKind, mk: Made) -> None:
    data = pattern(8)
    buf, writer = mk.pair(kind, 8, data)
    buf.position(2).limit(6)
    if not kind.contiguous and len(buf.memoryviews()) > 1:  # type: ignore[attr-defined]
        with pytest.raises(UOE):  # spans components: no single view without a copy
            buf.memoryview()
        assert b"".join(buf.memoryviews()) == data[2:6]  # type: ignore[attr-defined]
        return
    mv = buf.memoryview()
    assert (len(mv), mv.format, mv.ndim, mv.readonly) == (4, "B", 1, kind.is_read_only)
    assert bytes(mv) == data[2:6]
    if writer is not None:
        writer.put(3, 0x42)
        assert mv[1] == 0x42
    if kind.is_read_only:
        with pytest.raises(TypeError):
            mv[0] = 1
    else:
        mv[0] = 0x99
        assert buf.get_unsigned_byte(2) == 0x99
    mv.release()
    assert indexes(buf) == (2, 6, -1, 8)
    assert len(buf.position(6).memoryview()) == 0


@every_kind
def test_bytes_is_a_copy_of_the_remaining(kind: BufferKind, mk: Made) -> None:
    data = pattern(8)
    buf, writer = mk.pair(kind, 8, data)
    buf.position(1).limit(7)
    copy = bytes(buf)
    assert copy == data[1:7]
    assert indexes(buf) == (1, 7, -1, 8)
    if writer is not None:
        writer.put(1, 0)
        assert copy == data[1:7]  # not a view
    assert bytes(buf.position(7)) == b""


@every_kind
def test_repr(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8)
    assert repr(buf) == f"zcio.{kind.class_name}[pos=0 lim=8 cap=8]"
    buf.limit(7).position(1)
    assert repr(buf) == f"zcio.{kind.class_name}[pos=1 lim=7 cap=8]"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="__buffer__ (PEP 688) needs 3.12")
@every_kind
def test_buffer_protocol(kind: BufferKind, mk: Made) -> None:
    data = pattern(8)
    buf = mk.fresh(kind, 8, data).position(2).limit(5)
    if not kind.contiguous and len(buf.memoryviews()) > 1:  # type: ignore[attr-defined]
        with pytest.raises(UOE):  # spans components: no single buffer to export
            memoryview(buf)  # type: ignore[arg-type, unused-ignore]
        return
    mv = memoryview(buf)  # type: ignore[arg-type, unused-ignore]
    assert bytes(mv) == data[2:5]
    assert mv.readonly is kind.is_read_only
    mv.release()


# == 10. kind: arrays, direct, alignment ===================================================


@every_kind
def test_array_access(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8, pattern(8))
    assert buf.has_array() is kind.has_array
    assert buf.is_direct() is kind.is_direct
    if kind.has_array:
        arr = buf.array()
        assert kind.array_type is not None
        assert isinstance(arr, kind.array_type)
        assert buf.array() is arr
        off = buf.array_offset()
        assert off == kind.array_offset
        buf.put(1, 0x5A)  # zero copy, both ways
        assert arr[off + 1] == 0x5A
        arr[off + 2] = 0x6B
        assert buf.get(2) == 0x6B
        return
    expected = kind.no_array_error
    for call in (buf.array, buf.array_offset):
        with pytest.raises(UOE) as info:
            call()
        assert type(info.value) is expected


def test_wrap_with_offset_follows_java() -> None:
    arr = bytearray(pattern(10))
    buf = ByteBuffer.wrap(arr, 3, 4)
    assert indexes(buf) == (3, 7, -1, 10)
    assert buf.array() is arr
    assert buf.array_offset() == 0
    for off, length in ((11, 0), (-1, 2), (3, 8), (0, -1)):
        with pytest.raises(IOOB):
            ByteBuffer.wrap(arr, off, length)


@every_kind
def test_alignment_offset(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 64)
    if not kind.contiguous:  # no single address: alignment is per component
        for call in (buf.address, lambda: buf.alignment_offset(0, 1)):
            with pytest.raises(UOE):
                call()
        return
    addr = buf.address()
    if kind.page_aligned:
        assert addr % 4096 == 0
    units = (1, 2, 4, 8, 16, 64, 4096) if kind.is_direct else (1, 2, 4, 8)
    for unit in units:
        for index in (0, 1, 3, 7, 63, 100):  # not checked against the limit
            assert buf.alignment_offset(index, unit) == (addr + index) % unit, (index, unit)
    if not kind.is_direct:
        with pytest.raises(UOE):
            buf.alignment_offset(0, 16)


def java_aligned_range(address: int, pos: int, lim: int, unit: int) -> tuple[int, int]:
    """``ByteBuffer.alignedSlice`` (Java 17): the range of the slice it returns."""
    pos_mod, lim_mod = (address + pos) % unit, (address + lim) % unit
    aligned_pos = pos + (unit - pos_mod) if pos_mod > 0 else pos
    aligned_lim = lim - lim_mod
    if aligned_pos > lim or aligned_lim < pos:
        aligned_pos = aligned_lim = pos
    return aligned_pos, aligned_lim


@every_kind
def test_aligned_slice(kind: BufferKind, mk: Made) -> None:
    data = pattern(64)
    buf = mk.fresh(kind, 64, data).position(3).limit(61)
    if not kind.contiguous:
        with pytest.raises(UOE):
            buf.aligned_slice(1)
        return
    units = (1, 2, 4, 8, 16, 32, 4096) if kind.is_direct else (1, 2, 4, 8)
    for unit in units:
        s = buf.aligned_slice(unit)
        start = s.address() - buf.address()
        end = start + s.capacity()
        assert s.capacity() % unit == 0
        assert s.order() is BE
        assert s.is_read_only() is kind.is_read_only
        assert (start, end) == java_aligned_range(buf.address(), 3, 61, unit), unit
        if s.capacity():
            assert s.address() % unit == 0
        assert bytes(s) == data[start:end]
    assert indexes(buf) == (3, 61, -1, 64)
