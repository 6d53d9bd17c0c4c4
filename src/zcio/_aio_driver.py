"""The asyncio transfer driver: runs the transfer engine's rungs on duplicates of the
caller's descriptors, never waiting inside a step, and awaits readiness between steps
(``zcio._aio_wait``); keeps ``Progress`` exact on return, error and cancellation."""

from __future__ import annotations

import asyncio
import errno
import os
import select
from dataclasses import dataclass
from typing import Any

from . import _scratch, _syscalls
from ._aio_wait import RECHECK, Readiness
from ._byte_buffer import ByteBuffer
from ._errors import ClosedChannelError, TransferError
from ._metrics import metrics
from ._syscalls import retry
from ._transfer import _PIPE, _End, _Partial, _Transfer, _WouldBlock


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


def still_owned(end: _End, transport: Any = None) -> bool:
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


def _duplicate(end: _End) -> _End:
    return _End(end.obj, os.dup(end.fd), end.kind, end.offset)


class LoopTransfer(_Transfer):
    """The engine's ``_Transfer`` for an event loop: no step ever waits.

    ``run(wait=False)`` stops where a step would block; ``blocked`` says which end, so
    the caller can await it.  Two rungs wait *inside* a step in the blocking engine,
    because bytes already taken from the source must reach the target: splice through
    a pipe (socket to socket) and read/write from a stream.  Here those bytes (``held``)
    stay in a pipe or buffer private to this transfer, across awaits, and a step
    returns what reached the target; a file source's are held too (never read twice),
    its offset moving only as they are delivered, so they are never :meth:`dropped`.

    Descriptor ownership: the caller's endpoints (``owned``) may be closed at any await,
    and their numbers given to new sockets or files.  So every syscall goes to a
    duplicate (``src.fd``/``dst.fd``, closed by :meth:`close`), which can only ever
    reach the endpoint's own file, and every step first checks that the caller still
    owns both endpoints (:meth:`check`): once one is closed (or ``transport`` is
    closing, unless because the peer reset the connection: then the kernel's error
    is reported, as without a transport) nothing more moves and the step raises
    ClosedChannelError.  Offsets live in the duplicates' ``_End``
    (``src.offset``/``dst.offset``).
    """

    def __init__(self, src: _End, dst: _End, path: str | None,
                 transport: Any = None) -> None:
        super().__init__(src, dst, path)
        self.owned, self.transport = (src, dst), transport
        self.blocked: _WouldBlock | None = None
        self.held = 0
        self._pipe: _scratch.ScratchPipe | None = None
        self._relay: ByteBuffer | None = None
        self.src = _duplicate(src)
        try:
            self.dst = _duplicate(dst)
        except BaseException:
            os.close(self.src.fd)
            raise

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

    def _step(self, want: int) -> int:
        self.blocked = None
        self.check()
        try:
            return super()._step(want)
        except _WouldBlock as wb:
            self.blocked = wb
            raise

    def _splice(self, want: int) -> int:
        sys_ = _syscalls.SYS
        src, dst = self.src, self.dst
        flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
        if src.kind == _PIPE or dst.kind == _PIPE:
            n = self._kernel_call(sys_.splice, src.fd, dst.fd, want, src.offset, dst.offset,
                                  flags)
            metrics.record("splice", kernel_bytes=n, operations=0)
            self._advance(n)
            return n
        if self._pipe is None:
            self._pipe = _scratch.ScratchPipe()
        pipe = self._pipe
        if not self.held:  # fill: a file source's offset moves only as bytes are delivered
            try:
                n = self._kernel_call(sys_.splice, src.fd, pipe.write_fd,
                                      min(want, pipe.capacity), src.offset, None, flags)
            except _WouldBlock:
                raise _WouldBlock(src, select.POLLIN) from None  # the pipe is empty
            metrics.record("splice", operations=0)  # counted once, when delivered
            if n == 0:
                return 0
            self.held = n
        try:
            k = retry(sys_.splice, pipe.read_fd, dst.fd, self.held, None, dst.offset, flags)
        except BlockingIOError:
            raise _WouldBlock(dst, select.POLLOUT) from None
        except OSError as e:
            raise _Partial(e, 0) from e
        metrics.record("splice", kernel_bytes=k, operations=0)
        if k == 0:
            raise _Partial(OSError(errno.EPIPE, "target accepted no bytes"), 0)
        self.held -= k
        self._advance(k)
        return k

    def _read_write(self, want: int) -> int:
        """The relay: read a chunk, then write what it holds, across awaits, until all
        of it is written; a file source is never read twice (each byte crosses user
        space twice, in and out), and its offset moves only as bytes are delivered."""
        buf = self._relay
        if buf is None:
            buf = self._relay = _scratch.temporary_buffer(_scratch.CHUNK)
        if not self.held:
            buf.clear().limit(min(want, buf.capacity()))
            n = self._read_into(buf)
            if n == 0:
                return 0
            if self.src.offset is not None:
                self.src.offset -= n  # read ahead, not delivered: see _advance below
            buf.limit(n)
            self.held = n
        dst = self.dst
        with buf.memoryview() as view:
            try:
                k = (retry(_syscalls.SYS.write, dst.fd, view) if dst.offset is None
                     else retry(_syscalls.SYS.pwrite, dst.fd, view, dst.offset))
            except BlockingIOError:
                raise _WouldBlock(dst, select.POLLOUT) from None
            except OSError as e:
                raise _Partial(e, 0) from e
        if k == 0:
            raise _WouldBlock(dst, select.POLLOUT)
        metrics.record("read_write", user_bytes=k, operations=0)
        buf.position(buf.position() + k)
        self.held -= k
        self._advance(k)
        return k

    def flush(self) -> int:
        """Offer the held bytes to the target once more, without waiting, unless an
        endpoint was closed; returns what was delivered."""
        delivered = 0
        while self.held and self.is_open():
            try:
                k = int(getattr(self, "_" + self.path)(self.held))
            except (_WouldBlock, _Partial, OSError):
                break
            delivered += k
        return delivered

    def dropped(self) -> int:
        """The held bytes that are lost if the transfer ends now: none from a file
        source, whose offset still points at them."""
        return self.held if self.src.offset is None else 0

    def close(self) -> None:
        """Close the duplicates, the private pipe and the relay buffer (idempotent)."""
        for end in (self.src, self.dst):
            fd, end.fd = end.fd, -1
            if fd >= 0:
                os.close(fd)
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.close()
        buf, self._relay = self._relay, None
        if buf is not None:
            _scratch.give_back(buf)


async def drive(job: LoopTransfer, count: int, progress: Progress) -> int:
    """Run ``job`` until ``count`` bytes moved or the source ends; await readiness.

    A transport target's buffered bytes are sent first.  ``progress`` is kept exact on
    return, error and cancellation.  Errors follow the blocking API: the kernel's
    OSError if nothing moved, else TransferError with the total; an endpoint closed
    by the caller is such an error too (ClosedChannelError, EBADF: see
    :class:`LoopTransfer`), noticed at the next wake-up or within ``RECHECK``
    seconds.  The engine counts an operation per ``run``; all but the first are taken
    back, so one call is one operation, as in ``zcio.transfer``.  ``job`` is closed
    on return.
    """
    waiter = Readiness(asyncio.get_running_loop())
    moved = runs = 0
    try:
        if job.transport is not None:
            await _flush_transport(job, waiter)
        while moved < count:
            try:
                moved += job.run(count - moved, wait=False)
            except TransferError as e:
                cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
                moved += e.transferred
                raise TransferError(cause, moved) from cause
            except OSError as e:
                if moved:
                    raise TransferError(e, moved) from e
                raise
            finally:
                runs += 1
                if runs > 1:
                    metrics.record(job.path, syscalls=0, operations=-1)
                progress.transferred = moved
            blocked = job.blocked
            if blocked is None:  # done, or the source ended
                break
            while not await waiter.wait(blocked.end.fd, blocked.events, RECHECK):
                if not job.is_open():
                    break  # the next step raises ClosedChannelError
    except asyncio.CancelledError:
        moved += job.flush()
        raise
    finally:
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
