"""Process-wide locks that a forked child must not inherit held.

``os.fork()`` copies the process with one thread.  A lock that another thread held at
that instant stays held in the child for good, and the child's first zcio call that
needs it would wait forever.  On Linux, multiprocessing's default start method before
Python 3.14 is fork, so "another thread was inside zcio when a worker process started"
is an ordinary event, not a corner case.  Every process-wide lock of zcio is made with
:func:`fork_safe`, and each is reinitialised (free) in the child, as the standard
library does for its own (logging, concurrent.futures, the import lock).

What such a lock guarded may have been mid-update by the parent's other thread: the
child sees the counts and lists as they were at that instant.  The accounting allows
for it.  Removals are queued and applied by the lock's next holder, and a pool's slots
belong to the thread that took them, which does not exist in the child.  At worst a
count is off by the one update in flight.  The alternative is a child that hangs.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, TypeVar

__all__ = ["fork_safe"]


LockT = TypeVar("LockT")

#: Every lock given to fork_safe and still alive (each has ``_at_fork_reinit``, the
#: standard library's own way to free a lock in a forked child).
_locks: weakref.WeakSet[Any] = weakref.WeakSet()


def fork_safe(lock: LockT) -> LockT:
    """``lock`` (a threading Lock, RLock or Condition), made free again in a forked
    child; kept only as long as its owner keeps it."""
    _locks.add(lock)
    return lock


def _reinit_in_child() -> None:
    for lock in list(_locks):
        lock._at_fork_reinit()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_in_child)
