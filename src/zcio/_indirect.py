"""ByteBuffers whose multi-byte values go through ``_load`` and ``_store``.

ByteBuffer's own value paths are inlined on one memoryview (``struct.unpack_from`` on
``_mv``): the hot paths.  Two kinds cannot touch their memory that way: a
MappedByteBuffer (every access through the SIGBUS guard) and a CompositeBuffer (bytes
in several blocks).  They share the index rules below, written once on two hooks:

* ``_load(st, i)``: the value of ``st`` at byte ``i`` of this buffer;
* ``_store(i, raw)``: write the encoded bytes ``raw`` at byte ``i``.

The rules are ByteBuffer's: a relative get past the limit raises BufferUnderflowError,
a relative put past it BufferOverflowError, an absolute index out of range
IndexOutOfBoundsError; a failed call changes no index, and a put encodes its value
first, so a rejected value writes nothing.
"""

from __future__ import annotations

import struct
from typing import Any, Self

from ._byte_buffer import ByteBuffer
from ._codec import pack

__all__ = ["IndirectByteBuffer"]


class IndirectByteBuffer(ByteBuffer):
    """A ByteBuffer whose values go through ``_load``/``_store`` (see the module)."""

    __slots__ = ()

    def _load(self, st: struct.Struct, i: int) -> Any:
        raise NotImplementedError  # pragma: no cover - each subclass reads its memory

    def _store(self, i: int, raw: bytes) -> None:
        raise NotImplementedError  # pragma: no cover - each subclass writes its memory

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
        self._check_writable()
        self._store(p, pack(st, value))
        self._pos = q
        return self

    def get_int(self, index: int | None = None) -> int:
        """The signed 32-bit value at position (position += 4) or at ``index``."""
        if index is None:
            return self._get_rel(self._c.i32)  # type: ignore[no-any-return]
        return self._get_at(self._c.i32, index)  # type: ignore[no-any-return]

    def put_int(self, a: int, b: int | None = None, /) -> Self:
        """``put_int(v)`` at position (position += 4) or ``put_int(index, v)``."""
        if b is None:
            return self._put_rel(self._c.i32, a)
        return self._put_at(self._c.i32, a, b)
