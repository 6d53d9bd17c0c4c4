"""MSG_ZEROCOPY awaited on an event loop: :func:`send_zerocopy` (re-exported by
``zcio.aio``)."""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
import weakref
from typing import TYPE_CHECKING

from ._aio_wait import RECHECK, Readiness
from ._byte_buffer import ByteBuffer
from ._errors import IllegalBlockingModeError, TransferError
from ._metrics import metrics
from ._zerocopy import ZeroCopySender, socket_of, waits

if TYPE_CHECKING:
    from ._socket_channel import SocketChannel

_SENDERS: weakref.WeakKeyDictionary[socket.socket, ZeroCopySender] = (
    weakref.WeakKeyDictionary())


def zerocopy_sender(sock: socket.socket | SocketChannel) -> ZeroCopySender:
    """The ZeroCopySender :func:`send_zerocopy` uses for ``sock`` (made on first use).

    It holds the socket weakly and releases what it still holds when the socket is
    collected.  OSError ENOPROTOOPT if the socket cannot do MSG_ZEROCOPY.
    """
    s = socket_of(sock)
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

    Closing the socket meanwhile ends the call within ~0.1 s
    (``zcio._aio_wait.RECHECK``): OSError EBADF from the send (TransferError with the
    count if some bytes went out) or ClosedChannelError while awaiting completions
    (``buf.position()`` says what was sent); the sender keeps what is in flight, as
    after a cancellation.

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
    if waits(s):
        raise IllegalBlockingModeError(f"{s!r} is in blocking mode: an event loop needs "
                                       "O_NONBLOCK")
    metrics.record("msg_zerocopy", syscalls=0)
    waiter = Readiness(asyncio.get_running_loop())
    first, sent = sender._next, 0
    fd = os.dup(s.fileno())  # watched: always this socket's file, whoever reuses its number
    try:
        while buf.has_remaining():
            try:
                n = sender._send_once(s, buf)
            except BlockingIOError:
                await waiter.wait(fd, select.POLLOUT, RECHECK)
                continue
            except OSError as e:
                if e.errno != errno.ENOBUFS or not sender.in_flight():
                    if sent:
                        raise TransferError(e, sent) from e
                    raise
                if not sender.poll_completions():  # room comes back with completions
                    await waiter.wait(fd, select.EPOLLET, RECHECK)
                continue
            if n == 0:
                break
            sent += n
        stop = sender._next
        while not sender._completed(first, stop):
            sender.poll_completions()
            if sender._completed(first, stop):
                break
            await waiter.wait(fd, select.EPOLLET, RECHECK)
    finally:
        waiter.close()
        os.close(fd)
    return sent
