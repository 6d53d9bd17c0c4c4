"""Channels a Selector can watch: blocking mode and registration (Java's SelectableChannel).

A selectable channel is blocking when created.  It must be made non-blocking before it
is registered with a selector, and it cannot go back to blocking while registered
(IllegalBlockingModeError), as in Java.  Closing it cancels its keys.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Self

from ._channel import Channel, operation
from ._errors import IllegalArgumentError, IllegalBlockingModeError

if TYPE_CHECKING:
    from ._selector import SelectionKey, Selector

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
        self._keys = {}

    def valid_ops(self) -> int:
        """The OP_* bits this kind of channel supports."""
        return self._VALID_OPS

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

        IllegalBlockingModeError when asked to block while registered with a selector.
        """
        fd = self.fileno()
        if block and any(k.is_valid() for k in self._keys.values()):
            raise IllegalBlockingModeError("cannot block while registered with a selector")
        os.set_blocking(fd, block)
        self._blocking = block
        return self

    def register(self, selector: Selector, ops: int, attachment: Any = None) -> SelectionKey:
        """Register with ``selector`` for ``ops``, or update the existing key.

        IllegalBlockingModeError if blocking; IllegalArgumentError for ops outside
        ``valid_ops()``; ClosedChannelError if closed.
        """
        self.fileno()
        if self._blocking:
            raise IllegalBlockingModeError("register() needs a non-blocking channel")
        if ops & ~self.valid_ops():
            raise IllegalArgumentError(f"ops {ops:#x} not valid for {type(self).__name__}")
        key = self._keys.get(selector)
        if key is not None and key.is_valid():
            key.interest_ops(ops)
            key.attach(attachment)
            return key
        key = selector._register(self, ops, attachment)
        self._keys[selector] = key
        return key

    def key_for(self, selector: Selector) -> SelectionKey | None:
        """The valid key registering this channel with ``selector``, if any."""
        key = self._keys.get(selector)
        return key if key is not None and key.is_valid() else None

    def is_registered(self) -> bool:
        """Whether some selector holds a valid key for this channel."""
        return any(k.is_valid() for k in self._keys.values())

    def _on_close(self) -> None:
        for key in list(self._keys.values()):
            key.cancel()
        self._keys.clear()
