"""zcio: zero-copy I/O for Python.

Java NIO's buffers (``ByteBuffer`` with heap and accounted off-heap direct memory,
typed views) with Java 17's exact semantics and Python names.  See the README for the
Java-to-Python name table and each deliberate difference.
"""

from ._buffer import Buffer as Buffer
from ._byte_buffer import ByteBuffer as ByteBuffer
from ._direct import BufferPoolInfo as BufferPoolInfo
from ._direct import buffer_pools as buffer_pools
from ._direct import max_direct_memory as max_direct_memory
from ._direct import parse_size as parse_size
from ._direct import set_max_direct_memory as set_max_direct_memory
from ._errors import BufferOverflowError as BufferOverflowError
from ._errors import BufferUnderflowError as BufferUnderflowError
from ._errors import IllegalArgumentError as IllegalArgumentError
from ._errors import IllegalStateError as IllegalStateError
from ._errors import IndexOutOfBoundsError as IndexOutOfBoundsError
from ._errors import InvalidMarkError as InvalidMarkError
from ._errors import OutOfDirectMemoryError as OutOfDirectMemoryError
from ._errors import ReadOnlyBufferError as ReadOnlyBufferError
from ._errors import ReleasedBufferError as ReleasedBufferError
from ._errors import UnsupportedOperationError as UnsupportedOperationError
from ._errors import ZcioError as ZcioError
from ._order import ByteOrder as ByteOrder
from ._typed import CharBuffer as CharBuffer
from ._typed import DoubleBuffer as DoubleBuffer
from ._typed import FloatBuffer as FloatBuffer
from ._typed import IntBuffer as IntBuffer
from ._typed import LongBuffer as LongBuffer
from ._typed import ShortBuffer as ShortBuffer
from ._typed import TypedBuffer as TypedBuffer

__version__ = "0.1.0"

__all__ = [
    "Buffer",
    "BufferOverflowError",
    "BufferPoolInfo",
    "BufferUnderflowError",
    "ByteBuffer",
    "ByteOrder",
    "CharBuffer",
    "DoubleBuffer",
    "FloatBuffer",
    "IllegalArgumentError",
    "IllegalStateError",
    "IndexOutOfBoundsError",
    "IntBuffer",
    "InvalidMarkError",
    "LongBuffer",
    "OutOfDirectMemoryError",
    "ReadOnlyBufferError",
    "ReleasedBufferError",
    "ShortBuffer",
    "TypedBuffer",
    "UnsupportedOperationError",
    "ZcioError",
    "buffer_pools",
    "max_direct_memory",
    "parse_size",
    "set_max_direct_memory",
]
