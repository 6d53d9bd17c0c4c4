"""The awaitable transfers of ``zcio.aio``: :func:`sendfile`, :func:`transfer_to`,
:func:`splice`.  Each checks and classifies its endpoints, then hands them to the
driver (``zcio._aio_driver``) and sets the file positions the caller sees."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any, Protocol

from ._aio_driver import LoopTransfer, Progress, drive, still_owned
from ._endpoint import (
    FILE,
    OBJECT,
    End,
    check_mode,
    classify,
    file_position,
    set_file_position,
)
from ._errors import (
    ClosedChannelError,
    IllegalArgumentError,
    IllegalBlockingModeError,
    TransferError,
    UnsupportedOperationError,
)
from ._file_channel import FileChannel
from ._transfer import file_range

if TYPE_CHECKING:
    from ._splice import HasFileno


class TransportLike(Protocol):
    """What :func:`sendfile` and :func:`transfer_to` use of a transport (an
    ``asyncio.WriteTransport``, uvloop's too): its socket and its write buffer."""

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...



def _loop_end(obj: Any, writing: bool) -> End:
    """``classify`` for a loop: a descriptor, and a non-blocking one unless a regular file."""
    return _check_loop_end(classify(obj, writing), obj)


def _check_loop_end(end: End, obj: Any) -> End:
    if end.kind == OBJECT:
        raise TypeError(f"{type(obj).__name__} has no file descriptor for an event loop")
    if end.kind != FILE and os.get_blocking(end.fd):
        raise IllegalBlockingModeError(
            f"{obj!r} is in blocking mode: an event loop needs O_NONBLOCK "
            "(sock.setblocking(False), os.set_blocking(fd, False))")
    return end


def _target_socket(target: Any) -> tuple[Any, Any]:
    """(what to write to, the transport if ``target`` is one)."""
    if not hasattr(target, "get_extra_info"):
        return target, None
    if target.is_closing():
        raise ClosedChannelError(f"{target!r} is closing")
    if target.get_extra_info("sslcontext") is not None or \
            target.get_extra_info("ssl_object") is not None:
        raise UnsupportedOperationError(
            "a TLS transport: writing to its socket would bypass the encryption "
            "(loop.sendfile() falls back to copying through the transport)")
    sock = target.get_extra_info("socket")
    if sock is None:
        raise TypeError(f"{target!r} has no socket")
    return sock, target



def _no_data(what: str, moved: int, want: int) -> TransferError:
    return TransferError(OSError(errno.ENODATA, f"{what} after {moved} of {want} bytes"),
                         moved)



async def sendfile(sock: HasFileno | TransportLike, file: HasFileno, offset: int = 0,
                   count: int | None = None, *, path: str | None = None,
                   progress: Progress | None = None) -> int:
    """Send ``count`` bytes of ``file`` from ``offset`` (default: to its end) to ``sock``.

    ``sock``: a non-blocking socket, a SocketChannel, or a (plain TCP/Unix) transport;
    a transport's buffered data is sent first, and nothing must write to it until this
    returns.  ``file``: a regular file (Python file object or FileChannel).  As
    ``loop.sock_sendfile``: the file position is set to ``offset`` + the bytes sent
    on return, on error and on cancellation.  Returns the bytes sent.  If the file
    ends before ``count`` (or shrank below the size it had when the call started),
    TransferError (ENODATA) with the count sent, as ``zcio.transfer``.

    Syscalls: as ``zcio.transfer``: ``sendfile(2)`` (falling back to mmap+write and
    pread+write; ``path=`` forces one), each moving possibly fewer bytes than asked,
    on duplicates (``dup``) of both descriptors; ``epoll_wait`` while the socket is
    full.  IllegalArgumentError for a negative offset or count;
    IllegalBlockingModeError for a blocking socket; ClosedChannelError or
    TransferError (EBADF) if ``sock`` (or its transport) or ``file`` is closed
    meanwhile (see the module docstring; the position of a closed file is left alone).

    Example (an HTTP response body)::

        transport.write(headers)
        with open(path, "rb") as f:
            await zcio.aio.sendfile(transport, f)
    """
    if offset < 0 or (count is not None and count < 0):
        raise IllegalArgumentError(f"negative offset {offset} or count {count}")
    target, transport = _target_socket(sock)
    dst = _loop_end(target, writing=True)
    src = classify(file, writing=False)
    if src.kind != FILE:
        raise IllegalArgumentError(f"sendfile needs a regular file, not a {src.kind}")
    want = count if count is not None else max(os.fstat(src.fd).st_size - offset, 0)
    src.offset = offset
    job = LoopTransfer(src, dst, path, transport)
    p = progress if progress is not None else Progress()
    try:
        moved = await drive(job, want, p)
    finally:
        if still_owned(src):  # a closed file has no position to set
            _seek(file, offset + p.transferred)
    if moved < want:
        raise _no_data("source file ended" if count is not None else "source file shrank",
                       moved, want)
    return moved


def _set_position(end: End, offset: int | None) -> None:
    """Set a file endpoint's own position to ``offset`` (None: a stream, nothing to do),
    unless the caller closed it meanwhile."""
    if offset is not None and still_owned(end):
        set_file_position(end, offset)


def _seek(file: HasFileno, position: int) -> None:
    if isinstance(file, FileChannel):
        file.position(position)
    elif hasattr(file, "seek"):
        file.seek(position)
    else:
        os.lseek(file.fileno(), position, os.SEEK_SET)


async def transfer_to(channel: FileChannel, position: int, count: int,
                      target: HasFileno | TransportLike, *, path: str | None = None,
                      progress: Progress | None = None) -> int:
    """``FileChannel.transfer_to``, awaited until the whole count has moved.

    Java's rules: the channel's position does not move (``progress`` says how far a
    cancelled or failed call got); IllegalArgumentError for a negative position or
    count; 0 if ``position`` is past the end; ``count`` is cut to what the file has;
    a file that shrinks meanwhile ends the transfer early (the count returned says
    how far).  ``target``: a non-blocking socket or pipe, a SocketChannel, or a plain
    transport (see :func:`sendfile`), or a file.

    Syscalls: as ``zcio._transfer.transfer_to`` (copy_file_range / sendfile / splice /
    mmap+write / pread+write) on duplicates (``dup``) of both descriptors, plus
    ``epoll_wait`` while the target is full.  ClosedChannelError or TransferError
    (EBADF) if either end is closed meanwhile (see the module docstring).
    """
    channel.fileno()
    target, transport = _target_socket(target)
    dst = classify(target, writing=True, check=False)
    src_fd = channel._readable_fd()
    check_mode(dst, writing=True)
    _check_loop_end(dst, target)
    count = file_range(src_fd, position, count)
    if count == 0:
        return 0
    if dst.kind == FILE:
        dst.offset = file_position(dst)
    job = LoopTransfer(End(channel, src_fd, FILE, position), dst, path, transport)
    p = progress if progress is not None else Progress()
    try:
        return await drive(job, count, p)
    finally:
        _set_position(dst, job.dst.offset)


async def splice(src: HasFileno, dst: HasFileno, count: int | None = None, *,
                 path: str | None = "splice", progress: Progress | None = None) -> int:
    """Move ``count`` bytes (default: until ``src`` ends) from ``src`` to ``dst`` by splice.

    Endpoints: non-blocking sockets and pipes, SocketChannels, pipe channels, regular
    files (read and written at their own positions, which advance by what moved, also
    on error and cancellation).  When neither end is a pipe the bytes pass through a
    pipe private to this call.  ``path=None`` lets the engine choose the cheapest
    path, as ``zcio.transfer`` does (sendfile for a file source...).  Returns the
    bytes moved.  As ``zcio.transfer``: if ``src`` ends before ``count``, or an error
    strikes after bytes moved, TransferError carries the count that reached ``dst``.

    Syscalls: ``splice(2)`` with SPLICE_F_NONBLOCK (each call may move fewer bytes
    than asked) on duplicates (``dup``) of both descriptors, ``epoll_wait`` while an
    end is not ready, for that end only.  ClosedChannelError or TransferError (EBADF)
    if either end is closed meanwhile (see the module docstring; the position of a
    closed file is left alone).
    """
    if count is not None and count < 0:
        raise IllegalArgumentError(f"negative count {count}")
    s, d = _loop_end(src, writing=False), _loop_end(dst, writing=True)
    if count is None:
        want = (os.fstat(s.fd).st_size - file_position(s) if s.kind == FILE
                else (1 << 63) - 1)
    else:
        want = count
    if s.kind == FILE:
        s.offset = file_position(s)
    if d.kind == FILE:
        d.offset = file_position(d)
    job = LoopTransfer(s, d, path)
    try:
        moved = await drive(job, max(want, 0), progress or Progress())
    finally:
        _set_position(s, job.src.offset)
        _set_position(d, job.dst.offset)
    if moved < want and (count is not None or s.kind == FILE):
        raise _no_data("source ended" if count is not None else "source file shrank",
                       moved, want)
    return moved
