"""Per-thread scratch resources of the transfer engine: a temporary direct buffer and a
pipe for splicing.

The buffer is Java's temporary direct-buffer cache (``sun.nio.ch.Util``) made safe:
Java's cache is unbounded by default (``jdk.nio.maxCachedBufferSize``), a classic
native-memory leak when a thread once moved a huge buffer.  Here each thread caches at
most one buffer of at most ``ZCIO_MAX_CACHED_BUFFER_SIZE`` bytes (default 1 MiB); it is
ordinary direct memory, so it shows in ``buffer_pools()`` and counts against the cap.

The pipe is enlarged with ``F_SETPIPE_SZ`` to ``ZCIO_SPLICE_PIPE_SIZE`` (default 1 MiB,
at most ``/proc/sys/fs/pipe-max-size``): measured here, chunk and pipe size matter more
than the syscall.  A pipe that may still hold bytes after a failed splice is closed,
never reused, so stale bytes cannot leak into another transfer: a splice marks it
``dirty`` before it fills it and clears the mark once it has drained it, and
:func:`splice_pipe` never hands out a dirty pipe (an exception between the fill and the
rung's bookkeeping, a raising signal handler's, would otherwise leave bytes nobody
counts for the thread's next transfer to deliver).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import weakref

from ._byte_buffer import ByteBuffer
from ._direct import parse_size
from ._fork import fork_safe

__all__ = ["temporary_buffer", "give_back", "splice_pipe", "discard_pipe", "release_thread",
           "clear", "CHUNK", "ScratchPipe"]

#: Default size of one read/write relay step and of the splice pipe.
CHUNK = 1 << 20

_MAX_CACHED = parse_size(os.environ.get("ZCIO_MAX_CACHED_BUFFER_SIZE", "1m"))
_PIPE_SIZE = parse_size(os.environ.get("ZCIO_SPLICE_PIPE_SIZE", "1m"))


def _close_fds(fds: tuple[int, int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class ScratchPipe:
    """A pipe owned by one thread's cache; closed by its finalizer when dropped.
    ``dirty``: it may hold bytes (see the module docstring)."""

    def __init__(self) -> None:
        r, w = os.pipe2(os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # EPERM above pipe-max-size: keep the default
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        self.read_fd, self.write_fd = r, w
        self.capacity = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
        self.dirty = False
        self._finalizer = weakref.finalize(self, _close_fds, (r, w))

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self._finalizer()


_local = threading.local()
# Weak registries, so clear() reaches every thread's scratch without keeping a dead
# thread's resources alive.  Another thread's pipe is closed through its owner object,
# which that thread checks before each use: it never touches a reused fd number.
_pipes: weakref.WeakSet[ScratchPipe] = weakref.WeakSet()
_buffers: weakref.WeakValueDictionary[int, ByteBuffer] = weakref.WeakValueDictionary()
_registry_lock = fork_safe(threading.Lock())


def temporary_buffer(size: int) -> ByteBuffer:
    """A cleared direct buffer of at least ``size`` bytes, its limit set to ``size``.

    Give it back with :func:`give_back`; one above the cache limit is released then.
    """
    buf: ByteBuffer | None = getattr(_local, "buffer", None)
    _local.buffer = None
    if buf is not None and buf.capacity() >= size and not buf.is_released():
        return buf.clear().limit(size)
    if buf is not None:
        buf.release()
    return ByteBuffer.allocate_direct(size)


def give_back(buf: ByteBuffer) -> None:
    """Return a temporary buffer: cache it if small enough and the slot is free."""
    old: ByteBuffer | None = getattr(_local, "buffer", None)
    if buf.capacity() <= _MAX_CACHED and (old is None or old.is_released()):
        _local.buffer = buf
        with _registry_lock:
            _buffers[id(buf)] = buf
    else:
        buf.release()


def splice_pipe() -> ScratchPipe:
    """This thread's pipe for splicing, created (and enlarged) on first use, and again
    after one left dirty (closed: it may hold another transfer's bytes)."""
    pipe: ScratchPipe | None = getattr(_local, "pipe", None)
    if pipe is not None and pipe.dirty:
        pipe.close()
        pipe = None
    if pipe is None or pipe.closed:
        pipe = _local.pipe = ScratchPipe()
        with _registry_lock:
            _pipes.add(pipe)
    return pipe


def discard_pipe() -> None:
    """Close this thread's pipe: it may hold bytes of a transfer that failed."""
    pipe: ScratchPipe | None = getattr(_local, "pipe", None)
    _local.pipe = None
    if pipe is not None:
        pipe.close()


def release_thread() -> None:
    """Close this thread's pipe and release its cached buffer now.

    For a thread about to end whose end someone waits for by other means (a session
    thread of ``FileReceiver``, whose ``close()`` returns once the session says it is
    done): left to the thread-local's teardown, they would outlive that wait.
    """
    discard_pipe()
    buf: ByteBuffer | None = getattr(_local, "buffer", None)
    _local.buffer = None
    if buf is not None:
        buf.release()


def clear() -> None:
    """Release every thread's cached buffer and close every cached pipe.

    For tests and long-lived programs that want the scratch memory back; a thread
    that transfers again creates new ones.
    """
    with _registry_lock:
        pipes, buffers = list(_pipes), list(_buffers.values())
        _buffers.clear()
    for pipe in pipes:
        pipe.close()
    for buf in buffers:
        buf.release()
