"""CompositeMemory: the segmented memory behind a CompositeBuffer (see ``zcio._composite``).

The memory interface of ``zcio._memory.Memory`` over several blocks: a virtual byte
space in which every component's bytes lie end to end.  ``load``/``store`` of a value
inside one component ask that component's own memory (a mapping guards itself); a
value straddling components is decoded from, or written as, pieces.  ``segments`` gives
the zero-copy views ``zcio._views`` copies and compares.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import _guard, _views
from ._errors import IllegalReferenceCountError, UnsupportedOperationError
from ._memory import Memory

if TYPE_CHECKING:
    from ._byte_buffer import ByteBuffer

__all__ = ["CompositeMemory"]


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
    plain = False  # every access asks the memory (see Memory.plain)
    __slots__ = ("direct", "_pieces", "_segs", "_starts", "_ends", "_owned")

    def __init__(self) -> None:
        super().__init__(memoryview(b""))
        self.direct = False
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
        return first

    def view(self, start: int, stop: int, readonly: bool = False) -> memoryview:
        """No single memoryview exists: a composite's buffers ask ``load``, ``store``,
        ``read`` and ``segments``; ``CompositeBuffer.memoryview`` makes the choice."""
        raise UnsupportedOperationError("a composite's memory has no single view")

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

    def _piece_at(self, v: int, n: int) -> tuple[ByteBuffer, int] | None:
        """The piece holding all of bytes ``[v, v + n)`` and ``v``'s offset in its
        memory block, or None when they straddle pieces."""
        if self.released:
            raise self.released_error()
        k = bisect_right(self._starts, v) - 1
        if v + n > self._ends[k]:
            return None
        piece = self._pieces[k]
        return piece, piece._off + v - self._starts[k]

    def load(self, st: struct.Struct, at: int) -> Any:
        """The value at ``at``: asked of the piece's own memory (a mapping guards it),
        or decoded from a copy when it straddles pieces."""
        found = self._piece_at(at, st.size)
        if found is None:
            return st.unpack(self.read(at, st.size))[0]
        piece, j = found
        return piece._mem.load(st, j)

    def store(self, at: int, raw: bytes) -> None:
        """Write ``raw`` at ``at``: through the piece's memory, or piece by piece."""
        found = self._piece_at(at, len(raw))
        if found is None:
            _views.copy(self.segments(at, len(raw)), [memoryview(raw)])
            return
        piece, j = found
        piece._mem.store(j, raw)

    def read(self, at: int, n: int) -> bytes:
        """A copy of bytes ``[at, at + n)`` (a value straddling pieces; a typed view)."""
        return _guard.join(self.segments(at, n))

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
