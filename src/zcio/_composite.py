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
from collections.abc import Iterable
from typing import Any, Self, overload

from . import _views
from ._buffer import check_int
from ._byte_buffer import ByteBuffer
from ._composite_memory import CompositeMemory
from ._errors import (
    IllegalArgumentError,
    IndexOutOfBoundsError,
    UnsupportedOperationError,
)
from ._indirect import IndirectByteBuffer
from ._memory import Memory
from ._order import ByteOrder

__all__ = ["CompositeBuffer", "CompositeMemory", "COPY_PATH"]  # the memory: re-exported

#: The metrics path under which a composite's copies are counted.
COPY_PATH = _views.COPY_PATH


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
    _made_by = "a CompositeBuffer is made of components: CompositeBuffer.of(buf, ...)"

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
        """Never: a composite has no one memory (the factories say so first)."""
        raise UnsupportedOperationError(cls._made_by)

    def _derive(self, off: int, cap: int, pos: int, lim: int, mark: int, ro: bool,
                first: int, stop: int) -> CompositeBuffer:
        self._check_memory()
        buf = CompositeBuffer.__new__(type(self))
        mem = self._mem
        buf._mem = mem
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
                inner = [b._seen(p) for p in b._pieces(b._pos, b._lim, keep_empty=False)]
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
        return self._seen(mem._pieces[k].slice(a - s, b - a))

    def _seen(self, part: ByteBuffer) -> ByteBuffer:
        """``part`` as this composite shows it: read-only if this composite is."""
        return part.as_read_only_buffer() if self._ro and not part._ro else part

    def nio_buffers(self) -> list[ByteBuffer]:
        """``[position, limit)`` as one new buffer per component holding part of it
        (Netty's ``nioBuffers()``): zero-copy, in order, empty parts left out."""
        return [self._seen(p.slice())
                for p in self._pieces(self._pos, self._lim, keep_empty=False)]

    def memoryviews(self) -> list[builtins.memoryview]:
        """``[position, limit)`` as one zero-copy memoryview per component holding part
        of it, in order (read-only if this buffer is).  Revoked, as ``memoryview()``'s,
        when a component's memory is released."""
        return [p._mem.view(p._off, p._off + p._cap, self._ro)
                for p in self._pieces(self._pos, self._lim, keep_empty=False)]

    # -- memory access --------------------------------------------------------------

    def _views(self, i: int, n: int) -> list[builtins.memoryview]:
        """Bytes ``[i, i + n)`` as zero-copy views, one per component touched."""
        return self._mem.segments(self._off + i, n)

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
        index, length = self._slice_range(index, length)
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
        return _views.staged(self._rest_views())[0]

    def __bytes__(self) -> bytes:
        """A copy of ``[position, limit)``, counted under ``"composite_copy"``."""
        return _views.joined(self._rest_views())

    def __repr__(self) -> str:
        ro = "R" if self._ro else ""
        return f"zcio.CompositeBuffer{ro}[pos={self._pos} lim={self._lim} cap={self._cap}]"
