"""The lock that both Python code and zcio's compiled paths take.

A socket channel's read and write locks, ``zcio.metrics``'s lock and the reference
counts' lock are taken by Python code and, on the hot paths, by the accelerator's C.
Through ``threading.Lock`` each C step would be a method call (``acquire(False)``
parses a tuple of arguments; ``locked()`` is a call): about 0.2 microseconds per
channel operation, as much as the rest of its checks.  With the accelerator these locks
are ``zcio._native.Lock`` (``native/lock.c``): ``threading.Lock``'s API (``acquire``
with ``blocking`` and ``timeout``, interrupted by signals whose handlers run;
``release``, RuntimeError when not held; ``locked``; ``with``; ``_at_fork_reinit`` for
:func:`zcio._fork.fork_safe`) over a state the C takes with one try and tests with one
load.  Pure Python, they are ``threading.Lock``.
"""

from __future__ import annotations

import threading
from typing import cast

from ._accel import native

__all__ = ["new_lock"]


def new_lock() -> threading.Lock:
    """A free lock: ``zcio._native.Lock`` with the accelerator, else ``threading.Lock``."""
    if native is None:
        return threading.Lock()
    return cast(threading.Lock, native.Lock())
