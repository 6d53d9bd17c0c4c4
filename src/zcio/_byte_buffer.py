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
import sys
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar, overload

from . import _guard, _views
from ._access import ByteAccess, byte_view
from ._arrow import to_arrow
from ._buffer import check_from_index_size, check_int
from ._codec import CODECS
from ._errors import (
    IllegalArgumentError,
    IndexOutOfBoundsError,
    ReadOnlyBufferError,
    UnsupportedOperationError,
)
from ._memory import DirectMemory, HeapMemory, Memory, WrappedMappingMemory
from ._order import ByteOrder
from ._typed import (
    CharBuffer,
    DoubleBuffer,
    FloatBuffer,
    IntBuffer,
    LongBuffer,
    ShortBuffer,
    TypedBuffer,
)

if TYPE_CHECKING:
    from ._shared import SharedByteBuffer
    from ._types import Buffer as BytesLike

_V = TypeVar("_V", bound=TypedBuffer[Any])

__all__ = ["ByteBuffer", "byte_view", "check_capacity", "other_buffer"]

_BIG = ByteOrder.BIG_ENDIAN
_BE = CODECS[_BIG]


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


class ByteBuffer(ByteAccess):
    """A byte buffer with Java's semantics; see the module docstring for the rules.

    The gets and puts are ``zcio._access.ByteAccess``'s; this class adds the
    factories, the derived buffers, the comparisons and the Python views.

    >>> buf = ByteBuffer.allocate(8).put_int(0x01020304).flip()
    >>> buf.get(), buf.remaining()
    (1, 3)
    """

    __slots__ = ()

    #: For a kind whose memory the factories below do not make (a file mapping, a
    #: shared block): what to call instead, said by UnsupportedOperationError when one
    #: is called on it (``MappedByteBuffer.allocate(8)`` would be a mapped buffer over
    #: a bytearray).  None: they make this class.
    _made_by: ClassVar[str | None] = None

    # -- factories ----------------------------------------------------------------------

    @classmethod
    def _factory_class(cls) -> type[Self]:
        """``cls``, for the factories; UnsupportedOperationError for a kind they do not
        make (``_made_by``)."""
        if cls._made_by is not None:
            raise UnsupportedOperationError(cls._made_by)
        return cls

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
        return cls._factory_class()._make(HeapMemory(bytearray(capacity)), 0, capacity, 0,
                                          capacity)

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
        return cls._factory_class()._make(DirectMemory(capacity), 0, capacity, 0, capacity)

    @classmethod
    def wrap(cls, array: BytesLike, offset: int = 0, length: int | None = None) -> ByteBuffer:
        """A heap buffer over ``array`` without copying; changes show through both ways.

        capacity = ``len(array)`` in bytes, position = ``offset``, limit =
        ``offset + length`` (``length`` defaults to the rest), ``array_offset()`` 0.
        A read-only object (``bytes``) gives a read-only buffer.  IndexOutOfBoundsError
        if ``offset``/``length`` do not fit.  While the buffer lives, a ``bytearray``
        cannot be resized (CPython's buffer-export rule).  An object whose bytes may lie
        in a file mapping (an ``mmap`` of a file, a numpy ``memmap``, another
        exporter's mapped file: ``zcio._memory.may_lose_pages``) gives a buffer that
        makes every access through the SIGBUS guard, as a ``MappedByteBuffer`` does: a
        file truncated under it raises MappedRegionError instead of killing the process.
        Telling costs nothing for ``bytes``, ``bytearray``, ``array``, ``mmap`` and numpy
        arrays; for an exporter of another kind (an Arrow buffer, ctypes) it costs a
        read of ``/proc/self/maps`` (about 0.5 ms).
        """
        offset = check_int(offset, "offset")  # before the export pins a bytearray
        length = None if length is None else check_int(length, "length")
        made = cls._factory_class()
        mem = HeapMemory.of(array)
        cap = mem.size
        length = cap - offset if length is None else length
        try:
            check_from_index_size(offset, length, cap)
        except IndexOutOfBoundsError:
            mem.release()
            raise
        return heap_class(made, mem)._make(mem, 0, cap, offset, offset + length,
                                           ro=mem.readonly)

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
        index, length = self._slice_range(index, length)
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
        if p and n:
            _views.move(self._views(0, n), self._views(p, n), self._views(0, self._lim))
        else:
            self._views(0, 0)  # a released buffer raises, as any access
        self._pos = n
        self._lim = self._cap
        self._mark = -1
        return self

    def _typed(self, cls: type[_V], size: int) -> _V:
        self._check_memory()
        n = max(self._lim - self._pos, 0) // size
        start = self._off + self._pos
        return cls._view_of(self._mem, start, n, self._ro, self._order)

    def as_char_buffer(self) -> CharBuffer:
        """A CharBuffer over ``[position, limit)`` in this buffer's current order."""
        return self._typed(CharBuffer, 2)

    def as_short_buffer(self) -> ShortBuffer:
        """A ShortBuffer over ``[position, limit)`` in this buffer's current order."""
        return self._typed(ShortBuffer, 2)

    def as_int_buffer(self) -> IntBuffer:
        """An IntBuffer over ``[position, limit)`` in this buffer's current order."""
        return self._typed(IntBuffer, 4)

    def as_long_buffer(self) -> LongBuffer:
        """A LongBuffer over ``[position, limit)`` in this buffer's current order."""
        return self._typed(LongBuffer, 8)

    def as_float_buffer(self) -> FloatBuffer:
        """A FloatBuffer over ``[position, limit)`` in this buffer's current order."""
        return self._typed(FloatBuffer, 4)

    def as_double_buffer(self) -> DoubleBuffer:
        """A DoubleBuffer over ``[position, limit)`` in this buffer's current order."""
        return self._typed(DoubleBuffer, 8)

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

    def mismatch(self, that: ByteBuffer) -> int:
        """Relative index of the first differing byte in the two ``[position, limit)``.

        -1 if the remaining bytes are equal; the shorter length if one is a prefix.
        TypeError if ``that`` is not a ByteBuffer.
        """
        other = other_buffer(that, "mismatch")
        return _views.mismatch(self._rest_views(), other._rest_views())

    def equals(self, that: object) -> bool:
        """Whether ``that`` is a ByteBuffer with equal remaining bytes (order ignored)."""
        if that is self:
            return True
        if not isinstance(that, ByteBuffer):
            return False
        a, b = self._rest_views(), that._rest_views()
        return _views.total(a) == _views.total(b) and _views.mismatch(a, b) < 0

    def compare_to(self, that: ByteBuffer) -> int:
        """Compare remaining bytes as signed bytes, as Java's ``compareTo``.

        Returns ``a - b`` for the first differing bytes (signed), else the difference
        of the remaining counts.  TypeError if ``that`` is not a ByteBuffer.
        """
        other = other_buffer(that, "compare_to")
        return _views.compare(self._rest_views(), other._rest_views())

    def hash_code(self) -> int:
        """Java's ``hashCode``: ``h = 31*h + b`` over ``[position, limit)`` from the end.

        Depends on the content, so a buffer should not be a dict key while it changes;
        Python's ``hash()`` is therefore disabled, as for ``bytearray``.
        """
        return _views.hash_code(self._rest_views())

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
        return _guard.join(self._rest_views())

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
        return to_arrow(self)


def heap_class(cls: type[ByteBuffer], mem: HeapMemory) -> type[ByteBuffer]:
    """The class of a heap buffer over ``mem``: ``cls``, or the guarded kind
    (``zcio._indirect.WrappedMappingByteBuffer``, every access asking the memory) for
    a wrapped file mapping."""
    if isinstance(mem, WrappedMappingMemory):
        from ._indirect import IndirectByteBuffer, WrappedMappingByteBuffer

        if not issubclass(cls, IndirectByteBuffer):
            return WrappedMappingByteBuffer
    return cls
