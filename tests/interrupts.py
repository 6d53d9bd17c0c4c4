"""Interrupts at every call: where a raising signal handler (a timeout, Ctrl-C) strikes.

CPython runs signal handlers at the entry of Python functions (and at backward jumps),
so an exception can come out of any Python call an operation makes.  :func:`at_every_call`
runs the operation again and again with KeyboardInterrupt raised at the entry of its
first call, then of its second, and so on until a run completes, and checks after each.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Finalizers and weak-reference callbacks the collector runs are Python functions, and
#: nothing in Python keeps an exception out of their first line: no interrupt is placed
#: in them or below them.
FINALIZERS = frozenset({"_unshare", "remove", "__call__", "_unmap_accounting", "_remove"})


def _in_finalizer(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_name in FINALIZERS:
            return True
        frame = frame.f_back
    return False


def at_every_call(run: Callable[[], T],
                  check: Callable[[str, T | None, Callable[[], None]], None]) -> int:
    """Run ``run()`` with KeyboardInterrupt raised at the entry of its k-th Python call,
    k = 1, 2, ... until a run completes.  After each run, ``check(where, result, drop)``:
    ``where`` names the call interrupted ("" for the run that completed), ``result`` is
    None if it was interrupted, and ``drop()`` lets go of the exception (kept until
    then, as a handler that logs it later would keep it) and collects.  Returns how
    many runs were interrupted."""
    k = 0
    while True:
        calls = [0]

        def tracer(frame: Any, event: str, arg: Any, k: int = k,
                   calls: list[int] = calls) -> None:
            if event == "call" and not _in_finalizer(frame):
                calls[0] += 1
                if calls[0] == k + 1:
                    sys.settrace(None)
                    raise KeyboardInterrupt(f"call {k}: {frame.f_code.co_qualname}")

        kept: list[BaseException] = []
        result: T | None = None
        sys.settrace(tracer)
        try:
            result = run()
        except KeyboardInterrupt as e:
            kept.append(e)
        finally:
            sys.settrace(None)

        def drop(kept: list[BaseException] = kept) -> None:
            kept.clear()
            gc.collect()

        check(str(kept[0]) if kept else "", result, drop)
        drop()
        if not kept and result is not None:
            return k
        k += 1
