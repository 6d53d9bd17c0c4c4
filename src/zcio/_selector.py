"""Readiness selection over many channels: java.nio's Selector and SelectionKey.

A :class:`Selector` holds one :class:`SelectionKey` per registered channel, and a
*selected-key set*.  ``select()`` waits (``epoll_wait`` through the stdlib
``selectors.DefaultSelector``) until some channel is ready for an operation in its
key's *interest set*, then, for each such key:

* not yet in the selected-key set: its *ready set* becomes what is ready now, and the
  key is added to the set;
* already there: what is ready now is added to its ready set (nothing is cleared).

``select()`` returns how many keys that updated.  Keys stay in the selected-key set
until the caller removes them, as in Java::

    for key in list(selector.selected_keys()):
        selector.selected_keys().discard(key)
        if key.is_acceptable(): ...

Ready sets only ever hold operations of the interest set.  OP_READ and OP_ACCEPT wait
for EPOLLIN; OP_WRITE and OP_CONNECT for EPOLLOUT (a socket channel reports OP_CONNECT
while its connection is pending and OP_WRITE once connected).  An error or hang-up on a
descriptor makes every interested operation ready, so the next call reports it.

``cancel()`` (also run by closing the channel, or the selector) makes a key invalid and
takes the descriptor out of epoll at once, before the descriptor number can be reused;
a cancelled key leaves the selected-key set at the next ``select()``.  ``wakeup()``
makes a blocked ``select()`` return at once, or the next one if none is blocked.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
import warnings
from typing import TYPE_CHECKING, Any, Self, overload

from ._errors import (
    CancelledKeyError,
    ClosedSelectorError,
    IllegalArgumentError,
)
from ._metrics import metrics
from ._selectable import OP_ACCEPT, OP_CONNECT, OP_READ, OP_WRITE

if TYPE_CHECKING:
    from ._selectable import SelectableChannel

__all__ = ["Selector", "SelectionKey", "OP_READ", "OP_WRITE", "OP_CONNECT", "OP_ACCEPT"]

_READ_OPS = OP_READ | OP_ACCEPT
_WRITE_OPS = OP_WRITE | OP_CONNECT


def _events_for(ops: int) -> int:
    """The stdlib selector events that watch for ``ops``."""
    events = 0
    if ops & _READ_OPS:
        events |= selectors.EVENT_READ
    if ops & _WRITE_OPS:
        events |= selectors.EVENT_WRITE
    return events


class SelectionKey:
    """The registration of one channel with one selector (Java's SelectionKey).

    Valid from registration until ``cancel()``, the channel's close or the selector's
    close.  ``interest_ops``/``ready_ops`` of an invalid key raise CancelledKeyError.
    """

    __slots__ = ("_channel", "_selector", "_fd", "_interest", "_ready", "_attachment", "_valid")

    def __init__(
        self, channel: SelectableChannel, selector: Selector, fd: int, ops: int, attachment: Any
    ) -> None:
        self._channel = channel
        self._selector = selector
        self._fd = fd  # the descriptor as registered: still known after the channel closes
        self._interest = ops
        self._ready = 0
        self._attachment = attachment
        self._valid = True

    def channel(self) -> SelectableChannel:
        """The channel this key registers (returned even after cancel)."""
        return self._channel

    def selector(self) -> Selector:
        """The selector this key belongs to (returned even after cancel)."""
        return self._selector

    def is_valid(self) -> bool:
        """Whether the key has been neither cancelled nor closed with its channel/selector."""
        return self._valid

    def cancel(self) -> None:
        """Cancel the registration (idempotent).

        The key becomes invalid and leaves ``keys()`` at once; its descriptor leaves
        epoll at once (``epoll_ctl(EPOLL_CTL_DEL)``); it leaves ``selected_keys()`` at
        the next ``select()``.
        """
        if self._valid:
            self._selector._cancel(self)

    def _check_valid(self) -> None:
        if not self._valid:
            raise CancelledKeyError("selection key is cancelled")

    @overload
    def interest_ops(self) -> int: ...
    @overload
    def interest_ops(self, ops: int) -> Self: ...
    def interest_ops(self, ops: int | None = None) -> int | Self:
        """The interest set, or set it to ``ops`` (returns the key).

        Takes effect for the next ``select()``, and for one in progress.
        IllegalArgumentError for ops outside the channel's ``valid_ops()``.
        Syscalls: ``epoll_ctl`` (MOD, or ADD/DEL when the set becomes non-empty/empty).
        """
        self._check_valid()
        if ops is None:
            return self._interest
        if ops & ~self._channel.valid_ops():
            raise IllegalArgumentError(
                f"ops {ops:#x} not valid for {type(self._channel).__name__} "
                f"(valid: {self._channel.valid_ops():#x})"
            )
        self._selector._set_interest(self, ops)
        return self

    def interest_ops_or(self, ops: int) -> int:
        """Add ``ops`` to the interest set; returns the previous set."""
        old = self.interest_ops()
        self.interest_ops(old | ops)
        return old

    def interest_ops_and(self, ops: int) -> int:
        """Keep only ``ops`` of the interest set; returns the previous set."""
        old = self.interest_ops()
        self.interest_ops(old & ops)
        return old

    def ready_ops(self) -> int:
        """The ready set the last ``select()`` that updated this key left."""
        self._check_valid()
        return self._ready

    def is_readable(self) -> bool:
        """Whether OP_READ is in the ready set."""
        return bool(self.ready_ops() & OP_READ)

    def is_writable(self) -> bool:
        """Whether OP_WRITE is in the ready set."""
        return bool(self.ready_ops() & OP_WRITE)

    def is_connectable(self) -> bool:
        """Whether OP_CONNECT is in the ready set."""
        return bool(self.ready_ops() & OP_CONNECT)

    def is_acceptable(self) -> bool:
        """Whether OP_ACCEPT is in the ready set."""
        return bool(self.ready_ops() & OP_ACCEPT)

    def attach(self, obj: Any) -> Any:
        """Attach ``obj`` (None detaches); returns the previous attachment."""
        old, self._attachment = self._attachment, obj
        return old

    def attachment(self) -> Any:
        """The attached object, or None."""
        return self._attachment

    def _translate(self, events: int) -> int:
        """The ready ops for stdlib ``events``, within the interest set."""
        readable = bool(events & selectors.EVENT_READ)
        writable = bool(events & selectors.EVENT_WRITE)
        return self._channel._translate_ready_ops(readable, writable, self._interest)

    def __repr__(self) -> str:
        state = (
            f"interest={self._interest:#x} ready={self._ready:#x}" if self._valid else "cancelled"
        )
        return f"zcio.SelectionKey[{self._channel!r} {state}]"


class Selector:
    """A multiplexor of selectable channels (Java's Selector), over epoll.

    Thread-safe: keys may be registered, changed and cancelled from any thread, also
    while another thread is blocked in ``select()``; one ``select()`` runs at a time.
    """

    def __init__(self) -> None:
        """A new open selector (prefer :meth:`open`).  Syscalls: ``epoll_create1``,
        ``eventfd`` (the wakeup descriptor)."""
        self._lock = threading.Lock()  # the key sets, epoll registrations, the wakeup fd
        self._select_lock = threading.Lock()  # one select() at a time
        self._closing = False
        self._open = True
        self._sel: selectors.BaseSelector = selectors.DefaultSelector()
        self._keys: dict[int, SelectionKey] = {}
        self._selected: set[SelectionKey] = set()
        self._cancelled: set[SelectionKey] = set()
        try:
            self._wake_r, self._wake_w = self._wakeup_fds()
            self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        except BaseException:
            self._open = False
            self._sel.close()
            raise

    @staticmethod
    def _wakeup_fds() -> tuple[int, int]:
        if hasattr(os, "eventfd"):
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            return fd, fd
        r, w = os.pipe()  # pragma: no cover - Linux has eventfd
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        return r, w

    @classmethod
    def open(cls) -> Selector:
        """A new open selector."""
        return cls()

    def is_open(self) -> bool:
        """Whether ``close()`` has not been called."""
        return self._open

    def _ensure_open(self) -> None:
        if not self._open or self._closing:
            raise ClosedSelectorError("selector is closed")

    # -- key sets -----------------------------------------------------------------------

    def keys(self) -> frozenset[SelectionKey]:
        """The valid keys (a snapshot; register/cancel change the selector, not it)."""
        with self._lock:
            self._ensure_open()
            return frozenset(self._keys.values())

    def selected_keys(self) -> set[SelectionKey]:
        """The selected-key set itself: remove the keys you handled (``discard``/``clear``).

        Iterate over a copy (``list(...)``) while removing.  Adding keys is not allowed.
        """
        self._ensure_open()
        return self._selected

    # -- registration (called by SelectableChannel and SelectionKey) ---------------------

    def _register(self, channel: SelectableChannel, ops: int, attachment: Any) -> SelectionKey:
        with self._lock:
            self._ensure_open()
            fd = channel.fileno()
            if fd in self._keys:
                raise IllegalArgumentError(f"fd {fd} is already registered by another channel")
            key = SelectionKey(channel, self, fd, ops, attachment)
            events = _events_for(ops)
            if events:
                self._sel.register(fd, events, key)
            self._keys[fd] = key
            return key

    def _set_interest(self, key: SelectionKey, ops: int) -> None:
        with self._lock:
            if not key._valid:
                raise CancelledKeyError("selection key is cancelled")
            old, new = _events_for(key._interest), _events_for(ops)
            if new != old:
                if not old:
                    self._sel.register(key._fd, new, key)
                elif not new:
                    self._sel.unregister(key._fd)
                else:
                    self._sel.modify(key._fd, new, key)
            key._interest = ops

    def _cancel(self, key: SelectionKey) -> None:
        with self._lock:
            if not key._valid:
                return
            key._valid = False
            if self._keys.get(key._fd) is key:
                del self._keys[key._fd]
                if _events_for(key._interest):
                    # KeyError/ValueError/OSError: the selector is closing, or the fd gone.
                    with contextlib.suppress(KeyError, ValueError, OSError):
                        self._sel.unregister(key._fd)
            self._cancelled.add(key)
            if key._channel._keys.get(self) is key:
                del key._channel._keys[self]

    # -- selection ----------------------------------------------------------------------

    def select(self, timeout: float | None = None) -> int:
        """Wait until some key's channel is ready; returns how many ready sets changed.

        ``timeout`` in seconds: None waits for readiness, ``wakeup()`` or a signal; 0
        does not wait (``select_now``).  0 may be returned on timeout or wakeup.
        IllegalArgumentError for a negative timeout; ClosedSelectorError once closed.

        Syscalls: ``epoll_wait(2)`` (retried on EINTR with the remaining timeout); a
        ``read(2)`` of the wakeup eventfd when it fired.
        """
        if timeout is not None and timeout < 0:
            raise IllegalArgumentError(f"negative timeout: {timeout}")
        with self._select_lock:
            with self._lock:
                self._ensure_open()
                self._purge_cancelled()
            ready = self._sel.select(timeout)
            updated = 0
            with self._lock:
                self._purge_cancelled()
                for skey, events in ready:
                    key: SelectionKey | None = skey.data
                    if key is None:
                        self._drain_wakeup()
                        continue
                    if not key._valid:
                        continue
                    ops = key._translate(events)
                    if key in self._selected:
                        if ops & ~key._ready:
                            key._ready |= ops
                            updated += 1
                    elif ops:
                        key._ready = ops
                        self._selected.add(key)
                        updated += 1
            metrics.record("selector_select", syscalls=1)
            return updated

    def select_now(self) -> int:
        """``select(0)``: no wait; also clears a pending ``wakeup()``."""
        return self.select(0)

    def _purge_cancelled(self) -> None:
        if self._cancelled:
            self._selected.difference_update(self._cancelled)
            self._cancelled.clear()

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wake_r, 8):
                if self._wake_r == self._wake_w:
                    break  # an eventfd read resets the counter
        except BlockingIOError:
            pass

    def wakeup(self) -> Self:
        """Make a blocked ``select()`` return at once, or else the next one.

        Several wakeups between two selects count as one.  A no-op once closed.
        Syscalls: ``write(2)`` to the wakeup eventfd.
        """
        with self._lock:
            if self._wake_w >= 0:
                with contextlib.suppress(BlockingIOError):  # already signalled to the brim
                    os.write(self._wake_w, (1).to_bytes(8, "little"))
        return self

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the selector (idempotent): wake a blocked ``select()``, cancel every key.

        Later calls other than ``close``/``is_open``/``wakeup`` raise
        ClosedSelectorError.  Syscalls: ``close(2)`` of the epoll fd and the eventfd.
        """
        with self._lock:
            if not self._open or self._closing:
                return
            self._closing = True
        self.wakeup()
        with self._select_lock, self._lock:
            for key in self._keys.values():
                key._valid = False
                if key._channel._keys.get(self) is key:
                    del key._channel._keys[self]
            self._keys.clear()
            self._selected.clear()
            self._cancelled.clear()
            self._open = False
            self._sel.close()
            r, w, self._wake_r, self._wake_w = self._wake_r, self._wake_w, -1, -1
            os.close(r)
            if w != r:
                os.close(w)  # pragma: no cover - Linux has eventfd

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_open", False) and not getattr(self, "_closing", True):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        state = f"{len(self._keys)} keys" if self._open else "closed"
        return f"zcio.Selector[{state}]"
