"""The state every buffer has: its four indexes, read-only flag, memory, view and order.

One class, two implementations with the same slots: ``zcio._native.BufferState`` (C
fields, which the compiled fast paths read directly) when the accelerator is loaded,
else the Python class below, the reference.  ``zcio._buffer.Buffer`` derives from it
and adds no slots; subclasses add their own (``_off``, codecs).

The slots:

* ``_mark``, ``_pos``, ``_lim``, ``_cap``: Java's indexes, ``0 <= mark <= position <=
  limit <= capacity`` (mark -1 when unset), in elements of the buffer's type;
* ``_ro``: read-only (a bool);
* ``_mem``: the memory block (``zcio._memory.Memory``) shared by every buffer derived
  from one allocation;
* ``_mv``: a memoryview of this buffer's ``[0, capacity)`` bytes (plain byte buffers;
  views and composites go through ``_mem``);
* ``_order``: the ByteOrder of multi-byte values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._accel import native

__all__ = ["BufferState"]


class _PyBufferState:
    """The reference implementation of the state: plain slots."""

    __slots__ = ("_mark", "_pos", "_lim", "_cap", "_ro", "_mem", "_mv", "_order",
                 "__weakref__")


if TYPE_CHECKING:
    BufferState = _PyBufferState
else:
    BufferState: Any = _PyBufferState if native is None else native.BufferState
