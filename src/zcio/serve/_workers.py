"""Worker processes: N forks, each with its own ``SO_REUSEPORT`` listener, supervised.

The kernel spreads new connections over the workers' listening sockets (one
``SO_REUSEPORT`` group), so each worker runs its own event loop on its own core with
nothing shared but the port.  The parent only supervises:

* it forks the workers and waits until each one says (through a pipe) that it is
  listening, then calls ``ready``;
* SIGTERM, SIGINT or SIGHUP to the parent is forwarded to every worker as SIGTERM:
  each stops accepting, finishes what is in flight and exits 0; the parent then returns
  0.  SIGHUP is a graceful *stop*, not a reload: a supervisor (systemd, a shell loop)
  starts the new configuration, and SO_REUSEPORT lets it bind while the old workers
  finish;
* workers die with their parent: each asks the kernel (``PR_SET_PDEATHSIG``) for a
  SIGTERM when the parent goes, whatever killed it (SIGKILL included), and stops
  gracefully, so no orphan keeps serving or holds the port;
* a worker that dies while no stop was asked is started again, unless workers keep
  dying (more than ``workers`` deaths in ten seconds), which stops them all: status 1.

Syscalls: ``fork``, ``kill``, ``waitpid``, ``pipe``, ``prctl(PR_SET_PDEATHSIG)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

from .._syscalls import set_parent_death_signal

__all__ = ["supervise", "STOP_SIGNALS"]

_log = logging.getLogger("zcio.serve")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_READY_SECONDS = 30.0


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def supervise(workers: int, run_worker: Callable[[int], int],
              ready: Callable[[], None] | None = None) -> int:
    """Run ``run_worker(ready_fd)`` in ``workers`` forked processes; the exit status.

    ``run_worker`` runs in the child: it must write one byte to ``ready_fd`` once it
    listens, handle SIGTERM as a graceful stop, and return its exit status.
    """
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    children: dict[int, float] = {}  # pid -> start time
    stopping = False
    deaths: list[float] = []
    status = 0

    master = os.getpid()

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                for sig in STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                set_parent_death_signal(signal.SIGTERM)
                if os.getppid() != master:  # the master died before the call above
                    os._exit(0)
                os.close(ready_r)
                code = run_worker(ready_w)
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        children[pid] = time.monotonic()

    def stop_all(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            _kill(pid, signal.SIGTERM)

    saved: dict[int, Any] = {sig: signal.signal(sig, stop_all) for sig in STOP_SIGNALS}
    try:
        for _ in range(workers):
            spawn()
        if not _wait_ready(ready_r, workers, children):
            stop_all(signal.SIGTERM, None)
            status = 1
        elif ready is not None and not stopping:
            ready()
        while children:
            try:
                pid, wait_status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if children.pop(pid, None) is None:
                continue
            code = os.waitstatus_to_exitcode(wait_status)
            if stopping:
                if code != 0:
                    status = 1
                continue
            now = time.monotonic()
            deaths[:] = [t for t in deaths if now - t < 10.0] + [now]
            _log.warning("zcio serve: worker %d exited with status %d", pid, code)
            if len(deaths) > workers:
                _log.error("zcio serve: workers keep dying; stopping")
                status = 1
                stop_all(signal.SIGTERM, None)
            else:
                spawn()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        os.close(ready_r)
        os.close(ready_w)
    return status


def _wait_ready(fd: int, count: int, children: dict[int, float]) -> bool:
    """Read ``count`` ready bytes; False if a worker died first or time ran out."""
    got = 0
    deadline = time.monotonic() + _READY_SECONDS
    while got < count:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        readable, _, _ = select.select([fd], [], [], min(left, 0.1))
        if readable:
            got += len(os.read(fd, count - got))
            continue
        for pid in list(children):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                children.pop(pid)
                return False
    return True
