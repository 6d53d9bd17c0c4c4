"""FileChannel: java.nio.channels.FileChannel with Python names.

A file channel reads and writes a file through ByteBuffers, at its own position
(relative calls) or at a given one (positional calls, which leave the channel's
position alone).  It maps regions of the file into memory (``map``), locks regions
(``lock``/``try_lock``), and moves bytes to and from other channels inside the kernel
(``transfer_to``/``transfer_from``).

Every call raises ClosedChannelError once the channel is closed; reads on a channel
not opened for reading raise NonReadableChannelError, writes NonWritableChannelError.
A call that fails in the kernel with nothing moved raises the builtin OSError and
changes no position.  A channel closed by another thread during a call makes that
call raise AsynchronousCloseError with the exact count it moved (a blocked ``lock()``
is woken); no byte ever reaches a file that took over the descriptor's number (see
``zcio._channel``).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
from collections.abc import Callable, Sequence
from typing import Any, overload

from . import _syscalls
from ._byte_buffer import ByteBuffer
from ._channel import (
    MAX_POSITION,
    Channel,
    accelerate,
    check_position,
    counting_operation,
    operation,
)
from ._composite import CompositeBuffer
from ._errors import (
    AlignmentError,
    IllegalArgumentError,
    NonReadableChannelError,
    NonWritableChannelError,
)
from ._file_lock import MAX_LOCK_SIZE, FileLock, acquire
from ._guard import io_call
from ._iovec import HOW_FILE, check_buffers, gather, remaining_pairs, scatter
from ._mapped import MapMode, MappedByteBuffer, map_file
from ._memory import buffer_address
from ._metrics import metrics
from ._syscalls import retry
from ._transfer import TransferSource, TransferTarget, transfer_from, transfer_to

__all__ = ["FileChannel", "OpenOption"]


class OpenOption(enum.Enum):
    """Java's StandardOpenOption, plus DIRECT (O_DIRECT, Java's ExtendedOpenOption)."""

    READ = "read"
    WRITE = "write"
    APPEND = "append"
    CREATE = "create"
    CREATE_NEW = "create_new"
    TRUNCATE_EXISTING = "truncate_existing"
    DELETE_ON_CLOSE = "delete_on_close"
    SYNC = "sync"
    DSYNC = "dsync"
    DIRECT = "direct"


def _open_flags(options: set[OpenOption]) -> tuple[int, bool, bool]:
    """``open(2)`` flags and (readable, writable) for a set of options, with Java's rules."""
    opt = OpenOption  # a short local alias keeps the rules readable
    append = opt.APPEND in options
    writable = opt.WRITE in options or append
    readable = opt.READ in options or not writable
    if readable and append:
        raise IllegalArgumentError("READ + APPEND not allowed")
    if append and opt.TRUNCATE_EXISTING in options:
        raise IllegalArgumentError("APPEND + TRUNCATE_EXISTING not allowed")
    flags = os.O_CLOEXEC | (os.O_RDWR if readable and writable else
                            os.O_WRONLY if writable else os.O_RDONLY)
    if writable:  # CREATE, CREATE_NEW and TRUNCATE_EXISTING are ignored for reading only
        if opt.CREATE_NEW in options:
            flags |= os.O_CREAT | os.O_EXCL
        elif opt.CREATE in options:
            flags |= os.O_CREAT
        if opt.TRUNCATE_EXISTING in options:
            flags |= os.O_TRUNC
    if append:
        flags |= os.O_APPEND
    if opt.SYNC in options:
        flags |= os.O_SYNC
    if opt.DSYNC in options:
        flags |= os.O_DSYNC
    if opt.DIRECT in options:
        flags |= os.O_DIRECT
    return flags, readable, writable


def _plain_position(position: object) -> bool:
    """Whether a read/write may take the compiled path with this ``position``: None, or
    an exact int that ``check_position`` would accept (anything else is checked, and
    refused, by the Python path)."""
    return position is None or (type(position) is int and 0 <= position <= MAX_POSITION)


class FileChannel(Channel):
    """A channel for reading, writing, mapping and locking a file."""

    def __init__(self, fd: int, readable: bool, writable: bool, path: str | None = None,
                 owns_fd: bool = True) -> None:
        self._init_fd(fd, owns_fd)
        self._readable = readable
        self._writable = writable
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        self._append = bool(flags & os.O_APPEND)
        self._direct = bool(flags & os.O_DIRECT)
        self._dio: tuple[int, int, str] | None = None
        self._path = path
        self._locks: list[FileLock] = []

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *options: OpenOption,
             mode: int = 0o666) -> FileChannel:
        """Open ``path`` with Java's StandardOpenOption rules.

        No option means READ; APPEND implies WRITE; READ with APPEND, or APPEND with
        TRUNCATE_EXISTING, raise IllegalArgumentError; CREATE/CREATE_NEW/
        TRUNCATE_EXISTING apply only when writing.  DELETE_ON_CLOSE unlinks the file
        right after opening it, as the JDK does on Unix: the data lives until the
        channel closes.  ``mode`` is the permission of a created file (less the umask).

        Syscalls: ``open(2)`` (and ``unlink(2)`` for DELETE_ON_CLOSE).
        """
        opts = set(options)
        for o in opts:
            if not isinstance(o, OpenOption):
                raise TypeError(f"options must be OpenOption members, not {o!r}")
        flags, readable, writable = _open_flags(opts)
        fd = os.open(path, flags, mode)
        if OpenOption.DELETE_ON_CLOSE in opts:
            # Best effort, as the JDK: the spec cannot promise to unlink the right file.
            with contextlib.suppress(OSError):
                os.unlink(path)
        return cls(fd, readable, writable, os.fspath(path))

    @classmethod
    def from_fd(cls, fd: int) -> FileChannel:
        """A channel on an already open descriptor, which the caller keeps.

        The channel works on a duplicate (``dup(2)``): it shares the file position and
        the open file's locks, and closing either descriptor leaves the other usable.
        Readable/writable come from the descriptor's access mode.
        """
        access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        dup = os.dup(fd)
        os.set_inheritable(dup, False)
        return cls(dup, access in (os.O_RDONLY, os.O_RDWR), access in (os.O_WRONLY, os.O_RDWR))

    @classmethod
    def from_file(cls, file: Any) -> FileChannel:
        """A channel on a Python file object's descriptor (flushed first); see from_fd."""
        if hasattr(file, "flush"):
            file.flush()
        return cls.from_fd(file.fileno())

    # -- checks --------------------------------------------------------------------

    def _readable_fd(self) -> int:
        fd = self.fileno()
        if not self._readable:
            raise NonReadableChannelError("channel not opened for reading")
        return fd

    def _writable_fd(self) -> int:
        fd = self.fileno()
        if not self._writable:
            raise NonWritableChannelError("channel not opened for writing")
        return fd

    def is_readable(self) -> bool:
        """Whether the channel was opened for reading."""
        return self._readable

    def is_writable(self) -> bool:
        """Whether the channel was opened for writing."""
        return self._writable

    def is_append(self) -> bool:
        """Whether writes always go to the end of the file (O_APPEND)."""
        return self._append

    def is_direct(self) -> bool:
        """Whether I/O bypasses the page cache (O_DIRECT); see ``dio_alignment``."""
        return self._direct

    @operation
    def dio_alignment(self) -> tuple[int, int, str]:
        """O_DIRECT alignment: (memory alignment, offset/length alignment, source)."""
        if self._dio is None:
            self._dio = _syscalls.dio_alignment(self.fileno())
        return self._dio

    def _check_direct(self, views: Sequence[memoryview], position: int) -> None:
        """For O_DIRECT: refuse misaligned I/O up front, naming the alignment needed."""
        mem_align, off_align, source = self.dio_alignment()
        if position % off_align:
            raise AlignmentError(
                f"O_DIRECT position {position} is not a multiple of {off_align} ({source})"
            )
        for v in views:
            if len(v) % off_align:
                raise AlignmentError(f"O_DIRECT length {len(v)} is not a multiple of "
                                     f"{off_align} ({source}); use ByteBuffer.aligned_slice")
            address = buffer_address(v) if len(v) else 0
            if address % mem_align:
                raise AlignmentError(
                    f"O_DIRECT buffer address {address:#x} is not aligned to {mem_align} "
                    f"({source}); use a direct buffer's aligned_slice({mem_align})"
                )

    # -- reading ---------------------------------------------------------------------

    @overload
    def read(self, dst: ByteBuffer, position: int | None = None) -> int: ...
    @overload
    def read(self, dsts: Sequence[ByteBuffer], offset: int = 0, length: int | None = None,
             /) -> int: ...
    @counting_operation
    def read(self, dst: Any, position: Any = None, length: Any = None) -> int:
        """Read into ``dst`` from the channel's position, or from ``position``.

        * ``read(dst)``: up to ``dst.remaining()`` bytes from the channel's position;
          both positions advance by the count.
        * ``read(dst, position)``: from ``position``; the channel's position stays.
        * ``read(dsts, offset=0, length=None)``: scatter read into
          ``dsts[offset:offset+length]`` in order (at most IOV_MAX buffers per call).
          A CompositeBuffer ``dst`` is scattered into, one iovec per component.

        Returns the count, 0 if ``dst`` has no room, -1 at end of file (a ``position``
        at or past the end included).  A read-only ``dst``: IllegalArgumentError.

        Syscalls: one ``readv(2)`` or ``preadv(2)`` (``zcio._iovec.scatter``; one plain
        buffer: one ``read(2)``/``pread(2)``, compiled); may read fewer bytes than asked,
        and 0 on a non-blocking descriptor with nothing to read (EAGAIN).  On error
        nothing moves.
        """
        io, fd = _syscalls.NATIVE_IO, self._fd
        if (io is not None and length is None and fd >= 0 and self._readable
                and not self._direct and _plain_position(position)):
            # one plain buffer: one read/pread, compiled (anything else: NotImplemented)
            n: int = io.io_read(fd, dst, -1 if position is None else position, HOW_FILE,
                           "file_read")
            if n is not NotImplemented:
                return n
        if isinstance(dst, ByteBuffer):
            bufs = [dst]
            if position is not None:  # Java checks the argument before the channel
                position = check_position(position, "position")
                if length is not None:
                    raise TypeError("read(dst, position) takes no length")
        else:
            bufs = check_buffers(dst, 0 if position is None else position, length)
            position = None
        fd, sys_ = self._readable_fd(), _syscalls.SYS
        return scatter(remaining_pairs(bufs, writable=True), lambda views: self._vectored(
            fd, views, position, sys_.readv, sys_.preadv, "file_read"))

    # -- writing -------------------------------------------------------------------

    @overload
    def write(self, src: ByteBuffer, position: int | None = None) -> int: ...
    @overload
    def write(self, srcs: Sequence[ByteBuffer], offset: int = 0, length: int | None = None,
              /) -> int: ...
    @counting_operation
    def write(self, src: Any, position: Any = None, length: Any = None) -> int:
        """Write ``src``'s remaining bytes at the channel's position, or at ``position``.

        * ``write(src)``: the channel's position advances by the count (in append mode
          the write goes to the end of the file first).
        * ``write(src, position)``: at ``position``, growing the file if it lies past the
          end; the channel's position stays.  (In append mode Linux appends anyway.)
        * ``write(srcs, offset=0, length=None)``: gather write of
          ``srcs[offset:offset+length]``, IOV_MAX buffers per ``writev``, going on while
          the kernel takes each chunk whole.
        * a CompositeBuffer ``src`` (with or without ``position``) is such a gather
          write of its components' remaining bytes: one ``writev``/``pwritev`` per
          IOV_MAX of them, nothing copied.

        Returns the count; each source's position advances, buffer by buffer, by what
        the kernel took.

        Syscalls: ``write(2)``, ``pwrite(2)``, ``writev(2)`` or ``pwritev(2)``; may write
        fewer bytes than given (a full disk, a signal).  On error nothing moves, or for a gather
        write, the count so far is returned and the error comes again on the next call.
        """
        io, fd = _syscalls.NATIVE_IO, self._fd
        if (io is not None and length is None and fd >= 0 and self._writable
                and not self._direct and _plain_position(position)):
            # one plain buffer: one write/pwrite, compiled (anything else: NotImplemented)
            n: int = io.io_write(fd, src, -1 if position is None else position, HOW_FILE,
                            "file_write")
            if n is not NotImplemented:
                return n
        sys_ = _syscalls.SYS
        if position is not None and isinstance(src, ByteBuffer):  # before the channel
            position = check_position(position, "position")
        if isinstance(src, ByteBuffer) and not isinstance(src, CompositeBuffer):
            fd = self._writable_fd()
            view = src._rest()
            if not view:
                return 0
            if self._direct:
                self._check_direct([view], self._position_for_io(position))
            n = (io_call(retry, sys_.write, fd, view) if position is None
                 else io_call(retry, sys_.pwrite, fd, view, position))
            metrics.record("file_write", user_bytes=n)
            src._pos += n
            return n
        if isinstance(src, ByteBuffer):  # a composite: gather-written, at ``position`` if given
            bufs = [src]
        else:
            bufs = check_buffers(src, 0 if position is None else position, length)
            position = None
        fd = self._writable_fd()
        if io is not None and not isinstance(src, ByteBuffer) and not self._direct:
            n = io.io_gather(fd, bufs, -1, HOW_FILE, "file_write")  # plain: one writev
            if n is not NotImplemented:
                return n
        return gather(remaining_pairs(bufs, writable=False), lambda views, total: self._vectored(
            fd, views, None if position is None else position + total, sys_.writev,
            sys_.pwritev, "file_write"))

    def _vectored(self, fd: int, views: list[memoryview], at: int | None,
                  relative: Callable[..., int], positional: Callable[..., int],
                  path: str) -> int:
        """One readv/writev (``at`` None) or preadv/pwritev at ``at``, O_DIRECT-checked
        and counted under ``path``: the call the iovec loops make for a file."""
        if self._direct:
            self._check_direct(views, self._position_for_io(at))
        n = (io_call(retry, relative, fd, views) if at is None
             else io_call(retry, positional, fd, views, at))
        metrics.record(path, user_bytes=n)
        return n

    # -- position, size ----------------------------------------------------------------

    def _position_for_io(self, position: int | None) -> int:
        return os.lseek(self.fileno(), 0, os.SEEK_CUR) if position is None else position

    @overload
    def position(self) -> int: ...
    @overload
    def position(self, new_position: int) -> FileChannel: ...
    @operation
    def position(self, new_position: int | None = None) -> int | FileChannel:
        """Get the channel's position (the file size in append mode), or set it.

        Setting past the end is allowed: a later write grows the file (a hole between).
        Negative: IllegalArgumentError.  Syscalls: ``lseek(2)`` (``fstat`` in append).
        """
        fd = self.fileno()
        if new_position is None:
            if self._append:
                return os.fstat(fd).st_size
            return os.lseek(fd, 0, os.SEEK_CUR)
        new_position = check_position(new_position, "position")
        os.lseek(fd, new_position, os.SEEK_SET)
        return self

    @operation
    def size(self) -> int:
        """The file's current size.  Syscalls: ``fstat(2)``."""
        return os.fstat(self.fileno()).st_size

    @operation
    def truncate(self, size: int) -> FileChannel:
        """Cut the file to ``size`` if it is longer; a position past ``size`` becomes ``size``.

        A larger ``size`` leaves the file alone (Java's rule).  Negative:
        IllegalArgumentError.  Syscalls: ``ftruncate(2)``, ``lseek(2)``.
        """
        self.fileno()
        size = check_position(size, "size")
        fd = self._writable_fd()
        if size < os.fstat(fd).st_size:
            os.ftruncate(fd, size)
        if os.lseek(fd, 0, os.SEEK_CUR) > size:
            os.lseek(fd, size, os.SEEK_SET)
        return self

    @operation
    def force(self, meta_data: bool = True) -> None:
        """Flush the file's data (and metadata if ``meta_data``) to the device.

        Syscalls: ``fsync(2)``, or ``fdatasync(2)`` without metadata.
        """
        fd = self.fileno()
        if meta_data:
            os.fsync(fd)
        else:
            os.fdatasync(fd)

    # -- locks -------------------------------------------------------------------------

    @operation
    def _lock(self, position: int, size: int, shared: bool, wait: bool) -> FileLock | None:
        if shared:
            self._readable_fd()
        else:
            self._writable_fd()
        lock = acquire(self, position, size, shared, wait)
        if lock is not None:
            self._locks = [k for k in self._locks if k.is_valid()] + [lock]
            if not self.is_open():  # closed meanwhile (the caller raises): not held
                lock._invalidate()
        return lock

    def lock(self, position: int = 0, size: int = MAX_LOCK_SIZE, shared: bool = False
             ) -> FileLock:
        """Lock ``[position, position + size)``, waiting while another process holds it.

        Shared locks need a readable channel, exclusive ones a writable channel.  A
        negative position or size, or ``position + size`` past 2**63 - 1 (so the
        default size, "to the end however the file grows", needs position 0):
        IllegalArgumentError.  A range overlapping a lock this process holds:
        OverlappingFileLockError.  Closing the channel releases its locks.
        Syscalls: ``fcntl(F_OFD_SETLKW)``.
        """
        lock = self._lock(position, size, shared, wait=True)
        assert lock is not None
        return lock

    def try_lock(self, position: int = 0, size: int = MAX_LOCK_SIZE, shared: bool = False
                 ) -> FileLock | None:
        """As ``lock``, but None at once if another process holds a conflicting lock.

        Syscalls: ``fcntl(F_OFD_SETLK)``.
        """
        return self._lock(position, size, shared, wait=False)

    def _on_close(self) -> None:
        for lock in self._locks:
            lock._invalidate()  # unlocked before the close: a mapping may keep the file open
        self._locks = []

    # -- mapping and transfers -------------------------------------------------------

    @operation
    def map(self, mode: MapMode, position: int, size: int, reserve: bool = False
            ) -> MappedByteBuffer:
        """Map ``[position, position + size)`` of the file; see ``zcio.MappedByteBuffer``.

        Past the end, the file grows sparse to ``position + size`` (Java's rule);
        ``reserve=True`` also reserves disk blocks for the mapped part past the old end
        (``fallocate``).  See ``zcio._mapped.map_file`` for the checks and syscalls.
        """
        mapped = map_file(self, mode, position, size, reserve)
        if not self.is_open():  # closed meanwhile (the caller raises): unmap it now
            mapped.release()
        return mapped

    def transfer_to(self, position: int, count: int, target: TransferTarget) -> int:
        """Move up to ``count`` bytes from ``position`` to ``target`` inside the kernel.

        Indices: this channel's position does not move; the target's advances by the
        count returned.  See ``zcio._transfer.transfer_to`` for the paths tried, the
        rules and the ``Syscalls:``.
        """
        return transfer_to(self, position, count, target)

    def transfer_from(self, src: TransferSource, position: int, count: int) -> int:
        """Move up to ``count`` bytes from ``src`` into this file at ``position``.

        Indices: this channel's position does not move; the source's advances by the
        count returned.  See ``zcio._transfer.transfer_from`` for the paths tried, the
        rules and the ``Syscalls:``.
        """
        return transfer_from(self, src, position, count)

    def __repr__(self) -> str:
        state = f"fd={self._fd}" if self._fd >= 0 else "closed"
        return f"zcio.FileChannel[{self._path or 'fd'} {state}]"


# read/write(buf[, position]) of one plain buffer, compiled whole (native/chan.c).
accelerate(FileChannel, "read", "file_read", what="FileChannel.read", into=True,
           how=HOW_FILE, max_args=2, state={"_readable": True, "_direct": False})
accelerate(FileChannel, "write", "file_write", what="FileChannel.write", into=False,
           how=HOW_FILE, max_args=2, state={"_writable": True, "_direct": False})
