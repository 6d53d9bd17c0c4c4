"""Pipe: java.nio.channels.Pipe, a one-way channel pair over ``pipe(2)``.

A :class:`Pipe` is one ``pipe(2)`` pair, exactly as Java's (which never splices): a
:class:`SourceChannel` (the read end, ``OP_READ``) and a :class:`SinkChannel` (the write
end, ``OP_WRITE``).  Bytes written to the sink are read from the source in order, each
byte once.  The source reports end of stream (-1) once every write end is closed and the
pipe is empty.

The kernel's pipe operations (``splice``, ``tee``, ``vmsplice``), which Java cannot
reach, live in ``zcio._splice`` and take these channels as well as raw descriptors.

Every call raises ClosedChannelError on a closed channel, and AsynchronousCloseError
(with the exact count moved) when another thread closes it during the call; a thread
blocked on the pipe is woken (see ``zcio._channel``).  A call that fails in the
kernel with nothing moved raises the builtin OSError and changes no position.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Sequence
from typing import Any, Self, overload

from . import _syscalls
from ._buffer import check_int
from ._byte_buffer import ByteBuffer
from ._channel import accelerate, counting_operation, operation
from ._composite import CompositeBuffer
from ._errors import IllegalArgumentError
from ._guard import io_call
from ._iovec import HOW_PIPE, check_buffers, gather, remaining_pairs, scatter
from ._metrics import metrics
from ._selectable import OP_READ, OP_WRITE, SelectableChannel
from ._splice import C_INT_MAX, SPLICE_F_GIFT, HasFileno, splice, tee, vmsplice
from ._syscalls import retry

__all__ = [
    "Pipe",
    "SourceChannel",
    "SinkChannel",
    "pipe_max_size",
    # moved to zcio._splice; still importable from here
    "HasFileno",
    "SPLICE_F_GIFT",
    "splice",
    "tee",
    "vmsplice",
]

_PIPE_MAX_SIZE_FILE = "/proc/sys/fs/pipe-max-size"

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
    if size > C_INT_MAX:  # fcntl's argument is a C int
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
        io = _syscalls.NATIVE_IO
        if io is not None and isinstance(dst, ByteBuffer):  # one plain buffer: compiled
            n: int = io.io_read(fd, dst, -1, HOW_PIPE, "pipe_read")
            if n is not NotImplemented:
                return n
        bufs = [dst] if isinstance(dst, ByteBuffer) else check_buffers(dst, offset, length)

        def read_chunk(views: list[memoryview]) -> int:
            try:
                n = io_call(retry, _syscalls.SYS.readv, fd, views)
            except OSError:
                metrics.record("pipe_read")
                raise
            metrics.record("pipe_read", user_bytes=n)
            return n

        return scatter(remaining_pairs(bufs, writable=True), read_chunk)


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
            io = _syscalls.NATIVE_IO
            if io is not None:  # one plain buffer: one write, compiled
                n: int = io.io_write(fd, src, -1, HOW_PIPE, "pipe_write")
                if n is not NotImplemented:
                    return n
            view = src._rest()
            try:
                if not view:
                    return 0
                try:
                    n = io_call(retry, sys_.write, fd, view)
                except OSError as e:  # a call that moved nothing is counted, as in a gather
                    metrics.record("pipe_write")
                    if isinstance(e, BlockingIOError):
                        return 0
                    raise
            finally:
                view.release()
            metrics.record("pipe_write", user_bytes=n)
            src._pos += n
            return n
        bufs = [src] if isinstance(src, ByteBuffer) else check_buffers(src, offset, length)
        io = _syscalls.NATIVE_IO
        if io is not None and not isinstance(src, ByteBuffer):  # plain buffers: one writev
            n = io.io_gather(fd, bufs, -1, HOW_PIPE, "pipe_write")
            if n is not NotImplemented:
                return n

        def write_chunk(views: list[memoryview], total: int) -> int:
            try:
                n = io_call(retry, sys_.writev, fd, views)
            except OSError:
                metrics.record("pipe_write")
                raise
            metrics.record("pipe_write", user_bytes=n)
            return n

        return gather(remaining_pairs(bufs, writable=False), write_chunk)


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


# read(buf) and write(buf | [bufs]) of plain buffers, compiled whole (native/chan.c).
accelerate(SourceChannel, "read", "pipe_read", what="SourceChannel.read", into=True,
           how=HOW_PIPE)
accelerate(SinkChannel, "write", "pipe_write", what="SinkChannel.write", into=False,
           how=HOW_PIPE, gather=True)
