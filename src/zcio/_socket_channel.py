"""Stream sockets as channels: java.nio's SocketChannel and ServerSocketChannel.

A :class:`SocketChannel` wraps one stdlib ``socket.socket`` of type SOCK_STREAM (TCP, or
a Unix domain stream socket).  It is *unconnected*, *connection pending* (a non-blocking
``connect`` returned False) or *connected*; reads and writes need *connected*
(NotYetConnectedError), and every call needs an open channel (ClosedChannelError).

Data moves between the socket and each buffer's ``[position, limit)``:

* ``read(dst)`` copies ``n`` bytes into ``dst`` at its position and advances the
  position by ``n``; the limit never moves.  ``-1`` means end of stream (the peer shut
  its side down, or ``shutdown_input()`` was called here).
* ``write(src)`` sends ``n`` bytes from ``src`` at its position and advances it by ``n``.
* The scatter/gather forms advance positions buffer by buffer: buffer ``i+1`` moves only
  once buffer ``i`` is full (read) or drained (write).

The stdlib socket owns the descriptor.  The channel keeps the socket's own timeout at
``None`` and sets ``O_NONBLOCK`` on the descriptor itself (``configure_blocking``), so
an adopted socket with a timeout becomes a plain blocking channel.  Do not call
``setblocking``/``settimeout`` on ``socket()`` behind the channel's back.

Closing a channel while another thread is inside ``read``/``write``/``accept``/
``connect`` on it first shuts the socket down, which wakes that thread, and keeps the
descriptor number reserved until it has left (``zcio._channel``); it raises
AsynchronousCloseError (Java's AsynchronousCloseException) carrying the bytes it moved.
"""

from __future__ import annotations

import errno
import os
import select
import socket as _socket
import threading
from collections.abc import Sequence
from typing import Self, overload

from . import _syscalls
from ._buffer import check_int
from ._byte_buffer import ByteBuffer
from ._channel import accelerate, counting_operation, operation
from ._errors import (
    AlreadyBoundError,
    AlreadyConnectedError,
    ClosedChannelError,
    ConnectionPendingError,
    NoConnectionPendingError,
    NotYetBoundError,
    NotYetConnectedError,
)
from ._guard import io_call
from ._iovec import HOW_SOCKET, check_buffers, gather, remaining_pairs, scatter
from ._lock import new_lock
from ._metrics import metrics
from ._selectable import OP_ACCEPT, OP_CONNECT, OP_READ, OP_WRITE
from ._shared import SharedByteBuffer, receive_buffer, send_buffer
from ._socket_holder import (
    Address,
    SocketHolder,
    adopt,
    bound_address,
    counted_syscall,
    family_for,
    wildcard,
)

__all__ = ["SocketChannel", "ServerSocketChannel"]

_UNCONNECTED, _PENDING, _CONNECTED = 0, 1, 2


class SocketChannel(SocketHolder):
    """A channel for a stream-oriented connecting socket (Java's SocketChannel).

    >>> with ServerSocketChannel.open().bind(("127.0.0.1", 0)) as server:
    ...     with SocketChannel.open(server.local_address()) as client:
    ...         with server.accept() as peer:
    ...             client.write(ByteBuffer.wrap(b"hi")), peer.read(ByteBuffer.allocate(8))
    (2, 2)
    """

    _VALID_OPS = OP_READ | OP_WRITE | OP_CONNECT

    def __init__(self, sock: _socket.socket) -> None:
        """Adopt ``sock`` (prefer :meth:`open` / :meth:`from_socket`)."""
        blocking = adopt(sock, server=False)
        self._init_socket(sock, blocking)
        self._read_lock = new_lock()  # taken by native/chan.c too
        self._write_lock = new_lock()
        self._input_shut = False
        self._output_shut = False
        self._remote: Address | None = None
        try:
            self._remote = sock.getpeername()
            self._state = _CONNECTED
        except OSError:
            self._state = _UNCONNECTED

    @classmethod
    def open(cls, remote: Address | None = None, family: int | None = None) -> SocketChannel:
        """A new blocking stream socket channel, connected to ``remote`` if given.

        ``family`` defaults to the one ``remote`` implies (AF_INET without a remote).
        A failed connect closes the channel and raises the OSError.
        """
        if family is None:
            family = _socket.AF_INET if remote is None else family_for(remote)
        ch = cls(_socket.socket(family, _socket.SOCK_STREAM))
        if remote is not None:
            try:
                ch.connect(remote)
            except BaseException:
                ch.close()
                raise
        return ch

    @classmethod
    def from_socket(cls, sock: _socket.socket) -> SocketChannel:
        """A channel owning ``sock``, a connected or unconnected SOCK_STREAM socket.

        The channel is non-blocking if ``sock`` was (timeout 0), blocking otherwise.
        IllegalArgumentError for a non-stream or listening socket (left open).
        """
        return cls(sock)

    # -- connection state ---------------------------------------------------------------

    def is_connected(self) -> bool:
        """Whether the socket is connected."""
        return self._state == _CONNECTED

    def is_connection_pending(self) -> bool:
        """Whether a non-blocking connect was started and not yet finished."""
        return self._state == _PENDING

    def remote_address(self) -> Address | None:
        """The peer's address, or None if not connected."""
        self.fileno()
        return self._remote if self._state == _CONNECTED else None

    @operation
    def bind(self, local: Address | None = None) -> Self:
        """Bind the socket to ``local`` (None: the wildcard address, a kernel-chosen port).

        IllegalStateError if already bound or a connection is pending.
        Syscalls: ``bind(2)``.
        """
        self.fileno()
        if self._state == _PENDING:
            raise ConnectionPendingError("connection pending")
        if bound_address(self._sock) is not None:
            raise AlreadyBoundError(f"already bound to {bound_address(self._sock)!r}")
        self._sock.bind(wildcard(self._sock.family) if local is None else local)
        return self

    def connect(self, remote: Address) -> bool:
        """Connect to ``remote``; True once connected, False while still in progress.

        A blocking channel waits until the connection is made or fails.  A non-blocking
        channel returns False when the kernel answers EINPROGRESS: the connection is then
        pending, and :meth:`finish_connect` (typically after OP_CONNECT) completes it.
        IllegalStateError if already connected or pending.  If the connection fails the
        channel is closed and the kernel's OSError (ConnectionRefusedError...) raised, as
        Java does; an address that does not resolve (``socket.gaierror``) leaves it open.

        Syscalls: ``connect(2)``.
        """
        return self._close_on_failure(self._connect, remote)

    @operation
    def _connect(self, remote: Address) -> bool:
        self.fileno()
        with self._read_lock, self._write_lock:
            if self._state == _CONNECTED:
                raise AlreadyConnectedError(f"already connected to {self._remote!r}")
            if self._state == _PENDING:
                raise ConnectionPendingError("connection pending: call finish_connect()")
            try:
                self._sock.connect(remote)
            except BlockingIOError:
                self._state = _PENDING
                return False
            finally:
                metrics.record("socket_connect", syscalls=1)
            self._connected()
            return True

    def finish_connect(self) -> bool:
        """Finish a pending connect: True if connected, False if still in progress.

        True at once if already connected; IllegalStateError if no connection is
        pending.  A blocking channel waits for the outcome.  If the connection failed,
        the channel is closed and the kernel's OSError raised.

        Syscalls: ``poll(2)`` for POLLOUT (no wait when non-blocking), then
        ``getsockopt(SO_ERROR)``.
        """
        return self._close_on_failure(self._finish_connect)

    @operation
    def _finish_connect(self) -> bool:
        self.fileno()
        with self._read_lock, self._write_lock:
            if self._state == _CONNECTED:
                return True
            if self._state != _PENDING:
                raise NoConnectionPendingError("no connection pending")
            poller = select.poll()
            poller.register(self.fileno(), select.POLLOUT)
            ready = poller.poll(None if self._blocking else 0)
            if not ready:
                metrics.record("socket_connect", syscalls=1)
                return False
            err = self._sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
            metrics.record("socket_connect", syscalls=2)
            if err:
                raise OSError(err, os.strerror(err))
            self._connected()
            return True

    def _connected(self) -> None:
        self._remote = self._sock.getpeername()
        self._state = _CONNECTED

    def _translate_ready_ops(self, readable: bool, writable: bool, interest: int) -> int:
        """Selector hook (Java's rule): writability means OP_CONNECT while pending;
        OP_READ and OP_WRITE need a connection (``finish_connect`` done)."""
        if self._state == _PENDING:
            return interest & OP_CONNECT if writable else 0
        if self._state != _CONNECTED:
            return 0
        return (interest & OP_READ if readable else 0) | (interest & OP_WRITE if writable else 0)

    def shutdown_input(self) -> Self:
        """Shut down reading; later reads return -1 without a system call (Java).

        A thread blocked in ``read`` wakes and gets -1.  NotYetConnectedError if not
        connected.  Syscalls: ``shutdown(SHUT_RD)`` (ENOTCONN ignored, as Java does).
        """
        self._check_connected()
        if not self._input_shut:
            self._shutdown(_socket.SHUT_RD)
            self._input_shut = True
        return self

    def shutdown_output(self) -> Self:
        """Shut down writing (the peer reads end of stream); later writes raise
        ClosedChannelError.  Syscalls: ``shutdown(SHUT_WR)`` (ENOTCONN ignored)."""
        self._check_connected()
        if not self._output_shut:
            self._shutdown(_socket.SHUT_WR)
            self._output_shut = True
        return self

    @operation
    def _shutdown(self, how: int) -> None:
        try:
            self._sock.shutdown(how)
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                raise

    def _check_connected(self) -> _socket.socket:
        self.fileno()
        if self._state != _CONNECTED:
            raise NotYetConnectedError(f"{type(self).__name__} is not connected")
        return self._sock

    # -- reading ------------------------------------------------------------------------

    @overload
    def read(self, dst: ByteBuffer, /) -> int: ...
    @overload
    def read(
        self, dsts: Sequence[ByteBuffer], /, offset: int = 0, length: int | None = None
    ) -> int: ...
    def read(
        self,
        dst: ByteBuffer | Sequence[ByteBuffer],
        /,
        offset: int = 0,
        length: int | None = None,
    ) -> int:
        """Read into ``dst``, or scatter into ``dsts[offset:offset+length]`` in order.

        Returns the number of bytes read, possibly 0; -1 at end of stream.  Returns 0
        without a system call when the buffers have nothing remaining, and -1 without
        one after ``shutdown_input()``.  Buffer positions advance by the bytes read,
        buffer by buffer; limits never move.  IllegalArgumentError for a read-only
        buffer (nothing read); NotYetConnectedError / ClosedChannelError as usual.

        Syscalls: ``recv(2)`` for one buffer, ``recvmsg(2)`` for several (at most
        IOV_MAX non-empty buffers per call, so one call fills at most that many; a
        CompositeBuffer counts as one buffer per component with room).  It
        may read fewer bytes than there is room for; a blocking channel waits for at
        least one byte, a non-blocking one returns 0 when nothing is available (EAGAIN).
        On an error (ConnectionResetError...) nothing was read: the builtin OSError
        propagates and no position changes.
        """
        if isinstance(dst, ByteBuffer):
            if offset or length is not None:
                raise TypeError("offset/length apply to a sequence of buffers")
            return self._read([dst], False)
        return self._read(check_buffers(dst, offset, length), True)

    @counting_operation
    def _read(self, bufs: list[ByteBuffer], several: bool) -> int:
        with self._read_lock:
            sock = self._check_connected()
            if self._input_shut:
                metrics.record("socket_read", syscalls=0)
                return -1
            io = _syscalls.NATIVE_IO
            if io is not None and not several:  # one plain buffer: one recv, compiled
                got: int = io.io_read(self._fd, bufs[0], -1, HOW_SOCKET, "socket_read")
                if got is not NotImplemented:
                    return got
            calls, n = [0], 0
            recvmsg, recv = _syscalls.SYS.recvmsg_into, _syscalls.SYS.recv_into

            def recv_chunk(views: list[memoryview]) -> int:
                nonlocal n
                if several or len(views) > 1:  # several buffers, or a composite's parts
                    n = io_call(counted_syscall, calls, recvmsg, sock, views)
                else:
                    n = io_call(counted_syscall, calls, recv, sock, views[0])
                return n

            try:
                return scatter(remaining_pairs(bufs, writable=True), recv_chunk)
            finally:
                metrics.record("socket_read", syscalls=calls[0], user_bytes=n)

    # -- writing ------------------------------------------------------------------------

    @overload
    def write(self, src: ByteBuffer, /) -> int: ...
    @overload
    def write(
        self, srcs: Sequence[ByteBuffer], /, offset: int = 0, length: int | None = None
    ) -> int: ...
    def write(
        self,
        src: ByteBuffer | Sequence[ByteBuffer],
        /,
        offset: int = 0,
        length: int | None = None,
    ) -> int:
        """Write from ``src``, or gather from ``srcs[offset:offset+length]`` in order.

        Returns the number of bytes written, possibly 0 (0 without a system call when
        nothing remains).  Positions advance by what the kernel took, buffer by buffer;
        limits never move.  ClosedChannelError after ``shutdown_output()`` or close;
        NotYetConnectedError before connect.

        Syscalls: ``send(2)`` for one buffer; ``sendmsg(2)`` for several, in chunks of
        at most IOV_MAX non-empty buffers (a CompositeBuffer counts as one buffer per
        component with bytes left).  A call may take fewer bytes than given; a
        non-blocking channel returns 0 when the socket buffer is full (EAGAIN) and
        makes one call.  A blocking channel goes on to the next chunk only while the
        previous chunk was taken whole, and returns the total.  On an error with
        nothing written the builtin OSError (BrokenPipeError...) propagates and no
        position changes; after an earlier chunk was taken, the count so far is
        returned (Java's rule, as every zcio channel) and the error comes again on the
        next call.  Compiled (``zcio._native``), the parts are copied into one block and
        sent with one ``send(2)`` when they are small; 2 to 64 parts of at most 512
        bytes go with ``MSG_DONTWAIT`` and the GIL held (a call that never waits), and a
        blocking channel whose socket took less goes on with a second, waiting call for
        the rest: one operation of two calls in ``zcio.metrics``.
        """
        if isinstance(src, ByteBuffer):
            if offset or length is not None:
                raise TypeError("offset/length apply to a sequence of buffers")
            return self._write([src], False)
        return self._write(check_buffers(src, offset, length), True)

    @counting_operation
    def _write(self, bufs: list[ByteBuffer], several: bool) -> int:
        with self._write_lock:
            sock = self._check_connected()
            if self._output_shut:
                raise ClosedChannelError("output is shut down")
            io = _syscalls.NATIVE_IO
            if io is not None:  # plain buffers: one send or sendmsg, compiled
                sent: int = (io.io_gather(self._fd, bufs, -1, HOW_SOCKET, "socket_write") if several
                        else io.io_write(self._fd, bufs[0], -1, HOW_SOCKET, "socket_write"))
                if sent is not NotImplemented:
                    return sent
            calls = [0]
            sys_ = _syscalls.SYS

            def send_chunk(views: list[memoryview], total: int) -> int:
                if several or len(views) > 1:  # a composite's parts too
                    return io_call(counted_syscall, calls, sys_.sendmsg, sock, views)
                return io_call(counted_syscall, calls, sys_.send, sock, views[0])

            total = 0
            try:
                total = gather(remaining_pairs(bufs, writable=False), send_chunk,
                               once=not self._blocking)
            finally:
                metrics.record("socket_write", syscalls=calls[0], user_bytes=total)
            return total

    # -- shared buffers ---------------------------------------------------------------

    @operation
    def send_buffer(self, buf: SharedByteBuffer, /) -> bool:
        """Hand ``buf`` (from ``ByteBuffer.allocate_shared``) to the peer of this Unix
        socket: its descriptor and its indexes, order, read-only flag and seals in one
        message, never its bytes.  Both processes then map the same memory.  No index
        of ``buf`` changes; it stays usable here.

        Returns True once sent; False on a non-blocking channel whose socket buffer is
        full (nothing sent: try again when OP_WRITE is ready).  TypeError for any other
        buffer; UnsupportedOperationError on a socket that is not AF_UNIX;
        ReleasedBufferError if ``buf`` is released; ClosedChannelError after
        ``shutdown_output()``.  Do not interleave with a ``write()`` in progress.  A
        ``close()`` of the channel meanwhile raises AsynchronousCloseError, as for any
        operation of a channel.

        Syscalls: one ``sendmsg(2)`` of a 48-byte header (stating the seals this process
        knows of; the receiver reads the real ones) with the descriptor attached
        (``SCM_RIGHTS``), queued whole or not at all, made in C where ``zcio._native``
        is in use (``native/share.c``).  On an error (BrokenPipeError...) nothing was
        sent and the builtin OSError propagates.
        """
        return send_buffer(self, buf)

    @operation
    def receive_buffer(self) -> SharedByteBuffer | None:
        """Receive a buffer sent with ``send_buffer``: a shared buffer over the same
        memory, with the sender's indexes (no mark), order and read-only flag; read-only
        also if the memory is sealed against writes.  Counted in this process's
        ``shared`` pool until released.

        Returns None on a non-blocking channel when no message is waiting (EAGAIN).
        EndOfStreamError when the peer has closed its side.  HandoffError for anything
        else the peer sent (a short header, a bad magic or version, no descriptor,
        several, one that is not a memfd sealed against shrinking or is smaller than
        stated); every descriptor that came with it is closed, and the stream should be
        given up, as it is out of step.  A ``close()`` of the channel from another
        thread wakes a blocked call, which raises AsynchronousCloseError (the
        descriptor number stays this channel's until the call has left: nothing is
        ever received from another socket that got the number).

        Syscalls: one ``recvmsg(2)`` of the header with room for a few descriptors
        (``MSG_CMSG_CLOEXEC``); then ``fcntl(F_GET_SEALS)`` (only a memfd can carry the
        shrink seal), ``fstat`` (the size) and ``mmap(MAP_SHARED)`` of the descriptor,
        which stays open with the mapping until ``release()`` (closed at once on an
        error).  Where ``zcio._native`` is in use these are made in C
        (``native/share.c``); the pure-Python path maps with CPython's mmap, which also
        keeps a duplicate of the descriptor.
        """
        return receive_buffer(self)


class ServerSocketChannel(SocketHolder):
    """A channel for a listening stream socket (Java's ServerSocketChannel).

    ``open()`` sets SO_REUSEADDR, as Java does on Linux, so a restarted server can
    bind its port while old connections linger in TIME_WAIT.
    """

    _VALID_OPS = OP_ACCEPT

    def __init__(self, sock: _socket.socket) -> None:
        """Adopt ``sock`` (prefer :meth:`open` / :meth:`from_socket`)."""
        blocking = adopt(sock, server=True)
        self._init_socket(sock, blocking)
        self._accept_lock = threading.Lock()
        self._listening = bool(sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN))

    @classmethod
    def open(cls, family: int = _socket.AF_INET) -> ServerSocketChannel:
        """A new, unbound, blocking server channel with SO_REUSEADDR set."""
        sock = _socket.socket(family, _socket.SOCK_STREAM)
        try:
            if family != _socket.AF_UNIX:
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            return cls(sock)
        except BaseException:
            sock.close()
            raise

    @classmethod
    def from_socket(cls, sock: _socket.socket) -> ServerSocketChannel:
        """A channel owning ``sock``, a SOCK_STREAM socket (listening or not yet bound)."""
        return cls(sock)

    @operation
    def bind(self, local: Address | None = None, backlog: int = 0) -> Self:
        """Bind to ``local`` (None: wildcard address, kernel-chosen port) and listen.

        ``backlog`` < 1 means the stdlib default (SOMAXCONN, at most 128).
        IllegalStateError if already bound.  Syscalls: ``bind(2)``, ``listen(2)``.
        """
        self.fileno()
        backlog = check_int(backlog, "backlog")
        if self._listening or bound_address(self._sock) is not None:
            raise AlreadyBoundError(f"already bound to {bound_address(self._sock)!r}")
        self._sock.bind(wildcard(self._sock.family) if local is None else local)
        if backlog < 1:
            self._sock.listen()
        else:
            self._sock.listen(backlog)
        self._listening = True
        return self

    @operation
    def accept(self) -> SocketChannel | None:
        """Accept a connection: a new connected, blocking SocketChannel.

        A blocking channel waits for a connection; a non-blocking one returns None when
        none is pending.  IllegalStateError if not bound.

        Syscalls: ``accept4(SOCK_CLOEXEC)``; EAGAIN gives None.  Errors (ECONNABORTED,
        EMFILE...) propagate as the builtin OSError.
        """
        self.fileno()
        with self._accept_lock:
            if not self._listening:
                raise NotYetBoundError("not bound")
            try:
                sock, _ = self._sock.accept()
            except BlockingIOError:
                return None
            finally:
                metrics.record("socket_accept", syscalls=1)
            if not self.is_open():  # closed meanwhile (the caller raises): not handed out
                sock.close()
                return None
            try:
                return SocketChannel(sock)
            except BaseException:
                sock.close()
                raise


# read(buf) and write(buf | [bufs]) of plain buffers, compiled whole (native/chan.c).
accelerate(SocketChannel, "read", "socket_read", what="SocketChannel._read", into=True,
           how=HOW_SOCKET, lock="_read_lock", state={"_state": _CONNECTED, "_input_shut": False})
accelerate(SocketChannel, "write", "socket_write", what="SocketChannel._write", into=False,
           how=HOW_SOCKET, gather=True, lock="_write_lock",
           state={"_state": _CONNECTED, "_output_shut": False})
# send_buffer(buf) and receive_buffer(), the hand-off built in C (native/share.c), where
# descriptors can pass at all.
if _syscalls.is_available("scm_rights"):
    accelerate(SocketChannel, "send_buffer", "shared_send", what="SocketChannel.send_buffer",
               into=False, how=HOW_SOCKET, lock="_write_lock",
               state={"_state": _CONNECTED, "_output_shut": False})
    accelerate(SocketChannel, "receive_buffer", "shared_receive",
               what="SocketChannel.receive_buffer", into=True, how=HOW_SOCKET, max_args=0,
               lock="_read_lock", state={"_state": _CONNECTED, "_input_shut": False})
