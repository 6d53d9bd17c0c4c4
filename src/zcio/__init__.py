"""zcio: zero-copy I/O for Python.

Java NIO's buffers (``ByteBuffer`` with heap and accounted off-heap direct memory,
typed views) and channels (``FileChannel`` with mapping, locks and kernel zero-copy
transfers) with Java 17's semantics and Python names, and copy accounting that shows
what each path costs.  See the README for the Java-to-Python name table and each
deliberate difference.
"""

from ._buffer import Buffer as Buffer
from ._byte_buffer import ByteBuffer as ByteBuffer
from ._channel import Channel as Channel
from ._composite import CompositeBuffer as CompositeBuffer
from ._copy import CopyResult as CopyResult
from ._copy import copy_file as copy_file
from ._direct import BufferPoolInfo as BufferPoolInfo
from ._direct import buffer_pools as buffer_pools
from ._direct import max_direct_memory as max_direct_memory
from ._direct import parse_size as parse_size
from ._direct import set_max_direct_memory as set_max_direct_memory
from ._endpoint import HasFileno as HasFileno
from ._endpoint import TransferSource as TransferSource
from ._endpoint import TransferTarget as TransferTarget
from ._errors import AlignmentError as AlignmentError
from ._errors import AlreadyBoundError as AlreadyBoundError
from ._errors import AlreadyConnectedError as AlreadyConnectedError
from ._errors import AsynchronousCloseError as AsynchronousCloseError
from ._errors import BufferOverflowError as BufferOverflowError
from ._errors import BufferUnderflowError as BufferUnderflowError
from ._errors import CancelledKeyError as CancelledKeyError
from ._errors import ClosedChannelError as ClosedChannelError
from ._errors import ClosedSelectorError as ClosedSelectorError
from ._errors import ConnectionPendingError as ConnectionPendingError
from ._errors import IllegalArgumentError as IllegalArgumentError
from ._errors import IllegalBlockingModeError as IllegalBlockingModeError
from ._errors import IllegalReferenceCountError as IllegalReferenceCountError
from ._errors import IllegalStateError as IllegalStateError
from ._errors import IndexOutOfBoundsError as IndexOutOfBoundsError
from ._errors import InvalidMarkError as InvalidMarkError
from ._errors import MappedRegionError as MappedRegionError
from ._errors import MissingDependencyError as MissingDependencyError
from ._errors import NoConnectionPendingError as NoConnectionPendingError
from ._errors import NonReadableChannelError as NonReadableChannelError
from ._errors import NonWritableChannelError as NonWritableChannelError
from ._errors import NotYetBoundError as NotYetBoundError
from ._errors import NotYetConnectedError as NotYetConnectedError
from ._errors import OutOfDirectMemoryError as OutOfDirectMemoryError
from ._errors import OverlappingFileLockError as OverlappingFileLockError
from ._errors import ReadOnlyBufferError as ReadOnlyBufferError
from ._errors import ReleasedBufferError as ReleasedBufferError
from ._errors import TransferError as TransferError
from ._errors import UnsupportedOperationError as UnsupportedOperationError
from ._errors import ZcioError as ZcioError
from ._file_channel import FileChannel as FileChannel
from ._file_channel import OpenOption as OpenOption
from ._file_lock import FileLock as FileLock
from ._leak import LeakLevel as LeakLevel
from ._leak import LeakWarning as LeakWarning
from ._leak import leak_detection as leak_detection
from ._leak import set_leak_detection as set_leak_detection
from ._mapped import MapMode as MapMode
from ._mapped import MappedByteBuffer as MappedByteBuffer
from ._metrics import Measurement as Measurement
from ._metrics import PathStats as PathStats
from ._metrics import measure as measure
from ._metrics import metrics as metrics
from ._order import ByteOrder as ByteOrder
from ._pipe import Pipe as Pipe
from ._pipe import SinkChannel as SinkChannel
from ._pipe import SourceChannel as SourceChannel
from ._pipe import pipe_max_size as pipe_max_size
from ._pool import PooledAllocator as PooledAllocator
from ._progress import ProgressCallback as ProgressCallback
from ._progress import ProgressEvent as ProgressEvent
from ._recv import FileReceiver as FileReceiver
from ._selectable import OP_ACCEPT as OP_ACCEPT
from ._selectable import OP_CONNECT as OP_CONNECT
from ._selectable import OP_READ as OP_READ
from ._selectable import OP_WRITE as OP_WRITE
from ._selectable import SelectableChannel as SelectableChannel
from ._selector import SelectionKey as SelectionKey
from ._selector import Selector as Selector
from ._send import send_file as send_file
from ._session import ReceiveResult as ReceiveResult
from ._session import SendResult as SendResult
from ._session import TransferFailed as TransferFailed
from ._shared import EndOfStreamError as EndOfStreamError
from ._shared import HandoffError as HandoffError
from ._shared import SealViolationError as SealViolationError
from ._shared import SharedByteBuffer as SharedByteBuffer
from ._socket_channel import ServerSocketChannel as ServerSocketChannel
from ._socket_channel import SocketChannel as SocketChannel
from ._splice import splice as splice
from ._splice import tee as tee
from ._splice import vmsplice as vmsplice
from ._transfer import PATHS as TRANSFER_PATHS
from ._transfer import transfer as transfer
from ._typed import CharBuffer as CharBuffer
from ._typed import DoubleBuffer as DoubleBuffer
from ._typed import FloatBuffer as FloatBuffer
from ._typed import IntBuffer as IntBuffer
from ._typed import LongBuffer as LongBuffer
from ._typed import ShortBuffer as ShortBuffer
from ._typed import TypedBuffer as TypedBuffer
from ._version import __version__ as __version__
from ._wire import ProtocolError as ProtocolError
from ._zerocopy import ZeroCopySender as ZeroCopySender

__all__ = [
    "AlignmentError",
    "AlreadyBoundError",
    "AlreadyConnectedError",
    "AsynchronousCloseError",
    "Buffer",
    "BufferOverflowError",
    "BufferPoolInfo",
    "BufferUnderflowError",
    "ByteBuffer",
    "ByteOrder",
    "CancelledKeyError",
    "Channel",
    "CharBuffer",
    "ClosedChannelError",
    "ClosedSelectorError",
    "CompositeBuffer",
    "ConnectionPendingError",
    "CopyResult",
    "DoubleBuffer",
    "EndOfStreamError",
    "FileChannel",
    "FileLock",
    "FileReceiver",
    "FloatBuffer",
    "HandoffError",
    "HasFileno",
    "IllegalArgumentError",
    "IllegalBlockingModeError",
    "IllegalReferenceCountError",
    "IllegalStateError",
    "IndexOutOfBoundsError",
    "IntBuffer",
    "InvalidMarkError",
    "LeakLevel",
    "LeakWarning",
    "LongBuffer",
    "MapMode",
    "MappedByteBuffer",
    "MappedRegionError",
    "MissingDependencyError",
    "Measurement",
    "NoConnectionPendingError",
    "NonReadableChannelError",
    "NonWritableChannelError",
    "NotYetBoundError",
    "NotYetConnectedError",
    "OP_ACCEPT",
    "OP_CONNECT",
    "OP_READ",
    "OP_WRITE",
    "OpenOption",
    "OutOfDirectMemoryError",
    "OverlappingFileLockError",
    "PathStats",
    "Pipe",
    "PooledAllocator",
    "ProgressCallback",
    "ProgressEvent",
    "ProtocolError",
    "ReadOnlyBufferError",
    "ReceiveResult",
    "ReleasedBufferError",
    "SealViolationError",
    "SelectableChannel",
    "SelectionKey",
    "Selector",
    "SendResult",
    "ServerSocketChannel",
    "SharedByteBuffer",
    "ShortBuffer",
    "SinkChannel",
    "SocketChannel",
    "SourceChannel",
    "TRANSFER_PATHS",
    "TransferError",
    "TransferFailed",
    "TransferSource",
    "TransferTarget",
    "TypedBuffer",
    "UnsupportedOperationError",
    "ZcioError",
    "ZeroCopySender",
    "buffer_pools",
    "copy_file",
    "leak_detection",
    "max_direct_memory",
    "measure",
    "metrics",
    "parse_size",
    "pipe_max_size",
    "send_file",
    "set_leak_detection",
    "set_max_direct_memory",
    "splice",
    "tee",
    "transfer",
    "vmsplice",
]
