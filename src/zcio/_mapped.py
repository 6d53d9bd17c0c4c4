"""Memory-mapped files: MapMode and MappedByteBuffer, as java.nio.

``FileChannel.map(mode, position, size)`` maps a region of a file and returns a direct
ByteBuffer over it.  Any position works: zcio maps from the page boundary below it and
slices.  Mappings are counted in the ``mapped`` pool (not against the direct-memory
cap, as in Java) from ``mmap`` to ``munmap``.  Unlike Java, a mapping can be unmapped
deterministically with ``release()`` or a ``with`` block; slices and views keep it
alive otherwise, and the unmap waits for any memoryview the user exported further.

Modes:

* READ_ONLY: writes raise ReadOnlyBufferError.
* READ_WRITE: writes reach the file (``MAP_SHARED``); ``force()`` flushes them.
* PRIVATE: copy-on-write (``MAP_PRIVATE``): writes are private to this mapping and
  never reach the file; other writers' changes may or may not show through.

A writable mapping that reaches past the end of the file grows the file first, and
reserves its blocks with ``fallocate`` so that a later write into the mapping cannot
hit a full disk as a SIGBUS; where the file system cannot reserve (EOPNOTSUPP) the file
is grown sparse with ``ftruncate`` and ``reserved()`` says so.

**Truncation by someone else.** If another process (or this one) truncates the file
while it is mapped, touching a mapped page that lies wholly past the new end makes the
kernel send SIGBUS, which kills the Python process: neither the JVM nor CPython can
turn it into an exception safely.  zcio cannot prevent it; lock the file (``lock()``)
or agree on sizes between processes.  The test suite shows it in a subprocess.
"""

from __future__ import annotations

import enum
import errno
import mmap
import os
import weakref
from typing import TYPE_CHECKING

from . import _syscalls
from ._buffer import check_int
from ._byte_buffer import ByteBuffer
from ._direct import MAPPED, PAGE_SIZE, round_to_pages
from ._errors import (
    IllegalArgumentError,
    IndexOutOfBoundsError,
    NonReadableChannelError,
    NonWritableChannelError,
)
from ._memory import Memory, buffer_address
from ._metrics import metrics

if TYPE_CHECKING:
    from ._file_channel import FileChannel

__all__ = ["MapMode", "MappedByteBuffer", "map_file"]


class MapMode(enum.Enum):
    """How a file region is mapped; see the module docstring."""

    READ_ONLY = "READ_ONLY"
    READ_WRITE = "READ_WRITE"
    PRIVATE = "PRIVATE"


_ACCESS = {
    MapMode.READ_ONLY: mmap.ACCESS_READ,
    MapMode.READ_WRITE: mmap.ACCESS_WRITE,
    MapMode.PRIVATE: mmap.ACCESS_COPY,
}


def _unaccount(capacity: int, used: int, counted: bool) -> None:
    if counted:
        MAPPED.remove(capacity, used)


class MappedMemory(Memory):
    """A file mapping: ``mmap`` of the page-aligned region around the requested one."""

    direct = True
    __slots__ = ("_mmap", "_finalizer", "_address", "mode", "delta", "reserved")

    def __init__(self, fd: int, mode: MapMode, position: int, size: int,
                 reserved: bool) -> None:
        self.mode = mode
        self.reserved = reserved
        self.delta = position % mmap.ALLOCATIONGRANULARITY
        length = size + self.delta
        mm: mmap.mmap | None = None
        if size:
            # Access modes, not flags/prot: CPython exports a prot=PROT_READ mapping as a
            # writable buffer unless access=ACCESS_READ, and a write would then segfault.
            access = _ACCESS[mode]  # READ: MAP_SHARED+PROT_READ, WRITE: MAP_SHARED, COPY: PRIVATE
            mm = mmap.mmap(fd, length, access=access, offset=position - self.delta)
            base = memoryview(mm)[self.delta : self.delta + size]
        else:
            base = memoryview(bytearray())
        if mode is MapMode.READ_ONLY:
            base = base.toreadonly()
        self._mmap = mm
        super().__init__(base)
        self._address = buffer_address(base) if size else 0
        # An empty mapping maps nothing and, as in Java, is not counted in the pool.
        used = round_to_pages(length) if size else 0
        if mm is not None:
            MAPPED.add(size, used)
        target: object = mm if mm is not None else self
        self._finalizer = weakref.finalize(target, _unaccount, size, used, mm is not None)
        self._finalizer.atexit = False

    def address(self) -> int:
        if self.released:
            raise self.released_error()
        return self._address

    def page_range(self, start: int, stop: int) -> tuple[int, int]:
        """Offsets in the mmap of the pages covering bytes ``[start, stop)`` of the region.

        The start is page-aligned (msync and madvise need it); the end is clamped to
        the mapping's length, which mincore/msync round up to its last page anyway.
        """
        lo = (self.delta + start) // PAGE_SIZE * PAGE_SIZE
        hi = min(round_to_pages(self.delta + stop), self.delta + self.size)  # the mmap's end
        return lo, hi

    def mmap_object(self) -> mmap.mmap | None:
        if self.released:
            raise self.released_error()
        return self._mmap

    def _free(self) -> None:
        mm, self._mmap = self._mmap, None
        if mm is None:
            self._finalizer()
            return
        try:
            mm.close()  # munmap; refused while an exported view is alive
        except BufferError:
            return  # deferred until that view is gone; accounting stays until then
        metrics.record("file_map", syscalls=1, operations=0)
        self._finalizer()


class MappedByteBuffer(ByteBuffer):
    """A direct ByteBuffer whose content is a mapped region of a file.

    Slices and duplicates of it are MappedByteBuffers over the same mapping.
    """

    __slots__ = ()

    def _mapped(self) -> MappedMemory:
        mem = self._mem
        assert isinstance(mem, MappedMemory)
        return mem

    def mode(self) -> MapMode:
        """The mode the region was mapped with."""
        return self._mapped().mode

    def reserved(self) -> bool:
        """Whether blocks the mapping grew the file by were reserved (fallocate)."""
        return self._mapped().reserved

    def _pages(self, index: int, length: int) -> tuple[mmap.mmap | None, int, int]:
        mem = self._mapped()
        lo, hi = mem.page_range(self._off + index, self._off + index + length)
        return mem.mmap_object(), lo, hi

    def load(self) -> MappedByteBuffer:
        """Bring the whole buffer into memory: advise, then touch one byte per page.

        Syscalls: ``madvise(MADV_WILLNEED)``, then page faults as the pages are read.
        ReleasedBufferError if the buffer is released, before or during the call (the
        closed mmap refuses; nothing touches unmapped memory).
        """
        mm, lo, hi = self._pages(0, self._cap)
        if mm is None:
            return self
        try:
            mm.madvise(mmap.MADV_WILLNEED, lo, hi - lo)
            touched = 0
            for offset in range(lo, hi, PAGE_SIZE):
                touched ^= mm[offset]  # one read fault per page not yet resident
        except ValueError as e:  # "mmap closed or invalid": a release() raced this
            raise self._mem.translate(e) from None
        return self

    def is_loaded(self) -> bool:
        """Whether every page of the buffer is resident in memory (a hint, as in Java).

        Syscalls: ``mincore(2)``; ReleasedBufferError if the buffer is released, before
        or during the call (mincore then fails with ENOMEM on the unmapped range).
        """
        mm, lo, hi = self._pages(0, self._cap)
        if mm is None:
            return True
        mem = self._mapped()
        try:
            vec = _syscalls.SYS.mincore(mem.address() - mem.delta + lo, hi - lo)
        except OSError as e:
            raise mem.translate(e) from None
        return all(b & 1 for b in vec)

    def force(self, index: int | None = None, length: int | None = None) -> MappedByteBuffer:
        """Write changes in ``[index, index + length)`` (default: all) to the file.

        Only READ_WRITE mappings have anything to write; for the others this does
        nothing, as in Java.  IndexOutOfBoundsError if the range exceeds the capacity.
        Syscalls: ``msync(MS_SYNC)`` over the pages covering the range.
        """
        index = 0 if index is None else check_int(index, "index")
        length = self._cap - index if length is None else check_int(length, "length")
        if index < 0 or length < 0 or index + length > self._cap:
            raise IndexOutOfBoundsError(
                f"force range [{index}, {index} + {length}) out of bounds for {self._cap}"
            )
        if self.mode() is not MapMode.READ_WRITE or length == 0:
            return self
        mm, lo, hi = self._pages(index, length)
        if mm is not None:
            mm.flush(lo, hi - lo)
        return self

    def __repr__(self) -> str:
        return (f"zcio.MappedByteBuffer[{self.mode().value} pos={self._pos} lim={self._lim} "
                f"cap={self._cap}]")


def map_file(channel: FileChannel, mode: MapMode, position: int, size: int) -> MappedByteBuffer:
    """``FileChannel.map``: check as Java does, grow the file if needed, map, wrap.

    NonWritableChannelError if ``mode`` is not READ_ONLY and the channel is not
    writable; NonReadableChannelError if it is not readable; IllegalArgumentError for a
    negative position or size.  A mapping past the end of the file grows it (reserving
    blocks); a read-only channel cannot, and raises OSError(EINVAL) with the numbers.

    Syscalls: ``fstat``, ``fallocate``/``ftruncate`` when growing, ``mmap``.
    """
    if not isinstance(mode, MapMode):
        raise TypeError(f"mode must be a MapMode, not {mode!r}")
    fd = channel.fileno()  # the JDK's order: open, arguments, then the modes
    if position < 0 or size < 0:
        raise IllegalArgumentError(f"negative position {position} or size {size}")
    if mode is not MapMode.READ_ONLY and not channel.is_writable():
        raise NonWritableChannelError(f"{mode.value} mapping needs a writable channel")
    if not channel.is_readable():
        raise NonReadableChannelError("mapping needs a readable channel")
    reserved = True
    end = position + size
    file_size = os.fstat(fd).st_size
    if end > file_size:  # Java grows the file even for an empty mapping
        if not channel.is_writable():
            raise OSError(errno.EINVAL, f"cannot map [{position}, {end}) of a "
                          f"{file_size}-byte file from a channel not open for writing")
        try:
            _syscalls.SYS.fallocate(fd, file_size, end - file_size)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            os.ftruncate(fd, end)  # the file system cannot reserve: grow it sparse
            reserved = False
    mem = MappedMemory(fd, mode, position, size, reserved)
    if size:
        metrics.record("file_map", syscalls=1)  # mmap; munmap is counted when it runs
    return MappedByteBuffer._make(mem, 0, size, 0, size, ro=mode is MapMode.READ_ONLY)
