"""Gather and scatter I/O: iovecs from buffers, the IOV_MAX loops, the partial-transfer rule.

Every vectored call in zcio goes through here: FileChannel, SocketChannel and the pipe
ends (readv/preadv/recvmsg, writev/pwritev/sendmsg) and ``vmsplice``.  A channel
supplies only the system call for one chunk of views; this module chooses the views,
runs the loop, moves the positions and applies the one rule for errors.

Views.  :func:`remaining_pairs` lists ``(owner, view, start)`` for each buffer's
``[position, limit)``: one view per buffer, and one per component with bytes left for
a CompositeBuffer (one buffer may fill several iovecs); ``start`` is the owner's index
of the view's first byte, taken when the views are listed.  A view pins its memory: a
concurrent ``release()`` cannot unmap it under the kernel.  When a call raises, the
loops release every view they were given, so the traceback does not keep the buffers
exported (on return the views simply go with the list).

Positions.  After the kernel moved ``n`` bytes, :func:`advance` sets owners'
positions view by view, in order, as Java's IOUtil does: each view with a share of
``n`` sets its owner's position to its ``start`` plus that share, and view ``i+1``
has a share only once view ``i`` is full (scatter) or drained (gather).  So a buffer
listed twice ends where its last listing with a share says, never past its limit
(Java: ``write([x, x])`` moves ``x`` to its limit and answers twice its remaining
bytes); a composite's views take their shares in turn.  Limits never move.

Partial transfers (Java's rule, :func:`partial`): a call that moved bytes returns
their count, even if an error struck afterwards (the error comes again on the next
call); only a call that moved nothing raises.  EAGAIN is never an error here: it ends
a gather with the count so far (0 if nothing moved) and makes a scatter return 0.

One buffer, one call (compiled).  With the accelerator loaded, a channel's read or
write of one plain buffer first offers it to ``zcio._native``'s ``io_read`` /
``io_write`` (``_syscalls.NATIVE_IO``, None while a test's layer is installed): one
read/pread/recv or write/pwrite/send straight from the buffer's memory, pinned for the
call, with the GIL released; the position advances by the count, and the call is
counted in ``zcio.metrics`` as the channel's Python path counts it (``HOW_*``).  It is
this module's rules for one view and one call, as the loops above apply them: the
count, 0 for EAGAIN in a read (and in a write with IO_EAGAIN_ZERO), -1 for end of
stream in a read, 0 with no call when nothing remains; an error raises with no
position changed.  Anything else (a mapped, composite, released or read-only buffer,
odd indexes) gives NotImplemented and the channel runs the Python path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._accel import native
from ._buffer import check_int
from ._byte_buffer import ByteBuffer
from ._composite import CompositeBuffer
from ._errors import IllegalArgumentError, IndexOutOfBoundsError
from ._indirect import IndirectByteBuffer
from ._metrics import metrics
from ._syscalls import IOV_MAX

__all__ = [
    "HOW_FILE",
    "HOW_PIPE",
    "HOW_SOCKET",
    "Pair",
    "advance",
    "check_buffers",
    "gather",
    "partial",
    "release",
    "remaining_pairs",
    "scatter",
]

#: A view for one iovec, the buffer whose position it sets (None: a bytes-like object,
#: which has no position), and that buffer's index of the view's first byte.
Pair = tuple[ByteBuffer | None, memoryview, int]


def check_buffers(bufs: Sequence[ByteBuffer], offset: int, length: int | None) -> list[ByteBuffer]:
    """Java's scatter/gather argument check: ``bufs[offset:offset+length]``, all ByteBuffers.

    TypeError for a non-integer offset or length, or an element that is no ByteBuffer;
    IndexOutOfBoundsError for a range outside ``bufs``.
    """
    if type(offset) is int and offset == 0 and length is None and type(bufs) in (list, tuple):
        chosen = list(bufs)  # the whole list: the common call, no range to check
    else:
        offset = check_int(offset, "offset")
        if length is None:
            length = len(bufs) - offset
        length = check_int(length, "length")
        if offset < 0 or length < 0 or offset + length > len(bufs):
            raise IndexOutOfBoundsError(
                f"buffers [{offset}, {offset} + {length}) out of bounds for {len(bufs)}"
            )
        chosen = list(bufs[offset : offset + length])
    if native is not None and native.io_byte_buffers(chosen):  # the loop below, in C
        return chosen
    for b in chosen:
        if not isinstance(b, ByteBuffer):
            raise TypeError(f"expected ByteBuffer, not {type(b).__name__}")
    return chosen


def remaining_pairs(bufs: Sequence[ByteBuffer], writable: bool) -> list[Pair]:
    """``(buffer, view, start)`` for each view of the buffers' ``[position, limit)``, in order.

    ``writable``: the kernel will write into them (a read), so a read-only buffer is
    refused with IllegalArgumentError, full or not, as Java refuses it; nothing is
    pinned then.
    """
    pairs: list[Pair] = []
    append = pairs.append
    for b in bufs:  # on every vectored call's path: kept lean
        if writable and b._ro:
            release(pairs)
            raise IllegalArgumentError("read into a read-only buffer")
        start = b._pos
        if isinstance(b, CompositeBuffer):
            for v in b._rest_views():
                append((b, v, start))
                start += len(v)
        else:  # measured: ~40 ns a buffer less than _rest_views() (a list per call)
            append((b, b._rest(), start))
    return pairs


def release(pairs: Sequence[Pair]) -> None:
    """Let go of the views (the buffers are no longer exported through them)."""
    for _, v, _ in pairs:
        v.release()


def advance(pairs: Sequence[Pair], n: int) -> None:
    """Set owners' positions for the ``n`` bytes the kernel moved, view by view in order.

    Position: each view's owner (if any) is set to the view's ``start`` plus its share,
    ``min(what is left of n, len(view))``, while anything is left (Java's IOUtil); a
    view without a share leaves its owner as it is.  A composite's views, one per
    component, take their shares in turn; a buffer listed twice ends where its last
    listing with a share puts it.  Limit: unchanged.
    """
    for owner, view, start in pairs:
        if n <= 0:
            break
        size = len(view)
        step = size if size < n else n
        if owner is not None:
            owner._pos = start + step
        n -= step


def partial(total: int, error: OSError) -> int:
    """Java's partial-transfer rule: ``total`` if bytes moved (the error will come again
    on the next call), else raise ``error``."""
    if total:
        return total
    raise error


def gather(pairs: Sequence[Pair], call: Callable[[list[memoryview], int], int],
           once: bool = False) -> int:
    """Every gather write: ``call(views, total)`` per IOV_MAX non-empty views, in order.

    ``total`` is what earlier chunks moved (a positional write offsets by it).  Returns
    the total; positions advance by what the kernel took (:func:`advance`).

    Syscalls: whatever ``call`` makes (writev, pwritev, sendmsg/send, vmsplice), one
    per chunk; the loop goes on while the kernel takes each chunk whole (``once``: one
    call, as a non-blocking socket does), so a short chunk ends it.  EAGAIN ends the
    loop with the total so far (0 if nothing moved).  Any other error follows
    :func:`partial`: the total if an earlier chunk moved bytes (positions say exactly
    what moved), else the error with no position changed; raising, every view in
    ``pairs`` is released first.
    """
    chosen = [p for p in pairs if len(p[1])]
    total = 0
    try:
        for start in range(0, len(chosen), IOV_MAX):
            chunk = chosen[start : start + IOV_MAX]
            views = [v for _, v, _ in chunk]
            try:
                n = call(views, total)
            except BlockingIOError:
                break
            except OSError as e:
                return partial(total, e)
            advance(chunk, n)
            total += n
            if once or n < sum(map(len, views)):
                break
    except BaseException:
        release(pairs)
        raise
    return total


def scatter(pairs: Sequence[Pair], call: Callable[[list[memoryview]], int]) -> int:
    """Every scatter read: one ``call(views)`` into the first IOV_MAX non-empty views.

    Returns 0 with no call when no view has room, -1 when the call returned 0 (end of
    stream or file), else the count, with positions advanced by it (:func:`advance`).

    Syscalls: one, whatever ``call`` makes (readv, preadv, recvmsg_into/recv_into), as
    Java's IOUtil: a caller wanting more calls again.  It may fill fewer bytes than
    there is room for.  EAGAIN gives 0 with nothing moved.  Any other error
    propagates with no position changed (one call moves bytes or raises), after every
    view in ``pairs`` is released.
    """
    chosen = [p for p in pairs if len(p[1])]
    if not chosen:
        return 0
    del chosen[IOV_MAX:]
    try:
        n = call([v for _, v, _ in chosen])
    except BlockingIOError:
        return 0
    except BaseException:
        release(pairs)
        raise
    if n == 0:
        return -1
    advance(chosen, n)
    return n


# -- one buffer, one call: the compiled path ------------------------------------------


def _how(*flags: str) -> int:
    return sum(getattr(native, f) for f in flags) if native is not None else 0


#: ``how`` of the native calls, per channel kind, as each one's Python path behaves.
#: Files: read/pread, write/pwrite; counted when the call succeeds; EAGAIN makes a read
#: return 0 and a write raise BlockingIOError, as ``FileChannel.write(buf)`` does.
HOW_FILE = 0
#: Pipe ends: read, write; EAGAIN gives 0; a failed call is counted too.
HOW_PIPE = _how("IO_EAGAIN_ZERO", "IO_COUNT_ERRORS")
#: Sockets: recv, send; EAGAIN gives 0; every operation is counted, even one that
#: failed or had nothing to move.
HOW_SOCKET = _how("IO_SOCKET", "IO_EAGAIN_ZERO", "IO_COUNT_ERRORS", "IO_COUNT_EMPTY")

if native is not None:
    native.io_setup(ByteBuffer, IndirectByteBuffer, metrics)
