"""The access log, in the Common Log Format, buffered and written once per loop turn.

One line per response::

    127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /a.html HTTP/1.1" 200 2326

host, identity and user (always ``-``), local time, the request line, the status, and
the body's size in bytes (``-`` for none).  A request that could not be parsed logs
its request line as ``-``.  Non-ASCII and control bytes in the target are written as
``\\xNN``, ``"`` as ``\\"`` and ``\\`` as ``\\\\``, so a line is always one line and
always parses.
Lines are collected and written with one ``write`` per turn of the event loop, so
logging costs no system call per request.
"""

from __future__ import annotations

import re
import time
from typing import TextIO

__all__ = ["AccessLog", "request_line"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")


_ESCAPE = [chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in range(256)]
_ESCAPE[0x22], _ESCAPE[0x5C] = '\\"', "\\\\"
_PLAIN = re.compile(rb'[\x21\x23-\x5b\x5d-\x7e]*')


def request_line(method: bytes, target: bytes, version: str) -> str:
    """``METHOD target HTTP/x.y``, made safe for one quoted log field."""
    if _PLAIN.fullmatch(target):
        text = target.decode("ascii")
    else:
        text = "".join([_ESCAPE[b] for b in target])
    return f"{method.decode('ascii', 'replace')} {text} HTTP/{version}"


class AccessLog:
    """Collects Common Log Format lines; ``flush`` writes them to ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""

    def _now(self) -> str:
        now = int(time.time())
        if now != self._second:
            t = time.localtime(now)
            off = t.tm_gmtoff or 0
            sign = "-" if off < 0 else "+"
            off = abs(off) // 60
            self._stamp = (f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
                           f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
                           f"{sign}{off // 60:02d}{off % 60:02d}")
            self._second = now
        return self._stamp

    def record(self, host: str, line: str, status: int, length: int) -> None:
        """Add one response's line."""
        size = str(length) if length else "-"
        self._lines.append(f'{host} - - [{self._now()}] "{line}" {status} {size}\n')

    def flush(self) -> None:
        """Write the collected lines (one write) and flush the stream."""
        if self._lines:
            text = "".join(self._lines)
            self._lines.clear()
            self.stream.write(text)
            self.stream.flush()
