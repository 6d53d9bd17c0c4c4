"""Leak detection for reference-counted buffers, as Netty's ResourceLeakDetector.

A buffer leaks when it is garbage-collected while its reference count is above zero:
someone forgot a ``release()``.  Its memory goes back to the pool anyway (once no view
can reach it); the detector's job is to say where it came from.

Levels (``ZCIO_LEAK_DETECTION`` or :func:`set_leak_detection`):

* DISABLED: nothing is recorded.
* SIMPLE (default): one allocation in 128 records its allocation site.
* ADVANCED: as SIMPLE, and the sampled buffers also record their last accesses
  (retain, release, slices, ``touch(hint)``), up to 4.
* PARANOID: every allocation is sampled, with access records; for tests.

A leak is reported once per buffer through ``logging`` (logger ``"zcio.leak"``, level
ERROR) and a :class:`LeakWarning`, naming the allocation site and the recorded accesses.
"""

from __future__ import annotations

import enum
import logging
import os
import random
import sys
import traceback
import warnings

from ._buffer import check_int
from ._errors import IllegalArgumentError

__all__ = ["LeakLevel", "LeakWarning", "set_leak_detection", "leak_detection", "LeakRecord"]

_log = logging.getLogger("zcio.leak")
_SAMPLING_INTERVAL = 128  # Netty's default
_MAX_RECORDS = 4  # Netty's default targetRecords


class LeakLevel(enum.IntEnum):
    """How much the leak detector records (Netty's ResourceLeakDetector.Level)."""

    DISABLED = 0
    SIMPLE = 1
    ADVANCED = 2
    PARANOID = 3


class LeakWarning(ResourceWarning):
    """A reference-counted buffer was garbage-collected without being released."""


def _initial_level() -> LeakLevel:
    name = os.environ.get("ZCIO_LEAK_DETECTION", "SIMPLE").strip().upper()
    try:
        return LeakLevel[name]
    except KeyError:
        warnings.warn(f"ZCIO_LEAK_DETECTION={name!r} is not a level "
                      f"({', '.join(LeakLevel.__members__)}); using SIMPLE", stacklevel=2)
        return LeakLevel.SIMPLE


_level = _initial_level()


def leak_detection() -> LeakLevel:
    """The current leak-detection level."""
    return _level


def set_leak_detection(level: LeakLevel | str | int) -> None:
    """Set the leak-detection level for buffers allocated from now on.

    ``level``: a LeakLevel, its name (any case) or its number (0..3).  TypeError for
    anything else (a bool, a float); IllegalArgumentError for an unknown name or number.
    """
    global _level
    if isinstance(level, LeakLevel):
        _level = level
        return
    try:
        if isinstance(level, str):
            _level = LeakLevel[level.strip().upper()]
        else:
            _level = LeakLevel(check_int(level, "level"))
    except (KeyError, ValueError):
        raise IllegalArgumentError(
            f"not a leak-detection level: {level!r} "
            f"({', '.join(LeakLevel.__members__)}, or 0..3)") from None


def _site(skip: int) -> str:
    """The three innermost frames outside zcio, formatted (frame walk, no full stack:
    sampling sits on the pool's fast path)."""
    frame = sys._getframe(skip + 1)
    picked: list[traceback.FrameSummary] = []
    while frame is not None and len(picked) < 3:
        name = frame.f_code.co_filename
        if "/zcio/" not in name.replace("\\", "/") or picked:
            picked.append(traceback.FrameSummary(name, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back  # type: ignore[assignment]
    summary = traceback.StackSummary.from_list(list(reversed(picked)))
    return "".join(summary.format()).rstrip()


class LeakRecord:
    """What a sampled buffer remembers: where it was allocated and last touched."""

    __slots__ = ("created", "accesses", "advanced", "reported")

    def __init__(self, created: str, advanced: bool) -> None:
        self.created = created
        self.accesses: list[str] = []
        self.advanced = advanced
        self.reported = False

    def record(self, what: str) -> None:
        """Remember an access (ADVANCED and PARANOID only), keeping the last few."""
        if self.advanced:
            self.accesses.append(f"{what}:\n{_site(2)}")
            del self.accesses[:-_MAX_RECORDS]

    def report(self, description: str) -> None:
        """Report the leak once: logging (ERROR) and a LeakWarning."""
        if self.reported:
            return
        self.reported = True
        parts = [f"LEAK: {description} was garbage-collected without release(). "
                 f"Allocated at:\n{self.created}"]
        for i, access in enumerate(reversed(self.accesses), 1):
            parts.append(f"Recent access #{i}: {access}")
        message = "\n".join(parts)
        _log.error(message)
        warnings.warn(message, LeakWarning, stacklevel=2)


_countdown = random.randrange(_SAMPLING_INTERVAL)


def track() -> LeakRecord | None:
    """A record for a new allocation if the current level samples it, else None.

    SIMPLE and ADVANCED sample one allocation in 128 (a countdown from a random start:
    cheaper than a random draw per allocation, which sits on the pool's fast path).
    """
    global _countdown
    level = _level
    if level is LeakLevel.DISABLED:
        return None
    if level is not LeakLevel.PARANOID:
        _countdown -= 1
        if _countdown > 0:
            return None
        _countdown = _SAMPLING_INTERVAL
    return LeakRecord(_site(2), advanced=level >= LeakLevel.ADVANCED)
