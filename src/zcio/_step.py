"""The step contract of the transfer engine: its outcomes, and the base of every rung.

A rung (``zcio._rungs``) moves bytes between two ends (``zcio._endpoint.End``) one
``step`` at a time and never waits; what a step can say is defined here:
bytes moved (``n > 0``), the end of the source (0), :class:`WouldBlock`,
:class:`Unsupported` (fall to the next rung), :class:`Lost` (the target failed after the
source gave bytes it cannot give again) or an ``OSError`` (nothing moved in the step).
See ``zcio._rungs`` for the rules on positions and held bytes.
"""

from __future__ import annotations

import errno
import select
from collections.abc import Callable
from typing import Any, ClassVar

from . import _syscalls
from ._byte_buffer import ByteBuffer
from ._endpoint import FILE, OBJECT, End
from ._metrics import metrics
from ._syscalls import retry

__all__ = ["FALLBACK", "WouldBlock", "Unsupported", "Lost", "Rung", "ready"]

FALLBACK = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP,
                      errno.ENOTSUP, errno.EBADF, errno.ESPIPE, errno.ENODEV})

class WouldBlock(Exception):
    """A non-blocking endpoint has no data or no room; nothing moved in this step.

    ``end`` is the endpoint to wait for, ``events`` the poll events (POLLIN/POLLOUT);
    ``fd`` is its descriptor, -1 for a channel object (sleep briefly and retry).
    """

    def __init__(self, end: End, events: int) -> None:
        self.end, self.events = end, events

    @property
    def fd(self) -> int:
        return self.end.fd


class Unsupported(Exception):
    """This rung cannot serve these endpoints; nothing moved (``__cause__``: why)."""


class Lost(Exception):
    """An error after ``moved`` bytes of this step reached the target (or after a
    stream source gave bytes the target never took)."""

    def __init__(self, error: OSError, moved: int = 0) -> None:
        super().__init__(error, moved)
        self.error, self.moved = error, moved


def ready(fd: int, events: int) -> bool:
    """Whether ``fd`` is ready for ``events`` now (poll with no timeout)."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(0))


class Rung:
    """One path of the ladder between two ends.  See the module docstring."""

    name: ClassVar[str] = ""
    __slots__ = ("src", "dst", "held", "nonblocking", "waiting")

    def __init__(self, src: End, dst: End, nonblocking: bool = False) -> None:
        self.src, self.dst = src, dst
        self.held = 0  # bytes taken from the source, not yet in the target
        self.nonblocking = nonblocking  # an event loop's: private pipe, no pipe waits
        self.waiting: WouldBlock | None = None  # what the last try_step would block on

    def step(self, want: int) -> int:
        raise NotImplementedError

    def whole(self) -> int:
        """The most bytes a step moves whole unless the source ends: 1 MiB, the relay's
        chunk and no more than any other rung's (the splice rung: its pipe's room)."""
        return 1 << 20

    def try_step(self, want: int) -> int:
        """:meth:`step`, but "would block" returns -1 (``waiting`` says on what) instead
        of raising: cheaper for a driver that steps on every readiness event."""
        try:
            return self.step(want)
        except WouldBlock as wb:
            self.waiting = wb
            return -1

    @property
    def must_deliver(self) -> bool:
        """Whether held bytes came from a stream (releasing them would lose them)."""
        return self.held > 0 and self.src.offset is None

    def release(self) -> None:
        """Drop what this rung holds (a file source reads them again next time)."""
        self.held = 0

    def close(self) -> None:
        """Release, and free this rung's resources (idempotent)."""
        self.release()

    # -- shared by the rungs ----------------------------------------------------------

    def advance(self, n: int) -> None:
        """``n`` bytes reached the target: both file offsets move by ``n``."""
        if self.src.offset is not None:
            self.src.offset += n
        if self.dst.offset is not None:
            self.dst.offset += n

    def blocked(self) -> WouldBlock:
        """Which end made a zero-copy call return EAGAIN: files never block."""
        src, dst = self.src, self.dst
        if src.kind != FILE and (dst.kind == FILE or not ready(src.fd, select.POLLIN)):
            return WouldBlock(src, select.POLLIN)
        return WouldBlock(dst, select.POLLOUT)

    def kernel_call(self, fn: Callable[..., int], *args: Any) -> int:
        """One zero-copy syscall: EAGAIN -> WouldBlock, a fallback errno -> Unsupported."""
        try:
            return int(retry(fn, *args))
        except BlockingIOError:
            raise self.blocked() from None
        except OSError as e:
            if e.errno in FALLBACK:
                raise Unsupported(f"{self.name}: {e.strerror}") from e
            raise

    def write_once(self, view: memoryview) -> int:
        """One write of ``view`` to the target (not advancing anything); WouldBlock when
        it takes nothing, Lost for an error."""
        dst = self.dst
        try:
            if dst.kind == OBJECT:
                k = int(dst.obj.write(ByteBuffer.wrap(view)))
            elif dst.offset is None:
                k = retry(_syscalls.SYS.write, dst.fd, view)
            else:
                k = retry(_syscalls.SYS.pwrite, dst.fd, view, dst.offset)
        except BlockingIOError:
            k = 0
        except OSError as e:
            raise Lost(e) from e
        if k == 0:
            raise WouldBlock(dst, select.POLLOUT)
        metrics.record(self.name, user_bytes=k, operations=0)
        return k
