"""ByteBuffers whose values are read and written by asking their memory.

ByteBuffer's value paths (``zcio._access.ByteAccess``) are inlined on one memoryview:
the hot paths, for contiguous plain memory.  Two kinds of memory must be asked instead:
a file mapping (``MappedMemory``: every access through the SIGBUS guard) and a
composite's (``CompositeMemory``: bytes in several blocks).  Their buffers override
the value hooks once, here, to call the memory interface (``zcio._memory.Memory``):

* ``_load(st, i)`` asks ``Memory.load(st, at)``: the value of ``st`` at byte ``at``;
* ``_store(i, raw)`` asks ``Memory.store(at, raw)``: write the encoded ``raw`` there;

and the paths ByteAccess inlines on its memoryview (single bytes, ``get_int``,
``put_int``) go through those hooks here.

The rules are ByteBuffer's: a relative get past the limit raises BufferUnderflowError,
a relative put past it BufferOverflowError, an absolute index out of range
IndexOutOfBoundsError; a failed call changes no index, and a put encodes its value
first, so a rejected value writes nothing.  Bulk copies and comparisons need no
override: they go through ``_views`` and ``zcio._views`` for every kind.
"""

from __future__ import annotations

import inspect
import struct
from typing import Any, Self

from ._accel import native, text_signature
from ._access import ByteAccess, signed
from ._buffer import is_int
from ._byte_buffer import ByteBuffer
from ._order import ByteOrder

__all__ = ["IndirectByteBuffer", "WrappedMappingByteBuffer"]

_U8 = struct.Struct("B")


class IndirectByteBuffer(ByteBuffer):
    """A ByteBuffer whose values go through its memory's ``load``/``store``."""

    __slots__ = ()

    def _load(self, st: struct.Struct, i: int) -> Any:
        return self._mem.load(st, self._off + i)

    def _store(self, i: int, raw: bytes) -> None:
        self._mem.store(self._off + i, raw)

    def get(self, a: Any = None, b: Any = None, c: Any = None, d: Any = None, /) -> Any:
        """As ``ByteBuffer.get``; a single byte is read through the memory."""
        if a is None:
            return signed(self._get_rel(_U8))
        if b is None and (type(a) is int or is_int(a)):
            return signed(self._get_at(_U8, a))
        return super().get(a, b, c, d)  # bulk: through _views

    def put(self, a: Any, b: Any = None, c: Any = None, d: Any = None, /) -> Self:
        """As ``ByteBuffer.put``; a single byte is written through the memory."""
        if type(a) is int and b is None and -128 <= a <= 255:
            return self._put_rel(_U8, a & 0xFF)
        if type(a) is int and type(b) is int and -128 <= b <= 255:
            return self._put_at(_U8, a, b & 0xFF)
        return super().put(a, b, c, d)  # bulk, a numpy int, or a value error

    def get_int(self, index: int | None = None) -> int:
        """The signed 32-bit value at position (position += 4) or at ``index``."""
        return self._value(self._c.i32, index)  # type: ignore[no-any-return]

    def put_int(self, a: int, b: int | None = None, /) -> Self:
        """``put_int(v)`` at position (position += 4) or ``put_int(index, v)``."""
        return self._set_value(self._c.i32, a, b)


class WrappedMappingByteBuffer(IndirectByteBuffer):
    """A heap buffer wrapping an object whose bytes may lie in a file mapping
    (``ByteBuffer.wrap`` of an ``mmap`` of a file, a numpy ``memmap``...): its memory
    (``zcio._memory.WrappedMappingMemory``) reads every value through the SIGBUS guard,
    so a file truncated under it raises MappedRegionError."""

    __slots__ = ()
    _made_by = "a wrapped file mapping is made by ByteBuffer.wrap(mapping)"


#: The Python methods the compiled fast paths replaced, by name: the reference the
#: differential tests hold the fast paths to (empty when pure Python runs).
REFERENCE: dict[str, Any] = {}


def _accelerate() -> None:
    """Hand ByteBuffer's hot get/put to the compiled fast paths (``zcio._native``), each
    keeping the Python method it replaces as its reference and slow path.  Kinds whose
    memory must be asked (this module's subclasses: mapped, composite) always take the
    Python path, so every mapped access stays behind the SIGBUS guard."""
    if native is None:
        return
    REFERENCE.update((name, fn) for name, fn in vars(ByteAccess).items()
                     if name in native.ACCELERATED)
    docs = {name: f"{text_signature(fn)}\n--\n\n{inspect.getdoc(fn)}"
            for name, fn in vars(ByteAccess).items()
            if inspect.isfunction(fn) and fn.__doc__}
    native.accelerate(ByteAccess, ByteOrder.BIG_ENDIAN, ByteOrder.LITTLE_ENDIAN,
                      IndirectByteBuffer, docs)


_accelerate()
