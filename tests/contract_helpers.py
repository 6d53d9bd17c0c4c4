"""What the ByteBuffer contract files (``test_contract_*.py``) share: buffer tracking,
snapshots, value helpers, Java's reference comparison, and the kind parametrisations.

The contract runs every test over every buffer kind registered in ``buffer_kinds``
(ids like ``heap``, ``direct-slice-LE``, ``wrap-bytes``), so a new kind gets the whole
contract by being registered there.  Expected values come from Java's specification,
from ``struct`` for multi-byte encodings, and from the small reference implementations
here.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from buffer_kinds import (
    ALL_KINDS,
    DIRECT_KINDS,
    READ_ONLY_KINDS,
    WRITABLE_KINDS,
    BufferKind,
)
from zcio import (
    Buffer,
    BufferOverflowError,
    BufferUnderflowError,
    ByteBuffer,
    ByteOrder,
    CharBuffer,
    DoubleBuffer,
    FloatBuffer,
    IllegalArgumentError,
    IndexOutOfBoundsError,
    IntBuffer,
    LongBuffer,
    ReadOnlyBufferError,
    ShortBuffer,
    TypedBuffer,
    UnsupportedOperationError,
)

BE, LE = ByteOrder.BIG_ENDIAN, ByteOrder.LITTLE_ENDIAN
IOOB, UNDER, OVER = IndexOutOfBoundsError, BufferUnderflowError, BufferOverflowError
IAE, RO, UOE = IllegalArgumentError, ReadOnlyBufferError, UnsupportedOperationError

every_kind = pytest.mark.parametrize("kind", ALL_KINDS, ids=str)
writable_kinds = pytest.mark.parametrize("kind", WRITABLE_KINDS, ids=str)
read_only_kinds = pytest.mark.parametrize("kind", READ_ONLY_KINDS, ids=str)
direct_kinds = pytest.mark.parametrize("kind", DIRECT_KINDS, ids=str)
both_orders = pytest.mark.parametrize("order", list(ByteOrder), ids=str)

B = TypeVar("B", bound=Buffer)
Call = Callable[[ByteBuffer], object]


# -- helpers ---------------------------------------------------------------------------


class Made:
    """Makes buffers and releases every one of them when the test ends."""

    def __init__(self) -> None:
        self._bufs: list[Buffer] = []

    def track(self, buf: B) -> B:
        self._bufs.append(buf)
        return buf

    def fresh(self, kind: BufferKind, capacity: int, content: bytes | None = None) -> ByteBuffer:
        return self.track(kind.fresh(capacity, content))

    def make(self, kind: BufferKind, capacity: int, content: bytes | None = None) -> ByteBuffer:
        return self.track(kind.make(capacity, content))

    def pair(
        self, kind: BufferKind, capacity: int, content: bytes | None = None
    ) -> tuple[ByteBuffer, ByteBuffer | None]:
        buf, writer = kind.fresh_with_writer(capacity, content)
        self.track(buf)
        if writer is not None:
            self.track(writer)
        return buf, writer

    def direct(self, capacity: int) -> ByteBuffer:
        return self.track(ByteBuffer.allocate_direct(capacity))

    def release_all(self) -> None:
        for buf in self._bufs:
            if buf.ref_cnt() > 0:  # a writer shares its buffer's count; strict kinds raise
                buf.release()


def content(buf: ByteBuffer) -> bytes:
    """Every byte of ``buf``'s memory ``[0, capacity)``, read without touching its indexes."""
    return bytes(buf.duplicate().clear())


def float_key(v: Any) -> Any:
    return struct.pack("<d", v) if isinstance(v, float) else v


def indexes(buf: Buffer) -> tuple[int, int, int, int]:
    return buf.position(), buf.limit(), buf.mark_value(), buf.capacity()


def snapshot(buf: ByteBuffer) -> tuple[object, ...]:
    """Everything a failed call must leave as it was."""
    return (*indexes(buf), buf.order(), buf.is_read_only(), content(buf))


def view_snapshot(view: TypedBuffer) -> tuple[object, ...]:
    """A typed view's indexes and elements (floats bit for bit)."""
    values = tuple(float_key(view.get(i)) for i in range(view.capacity()))
    return (*indexes(view), view.order(), view.is_read_only(), values)


def signed(b: int) -> int:
    return b - 256 if b > 127 else b


def to_int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def same(a: object, b: object) -> bool:
    """Equal values of the same type; floats compared bit for bit (NaN == NaN, -0.0 != 0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return type(a) is type(b) and a == b


def same_list(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))


def other(order: ByteOrder) -> ByteOrder:
    return LE if order is BE else BE


# -- reference ByteBuffer comparison (Java 17) -------------------------------------------


def ref_mismatch(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return -1 if len(a) == len(b) else n


def ref_compare(a: bytes, b: bytes) -> int:
    """``ByteBuffer.compareTo``: ``Byte.compare`` (x - y, signed) at the first mismatch."""
    i = ref_mismatch(a, b)
    if 0 <= i < min(len(a), len(b)):
        return signed(a[i]) - signed(b[i])
    return len(a) - len(b)


def ref_hash(a: bytes) -> int:
    """``ByteBuffer.hashCode``: ``h = 31 * h + get(i)`` from the limit down, as a Java int."""
    h = 1
    for v in reversed(a):
        h = to_int32(31 * h + signed(v))
    return h


INF, NAN = math.inf, math.nan


@dataclass(frozen=True)
class ViewSpec:
    """One typed view: how to make it and how Java compares and hashes its elements."""

    name: str
    method: str
    cls: type[TypedBuffer]
    fmt: str
    samples: tuple[Any, ...]  # four distinct values

    def __str__(self) -> str:
        return self.name

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt)

    @property
    def floating(self) -> bool:
        return self.fmt in "fd"

    def raw(self, value: Any) -> Any:
        return ord(value) if self.name == "char" else value

    def pack(self, order: ByteOrder, values: list[Any]) -> bytes:
        return struct.pack(f"{order.prefix}{len(values)}{self.fmt}", *map(self.raw, values))

    def unpack(self, order: ByteOrder, data: bytes, offset: int) -> Any:
        raw = struct.unpack_from(order.prefix + self.fmt, data, offset)[0]
        return chr(raw) if self.name == "char" else raw

    def view(self, buf: ByteBuffer) -> Any:
        return getattr(buf, self.method)()

    # Java 17's X-Buffer template: mismatch/equals, compareTo and hashCode per type
    def java_same(self, x: Any, y: Any) -> bool:
        if self.floating:
            return bool(x == y or (math.isnan(x) and math.isnan(y)))
        return bool(x == y)

    def java_compare(self, x: Any, y: Any) -> int:
        if self.name == "char":
            return ord(x) - ord(y)  # Character.compare
        if self.name == "short":
            return int(x - y)  # Short.compare
        if not self.floating:
            return int(x > y) - int(x < y)  # Integer.compare / Long.compare
        if x < y:
            return -1
        if x > y:
            return 1
        if x == y:
            return 0
        if math.isnan(x):
            return 0 if math.isnan(y) else 1
        return -1

    def java_hash_term(self, v: Any) -> int:
        if self.name == "char":
            return ord(v)
        if self.name == "long":
            return to_int32(v)  # (int) l: the low 32 bits
        if self.floating:  # (int) f: NaN -> 0, saturating, toward zero
            if math.isnan(v):
                return 0
            return int(max(-(2**31), min(2**31 - 1, v))) if math.isfinite(v) else (
                2**31 - 1 if v > 0 else -(2**31)
            )
        return int(v)


VIEWS = [
    ViewSpec("char", "as_char_buffer", CharBuffer, "H", ("A", "\u00e9", "\uffff", "\x00")),
    ViewSpec("short", "as_short_buffer", ShortBuffer, "h", (1, -1, 32767, -32768)),
    ViewSpec("int", "as_int_buffer", IntBuffer, "i", (1, -1, 2**31 - 1, -(2**31))),
    ViewSpec("long", "as_long_buffer", LongBuffer, "q", (1, -1, 2**63 - 1, -(2**63))),
    ViewSpec("float", "as_float_buffer", FloatBuffer, "f", (1.5, -0.0, INF, -(2.0**-149))),
    ViewSpec("double", "as_double_buffer", DoubleBuffer, "d", (0.1, -0.0, -INF, 5e-324)),
]
every_view = pytest.mark.parametrize("spec", VIEWS, ids=str)
