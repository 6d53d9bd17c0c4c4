"""MSG_ZEROCOPY sends: the kernel transmits from the buffer's own pages, then says so.

A ``send(MSG_ZEROCOPY)`` on a socket with ``SO_ZEROCOPY`` set pins the pages of the
buffer instead of copying them into the socket, and returns at once.  Until the kernel
is done with those pages the buffer must not change: whatever it holds when the data
is (re)transmitted is what goes out.  The kernel says when it is done on the socket's
*error queue*:

* Every ``sendmsg`` call that sends at least one byte gets the socket's next
  notification id (0, 1, 2 ..., 32 bits, wrapping).  A call that fails with nothing
  sent takes no id.
* When the pages of some sends are released, one message arrives on the error queue
  (``recvmsg(MSG_ERRQUEUE)``; its presence makes ``poll`` report POLLERR): a
  ``sock_extended_err`` with ``ee_origin`` SO_EE_ORIGIN_ZEROCOPY and ``ee_info`` ..
  ``ee_data`` the (inclusive) range of ids completed.  The kernel merges consecutive
  ranges into one message.
* ``ee_code & SO_EE_CODE_ZEROCOPY_COPIED``: the kernel copied the data after all, so
  the send saved nothing and cost the page pinning and the notification.  Loopback
  always copies (the receiving socket must own its pages), as do devices without
  scatter-gather.  The flag belongs to a message: a merged range carries the flag of
  its first part.

:class:`ZeroCopySender` keeps that bookkeeping: each send *retains* the ByteBuffer it
sent from and records the id; :meth:`~ZeroCopySender.poll_completions` reads the error
queue and releases the buffer of each completed send, so a pooled buffer cannot return
to its pool (and be refilled) while the kernel may still read it.

Metrics (``zcio.metrics``): path ``"msg_zerocopy"`` counts the calls (operations), every
``sendmsg`` and error-queue ``recvmsg`` (syscalls), and, as sends complete, their bytes:
``kernel_bytes`` for sends completed without a copy, ``user_bytes`` for sends the kernel
copied.  Path ``"msg_zerocopy_copied"`` counts the copied completions (``operations``:
sends, ``user_bytes``: their bytes).

Linux 4.14+ for TCP, 5.0+ for UDP.  The error queue belongs to the sender: other
MSG_ZEROCOPY sends on the same socket, or SO_TIMESTAMPING (which reports there too),
would confuse it.  A sender is not thread-safe.
"""

from __future__ import annotations

import errno
import functools
import os
import select
import socket as _socket
import struct
import time
import weakref
from types import TracebackType
from typing import Any, Self

from . import _syscalls
from ._byte_buffer import ByteBuffer
from ._errors import ClosedChannelError, TransferError
from ._metrics import metrics
from ._syscalls import retry

__all__ = [
    "ZeroCopySender",
    "is_available",
    "unavailability_cause",
    "SO_ZEROCOPY",
    "MSG_ZEROCOPY",
    "socket_of",
    "waits",
    "MSG_ERRQUEUE",
    "SO_EE_ORIGIN_ZEROCOPY",
    "SO_EE_CODE_ZEROCOPY_COPIED",
]

SO_ZEROCOPY = 60  # <asm-generic/socket.h>; the socket module lacks it
MSG_ZEROCOPY = 0x4000000
MSG_ERRQUEUE: int = getattr(_socket, "MSG_ERRQUEUE", 0x2000)
SO_EE_ORIGIN_ZEROCOPY = 5
SO_EE_CODE_ZEROCOPY_COPIED = 1

# (level, type) of the control message carrying sock_extended_err: IP_RECVERR (11) on
# AF_INET, IPV6_RECVERR (25) on AF_INET6.
_RECVERR = {(_socket.IPPROTO_IP, 11), (_socket.IPPROTO_IPV6, 25)}
# struct sock_extended_err: ee_errno u32, ee_origin u8, ee_type u8, ee_code u8, ee_pad u8,
# ee_info u32, ee_data u32 (native order); the offender address follows.
_EXTENDED_ERR = struct.Struct("=IBBBBII")
_ANCILLARY = 256
_ID_MASK = 0xFFFFFFFF


@functools.cache
def unavailability_cause() -> str | None:
    """Why MSG_ZEROCOPY is unavailable here (probed once on a TCP socket), or None."""
    try:
        with _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM) as probe:
            probe.setsockopt(_socket.SOL_SOCKET, SO_ZEROCOPY, 1)
    except OSError as e:
        return f"setsockopt(SO_ZEROCOPY) on a TCP socket: {e.strerror or e} (Linux 4.14+)"
    return None


def is_available() -> bool:
    """Whether a TCP socket accepts SO_ZEROCOPY, so MSG_ZEROCOPY sends can be made."""
    return unavailability_cause() is None


def socket_of(obj: Any) -> _socket.socket:
    """The stdlib socket of ``obj``: a socket, or a zcio SocketChannel."""
    if isinstance(obj, _socket.socket):
        return obj
    get = getattr(obj, "socket", None)
    if callable(get):
        sock = get()
        if isinstance(sock, _socket.socket):
            return sock
    raise TypeError(f"not a socket: {type(obj).__name__}")


def waits(sock: _socket.socket) -> bool:
    """Whether a call on ``sock`` may wait (rather than fail with EAGAIN).

    Timeout 0: never.  A timeout > 0: CPython waits inside the call.  No timeout: the
    descriptor's O_NONBLOCK decides (a non-blocking SocketChannel keeps it so).
    """
    timeout = sock.gettimeout()
    if timeout is None:
        return os.get_blocking(sock.fileno())
    return timeout > 0


class _Send:
    """One sendmsg in flight: the buffer it retained and the bytes it sent."""

    __slots__ = ("buf", "nbytes")

    def __init__(self, buf: ByteBuffer, nbytes: int) -> None:
        self.buf, self.nbytes = buf, nbytes


class ZeroCopySender:
    """MSG_ZEROCOPY sends on one socket, with their completions tracked.

    Each send retains the ByteBuffer it sent from; the buffer is released when the
    kernel's completion for that send has been read (:meth:`poll_completions`,
    :meth:`wait`).  So the caller may ``release()`` its own reference right after
    sending: the memory stays out of its pool until the kernel is done.  It must not
    *write* to the buffer before then.

    Example (``peer`` a connected TCP socket, ``pool`` a PooledAllocator)::

        with ZeroCopySender(peer) as zc:
            buf = pool.allocate(1 << 20)
            ...                      # fill it, flip it
            zc.send(buf)             # retains buf until the kernel is done with it
            buf.release()            # our reference; the slot waits for the kernel
        # leaving the block waited for every completion: the slot is back in the pool
    """

    def __init__(self, sock: Any) -> None:
        """Enable SO_ZEROCOPY on ``sock`` (a TCP or UDP socket, or a SocketChannel).

        OSError ENOPROTOOPT, its ``__cause__`` the kernel's error, if the socket cannot
        do MSG_ZEROCOPY (an AF_UNIX socket, a kernel before 4.14).

        Syscalls: ``setsockopt(SOL_SOCKET, SO_ZEROCOPY, 1)``.
        """
        sock = socket_of(sock)
        try:
            sock.setsockopt(_socket.SOL_SOCKET, SO_ZEROCOPY, 1)
        except OSError as e:
            raise OSError(
                errno.ENOPROTOOPT,
                f"MSG_ZEROCOPY unavailable: setsockopt(SO_ZEROCOPY): {e.strerror or e} "
                f"(needs a TCP socket on Linux 4.14+, or UDP on 5.0+)",
            ) from e
        self._sock: _socket.socket | None = sock
        self._weak: weakref.ref[_socket.socket] | None = None
        self._next = 0  # the id the kernel gives the next successful send
        self._pending: dict[int, _Send] = {}
        self._closed = False
        #: Sends made (sendmsg calls that sent bytes), completed, and completed copied.
        self.sends = 0
        self.completed = 0
        self.copied = 0

    @classmethod
    def _weakly(cls, sock: _socket.socket) -> ZeroCopySender:
        """A sender holding ``sock`` weakly, closed when the socket is collected."""
        sender = cls(sock)
        sender._sock, sender._weak = None, weakref.ref(sock)
        weakref.finalize(sock, sender.close).atexit = False
        return sender

    # -- state -------------------------------------------------------------------------

    def socket(self) -> _socket.socket:
        """The socket; ClosedChannelError once it (or this sender) is closed."""
        sock = self._sock if self._weak is None else self._weak()
        if self._closed or sock is None or sock.fileno() < 0:
            raise ClosedChannelError("MSG_ZEROCOPY sender or its socket is closed")
        return sock

    def in_flight(self) -> int:
        """Sends whose completion has not been read yet."""
        return len(self._pending)

    def in_flight_bytes(self) -> int:
        """Bytes of the sends in flight."""
        return sum(s.nbytes for s in self._pending.values())

    def _completed(self, first: int, stop: int) -> bool:
        """Whether every send with an id in ``[first, stop)`` has completed."""
        return not any(i in self._pending for i in range(first, stop))

    # -- sending -----------------------------------------------------------------------

    def send(self, buf: ByteBuffer) -> int:
        """Send ``buf``'s ``[position, limit)`` with MSG_ZEROCOPY; returns the bytes sent.

        The position advances by that count; each ``sendmsg`` that sent bytes retains
        ``buf`` once, until its completion is read.  A blocking socket sends
        everything (when the kernel refuses more pages in flight, ENOBUFS, this waits
        for completions and goes on).  A non-blocking one sends what the socket takes
        now: possibly fewer bytes, possibly 0; ENOBUFS with nothing sent raises (wait
        for completions, then retry).  An error after some bytes went out raises
        TransferError carrying the count; with none, the kernel's OSError.

        Syscalls: ``sendmsg(MSG_ZEROCOPY)`` per piece (EINTR retried); on ENOBUFS in
        blocking mode, ``recvmsg(MSG_ERRQUEUE)`` and ``epoll_wait``.
        """
        sock = self.socket()
        blocking = waits(sock)
        sent = 0
        metrics.record("msg_zerocopy", syscalls=0)
        while buf.has_remaining():
            try:
                n = self._send_once(sock, buf)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS and blocking and self._pending:
                    self._wait_some()
                    continue
                err = e
                if e.errno == errno.ENOBUFS and not self._pending:
                    err = OSError(errno.ENOBUFS, "sendmsg(MSG_ZEROCOPY): no buffer space with "
                                  "nothing in flight (net.core.optmem_max or RLIMIT_MEMLOCK "
                                  "too small?)")
                    err.__cause__ = e
                if sent:
                    raise TransferError(err, sent) from err
                if err is e:
                    raise
                raise err from e
            if n == 0:
                break
            sent += n
        return sent

    def _send_once(self, sock: _socket.socket, buf: ByteBuffer) -> int:
        """One ``sendmsg(MSG_ZEROCOPY)``: retain ``buf`` and record the id if it sent."""
        if self._closed:
            raise ClosedChannelError("MSG_ZEROCOPY sender is closed")
        with buf.memoryview() as view:
            try:
                n = retry(_syscalls.SYS.sendmsg, sock, [view], MSG_ZEROCOPY)
            finally:
                metrics.record("msg_zerocopy", operations=0)
        if n > 0:
            buf.retain()
            self._pending[self._next] = _Send(buf, n)
            self._next += 1
            self.sends += 1
            buf.position(buf.position() + n)
        return n

    # -- completions -------------------------------------------------------------------

    def poll_completions(self) -> int:
        """Read every notification queued; release the buffers of completed sends.

        Returns how many sends completed.  Never waits.  A message on the error queue
        that is not a MSG_ZEROCOPY notification (an ICMP error on UDP...) raises
        OSError with its errno, after the completions read before it were applied.

        Syscalls: ``recvmsg(MSG_ERRQUEUE | MSG_DONTWAIT)`` until EAGAIN.
        """
        sock = self.socket()
        done = calls = 0
        try:
            while True:
                calls += 1
                try:
                    _, ancillary, _, _ = retry(_syscalls.SYS.recvmsg, sock, 0, _ANCILLARY,
                                               MSG_ERRQUEUE | _socket.MSG_DONTWAIT)
                except BlockingIOError:
                    return done
                for level, kind, data in ancillary:
                    if (level, kind) not in _RECVERR or len(data) < _EXTENDED_ERR.size:
                        continue
                    err, origin, _, code, _, first, last = _EXTENDED_ERR.unpack_from(data)
                    if origin != SO_EE_ORIGIN_ZEROCOPY:
                        raise OSError(err, f"socket error queue (origin {origin}): "
                                           f"{os.strerror(err)}")
                    done += self._complete(first, last, bool(code & SO_EE_CODE_ZEROCOPY_COPIED))
        finally:
            metrics.record("msg_zerocopy", syscalls=calls, operations=0)

    def _complete(self, first: int, last: int, copied: bool) -> int:
        """Apply one notification: ids ``first..last`` (32-bit, inclusive) are done."""
        span = ((last - first) & _ID_MASK) + 1
        ids = sorted(i for i in self._pending if ((i - first) & _ID_MASK) < span)
        sends = [self._pending.pop(i) for i in ids]
        nbytes = sum(s.nbytes for s in sends)
        self.completed += len(sends)
        if copied:
            self.copied += len(sends)
            metrics.record("msg_zerocopy", syscalls=0, operations=0, user_bytes=nbytes)
            metrics.record("msg_zerocopy_copied", syscalls=0, operations=len(sends),
                           user_bytes=nbytes)
        else:
            metrics.record("msg_zerocopy", syscalls=0, operations=0, kernel_bytes=nbytes)
        _release_all(sends)
        return len(sends)

    def _error_poller(self) -> select.epoll:
        """A new epoll set that becomes ready when a notification arrives; the caller
        closes it.

        The socket is registered for no event but errors (EPOLLERR and EPOLLHUP are
        always reported), edge-triggered: incoming data does not wake it, and a hung-up
        socket does not keep it ready.  Take its event (``poll(0)``) *before* reading
        the completions, then wait on it again: nothing arriving in between is missed.
        """
        ep = select.epoll()
        try:
            ep.register(self.socket().fileno(), select.EPOLLET)
        except BaseException:
            ep.close()
            raise
        return ep

    def _wait_some(self, timeout: float | None = None) -> int:
        """Wait until at least one completion is read (or ``timeout``); returns count."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._error_poller() as ep:
            while True:
                ep.poll(0)
                done = self.poll_completions()
                if done or not self._pending:
                    return done
                left = -1.0 if deadline is None else deadline - time.monotonic()
                if deadline is not None and left <= 0:
                    return 0
                ep.poll(left)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every send has completed; False if ``timeout`` seconds passed first.

        Syscalls: ``epoll_wait`` for POLLERR and ``recvmsg(MSG_ERRQUEUE)``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self.poll_completions()
                return not self._pending
            self._wait_some(left)
        return True

    def close(self) -> None:
        """Stop tracking: read the completions queued, release every buffer still held.

        Buffers of sends still in flight are released too (they would otherwise leak);
        if the kernel has yet to transmit them (it keeps its own page references, so
        this is memory-safe), a buffer refilled meanwhile changes what goes out.  Call
        :meth:`wait` first to avoid that.  Does not close the socket.  Idempotent.
        """
        if self._closed:
            return
        try:
            if self._pending:
                self.poll_completions()
        except OSError:
            pass
        finally:
            self._closed = True
            pending, self._pending = list(self._pending.values()), {}
            _release_all(pending)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Wait for every completion (unless leaving on an exception), then close."""
        try:
            if exc_type is None and not self._closed:
                self.wait()
        finally:
            self.close()

    def __repr__(self) -> str:
        return (f"zcio.ZeroCopySender[sends={self.sends} in_flight={len(self._pending)} "
                f"completed={self.completed} copied={self.copied}]")


def _release_all(sends: list[_Send]) -> None:
    """Release each send's buffer; a failure (the caller over-released) is raised once
    every other buffer has been released."""
    error: BaseException | None = None
    for s in sends:
        try:
            s.buf.release()
        except Exception as e:
            error = error or e
    if error is not None:
        raise error

