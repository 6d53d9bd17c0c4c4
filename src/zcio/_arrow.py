"""Arrow's view of zcio memory: ``ByteBuffer.to_arrow()``.

``pyarrow.py_buffer`` takes the buffer protocol: the ``pyarrow.Buffer`` it returns holds
an export of the buffer's ``[position, limit)``, a reference and not a copy.  The
export follows the rules of every other one (see ``zcio._memory``): ``release()``
while Arrow holds it revokes what zcio can and leaves Arrow's bytes valid, the memory
kept alive (and counted in its pool) until Arrow lets go.  On Python 3.12+ the export
is the buffer itself (PEP 688: Arrow letting go reaches ``Memory.unexport`` at once);
on 3.11 it is ``memoryview()``, freed when Arrow drops it.

The other direction needs nothing here: ``ByteBuffer.wrap(arrow_buffer)`` wraps a
mutable ``pyarrow.Buffer`` (``pyarrow.allocate_buffer``) without a copy, read-only
for an immutable one, as any bytes-like object.

pyarrow is optional: ``pip install 'zcio[arrow]'``.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from ._errors import MissingDependencyError

if TYPE_CHECKING:
    from ._byte_buffer import ByteBuffer

__all__ = ["to_arrow", "import_pyarrow"]


def import_pyarrow() -> Any:
    """The ``pyarrow`` module, or MissingDependencyError naming the extra."""
    try:
        return importlib.import_module("pyarrow")
    except ImportError as e:
        raise MissingDependencyError(
            "ByteBuffer.to_arrow() needs pyarrow: pip install 'zcio[arrow]'"
        ) from e


def to_arrow(buf: ByteBuffer) -> Any:
    """A ``pyarrow.Buffer`` over ``buf``'s ``[position, limit)``, zero-copy (module doc).

    Mutable unless ``buf`` is read-only.  ReleasedBufferError for a released buffer;
    UnsupportedOperationError for a composite whose bytes span several components (no
    single block to point at: convert ``nio_buffers()`` one by one).
    """
    pa = import_pyarrow()
    buf._check_memory()
    view = buf.memoryview()  # also the check of a composite's single component
    if sys.version_info >= (3, 12):
        view.release()
        return pa.py_buffer(buf)
    return pa.py_buffer(view)
