"""A forked child never inherits one of zcio's process-wide locks held.

``os.fork()`` keeps only the forking thread.  If another thread is inside zcio at that
instant (counting metrics, allocating, releasing), the lock it holds would stay held in
the child for good, and the child's first zcio call that needs it would hang:
multiprocessing's fork start method makes this an ordinary event.  Every process-wide
lock is registered with ``zcio._fork.fork_safe`` and is free in the child.  The test
holds every one of them in another thread while the main thread forks; the child then
uses each part of zcio that takes them, under an alarm, so a hang fails the test
instead of hanging it.
"""

from __future__ import annotations

import os
import signal
import threading
import traceback
import warnings
from pathlib import Path

import zcio
from zcio import ByteBuffer, FileChannel, OpenOption, PooledAllocator, _fork, _scratch

CHILD_SECONDS = 10


def _child_work(tmp: Path) -> None:
    """What the child does: each call needs one of the registered locks."""
    zcio.metrics.record("fork_test")  # the metrics lock
    ByteBuffer.allocate_direct(4096).release()  # the direct pool's accounting
    buf = PooledAllocator.default().allocate(300)  # the default allocator
    buf.retain()  # the reference counts' lock
    buf.release()
    buf.release()
    PooledAllocator.default().trim()  # the allocator's own lock
    _scratch.clear()  # the scratch registry
    with FileChannel.open(str(tmp / "locked"), OpenOption.WRITE,  # the file-lock table
                          OpenOption.CREATE) as ch:
        ch.lock().release()
    zcio.buffer_pools()  # every pool's snapshot
    for lock in list(_fork._locks):  # and every registered lock is free
        if not lock.acquire(timeout=1):
            raise AssertionError(f"{lock!r} is held in the child")
        lock.release()


def test_locks_held_by_another_thread_at_fork_are_free_in_the_child(tmp_path: Path
                                                                     ) -> None:
    PooledAllocator.default().allocate(300).release()  # the default allocator exists
    locks = list(_fork._locks)
    assert len(locks) >= 6  # metrics, RC, the pools' accounting, allocators, scratch, files
    held, let_go = threading.Event(), threading.Event()

    def hold_them_all() -> None:
        for lock in locks:
            lock.acquire()
        held.set()
        let_go.wait(30)
        for lock in reversed(locks):
            lock.release()

    holder = threading.Thread(target=hold_them_all)
    holder.start()
    try:
        assert held.wait(10)
        with warnings.catch_warnings():  # forking while a thread runs is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                signal.alarm(CHILD_SECONDS)  # a hang ends the child with SIGALRM
                _child_work(tmp_path)
                code = 0
            except BaseException:
                traceback.print_exc()  # on the test's captured stderr
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        let_go.set()
        holder.join(30)
    assert os.waitstatus_to_exitcode(status) == 0, (
        "the child hung on a lock (SIGALRM)" if os.WIFSIGNALED(status)
        else f"the child failed (exit {os.waitstatus_to_exitcode(status)})")
