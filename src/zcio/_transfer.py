"""The transfer engine: moving bytes between channels by the cheapest path the kernel has.

Paths, cheapest first, and where each applies:

==================  =============================  ==========================================
path                endpoints                      what crosses into user space
==================  =============================  ==========================================
copy_file_range     file -> file                   nothing (reflinks where the fs can)
sendfile            file -> socket, pipe, file     nothing
splice              pipe <-> anything; socket ->   nothing (through a per-thread pipe when
                    file/socket via a pipe         neither end is a pipe)
mmap_write          file -> anything with an fd    each byte once (write from the mapping)
read_write          anything -> anything           each byte twice (read in, write out)
==================  =============================  ==========================================

Each transfer tries the rungs of its ladder in order and falls to the next when the
kernel answers EXDEV, EINVAL, ENOSYS, EOPNOTSUPP, EBADF, ESPIPE or ENODEV *before any
byte moved in that step*; an error after bytes moved is a real error.  This mirrors the
JDK on Linux (copy_file_range, then sendfile, then 8 MiB mmap windows, then a copy loop)
with two differences: splice for sockets and pipes, and a 1 MiB relay buffer instead of
8 KiB (measured: chunk size matters more than the syscall).  The path that ran is
recorded in ``zcio.metrics``.  ``path=`` or the environment variable
``ZCIO_TRANSFER_PATH`` forces one rung, with no fallback.

Each system call moves at most 0x7ffff000 bytes (Linux's MAX_RW_COUNT, Java's cap).
EINTR is retried.  On a non-blocking channel, EAGAIN ends ``transfer_to``/
``transfer_from`` with what moved so far (possibly 0), on every rung (a forced splice
through the scratch pipe gives back to the file what the target did not take);
``zcio.transfer`` waits with ``poll`` instead.  If an error strikes after bytes moved,
``transfer_to``/``transfer_from`` return the count (Java's rule, as every channel: the
error comes again on the next call) and ``zcio.transfer``, which promises everything,
raises TransferError carrying the exact count that reached the target; positions were
advanced by that much.

Every transfer runs inside the in-flight registration of its zcio channels, and on a
duplicate (``dup``) of any other endpoint's descriptor (``zcio._channel.Guard``): a
channel closed by another thread stops the transfer, which raises
AsynchronousCloseError with the count moved, and no byte goes to or comes from a file
that took over a closed descriptor's number.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import mmap
import os
import select
import socket
import stat
import time
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

from . import _scratch, _syscalls
from ._buffer import check_int
from ._byte_buffer import ByteBuffer
from ._channel import Channel, Guard, partial
from ._direct import MAPPED, round_to_pages
from ._errors import (
    ClosedChannelError,
    IllegalArgumentError,
    NonReadableChannelError,
    NonWritableChannelError,
    TransferError,
)
from ._file_channel import FileChannel
from ._metrics import metrics
from ._pipe import HasFileno
from ._syscalls import MAX_TRANSFER, retry

__all__ = ["transfer", "transfer_to", "transfer_from", "PATHS", "default_ladder",
           "TransferSource", "TransferTarget"]

PATHS = ("copy_file_range", "sendfile", "splice", "mmap_write", "read_write")
_FALLBACK = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP,
             errno.EBADF, errno.ESPIPE, errno.ENODEV}
_MMAP_WINDOW = 8 << 20  # the JDK's transferTo mapping window
_FILE, _SOCKET, _PIPE, _OTHER, _OBJECT = "file", "socket", "pipe", "other fd", "object"


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


@dataclass
class _End:
    """One side of a transfer: a descriptor (or a channel object) and its offset.

    ``offset`` is an explicit file offset for regular files (positional I/O, so a
    file's own position never moves behind the caller's back) and None for streams.
    """

    obj: Any
    fd: int
    kind: str
    offset: int | None = None

    @property
    def blocking(self) -> bool:
        return self.fd < 0 or os.get_blocking(self.fd)


def _check_mode(end: _End, writing: bool) -> None:
    """NonWritable/NonReadableChannelError for a FileChannel opened the other way."""
    obj = end.obj
    if isinstance(obj, FileChannel):
        if writing and not obj.is_writable():
            raise NonWritableChannelError("target channel not opened for writing")
        if not writing and not obj.is_readable():
            raise NonReadableChannelError("source channel not opened for reading")


def _end(obj: Any, writing: bool, check_mode: bool = True, guard: Guard | None = None
         ) -> _End:
    """Classify ``obj``: a zcio channel, anything with ``fileno()``, or a channel object.

    With ``guard``, the descriptor is held by it (see ``Guard.fd``) until it finishes.
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
        mode = os.fstat(fd).st_mode
        kind = (_FILE if stat.S_ISREG(mode) else _SOCKET if stat.S_ISSOCK(mode)
                else _PIPE if stat.S_ISFIFO(mode) else _OTHER)
        end = _End(obj, fd, kind)
        if check_mode:
            _check_mode(end, writing)
        return end
    if hasattr(obj, "write" if writing else "read"):
        return _End(obj, -1, _OBJECT)
    raise TypeError(f"{type(obj).__name__} is not a channel")


def _ladder(src: _End, dst: _End) -> tuple[list[str], list[str]]:
    """(default ladder, every rung that can run) for ``src`` -> ``dst``, cheapest first."""
    loopback = src.kind == _FILE and dst.kind == _SOCKET and _loopback_peer(dst.fd)
    return default_ladder(src.kind, dst.kind, loopback)


def default_ladder(src_kind: str, dst_kind: str, loopback_peer: bool = False
                   ) -> tuple[list[str], list[str]]:
    """(default ladder, every rung that can run) between two kinds of endpoint.

    Kinds: ``"file"``, ``"socket"``, ``"pipe"``, ``"other fd"``, ``"object"``.  splice
    can move a file to a socket too (through a pipe) but sendfile does the same in one
    call, so it runs there only when forced.  ``loopback_peer``: the socket's peer is
    on this host (TCP), where read/write is measured faster (see below).
    """
    if _OBJECT in (src_kind, dst_kind):
        return ["read_write"], ["read_write"]
    possible = []
    if src_kind == _FILE and dst_kind == _FILE:
        possible.append("copy_file_range")
    if src_kind == _FILE:
        possible.append("sendfile")
    possible.append("splice")
    if src_kind == _FILE:
        possible.append("mmap_write")
    possible.append("read_write")
    default = [p for p in possible
               if p != "splice" or src_kind != _FILE or dst_kind == _PIPE]
    if loopback_peer:
        # Measured (benchmarks/transfer.py): to a TCP peer on this host, sendfile is
        # bimodal (2.7-5.6 GB/s for one C loop, by CPU placement; ~0.6x read/write under
        # load, where the receiver's copy out of page-cache-backed skbs cost ~2.7x), and
        # zcio's sendfile path measured 2.7-3.4 GB/s against 3.9-4.4 for this relay.
        # There is no NIC, so nothing is saved by not copying.  Remote peers keep sendfile.
        default.remove("read_write")
        default.insert(0, "read_write")
    return default, possible


def _loopback_peer(fd: int) -> bool:
    """Whether the TCP socket ``fd`` is connected to an address of this host's loopback."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return False
            host = sock.getpeername()[0]
    except OSError:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class _Unsupported(Exception):
    """This rung cannot serve these endpoints; nothing moved."""


class _WouldBlock(Exception):
    """A non-blocking endpoint has no data or no room; nothing moved in this step."""

    def __init__(self, end: _End, events: int) -> None:
        self.end, self.events = end, events


class _Partial(Exception):
    """An error after ``moved`` bytes of this step reached the target."""

    def __init__(self, error: OSError, moved: int) -> None:
        self.error, self.moved = error, moved


class _Transfer:
    """One transfer in progress: endpoints, the ladder, and the rung in use."""

    def __init__(self, src: _End, dst: _End, path: str | None, guard: Guard | None = None
                 ) -> None:
        self.src, self.dst = src, dst
        self.guard = guard  # its channels closing stops the transfer
        self.wait = True
        self.buf: ByteBuffer | None = None  # the relay buffer, held for the whole run
        forced = path or os.environ.get("ZCIO_TRANSFER_PATH") or None
        ladder, possible = _ladder(src, dst)
        if forced is not None:
            if forced not in PATHS:
                raise IllegalArgumentError(f"unknown transfer path {forced!r}; one of {PATHS}")
            if forced not in possible:
                raise IllegalArgumentError(
                    f"path {forced!r} cannot move {src.kind} -> {dst.kind} "
                    f"(possible: {', '.join(possible)})")
            ladder = [forced]
        self.ladder, self.forced = ladder, forced is not None
        self.path = ladder[0]

    # -- the loop ----------------------------------------------------------------------

    def run(self, count: int, wait: bool) -> int:
        """Move up to ``count`` bytes; stop at EOF, or on EAGAIN unless ``wait``."""
        moved = 0
        self.wait = wait
        guard = self.guard
        try:
            while moved < count:
                if guard is not None and guard.closed():
                    break  # asynchronously closed: the guard raises with the count
                want = min(count - moved, MAX_TRANSFER)
                try:
                    n = self._step(want)
                except _WouldBlock as wb:
                    if not wait:
                        break
                    _poll(wb.end.fd, wb.events)  # a channel object: poll sleeps 1 ms
                    continue
                if n == 0:
                    break
                moved += n
        except _Partial as p:
            moved += p.moved
            raise TransferError(p.error, moved) from p.error
        except OSError as e:
            if moved and not isinstance(e, TransferError):
                raise TransferError(e, moved) from e
            raise
        finally:
            metrics.record(self.path, syscalls=0)
            if self.buf is not None:
                _scratch.give_back(self.buf)
                self.buf = None
        return moved

    def _step(self, want: int) -> int:
        while True:
            try:
                return int(getattr(self, "_" + self.path)(want))
            except _Unsupported as u:
                i = self.ladder.index(self.path)
                if self.guard is not None and self.guard.closed():
                    return 0  # the dead descriptor refused it: nothing to fall back for
                if self.forced or i + 1 == len(self.ladder):
                    raise u.__cause__ or OSError(errno.ENOSYS, str(u)) from None
                self.path = self.ladder[i + 1]

    def _advance(self, n: int) -> None:
        if self.src.offset is not None:
            self.src.offset += n
        if self.dst.offset is not None:
            self.dst.offset += n

    def _blocked_end(self) -> _WouldBlock:
        """Which end made a zero-copy call return EAGAIN: files never block."""
        src, dst = self.src, self.dst
        if src.kind != _FILE and (dst.kind == _FILE or not _ready(src.fd, select.POLLIN)):
            return _WouldBlock(src, select.POLLIN)
        return _WouldBlock(dst, select.POLLOUT)

    def _kernel_call(self, fn: Any, *args: Any) -> int:
        """One zero-copy syscall: EAGAIN -> _WouldBlock, a fallback errno -> _Unsupported."""
        try:
            return int(retry(fn, *args))
        except BlockingIOError:
            raise self._blocked_end() from None
        except OSError as e:
            if e.errno in _FALLBACK:
                raise _Unsupported(f"{self.path}: {e.strerror}") from e
            raise

    # -- the rungs -------------------------------------------------------------------

    def _copy_file_range(self, want: int) -> int:
        n = self._kernel_call(_syscalls.SYS.copy_file_range, self.src.fd, self.dst.fd, want,
                              self.src.offset, self.dst.offset)
        metrics.record("copy_file_range", kernel_bytes=n, operations=0)
        self._advance(n)
        return n

    def _sendfile(self, want: int) -> int:
        if self.dst.offset is None:
            n = self._kernel_call(_syscalls.SYS.sendfile, self.dst.fd, self.src.fd,
                                  self.src.offset, want)
        else:
            # sendfile writes at the target's own position: seek there, and back after,
            # so that a file written at an explicit offset keeps its position.
            own = os.lseek(self.dst.fd, 0, os.SEEK_CUR)
            os.lseek(self.dst.fd, self.dst.offset, os.SEEK_SET)
            try:
                n = self._kernel_call(_syscalls.SYS.sendfile, self.dst.fd, self.src.fd,
                                      self.src.offset, want)
            finally:
                os.lseek(self.dst.fd, own, os.SEEK_SET)
        metrics.record("sendfile", kernel_bytes=n, operations=0)
        self._advance(n)
        return n

    def _splice(self, want: int) -> int:
        sys_ = _syscalls.SYS
        if self.src.kind == _PIPE or self.dst.kind == _PIPE:
            n = self._kernel_call(sys_.splice, self.src.fd, self.dst.fd, want,
                                  self.src.offset, self.dst.offset, os.SPLICE_F_MOVE)
            metrics.record("splice", kernel_bytes=n, operations=0)
            self._advance(n)
            return n
        pipe = _scratch.splice_pipe()
        n = self._kernel_call(sys_.splice, self.src.fd, pipe.write_fd,
                              min(want, pipe.capacity), self.src.offset, None,
                              os.SPLICE_F_MOVE)
        metrics.record("splice", operations=0)  # counted once, when delivered below
        if n == 0:
            return 0
        if self.src.offset is not None:
            self.src.offset += n
        drained = 0
        # The bytes are out of the source: they must all reach the target, unless the
        # source is a file (read at an offset) that can simply be read again.
        rereadable = self.src.offset is not None
        try:
            while drained < n:
                try:
                    k = retry(sys_.splice, pipe.read_fd, self.dst.fd, n - drained, None,
                              self.dst.offset, os.SPLICE_F_MOVE)
                except BlockingIOError:
                    if rereadable and not self.wait:  # a non-blocking target is full
                        _scratch.discard_pipe()
                        self._unread(n - drained)
                        if drained:
                            return drained
                        raise self._blocked_end() from None
                    _poll(self.dst.fd, select.POLLOUT)
                    continue
                metrics.record("splice", kernel_bytes=k, operations=0)
                if k == 0:
                    raise OSError(errno.EPIPE, "target accepted no bytes")
                drained += k
                if self.dst.offset is not None:
                    self.dst.offset += k
        except OSError as e:
            _scratch.discard_pipe()  # it may still hold bytes: never reuse it
            if rereadable:  # what the pipe swallowed is unread: read again next time
                self._unread(n - drained)
                if drained == 0 and e.errno in _FALLBACK:
                    # The target cannot take spliced bytes (an O_APPEND file: EINVAL):
                    # nothing moved, try the next rung.
                    raise _Unsupported(f"splice: {e.strerror}") from e
                if drained == 0:
                    raise  # nothing moved in this step: the plain error
            raise _Partial(e, drained) from e
        return n

    def _unread(self, n: int) -> None:
        """Bytes read from a file source at its offset did not reach the target: the
        offset goes back, so they are read again next time."""
        assert self.src.offset is not None
        self.src.offset -= n

    def _mmap_write(self, want: int) -> int:
        assert self.src.offset is not None
        start = self.src.offset
        size = os.fstat(self.src.fd).st_size
        if start >= size:
            return 0
        base = start - start % mmap.ALLOCATIONGRANULARITY
        length = min(want, _MMAP_WINDOW, size - start)
        try:
            mm = mmap.mmap(self.src.fd, start - base + length, access=mmap.ACCESS_READ,
                           offset=base)
        except OSError as e:
            if e.errno in _FALLBACK or e.errno == errno.EACCES:
                raise _Unsupported(f"mmap: {e.strerror}") from e
            raise
        used = round_to_pages(start - base + length)
        MAPPED.add(length, used)
        metrics.record("mmap_write", syscalls=2, operations=0)  # mmap and munmap
        try:
            with memoryview(mm) as whole, whole[start - base :] as view:
                return self._write_all(view, "mmap_write", may_stop=True)
        finally:
            try:
                mm.close()
            except BufferError:  # someone still holds a view: unmap when it goes
                weakref.finalize(mm, MAPPED.remove, length, used).atexit = False
            else:
                MAPPED.remove(length, used)

    def _read_write(self, want: int) -> int:
        if self.buf is None:
            self.buf = _scratch.temporary_buffer(_scratch.CHUNK)
        buf = self.buf.clear().limit(min(want, _scratch.CHUNK))
        n = self._read_into(buf)
        if n == 0:
            return 0
        with buf.memoryview() as whole, whole[:n] as view:
            return self._write_all(view, "read_write", may_stop=self.src.offset is not None)

    # -- relay helpers ---------------------------------------------------------------

    def _read_into(self, buf: ByteBuffer) -> int:
        """Read once from the source into ``buf`` (from position 0); 0 at EOF."""
        src = self.src
        n: int
        if src.kind == _OBJECT:
            n = int(src.obj.read(buf))
            if n == 0 and buf.has_remaining():
                raise _WouldBlock(src, select.POLLIN)
            n = max(n, 0)
            buf.position(0)  # the object's read advanced it: the bytes are [0, n)
        else:
            with buf.memoryview() as view:
                try:
                    n = (retry(_syscalls.SYS.readv, src.fd, [view]) if src.offset is None
                         else retry(_syscalls.SYS.preadv, src.fd, [view], src.offset))
                except BlockingIOError:
                    raise _WouldBlock(src, select.POLLIN) from None
        metrics.record("read_write", user_bytes=n, operations=0)
        if src.offset is not None:
            src.offset += n
        return n

    def _write_all(self, view: memoryview, path: str, may_stop: bool) -> int:
        """Write ``view`` to the target.  Returns what was written.

        ``may_stop``: the source can be re-read from its offset, so a non-blocking
        target may stop short (the rest is simply not consumed); otherwise the bytes
        are out of the source and this waits until the target takes them all.
        """
        dst, total, sys_ = self.dst, len(view), _syscalls.SYS
        written = 0
        try:
            while written < total:
                part = view[written:]
                try:
                    if dst.kind == _OBJECT:
                        k = dst.obj.write(ByteBuffer.wrap(part))
                    elif dst.offset is None:
                        k = retry(sys_.write, dst.fd, part)
                    else:
                        k = retry(sys_.pwrite, dst.fd, part, dst.offset)
                except BlockingIOError:
                    k = 0
                if k == 0:
                    if may_stop and written:
                        break
                    if may_stop:
                        raise _WouldBlock(dst, select.POLLOUT)
                    _poll(dst.fd, select.POLLOUT)
                    continue
                written += k
                if dst.offset is not None:
                    dst.offset += k
                metrics.record(path, user_bytes=k, operations=0)
        except OSError as e:
            raise _Partial(e, written) from e
        finally:
            if self.src.offset is not None and path == "read_write":
                self.src.offset -= total - written  # unwritten bytes stay unread
            elif self.src.offset is not None:
                self.src.offset += written
        return written


def _poll(fd: int, events: int) -> None:
    """Wait until ``fd`` is ready; for a channel object without one, sleep 1 ms."""
    if fd < 0:
        time.sleep(0.001)
        return
    poller = select.poll()
    poller.register(fd, events)
    poller.poll()


def _ready(fd: int, events: int) -> bool:
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(0))


def _file_position(end: _End) -> int:
    """Where a file end's own position is (its size for O_APPEND files)."""
    if isinstance(end.obj, FileChannel):
        return int(end.obj.position())
    return os.lseek(end.fd, 0, os.SEEK_CUR)


def _set_file_position(end: _End, position: int) -> None:
    try:
        os.lseek(end.fd, position, os.SEEK_SET)
    except OSError:
        if isinstance(end.obj, Channel) and not end.obj.is_open():
            return  # closed meanwhile: its descriptor is the dead socket (ESPIPE)
        raise


def transfer_to(channel: FileChannel, position: int, count: int, target: TransferTarget,
                path: str | None = None) -> int:
    """``FileChannel.transfer_to``: up to ``count`` bytes from ``position`` to ``target``.

    Java's rules: IllegalArgumentError for a negative position or count; 0 if
    ``position`` is past the end of the file; ``count`` is cut to the bytes the file
    has.  The channel's position does not move; the target's advances by the count
    (a file target is written at its own position; within this very file, an
    overlapping range ahead is copied as by ``memmove``).  Returns the count, which on
    a non-blocking target may be less than asked, even 0.  A file that shrinks during
    the transfer ends it early: the count says how far it got.

    Syscalls: copy_file_range / sendfile / splice / mmap+write / pread+write, see the
    module docstring.  An error after bytes moved: the count is returned (Java's rule).
    A channel closed by another thread meanwhile: AsynchronousCloseError with the count.
    """
    return Guard().run(_transfer_to, channel, position, count, target, path)


def _transfer_to(guard: Guard, channel: FileChannel, position: int, count: int, target: Any,
                 path: str | None) -> int:
    guard.fd(channel)  # the JDK's order: open, target open, readable, target writable, args
    dst = _end(target, writing=True, check_mode=False, guard=guard)
    src_fd = channel._readable_fd()
    _check_mode(dst, writing=True)
    if position < 0 or count < 0:
        raise IllegalArgumentError(f"negative position {position} or count {count}")
    size = os.fstat(src_fd).st_size
    if position > size:
        return 0
    count = min(count, size - position)
    if count == 0:
        return 0
    src = _End(channel, src_fd, _FILE, position)
    return _run_positioned(src, dst, count, path, wait=False, guard=guard)


def transfer_from(channel: FileChannel, source: TransferSource, position: int, count: int,
                  path: str | None = None) -> int:
    """``FileChannel.transfer_from``: up to ``count`` bytes from ``source`` at ``position``.

    Java's rules, checked in Java's order: ClosedChannelError if this channel, then the
    source, is closed; NonWritableChannelError; IllegalArgumentError for a negative
    position or count; 0 if ``position`` is past the end of this file; only then
    NonReadableChannelError for a file source not open for reading.  This channel's
    position does not move, on any path; the source's advances by the count.  A file
    source gives at most what lies between its position and its size when the call
    starts, so a transfer from this very file never copies the bytes it has just
    written: an overlapping range is copied as by ``memmove``, from the original bytes
    (the target ahead of the source is copied chunk by chunk from the end).  Returns
    the count: less than asked at the source's end of stream, or on a non-blocking
    source with nothing more ready.

    Syscalls: copy_file_range / sendfile / splice / mmap+write / read+pwrite.  An error
    after bytes moved: the count is returned (Java's rule; for a backward overlapping
    copy those are the range's last bytes), and the source's position advanced by it.  A
    channel closed by another thread meanwhile: AsynchronousCloseError with the count.
    """
    return Guard().run(_transfer_from, channel, source, position, count, path)


def _transfer_from(guard: Guard, channel: FileChannel, source: Any, position: int,
                   count: int, path: str | None) -> int:
    guard.fd(channel)  # the JDK's order: open, source open, writable, arguments, size,
    src = _end(source, writing=False, check_mode=False, guard=guard)  # source readable last
    dst_fd = channel._writable_fd()
    if position < 0 or count < 0:
        raise IllegalArgumentError(f"negative position {position} or count {count}")
    if position > os.fstat(dst_fd).st_size:
        return 0
    _check_mode(src, writing=False)
    dst = _End(channel, dst_fd, _FILE, position)
    if src.kind == _FILE:  # what lies between its position and its size, as Java
        count = max(0, min(count, os.fstat(src.fd).st_size - _file_position(src)))
    return _run_positioned(src, dst, count, path, wait=False, guard=guard)


def _overlaps_ahead(src: _End, dst: _End, count: int) -> bool:
    """Whether ``src`` -> ``dst`` copies within one file to an overlapping range ahead.

    An O_APPEND target writes at the end, past anything the source can read.
    """
    if src.kind != _FILE or dst.kind != _FILE or src.offset is None or dst.offset is None:
        return False
    if not src.offset < dst.offset < src.offset + count:
        return False
    if fcntl.fcntl(dst.fd, fcntl.F_GETFL) & os.O_APPEND:
        return False
    a, b = os.fstat(src.fd), os.fstat(dst.fd)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _copy_backward(src: _End, dst: _End, count: int, path: str | None, guard: Guard
                   ) -> int:
    """Copy ``count`` bytes within one file to an overlapping range ahead, as memmove.

    Chunks go from the end backwards, so every chunk is read before anything is written
    over it.  A chunk no longer than the gap does not overlap itself, so any rung (the
    forced one, if any) can move it; copy_file_range refuses overlapping ranges.  A gap
    under 1 MiB always takes the relay in 1 MiB chunks, whatever rung is forced: it is
    the one rung that reads a chunk whole before writing it, and gap-sized chunks
    would cost a syscall per few bytes.  Both offsets end advanced by the count moved.
    """
    assert src.offset is not None and dst.offset is not None
    gap = dst.offset - src.offset
    relay = gap < _scratch.CHUNK
    step = _scratch.CHUNK if relay else min(gap, MAX_TRANSFER)
    rung = "read_write" if relay else path
    moved = 0
    try:
        while moved < count:
            n = min(step, count - moved)
            at = count - moved - n
            chunk = _Transfer(_End(src.obj, src.fd, _FILE, src.offset + at),
                              _End(dst.obj, dst.fd, _FILE, dst.offset + at), rung, guard)
            k = chunk.run(n, wait=False)
            moved += k
            if k < n:  # the file shrank under us: what moved is the range's tail
                break
    except TransferError as e:
        moved += e.transferred
        raise TransferError(e.__cause__ if isinstance(e.__cause__, OSError) else e,
                            moved) from e.__cause__
    except OSError as e:
        if moved:
            raise TransferError(e, moved) from e
        raise
    finally:
        src.offset += moved
        dst.offset += moved
    return moved


def _run_positioned(src: _End, dst: _End, count: int, path: str | None, wait: bool,
                    guard: Guard) -> int:
    """Run with explicit offsets for file ends whose own position must advance.

    ``wait``: ``zcio.transfer``, which promises everything, so an error after bytes
    moved is TransferError; else Java's partial rule (``zcio._channel.partial``).

    Within one file, a target range ahead of and overlapping the source's is copied as
    by ``memmove``: every byte written is one the source had when the call started.
    """
    src_start = dst_start = None
    if src.kind == _FILE and src.offset is None:
        src.offset = src_start = _file_position(src)
    if dst.kind == _FILE and dst.offset is None:
        dst.offset = dst_start = _file_position(dst)
    try:
        if _overlaps_ahead(src, dst, count):
            return _copy_backward(src, dst, count, path, guard)
        return _Transfer(src, dst, path, guard).run(count, wait)
    except TransferError as e:
        if wait:
            raise
        return partial(e.transferred, e)
    finally:  # also on error: positions say exactly what moved
        if src_start is not None and src.offset is not None:
            _set_file_position(src, src.offset)
        if dst_start is not None and dst.offset is not None:
            _set_file_position(dst, dst.offset)


def transfer(src: TransferSource, dst: TransferTarget, count: int | None = None, *,
             path: str | None = None) -> int:
    """Move ``count`` bytes (default: all until the source ends) from ``src`` to ``dst``.

    Loops to completion by the cheapest path, waiting (poll) on non-blocking
    channels.  Both endpoints' positions advance by what moved.  For a file source,
    "all" is what lies between its position and its size when the call starts.  If the
    source ends early (a file that shrank, a peer that closed before ``count``), or
    an error strikes after some bytes moved, TransferError says exactly how many reached
    ``dst``.  Returns the count moved.  TypeError for a non-integer ``count``.  A zcio
    channel closed by another thread meanwhile: AsynchronousCloseError with the count;
    another endpoint closed by its owner meanwhile keeps being served through a duplicate
    of its descriptor.
    """
    if count is not None:
        count = check_int(count, "count")
    if count is not None and count < 0:
        raise IllegalArgumentError(f"negative count {count}")
    return Guard().run(_transfer, src, dst, count, path)


def _transfer(guard: Guard, src: Any, dst: Any, count: int | None, path: str | None) -> int:
    s, d = _end(src, writing=False, guard=guard), _end(dst, writing=True, guard=guard)
    if count is None:
        want = (os.fstat(s.fd).st_size - _file_position(s) if s.kind == _FILE
                else (1 << 63) - 1)
    else:
        want = count
    moved = _run_positioned(s, d, max(want, 0), path, wait=True, guard=guard)
    if guard.closed():
        return moved  # the guard raises AsynchronousCloseError with the count
    if moved < want and (count is not None or s.kind == _FILE):
        # A file's size at the start defines "all": ending early means it shrank.
        what = "source file shrank" if count is None else "source ended"
        raise TransferError(OSError(errno.ENODATA, f"{what} after {moved} of {want} bytes"),
                            moved)
    return moved

