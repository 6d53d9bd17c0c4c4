"""What every command shares: size and address arguments, errors, JSON, progress."""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from .._direct import parse_size
from .._errors import TransferError, ZcioError

if TYPE_CHECKING:
    from .._file_channel import FileChannel

__all__ = ["SIZE", "HOST_PORT", "PATH", "fail_line", "emit_json", "progress", "Progress",
           "human_size", "human_rate", "copy_to_end"]


def human_size(n: float, digits: int = 1) -> str:
    """``1536`` -> ``"1.5 KiB"``, ``4096`` -> ``"4 KiB"``, ``17`` -> ``"17 B"``.

    The CLI's one unit system: binary (KiB = 1024 bytes), in summaries, progress bars
    and speeds alike.  ``digits`` after the point when not a whole number.
    """
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.0f} {unit}" if n == int(n) else f"{n:.{digits}f} {unit}"


def human_rate(n: int, seconds: float) -> str:
    """``n`` bytes in ``seconds`` as a binary speed, ``"1.25 GiB/s"``; ``"-"`` for no time."""
    return f"{human_size(n / seconds, 2)}/s" if seconds > 0 else "-"


class SizeType(click.ParamType):  # type: ignore[type-arg]  # generic only in click>=8.4
    """A byte count like ``65536``, ``64k``, ``256m``, ``2g``."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ZcioError:
            self.fail(f"{value!r} is not a size (expected e.g. 65536, 64k, 256m, 2g)",
                      param, ctx)


class HostPortType(click.ParamType):  # type: ignore[type-arg]
    """``HOST:PORT`` (IPv6 in brackets: ``[::1]:9000``)."""

    name = "host:port"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        text = str(value)
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            self.fail(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9000)", param, ctx)
        return host.strip("[]"), int(port)


SIZE = SizeType()
HOST_PORT = HostPortType()

#: A path argument click leaves alone (click's default checks that an existing path is
#: readable, a usage error): the command opens it, and whatever the file system refuses
#: (missing, unreadable, not a directory) is a failure, exit status 1.
PATH: click.Path = click.Path(path_type=str, readable=False)


def fail_line(error: BaseException, prefix: str = "zcio") -> None:
    """Print one line for an error: what failed and on which file, no traceback."""
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        text = f"{error.strerror}{where}"
    else:
        text = str(error) or type(error).__name__
    click.echo(f"{prefix}: {text}", err=True)


def emit_json(data: Any) -> None:
    """Write ``data`` as one JSON document on stdout."""
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


class Progress:
    """A progress bar (rich) on stderr when it is a terminal, else nothing."""

    def __init__(self, total: int | None, description: str, enabled: bool) -> None:
        self._bar: Any = None
        self._task: Any = None
        if enabled and sys.stderr.isatty() and not os.environ.get("ZCIO_NO_PROGRESS"):
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TimeRemainingColumn,
            )
            from rich.progress import (
                Progress as RichProgress,
            )

            self._bar = RichProgress(
                "[progress.description]{task.description}", BarColumn(),
                DownloadColumn(binary_units=True), _speed_column(), TimeRemainingColumn(),
                transient=True, console=_stderr_console(),
            )
            self._task = self._bar.add_task(description, total=total)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()


def _speed_column() -> Any:
    """rich's TransferSpeedColumn in binary units (rich's own says MB/s)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class BinarySpeedColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            text = "?" if speed is None else f"{human_size(speed, 1)}/s"
            return Text(text, style="progress.data.speed")

    return BinarySpeedColumn()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def copy_to_end(src: FileChannel, dst: FileChannel, position: int, bar: Progress) -> int:
    """Copy ``src`` from ``position`` until read(2) says it ended, into ``dst`` at the
    same offset; returns the bytes copied.  Both channels' positions end at the end.

    For the bytes past the size fstat reported: a procfs, sysfs or FUSE file that says
    it holds 0 bytes, or a file that grew.  Only read(2)'s 0 means the end there
    (copy_file_range answers 0 at once on procfs), so this is always the read/write
    path, asked for an explicit count (a transfer of "all" stops at the size): the
    engine's TransferError "source ended" after 0 bytes is the end; after some bytes,
    they are counted and the next call says whether it was the end or an error (which
    then comes as a plain OSError, the file's name unknown).

    Syscalls: ``pread``/``pwrite`` (1 MiB at a time) through ``zcio.transfer``.
    """
    from .._transfer import transfer

    src.position(position)
    dst.position(position)
    at = position
    while True:
        try:
            n = transfer(src, dst, _TO_END_STEP, path="read_write")
        except TransferError as e:
            if e.transferred == 0 and e.errno == errno.ENODATA:
                break  # read(2) returned 0
            n = e.transferred
        at += n
        bar.advance(n)
    return at - position


_TO_END_STEP = 16 << 20  # bytes per transfer call in copy_to_end: the bar moves


@contextmanager
def progress(total: int | None, description: str, enabled: bool = True) -> Iterator[Progress]:
    """A context manager yielding a Progress; silent unless stderr is a terminal."""
    with Progress(total, description, enabled) as bar:
        yield bar
