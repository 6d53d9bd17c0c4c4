"""Blocks of memory that buffers view, and their release.

A :class:`Memory` is shared by a buffer and everything derived from it (slices,
duplicates, read-only views, typed views).  Buffers touch the bytes only through
memoryviews that the block hands out and records.  ``release()`` revokes every one of
them (``memoryview.release()``), so a later access raises instead of reading freed
memory, and then frees the block.

An export through the buffer protocol (``memoryview(buf)``, numpy, ctypes, any C
consumer; Python 3.12+, PEP 688) is one of those views: ``ByteBuffer.__buffer__`` hands
out a view of the block and ``__release_buffer__`` gives it back to
:meth:`Memory.unexport`.  The pair matters: a type without ``__release_buffer__``
tells consumers that holding the object keeps the memory alive, and numpy then keeps
only the buffer object and a raw pointer, which ``release()`` would leave dangling.

Freeing is safe whatever order things happen in, because the block never unmaps memory
that something can still reach: a direct block is an anonymous ``mmap`` and CPython
refuses to close an mmap while any buffer export is alive.  If the user still holds a
memoryview that zcio cannot revoke (one they sliced further, or one exported to numpy),
the unmap is deferred until that view is gone; its accounting stays in the pool until
then, so the pools always tell the truth about mapped memory.
"""

from __future__ import annotations

import array
import ctypes
import mmap
import struct
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _guard
from ._direct import PAGE_SIZE, reserve_direct, round_to_pages, unreserve_direct
from ._errors import IllegalArgumentError, IllegalReferenceCountError, ReleasedBufferError
from ._fork import fork_safe
from ._lock import new_lock

if TYPE_CHECKING:
    from ._types import Buffer

__all__ = ["Memory", "GuardedMemory", "HeapMemory", "WrappedMappingMemory", "DirectMemory",
           "buffer_address", "may_lose_pages", "unmap", "revoke"]

_RC_LOCK = fork_safe(new_lock())  # reference counts change atomically, as Netty's
_MAX_REFCNT = (1 << 31) - 1  # Netty's refCnt is a Java int


class _PyBuffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.py_object),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_get_buffer.restype = ctypes.c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]
_release_buffer.restype = None


def buffer_address(obj: Buffer) -> int:
    """The address of the first byte of a contiguous bytes-like object (0 if empty)."""
    view = _PyBuffer()
    _get_buffer(obj, ctypes.byref(view), 0)  # PyBUF_SIMPLE: contiguous bytes
    try:
        return view.buf or 0
    finally:
        _release_buffer(ctypes.byref(view))


#: Keeps two prunes of a memory's view list apart (see ``Memory._prune``); reentrant,
#: and ``_pruning`` marks this thread's prune, for one the collector starts inside it.
_PRUNE_LOCK = fork_safe(threading.RLock())
_pruning = threading.local()


class Memory:
    """A block of bytes; hands out revocable memoryviews of itself.

    The memory interface every buffer kind reads and writes through, at offsets of the
    block (a buffer adds its own ``_off``): :meth:`load` and :meth:`store` for one
    value, :meth:`read` for a copy, :meth:`segments` for zero-copy views.  This class
    is contiguous memory (heap, direct, pooled; a mapping overrides ``load`` to go
    through the SIGBUS guard); ``zcio._composite.CompositeMemory`` is segmented.
    ByteBuffer's hot paths bypass the interface for contiguous memory and use the
    buffer's own memoryview; everything else asks the memory.
    """

    direct = False
    #: Plain contiguous memory: a buffer may read and write it through its own
    #: memoryview.  False where every access must be asked of the memory (a mapping,
    #: behind the SIGBUS guard; a composite, in segments).
    plain = True
    #: Netty's rules for the reference count: releasing past zero is an error.  Plain
    #: buffers are lenient (a second release is a no-op, as closing a closed file).
    strict = False
    __slots__ = ("_base", "_views", "_prune_at", "released", "size", "refcnt", "__weakref__")

    def __init__(self, base: memoryview) -> None:
        self._base = base  # format "B", 1-D, covering the whole block
        # Weak references (memoryviews are unhashable, so no WeakSet), pruned of dead
        # entries whenever the list doubles: amortised O(1) per view handed out.
        self._views: list[weakref.ref[memoryview]] = []  # _base is released directly
        self._prune_at = 8
        self.released = False
        self.size = len(base)
        self.refcnt = 1

    def view(self, start: int, stop: int, readonly: bool = False) -> memoryview:
        """A memoryview of bytes ``[start, stop)``, revoked when the block is released.

        ``released`` is asked again once the view is tracked: making it allocates, the
        garbage collector may run inside and release the block (a finalizer dropping
        its last reference), and a view made then was never revoked and sits on memory
        already freed or recycled.
        """
        if self.released:
            raise self.released_error()
        mv = self._base[start:stop]
        if readonly:
            ro = mv.toreadonly()
            mv.release()
            mv = ro
        self._track(mv)
        if self.released:
            revoke(mv)
            raise self.released_error()
        return mv

    def _track(self, mv: memoryview) -> None:
        views = self._views
        views.append(weakref.ref(mv))  # one C call: atomic under the GIL
        if len(views) >= self._prune_at:
            self._prune(views)

    def _prune(self, views: list[weakref.ref[memoryview]]) -> None:
        """Drop the dead entries of ``views``.  Threads deriving views at once append
        while this runs: only the entries there when it started are replaced (one
        slice assignment), so those appended meanwhile stay; a lock keeps two prunes
        apart (each would overwrite entries the other moved), and a prune the collector
        starts inside this one (a finalizer deriving a view) leaves it to this one."""
        with _PRUNE_LOCK:
            if getattr(_pruning, "active", False):
                return
            _pruning.active = True
            try:
                n = len(views)
                views[:n] = [r for r in views[:n] if r() is not None]
                self._prune_at = max(8, 2 * len(views))
            finally:
                _pruning.active = False

    def address(self) -> int:
        """The address of byte 0 of the block (0 for an empty block, which has none:
        CPython 3.13 points every empty bytearray at one static, odd address).

        A raw pointer, valid only until the block is freed, unmapped or given back to
        its pool; nothing holds the block through it (see ``ByteBuffer.address``).
        """
        if self.released:
            raise self.released_error()
        return buffer_address(self._base) if self.size else 0

    # -- the memory interface ------------------------------------------------------------

    def load(self, st: struct.Struct, at: int) -> Any:
        """The value ``st`` decodes at byte ``at``; the caller checked the bounds."""
        if self.released:
            raise self.released_error()
        try:
            return st.unpack_from(self._base, at)[0]
        except ValueError as e:
            raise self.translate(e) from None

    def store(self, at: int, raw: bytes) -> None:
        """Write ``raw`` at byte ``at`` (guarded); the caller checked bounds and
        read-only."""
        if self.released:
            raise self.released_error()
        try:
            _guard.copy(self._base, at, raw, 0, len(raw))
        except (ValueError, TypeError) as e:
            raise self.translate(e) from None

    def read(self, at: int, n: int) -> bytes:
        """A copy of bytes ``[at, at + n)`` (guarded)."""
        if self.released:
            raise self.released_error()
        try:
            return _guard.read(self._base, at, n)
        except ValueError as e:
            raise self.translate(e) from None

    def segments(self, at: int, n: int) -> list[memoryview]:
        """Zero-copy views of bytes ``[at, at + n)``: one, as the block is contiguous."""
        if self.released:
            raise self.released_error()
        try:
            return [self._base[at : at + n]]
        except ValueError as e:
            raise self.translate(e) from None

    def released_error(self) -> ReleasedBufferError:
        if self.strict:
            return IllegalReferenceCountError("refCnt: 0")
        return ReleasedBufferError(
            f"{'direct' if self.direct else 'heap'} buffer memory of {self.size} bytes "
            "was released"
        )

    def translate(self, error: Exception) -> Exception:
        """Turn the ValueError of a revoked memoryview into ReleasedBufferError."""
        if self.released:
            err = self.released_error()
            err.__suppress_context__ = True
            return err
        return error

    def retain(self, n: int = 1) -> None:
        """Add ``n`` to the reference count; IllegalReferenceCountError once it is 0, or
        if it would pass 2**31 - 1 (Netty's int count: it refuses to overflow)."""
        if n <= 0:
            raise IllegalArgumentError(f"increment must be positive: {n}")
        with _RC_LOCK:
            if self.refcnt <= 0 or self.refcnt + n > _MAX_REFCNT:
                raise IllegalReferenceCountError(f"refCnt: {self.refcnt}, increment: {n}")
            self.refcnt += n

    def release(self, n: int = 1) -> bool:
        """Take ``n`` from the reference count; at zero, revoke and free.  True if freed.

        At zero every view this block handed out is revoked, then the storage is freed
        (or returned to its pool).  Views exported further (a memoryview sliced by the
        user, a numpy array over it) cannot be revoked: they stay valid and keep the
        memory alive (and out of any pool) until they are gone.  A decrement past zero
        raises IllegalReferenceCountError; releasing a plain block already at zero is a
        no-op, a strict (pooled, composite) one raises.
        """
        if n <= 0:
            raise IllegalArgumentError(f"decrement must be positive: {n}")
        with _RC_LOCK:
            rc = self.refcnt
            if rc == 0 and not self.strict:
                return False
            if n > rc:
                raise IllegalReferenceCountError(f"refCnt: {rc}, decrement: {n}")
            self.refcnt = rc - n
            if rc > n:
                return False
            self.released = True
        self._revoke()
        self._free()
        return True

    def unexport(self, view: memoryview) -> None:
        """A consumer outside zcio let go of ``view``, an export of this block (of one
        of its components, for a composite) through the buffer protocol's
        ``__release_buffer__``: revoke it now.

        While a consumer holds an export it is a view zcio cannot revoke, so it keeps
        the block alive past ``release()`` as any view exported further does (free or
        unmap deferred, accounting kept, a pooled slot quarantined).  Revoking it as
        soon as the consumer lets go, instead of whenever it is collected, finishes a
        release it deferred at once.  Never raises: CPython calls it while releasing.
        """
        revoke(view)  # exported further still: stays alive
        if self.released:
            self._reclaim()

    def _reclaim(self) -> None:
        """Storage whose release an export deferred may be reusable now (pooled:
        leave quarantine).  Direct and mapped blocks need nothing: their unmap runs
        when the last view of the mapping goes, which CPython tracks for them."""

    def touch(self, hint: object) -> None:
        """Record ``touch(hint)`` for the leak detector; plain memory is not tracked."""

    def record(self, what: str) -> None:
        """Record an access (``"slice()"``...) for the leak detector; plain: nothing."""

    def _revoke(self) -> None:
        revoke(self._base)
        views, self._views = self._views, []
        for ref in views:
            mv = ref()
            if mv is not None:
                revoke(mv)

    def _free(self) -> None:
        """Free the storage if nothing can reach it any more (heap: nothing to do)."""


def revoke(mv: memoryview) -> bool:
    """Release ``mv``: True once revoked; False when it was exported further (a slice
    the user made, a numpy array over it), and so stays valid and keeps its memory
    alive.  A function, not ``contextlib.suppress``: it runs for every view at every
    release, where that context manager cost more than the release itself."""
    try:
        mv.release()
    except BufferError:
        return False
    return True


class GuardedMemory(Memory):
    """Memory whose pages can be taken away under it: a file mapping, where another
    process truncating the file makes an access die of SIGBUS.  Every access asks the
    memory (not ``plain``), and a value is read through the SIGBUS guard (``store``,
    ``read`` and the bulk copies already are for every kind): MappedRegionError."""

    plain = False
    __slots__ = ()

    def load(self, st: struct.Struct, at: int) -> Any:
        """The value at ``at``, read through the SIGBUS guard (MappedRegionError)."""
        if self.released:
            raise self.released_error()
        try:
            return st.unpack(_guard.read(self._base, at, st.size))[0]
        except ValueError as e:
            raise self.translate(e) from None


class HeapMemory(Memory):
    """Bytes on the Python heap: a bytearray, or any object wrapped by ``ByteBuffer.wrap``."""

    __slots__ = ("obj", "readonly")

    def __init__(self, obj: Any) -> None:
        mv = memoryview(obj)
        if not mv.c_contiguous:
            raise ValueError("wrap() needs a C-contiguous bytes-like object")
        self.obj = obj
        self.readonly = mv.readonly
        super().__init__(mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv)

    @staticmethod
    def of(obj: Any) -> HeapMemory:
        """The memory of a wrapped object: guarded (:class:`WrappedMappingMemory`)
        where its bytes may lie in a file mapping (:func:`may_lose_pages`)."""
        return (WrappedMappingMemory if may_lose_pages(obj) else HeapMemory)(obj)


class WrappedMappingMemory(GuardedMemory, HeapMemory):
    """A wrapped object whose bytes may be a file mapping (an ``mmap`` of a file, a
    numpy ``memmap``, an Arrow buffer of a mapped file...): heap memory to the API
    (``array()`` is the object), behind the SIGBUS guard like a ``MappedByteBuffer``."""

    __slots__ = ()


def may_lose_pages(obj: Any) -> bool:
    """Whether the bytes of ``obj`` may lie in a file mapping (whose owner can take
    pages away by truncating the file: an access is then SIGBUS).

    ``bytes``, ``bytearray``, ``array.array`` and a numpy array owning its data: no;
    an ``mmap``: if it maps a file (an anonymous one has none to stat); a memoryview,
    a PickleBuffer or a numpy array over another object: what that object is; any
    other exporter: what ``/proc/self/maps`` says of the mappings its bytes span (any
    with an inode is a file's: a regular file, a memfd, ``/dev/shm``); unknown: yes.
    Syscalls: ``fstat`` for an mmap; ``open``/``read``/``close`` of ``/proc/self/maps``
    for an exporter of another kind.
    """
    for _ in range(64):  # a chain of views over views, bounded
        kind = type(obj)
        if kind is bytes or kind is bytearray or kind is array.array:
            return False
        if isinstance(obj, mmap.mmap):
            try:
                obj.size()  # fstat of its file
            except (OSError, ValueError):  # anonymous (no file), or closed
                return False
            return True
        if hasattr(kind, "__array_interface__") and hasattr(kind, "base"):  # numpy
            if obj.base is None:
                return False  # owns its data: allocated by numpy
            obj = obj.base
            continue
        with memoryview(obj) as mv:
            inner = mv.obj
        if inner is None or inner is obj or not _exports(inner):
            break  # (3.12+: a Python class's __buffer__ shows an internal wrapper)
        obj = inner
    return _file_backed(obj)


def _exports(obj: Any) -> bool:
    """Whether ``obj`` gives a buffer (one export, let go at once)."""
    try:
        memoryview(obj).release()
    except TypeError:
        return False
    return True


def _file_backed(obj: Any) -> bool:
    """Whether any of ``obj``'s bytes lies in a mapping with an inode, or where the
    kernel lists no mapping (cannot tell: guard it).  Every mapping the bytes span is
    asked, not the first byte's only: an exporter may span an anonymous mapping and a
    file's (one ``mmap`` placed over part of another, MAP_FIXED)."""
    with memoryview(obj) as mv:  # one export for both
        address = buffer_address(mv)
        end = address + mv.nbytes
    if not address or end == address:
        return False  # empty: no byte to lose
    covered = address  # the bytes below this lie in mappings without an inode
    try:
        with open("/proc/self/maps", "rb") as f:  # the kernel writes it as it is read
            rest = b""
            while chunk := f.read(65536):
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:  # in address order
                    fields = line.split(maxsplit=5)
                    lo, _, hi = fields[0].partition(b"-")
                    if int(hi, 16) <= covered:
                        continue
                    if int(lo, 16) > covered or (len(fields) > 4 and fields[4] != b"0"):
                        return True  # a gap in the listing, or a file's pages
                    covered = int(hi, 16)
                    if covered >= end:
                        return False
    except OSError:
        pass
    return True  # not found, or cannot tell: guard it


def _unmap_accounting(capacity: int, used: int) -> None:
    unreserve_direct(capacity, used)


def unmap(mm: mmap.mmap | None) -> bool:
    """Close (munmap) a direct or mapped block's mmap: True once it is gone (or there
    was none), False while a view the user holds (an export) keeps it mapped.  Then the
    mmap unmaps itself when that view dies, and the block's finalizer (its accounting)
    runs then, not now."""
    if mm is None:
        return True
    try:
        mm.close()
    except BufferError:
        return False
    return True


class DirectMemory(Memory):
    """Off-heap memory: a private anonymous mapping, page-aligned and zero-filled.

    Syscalls: ``mmap(MAP_PRIVATE|MAP_ANONYMOUS)`` on allocation, ``munmap`` when the
    last view is gone.  Counted in the ``direct`` pool from reservation to unmap.
    """

    direct = True
    __slots__ = ("_mmap", "_finalizer", "_address")
    #: Unmaps and gives back the accounting, once: a ``weakref.finalize`` of the mmap.
    _finalizer: Callable[[], object]

    def __init__(self, capacity: int) -> None:
        used = round_to_pages(capacity) if capacity else 0
        reserve_direct(capacity, used)
        mm: mmap.mmap | None = None
        try:
            if capacity:
                mm = mmap.mmap(-1, used, flags=mmap.MAP_PRIVATE)
                base = memoryview(mm)[:capacity]
            else:
                base = memoryview(bytearray())
        except BaseException:
            unreserve_direct(capacity, used)
            raise
        self._mmap = mm
        super().__init__(base)
        self._address = -1  # looked up on first use: only alignment and O_DIRECT need it
        # The cleaner holds only the numbers it gives back, never the memory object.
        target: object = mm if mm is not None else self
        finalizer = weakref.finalize(target, _unmap_accounting, capacity, used)
        finalizer.atexit = False
        self._finalizer = finalizer

    def address(self) -> int:
        if self.released:
            raise self.released_error()
        if self._address < 0:
            self._address = buffer_address(self._base) if self.size else 0
            assert self._address % PAGE_SIZE == 0, "anonymous mappings are page-aligned"
        return self._address

    def _free(self) -> None:
        mm, self._mmap = self._mmap, None
        if unmap(mm):
            self._finalizer()
