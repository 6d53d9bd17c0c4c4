"""The ByteBuffer contract (Java 17) over every buffer kind: multi-byte values.

Sections 3 of the contract; what the files share is in
``contract_helpers`` and ``conftest`` (see ``contract_helpers`` for how kinds are
registered).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import pytest

from buffer_kinds import (
    BufferKind,
    pattern,
)
from contract_helpers import (
    IAE,
    INF,
    IOOB,
    NAN,
    OVER,
    UNDER,
    Made,
    both_orders,
    content,
    every_kind,
    indexes,
    same,
    snapshot,
    writable_kinds,
)
from zcio import (
    ByteBuffer,
    ByteOrder,
)

# == 3. multi-byte values ==================================================================


@dataclass(frozen=True)
class Prim:
    """A multi-byte type as ByteBuffer reads and writes it, with its ``struct`` code."""

    name: str
    fmt: str
    getter: str
    putter: str
    samples: tuple[Any, ...]

    def __str__(self) -> str:
        return self.name

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt)

    def pack(self, order: ByteOrder, value: Any) -> bytes:
        raw = ord(value) if self.name == "char" else value
        return struct.pack(order.prefix + self.fmt, raw)

    def unpack(self, order: ByteOrder, data: bytes, offset: int = 0) -> Any:
        raw = struct.unpack_from(order.prefix + self.fmt, data, offset)[0]
        return chr(raw) if self.name == "char" else raw

    def get(self, buf: ByteBuffer, *index: int) -> Any:
        return getattr(buf, self.getter)(*index)

    def put(self, buf: ByteBuffer, *args: Any) -> Any:
        return getattr(buf, self.putter)(*args)



PRIMS = [
    Prim("char", "H", "get_char", "put_char", ("A", "\u00e9", "\uffff", "\x00", "\ud800")),
    Prim("short", "h", "get_short", "put_short", (0, 1, -1, 0x1234, -32768, 32767)),
    Prim("ushort", "H", "get_unsigned_short", "put_short", (0, 0xFFFF, 0x8000, 0x1234)),
    Prim("int", "i", "get_int", "put_int", (0, -1, 0x01020304, -(2**31), 2**31 - 1)),
    Prim("uint", "I", "get_unsigned_int", "put_int", (0, 2**32 - 1, 2**31, 0xCAFEBABE)),
    Prim(
        "long", "q", "get_long", "put_long", (0, -1, 0x0102030405060708, -(2**63), 2**63 - 1)
    ),
    Prim(
        "float",
        "f",
        "get_float",
        "put_float",
        (0.0, -0.0, 1.5, -2.25, INF, -INF, 2.0**-149, 3.4028234663852886e38),
    ),
    Prim("double", "d", "get_double", "put_double", (0.0, -0.0, 0.1, -1e300, INF, 5e-324)),
]
every_prim = pytest.mark.parametrize("prim", PRIMS, ids=str)


@every_kind
@every_prim
@both_orders
def test_typed_get_matches_struct(
    kind: BufferKind, prim: Prim, order: ByteOrder, mk: Made
) -> None:
    data = pattern(19)
    buf = mk.fresh(kind, 19, data).order(order)
    last = 19 - prim.size
    for i in range(last + 1):
        assert same(prim.get(buf, i), prim.unpack(order, data, i)), i
    assert buf.position() == 0
    for bad in (last + 1, -1, 19):
        with pytest.raises(IOOB):
            prim.get(buf, bad)
    buf.position(1)
    pos = 1
    while pos + prim.size <= 19:
        assert same(prim.get(buf), prim.unpack(order, data, pos))
        pos += prim.size
        assert buf.position() == pos
    with pytest.raises(UNDER):
        prim.get(buf)
    assert indexes(buf) == (pos, 19, -1, 19)
    buf.position(0).limit(prim.size - 1)  # one byte short
    with pytest.raises(UNDER):
        prim.get(buf)
    with pytest.raises(IOOB):
        prim.get(buf, 0)
    assert indexes(buf) == (0, prim.size - 1, -1, 19)


@writable_kinds
@every_prim
@both_orders
def test_typed_put_matches_struct(
    kind: BufferKind, prim: Prim, order: ByteOrder, mk: Made
) -> None:
    cap = 1 + prim.size * len(prim.samples) + 3
    expected = bytearray(pattern(cap))
    buf = mk.fresh(kind, cap, bytes(expected)).order(order)
    buf.position(1)
    pos = 1
    for v in prim.samples:
        assert prim.put(buf, v) is buf
        expected[pos : pos + prim.size] = prim.pack(order, v)
        pos += prim.size
        assert buf.position() == pos
    assert content(buf) == expected
    buf.position(1)
    for v in prim.samples:
        assert same(prim.get(buf), v)
    # absolute: no position change, checked against the limit
    buf.position(2)
    last = cap - prim.size
    for i, v in ((0, prim.samples[1]), (last, prim.samples[-1])):
        assert prim.put(buf, i, v) is buf
        expected[i : i + prim.size] = prim.pack(order, v)
        assert same(prim.get(buf, i), v)
    assert buf.position() == 2
    assert content(buf) == expected
    before = snapshot(buf)
    for bad in (last + 1, -1):
        with pytest.raises(IOOB):
            prim.put(buf, bad, prim.samples[0])
    buf.position(last + 1)
    before = snapshot(buf)
    with pytest.raises(OVER):
        prim.put(buf, prim.samples[0])
    assert snapshot(buf) == before


@writable_kinds
@both_orders
def test_nan_round_trips(kind: BufferKind, order: ByteOrder, mk: Made) -> None:
    buf = mk.fresh(kind, 12).order(order)
    buf.put_float(NAN).put_double(NAN)
    assert content(buf) == struct.pack(order.prefix + "fd", NAN, NAN)
    assert math.isnan(buf.get_float(0))
    assert math.isnan(buf.get_double(4))


INT_PUTS = [
    ("put_short", "get_short", 16),
    ("put_int", "get_int", 32),
    ("put_long", "get_long", 64),
]


@writable_kinds
@pytest.mark.parametrize(("putter", "getter", "bits"), INT_PUTS, ids=[p[0] for p in INT_PUTS])
def test_integer_put_accepts_signed_and_unsigned_range(
    kind: BufferKind, putter: str, getter: str, bits: int, mk: Made
) -> None:
    buf = mk.fresh(kind, 16, pattern(16))
    lo, hi, half = -(1 << (bits - 1)), (1 << bits) - 1, 1 << (bits - 1)
    for v in (lo, hi, half, half - 1, -1, 0):
        getattr(buf, putter)(2, v)
        assert getattr(buf, getter)(2) == (v - (1 << bits) if v >= half else v)
        buf.position(1)
        getattr(buf, putter)(v)
        assert getattr(buf, getter)(1) == (v - (1 << bits) if v >= half else v)
    buf.position(3)
    before = snapshot(buf)
    for v in (lo - 1, hi + 1, 10**30, -(10**30)):
        with pytest.raises(IAE):
            getattr(buf, putter)(v)
        with pytest.raises(IAE):
            getattr(buf, putter)(0, v)
        assert snapshot(buf) == before
    bad_types: tuple[Any, ...] = (1.0, "1", 1.5, [1])
    for v in bad_types:
        with pytest.raises(TypeError):
            getattr(buf, putter)(v)
        with pytest.raises(TypeError):
            getattr(buf, putter)(0, v)
        assert snapshot(buf) == before


@writable_kinds
def test_put_float_narrows_like_a_java_cast(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8)
    for v, want in ((1e300, INF), (-1e300, -INF), (2**200, INF), (1, 1.0), (0.1, None)):
        buf.put_float(0, v)
        expected = struct.unpack(">f", struct.pack(">f", 0.1))[0] if want is None else want
        assert same(buf.get_float(0), expected), v
        buf.position(4)
        buf.put_float(v)
        assert same(buf.get_float(4), expected), v
    buf.put_double(0, 3)
    assert same(buf.get_double(0), 3.0)
    before = snapshot(buf.position(0))
    for bad in ("x", [1.0], b"1"):
        with pytest.raises(TypeError):
            buf.put_float(bad)
        with pytest.raises(TypeError):
            buf.put_double(0, bad)
    assert snapshot(buf) == before


@writable_kinds
def test_put_char_values(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8)
    buf.put_char(65).put_char(2, 0xFFFF)
    assert buf.get_char(0) == "A"
    assert buf.get_char(2) == "\uffff"
    buf.put_char(0, "\u20ac")
    assert buf.get_unsigned_short(0) == 0x20AC
    before = snapshot(buf)
    for bad in ("ab", "", "\U0001f600", -1, 0x10000):
        with pytest.raises(IAE):
            buf.put_char(bad)
        with pytest.raises(IAE):
            buf.put_char(0, bad)
    for wrong in (1.5, None, b"a"):
        with pytest.raises(TypeError):
            buf.put_char(wrong)
    assert snapshot(buf) == before


@writable_kinds
def test_put_checks_bounds_before_the_value(kind: BufferKind, mk: Made) -> None:
    """Relative: overflow first; absolute: the index first (then the value)."""
    buf = mk.fresh(kind, 8, pattern(8))
    buf.position(8)
    before = snapshot(buf)
    bad_values: list[tuple[str, Any]] = [
        ("put", 256),
        ("put_short", 1 << 16),
        ("put_int", 1 << 32),
        ("put_long", 1 << 64),
        ("put_char", "ab"),
        ("put_char", 1 << 16),
    ]
    for putter, value in bad_values:
        with pytest.raises(OVER):
            getattr(buf, putter)(value)
        with pytest.raises(IOOB):
            getattr(buf, putter)(8, value)
        assert snapshot(buf) == before, putter
