"""Copy accounting: the posts' claim made measurable.

Every channel operation records, under the name of the path that ran (``"sendfile"``,
``"splice"``, ``"copy_file_range"``, ``"read_write"``, ``"file_read"``...):

* ``operations``: calls of the public API that took this path;
* ``syscalls``: system calls made, including ones that moved nothing (EAGAIN, EOF);
* ``kernel_bytes``: bytes moved without entering user space (sendfile, splice...);
* ``user_bytes``: bytes copied across the user/kernel boundary, counted each time they
  cross (a read/write relay of n bytes counts 2n: in by ``read``, out by ``write``).

The counters are process-wide, always on, and cost one lock and a few additions per
operation.  ``measure()`` adds what the kernel says the process spent around a block:
CPU time and voluntary/involuntary context switches (``getrusage``).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator, MutableSequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ._accel import native
from ._buffer import check_int
from ._fork import fork_safe
from ._lock import new_lock

__all__ = ["PathStats", "Metrics", "metrics", "Measurement", "measure"]


@dataclass(frozen=True)
class PathStats:
    """What one path did since the last reset."""

    #: The path's name (``"sendfile"``, ``"read_write"``, ``"file_read"``...).
    path: str
    #: Calls of the public API that took this path.
    operations: int = 0
    #: System calls made, including ones that moved nothing (EAGAIN, end of stream).
    syscalls: int = 0
    #: Bytes moved without entering user space.
    kernel_bytes: int = 0
    #: Bytes copied across the user/kernel boundary, counted each time they cross.
    user_bytes: int = 0

    def __sub__(self, other: PathStats) -> PathStats:
        return PathStats(
            self.path,
            self.operations - other.operations,
            self.syscalls - other.syscalls,
            self.kernel_bytes - other.kernel_bytes,
            self.user_bytes - other.user_bytes,
        )


#: A new path's four counters: the accelerator's ``Counts`` (a sequence of four ints
#: that the compiled paths add to without making an int, ``native/io.c``), else a list.
_new_counts: Callable[[], MutableSequence[int]] = (
    native.Counts if native is not None else lambda: [0, 0, 0, 0])


class Metrics:
    """Process-wide counters per path; thread-safe."""

    def __init__(self) -> None:
        self._lock = fork_safe(new_lock())  # tested by native/io.c too
        self._counts: dict[str, MutableSequence[int]] = {}

    def record(
        self,
        path: str,
        syscalls: int = 1,
        kernel_bytes: int = 0,
        user_bytes: int = 0,
        operations: int = 1,
    ) -> None:
        """Add one operation's figures to ``path`` (TypeError for a non-integer figure)."""
        if not (type(syscalls) is type(kernel_bytes) is type(user_bytes)
                is type(operations) is int):  # the checks cost nothing on the I/O paths
            syscalls = check_int(syscalls, "syscalls")
            kernel_bytes = check_int(kernel_bytes, "kernel_bytes")
            user_bytes = check_int(user_bytes, "user_bytes")
            operations = check_int(operations, "operations")
        with self._lock:
            c = self._counts.get(path)
            if c is None:
                c = self._counts[path] = _new_counts()
            c[0] += operations
            c[1] += syscalls
            c[2] += kernel_bytes
            c[3] += user_bytes

    def snapshot(self) -> dict[str, PathStats]:
        """A copy of every path's counters."""
        with self._lock:
            return {p: PathStats(p, *c) for p, c in self._counts.items()}

    def path(self, name: str) -> PathStats:
        """The counters of one path (zeros if it never ran)."""
        with self._lock:
            c = self._counts.get(name)
            return PathStats(name, *c) if c else PathStats(name)

    def reset(self) -> None:
        """Set every counter to zero."""
        with self._lock:
            self._counts.clear()


metrics = Metrics()


@dataclass
class Measurement:
    """What a ``measure()`` block cost; filled in when the block exits."""

    #: Elapsed time (``time.perf_counter``).
    wall_seconds: float = 0.0
    #: CPU time spent in user mode (``getrusage``).
    user_cpu_seconds: float = 0.0
    #: CPU time spent in the kernel (``getrusage``).
    system_cpu_seconds: float = 0.0
    #: Context switches where the process gave up the CPU to wait (``ru_nvcsw``).
    voluntary_switches: int = 0
    #: Context switches where the scheduler took the CPU away (``ru_nivcsw``).
    involuntary_switches: int = 0
    #: What each path did during the block; only the paths that did something.
    paths: dict[str, PathStats] = field(default_factory=dict)

    @property
    def syscalls(self) -> int:
        """System calls of every path during the block, added up."""
        return sum(p.syscalls for p in self.paths.values())

    @property
    def kernel_bytes(self) -> int:
        """Bytes every path moved without entering user space, added up."""
        return sum(p.kernel_bytes for p in self.paths.values())

    @property
    def user_bytes(self) -> int:
        """Bytes every path copied across the user/kernel boundary, added up."""
        return sum(p.user_bytes for p in self.paths.values())


@contextmanager
def measure(who: int = resource.RUSAGE_SELF) -> Iterator[Measurement]:
    """Measure a block: wall time, CPU, context switches, and zcio's path counters.

    ``who`` is passed to ``getrusage`` (``RUSAGE_SELF`` or ``RUSAGE_THREAD``).  The
    path counters are process-wide, so other threads' operations show up too.

    >>> with measure() as m:
    ...     pass
    >>> m.syscalls
    0
    """
    who = check_int(who, "who")
    result = Measurement()
    before_paths = metrics.snapshot()
    r0, t0 = resource.getrusage(who), time.perf_counter()
    try:
        yield result
    finally:
        r1, t1 = resource.getrusage(who), time.perf_counter()
        result.wall_seconds = t1 - t0
        result.user_cpu_seconds = r1.ru_utime - r0.ru_utime
        result.system_cpu_seconds = r1.ru_stime - r0.ru_stime
        result.voluntary_switches = r1.ru_nvcsw - r0.ru_nvcsw
        result.involuntary_switches = r1.ru_nivcsw - r0.ru_nivcsw
        after = metrics.snapshot()
        for name, stats in after.items():
            delta = stats - before_paths.get(name, PathStats(name))
            if delta.operations or delta.syscalls:
                result.paths[name] = delta
