"""Progress reports of the library's long operations (``copy_file``, ``send_file``,
``FileReceiver``): a callback the caller passes, called with a :class:`ProgressEvent`.

The library never draws anything; the command line turns these events into progress
bars, another program into whatever it likes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ProgressEvent", "ProgressCallback", "Meter"]


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` bytes (None: not known) of one phase of work on ``name``.

    Phases, in the order they run: ``"read"`` (a source that reports size 0, read to its
    end first), ``"checksum"`` and ``"send"`` on a sender; ``"recv"`` and ``"verify"``
    on a receiver; ``"cp"`` for a copy.  ``done`` only grows within a phase; a resumed
    transfer starts its ``"send"``/``"recv"`` phase at the bytes already there.
    """

    phase: str
    name: str
    done: int
    total: int | None


#: ``progress(event)``, called from the thread doing the work (a receiver's sessions
#: run in their own threads): keep it quick, and never raise from it.
ProgressCallback = Callable[[ProgressEvent], None]


class Meter:
    """Counts one phase's bytes and reports each step to a callback (or to nobody)."""

    def __init__(self, callback: ProgressCallback | None, phase: str, name: str,
                 total: int | None, done: int = 0) -> None:
        self._callback, self._phase, self._name = callback, phase, name
        self.total, self.done = total, done
        self._report()

    def advance(self, n: int) -> None:
        """Count ``n`` more bytes done and report the new total."""
        self.done += n
        if n:
            self._report()

    def _report(self) -> None:
        if self._callback is not None:
            self._callback(ProgressEvent(self._phase, self._name, self.done, self.total))
