"""asyncio integration: pooled receive buffers, kernel transfers and MSG_ZEROCOPY, awaited.

Works with the standard event loop and with uvloop.

* :class:`PooledBufferedProtocol`: an ``asyncio.BufferedProtocol`` whose receive
  buffers come from a :class:`~zcio.PooledAllocator`: the kernel copies received bytes
  straight into pooled direct memory, and the application gets a ByteBuffer.
* :func:`sendfile`, :func:`transfer_to`, :func:`splice`: the transfer engine of
  ``zcio.transfer`` (same paths, same fallbacks, same ``zcio.metrics`` accounting: one
  operation per call) on non-blocking sockets and pipes, awaiting readiness where the
  blocking API would ``poll``.
* :func:`send_zerocopy`: a MSG_ZEROCOPY send that returns once the kernel's completion
  says the buffer may be reused (see ``zcio._zerocopy``).

Closing an endpoint under a transfer (a socket, a channel, a file, or a transport's
``close()``/``abort()``) ends it within a wake-up (at most ~0.1 s): ClosedChannelError
(EBADF) if nothing moved, else TransferError (EBADF, caused by a ClosedChannelError)
with the exact count, as a peer reset does.  No byte ever goes to or comes from a
descriptor the endpoint no longer owns: a transfer works on duplicates of the caller's
descriptors, so a number reused by a new socket or file is never touched.  A duplicate
keeps its socket open until the transfer notices the close (the peer sees the end of
the stream then).

Cancellation: every awaitable here may be cancelled at any await.  Nothing stays
registered with the loop, no descriptor stays open, and what moved is exact: a
:class:`Progress` passed in (or the file position, for :func:`sendfile`) says how many
bytes reached the target.  Bytes taken from a source that cannot be re-read (a socket
or pipe; splice and read/write relay through a pipe or buffer) but not yet delivered
when cancelled are offered to the target once more without waiting; any still left are
lost, and counted in ``Progress.dropped``.  A file source loses nothing.

How readiness is awaited.  zcio never registers the socket itself with the loop.  Each
operation makes a private epoll set, adds the descriptor it waits for, and has the loop
watch the *epoll descriptor* (``loop.add_reader``), which is readable while the watched
socket is ready.  Reasons, measured on Linux 6.x with asyncio and uvloop 0.23:

1. MSG_ZEROCOPY completions signal only POLLERR.  asyncio's ``add_reader`` wakes on it
   (its epoll selector maps EPOLLERR to readable), but libuv stops a poll handle on
   POLLERR: uvloop's reader ran once, then never again, not even for incoming data.
2. The error-queue interest must be edge-triggered and error-only: a reader on the
   socket itself also fires for unread incoming data (asyncio: 11,000 wake-ups in
   0.1 s with 5 unread bytes).
3. A socket owned by a transport cannot be given to ``add_reader``/``add_writer``
   (RuntimeError in both loops), and ``add_writer`` on an application's socket would
   replace the application's own writer.

The set holds only the descriptor the operation waits for: a relay waiting for room in
its target is not woken by data on its source.  A transfer's wait also wakes every
``_RECHECK`` (0.1) seconds to see whether its endpoints were closed, which no event
reports (see above).

The cost: one ``epoll_create`` per operation, and per wait an ``epoll_ctl``, the loop's
own add/remove of the epoll descriptor, and one ``epoll_wait`` to take the event; for a
transfer, one ``dup`` per endpoint.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import _scratch, _syscalls
from ._byte_buffer import ByteBuffer
from ._errors import (
    ClosedChannelError,
    IllegalArgumentError,
    IllegalBlockingModeError,
    IllegalStateError,
    TransferError,
    UnsupportedOperationError,
)
from ._file_channel import FileChannel
from ._metrics import metrics
from ._pool import PooledAllocator
from ._syscalls import retry
from ._transfer import (
    _FILE,
    _OBJECT,
    _PIPE,
    _check_mode,
    _End,
    _end,
    _file_position,
    _Partial,
    _set_file_position,
    _Transfer,
    _WouldBlock,
)
from ._zerocopy import ZeroCopySender, _socket_of, _waits

if TYPE_CHECKING:
    from ._pipe import HasFileno
    from ._socket_channel import SocketChannel

__all__ = [
    "PooledBufferedProtocol",
    "Progress",
    "sendfile",
    "transfer_to",
    "splice",
    "send_zerocopy",
]

#: Default size of a PooledBufferedProtocol receive buffer.
DEFAULT_BUFFER_SIZE = 64 << 10


class TransportLike(Protocol):
    """What :func:`sendfile` and :func:`transfer_to` use of a transport (an
    ``asyncio.WriteTransport``, uvloop's too): its socket and its write buffer."""

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...


# -- receiving into pooled memory ----------------------------------------------------------


class PooledBufferedProtocol(asyncio.BufferedProtocol):
    """A BufferedProtocol that receives into pooled direct ByteBuffers.

    ``get_buffer`` lends the loop the memory of a fresh pooled buffer of
    ``buffer_size`` bytes (``sizehint`` is ignored); ``buffer_updated(n)`` hands that
    buffer to :meth:`data_received_buffer` with position 0, limit ``n``, capacity
    ``buffer_size``.  Ownership: the protocol holds one reference during the call and
    releases it when the call returns (also when it raises), as Netty's
    SimpleChannelInboundHandler does.  To keep the buffer, ``retain()`` it in the call
    and ``release()`` it when done; releasing the protocol's reference in the call
    instead is fine too.  A buffer is lent to the loop only while the application
    holds no reference to it: each read gets a new one, and the pool reuses a slot
    only once its count reached zero and no memoryview can reach it.

    ``transport.write(buf.memoryview())`` may keep that view after returning (CPython
    3.12+ queues views without copying): a view zcio revokes on release then fails.
    Pass ``bytes(buf)``, or keep the buffer retained until the transport has sent it.

    Subclasses that override :meth:`connection_lost` must call
    ``super().connection_lost(exc)``, which releases the buffer lent to the loop.

    Each read is recorded in ``zcio.metrics`` under path ``"aio_recv"``: one syscall,
    ``user_bytes`` the bytes received (the kernel's one copy, into the pooled memory).

    Syscalls: none of its own; the loop's transport calls ``recv(2)`` into the lent
    memory (asyncio: ``recv_into``; uvloop: libuv's ``read``).

    Example::

        class Count(PooledBufferedProtocol):
            total = 0

            def data_received_buffer(self, buf: ByteBuffer) -> None:
                self.total += buf.remaining()  # buf is released when this returns

        server = await loop.create_server(Count, "127.0.0.1", 8080)
    """

    def __init__(self, allocator: PooledAllocator | None = None,
                 buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        if buffer_size <= 0:
            raise IllegalArgumentError(f"buffer_size must be > 0: {buffer_size}")
        self.allocator = allocator if allocator is not None else PooledAllocator.default()
        self.buffer_size = buffer_size
        self._lent: ByteBuffer | None = None
        self._lost = False

    def get_buffer(self, sizehint: int) -> memoryview:
        """The memory of a pooled buffer for the loop to receive into.

        The same buffer is lent again if the previous read delivered nothing (EAGAIN,
        end of stream); otherwise a new one.  IllegalStateError after connection_lost.
        """
        if self._lost:
            raise IllegalStateError("get_buffer() after connection_lost()")
        buf = self._lent
        if buf is None:
            buf = self._lent = self.allocator.allocate(self.buffer_size)
        return buf.clear().memoryview()

    def buffer_updated(self, nbytes: int) -> None:
        """The loop wrote ``nbytes`` into the lent buffer: pass it on, then release it."""
        buf, self._lent = self._lent, None
        if buf is None:
            raise IllegalStateError("buffer_updated() without get_buffer()")
        metrics.record("aio_recv", user_bytes=nbytes)
        try:
            buf.position(0).limit(nbytes)
            self.data_received_buffer(buf)
        finally:
            if buf.ref_cnt() > 0:
                buf.release()

    def data_received_buffer(self, buf: ByteBuffer) -> None:
        """Called with the received bytes in ``buf[0:limit]``; see the class docstring
        for who releases it.  Override it."""
        raise NotImplementedError

    def connection_lost(self, exc: Exception | None) -> None:
        """Release the buffer lent to the loop, if any."""
        self._lost = True
        buf, self._lent = self._lent, None
        if buf is not None:
            buf.release()


# -- awaiting readiness ------------------------------------------------------------------


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


#: How often (seconds) a transfer waiting for readiness checks that the caller still
#: owns its endpoints.  Closing a socket, channel or transport wakes nothing: the
#: transfer's duplicate keeps the descriptor's file open (see :class:`_LoopTransfer`),
#: so this bounds how long a local close goes unnoticed, at ~10 wake-ups a second.
_RECHECK = 0.1


class _Readiness:
    """A private epoll set whose descriptor the loop watches (see the module docstring).

    It watches one descriptor at a time, the one the operation waits for: a transfer
    waiting for room in its target must not be woken by data on its source (it was,
    26,000-47,000 times a second, while the target's reader was away).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll: select.epoll | None = None
        self._fd = -1
        self._events = 0

    async def wait(self, fd: int, events: int, timeout: float | None = None) -> bool:
        """Wait until ``fd`` reports one of ``events`` (epoll flags) or an error, or
        ``timeout`` seconds passed; return whether ``fd`` was ready.

        With ``EPOLLET`` alone: once a *new* error-queue message or hang-up arrives.
        The events are taken before returning, so an edge is reported once.  Whatever
        an earlier wait watched is no longer watched.
        """
        ep = self._epoll
        if ep is None:
            ep = self._epoll = select.epoll()
        if fd != self._fd:
            if self._fd >= 0:
                ep.unregister(self._fd)
                self._fd = -1
            ep.register(fd, events)
            self._fd = fd
        elif events != self._events:
            ep.modify(fd, events)
        self._events = events
        fut: asyncio.Future[None] = self._loop.create_future()
        epfd = ep.fileno()
        self._loop.add_reader(epfd, _wake, fut)
        timer = None if timeout is None else self._loop.call_later(timeout, _wake, fut)
        try:
            await fut
        finally:
            self._loop.remove_reader(epfd)
            if timer is not None:
                timer.cancel()
        return bool(ep.poll(0))

    def close(self) -> None:
        ep, self._epoll = self._epoll, None
        if ep is not None:
            ep.close()


# -- transfers ------------------------------------------------------------------------------


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


def _still_owned(end: _End, transport: Any = None) -> bool:
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


class _LoopTransfer(_Transfer):
    """The engine's ``_Transfer`` for an event loop: no step ever waits.

    ``run(wait=False)`` stops where a step would block; ``blocked`` says which end, so
    the caller can await it.  Two rungs wait *inside* a step in the blocking engine,
    because bytes already taken from the source must reach the target: splice through
    a pipe (socket to socket) and read/write from a stream.  Here those bytes (``held``)
    stay in a pipe or buffer private to this transfer, across awaits, and a step
    returns what reached the target.

    Descriptor ownership: the caller's endpoints (``owned``) may be closed at any await,
    and their numbers given to new sockets or files.  So every syscall goes to a
    duplicate (``src.fd``/``dst.fd``, closed by :meth:`close`), which can only ever
    reach the endpoint's own file, and every step first checks that the caller still
    owns both endpoints (:meth:`check`): once one is closed (or ``transport`` is
    closing, unless because the peer reset the connection: then the kernel's error
    is reported, as without a transport) nothing more moves and the step raises
    ClosedChannelError.  Offsets live
    in the duplicates' ``_End`` (``src.offset``/``dst.offset``).
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
        if not _still_owned(src):
            return f"source {src.obj!r}"
        if not _still_owned(dst, self.transport):
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
        if self.src.offset is not None:  # re-readable: unwritten bytes are not consumed
            return super()._read_write(want)
        buf = self._relay
        if buf is None:
            buf = self._relay = _scratch.temporary_buffer(_scratch.CHUNK)
        if not self.held:
            buf.clear().limit(min(want, buf.capacity()))
            n = self._read_into(buf)
            if n == 0:
                return 0
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
        if dst.offset is not None:
            dst.offset += k
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


async def _drive(job: _LoopTransfer, count: int, progress: Progress) -> int:
    """Run ``job`` until ``count`` bytes moved or the source ends; await readiness.

    A transport target's buffered bytes are sent first.  ``progress`` is kept exact on
    return, error and cancellation.  Errors follow the blocking API: the kernel's
    OSError if nothing moved, else TransferError with the total; an endpoint closed
    by the caller is such an error too (ClosedChannelError, EBADF: see
    :class:`_LoopTransfer`), noticed at the next wake-up or within ``_RECHECK``
    seconds.  The engine counts an operation per ``run``; all but the first are taken
    back, so one call is one operation, as in ``zcio.transfer``.  ``job`` is closed
    on return.
    """
    waiter = _Readiness(asyncio.get_running_loop())
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
            while not await waiter.wait(blocked.end.fd, blocked.events, _RECHECK):
                if not job.is_open():
                    break  # the next step raises ClosedChannelError
    except asyncio.CancelledError:
        moved += job.flush()
        raise
    finally:
        progress.transferred, progress.dropped = moved, job.held
        waiter.close()
        job.close()
    return moved


def _loop_end(obj: Any, writing: bool) -> _End:
    """``_end`` for a loop: a descriptor, and a non-blocking one unless a regular file."""
    return _check_loop_end(_end(obj, writing), obj)


def _check_loop_end(end: _End, obj: Any) -> _End:
    if end.kind == _OBJECT:
        raise TypeError(f"{type(obj).__name__} has no file descriptor for an event loop")
    if end.kind != _FILE and os.get_blocking(end.fd):
        raise IllegalBlockingModeError(
            f"{obj!r} is in blocking mode: an event loop needs O_NONBLOCK "
            "(sock.setblocking(False), os.set_blocking(fd, False))")
    return end


def _target_socket(target: Any) -> tuple[Any, Any]:
    """(what to write to, the transport if ``target`` is one)."""
    if not hasattr(target, "get_extra_info"):
        return target, None
    if target.is_closing():
        raise ClosedChannelError(f"{target!r} is closing")
    if target.get_extra_info("sslcontext") is not None or \
            target.get_extra_info("ssl_object") is not None:
        raise UnsupportedOperationError(
            "a TLS transport: writing to its socket would bypass the encryption "
            "(loop.sendfile() falls back to copying through the transport)")
    sock = target.get_extra_info("socket")
    if sock is None:
        raise TypeError(f"{target!r} has no socket")
    return sock, target


async def _flush_transport(job: _LoopTransfer, waiter: _Readiness) -> None:
    """Wait until the target transport has sent everything it buffered (bytes keep
    their order); ClosedChannelError once it is closing."""
    while job.transport.get_write_buffer_size():
        job.check()
        await waiter.wait(job.dst.fd, select.POLLOUT, _RECHECK)
        await asyncio.sleep(0)  # let the transport's own writer run first


def _no_data(what: str, moved: int, want: int) -> TransferError:
    return TransferError(OSError(errno.ENODATA, f"{what} after {moved} of {want} bytes"),
                         moved)


async def sendfile(sock: HasFileno | TransportLike, file: HasFileno, offset: int = 0,
                   count: int | None = None, *, path: str | None = None,
                   progress: Progress | None = None) -> int:
    """Send ``count`` bytes of ``file`` from ``offset`` (default: to its end) to ``sock``.

    ``sock``: a non-blocking socket, a SocketChannel, or a (plain TCP/Unix) transport;
    a transport's buffered data is sent first, and nothing must write to it until this
    returns.  ``file``: a regular file (Python file object or FileChannel).  As
    ``loop.sock_sendfile``: the file position is set to ``offset`` + the bytes sent
    on return, on error and on cancellation.  Returns the bytes sent.  If the file
    ends before ``count`` (or shrank below the size it had when the call started),
    TransferError (ENODATA) with the count sent, as ``zcio.transfer``.

    Syscalls: as ``zcio.transfer``: ``sendfile(2)`` (falling back to mmap+write and
    pread+write; ``path=`` forces one), each moving possibly fewer bytes than asked,
    on duplicates (``dup``) of both descriptors; ``epoll_wait`` while the socket is
    full.  IllegalArgumentError for a negative offset or count;
    IllegalBlockingModeError for a blocking socket; ClosedChannelError or
    TransferError (EBADF) if ``sock`` (or its transport) or ``file`` is closed
    meanwhile (see the module docstring; the position of a closed file is left alone).

    Example (an HTTP response body)::

        transport.write(headers)
        with open(path, "rb") as f:
            await zcio.aio.sendfile(transport, f)
    """
    if offset < 0 or (count is not None and count < 0):
        raise IllegalArgumentError(f"negative offset {offset} or count {count}")
    target, transport = _target_socket(sock)
    dst = _loop_end(target, writing=True)
    src = _end(file, writing=False)
    if src.kind != _FILE:
        raise IllegalArgumentError(f"sendfile needs a regular file, not a {src.kind}")
    want = count if count is not None else max(os.fstat(src.fd).st_size - offset, 0)
    src.offset = offset
    job = _LoopTransfer(src, dst, path, transport)
    p = progress if progress is not None else Progress()
    try:
        moved = await _drive(job, want, p)
    finally:
        if _still_owned(src):  # a closed file has no position to set
            _seek(file, offset + p.transferred)
    if moved < want:
        raise _no_data("source file ended" if count is not None else "source file shrank",
                       moved, want)
    return moved


def _set_position(end: _End, offset: int | None) -> None:
    """Set a file endpoint's own position to ``offset`` (None: a stream, nothing to do),
    unless the caller closed it meanwhile."""
    if offset is not None and _still_owned(end):
        _set_file_position(end, offset)


def _seek(file: HasFileno, position: int) -> None:
    if isinstance(file, FileChannel):
        file.position(position)
    elif hasattr(file, "seek"):
        file.seek(position)
    else:
        os.lseek(file.fileno(), position, os.SEEK_SET)


async def transfer_to(channel: FileChannel, position: int, count: int,
                      target: HasFileno | TransportLike, *, path: str | None = None,
                      progress: Progress | None = None) -> int:
    """``FileChannel.transfer_to``, awaited until the whole count has moved.

    Java's rules: the channel's position does not move (``progress`` says how far a
    cancelled or failed call got); IllegalArgumentError for a negative position or
    count; 0 if ``position`` is past the end; ``count`` is cut to what the file has;
    a file that shrinks meanwhile ends the transfer early (the count returned says
    how far).  ``target``: a non-blocking socket or pipe, a SocketChannel, or a plain
    transport (see :func:`sendfile`), or a file.

    Syscalls: as ``zcio._transfer.transfer_to`` (copy_file_range / sendfile / splice /
    mmap+write / pread+write) on duplicates (``dup``) of both descriptors, plus
    ``epoll_wait`` while the target is full.  ClosedChannelError or TransferError
    (EBADF) if either end is closed meanwhile (see the module docstring).
    """
    channel.fileno()
    target, transport = _target_socket(target)
    dst = _end(target, writing=True, check_mode=False)
    src_fd = channel._readable_fd()
    _check_mode(dst, writing=True)
    if position < 0 or count < 0:
        raise IllegalArgumentError(f"negative position {position} or count {count}")
    _check_loop_end(dst, target)
    size = os.fstat(src_fd).st_size
    if position > size:
        return 0
    count = min(count, size - position)
    if count == 0:
        return 0
    if dst.kind == _FILE:
        dst.offset = _file_position(dst)
    job = _LoopTransfer(_End(channel, src_fd, _FILE, position), dst, path, transport)
    p = progress if progress is not None else Progress()
    try:
        return await _drive(job, count, p)
    finally:
        _set_position(dst, job.dst.offset)


async def splice(src: HasFileno, dst: HasFileno, count: int | None = None, *,
                 path: str | None = "splice", progress: Progress | None = None) -> int:
    """Move ``count`` bytes (default: until ``src`` ends) from ``src`` to ``dst`` by splice.

    Endpoints: non-blocking sockets and pipes, SocketChannels, pipe channels, regular
    files (read and written at their own positions, which advance by what moved, also
    on error and cancellation).  When neither end is a pipe the bytes pass through a
    pipe private to this call.  ``path=None`` lets the engine choose the cheapest
    path, as ``zcio.transfer`` does (sendfile for a file source...).  Returns the
    bytes moved.  As ``zcio.transfer``: if ``src`` ends before ``count``, or an error
    strikes after bytes moved, TransferError carries the count that reached ``dst``.

    Syscalls: ``splice(2)`` with SPLICE_F_NONBLOCK (each call may move fewer bytes
    than asked) on duplicates (``dup``) of both descriptors, ``epoll_wait`` while an
    end is not ready, for that end only.  ClosedChannelError or TransferError (EBADF)
    if either end is closed meanwhile (see the module docstring; the position of a
    closed file is left alone).
    """
    if count is not None and count < 0:
        raise IllegalArgumentError(f"negative count {count}")
    s, d = _loop_end(src, writing=False), _loop_end(dst, writing=True)
    if count is None:
        want = (os.fstat(s.fd).st_size - _file_position(s) if s.kind == _FILE
                else (1 << 63) - 1)
    else:
        want = count
    if s.kind == _FILE:
        s.offset = _file_position(s)
    if d.kind == _FILE:
        d.offset = _file_position(d)
    job = _LoopTransfer(s, d, path)
    try:
        moved = await _drive(job, max(want, 0), progress or Progress())
    finally:
        _set_position(s, job.src.offset)
        _set_position(d, job.dst.offset)
    if moved < want and (count is not None or s.kind == _FILE):
        raise _no_data("source ended" if count is not None else "source file shrank",
                       moved, want)
    return moved


# -- MSG_ZEROCOPY -------------------------------------------------------------------------

_SENDERS: weakref.WeakKeyDictionary[socket.socket, ZeroCopySender] = (
    weakref.WeakKeyDictionary())


def zerocopy_sender(sock: socket.socket | SocketChannel) -> ZeroCopySender:
    """The ZeroCopySender :func:`send_zerocopy` uses for ``sock`` (made on first use).

    It holds the socket weakly and releases what it still holds when the socket is
    collected.  OSError ENOPROTOOPT if the socket cannot do MSG_ZEROCOPY.
    """
    s = _socket_of(sock)
    sender = _SENDERS.get(s)
    if sender is None:
        sender = _SENDERS[s] = ZeroCopySender._weakly(s)
    return sender


async def send_zerocopy(sock: socket.socket | SocketChannel | ZeroCopySender, buf: ByteBuffer
                        ) -> int:
    """Send ``buf``'s ``[position, limit)`` with MSG_ZEROCOPY; return once the kernel
    has reported every piece complete, so ``buf`` may be changed or reused.

    ``sock``: a non-blocking TCP/UDP socket or SocketChannel (not one a transport
    owns), or a :class:`~zcio._zerocopy.ZeroCopySender`.  The position advances by the
    bytes sent; returns that count.  Until completion ``buf`` is retained once per
    ``sendmsg``; the caller's own reference is untouched.  If cancelled, the sends
    already made stay tracked by the sender (``zerocopy_sender(sock)``), ``buf``
    retained until their completion is read by a later call, ``poll_completions()``,
    ``wait()`` or ``close()``.  Errors as ``ZeroCopySender.send``.  Completion
    copied-or-not is counted in ``zcio.metrics`` (see ``zcio._zerocopy``).

    Closing the socket meanwhile ends the call within ~0.1 s (``_RECHECK``): OSError
    EBADF from the send (TransferError with the count if some bytes went out) or
    ClosedChannelError while awaiting completions (``buf.position()`` says what was
    sent); the sender keeps what is in flight, as after a cancellation.

    Syscalls: ``sendmsg(MSG_ZEROCOPY)``, ``recvmsg(MSG_ERRQUEUE)``; ``epoll_wait`` for
    room in the socket (POLLOUT) and for completions (POLLERR, edge-triggered), on a
    duplicate (``dup``) of the socket's descriptor; each wait is retried every 0.1 s.

    Example::

        buf = PooledAllocator.default().allocate(1 << 20)
        ...                                  # fill it, flip it
        await zcio.aio.send_zerocopy(sock, buf)
        buf.clear()                          # safe: the kernel is done with it
    """
    sender = sock if isinstance(sock, ZeroCopySender) else zerocopy_sender(sock)
    s = sender.socket()
    if _waits(s):
        raise IllegalBlockingModeError(f"{s!r} is in blocking mode: an event loop needs "
                                       "O_NONBLOCK")
    metrics.record("msg_zerocopy", syscalls=0)
    waiter = _Readiness(asyncio.get_running_loop())
    first, sent = sender._next, 0
    fd = os.dup(s.fileno())  # watched: always this socket's file, whoever reuses its number
    try:
        while buf.has_remaining():
            try:
                n = sender._send_once(s, buf)
            except BlockingIOError:
                await waiter.wait(fd, select.POLLOUT, _RECHECK)
                continue
            except OSError as e:
                if e.errno != errno.ENOBUFS or not sender.in_flight():
                    if sent:
                        raise TransferError(e, sent) from e
                    raise
                if not sender.poll_completions():  # room comes back with completions
                    await waiter.wait(fd, select.EPOLLET, _RECHECK)
                continue
            if n == 0:
                break
            sent += n
        stop = sender._next
        while not sender._completed(first, stop):
            sender.poll_completions()
            if sender._completed(first, stop):
                break
            await waiter.wait(fd, select.EPOLLET, _RECHECK)
    finally:
        waiter.close()
        os.close(fd)
    return sent
