"""zcio's own accesses to mapped memory, guarded against SIGBUS (in ``zcio._native``).

A mapped page whose file is gone (truncated by another process) or cannot be backed (a
hole of a sparse file on a full file system) makes the kernel send SIGBUS to the thread
that touches it, which kills CPython.  The compiled ``zcio._native`` makes each copy,
comparison and page walk below with a per-thread jump buffer armed; its SIGBUS handler
jumps back out and the call raises :class:`~zcio.MappedRegionError` instead.  A SIGBUS
anywhere else goes to the handler that was there before (faulthandler's, or the default).

Without the compiled module (no compiler at install time, or ``ZCIO_PURE_PYTHON=1``)
the same functions are plain memoryview operations, unguarded: :func:`available` is
False and :func:`unavailability_cause` says why (``zcio info`` shows it).

Every function takes buffer objects, never addresses: each is held for the call, so a
concurrent ``release()`` cannot unmap it under the copy.  The kernel reports the same
fault inside a system call as EFAULT, not as a signal: :func:`io_error` turns that
into MappedRegionError where channels make the call.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from . import _accel
from ._accel import native
from ._errors import MappedRegionError

__all__ = [
    "available",
    "unavailability_cause",
    "copy",
    "read",
    "join",
    "mismatch",
    "touch",
    "io_error",
    "io_call",
]

T = TypeVar("T")
P = ParamSpec("P")


def _py_copy(dst: Any, dst_offset: int, src: Any, src_offset: int, n: int, /) -> None:
    """memmove ``n`` bytes from ``src[src_offset:]`` to ``dst[dst_offset:]``."""
    dst[dst_offset : dst_offset + n] = memoryview(src)[src_offset : src_offset + n]


def _py_read(src: Any, offset: int = 0, n: int = -1, /) -> bytes:
    """A bytes copy of ``src[offset:offset + n]`` (``n < 0``: to the end)."""
    mv = memoryview(src)
    return bytes(mv[offset:] if n < 0 else mv[offset : offset + n])


def _py_join(views: Sequence[Any], /) -> bytes:
    """The bytes of every buffer in ``views``, concatenated."""
    return b"".join(views)


def _py_mismatch(a: Any, b: Any, /) -> int:
    """Index of the first differing byte among the first ``min(len(a), len(b))``, or -1."""
    a, b = memoryview(a), memoryview(b)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    if a == b:
        return -1
    lo, hi = 0, n
    while hi - lo > 64:  # bisect on slice equality: O(log n) memcmp calls
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    for i in range(lo, hi):
        if a[i] != b[i]:
            return i
    return -1  # pragma: no cover - a != b guarantees a difference


def _py_touch(buf: Any, step: int, /) -> None:
    """Read one byte of every ``step``-sized stretch of ``buf`` (and its last byte)."""
    mv = memoryview(buf)
    sink = 0
    for i in range(0, len(mv), step):
        sink ^= mv[i]
    if len(mv):
        sink ^= mv[-1]


def _load() -> tuple[Any, str | None]:
    if native is None:
        return None, _accel.unavailability_cause()
    try:
        native.install(MappedRegionError)
    except OSError as e:  # pragma: no cover - sigaction(SIGBUS) does not fail on Linux
        return None, f"cannot install the SIGBUS handler: {e}"
    return native, None


_C, _CAUSE = _load()

copy: Callable[[Any, int, Any, int, int], None] = _C.copy if _C else _py_copy
read: Callable[..., bytes] = _C.read if _C else _py_read
join: Callable[[Sequence[Any]], bytes] = _C.join if _C else _py_join
mismatch: Callable[[Any, Any], int] = _C.mismatch if _C else _py_mismatch
touch: Callable[[Any, int], None] = _C.touch if _C else _py_touch


def available() -> bool:
    """Whether zcio's accesses to mapped memory are guarded (the C module is loaded)."""
    return _C is not None


def unavailability_cause() -> str | None:
    """Why the guard is off (None when it is on)."""
    return _CAUSE


def io_error(error: OSError) -> OSError:
    """The error a channel raises for ``error`` from a system call on a buffer.

    EFAULT is what the kernel returns, instead of a signal, when a system call meets a
    mapped page with no file behind it: it becomes MappedRegionError.  Any other error
    is returned unchanged.
    """
    if error.errno != errno.EFAULT or isinstance(error, MappedRegionError):
        return error
    return MappedRegionError(
        errno.EFAULT,
        f"{error.strerror}: a buffer given to the kernel is a mapping no longer backed "
        "by its file (truncated, or a hole that could not be allocated)")


def io_call(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args)`` (a channel's system call), with EFAULT raised as MappedRegionError."""
    try:
        return fn(*args, **kwargs)
    except OSError as e:
        err = io_error(e)
        if err is e:
            raise
        raise err from e
