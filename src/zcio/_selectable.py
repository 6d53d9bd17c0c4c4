"""Channels a Selector can watch: blocking mode and registration (Java's SelectableChannel).

A selectable channel is blocking when created.  It must be made non-blocking before it
is registered with a selector, and it cannot go back to blocking while registered
(IllegalBlockingModeError), as in Java.  Closing it cancels its keys, before the
descriptor is closed.  A cancelled key stays the channel's (``key_for``,
``is_registered``) until its selector's next ``select()`` deregisters it, as in Java.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Self

from ._channel import Channel, operation
from ._errors import IllegalArgumentError, IllegalBlockingModeError

if TYPE_CHECKING:
    from ._selection_key import SelectionKey
    from ._selector import Selector

__all__ = ["SelectableChannel", "OP_READ", "OP_WRITE", "OP_CONNECT", "OP_ACCEPT"]

# Java's SelectionKey constants, same values.
OP_READ = 1 << 0
OP_WRITE = 1 << 2
OP_CONNECT = 1 << 3
OP_ACCEPT = 1 << 4


class SelectableChannel(Channel):
    """A channel with a blocking mode that can be registered with selectors."""

    _blocking: bool = True
    _keys: dict[Selector, SelectionKey]
    _VALID_OPS = 0  # each concrete channel class sets the OP_* bits it supports

    def _init_selectable(self) -> None:
        self._blocking = True
        self._keys = {}  # by selector: valid keys, and cancelled ones until deregistered
        # Held by register, configure_blocking, deregistration and close's cancelling,
        # so that a registration racing close() is either refused or cancelled before
        # the descriptor is closed (Java's regLock/keyLock).  Taken before a
        # selector's lock, never after.
        self._reg_lock = threading.Lock()

    def valid_ops(self) -> int:
        """The OP_* bits this kind of channel supports."""
        return self._VALID_OPS

    def _check_ops(self, ops: int) -> None:
        """IllegalArgumentError unless ``ops`` is within ``valid_ops()``."""
        if ops & ~self.valid_ops():
            raise IllegalArgumentError(
                f"ops {ops:#x} not valid for {type(self).__name__} "
                f"(valid: {self.valid_ops():#x})"
            )

    def _translate_ready_ops(self, readable: bool, writable: bool, interest: int) -> int:
        """The OP_* bits ready, within ``interest``, for a readable/writable descriptor.

        Default: readability means OP_READ and OP_ACCEPT, writability OP_WRITE and
        OP_CONNECT.  SocketChannel narrows writability to OP_CONNECT while connecting.
        """
        ops = interest & (OP_READ | OP_ACCEPT) if readable else 0
        if writable:
            ops |= interest & (OP_WRITE | OP_CONNECT)
        return ops

    def is_blocking(self) -> bool:
        """Whether I/O calls wait (True) or return at once with what they could do."""
        return self._blocking

    @operation
    def configure_blocking(self, block: bool) -> Self:
        """Set the blocking mode.  Syscalls: ``fcntl(F_SETFL, O_NONBLOCK)``.

        IllegalBlockingModeError when asked to block while a valid key registers the
        channel (a cancelled one does not count).
        """
        with self._reg_lock:
            fd = self.fileno()
            if block and any(k.is_valid() for k in self._keys.values()):
                raise IllegalBlockingModeError("cannot block while registered with a selector")
            os.set_blocking(fd, block)
            self._blocking = block
        return self

    def register(self, selector: Selector, ops: int, attachment: Any = None) -> SelectionKey:
        """Register with ``selector`` for ``ops``, or update the key it already has.

        Checks in Java's order: IllegalArgumentError for ops outside ``valid_ops()``,
        ClosedChannelError if closed, IllegalBlockingModeError if blocking, then
        ClosedSelectorError if the selector is closed.  An existing key gets the
        attachment, then the interest set: CancelledKeyError if that key was cancelled
        and the selector has not deregistered it yet (its next ``select()`` does).
        Thread-safe: concurrent registrations of one channel give one key; a
        registration racing ``close()`` is refused or its key cancelled.

        Syscalls: ``epoll_ctl(ADD)`` for a new key with a non-empty interest set,
        ``epoll_ctl(MOD)`` when an existing key's events change.
        """
        self._check_ops(ops)
        self.fileno()
        with self._reg_lock:
            if self._blocking:
                raise IllegalBlockingModeError("register() needs a non-blocking channel")
            self.fileno()  # again: close() may have begun meanwhile
            key = self._keys.get(selector)
            if key is not None:
                key.attach(attachment)
                key.interest_ops(ops)
                return key
            key = selector._register(self, ops, attachment)
            self._keys[selector] = key
            return key

    def key_for(self, selector: Selector) -> SelectionKey | None:
        """The key registering this channel with ``selector``, if any: also a cancelled
        one, until the selector's next ``select()`` deregisters it (Java's keyFor)."""
        return self._keys.get(selector)

    def is_registered(self) -> bool:
        """Whether some selector holds a key for this channel, cancelled keys included
        until they are deregistered (Java's isRegistered)."""
        return bool(self._keys)

    def _deregister(self, key: SelectionKey) -> None:
        """Selector hook: drop the cancelled ``key`` (called without the selector's lock)."""
        with self._reg_lock:
            if self._keys.get(key.selector()) is key:
                del self._keys[key.selector()]

    def _on_close(self) -> None:
        """Cancel every key while the descriptor is still ours (before ``close(2)``)."""
        with self._reg_lock:
            for key in list(self._keys.values()):
                key.cancel()
