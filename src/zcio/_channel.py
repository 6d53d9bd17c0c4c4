"""What every channel shares: one file descriptor, closed exactly once, never reused early.

A channel is open from creation until ``close()``; afterwards every I/O call raises
ClosedChannelError.  ``close()`` is idempotent.  The descriptor is set to -1 *before*
the kernel's ``close(2)`` runs, so a second close is a no-op and a stale channel fails
loudly.  A channel collected while open closes itself and warns with ResourceWarning,
as files do.

Asynchronous close (Java's rules, the JDK's "preClose").  Every operation that uses the
descriptor runs registered in the channel's in-flight set (:meth:`Channel._begin` /
:meth:`Channel._end`, or the :func:`operation` decorator).  ``close()`` while operations
are in flight does not free the descriptor number: under the registry's lock it

1. wakes the threads inside (a socket is ``shutdown(SHUT_RDWR)``, which wakes
   ``recv``/``send``/``accept``),
2. ``dup2(2)`` a dead socket onto the number (one end of a socketpair whose other end is
   closed, made once per process: reads see end of stream, writes EPIPE),
3. signals each thread inside out of a blocking call (``zcio._wakeup``), whose retry
   then meets the dead socket,

and the last operation to leave closes the number for real.  Until then no other open
can get the number, so no byte ever goes to or comes from a file the channel does not
own.  An operation that finds its channel closed when it leaves raises
AsynchronousCloseError with ``moved``, the exact count it moved (positions say the
same).  Unlike the JDK, which returns the count of a call that completed just before
the close, zcio raises whenever the close overlapped the call: one rule, the count
is never lost (it is in ``moved``), and a caller's loop stops at once.  A channel
that does not own its descriptor (``owns_fd`` False) skips step 2 and never closes the
number: the owner decides when it goes.

Partial transfers follow one rule (Java's), written once in ``zcio._iovec`` with the
gather and scatter loops every channel uses.
"""

from __future__ import annotations

import functools
import inspect
import os
import select
import socket
import threading
import warnings
from collections.abc import Callable
from typing import Any, Self, TypeVar, cast

from . import _syscalls, _wakeup
from ._accel import native, text_signature
from ._buffer import check_int
from ._errors import (
    AsynchronousCloseError,
    ClosedChannelError,
    IllegalArgumentError,
    TransferError,
)

__all__ = [
    "Channel",
    "Guard",
    "operation",
    "counting_operation",
    "check_position",
    "closed_during",
    "accelerate",
    "CHANNEL_REFERENCE",
]

#: The largest file offset: off_t is signed 64-bit (Java's Long.MAX_VALUE).
MAX_POSITION = (1 << 63) - 1

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


def _dead_descriptor() -> int:
    """The JDK's preCloseFD: a socket whose peer is closed (EOF on read, EPIPE on write)."""
    alive, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.close()
    return alive.detach()  # close-on-exec, as every socket Python makes


_DEAD_FD = _dead_descriptor()
_get_ident = threading.get_ident


class Channel:
    """Base of every channel: the descriptor's lifetime, open/closed, in-flight operations."""

    _fd: int = -1
    _owns_fd: bool = True
    _closing_fd: int = -1  # pre-closed: closed for real by the last operation to leave
    _users: list[int]  # thread idents inside operations, one entry per nesting level
    _op_lock: threading.Lock

    def _init_fd(self, fd: int, owns_fd: bool = True) -> None:
        self._op_lock = threading.Lock()
        self._users = []
        self._fd = fd
        self._owns_fd = owns_fd

    def fileno(self) -> int:
        """The file descriptor; ClosedChannelError once closed."""
        fd = self._fd
        if fd < 0:
            raise ClosedChannelError(f"{type(self).__name__} is closed")
        return fd

    _ensure_open = fileno

    def is_open(self) -> bool:
        """Whether ``close()`` has not been called."""
        return self._fd >= 0

    # -- the in-flight registry ------------------------------------------------------

    # The fast path takes no lock: under the GIL ``list.append``/``list.remove`` and
    # attribute loads and stores are atomic and sequentially consistent.  ``_begin``
    # registers and then reads ``_fd``; ``close`` clears ``_fd`` and then reads the
    # users: one of them sees the other (Dekker).  Only handing over the pre-closed
    # descriptor, which happens once, takes ``_op_lock``.

    def _begin(self) -> bool:
        """Enter an operation: False (nothing registered) if the channel is closed.

        While registered, a descriptor number read from ``fileno()`` stays this
        channel's (the real file, or after a close the dead socket) until ``_end``.
        """
        self._users.append(_get_ident())
        if self._fd < 0:
            self._end()
            return False
        return True

    def _end(self) -> bool:
        """Leave an operation; True if the channel was closed meanwhile.

        The last operation to leave a pre-closed channel closes the descriptor.
        """
        self._users.remove(_get_ident())
        return self._left()

    def _left(self) -> bool:
        """What ``_end`` does once the entry is gone: finish a pre-close if this was the
        last operation inside; True if the channel is closed."""
        if self._closing_fd >= 0:
            self._finish_close()
        return self._fd < 0

    def _finish_close(self) -> None:
        """Close the pre-closed descriptor if no operation is left inside (once)."""
        with self._op_lock:
            fd = self._closing_fd
            if fd < 0 or self._users:
                return
            self._closing_fd = -1
        self._close_fd(fd)

    def close(self) -> None:
        """Close the channel (idempotent).

        Threads using the channel are woken and raise AsynchronousCloseError; see the
        module docstring.  Syscalls: ``close(2)`` if the fd is owned (by the last
        operation to leave, if some are in flight; before that ``shutdown(2)`` for a
        socket, ``dup2(2)`` of a dead socket onto the fd, ``tgkill(2)`` per thread).
        """
        if self._fd < 0:
            return
        with self._op_lock:
            fd, self._fd = self._fd, -1
            if fd < 0:
                return
        self._on_close()
        with self._op_lock:
            if not self._users:
                self._close_fd(fd)
                return
            # They cannot hand the number back while we hold the lock: fd is ours.
            self._pre_close(fd)
            self._closing_fd = fd
            _wakeup.wake(self._users)
        self._finish_close()  # the last one may have left before _closing_fd was set

    def _pre_close(self, fd: int) -> None:
        """Make ``fd`` harmless while operations still hold it: point it at the dead socket.

        Subclasses wake their own blocked calls first (sockets: shutdown).
        """
        if self._owns_fd:
            os.dup2(_DEAD_FD, fd, inheritable=False)

    def _close_fd(self, fd: int) -> None:
        """Release the descriptor for real (subclasses: the object that owns it)."""
        if self._owns_fd:
            os.close(fd)

    def _on_close(self) -> None:
        """Hook for subclasses: release what hangs on the descriptor (locks...)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if self._fd >= 0:
            name = repr(self)
            self.close()  # first: the warning may be turned into an exception
            warnings.warn(f"unclosed {name}", ResourceWarning, source=self, stacklevel=2)

    def __repr__(self) -> str:
        state = f"fd={self._fd}" if self._fd >= 0 else "closed"
        return f"zcio.{type(self).__name__}[{state}]"


def moved_by(result: object, error: BaseException | None) -> int:
    """The bytes an operation moved, from its count or from the error it raised."""
    if error is not None:
        if isinstance(error, TransferError):
            return error.transferred
        return error.moved if isinstance(error, AsynchronousCloseError) else 0
    return result if type(result) is int and result > 0 else 0


def _wrap(method: F, counts: bool) -> F:
    what = method.__qualname__

    @functools.wraps(method)
    def op(self: Channel, /, *args: Any, **kwargs: Any) -> Any:
        if not self._begin():  # already closed: the method raises in its own order
            return method(self, *args, **kwargs)
        try:
            result = method(self, *args, **kwargs)
        except BaseException as e:
            if self._end():
                raise AsynchronousCloseError(what, moved_by(None, e)) from e
            raise
        if self._end():
            raise AsynchronousCloseError(what, moved_by(result, None) if counts else 0)
        return result

    return cast(F, op)


def closed_during(channel: Channel, what: str, result: object,
                  error: BaseException | None) -> None:
    """The compiled operations' way out (``native/chan.c``), taken when the channel was
    closed, or is closing, once the operation has left the registry: ``_wrap``'s rule
    for a counting operation.  Finishes a pre-close; if the channel is closed, raises
    AsynchronousCloseError with the count moved (from ``error`` if given); otherwise
    returns, and the operation returns ``result`` or raises ``error``."""
    if channel._left():
        if error is not None:
            raise AsynchronousCloseError(what, moved_by(None, error)) from error
        raise AsynchronousCloseError(what, moved_by(result, None))


def operation(method: F) -> F:
    """Run a method that uses the channel's descriptor inside the in-flight registry.

    Closed during the call: AsynchronousCloseError (``moved`` 0).
    """
    return _wrap(method, counts=False)


def counting_operation(method: F) -> F:
    """As :func:`operation`, for a method returning the bytes it moved: closed during the
    call, AsynchronousCloseError carries that count (or a TransferError's)."""
    return _wrap(method, counts=True)


class Guard:
    """The registration of one operation over several endpoints (transfers, splice...).

    ``fd(obj)`` gives the descriptor to use for ``obj``: a zcio channel is registered
    (its number stays its own until ``finish``); another object with ``fileno()`` is
    duplicated (``dup``), so that its owner closing it cannot hand the number to another file
    under the operation; a bare int is used as given (its owner's responsibility).
    """

    __slots__ = ("_channels", "_dups", "_numbers")

    def __init__(self) -> None:
        self._channels: list[Channel] = []
        self._dups: list[int] = []
        self._numbers: list[int] = []  # the registered channels' descriptors

    def fd(self, obj: Any) -> int:
        """The descriptor to use for ``obj`` (ClosedChannelError for a closed channel)."""
        if isinstance(obj, Channel):
            if obj._begin():
                self._channels.append(obj)
                self._numbers.append(obj.fileno())
                return self._numbers[-1]
            return obj.fileno()
        if isinstance(obj, int):
            return obj
        fd = obj.fileno()
        if not isinstance(fd, int) or fd < 0:
            raise ClosedChannelError(f"{obj!r} is closed")
        dup = os.dup(fd)
        self._dups.append(dup)
        return dup

    def closed(self) -> bool:
        """Whether a registered channel has been closed since (stop moving bytes)."""
        return any(c._fd < 0 for c in self._channels)

    def wait(self, fd: int, events: int) -> None:
        """Wait until ``fd`` is ready for ``events``, or a registered channel is closed.

        A wait on another descriptor than the closed channel's (a transfer into a file
        from a socket with nothing to read yet) would sleep through the close: the
        wake-up signal interrupts it, but CPython retries the call (PEP 475) on the
        same descriptors.  So the wait watches the registered channels' numbers too,
        which a close points at a dead socket (POLLHUP) before it sends the signal.

        Syscalls: ``poll`` (retried after a signal, as CPython does).
        """
        poller = select.poll()
        poller.register(fd, events)
        for n in self._numbers:
            if n != fd:
                poller.register(n, 0)  # only POLLHUP / POLLERR / POLLNVAL come back
        poller.poll()

    def finish(self, result: object, error: BaseException | None) -> None:
        """Leave every registration; AsynchronousCloseError if a channel closed meanwhile."""
        for d in self._dups:
            os.close(d)
        self._dups.clear()
        self._numbers.clear()
        closed = [c for c in self._channels if c._end()]
        self._channels.clear()
        if closed:
            raise AsynchronousCloseError(repr(closed[0]), moved_by(result, error)) from error

    def run(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(self, *args)`` inside this guard, finished whatever happens."""
        try:
            result = fn(self, *args)
        except BaseException as e:
            self.finish(None, e)
            raise
        self.finish(result, None)
        return result


def check_position(value: object, what: str) -> int:
    """A file position or size: an integer in ``[0, 2**63 - 1]`` (an ``off_t``).

    TypeError for a non-integer, IllegalArgumentError out of range, naming ``what``.
    """
    v = check_int(value, what)
    if v < 0:
        raise IllegalArgumentError(f"negative {what}: {v}")
    if v > MAX_POSITION:
        raise IllegalArgumentError(f"{what} {v} > 2**63 - 1")
    return v


#: The Python methods the compiled channel operations replaced (``native/chan.c``):
#: their reference and slow path, by (class, method name).
CHANNEL_REFERENCE: dict[tuple[type[Channel], str], Callable[..., Any]] = {}


def accelerate(cls: type[Channel], name: str, path: str, *, what: str, into: bool,
               how: int, max_args: int = 1, gather: bool = False, lock: str | None = None,
               state: dict[str, object] | None = None) -> None:
    """Make ``cls.<name>`` one C method (``zcio._native``, ``native/chan.c``) for the
    common call: one plain buffer (with ``gather``, also a list of them), positional
    arguments only (at most ``max_args``; a second one is a file position), the
    channel's type exactly ``cls``, the instance attributes in ``state`` holding
    exactly those objects, the ``lock`` attribute's lock free.  It does what the
    Python method does for that call: counting_operation's registry, io.c's one system
    call counted under ``path``, AsynchronousCloseError named ``what``; anything else
    runs the Python method, kept in :data:`CHANNEL_REFERENCE`.  Without the
    accelerator, nothing changes."""
    if native is None:
        return
    ref = cls.__dict__[name]
    CHANNEL_REFERENCE[(cls, name)] = ref
    doc = f"{text_signature(ref)}\n--\n\n{inspect.getdoc(ref)}"
    native.accelerate_channel(path, cls, name, what, into, how, max_args, gather, lock,
                              tuple((state or {}).items()), closed_during,
                              vars(_syscalls), doc)
