"""The asyncio transfer driver: the engine's rungs (``zcio._rungs``), stepped on
duplicates of the caller's descriptors, with readiness awaited between steps
(``zcio._aio_wait``) where the blocking driver would ``poll``.

It adds to the engine only what an event loop needs: descriptor ownership (the
caller may close an endpoint at any await), the periodic recheck, cancellation, and a
:class:`Progress` kept exact on return, error and cancellation.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
from dataclasses import dataclass
from typing import Any

from ._aio_wait import RECHECK, Readiness
from ._endpoint import End
from ._errors import ClosedChannelError, TransferError
from ._metrics import metrics
from ._rungs import Ladder, Lost, Unsupported, WouldBlock
from ._syscalls import MAX_TRANSFER
from ._transfer import plan


@dataclass
class Progress:
    """How far an awaitable transfer got: live while it runs, final once it returns,
    raises or is cancelled.

    ``transferred``: bytes that reached the target.  ``dropped``: bytes taken from a
    source that cannot be re-read, not delivered when the transfer was cancelled or
    failed (see the module docstring); 0 otherwise.
    """

    #: Bytes that reached the target.
    transferred: int = 0
    #: Bytes taken from a source that cannot be re-read and not delivered.
    dropped: int = 0


def still_owned(end: End, transport: Any = None) -> bool:
    """Whether the caller's endpoint still owns the descriptor number ``end.fd``: its
    transport (if any) is not closing and ``fileno()`` still gives that number (a
    closed socket gives -1; a closed channel or file object raises)."""
    if transport is not None and transport.is_closing():
        return False
    try:
        return bool(end.obj.fileno() == end.fd)
    except (OSError, ValueError):
        return False


def _hung_up(fd: int) -> bool:
    """Whether the connection of socket ``fd`` is over (reset, or closed both ways).

    A transport closes itself when its peer resets the connection; the transfer then
    reports the kernel's error (ECONNRESET, EPIPE) rather than a local close.
    """
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))


class LoopTransfer:
    """One transfer on an event loop: the engine's ladder over duplicated descriptors.

    A step never waits: the rungs are built ``nonblocking`` (splice through a pipe
    private to this transfer, SPLICE_F_NONBLOCK), and where a step would block it
    raises ``WouldBlock`` for the driver to await.  Bytes a relay took from the source
    but the target has not taken yet (``held``: in the relay's buffer or pipe) stay
    there across awaits and go out first at the next step; a file source's offset
    moves only as bytes are delivered, so a file never loses any.

    Descriptor ownership: the caller's endpoints (``owned``) may be closed at any await,
    and their numbers given to new sockets or files.  So every syscall goes to a
    duplicate (``src.fd``/``dst.fd``, closed by :meth:`close`), which can only ever
    reach the endpoint's own file, and every step first checks that the caller still
    owns both endpoints (:meth:`check`): once one is closed (or ``transport`` is
    closing, unless because the peer reset the connection: then the kernel's error
    is reported, as without a transport) nothing more moves and the step raises
    ClosedChannelError.  Offsets live in the duplicates' ``End``
    (``src.offset``/``dst.offset``).
    """

    def __init__(self, src: End, dst: End, path: str | None,
                 transport: Any = None) -> None:
        names, forced = plan(src, dst, path)
        self.owned, self.transport = (src, dst), transport
        made: list[End] = []
        try:
            self.src = src.duplicate()
            made.append(self.src)
            self.dst = dst.duplicate()
            made.append(self.dst)
            self.ladder = Ladder(self.src, self.dst, names, forced, nonblocking=True)
        except BaseException:
            for end in made:
                os.close(end.fd)
            raise

    @property
    def path(self) -> str:
        """The rung in use."""
        return self.ladder.path

    def _closed(self) -> str | None:
        """Which endpoint the caller closed (or whose transport is closing), if any."""
        src, dst = self.owned
        if not still_owned(src):
            return f"source {src.obj!r}"
        if not still_owned(dst, self.transport):
            if self.transport is not None and _hung_up(self.dst.fd):
                return None  # the peer ended it first: the next syscall says how, as before
            closed = self.transport if self.transport is not None else dst.obj
            return f"target {closed!r}"
        return None

    def is_open(self) -> bool:
        """Whether the caller still owns both endpoints (see the class docstring)."""
        return self._closed() is None

    def check(self) -> None:
        """ClosedChannelError (EBADF) if the caller closed an endpoint or the transport."""
        closed = self._closed()
        if closed is not None:
            raise ClosedChannelError(errno.EBADF, f"transfer {closed} was closed")

    def step(self, want: int) -> int:
        """One step of the ladder, once the caller is known to own both endpoints:
        bytes that reached the target, 0 at the source's end; WouldBlock, Lost or
        OSError as ``zcio._rungs`` says."""
        self.check()
        return self.ladder.step(want)

    def flush(self) -> int:
        """Offer the held bytes to the target once more, without waiting, unless an
        endpoint was closed; returns what was delivered."""
        delivered = 0
        while self.ladder.held and self.is_open():
            try:
                delivered += self.ladder.rung.step(self.ladder.held)
            except (WouldBlock, Lost, Unsupported, OSError):
                break
        return delivered

    def dropped(self) -> int:
        """The held bytes lost if the transfer ends now: a stream's (a file source's
        offset still points at what it holds)."""
        return self.ladder.held if self.ladder.rung.must_deliver else 0

    def close(self) -> None:
        """Free the rung's buffer or pipe and close the duplicates (idempotent)."""
        self.ladder.close()
        for end in (self.src, self.dst):
            fd, end.fd = end.fd, -1
            if fd >= 0:
                os.close(fd)


async def drive(job: LoopTransfer, count: int, progress: Progress) -> int:
    """Step ``job`` until ``count`` bytes moved or the source ends, awaiting readiness
    of the one descriptor a step would block on.

    A transport target's buffered bytes are sent first.  ``progress`` is kept exact on
    return, error and cancellation.  Errors follow the blocking API: the kernel's
    OSError if nothing moved, else TransferError with the total (always TransferError
    when a stream's bytes were taken and lost); an endpoint closed by the caller is
    such an error too (ClosedChannelError, EBADF: see :class:`LoopTransfer`), noticed
    at the next wake-up or within ``RECHECK`` seconds.  One call is one operation in
    ``zcio.metrics``, under the rung that ran last.  ``job`` is closed on return.
    """
    waiter = Readiness(asyncio.get_running_loop())
    moved = 0
    try:
        if job.transport is not None:
            await _flush_transport(job, waiter)
        while moved < count:
            try:
                n = job.step(min(count - moved, MAX_TRANSFER))
            except WouldBlock as blocked:
                while not await waiter.wait(blocked.fd, blocked.events, RECHECK):
                    if not job.is_open():
                        break  # the next step raises ClosedChannelError
                continue
            except Lost as lost:
                moved += lost.moved
                raise TransferError(lost.error, moved) from lost.error
            except OSError as e:
                if moved:
                    raise TransferError(e, moved) from e
                raise
            if n == 0:  # the source ended
                break
            moved += n
            progress.transferred = moved
    except asyncio.CancelledError:
        moved += job.flush()
        raise
    finally:
        metrics.record(job.path, syscalls=0)
        progress.transferred, progress.dropped = moved, job.dropped()
        waiter.close()
        job.close()
    return moved


async def _flush_transport(job: LoopTransfer, waiter: Readiness) -> None:
    """Wait until the target transport has sent everything it buffered (bytes keep
    their order); ClosedChannelError once it is closing."""
    while job.transport.get_write_buffer_size():
        job.check()
        await waiter.wait(job.dst.fd, select.POLLOUT, RECHECK)
        await asyncio.sleep(0)  # let the transport's own writer run first
