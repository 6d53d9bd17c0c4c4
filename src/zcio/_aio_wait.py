"""Awaiting readiness on an event loop through a private epoll set (see ``zcio.aio``,
"How readiness is awaited"): the one wait every zcio.aio operation uses."""

from __future__ import annotations

import asyncio
import select


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


#: How often (seconds) a transfer waiting for readiness checks that the caller still
#: owns its endpoints.  Closing a socket, channel or transport wakes nothing: the
#: transfer's duplicate keeps the descriptor's file open (see :class:`LoopTransfer`),
#: so this bounds how long a local close goes unnoticed, at ~10 wake-ups a second.
RECHECK = 0.1


class Readiness:
    """A private epoll set whose descriptor the loop watches (see ``zcio.aio``).

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
