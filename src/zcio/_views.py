"""Copies and comparisons over lists of memoryviews: the one place buffers move bytes.

Every buffer shows any byte range ``[i, i + n)`` as a list of zero-copy memoryviews
(``ByteBuffer._views``): one view for contiguous memory (heap, direct, pooled, mapped),
one per component touched for a composite.  The bulk get/put, ``compact``, the
comparisons and ``hash_code`` of every kind are written once, here, over such lists.
Every access goes through ``zcio._guard`` (a mapped view raises MappedRegionError
instead of dying of SIGBUS); for one view on each side a call is a single ``memmove``
or ``memcmp``.

Overlap: Java copies "as if through a temporary".  A one-view copy is a ``memmove``,
so it needs nothing more; a piecewise copy whose source and destination share memory
goes through a real temporary, counted in ``zcio.metrics`` under :data:`COPY_PATH`
(only composites have several views, so only they can make that copy).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from . import _guard
from ._memory import buffer_address
from ._metrics import metrics

__all__ = [
    "COPY_PATH",
    "copy",
    "move",
    "mismatch",
    "compare",
    "hash_code",
    "total",
    "staged",
    "joined",
]

#: The metrics path under which the temporaries of composite copies are counted.
COPY_PATH = "composite_copy"


def total(views: Sequence[memoryview]) -> int:
    """The bytes in ``views``."""
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
                _guard.copy(d, do, s, so, take)
                do += take
                so += take
            if so == len(s):
                si, so = si + 1, 0


def joined(views: Sequence[memoryview]) -> bytes:
    """The bytes of ``views`` in one copy, counted under :data:`COPY_PATH`."""
    data = _guard.join(views)
    metrics.record(COPY_PATH, syscalls=0, user_bytes=len(data))
    return data


def staged(src: Sequence[memoryview]) -> list[memoryview]:
    """``src`` through a temporary (counted under :data:`COPY_PATH`)."""
    return [memoryview(joined(src))]


def copy(dst: Sequence[memoryview], src: Sequence[memoryview]) -> None:
    """Copy ``src`` into ``dst`` (equal totals) as if through a temporary (Java's rule).

    One view each: a ``memmove``.  Piecewise, overlapping memory could be overwritten
    before it is read, so it then goes through a real temporary (:func:`staged`).
    """
    if len(dst) == 1 and len(src) == 1:
        d, s = dst[0], src[0]
        _guard.copy(d, 0, s, 0, len(s))
        return
    if _overlap(dst, src):
        src = staged(src)
    _scatter(dst, src)


def move(dst: Sequence[memoryview], src: Sequence[memoryview],
         whole: Sequence[memoryview]) -> None:
    """``compact``'s copy: ``src`` lies after ``dst`` within ``whole``, the views of one
    buffer; bytes move front to back, which is safe unless two views of ``whole`` alias
    each other (composite components sharing memory): then through a temporary."""
    if (len(dst) > 1 or len(src) > 1) and _overlaps_itself(whole):
        src = staged(src)
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
    if len(a) == 1 and len(b) == 1:
        return _guard.mismatch(a[0], b[0])
    i = ai = bi = ao = bo = 0
    while i < n:
        x, y = a[ai], b[bi]
        take = min(len(x) - ao, len(y) - bo, n - i)
        if take:
            d = _guard.mismatch(x[ao : ao + take], y[bo : bo + take])
            if d >= 0:
                return i + d
            i, ao, bo = i + take, ao + take, bo + take
        if ao == len(x):
            ai, ao = ai + 1, 0
        if bo == len(y):
            bi, bo = bi + 1, 0
    return -1


def mismatch(a: Sequence[memoryview], b: Sequence[memoryview]) -> int:
    """Java's ``mismatch`` of two byte ranges: the index of the first differing byte,
    -1 if equal, the shorter length if one is a prefix of the other."""
    la, lb = total(a), total(b)
    n = min(la, lb)
    i = _first_mismatch(a, b, n)
    if i < 0 and la != lb:
        return n
    return i


def _signed_at(views: Sequence[memoryview], i: int) -> int:
    for v in views:
        if i < len(v):
            b = _guard.read(v, i, 1)[0]
            return b - 256 if b > 127 else b
        i -= len(v)
    raise IndexError(i)  # pragma: no cover - callers pass an index below the total


def compare(a: Sequence[memoryview], b: Sequence[memoryview]) -> int:
    """Java's ``compareTo`` of two byte ranges: the difference of the first differing
    bytes as signed bytes, else of the lengths."""
    la, lb = total(a), total(b)
    i = _first_mismatch(a, b, min(la, lb))
    if i >= 0:
        return _signed_at(a, i) - _signed_at(b, i)
    return la - lb


def hash_code(views: Sequence[memoryview]) -> int:
    """Java's ``hashCode``: ``h = 31*h + b`` (signed bytes) from the last byte back."""
    h = 1
    for seg in reversed(views):
        for v in reversed(_guard.read(seg)):
            h = (31 * h + (v - 256 if v > 127 else v)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h
