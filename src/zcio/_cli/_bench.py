"""``zcio bench``: the zero-copy posts' comparison, measured on this machine.

A page-cached temporary file (random bytes, fsynced) is sent by each method to a
receiver process over loopback TCP (``--to file``: copied to a new file beside it).
Every method runs once untimed (warm-up, and the check that it can run here), then
``--rounds`` rounds each run every method once, the order rotating by one each round.
Figures are medians over rounds.  Every transfer is verified by size and CRC-32; a
method that delivers wrong bytes is FAILED, never a result, and the exit status is 1.

Measured, for the sender: wall time (GiB/s), user and system CPU per GiB and context
switches (getrusage), system calls and the bytes that crossed user space (zcio's own
accounting, ``zcio.measure()``).  Beside them, the posts' model of each method.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from .. import _scratch
from .._file_channel import FileChannel
from .._mapped import MapMode
from ._bench_methods import FILE_METHODS, GB, MIB, SOCKET_METHODS, Failed, Method, Unavailable
from ._bench_targets import Receiver, Sample, make_source, run_file, run_socket
from ._common import PATH, SIZE, emit_json, progress

__all__ = ["bench", "Outcome", "Run"]

_PLOT_FORMATS = (".png", ".svg", ".pdf")
_WARM_UP = 8 * MIB


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
    kernel: str = field(default_factory=platform.release)
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)

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
                        "python": platform.python_version()},
            "file": {"directory": self.directory, "file_system": self.file_system,
                     "page_cached": self.page_cached, "crc32": self.crc32},
            "units": {"gb": GB, "cpu": "CPU seconds per GB of the thread that moved the bytes",
                      "switches, syscalls, bytes": "per transfer of the whole file"},
            "methods": methods,
        }


# -- checks before anything runs ----------------------------------------------------------


def _check_plot(path: str) -> None:
    """Fail now, not after a minute of measuring: a writable directory, a known format,
    and matplotlib importable.  What the file system refuses exits 1, a wrong suffix 2."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise click.ClickException(f"--plot: directory {folder} does not exist")
    try:  # the real test: access() says yes to root even where writes fail
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".zcio-bench-"):
            pass
    except OSError as e:
        raise click.ClickException(f"--plot: cannot create a file in {folder} "
                     f"({e.strerror or e})") from None
    if os.path.isdir(path):
        raise click.ClickException(f"--plot: {path} is a directory")
    if os.path.splitext(path)[1].lower() not in _PLOT_FORMATS:
        raise click.UsageError(f"--plot: {path} should end in {', '.join(_PLOT_FORMATS)}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.ClickException("--plot needs matplotlib: pip install 'zcio[plot]'") from None


def _check_space(directory: str, need: int) -> None:
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    if free < need + 64 * MIB:
        raise click.ClickException(f"not enough space in {directory}: the test needs {_mib(need)}, "
                     f"{_mib(free)} free (use --size or --dir)")


def _mib(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    return f"{n / MIB:.0f} MiB" if n >= MIB else f"{n} bytes"


def _file_system(path: str) -> str:
    """The type of the file system holding ``path`` (from /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if "-" not in parts[6:]:
                continue
            mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), parts[4])  # \040
            inside = path == mount or path.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best):
                best, kind = mount, parts[parts.index("-", 6) + 1]
    return kind


def _page_cached(path: str) -> bool:
    """Whether every page of the file is resident (mincore through is_loaded)."""
    with FileChannel.open(path) as ch, ch.map(MapMode.READ_ONLY, 0, ch.size()) as m:
        return m.is_loaded()


# -- the measurements ---------------------------------------------------------------------


def _measure(to: str, size: int, rounds: int, chunk: int, directory: str) -> Run:
    methods = SOCKET_METHODS if to == "socket" else FILE_METHODS
    outcomes = [Outcome(m) for m in methods]
    start = time.perf_counter()
    receiver = Receiver() if to == "socket" else None  # forked before any thread starts
    try:
        with tempfile.TemporaryDirectory(prefix="zcio-bench-", dir=directory) as tmp:
            source, copy = os.path.join(tmp, "source"), os.path.join(tmp, "copy")
            prefix = min(size, _WARM_UP)
            with progress(size, f"writing a {_mib(size)} test file") as bar:
                crc, prefix_crc = make_source(source, size, prefix, bar.advance)
            run = Run(to, size, rounds, chunk, os.path.realpath(directory),
                      _file_system(tmp), _page_cached(source), crc, outcomes)

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
                    for o in outcomes[r % len(outcomes):] + outcomes[: r % len(outcomes)]:
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


# -- the command ------------------------------------------------------------------------


@click.command(cls=click.Command)
@click.option("--size", type=SIZE, default="256m", show_default=True,
              help="Size of the test file (64k, 256m, 2g...).")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Rounds; each runs every method once. Medians are reported.")
@click.option("--chunk", type=SIZE, default="1m", show_default=True,
              help="Buffer size of the read/write and MSG_ZEROCOPY loops (4k to 64m).")
@click.option("--to", "to", type=click.Choice(["socket", "file"]), default="socket",
              show_default=True,
              help="socket: to a receiver process over loopback TCP; file: to a new file.")
@click.option("--plot", type=PATH, default=None, metavar="FILE",
              help="Also draw the results as a chart (.png, .svg, .pdf; needs zcio[plot]).")
@click.option("--dir", "directory", default=None,
              type=PATH,
              help="Where to put the test file (default: the temp directory).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench(size: int, rounds: int, chunk: int, to: str, plot: str | None,
          directory: str | None, as_json: bool) -> None:
    """The zero-copy posts' comparison, measured on this machine.

    Sends a page-cached file to a receiver process over loopback by read/write (heap
    and direct buffers), mmap+write, sendfile, splice and MSG_ZEROCOPY; with --to
    file, copies it by copy_file_range, sendfile, mmap and read/write.

    \b
    Prints one table: speed, the sender's CPU per GiB, context switches, system calls
    and bytes that crossed user space, beside the posts' model of copies and mode
    switches. Every transfer is verified (size and CRC-32); exit status 1 if any
    method delivered wrong bytes.
    """
    if size < 1:
        raise click.UsageError("--size must be at least 1 byte")
    if not 4096 <= chunk <= 64 * MIB:
        raise click.UsageError(f"--chunk must be between 4k and 64m, not {chunk}")
    if plot is not None:
        _check_plot(plot)
    directory = directory or tempfile.gettempdir()
    _check_space(directory, size * (2 if to == "file" else 1))
    run = _measure(to, size, rounds, chunk, directory)
    from ._bench_report import draw_plot, render_table

    if plot is not None:
        try:
            draw_plot(run, plot)
        except OSError as e:
            raise click.ClickException(f"--plot: cannot write {plot}: {e.strerror or e}") from None
    if as_json:
        data = run.to_json()
        if plot is not None:
            data["plot"] = os.path.abspath(plot)
        emit_json(data)
    else:
        render_table(run, plot)
    if not run.ok:
        sys.exit(1)
