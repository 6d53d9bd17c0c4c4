"""One side of a transfer, classified once: what it is, its descriptor, its offset.

Every driver of the transfer engine (blocking, asyncio, the HTTP server) builds two
:class:`End` objects per transfer with :func:`classify` and hands them to the rungs
(``zcio._rungs``); nothing is asked of the kernel again per step.  The kinds:

=========  ==================================================================
kind       what
=========  ==================================================================
file       a regular file: read and written at an explicit ``offset``
socket     a socket (stream); ``loopback`` says whether a TCP peer is this host
pipe       a FIFO or pipe (stream)
other fd   any other descriptor (a tty, a character device): stream
object     a channel object without a descriptor: ``read(buf)``/``write(buf)``
=========  ==================================================================

The loopback probe (``getpeername``) runs once per socket and is cached by the
socket's identity in the kernel (device and inode of its sockfs node, from the
``fstat`` that classifies it), never by descriptor number: a number closed and reused
for another socket can never hit a stale entry.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from typing import Any, Protocol

from ._byte_buffer import ByteBuffer
from ._channel import Channel, Guard
from ._errors import ClosedChannelError, NonReadableChannelError, NonWritableChannelError
from ._splice import HasFileno

__all__ = ["End", "classify", "check_mode", "file_position", "set_file_position",
           "loopback_peer", "HasFileno", "TransferSource", "TransferTarget",
           "FILE", "SOCKET", "PIPE", "OTHER", "OBJECT", "KINDS"]

FILE, SOCKET, PIPE, OTHER, OBJECT = "file", "socket", "pipe", "other fd", "object"
KINDS = (FILE, SOCKET, PIPE, OTHER, OBJECT)


class ChannelReader(Protocol):
    """A channel object without a descriptor, read the way a zcio channel is:
    ``read(dst)`` fills ``dst`` from its position and returns the count (0 or -1 at
    the end)."""

    def read(self, dst: ByteBuffer, /) -> int: ...


class ChannelWriter(Protocol):
    """A channel object without a descriptor, written the way a zcio channel is:
    ``write(src)`` takes bytes from ``src``'s position and returns the count."""

    def write(self, src: ByteBuffer, /) -> int: ...


#: What a transfer reads from: anything with ``fileno()`` (a zcio channel, a socket,
#: a file object) or a descriptor-less channel object (relayed by read/write).
TransferSource = HasFileno | ChannelReader
#: What a transfer writes to: anything with ``fileno()`` or a channel object.
TransferTarget = HasFileno | ChannelWriter


class End:
    """One side of a transfer: a descriptor (or a channel object) and its offset.

    ``offset`` is an explicit file offset for regular files (positional I/O, so a
    file's own position never moves behind the caller's back) and None for streams.
    For a source it is the offset of the next byte *not yet delivered* to the target:
    bytes a rung read ahead and still holds do not count (see ``zcio._rungs``).
    ``ident`` is the (device, inode) of the descriptor's file, or None for an object.
    ``dontwait``: a blocking socket that the splice rung reads without waiting
    (``SPLICE_F_NONBLOCK``), its driver waiting in ``poll`` instead (see
    ``zcio._transfer._Transfer.run``).
    """

    __slots__ = ("obj", "fd", "kind", "offset", "ident", "dontwait")

    def __init__(self, obj: Any, fd: int, kind: str, offset: int | None = None,
                 ident: tuple[int, int] | None = None) -> None:
        self.obj, self.fd, self.kind, self.offset, self.ident = obj, fd, kind, offset, ident
        self.dontwait = False

    def __repr__(self) -> str:
        return f"End({self.kind}, fd={self.fd}, offset={self.offset})"

    @property
    def blocking(self) -> bool:
        """Whether the descriptor is in blocking mode (an object counts as blocking): a
        zcio channel's own mode, else the descriptor's (``fcntl``)."""
        if self.fd < 0:
            return True
        mode = getattr(self.obj, "_blocking", None)
        return mode if type(mode) is bool else os.get_blocking(self.fd)

    @property
    def loopback(self) -> bool:
        """Whether this is a TCP socket whose peer is on this host (cached per socket)."""
        return self.kind == SOCKET and loopback_peer(self.fd, self.ident)

    def duplicate(self) -> End:
        """The same end on a ``dup`` of its descriptor (the caller closes it)."""
        return End(self.obj, os.dup(self.fd), self.kind, self.offset, self.ident)


def _is_file_channel(obj: Any) -> bool:
    # zcio's FileChannel, by its mode queries (importing it here would make a cycle:
    # _file_channel imports the engine).
    return isinstance(obj, Channel) and hasattr(obj, "is_writable")


def check_mode(end: End, writing: bool) -> None:
    """NonWritable/NonReadableChannelError for a FileChannel opened the other way."""
    obj = end.obj
    if _is_file_channel(obj):
        if writing and not obj.is_writable():
            raise NonWritableChannelError("target channel not opened for writing")
        if not writing and not obj.is_readable():
            raise NonReadableChannelError("source channel not opened for reading")


def kind_of(mode: int) -> str:
    """The kind of a descriptor from its ``st_mode``."""
    return (FILE if stat.S_ISREG(mode) else SOCKET if stat.S_ISSOCK(mode)
            else PIPE if stat.S_ISFIFO(mode) else OTHER)


def classify(obj: Any, writing: bool, check: bool = True, guard: Guard | None = None
             ) -> End:
    """Classify ``obj``: a zcio channel, anything with ``fileno()``, or a channel object.

    One ``fstat``.  ClosedChannelError for a closed one; with ``check``, the
    FileChannel mode check (:func:`check_mode`); TypeError for anything else.  With
    ``guard``, the descriptor is held by it (see ``Guard.fd``) until it finishes.
    """
    if hasattr(obj, "fileno"):
        try:  # closed first, then readable/writable, as the JDK checks
            fd = obj.fileno() if guard is None else guard.fd(obj)
        except ClosedChannelError:
            raise
        except (OSError, ValueError) as e:
            raise ClosedChannelError(f"{obj!r} is closed") from e
        if fd < 0:
            raise ClosedChannelError(f"{obj!r} is closed")
        st = os.fstat(fd)
        end = End(obj, fd, kind_of(st.st_mode), None, (st.st_dev, st.st_ino))
        if check:
            check_mode(end, writing)
        return end
    if hasattr(obj, "write" if writing else "read"):
        return End(obj, -1, OBJECT)
    raise TypeError(f"{type(obj).__name__} is not a channel")


_LOOPBACK: dict[tuple[int, int], bool] = {}
_LOOPBACK_MAX = 4096


def loopback_peer(fd: int, ident: tuple[int, int] | None = None) -> bool:
    """Whether the TCP socket ``fd`` is connected to an address of this host's loopback.

    Cached by ``ident`` (the socket's (device, inode), :func:`classify` has it) once
    the socket is connected: a connected socket's peer never changes.  An unconnected
    socket is not cached (it may connect later).
    """
    if ident is not None:
        known = _LOOPBACK.get(ident)
        if known is not None:
            return known
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                answer = False
            else:
                answer = _is_loopback(sock.getpeername()[0])
    except OSError:
        return False  # not a socket, or not connected: ask again next time
    if ident is not None:
        if len(_LOOPBACK) >= _LOOPBACK_MAX:
            _LOOPBACK.clear()  # sockets come and go: a bound, not an LRU
        _LOOPBACK[ident] = answer
    return answer


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def file_position(end: End) -> int:
    """Where a file end's own position is (its size for O_APPEND files)."""
    if _is_file_channel(end.obj):
        return int(end.obj.position())
    return os.lseek(end.fd, 0, os.SEEK_CUR)


def set_file_position(end: End, position: int) -> None:
    """Move a file end's own position to ``position`` (a closed channel: nothing)."""
    try:
        os.lseek(end.fd, position, os.SEEK_SET)
    except OSError:
        if isinstance(end.obj, Channel) and not end.obj.is_open():
            return  # closed meanwhile: its descriptor is the dead socket (ESPIPE)
        raise
