"""What every command shares: size and address arguments, errors, JSON, progress."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from .._direct import parse_size
from .._errors import ZcioError

if TYPE_CHECKING:
    from .._progress import ProgressEvent

__all__ = ["SIZE", "HOST_PORT", "PATH", "fail_line", "emit_json", "progress", "Progress",
           "human_size", "human_rate", "ProgressBars"]


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


class ProgressBars:
    """A ``zcio.ProgressCallback`` that draws each phase as its own bar (``Progress``):
    ``"<phase> <name>"``, one phase at a time.  A context manager: the last bar stops
    on exit.  Used from one thread at a time."""

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self._bar: Progress | None = None
        self._key: tuple[str, str] | None = None
        self._done = 0

    def __call__(self, event: ProgressEvent) -> None:
        if (event.phase, event.name) != self._key:
            self._stop()
            self._key, self._done = (event.phase, event.name), 0
            self._bar = Progress(event.total, f"{event.phase} {event.name}", self._enabled)
            self._bar.__enter__()
        assert self._bar is not None
        self._bar.advance(event.done - self._done)
        self._done = event.done

    def _stop(self) -> None:
        bar, self._bar, self._key = self._bar, None, None
        if bar is not None:
            bar.__exit__(None, None, None)

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop()


@contextmanager
def progress(total: int | None, description: str, enabled: bool = True) -> Iterator[Progress]:
    """A context manager yielding a Progress; silent unless stderr is a terminal."""
    with Progress(total, description, enabled) as bar:
        yield bar
