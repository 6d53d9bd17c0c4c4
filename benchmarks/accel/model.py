"""The model the accelerator prototypes compile: a buffer's index state with Java's
relative/absolute ``get_int``/``put_int`` (big-endian, the JDK's default order), and a
pool of 64 KiB slots with allocate/release under a reference count.

It is the shape of zcio's hot path (``ByteBuffer.get_int``/``put_int``, ``_pool``), cut
to what the tools compile, so that the same source is run three ways: as Python, compiled
by mypyc, and compiled by Cython in pure-Python mode (``import cython`` falls back to a
shim when Cython is absent, and ``cython.compiled`` chooses the byte loop over struct).
The C extension ``cbuf.c`` implements the same API by hand.
"""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

try:
    import cython
except ImportError:  # pure Python without Cython installed
    cython = SimpleNamespace(compiled=False)

_I32 = struct.Struct(">i")


def _load(b: Any, i: int) -> int:
    """Cython's compiled path: the big-endian int at ``b[i:i+4]`` (unsigned char[::1])."""
    v = (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]
    return v - 0x100000000 if v > 0x7FFFFFFF else v


def _store(b: Any, i: int, v: int) -> None:
    """Cython's compiled path: ``v`` (a signed 32-bit int) at ``b[i:i+4]``, big-endian."""
    if not -0x80000000 <= v <= 0x7FFFFFFF:
        raise OverflowError("int out of range")
    b[i] = (v >> 24) & 0xFF
    b[i + 1] = (v >> 16) & 0xFF
    b[i + 2] = (v >> 8) & 0xFF
    b[i + 3] = v & 0xFF


class BufferUnderflow(Exception):
    pass


class BufferOverflow(Exception):
    pass


class Buf:
    """``0 <= position <= limit <= capacity`` over ``mv``."""

    __slots__ = ("_pos", "_lim", "_cap", "_mv", "_bytes", "_ro", "_refcnt", "_pool", "_slot")

    def __init__(self, mv: memoryview, pool: Pool | None = None, slot: int = -1) -> None:
        self._mv = mv
        self._bytes = mv  # Cython: a typed memoryview of the same memory (model.pxd)
        self._pos = 0
        self._cap = len(mv)
        self._lim = self._cap
        self._ro = mv.readonly
        self._refcnt = 1
        self._pool = pool
        self._slot = slot

    def position(self) -> int:
        return self._pos

    def clear(self) -> Buf:
        self._pos = 0
        self._lim = self._cap
        return self

    def get_int(self, index: int | None = None) -> int:
        if index is None:
            p = self._pos
            q = p + 4
            if q > self._lim:
                raise BufferUnderflow()
            if cython.compiled:
                v: int = _load(self._bytes, p)
            else:
                v = _I32.unpack_from(self._mv, p)[0]
            self._pos = q
            return v
        if index < 0 or index > self._lim - 4:
            raise IndexError(index)
        if cython.compiled:
            return _load(self._bytes, index)
        r: int = _I32.unpack_from(self._mv, index)[0]
        return r

    def put_int(self, a: int, b: int | None = None) -> Buf:
        if self._ro:
            raise TypeError("read-only")
        if b is None:
            p = self._pos
            q = p + 4
            if q > self._lim:
                raise BufferOverflow()
            if cython.compiled:
                _store(self._bytes, p, a)
            else:
                _I32.pack_into(self._mv, p, a)
            self._pos = q
            return self
        if a < 0 or a > self._lim - 4:
            raise IndexError(a)
        if cython.compiled:
            _store(self._bytes, a, b)
        else:
            _I32.pack_into(self._mv, a, b)
        return self

    def release(self) -> bool:
        n = self._refcnt - 1
        if n < 0:
            raise ValueError("already released")
        self._refcnt = n
        if n == 0:
            pool = self._pool
            if pool is not None:
                pool._free.append(self._slot)
            return True
        return False


class Pool:
    """Fixed 64 KiB slots of one slab; a free list of slot numbers."""

    __slots__ = ("_slab", "_mv", "_free", "_size")

    def __init__(self, size: int = 65536, slots: int = 64) -> None:
        self._size = size
        self._slab = bytearray(size * slots)
        self._mv = memoryview(self._slab)
        self._free = list(range(slots - 1, -1, -1))

    def allocate(self) -> Buf:
        if not self._free:
            raise MemoryError("pool exhausted")
        slot: int = self._free.pop()
        start = slot * self._size
        return Buf(self._mv[start : start + self._size], self, slot)
