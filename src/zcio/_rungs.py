"""The rungs of the transfer ladder, sans-IO style: one step, no waiting.

A rung is built once per transfer over two :class:`zcio._endpoint.End` objects.
``step(want)`` makes the syscalls of one step and says what happened:

* returns ``n > 0``: ``n`` bytes reached the target in this step;
* returns ``0``: the source is at its end (and the rung holds nothing);
* raises :class:`WouldBlock` (``end``, ``events``): nothing reached the target in this
  step because that non-blocking end (or, for a channel object, ``fd == -1``) is not
  ready for those poll events; call ``step`` again when it is;
* raises :class:`Unsupported`: this rung cannot serve these endpoints and nothing
  moved (today's fallback errnos: EXDEV, EINVAL, ENOSYS, EOPNOTSUPP, EBADF, ESPIPE,
  ENODEV); the ladder falls to the next rung;
* raises :class:`Lost` (an ``OSError``'s wrapper): the target failed after the source
  gave bytes that cannot be read again (a stream); the driver reports TransferError;
  those bytes stay ``held`` until ``release()``/``close()``, so the driver can count
  what was lost;
* raises ``OSError``: nothing reached the target in this step.

Positions: a file end's ``offset`` advances by what reached the target, so a source
offset is always "the next byte not yet delivered".  A rung may *hold* bytes taken
from the source but not yet delivered (``held``): the relay keeps them in its buffer
and the splice rung in its pipe, so a partial write never makes it read them again;
the next ``step`` delivers them first.  ``release()`` drops what a rung holds: free for
a file source (its offset never counted them), data loss for a stream, so a driver
that stops early must first deliver ``held`` bytes of a stream (``must_deliver``).
``close()`` releases and frees the rung's buffer, pipe or mapping.

Every syscall goes through ``zcio._syscalls.SYS``; each rung counts its bytes and
syscalls in ``zcio.metrics`` under its name (the driver counts the operation).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import select
import weakref
from collections.abc import Callable
from io import FileIO

from . import _scratch, _syscalls
from ._byte_buffer import ByteBuffer
from ._direct import MAPPED, round_to_pages
from ._endpoint import OBJECT, PIPE, End
from ._metrics import metrics
from ._step import FALLBACK as FALLBACK
from ._step import Lost as Lost
from ._step import Rung as Rung
from ._step import Unsupported as Unsupported
from ._step import WouldBlock as WouldBlock
from ._step import ready as ready
from ._syscalls import retry

__all__ = ["PATHS", "FALLBACK", "WouldBlock", "Unsupported", "Lost", "Rung", "Ladder",
           "RUNGS", "ready", "read_into", "MMAP_WINDOW"]

PATHS = ("copy_file_range", "sendfile", "splice", "mmap_write", "read_write")
MMAP_WINDOW = 8 << 20  # the JDK's transferTo mapping window
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


class CopyFileRange(Rung):
    """copy_file_range(2), file -> file: nothing crosses into user space."""

    name = "copy_file_range"
    __slots__ = ()

    def step(self, want: int) -> int:
        n = self.kernel_call(_syscalls.SYS.copy_file_range, self.src.fd, self.dst.fd, want,
                             self.src.offset, self.dst.offset)
        metrics.record("copy_file_range", kernel_bytes=n, operations=0)
        self.advance(n)
        return n


class Sendfile(Rung):
    """sendfile(2), file -> anything: nothing crosses into user space.  One syscall per
    step to a stream (the HTTP server's per-response rung).

    sendfile writes at its target's file position, which a file target's other users
    share (the channel's relative writes, another thread's): to write at an offset it
    writes through a private description of the target (``/proc/self/fd/N`` opened
    again, the target's ``O_APPEND``, ``O_DIRECT`` and sync flags kept), whose position
    nobody else moves.  Where that cannot be opened (no ``/proc``, permissions changed
    since): Unsupported, the next rung.

    Syscalls: ``sendfile``; to a file at an offset, once per transfer ``fcntl(F_GETFL)``,
    ``open`` and ``lseek`` (again only if the offset jumped), ``close`` at the end.
    """

    name = "sendfile"
    __slots__ = ("calls", "sent", "full", "private", "at")

    def __init__(self, src: End, dst: End, nonblocking: bool = False) -> None:
        super().__init__(src, dst, nonblocking)
        self.calls = self.sent = 0  # counted here, recorded in metrics by close()
        self.full = WouldBlock(dst, select.POLLOUT)  # raised afresh each time
        self.private: FileIO | None = None  # the target's own description, for offsets
        self.at = -1  # its position

    def step(self, want: int) -> int:
        n = self.try_step(want)
        if n < 0:  # raised here, not in a handler: no exception context to chain
            raise self.full.with_traceback(None)
        return n

    def try_step(self, want: int) -> int:
        # The HTTP server's hot path: one syscall, two counters, no exception.
        src, dst = self.src, self.dst
        if dst.offset is not None:
            try:
                return self._to_file(want)
            except WouldBlock as wb:
                self.waiting = wb
                return -1
        while True:
            try:
                n = _syscalls.SYS.sendfile(dst.fd, src.fd, src.offset, want)
                break
            except BlockingIOError:  # the source is a file: the target is full
                self.waiting = self.full
                return -1
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno in FALLBACK:
                    raise Unsupported(f"sendfile: {e.strerror}") from e
                raise
        self.calls += 1
        self.sent += n
        if src.offset is not None:
            src.offset += n
        return n

    def _to_file(self, want: int) -> int:
        src, dst = self.src, self.dst
        assert dst.offset is not None
        private = self.private
        if private is None:
            private = self.private = self._reopen(dst.fd)
        fd = private.fileno()
        if self.at != dst.offset:
            self.at = os.lseek(fd, dst.offset, os.SEEK_SET)
        n = self.kernel_call(_syscalls.SYS.sendfile, fd, src.fd, src.offset, want)
        self.at += n
        self.calls += 1
        self.sent += n
        self.advance(n)
        return n

    @staticmethod
    def _reopen(fd: int) -> FileIO:
        """A new description of the file ``fd`` is open on, for writing (closed when
        dropped, should ``close`` not run)."""
        keep = os.O_APPEND | os.O_DIRECT | os.O_SYNC | os.O_DSYNC
        flags = (fcntl.fcntl(fd, fcntl.F_GETFL) & keep) | os.O_WRONLY | os.O_CLOEXEC
        try:
            return FileIO(os.open(f"/proc/self/fd/{fd}", flags), "w")
        except OSError as e:
            raise Unsupported(f"sendfile: cannot open the target again: {e.strerror}"
                              ) from e

    def close(self) -> None:
        self.held = 0
        private, self.private, self.at = self.private, None, -1
        if private is not None:
            private.close()
        if self.calls:
            metrics.record("sendfile", self.calls, self.sent, 0, 0)
            self.calls = self.sent = 0


class Splice(Rung):
    """splice(2): directly when an end is a pipe, else through a pipe that holds what
    the target has not taken yet (per-thread scratch pipe; a private one when
    ``nonblocking``, since an event loop interleaves transfers)."""

    name = "splice"
    __slots__ = ("pipe",)

    def __init__(self, src: End, dst: End, nonblocking: bool = False) -> None:
        super().__init__(src, dst, nonblocking)
        self.pipe: _scratch.ScratchPipe | None = None

    def _flags(self) -> int:
        return os.SPLICE_F_MOVE | (
            os.SPLICE_F_NONBLOCK if self.nonblocking or self.src.dontwait else 0)

    def step(self, want: int) -> int:
        sys_, src, dst = _syscalls.SYS, self.src, self.dst
        if src.kind == PIPE or dst.kind == PIPE:
            n = self.kernel_call(sys_.splice, src.fd, dst.fd, want, src.offset, dst.offset,
                                 self._flags())
            metrics.record("splice", kernel_bytes=n, operations=0)
            self.advance(n)
            return n
        if not self.held:  # fill: a file source is read after what the pipe holds
            pipe = self._pipe()
            pipe.dirty = True  # until drained: whatever raises from here on
            n = self.kernel_call(sys_.splice, src.fd, pipe.write_fd,
                                 min(want, pipe.capacity), src.offset, None, self._flags())
            self.held = n
            pipe.dirty = n > 0
            metrics.record("splice", operations=0)  # bytes counted when delivered
            if n == 0:
                return 0
        assert self.pipe is not None
        try:
            k = retry(sys_.splice, self.pipe.read_fd, dst.fd, self.held, None, dst.offset,
                      self._flags())
        except BlockingIOError:
            raise WouldBlock(dst, select.POLLOUT) from None
        except OSError as e:
            if src.offset is None:  # a stream's bytes are lost: still held, so counted
                raise Lost(e) from e
            self.release()  # a file source reads them again
            if e.errno in FALLBACK:
                # The target cannot take spliced bytes (an O_APPEND file: EINVAL):
                # nothing moved, try the next rung.
                raise Unsupported(f"splice: {e.strerror}") from e
            raise
        if k == 0:
            if src.offset is not None:
                self.release()
            raise Lost(OSError(errno.EPIPE, "target accepted no bytes"))
        self.held -= k
        self.pipe.dirty = self.held > 0
        self.advance(k)
        metrics.record("splice", kernel_bytes=k, operations=0)
        return k

    def _pipe(self) -> _scratch.ScratchPipe:
        """The pipe to fill: this rung's, else a clean one (see ``zcio._scratch``)."""
        pipe = self.pipe
        if pipe is None or pipe.closed or pipe.dirty:
            pipe = self.pipe = (_scratch.ScratchPipe() if self.nonblocking
                                else _scratch.splice_pipe())
        return pipe

    def whole(self) -> int:
        """The pipe's room less a page: a range that starts anywhere in a page fits."""
        return min(super().whole(), self._pipe().capacity - mmap.PAGESIZE)

    def release(self) -> None:
        if self.pipe is not None and (self.held or self.pipe.dirty):  # never reuse it
            if self.nonblocking:
                self.pipe.close()
            elif not self.pipe.closed:  # this thread's pipe, in use by this transfer
                _scratch.discard_pipe()
            self.pipe = None
        self.held = 0

    def close(self) -> None:
        self.release()
        if self.nonblocking and self.pipe is not None:
            self.pipe.close()
        self.pipe = None


class MmapWrite(Rung):
    """write(2) from a read-only mapping of the source file, 8 MiB windows (the JDK's):
    each byte crosses into user space once.  The window stays mapped across steps.

    Syscalls: ``mmap(MAP_POPULATE)`` per window, ``write`` per step, then ``fstat``: a
    file that shrank during the write had zeros sent in place of its bytes past the new
    end (the JDK sends them silently), and the step raises ENODATA with them counted.
    """

    name = "mmap_write"
    __slots__ = ("mm", "view", "base", "end", "sizes")

    def __init__(self, src: End, dst: End, nonblocking: bool = False) -> None:
        super().__init__(src, dst, nonblocking)
        self.mm: mmap.mmap | None = None
        self.view: memoryview | None = None
        self.base = self.end = 0  # the mapped file range [base, end)
        self.sizes = (0, 0)

    def _map(self, start: int, want: int) -> bool:
        """Map the window at ``start``; False at the end of the file."""
        self.close()
        size = os.fstat(self.src.fd).st_size
        if start >= size:
            return False
        base = start - start % mmap.ALLOCATIONGRANULARITY
        length = min(want, MMAP_WINDOW, size - start)
        try:  # MAP_POPULATE: the window's pages mapped in one go, not fault by fault
            mm = mmap.mmap(self.src.fd, start - base + length, mmap.MAP_SHARED | _POPULATE,
                           mmap.PROT_READ, offset=base)
        except OSError as e:
            if e.errno in FALLBACK or e.errno == errno.EACCES:
                raise Unsupported(f"mmap: {e.strerror}") from e
            raise
        self.sizes = (length, round_to_pages(start - base + length))
        MAPPED.add(*self.sizes)
        metrics.record("mmap_write", syscalls=2, operations=0)  # mmap and munmap
        self.mm, self.view = mm, memoryview(mm)
        self.base, self.end = base, start + length
        return True

    def step(self, want: int) -> int:
        start = self.src.offset
        assert start is not None
        if (self.view is None or not self.base <= start < self.end) and not self._map(
                start, want):
            return 0
        assert self.view is not None
        stop = min(self.end, start + want) - self.base
        with self.view[start - self.base : stop] as part:
            try:
                k = self.write_once(part)
            except Lost as e:
                # EFAULT: the file shrank under the window (the kernel's copy out of
                # the mapping fails where a user access would SIGBUS).  Map again:
                # what is left of the file, or its end (0).
                if e.error.errno != errno.EFAULT or os.fstat(self.src.fd).st_size >= self.end:
                    raise
                k = -1
        if k < 0:
            self.close()
            return self.step(want)
        self.advance(k)
        # A shrink during the write leaves the page holding the new end mapped, reading
        # as zeros past it, and write(2) sends them as the file's bytes: nothing can take
        # them back, so the transfer fails loudly (ENODATA, never a count alone).
        size = os.fstat(self.src.fd).st_size
        if size < start + k:
            raise Lost(OSError(errno.ENODATA, (
                f"the source shrank to {size} bytes while {k} bytes from its mapping "
                f"were written: the last {start + k - max(size, start)} bytes sent were "
                "not the file's")), k)
        return k

    def close(self) -> None:
        self.held = 0
        view, mm, self.view, self.mm = self.view, self.mm, None, None
        if view is not None:
            view.release()
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # someone still holds a view: unmap when it goes
                weakref.finalize(mm, MAPPED.remove, *self.sizes).atexit = False
            else:
                MAPPED.remove(*self.sizes)


class ReadWrite(Rung):
    """The relay: read into a 1 MiB direct buffer, write out of it.  What it read stays
    in the buffer until written (``held``): a partial write never re-reads."""

    name = "read_write"
    __slots__ = ("buf", "at")

    def __init__(self, src: End, dst: End, nonblocking: bool = False) -> None:
        super().__init__(src, dst, nonblocking)
        self.buf: ByteBuffer | None = None
        self.at = 0  # where the held bytes start in buf

    def step(self, want: int) -> int:
        if not self.held:
            n = self._read(want)
            if n == 0:
                return 0
            self.held, self.at = n, 0
        assert self.buf is not None
        with self.buf.memoryview() as whole, whole[self.at : self.at + self.held] as view:
            try:
                k = self.write_once(view)
            except Lost:
                if self.src.offset is not None:
                    self.release()  # the file is read again from its offset
                raise
        self.held -= k
        self.at += k
        self.advance(k)
        return k

    def _read(self, want: int) -> int:
        """Read once from the source into the buffer (from 0); 0 at EOF."""
        if self.buf is None:
            self.buf = _scratch.temporary_buffer(_scratch.CHUNK)
        return read_into(self.src, self.buf.clear().limit(min(want, self.buf.capacity())))

    def close(self) -> None:
        self.held = 0
        buf, self.buf = self.buf, None
        if buf is not None:
            _scratch.give_back(buf)


def read_into(src: End, buf: ByteBuffer) -> int:
    """Read once from ``src`` into ``buf`` (its position must be 0, and stays 0): the
    bytes are ``[0, n)``; 0 at the end; WouldBlock when a stream has nothing yet.
    The source's offset does not move (the caller advances it on delivery)."""
    n: int
    if src.kind == OBJECT:
        n = int(src.obj.read(buf))
        if n == 0 and buf.has_remaining():
            raise WouldBlock(src, select.POLLIN)
        n = max(n, 0)
        buf.position(0)  # the object's read advanced it
    else:
        with buf.memoryview() as view:
            try:
                n = (retry(_syscalls.SYS.readv, src.fd, [view]) if src.offset is None
                     else retry(_syscalls.SYS.preadv, src.fd, [view], src.offset))
            except BlockingIOError:
                raise WouldBlock(src, select.POLLIN) from None
    metrics.record("read_write", user_bytes=n, operations=0)
    return n


RUNGS: dict[str, type[Rung]] = {r.name: r for r in (CopyFileRange, Sendfile, Splice,
                                                     MmapWrite, ReadWrite)}


def _try_step(rung: Rung, want: int) -> int:
    return rung.try_step(want)


class Ladder:
    """The rungs to try for one transfer, cheapest first, each built when first used.

    ``step(want)`` runs the current rung and falls to the next on :class:`Unsupported`
    (only when nothing moved in the step, and not when ``forced``: then the cause is
    raised).  ``stopped``, if given, says the transfer was stopped meanwhile (a closed
    channel): a refusal then ends the transfer (``step`` returns 0) instead of falling.
    ``path`` names the rung in use.
    """

    __slots__ = ("src", "dst", "names", "forced", "nonblocking", "stopped", "rung")

    def __init__(self, src: End, dst: End, names: list[str], forced: bool = False, *,
                 nonblocking: bool = False, stopped: Callable[[], bool] | None = None
                 ) -> None:
        self.src, self.dst, self.names, self.forced = src, dst, names, forced
        self.nonblocking, self.stopped = nonblocking, stopped
        self.rung: Rung = RUNGS[names[0]](src, dst, nonblocking)

    @property
    def path(self) -> str:
        return self.rung.name

    @property
    def held(self) -> int:
        return self.rung.held

    def try_step(self, want: int) -> int:
        """:meth:`step`, but "would block" returns -1 and ``self.rung.waiting`` says on
        what (see :meth:`Rung.try_step`)."""
        return self.step(want, _try_step)

    def step(self, want: int, call: Callable[[Rung, int], int] | None = None) -> int:
        """One step of the current rung (``call(rung, want)`` instead of ``rung.step``,
        for a driver that wraps it); see the module docstring."""
        while True:
            rung = self.rung
            try:
                if call is None:
                    return rung.step(want)
                return call(rung, want)
            except Unsupported as u:
                rung.close()
                i = self.names.index(rung.name)
                if self.stopped is not None and self.stopped():
                    return 0  # the dead descriptor refused it: nothing to fall back for
                if self.forced or i + 1 == len(self.names):
                    raise u.__cause__ or OSError(errno.ENOSYS, str(u)) from None
                self.rung = RUNGS[self.names[i + 1]](self.src, self.dst, self.nonblocking)

    def close(self) -> None:
        """Release what the rung holds and free its resources."""
        self.rung.close()
