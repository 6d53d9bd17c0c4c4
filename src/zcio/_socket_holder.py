"""The stdlib socket behind a socket channel: adopting it, its addresses and options, closing it.

What :class:`~zcio.SocketChannel` and :class:`~zcio.ServerSocketChannel` share.  The
stdlib ``socket.socket`` owns the descriptor; the channel keeps its timeout at
``None`` and sets ``O_NONBLOCK`` on the descriptor itself (:func:`adopt`).  Closing
with operations in flight first shuts the socket down, which wakes them (the
kernel's ``close(2)`` alone would not), then follows ``zcio._channel``'s rules.
"""

from __future__ import annotations

import contextlib
import os
import socket as _socket
from collections.abc import Callable
from typing import Any, Self, TypeVar

from . import _syscalls
from ._buffer import check_int
from ._channel import operation
from ._errors import ClosedChannelError, IllegalArgumentError
from ._selectable import SelectableChannel

__all__ = [
    "Address",
    "SocketHolder",
    "adopt",
    "bound_address",
    "c_int",
    "counted_syscall",
    "family_for",
    "wildcard",
]

T = TypeVar("T")

#: A socket address as the stdlib takes it: ``(host, port)``, ``(host, port, flow,
#: scope)``, or a Unix path (``str``/``bytes``).
Address = Any

def counted_syscall(calls: list[int], fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` retried on EINTR, counting every attempt in ``calls[0]``."""

    def once() -> T:
        calls[0] += 1
        return fn(*args)

    return _syscalls.retry(once)


def c_int(value: object, what: str) -> int:
    """A socket option's level, name or value: TypeError unless an integer,
    IllegalArgumentError outside a C int."""
    v = check_int(value, what)
    if not -(1 << 31) <= v < 1 << 31:
        raise IllegalArgumentError(f"socket option {what} {v} out of the C int range")
    return v


def family_for(address: Address) -> int:
    if isinstance(address, str | bytes):
        return _socket.AF_UNIX
    if isinstance(address, tuple) and (len(address) == 4 or ":" in str(address[0])):
        return _socket.AF_INET6
    return _socket.AF_INET


def wildcard(family: int) -> Address:
    """What Java binds when given no address: the wildcard with an ephemeral port."""
    if family == _socket.AF_INET6:
        return ("::", 0)
    if family == _socket.AF_UNIX:
        return ""  # Linux autobind: an abstract address the kernel picks
    return ("", 0)


def bound_address(sock: _socket.socket) -> Address | None:
    """``getsockname()``, or None while the socket is not bound (port 0, empty path)."""
    addr = sock.getsockname()
    if isinstance(addr, tuple):
        return addr if addr[1] != 0 else None
    return addr if addr else None


def adopt(sock: _socket.socket, server: bool) -> bool:
    """Check and normalise ``sock`` for a channel: timeout None, blocking mode on the fd.

    IllegalArgumentError, ``sock`` untouched, unless it is a stream socket, and one that
    does not listen when it is for a SocketChannel (``server`` False).  Returns the
    blocking mode: False for a socket in non-blocking mode (timeout 0), True otherwise
    (a timeout > 0 becomes plain blocking).
    """
    if sock.type != _socket.SOCK_STREAM:
        raise IllegalArgumentError(f"not a stream socket: {sock!r}")
    if not server and sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN):
        raise IllegalArgumentError("a listening socket: use ServerSocketChannel")
    blocking = sock.gettimeout() != 0.0
    sock.settimeout(None)  # clears O_NONBLOCK
    if not blocking:
        os.set_blocking(sock.fileno(), False)
    return blocking


class SocketHolder(SelectableChannel):
    """What both socket channels share: the stdlib socket and its options."""

    _sock: _socket.socket

    def _init_socket(self, sock: _socket.socket, blocking: bool) -> None:
        self._sock = sock
        self._init_fd(sock.fileno())  # closed through the socket: see _close_fd
        self._init_selectable()
        self._blocking = blocking

    def socket(self) -> _socket.socket:
        """The stdlib socket behind the channel (closed with the channel)."""
        return self._sock

    @operation
    def local_address(self) -> Address | None:
        """The address the socket is bound to, or None if it is not bound."""
        self.fileno()
        return bound_address(self._sock)

    @operation
    def set_option(self, level: int, name: int, value: int | bytes) -> Self:
        """``setsockopt(2)``: e.g. ``set_option(IPPROTO_TCP, TCP_NODELAY, 1)``."""
        self.fileno()
        level, name = c_int(level, "level"), c_int(name, "name")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            value = c_int(value, "value")
        self._sock.setsockopt(level, name, value)
        return self

    @operation
    def get_option(self, level: int, name: int) -> int:
        """``getsockopt(2)`` of an integer option."""
        self.fileno()
        return self._sock.getsockopt(c_int(level, "level"), c_int(name, "name"))

    def _pre_close(self, fd: int) -> None:
        # Another thread is inside an operation: close(2) alone would not wake it from
        # the kernel.  shutdown(2) does (accept gets EINVAL, recv 0, send EPIPE).
        with contextlib.suppress(OSError):
            self._sock.shutdown(_socket.SHUT_RDWR)
        super()._pre_close(fd)

    def _close_fd(self, fd: int) -> None:
        self._sock.close()  # the stdlib socket owns the number (the dead one, if pre-closed)

    def _close_on_failure(self, connect: Callable[..., bool], *args: Any) -> bool:
        """Java's rule for a failed connect: the channel is closed (after the operation
        left, so the kernel's error is what the caller sees)."""
        try:
            return connect(*args)
        except _socket.gaierror:
            raise  # the address did not resolve: the channel stays usable
        except ClosedChannelError:
            raise
        except OSError:
            self.close()
            raise
