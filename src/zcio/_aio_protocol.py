"""Receiving into pooled memory on an event loop: :class:`PooledBufferedProtocol`
(re-exported by ``zcio.aio``)."""

from __future__ import annotations

import asyncio

from ._byte_buffer import ByteBuffer
from ._errors import IllegalArgumentError, IllegalStateError
from ._metrics import metrics
from ._pool import PooledAllocator

#: Default size of a PooledBufferedProtocol receive buffer.
DEFAULT_BUFFER_SIZE = 64 << 10

class PooledBufferedProtocol(asyncio.BufferedProtocol):
    """A BufferedProtocol that receives into pooled direct ByteBuffers.

    ``get_buffer`` lends the loop the memory of a fresh pooled buffer of
    ``buffer_size`` bytes (``sizehint`` is ignored); ``buffer_updated(n)`` hands that
    buffer to :meth:`data_received_buffer` with position 0, limit ``n``, capacity
    ``buffer_size``.  Ownership: the protocol holds one reference during the call and
    releases it when the call returns (also when it raises), as Netty's
    SimpleChannelInboundHandler does.  To keep the buffer, ``retain()`` it in the call
    and ``release()`` it when done; releasing the protocol's reference in the call
    instead is fine too.  A buffer is lent to the loop only while the application
    holds no reference to it: each read gets a new one, and the pool reuses a slot
    only once its count reached zero and no memoryview can reach it.

    ``transport.write(buf.memoryview())`` may keep that view after returning (CPython
    3.12+ queues views without copying): a view zcio revokes on release then fails.
    Pass ``bytes(buf)``, or keep the buffer retained until the transport has sent it.

    Subclasses that override :meth:`connection_lost` must call
    ``super().connection_lost(exc)``, which releases the buffer lent to the loop.

    Each read is recorded in ``zcio.metrics`` under path ``"aio_recv"``: one syscall,
    ``user_bytes`` the bytes received (the kernel's one copy, into the pooled memory).

    Syscalls: none of its own; the loop's transport calls ``recv(2)`` into the lent
    memory (asyncio: ``recv_into``; uvloop: libuv's ``read``).

    Example::

        class Count(PooledBufferedProtocol):
            total = 0

            def data_received_buffer(self, buf: ByteBuffer) -> None:
                self.total += buf.remaining()  # buf is released when this returns

        server = await loop.create_server(Count, "127.0.0.1", 8080)
    """

    def __init__(self, allocator: PooledAllocator | None = None,
                 buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        if buffer_size <= 0:
            raise IllegalArgumentError(f"buffer_size must be > 0: {buffer_size}")
        self.allocator = allocator if allocator is not None else PooledAllocator.default()
        self.buffer_size = buffer_size
        self._lent: ByteBuffer | None = None
        self._lost = False

    def get_buffer(self, sizehint: int) -> memoryview:
        """The memory of a pooled buffer for the loop to receive into.

        The same buffer is lent again if the previous read delivered nothing (EAGAIN,
        end of stream); otherwise a new one.  IllegalStateError after connection_lost.
        """
        if self._lost:
            raise IllegalStateError("get_buffer() after connection_lost()")
        buf = self._lent
        if buf is None:
            buf = self._lent = self.allocator.allocate(self.buffer_size)
        return buf.clear().memoryview()

    def buffer_updated(self, nbytes: int) -> None:
        """The loop wrote ``nbytes`` into the lent buffer: pass it on, then release it."""
        buf, self._lent = self._lent, None
        if buf is None:
            raise IllegalStateError("buffer_updated() without get_buffer()")
        metrics.record("aio_recv", user_bytes=nbytes)
        try:
            buf.position(0).limit(nbytes)
            self.data_received_buffer(buf)
        finally:
            if buf.ref_cnt() > 0:
                buf.release()

    def data_received_buffer(self, buf: ByteBuffer) -> None:
        """Called with the received bytes in ``buf[0:limit]``; see the class docstring
        for who releases it.  Override it."""
        raise NotImplementedError

    def connection_lost(self, exc: Exception | None) -> None:
        """Release the buffer lent to the loop, if any."""
        self._lost = True
        buf, self._lent = self._lent, None
        if buf is not None:
            buf.release()
