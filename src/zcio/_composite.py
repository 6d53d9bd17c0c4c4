"""CompositeBuffer: several ByteBuffers seen as one, without copying (Netty's CompositeByteBuf).

A composite is a ByteBuffer whose content is the concatenation of its components.
Each component contributes the ``[position, limit)`` it had when it was added (Netty's
rule); later changes to that buffer's indexes do not matter, its bytes do (they are
shared, never copied).  The composite has Java's indexes over the concatenation, and
the invariant of every buffer::

    0 <= mark <= position <= limit <= capacity = the components' lengths added up

    components:  [a b c] [d e] [f g h i]
    composite:    0 1 2   3 4   5 6 7 8       get_int(1) reads b c d e

Everything a ByteBuffer does works with the same index rules, errors and failure
atomicity: single and bulk get/put, typed values in either byte order (straddling
components), slice, duplicate, read-only views, compact, typed views, comparison.
What differs, because no single block of memory holds the bytes:

* ``memoryview()`` is zero-copy when ``[position, limit)`` lies in one component; over
  several it raises UnsupportedOperationError unless ``allow_copy=True``.
  ``memoryviews()`` and ``nio_buffers()`` give one zero-copy view per component
  (Netty's ``nioBuffers()``).
* ``address()`` (so ``alignment_offset``, ``aligned_slice``) needs the bytes in one
  component; ``has_array()`` is False and ``array()`` raises UnsupportedOperationError.
* The composite never consolidates behind your back.  The copies it makes are counted
  in ``zcio.metrics`` under ``"composite_copy"`` (user bytes): ``bytes(buf)``,
  ``memoryview(allow_copy=True)`` over several components, and the temporary a bulk
  copy takes when its source and destination overlap in memory across components.
  ``compact()`` moves bytes within the components; it is not counted.

Channels write a composite with gather calls (``writev``/``pwritev``/``sendmsg``) of
its components' remaining bytes, IOV_MAX per call, and read into one with scatter calls
(``readv``/``recvmsg``): the kernel sees the components themselves.

Reference counts follow Netty, strictly: adding a buffer hands one reference of it to
the composite; the composite starts at 1, shared with its slices, duplicates and typed
views; a decrement past zero, a retain at zero or any access at zero raises
IllegalReferenceCountError.  At zero every component is released once.  Adding a
composite adds its components (each retained) and releases the composite.  A component
is never reused while the composite, or a view it handed out, can reach it.
"""

from __future__ import annotations

import builtins
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Self, cast, overload

from . import _guard
from ._buffer import check_from_index_size, check_int, is_int
from ._byte_buffer import ByteBuffer, _first_difference, _signed, byte_view, other_buffer
from ._errors import (
    BufferOverflowError,
    BufferUnderflowError,
    IllegalArgumentError,
    IllegalReferenceCountError,
    IndexOutOfBoundsError,
    UnsupportedOperationError,
)
from ._indirect import IndirectByteBuffer
from ._memory import Memory, buffer_address
from ._metrics import metrics
from ._order import ByteOrder

if TYPE_CHECKING:
    import struct

    from ._types import Buffer as BytesLike

__all__ = ["CompositeBuffer", "CompositeMemory", "COPY_PATH"]

#: The metrics path under which a composite's copies are counted.
COPY_PATH = "composite_copy"


class CompositeMemory(Memory):
    """What a composite shares with its slices, duplicates and typed views.

    The reference count (strict), the references it owns, and a virtual byte space in
    which every component's bytes (a *piece*: a ByteBuffer over exactly those bytes)
    lie end to end.  A composite is a range of that space, as a plain buffer is a range
    of its block, so slices and typed views work by offsets.  Pieces are only ever
    appended: a composite that grows where its range does not end the space lays its own
    pieces again at the end first.  ``direct``: every piece is direct (and there is one).
    """

    strict = True
    __slots__ = ("direct", "mapped", "_pieces", "_segs", "_starts", "_ends", "_owned")

    def __init__(self) -> None:
        super().__init__(memoryview(b""))
        self.direct = False
        self.mapped = False  # a piece is a file mapping: values go through zcio._guard
        self._pieces: list[ByteBuffer] = []
        self._segs: list[memoryview] = []  # each piece's memoryview, for the hot paths
        self._starts: list[int] = []  # virtual offset of each piece's first byte
        self._ends: list[int] = []
        self._owned: list[Memory] = []  # one reference each, released at zero

    @property
    def end(self) -> int:
        """The end of the virtual space."""
        return self._ends[-1] if self._ends else 0

    def lay(self, pieces: Sequence[ByteBuffer]) -> int:
        """Append ``pieces`` to the space; the index of the first."""
        first, at = len(self._pieces), self.end
        for p in pieces:
            self._pieces.append(p)
            self._segs.append(p._mv)
            self._starts.append(at)
            at += p._cap
            self._ends.append(at)
        if pieces:
            self.direct = (first == 0 or self.direct) and all(p._mem.direct for p in pieces)
            self.mapped = self.mapped or any(p._guarded for p in pieces)
        return first

    def view(self, start: int, stop: int, readonly: bool = False) -> memoryview:
        """Bytes ``[start, stop)`` of the space, for a typed view: a :class:`_Span`.

        A span is not a memoryview (no single block exists); it offers what TypedBuffer
        does with its ``_mv``: slicing to read and slice assignment to write.
        """
        if self.released:
            raise self.released_error()
        return cast(memoryview, _Span(self, start, stop, readonly))

    def address(self) -> int:
        raise UnsupportedOperationError("a composite's memory has no single address")

    def segments(self, v: int, n: int) -> list[memoryview]:
        """Zero-copy views of the space's bytes ``[v, v + n)``, one per piece touched."""
        if self.released:
            raise self.released_error()
        out: list[memoryview] = []
        if n <= 0:
            return out
        starts, ends, segs = self._starts, self._ends, self._segs
        k = bisect_right(starts, v) - 1
        try:
            while n > 0:
                end = ends[k]
                if end > v:
                    take = min(n, end - v)
                    j = v - starts[k]
                    out.append(segs[k][j : j + take])
                    v += take
                    n -= take
                k += 1
        except ValueError as e:
            raise self.fail(e) from None
        return out

    def read(self, v: int, n: int) -> bytes:
        """A copy of bytes ``[v, v + n)`` (a value straddling pieces; a typed view)."""
        return _guard.join(self.segments(v, n))

    def write(self, v: int, data: memoryview) -> None:
        """Write ``data`` at ``v``, piece by piece (the caller handles overlap)."""
        _scatter(self.segments(v, len(data)), [data])

    def fail(self, error: Exception) -> Exception:
        """The error for an access that failed: this memory's, or a component's
        (released by someone who had given it away), else ``error`` itself."""
        if self.released:
            return self.released_error()
        for p in self._pieces:
            if p._mem.released:
                return p._mem.released_error()
        return error

    def touch(self, hint: object) -> None:
        for m in self._owned:
            m.touch(hint)

    def _free(self) -> None:
        """Release every owned reference once (all of them, even if one fails)."""
        owned, self._owned = self._owned, []
        self._pieces, self._segs = [], []
        error: Exception | None = None
        for i, m in enumerate(owned):
            try:
                m.release()
            except IllegalReferenceCountError as e:
                error = error or IllegalReferenceCountError(
                    f"component reference {i} was already released ({e})")
        if error is not None:
            raise error


class _Span:
    """Bytes ``[start, stop)`` of a composite memory, shaped like a typed view's ``_mv``.

    Reading a slice returns a copy of those bytes (a value to decode); assigning a
    slice writes through to the components.  Every access checks the reference count.
    """

    __slots__ = ("_mem", "_start", "_stop", "readonly")

    def __init__(self, mem: CompositeMemory, start: int, stop: int, readonly: bool) -> None:
        self._mem = mem
        self._start = start
        self._stop = stop
        self.readonly = readonly

    def __len__(self) -> int:
        return self._stop - self._start

    def _range(self, key: slice) -> tuple[int, int]:
        start, stop, step = key.indices(self._stop - self._start)
        if step != 1:
            raise ValueError("a composite span takes only contiguous slices")
        return self._start + start, max(stop - start, 0)

    def __getitem__(self, key: slice) -> bytes:
        v, n = self._range(key)
        return self._mem.read(v, n)

    def __setitem__(self, key: slice, value: Any) -> None:
        if self.readonly:
            raise TypeError("cannot modify read-only memory")
        v, n = self._range(key)
        data = byte_view(value)
        if len(data) != n:
            raise ValueError(f"cannot write {len(data)} bytes into a span of {n}")
        self._mem.write(v, data)


class CompositeBuffer(IndirectByteBuffer):
    """Several ByteBuffers seen as one ByteBuffer, without copying; see the module doc.

    >>> buf = CompositeBuffer.of(ByteBuffer.allocate(2).put_short(0, 3), ByteBuffer.wrap(b"xyz"))
    >>> buf.num_components(), buf.remaining(), buf.get_short(0)
    (2, 5, 3)
    >>> buf.get_int(1) == int.from_bytes(b"\\x03xyz", "big")  # straddles the two
    True
    >>> buf.release()
    True
    """

    __slots__ = ("_first", "_stop")

    _segmented = True
    _mem: CompositeMemory
    _first: int  # index in the space of this composite's first component piece
    _stop: int  # ... and of the piece after its last

    def __init__(self, components: Iterable[ByteBuffer] = ()) -> None:
        """A composite of ``components`` in order (see ``add_components``).

        position 0, limit = capacity = their remaining bytes added up, BIG_ENDIAN,
        reference count 1.  Read-only if one of them is.
        """
        mem = CompositeMemory()
        self._mem = mem
        self._mv = mem.view(0, 0)
        self._off = self._cap = self._pos = self._lim = 0
        self._mark = -1
        self._ro = False
        self._first = self._stop = 0
        self.order(ByteOrder.BIG_ENDIAN)
        self.add_components(*components)

    @classmethod
    def of(cls, *components: ByteBuffer) -> CompositeBuffer:
        """``CompositeBuffer(components)``: takes one reference of each."""
        return cls(components)

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
        raise UnsupportedOperationError(
            "a CompositeBuffer is made of components: CompositeBuffer.of(buf, ...)")

    def _derive(self, off: int, cap: int, pos: int, lim: int, mark: int, ro: bool,
                first: int, stop: int) -> CompositeBuffer:
        self._check_memory()
        buf = CompositeBuffer.__new__(type(self))
        mem = self._mem
        buf._mem = mem
        buf._mv = mem.view(off, off + cap, ro)
        buf._off, buf._cap, buf._pos, buf._lim, buf._mark = off, cap, pos, lim, mark
        buf._ro = ro
        buf._first, buf._stop = first, stop
        buf.order(ByteOrder.BIG_ENDIAN)
        return buf

    # -- components ---------------------------------------------------------------------

    def add_component(self, buf: ByteBuffer, increase_limit: bool = True) -> Self:
        """Append ``buf``'s ``[position, limit)``; see ``add_components``."""
        return self.add_components(buf, increase_limit=increase_limit)

    def add_components(self, *bufs: ByteBuffer, increase_limit: bool = True) -> Self:
        """Append each buffer's ``[position, limit)`` as a component, in order.

        The composite takes one reference of each (released when it reaches zero); a
        composite given here adds its components instead, each retained, and is
        released.  capacity grows by the bytes added; so does the limit unless
        ``increase_limit`` is False (Netty's ``addComponent(true, buf)`` is the default
        here, so ``of(a, b)`` equals ``of(a).add_component(b)``); position and mark
        stay.  Adding a read-only buffer makes this composite read-only.

        Everything is checked before anything is taken: TypeError for a non-ByteBuffer,
        ReleasedBufferError for a released one, IllegalArgumentError for a slice or
        duplicate of this composite that holds no reference of its own.
        """
        self._check_memory()
        mem = self._mem
        for b in bufs:
            if not isinstance(b, ByteBuffer):
                raise TypeError(f"a component must be a ByteBuffer, not {type(b).__name__}")
            b._check_memory()
        mine = sum(1 for b in bufs if b._mem is mem)
        if mine and mem.refcnt <= mine:
            raise IllegalArgumentError(
                "adding a slice or duplicate of this composite hands it this composite's "
                "own reference; add a retained_slice() / retained_duplicate()")
        pieces: list[ByteBuffer] = []
        owned: list[Memory] = []  # references handed over with the buffers
        retained: list[Memory] = []  # references to take of a composite's components
        flattened: list[CompositeBuffer] = []
        for b in bufs:
            if isinstance(b, CompositeBuffer):
                inner = b._pieces(b._pos, b._lim, keep_empty=False)
                for p in inner:
                    p._check_memory()  # released behind its composite's back
                pieces.extend(inner)
                retained.extend(p._mem for p in inner)
                flattened.append(b)
            else:
                pieces.append(b.slice())
                owned.append(b._mem)
        for m in retained:  # nothing can fail from here on
            m.retain()
        if not (self._stop == len(mem._pieces) and self._off + self._cap == mem.end):
            again = self._pieces(0, self._cap, keep_empty=True)  # not at the end: move
            self._off = mem.end
            self._first = mem.lay(again)
        mem.lay(pieces)
        mem._owned.extend(owned + retained)
        self._stop = len(mem._pieces)
        n = sum(p._cap for p in pieces)
        self._cap += n
        if increase_limit:
            self._lim += n
        self._ro = self._ro or any(p._ro for p in pieces)
        self._mv = mem.view(self._off, self._off + self._cap, self._ro)
        for c in flattened:
            c.release()
        return self

    def _pieces(self, lo: int, hi: int, keep_empty: bool) -> list[ByteBuffer]:
        """The pieces of this composite's components, cut to its indexes ``[lo, hi)``."""
        self._check_memory()
        mem = self._mem
        v0, v1 = self._off + lo, self._off + hi
        out = []
        for k in range(self._first, self._stop):
            s, e = mem._starts[k], mem._ends[k]
            a, b = max(s, v0), min(e, v1)
            if a < b:
                p = mem._pieces[k]
                out.append(p if (a, b) == (s, e) else p.slice(a - s, b - a))
            elif keep_empty and s == e:
                out.append(mem._pieces[k])
        return out

    def num_components(self) -> int:
        """How many components this composite has (an empty buffer added counts)."""
        return self._stop - self._first

    def component(self, index: int) -> ByteBuffer:
        """Component ``index`` as a new buffer over its bytes in this composite.

        position 0, limit = capacity = its length here (a slice of a composite cuts
        its first and last component); shares the content; read-only if this composite
        is; not retained (as Netty's ``component(i)``: valid while this composite is).
        IndexOutOfBoundsError unless ``0 <= index < num_components()``.
        """
        index = check_int(index, "index")
        count = self._stop - self._first
        if not 0 <= index < count:
            raise IndexOutOfBoundsError(f"component {index} out of bounds for {count}")
        self._check_memory()
        mem, k = self._mem, self._first + index
        s, e = mem._starts[k], mem._ends[k]
        a = max(s, self._off)
        b = max(min(e, self._off + self._cap), a)
        part = mem._pieces[k].slice(a - s, b - a)
        return part.as_read_only_buffer() if self._ro and not part._ro else part

    def nio_buffers(self) -> list[ByteBuffer]:
        """``[position, limit)`` as one new buffer per component holding part of it
        (Netty's ``nioBuffers()``): zero-copy, in order, empty parts left out."""
        out = []
        for p in self._pieces(self._pos, self._lim, keep_empty=False):
            q = p.slice()
            out.append(q.as_read_only_buffer() if self._ro and not q._ro else q)
        return out

    def memoryviews(self) -> list[builtins.memoryview]:
        """``[position, limit)`` as one zero-copy memoryview per component holding part
        of it, in order (read-only if this buffer is).  Revoked, as ``memoryview()``'s,
        when a component's memory is released."""
        return [p._mem.view(p._off, p._off + p._cap, self._ro)
                for p in self._pieces(self._pos, self._lim, keep_empty=False)]

    # -- memory access --------------------------------------------------------------

    def _segments(self, i: int, n: int) -> list[builtins.memoryview]:
        return self._mem.segments(self._off + i, n)

    def _rest_views(self) -> list[builtins.memoryview]:
        return self._mem.segments(self._off + self._pos, self._lim - self._pos)

    def _rest(self) -> builtins.memoryview:
        views = self._rest_views()
        if len(views) > 1:
            raise self._spans_error(len(views), "memoryview")
        return views[0] if views else memoryview(b"")

    def _spans_error(self, count: int, what: str) -> UnsupportedOperationError:
        return UnsupportedOperationError(
            f"[position, limit) of this composite spans {count} components: no single "
            f"{what} without a copy; use memoryviews() or nio_buffers() (one per "
            "component), or memoryview(allow_copy=True)")

    def _byte(self, i: int) -> int:
        mem = self._mem
        if mem.released:
            raise mem.released_error()
        v = self._off + i
        if mem.mapped:
            return mem.read(v, 1)[0]
        k = bisect_right(mem._starts, v) - 1
        try:
            return mem._segs[k][v - mem._starts[k]]
        except ValueError as e:
            raise mem.fail(e) from None

    def _set_byte(self, i: int, value: int) -> None:
        mem = self._mem
        if mem.released:
            raise mem.released_error()
        v = self._off + i
        if mem.mapped:
            mem.write(v, memoryview(bytes((value,))))
            return
        k = bisect_right(mem._starts, v) - 1
        try:
            mem._segs[k][v - mem._starts[k]] = value
        except ValueError as e:
            raise mem.fail(e) from None

    def _load(self, st: struct.Struct, i: int) -> Any:
        mem = self._mem
        if mem.released:
            raise mem.released_error()
        v = self._off + i
        k = bisect_right(mem._starts, v) - 1
        j = v - mem._starts[k]
        try:
            seg = mem._segs[k]
            if j + st.size <= len(seg) and not mem.mapped:
                return st.unpack_from(seg, j)[0]
            return st.unpack(mem.read(v, st.size))[0]  # straddles components
        except ValueError as e:
            raise mem.fail(e) from None

    def _store(self, i: int, raw: bytes) -> None:
        mem = self._mem
        if mem.released:
            raise mem.released_error()
        v = self._off + i
        k = bisect_right(mem._starts, v) - 1
        j = v - mem._starts[k]
        try:
            seg = mem._segs[k]
            if j + len(raw) <= len(seg) and not mem.mapped:
                seg[j : j + len(raw)] = raw
            else:
                mem.write(v, memoryview(raw))
        except ValueError as e:
            raise mem.fail(e) from None

    # -- single bytes -------------------------------------------------------------------

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
        """As ``ByteBuffer.get``: one signed byte (relative or at an index), or bulk."""
        if a is None:
            p = self._pos
            if p >= self._lim:
                raise BufferUnderflowError(f"get() at position {p} = limit {self._lim}")
            v = self._byte(p)
            self._pos = p + 1
            return v - 256 if v > 127 else v
        if type(a) is int or is_int(a):
            if b is None:
                return _signed(self._byte(self._check_index(a)))
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
        _copy([dmv[offset : offset + length]], self._segments(p, length))
        if index is None:
            self._pos = p + length
        return self

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
        """As ``ByteBuffer.put``: one byte (relative or at an index), or bulk."""
        if type(a) is int and b is None:
            p = self._pos
            if p >= self._lim:
                raise self._overflow(1)
            self._check_writable()
            if not -128 <= a <= 255:
                raise IllegalArgumentError(f"byte value {a} out of range -128..255")
            self._set_byte(p, a & 0xFF)
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
                self._set_byte(i, b & 0xFF)
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
        _copy(self._segments(p, length), [smv[offset : offset + length]])
        if index is None:
            self._pos = p + length
        return self

    def _copy_from(self, p: int, src: ByteBuffer, sp: int, n: int) -> None:
        self._check_memory()
        _copy(self._segments(p, n), _views_of(src, sp, n))

    def _copy_to(self, dst: ByteBuffer, p: int, sp: int, n: int) -> None:
        """``dst._copy_from`` for a composite source (called by ByteBuffer)."""
        dst._check_memory()
        _copy(_views_of(dst, p, n), self._segments(sp, n))

    # -- multi-byte values ----------------------------------------------------------------


    # -- derived buffers ---------------------------------------------------------------

    @overload
    def slice(self) -> CompositeBuffer: ...
    @overload
    def slice(self, index: int, length: int) -> CompositeBuffer: ...
    def slice(self, index: int | None = None, length: int | None = None) -> CompositeBuffer:
        """A composite over ``[position, limit)`` (or ``[index, index + length)``).

        Its components are the overlapped parts of this one's; it shares their content
        and this composite's reference count.  Indexes as ``ByteBuffer.slice``::

            this:   [a b c] [d e] [f g h i]   position=1 limit=6
            slice:    [b c] [d e] [f]         position=0 limit=capacity=5
        """
        if index is None:
            index, length = self._pos, max(self._lim - self._pos, 0)
        else:
            index, length = check_int(index, "index"), check_int(length, "length")
            check_from_index_size(index, length, self._lim)
        v0 = self._off + index
        first = stop = self._first
        if length:  # components with bytes in range, and empty ones strictly inside
            mem = self._mem
            first = bisect_right(mem._ends, v0, self._first, self._stop)
            stop = bisect_left(mem._starts, v0 + length, first, self._stop)
        return self._derive(v0, length, 0, length, -1, self._ro, first, stop)

    def duplicate(self) -> CompositeBuffer:
        """A composite sharing components, content and reference count; indexes copied."""
        return self._derive(self._off, self._cap, self._pos, self._lim, self._mark, self._ro,
                            self._first, self._stop)

    def as_read_only_buffer(self) -> CompositeBuffer:
        """A read-only duplicate."""
        return self._derive(self._off, self._cap, self._pos, self._lim, self._mark, True,
                            self._first, self._stop)

    def compact(self) -> Self:
        """Move ``[position, limit)`` to the start, across components; ready to fill.

        position = remaining, limit = capacity, mark discarded (as ``ByteBuffer``).
        The bytes move within the components, front to back: no copy is made, unless
        two components share memory (then through a counted temporary).
        """
        self._check_writable()
        p, n = self._pos, self._lim - self._pos
        dst = self._segments(0, n)
        if p and n:
            src = self._segments(p, n)
            if (len(dst) > 1 or len(src) > 1) and _overlaps_itself(
                    self._segments(0, self._lim)):
                src = _staged(src)
            _scatter(dst, src)
        self._pos, self._lim, self._mark = n, self._cap, -1
        return self

    # -- kind, array, address ------------------------------------------------------------

    def has_array(self) -> bool:
        """Always False: the bytes are in several objects (see ``component(i)``)."""
        return False

    def array(self) -> Any:
        """Always UnsupportedOperationError: no single array holds a composite."""
        raise UnsupportedOperationError(
            "a composite buffer has no backing array; see component(i).array()")

    def array_offset(self) -> int:
        """Always UnsupportedOperationError, as ``array()``."""
        return self.array()  # type: ignore[no-any-return]

    def address(self) -> int:
        """The address of index 0, when every byte lies in one component (0 if empty);
        else UnsupportedOperationError: no single address exists.

        A raw pointer, as ``ByteBuffer.address``: nothing keeps the component's memory
        alive through it, and using it after that memory is released crashes the
        process.  ``memoryview()`` and ``memoryviews()`` are the safe ways in: a view
        sliced or exported from them keeps the memory alive (see
        ``ByteBuffer.address``).
        """
        self._check_memory()
        if not self._cap:
            return 0
        mem = self._mem
        k = bisect_right(mem._starts, self._off) - 1
        if mem._ends[k] < self._off + self._cap:
            raise UnsupportedOperationError(
                f"a composite spanning {self.num_components()} components has no single "
                "address; see component(i).address()")
        return mem._pieces[k].address() + (self._off - mem._starts[k])

    # -- comparison ------------------------------------------------------------------

    def mismatch(self, that: ByteBuffer) -> int:
        """Relative index of the first differing byte in the two ``[position, limit)``.

        -1 if the remaining bytes are equal; the shorter length if one is a prefix.
        TypeError if ``that`` is not a ByteBuffer.
        """
        other_buffer(that, "mismatch")
        a, b = self._rest_views(), _views_of(that, that._pos, that._lim - that._pos)
        la, lb = _total(a), _total(b)
        n = min(la, lb)
        i = _first_mismatch(a, b, n)
        if i < 0 and la != lb:
            return n
        return i

    def equals(self, that: object) -> bool:
        """Whether ``that`` is a ByteBuffer with equal remaining bytes (order ignored)."""
        if that is self:
            return True
        if not isinstance(that, ByteBuffer):
            return False
        a, b = self._rest_views(), _views_of(that, that._pos, that._lim - that._pos)
        return _total(a) == _total(b) and _first_mismatch(a, b, _total(a)) < 0

    def compare_to(self, that: ByteBuffer) -> int:
        """Compare remaining bytes as signed bytes, as Java's ``compareTo``."""
        other_buffer(that, "compare_to")
        a, b = self._rest_views(), _views_of(that, that._pos, that._lim - that._pos)
        la, lb = _total(a), _total(b)
        i = _first_mismatch(a, b, min(la, lb))
        if i >= 0:
            return _signed(_byte_at(a, i)) - _signed(_byte_at(b, i))
        return la - lb

    def hash_code(self) -> int:
        """Java's ``hashCode`` over ``[position, limit)``, read in place."""
        h = 1
        for seg in reversed(self._rest_views()):
            for v in reversed(_guard.read(seg)):
                h = (31 * h + (v - 256 if v > 127 else v)) & 0xFFFFFFFF
        return h - (1 << 32) if h >= 1 << 31 else h

    # -- Python views ------------------------------------------------------------------

    def memoryview(self, *, allow_copy: bool = False) -> builtins.memoryview:
        """A memoryview of ``[position, limit)`` (read-only if this buffer is).

        Zero-copy when those bytes lie in one component (revoked by ``release()`` as
        any buffer's).  Over several: UnsupportedOperationError, or with
        ``allow_copy=True`` a read-only copy, counted under ``"composite_copy"``.
        """
        self._check_memory()
        parts = self._pieces(self._pos, self._lim, keep_empty=False)
        if not parts:
            return memoryview(b"" if self._ro else bytearray())
        if len(parts) == 1:
            p = parts[0]
            return p._mem.view(p._off, p._off + p._cap, self._ro)
        if not allow_copy:
            raise self._spans_error(len(parts), "memoryview")
        data = _guard.join(self._rest_views())
        metrics.record(COPY_PATH, syscalls=0, user_bytes=len(data))
        return memoryview(data)

    def __bytes__(self) -> bytes:
        """A copy of ``[position, limit)``, counted under ``"composite_copy"``."""
        data = _guard.join(self._rest_views())
        metrics.record(COPY_PATH, syscalls=0, user_bytes=len(data))
        return data

    def __repr__(self) -> str:
        ro = "R" if self._ro else ""
        return f"zcio.CompositeBuffer{ro}[pos={self._pos} lim={self._lim} cap={self._cap}]"


# -- copying between segment lists --------------------------------------------------------


def _views_of(buf: ByteBuffer, i: int, n: int) -> list[memoryview]:
    """Zero-copy views of any buffer's bytes ``[i, i + n)``: one, or one per component."""
    if isinstance(buf, CompositeBuffer):
        return buf._segments(i, n)
    try:
        return [buf._mv[i : i + n]]
    except ValueError as e:
        raise buf._mem.translate(e) from None


def _total(views: Sequence[memoryview]) -> int:
    return sum(len(v) for v in views)


def _scatter(dst: Sequence[memoryview], src: Sequence[memoryview]) -> None:
    """Copy ``src``'s bytes into ``dst``'s, in order (equal totals), front to back."""
    si = so = 0
    for d in dst:
        do, dn = 0, len(d)
        while do < dn:
            s = src[si]
            take = min(dn - do, len(s) - so)
            if take:
                _guard.copy(d, do, s, so, take)  # guarded: a piece may be a mapping
                do += take
                so += take
            if so == len(s):
                si, so = si + 1, 0


def _staged(src: Sequence[memoryview]) -> list[memoryview]:
    """``src`` through a temporary (counted): the destination overlaps it."""
    data = _guard.join(src)
    metrics.record(COPY_PATH, syscalls=0, user_bytes=len(data))
    return [memoryview(data)]


def _copy(dst: Sequence[memoryview], src: Sequence[memoryview]) -> None:
    """Copy ``src`` into ``dst`` as if through a temporary (Java's rule for overlap).

    One view each: memoryview assignment is a memmove.  Piecewise, overlapping memory
    could be overwritten before it is read, so it then goes through a real temporary.
    """
    if (len(dst) > 1 or len(src) > 1) and _overlap(dst, src):
        src = _staged(src)
    _scatter(dst, src)


def _spans(views: Iterable[memoryview]) -> list[tuple[int, int]]:
    out = []
    for v in views:
        if len(v):
            a = buffer_address(v)
            out.append((a, a + len(v)))
    return out


def _overlap(a: Sequence[memoryview], b: Sequence[memoryview]) -> bool:
    """Whether some view of ``a`` shares a byte of memory with some view of ``b``."""
    marked = sorted([(s, e, 0) for s, e in _spans(a)] + [(s, e, 1) for s, e in _spans(b)])
    reach = [0, 0]  # the furthest end seen so far on each side
    for s, e, side in marked:
        if s < reach[1 - side]:
            return True
        reach[side] = max(reach[side], e)
    return False


def _overlaps_itself(views: Sequence[memoryview]) -> bool:
    """Whether two of ``views`` share memory (components that alias each other)."""
    reach = 0
    for s, e in sorted(_spans(views)):
        if s < reach:
            return True
        reach = max(reach, e)
    return False


def _first_mismatch(a: Sequence[memoryview], b: Sequence[memoryview], n: int) -> int:
    """Index of the first differing byte among the first ``n`` of two view lists, or -1."""
    i = ai = bi = ao = bo = 0
    while i < n:
        x, y = a[ai], b[bi]
        take = min(len(x) - ao, len(y) - bo, n - i)
        if take:
            d = _first_difference(x[ao : ao + take], y[bo : bo + take])
            if d >= 0:
                return i + d
            i, ao, bo = i + take, ao + take, bo + take
        if ao == len(x):
            ai, ao = ai + 1, 0
        if bo == len(y):
            bi, bo = bi + 1, 0
    return -1


def _byte_at(views: Sequence[memoryview], i: int) -> int:
    for v in views:
        if i < len(v):
            return _guard.read(v, i, 1)[0]
        i -= len(v)
    raise IndexError(i)  # pragma: no cover - callers pass an index below the total
