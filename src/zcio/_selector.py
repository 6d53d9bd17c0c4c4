"""Readiness selection over many channels: java.nio's Selector and SelectionKey.

A :class:`Selector` holds a *key set* (one :class:`SelectionKey` per registration), and
a *selected-key set*.  ``select()`` waits (``epoll_wait``) until some channel is ready
for an operation in its key's *interest set*, then, for each such key:

* not yet in the selected-key set: its *ready set* becomes what is ready now, and the
  key is added to the set if that is not empty;
* already there: what is ready now is added to its ready set (nothing is cleared).

``select()`` returns how many keys that updated.  Keys stay in the selected-key set
until the caller removes them, as in Java::

    for key in selector.selected_keys():      # iterates over a snapshot
        selector.selected_keys().discard(key)
        if key.is_acceptable(): ...

Ready sets only ever hold operations of the interest set.  OP_READ and OP_ACCEPT wait
for EPOLLIN; OP_WRITE and OP_CONNECT for EPOLLOUT (a socket channel reports OP_CONNECT
while its connection is pending and OP_WRITE once connected).  An error or hang-up on a
descriptor (EPOLLERR, EPOLLHUP: a refused connect, a reset, a closed pipe end, an
unconnected socket) makes the ready set the whole interest set, replacing what it held,
so that whatever the caller waits for, it is told, and its next call meets the error.

Cancellation, as in Java: ``cancel()`` (also run by closing the channel, or the
selector) makes a key invalid at once, but the key stays in ``keys()`` (and in the
selected-key set), the channel's ``key_for()`` still returns it and ``is_registered()``
stays true, until the next ``select()`` *deregisters* it; registering the channel again
with that selector before then raises CancelledKeyError.  Unlike Java, which keeps the
descriptor open until then, zcio takes the descriptor out of epoll at ``cancel()``
(``epoll_ctl(EPOLL_CTL_DEL)``), before the channel's close can free its number, so a new
channel given that number registers at once.  ``wakeup()`` makes a blocked ``select()``
return at once, or the next one if none is blocked.
"""

from __future__ import annotations

import contextlib
import os
import select as _select
import threading
import warnings
from collections.abc import MutableSet, Set
from typing import TYPE_CHECKING, Any, Self

from ._errors import (
    CancelledKeyError,
    ClosedSelectorError,
    IllegalArgumentError,
)
from ._metrics import metrics
from ._selectable import OP_ACCEPT, OP_CONNECT, OP_READ, OP_WRITE
from ._selection_key import (
    HANG_UP,
    OR,
    SET,
    KeySetView,
    SelectedKeySet,
    SelectionKey,
    events_for,
)

if TYPE_CHECKING:
    from ._selectable import SelectableChannel

__all__ = ["Selector", "SelectionKey", "OP_READ", "OP_WRITE", "OP_CONNECT", "OP_ACCEPT"]


class Selector:
    """A multiplexor of selectable channels (Java's Selector), over epoll.

    Thread-safe: keys may be registered, changed and cancelled from any thread, also
    while another thread is blocked in ``select()``; one ``select()`` runs at a time.
    """

    def __init__(self) -> None:
        """A new open selector (prefer :meth:`open`).  Syscalls: ``epoll_create1``,
        ``eventfd`` (the wakeup descriptor)."""
        # _lock guards the key sets, the epoll registrations and the wakeup fd.  Lock
        # order: a channel's registration lock, then this one; never the other way.
        self._lock = threading.Lock()
        self._select_lock = threading.Lock()  # one select() at a time
        self._closing = False
        self._open = False  # until every descriptor is made
        self._keys: dict[SelectionKey, None] = {}  # the key set, cancelled keys until deregistered
        self._fds: dict[int, SelectionKey] = {}  # the valid keys by descriptor
        self._selected: dict[SelectionKey, None] = {}
        self._cancelled: list[SelectionKey] = []  # to deregister at the next select()
        self._serial = 0  # keys made so far
        self._wake_r = self._wake_w = -1
        self._epoll = _select.epoll()
        try:
            self._wake_r, self._wake_w = self._wakeup_fds()
            self._epoll.register(self._wake_r, _select.EPOLLIN)
        except BaseException:
            self._epoll.close()
            for fd in {self._wake_r, self._wake_w} - {-1}:
                os.close(fd)
            raise
        self._key_view = KeySetView(self)
        self._selected_view = SelectedKeySet(self)
        self._open = True

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

    def keys(self) -> Set[SelectionKey]:
        """The key set: a live read-only view (UnsupportedOperationError on any change).

        A key enters when a channel registers and leaves at the first ``select()``
        after its cancellation (it is invalid meanwhile).  Iteration runs over a
        snapshot.  ClosedSelectorError once closed.
        """
        self._ensure_open()
        return self._key_view

    def selected_keys(self) -> MutableSet[SelectionKey]:
        """The selected-key set itself: remove the keys you handled (``discard``,
        ``clear``...); adding raises UnsupportedOperationError.

        Iteration runs over a snapshot, so removing while iterating is fine.
        ClosedSelectorError once closed.
        """
        self._ensure_open()
        return self._selected_view

    # -- registration (called by SelectableChannel and SelectionKey) ---------------------

    def _register(self, channel: SelectableChannel, ops: int, attachment: Any) -> SelectionKey:
        """A new key (the caller holds the channel's registration lock and checked ops).

        ClosedSelectorError once closed.  Syscalls: ``epoll_ctl(ADD)`` unless ``ops``
        is 0; on failure nothing is registered.
        """
        with self._lock:
            self._ensure_open()
            fd = channel.fileno()
            if fd in self._fds:  # two channels on one descriptor, or one closed behind our back
                raise IllegalArgumentError(f"fd {fd} is already registered by another channel")
            self._serial += 1
            key = SelectionKey(channel, self, fd, self._serial)
            key._attachment = attachment
            self._apply_interest(key, ops)
            self._fds[fd] = key
            self._keys[key] = None
            return key

    def _set_interest(self, key: SelectionKey, ops: int, how: int) -> int:
        """Set (``SET``), add (``OR``) or intersect (``AND``) ``key``'s interest set
        with ``ops``, atomically; returns the previous set."""
        with self._lock:
            if not key._valid:
                raise CancelledKeyError("selection key is cancelled")
            old = key._interest
            new = ops if how == SET else old | ops if how == OR else old & ops
            self._apply_interest(key, new)
            return old

    def _apply_interest(self, key: SelectionKey, ops: int) -> None:
        """Make epoll watch what ``ops`` needs (under ``_lock``); the key changes only
        once ``epoll_ctl`` succeeded."""
        old, new = key._events, events_for(ops)
        if new != old:
            if not old:
                self._epoll.register(key._fd, new)
            elif not new:
                self._epoll.unregister(key._fd)
            else:
                self._epoll.modify(key._fd, new)
            key._events = new
        key._interest = ops

    def _cancel(self, key: SelectionKey) -> None:
        with self._lock:
            if not key._valid:
                return
            key._valid = False
            if self._fds.get(key._fd) is key:
                del self._fds[key._fd]
            if key._events:
                key._events = 0
                # OSError: the descriptor was closed behind the channel's back.
                with contextlib.suppress(OSError):
                    self._epoll.unregister(key._fd)
            self._cancelled.append(key)

    def _take_cancelled(self) -> list[SelectionKey]:
        """Take the cancelled keys out of the key sets (under ``_lock``); the caller
        then drops them from their channels, outside ``_lock`` (the lock order)."""
        cancelled, self._cancelled = self._cancelled, []
        for key in cancelled:
            self._keys.pop(key, None)
            self._selected.pop(key, None)
        return cancelled

    def _deregister(self, keys: list[SelectionKey]) -> None:
        for key in keys:
            key._channel._deregister(key)

    # -- selection ----------------------------------------------------------------------

    def select(self, timeout: float | None = None) -> int:
        """Wait until some key's channel is ready; returns how many keys it updated.

        ``timeout`` in seconds, as Python's ``selectors``: None waits for readiness,
        ``wakeup()`` or ``close()``; 0 does not wait (same as ``select_now()``).  This
        is a deliberate difference from Java, whose ``select(0)`` waits forever: a
        Python caller passing ``timeout=0`` means "poll", and reading it Java's way
        would turn a poll into a hang.  0 may be returned on timeout or wakeup.
        IllegalArgumentError for a negative timeout; ClosedSelectorError once closed.

        Before and after waiting, the keys cancelled since the last select are
        deregistered (they leave every key set and their channels).  Keys registered
        while the wait runs count from the next ``select()`` on, as in Java.

        Syscalls: ``epoll_wait(2)`` (retried on EINTR with the remaining timeout); a
        ``read(2)`` of the wakeup eventfd when it fired.
        """
        if timeout is not None and timeout < 0:
            raise IllegalArgumentError(f"negative timeout: {timeout}")
        with self._select_lock:
            with self._lock:
                self._ensure_open()
                cancelled = self._take_cancelled()
                serial = self._serial
                max_events = len(self._fds) + 1
            self._deregister(cancelled)
            ready = self._epoll.poll(timeout, max_events)
            updated = 0
            with self._lock:
                cancelled = self._take_cancelled()
                for fd, events in ready:
                    if fd == self._wake_r:
                        self._drain_wakeup()
                        continue
                    key = self._fds.get(fd)
                    if key is None or key._serial > serial:
                        continue  # cancelled meanwhile, or a new key for a reused number
                    updated += self._update_ready(key, events)
            self._deregister(cancelled)
            metrics.record("selector_select", syscalls=1)
            return updated

    def _update_ready(self, key: SelectionKey, events: int) -> int:
        """Java's ready-set update for one key; 1 if it counts as updated."""
        ops = key._translate(events)
        if key in self._selected:
            if not events & HANG_UP:
                ops |= key._ready  # accumulate; an error or hang-up replaces
            added = ops & ~key._ready
            key._ready = ops
            return 1 if added else 0
        key._ready = ops
        if not ops:
            return 0
        self._selected[key] = None
        return 1

    def select_now(self) -> int:
        """``select(0)``: no wait; also clears a pending ``wakeup()``."""
        return self.select(0)

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
        """Close the selector (idempotent): wake a blocked ``select()``, then cancel and
        deregister every key (``key_for`` gives None, ``is_registered`` is false).

        Later calls other than ``close``/``is_open``/``wakeup`` raise
        ClosedSelectorError.  Syscalls: ``close(2)`` of the epoll fd and the eventfd.
        """
        with self._lock:
            if not self._open or self._closing:
                return
            self._closing = True
        self.wakeup()
        with self._select_lock:
            with self._lock:
                keys = list(self._keys)
                for key in keys:
                    key._valid = False
                    key._events = 0
                self._keys.clear()
                self._fds.clear()
                self._selected.clear()
                self._cancelled.clear()
                self._open = False
                self._epoll.close()
                r, w, self._wake_r, self._wake_w = self._wake_r, self._wake_w, -1, -1
                os.close(r)
                if w != r:
                    os.close(w)  # pragma: no cover - Linux has eventfd
            self._deregister(keys)

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
