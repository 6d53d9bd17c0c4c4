"""Direct memory shared between processes: memfd buffers and descriptor passing.

``ByteBuffer.allocate_shared(n)`` makes a direct buffer over a *memfd*, an anonymous
file in memory (``memfd_create``), mapped ``MAP_SHARED``: page-aligned, zero-filled,
and reachable from another process that gets the descriptor.  Two ways hand it over,
both passing the descriptor, never the bytes:

* ``SocketChannel.send_buffer(buf)`` / ``receive_buffer()`` on a Unix socket: one message,
  a fixed 48-byte header (magic, version, flags, seals, offset, capacity, position,
  limit) with the descriptor attached (``SCM_RIGHTS``).
* multiprocessing: pickling a shared buffer through ``multiprocessing``'s pickler (a
  Queue, a Pipe, Pool or Process arguments under fork, forkserver or spawn) passes the
  descriptor (``multiprocessing.reduction.DupFd``).  Plain ``pickle`` is untouched.

Both ends map the same pages: each sees the other's writes.  Each process counts its
mappings in the ``shared`` pool of ``buffer_pools()`` (not ``direct``, and not against
the direct-memory cap: the pages belong to a file every holder keeps alive).  Each
process's ``release()`` unmaps its own mapping and closes its own descriptor; the
memory goes when the last mapping or descriptor in any process goes, so a process
that dies (even SIGKILLed) while holding one takes nothing from the others.

**Seals.** The file's size is sealed at allocation (``F_SEAL_SHRINK | F_SEAL_GROW``):
a zcio buffer never resizes, and a receiver then knows nobody can truncate the file
under its mapping (which would make an access die of SIGBUS); a receiver refuses a
descriptor without ``F_SEAL_SHRINK``.  For a read-only hand-off, ``seal(write=True)``
makes the bytes immutable for everyone (``F_SEAL_WRITE``): the kernel refuses it while
any writable mapping exists, so the call unmaps this buffer's writable mapping and
returns a read-only buffer instead; ``seal(future_write=True)`` (``F_SEAL_FUTURE_WRITE``,
Linux 5.1) keeps this process's writable mapping and refuses every new writable one and
``write(2)``: the sender stays the only writer.  A receiver of a buffer sealed either
way gets a read-only buffer.  ``seal(final=True)`` adds ``F_SEAL_SEAL``: no more seals.

**Names.** The memfd's name shows in ``/proc/PID/maps`` (and ``/proc/PID/fd``) as
``/memfd:NAME (deleted)``; ``name`` defaults to ``"zcio-shared"``.  ``PR_SET_VMA_ANON_NAME``
applies to anonymous mappings only; a memfd mapping is a file mapping, named by its file.
Plain direct memory (``allocate_direct``) is left unnamed: the prctl needs a kernel built
with ``CONFIG_ANON_VMA_NAME`` and costs a system call per allocation.

**Counting.** A process counts each of its mappings once: the sender's, and each
buffer it receives (receiving the same memory twice maps it twice, as two ``map()``
calls of one file count twice in ``mapped``).
"""

from __future__ import annotations

import _socket
import array
import errno
import mmap
import os
import socket
import struct
import sys
import weakref
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from . import _syscalls
from ._accel import native
from ._byte_buffer import ByteBuffer, check_capacity
from ._direct import PAGE_SIZE, SHARED, round_to_pages
from ._errors import (
    ClosedChannelError,
    IllegalArgumentError,
    IllegalStateError,
    UnsupportedOperationError,
    ZcioError,
)
from ._memory import DirectMemory, Memory
from ._metrics import metrics
from ._order import ByteOrder
from ._syscalls import (
    F_SEAL_FUTURE_WRITE,
    F_SEAL_GROW,
    F_SEAL_SEAL,
    F_SEAL_SHRINK,
    F_SEAL_WRITE,
    MFD_ALLOW_SEALING,
    MFD_CLOEXEC,
)

if TYPE_CHECKING:
    from ._socket_channel import SocketChannel

#: A mapping SharedMemory holds: CPython's mmap or zcio._native.SharedMap (the same
#: buffer protocol, ``len()`` and ``close()``; the latter also ``set_cleaner``).
Mapping = Any

__all__ = [
    "EndOfStreamError",
    "HandoffError",
    "SealViolationError",
    "SharedByteBuffer",
    "allocate_shared",
    "receive_buffer",
    "send_buffer",
]


class HandoffError(ZcioError, ValueError):
    """A peer handed over something that is not a shared buffer (a short header, a bad
    magic or version, no descriptor, several, one that is not a suitable memfd).
    Every descriptor that arrived with it has been closed."""


class SealViolationError(ZcioError, PermissionError):
    """A seal of the memory forbids the call (adding a seal after ``final=True``...)."""


class EndOfStreamError(ZcioError, EOFError):
    """``receive_buffer()`` found the end of the stream: the peer closed its side."""


_SEAL_NAMES = {
    F_SEAL_SEAL: "seal",
    F_SEAL_SHRINK: "shrink",
    F_SEAL_GROW: "grow",
    F_SEAL_WRITE: "write",
    F_SEAL_FUTURE_WRITE: "future_write",
}
_NO_WRITES = F_SEAL_WRITE | F_SEAL_FUTURE_WRITE
_MAX_NAME = 249  # MFD_NAME_MAX_LEN: 255 minus the "memfd:" prefix

#: The message: magic, version, flags, seals, offset, capacity, position, limit.
_HEADER = struct.Struct("<8sHHIQQQQ")
_MAGIC = b"zcioSHM\x00"
_VERSION = 1
_READ_ONLY, _LITTLE_ENDIAN = 1, 2
#: Room for a few descriptors, so that a peer sending several is caught, not truncated.
_ANCILLARY = socket.CMSG_SPACE(4 * array.array("i").itemsize)
# Plain ints: socket's MsgFlag members cost an enum operation per use (~2 us per message).
_MSG_CMSG_CLOEXEC, _MSG_CTRUNC = int(socket.MSG_CMSG_CLOEXEC), int(socket.MSG_CTRUNC)
_SOL_SOCKET, _SCM_RIGHTS = int(socket.SOL_SOCKET), int(socket.SCM_RIGHTS)
_FD = struct.Struct("=i")
#: The zcio.metrics paths of the two calls.
_SEND_PATH, _RECEIVE_PATH = "shared_send", "shared_receive"
#: Why descriptors cannot pass here (fixed at import, as zcio._syscalls' probes are).
_NO_SCM_RIGHTS = _syscalls.unavailability_cause("scm_rights")


def _close(cells: list[int]) -> None:
    """Close every descriptor in ``cells`` still open, -1 left in its place first.

    A descriptor being handed over lives in such a cell from the moment it exists
    until the mapping's cleaner has closed it: whoever closes it (an error path on
    the way, or the cleaner) marks the cell, so it is closed once, whichever runs
    first and however many error paths an exception crosses (a raising signal
    handler can strike at the entry of any function on the way)."""
    for i, n in enumerate(cells):
        if n >= 0:
            cells[i] = -1
            os.close(n)


def _unshare(fd: list[int], size: int, used: int) -> None:
    """The cleaner: close the descriptor (see :func:`_close`) and give back the
    accounting, also when the close fails (its OSError raised after: the mapping is
    gone either way)."""
    try:
        _close(fd)
    finally:
        SHARED.remove(size, used)


class SharedMemory(DirectMemory):
    """This process's ``MAP_SHARED`` mapping of a memfd and a descriptor of it, counted
    in the ``shared`` pool.  Takes over ``fd``, which is closed with the mapping.

    The mapping is a ``zcio._native.SharedMap`` (see :func:`_map`), which runs the
    cleaner itself when it unmaps, or CPython's ``mmap`` (which keeps a second, private
    descriptor), cleaned by a ``weakref.finalize`` of it.

    Syscalls: ``mmap(MAP_SHARED)`` (by the caller), ``munmap`` and ``close`` when the
    last view is gone (deferred, as for direct memory, while the user holds an export).
    """

    __slots__ = ("_fd", "seals")

    def __init__(self, mm: Mapping, size: int, fd: list[int], seals: int,
                 finalizer: Callable[[], object]) -> None:
        """Over ``mm``, which :func:`_shared_memory` handed the descriptor cell ``fd``
        and the accounting to (``finalizer``: what ``_free`` calls after the unmap)."""
        _register_reducer()
        base = memoryview(mm) if size == len(mm) else memoryview(mm)[:size]
        self._mmap = mm
        self._fd = fd
        self._finalizer = finalizer
        #: Seals known to be set (seals are never removed: a subset of the file's).
        self.seals = seals
        Memory.__init__(self, base)
        self._address = -1

    def fileno(self) -> int:
        """The memfd's descriptor (ReleasedBufferError after release)."""
        if self.released or self._fd[0] < 0:
            raise self.released_error()
        return self._fd[0]


def _cleaned() -> None:
    """A SharedMap's finalizer: nothing, its ``close()`` ran the cleaner."""


def _shared_memory(cell: list[int], length: int, size: int, seals: int, readonly: bool,
                   map_error: Callable[[Exception], Exception] | None = None,
                   ) -> SharedMemory:
    """The memory of the first ``length`` bytes (``size`` of them in use) of the memfd
    in ``cell`` (one descriptor, see :func:`_close`), mapped read-only if
    ``readonly``.  Takes the descriptor over: closed on error, and with the memory
    otherwise.  ``map_error(e)``: the exception to raise if the mapping fails (asked
    while the descriptor is still open).

    The one place a descriptor is handed over to a mapping's cleaner, which then
    closes it and counts the memory out when the mapping goes.  On error, the
    mapping goes now if it can be closed, else when the frames holding a view of it
    are collected; callers close the cell too (a no-op once closed), for an exception
    at this function's entry.

    Syscalls: ``fstat``, ``mmap(MAP_SHARED)`` (see :func:`_map`); on error ``munmap``
    and ``close``.
    """
    fd = cell[0]
    mm: Mapping = None
    cleaner: Callable[[], object] | None = None
    used = -1  # not counted yet
    try:
        try:
            mm = _map(fd, length, readonly)
        except (OSError, ValueError) as e:
            if map_error is None:
                raise
            raise map_error(e) from e
        pages = round_to_pages(length)  # what the kernel maps
        SHARED.add(size, pages)
        used = pages
        # The cleaner holds only what it frees: the descriptor's cell and the numbers.
        if isinstance(mm, mmap.mmap):
            cleaner = finalizer = weakref.finalize(mm, partial(_unshare, cell), size, used)
            finalizer.atexit = False
        else:
            mm.set_cleaner(_unshare, cell, size, used)
            cleaner = _cleaned
        return SharedMemory(mm, size, cell, seals, cleaner)
    except BaseException:
        if cleaner is None:  # not handed over: undone here
            if used >= 0:
                SHARED.remove(size, used)
            if mm is not None:
                mm.close()
            _close(cell)
        else:
            try:
                mm.close()  # SharedMap: runs the cleaner
            except BufferError:
                pass  # a dying frame's view: the cleaner runs when it is collected
            else:
                cleaner()  # weakref.finalize: runs it now (once); _cleaned: nothing
        raise


def _map(fd: int, length: int, readonly: bool) -> Mapping:
    """A ``MAP_SHARED`` mapping of ``fd``'s first ``length`` bytes: the compiled
    ``SharedMap`` while ``_syscalls.NATIVE_IO`` is set (no duplicate descriptor to make
    and close), else CPython's ``mmap``.  Both check the size with ``fstat`` first
    (ValueError if the file is shorter) and refuse ``close()`` while exported.

    Syscalls: ``fstat``, ``mmap(MAP_SHARED)`` (CPython's mmap: also ``dup``).
    """
    if _syscalls.NATIVE_IO is not None:
        mapping: Mapping = _syscalls.NATIVE_IO.SharedMap(fd, length, readonly)
        return mapping
    # Access modes, not prot: CPython exports a PROT_READ mapping as writable otherwise.
    return mmap.mmap(fd, length, access=mmap.ACCESS_READ if readonly else mmap.ACCESS_WRITE)


def _add_seals(fd: int, seals: int) -> None:
    """F_ADD_SEALS with the kernel's refusals turned into zcio's errors."""
    try:
        _syscalls.SYS.add_seals(fd, seals)
    except OSError as e:
        if e.errno == errno.EPERM:
            raise SealViolationError(
                "the memory is sealed against further seals (final=True)") from e
        if e.errno == errno.EBUSY:
            raise IllegalStateError(
                "cannot seal against writes while a writable mapping exists (in another "
                "process, or a memoryview exported in this one)") from e
        if e.errno == errno.EINVAL:
            raise UnsupportedOperationError(
                f"this kernel lacks a seal among {_names(seals)} (future_write needs "
                "Linux 5.1)") from e
        raise


def _names(seals: int) -> frozenset[str]:
    return frozenset(name for bit, name in _SEAL_NAMES.items() if seals & bit)


class SharedByteBuffer(ByteBuffer):
    """A direct ByteBuffer whose memory other processes can map (see the module
    docstring).  Slices, duplicates and read-only views of it are shared buffers too."""

    __slots__ = ()
    _made_by = "a SharedByteBuffer is made by ByteBuffer.allocate_shared(capacity)"

    def __repr__(self) -> str:
        """``zcio.SharedByteBuffer[pos=.. lim=.. cap=..]`` (``R`` if read-only), the
        shape of every buffer's repr; ``seals()`` tells the memory's seals."""
        ro = "R" if self._ro else ""
        return f"zcio.SharedByteBuffer{ro}[pos={self._pos} lim={self._lim} cap={self._cap}]"

    def _shared(self) -> SharedMemory:
        self._check_memory()
        mem = self._mem
        assert isinstance(mem, SharedMemory)
        return mem

    def fileno(self) -> int:
        """The memfd's descriptor in this process (valid until ``release()``); for
        passing it on by other means (``subprocess``'s ``pass_fds``...)."""
        return self._shared().fileno()

    def seals(self) -> frozenset[str]:
        """The memory's seals: a subset of ``{"seal", "shrink", "grow", "write",
        "future_write"}`` (``shrink`` and ``grow`` from allocation on).

        Syscalls: ``fcntl(F_GET_SEALS)``.
        """
        return _names(_syscalls.SYS.get_seals(self.fileno()))

    def seal(self, *, write: bool = False, future_write: bool = False,
             final: bool = False) -> SharedByteBuffer:
        """Add seals to the memory, for every process that maps it; returns the buffer
        to go on with.  Seals are never removed.

        * ``future_write``: no new writable mapping and no ``write(2)``, anywhere; this
          process's mapping stays writable.  Returns this buffer.
        * ``write``: nobody can change the bytes any more.  The kernel allows it only
          while no writable mapping exists, so this buffer's memory is released first
          (every buffer and view over it: ReleasedBufferError after) and a new
          read-only buffer, with this one's indexes, order and mark, is returned.
          IllegalStateError, before anything changes, if the memory is retained
          (reference count above 1); IllegalStateError if another shared mapping
          remains (one another process made before the seal, even a read-only one:
          the kernel counts it as writable; or a memoryview exported here), and then
          this buffer is released all the same.
        * ``final``: ``F_SEAL_SEAL``, no more seals (a later ``seal()`` with any seal
          raises SealViolationError).  Returns this buffer, unless ``write``.

        No index changes.  UnsupportedOperationError if the kernel lacks a seal.

        Syscalls: ``fcntl(F_ADD_SEALS)``; for ``write`` also ``mmap`` of a read-only
        mapping and ``munmap`` of the writable one.
        """
        mem = self._shared()
        bits = (F_SEAL_FUTURE_WRITE if future_write else 0) | (F_SEAL_SEAL if final else 0)
        if not write:
            if bits:
                _add_seals(mem.fileno(), bits)
                mem.seals |= bits
            return self
        if mem.refcnt != 1:
            raise IllegalStateError(
                f"seal(write=True) releases the memory, which is retained (refCnt: "
                f"{mem.refcnt})")
        assert mem._mmap is not None  # not released: _shared() checked
        length, order, mark = len(mem._mmap), self._order, self._mark
        cell = [os.dup(mem.fileno())]  # non-inheritable, as the memfd
        try:
            mem.release()  # revoke every view, unmap the writable mapping
            # Seal before mapping again: a shared mapping made before F_SEAL_WRITE
            # counts as writable, even a read-only one; one made after cannot write.
            _add_seals(cell[0], F_SEAL_WRITE | bits)
            new = _shared_memory(cell, length, mem.size, mem.seals | F_SEAL_WRITE | bits,
                                 True)
        except BaseException:
            _close(cell)
            raise
        sealed = self._make(new, self._off, self._cap, self._pos, self._lim, mark, ro=True)
        return sealed.order(order)


def allocate_shared(capacity: int, name: str | None = None) -> SharedByteBuffer:
    """See ``ByteBuffer.allocate_shared``."""
    capacity = check_capacity(capacity)
    label = "zcio-shared" if name is None else name
    if not isinstance(label, str):
        raise TypeError(f"name must be a str, not {type(label).__name__}")
    if "\0" in label or "/" in label or len(label.encode()) > _MAX_NAME:
        raise IllegalArgumentError(
            f"memfd name {label!r}: at most {_MAX_NAME} bytes, no NUL or '/'")
    if not _syscalls.is_available("memfd_create"):
        raise UnsupportedOperationError(_syscalls.unavailability_cause("memfd_create"))
    sys_ = _syscalls.SYS
    used = round_to_pages(capacity) or PAGE_SIZE  # a page even for 0: mmap needs one
    cell = [sys_.memfd_create(label, MFD_CLOEXEC | MFD_ALLOW_SEALING)]
    try:
        sys_.ftruncate(cell[0], used)
        sys_.add_seals(cell[0], F_SEAL_SHRINK | F_SEAL_GROW)
        mem = _shared_memory(cell, used, capacity, F_SEAL_SHRINK | F_SEAL_GROW, False)
    except BaseException:
        _close(cell)
        raise
    return SharedByteBuffer._make(mem, 0, capacity, 0, capacity)


# -- the hand-off message -----------------------------------------------------------


def _header(buf: SharedByteBuffer, mem: SharedMemory) -> bytes:
    """The message for ``buf``.  It states the seals this process knows are set (no
    ``F_GET_SEALS``: seals are never removed, so they are all still set; any added
    elsewhere the receiver reads from the file)."""
    flags = (_READ_ONLY if buf._ro else 0) | (
        _LITTLE_ENDIAN if buf._order is ByteOrder.LITTLE_ENDIAN else 0)
    return _HEADER.pack(_MAGIC, _VERSION, flags, mem.seals, buf._off, buf._cap,
                        buf._pos, buf._lim)


def _adopt(cell: list[int], header: bytes, seals: int | None = None) -> SharedByteBuffer:
    """A buffer over the memfd in ``cell`` (one descriptor, see :func:`_close`) as
    ``header`` describes it, after checking that it really is one, big enough and
    sealed against shrinking; HandoffError else.  ``seals``: its ``F_GET_SEALS``
    already asked (``-errno`` if that failed), or None.  Takes the descriptor over:
    closed on error, and with the buffer's memory otherwise."""
    fd = cell[0]
    try:
        flags, found, off, cap, pos, lim = _check(fd, header, seals)
    except BaseException:
        _close(cell)
        raise
    # The size: CPython's mmap fstats the file and refuses a length past its end
    # (ValueError); one fstat, not two, on the way that works.
    need = max(off + cap, 1)
    readonly = bool(flags & _READ_ONLY or found & _NO_WRITES)

    def map_error(e: Exception) -> Exception:
        size = _syscalls.SYS.fstat(fd).st_size  # cannot fail: F_GET_SEALS worked on it
        if size < need:
            return HandoffError(f"memfd of {size} bytes, {need} stated")
        return HandoffError(f"cannot map the memfd received: {e}")

    mem = _shared_memory(cell, need, off + cap, found, readonly, map_error)
    buf = SharedByteBuffer._make(mem, off, cap, pos, lim, ro=readonly)
    if flags & _LITTLE_ENDIAN:
        buf.order(ByteOrder.LITTLE_ENDIAN)
    return buf


def _check(fd: int, header: bytes, known: int | None,
           ) -> tuple[int, int, int, int, int, int]:
    """``header`` checked against the memfd ``fd`` (HandoffError): its flags, the seals
    set, offset, capacity, position and limit."""
    if len(header) != _HEADER.size:
        raise HandoffError(f"short header: {len(header)} of {_HEADER.size} bytes")
    magic, version, flags, claimed, off, cap, pos, lim = _HEADER.unpack(header)
    if magic != _MAGIC:
        raise HandoffError(f"bad magic {magic!r}: not a zcio shared-buffer message")
    if version != _VERSION:
        raise HandoffError(f"unsupported version {version} (this zcio speaks {_VERSION})")
    if not pos <= lim <= cap or off + cap > sys.maxsize:
        raise HandoffError(f"bad indexes: offset {off}, capacity {cap}, position {pos}, "
                           f"limit {lim}")
    # Only a memfd can carry F_SEAL_SHRINK (F_GET_SEALS fails on non-shmem files; tmpfs
    # and hugetlbfs files are born F_SEAL_SEAL), and the seal keeps the size fstat sees
    # from shrinking: no readlink of /proc/self/fd needed.
    sys_ = _syscalls.SYS
    try:
        if known is None:
            seals = sys_.get_seals(fd)
        elif known < 0:
            raise OSError(-known, os.strerror(-known))
        else:
            seals = known
    except OSError as e:
        raise HandoffError(f"the descriptor received is not a memfd (F_GET_SEALS: "
                           f"{e.strerror})") from e
    if not seals & F_SEAL_SHRINK:
        raise HandoffError("the descriptor received is not a memfd sealed against "
                           "shrinking: its owner could truncate it under the mapping "
                           "(SIGBUS)")
    if claimed & ~seals:
        raise HandoffError(f"seals {sorted(_names(claimed & ~seals))} stated but not set")
    return flags, seals, off, cap, pos, lim


def _unix_socket(channel: SocketChannel) -> tuple[socket.socket, int]:
    """The channel's connected Unix socket and its descriptor (read once: the caller
    runs inside the channel's in-flight registry, so the number stays the channel's)."""
    sock = channel._check_connected()
    family = super(socket.socket, sock).family  # an int: the property makes an enum
    if family != socket.AF_UNIX:
        raise UnsupportedOperationError(
            "descriptors pass only over a Unix socket, not family "
            f"{socket.AddressFamily(family).name}")
    if _NO_SCM_RIGHTS is not None:
        raise UnsupportedOperationError(_NO_SCM_RIGHTS)
    return sock, channel.fileno()


def send_buffer(channel: SocketChannel, buf: SharedByteBuffer) -> bool:
    """See ``SocketChannel.send_buffer``: the compiled ``sendmsg`` (``native/share.c``)
    while ``_syscalls.NATIVE_IO`` is set, else ``Syscalls.sendmsg_fds``.  Where
    ``zcio._native`` is in use the common call runs compiled whole (``native/chan.c``
    and ``share.c``); this is its reference and the path of everything else."""
    if not isinstance(buf, SharedByteBuffer):
        raise TypeError("send_buffer() needs a buffer from ByteBuffer.allocate_shared(), "
                        f"not {type(buf).__name__}")
    mem = buf._shared()
    with channel._write_lock:
        sock, sock_fd = _unix_socket(channel)
        if channel._output_shut:
            raise ClosedChannelError("output is shut down")
        mem.retain()  # a concurrent release() cannot close the descriptor under us
        try:
            fd = mem.fileno()
            data = _header(buf, mem)
            native = _syscalls.NATIVE_IO
            if native is not None:  # counted inside, as _sendmsg counts
                n = native.share_send(sock_fd, data, fd, _SEND_PATH)
            else:
                n = _sendmsg(sock, data, fd)
        except BlockingIOError:
            return False
        finally:
            mem.release()
    if n != len(data):  # pragma: no cover - AF_UNIX queues a small message whole
        raise HandoffError(f"only {n} of {len(data)} header bytes sent: the stream is "
                           "out of step")
    return True


def _sendmsg(sock: socket.socket, data: bytes, fd: int) -> int:
    """``Syscalls.sendmsg_fds`` of one hand-off message, counted (whatever the outcome)."""
    try:
        return _syscalls.retry(_syscalls.SYS.sendmsg_fds, sock, data, [fd])
    finally:
        metrics.record(_SEND_PATH)


def _recvmsg(sock: socket.socket) -> tuple[bytes, list[int], bool, int]:
    """``Syscalls.recvmsg`` of one hand-off message, counted (whatever the outcome):
    the header's bytes, every descriptor received (closed if this raises after the
    call), whether other ancillary data came, the message's flags."""
    anc: list[tuple[int, int, bytes]] = []
    try:
        try:
            data, anc, flags, _ = _syscalls.retry(
                _syscalls.SYS.recvmsg, sock, _HEADER.size, _ANCILLARY, _MSG_CMSG_CLOEXEC)
        finally:
            metrics.record(_RECEIVE_PATH)
        fds, other = _received_fds(anc)
    except BaseException:
        _close(_received_fds(anc)[0])
        raise
    return data, fds, other, flags


def _received_fds(ancillary: list[tuple[int, int, bytes]]) -> tuple[list[int], bool]:
    """Every descriptor in the ancillary data, and whether anything else came."""
    if len(ancillary) == 1:  # the usual message: one SCM_RIGHTS item, one descriptor
        level, kind, data = ancillary[0]
        if level == _SOL_SOCKET and kind == _SCM_RIGHTS and len(data) == _FD.size:
            return [_FD.unpack(data)[0]], False
    fds: list[int] = []
    other = False
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            ints = array.array("i")
            ints.frombytes(data[: len(data) - len(data) % ints.itemsize])
            fds.extend(ints)
        else:
            other = True
    return fds, other


def receive_buffer(channel: SocketChannel) -> SharedByteBuffer | None:
    """See ``SocketChannel.receive_buffer``: the compiled ``recvmsg`` and
    ``F_GET_SEALS`` (``native/share.c``) while ``_syscalls.NATIVE_IO`` is set, else
    ``Syscalls.recvmsg`` (and ``get_seals`` in :func:`_adopt`).  Where ``zcio._native``
    is in use the common call runs compiled whole (``native/chan.c`` and ``share.c``);
    this is its reference and the path of everything else."""
    fds: list[int] = []
    try:
        with channel._read_lock:
            sock, sock_fd = _unix_socket(channel)
            if channel._input_shut:
                raise EndOfStreamError("input is shut down")
            native = _syscalls.NATIVE_IO
            seals: int | None = None
            try:
                if native is not None:  # counted inside, as _recvmsg counts
                    data, fds, other, flags, seals = native.share_receive(
                        sock_fd, _HEADER.size, _ANCILLARY, _RECEIVE_PATH)
                else:
                    data, fds, other, flags = _recvmsg(sock)
            except BlockingIOError:
                return None
        return _received(data, fds, other, flags, seals)
    except BaseException:
        _close(fds)  # those _received did not reach (an exception at its entry)
        raise


def _received(data: bytes, fds: list[int], other: bool, flags: int,
              seals: int | None) -> SharedByteBuffer:
    """The buffer a hand-off message describes, after its checks (HandoffError,
    EndOfStreamError): the header's ``data``, every descriptor received (taken over:
    closed on error), whether other ancillary data came, the message's flags, the lone
    descriptor's ``F_GET_SEALS`` if asked (see :func:`_adopt`).  The compiled
    ``receive_buffer`` (``native/share.c``) builds the buffer itself when every check
    passes, and calls this for anything else."""
    try:
        if not data and not fds:
            raise EndOfStreamError("the peer closed the connection")
        if other or flags & _MSG_CTRUNC:
            raise HandoffError("unexpected ancillary data with the header")
        if len(fds) != 1:
            raise HandoffError(f"{len(fds) or 'no'} descriptors with the header, 1 expected")
        return _adopt(fds, data, seals)
    except BaseException:
        _close(fds)
        raise


# -- multiprocessing ----------------------------------------------------------------


def _rebuild(dup: Any, header: bytes) -> SharedByteBuffer:
    cell = [dup.detach()]
    try:
        return _adopt(cell, header)
    except BaseException:
        _close(cell)
        raise


def _reduce(buf: SharedByteBuffer) -> tuple[Any, tuple[Any, bytes]]:
    """multiprocessing's reducer: the descriptor (``DupFd``: passed to a spawned
    child, or fetched from this process's resource sharer) and the header."""
    from multiprocessing.reduction import DupFd

    mem = buf._shared()
    fd = mem.fileno()
    return _rebuild, (DupFd(fd), _header(buf, mem))


_registered = False


def _register_reducer() -> None:
    """Teach multiprocessing's pickler to pass shared buffers by descriptor.  Done at
    the first shared buffer, not at import: importing multiprocessing costs ~3 ms,
    and without a shared buffer there is nothing to register for."""
    global _registered
    if not _registered:
        from multiprocessing.reduction import ForkingPickler

        ForkingPickler.register(SharedByteBuffer, _reduce)
        _registered = True


# -- the compiled hand-off --------------------------------------------------------------


def _accelerate() -> None:
    """Tell ``zcio._native`` (``native/share.c``) what the compiled hand-off fills in:
    the classes whose slots it sets, the byte orders' slot values, the header's layout
    constants, the cleaner and accounting it calls.  ``SocketChannel`` then installs the
    compiled ``send_buffer``/``receive_buffer`` (``native/chan.c``), and a shared
    buffer's ``release()`` runs in C (``native/pool.c``'s ``Buffer.release``).  Without
    the accelerator, nothing changes."""
    if native is None:
        return
    from ._memory import HeapMemory

    proto = ByteBuffer._make(HeapMemory(bytearray()), 0, 0, 0, 0)  # what _make sets
    names = ("_mark", "_order", "_c", "_i32")
    big = {name: getattr(proto, name) for name in names}
    proto.order(ByteOrder.LITTLE_ENDIAN)
    little = {name: getattr(proto, name) for name in names}
    consts = (_HEADER.size, _ANCILLARY, _MAGIC, _VERSION, _READ_ONLY, _LITTLE_ENDIAN,
              F_SEAL_SHRINK, _NO_WRITES, PAGE_SIZE, ByteOrder.LITTLE_ENDIAN)
    native.accelerate_share(SharedMemory, SharedByteBuffer, big, little, consts, _unshare,
                            _cleaned, SHARED.add, SHARED.remove, _received, HandoffError,
                            globals(), vars(_socket.socket)["family"])


_accelerate()
