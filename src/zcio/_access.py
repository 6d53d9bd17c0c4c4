"""Every get and put of a ByteBuffer: single bytes, bulk copies, typed values.

This is the hot-path layer: :class:`ByteAccess` sits between the indexes
(``zcio._buffer.Buffer``) and the API (``zcio._byte_buffer.ByteBuffer``), and is the
one class a compiled module replaces wholesale.  Every typed value goes through two
hooks, ``_load(st, i)`` and ``_store(i, raw)``, here on the buffer's one memoryview
``_mv`` (contiguous plain memory: heap, direct or pooled); ``get_int``, ``put_int``
and the single-byte ``get``/``put`` are inlined on ``_mv`` as well (the hot paths).
Kinds whose memory must be asked instead (a mapping, through the SIGBUS guard; a
composite, in several blocks) are ``zcio._indirect.IndirectByteBuffer``, which points
the hooks at ``Memory.load``/``store`` and routes the inlined paths through them.

Bulk copies go through ``_views(i, n)``, the byte range as zero-copy memoryviews (one,
or one per component), and ``zcio._views``, for every kind alike.

The rules, Java's: a relative get or put past the limit raises BufferUnderflowError /
BufferOverflowError; an absolute index outside ``[0, limit)`` raises
IndexOutOfBoundsError; in every failing case no data is transferred and no index
changes.  Writes to a read-only buffer raise ReadOnlyBufferError before anything else
is checked (Java 17's two quirks are reproduced in ``_put_buffer``/``_put_buffer_at``).
"""

from __future__ import annotations

import builtins
import struct
from typing import TYPE_CHECKING, Any, Self, overload

from . import _views
from ._buffer import Buffer, check_int, is_int
from ._codec import Codec, float32_nan_bits, float32_value, pack
from ._errors import (
    BufferOverflowError,
    BufferUnderflowError,
    IllegalArgumentError,
    ReadOnlyBufferError,
)
from ._order import ByteOrder

if TYPE_CHECKING:
    from ._types import Buffer as BytesLike

__all__ = ["ByteAccess", "byte_view", "signed"]


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


def signed(v: int) -> int:
    """A byte 0..255 as Java's signed byte."""
    return v - 256 if v > 127 else v


class ByteAccess(Buffer):
    """Get and put of bytes and typed values over ``_mv``; see the module docstring."""

    __slots__ = ("_off", "_c", "_i32")

    _off: int  # byte offset of this buffer's index 0 within its memory block
    _order: ByteOrder
    _c: Codec
    _i32: struct.Struct  # _c.i32 in a slot: get_int/put_int are the hot paths

    # -- the memory as views ---------------------------------------------------------

    def _views(self, i: int, n: int) -> list[builtins.memoryview]:
        """Bytes ``[i, i + n)`` as zero-copy views: this buffer's one (a composite
        gives one per component touched)."""
        try:
            return [self._mv[i : i + n]]
        except ValueError as e:
            raise self._mem.translate(e) from None

    def _rest(self) -> builtins.memoryview:
        try:
            return self._mv[self._pos : self._lim]
        except ValueError as e:
            raise self._mem.translate(e) from None

    def _rest_views(self) -> list[builtins.memoryview]:
        """``[position, limit)`` as the views a gather/scatter syscall takes, for every
        kind: this buffer's one view (a composite gives one per component)."""
        return self._views(self._pos, max(self._lim - self._pos, 0))


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
                    return signed(self._mv[i])
                except ValueError as e:
                    raise self._mem.translate(e) from None
            return self._get_bulk(a, b, c, d)
        return self._get_bulk(None, a, b, c)

    def _get_bulk(self, index: int | None, dst: Any, offset: Any, length: Any) -> Self:
        dmv = byte_view(dst, writable=True)
        p, offset, length = self._bulk_range(index, offset, length, len(dmv), False, " bytes")
        own = self._views(p, length)  # ReleasedBufferError, also for no bytes
        if length:  # (CPython flags an empty slice of a strided view as not contiguous)
            _views.copy([dmv[offset : offset + length]], own)
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
        self, src: BytesLike | ByteAccess, offset: int = ..., length: int | None = ..., /
    ) -> Self: ...
    @overload
    def put(
        self,
        index: int,
        src: BytesLike | ByteAccess,
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
                if type(a) is not int or type(b) is not int:  # numpy ints: as ints
                    return self.put(check_int(a, "index"), check_int(b, "value"))
                self._check_writable()
                i = self._check_index(a)
                if not -128 <= b <= 255:
                    raise IllegalArgumentError(f"byte value {b} out of range -128..255")
                try:
                    self._mv[i] = b & 0xFF
                except ValueError as e:
                    raise self._mem.translate(e) from None
                return self
            if isinstance(b, ByteAccess):
                return self._put_buffer_at(a, b, c, d)
            return self._put_bulk(a, b, c, d)
        if isinstance(a, ByteAccess):
            if b is not None:
                raise TypeError("put(src_buffer) takes no offset or length; "
                                "use put(index, src_buffer, offset, length)")
            return self._put_buffer(a)
        return self._put_bulk(None, a, b, c)

    def _put_bulk(self, index: int | None, src: Any, offset: Any, length: Any) -> Self:
        self._check_writable()
        smv = byte_view(src)
        p, offset, length = self._bulk_range(index, offset, length, len(smv), True, " bytes")
        own = self._views(p, length)
        if length:  # as in _get_bulk
            _views.copy(own, [smv[offset : offset + length]])
        if index is None:
            self._pos = p + length
        return self

    def _put_buffer(self, src: ByteAccess) -> Self:
        # As in Java 17: HeapByteBufferR refuses at once; DirectByteBufferR inherits
        # ByteBuffer.put(ByteBuffer), which rejects src == this before refusing.
        if not self._mem.direct:
            self._check_writable()
        if src is self:
            raise IllegalArgumentError("the source buffer is this buffer")
        self._check_writable()
        p, sp, n = self._bulk_range(None, src._pos, src._lim - src._pos, src._lim, True,
                                    " bytes")
        self._copy_from(p, src, sp, n)
        self._pos = p + n
        src._pos = sp + n
        return self

    def _put_buffer_at(self, index: int, src: ByteAccess, offset: Any, length: Any) -> Self:
        # Java 17's own quirk, reproduced: HeapByteBufferR refuses this put before any
        # check, DirectByteBufferR inherits ByteBuffer's version, which checks the
        # ranges first and only then refuses.
        if not self._mem.direct:
            self._check_writable()
        index = check_int(index, "index")  # before offset and length, as Java's signature
        index, offset, length = self._bulk_range(index, offset, length, src._lim, True)
        self._check_writable()
        self._copy_from(index, src, offset, length)
        return self

    def _copy_from(self, p: int, src: ByteAccess, sp: int, n: int) -> None:
        """Copy ``src``'s bytes ``[sp, sp + n)`` to ``[p, p + n)`` of this buffer, as if
        through a temporary; any two kinds, either may be released (checked first)."""
        _views.copy(self._views(p, n), src._views(sp, n))

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

    # The two hooks every value goes through; IndirectByteBuffer asks its memory instead.

    def _load(self, st: struct.Struct, i: int) -> Any:
        """The value of ``st`` at byte ``i`` (bounds checked by the caller)."""
        try:
            return st.unpack_from(self._mv, i)[0]
        except ValueError as e:
            raise self._mem.translate(e) from None

    def _store(self, i: int, raw: bytes) -> None:
        """Write the encoded ``raw`` at byte ``i`` (bounds and read-only checked)."""
        try:
            self._mv[i : i + len(raw)] = raw
        except (ValueError, TypeError) as e:  # revoked view
            raise self._mem.translate(e) from None

    def _get_at(self, st: struct.Struct, index: int) -> Any:
        return self._load(st, self._check_index(index, st.size))

    def _get_rel(self, st: struct.Struct) -> Any:
        p = self._pos
        q = p + st.size
        if q > self._lim:
            raise self._underflow(st.size)
        v = self._load(st, p)
        self._pos = q
        return v

    # Multi-byte puts encode first and write only a valid encoding: struct.pack_into
    # zero-fills its target before validating the value (see zcio._codec.pack).

    def _put_at(self, st: struct.Struct, index: int, value: Any) -> Self:
        self._check_writable()
        i = self._check_index(index, st.size)
        self._store(i, pack(st, value))
        return self

    def _put_rel(self, st: struct.Struct, value: Any) -> Self:
        p = self._pos
        q = p + st.size
        if q > self._lim:
            raise self._overflow(st.size)
        self._check_writable()  # before the value, as every check Java makes
        self._store(p, pack(st, value))
        self._pos = q
        return self

    def _value(self, st: struct.Struct, index: int | None) -> Any:
        """The value at position (position += size) or at ``index``: every typed get."""
        if index is None:
            return self._get_rel(st)
        return self._get_at(st, index)

    def _set_value(self, st: struct.Struct, a: Any, b: Any) -> Self:
        """``put(v)`` at position (``b`` None) or ``put(index=a, v=b)``: every typed put."""
        if b is None:
            return self._put_rel(st, a)
        return self._put_at(st, a, b)

    def get_char(self, index: int | None = None) -> str:
        """The UTF-16 code unit at position (position += 2) or at ``index``, as a str."""
        return chr(self._value(self._c.u16, index))

    def put_char(self, a: Any, b: Any = None, /) -> Self:
        """``put_char(ch)`` at position (position += 2) or ``put_char(index, ch)``."""
        return self._set_value(self._c.u16, a, b)

    def get_short(self, index: int | None = None) -> int:
        """The signed 16-bit value at position (position += 2) or at ``index``."""
        return self._value(self._c.i16, index)  # type: ignore[no-any-return]

    def put_short(self, a: int, b: int | None = None, /) -> Self:
        """``put_short(v)`` at position (position += 2) or ``put_short(index, v)``."""
        return self._set_value(self._c.i16, a, b)

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
        i = self._check_index(index, 4)
        try:
            v = self._i32.unpack_from(self._mv, i)[0]
        except ValueError as e:
            raise self._mem.translate(e) from None
        return v

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
        self._check_writable()
        i = self._check_index(a, 4)
        if type(b) is not int or not -2147483648 <= b <= 2147483647:
            self._store(i, pack(self._i32, b))  # encode first: a bad value writes nothing
            return self
        try:
            self._i32.pack_into(self._mv, i, b)
        except (ValueError, TypeError) as e:  # revoked view
            raise self._mem.translate(e) from None
        return self

    def get_long(self, index: int | None = None) -> int:
        """The signed 64-bit value at position (position += 8) or at ``index``."""
        return self._value(self._c.i64, index)  # type: ignore[no-any-return]

    def put_long(self, a: int, b: int | None = None, /) -> Self:
        """``put_long(v)`` at position (position += 8) or ``put_long(index, v)``."""
        return self._set_value(self._c.i64, a, b)

    def get_float(self, index: int | None = None) -> float:
        """The 32-bit float at position (position += 4) or at ``index``.

        A NaN keeps its sign and payload, quiet bit included, as Java's
        ``Float.intBitsToFloat`` (``struct`` would set the quiet bit): the float that
        stands for it, see ``zcio._codec.float32_value``.
        """
        p = self._pos if index is None else index
        v: float = self._value(self._c.f32, index)
        if v != v:  # a NaN: rebuilt from its bits (already checked in bounds)
            return float32_value(self._get_at(self._c.u32, p))
        return v

    def put_float(self, a: Any, b: Any = None, /) -> Self:
        """``put_float(v)`` at position (position += 4) or ``put_float(index, v)``.

        A NaN float is written with its sign and payload (``float32_nan_bits``), a
        signalling NaN staying signalling, as Java's ``putFloat`` of that float.
        """
        st, v = self._c.f32, a if b is None else b
        if type(v) is float and v != v:  # a NaN: its float32 bits, as an unsigned int
            st = self._c.u32
            if b is None:
                a = float32_nan_bits(v)
            else:
                b = float32_nan_bits(v)
        return self._set_value(st, a, b)

    def get_double(self, index: int | None = None) -> float:
        """The 64-bit float at position (position += 8) or at ``index``."""
        return self._value(self._c.f64, index)  # type: ignore[no-any-return]

    def put_double(self, a: Any, b: Any = None, /) -> Self:
        """``put_double(v)`` at position (position += 8) or ``put_double(index, v)``."""
        return self._set_value(self._c.f64, a, b)

    def get_unsigned_short(self, index: int | None = None) -> int:
        """The unsigned 16-bit value at position (position += 2) or at ``index``."""
        return self._value(self._c.u16, index)  # type: ignore[no-any-return]

    def get_unsigned_int(self, index: int | None = None) -> int:
        """The unsigned 32-bit value at position (position += 4) or at ``index``."""
        return self._value(self._c.u32, index)  # type: ignore[no-any-return]
