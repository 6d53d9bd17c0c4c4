"""A scripted fault-injection layer for zcio's kernel calls.

``Faults({"sendfile": [EINTR, short(100), OK, ENOSPC]})`` makes the first sendfile raise
EINTR, the second move at most 100 bytes, the third run normally and the fourth raise
ENOSPC; calls past the script run normally.  Every call is logged with its arguments.
A callable in the script is called with (real function, *args) and returns the result.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from zcio._syscalls import Syscalls

OK = "ok"

Action = Any  # OK, an errno int, a short(n) marker, or a callable(real, *args)


class short:
    """Let the call move at most ``limit`` bytes (the count argument is cut)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit


# Position of the count argument of each method (after self), for short().
_COUNT_ARG = {"sendfile": 3, "splice": 2, "copy_file_range": 2, "tee": 2}
# Buffer arguments whose length short() cuts instead.
_VIEW_ARG = {"write": 1, "pwrite": 1, "send": 1}
_VIEWS_ARG = {"writev": 1, "pwritev": 1, "readv": 1, "preadv": 1, "sendmsg": 1,
              "recvmsg_into": 1}


def _loggable(arg: Any) -> Any:
    """What the log keeps of an argument: never a view, which would pin memory."""
    if isinstance(arg, memoryview):
        return len(arg)
    if isinstance(arg, (list, tuple)) and arg and isinstance(arg[0], memoryview):
        return [len(v) for v in arg]
    return arg


def _cut_views(views: list[memoryview], limit: int) -> list[memoryview]:
    out = []
    for v in views:
        if limit <= 0:
            break
        out.append(v[:limit])
        limit -= len(out[-1])
    return out


class Faults(Syscalls):
    """A Syscalls layer following a script per method name."""

    def __init__(self, script: dict[str, list[Action]]) -> None:
        self.script = {name: list(actions) for name, actions in script.items()}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name.startswith("_") or name in ("script", "calls") or not callable(attr):
            return attr
        script = super().__getattribute__("script")
        calls = super().__getattribute__("calls")

        def call(*args: Any) -> Any:
            calls.append((name, tuple(_loggable(a) for a in args)))
            actions = script.get(name)
            action = actions.pop(0) if actions else OK
            return _apply(name, attr, action, args)

        return call


def _apply(name: str, real: Callable[..., Any], action: Action, args: tuple[Any, ...]) -> Any:
    if action == OK:
        return real(*args)
    if isinstance(action, int):
        if action == errno.EINTR:
            raise InterruptedError(action, os.strerror(action))
        if action == errno.EAGAIN:
            raise BlockingIOError(action, os.strerror(action))
        if action == errno.ECONNRESET:
            raise ConnectionResetError(action, os.strerror(action))
        raise OSError(action, os.strerror(action))
    if isinstance(action, short):
        args_l = list(args)
        if name in _COUNT_ARG:
            i = _COUNT_ARG[name]
            args_l[i] = min(args_l[i], action.limit)
        elif name in _VIEW_ARG:
            i = _VIEW_ARG[name]
            args_l[i] = args_l[i][: action.limit]
        elif name in _VIEWS_ARG:
            i = _VIEWS_ARG[name]
            args_l[i] = _cut_views(list(args_l[i]), action.limit)
        return real(*args_l)
    return action(real, *args)
