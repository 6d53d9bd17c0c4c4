"""The rounds of ``zcio bench``: warm-up, interleaved rounds, medians, and the results.

A page-cached temporary file (random bytes, fsynced) is sent by each method to a
receiver process over loopback TCP (``to="file"``: copied to a new file beside it).
Every method runs once untimed on the file's first 8 MiB (warm-up, and the check that
it can run here), then ``rounds`` rounds each run every method once, in the order
``rotation`` gives.  Figures are medians over rounds.  Every transfer is verified by
size and CRC-32; a method that delivers wrong bytes is failed, never a result.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from .. import _scratch
from ._machine import machine_info
from ._methods import FILE_METHODS, GB, MIB, SOCKET_METHODS, Failed, Method, Unavailable
from ._source import file_system, make_source, page_cached
from ._targets import Receiver, Sample, run_file, run_socket

__all__ = ["Outcome", "Run", "measure", "rotation", "size_text", "Progress"]

WARM_UP = 8 * MIB
T = TypeVar("T")


def rotation(items: Sequence[T], round_index: int, *, reverse_odd: bool = False) -> list[T]:
    """The order of one round: ``items`` rotated left by ``round_index``, and with
    ``reverse_odd`` reversed in every other round, so that no item always follows the
    same one (and, reversed, no item always comes first or last)."""
    if not items:
        return []
    k = round_index % len(items)
    order = [*items[k:], *items[:k]]
    if reverse_odd and round_index % 2:
        order.reverse()
    return order


def size_text(n: int) -> str:
    """A size for a person: GiB with one decimal, whole MiB, or bytes."""
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    return f"{n / MIB:.0f} MiB" if n >= MIB else f"{n} bytes"


class Advance(Protocol):
    def advance(self, n: int) -> None: ...


Progress = Callable[[int, str], AbstractContextManager[Advance]]


class _Silent:
    def advance(self, n: int) -> None:
        pass


@contextlib.contextmanager
def _silent(total: int, description: str) -> Iterator[Advance]:
    yield _Silent()


@dataclass
class Outcome:
    """What became of one method: its samples, or why it has none."""

    method: Method
    samples: list[Sample] = field(default_factory=list)
    status: str = "ok"  # "ok", "unavailable" or "failed"
    reason: str = ""

    def median(self, f: Callable[[Sample], float]) -> float:
        return float(statistics.median(f(s) for s in self.samples))

    def summary(self) -> dict[str, float] | None:
        if self.status != "ok" or not self.samples:
            return None
        return {
            "gb_per_s": self.median(lambda s: s.gbps),
            "user_cpu_s_per_gb": self.median(lambda s: s.user_cpu_seconds / s.nbytes * GB),
            "system_cpu_s_per_gb": self.median(lambda s: s.system_cpu_seconds / s.nbytes * GB),
            "voluntary_switches": self.median(lambda s: s.voluntary_switches),
            "involuntary_switches": self.median(lambda s: s.involuntary_switches),
            "syscalls": self.median(lambda s: s.syscalls),
            "user_bytes": self.median(lambda s: s.user_bytes),
            "kernel_bytes": self.median(lambda s: s.kernel_bytes),
            "user_space_crossings": self.median(lambda s: s.user_bytes / s.nbytes),
            "wall_seconds": self.median(lambda s: s.wall_seconds),
        }

    def totals(self, key: str) -> int:
        """A detail (e.g. ``zerocopy_copied``) summed over the rounds."""
        return sum(s.details.get(key, 0) for s in self.samples)


@dataclass
class Run:
    """Everything one ``zcio bench`` learned; what the table, JSON and plot show."""

    to: str
    size: int
    rounds: int
    chunk: int
    directory: str
    file_system: str
    page_cached: bool
    crc32: int
    outcomes: list[Outcome]
    elapsed_seconds: float = 0.0
    machine: dict[str, Any] = field(default_factory=machine_info)

    @property
    def kernel(self) -> str:
        return str(self.machine["kernel"])

    @property
    def cpus(self) -> int:
        return int(self.machine["cpu_count"] or 1)

    @property
    def ok(self) -> bool:
        return not any(o.status == "failed" for o in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        methods = []
        for o in self.outcomes:
            m = o.method
            entry: dict[str, Any] = {
                "key": m.key, "label": m.label, "status": o.status,
                "available": o.status != "unavailable", "reason": o.reason or None,
                "verified": o.status == "ok" and bool(o.samples),
                "median": o.summary(),
                "rounds": [{"bytes": s.nbytes, "wall_seconds": s.wall_seconds,
                            "gb_per_s": s.gbps, "user_cpu_seconds": s.user_cpu_seconds,
                            "system_cpu_seconds": s.system_cpu_seconds,
                            "voluntary_switches": s.voluntary_switches,
                            "involuntary_switches": s.involuntary_switches,
                            "syscalls": s.syscalls, "user_bytes": s.user_bytes,
                            "kernel_bytes": s.kernel_bytes, **s.details}
                           for s in o.samples],
                "model": {"dma_copies": m.model.dma, "cpu_copies": m.model.cpu,
                          "mode_switches": m.model.switches, "note": m.model.note or None},
            }
            if m.key == "msg_zerocopy":
                entry["zerocopy"] = {k: o.totals(f"zerocopy_{k}")
                                     for k in ("sends", "completed", "copied")}
            if m.key == "copy_file_range":
                entry["reflinked"] = bool(o.samples) and all(
                    s.details.get("reflinked") for s in o.samples)
            methods.append(entry)
        return {
            "command": "bench", "to": self.to, "size": self.size, "rounds": self.rounds,
            "chunk": self.chunk, "ok": self.ok, "elapsed_seconds": self.elapsed_seconds,
            "machine": {"kernel": self.kernel, "cpus": self.cpus,
                        "python": self.machine["python"]},
            "file": {"directory": self.directory, "file_system": self.file_system,
                     "page_cached": self.page_cached, "crc32": self.crc32},
            "units": {"gb": GB, "cpu": "CPU seconds per GB of the thread that moved the bytes",
                      "switches, syscalls, bytes": "per transfer of the whole file"},
            "methods": methods,
        }


def measure(to: str, size: int, rounds: int, chunk: int, directory: str,
            methods: Sequence[Method] | None = None, progress: Progress = _silent) -> Run:
    """Make the test file in ``directory``, run every method (default: all of ``to``'s)
    once untimed and ``rounds`` times measured, and return what happened.

    ``progress(total, description)`` gives a context manager whose ``advance(n)`` is
    told of the bytes written or moved (a progress bar; silent by default).  The test
    file and its copies are removed before this returns, and zcio's per-thread scratch
    buffers are cleared.
    """
    if methods is None:
        methods = SOCKET_METHODS if to == "socket" else FILE_METHODS
    outcomes = [Outcome(m) for m in methods]
    start = time.perf_counter()
    receiver = Receiver() if to == "socket" else None  # forked before any thread starts
    try:
        with tempfile.TemporaryDirectory(prefix="zcio-bench-", dir=directory) as tmp:
            source, copy = os.path.join(tmp, "source"), os.path.join(tmp, "copy")
            prefix = min(size, WARM_UP)
            with progress(size, f"writing a {size_text(size)} test file") as bar:
                crc, prefix_crc = make_source(source, size, prefix, bar.advance)
            run = Run(to, size, rounds, chunk, os.path.realpath(directory),
                      file_system(tmp), page_cached(source), crc, outcomes)

            def once(o: Outcome, count: int, want: tuple[int, int], keep: bool) -> None:
                try:
                    if receiver is not None:
                        sample = run_socket(o.method, receiver, source, count, chunk, want)
                    else:
                        _prime(source, copy, count, chunk, want)
                        sample = run_file(o.method, source, copy, count, chunk, want)
                except Unavailable as e:
                    o.status, o.reason = "unavailable", str(e)
                except Failed as e:
                    o.status, o.reason, o.samples = "failed", str(e), []
                else:
                    if keep:
                        o.samples.append(sample)

            total = len(methods) * (prefix + rounds * size)
            with progress(total, f"{len(methods)} methods x {rounds} rounds") as bar:
                for o in outcomes:  # warm-up: untimed, verified; finds what cannot run
                    once(o, prefix, (prefix, prefix_crc), keep=False)
                    bar.advance(prefix)
                for r in range(rounds):
                    for o in rotation(outcomes, r):
                        if o.status == "ok":
                            once(o, size, (size, crc), keep=True)
                        bar.advance(size)
    finally:
        if receiver is not None:
            receiver.close()
        _scratch.clear()
    run.elapsed_seconds = time.perf_counter() - start
    return run


def _prime(source: str, copy: str, count: int, chunk: int, want: tuple[int, int]) -> None:
    """An untimed copy_file_range copy, deleted at once: the timed copy then finds the
    memory for its page cache free in the guest (a VM may have handed it back to the
    host, and taking it back costs more than the copy)."""
    with contextlib.suppress(Failed, Unavailable):
        run_file(FILE_METHODS[0], source, copy, count, chunk, want)
