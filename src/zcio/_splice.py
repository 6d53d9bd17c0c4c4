"""The kernel's pipe operations as first-class calls: splice, tee and vmsplice.

What Java cannot reach, as module functions taking channels (anything with
``fileno()``) or raw descriptors:

* :func:`splice`: move bytes between a pipe and a file, socket or another pipe without
  copying them through user space;
* :func:`tee`: duplicate bytes from one pipe into another, leaving them readable in the
  first;
* :func:`vmsplice`: hand the pages of user memory to a pipe without copying them (read
  its warning about modifying that memory afterwards).

Every call raises ClosedChannelError on a closed channel, and AsynchronousCloseError
(with the exact count moved) when another thread closes it during the call; the
descriptor of any object that is not a zcio channel is duplicated for the call (see
``zcio._channel.Guard``).  A call that fails in the kernel with nothing moved raises
the builtin OSError and changes no position.  Where the OS or its libc lacks a call,
it raises ``OSError(ENOSYS)`` naming the cause (``zcio._syscalls.unavailability_cause``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from . import _syscalls
from ._buffer import check_int
from ._byte_buffer import ByteBuffer, byte_view
from ._channel import Guard, check_position
from ._direct import PAGE_SIZE
from ._errors import IllegalArgumentError
from ._guard import io_call
from ._iovec import Pair, gather, release, remaining_pairs
from ._memory import buffer_address
from ._metrics import metrics
from ._selectable import SelectableChannel
from ._syscalls import MAX_TRANSFER, retry

if TYPE_CHECKING:
    from ._types import Buffer as BytesLike

__all__ = ["HasFileno", "FdLike", "C_INT_MAX", "SPLICE_F_GIFT", "splice", "tee", "vmsplice"]

#: ``vmsplice`` flag (``<fcntl.h>``); the ``os`` module does not export it.
SPLICE_F_GIFT = 8

class HasFileno(Protocol):
    """Anything with a descriptor: a zcio channel, a socket, a file object."""

    def fileno(self) -> int: ...


#: What the module functions accept for a descriptor: a channel, a socket, a file
#: object, or the number itself.
FdLike = int | HasFileno


#: Descriptors and fcntl arguments are C ints.
C_INT_MAX = (1 << 31) - 1


def _fd_of(guard: Guard, obj: FdLike) -> int:
    """The descriptor to use for ``obj`` while ``guard`` holds it (see ``Guard.fd``).

    A bare descriptor must be an integer (TypeError for a bool, a str, None) in
    ``[0, 2**31 - 1]`` (IllegalArgumentError); a closed channel: ClosedChannelError.
    """
    if not hasattr(obj, "fileno"):
        fd = check_int(obj, "file descriptor")
        if fd < 0:
            raise IllegalArgumentError(f"negative file descriptor: {fd}")
        if fd > C_INT_MAX:
            raise IllegalArgumentError(f"file descriptor {fd} > 2**31 - 1")
        obj = fd
    return guard.fd(obj)


def _nonblocking(*objs: FdLike) -> bool:
    """Whether one of ``objs`` is a zcio channel in non-blocking mode."""
    return any(isinstance(o, SelectableChannel) and not o.is_blocking() for o in objs)


# -- the kernel's pipe operations --------------------------------------------------------


def _check_count(count: int) -> int:
    count = check_int(count, "count")
    if count < 0:
        raise IllegalArgumentError(f"negative count: {count}")
    return min(count, MAX_TRANSFER)


def _check_position(position: int | None, name: str) -> int | None:
    return None if position is None else check_position(position, name)


def splice(
    src: FdLike,
    dst: FdLike,
    count: int,
    *,
    src_position: int | None = None,
    dst_position: int | None = None,
    more: bool = False,
    nonblock: bool = False,
) -> int:
    """Move up to ``count`` bytes from ``src`` to ``dst`` inside the kernel.

    One of ``src``/``dst`` must be a pipe; the other may be a pipe, a file or a socket.
    The bytes leave ``src`` (a pipe is drained, a file's offset advances) and never pass
    through user space.

    Positions: for a file side, ``src_position``/``dst_position`` give the offset to
    read/write at, and then that file's own offset does not move (the caller's next
    position is ``position + returned count``); with None the file's own offset is used
    and advances by the count.  A pipe or socket side takes no position (ESPIPE).

    Flags: ``SPLICE_F_MOVE`` is always passed (a hint; current kernels copy page
    references anyway); ``more``: ``SPLICE_F_MORE``, more data follows (a socket
    target may hold back a partial packet, like ``MSG_MORE``); ``nonblock``:
    ``SPLICE_F_NONBLOCK``, do not wait on the pipe(s).  A zcio channel in non-blocking
    mode among ``src``/``dst`` sets ``nonblock`` too; a raw descriptor's ``O_NONBLOCK``
    counts for a non-pipe side only (kernel rule), so pass ``nonblock=True`` for it.

    Returns the count moved: 0 means end of input (a pipe empty with no writer, a file
    position at or past its end, a socket whose peer shut down) or ``count`` 0.
    ``count`` is capped at MAX_TRANSFER; negative count or position:
    IllegalArgumentError.

    Syscalls: ``splice(2)``; may move fewer bytes than asked (what the pipe holds or has
    room for); blocking, it waits for data or room.  When it would block it raises
    BlockingIOError (0 is end of input, so it cannot signal "try again") with nothing
    moved.  On any error nothing moved and no offset changed.  Recorded under path
    ``"splice"`` as kernel bytes.  A zcio channel closed by another thread meanwhile:
    AsynchronousCloseError (the descriptor of any other object is duplicated for the
    call, so its owner closing it cannot redirect the bytes).
    """
    return Guard().run(_splice, src, dst, count, src_position, dst_position, more, nonblock)


def _splice(guard: Guard, src: FdLike, dst: FdLike, count: int, src_position: int | None,
            dst_position: int | None, more: bool, nonblock: bool) -> int:
    src_fd, dst_fd = _fd_of(guard, src), _fd_of(guard, dst)
    count = _check_count(count)
    src_position = _check_position(src_position, "src_position")
    dst_position = _check_position(dst_position, "dst_position")
    if count == 0:
        return 0
    flags = os.SPLICE_F_MOVE
    if more:
        flags |= os.SPLICE_F_MORE
    if nonblock or _nonblocking(src, dst):
        flags |= os.SPLICE_F_NONBLOCK
    try:
        n = retry(_syscalls.SYS.splice, src_fd, dst_fd, count, src_position, dst_position,
                  flags)
    except OSError:
        metrics.record("splice")
        raise
    metrics.record("splice", kernel_bytes=n)
    return n


def tee(src: FdLike, dst: FdLike, count: int, *, nonblock: bool = False) -> int:
    """Duplicate up to ``count`` bytes from pipe ``src`` into pipe ``dst``.

    The bytes stay readable in ``src``: no data is consumed, only page references are
    added to ``dst``.  Both must be pipes (EINVAL otherwise, or for the same pipe).
    ``nonblock`` (or a zcio channel in non-blocking mode) passes ``SPLICE_F_NONBLOCK``.

    Returns the count duplicated: 0 when ``src`` is empty with no writer left (end of
    input) or ``count`` is 0.  Negative count: IllegalArgumentError.

    Syscalls: ``tee(2)`` (through ctypes; ENOSYS where libc lacks it); may duplicate
    fewer bytes than asked (what ``src`` holds, what ``dst`` has room for); blocking, it
    waits for data in ``src``.  When it would block it raises BlockingIOError with
    nothing duplicated.  Recorded under path ``"tee"`` as kernel bytes.  Closed by
    another thread meanwhile: AsynchronousCloseError, as ``splice``.
    """
    return Guard().run(_tee, src, dst, count, nonblock)


def _tee(guard: Guard, src: FdLike, dst: FdLike, count: int, nonblock: bool) -> int:
    src_fd, dst_fd = _fd_of(guard, src), _fd_of(guard, dst)
    count = _check_count(count)
    if count == 0:
        return 0
    flags = os.SPLICE_F_NONBLOCK if nonblock or _nonblocking(src, dst) else 0
    try:
        n = retry(_syscalls.SYS.tee, src_fd, dst_fd, count, flags)
    except OSError:
        metrics.record("tee")
        raise
    metrics.record("tee", kernel_bytes=n)
    return n


def vmsplice(
    sink: FdLike,
    buffers: ByteBuffer | BytesLike | Sequence[ByteBuffer | BytesLike],
    *,
    gift: bool = False,
    nonblock: bool = False,
) -> int:
    """Hand the memory of ``buffers`` to the pipe ``sink`` without copying it.

    .. warning::
       The pipe does not receive a copy: it holds references to the *pages* of your
       memory until a reader consumes them (with ``read``, or ``splice`` to a file or
       socket).  **Do not modify that memory until the reader has consumed the data**:
       whatever you write into it before then is what the reader sees.  Freeing it is
       safe (the kernel keeps the pages alive, so nothing can crash), but reusing it
       is not: a released direct buffer or a collected ``bytearray`` gives its pages
       back, and memory reused for other data may reach the reader.  When in doubt,
       use ``SinkChannel.write``, which copies.

    ``buffers``: a ByteBuffer, a bytes-like object, or a sequence of them, in order.
    For a ByteBuffer the bytes of ``[position, limit)`` are handed over and its
    position advances by what the kernel took, buffer by buffer; a bytes-like object
    is handed over whole, and the returned count says how much was taken.  Each
    object is pinned for the duration of the call.  Empty ones are skipped.

    ``gift``: ``SPLICE_F_GIFT``, you give the pages to the kernel for good and must
    never touch that memory again (a later ``splice`` may move the pages into the
    page cache).  The kernel requires page-aligned addresses and lengths: anything
    else raises IllegalArgumentError before any call (a direct buffer at position 0
    with a whole number of pages remaining qualifies).

    ``nonblock`` (or ``sink`` a zcio channel in non-blocking mode): do not wait for
    room; 0 when the pipe is full.

    Returns the count taken.  IOV_MAX segments go per call, the next chunk only when
    the kernel took the previous one whole.

    Syscalls: ``vmsplice(2)`` (through ctypes; ENOSYS where libc lacks it); may take
    fewer bytes than given (the pipe's free slots), even in blocking mode, where it
    waits only while the pipe is full.  On error nothing moves and the OSError
    propagates, unless a chunk was already taken: then the count so far is returned
    and the error comes again on the next call.  Recorded under path ``"vmsplice"``
    with the bytes as kernel bytes: no copy happens at vmsplice time (the copy, if any,
    is the reader's).
    """
    return Guard().run(_vmsplice, sink, buffers, gift, nonblock)


def _vmsplice(guard: Guard, sink: FdLike,
              buffers: ByteBuffer | BytesLike | Sequence[ByteBuffer | BytesLike],
              gift: bool, nonblock: bool) -> int:
    fd = _fd_of(guard, sink)
    if isinstance(buffers, ByteBuffer) or not isinstance(buffers, (list, tuple)):
        items: list[Any] = [buffers]
    else:
        items = list(buffers)
    pairs: list[Pair] = []
    try:
        for item in items:
            if isinstance(item, ByteBuffer):  # a composite: one per component
                pairs += remaining_pairs([item], writable=False)
            else:
                pairs.append((None, byte_view(item), 0))
        if gift:
            for _, view, _ in pairs:
                address, size = buffer_address(view) if len(view) else 0, len(view)
                if address % PAGE_SIZE or size % PAGE_SIZE:
                    raise IllegalArgumentError(
                        f"gift needs page-aligned memory: address {address:#x}, length "
                        f"{size}, page size {PAGE_SIZE}"
                    )
    except BaseException:
        release(pairs)
        raise
    flags = SPLICE_F_GIFT if gift else 0
    if nonblock or _nonblocking(sink):
        flags |= os.SPLICE_F_NONBLOCK

    def give(views: list[memoryview], total: int) -> int:
        try:
            n = io_call(retry, _syscalls.SYS.vmsplice, fd,
                        [(buffer_address(v), len(v)) for v in views], flags)
        except OSError:
            metrics.record("vmsplice")
            raise
        metrics.record("vmsplice", kernel_bytes=n)
        return n

    return gather(pairs, give)  # releases the views
