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

A mapping that reaches past the end of the file grows the file first, sparse
(``ftruncate``), as Java: mapping 4 KiB at 1 GiB of an empty file takes no disk.
``map(..., reserve=True)`` also reserves the blocks of the mapped range past the old
end with ``fallocate``, so that a later write into the mapping cannot hit a full disk
as a SIGBUS; ``reserved()`` says whether it could.  A failed ``map`` leaves the file's
size and blocks as they were.

**Truncation by someone else.** If another process (or this one) truncates the file
while it is mapped, touching a mapped page that lies wholly past the new end makes the
kernel send SIGBUS; so does a write into a hole of a sparse file when the file system
is full.  Uncaught, SIGBUS kills the Python process.  Java 17 throws InternalError from
its own guarded copies; zcio does the same with ``zcio._guard`` (a small C module) and
raises MappedRegionError (errno EFAULT), and the process goes on.  Guarded: every access
zcio makes, that is, gets and puts of every type (relative, absolute, bulk), copies
between a mapped buffer and any other, ``compact``, ``equals``/``compare_to``/
``mismatch``/``hash_code`` with either side mapped, ``bytes()``, typed views and
composites over a mapping, ``load()``, and channel writes from it and reads into it,
``vmsplice`` too (the kernel returns EFAULT there, translated in one place,
``_guard.io_error``).  A failed get or put moves no index; a failed bulk copy may have
filled part of its destination.  ``ByteBuffer.wrap`` of another library's file mapping
gets the same guard (``zcio._memory.WrappedMappingMemory``).  Not guarded: memory zcio
hands out raw,
``memoryview()`` or numpy over it, which still dies of SIGBUS.  Without the C module
(no compiler at install, or ``ZCIO_PURE_PYTHON=1``) nothing is guarded; ``zcio info``
says which.  Locking the file (``lock()``) or agreeing on sizes between processes
avoids the fault altogether.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import mmap
import os
import weakref
from typing import TYPE_CHECKING

from . import _guard, _syscalls
from ._buffer import check_int
from ._direct import MAPPED, PAGE_SIZE, round_to_pages
from ._errors import (
    IllegalArgumentError,
    IndexOutOfBoundsError,
    NonReadableChannelError,
    NonWritableChannelError,
)
from ._indirect import IndirectByteBuffer
from ._memory import GuardedMemory, buffer_address, unmap
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


class MappedMemory(GuardedMemory):
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
        if unmap(mm):
            if mm is not None:
                metrics.record("file_map", syscalls=1, operations=0)
            self._finalizer()


class MappedByteBuffer(IndirectByteBuffer):
    """A direct ByteBuffer whose content is a mapped region of a file.

    Slices and duplicates of it are MappedByteBuffers over the same mapping.  Every
    access it makes goes through ``zcio._guard`` (see the module docstring): its values
    through ``MappedMemory.load``/``store`` (an IndirectByteBuffer), its bulk copies
    and comparisons through ``zcio._views``, as every buffer's.
    """

    __slots__ = ()
    _made_by = "a MappedByteBuffer maps a file: FileChannel.map(mode, position, size)"

    # -- the mapping ------------------------------------------------------------------

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

        MappedRegionError if a page has no file behind it any more (truncated).
        Syscalls: ``madvise(MADV_WILLNEED)``, then page faults as the pages are read.
        ReleasedBufferError if the buffer is released, before or during the call (the
        closed mmap refuses; nothing touches unmapped memory).
        """
        mm, lo, hi = self._pages(0, self._cap)
        if mm is None:
            return self
        try:
            mm.madvise(mmap.MADV_WILLNEED, lo, hi - lo)
            _guard.touch(self._mv, PAGE_SIZE)  # one read fault per page not yet resident
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
        """``zcio.MappedByteBuffer[pos=.. lim=.. cap=..]`` (``R`` if read-only), the
        shape of every buffer's repr; ``mode()`` tells the mapping's mode."""
        ro = "R" if self._ro else ""
        return f"zcio.MappedByteBuffer{ro}[pos={self._pos} lim={self._lim} cap={self._cap}]"


def map_file(channel: FileChannel, mode: MapMode, position: int, size: int,
             reserve: bool = False) -> MappedByteBuffer:
    """``FileChannel.map``: check as Java does, grow the file if needed, map, wrap.

    Checks in Java's order: ClosedChannelError; IllegalArgumentError for a negative
    position, a negative size, or a ``position + size`` past 2**63 - 1 (before any
    syscall); NonWritableChannelError if ``mode`` is not READ_ONLY and the channel is
    not writable; NonReadableChannelError if it is not readable.  A mapping that reaches
    past the end of the file grows it to ``position + size`` with ``ftruncate``, sparse,
    as Java (an empty mapping too); a channel not open for writing cannot, and raises
    OSError(EINVAL) with the numbers.  ``reserve=True`` also reserves disk blocks
    (``fallocate``) for the part of the mapped range past the old end, so that writing
    there through the mapping cannot meet a full disk as SIGBUS; ``reserved()`` tells
    whether it could (False where the file system cannot, EOPNOTSUPP).  Sizes over
    2 GiB are allowed (Java refuses them).

    Syscalls: ``fstat``; when growing, ``fallocate`` (``reserve``) or ``ftruncate``;
    ``mmap``.  If the grow or the ``mmap`` fails, the file is cut back to its old size
    (``ftruncate``), which frees any block reserved past it: size and blocks are as
    before the call.
    """
    if not isinstance(mode, MapMode):
        raise TypeError(f"mode must be a MapMode, not {mode!r}")
    fd = channel.fileno()  # the JDK's order: open, arguments, then the modes
    # Plain ints from here: numpy's (np.uint16...) would wrap in the arithmetic below.
    position, size = check_int(position, "position"), check_int(size, "size")
    if position < 0 or size < 0:
        raise IllegalArgumentError(f"negative position {position} or size {size}")
    end = position + size
    if end > _LONG_MAX:
        raise IllegalArgumentError(f"position {position} + size {size} overflows 2**63 - 1")
    if mode is not MapMode.READ_ONLY and not channel.is_writable():
        raise NonWritableChannelError(f"{mode.value} mapping needs a writable channel")
    if not channel.is_readable():
        raise NonReadableChannelError("mapping needs a readable channel")
    reserved = False
    file_size = os.fstat(fd).st_size
    grown = end > file_size
    if grown:  # Java grows the file even for an empty mapping
        if not channel.is_writable():
            raise OSError(errno.EINVAL, f"cannot map [{position}, {end}) of a "
                          f"{file_size}-byte file from a channel not open for writing")
        reserved = reserve and _grow_reserved(fd, max(position, file_size), end, file_size)
        if not reserved:
            try:
                os.ftruncate(fd, end)
            except BaseException:
                _shrink_back(fd, file_size)
                raise
    try:
        mem = MappedMemory(fd, mode, position, size, reserved)
    except BaseException:
        if grown:
            _shrink_back(fd, file_size)
        raise
    if size:
        metrics.record("file_map", syscalls=1)  # mmap; munmap is counted when it runs
    return MappedByteBuffer._make(mem, 0, size, 0, size, ro=mode is MapMode.READ_ONLY)


_LONG_MAX = (1 << 63) - 1


def _grow_reserved(fd: int, start: int, end: int, old_size: int) -> bool:
    """Reserve ``[start, end)`` with ``fallocate`` (which grows the file to ``end``).

    False, with nothing changed, where the file system cannot (EOPNOTSUPP, ENOSYS);
    any other failure cuts the file back to ``old_size`` and raises.
    """
    try:
        _syscalls.SYS.fallocate(fd, start, end - start)
    except OSError as e:
        _shrink_back(fd, old_size)  # a failed fallocate may have kept some blocks
        if e.errno in (errno.EOPNOTSUPP, errno.ENOSYS):
            return False
        raise
    return True


def _shrink_back(fd: int, old_size: int) -> None:
    """Undo a grow: cut the file back to ``old_size`` if it is longer now."""
    with contextlib.suppress(OSError):  # the original error is the one to report
        if os.fstat(fd).st_size > old_size:
            os.ftruncate(fd, old_size)
