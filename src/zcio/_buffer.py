"""The index machinery every zcio buffer shares: java.nio.Buffer.

A buffer is a linear, finite sequence of elements of one primitive type.  Besides its
content it has four indexes, and the following invariant always holds::

    0 <= mark <= position <= limit <= capacity

* capacity: the number of elements it holds; never changes.
* limit: the index of the first element that must not be read or written.
* position: the index of the next element a relative get or put reads or writes.
* mark: the index ``reset()`` returns the position to; undefined (-1) until ``mark()``.

A failed call changes no index and no content (bulk calls check every bound first).
Buffers are not safe for use by several threads at once without locking, as in Java.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Self, overload

from ._errors import (
    BufferOverflowError,
    BufferUnderflowError,
    IllegalArgumentError,
    IndexOutOfBoundsError,
    InvalidMarkError,
    ReadOnlyBufferError,
)
from ._memory import Memory
from ._state import BufferState

__all__ = ["Buffer"]


def check_from_index_size(offset: int, size: int, length: int) -> None:
    """Java's ``Objects.checkFromIndexSize``: ``0 <= offset <= offset + size <= length``."""
    if offset < 0 or size < 0 or offset + size > length or length < 0:
        raise IndexOutOfBoundsError(
            f"range [{offset}, {offset} + {size}) out of bounds for length {length}"
        )


def check_int(value: object, what: str) -> int:
    """``value`` as an int, for every public parameter that takes an integer.

    Accepts ``int`` and any integer type with ``__index__`` (numpy integers), through
    ``operator.index``; a bool, float, str, None or bytes raises TypeError naming the
    parameter, before the caller changes anything.  The ``type(value) is int`` test
    comes first: it is the hot path.
    """
    if type(value) is int:
        return value
    if not isinstance(value, bool):
        try:
            return operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            pass
    raise TypeError(f"{what} must be an integer, not {type(value).__name__}")


def new_index(value: object, what: str, bound: int, bound_name: str) -> int:
    """``value`` as a new position or limit: an integer in ``[0, bound]``, else TypeError
    or IllegalArgumentError with the numbers (``"new limit 9 out of range [0, capacity
    8]"``)."""
    index = check_int(value, what)
    if index > bound or index < 0:
        raise IllegalArgumentError(f"new {what} {index} out of range [0, {bound_name} {bound}]")
    return index


def is_int(value: object) -> bool:
    """Whether ``check_int`` accepts ``value``: tells an index or a byte value from a
    bytes-like in the overloaded get/put (a numpy integer exports a buffer too, and a
    numpy array has ``__index__`` but is no integer unless it is 0-d)."""
    if type(value) is int:
        return True
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        return False
    try:
        operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


class Buffer(BufferState):
    """Base of ByteBuffer and the typed buffers: indexes, their checks, and lifetime.

    Subclasses set ``_mv`` (a memoryview of this buffer's bytes) and ``_mem`` (the
    memory block shared by every buffer derived from the same allocation); the slots
    are ``zcio._state.BufferState``'s.
    """

    __slots__ = ()

    _mark: int
    _pos: int
    _lim: int
    _cap: int
    _ro: bool
    _mem: Memory
    _mv: memoryview

    # -- the four indexes --------------------------------------------------------------

    def capacity(self) -> int:
        """The number of elements this buffer holds."""
        return self._cap

    @overload
    def position(self) -> int: ...
    @overload
    def position(self, new_position: int) -> Self: ...
    def position(self, new_position: int | None = None) -> int | Self:
        """Get the position, or set it and return this buffer.

        Setting: ``0 <= new_position <= limit`` or IllegalArgumentError; a mark
        greater than the new position is discarded.
        """
        if new_position is None:
            return self._pos
        new_position = new_index(new_position, "position", self._lim, "limit")
        if self._mark > new_position:
            self._mark = -1
        self._pos = new_position
        return self

    @overload
    def limit(self) -> int: ...
    @overload
    def limit(self, new_limit: int) -> Self: ...
    def limit(self, new_limit: int | None = None) -> int | Self:
        """Get the limit, or set it and return this buffer.

        Setting: ``0 <= new_limit <= capacity`` or IllegalArgumentError; a position
        greater than the new limit becomes the new limit; a mark greater than it is
        discarded.
        """
        if new_limit is None:
            return self._lim
        new_limit = new_index(new_limit, "limit", self._cap, "capacity")
        self._lim = new_limit
        if self._pos > new_limit:
            self._pos = new_limit
        if self._mark > new_limit:
            self._mark = -1
        return self

    def mark(self) -> Self:
        """Set the mark at the position."""
        self._mark = self._pos
        return self

    def reset(self) -> Self:
        """Set the position back to the mark; InvalidMarkError if the mark is undefined."""
        if self._mark < 0:
            raise InvalidMarkError("reset() without a mark")
        self._pos = self._mark
        return self

    def clear(self) -> Self:
        """Make the buffer ready to be filled again; content is untouched.

        ::

            before: mark=1  position=5  limit=6  capacity=8
            after:  mark=-1 position=0  limit=8  capacity=8
        """
        self._pos = 0
        self._lim = self._cap
        self._mark = -1
        return self

    def flip(self) -> Self:
        """Make what was written readable: limit = position, position = 0, no mark.

        ::

            before: 0 ........ position=5 ........ limit=capacity=8
            after:  position=0 ........ limit=5 ........ capacity=8
        """
        self._lim = self._pos
        self._pos = 0
        self._mark = -1
        return self

    def rewind(self) -> Self:
        """Read again from the start: position = 0, no mark; the limit stays."""
        self._pos = 0
        self._mark = -1
        return self

    def remaining(self) -> int:
        """``limit - position``: elements a relative bulk get could read."""
        return self._lim - self._pos

    def has_remaining(self) -> bool:
        """Whether ``position < limit``."""
        return self._pos < self._lim

    def __len__(self) -> int:
        """``remaining()``, so ``len(buf)`` reads like a sequence's length."""
        return self._lim - self._pos

    def mark_value(self) -> int:
        """The mark, or -1 when undefined (Java's package-private ``markValue()``)."""
        return self._mark

    # -- kind ----------------------------------------------------------------------------

    def is_read_only(self) -> bool:
        """Whether content-mutating calls raise ReadOnlyBufferError."""
        return self._ro

    def is_direct(self) -> bool:
        """Whether the content lives off the Python heap (``allocate_direct``, mappings)."""
        return self._mem.direct

    # -- checks shared by get/put --------------------------------------------------------

    def _check_index(self, index: int, nb: int = 1) -> int:
        """``index`` if ``[index, index + nb)`` lies below the limit, else IndexOutOfBoundsError."""
        if type(index) is not int:
            index = check_int(index, "index")
        if index < 0 or nb > self._lim - index:
            raise IndexOutOfBoundsError(
                f"index {index} (+{nb}) out of bounds for limit {self._lim}"
            )
        return index

    def _bulk_range(self, index: Any, offset: Any, length: Any, other: int, put: bool,
                    unit: str = "", then: Callable[[], None] | None = None
                    ) -> tuple[int, int, int]:
        """``(start, offset, length)`` of a bulk get or put, every bound checked in
        Java's order before anything moves; the one range check of every kind.

        ``other``: the length of the array, sequence or buffer on the other side;
        ``offset`` defaults to 0 and ``length`` to the rest of ``other``.  Relative
        (``index`` None): ``[offset, offset + length)`` must fit ``other``
        (IndexOutOfBoundsError), then ``length <= remaining()`` (BufferUnderflowError
        for a get, BufferOverflowError for a put); the start is the position.
        Absolute: ``index`` (an integer, converted after ``offset`` and ``length``)
        with ``[index, index + length)`` within the limit, then the other range
        (IndexOutOfBoundsError).  ``unit`` names what is counted in the messages;
        ``then``, a check Java makes between a relative call's two (read-only for
        ``CharBuffer.put(String)``).
        """
        offset = 0 if offset is None else check_int(offset, "offset")
        length = other - offset if length is None else check_int(length, "length")
        if index is None:
            check_from_index_size(offset, length, other)
            if then is not None:
                then()
            p = self._pos
            if length > self._lim - p:
                error = BufferOverflowError if put else BufferUnderflowError
                raise error(f"{'put' if put else 'get'} of {length}{unit} with "
                            f"{self._lim - p} remaining")
            return p, offset, length
        index = check_int(index, "index")
        check_from_index_size(index, length, self._lim)
        check_from_index_size(offset, length, other)
        return index, offset, length

    def _slice_range(self, index: Any, length: Any) -> tuple[int, int]:
        """``(index, length)`` of ``slice()`` (``[position, limit)``, both None) or of
        ``slice(index, length)``, which must lie within the limit (IndexOutOfBoundsError)."""
        if index is None:
            return self._pos, max(self._lim - self._pos, 0)
        index, length = check_int(index, "index"), check_int(length, "length")
        check_from_index_size(index, length, self._lim)
        return index, length

    def _check_writable(self) -> None:
        if self._ro:
            raise ReadOnlyBufferError(f"{type(self).__name__} is read-only")

    def _check_memory(self) -> None:
        if self._mem.released:
            raise self._mem.released_error()

    # -- lifetime ------------------------------------------------------------------------

    def release(self, decrement: int = 1) -> bool:
        """Drop a reference; at zero, free the memory for this buffer and all derived.

        Buffers derived from one allocation (slices, duplicates, views) share one
        reference count, as Netty's derived buffers do; it starts at 1.  At zero any
        access to the content raises ReleasedBufferError (a ValueError;
        IllegalReferenceCountError for pooled buffers); indexes can still be read.
        Direct memory leaves its pool at once, unless a memoryview obtained from
        ``memoryview()`` was sliced or exported further: then it is freed when that
        view is gone.  Returns True if this call freed the memory.  Releasing a plain
        buffer already at zero is a no-op; a pooled one raises, as in Netty.
        """
        return self._mem.release(check_int(decrement, "decrement"))

    def retain(self, increment: int = 1) -> Self:
        """Add a reference (Netty's ``retain``); IllegalReferenceCountError at zero."""
        self._mem.retain(check_int(increment, "increment"))
        return self

    def ref_cnt(self) -> int:
        """The reference count shared by every buffer of this allocation (0: released)."""
        return self._mem.refcnt

    def is_released(self) -> bool:
        """Whether the reference count reached zero."""
        return self._mem.released

    # -- pickling and copy -------------------------------------------------------------

    def __reduce_ex__(self, protocol: Any, /) -> Any:
        """Pickling (protocol 5: out of band), ``copy.copy`` and ``copy.deepcopy``.

        Carries ``[position, limit)`` and the state; ``copy.copy`` and ``deepcopy``
        give an independent buffer equal to a pickle round trip.  What each kind
        becomes, and the copies made: see ``zcio._pickling``.  A released buffer
        raises its released error.
        """
        from ._pickling import reduce

        return reduce(self, check_int(protocol, "protocol"))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Drop the reference the ``with`` block holds (unless already released)."""
        if self._mem.refcnt > 0:
            self._mem.release()
