"""What every channel shares: one file descriptor, closed exactly once.

A channel is open from creation until ``close()``; afterwards every I/O call raises
ClosedChannelError.  ``close()`` is idempotent.  The descriptor is set to -1 *before*
the kernel's ``close(2)`` runs, so a second close is a no-op and a stale channel fails
loudly instead of touching a descriptor number the process may have reused.  A channel
collected while open closes itself and warns with ResourceWarning, as files do.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any, Self

from ._buffer import check_int
from ._byte_buffer import ByteBuffer
from ._errors import ClosedChannelError, IllegalArgumentError, IndexOutOfBoundsError

__all__ = ["Channel", "remaining_pairs", "remaining_views", "advance", "check_buffers",
           "check_position"]

#: The largest file offset: off_t is signed 64-bit (Java's Long.MAX_VALUE).
MAX_POSITION = (1 << 63) - 1


class Channel:
    """Base of every channel: the descriptor's lifetime and the open/closed state."""

    _fd: int = -1
    _owns_fd: bool = True

    def _init_fd(self, fd: int, owns_fd: bool = True) -> None:
        self._fd = fd
        self._owns_fd = owns_fd

    def fileno(self) -> int:
        """The file descriptor; ClosedChannelError once closed."""
        fd = self._fd
        if fd < 0:
            raise ClosedChannelError(f"{type(self).__name__} is closed")
        return fd

    _ensure_open = fileno

    def is_open(self) -> bool:
        """Whether ``close()`` has not been called."""
        return self._fd >= 0

    def close(self) -> None:
        """Close the channel (idempotent).  Syscalls: ``close(2)`` if the fd is owned."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            self._on_close()
            if self._owns_fd:
                os.close(fd)

    def _on_close(self) -> None:
        """Hook for subclasses: release what hangs on the descriptor (locks...)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if self._fd >= 0:
            name = repr(self)
            self.close()  # first: the warning may be turned into an exception
            warnings.warn(f"unclosed {name}", ResourceWarning, source=self, stacklevel=2)

    def __repr__(self) -> str:
        state = f"fd={self._fd}" if self._fd >= 0 else "closed"
        return f"zcio.{type(self).__name__}[{state}]"


def check_position(value: object, what: str) -> int:
    """A file position or size: an integer in ``[0, 2**63 - 1]`` (an ``off_t``).

    TypeError for a non-integer, IllegalArgumentError out of range, naming ``what``.
    """
    v = check_int(value, what)
    if v < 0:
        raise IllegalArgumentError(f"negative {what}: {v}")
    if v > MAX_POSITION:
        raise IllegalArgumentError(f"{what} {v} > 2**63 - 1")
    return v


def check_buffers(bufs: Sequence[ByteBuffer], offset: int, length: int | None) -> list[ByteBuffer]:
    """Java's scatter/gather argument check: ``bufs[offset:offset+length]``, all ByteBuffers.

    TypeError for a non-integer offset or length, or an element that is no ByteBuffer.
    """
    offset = check_int(offset, "offset")
    if length is None:
        length = len(bufs) - offset
    length = check_int(length, "length")
    if offset < 0 or length < 0 or offset + length > len(bufs):
        raise IndexOutOfBoundsError(
            f"buffers [{offset}, {offset} + {length}) out of bounds for {len(bufs)}"
        )
    chosen = list(bufs[offset : offset + length])
    for b in chosen:
        if not isinstance(b, ByteBuffer):
            raise TypeError(f"expected ByteBuffer, not {type(b).__name__}")
    return chosen


def remaining_pairs(
    bufs: Sequence[ByteBuffer], writable: bool
) -> list[tuple[ByteBuffer, memoryview]]:
    """``(buffer, view)`` for each memoryview of the buffers' ``[position, limit)``, in
    order, for readv/writev/sendmsg: one per buffer, and for a CompositeBuffer one per
    component with bytes left (so one buffer may fill several iovecs).

    ``writable``: the kernel will write into them (a read), so read-only buffers are
    refused with IllegalArgumentError, as Java refuses them.  The views pin the memory:
    a concurrent ``release()`` cannot unmap it under the kernel.
    """
    pairs: list[tuple[ByteBuffer, memoryview]] = []
    append = pairs.append
    for b in bufs:  # on every gather write's path: kept lean (~0.2 us a buffer)
        if writable and b._ro:
            raise IllegalArgumentError("read into a read-only buffer")
        if b._segmented:
            pairs.extend((b, v) for v in b._rest_views())
        else:
            append((b, b._rest()))
    return pairs


def remaining_views(bufs: Sequence[ByteBuffer], writable: bool) -> list[memoryview]:
    """The views of :func:`remaining_pairs`, in order."""
    return [v for _, v in remaining_pairs(bufs, writable)]


def advance(bufs: Sequence[ByteBuffer], n: int) -> None:
    """Advance positions buffer by buffer by the ``n`` bytes the kernel moved.

    A buffer listed several times in a row (a composite, once per view in
    ``remaining_pairs``) takes its share at its first listing; the others take 0.
    """
    for b in bufs:
        if n <= 0:
            break
        pos, lim = b._pos, b._lim
        step = lim - pos if lim - pos < n else n
        b._pos = pos + step
        n -= step
