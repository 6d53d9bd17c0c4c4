"""The kernel calls zcio makes, behind one replaceable object.

Channels never call ``os``/``socket`` I/O functions directly: they call methods of
``SYS`` (a :class:`Syscalls`), so tests can swap in a layer that returns EINTR, EAGAIN,
short counts, ENOSPC, EXDEV or ECONNRESET on demand (``override``).  Each method makes
exactly one system call and returns its result or raises its ``OSError``.  CPython
retries EINTR inside ``os`` functions (PEP 475); the ctypes calls here retry it too, and
callers retry ``InterruptedError`` raised by a replaced layer with :func:`retry`.

What ``os`` lacks is bound with ctypes: ``tee``, ``vmsplice``, ``mincore``,
``fallocate`` (the real one: glibc's ``posix_fallocate`` silently writes zeros where the
file system cannot allocate), and ``statx`` for O_DIRECT alignment.  Each feature has
:func:`is_available` and :func:`unavailability_cause`.
"""

from __future__ import annotations

import array
import ctypes
import ctypes.util
import errno
import fcntl
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ._accel import native as _native

if TYPE_CHECKING:
    from ._types import Buffer as BytesLike

__all__ = [
    "Syscalls",
    "SYS",
    "override",
    "retry",
    "is_available",
    "unavailability_cause",
    "IOV_MAX",
    "MAX_TRANSFER",
    "dio_alignment",
]

T = TypeVar("T")

#: Linux moves at most this many bytes per read/write/sendfile/splice call
#: (MAX_RW_COUNT); Java caps transferTo at the same 0x7ffff000.
MAX_TRANSFER = 0x7FFFF000

try:
    IOV_MAX = os.sysconf("SC_IOV_MAX")
except (ValueError, OSError):  # pragma: no cover - Linux always has it
    IOV_MAX = 1024

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _bind(name: str, restype: Any, *argtypes: Any) -> Any:
    fn = getattr(_libc, name, None)
    if fn is not None:
        fn.restype = restype
        fn.argtypes = list(argtypes)
    return fn


_ssize_t, _size_t, _uint, _int = ctypes.c_ssize_t, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int
_tee = _bind("tee", _ssize_t, _int, _int, _size_t, _uint)
_vmsplice = _bind("vmsplice", _ssize_t, _int, ctypes.c_void_p, _size_t, _uint)
_mincore = _bind("mincore", _int, ctypes.c_void_p, _size_t, ctypes.c_void_p)
_fallocate = _bind("fallocate", _int, _int, _int, ctypes.c_int64, ctypes.c_int64)
_statx = _bind("statx", _int, _int, ctypes.c_char_p, _int, _uint, ctypes.c_void_p)
_prctl = _bind("prctl", _int, _int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
               ctypes.c_ulong)
_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send ``signum`` to this process when its parent dies.

    Syscalls: ``prctl(PR_SET_PDEATHSIG)``; OSError if the kernel refuses.  It is cleared
    by a fork and kept across exec; a parent that died before the call is not noticed
    (compare ``os.getppid()`` with the expected parent after calling this).
    """
    if _prctl is None:  # pragma: no cover - Linux's libc always has it
        raise OSError(errno.ENOSYS, "prctl is not provided by this libc")
    _check(_prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0))


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def _check(result: int) -> int:
    """Raise the OSError for a libc ``-1`` result; else return it."""
    if result == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return result


def _eintr_loop(fn: Callable[[], int]) -> int:
    while True:
        try:
            return _check(fn())
        except InterruptedError:
            continue


def retry(fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn(*args)`` again for as long as it raises InterruptedError (EINTR)."""
    while True:
        try:
            return fn(*args)
        except InterruptedError:
            continue


def _causes() -> dict[str, str | None]:
    causes: dict[str, str | None] = {}
    for name, present in [
        ("sendfile", hasattr(os, "sendfile")),
        ("splice", hasattr(os, "splice")),
        ("copy_file_range", hasattr(os, "copy_file_range")),
        ("tee", _tee is not None),
        ("vmsplice", _vmsplice is not None),
        ("mincore", _mincore is not None),
        ("fallocate", _fallocate is not None),
        ("statx", _statx is not None),
        ("memfd_create", hasattr(os, "memfd_create")),
        ("scm_rights", hasattr(socket, "SCM_RIGHTS") and hasattr(socket.socket, "sendmsg")),
    ]:
        causes[name] = None if present else f"{name} is not provided by this OS or its libc"
    return causes


_CAUSES = _causes()


def is_available(feature: str) -> bool:
    """Whether zcio can make this call here (``"splice"``, ``"tee"``, ``"statx"``...)."""
    return _CAUSES.get(feature, f"unknown feature {feature!r}") is None


def unavailability_cause(feature: str) -> str | None:
    """Why a feature is unavailable, or None if it is available."""
    return _CAUSES.get(feature, f"unknown feature {feature!r}")


def _unavailable(feature: str) -> OSError:
    return OSError(errno.ENOSYS, unavailability_cause(feature) or feature)


class Syscalls:
    """One method per system call.  Subclass or wrap it to inject faults in tests."""

    # -- files and pipes ---------------------------------------------------------------

    def readv(self, fd: int, bufs: Sequence[memoryview]) -> int:
        """``readv(2)``: fill ``bufs`` in order; 0 at end of file."""
        return os.readv(fd, bufs)

    def preadv(self, fd: int, bufs: Sequence[memoryview], offset: int) -> int:
        """``preadv(2)`` at ``offset``; the file position does not move."""
        return os.preadv(fd, bufs, offset)

    def write(self, fd: int, buf: memoryview) -> int:
        """``write(2)``: may write fewer bytes than given."""
        return os.write(fd, buf)

    def pwrite(self, fd: int, buf: memoryview, offset: int) -> int:
        """``pwrite(2)`` at ``offset``; the file position does not move."""
        return os.pwrite(fd, buf, offset)

    def writev(self, fd: int, bufs: Sequence[memoryview]) -> int:
        """``writev(2)``: at most IOV_MAX buffers; may write fewer bytes than given."""
        return os.writev(fd, bufs)

    def pwritev(self, fd: int, bufs: Sequence[memoryview], offset: int) -> int:
        """``pwritev(2)`` at ``offset``."""
        return os.pwritev(fd, bufs, offset)

    def sendfile(self, out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        """``sendfile(2)`` from ``in_fd`` at ``offset`` (None: its file position)."""
        return os.sendfile(out_fd, in_fd, offset, count)

    def splice(
        self,
        src: int,
        dst: int,
        count: int,
        offset_src: int | None = None,
        offset_dst: int | None = None,
        flags: int = 0,
    ) -> int:
        """``splice(2)``: one of ``src``/``dst`` must be a pipe."""
        return os.splice(src, dst, count, offset_src, offset_dst, flags)

    def tee(self, src: int, dst: int, count: int, flags: int = 0) -> int:
        """``tee(2)``: duplicate up to ``count`` bytes from pipe ``src`` into pipe ``dst``."""
        if _tee is None:
            raise _unavailable("tee")
        return _eintr_loop(lambda: int(_tee(src, dst, count, flags)))

    def vmsplice(self, fd: int, addresses: Sequence[tuple[int, int]], flags: int = 0) -> int:
        """``vmsplice(2)``: map user memory (address, length pairs) into pipe ``fd``."""
        if _vmsplice is None:
            raise _unavailable("vmsplice")
        iov = (_IoVec * len(addresses))(*[_IoVec(a, n) for a, n in addresses])
        return _eintr_loop(lambda: int(_vmsplice(fd, iov, len(addresses), flags)))

    def copy_file_range(
        self, src: int, dst: int, count: int, offset_src: int | None, offset_dst: int | None
    ) -> int:
        """``copy_file_range(2)``: file to file inside the kernel (reflink where it can)."""
        return os.copy_file_range(src, dst, count, offset_src, offset_dst)

    def ficlone(self, dst_fd: int, src_fd: int) -> None:
        """``ioctl(dst_fd, FICLONE, src_fd)``: share every extent (a reflink)."""
        fcntl.ioctl(dst_fd, _FICLONE, src_fd)

    def fallocate(self, fd: int, offset: int, length: int, mode: int = 0) -> None:
        """``fallocate(2)``: reserve blocks; EOPNOTSUPP where the file system cannot."""
        if _fallocate is None:
            raise _unavailable("fallocate")
        _eintr_loop(lambda: int(_fallocate(fd, mode, offset, length)))

    def mincore(self, address: int, length: int) -> bytes:
        """``mincore(2)``: one byte per page, bit 0 set if resident."""
        if _mincore is None:
            raise _unavailable("mincore")
        page = os.sysconf("SC_PAGE_SIZE")
        vec = ctypes.create_string_buffer((length + page - 1) // page or 1)
        _eintr_loop(lambda: int(_mincore(address, length, vec)))
        return vec.raw

    # -- sockets -----------------------------------------------------------------------

    def send(self, sock: socket.socket, buf: BytesLike, flags: int = 0) -> int:
        """``send(2)``: may send fewer bytes; BlockingIOError when non-blocking and full."""
        return sock.send(buf, flags)

    def sendmsg(self, sock: socket.socket, bufs: Sequence[BytesLike], flags: int = 0) -> int:
        """``sendmsg(2)`` of several buffers at once (a gather write)."""
        return sock.sendmsg(bufs, (), flags)

    def accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        """``accept4(2)`` on a listening socket: (the new socket, the peer's address).
        BlockingIOError when none is waiting on a non-blocking listener."""
        return sock.accept()

    def shutdown(self, sock: socket.socket, how: int) -> None:
        """``shutdown(2)``: SHUT_RD, SHUT_WR or SHUT_RDWR."""
        sock.shutdown(how)

    def recv_into(self, sock: socket.socket, buf: memoryview, flags: int = 0) -> int:
        """``recv(2)`` into ``buf``; 0 when the peer shut its side down."""
        return sock.recv_into(buf, len(buf), flags)

    def recvmsg_into(self, sock: socket.socket, bufs: Sequence[memoryview]) -> int:
        """``recvmsg(2)`` into several buffers (a scatter read)."""
        return sock.recvmsg_into(bufs)[0]

    def recvmsg(
        self, sock: socket.socket, bufsize: int, ancbufsize: int = 0, flags: int = 0
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        """``recvmsg(2)`` with ancillary data: (data, [(level, type, data)], flags, address).

        ``flags`` may hold ``MSG_ERRQUEUE`` (read the socket's error queue, where
        MSG_ZEROCOPY completions arrive) and ``MSG_DONTWAIT``.
        """
        return sock.recvmsg(bufsize, ancbufsize, flags)

    def sendmsg_fds(self, sock: socket.socket, data: bytes, fds: Sequence[int]) -> int:
        """``sendmsg(2)`` of ``data`` with ``fds`` attached (``SCM_RIGHTS``): the peer
        gets its own descriptors for the same open files; ours stay open."""
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        return sock.sendmsg([data], anc)

    # -- shared memory -----------------------------------------------------------------

    def memfd_create(self, name: str, flags: int) -> int:
        """``memfd_create(2)``: an anonymous file in memory, empty; ENOSYS if missing."""
        if not hasattr(os, "memfd_create"):
            raise _unavailable("memfd_create")
        return os.memfd_create(name, flags)

    def ftruncate(self, fd: int, length: int) -> None:
        """``ftruncate(2)``: set the file's size (sparse when it grows)."""
        os.ftruncate(fd, length)

    def fstat(self, fd: int) -> os.stat_result:
        """``fstat(2)``."""
        return os.fstat(fd)

    def get_seals(self, fd: int) -> int:
        """``fcntl(F_GET_SEALS)``: the file's seals; EINVAL if it cannot be sealed."""
        return fcntl.fcntl(fd, F_GET_SEALS)

    def add_seals(self, fd: int, seals: int) -> None:
        """``fcntl(F_ADD_SEALS)``: EPERM once F_SEAL_SEAL is set, EBUSY for F_SEAL_WRITE
        while a writable shared mapping exists, EINVAL for a seal the kernel lacks."""
        fcntl.fcntl(fd, F_ADD_SEALS, seals)


SYS = Syscalls()

#: The compiled per-call I/O (``zcio._native``'s ``io_read``/``io_write``, set up by
#: ``zcio._iovec``), or None.  The one rule for it: it runs only while ``SYS`` is the
#: default layer.  ``override`` sets it to None for its block, so a test's layer sees
#: every kernel call (the channels then take the Python path through ``SYS``); without
#: the accelerator (or with ``ZCIO_PURE_PYTHON=1``) it is always None.
NATIVE_IO: Any = _native


@contextmanager
def override(layer: Syscalls) -> Iterator[Syscalls]:
    """Use ``layer`` for every kernel call zcio makes inside the block (tests only);
    the compiled I/O path is off meanwhile (``NATIVE_IO``)."""
    global SYS, NATIVE_IO
    saved, SYS = SYS, layer
    saved_io, NATIVE_IO = NATIVE_IO, None
    try:
        yield layer
    finally:
        SYS, NATIVE_IO = saved, saved_io


# fcntl sealing (Linux 3.17; F_SEAL_FUTURE_WRITE 5.1): the values of <linux/fcntl.h>,
# spelt out because the fcntl module lacks the newer ones.
F_ADD_SEALS, F_GET_SEALS = 1033, 1034
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE = 1, 2, 4, 8, 16
MFD_CLOEXEC, MFD_ALLOW_SEALING = 1, 2

_FICLONE = 0x40049409  # _IOW(0x94, 9, int)
_STATX_DIOALIGN = 0x2000
_AT_EMPTY_PATH = 0x1000


def dio_alignment(fd: int) -> tuple[int, int, str]:
    """O_DIRECT alignment for ``fd``: (memory alignment, offset/length alignment, source).

    Asks the kernel with ``statx(STATX_DIOALIGN)`` (Linux 6.1+); where that is missing or
    unanswered, falls back to the file system's block size for both, and says so.
    """
    if _statx is not None:
        buf = ctypes.create_string_buffer(256)
        try:
            _eintr_loop(lambda: int(_statx(fd, b"", _AT_EMPTY_PATH, _STATX_DIOALIGN, buf)))
        except OSError:
            pass
        else:
            raw, order = buf.raw, sys.byteorder
            mask = int.from_bytes(raw[0:4], order)  # struct statx: stx_mask
            mem_align = int.from_bytes(raw[152:156], order)  # stx_dio_mem_align
            off_align = int.from_bytes(raw[156:160], order)  # stx_dio_offset_align
            if mask & _STATX_DIOALIGN and mem_align and off_align:
                return mem_align, off_align, "statx(STATX_DIOALIGN)"
    blksize = os.fstat(fd).st_blksize
    return blksize, blksize, "st_blksize (statx DIOALIGN unavailable)"
