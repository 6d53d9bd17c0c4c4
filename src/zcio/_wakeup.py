"""Waking a thread blocked in a system call on a descriptor that another thread closes.

``close(2)`` does not wake a thread blocked in ``read``/``poll``/``fcntl(F_OFD_SETLKW)``
on the same descriptor: the blocked call holds its own reference to the open file.
HotSpot's answer (NativeThread.signal) is a signal sent to that thread with a handler
that does nothing, installed *without* SA_RESTART: the call fails with EINTR.  CPython
then retries it (PEP 475), and since the closing thread has first made the descriptor
number point at a dead socket (see ``zcio._channel``), the retry returns at once.

The signal is SIGRTMAX-2, as HotSpot's.  Its handler is installed at import with the
``signal`` module, which only works in the main thread, and only when nobody installed
a handler for it already (a user's handler is never overridden).  Otherwise
:func:`available` is False, :func:`unavailability_cause` says why, and :func:`wake` does
nothing: a thread blocked on a pipe, in ``poll`` or in ``lock()`` then stays blocked
until its call returns by itself (sockets are still woken by ``shutdown(2)``), though it
never touches a descriptor the channel no longer owns.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from types import FrameType

__all__ = ["SIGNAL", "available", "unavailability_cause", "wake"]

#: The wake-up signal, HotSpot's choice.
SIGNAL = signal.SIGRTMAX - 2


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The handler: its only job is to make the blocked system call fail with EINTR."""


def _install() -> str | None:
    """Install the handler; None on success, else why not."""
    if threading.current_thread() is not threading.main_thread():
        return "zcio was first imported outside the main thread (signal handlers need it)"
    current = signal.getsignal(SIGNAL)
    if current is None or current not in (signal.SIG_DFL, _ignore):
        return f"signal {SIGNAL} already has a handler that zcio will not override"
    signal.signal(SIGNAL, _ignore)
    signal.siginterrupt(SIGNAL, True)  # no SA_RESTART: the blocked call gets EINTR
    return None


_cause = _install()


def available() -> bool:
    """Whether blocked threads can be woken (the handler is installed and still ours)."""
    return _cause is None and signal.getsignal(SIGNAL) is _ignore


def unavailability_cause() -> str | None:
    """Why :func:`available` is False, or None."""
    if _cause is None and signal.getsignal(SIGNAL) is not _ignore:
        return f"the handler of signal {SIGNAL} was replaced after zcio installed it"
    return _cause


def wake(idents: Iterable[int]) -> None:
    """Signal each thread in ``idents`` (but the caller) out of a blocking system call.

    The caller must know the threads are alive (the channel's operation registry,
    held locked, guarantees it).  No-op when :func:`available` is False.
    """
    if not available():
        return
    me = threading.get_ident()
    for ident in set(idents):
        if ident != me:
            signal.pthread_kill(ident, SIGNAL)
