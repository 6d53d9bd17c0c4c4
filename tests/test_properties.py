"""Hypothesis property tests of ByteBuffer against a pure-Python model of Java 17's spec.

1. ``BufferMachine``: random operations on a buffer of a random kind (see ``buffer_kinds``)
   and on :class:`Model` (a bytearray plus mark/position/limit/capacity, written here from
   the Java specification).  After every step the results or exception types, the indexes
   and the whole content must agree, and ``0 <= mark <= position <= limit <= capacity``.
2. Failure atomicity: a random call that raises leaves indexes and content unchanged.
3. Typed round trips in both orders; out-of-range integer puts raise IllegalArgumentError
   and change nothing.

Hypothesis prints the seed and the shrunk failing example itself.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from buffer_kinds import ALL_KINDS, WRITABLE_KINDS, BufferKind
from contract_helpers import ref_compare, ref_hash, ref_mismatch
from zcio import (
    Buffer,
    BufferOverflowError,
    BufferUnderflowError,
    ByteBuffer,
    ByteOrder,
    IllegalArgumentError,
    IndexOutOfBoundsError,
    InvalidMarkError,
    ReadOnlyBufferError,
    TypedBuffer,
)

BE, LE = ByteOrder.BIG_ENDIAN, ByteOrder.LITTLE_ENDIAN
IOOB, UNDER, OVER = IndexOutOfBoundsError, BufferUnderflowError, BufferOverflowError
IAE, RO = IllegalArgumentError, ReadOnlyBufferError

PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- primitive types: Java's encoding, written from the spec ---------------------------


@dataclass(frozen=True)
class Prim:
    """A multi-byte type: ByteBuffer's accessors and the view that holds it."""

    name: str
    size: int
    getter: str
    putter: str
    kind: str  # "int", "uint", "char", "float", "double"
    view: str | None  # as_..._buffer for the signed/element form

    def __str__(self) -> str:
        return self.name

    def encode(self, value: Any, order: ByteOrder) -> bytes:
        """The bytes Java stores, or the exception zcio documents for ``value``."""
        bits = self.size * 8
        if self.kind in ("int", "uint"):
            if type(value) is not int:
                raise TypeError(f"not an int: {value!r}")
            if not -(1 << (bits - 1)) <= value < (1 << bits):
                raise IAE(f"{value} out of range")
            return (value & ((1 << bits) - 1)).to_bytes(self.size, order.value)
        if self.kind == "char":
            if isinstance(value, str):
                if len(value) != 1 or ord(value) > 0xFFFF:
                    raise IAE(repr(value))
                code = ord(value)
            elif type(value) is int:
                if not 0 <= value <= 0xFFFF:
                    raise IAE(repr(value))
                code = value
            else:
                raise TypeError(repr(value))
            return code.to_bytes(2, order.value)
        if type(value) not in (int, float):
            raise TypeError(repr(value))
        fmt = order.prefix + ("f" if self.kind == "float" else "d")
        try:
            return struct.pack(fmt, value)
        except OverflowError:  # Java's (float) cast: beyond the range is an infinity
            return struct.pack(fmt, math.copysign(math.inf, value))

    def decode(self, raw: bytes, order: ByteOrder) -> Any:
        if self.kind == "int":
            return int.from_bytes(raw, order.value, signed=True)
        if self.kind == "uint":
            return int.from_bytes(raw, order.value)
        if self.kind == "char":
            return chr(int.from_bytes(raw, order.value))
        if self.kind == "float":
            bits = int.from_bytes(raw, order.value)
            if bits & 0x7F800000 == 0x7F800000 and bits & 0x7FFFFF:
                # A NaN: Java's intBitsToFloat keeps every payload bit, the quiet bit
                # too (struct, a C cast, would set it): sign, all-ones exponent, the 23
                # bits at the top of the double's 52.
                wide = (bits >> 31) << 63 | 0x7FF << 52 | (bits & 0x7FFFFF) << 29
                return struct.unpack(">d", wide.to_bytes(8, "big"))[0]
        return struct.unpack(order.prefix + ("f" if self.kind == "float" else "d"), raw)[0]


PRIMS = [
    Prim("short", 2, "get_short", "put_short", "int", "as_short_buffer"),
    Prim("ushort", 2, "get_unsigned_short", "put_short", "uint", None),
    Prim("char", 2, "get_char", "put_char", "char", "as_char_buffer"),
    Prim("int", 4, "get_int", "put_int", "int", "as_int_buffer"),
    Prim("uint", 4, "get_unsigned_int", "put_int", "uint", None),
    Prim("long", 8, "get_long", "put_long", "int", "as_long_buffer"),
    Prim("float", 4, "get_float", "put_float", "float", "as_float_buffer"),
    Prim("double", 8, "get_double", "put_double", "double", "as_double_buffer"),
]
VIEW_PRIMS = [p for p in PRIMS if p.view is not None]


def prim_values(prim: Prim, valid_only: bool = False) -> st.SearchStrategy[Any]:
    """Values for ``prim``'s put: mostly valid, with edges and (unless told) invalid ones."""
    bits = prim.size * 8
    if prim.kind in ("int", "uint"):
        valid = st.integers(-(1 << (bits - 1)), (1 << bits) - 1)
        edges = st.sampled_from([-(1 << (bits - 1)), (1 << bits) - 1, 1 << (bits - 1), -1, 0])
        invalid = st.one_of(
            st.sampled_from([-(1 << (bits - 1)) - 1, 1 << bits]),
            st.integers(min_value=1 << bits, max_value=1 << (bits + 8)),
            st.sampled_from([1.5, "1", [1]]),
        )
    elif prim.kind == "char":
        valid = st.one_of(
            st.characters(max_codepoint=0xFFFF, exclude_categories=()),
            st.integers(0, 0xFFFF),
        )
        edges = st.sampled_from(["\x00", "\uffff", "\ud800", 0, 0xFFFF])
        invalid = st.sampled_from(["", "ab", "\U0001f600", -1, 0x10000, 1.5])
    else:
        valid = st.one_of(st.floats(width=32 if prim.kind == "float" else 64), st.integers(-9, 9))
        edges = st.sampled_from([math.inf, -math.inf, -0.0, math.nan, 1e300, -1e300, 5e-324])
        invalid = st.sampled_from(["x", b"1", [1.0]])
    if valid_only:
        return st.one_of(valid, edges)
    return st.one_of(valid, valid, edges, invalid)


# -- the model ---------------------------------------------------------------------------


def signed(b: int) -> int:
    return b - 256 if b > 127 else b


def check_from_index_size(offset: int, size: int, length: int) -> None:
    if offset < 0 or size < 0 or offset + size > length:
        raise IOOB(f"[{offset}, {offset} + {size}) out of {length}")


class Model:
    """java.nio.ByteBuffer's state and rules, over a bytearray (no zcio code)."""

    def __init__(self, data: bytes, kind: BufferKind) -> None:
        self.data = bytearray(data)
        self.cap = len(data)
        self.pos, self.lim, self.mark = 0, self.cap, -1
        self.read_only = kind.is_read_only
        self.direct = kind.is_direct
        self.order = kind.order

    # indexes
    def set_position(self, n: int) -> None:
        if not 0 <= n <= self.lim:
            raise IAE(n)
        if self.mark > n:
            self.mark = -1
        self.pos = n

    def set_limit(self, n: int) -> None:
        if not 0 <= n <= self.cap:
            raise IAE(n)
        self.lim = n
        if self.pos > n:
            self.pos = n
        if self.mark > n:
            self.mark = -1

    def do_mark(self) -> None:
        self.mark = self.pos

    def reset(self) -> None:
        if self.mark < 0:
            raise InvalidMarkError("no mark")
        self.pos = self.mark

    def clear(self) -> None:
        self.pos, self.lim, self.mark = 0, self.cap, -1

    def flip(self) -> None:
        self.pos, self.lim, self.mark = 0, self.pos, -1

    def rewind(self) -> None:
        self.pos, self.mark = 0, -1

    # checks
    def _writable(self) -> None:
        if self.read_only:
            raise RO("read-only")

    def _index(self, i: int, nb: int = 1) -> int:
        if i < 0 or nb > self.lim - i:
            raise IOOB(i)
        return i

    def _next(self, nb: int, exc: type[Exception]) -> int:
        if self.lim - self.pos < nb:
            raise exc(nb)
        p = self.pos
        self.pos += nb
        return p

    # bytes
    def get(self) -> int:
        return signed(self.data[self._next(1, UNDER)])

    def get_at(self, i: int) -> int:
        return signed(self.data[self._index(i)])

    def put(self, v: int) -> None:
        self._writable()
        if self.pos >= self.lim:
            raise OVER(1)
        if not -128 <= v <= 255:
            raise IAE(v)
        self.data[self._next(1, OVER)] = v & 0xFF

    def put_at(self, i: int, v: int) -> None:
        self._writable()
        self._index(i)
        if not -128 <= v <= 255:
            raise IAE(v)
        self.data[i] = v & 0xFF

    # typed
    def get_typed(self, prim: Prim, index: int | None) -> Any:
        at = self._next(prim.size, UNDER) if index is None else self._index(index, prim.size)
        return prim.decode(bytes(self.data[at : at + prim.size]), self.order)

    def put_typed(self, prim: Prim, index: int | None, value: Any) -> None:
        self._writable()
        if index is None:
            if self.lim - self.pos < prim.size:
                raise OVER(prim.size)
            raw = prim.encode(value, self.order)
            at = self._next(prim.size, OVER)
        else:
            at = self._index(index, prim.size)
            raw = prim.encode(value, self.order)
        self.data[at : at + prim.size] = raw

    # bulk
    def get_bulk(self, index: int | None, dst_len: int, off: int | None, n: int | None) -> bytes:
        off = 0 if off is None else off
        n = dst_len - off if n is None else n
        if index is None:
            check_from_index_size(off, n, dst_len)
            if n > self.lim - self.pos:
                raise UNDER(n)
            p = self._next(n, UNDER)
        else:
            check_from_index_size(index, n, self.lim)
            check_from_index_size(off, n, dst_len)
            p = index
        out = bytearray(dst_len)
        out[off : off + n] = self.data[p : p + n]
        return bytes(out)

    def put_bulk(self, index: int | None, src: bytes, off: int | None, n: int | None) -> None:
        self._writable()
        off = 0 if off is None else off
        n = len(src) - off if n is None else n
        if index is None:
            check_from_index_size(off, n, len(src))
            if n > self.lim - self.pos:
                raise OVER(n)
            p = self._next(n, OVER)
        else:
            check_from_index_size(index, n, self.lim)
            check_from_index_size(off, n, len(src))
            p = index
        self.data[p : p + n] = src[off : off + n]

    def put_buffer(self, src: bytes) -> None:
        """``put(ByteBuffer)`` of another buffer whose remaining bytes are ``src``."""
        self._writable()
        if len(src) > self.lim - self.pos:
            raise OVER(len(src))
        p = self._next(len(src), OVER)
        self.data[p : p + len(src)] = src

    def put_buffer_at(self, index: int, src: bytes, src_limit: int, off: int, n: int) -> None:
        """``put(index, ByteBuffer, offset, length)``; ``src`` is the source's whole content.

        Java 17: HeapByteBufferR refuses at once; a read-only direct buffer inherits
        ByteBuffer's version, which checks both ranges first.
        """
        if not self.direct:
            self._writable()
        check_from_index_size(index, n, self.lim)
        check_from_index_size(off, n, src_limit)
        self._writable()
        self.data[index : index + n] = src[off : off + n]

    def compact(self) -> None:
        self._writable()
        n = self.lim - self.pos
        self.data[0:n] = self.data[self.pos : self.lim]
        self.pos, self.lim, self.mark = n, self.cap, -1

    def rest(self) -> bytes:
        return bytes(self.data[self.pos : self.lim])


# -- comparing outcomes ---------------------------------------------------------------------


def key(value: Any) -> Any:
    """A comparable form: floats bit for bit (NaN == NaN, -0.0 != 0.0), bytes-likes as bytes."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, list):
        return [key(v) for v in value]
    return value


def void(call: Callable[[], Any]) -> Callable[[], None]:
    """``call`` with its result dropped (a buffer returned for chaining is no result)."""

    def run() -> None:
        call()

    return run


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", key(call())
    except Exception as e:  # compared by exact type
        return "raised", type(e)


def content(buf: ByteBuffer) -> bytes:
    return bytes(buf.duplicate().clear())


def state(buf: Buffer) -> tuple[int, int, int, int]:
    return buf.position(), buf.limit(), buf.mark_value(), buf.capacity()


# == 1. the state machine ==================================================================

indexes = st.integers(-3, 45)
byte_values = st.one_of(st.integers(-128, 255), st.sampled_from([-129, 256, 1000, -1000]))
maybe = st.none() | st.integers(-2, 12)


class BufferMachine(RuleBasedStateMachine):
    """Random operations on one buffer of a random kind, checked against the model."""

    def __init__(self) -> None:
        super().__init__()
        self.buf: ByteBuffer | None = None
        self.model: Model | None = None
        self.kind: BufferKind | None = None

    @initialize(kind=st.sampled_from(ALL_KINDS), data=st.binary(max_size=40))
    def make(self, kind: BufferKind, data: bytes) -> None:
        self.kind = kind
        self.buf = kind.fresh(len(data), data)
        self.model = Model(data, kind)

    def teardown(self) -> None:
        if self.buf is not None:
            self.buf.release()

    @property
    def b(self) -> ByteBuffer:
        assert self.buf is not None
        return self.buf

    @property
    def m(self) -> Model:
        assert self.model is not None
        return self.model

    def same(self, on_buffer: Callable[[], Any], on_model: Callable[[], Any]) -> Any:
        expected = outcome(on_model)
        got = outcome(on_buffer)
        assert got == expected, f"zcio {got} != model {expected}"
        return got

    # -- indexes ---------------------------------------------------------------------------

    @rule(n=indexes)
    def position(self, n: int) -> None:
        self.same(void(lambda: self.b.position(n)), lambda: self.m.set_position(n))

    @rule(n=indexes)
    def limit(self, n: int) -> None:
        self.same(void(lambda: self.b.limit(n)), lambda: self.m.set_limit(n))

    @rule()
    def mark(self) -> None:
        self.same(void(lambda: self.b.mark()), self.m.do_mark)

    @rule()
    def reset(self) -> None:
        self.same(void(lambda: self.b.reset()), self.m.reset)

    @rule(op=st.sampled_from(["clear", "flip", "rewind"]))
    def clear_flip_rewind(self, op: str) -> None:
        self.same(void(lambda: getattr(self.b, op)()), getattr(self.m, op))

    @rule(order=st.sampled_from([BE, LE]))
    def order(self, order: ByteOrder) -> None:
        self.b.order(order)
        self.m.order = order

    # -- bytes -------------------------------------------------------------------------------

    @rule()
    def get(self) -> None:
        self.same(self.b.get, self.m.get)

    @rule(i=indexes)
    def get_at(self, i: int) -> None:
        self.same(lambda: self.b.get(i), lambda: self.m.get_at(i))

    @rule(i=st.none() | indexes)
    def get_unsigned_byte(self, i: int | None) -> None:
        def on_model() -> int:
            return (self.m.get() if i is None else self.m.get_at(i)) & 0xFF

        self.same(lambda: self.b.get_unsigned_byte(i), on_model)

    @rule(v=byte_values)
    def put(self, v: int) -> None:
        self.same(void(lambda: self.b.put(v)), lambda: self.m.put(v))

    @rule(i=indexes, v=byte_values)
    def put_at(self, i: int, v: int) -> None:
        self.same(void(lambda: self.b.put(i, v)), lambda: self.m.put_at(i, v))

    # -- typed -------------------------------------------------------------------------------

    @rule(prim=st.sampled_from(PRIMS), i=st.none() | indexes)
    def get_typed(self, prim: Prim, i: int | None) -> None:
        args = () if i is None else (i,)
        self.same(
            lambda: getattr(self.b, prim.getter)(*args), lambda: self.m.get_typed(prim, i)
        )

    @rule(data=st.data(), prim=st.sampled_from(PRIMS), i=st.none() | indexes)
    def put_typed(self, data: st.DataObject, prim: Prim, i: int | None) -> None:
        value = data.draw(prim_values(prim), label="value")
        args = (value,) if i is None else (i, value)
        self.same(
            void(lambda: getattr(self.b, prim.putter)(*args)),
            lambda: self.m.put_typed(prim, i, value),
        )

    # -- bulk --------------------------------------------------------------------------------

    @rule(index=st.none() | indexes, dst_len=st.integers(0, 12), off=maybe, n=maybe)
    def get_bulk(self, index: int | None, dst_len: int, off: int | None, n: int | None) -> None:
        def on_buffer() -> bytes:
            dst = bytearray(dst_len)
            args: list[Any] = [] if index is None else [index]
            args.append(dst)
            if off is not None or n is not None:
                args.append(0 if off is None else off)
            if n is not None:
                args.append(n)
            self.b.get(*args)
            return bytes(dst)

        def on_model() -> bytes:
            return self.m.get_bulk(index, dst_len, 0 if off is None and n is not None else off, n)

        self.same(on_buffer, on_model)

    @rule(index=st.none() | indexes, src=st.binary(max_size=12), off=maybe, n=maybe)
    def put_bulk(self, index: int | None, src: bytes, off: int | None, n: int | None) -> None:
        def on_buffer() -> None:
            args: list[Any] = [] if index is None else [index]
            args.append(src)
            if off is not None or n is not None:
                args.append(0 if off is None else off)
            if n is not None:
                args.append(n)
            self.b.put(*args)

        def on_model() -> None:
            self.m.put_bulk(index, src, 0 if off is None and n is not None else off, n)

        self.same(on_buffer, on_model)

    @rule(src=st.binary(max_size=16), start=st.integers(0, 16), end=st.integers(0, 16))
    def put_buffer(self, src: bytes, start: int, end: int) -> None:
        start, end = min(start, len(src)), min(max(start, end), len(src))
        other = ByteBuffer.wrap(bytearray(src), start, end - start)
        got = self.same(
            void(lambda: self.b.put(other)), lambda: self.m.put_buffer(src[start:end])
        )
        assert other.position() == (end if got[0] == "ok" else start)

    @rule(start=st.integers(0, 40), end=st.integers(0, 40))
    def put_overlapping_duplicate(self, start: int, end: int) -> None:
        """``put`` from a duplicate of this very buffer: as if through a temporary."""
        start, end = min(start, self.m.cap), min(max(start, end), self.m.cap)
        dup = self.b.duplicate().clear().position(end).limit(end).position(start)
        got = self.same(
            void(lambda: self.b.put(dup)),
            lambda: self.m.put_buffer(bytes(self.m.data[start:end])),
        )
        assert dup.position() == (end if got[0] == "ok" else start)

    @rule(
        index=indexes,
        src=st.binary(max_size=16),
        lim=st.integers(0, 16),
        off=st.integers(-2, 16),
        n=st.integers(-2, 16),
    )
    def put_buffer_at(self, index: int, src: bytes, lim: int, off: int, n: int) -> None:
        other = ByteBuffer.wrap(bytearray(src)).limit(min(lim, len(src)))
        self.same(
            void(lambda: self.b.put(index, other, off, n)),
            lambda: self.m.put_buffer_at(index, src, other.limit(), off, n),
        )
        assert other.position() == 0

    @rule()
    def put_itself(self) -> None:
        def on_model() -> None:
            if self.m.read_only and not self.m.direct:  # HeapByteBufferR refuses first
                raise RO("read-only")
            raise IAE("the source buffer is this buffer")

        self.same(lambda: self.b.put(self.b), on_model)

    @rule()
    def compact(self) -> None:
        self.same(void(lambda: self.b.compact()), self.m.compact)

    # -- derived buffers and queries ---------------------------------------------------------

    @rule()
    def slice_rest(self) -> None:
        s = self.b.slice()
        n = self.m.lim - self.m.pos
        assert state(s) == (0, n, -1, n)
        assert s.order() is BE
        assert s.is_read_only() is self.m.read_only
        assert bytes(s) == self.m.rest()

    @rule(i=indexes, n=st.integers(-2, 45))
    def slice_at(self, i: int, n: int) -> None:
        def on_model() -> bytes:
            check_from_index_size(i, n, self.m.lim)
            return bytes(self.m.data[i : i + n])

        def on_buffer() -> bytes:
            s = self.b.slice(i, n)
            assert state(s) == (0, n, -1, n)
            return bytes(s)

        self.same(on_buffer, on_model)

    @rule()
    def duplicate_and_read_only(self) -> None:
        for d in (self.b.duplicate(), self.b.as_read_only_buffer()):
            assert state(d) == (self.m.pos, self.m.lim, self.m.mark, self.m.cap)
            assert d.order() is BE
            assert content(d) == bytes(self.m.data)

    @rule(other=st.binary(max_size=12), start=st.integers(0, 12))
    def compare(self, other: bytes, start: int) -> None:
        start = min(start, len(other))
        that = ByteBuffer.wrap(bytearray(other), start, len(other) - start)
        mine, theirs = self.m.rest(), other[start:]
        assert self.b.equals(that) is (mine == theirs)
        assert (self.b == that) is (mine == theirs)
        assert self.b.compare_to(that) == ref_compare(mine, theirs)
        assert that.compare_to(self.b) == ref_compare(theirs, mine)
        assert self.b.mismatch(that) == ref_mismatch(mine, theirs)
        assert self.b.hash_code() == ref_hash(mine)
        assert bytes(self.b) == mine
        assert len(self.b) == len(mine)

    @rule(prim=st.sampled_from(VIEW_PRIMS))
    def typed_view(self, prim: Prim) -> None:
        assert prim.view is not None
        view: TypedBuffer = getattr(self.b, prim.view)()
        n = (self.m.lim - self.m.pos) // prim.size
        assert state(view) == (0, n, -1, n)
        assert view.order() is self.m.order
        assert view.is_read_only() is self.m.read_only
        at = self.m.pos
        expected = [
            prim.decode(bytes(self.m.data[at + k * prim.size : at + (k + 1) * prim.size]),
                        self.m.order)
            for k in range(n)
        ]
        assert key([view.get(k) for k in range(n)]) == key(expected)

    @precondition(lambda self: self.model is not None and not self.model.read_only)
    @rule(data=st.data(), prim=st.sampled_from(VIEW_PRIMS), i=st.integers(-1, 20))
    def typed_view_put(self, data: st.DataObject, prim: Prim, i: int) -> None:
        assert prim.view is not None
        value = data.draw(prim_values(prim, valid_only=True), label="value")
        view: TypedBuffer = getattr(self.b, prim.view)()

        def on_model() -> None:
            n = (self.m.lim - self.m.pos) // prim.size
            if not 0 <= i < n:
                raise IOOB(i)
            at = self.m.pos + i * prim.size
            self.m.data[at : at + prim.size] = prim.encode(value, self.m.order)

        self.same(void(lambda: view.put(i, value)), on_model)

    # -- after every step --------------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        if self.buf is None:
            return
        m, b = self.m, self.b
        assert (b.position(), b.limit(), b.mark_value(), b.capacity()) == (
            m.pos,
            m.lim,
            m.mark,
            m.cap,
        )
        assert -1 <= b.mark_value() <= b.position() <= b.limit() <= b.capacity()
        assert b.mark_value() == -1 or b.mark_value() >= 0
        assert b.remaining() == len(b) == m.lim - m.pos
        assert b.has_remaining() is (m.pos < m.lim)
        assert b.order() is m.order
        assert content(b) == bytes(m.data)


BufferMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TestBufferMachine = BufferMachine.TestCase


# == 2. failure atomicity ==================================================================


def _calls() -> st.SearchStrategy[tuple[str, tuple[Any, ...]]]:
    """Calls drawn around the bounds, with arguments that are often invalid."""
    i = st.integers(-3, 20)
    n = st.integers(-2, 20)
    bad_value = st.sampled_from([-129, 256, 1 << 16, 1 << 32, 1 << 64, -(1 << 63) - 1, 1.5, "x"])
    value = st.one_of(st.integers(-130, 260), bad_value)
    typed = st.sampled_from(
        ["put_short", "put_int", "put_long", "put_char", "put_float", "put_double"]
    )
    getters = st.sampled_from(
        ["get_short", "get_int", "get_long", "get_char", "get_float", "get_double",
         "get_unsigned_short", "get_unsigned_int", "get_unsigned_byte"]
    )
    return st.one_of(
        st.tuples(st.just("position"), st.tuples(i)),
        st.tuples(st.just("limit"), st.tuples(i)),
        st.tuples(st.just("reset"), st.just(())),
        st.tuples(st.just("get"), st.just(())),
        st.tuples(st.just("get"), st.tuples(i)),
        st.tuples(getters, st.just(())),
        st.tuples(getters, st.tuples(i)),
        st.tuples(st.just("put"), st.tuples(value)),
        st.tuples(st.just("put"), st.tuples(i, value)),
        st.tuples(typed, st.tuples(value)),
        st.tuples(typed, st.tuples(i, value)),
        st.tuples(typed, st.tuples(bad_value)),
        st.tuples(typed, st.tuples(st.integers(0, 4), bad_value)),
        st.tuples(st.just("get"), st.tuples(st.builds(bytearray, st.integers(0, 10)), n, n)),
        st.tuples(st.just("get"), st.tuples(i, st.builds(bytearray, st.integers(0, 10)), n, n)),
        st.tuples(st.just("put"), st.tuples(st.binary(max_size=10), n, n)),
        st.tuples(st.just("put"), st.tuples(i, st.binary(max_size=10), n, n)),
        st.tuples(
            st.just("put"),
            st.tuples(i, st.builds(ByteBuffer.allocate, st.integers(0, 10)), n, n),
        ),
        st.tuples(st.just("put"), st.tuples(st.builds(ByteBuffer.allocate, st.integers(0, 12)))),
        st.tuples(st.just("slice"), st.tuples(i, n)),
        st.tuples(st.just("compact"), st.just(())),
        st.tuples(st.just("alignment_offset"), st.tuples(i, st.sampled_from([0, 1, 3, 6, 16]))),
        st.tuples(st.just("aligned_slice"), st.tuples(st.sampled_from([0, 3, 6, 8]))),
    )


@settings(PROPERTY_SETTINGS, max_examples=1000)
@given(
    kind=st.sampled_from(ALL_KINDS),
    data=st.binary(min_size=0, max_size=16),
    bounds=st.tuples(st.integers(0, 16), st.integers(0, 16), st.integers(0, 16)),
    with_mark=st.booleans(),
    call=_calls(),
)
def test_failing_calls_change_nothing(
    kind: BufferKind,
    data: bytes,
    bounds: tuple[int, int, int],
    with_mark: bool,
    call: tuple[str, tuple[Any, ...]],
) -> None:
    cap = len(data)
    mark, pos, lim = sorted(min(x, cap) for x in bounds)
    buf = kind.fresh(cap, data)
    try:
        buf.limit(lim).position(mark)
        if with_mark:
            buf.mark()
        buf.position(pos)
        before = (state(buf), buf.order(), content(buf))
        name, args = call
        try:
            getattr(buf, name)(*args)
        except Exception as e:
            event(f"raised {type(e).__name__}")
            assert (state(buf), buf.order(), content(buf)) == before, f"{name}{args}: {e!r}"
        else:
            event("succeeded")
    finally:
        buf.release()


@PROPERTY_SETTINGS
@given(
    kind=st.sampled_from(WRITABLE_KINDS),
    prim=st.sampled_from(VIEW_PRIMS),
    data=st.data(),
)
def test_failing_view_calls_change_nothing(
    kind: BufferKind, prim: Prim, data: st.DataObject
) -> None:
    assert prim.view is not None
    raw = data.draw(st.binary(min_size=0, max_size=32), label="content")
    buf = kind.fresh(len(raw), raw)
    try:
        view: TypedBuffer = getattr(buf, prim.view)()
        pos = data.draw(st.integers(0, view.capacity()), label="position")
        view.position(pos)
        values = data.draw(st.lists(prim_values(prim), max_size=5), label="values")
        index = data.draw(st.none() | st.integers(-2, 18), label="index")
        before = (state(view), content(buf))
        try:
            if index is None:
                view.put(values)
            else:
                view.put(index, values)
        except Exception as e:
            event(f"raised {type(e).__name__}")
            assert (state(view), content(buf)) == before, f"put({index}, {values}): {e!r}"
        else:
            event("succeeded")
    finally:
        buf.release()


# == 3. typed round trips ===================================================================


@PROPERTY_SETTINGS
@given(
    kind=st.sampled_from(WRITABLE_KINDS),
    prim=st.sampled_from(PRIMS),
    order=st.sampled_from([BE, LE]),
    index=st.integers(0, 8),
    data=st.data(),
)
def test_typed_round_trip(
    kind: BufferKind, prim: Prim, order: ByteOrder, index: int, data: st.DataObject
) -> None:
    value = data.draw(prim_values(prim, valid_only=True), label="value")
    expected_bytes = prim.encode(value, order)
    expected = prim.decode(expected_bytes, order)
    buf = kind.fresh(16, bytes(range(16))).order(order)
    try:
        getattr(buf, prim.putter)(index, value)
        assert content(buf)[index : index + prim.size] == expected_bytes
        assert key(getattr(buf, prim.getter)(index)) == key(expected)
        buf.position(index)
        getattr(buf, prim.putter)(value)
        assert buf.position() == index + prim.size
        buf.position(index)
        assert key(getattr(buf, prim.getter)()) == key(expected)
        assert content(buf)[:index] == bytes(range(index))
        assert content(buf)[index + prim.size :] == bytes(range(index + prim.size, 16))
        if prim.view is not None:
            view: TypedBuffer = getattr(buf.position(index), prim.view)()
            assert view.order() is order
            assert key(view.get(0)) == key(expected)
            view.put(0, value)
            assert content(buf)[index : index + prim.size] == expected_bytes
    finally:
        buf.release()


@PROPERTY_SETTINGS
@given(
    kind=st.sampled_from(WRITABLE_KINDS),
    prim=st.sampled_from([p for p in PRIMS if p.kind == "int"]),
    order=st.sampled_from([BE, LE]),
    relative=st.booleans(),
    data=st.data(),
)
def test_out_of_range_integer_put_changes_nothing(
    kind: BufferKind, prim: Prim, order: ByteOrder, relative: bool, data: st.DataObject
) -> None:
    bits = prim.size * 8
    value = data.draw(
        st.integers(max_value=-(1 << (bits - 1)) - 1) | st.integers(min_value=1 << bits),
        label="value",
    )
    buf = kind.fresh(16, bytes(range(100, 116))).order(order)
    try:
        buf.position(3)
        before = (state(buf), content(buf))
        with pytest.raises(IAE):
            if relative:
                getattr(buf, prim.putter)(value)
            else:
                getattr(buf, prim.putter)(5, value)
        assert (state(buf), content(buf)) == before
    finally:
        buf.release()
