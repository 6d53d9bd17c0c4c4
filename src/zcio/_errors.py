"""One exception tree for zcio, rooted in :class:`ZcioError`.

Every leaf also inherits the builtin a plain Python caller would reach for, so
``except IndexError`` or ``except MemoryError`` catches zcio's errors naturally:

=====================================  ===========================  ======================
Java                                   zcio                         builtin base
=====================================  ===========================  ======================
BufferOverflowException                BufferOverflowError          IndexError
BufferUnderflowException               BufferUnderflowError         IndexError
IndexOutOfBoundsException              IndexOutOfBoundsError        IndexError
IllegalArgumentException               IllegalArgumentError         ValueError
IllegalStateException                  IllegalStateError            ValueError
InvalidMarkException                   InvalidMarkError             ValueError (via state)
UnsupportedOperationException          UnsupportedOperationError    TypeError
ReadOnlyBufferException                ReadOnlyBufferError          TypeError (via above)
OutOfMemoryError("Direct buffer...")   OutOfDirectMemoryError       MemoryError
(none: Java never frees explicitly)    ReleasedBufferError          ValueError (via state)
ClosedChannelException                 ClosedChannelError           OSError
AsynchronousCloseException             AsynchronousCloseError       OSError (via closed)
NonReadable/NonWritableChannelExc.     NonReadable/...ChannelError  ValueError (via state)
OverlappingFileLockException           OverlappingFileLockError     ValueError (via state)
IllegalBlockingModeException           IllegalBlockingModeError     ValueError (via state)
NotYetConnectedException               NotYetConnectedError         ValueError (via state)
ClosedSelector/CancelledKeyException   ClosedSelector/...KeyError   ValueError (via state)
(O_DIRECT EINVAL, made explicit)       AlignmentError               ValueError (via arg)
(an I/O error after partial progress)  TransferError                OSError
InternalError (SIGBUS in a mapping)    MappedRegionError            OSError
=====================================  ===========================  ======================

Errors the kernel reports with nothing moved stay the builtin ``OSError`` subclasses
(``ConnectionResetError``, ``FileNotFoundError``...) so plain Python code handles them.

``TypeError`` for unsupported operations follows CPython, where writing to a read-only
memoryview raises ``TypeError``; ``ValueError`` for illegal state follows CPython's
"I/O operation on closed file".  Messages carry the numbers involved.
"""

from __future__ import annotations

__all__ = [
    "ZcioError",
    "BufferOverflowError",
    "BufferUnderflowError",
    "IndexOutOfBoundsError",
    "IllegalArgumentError",
    "IllegalStateError",
    "InvalidMarkError",
    "ReleasedBufferError",
    "IllegalReferenceCountError",
    "UnsupportedOperationError",
    "ReadOnlyBufferError",
    "OutOfDirectMemoryError",
    "ClosedChannelError",
    "AsynchronousCloseError",
    "NonReadableChannelError",
    "NonWritableChannelError",
    "OverlappingFileLockError",
    "IllegalBlockingModeError",
    "NotYetConnectedError",
    "ClosedSelectorError",
    "CancelledKeyError",
    "AlignmentError",
    "TransferError",
    "MappedRegionError",
    "AlreadyConnectedError",
    "ConnectionPendingError",
    "NoConnectionPendingError",
    "AlreadyBoundError",
    "NotYetBoundError",
    "MissingDependencyError",
]


class ZcioError(Exception):
    """Root of every exception zcio raises on purpose."""


class BufferOverflowError(ZcioError, IndexError):
    """A relative put would pass the limit; nothing was written and no index moved."""


class BufferUnderflowError(ZcioError, IndexError):
    """A relative get would pass the limit; nothing was read and no index moved."""


class IndexOutOfBoundsError(ZcioError, IndexError):
    """An absolute index, offset or length lies outside the bounds it is checked against."""


class IllegalArgumentError(ZcioError, ValueError):
    """An argument is out of its documented range (negative capacity, position > limit...)."""


class IllegalStateError(ZcioError, ValueError):
    """The object is not in a state that allows the call."""


class InvalidMarkError(IllegalStateError):
    """``reset()`` was called while the mark is undefined."""


class ReleasedBufferError(IllegalStateError):
    """The buffer's memory was released (``release()`` or the end of a ``with`` block)."""


class IllegalReferenceCountError(ReleasedBufferError):
    """A reference count misused: a decrement past zero, a retain or any use at zero.

    Netty's IllegalReferenceCountException; the message carries the numbers
    (``"refCnt: 1, decrement: 2"``).
    """


class UnsupportedOperationError(ZcioError, TypeError):
    """The buffer kind does not support the call (``array()`` of a direct buffer...)."""


class ReadOnlyBufferError(UnsupportedOperationError):
    """A content-mutating call on a read-only buffer; nothing changed."""


class OutOfDirectMemoryError(ZcioError, MemoryError):
    """Reserving direct memory would pass the cap, even after collecting garbage."""


class ClosedChannelError(ZcioError, OSError):
    """The channel is closed (Java's ClosedChannelException, an IOException)."""


class AsynchronousCloseError(ClosedChannelError):
    """Another thread closed the channel while this operation was using it.

    Java's AsynchronousCloseException.  ``moved`` is exactly how many bytes the
    operation moved before it saw the close (0 for calls that move none); buffer and
    channel positions were advanced by that much and no more.  No byte went to or
    came from a descriptor the channel no longer owned: the number stays reserved
    until the last operation using it has left.
    """

    def __init__(self, what: str, moved: int = 0) -> None:
        super().__init__(f"{what}: the channel was closed by another thread during the "
                         f"call ({moved} bytes moved)")
        self.moved = moved


class NonReadableChannelError(IllegalStateError):
    """A read on a channel that was not opened for reading."""


class NonWritableChannelError(IllegalStateError):
    """A write on a channel that was not opened for writing."""


class OverlappingFileLockError(IllegalStateError):
    """A lock overlaps one this process already holds on the same file."""


class IllegalBlockingModeError(IllegalStateError):
    """The call needs the other blocking mode (register() of a blocking channel...)."""


class NotYetConnectedError(IllegalStateError):
    """I/O on a socket channel that is not connected yet."""


class AlreadyConnectedError(IllegalStateError):
    """connect() on a socket channel that is already connected."""


class ConnectionPendingError(IllegalStateError):
    """connect() while a non-blocking connection is still pending."""


class NoConnectionPendingError(IllegalStateError):
    """finish_connect() without a connect() in progress."""


class AlreadyBoundError(IllegalStateError):
    """bind() on a channel that is already bound."""


class NotYetBoundError(IllegalStateError):
    """accept() on a server channel that is not bound."""


class ClosedSelectorError(IllegalStateError):
    """The selector is closed."""


class CancelledKeyError(IllegalStateError):
    """The selection key was cancelled."""


class AlignmentError(IllegalArgumentError):
    """O_DIRECT I/O with a position, address or length that is not suitably aligned."""


class TransferError(ZcioError, OSError):
    """A transfer failed after moving some bytes.

    ``transferred`` says exactly how many bytes reached the target before the error;
    positions were advanced by that much.  ``errno``/``strerror`` are the kernel's.
    """

    def __init__(self, error: OSError, transferred: int) -> None:
        super().__init__(error.errno, f"{error.strerror} after {transferred} bytes transferred")
        self.transferred = transferred
        self.__cause__ = error


class MappedRegionError(ZcioError, OSError):
    """An access to mapped memory found no file behind it; the process goes on.

    The file was truncated under the mapping (by another process or this one), or a
    write into a hole of a sparse file found no space.  Java 17 throws InternalError
    here.  ``errno`` is EFAULT; the message names the address.  Nothing was
    transferred and no index moved for a get or put; see ``zcio.MappedByteBuffer``
    for which accesses are guarded.
    """


class MissingDependencyError(ZcioError, ImportError):
    """An optional feature needs a package that is not installed; the message names
    the package and the extra that installs it (``pip install 'zcio[arrow]'``)."""
