"""``zcio cp SRC DST``: ``zcio.copy_file`` on the command line, and which path ran.

The copy itself (reflink, then the transfer ladder over the data extents, read(2) to
the real end, a temporary file renamed over DST) is the library's: ``zcio._copy``.
Here: the options, a progress bar on a terminal, SIGTERM and SIGHUP turned into an exit
through Python so the temporary file is removed, and the summary (or ``--json``).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click

from .._copy import METHODS, CopyResult, copy_file
from ._common import PATH, ProgressBars, emit_json, human_rate, human_size

__all__ = ["cp", "human_size"]


@contextlib.contextmanager
def _signals_as_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP end the process through Python, so cleanup code runs."""
    def handler(signum: int, frame: FrameType | None) -> None:
        click.echo(f"zcio cp: {signal.strsignal(signum)}, copy abandoned", err=True)
        raise SystemExit(128 + signum)

    saved: dict[int, Any] = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            saved[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for signum, old in saved.items():
            signal.signal(signum, old)


# -- the command -----------------------------------------------------------------------


def _summary(r: CopyResult) -> str:
    how = ", ".join(r.paths) or "nothing to copy"
    rate = f", {human_rate(r.data_bytes, r.seconds)}" if r.data_bytes and r.seconds else ""
    holes = f" ({human_size(r.holes)} of holes kept)" if r.holes else ""
    moved = [f"{name}: {human_size(s.kernel_bytes)} in the kernel, "
             f"{human_size(s.user_bytes)} through user space"
             for name, s in r.paths.items()]
    detail = "".join(f"\n  {line}" for line in moved)
    return (f"{r.src} -> {r.dst}: {human_size(r.size)}{holes} in {r.seconds:.3f} s"
            f"{rate} by {how}{detail}")


@click.command("cp")
@click.argument("src", type=PATH)
@click.argument("dst", type=PATH)
@click.option("--method", type=click.Choice(list(METHODS)), default="auto",
              show_default=True,
              help="Force one path; 'auto' tries reflink, then copy_file_range, sendfile, "
                   "mmap, read/write. A forced path that fails is an error.")
@click.option("-p", "--preserve", is_flag=True,
              help="Keep SRC's mode, times (ns) and, when allowed, owner, like cp -p.")
@click.option("--sync", is_flag=True, help="fsync the copy and its directory.")
@click.option("--progress/--no-progress", "show_progress", default=True,
              help="A progress bar on stderr when it is a terminal.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def cp(src: str, dst: str, method: str, preserve: bool, sync: bool, show_progress: bool,
       as_json: bool) -> None:
    """Copy the file SRC to DST (a file, or a directory to copy into).

    The copy is written under a temporary name beside DST and renamed over it once
    complete, so DST is never left half-written.  Holes in SRC stay holes.
    """
    with _signals_as_exit(), ProgressBars(show_progress and not as_json) as bars:
        r = copy_file(src, dst, method=method, preserve=preserve, sync=sync, progress=bars)
    if as_json:
        emit_json({
            "src": r.src, "dst": r.dst, "method": method, "size": r.size,
            "bytes": r.data_bytes, "holes": r.holes, "seconds": r.seconds,
            "gb_per_s": r.gb_per_s, "preserved": preserve, "synced": sync,
            "paths": {name: {"syscalls": s.syscalls, "kernel_bytes": s.kernel_bytes,
                             "user_bytes": s.user_bytes} for name, s in r.paths.items()},
        })
    else:
        click.echo(_summary(r))
