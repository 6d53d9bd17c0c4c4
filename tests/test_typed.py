"""Typed views: what the JDK differential found, pinned, and their integer arguments.

The differential itself (every op against java.nio) is tests/test_jdk_differential.py;
these run without a JDK and each fails on the behaviour it replaced.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from buffer_kinds import WRITABLE_KINDS, BufferKind
from zcio import (
    ByteBuffer,
    ByteOrder,
    FloatBuffer,
    IndexOutOfBoundsError,
    ReadOnlyBufferError,
    TypedBuffer,
)
from zcio._codec import float32_nan_bits

# float32 NaNs by their bits: signalling (quiet bit clear) and quiet, either sign
FLOAT_NANS = (0x7F800001, 0xFF800001, 0x7FBFFFFF, 0x7FA5A5A5, 0x7FC00001, 0xFFC00000)
BIG_ENDIAN, LITTLE_ENDIAN = ByteOrder.BIG_ENDIAN, ByteOrder.LITTLE_ENDIAN
ORDERS = (BIG_ENDIAN, LITTLE_ENDIAN)


@pytest.fixture(params=["heap", "direct"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[[int], ByteBuffer]]:
    """A ByteBuffer maker of the parametrised kind; direct ones released afterwards."""
    made: list[ByteBuffer] = []

    def new(n: int) -> ByteBuffer:
        b = ByteBuffer.allocate(n) if request.param == "heap" else ByteBuffer.allocate_direct(n)
        made.append(b)
        return b

    yield new
    for b in made:
        if request.param == "direct":
            b.release()


def _floats(make: Callable[[int], ByteBuffer], order: ByteOrder, *bits: int) -> tuple[
    ByteBuffer, FloatBuffer
]:
    bb = make(4 * len(bits)).order(order)
    for i, b in enumerate(bits):
        bb.put_int(4 * i, b - (1 << 32) if b >= 1 << 31 else b)
    return bb, bb.as_float_buffer()


def _bits(bb: ByteBuffer, i: int) -> int:
    return bb.get_int(4 * i) & 0xFFFFFFFF


# -- NaN payloads: Java's FloatBuffer keeps every bit of a float it gets and puts back ---


@pytest.mark.parametrize("order", ORDERS, ids=str)
@pytest.mark.parametrize("nan", FLOAT_NANS, ids=hex)
def test_float_nan_survives_get_then_put(
    make: Callable[[int], ByteBuffer], order: ByteOrder, nan: int
) -> None:
    bb, fb = _floats(make, order, nan, 0, 0, 0)
    fb.put(1, fb.get(0))  # absolute
    fb.position(2).put(fb.get(0))  # relative
    values = [0.0]
    fb.get(0, values, 0, 1)
    fb.put(3, values, 0, 1)  # bulk, through a list
    assert [_bits(bb, i) for i in range(4)] == [nan] * 4


@pytest.mark.parametrize("nan", FLOAT_NANS, ids=hex)
def test_float_nan_survives_a_view_to_view_put_in_either_order(
    make: Callable[[int], ByteBuffer], nan: int
) -> None:
    """``put(FloatBuffer)`` copies bytes, swapped when the orders differ (Java's putBuffer)."""
    _, src = _floats(make, BIG_ENDIAN, nan, nan)
    dst_bb = make(8).order(LITTLE_ENDIAN)
    dst = dst_bb.as_float_buffer()
    dst.put(src)
    assert src.position() == dst.position() == 2
    assert [_bits(dst_bb, 0), _bits(dst_bb, 1)] == [nan, nan]
    dst.put(0, src.flip(), 1, 1)
    assert _bits(dst_bb, 0) == nan


def test_a_nan_from_python_arithmetic_stays_the_canonical_quiet_nan() -> None:
    bb, fb = _floats(ByteBuffer.allocate, BIG_ENDIAN, 0, 0)
    fb.put(0, float("nan")).put(1, -float("inf") * 0)
    assert [_bits(bb, 0), _bits(bb, 1) & 0x7FFFFFFF] == [0x7FC00000, 0x7FC00000]


def test_a_double_nan_with_no_float_payload_bits_stays_a_nan() -> None:
    """A payload only in the low 29 bits must not narrow to infinity: quiet NaN, as (float)."""
    (low,) = struct.unpack(">d", (0x7FF0000000000001).to_bytes(8, "big"))
    bb, fb = _floats(ByteBuffer.allocate, BIG_ENDIAN, 0)
    fb.put(0, low)
    assert _bits(bb, 0) == 0x7FC00000


# -- check order: absolute put(index, view, offset, length) checks bounds first ---------


def test_absolute_put_of_a_view_checks_bounds_before_read_only() -> None:
    """``IntBuffer.put(int, IntBuffer, int, int)`` runs both checkFromIndexSize calls and
    only then throws ReadOnlyBufferException."""
    ro = ByteBuffer.allocate(8).as_int_buffer().as_read_only_buffer()
    src = ByteBuffer.allocate(8).as_int_buffer()
    with pytest.raises(IndexOutOfBoundsError):
        ro.put(1, src, 0, 2)  # index 1 + 2 > limit 2
    with pytest.raises(IndexOutOfBoundsError):
        ro.put(0, src, 1, 2)  # offset 1 + 2 > source limit 2
    with pytest.raises(ReadOnlyBufferError):
        ro.put(0, src, 0, 2)
    with pytest.raises(ReadOnlyBufferError):  # an array's bounds come after read-only
        ro.put(5, [1, 2], 0, 2)


# -- CharBuffer and str: a str is a Java String, UTF-16 code units -------------------------


@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_put_str_writes_utf16_code_units(order: ByteOrder) -> None:
    bb = ByteBuffer.allocate(12).order(order)
    cb = bb.as_char_buffer()
    cb.put("a\U0001f600").put("\U00010000")  # one character each beyond U+FFFF: two chars
    assert cb.position() == 5
    codec = "utf-16-be" if order is BIG_ENDIAN else "utf-16-le"
    assert bytes(bb.array()[:10]) == "a\U0001f600\U00010000".encode(codec)
    assert [cb.get(i) for i in range(3)] == ["a", "\ud83d", "\ude00"]


def test_str_of_a_char_buffer_joins_pairs_and_keeps_lone_surrogates() -> None:
    cb = ByteBuffer.allocate(14).as_char_buffer()
    for c in ("\ud83d", "\ude00", "\ud800", "A", "\udc00", "\udbff", "\udfff"):
        cb.put(c)
    assert str(cb.flip()) == "\U0001f600\ud800A\udc00\U0010ffff"


def test_put_str_with_offset_and_length_counts_code_units() -> None:
    """``put(text, offset, length)`` is Java's ``put(text, offset, offset + length)``."""
    cb = ByteBuffer.allocate(8).as_char_buffer()
    cb.put("x", 0, 1).put("a\U0001f600b", 1, 2).put("yz", 1)
    assert str(cb.flip()) == "x\U0001f600z"


def test_put_str_checks_bounds_before_read_only() -> None:
    """``CharBuffer.put(String, start, end)``: checkFromIndexSize, then read-only."""
    ro = ByteBuffer.allocate(8).as_char_buffer().as_read_only_buffer()
    with pytest.raises(IndexOutOfBoundsError):
        ro.put("abc", 2, 5)
    with pytest.raises(ReadOnlyBufferError):
        ro.put("abc", 1, 2)
    with pytest.raises(ReadOnlyBufferError):
        ro.put("\U0001f600")


# -- overlapping views of one parent: copied as through a temporary copy -------------------


@pytest.mark.parametrize("shift", [4, -4])
@pytest.mark.parametrize("src_order", ORDERS, ids=str)
def test_put_between_overlapping_views(shift: int, src_order: ByteOrder) -> None:
    bb = ByteBuffer.allocate(24)
    for i in range(6):
        bb.put_int(4 * i, i + 1)
    at = max(0, -shift)  # src: 4 ints from byte ``at``; dst from ``at + shift``
    dst = bb.duplicate().position(at + shift).as_int_buffer()  # BIG_ENDIAN
    src = bb.duplicate().order(src_order).position(at).limit(at + 16).as_int_buffer()
    expected = [src.get(i) for i in range(4)]
    dst.put(src)
    assert [dst.get(i) for i in range(4)] == expected


# -- integer arguments: operator.index, and nothing changes on a TypeError ----------------


def _views() -> list[TypedBuffer]:
    bb = ByteBuffer.allocate(32)
    return [bb.as_int_buffer(), bb.as_char_buffer(), bb.as_float_buffer()]


@pytest.mark.parametrize("np_int", [np.int64, np.int32, np.uint8, np.intp])
def test_numpy_ints_are_accepted_everywhere(np_int: Callable[[int], Any]) -> None:
    view = ByteBuffer.allocate(32).as_int_buffer()
    one, two = np_int(1), np_int(2)
    view.put(one, 7).put(np_int(0), [5, 6], one, one)
    assert view.get(one) == 7 and view.get(np_int(0)) == 6
    dst = [0, 0, 0]
    view.get(np_int(0), dst, one, two)
    assert dst == [0, 6, 7]
    view.get(dst, two, one)
    assert dst == [0, 6, 6] and view.position() == 1
    view.put([1, 2, 3], one, two)
    assert view.position() == 3 and view.get(1) == 2
    assert view.slice(one, two).get(0) == 2
    assert view.put(np_int(0), view.duplicate(), one, one).get(0) == 2


@pytest.mark.parametrize("bad", [1.0, True, False, "1", 2.5])
@pytest.mark.parametrize("call", [
    lambda v, x: v.get(x, [0, 0], 0, 1),
    lambda v, x: v.get([0, 0], x, 1),
    lambda v, x: v.get([0, 0], 0, x),
    lambda v, x: v.put(x, v.get(0)),
    lambda v, x: v.put(x, [v.get(0)], 0, 1),
    lambda v, x: v.put([v.get(0)], x, 1),
    lambda v, x: v.put([v.get(0)], 0, x),
    lambda v, x: v.put(0, v.duplicate(), x, 1),
    lambda v, x: v.slice(x, 1),
    lambda v, x: v.slice(0, x),
], ids=["get@dst", "get-offset", "get-length", "put@", "put@src", "put-offset", "put-length",
        "put@view-offset", "slice-index", "slice-length"])
def test_non_integer_arguments_raise_type_error_and_change_nothing(
    call: Callable[[TypedBuffer, Any], object], bad: Any
) -> None:
    for view in _views():
        view.put(0, view.get(1))
        before = (view.position(), view.limit(), view.mark_value(), view.slice().get(0))
        with pytest.raises(TypeError, match="must be an int"):
            call(view, bad)
        after = (view.position(), view.limit(), view.mark_value(), view.slice().get(0))
        assert after == before


@pytest.mark.parametrize("bad", [1.0, True, "x"])
def test_get_with_a_non_integer_index_raises_type_error(bad: Any) -> None:
    view = ByteBuffer.allocate(8).as_int_buffer()
    with pytest.raises(TypeError):
        view.get(bad)
    assert view.position() == 0


# -- ByteBuffer's own float get/put: the same NaN rule as FloatBuffer's --------------------

@pytest.mark.parametrize("kind", WRITABLE_KINDS, ids=str)
@pytest.mark.parametrize("bits", FLOAT_NANS, ids=hex)
def test_byte_buffer_float_nan_keeps_sign_payload_and_quiet_bit(kind: BufferKind, bits: int
                                                                  ) -> None:
    """get_float/put_float, absolute and relative, keep a float32 NaN's bits as Java's
    getFloat/putFloat do: a signalling NaN stays signalling (struct would quiet it)."""
    with kind.fresh(16) as buf:
        buf.put_int(0, bits)  # the raw bits, in the buffer's order
        v = buf.get_float(0)
        assert v != v and float32_nan_bits(v) == bits
        buf.put_float(4, v)
        assert buf.get_unsigned_int(4) == bits
        buf.position(8).put_float(v)
        assert buf.position() == 12
        assert buf.get_unsigned_int(8) == bits
        got = buf.position(8).get_float()
        assert buf.position() == 12
        assert float32_nan_bits(got) == bits
        assert float32_nan_bits(buf.rewind().as_float_buffer().get(0)) == bits  # the view too
