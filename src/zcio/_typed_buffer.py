"""TypedBuffer: what every typed view of a ByteBuffer does (the six kinds are in
``zcio._typed``), as Java's ``ByteBuffer.asIntBuffer()`` and friends.

A view covers the byte buffer's ``[position, limit)`` at the time it is made: its
capacity is the number of whole elements that fit, its position 0, its limit its
capacity.  It shares content with the byte buffer but has its own indexes, and keeps
the byte order the byte buffer had when the view was made (slices and duplicates of
a view keep it too, unlike a ByteBuffer's).  Indexes count elements, not bytes.
Views have no accessible array (``array()`` raises UnsupportedOperationError).

Elements are Python values: ``int`` for short, int and long; ``float`` for float and
double (a float32 NaN keeps its payload and quiet bit through ``get`` and ``put``, as in
Java: see :func:`float32_value`); a one-character ``str`` for char.  A ``str`` put into
a CharBuffer is Java's String: its UTF-16 code units (two for a character beyond
U+FFFF), and ``str(char_buffer)`` decodes them back, a lone surrogate kept as it is.
Every index, offset and length goes through ``operator.index`` (numpy ints are
accepted; bool, float and str raise TypeError before anything changes).
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable, MutableSequence
from typing import Any, ClassVar, Generic, Self, TypeVar, overload

from . import _views
from ._buffer import Buffer, check_int
from ._codec import pack
from ._errors import (
    BufferOverflowError,
    BufferUnderflowError,
    IllegalArgumentError,
    UnsupportedOperationError,
)
from ._memory import Memory
from ._order import ByteOrder

__all__ = ["TypedBuffer"]


#: The Python type of a view's elements: ``int``, ``float`` or ``str``.
_E = TypeVar("_E", int, float, str)


class TypedBuffer(Buffer, Generic[_E]):
    """Common machinery of the typed views; element type given by the subclass."""

    __slots__ = ("_off", "_st")

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
    ) -> Self:
        buf = cls.__new__(cls)
        buf._mem = mem
        buf._off = off
        buf._cap = cap
        buf._pos = pos
        buf._lim = cap if lim is None else lim
        buf._mark = mark
        buf._ro = ro
        buf._order = order
        buf._st = cls._structs[order]
        # Plain memory is read and written through the view's own memoryview (revoked
        # with the memory, as a ByteBuffer's); other memory is asked (None).
        buf._mv = mem.view(off, off + cap * cls._size, ro) if mem.plain else None  # type: ignore[assignment]
        return buf

    # -- element conversion (overridden where Python and Java values differ) -----------

    _char: ClassVar[bool] = False  # a CharBuffer: elements are chr() of the code unit

    def _pack(self, value: Any) -> bytes:
        """The element's encoding, or the value error; nothing is written here."""
        return pack(self._st, value)

    def _write(self, byte_index: int, raw: bytes) -> None:
        """Write ``raw`` at byte ``byte_index`` of the view: through its own memoryview
        on plain memory, else through its memory."""
        mv = self._mv
        if mv is None:
            self._mem.store(self._off + byte_index, raw)
            return
        try:
            mv[byte_index : byte_index + len(raw)] = raw
        except (ValueError, TypeError) as e:  # revoked view
            raise self._mem.translate(e) from None

    def _read(self, i: int, n: int) -> bytes:
        """A copy of the bytes of elements ``[i, i + n)``."""
        s = self._size
        return self._mem.read(self._off + i * s, n * s)

    def _load(self, i: int) -> Any:
        """Element ``i``, asked of the memory: contiguous, mapped (guarded) or a
        composite's (straddling components) alike; plain memory through the view's
        own memoryview."""
        mv = self._mv
        if mv is None:
            v = self._mem.load(self._st, self._off + i * self._size)
        else:
            try:
                v = self._st.unpack_from(mv, i * self._size)[0]
            except ValueError as e:  # revoked view
                raise self._mem.translate(e) from None
        if self._char:
            return chr(v)
        if v != v:  # a NaN: only float and double views hold them
            return self._nan(i, v)
        return v

    def _nan(self, i: int, v: float) -> float:
        """The NaN at index ``i``, which ``struct`` unpacked as ``v``: exact for a double."""
        return v

    # -- get/put ---------------------------------------------------------------------

    @overload
    def get(self, /) -> _E: ...
    @overload
    def get(self, index: int, /) -> _E: ...
    @overload
    def get(self, dst: MutableSequence[Any], offset: int = ..., length: int | None = ...,
            /) -> Self: ...
    @overload
    def get(self, index: int, dst: MutableSequence[Any], offset: int = ...,
            length: int | None = ..., /) -> Self: ...
    def get(self, a: Any = None, b: Any = None, c: Any = None, d: Any = None, /) -> Any:
        """``get()`` (position += 1), ``get(i)``, or bulk ``get([index,] dst, offset, length)``.

        Same rules as ByteBuffer.get, counted in elements.  Every index, offset and
        length is an integer (``operator.index``: numpy ints too; bool, float and str
        raise TypeError before anything changes).
        """
        if a is None:
            p = self._pos
            if p >= self._lim:
                raise BufferUnderflowError(f"get() at position {p} = limit {self._lim}")
            v = self._load(p)
            self._pos = p + 1
            return v
        if type(a) is int and b is None:
            return self._load(self._check_index(a))
        if _is_bulk(a):
            return self._get_bulk(None, a, b, c)
        index = check_int(a, "index")
        if b is None:
            return self._load(self._check_index(index))
        return self._get_bulk(index, b, c, d)

    def _get_bulk(self, index: int | None, dst: Any, offset: Any, length: Any) -> Self:
        """Java's ``get(dst, offset, length)`` and ``get(index, dst, offset, length)``."""
        p, offset, length = self._bulk_range(index, offset, length, len(dst), False)
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
          ``src`` is a sequence, or a same-type view whose limit bounds
          ``offset + length``.
        * CharBuffer: a str is one element when it is a single char of at most U+FFFF,
          else a source like Java's String, ``offset`` and ``length`` counted in its
          UTF-16 code units (``put(text, offset, length)`` is Java's
          ``put(text, offset, offset + length)``, which checks its bounds before
          read-only).

        The checks come in Java's order, and a failed put changes nothing: for a
        sequence, ReadOnlyBufferError first, then the bounds; for a view, relative:
        the same-view check, read-only, then overflow; absolute: the bounds first, then
        read-only (``put(int, IntBuffer, int, int)``).  Every value is encoded before
        anything is written.  A view's elements are copied as bytes (swapped when the
        orders differ), so NaN payloads survive, and as if through a temporary copy,
        so overlapping views of one parent copy correctly.  Indexes, offsets and
        lengths are integers as for ``get``.
        """
        ta = type(a)
        if b is None:
            if ta is int or ta is float or (ta is str and _is_char(a)):
                return self._put_one(a)
        elif ta is int and c is None and (
            (tb := type(b)) is int or tb is float or (tb is str and _is_char(b))
        ):
            return self._put_at(a, b)
        char = self._char  # CharBuffer.put("text") puts each char
        if _is_bulk(a, char) or (char and isinstance(a, str) and b is not None):
            return self._put_bulk(None, a, b, c)  # put("x", 0, 1) is a String put too
        if b is not None and _is_bulk(b, char):
            return self._put_bulk(check_int(a, "index"), b, c, d)
        if c is not None or d is not None:
            raise TypeError("put(index, value) takes no offset or length")
        if b is None:
            return self._put_one(a)
        return self._put_at(check_int(a, "index"), b)

    def _put_one(self, value: Any) -> Self:
        """Relative ``put(value)``: read-only, then overflow, then the value's own check."""
        self._check_writable()
        p = self._pos
        if p >= self._lim:
            raise BufferOverflowError(f"put() at position {p} = limit {self._lim}")
        self._write(p * self._size, self._pack(value))
        self._pos = p + 1
        return self

    def _put_at(self, index: int, value: Any) -> Self:
        """Absolute ``put(index, value)``: read-only, then the index, then the value."""
        self._check_writable()
        self._write(self._check_index(index) * self._size, self._pack(value))
        return self

    def _put_bulk(self, index: int | None, src: Any, offset: Any, length: Any) -> Self:
        if isinstance(src, TypedBuffer):
            return self._put_view(index, src, offset, length)
        text = isinstance(src, str)
        if not text or index is not None:
            self._check_writable()
        if text:  # a Java String: its UTF-16 code units, a pair for a char beyond U+FFFF
            src = src.encode(_UTF16[self._order], "surrogatepass")
            src_len = len(src) // 2
        else:
            src = list(src)
            src_len = len(src)
        # Java's put(String, start, end) checks its bounds before read-only
        then = self._check_writable if text else None
        p, offset, length = self._bulk_range(index, offset, length, src_len, True, then=then)
        if text:
            raw = src[2 * offset : 2 * (offset + length)]
        else:  # every value checked before anything is written
            raw = b"".join([self._pack(v) for v in src[offset : offset + length]])
        self._write(p * self._size, raw)
        if index is None:
            self._pos = p + length
        return self

    def _put_view(self, index: int | None, src: TypedBuffer[Any], offset: Any, length: Any) -> Self:
        """``put(src_view)`` and ``put(index, src_view, offset, length)``: a byte copy."""
        if type(src) is not type(self):
            raise TypeError(f"cannot put a {type(src).__name__} into {type(self).__name__}")
        if index is None:  # relative: all of src's remaining
            if offset is not None:
                raise TypeError("put(src_view) takes no offset or length")
            if src is self:
                raise IllegalArgumentError("the source buffer is this buffer")
            self._check_writable()
            p, offset, length = self._bulk_range(None, src._pos, src._lim - src._pos,
                                                 src._lim, True)
        else:
            p, offset, length = self._bulk_range(index, offset, length, src._lim, True)
            self._check_writable()
        raw = src._read(offset, length)  # a copy: the views may overlap
        if src._order is not self._order and self._size > 1:
            swapped = array(_SWAP_CODES[self._size], raw)
            swapped.byteswap()
            raw = swapped.tobytes()
        self._write(p * self._size, raw)
        if index is None:
            self._pos = p + length
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
        index, length = self._slice_range(index, length)
        self._check_memory()
        return self._view_of(
            self._mem, self._off + index * self._size, length, self._ro, self._order
        )

    def duplicate(self) -> Self:
        """A view sharing content; indexes copied, order kept."""
        self._check_memory()
        return self._view_of(self._mem, self._off, self._cap, self._ro, self._order,
                             self._pos, self._lim, self._mark)

    def as_read_only_buffer(self) -> Self:
        """A read-only duplicate."""
        self._check_memory()
        return self._view_of(self._mem, self._off, self._cap, True, self._order,
                             self._pos, self._lim, self._mark)

    def compact(self) -> Self:
        """Move ``[position, limit)`` to index 0; position = remaining, limit = capacity."""
        self._check_writable()
        s, p, n = self._size, self._pos, self._lim - self._pos
        mem, off = self._mem, self._off
        dst = mem.segments(off, n * s)
        if p and n:
            _views.move(dst, mem.segments(off + p * s, n * s),
                        mem.segments(off, self._lim * s))
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


_UTF16 = {ByteOrder.BIG_ENDIAN: "utf-16-be", ByteOrder.LITTLE_ENDIAN: "utf-16-le"}
_SWAP_CODES = {2: "H", 4: "I", 8: "Q"}  # array typecodes by element size, for byteswap


def _is_bulk(value: Any, char: bool = False) -> bool:
    """Whether ``value`` is a bulk source (a view or a sequence) rather than one element.

    A ``str`` is a Java String for a CharBuffer (its UTF-16 code units) unless it is
    one char, a single character of at most U+FFFF; for the other views it is a value.
    """
    if isinstance(value, TypedBuffer):
        return True
    if isinstance(value, str):
        return char and not _is_char(value)
    return isinstance(value, Iterable)


def _is_char(value: str) -> bool:
    """Whether ``value`` is one UTF-16 code unit: a char rather than a String."""
    return len(value) == 1 and value <= "\uffff"
