"""Every kind of ByteBuffer the contract and property suites run against, in one place.

A :class:`BufferKind` builds buffers of one kind with a given capacity and content and
says what the kind is (direct, read-only, array-backed, byte order).  To run the whole
contract suite against a new kind (mapped, pooled, composite...), append one entry to
``BASE_KINDS``: its little-endian twin is derived automatically.

Three ways to get a buffer:

* ``make(capacity, content)``: the kind's natural state right after creation (for
  ``wrap(arr, off, len)`` the position is ``off`` and the limit ``off + len``);
* ``fresh(capacity, content)``: position 0, limit = capacity, no mark;
* ``fresh_with_writer(capacity, content)``: a fresh buffer plus a writable buffer sharing
  its memory index for index (the buffer itself when writable; the writable sibling a
  read-only view was made from; ``None`` when no writer exists, as for ``wrap(bytes)``).

Content always lies at indexes ``[0, capacity)``; read-only kinds get it through a
writable sibling before being made read-only.
"""

from __future__ import annotations

import array
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from zcio import (
    ByteBuffer,
    ByteOrder,
    FileChannel,
    MapMode,
    OpenOption,
    PooledAllocator,
    ReadOnlyBufferError,
    SocketChannel,
    UnsupportedOperationError,
)
from zcio._composite import CompositeBuffer
from zcio._pool import size_class

__all__ = [
    "ALL_KINDS",
    "BASE_KINDS",
    "COMPOSITE_KINDS",
    "DIRECT_KINDS",
    "HEAP_KINDS",
    "MAPPED_KINDS",
    "READ_ONLY_KINDS",
    "STRICT_POOLED",
    "WRITABLE_KINDS",
    "BufferKind",
    "kind_by_name",
    "pattern",
]

# (capacity, content) -> (buffer in its natural state, writer sharing its memory or None)
Builder = Callable[[int, bytes], tuple[ByteBuffer, ByteBuffer | None]]

SLICE_START = 5  # where the slice kinds start inside their larger parent
_WRAP_OFFSET = 3  # wrap(arr, offset, length) kinds: offset ...
_WRAP_TAIL = 2  # ... and bytes left after offset + length


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` distinct-looking bytes, half of them above 127 (negative as Java bytes)."""
    return bytes((i * 37 + 11 + seed * 101) & 0xFF for i in range(n))


def _content(capacity: int, content: bytes | None) -> bytes:
    if content is None:
        return bytes(capacity)
    if len(content) != capacity:
        raise ValueError(f"content of {len(content)} bytes for capacity {capacity}")
    return content


def _wrap_bounds(capacity: int) -> tuple[int, int]:
    off = min(_WRAP_OFFSET, capacity)
    length = max(capacity - off - _WRAP_TAIL, 0)
    return off, off + length


def _natural_full(capacity: int) -> tuple[int, int]:
    return 0, capacity


def _natural_duplicate(capacity: int) -> tuple[int, int]:
    return capacity // 2, capacity  # the duplicated parent had its position moved


@dataclass(frozen=True)
class BufferKind:
    """One way of making a ByteBuffer, and what the contract expects of it."""

    name: str
    build: Builder = field(repr=False)
    is_direct: bool
    is_read_only: bool
    array_type: type | None = None  # type of array() when has_array
    array_offset: int = 0  # array_offset() of a buffer of this kind, when has_array
    page_aligned: bool = False  # index 0 lies on a page boundary
    natural_bounds: Callable[[int], tuple[int, int]] = field(default=_natural_full, repr=False)
    order: ByteOrder = ByteOrder.BIG_ENDIAN
    #: One block of memory behind the bytes; False for a composite of several, which
    #: has no array, no single address and no zero-copy memoryview of all its bytes.
    contiguous: bool = True
    strict: bool = False  # Netty's reference counts: a release at zero raises
    direct_blocks: int = 1  # entries one buffer of the kind adds to the ``direct`` pool
    pool: str = "direct"  # the pool of buffer_pools() those entries are counted in
    pooled: bool = False  # release returns (some of) the memory to a PooledAllocator
    #: The class ``repr`` names when it is not Heap/DirectByteBuffer (a mapping's).
    repr_class: str | None = None

    def __str__(self) -> str:
        return self.name

    @property
    def has_array(self) -> bool:
        """Java's ``hasArray()``: heap, not read-only, and one block."""
        return not self.is_direct and not self.is_read_only and self.contiguous

    @property
    def no_array_error(self) -> type[Exception]:
        """What ``array()`` raises without an array (on a read-only duplicate too):
        ReadOnlyBufferError for a heap buffer (Java), else UnsupportedOperationError."""
        return UnsupportedOperationError if self.is_direct or not self.contiguous else (
            ReadOnlyBufferError
        )

    @property
    def class_name(self) -> str:
        """The class name ``repr`` shows, as Java's ``toString``."""
        return self._class_name(self.is_read_only)

    @property
    def read_only_class_name(self) -> str:
        """The class name of its ``as_read_only_buffer()``."""
        return self._class_name(True)

    def _class_name(self, read_only: bool) -> str:
        if self.repr_class is not None:
            kind = self.repr_class
        elif not self.contiguous:
            kind = "CompositeBuffer"
        else:
            kind = ("Direct" if self.is_direct else "Heap") + "ByteBuffer"
        return kind + ("R" if read_only else "")

    def little_endian(self) -> BufferKind:
        """The same kind, with LITTLE_ENDIAN set on each buffer made."""
        return replace(self, name=self.name + "-LE", order=ByteOrder.LITTLE_ENDIAN)

    def make(self, capacity: int, content: bytes | None = None) -> ByteBuffer:
        """A buffer in the kind's natural state right after creation."""
        buf, _ = self.build(capacity, _content(capacity, content))
        return buf.order(self.order)

    def fresh_with_writer(
        self, capacity: int, content: bytes | None = None
    ) -> tuple[ByteBuffer, ByteBuffer | None]:
        """A fresh buffer (position 0, limit capacity) and its writer (see module doc)."""
        buf, writer = self.build(capacity, _content(capacity, content))
        buf.clear().order(self.order)
        if writer is not None and writer is not buf:
            writer.clear()
        return buf, writer

    def fresh(self, capacity: int, content: bytes | None = None) -> ByteBuffer:
        """A buffer with position 0, limit = capacity, no mark, in the kind's order."""
        return self.fresh_with_writer(capacity, content)[0]


# -- builders: each returns BIG_ENDIAN buffers; the kind applies its order -------------


def _heap(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    buf = ByteBuffer.allocate(capacity)
    buf.put(0, content)
    return buf, buf


def _wrap_of(factory: Callable[[bytes], Any]) -> Builder:
    def build(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
        buf = ByteBuffer.wrap(factory(content))
        return buf, buf

    return build


def _wrap_offset(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    off, lim = _wrap_bounds(capacity)
    buf = ByteBuffer.wrap(bytearray(content), off, lim - off)
    return buf, buf


def _direct(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    buf = ByteBuffer.allocate_direct(capacity)
    buf.put(0, content)
    return buf, buf


def _shared(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    buf = ByteBuffer.allocate_shared(capacity)
    buf.put(0, content)
    return buf, buf


def _shared_received(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    """A shared buffer as another process gets it: through a Unix socket."""
    a, b = socket.socketpair()
    with SocketChannel.from_socket(a) as out, SocketChannel.from_socket(b) as into, \
            ByteBuffer.allocate_shared(capacity) as sent:
        sent.put(0, content)
        out.send_buffer(sent)
        buf = into.receive_buffer()
    assert buf is not None
    return buf, buf


def _heap_slice(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    parent = ByteBuffer.allocate(capacity + SLICE_START + 4)
    parent.put(0, b"\xee" * parent.capacity()).put(SLICE_START, content)
    parent.position(SLICE_START).limit(SLICE_START + capacity)
    buf = parent.slice()
    return buf, buf


def _direct_slice(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    parent = ByteBuffer.allocate_direct(capacity + SLICE_START + 4)
    parent.put(0, b"\xee" * parent.capacity()).put(SLICE_START, content)
    buf = parent.slice(SLICE_START, capacity)
    return buf, buf


def _duplicate_of(builder: Builder) -> Builder:
    def build(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
        parent, _ = builder(capacity, content)
        buf = parent.position(capacity // 2).duplicate()
        return buf, buf

    return build


def _read_only_of(builder: Builder) -> Builder:
    def build(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
        writer, _ = builder(capacity, content)
        return writer.as_read_only_buffer(), writer

    return build


def _wrap_bytes(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    return ByteBuffer.wrap(bytes(content)), None


def _numpy(content: bytes) -> Any:
    return np.frombuffer(content, dtype=np.uint8).copy()


# -- pooled kinds (PooledAllocator): slots are recycled, so their content is NOT zeroed;
# every builder puts the whole content (zeros included) and dirties what lies around it.

_DIRT = 0xEE
#: A small allocator for the huge kind: anything above its 64 KiB chunk is unpooled.
SMALL_POOL = PooledAllocator(chunk_size=64 << 10, name="pooled-small")


def _pooled(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    buf = PooledAllocator.default().allocate(capacity)
    buf.put(0, content)
    return buf, buf


def _pooled_slice(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    parent = PooledAllocator.default().allocate(capacity + SLICE_START + 4)
    parent.put(0, bytes([_DIRT]) * parent.capacity()).put(SLICE_START, content)
    buf = parent.slice(SLICE_START, capacity)
    return buf, buf


def _pooled_odd_class(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    """A buffer smaller than its size class (8 bytes in the 16 class, 100 in the 112...),
    in a slot a previous user filled with dirt up to the class size: the slack past the
    capacity must stay out of sight."""
    alloc = PooledAllocator.default()
    whole = size_class(capacity)[1]
    previous = alloc.allocate(whole)
    previous.put(0, bytes([_DIRT]) * whole)
    previous.release()  # into this thread's cache: the next allocate takes it back
    buf = alloc.allocate(capacity)
    buf.put(0, content)
    return buf, buf


def _pooled_huge(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    """A huge (unpooled) allocation of a small allocator, seen through ``slice(0, n)``:
    the contract's capacities are all far below any chunk."""
    parent = SMALL_POOL.allocate(SMALL_POOL.chunk_size + 1 + capacity)
    parent.put(capacity, bytes([_DIRT]) * (parent.capacity() - capacity))
    buf = parent.slice(0, capacity).put(0, content)
    return buf, buf


# -- mapped kinds (FileChannel.map): the memory is a file's pages, every access guarded.
# The file is unlinked once mapped and the channel closed: the mapping alone keeps the
# pages, and its release() unmaps them, so nothing is left behind.


def _mapped_file(size: int, content: bytes) -> ByteBuffer:
    fd, path = tempfile.mkstemp(prefix="zcio-mapped-kind-")
    os.close(fd)
    try:
        with FileChannel.open(path, OpenOption.READ, OpenOption.WRITE) as ch:
            buf = ch.map(MapMode.READ_WRITE, 0, size)
    finally:
        os.unlink(path)
    buf.put(0, bytes([_DIRT]) * size)
    return buf


def _mapped(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    buf = _mapped_file(capacity, content).put(0, content)
    return buf, buf


def _mapped_slice(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    parent = _mapped_file(capacity + SLICE_START + 4, content)
    buf = parent.slice(SLICE_START, capacity).put(0, content)
    return buf, buf


BASE_KINDS: list[BufferKind] = [
    BufferKind("heap", _heap, False, False, bytearray),
    BufferKind("wrap-bytearray", _wrap_of(bytearray), False, False, bytearray),
    BufferKind(
        "wrap-bytearray-offset",
        _wrap_offset,
        False,
        False,
        bytearray,
        natural_bounds=_wrap_bounds,
    ),
    BufferKind("wrap-numpy", _wrap_of(_numpy), False, False, np.ndarray),
    BufferKind("wrap-array", _wrap_of(lambda c: array.array("B", c)), False, False, array.array),
    BufferKind(
        "wrap-memoryview", _wrap_of(lambda c: memoryview(bytearray(c))), False, False, memoryview
    ),
    BufferKind("direct", _direct, True, False, page_aligned=True),
    BufferKind("shared", _shared, True, False, page_aligned=True, pool="shared",
               repr_class="SharedByteBuffer"),
    BufferKind("shared-received", _shared_received, True, False, page_aligned=True,
               pool="shared", repr_class="SharedByteBuffer"),
    BufferKind("heap-slice", _heap_slice, False, False, bytearray, array_offset=SLICE_START),
    BufferKind("direct-slice", _direct_slice, True, False),
    BufferKind(
        "heap-duplicate",
        _duplicate_of(_heap),
        False,
        False,
        bytearray,
        natural_bounds=_natural_duplicate,
    ),
    BufferKind(
        "direct-duplicate",
        _duplicate_of(_direct),
        True,
        False,
        page_aligned=True,
        natural_bounds=_natural_duplicate,
    ),
    BufferKind("heap-read-only", _read_only_of(_heap), False, True),
    BufferKind("direct-read-only", _read_only_of(_direct), True, True, page_aligned=True),
    BufferKind("wrap-bytes", _wrap_bytes, False, True),
    BufferKind("pooled-huge", _pooled_huge, True, False, page_aligned=True, strict=True),
]

#: Pooled kinds with Netty's strict reference counts (a second release raises).
STRICT_POOLED: list[BufferKind] = [
    BufferKind("pooled", _pooled, True, False, strict=True, pooled=True),
    BufferKind("pooled-slice", _pooled_slice, True, False, strict=True, pooled=True),
    BufferKind("pooled-odd-class", _pooled_odd_class, True, False, strict=True, pooled=True),
]
BASE_KINDS += STRICT_POOLED

#: File mappings: direct, but counted in the ``mapped`` pool (``direct_blocks=0``).
MAPPED_KINDS: list[BufferKind] = [
    BufferKind("mapped", _mapped, True, False, page_aligned=True, direct_blocks=0, pool="mapped",
               repr_class="MappedByteBuffer"),
    BufferKind("mapped-slice", _mapped_slice, True, False, direct_blocks=0, pool="mapped",
               repr_class="MappedByteBuffer"),
    BufferKind("mapped-read-only", _read_only_of(_mapped), True, True, page_aligned=True,
               direct_blocks=0, pool="mapped", repr_class="MappedByteBuffer"),
]
BASE_KINDS += MAPPED_KINDS

# -- composite kinds (CompositeBuffer): the content split over components of uneven
# lengths, most of them contributing only a window ([position, limit)) of a larger buffer
# whose other bytes are dirt the composite must never show.


def _split(capacity: int) -> tuple[int, int, int]:
    """Three uneven lengths adding up to ``capacity`` (8: 2, 5, 1; 19: 4, 10, 5)."""
    a = capacity // 4
    b = min(capacity - a, capacity // 2 + 1)
    return a, b, capacity - a - b


def _window(buf: ByteBuffer, content: bytes) -> ByteBuffer:
    """``buf`` dirtied, ``content`` at SLICE_START, [position, limit) around it."""
    buf.put(0, bytes([_DIRT]) * buf.capacity()).put(SLICE_START, content)
    return buf.limit(SLICE_START + len(content)).position(SLICE_START)


#: Pooled components come from a class with few slots per slab (a new slab is cheap).
_POOLED_COMPONENT = 16 << 10


def _composite_heap(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    a, b, _ = _split(capacity)
    buf = CompositeBuffer.of(
        ByteBuffer.allocate(a).put(0, content[:a]),
        _window(ByteBuffer.allocate(b + SLICE_START + 3), content[a : a + b]),
        ByteBuffer.wrap(bytearray(content[a + b :])),
    )
    return buf, buf


def _composite_direct(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    """A direct buffer, a window of a pooled one and a window of another direct one."""
    a, b, c = _split(capacity)
    buf = CompositeBuffer.of(
        ByteBuffer.allocate_direct(a).put(0, content[:a]),
        _window(PooledAllocator.default().allocate(_POOLED_COMPONENT), content[a : a + b]),
        _window(ByteBuffer.allocate_direct(c + SLICE_START + 3), content[a + b :]),
    )
    return buf, buf


def _composite_slice(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
    """A slice of a heap | direct | heap composite, cutting its first and last component."""
    dirt = bytes([_DIRT])
    whole = dirt * SLICE_START + content + dirt * 4
    cut1, cut2 = SLICE_START + capacity // 3, SLICE_START + 2 * capacity // 3
    parent = CompositeBuffer.of(
        ByteBuffer.wrap(bytearray(whole[:cut1])),
        ByteBuffer.allocate_direct(cut2 - cut1).put(0, whole[cut1:cut2]),
        ByteBuffer.wrap(bytearray(whole[cut2:])),
    )
    buf = parent.slice(SLICE_START, capacity)
    return buf, buf


def _composite(name: str, build: Builder, is_direct: bool, is_read_only: bool,
               **extra: Any) -> BufferKind:
    return BufferKind(name, build, is_direct, is_read_only, contiguous=False, strict=True,
                      **extra)


COMPOSITE_KINDS: list[BufferKind] = [
    _composite("composite-heap", _composite_heap, False, False),
    _composite("composite-direct", _composite_direct, True, False, direct_blocks=3,
               pooled=True),  # two direct buffers and the pooled slot's slab
    _composite("composite-slice", _composite_slice, False, False),
    _composite("composite-read-only", _read_only_of(_composite_heap), False, True),
]
BASE_KINDS += COMPOSITE_KINDS

ALL_KINDS: list[BufferKind] = [
    k for base in BASE_KINDS for k in (base, base.little_endian())
]
WRITABLE_KINDS = [k for k in ALL_KINDS if not k.is_read_only]
READ_ONLY_KINDS = [k for k in ALL_KINDS if k.is_read_only]
#: Kinds counted in the ``direct`` pool (a mapping is direct but counted as ``mapped``).
DIRECT_KINDS = [k for k in ALL_KINDS if k.is_direct and k.direct_blocks]
HEAP_KINDS = [k for k in ALL_KINDS if not k.is_direct]


def kind_by_name(name: str) -> BufferKind:
    """The kind called ``name`` (KeyError if none)."""
    for k in ALL_KINDS:
        if k.name == name:
            return k
    raise KeyError(name)
