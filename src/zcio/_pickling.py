"""Pickling every buffer kind: protocol 5 out of band, copying below it.

A buffer pickles the bytes of ``[position, limit)`` and its state, as ``slice()`` sees
them: the loaded buffer has position 0, limit = capacity = the bytes carried, the mark
at 0 if it was at the position (a mark below the position is outside what is carried:
undefined), and the same byte order, read-only flag and kind.  The reference count of
the original is untouched; the loaded buffer starts at 1 and is released as usual.

With protocol 5 the bytes travel as a :class:`pickle.PickleBuffer` over the buffer's
memory: a pickler with a ``buffer_callback`` (Dask, Ray, ``multiprocessing`` with a
custom reducer) hands it on without a copy; without one, pickle writes it in band
(``bytearray`` if writable, ``bytes`` if read-only), which is the pickle's own copy.
Protocols 0-4, ``copy.copy`` and ``copy.deepcopy`` carry a ``bytes`` copy.

What each kind becomes on load (B: the bytes handed back to ``pickle.loads``), and the
copies zcio makes:

* heap: heap, ``ByteBuffer.wrap(B)``: no copy; one if B is read-only (``bytes``) and
  the buffer was writable.
* direct: direct, ``allocate_direct`` (counted in the ``direct`` pool), B copied in:
  one copy (anonymous memory cannot adopt bytes it did not map).  A shared buffer
  too: a pickle cannot carry its descriptor (multiprocessing's pickler passes it by
  descriptor instead, see ``zcio._shared``).
* mapped: heap.  The file and its mapping belong to this process, and a pickler reads
  a PickleBuffer unguarded (a truncated file would kill the process with SIGBUS), so
  the bytes are copied once through zcio's SIGBUS guard on dump, into a ``bytearray``
  (``bytes`` if read-only), and the loaded buffer is a heap buffer over that copy as
  it arrives: one copy.  (Loading it as direct memory would copy it a second time;
  ``is_direct()`` is the one property that does not survive the trip.)
* pooled: a buffer of the loading process's ``PooledAllocator.default()`` (a slot is
  process-local; the kind, strict reference count and return on release, is kept):
  one copy.
* composite: a composite of one buffer per component holding part of
  ``[position, limit)``, each loaded by its own kind (empty parts are not carried).
* typed view: the same view class, order and read-only flag over a ByteBuffer loaded
  from the carried bytes; a view of a composite carries a copy of its span (no single
  block holds it), made on dump and loaded as heap over it: one copy.

So the protocol-5 path copies each block at most once, between the dump and the load:
never for heap memory, once for direct and pooled memory (on load), once for a mapping
or a typed view of a composite (on dump).  The one exception is the transport's: a
writable buffer whose bytes come back read-only (``bytes``) must be copied on load to
be writable, and the heap rule above adds that copy.

Every copy zcio makes here is counted in ``zcio.metrics`` under ``"pickle_copy"``
(``operations``: copies, ``user_bytes``: bytes copied); allocations made on load show
in ``buffer_pools()``.  ``copy.copy`` and ``copy.deepcopy`` both give an independent
buffer equal to a pickle round trip: Java's buffers are not Cloneable, and a copy that
shared the memory without holding a reference would outlive ``release()`` (use
``duplicate()`` / ``retained_duplicate()`` to share).  A released buffer refuses to
pickle with its released error.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

from ._byte_buffer import ByteBuffer, heap_class
from ._composite import CompositeBuffer, CompositeMemory
from ._guard import copy as _guarded_copy
from ._mapped import MappedMemory
from ._memory import HeapMemory, Memory
from ._metrics import metrics
from ._order import ByteOrder
from ._pool import PooledAllocator, PooledMemory
from ._typed import TypedBuffer

if TYPE_CHECKING:
    from ._buffer import Buffer

__all__ = ["COPY_PATH", "reduce"]

#: The metrics path under which pickling's copies are counted.
COPY_PATH = "pickle_copy"

# What the bytes are loaded into.
_HEAP, _DIRECT, _POOLED = "heap", "direct", "pooled"


def _count_copy(n: int) -> None:
    metrics.record(COPY_PATH, syscalls=0, user_bytes=n)


def reduce(buf: Buffer, protocol: int) -> tuple[Any, ...]:
    """``buf.__reduce_ex__(protocol)``: a callable and its arguments (see module doc).

    ReleasedBufferError (IllegalReferenceCountError if strict) for a released buffer;
    no index, content or reference count of ``buf`` changes.
    """
    buf._check_memory()
    mark = 0 if buf._mark >= 0 and buf._mark == buf._pos else -1
    if isinstance(buf, CompositeBuffer):  # the bytes, never the buffers: copy.copy
        parts = tuple((*_bytes_of(p, protocol), p._ro) for p in buf.nio_buffers())
        return _rebuild_composite, (parts, buf._ro, mark, buf._order)
    if isinstance(buf, ByteBuffer):
        return _rebuild_bytes, (*_bytes_of(buf, protocol), buf._ro, mark, buf._order)
    if isinstance(buf, TypedBuffer):
        s = buf._size
        start, stop = buf._off + buf._pos * s, buf._off + max(buf._lim, buf._pos) * s
        payload, kind = _payload(buf._mem, start, stop, buf._ro, protocol)
        return _rebuild_typed, (type(buf), payload, kind, buf._ro, mark, buf._order)
    raise TypeError(f"cannot pickle {type(buf).__name__}")  # no other kind exists


def _bytes_of(buf: ByteBuffer, protocol: int) -> tuple[Any, str]:
    """The payload and kind of ``[position, limit)`` of a (non-composite) ByteBuffer."""
    start, stop = buf._off + buf._pos, buf._off + max(buf._lim, buf._pos)
    return _payload(buf._mem, start, stop, buf._ro, protocol)


def _payload(mem: Memory, start: int, stop: int, ro: bool, protocol: int) -> tuple[Any, str]:
    """Bytes ``[start, stop)`` of ``mem`` for the pickle, and the kind to load them as."""
    if isinstance(mem, (CompositeMemory, MappedMemory)):
        # No single block (a typed view of a composite), or one a pickler must not read
        # unguarded (a mapping): copied here, loaded as heap over the copy.
        return _pickled(_copy_of(mem, start, stop, ro), protocol), _HEAP
    kind = _POOLED if isinstance(mem, PooledMemory) else _DIRECT if mem.direct else _HEAP
    return _pickled(mem.view(start, stop, ro), protocol), kind


def _copy_of(mem: Memory, start: int, stop: int, ro: bool) -> bytes | bytearray:
    """Bytes ``[start, stop)`` of ``mem`` copied once through the SIGBUS guard: ``bytes``
    for a read-only buffer, else a ``bytearray``, so that the loaded buffer can be made
    writable over it without a second copy (pickle loads an in-band writable
    PickleBuffer as a bytearray)."""
    n = stop - start
    if ro:
        data: bytes | bytearray = mem.read(start, n)
    else:
        data = bytearray(n)
        at = 0
        for seg in mem.segments(start, n):
            _guarded_copy(data, at, seg, 0, len(seg))
            at += len(seg)
    _count_copy(n)
    return data


def _pickled(data: Any, protocol: int) -> Any:
    """``data`` as carried: a PickleBuffer from protocol 5, else bytes (copied)."""
    if protocol >= 5:
        return pickle.PickleBuffer(data)
    if isinstance(data, memoryview):
        data = data.tobytes()
        _count_copy(len(data))
    return data


def _load(payload: Any, kind: str, ro: bool) -> ByteBuffer:
    """A ByteBuffer of ``kind`` over (heap) or holding a copy of the bytes ``payload``."""
    if isinstance(payload, pickle.PickleBuffer):
        payload = payload.raw()  # format "B": what array() returns for a heap buffer
    if kind == _HEAP:
        mem = HeapMemory.of(payload)  # guarded if the frame lies in a mapped file
        if mem.readonly and not ro:  # a writable buffer cannot be loaded over bytes
            mem.release()
            mem = HeapMemory(bytearray(payload))
            _count_copy(mem.size)
        return heap_class(ByteBuffer, mem)._make(mem, 0, mem.size, 0, mem.size, ro=ro)
    with memoryview(payload) as view:
        n = view.nbytes
        if kind == _POOLED:
            buf = PooledAllocator.default().allocate(n)
        else:
            buf = ByteBuffer.allocate_direct(n)
        try:
            buf.put(0, view)
        except BaseException:
            buf.release()
            raise
    _count_copy(n)
    return buf.as_read_only_buffer() if ro else buf


def _rebuild_bytes(payload: Any, kind: str, ro: bool, mark: int,
                   order: ByteOrder) -> ByteBuffer:
    """Load a ByteBuffer pickled by :func:`reduce`."""
    buf = _load(payload, kind, ro).order(order)
    return buf.mark() if mark == 0 else buf


def _rebuild_typed(cls: type[TypedBuffer[Any]], payload: Any, kind: str, ro: bool,
                   mark: int, order: ByteOrder) -> TypedBuffer[Any]:
    """Load a typed view pickled by :func:`reduce`: the same class over loaded bytes."""
    bb = _load(payload, kind, ro).order(order)
    view: TypedBuffer[Any] = bb._typed(cls, cls._size)
    return view.mark() if mark == 0 else view


def _rebuild_composite(parts: tuple[tuple[Any, str, bool], ...], ro: bool, mark: int,
                       order: ByteOrder) -> CompositeBuffer:
    """Load a composite pickled by :func:`reduce`: one buffer per component part."""
    components: list[ByteBuffer] = []
    try:
        for payload, kind, part_ro in parts:
            components.append(_load(payload, kind, part_ro))
    except BaseException:
        for c in components:
            c.release()
        raise
    buf: CompositeBuffer = CompositeBuffer.of(*components)
    if ro and not buf.is_read_only():  # no component to carry the flag: empty
        buf = buf.as_read_only_buffer()
    buf.order(order)
    return buf.mark() if mark == 0 else buf
