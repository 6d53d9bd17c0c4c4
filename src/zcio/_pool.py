"""Pooled direct buffers, in the spirit of Netty's PooledByteBufAllocator.

Memory comes from large page-aligned slabs (anonymous ``mmap``, ``chunk_size`` bytes,
default 4 MiB), each carved into equal slots of one size class.  Size classes follow
jemalloc and Netty: four steps per power of two (16, 20, 24, 28, 32, 40, 48 ... bytes),
so a request wastes at most a quarter.  Requests above ``chunk_size`` are served
unpooled (a plain direct buffer).  Every slab counts in the ``direct`` pool and against
the direct-memory cap, as Netty's chunks do in the JVM.

A per-thread cache keeps recently freed slots of each class (bounded: ``cache_size``
per class, classes up to ``max_cached_capacity``), so an allocate/release pair in one
thread takes no lock.  A dead thread's cache returns its slots to the arena.

Pooled buffers are reference-counted with Netty's rules (``retain``, ``release``,
``ref_cnt``; misuse raises IllegalReferenceCountError) and watched by the leak detector.
**A slot is never reused while anything can reach it**: each slot is exported through
its own ctypes object, whose reference count tells whether a memoryview the user sliced
or handed to numpy still holds it (or a buffer-protocol export: ``memoryview(buf)``,
``numpy.frombuffer(buf)``); such a slot waits in quarantine until it is free, and leaves
it as soon as an export of it is let go, or on the next allocation that needs a slot.
Slabs left entirely free are unmapped (``trim()``, and automatically on release while
another slab of the class has room).
"""

from __future__ import annotations

import ctypes
import inspect
import mmap
import sys
import threading
import weakref
from collections import deque
from typing import Any

from . import _leak
from ._accel import native, text_signature
from ._buffer import Buffer, check_int
from ._byte_buffer import ByteBuffer, check_capacity
from ._direct import BufferPoolInfo, register_pool_source, reserve_direct, unreserve_direct
from ._errors import IllegalArgumentError
from ._fork import fork_safe
from ._memory import _RC_LOCK, DirectMemory, HeapMemory, Memory, buffer_address

__all__ = ["PooledAllocator", "size_class", "slab_length"]

_MIN_CLASS = 16


def size_class(n: int) -> tuple[int, int]:
    """(index, size) of the smallest class holding ``n`` bytes: 4 steps per power of two."""
    known = _CLASS_MEMO.get(n)
    if known is not None:
        return known
    if len(_CLASS_MEMO) < 4096:  # sizes repeat; the arithmetic costs ~150 ns
        _CLASS_MEMO[n] = _size_class(n)
    return _size_class(n)


_CLASS_MEMO: dict[int, tuple[int, int]] = {}


def _size_class(n: int) -> tuple[int, int]:
    if n <= _MIN_CLASS:
        return 0, _MIN_CLASS
    k = (n - 1).bit_length()  # 2**(k-1) < n <= 2**k
    base = 1 << (k - 1)
    step = base >> 2
    q = -(-(n - base) // step)  # 1..4
    return (k - 5) * 4 + q, base + q * step


#: At most this many slots per slab (each slot is a Python object): small classes get
#: small slabs (a page of 16-byte slots, not 262,144 of them in a 4 MiB chunk).
_MAX_SLOTS = 256


def slab_length(size: int, chunk_size: int) -> int:
    """Bytes mapped for one slab of ``size``-byte slots: a chunk, or less for small
    classes (at most _MAX_SLOTS slots, but at least a page's worth)."""
    slots = max(1, min(chunk_size // size, max(_MAX_SLOTS, mmap.PAGESIZE // size)))
    return slots * size


class _Slab:
    """One mmap carved into ``slots`` slots of ``size`` bytes, all of one class."""

    __slots__ = ("mm", "size", "slots", "free", "length", "members", "_finalizer",
                 "__weakref__")

    def __init__(self, size: int, chunk_size: int) -> None:
        self.size = size
        self.length = slab_length(size, chunk_size)
        self.slots = self.length // size
        self.members: list[_Slot] = []
        reserve_direct(self.length, self.length)
        try:
            self.mm: mmap.mmap | None = mmap.mmap(-1, self.length, flags=mmap.MAP_PRIVATE)
        except BaseException:
            unreserve_direct(self.length, self.length)
            raise
        # Given back when unmapped, or when the mmap dies with a collected allocator.
        self._finalizer = weakref.finalize(self.mm, unreserve_direct, self.length, self.length)
        self._finalizer.atexit = False
        self.free = 0  # slots of this slab in the arena's free list

    def unmap(self) -> bool:
        """Drop every slot's export, then unmap; False (still mapped) if something else
        still holds a slot's memory, in which case the caller keeps the slab."""
        mm = self.mm
        if mm is None:
            return True
        for slot in self.members:
            slot.arr = None  # the ctypes arrays are the slab's only exports
        try:
            mm.close()
        except BufferError:  # pragma: no cover - every slot was free: nothing holds them
            for slot in self.members:
                slot.export(mm)
            return False
        self.mm = None
        self._finalizer()
        return True


class _Slot:
    """A slot of a slab, exported through its own ctypes array.

    The array's reference count is ``base_refs`` while nothing but the pool holds it;
    above that, some memoryview (perhaps one the user sliced further) can still reach
    the memory.
    """

    __slots__ = ("slab", "index", "klass", "arr", "base_refs", "__weakref__")

    def __init__(self, slab: _Slab, index: int) -> None:
        self.slab = slab
        self.index = index
        self.klass = size_class(slab.size)[0]
        assert slab.mm is not None
        self.export(slab.mm)

    def export(self, mm: mmap.mmap) -> None:
        """(Re)create the slot's own exporter over its bytes of the slab: a ctypes
        array, or the compiled accelerator's ``SlotExport`` (flat bytes, no format
        string to build per allocation), each holding an export of the slab."""
        size = self.slab.size
        if native is None:
            self.arr: Any = (ctypes.c_char * size).from_buffer(mm, self.index * size)
        else:
            self.arr = native.SlotExport(mm, self.index * size, size)
        self.base_refs = sys.getrefcount(self.arr)

    def reachable(self) -> bool:
        return sys.getrefcount(self.arr) > self.base_refs


class HugeMemory(DirectMemory):
    """A request above ``chunk_size``: a mapping of its own, never pooled, counted as
    the pool's buffers are (strict: a release past zero raises, as Netty's huge
    allocations, which are pooled buffers over an unpooled chunk)."""

    strict = True
    __slots__ = ()


class PooledMemory(Memory):
    """A slot lent to one allocation; strict reference counting; returns on release."""

    direct = True
    strict = True
    __slots__ = ("_slot", "_alloc", "_record", "_address")

    def __init__(self, alloc: PooledAllocator, slot: _Slot, record: _leak.LeakRecord | None
                 ) -> None:
        super().__init__(memoryview(slot.arr).cast("B"))
        self._slot: _Slot | None = slot
        self._alloc = alloc
        self._record = record
        self._address = -1

    def address(self) -> int:
        if self.released:
            raise self.released_error()
        if self._address < 0:
            self._address = buffer_address(self._base)
        return self._address

    def retain(self, n: int = 1) -> None:
        super().retain(n)
        if self._record is not None:
            self._record.record(f"retain({n})")

    def release(self, n: int = 1) -> bool:
        if self._record is not None:
            self._record.record(f"release({n})")
        return super().release(n)

    def touch(self, hint: object) -> None:
        self.record(f"touch({hint!r})")

    def record(self, what: str) -> None:
        if self._record is not None:
            self._record.record(what)

    def _free(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            self._alloc._recycle(slot, self.size)

    def _reclaim(self) -> None:
        self._alloc._reclaim()

    def __del__(self) -> None:
        slot = self._slot
        if slot is None or self.released:
            return
        # Collected with references outstanding: a leak.  Report it if sampled, and
        # give the slot back (quarantined while a view can still reach it).
        self.released = True
        self._slot = None
        try:
            self._alloc._recycle(slot, self.size, collected=True)  # first: may raise
        except Exception:  # interpreter shutdown: modules may be gone; nothing to save
            return
        if self._record is not None:
            self._record.report(f"pooled buffer of {self.size} bytes (refCnt {self.refcnt})")


class _ThreadCache:
    """Per-thread free lists, one per cached class; returned to the arena at thread exit.

    It also counts this thread's allocations and releases (no lock needed: only its
    thread writes them); the allocator sums them over threads for ``pool_infos``.
    """

    __slots__ = ("lists", "counts", "__weakref__")

    def __init__(self, classes: int) -> None:
        self.lists: list[list[_Slot]] = [[] for _ in range(classes)]
        self.counts = [0, 0]  # buffers allocated - released here, their bytes


class PooledAllocator:
    """Pooled direct ByteBuffers with reference counts; see the module docstring."""

    _default: PooledAllocator | None = None
    _default_lock = fork_safe(threading.Lock())

    def __init__(self, chunk_size: int = 4 << 20, max_cached_capacity: int = 1 << 20,
                 cache_size: int = 64, name: str = "pooled") -> None:
        """An allocator; ``name`` labels its entries in ``zcio.buffer_pools()``."""
        self.name = name
        chunk_size = check_int(chunk_size, "chunk_size")
        max_cached_capacity = check_int(max_cached_capacity, "max_cached_capacity")
        cache_size = check_int(cache_size, "cache_size")
        if chunk_size < mmap.PAGESIZE or chunk_size & (chunk_size - 1):
            raise IllegalArgumentError(f"chunk_size must be a power of two >= page size: "
                                       f"{chunk_size}")
        if max_cached_capacity < 0 or cache_size < 0:
            raise IllegalArgumentError("cache limits must be >= 0")
        self.chunk_size = chunk_size
        self.max_cached_capacity = min(max_cached_capacity, chunk_size)
        self.cache_size = cache_size
        self._sizes = _class_sizes(chunk_size)
        self._cached_classes = size_class(self.max_cached_capacity)[0] + 1
        self._lock = fork_safe(threading.Lock())
        self._free: list[list[_Slot]] = [[] for _ in self._sizes]
        self._slabs: list[list[_Slab]] = [[] for _ in self._sizes]
        self._quarantine: list[_Slot] = []
        self._collected: deque[_Slot] = deque()  # from __del__ without the lock
        self._orphaned: deque[tuple[int, int]] = deque()  # dead caches' counts, likewise
        self._local = threading.local()
        self._caches: weakref.WeakSet[_ThreadCache] = weakref.WeakSet()
        self._live = self._live_bytes = 0
        register_pool_source(self)

    @classmethod
    def default(cls) -> PooledAllocator:
        """The process-wide allocator, created on first use."""
        if cls._default is None:
            with cls._default_lock:
                if cls._default is None:
                    cls._default = cls()
        return cls._default

    # -- allocation ------------------------------------------------------------------

    def allocate(self, capacity: int) -> ByteBuffer:
        """A zero-position direct ByteBuffer of ``capacity`` bytes, reference count 1.

        Its content is whatever the slot held before (as Netty's pooled buffers), not
        zeros; ``release()`` gives it back.  Above ``chunk_size``: unpooled.
        """
        capacity = check_capacity(capacity)
        if capacity > self.chunk_size:
            return self._huge(capacity)
        index, klass = size_class(capacity)
        cache = self._cache()
        free = cache.lists[index] if index < self._cached_classes else None
        slot = free.pop() if free else self._take(index)
        mem = PooledMemory(self, slot, _leak.track())
        counts = cache.counts
        counts[0] += 1
        counts[1] += capacity
        mem.size = capacity
        # A request that fills its class uses the block's own view: no slice to make.
        view = mem._base if capacity == klass else None
        return ByteBuffer._make(mem, 0, capacity, 0, capacity, mv=view)

    def _huge(self, capacity: int) -> ByteBuffer:
        mem = HugeMemory(capacity)
        return ByteBuffer._make(mem, 0, capacity, 0, capacity)

    def _cache(self) -> _ThreadCache:
        cache: _ThreadCache | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = _ThreadCache(self._cached_classes)
            with self._lock:
                self._caches.add(cache)
            weakref.finalize(cache, _absorb_into, weakref.ref(self), cache.lists,
                             cache.counts).atexit = False
        return cache

    def _take(self, index: int) -> _Slot:
        with self._lock:
            free = self._free[index]  # (classes past the cached ones come straight here)
            if (self._quarantine or self._collected) and not free:  # when it could help
                self._drain_quarantine()
            if free:
                slot = free.pop()
                slot.slab.free -= 1
                return slot
        slab = _Slab(self._sizes[index], self.chunk_size)  # may raise OutOfDirectMemory
        slots = slab.members = [_Slot(slab, i) for i in range(slab.slots)]
        with self._lock:
            self._slabs[index].append(slab)
            self._free[index].extend(slots[1:])
            slab.free = len(slots) - 1
        return slots[0]

    # -- release ----------------------------------------------------------------------

    def _recycle(self, slot: _Slot, capacity: int, collected: bool = False) -> None:
        """Take a slot back: to this thread's cache, the arena, or quarantine.

        ``collected``: called from a leaked buffer's ``__del__``, which the garbage
        collector can run while this very thread holds the lock (a deadlock if it
        waited): then the slot goes to ``_collected`` without the lock, and into
        quarantine (which checks it again) the next time the lock is taken for it.
        """
        # A collected slot never makes this thread a cache: that takes the lock (and a
        # dying thread, whose cache is already gone, would only orphan a new one).  It
        # is counted out through _orphaned, as a dead cache's counts are.
        cache = getattr(self._local, "cache", None) if collected else self._cache()
        index = slot.klass
        if cache is None:
            self._orphaned.append((-1, -capacity))  # deque.append: atomic
        else:
            counts = cache.counts
            counts[0] -= 1
            counts[1] -= capacity
            if not slot.reachable() and index < self._cached_classes:
                lists = cache.lists[index]
                if len(lists) < self.cache_size:
                    lists.append(slot)
                    return
        if collected:
            if not self._lock.acquire(blocking=False):
                self._collected.append(slot)  # deque.append: atomic
                return
        else:
            self._lock.acquire()
        try:
            if slot.reachable():
                self._quarantine.append(slot)
            else:
                self._give_back(index, slot)
        finally:
            self._lock.release()

    def _give_back(self, index: int, slot: _Slot) -> None:
        """Return a slot to the arena (lock held); unmap its slab if that empties it
        while another slab of the class still has room."""
        slab = slot.slab
        self._free[index].append(slot)
        slab.free += 1
        if slab.free == slab.slots and any(
                s is not slab and s.free for s in self._slabs[index]):
            self._unmap(index, slab)

    def _unmap(self, index: int, slab: _Slab) -> None:
        """Unmap an entirely free slab (lock held); kept if its memory is still held."""
        keep = [s for s in self._free[index] if s.slab is not slab]
        if slab.unmap():
            self._free[index][:] = keep  # in place: _take may hold this list
            self._slabs[index].remove(slab)

    def _reclaim(self) -> None:
        """An export of a released slot was let go: rescan the quarantine now, so the
        slot is reusable (and its slab can be trimmed) without waiting for a need.

        Skipped if the lock is taken: this runs from CPython's buffer release, which
        garbage collection can reach while this very thread holds the lock; the
        quarantine is then drained by the next ``_take`` or ``trim`` as before.
        """
        if not (self._quarantine or self._collected) or not self._lock.acquire(
                blocking=False):
            return
        try:
            self._drain_quarantine()
        finally:
            self._lock.release()

    def _drain_quarantine(self) -> None:
        """Give back every quarantined slot nothing can reach any more (lock held)."""
        collected = self._collected
        while collected:
            self._quarantine.append(collected.popleft())
        waiting, self._quarantine = self._quarantine, []
        for slot in waiting:
            if slot.reachable():
                self._quarantine.append(slot)
            else:
                self._give_back(slot.klass, slot)

    def _absorb(self, lists: list[list[_Slot]], counts: list[int] | None = None,
                collected: bool = False) -> None:
        """A thread's cache emptied (or died): its slots go back to the arena, and a dead
        thread's counts into the allocator's own.

        ``collected``: called from a dead cache's finalizer, which can run wherever its
        last reference goes (a thread's teardown, the garbage collector at any
        allocation, also while this very thread holds the lock): then, if the lock is
        taken, the slots go to ``_collected`` and the counts to ``_orphaned`` without
        it, folded in the next time the lock is taken for them (as ``_recycle`` does).
        """
        if collected and not self._lock.acquire(blocking=False):
            for slots in lists:
                self._collected.extend(slots)  # deque.extend of a list: atomic
                slots.clear()
            if counts is not None:
                self._orphaned.append((counts[0], counts[1]))
            return
        if not collected:
            self._lock.acquire()
        try:
            for index, slots in enumerate(lists):
                for slot in slots:
                    self._give_back(index, slot)
                slots.clear()
            if counts is not None:
                self._live += counts[0]
                self._live_bytes += counts[1]
            self._fold_orphans()
        finally:
            self._lock.release()

    def _fold_orphans(self) -> None:
        """Add the counts of caches that died while the lock was taken (lock held)."""
        orphaned = self._orphaned
        while orphaned:
            count, nbytes = orphaned.popleft()
            self._live += count
            self._live_bytes += nbytes

    # -- trimming and accounting -------------------------------------------------------

    def trim(self) -> None:
        """Empty this thread's cache and unmap every slab that is entirely free."""
        cache: _ThreadCache | None = getattr(self._local, "cache", None)
        if cache is not None:
            self._absorb(cache.lists)
        with self._lock:
            self._drain_quarantine()
            for index, slabs in enumerate(self._slabs):
                for slab in [s for s in slabs if s.free == s.slots]:
                    self._unmap(index, slab)

    def pool_infos(self) -> list[BufferPoolInfo]:
        """This allocator as BufferPoolInfo entries: live buffers, and thread caches."""
        with self._lock:
            self._fold_orphans()
            mapped = sum(s.length for slabs in self._slabs for s in slabs)
            caches = list(self._caches)
            cached = [slot for c in caches for lst in c.lists for slot in lst]
            live = self._live + sum(c.counts[0] for c in caches)
            live_bytes = self._live_bytes + sum(c.counts[1] for c in caches)
            return [
                BufferPoolInfo(self.name, live, live_bytes, mapped),
                BufferPoolInfo(f"{self.name}-cache", len(cached),
                               sum(s.slab.size for s in cached), 0),
            ]

    def __repr__(self) -> str:
        live, cache = self.pool_infos()
        return (f"zcio.PooledAllocator[chunk={self.chunk_size} live={live.count} "
                f"mapped={live.memory_used} cached={cache.count}]")


def _absorb_into(ref: weakref.ref[PooledAllocator], lists: list[list[_Slot]],
                 counts: list[int]) -> None:
    """A dead thread's cache: give its slots and counts back, if the allocator lives;
    never waits for the allocator's lock (see ``_absorb``)."""
    alloc = ref()
    if alloc is not None:
        alloc._absorb(lists, counts, collected=True)


def _class_sizes(chunk_size: int) -> list[int]:
    """Every class size up to ``chunk_size``, by index: 16, then 4 steps per doubling."""
    sizes = [_MIN_CLASS]
    k = 5
    while sizes[-1] < chunk_size:
        base, step = 1 << (k - 1), 1 << (k - 3)
        sizes.extend(base + q * step for q in range(1, 5))
        k += 1
    return sizes[: size_class(chunk_size)[0] + 1]


#: The Python methods the compiled pool replaced: its reference and slow paths.
POOL_REFERENCE: dict[str, Any] = {}


def _accelerate() -> None:
    """Hand the pool's hot path to ``zcio._native`` (``native/pool.c``): ``allocate``
    from this thread's cache when no leak sample is due; ``Buffer.release``, ``retain``
    and ``__exit__`` on pooled memory with no leak record; ``PooledMemory.__del__`` once
    released.  Everything else runs the Python methods, kept in ``POOL_REFERENCE``."""
    if native is None:
        return
    POOL_REFERENCE.update(allocate=PooledAllocator.allocate, release=Buffer.release,
                          retain=Buffer.retain, __exit__=Buffer.__exit__,
                          __del__=PooledMemory.__del__)
    docs = {name: f"{text_signature(fn)}\n--\n\n{inspect.getdoc(fn)}"
            for name, fn in POOL_REFERENCE.items() if fn.__doc__}
    proto = ByteBuffer._make(HeapMemory(bytearray()), 0, 0, 0, 0)  # what _make sets
    fixed = {name: getattr(proto, name)
             for name in ("_off", "_pos", "_mark", "_ro", "_order", "_c", "_i32")}
    native.accelerate_pool(PooledAllocator, PooledMemory, Buffer, ByteBuffer, _Slot,
                           _ThreadCache, fixed, _leak, _leak.LeakLevel.DISABLED,
                           _leak.LeakLevel.PARANOID, _RC_LOCK, docs)


_accelerate()
