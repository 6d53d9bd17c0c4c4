"""Typed views of a ByteBuffer: CharBuffer, ShortBuffer, IntBuffer, LongBuffer,
FloatBuffer and DoubleBuffer, as Java's ``ByteBuffer.asIntBuffer()`` and friends.

A view covers the byte buffer's ``[position, limit)`` at the time it is made: its
capacity is the number of whole elements that fit, its position 0, its limit its
capacity.  It shares content with the byte buffer but has its own indexes, and keeps
the byte order the byte buffer had when the view was made (slices and duplicates of
a view keep it too, unlike a ByteBuffer's).  Indexes count elements, not bytes.
Views have no accessible array (``array()`` raises UnsupportedOperationError).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, MutableSequence
from typing import Any, ClassVar, Self, overload

from . import _guard
from ._buffer import Buffer, check_from_index_size, check_int
from ._codec import pack
from ._errors import (
    BufferOverflowError,
    BufferUnderflowError,
    IllegalArgumentError,
    UnsupportedOperationError,
)
from ._memory import Memory
from ._order import ByteOrder

__all__ = [
    "TypedBuffer",
    "CharBuffer",
    "ShortBuffer",
    "IntBuffer",
    "LongBuffer",
    "FloatBuffer",
    "DoubleBuffer",
]


class TypedBuffer(Buffer):
    """Common machinery of the typed views; element type given by the subclass."""

    __slots__ = ("_off", "_order", "_st")

    _fmt: ClassVar[str]  # struct code of the element
    _size: ClassVar[int]
    _structs: ClassVar[dict[ByteOrder, struct.Struct]]
    _off: int  # byte offset of element 0 within the memory block
    _order: ByteOrder
    _st: struct.Struct

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_fmt" not in cls.__dict__:  # an abstract intermediate class
            return
        cls._structs = {o: struct.Struct(o.prefix + cls._fmt) for o in ByteOrder}
        cls._size = struct.calcsize(cls._fmt)

    @classmethod
    def _view_of(
        cls,
        mem: Memory,
        off: int,
        cap: int,
        ro: bool,
        order: ByteOrder,
        pos: int = 0,
        lim: int | None = None,
        mark: int = -1,
        mv: memoryview | None = None,
    ) -> Self:
        buf = cls.__new__(cls)
        buf._mem = mem
        buf._mv = mem.view(off, off + cap * cls._size, ro) if mv is None else mv
        buf._off = off
        buf._cap = cap
        buf._pos = pos
        buf._lim = cap if lim is None else lim
        buf._mark = mark
        buf._ro = ro
        buf._order = order
        buf._st = cls._structs[order]
        return buf

    # -- element conversion (overridden where Python and Java values differ) -----------

    @staticmethod
    def _decode(raw: Any) -> Any:
        return raw

    def _pack(self, value: Any) -> bytes:
        """The element's encoding, or the value error; nothing is written here."""
        return pack(self._st, value)

    def _write(self, byte_index: int, raw: bytes) -> None:
        try:
            if self._mem.guarded:  # a mapping: through the SIGBUS guard
                _guard.copy(self._mv, byte_index, raw, 0, len(raw))
            else:
                self._mv[byte_index : byte_index + len(raw)] = raw
        except (ValueError, TypeError) as e:  # revoked view
            raise self._mem.translate(e) from None

    def _load(self, i: int) -> Any:
        try:
            if self._mem.guarded:  # a mapping: through the SIGBUS guard
                raw = _guard.read(self._mv, i * self._size, self._size)
                return self._decode(self._st.unpack(raw)[0])
            return self._decode(self._st.unpack_from(self._mv, i * self._size)[0])
        except ValueError as e:
            raise self._mem.translate(e) from None
        except TypeError:  # a view of a CompositeBuffer: its _mv spans components
            at = i * self._size
            return self._decode(self._st.unpack(self._mv[at : at + self._size])[0])

    # -- get/put ---------------------------------------------------------------------

    @overload
    def get(self, /) -> Any: ...
    @overload
    def get(self, index: int, /) -> Any: ...
    @overload
    def get(self, dst: MutableSequence[Any], offset: int = ..., length: int | None = ...,
            /) -> Self: ...
    @overload
    def get(self, index: int, dst: MutableSequence[Any], offset: int = ...,
            length: int | None = ..., /) -> Self: ...
    def get(self, a: Any = None, b: Any = None, c: Any = None, d: Any = None, /) -> Any:
        """``get()`` (position += 1), ``get(i)``, or bulk ``get([index,] dst, offset, length)``.

        Same rules as ByteBuffer.get, counted in elements.
        """
        if a is None:
            p = self._pos
            if p >= self._lim:
                raise BufferUnderflowError(f"get() at position {p} = limit {self._lim}")
            v = self._load(p)
            self._pos = p + 1
            return v
        if _is_int(a):
            if b is None:
                return self._load(self._check_index(a))
            return self._get_bulk(a, b, c, d)
        return self._get_bulk(None, a, b, c)

    def _get_bulk(self, index: int | None, dst: Any, offset: Any, length: Any) -> Self:
        offset = 0 if offset is None else check_int(offset, "offset")
        length = len(dst) - offset if length is None else check_int(length, "length")
        if index is None:
            check_from_index_size(offset, length, len(dst))
            p = self._pos
            if length > self._lim - p:
                raise BufferUnderflowError(f"get of {length} with {self._lim - p} remaining")
        else:
            p = check_int(index, "index")
            check_from_index_size(p, length, self._lim)
            check_from_index_size(offset, length, len(dst))
        values = [self._load(p + k) for k in range(length)]
        for k, v in enumerate(values):
            dst[offset + k] = v
        if index is None:
            self._pos = p + length
        return self

    @overload
    def put(self, value: Any, /) -> Self: ...
    @overload
    def put(self, index: int, value: Any, /) -> Self: ...
    @overload
    def put(self, src: Iterable[Any], offset: int = ..., length: int | None = ..., /
            ) -> Self: ...
    @overload
    def put(self, index: int, src: Iterable[Any], offset: int = ..., length: int | None = ...,
            /) -> Self: ...
    def put(self, a: Any, b: Any = None, c: Any = None, d: Any = None, /) -> Self:
        """Write one element or many.  Same rules as ByteBuffer.put, counted in elements.

        * ``put(v)``: at position, position += 1; ``put(i, v)``: at ``i``.
        * ``put(src, offset=0, length=None)``: ``length`` elements of a sequence from
          ``offset``; ``put(src_view)``: all of a same-type view's remaining elements
          (IllegalArgumentError if it is this view); position += length.
        * ``put(index, src, offset=0, length=None)``: absolute; no position changes.

        ReadOnlyBufferError comes first (after the same-view check, as in Java); every
        value is encoded before anything is written, so a bad value changes nothing.
        """
        is_char = isinstance(self, CharBuffer)  # CharBuffer.put("text") puts each char
        if _is_bulk(a, is_char):
            return self._put_bulk(None, a, b, c)
        if _is_int(a) and _is_bulk(b, is_char):
            return self._put_bulk(check_int(a, "index"), b, c, d)
        self._check_writable()
        if b is None:
            p = self._pos
            if p >= self._lim:
                raise BufferOverflowError(f"put() at position {p} = limit {self._lim}")
            self._write(p * self._size, self._pack(a))
            self._pos = p + 1
            return self
        i = self._check_index(a)
        self._write(i * self._size, self._pack(b))
        return self

    def _put_bulk(self, index: int | None, src: Any, offset: Any, length: Any) -> Self:
        if src is self and index is None:
            raise IllegalArgumentError("the source buffer is this buffer")
        self._check_writable()
        if isinstance(src, TypedBuffer):
            if type(src) is not type(self):
                raise TypeError(f"cannot put a {type(src).__name__} into {type(self).__name__}")
            if index is None:  # relative put(src_view): all of src's remaining
                if offset is not None:
                    raise TypeError("put(src_view) takes no offset or length")
                offset, length = src._pos, src._lim - src._pos
            src_len = src._lim
        else:
            src = list(src)
            src_len = len(src)
        offset = 0 if offset is None else check_int(offset, "offset")
        length = src_len - offset if length is None else check_int(length, "length")
        if index is None:
            if not isinstance(src, TypedBuffer):
                check_from_index_size(offset, length, src_len)
            p = self._pos
            if length > self._lim - p:
                raise BufferOverflowError(f"put of {length} with {self._lim - p} remaining")
        else:
            p = index
            check_from_index_size(p, length, self._lim)
            check_from_index_size(offset, length, src_len)
        if isinstance(src, TypedBuffer):
            values = [src._load(offset + k) for k in range(length)]
        else:
            values = src[offset : offset + length]
        raw = b"".join(self._pack(v) for v in values)  # every value checked first
        self._write(p * self._size, raw)
        if index is None:
            self._pos = p + length
            if isinstance(src, TypedBuffer):
                src._pos += length
        return self

    # -- derived views -----------------------------------------------------------------

    def order(self) -> ByteOrder:
        """The byte order the view was made with (fixed for its lifetime)."""
        return self._order

    def has_array(self) -> bool:
        """Always False: a view of a ByteBuffer has no accessible array."""
        return False

    def array(self) -> Any:
        """Always UnsupportedOperationError, as for Java's byte-buffer views."""
        raise UnsupportedOperationError(f"a {type(self).__name__} view has no array")

    def array_offset(self) -> int:
        """Always UnsupportedOperationError, as ``array()``."""
        raise UnsupportedOperationError(f"a {type(self).__name__} view has no array")

    @overload
    def slice(self) -> Self: ...
    @overload
    def slice(self, index: int, length: int) -> Self: ...
    def slice(self, index: int | None = None, length: int | None = None) -> Self:
        """A view of ``[position, limit)`` or ``[index, index + length)``; keeps the order."""
        if index is None:
            index, length = self._pos, max(self._lim - self._pos, 0)
        else:
            index, length = check_int(index, "index"), check_int(length, "length")
            check_from_index_size(index, length, self._lim)
        self._check_memory()
        return self._view_of(
            self._mem, self._off + index * self._size, length, self._ro, self._order
        )

    def duplicate(self) -> Self:
        """A view sharing content; indexes copied, order kept."""
        self._check_memory()
        return self._view_of(self._mem, self._off, self._cap, self._ro, self._order,
                             self._pos, self._lim, self._mark, self._mv)

    def as_read_only_buffer(self) -> Self:
        """A read-only duplicate."""
        self._check_memory()
        return self._view_of(self._mem, self._off, self._cap, True, self._order,
                             self._pos, self._lim, self._mark)

    def compact(self) -> Self:
        """Move ``[position, limit)`` to index 0; position = remaining, limit = capacity."""
        self._check_writable()
        s, p, n = self._size, self._pos, self._lim - self._pos
        try:
            if self._mem.guarded:
                _guard.copy(self._mv, 0, self._mv, p * s, n * s)
            else:
                self._mv[0 : n * s] = self._mv[p * s : (p + n) * s]
        except ValueError as e:
            raise self._mem.translate(e) from None
        self._pos, self._lim, self._mark = n, self._cap, -1
        return self

    # -- comparison ------------------------------------------------------------------

    def _remaining_values(self) -> list[Any]:
        return [self._load(i) for i in range(self._pos, self._lim)]

    @staticmethod
    def _compare(x: Any, y: Any) -> int:
        return int(x > y) - int(x < y)  # Integer.compare / Long.compare: -1, 0, 1

    @staticmethod
    def _same(x: Any, y: Any) -> bool:
        return bool(x == y)

    def mismatch(self, that: Self) -> int:
        """Relative index of the first differing element, -1, or the shorter length."""
        a, b = self._remaining_values(), that._remaining_values()
        n = min(len(a), len(b))
        for i in range(n):
            if not self._same(a[i], b[i]):
                return i
        return n if len(a) != len(b) else -1

    def equals(self, that: object) -> bool:
        """Same view type and equal remaining elements."""
        if that is self:
            return True
        if type(that) is not type(self):
            return False
        assert isinstance(that, TypedBuffer)
        return self.remaining() == that.remaining() and self.mismatch(that) < 0

    def compare_to(self, that: Self) -> int:
        """Java's ``compareTo``: the element comparison at the first mismatch, else
        the difference of the remaining counts."""
        i = self.mismatch(that)
        n = min(self.remaining(), that.remaining())
        if 0 <= i < n:
            return self._compare(self._load(self._pos + i), that._load(that._pos + i))
        return self.remaining() - that.remaining()

    @staticmethod
    def _hash_term(v: Any) -> int:
        return int(v)

    def hash_code(self) -> int:
        """Java's ``hashCode``: ``h = 31*h + (int) e`` over the remaining elements, from the end."""
        h = 1
        for v in reversed(self._remaining_values()):
            h = (31 * h + self._hash_term(v)) & 0xFFFFFFFF
        return h - (1 << 32) if h >= 1 << 31 else h

    def __eq__(self, other: object) -> bool:
        return self.equals(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        kind = "Direct" if self._mem.direct else "Heap"
        ro = "R" if self._ro else ""
        return (f"zcio.{type(self).__name__}({kind}{ro}, {self._order})"
                f"[pos={self._pos} lim={self._lim} cap={self._cap}]")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_bulk(value: Any, char: bool = False) -> bool:
    """Whether ``value`` is a bulk source (a view or a sequence) rather than one element.

    A ``str`` is one element for a CharBuffer only when it is a single character.
    """
    if isinstance(value, TypedBuffer):
        return True
    if isinstance(value, str):
        return char and len(value) != 1
    return isinstance(value, Iterable)


def _java_float_to_int(v: float) -> int:
    """Java's ``(int) f``: NaN -> 0, saturating at the int range, toward zero."""
    if math.isnan(v):
        return 0
    if v >= 2**31 - 1:
        return 2**31 - 1
    if v <= -(2**31):
        return -(2**31)
    return int(v)


def _float_compare(x: float, y: float) -> int:
    """Java's ``Float.compare``/``Double.compare``: -0.0 < 0.0, NaN above everything."""
    if x < y:
        return -1
    if x > y:
        return 1
    bx = _CANONICAL_NAN if math.isnan(x) else _DOUBLE_BITS.unpack(_DOUBLE.pack(x))[0]
    by = _CANONICAL_NAN if math.isnan(y) else _DOUBLE_BITS.unpack(_DOUBLE.pack(y))[0]
    return (bx > by) - (bx < by)


_DOUBLE, _DOUBLE_BITS = struct.Struct(">d"), struct.Struct(">q")
_CANONICAL_NAN = 0x7FF8000000000000


class CharBuffer(TypedBuffer):
    """UTF-16 code units; elements are one-character ``str``s (put also takes ints)."""

    __slots__ = ()
    _fmt = "H"

    @staticmethod
    def _decode(raw: Any) -> Any:
        return chr(raw)


    @staticmethod
    def _compare(x: Any, y: Any) -> int:
        return ord(x) - ord(y)  # Character.compare

    @staticmethod
    def _hash_term(v: Any) -> int:
        return ord(v)

    def __str__(self) -> str:
        """The remaining chars as a str (Java's ``CharBuffer.toString``)."""
        return "".join(self._remaining_values())


class ShortBuffer(TypedBuffer):
    """Signed 16-bit integers."""

    __slots__ = ()
    _fmt = "h"

    @staticmethod
    def _compare(x: Any, y: Any) -> int:
        return int(x - y)  # Short.compare


class IntBuffer(TypedBuffer):
    """Signed 32-bit integers."""

    __slots__ = ()
    _fmt = "i"


class LongBuffer(TypedBuffer):
    """Signed 64-bit integers; ``hash_code`` uses each value's low 32 bits (``(int) l``)."""

    __slots__ = ()
    _fmt = "q"

    @staticmethod
    def _hash_term(v: Any) -> int:
        low = int(v) & 0xFFFFFFFF
        return low - (1 << 32) if low >= 1 << 31 else low


class _FloatingBuffer(TypedBuffer):
    """Floats and doubles: equal when ``==`` or both NaN, ordered by ``Float.compare``."""

    __slots__ = ()

    @staticmethod
    def _same(x: Any, y: Any) -> bool:
        return bool(x == y or (math.isnan(x) and math.isnan(y)))

    @staticmethod
    def _compare(x: Any, y: Any) -> int:
        return _float_compare(x, y)

    @staticmethod
    def _hash_term(v: Any) -> int:
        return _java_float_to_int(v)


class FloatBuffer(_FloatingBuffer):
    """32-bit floats."""

    __slots__ = ()
    _fmt = "f"


class DoubleBuffer(_FloatingBuffer):
    """64-bit floats."""

    __slots__ = ()
    _fmt = "d"
