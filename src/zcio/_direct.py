"""Direct-memory accounting: the pools, the cap, and reservation with gc-and-retry.

This is Java's ``java.nio.Bits`` and ``BufferPoolMXBean`` for zcio.  Three pools exist:
``direct`` (``allocate_direct`` and, later, pooled arenas), ``mapped`` (file mappings)
and ``shared`` (this process's mappings of memfds: ``allocate_shared`` and shared
buffers received from other processes, see ``zcio._shared``).  Each counts buffers,
their total capacity and the memory really used (capacity rounded up to whole pages,
since that is what the kernel maps).

The cap (Java's ``-XX:MaxDirectMemorySize``) bounds the ``direct`` pool's memory used.
It comes from ``set_max_direct_memory(n)``, else the environment variable
``ZCIO_MAX_DIRECT_MEMORY`` read at import (``"512m"``, ``"2g"``, ``"65536"``), else a
quarter of physical memory (the JVM's default heap size, which is also its default
direct-memory cap).  Neither ``mapped`` nor ``shared`` counts against it: both map
files (a memfd is a file in memory) whose pages outlive this process's mapping while
another process holds them, so no one process's cap can govern them; the kernel's
memory limits (cgroups) do.
"""

from __future__ import annotations

import gc
import mmap
import os
import re
import threading
import time
import warnings
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from ._errors import IllegalArgumentError, OutOfDirectMemoryError
from ._fork import fork_safe

__all__ = [
    "BufferPoolInfo",
    "buffer_pools",
    "max_direct_memory",
    "set_max_direct_memory",
    "parse_size",
    "PAGE_SIZE",
    "register_pool_source",
]

PAGE_SIZE = mmap.PAGESIZE

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)

# Backoff after gc.collect(), as Bits.reserveMemory sleeps 1, 2, 4... ms while it waits
# for cleaners run by other threads; shorter in total (63 ms) than Java's 511 ms.
_RETRY_SLEEPS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032)


def parse_size(text: str) -> int:
    """Parse a size like the JVM's flags: ``"65536"``, ``"64k"``, ``"512m"``, ``"2G"``.

    Suffixes are binary (k = 1024) and may be followed by ``b`` or ``ib``.
    Raises IllegalArgumentError for anything else; TypeError for a non-str.
    """
    if not isinstance(text, str):
        raise TypeError(f"size must be a str, not {type(text).__name__}")
    m = _SIZE_RE.fullmatch(text)
    if m is None:
        raise IllegalArgumentError(f"not a size: {text!r} (expected e.g. 65536, 64k, 512m, 2g)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def round_to_pages(n: int) -> int:
    """``n`` rounded up to a whole number of pages."""
    return -(-n // PAGE_SIZE) * PAGE_SIZE


@dataclass(frozen=True)
class BufferPoolInfo:
    """A snapshot of one pool, as Java's BufferPoolMXBean reports it."""

    #: ``"direct"``, ``"mapped"``, or a PooledAllocator's name (``"pooled"``) and its
    #: thread caches (``"pooled-cache"``).
    name: str
    #: Buffers (or slots) in the pool.
    count: int
    #: Their capacities added up, in bytes.
    total_capacity: int
    #: The memory really used, in bytes: whole pages, since that is what is mapped.
    memory_used: int


class _Pool:
    """Counters of one pool; every change happens under the pool's lock.

    Removals come from finalizers (``weakref.finalize`` of a mapping), which the garbage
    collector may run in the middle of any Python code of any thread, including code
    of this class holding the lock (3.12+ collect at any bytecode boundary): a
    finalizer that waited for the lock would wait for its own thread forever.  So
    :meth:`remove` never takes the lock: it queues the removal, and whoever takes the
    lock next applies the queue (``_settle``) before reading or changing a figure.
    Every figure read under the lock is exact.  (Taking the lock when free, as remove
    once did, left it held for good when a signal handler raised between the acquire
    and the ``try`` that released it.)
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.total_capacity = 0
        self.memory_used = 0
        self.lock = fork_safe(threading.Lock())
        self._removed: deque[tuple[int, int]] = deque()  # append/popleft: atomic

    def add(self, capacity: int, used: int) -> None:
        with self.lock:
            self._add_locked(capacity, used)

    def _add_locked(self, capacity: int, used: int) -> None:
        self._settle()
        self.count += 1
        self.total_capacity += capacity
        self.memory_used += used

    def _settle(self) -> None:
        """Apply the queued removals (the lock held)."""
        removed = self._removed
        while removed:
            capacity, used = removed.popleft()
            self.count -= 1
            self.total_capacity -= capacity
            self.memory_used -= used

    def remove(self, capacity: int, used: int) -> None:
        """Count one buffer of ``capacity`` (``used``) bytes out: queued, applied by
        the next holder of the lock (see the class docstring)."""
        self._removed.append((capacity, used))

    def snapshot(self) -> BufferPoolInfo:
        with self.lock:
            self._settle()
            return BufferPoolInfo(self.name, self.count, self.total_capacity, self.memory_used)


DIRECT = _Pool("direct")
MAPPED = _Pool("mapped")
SHARED = _Pool("shared")


def _default_cap() -> int:
    env = os.environ.get("ZCIO_MAX_DIRECT_MEMORY")
    if env:
        try:
            return parse_size(env)
        except IllegalArgumentError as e:  # importing zcio must not fail on a typo
            warnings.warn(f"ZCIO_MAX_DIRECT_MEMORY ignored: {e}", stacklevel=2)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError):  # pragma: no cover - sysconf names exist on Linux
        return 1 << 30


_max_direct = _default_cap()


def max_direct_memory() -> int:
    """The cap on the ``direct`` pool's memory used, in bytes."""
    return _max_direct


def set_max_direct_memory(n: int | str) -> None:
    """Set the cap on direct memory (bytes, or a size string like ``"512m"``).

    Memory already reserved stays reserved; a lower cap only refuses new reservations.
    TypeError for anything but an integer or a str (a float or a bool included).
    """
    from ._buffer import check_int  # _buffer imports this module (through _memory)

    global _max_direct
    size = parse_size(n) if isinstance(n, str) else check_int(n, "direct-memory cap")
    if size < 0:
        raise IllegalArgumentError(f"negative direct-memory cap: {size}")
    _max_direct = size


def _try_reserve(capacity: int, used: int) -> bool:
    with DIRECT.lock:
        DIRECT._settle()
        if DIRECT.memory_used + used > _max_direct:
            return False
        DIRECT._add_locked(capacity, used)
        return True


def reserve_direct(capacity: int, used: int) -> None:
    """Count ``used`` bytes against the cap, or raise OutOfDirectMemoryError.

    As ``Bits.reserveMemory``: try; on failure collect garbage (whose finalizers free
    unreachable direct buffers) and retry, then retry with a short backoff while other
    threads release; then give up with the numbers.
    """
    if _try_reserve(capacity, used):
        return
    gc.collect()
    if _try_reserve(capacity, used):
        return
    for pause in _RETRY_SLEEPS:
        time.sleep(pause)
        if _try_reserve(capacity, used):
            return
    snap = DIRECT.snapshot()
    raise OutOfDirectMemoryError(
        f"cannot reserve {used} bytes of direct memory (allocated: {snap.memory_used}, "
        f"limit: {_max_direct}; set_max_direct_memory() or ZCIO_MAX_DIRECT_MEMORY)"
    )


def unreserve_direct(capacity: int, used: int) -> None:
    """Give back what :func:`reserve_direct` took."""
    DIRECT.remove(capacity, used)


class PoolSource(Protocol):
    """Anything that reports pools of its own (a PooledAllocator)."""

    def pool_infos(self) -> list[BufferPoolInfo]: ...


_sources: weakref.WeakSet[Any] = weakref.WeakSet()


def register_pool_source(source: PoolSource) -> None:
    """Have ``buffer_pools()`` list ``source``'s pools too, while it lives."""
    _sources.add(source)


def buffer_pools() -> list[BufferPoolInfo]:
    """Snapshots of the ``direct``, ``mapped`` and ``shared`` pools (Java's
    BufferPoolMXBean list, plus memory shared between processes), then the pools of
    every live PooledAllocator (``pooled``: live buffers, their capacity and the slab
    memory mapped; ``pooled-cache``: slots in thread caches).

    Pooled slabs also count in ``direct``, as Netty's chunks do in the JVM.
    """
    pools = [DIRECT.snapshot(), MAPPED.snapshot(), SHARED.snapshot()]
    for source in list(_sources):
        pools.extend(source.pool_infos())
    return pools
