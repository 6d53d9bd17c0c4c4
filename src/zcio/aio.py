"""asyncio integration: pooled receive buffers, kernel transfers and MSG_ZEROCOPY, awaited.

Works with the standard event loop and with uvloop.

* :class:`PooledBufferedProtocol`: an ``asyncio.BufferedProtocol`` whose receive
  buffers come from a :class:`~zcio.PooledAllocator`: the kernel copies received bytes
  straight into pooled direct memory, and the application gets a ByteBuffer.
* :func:`sendfile`, :func:`transfer_to`, :func:`splice`: the transfer engine of
  ``zcio.transfer`` (same paths, same fallbacks, same ``zcio.metrics`` accounting: one
  operation per call) on non-blocking sockets and pipes, awaiting readiness where the
  blocking API would ``poll``.
* :func:`send_zerocopy`: a MSG_ZEROCOPY send that returns once the kernel's completion
  says the buffer may be reused (see ``zcio._zerocopy``).

Closing an endpoint under a transfer (a socket, a channel, a file, or a transport's
``close()``/``abort()``) ends it within a wake-up (at most ~0.1 s): ClosedChannelError
(EBADF) if nothing moved, else TransferError (EBADF, caused by a ClosedChannelError)
with the exact count, as a peer reset does.  No byte ever goes to or comes from a
descriptor the endpoint no longer owns: a transfer works on duplicates of the caller's
descriptors, so a number reused by a new socket or file is never touched.  A duplicate
keeps its socket open until the transfer notices the close (the peer sees the end of
the stream then).

Cancellation: every awaitable here may be cancelled at any await.  Nothing stays
registered with the loop, no descriptor stays open, and what moved is exact: a
:class:`Progress` passed in (or the file position, for :func:`sendfile`) says how many
bytes reached the target.  Bytes taken from a source that cannot be re-read (a socket
or pipe; splice and read/write relay through a pipe or buffer) but not yet delivered
when cancelled are offered to the target once more without waiting; any still left are
lost, and counted in ``Progress.dropped``.  A file source loses nothing.

How readiness is awaited.  zcio never registers the socket itself with the loop.  Each
operation makes a private epoll set, adds the descriptor it waits for, and has the loop
watch the *epoll descriptor* (``loop.add_reader``), which is readable while the watched
socket is ready.  Reasons, measured on Linux 6.x with asyncio and uvloop 0.23:

1. MSG_ZEROCOPY completions signal only POLLERR.  asyncio's ``add_reader`` wakes on it
   (its epoll selector maps EPOLLERR to readable), but libuv stops a poll handle on
   POLLERR: uvloop's reader ran once, then never again, not even for incoming data.
2. The error-queue interest must be edge-triggered and error-only: a reader on the
   socket itself also fires for unread incoming data (asyncio: 11,000 wake-ups in
   0.1 s with 5 unread bytes).
3. A socket owned by a transport cannot be given to ``add_reader``/``add_writer``
   (RuntimeError in both loops), and ``add_writer`` on an application's socket would
   replace the application's own writer.

The set holds only the descriptor the operation waits for: a relay waiting for room in
its target is not woken by data on its source.  A transfer's wait also wakes every
0.1 seconds (``zcio._aio_wait.RECHECK``) to see whether its endpoints were closed, which no event
reports (see above).

The cost: one ``epoll_create`` per operation, and per wait an ``epoll_ctl``, the loop's
own add/remove of the epoll descriptor, and one ``epoll_wait`` to take the event; for a
transfer, one ``dup`` per endpoint.
"""

from __future__ import annotations

from ._aio_driver import Progress as Progress
from ._aio_protocol import DEFAULT_BUFFER_SIZE as DEFAULT_BUFFER_SIZE
from ._aio_protocol import PooledBufferedProtocol as PooledBufferedProtocol
from ._aio_transfer import TransportLike as TransportLike
from ._aio_transfer import sendfile as sendfile
from ._aio_transfer import splice as splice
from ._aio_transfer import transfer_to as transfer_to
from ._aio_zerocopy import send_zerocopy as send_zerocopy
from ._aio_zerocopy import zerocopy_sender as zerocopy_sender

__all__ = [
    "PooledBufferedProtocol",
    "Progress",
    "sendfile",
    "transfer_to",
    "splice",
    "send_zerocopy",
]
