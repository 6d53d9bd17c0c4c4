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

Layout: endpoints are classified once (``zcio._endpoint``); each path is a rung object
(``zcio._rungs``, over the step contract of ``zcio._step``) whose ``step`` moves bytes
or says "would block on this fd for these events", never waiting; this module is the
blocking driver (``poll``) and the public functions.  The asyncio driver and the HTTP
server (``zcio.serve._server``) step the same rungs.  On a non-blocking target, bytes a
stream source already gave are delivered before ``transfer_to``/``transfer_from``
return (the relay and the splice pipe hold them; a file source simply re-reads).

Every transfer runs inside the in-flight registration of its zcio channels, and on a
duplicate (``dup``) of any other endpoint's descriptor (``zcio._channel.Guard``): a
channel closed by another thread stops the transfer, which raises
AsynchronousCloseError with the count moved, and no byte goes to or comes from a file
that took over a closed descriptor's number.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import time
from typing import TYPE_CHECKING, Any

from ._buffer import check_int
from ._channel import Guard
from ._endpoint import (
    FILE,
    OBJECT,
    PIPE,
    SOCKET,
    End,
    TransferSource,
    TransferTarget,
    check_mode,
    classify,
    file_position,
    set_file_position,
)
from ._errors import IllegalArgumentError, TransferError
from ._iovec import partial
from ._metrics import metrics
from ._rungs import PATHS, Ladder, Lost, WouldBlock
from ._scratch import CHUNK
from ._syscalls import MAX_TRANSFER

if TYPE_CHECKING:
    from ._file_channel import FileChannel

__all__ = ["transfer", "transfer_to", "transfer_from", "PATHS", "default_ladder",
           "TransferSource", "TransferTarget"]

def _ladder(src: End, dst: End) -> tuple[list[str], list[str]]:
    """(default ladder, every rung that can run) for ``src`` -> ``dst``, cheapest first."""
    loopback = src.kind == FILE and dst.kind == SOCKET and dst.loopback
    return default_ladder(src.kind, dst.kind, loopback)


def default_ladder(src_kind: str, dst_kind: str, loopback_peer: bool = False
                   ) -> tuple[list[str], list[str]]:
    """(default ladder, every rung that can run) between two kinds of endpoint.

    Kinds: ``"file"``, ``"socket"``, ``"pipe"``, ``"other fd"``, ``"object"``.  splice
    can move a file to a socket too (through a pipe) but sendfile does the same in one
    call, so it runs there only when forced.  ``loopback_peer``: the socket's peer is
    on this host (TCP), where copying paths are measured faster (mmap_write, then
    read_write, then sendfile; see below).
    """
    if OBJECT in (src_kind, dst_kind):
        return ["read_write"], ["read_write"]
    possible = []
    if src_kind == FILE and dst_kind == FILE:
        possible.append("copy_file_range")
    if src_kind == FILE:
        possible.append("sendfile")
    possible.append("splice")
    if src_kind == FILE:
        possible.append("mmap_write")
    possible.append("read_write")
    default = [p for p in possible
               if p != "splice" or src_kind != FILE or dst_kind == PIPE]
    if loopback_peer:
        # Measured (benchmarks/transfer.py, docs/zero-copy.md): to a TCP peer on this
        # host, sendfile is bimodal (2.7-5.6 GB/s for one C loop, by CPU placement;
        # ~0.6x read/write under load: the receiver's copy out of page-cache-backed skbs
        # costs ~2.7x).  There is no NIC, so nothing is saved by not copying; what
        # counts is the sender's CPU copies.  mmap+write copies each byte once where
        # the relay copies it twice: on a quiet machine it made 1.06x the C 1 MiB
        # read/write loop where the relay made 0.95x (and the default, then the relay,
        # 0.70x in that run: placement), here 1.51 vs 1.29 GB/s (zcio bench), with the
        # least sender CPU per GB of the copying paths.  Remote peers keep sendfile.
        for rung in ("read_write", "mmap_write"):
            if rung in default:
                default.remove(rung)
                default.insert(0, rung)
    return default, possible


def plan(src: End, dst: End, path: str | None) -> tuple[list[str], bool]:
    """(the rung names to try, whether forced) for ``src`` -> ``dst``: the default
    ladder, or the one rung ``path`` (or ``ZCIO_TRANSFER_PATH``) names, with no
    fallback.  IllegalArgumentError for an unknown path or one these ends cannot take.
    Every driver builds its :class:`~zcio._rungs.Ladder` from this."""
    forced = path or os.environ.get("ZCIO_TRANSFER_PATH") or None
    ladder, possible = _ladder(src, dst)
    if forced is None:
        return ladder, False
    if forced not in PATHS:
        raise IllegalArgumentError(f"unknown transfer path {forced!r}; one of {PATHS}")
    if forced not in possible:
        raise IllegalArgumentError(
            f"path {forced!r} cannot move {src.kind} -> {dst.kind} "
            f"(possible: {', '.join(possible)})")
    return [forced], True


class _Transfer:
    """The blocking driver: one transfer in progress over a :class:`~zcio._rungs.Ladder`.

    ``run`` steps the ladder and waits with ``poll`` where a step would block (or
    stops there, for ``transfer_to``/``transfer_from``).  The ladder is built on the
    first step.
    """

    def __init__(self, src: End, dst: End, path: str | None, guard: Guard | None = None
                 ) -> None:
        self.src, self.dst = src, dst
        self.guard = guard  # its channels closing stops the transfer
        self.rungs: Ladder | None = None
        self.ladder, self.forced = plan(src, dst, path)

    @property
    def path(self) -> str:
        """The rung in use (the first of the ladder before the first step)."""
        return self.ladder[0] if self.rungs is None else self.rungs.path

    def _ladder_built(self) -> Ladder:
        if self.rungs is None:
            guard = self.guard
            self.rungs = Ladder(self.src, self.dst, self.ladder, self.forced,
                                stopped=None if guard is None else guard.closed)
        return self.rungs

    def run(self, count: int, wait: bool, whole_steps: bool = False) -> int:
        """Move up to ``count`` bytes; stop at EOF, or where a step would block unless
        ``wait`` (bytes a stream source already gave are delivered first, waiting).

        ``whole_steps``, for a chunk of :func:`_copy_backward`: steps no longer than
        the rung moves whole (``Rung.whole``), and the first short one ends the run
        (the file shrank; see there).

        With a guard, a step that would sleep in the kernel on a blocking stream end,
        in a call that does not name the guarded channels' descriptors, waits in
        :meth:`Guard.wait`'s ``poll`` instead, so that closing a channel of the
        transfer (the file of a ``transfer_from`` a quiet socket) wakes it: the splice
        rung reads a blocking socket with ``SPLICE_F_NONBLOCK`` and waits only when it
        has nothing (``End.dontwait``); the other rungs wait before each step on a
        blocking stream, unless their call names both ends (sendfile; splice to or
        from a pipe).
        """
        moved = 0
        guard = self.guard
        rungs = self._ladder_built()
        src, dst = self.src, self.dst
        in_fd = out_fd = -1  # blocking stream ends of a guarded transfer
        if guard is not None:
            if src.kind in (SOCKET, PIPE) and src.fd >= 0 and src.blocking:
                in_fd = src.fd
                src.dontwait = src.kind == SOCKET
            if dst.kind in (SOCKET, PIPE) and dst.fd >= 0 and dst.blocking:
                out_fd = dst.fd
        direct = PIPE in (src.kind, dst.kind)  # splice's one call names both ends
        try:
            while moved < count:
                if guard is not None and (in_fd >= 0 or out_fd >= 0):
                    rung = rungs.rung
                    # A call naming both ends' descriptors needs no wait: a close points
                    # one at a dead socket, and the retried call fails at once.
                    if rung.name != "sendfile" and not (rung.name == "splice" and direct):
                        if in_fd >= 0 and not rung.held and not (
                                src.dontwait and rung.name == "splice"):  # held: deliver
                            guard.wait(in_fd, select.POLLIN)
                        if out_fd >= 0:
                            guard.wait(out_fd, select.POLLOUT)
                if guard is not None and guard.closed():
                    break  # asynchronously closed: the guard raises with the count
                want = min(count - moved, rungs.rung.whole() if whole_steps else MAX_TRANSFER)
                try:
                    n = self._step(want)
                except WouldBlock as wb:
                    if wb.end is src and src.dontwait and guard is not None:
                        guard.wait(in_fd, select.POLLIN)  # a socket read without waiting
                        continue
                    if not wait and not rungs.rung.must_deliver:
                        break
                    if guard is None:
                        _poll(wb.fd, wb.events)
                    else:
                        guard.wait(wb.fd, wb.events)
                    continue
                if n == 0:
                    break
                moved += n
                if whole_steps and n < want:
                    break  # the file shrank: see above
        except Lost as p:
            moved += p.moved
            raise TransferError(p.error, moved) from p.error
        except OSError as e:
            if moved and not isinstance(e, TransferError):
                raise TransferError(e, moved) from e
            raise
        finally:
            metrics.record(rungs.path, syscalls=0)
            rungs.close()
        return moved

    def _step(self, want: int) -> int:
        return self._ladder_built().step(want)


def _poll(fd: int, events: int) -> None:
    """Wait until ``fd`` is ready; for a channel object without one, sleep 1 ms."""
    if fd < 0:
        time.sleep(0.001)
        return
    poller = select.poll()
    poller.register(fd, events)
    poller.poll()


def file_range(fd: int, position: int, count: int) -> int:
    """How many bytes ``transfer_to`` moves from ``position`` of file ``fd`` (Java's
    rules): IllegalArgumentError for a negative position or count; 0 past the end;
    else ``count`` cut to what the file has.  One ``fstat``."""
    if position < 0 or count < 0:
        raise IllegalArgumentError(f"negative position {position} or count {count}")
    size = os.fstat(fd).st_size
    return 0 if position > size else min(count, size - position)


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
    module docstring.  An error after bytes moved: the count is returned (Java's rule),
    except a file that shrank while a write from its mapping was in flight, which sent
    zeros in place of its bytes past the new end: TransferError (ENODATA) counting them.
    A channel closed by another thread meanwhile: AsynchronousCloseError with the count.
    """
    return Guard().run(_transfer_to, channel, position, count, target, path)


def _transfer_to(guard: Guard, channel: FileChannel, position: int, count: int, target: Any,
                 path: str | None) -> int:
    guard.fd(channel)  # the JDK's order: open, target open, readable, target writable, args
    dst = classify(target, writing=True, check=False, guard=guard)
    src_fd = channel._readable_fd()
    check_mode(dst, writing=True)
    count = file_range(src_fd, position, count)
    if count == 0:
        return 0
    src = End(channel, src_fd, FILE, position)
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
    src = classify(source, writing=False, check=False, guard=guard)  # source readable last
    dst_fd = channel._writable_fd()
    if position < 0 or count < 0:
        raise IllegalArgumentError(f"negative position {position} or count {count}")
    if position > os.fstat(dst_fd).st_size:
        return 0
    check_mode(src, writing=False)
    dst = End(channel, dst_fd, FILE, position)
    if src.kind == FILE:  # what lies between its position and its size, as Java
        count = max(0, min(count, os.fstat(src.fd).st_size - file_position(src)))
    return _run_positioned(src, dst, count, path, wait=False, guard=guard)


def _ahead_in_one_file(src: End, dst: End) -> bool:
    """Whether ``src`` -> ``dst`` copies within one file to a range ahead (overlapping
    or not): :func:`_copy_backward`'s case.

    An O_APPEND target writes at the end, past anything the source can read.
    """
    if src.kind != FILE or dst.kind != FILE or src.offset is None or dst.offset is None:
        return False
    if not src.offset < dst.offset or _file_ident(src) != _file_ident(dst):
        return False  # (two files: one fstat at most, the classified end has its ident)
    return not fcntl.fcntl(dst.fd, fcntl.F_GETFL) & os.O_APPEND


def _file_ident(end: End) -> tuple[int, int]:
    """(device, inode) of a file end: its ``ident``, else one ``fstat``."""
    if end.ident is not None:
        return end.ident
    st = os.fstat(end.fd)
    return st.st_dev, st.st_ino


def _copy_backward(src: End, dst: End, count: int, path: str | None, guard: Guard
                   ) -> int:
    """Copy ``count`` bytes within one file to a range ahead (overlapping: as memmove).

    Chunks of 1 MiB go from the end backwards, so every chunk is read before anything
    is written over it, and below everything written so far.  A file shrinking
    meanwhile (another process truncating it) therefore shows as a short chunk, which
    ends the copy; going forward instead, the copy's own writes further on would have
    extended the file again over a hole, and the next read copied its zeros.  (Still
    open: a truncation landing between one step's read and its write, inside one
    copy_file_range, lets that write extend the file again before the next chunk;
    so can one between two steps of a chunk where the forced splice rung, whose pipe
    holds less than 1 MiB, takes a chunk in two.)
    A chunk no longer than the gap does not overlap itself, so any rung (the forced
    one, if any) can move it; copy_file_range refuses overlapping ranges.  A gap under
    1 MiB always takes the relay, whatever rung is forced: it is the one rung that
    reads a chunk whole before writing it, and gap-sized chunks would cost a syscall
    per few bytes.  Both offsets end advanced by the count moved.
    """
    assert src.offset is not None and dst.offset is not None
    relay = dst.offset - src.offset < CHUNK
    rung = "read_write" if relay else path
    moved = 0
    try:
        while moved < count:
            n = min(CHUNK, count - moved)
            at = count - moved - n
            chunk = _Transfer(End(src.obj, src.fd, FILE, src.offset + at),
                              End(dst.obj, dst.fd, FILE, dst.offset + at), rung, guard)
            k = chunk.run(n, wait=False, whole_steps=True)
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


def _run_positioned(src: End, dst: End, count: int, path: str | None, wait: bool,
                    guard: Guard) -> int:
    """Run with explicit offsets for file ends whose own position must advance.

    ``wait``: ``zcio.transfer``, which promises everything, so an error after bytes
    moved is TransferError; else Java's partial rule (``zcio._iovec.partial``).

    Within one file, a target range ahead of the source's is copied backwards, as by
    ``memmove`` where they overlap: every byte written is one the source had when the
    call started (see :func:`_copy_backward`).
    """
    src_start = dst_start = None
    if src.kind == FILE and src.offset is None:
        src.offset = src_start = file_position(src)
    if dst.kind == FILE and dst.offset is None:
        dst.offset = dst_start = file_position(dst)
    try:
        if _ahead_in_one_file(src, dst):
            return _copy_backward(src, dst, count, path, guard)
        return _Transfer(src, dst, path, guard).run(count, wait)
    except TransferError as e:
        if wait or e.errno == errno.ENODATA:  # a source that shrank under its mapping
            raise
        return partial(e.transferred, e)
    finally:  # also on error: positions say exactly what moved
        if src_start is not None and src.offset is not None:
            set_file_position(src, src.offset)
        if dst_start is not None and dst.offset is not None:
            set_file_position(dst, dst.offset)


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
    s, d = classify(src, writing=False, guard=guard), classify(dst, writing=True, guard=guard)
    if count is None:
        want = (os.fstat(s.fd).st_size - file_position(s) if s.kind == FILE
                else (1 << 63) - 1)
    else:
        want = count
    moved = _run_positioned(s, d, max(want, 0), path, wait=True, guard=guard)
    if guard.closed():
        return moved  # the guard raises AsynchronousCloseError with the count
    if moved < want and (count is not None or s.kind == FILE):
        # A file's size at the start defines "all": ending early means it shrank.
        what = "source file shrank" if count is None else "source ended"
        raise TransferError(OSError(errno.ENODATA, f"{what} after {moved} of {want} bytes"),
                            moved)
    return moved

