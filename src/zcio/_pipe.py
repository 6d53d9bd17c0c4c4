"""Pipe: java.nio.channels.Pipe, plus the kernel's pipe operations as first-class calls.

A :class:`Pipe` is one ``pipe(2)`` pair, exactly as Java's (which never splices): a
:class:`SourceChannel` (the read end, ``OP_READ``) and a :class:`SinkChannel` (the write
end, ``OP_WRITE``).  Bytes written to the sink are read from the source in order, each
byte once.  The source reports end of stream (-1) once every write end is closed and the
pipe is empty.

zcio adds what Java cannot reach, as module functions taking channels (anything with
``fileno()``) or raw descriptors:

* :func:`splice`: move bytes between a pipe and a file, socket or another pipe without
  copying them through user space;
* :func:`tee`: duplicate bytes from one pipe into another, leaving them readable in the
  first;
* :func:`vmsplice`: hand the pages of user memory to a pipe without copying them (read
  its warning about modifying that memory afterwards).

Every call raises ClosedChannelError on a closed channel, and AsynchronousCloseError
(with the exact count moved) when another thread closes it during the call; a thread
blocked on the pipe is woken (see ``zcio._channel``).  A call that fails in the
kernel with nothing moved raises the builtin OSError and changes no position.  Where the
OS or its libc lacks a call, it raises ``OSError(ENOSYS)`` naming the cause
(``zcio._syscalls.unavailability_cause``).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, Self, overload

from . import _syscalls
from ._buffer import check_int
from ._byte_buffer import ByteBuffer, byte_view
from ._channel import (
    Guard,
    advance,
    check_buffers,
    check_position,
    counting_operation,
    gather,
    operation,
    remaining_pairs,
)
from ._composite import CompositeBuffer
from ._direct import PAGE_SIZE
from ._errors import IllegalArgumentError
from ._guard import io_call
from ._memory import buffer_address
from ._metrics import metrics
from ._selectable import OP_READ, OP_WRITE, SelectableChannel
from ._syscalls import IOV_MAX, MAX_TRANSFER, retry

if TYPE_CHECKING:
    from ._types import Buffer as BytesLike

__all__ = [
    "Pipe",
    "SourceChannel",
    "SinkChannel",
    "splice",
    "tee",
    "vmsplice",
    "pipe_max_size",
    "SPLICE_F_GIFT",
]

#: ``vmsplice`` flag (``<fcntl.h>``); the ``os`` module does not export it.
SPLICE_F_GIFT = 8

_PIPE_MAX_SIZE_FILE = "/proc/sys/fs/pipe-max-size"


class HasFileno(Protocol):
    """Anything with a descriptor: a zcio channel, a socket, a file object."""

    def fileno(self) -> int: ...


#: What the module functions accept for a descriptor: a channel, a socket, a file
#: object, or the number itself.
FdLike = int | HasFileno


_INT_MAX = (1 << 31) - 1  # descriptors and fcntl arguments are C ints


def _fd_of(guard: Guard, obj: FdLike) -> int:
    """The descriptor to use for ``obj`` while ``guard`` holds it (see ``Guard.fd``).

    A bare descriptor must be an integer (TypeError for a bool, a str, None) in
    ``[0, 2**31 - 1]`` (IllegalArgumentError); a closed channel: ClosedChannelError.
    """
    if not hasattr(obj, "fileno"):
        fd = check_int(obj, "file descriptor")
        if fd < 0:
            raise IllegalArgumentError(f"negative file descriptor: {fd}")
        if fd > _INT_MAX:
            raise IllegalArgumentError(f"file descriptor {fd} > 2**31 - 1")
        obj = fd
    return guard.fd(obj)


def _nonblocking(*objs: FdLike) -> bool:
    """Whether one of ``objs`` is a zcio channel in non-blocking mode."""
    return any(isinstance(o, SelectableChannel) and not o.is_blocking() for o in objs)


def _release(views: Sequence[memoryview]) -> None:
    for v in views:
        v.release()


# -- pipe capacity ---------------------------------------------------------------------


def pipe_max_size() -> int:
    """The largest capacity an unprivileged process may give a pipe (bytes).

    Read from ``/proc/sys/fs/pipe-max-size`` (1 MiB by default); a process with
    ``CAP_SYS_RESOURCE`` may go beyond it.
    """
    with open(_PIPE_MAX_SIZE_FILE, encoding="ascii") as f:
        return int(f.read())


def _get_pipe_size(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)


def _set_pipe_size(fd: int, size: int) -> int:
    size = check_int(size, "pipe size")
    if size <= 0:
        raise IllegalArgumentError(f"pipe size must be positive: {size}")
    if size > _INT_MAX:  # fcntl's argument is a C int
        raise IllegalArgumentError(f"pipe size {size} > 2**31 - 1")
    try:
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except PermissionError as e:
        limit = pipe_max_size()
        if size > limit:
            msg = (f"pipe size {size} > {_PIPE_MAX_SIZE_FILE} {limit}: only a process "
                   "with CAP_SYS_RESOURCE may exceed it")
        else:
            msg = (f"pipe size {size}: this user's pipe quota is used up "
                   "(/proc/sys/fs/pipe-user-pages-hard)")
        raise PermissionError(e.errno, msg) from e
    except OSError as e:
        if e.errno == errno.EBUSY:
            raise OSError(e.errno, f"pipe size {size} is smaller than the data the pipe "
                          f"holds now ({_get_pipe_size(fd)} byte capacity)") from e
        raise


class _PipeEnd(SelectableChannel):
    """What both ends share: the descriptor and the pipe's capacity."""

    def __init__(self, fd: int, owns_fd: bool = True) -> None:
        """Wrap an open pipe descriptor; ``owns_fd``: ``close()`` closes it."""
        self._init_fd(fd, owns_fd)
        self._init_selectable()

    @operation
    def pipe_size(self) -> int:
        """The pipe's capacity in bytes.  Syscalls: ``fcntl(F_GETPIPE_SZ)``."""
        return _get_pipe_size(self.fileno())

    @operation
    def set_pipe_size(self, size: int) -> int:
        """Set the pipe's capacity; returns the capacity the kernel granted.

        The kernel rounds ``size`` up to a power of two pages (at least one page).
        Beyond :func:`pipe_max_size` an unprivileged process gets PermissionError
        naming the limit; a size smaller than the data the pipe holds, OSError(EBUSY).
        Nothing changes on error.  Syscalls: ``fcntl(F_SETPIPE_SZ)``.
        """
        return _set_pipe_size(self.fileno(), size)


class SourceChannel(_PipeEnd):
    """The read end of a pipe (Java's ``Pipe.SourceChannel``): a scattering byte channel."""

    _VALID_OPS = OP_READ

    @overload
    def read(self, dst: ByteBuffer, /) -> int: ...
    @overload
    def read(self, dsts: Sequence[ByteBuffer], offset: int = 0, length: int | None = None,
             /) -> int: ...
    @counting_operation
    def read(self, dst: Any, offset: int = 0, length: int | None = None, /) -> int:
        """Read bytes from the pipe into ``dst``'s ``[position, limit)``.

        * ``read(dst)``: up to ``dst.remaining()`` bytes; ``dst``'s position advances
          by the count.
        * ``read(dsts, offset=0, length=None)``: scatter read into
          ``dsts[offset:offset+length]`` in order, filling each buffer before the next;
          positions advance buffer by buffer.  At most IOV_MAX buffers with room are
          filled per call, as in Java; call again for the rest.  A CompositeBuffer
          ``dst`` is scattered into, one iovec per component.

        Returns the count; 0 if the buffers have no room (no syscall) or, in
        non-blocking mode, if the pipe is empty; -1 at end of stream (every write end
        closed and the pipe empty).  Limits never change.  A read-only ``dst``:
        IllegalArgumentError; a bad ``offset``/``length``: IndexError.

        Syscalls: ``readv(2)``; may read fewer bytes than asked (whatever the pipe
        holds); in blocking mode it waits until the pipe holds at least one byte.  On
        error nothing moves and the OSError propagates.
        """
        fd = self.fileno()
        bufs = [dst] if isinstance(dst, ByteBuffer) else check_buffers(dst, offset, length)
        all_pairs = remaining_pairs(bufs, writable=True)  # composites: one per component
        views = [v for _, v in all_pairs]
        try:
            pairs = [(b, v) for b, v in all_pairs if len(v)][:IOV_MAX]
            if not pairs:
                return 0
            try:
                n = io_call(retry, _syscalls.SYS.readv, fd, [v for _, v in pairs])
            except BlockingIOError:
                metrics.record("pipe_read")
                return 0
        finally:
            _release(views)
        metrics.record("pipe_read", user_bytes=n)
        if n == 0:
            return -1
        advance([b for b, _ in pairs], n)
        return n


class SinkChannel(_PipeEnd):
    """The write end of a pipe (Java's ``Pipe.SinkChannel``): a gathering byte channel."""

    _VALID_OPS = OP_WRITE

    @overload
    def write(self, src: ByteBuffer, /) -> int: ...
    @overload
    def write(self, srcs: Sequence[ByteBuffer], offset: int = 0, length: int | None = None,
              /) -> int: ...
    @counting_operation
    def write(self, src: Any, offset: int = 0, length: int | None = None, /) -> int:
        """Write the bytes of ``src``'s ``[position, limit)`` to the pipe.

        * ``write(src)``: ``src``'s position advances by the count.
        * ``write(srcs, offset=0, length=None)``: gather write of
          ``srcs[offset:offset+length]`` in order, IOV_MAX buffers with bytes left per
          ``writev``, going on while the kernel takes each chunk whole; positions
          advance buffer by buffer by what the kernel took.
        * a CompositeBuffer ``src`` is such a gather write of its components.

        Returns the count: 0 if nothing remains (no syscall) or, in non-blocking mode,
        if the pipe is full.  Limits never change.  A bad ``offset``/``length``:
        IndexError.

        Syscalls: ``write(2)`` / ``writev(2)``.  In blocking mode the call waits until
        the pipe has taken everything (a signal may cut it short); in non-blocking mode
        it may write fewer bytes than given.  On error nothing moves and the OSError
        propagates (BrokenPipeError once every read end is closed); for a gather write
        that already wrote a chunk, the count so far is returned instead, and the
        error comes again on the next call.
        """
        fd = self.fileno()
        sys_ = _syscalls.SYS
        if isinstance(src, ByteBuffer) and not isinstance(src, CompositeBuffer):
            view = src._rest()
            try:
                if not view:
                    return 0
                try:
                    n = io_call(retry, sys_.write, fd, view)
                except BlockingIOError:
                    metrics.record("pipe_write")
                    return 0
            finally:
                view.release()
            metrics.record("pipe_write", user_bytes=n)
            src._pos += n
            return n
        bufs = [src] if isinstance(src, ByteBuffer) else check_buffers(src, offset, length)
        all_pairs = remaining_pairs(bufs, writable=False)  # a composite: one per component

        def write_chunk(views: list[memoryview], total: int) -> int:
            try:
                n = io_call(retry, sys_.writev, fd, views)
            except OSError:
                metrics.record("pipe_write")
                raise
            metrics.record("pipe_write", user_bytes=n)
            return n

        try:
            return gather(all_pairs, write_chunk)
        finally:
            _release([v for _, v in all_pairs])


class Pipe:
    """A unidirectional pipe: bytes written to ``sink()`` are read from ``source()``.

    Closing the pipe closes both ends; each end may also be closed on its own (closing
    the sink makes the source report end of stream once it is drained).

    >>> with Pipe.open() as p:
    ...     p.sink().write(ByteBuffer.wrap(b"hi"))
    ...     buf = ByteBuffer.allocate(8)
    ...     p.source().read(buf)
    2
    2
    """

    __slots__ = ("_source", "_sink")

    def __init__(self, source: SourceChannel, sink: SinkChannel) -> None:
        self._source = source
        self._sink = sink

    @classmethod
    def open(cls, size: int | None = None) -> Pipe:
        """Open a new pipe, both ends blocking and close-on-exec.

        ``size``: the capacity wanted (see ``SinkChannel.set_pipe_size``; the kernel
        rounds it up, ``pipe_size()`` says what it granted).  Default: the kernel's
        (64 KiB on Linux).  If setting the size fails, both descriptors are closed and
        the error propagates (PermissionError naming the limit beyond
        :func:`pipe_max_size`).

        Syscalls: ``pipe2(O_CLOEXEC)``; ``fcntl(F_SETPIPE_SZ)`` if ``size`` is given.
        """
        r, w = os.pipe2(os.O_CLOEXEC)
        source, sink = SourceChannel(r), SinkChannel(w)
        if size is not None:
            try:
                sink.set_pipe_size(size)
            except BaseException:
                source.close()
                sink.close()
                raise
        return cls(source, sink)

    def source(self) -> SourceChannel:
        """The read end (the same object on every call)."""
        return self._source

    def sink(self) -> SinkChannel:
        """The write end (the same object on every call)."""
        return self._sink

    def pipe_size(self) -> int:
        """The pipe's capacity in bytes, asked through whichever end is still open."""
        end: _PipeEnd = self._sink if self._sink.is_open() else self._source
        return end.pipe_size()

    def close(self) -> None:
        """Close both ends (idempotent).  Syscalls: ``close(2)`` twice."""
        try:
            self._source.close()
        finally:
            self._sink.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"zcio.Pipe[source={self._source!r} sink={self._sink!r}]"


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
    pairs: list[tuple[ByteBuffer | None, memoryview]] = []
    try:
        for item in items:
            if isinstance(item, ByteBuffer):
                # a composite: one per component
                pairs.extend((item, view) for view in item._rest_views())
            else:
                pairs.append((None, byte_view(item)))
        if gift:
            for _, view in pairs:
                address, size = buffer_address(view) if len(view) else 0, len(view)
                if address % PAGE_SIZE or size % PAGE_SIZE:
                    raise IllegalArgumentError(
                        f"gift needs page-aligned memory: address {address:#x}, length "
                        f"{size}, page size {PAGE_SIZE}"
                    )
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

        return gather(pairs, give)
    finally:
        _release([v for _, v in pairs])
