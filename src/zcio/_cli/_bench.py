"""``zcio bench``: the zero-copy posts' comparison, measured on this machine.

A click wrapper: the options, the checks that fail before a minute of measuring
(space, the chart's file), and the output.  The measuring is ``zcio._bench`` (the
rounds in ``_bench._run``, the methods in ``_bench._methods``), which
``benchmarks/transfer.py`` shares.

Measured, for the sender: wall time (GiB/s), user and system CPU per GiB and context
switches (getrusage), system calls and the bytes that crossed user space (zcio's own
accounting, ``zcio.measure()``).  Beside them, the posts' model of each method.
"""

from __future__ import annotations

import os
import sys
import tempfile

import click

from .._bench._methods import FILE_METHODS, MIB, SOCKET_METHODS
from .._bench._run import Outcome, Run, measure, size_text
from ._common import PATH, SIZE, emit_json, progress

__all__ = ["bench", "Outcome", "Run"]

_PLOT_FORMATS = (".png", ".svg", ".pdf")


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
        raise click.ClickException(f"not enough space in {directory}: the test needs "
                                   f"{size_text(need)}, {size_text(free)} free "
                                   "(use --size or --dir)")


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
    methods = SOCKET_METHODS if to == "socket" else FILE_METHODS
    run = measure(to, size, rounds, chunk, directory, methods, progress)
    from .._bench._report import draw_plot, render_table

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
