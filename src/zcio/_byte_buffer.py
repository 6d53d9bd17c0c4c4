"""ByteBuffer: java.nio.ByteBuffer (Java 17) with Python names.

Heap buffers (``allocate``, ``wrap``) keep their bytes in a Python object; direct
buffers (``allocate_direct``) in an anonymous mapping off the Python heap, page-aligned
and zero-filled, counted in the ``direct`` pool.  Both kinds behave identically; only
``is_direct``, ``has_array``/``array``/``array_offset`` and alignment differ.

The invariant ``0 <= mark <= position <= limit <= capacity`` always holds.  A relative
get or put past the limit raises BufferUnderflowError / BufferOverflowError; an absolute
index outside ``[0, limit)`` raises IndexOutOfBoundsError; in every failing case no data
is transferred and no index changes.  Writes to a read-only buffer raise
ReadOnlyBufferError before anything else is checked.

Python differences, on purpose: ``get()`` returns Java's signed byte and
``get_unsigned_byte()`` the unsigned one; puts accept signed and unsigned ranges
(see ``zcio._codec``); ``get_char`` returns a one-character ``str``.
"""

from __future__ import annotations

import builtins
import struct
import sys
from typing import TYPE_CHECKING, Any, ClassVar, Self, overload

from ._buffer import Buffer, check_from_index_size, check_int, is_int
from ._codec import CODECS, Codec, pack
from ._errors import (
    BufferOverflowError,
    BufferUnderflowError,
    IllegalArgumentError,
    IndexOutOfBoundsError,
    ReadOnlyBufferError,
    UnsupportedOperationError,
)
from ._guard import copy as _guarded_copy
from ._guard import mismatch
from ._guard import read as _guarded_read
from ._memory import DirectMemory, HeapMemory, Memory
from ._order import ByteOrder

if TYPE_CHECKING:
    from ._shared import SharedByteBuffer
    from ._typed import (
        CharBuffer,
        DoubleBuffer,
        FloatBuffer,
        IntBuffer,
        LongBuffer,
        ShortBuffer,
        TypedBuffer,
    )
    from ._types import Buffer as BytesLike

__all__ = ["ByteBuffer"]

_BIG = ByteOrder.BIG_ENDIAN
#: Index of the first differing byte of two views (within the shorter), or -1; guarded.
_first_difference = mismatch
_BE = CODECS[_BIG]


def byte_view(obj: Any, writable: bool = False) -> memoryview:
    """A flat unsigned-byte memoryview of a bytes-like object (TypeError otherwise)."""
    mv = memoryview(obj)
    if mv.format != "B" or mv.ndim != 1:
        if not mv.c_contiguous:
            raise TypeError("bytes-like object must be C-contiguous")
        mv = mv.cast("B")
    if writable and mv.readonly:
        raise TypeError(f"destination {type(obj).__name__} is read-only")
    return mv


def check_capacity(capacity: object) -> int:
    """A buffer capacity: an integer in ``[0, sys.maxsize]``, else TypeError or
    IllegalArgumentError (Java's ``allocate`` takes an int, which cannot be larger)."""
    capacity = check_int(capacity, "capacity")
    if capacity < 0:
        raise IllegalArgumentError(f"capacity < 0: ({capacity} < 0)")
    if capacity > sys.maxsize:
        raise IllegalArgumentError(f"capacity {capacity} > sys.maxsize")
    return capacity


def other_buffer(that: object, what: str) -> ByteBuffer:
    """``that`` if it is a ByteBuffer, else TypeError (for ``mismatch``/``compare_to``)."""
    if not isinstance(that, ByteBuffer):
        raise TypeError(f"{what}() needs a ByteBuffer, not {type(that).__name__}")
    return that


def _signed(v: int) -> int:
    return v - 256 if v > 127 else v


class ByteBuffer(Buffer):
    """A byte buffer with Java's semantics; see the module docstring for the rules.

    >>> buf = ByteBuffer.allocate(8).put_int(0x01020304).flip()
    >>> buf.get(), buf.remaining()
    (1, 3)
    """

    __slots__ = ("_off", "_order", "_c", "_i32")

    _off: int  # byte offset of this buffer's index 0 within its memory block
    _order: ByteOrder
    _c: Codec
    _i32: struct.Struct  # _c.i32 in a slot: get_int/put_int are the hot paths
    #: True for CompositeBuffer (zcio._composite): its bytes lie in several blocks, so
    #: the comparisons and copies below hand a composite operand over to it.
    _segmented: ClassVar[bool] = False
    #: True for MappedByteBuffer (zcio._mapped): its memory can lose its file (SIGBUS),
    #: so the bulk copies below go through zcio._guard when either side has it.
    _guarded: ClassVar[bool] = False

    # -- factories ----------------------------------------------------------------------

    @classmethod
    def _make(
        cls,
        mem: Memory,
        off: int,
        cap: int,
        pos: int,
        lim: int,
        mark: int = -1,
        ro: bool = False,
        mv: builtins.memoryview | None = None,
    ) -> Self:
        buf = cls.__new__(cls)
        buf._mem = mem
        buf._mv = mem.view(off, off + cap, ro) if mv is None else mv
        buf._off = off
        buf._cap = cap
        buf._pos = pos
        buf._lim = lim
        buf._mark = mark
        buf._ro = ro
        buf._order = _BIG
        buf._c = _BE
        buf._i32 = _BE.i32
        return buf

    @classmethod
    def allocate(cls, capacity: int) -> ByteBuffer:
        """A heap buffer of ``capacity`` zero bytes, backed by a ``bytearray``.

        position 0, limit = capacity, no mark, BIG_ENDIAN, ``array_offset()`` 0.
        """
        capacity = check_capacity(capacity)
        return cls._make(HeapMemory(bytearray(capacity)), 0, capacity, 0, capacity)

    @classmethod
    def allocate_direct(cls, capacity: int) -> ByteBuffer:
        """A direct buffer of ``capacity`` zero bytes, off the Python heap.

        The memory is page-aligned, counted in the ``direct`` pool and bounded by the
        direct-memory cap (OutOfDirectMemoryError once garbage collection frees nothing).
        It is freed by ``release()``/``with``, or by a cleaner once no buffer or view
        can reach it.

        Syscalls: ``mmap(MAP_PRIVATE|MAP_ANONYMOUS)``; ``munmap`` on release.
        """
        capacity = check_capacity(capacity)
        return cls._make(DirectMemory(capacity), 0, capacity, 0, capacity)

    @classmethod
    def wrap(cls, array: BytesLike, offset: int = 0, length: int | None = None) -> ByteBuffer:
        """A heap buffer over ``array`` without copying; changes show through both ways.

        capacity = ``len(array)`` in bytes, position = ``offset``, limit =
        ``offset + length`` (``length`` defaults to the rest), ``array_offset()`` 0.
        A read-only object (``bytes``) gives a read-only buffer.  IndexOutOfBoundsError
        if ``offset``/``length`` do not fit.  While the buffer lives, a ``bytearray``
        cannot be resized (CPython's buffer-export rule).
        """
        offset = check_int(offset, "offset")  # before the export pins a bytearray
        length = None if length is None else check_int(length, "length")
        mem = HeapMemory(array)
        cap = mem.size
        length = cap - offset if length is None else length
        try:
            check_from_index_size(offset, length, cap)
        except IndexOutOfBoundsError:
            mem.release()
            raise
        return cls._make(mem, 0, cap, offset, offset + length, ro=mem.readonly)

    # -- kind and backing array --------------------------------------------------------

    def has_array(self) -> bool:
        """Whether ``array()`` works: a heap buffer that is not read-only."""
        return not self._mem.direct and not self._ro

    def array(self) -> Any:
        """The object behind a heap buffer (the ``bytearray`` or the wrapped object).

        UnsupportedOperationError for a direct buffer; ReadOnlyBufferError if read-only.
        """
        if self._mem.direct:
            raise UnsupportedOperationError("a direct buffer has no backing array")
        if self._ro:
            raise ReadOnlyBufferError("a read-only buffer does not expose its array")
        assert isinstance(self._mem, HeapMemory)
        return self._mem.obj

    def array_offset(self) -> int:
        """Offset of this buffer's index 0 within ``array()``; same errors as ``array()``."""
        self.array()
        return self._off

    # -- byte order ------------------------------------------------------------------

    @overload
    def order(self) -> ByteOrder: ...
    @overload
    def order(self, bo: ByteOrder) -> Self: ...
    def order(self, bo: ByteOrder | None = None) -> ByteOrder | Self:
        """Get the byte order, or set it for the multi-byte gets/puts and return self."""
        if bo is None:
            return self._order
        if not isinstance(bo, ByteOrder):
            raise TypeError(f"order must be a ByteOrder, not {type(bo).__name__}")
        self._order = bo
        self._c = CODECS[bo]
        self._i32 = self._c.i32
        return self

    # -- single bytes ---------------------------------------------------------------

    @overload
    def get(self, /) -> int: ...
    @overload
    def get(self, index: int, /) -> int: ...
    @overload
    def get(self, dst: BytesLike, offset: int = ..., length: int | None = ..., /) -> Self: ...
    @overload
    def get(
        self, index: int, dst: BytesLike, offset: int = ..., length: int | None = ..., /
    ) -> Self: ...
    def get(self, a: Any = None, b: Any = None, c: Any = None, d: Any = None, /) -> Any:
        """Read a byte, or many.

        * ``get()``: the byte at position as a signed int (-128..127); position += 1.
          BufferUnderflowError if position == limit.
        * ``get(i)``: the byte at ``i``; IndexOutOfBoundsError unless ``0 <= i < limit``.
        * ``get(dst, offset=0, length=None)``: copy ``length`` bytes (default: the
          rest of ``dst``) into ``dst[offset:]``; position += length.
          IndexOutOfBoundsError if the range does not fit ``dst``, then
          BufferUnderflowError if ``length > remaining()``.
        * ``get(index, dst, offset=0, length=None)``: the same from ``index``; position
          unchanged; IndexOutOfBoundsError if either range does not fit.
        """
        if a is None:
            p = self._pos
            if p >= self._lim:
                raise BufferUnderflowError(f"get() at position {p} = limit {self._lim}")
            try:
                v: int = self._mv[p]
            except ValueError as e:
                raise self._mem.translate(e) from None
            self._pos = p + 1
            return v - 256 if v > 127 else v
        if type(a) is int or is_int(a):
            if b is None:
                i = self._check_index(a)
                try:
                    return _signed(self._mv[i])
                except ValueError as e:
                    raise self._mem.translate(e) from None
            return self._get_bulk(a, b, c, d)
        return self._get_bulk(None, a, b, c)

    def _get_bulk(self, index: int | None, dst: Any, offset: Any, length: Any) -> Self:
        dmv = byte_view(dst, writable=True)
        offset = 0 if offset is None else check_int(offset, "offset")
        length = len(dmv) - offset if length is None else check_int(length, "length")
        if index is None:
            check_from_index_size(offset, length, len(dmv))
            p = self._pos
            if length > self._lim - p:
                raise BufferUnderflowError(
                    f"get of {length} bytes with {self._lim - p} remaining"
                )
        else:
            p = check_int(index, "index")
            check_from_index_size(p, length, self._lim)
            check_from_index_size(offset, length, len(dmv))
        try:
            if self._guarded:
                _guarded_copy(dmv, offset, self._mv, p, length)
            else:
                dmv[offset : offset + length] = self._mv[p : p + length]
        except ValueError as e:
            raise self._mem.translate(e) from None
        if index is None:
            self._pos = p + length
        return self

    def get_unsigned_byte(self, index: int | None = None) -> int:
        """Like ``get()``/``get(i)`` but 0..255 (Netty's ``getUnsignedByte``)."""
        v = self.get() if index is None else self.get(check_int(index, "index"))
        return v & 0xFF

    @overload
    def put(self, value: int, /) -> Self: ...
    @overload
    def put(self, index: int, value: int, /) -> Self: ...
    @overload
    def put(
        self, src: BytesLike | ByteBuffer, offset: int = ..., length: int | None = ..., /
    ) -> Self: ...
    @overload
    def put(
        self,
        index: int,
        src: BytesLike | ByteBuffer,
        offset: int = ...,
        length: int | None = ...,
        /,
    ) -> Self: ...
    def put(self, a: Any, b: Any = None, c: Any = None, d: Any = None, /) -> Self:
        """Write a byte, or many.  ReadOnlyBufferError first if read-only.

        * ``put(v)``: write ``v`` (-128..255) at position; position += 1.
          BufferOverflowError if position == limit; IllegalArgumentError for other values.
        * ``put(i, v)``: write at ``i``; IndexOutOfBoundsError unless ``0 <= i < limit``.
        * ``put(src, offset=0, length=None)``: copy ``length`` bytes of a bytes-like
          ``src`` from ``offset`` (default: the rest); position += length.
          IndexOutOfBoundsError if the range does not fit ``src``, then
          BufferOverflowError if ``length > remaining()``.
        * ``put(src_buffer)``: copy ``src.remaining()`` bytes; both positions advance.
          IllegalArgumentError if ``src`` is this buffer; BufferOverflowError if it does
          not fit.  Overlapping memory is copied as if through a temporary.
        * ``put(index, src, offset=0, length=None)``: absolute bulk put from a
          bytes-like or a ByteBuffer (absolute offsets in it); no position changes.
        """
        if type(a) is int and b is None:
            # Hot path: a read-only buffer's view refuses the write itself, so the
            # read-only check runs only on the failure paths (still first, as in Java).
            p = self._pos
            if p >= self._lim:
                raise self._overflow(1)
            if not -128 <= a <= 255:
                self._check_writable()
                raise IllegalArgumentError(f"byte value {a} out of range -128..255")
            try:
                self._mv[p] = a & 0xFF
            except (ValueError, TypeError) as e:
                raise self._write_error(e) from None
            self._pos = p + 1
            return self
        if type(a) is int or is_int(a):
            if b is None:  # put(numpy_int): a value, not a bytes-like source
                return self.put(check_int(a, "value"))
            if type(b) is int or is_int(b):
                self._check_writable()
                i = self._check_index(a)
                if type(b) is not int:
                    b = check_int(b, "value")
                if not -128 <= b <= 255:
                    raise IllegalArgumentError(f"byte value {b} out of range -128..255")
                try:
                    self._mv[i] = b & 0xFF
                except ValueError as e:
                    raise self._mem.translate(e) from None
                return self
            if isinstance(b, ByteBuffer):
                return self._put_buffer_at(a, b, c, d)
            return self._put_bulk(a, b, c, d)
        if isinstance(a, ByteBuffer):
            if b is not None:
                raise TypeError("put(src_buffer) takes no offset or length; "
                                "use put(index, src_buffer, offset, length)")
            return self._put_buffer(a)
        return self._put_bulk(None, a, b, c)

    def _put_bulk(self, index: int | None, src: Any, offset: Any, length: Any) -> Self:
        self._check_writable()
        smv = byte_view(src)
        offset = 0 if offset is None else check_int(offset, "offset")
        length = len(smv) - offset if length is None else check_int(length, "length")
        if index is None:
            check_from_index_size(offset, length, len(smv))
            p = self._pos
            if length > self._lim - p:
                raise BufferOverflowError(
                    f"put of {length} bytes with {self._lim - p} remaining"
                )
        else:
            p = check_int(index, "index")
            check_from_index_size(p, length, self._lim)
            check_from_index_size(offset, length, len(smv))
        try:
            if self._guarded:
                _guarded_copy(self._mv, p, smv, offset, length)
            else:
                self._mv[p : p + length] = smv[offset : offset + length]
        except ValueError as e:
            raise self._mem.translate(e) from None
        if index is None:
            self._pos = p + length
        return self

    def _put_buffer(self, src: ByteBuffer) -> Self:
        # As in Java 17: HeapByteBufferR refuses at once; DirectByteBufferR inherits
        # ByteBuffer.put(ByteBuffer), which rejects src == this before refusing.
        if not self._mem.direct:
            self._check_writable()
        if src is self:
            raise IllegalArgumentError("the source buffer is this buffer")
        self._check_writable()
        sp, n = src._pos, src._lim - src._pos
        p = self._pos
        if n > self._lim - p:
            raise BufferOverflowError(f"put of {n} bytes with {self._lim - p} remaining")
        self._copy_from(p, src, sp, n)
        self._pos = p + n
        src._pos = sp + n
        return self

    def _put_buffer_at(self, index: int, src: ByteBuffer, offset: Any, length: Any) -> Self:
        # Java 17's own quirk, reproduced: HeapByteBufferR refuses this put before any
        # check, DirectByteBufferR inherits ByteBuffer's version, which checks the
        # ranges first and only then refuses.
        if not self._mem.direct:
            self._check_writable()
        index = check_int(index, "index")
        offset = 0 if offset is None else check_int(offset, "offset")
        length = src._lim - offset if length is None else check_int(length, "length")
        check_from_index_size(index, length, self._lim)
        check_from_index_size(offset, length, src._lim)
        self._check_writable()
        self._copy_from(index, src, offset, length)
        return self

    def _copy_from(self, p: int, src: ByteBuffer, sp: int, n: int) -> None:
        if src._segmented:
            src._copy_to(self, p, sp, n)  # type: ignore[attr-defined]
            return
        try:
            if self._guarded or src._guarded:
                _guarded_copy(self._mv, p, src._mv, sp, n)
            else:
                self._mv[p : p + n] = src._mv[sp : sp + n]
        except ValueError as e:
            self._check_memory()
            raise src._mem.translate(e) from None

    # -- multi-byte values: unrolled per type, as Java's templates generate them -------

    def _underflow(self, nb: int) -> BufferUnderflowError:
        return BufferUnderflowError(
            f"get of {nb} bytes at position {self._pos} with limit {self._lim}"
        )

    def _overflow(self, nb: int) -> BufferOverflowError | ReadOnlyBufferError:
        if self._ro:
            return ReadOnlyBufferError("put on a read-only buffer")
        return BufferOverflowError(
            f"put of {nb} bytes at position {self._pos} with limit {self._lim}"
        )

    def _write_error(self, error: Exception) -> Exception:
        """The error for a write the memoryview refused: read-only, else released."""
        if self._ro:
            return ReadOnlyBufferError("put on a read-only buffer")
        return self._mem.translate(error)

    def _get_at(self, st: struct.Struct, index: int) -> Any:
        i = self._check_index(index, st.size)
        try:
            return st.unpack_from(self._mv, i)[0]
        except ValueError as e:
            raise self._mem.translate(e) from None

    def _get_rel(self, st: struct.Struct) -> Any:
        p = self._pos
        q = p + st.size
        if q > self._lim:
            raise self._underflow(st.size)
        try:
            v = st.unpack_from(self._mv, p)[0]
        except ValueError as e:
            raise self._mem.translate(e) from None
        self._pos = q
        return v

    # Multi-byte puts encode first and write only a valid encoding: struct.pack_into
    # zero-fills its target before validating the value (see zcio._codec.pack).

    def _put_at(self, st: struct.Struct, index: int, value: Any) -> Self:
        self._check_writable()
        i = self._check_index(index, st.size)
        raw = pack(st, value)
        try:
            self._mv[i : i + st.size] = raw
        except (ValueError, TypeError) as e:  # revoked view
            raise self._mem.translate(e) from None
        return self

    def _put_rel(self, st: struct.Struct, value: Any) -> Self:
        p = self._pos
        q = p + st.size
        if q > self._lim:
            raise self._overflow(st.size)
        self._check_writable()  # before the value, as every check Java makes
        raw = pack(st, value)
        try:
            self._mv[p:q] = raw
        except (ValueError, TypeError) as e:  # revoked view
            raise self._mem.translate(e) from None
        self._pos = q
        return self

    def get_char(self, index: int | None = None) -> str:
        """The UTF-16 code unit at position (position += 2) or at ``index``, as a str."""
        st = self._c.u16
        return chr(self._get_rel(st) if index is None else self._get_at(st, index))

    def put_char(self, a: Any, b: Any = None, /) -> Self:
        """``put_char(ch)`` at position (position += 2) or ``put_char(index, ch)``."""
        if b is None:
            return self._put_rel(self._c.u16, a)
        return self._put_at(self._c.u16, a, b)

    def get_short(self, index: int | None = None) -> int:
        """The signed 16-bit value at position (position += 2) or at ``index``."""
        if index is None:
            return self._get_rel(self._c.i16)  # type: ignore[no-any-return]
        return self._get_at(self._c.i16, index)  # type: ignore[no-any-return]

    def put_short(self, a: int, b: int | None = None, /) -> Self:
        """``put_short(v)`` at position (position += 2) or ``put_short(index, v)``."""
        if b is None:
            return self._put_rel(self._c.i16, a)
        return self._put_at(self._c.i16, a, b)

    def get_int(self, index: int | None = None) -> int:
        """The signed 32-bit value at position (position += 4) or at ``index``."""
        if index is None:
            p = self._pos
            q = p + 4  # computed once: positions above 256 are fresh int objects
            if q > self._lim:
                raise self._underflow(4)
            try:
                v: int = self._i32.unpack_from(self._mv, p)[0]
            except ValueError as e:
                raise self._mem.translate(e) from None
            self._pos = q
            return v
        return self._get_at(self._c.i32, index)  # type: ignore[no-any-return]

    def put_int(self, a: int, b: int | None = None, /) -> Self:
        """``put_int(v)`` at position (position += 4) or ``put_int(index, v)``."""
        if b is None:  # the hot path of the benchmarks, inlined
            p = self._pos
            q = p + 4
            if q > self._lim:
                raise self._overflow(4)
            # Validated before pack_into, which zero-fills the bytes and then raises;
            # the unsigned range and bad values take the general (encode-first) path.
            if type(a) is not int or not -2147483648 <= a <= 2147483647:
                return self._put_rel(self._i32, a)
            try:
                self._i32.pack_into(self._mv, p, a)
            except (ValueError, TypeError) as e:  # read-only or revoked view
                raise self._write_error(e) from None
            self._pos = q
            return self
        return self._put_at(self._c.i32, a, b)

    def get_long(self, index: int | None = None) -> int:
        """The signed 64-bit value at position (position += 8) or at ``index``."""
        if index is None:
            return self._get_rel(self._c.i64)  # type: ignore[no-any-return]
        return self._get_at(self._c.i64, index)  # type: ignore[no-any-return]

    def put_long(self, a: int, b: int | None = None, /) -> Self:
        """``put_long(v)`` at position (position += 8) or ``put_long(index, v)``."""
        if b is None:
            return self._put_rel(self._c.i64, a)
        return self._put_at(self._c.i64, a, b)

    def get_float(self, index: int | None = None) -> float:
        """The 32-bit float at position (position += 4) or at ``index``."""
        if index is None:
            return self._get_rel(self._c.f32)  # type: ignore[no-any-return]
        return self._get_at(self._c.f32, index)  # type: ignore[no-any-return]

    def put_float(self, a: Any, b: Any = None, /) -> Self:
        """``put_float(v)`` at position (position += 4) or ``put_float(index, v)``."""
        if b is None:
            return self._put_rel(self._c.f32, a)
        return self._put_at(self._c.f32, a, b)

    def get_double(self, index: int | None = None) -> float:
        """The 64-bit float at position (position += 8) or at ``index``."""
        if index is None:
            return self._get_rel(self._c.f64)  # type: ignore[no-any-return]
        return self._get_at(self._c.f64, index)  # type: ignore[no-any-return]

    def put_double(self, a: Any, b: Any = None, /) -> Self:
        """``put_double(v)`` at position (position += 8) or ``put_double(index, v)``."""
        if b is None:
            return self._put_rel(self._c.f64, a)
        return self._put_at(self._c.f64, a, b)

    def get_unsigned_short(self, index: int | None = None) -> int:
        """The unsigned 16-bit value at position (position += 2) or at ``index``."""
        if index is None:
            return self._get_rel(self._c.u16)  # type: ignore[no-any-return]
        return self._get_at(self._c.u16, index)  # type: ignore[no-any-return]

    def get_unsigned_int(self, index: int | None = None) -> int:
        """The unsigned 32-bit value at position (position += 4) or at ``index``."""
        if index is None:
            return self._get_rel(self._c.u32)  # type: ignore[no-any-return]
        return self._get_at(self._c.u32, index)  # type: ignore[no-any-return]

    # -- derived buffers -------------------------------------------------------------

    @overload
    def slice(self) -> ByteBuffer: ...
    @overload
    def slice(self, index: int, length: int) -> ByteBuffer: ...
    def slice(self, index: int | None = None, length: int | None = None) -> ByteBuffer:
        """A buffer over ``[position, limit)`` (or ``[index, index + length)``).

        It shares this buffer's content; its position is 0, its limit and capacity
        the length, no mark, BIG_ENDIAN (whatever this buffer's order), read-only if
        this one is.  ``slice(index, length)``: IndexOutOfBoundsError unless
        ``0 <= index <= index + length <= limit``.

        ::

            this:   0 ... position=3 ....... limit=7 ... capacity=9
            slice:        position=0 ....... limit=capacity=4
        """
        if index is None:
            index, length = self._pos, max(self._lim - self._pos, 0)
        else:
            index, length = check_int(index, "index"), check_int(length, "length")
            check_from_index_size(index, length, self._lim)
        self._check_memory()
        self._mem.record("slice()")
        start = self._off + index
        return self._make(self._mem, start, length, 0, length, ro=self._ro)

    def retained_slice(self, index: int | None = None, length: int | None = None
                       ) -> ByteBuffer:
        """``slice(...)`` that also adds a reference (Netty's ``retainedSlice``)."""
        piece = self.slice() if index is None else self.slice(index, length)  # type: ignore[arg-type]
        self._mem.retain()
        return piece

    def retained_duplicate(self) -> ByteBuffer:
        """``duplicate()`` that also adds a reference (Netty's ``retainedDuplicate``)."""
        copy = self.duplicate()
        self._mem.retain()
        return copy

    def touch(self, hint: object = None) -> Self:
        """Record an access for the leak detector (ADVANCED/PARANOID levels); no-op else."""
        self._mem.touch(hint)
        return self

    def duplicate(self) -> ByteBuffer:
        """A buffer sharing content and indexes (copied, then independent); BIG_ENDIAN."""
        self._check_memory()
        self._mem.record("duplicate()")
        return self._make(
            self._mem, self._off, self._cap, self._pos, self._lim, self._mark, self._ro, self._mv
        )

    def as_read_only_buffer(self) -> ByteBuffer:
        """A read-only duplicate: same content and indexes, BIG_ENDIAN."""
        self._check_memory()
        return self._make(self._mem, self._off, self._cap, self._pos, self._lim, self._mark, True)

    def compact(self) -> Self:
        """Move ``[position, limit)`` to the start; ready to be filled again.

        position = remaining, limit = capacity, mark discarded.  ReadOnlyBufferError
        if read-only.

        ::

            before: 0 .. position=2 [a b c] limit=5 .. capacity=8
            after:  [a b c] position=3 ............... limit=capacity=8
        """
        self._check_writable()
        p, n = self._pos, self._lim - self._pos
        try:
            if self._guarded:
                _guarded_copy(self._mv, 0, self._mv, p, n)
            else:
                self._mv[0:n] = self._mv[p : p + n]
        except ValueError as e:
            raise self._mem.translate(e) from None
        self._pos = n
        self._lim = self._cap
        self._mark = -1
        return self

    def _typed(self, cls: type[TypedBuffer[Any]], size: int) -> Any:
        self._check_memory()
        n = max(self._lim - self._pos, 0) // size
        start = self._off + self._pos
        return cls._view_of(self._mem, start, n, self._ro, self._order)

    def as_char_buffer(self) -> CharBuffer:
        """A CharBuffer over ``[position, limit)`` in this buffer's current order."""
        from ._typed import CharBuffer

        return self._typed(CharBuffer, 2)  # type: ignore[no-any-return]

    def as_short_buffer(self) -> ShortBuffer:
        """A ShortBuffer over ``[position, limit)`` in this buffer's current order."""
        from ._typed import ShortBuffer

        return self._typed(ShortBuffer, 2)  # type: ignore[no-any-return]

    def as_int_buffer(self) -> IntBuffer:
        """An IntBuffer over ``[position, limit)`` in this buffer's current order."""
        from ._typed import IntBuffer

        return self._typed(IntBuffer, 4)  # type: ignore[no-any-return]

    def as_long_buffer(self) -> LongBuffer:
        """A LongBuffer over ``[position, limit)`` in this buffer's current order."""
        from ._typed import LongBuffer

        return self._typed(LongBuffer, 8)  # type: ignore[no-any-return]

    def as_float_buffer(self) -> FloatBuffer:
        """A FloatBuffer over ``[position, limit)`` in this buffer's current order."""
        from ._typed import FloatBuffer

        return self._typed(FloatBuffer, 4)  # type: ignore[no-any-return]

    def as_double_buffer(self) -> DoubleBuffer:
        """A DoubleBuffer over ``[position, limit)`` in this buffer's current order."""
        from ._typed import DoubleBuffer

        return self._typed(DoubleBuffer, 8)  # type: ignore[no-any-return]

    # -- alignment -------------------------------------------------------------------

    def address(self) -> int:
        """The memory address of index 0, a plain int (for C code, O_DIRECT, alignment).

        A raw pointer: nothing keeps the memory alive through it.  ``release()`` (or
        the end of the ``with`` block) unmaps a direct or mapped buffer's memory and
        returns a pooled buffer's slot for reuse, and a heap buffer's memory goes with
        its last reference, while the int lives on: a read or write through it then
        kills the process (SIGSEGV) or touches another buffer's bytes.
        ``pyarrow.foreign_buffer(buf.address(), n, base=buf)`` followed by
        ``buf.release()`` is such a crash (``base`` keeps the object, not its memory).
        Use the address only for a call that ends before the buffer is released.

        To hand the bytes to something that may outlive that, use a way that keeps the
        memory alive: ``buf.memoryview()`` (revoked by ``release()``, while a view
        sliced or exported from it, such as ``numpy.frombuffer(buf.memoryview())`` or
        ``pyarrow.py_buffer(buf.memoryview())``, keeps the memory until it is gone),
        or on 3.12+ the buffer protocol itself, ``memoryview(buf)``,
        ``numpy.frombuffer(buf)`` (see ``__buffer__``).
        """
        return self._mem.address() + self._off

    def alignment_offset(self, index: int, unit_size: int) -> int:
        """``(address of index) % unit_size``; ``unit_size`` a power of two.

        IllegalArgumentError if ``index < 0`` or ``unit_size`` is not a power of two;
        UnsupportedOperationError for a heap buffer with ``unit_size > 8`` (as Java).
        The index is not checked against the limit.
        """
        index, unit_size = check_int(index, "index"), check_int(unit_size, "unit_size")
        if index < 0:
            raise IllegalArgumentError(f"index less than zero: {index}")
        if unit_size < 1 or unit_size & (unit_size - 1):
            raise IllegalArgumentError(f"unit size not a power of two: {unit_size}")
        if unit_size > 8 and not self._mem.direct:
            raise UnsupportedOperationError(
                f"unit size unsupported for non-direct buffers: {unit_size}"
            )
        return (self.address() + index) & (unit_size - 1)

    def aligned_slice(self, unit_size: int) -> ByteBuffer:
        """A slice of ``[position, limit)`` shrunk to ``unit_size``-aligned ends.

        Its first byte's address and its capacity are multiples of ``unit_size``
        (empty if none fits); the way to satisfy O_DIRECT's alignment.
        """
        pos, lim = self._pos, self._lim
        pos_mod = self.alignment_offset(pos, unit_size)
        lim_mod = self.alignment_offset(lim, unit_size)
        apos = pos + (unit_size - pos_mod) if pos_mod > 0 else pos
        alim = lim - lim_mod
        if apos > lim or alim < pos:
            apos = alim = pos
        return self.slice(apos, alim - apos)

    # -- comparison ------------------------------------------------------------------

    def _rest(self) -> builtins.memoryview:
        try:
            return self._mv[self._pos : self._lim]
        except ValueError as e:
            raise self._mem.translate(e) from None

    def _rest_views(self) -> list[builtins.memoryview]:
        """``[position, limit)`` as the views a gather/scatter syscall takes: this
        buffer's one view (a composite gives one per component)."""
        return [self._rest()]

    def mismatch(self, that: ByteBuffer) -> int:
        """Relative index of the first differing byte in the two ``[position, limit)``.

        -1 if the remaining bytes are equal; the shorter length if one is a prefix.
        TypeError if ``that`` is not a ByteBuffer.
        """
        if other_buffer(that, "mismatch")._segmented:
            return that.mismatch(self)
        a, b = self._rest(), that._rest()
        i = _first_difference(a, b)
        if i < 0 and len(a) != len(b):
            return min(len(a), len(b))
        return i

    def equals(self, that: object) -> bool:
        """Whether ``that`` is a ByteBuffer with equal remaining bytes (order ignored)."""
        if that is self:
            return True
        if not isinstance(that, ByteBuffer):
            return False
        if that._segmented:
            return that.equals(self)
        a, b = self._rest(), that._rest()
        return len(a) == len(b) and _first_difference(a, b) < 0

    def compare_to(self, that: ByteBuffer) -> int:
        """Compare remaining bytes as signed bytes, as Java's ``compareTo``.

        Returns ``a - b`` for the first differing bytes (signed), else the difference
        of the remaining counts.  TypeError if ``that`` is not a ByteBuffer.
        """
        if other_buffer(that, "compare_to")._segmented:
            return -that.compare_to(self)
        a, b = self._rest(), that._rest()
        i = _first_difference(a, b)
        if i >= 0:
            return _signed(_guarded_read(a, i, 1)[0]) - _signed(_guarded_read(b, i, 1)[0])
        return len(a) - len(b)

    def hash_code(self) -> int:
        """Java's ``hashCode``: ``h = 31*h + b`` over ``[position, limit)`` from the end.

        Depends on the content, so a buffer should not be a dict key while it changes;
        Python's ``hash()`` is therefore disabled, as for ``bytearray``.
        """
        h = 1
        for v in reversed(_guarded_read(self._rest())):
            h = (31 * h + (v - 256 if v > 127 else v)) & 0xFFFFFFFF
        return h - (1 << 32) if h >= 1 << 31 else h

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteBuffer) and self.equals(other)

    __hash__ = None  # type: ignore[assignment]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ByteBuffer):
            return NotImplemented
        return self.compare_to(other) < 0

    def __le__(self, other: object) -> bool:
        if not isinstance(other, ByteBuffer):
            return NotImplemented
        return self.compare_to(other) <= 0

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, ByteBuffer):
            return NotImplemented
        return self.compare_to(other) > 0

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, ByteBuffer):
            return NotImplemented
        return self.compare_to(other) >= 0

    # -- Python views ------------------------------------------------------------------

    def memoryview(self) -> builtins.memoryview:
        """A zero-copy memoryview of ``[position, limit)`` (read-only if this buffer is).

        It is revoked by ``release()``; one sliced or exported further keeps the memory
        alive instead (see ``release``).
        """
        start, stop = self._off + self._pos, self._off + max(self._lim, self._pos)
        return self._mem.view(start, stop, self._ro)

    def __buffer__(self, flags: int, /) -> builtins.memoryview:
        """The buffer protocol (PEP 688, Python 3.12+): ``memoryview(buf)``, numpy,
        ctypes and other C consumers get ``memoryview()``'s bytes, zero-copy.

        The export keeps the memory alive, past ``release()`` too (free or unmap
        deferred, a pooled slot kept out of reuse), until the consumer lets go; see
        ``__release_buffer__``.  On 3.11 a Python class cannot export; there,
        ``memoryview()`` is the way in and the same rules hold for what it returns.
        """
        return self.memoryview()

    def __release_buffer__(self, view: builtins.memoryview, /) -> None:
        """The consumer of a ``__buffer__`` export let go of it (see Memory.unexport).

        Defining it also tells consumers (numpy) that the export, not this object,
        holds the memory: they keep the export for as long as they use the bytes.
        """
        self._mem.unexport(view)

    def __bytes__(self) -> bytes:
        """A copy of ``[position, limit)``; indexes unchanged."""
        return _guarded_read(self._rest())

    def __repr__(self) -> str:
        kind = "Direct" if self._mem.direct else "Heap"
        ro = "R" if self._ro else ""
        return f"zcio.{kind}ByteBuffer{ro}[pos={self._pos} lim={self._lim} cap={self._cap}]"

    @classmethod
    def allocate_shared(cls, capacity: int, *, name: str | None = None) -> SharedByteBuffer:
        """A direct buffer of ``capacity`` zero bytes that other processes can map:
        page-aligned, over a memfd named ``name`` (``/memfd:NAME (deleted)`` in
        ``/proc/PID/maps``), counted in the ``shared`` pool, not against the direct cap.
        Hand it over with ``SocketChannel.send_buffer`` or through multiprocessing;
        ``seal()`` it for a read-only hand-off (see ``zcio._shared``).

        UnsupportedOperationError where the OS lacks ``memfd_create``.

        Syscalls: ``memfd_create``, ``ftruncate``, ``fcntl(F_ADD_SEALS)``,
        ``mmap(MAP_SHARED)``; ``munmap`` and ``close`` on release.
        """
        from ._shared import allocate_shared

        return allocate_shared(capacity, name)

    # -- Arrow ---------------------------------------------------------------------------

    def to_arrow(self) -> Any:
        """A ``pyarrow.Buffer`` over ``[position, limit)`` without a copy; it keeps the
        memory alive as any export does (see ``zcio._arrow``).  Needs pyarrow
        (``pip install 'zcio[arrow]'``; MissingDependencyError otherwise)."""
        from ._arrow import to_arrow

        return to_arrow(self)
