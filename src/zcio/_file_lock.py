"""File locks, as java.nio.channels.FileLock.

zcio locks with open-file-description locks (``F_OFD_SETLK``/``F_OFD_SETLKW``): they
belong to the channel's open file, not to the process, so closing some other
descriptor of the same file does not drop them (the classic trap of POSIX ``F_SETLK``
locks, which Java uses).  Like the JVM, zcio keeps a process-wide table of the ranges it
holds per file and refuses an overlapping request from this process with
OverlappingFileLockError instead of letting it deadlock on itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import threading
from typing import TYPE_CHECKING, Any, Self

from ._buffer import check_int
from ._errors import IllegalArgumentError, OverlappingFileLockError
from ._fork import fork_safe

if TYPE_CHECKING:
    from ._file_channel import FileChannel

__all__ = ["FileLock", "MAX_LOCK_SIZE"]

#: Java's Long.MAX_VALUE: a lock of this size covers the file however it grows.
MAX_LOCK_SIZE = (1 << 63) - 1

# struct flock on Linux x86_64/aarch64: short l_type, short l_whence, off_t l_start,
# off_t l_len, pid_t l_pid (must be 0 for OFD locks), padded to 32 bytes.
_FLOCK = struct.Struct("hhqqi4x")

_table_lock = fork_safe(threading.Lock())
_held: dict[tuple[int, int], list[FileLock]] = {}


def _flock(kind: int, position: int, size: int) -> bytes:
    return _FLOCK.pack(kind, os.SEEK_SET, position, 0 if size == MAX_LOCK_SIZE else size, 0)


class FileLock:
    """A lock on a region of a file, held by one channel until released.

    Valid from acquisition until ``release()``, ``close()``, the end of a ``with`` block,
    or the channel's close.
    """

    def __init__(self, channel: FileChannel, position: int, size: int, shared: bool) -> None:
        self._channel = channel
        self._position = position
        self._size = size
        self._shared = shared
        self._valid = True
        self._key: tuple[int, int] = (0, 0)
        self._fd = -1  # the descriptor the kernel lock was taken on; -1: none taken

    def channel(self) -> FileChannel:
        """The channel that holds the lock."""
        return self._channel

    def position(self) -> int:
        """Where the locked region starts."""
        return self._position

    def size(self) -> int:
        """How many bytes the region covers (MAX_LOCK_SIZE: to the end, however it grows)."""
        return self._size

    def is_shared(self) -> bool:
        """Whether the lock is shared (a read lock) rather than exclusive."""
        return self._shared

    def is_valid(self) -> bool:
        """Whether the lock is still held."""
        return self._valid and self._channel.is_open()

    def overlaps(self, position: int, size: int) -> bool:
        """Whether the region ``[position, position + size)`` overlaps this lock's."""
        position, size = check_int(position, "position"), check_int(size, "size")
        return position + size > self._position and self._position + self._size > position

    def release(self) -> None:
        """Release the lock; again on a released lock, nothing happens.

        ClosedChannelError once the channel is closed (as Java, even for a lock
        already released): closing released it.
        Syscalls: ``fcntl(F_OFD_SETLK, F_UNLCK)``.
        """
        self._channel.fileno()  # ClosedChannelError
        if not self._valid:
            return
        self._valid = False
        _forget(self)
        channel = self._channel
        if channel._begin():  # the number stays the channel's meanwhile
            try:
                if channel._fd >= 0:  # else closing unlocked it (_invalidate)
                    self._unlock()
            finally:
                channel._end()

    close = release

    def _unlock(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_UNLCK, self._position, self._size))

    def _invalidate(self) -> None:
        """The channel is closing (its descriptor still open): release the lock.

        The kernel would drop an OFD lock only with the last reference to the open file,
        and a mapping made through the channel is one: unlock explicitly, as the JDK does
        before it closes.
        """
        self._valid = False
        _forget(self)
        with contextlib.suppress(OSError):  # the close drops it if nothing else holds it
            self._unlock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._channel.is_open():  # closing the channel released it already
            self.release()

    def __repr__(self) -> str:
        kind = "shared" if self._shared else "exclusive"
        state = "valid" if self.is_valid() else "invalid"
        return f"zcio.FileLock[{self._position}:{self._size} {kind} {state}]"


def _forget(lock: FileLock) -> None:
    with _table_lock:
        held = _held.get(lock._key, [])
        if lock in held:
            held.remove(lock)
        if not held:
            _held.pop(lock._key, None)


def acquire(
    channel: FileChannel, position: int, size: int, shared: bool, wait: bool
) -> FileLock | None:
    """Take a lock for ``channel``: block (``wait``) or return None if another holds it.

    Syscalls: ``fcntl(F_OFD_SETLKW)`` when waiting, else ``fcntl(F_OFD_SETLK)``.
    TypeError for a non-integer position or size, before anything is taken.
    """
    position, size = check_int(position, "position"), check_int(size, "size")
    if position < 0 or size < 0:
        raise IllegalArgumentError(f"negative lock position {position} or size {size}")
    if position + size > MAX_LOCK_SIZE:
        # Java's "Negative position + size": the region must fit a signed 64-bit offset,
        # so a size of MAX_LOCK_SIZE ("to the end, however it grows") needs position 0.
        raise IllegalArgumentError(f"position {position} + size {size} exceeds 2**63 - 1")
    fd = channel.fileno()
    st = os.fstat(fd)
    lock = FileLock(channel, position, size, shared)
    lock._key = (st.st_dev, st.st_ino)
    with _table_lock:  # reserve the range first, as the JVM's FileLockTable does
        held = _held.setdefault(lock._key, [])
        for other in held:
            if other.overlaps(position, size):
                raise OverlappingFileLockError(
                    f"[{position}, +{size}) overlaps {other!r} held by this process"
                )
        held.append(lock)
    if size == 0:
        # An empty region locks nothing.  fcntl would read l_len 0 as "to the end of
        # the file", which zcio's table (like the JVM's) does not; so no kernel lock.
        return lock
    kind = fcntl.F_RDLCK if shared else fcntl.F_WRLCK
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK,
                    _flock(kind, position, size))
    except (BlockingIOError, PermissionError):  # EAGAIN/EACCES: someone else holds it
        _forget(lock)
        if wait:
            raise
        return None
    except BaseException:
        _forget(lock)
        raise
    lock._fd = fd
    return lock
