"""The ByteBuffer contract (Java 17) over every buffer kind: bulk get and put, failure atomicity,
read-only buffers.

Sections 4, 5, 6 of the contract; what the files share is in
``contract_helpers`` and ``conftest`` (see ``contract_helpers`` for how kinds are
registered).
"""

from __future__ import annotations

import array
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from buffer_kinds import (
    BufferKind,
    pattern,
)
from contract_helpers import (
    IAE,
    IOOB,
    OVER,
    RO,
    UNDER,
    Call,
    Made,
    content,
    every_kind,
    indexes,
    read_only_kinds,
    signed,
    snapshot,
    writable_kinds,
)
from zcio import (
    ByteBuffer,
    InvalidMarkError,
)

# == 4. bulk get and put ==================================================================

DESTINATIONS: dict[str, Callable[[int], Any]] = {
    "bytearray": bytearray,
    "memoryview": lambda n: memoryview(bytearray(n)),
    "numpy": lambda n: np.zeros(n, dtype=np.uint8),
    "array": lambda n: array.array("B", bytes(n)),
}
SOURCES: dict[str, Callable[[bytes], Any]] = {
    "bytes": bytes,
    "bytearray": bytearray,
    "memoryview": memoryview,
    "readonly-memoryview": lambda b: memoryview(bytearray(b)).toreadonly(),
    "numpy": lambda b: np.frombuffer(b, dtype=np.uint8).copy(),
    "array": lambda b: array.array("B", b),
}


@every_kind
@pytest.mark.parametrize("dst_type", DESTINATIONS)
def test_bulk_get_relative(kind: BufferKind, dst_type: str, mk: Made) -> None:
    new = DESTINATIONS[dst_type]
    data = pattern(12)
    buf = mk.fresh(kind, 12, data)
    buf.position(2)
    dst = new(5)
    assert buf.get(dst) is buf
    assert bytes(dst) == data[2:7]
    assert buf.position() == 7
    dst = new(6)
    buf.get(dst, 1, 3)
    assert bytes(dst) == b"\0" + data[7:10] + b"\0\0"
    assert buf.position() == 10
    dst = new(4)
    buf.get(dst, 2)  # the rest of dst
    assert bytes(dst) == b"\0\0" + data[10:12]
    assert buf.position() == 12
    buf.get(new(0))
    dst = new(1)
    with pytest.raises(UNDER):
        buf.get(dst)
    assert bytes(dst) == b"\0"
    assert indexes(buf) == (12, 12, -1, 12)


@every_kind
@pytest.mark.parametrize("dst_type", DESTINATIONS)
def test_bulk_get_absolute(kind: BufferKind, dst_type: str, mk: Made) -> None:
    new = DESTINATIONS[dst_type]
    data = pattern(12)
    buf = mk.fresh(kind, 12, data)
    buf.position(3).limit(10)
    dst = new(6)
    assert buf.get(4, dst, 1, 5) is buf
    assert bytes(dst) == b"\0" + data[4:9]
    dst = new(6)
    buf.get(0, dst)
    assert bytes(dst) == data[0:6]
    assert indexes(buf) == (3, 10, -1, 12)
    with pytest.raises(IOOB):
        buf.get(8, new(4))  # 8 + 4 > limit 10
    with pytest.raises(IOOB):
        buf.get(-1, new(1))
    with pytest.raises(IOOB):
        buf.get(0, new(2), 1, 2)
    assert indexes(buf) == (3, 10, -1, 12)


@every_kind
def test_bulk_get_rejects_read_only_destinations(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 4, pattern(4))
    for dst in (b"\0\0", memoryview(bytearray(2)).toreadonly()):
        with pytest.raises(TypeError):
            buf.get(dst)
        with pytest.raises(TypeError):
            buf.get(0, dst)
    assert indexes(buf) == (0, 4, -1, 4)


@writable_kinds
@pytest.mark.parametrize("src_type", SOURCES)
def test_bulk_put(kind: BufferKind, src_type: str, mk: Made) -> None:
    src = SOURCES[src_type]
    buf = mk.fresh(kind, 12)
    buf.position(1)
    assert buf.put(src(b"abc")) is buf
    assert buf.position() == 4
    buf.put(src(b"wxyz"), 1, 2)
    assert buf.position() == 6
    buf.put(src(b"0123"), 2)  # the rest of src
    assert buf.position() == 8
    expected = b"\0abcxy23\0\0\0\0"
    assert content(buf) == expected
    before = snapshot(buf)
    with pytest.raises(OVER):
        buf.put(src(b"12345"))
    assert snapshot(buf) == before
    assert buf.put(9, src(b"KL")) is buf
    buf.put(0, src(b"PQRS"), 1, 2)
    assert buf.position() == 8
    assert content(buf) == b"QRbcxy23\0KL\0"


@writable_kinds
def test_put_buffer_relative(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8, pattern(8))
    src = ByteBuffer.wrap(bytearray(b"ABCDEFGH"), 2, 4)
    buf.position(3)
    assert buf.put(src) is buf
    assert content(buf) == pattern(8)[:3] + b"CDEF" + pattern(8)[7:]
    assert buf.position() == 7
    assert (src.position(), src.limit()) == (6, 6)
    big = ByteBuffer.wrap(bytearray(b"xy"))
    before = snapshot(buf)
    with pytest.raises(OVER):
        buf.put(big)
    assert snapshot(buf) == before
    assert (big.position(), big.limit()) == (0, 2)
    with pytest.raises(IAE):
        buf.put(buf)
    assert snapshot(buf) == before


@every_kind
@pytest.mark.parametrize("dst_direct", [False, True], ids=["into-heap", "into-direct"])
def test_put_buffer_from_every_kind(kind: BufferKind, dst_direct: bool, mk: Made) -> None:
    data = pattern(10)
    src = mk.fresh(kind, 10, data)
    src.position(2).limit(7)
    dst = mk.direct(8) if dst_direct else ByteBuffer.allocate(8)
    dst.position(1)
    dst.put(src)
    assert content(dst) == b"\0" + data[2:7] + b"\0\0"
    assert dst.position() == 6
    assert indexes(src) == (7, 7, -1, 10)
    src.position(2)
    dst.clear()
    dst.put(5, src, 0, 3)  # absolute: src offsets ignore src's position
    assert content(dst) == b"\0" + data[2:6] + data[0:3]
    assert (src.position(), dst.position()) == (2, 0)
    dst.put(0, src, 5)  # length defaults to src.limit() - offset
    assert content(dst)[:2] == data[5:7]
    with pytest.raises(IOOB):
        dst.put(0, src, 5, 3)  # 5 + 3 > src.limit() 7
    with pytest.raises(IOOB):
        dst.put(6, src, 0, 3)  # 6 + 3 > dst.limit() 8
    assert (src.position(), dst.position()) == (2, 0)


@writable_kinds
def test_put_overlapping_duplicate(kind: BufferKind, mk: Made) -> None:
    data = pattern(10)
    buf = mk.fresh(kind, 10, data)
    dup = buf.duplicate()
    dup.position(0).limit(6)
    buf.position(3)
    buf.put(dup)  # forward overlap: as if through a temporary
    assert content(buf) == data[:3] + data[0:6] + data[9:]
    assert (buf.position(), dup.position()) == (9, 6)
    buf = mk.fresh(kind, 10, data)
    dup = buf.duplicate()
    dup.position(3).limit(9)
    buf.put(dup)  # backward overlap
    assert content(buf) == data[3:9] + data[6:]
    buf = mk.fresh(kind, 10, data)
    buf.put(1, buf, 0, 6)  # absolute put from itself is allowed (Java has no check)
    assert content(buf) == data[:1] + data[0:6] + data[7:]
    if not kind.contiguous:
        return  # no one memoryview of all its memory (test_composite puts from parts)
    buf.put(0, buf.memoryview(), 2, 5)  # from a view of its own memory
    expected = data[:1] + data[0:6] + data[7:]
    assert content(buf) == expected[2:7] + expected[5:]
    assert buf.position() == 0


# == 5. failure atomicity ==================================================================


@dataclass(frozen=True)
class Failing:
    """A call that fails on the standard state (pos 3, lim 6, mark 2, cap 8)."""

    name: str
    call: Call
    exc: type[Exception]  # on a writable buffer
    read_only_exc: type[Exception] | None = None  # on a read-only one, if different
    heap_read_only_exc: type[Exception] | None = None  # on a heap read-only one, if different

    def __str__(self) -> str:
        return self.name

    def expected(self, kind: BufferKind) -> type[Exception]:
        if not kind.is_read_only:
            return self.exc
        if not kind.is_direct and self.heap_read_only_exc is not None:
            return self.heap_read_only_exc
        return self.read_only_exc or self.exc


FAILING = [
    # absolute and relative gets
    Failing("get-at-limit", lambda b: b.get(6), IOOB),
    Failing("get-negative", lambda b: b.get(-1), IOOB),
    Failing("get-at-capacity", lambda b: b.get(8), IOOB),
    Failing("get-unsigned-byte-at-limit", lambda b: b.get_unsigned_byte(6), IOOB),
    Failing("get-int-underflow", lambda b: b.get_int(), UNDER),
    Failing("get-long-underflow", lambda b: b.get_long(), UNDER),
    Failing("get-float-underflow", lambda b: b.get_float(), UNDER),
    Failing("get-double-underflow", lambda b: b.get_double(), UNDER),
    Failing("get-unsigned-int-underflow", lambda b: b.get_unsigned_int(), UNDER),
    Failing("get-short-straddles-limit", lambda b: b.get_short(5), IOOB),
    Failing("get-char-straddles-limit", lambda b: b.get_char(5), IOOB),
    Failing("get-unsigned-short-straddles", lambda b: b.get_unsigned_short(5), IOOB),
    Failing("get-int-straddles-limit", lambda b: b.get_int(3), IOOB),
    Failing("get-unsigned-int-straddles", lambda b: b.get_unsigned_int(3), IOOB),
    Failing("get-float-negative", lambda b: b.get_float(-1), IOOB),
    Failing("get-long-past-limit", lambda b: b.get_long(0), IOOB),
    Failing("get-double-past-limit", lambda b: b.get_double(0), IOOB),
    # bulk gets
    Failing("bulk-get-underflow", lambda b: b.get(bytearray(4)), UNDER),
    Failing("bulk-get-underflow-length", lambda b: b.get(bytearray(8), 0, 4), UNDER),
    Failing("bulk-get-range-past-dst", lambda b: b.get(bytearray(2), 1, 2), IOOB),
    Failing("bulk-get-negative-offset", lambda b: b.get(bytearray(2), -1, 1), IOOB),
    Failing("bulk-get-negative-length", lambda b: b.get(bytearray(2), 0, -1), IOOB),
    Failing("bulk-get-abs-past-limit", lambda b: b.get(4, bytearray(4)), IOOB),
    Failing("bulk-get-abs-negative-index", lambda b: b.get(-1, bytearray(1)), IOOB),
    Failing("bulk-get-abs-range-past-dst", lambda b: b.get(0, bytearray(2), 1, 2), IOOB),
    Failing("bulk-get-into-bytes", lambda b: b.get(b"\0"), TypeError),
    Failing("bulk-get-into-list", lambda b: b.get([0, 0]), TypeError),  # type: ignore[call-overload]
    # index setters and derived buffers
    Failing("position-past-limit", lambda b: b.position(7), IAE),
    Failing("position-negative", lambda b: b.position(-1), IAE),
    Failing("position-float", lambda b: b.position(1.5), TypeError),  # type: ignore[call-overload]
    Failing("limit-past-capacity", lambda b: b.limit(9), IAE),
    Failing("limit-negative", lambda b: b.limit(-1), IAE),
    Failing("slice-past-limit", lambda b: b.slice(5, 2), IOOB),
    Failing("slice-negative-index", lambda b: b.slice(-1, 1), IOOB),
    Failing("slice-negative-length", lambda b: b.slice(0, -1), IOOB),
    Failing("slice-index-past-limit", lambda b: b.slice(7, 0), IOOB),
    Failing("alignment-negative-index", lambda b: b.alignment_offset(-1, 4), IAE),
    Failing("alignment-unit-3", lambda b: b.alignment_offset(0, 3), IAE),
    Failing("alignment-unit-0", lambda b: b.alignment_offset(0, 0), IAE),
    Failing("aligned-slice-unit-6", lambda b: b.aligned_slice(6), IAE),
    # byte puts
    Failing("put-256", lambda b: b.put(256), IAE, RO),
    Failing("put-minus-129", lambda b: b.put(-129), IAE, RO),
    Failing("put-abs-at-limit", lambda b: b.put(6, 1), IOOB, RO),
    Failing("put-abs-negative", lambda b: b.put(-1, 1), IOOB, RO),
    Failing("put-abs-256", lambda b: b.put(0, 256), IAE, RO),
    Failing("put-abs-minus-129", lambda b: b.put(0, -129), IAE, RO),
    # bulk puts
    Failing("bulk-put-overflow", lambda b: b.put(b"abcd"), OVER, RO),
    Failing("bulk-put-range-past-src", lambda b: b.put(b"ab", 1, 2), IOOB, RO),
    Failing("bulk-put-negative-offset", lambda b: b.put(b"ab", -1), IOOB, RO),
    Failing("bulk-put-negative-length", lambda b: b.put(b"ab", 0, -1), IOOB, RO),
    Failing("bulk-put-abs-past-limit", lambda b: b.put(5, b"ab"), IOOB, RO),
    Failing("bulk-put-abs-range-past-src", lambda b: b.put(0, b"ab", 1, 2), IOOB, RO),
    Failing("bulk-put-list", lambda b: b.put([1, 2]), TypeError, RO),  # type: ignore[call-overload]
    Failing("put-buffer-overflow", lambda b: b.put(ByteBuffer.allocate(4)), OVER, RO),
    # Java 17: HeapByteBufferR overrides both puts of a ByteBuffer to refuse at once; a
    # read-only direct buffer inherits ByteBuffer's, which checks src == this and the
    # ranges before refusing
    Failing("put-buffer-itself", lambda b: b.put(b), IAE, IAE, RO),
    Failing(
        "put-buffer-abs-past-limit",
        lambda b: b.put(5, ByteBuffer.allocate(4), 0, 2),
        IOOB,
        IOOB,
        RO,
    ),
    Failing(
        "put-buffer-abs-past-src", lambda b: b.put(0, ByteBuffer.allocate(4), 3, 2), IOOB, IOOB, RO
    ),
    # typed puts
    Failing("put-short-straddles-limit", lambda b: b.put_short(5, 1), IOOB, RO),
    Failing("put-char-straddles-limit", lambda b: b.put_char(5, "a"), IOOB, RO),
    Failing("put-int-overflow", lambda b: b.put_int(1), OVER, RO),
    Failing("put-int-straddles-limit", lambda b: b.put_int(3, 1), IOOB, RO),
    Failing("put-long-overflow", lambda b: b.put_long(1), OVER, RO),
    Failing("put-long-past-limit", lambda b: b.put_long(0, 1), IOOB, RO),
    Failing("put-float-overflow", lambda b: b.put_float(1.0), OVER, RO),
    Failing("put-float-straddles-limit", lambda b: b.put_float(3, 1.0), IOOB, RO),
    Failing("put-double-overflow", lambda b: b.put_double(1.0), OVER, RO),
    Failing("put-double-negative", lambda b: b.put_double(-1, 1.0), IOOB, RO),
    Failing("put-short-65536", lambda b: b.put_short(65536), IAE, RO),
    Failing("put-short-abs-minus-32769", lambda b: b.put_short(0, -32769), IAE, RO),
    Failing("put-int-abs-2**32", lambda b: b.put_int(0, 2**32), IAE, RO),
    Failing("put-int-abs-too-small", lambda b: b.put_int(2, -(2**31) - 1), IAE, RO),
    Failing("put-int-float-value", lambda b: b.put_int(0, 1.5), TypeError, RO),  # type: ignore[arg-type]
    Failing("put-short-str-value", lambda b: b.put_short("1"), TypeError, RO),  # type: ignore[arg-type]
    Failing("put-char-two-chars", lambda b: b.put_char("ab"), IAE, RO),
    Failing("put-char-abs-astral", lambda b: b.put_char(0, "\U0001f600"), IAE, RO),
    Failing("put-char-code-65536", lambda b: b.put_char(0x10000), IAE, RO),
    Failing("put-char-float-value", lambda b: b.put_char(0, 1.5), TypeError, RO),
    Failing("put-float-str-value", lambda b: b.put_float(0, "x"), TypeError, RO),
    Failing("put-short-none", lambda b: b.put_short(None), TypeError, RO),  # type: ignore[arg-type]
]


def standard_state(buf: ByteBuffer) -> ByteBuffer:
    return buf.limit(6).position(2).mark().position(3)


@every_kind
@pytest.mark.parametrize("case", FAILING, ids=str)
def test_failing_call_changes_nothing(kind: BufferKind, case: Failing, mk: Made) -> None:
    buf = standard_state(mk.fresh(kind, 8, pattern(8)))
    before = snapshot(buf)
    assert before[:4] == (3, 6, 2, 8)
    expected = case.expected(kind)
    with pytest.raises(Exception) as info:
        case.call(buf)
    assert type(info.value) is expected, f"{case}: {info.value!r}"
    assert snapshot(buf) == before


@every_kind
def test_reset_without_mark_changes_nothing(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8, pattern(8)).limit(6).position(3)
    before = snapshot(buf)
    with pytest.raises(InvalidMarkError):
        buf.reset()
    assert snapshot(buf) == before


# == 6. read-only buffers ==================================================================

MUTATORS: list[tuple[str, Call]] = [
    ("put", lambda b: b.put(1)),
    ("put-abs", lambda b: b.put(0, 1)),
    ("put-bytes", lambda b: b.put(b"ab")),
    ("put-bytes-abs", lambda b: b.put(0, b"ab", 0, 2)),
    ("put-buffer", lambda b: b.put(ByteBuffer.wrap(bytearray(b"ab")))),
    ("put-buffer-abs", lambda b: b.put(0, ByteBuffer.wrap(bytearray(b"ab")), 0, 2)),
    ("put-char", lambda b: b.put_char("a")),
    ("put-char-abs", lambda b: b.put_char(0, "a")),
    ("put-short", lambda b: b.put_short(1)),
    ("put-short-abs", lambda b: b.put_short(0, 1)),
    ("put-int", lambda b: b.put_int(1)),
    ("put-int-abs", lambda b: b.put_int(0, 1)),
    ("put-long", lambda b: b.put_long(1)),
    ("put-long-abs", lambda b: b.put_long(0, 1)),
    ("put-float", lambda b: b.put_float(1.0)),
    ("put-float-abs", lambda b: b.put_float(0, 1.0)),
    ("put-double", lambda b: b.put_double(1.0)),
    ("put-double-abs", lambda b: b.put_double(0, 1.0)),
    ("compact", lambda b: b.compact()),
]
# "ReadOnlyBufferError before anything else is checked" (ByteBuffer's module docstring)
INVALID_VALUE_MUTATORS: list[tuple[str, Call]] = [
    ("put-invalid-char", lambda b: b.put_char("ab")),
    ("put-abs-invalid-char", lambda b: b.put_char(0, 0x10000)),
    ("put-invalid-short", lambda b: b.put_short(0, 1 << 20)),
]


@read_only_kinds
@pytest.mark.parametrize(
    ("name", "call"),
    MUTATORS + INVALID_VALUE_MUTATORS,
    ids=[m[0] for m in MUTATORS + INVALID_VALUE_MUTATORS],
)
def test_read_only_mutator_raises_and_changes_nothing(
    kind: BufferKind, name: str, call: Call, mk: Made
) -> None:
    buf = mk.fresh(kind, 16, pattern(16)).position(1).mark().position(2)
    before = snapshot(buf)
    with pytest.raises(Exception) as info:
        call(buf)
    assert type(info.value) is RO, f"{name}: {info.value!r}"
    assert snapshot(buf) == before


@read_only_kinds
def test_read_only_put_buffer_leaves_the_source_alone(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8)
    src = ByteBuffer.wrap(bytearray(b"abcd"), 1, 2)
    with pytest.raises(RO):
        buf.put(src)
    assert (src.position(), src.limit()) == (1, 3)


@read_only_kinds
def test_read_only_reads_work(kind: BufferKind, mk: Made) -> None:
    data = pattern(16)
    buf = mk.fresh(kind, 16, data)
    assert buf.is_read_only() is True
    assert buf.get() == signed(data[0])
    assert buf.get(5) == signed(data[5])
    assert buf.get_int() == struct.unpack_from(kind.order.prefix + "i", data, 1)[0]
    dst = bytearray(3)
    buf.get(dst)
    assert bytes(dst) == data[5:8]
    assert bytes(buf) == data[8:]
    assert buf.has_array() is False
    for derived in (buf.slice(), buf.slice(0, 4), buf.duplicate(), buf.as_read_only_buffer()):
        assert derived.is_read_only() is True
    for view in (buf.as_char_buffer(), buf.as_int_buffer(), buf.as_double_buffer()):
        assert view.is_read_only() is True
    views = [buf.memoryview()] if kind.contiguous else buf.memoryviews()  # type: ignore[attr-defined]
    assert all(v.readonly for v in views)


@writable_kinds
def test_as_read_only_buffer_of_writable_kinds(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8, pattern(8))
    ro = buf.as_read_only_buffer()
    before = snapshot(ro)
    for name, call in MUTATORS:
        with pytest.raises(RO):
            call(ro)
        assert snapshot(ro) == before, name
    assert buf.is_read_only() is False
