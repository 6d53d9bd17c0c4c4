"""Conditional and range requests (RFC 9110 13 and 14), as pure functions.

:func:`evaluate` decides, from a request's header fields and a representation's
validators, which of 200, 206, 304, 412 or 416 to answer and which bytes to send, in
the order of RFC 9110 13.2.2:

1. ``If-Match`` (strong comparison; ``*`` matches any existing file): 412 when no tag
   matches.  Only when it is absent, ``If-Unmodified-Since``: 412 if the file's
   modification time, in whole seconds, is after the given date.
2. ``If-None-Match`` (weak comparison; ``*`` matches anything): 304 on a match.
   Only when it is absent, ``If-Modified-Since``: 304 if the file's modification time
   is not after the given date.  A date later than the server's clock is invalid
   (RFC 9110 13.1.3), and so ignored, as is an unparsable one.
3. ``Range`` on a GET, one ``bytes`` range: ``a-b``, ``a-`` or ``-n``.  A range whose
   first byte lies beyond the end, or ``-0``, is unsatisfiable: 416.  Anything else
   that is not exactly one valid range (bad syntax, ``b < a``, several ranges, another
   unit) is ignored, as RFC 9110 14.2 allows: 200 with the whole representation.
4. ``If-Range`` with a Range: the range applies only if the validator matches, an
   entity tag by strong comparison or a date exactly; otherwise 200 with everything.

Numbers of any length are safe: more than 18 digits count as "beyond any file".
"""

from __future__ import annotations

import time
from email.utils import mktime_tz, parsedate_tz

__all__ = ["evaluate", "parse_range", "http_date_seconds", "UNSATISFIABLE"]

UNSATISFIABLE = (-1, -1)
_HUGE = 10**19


def http_date_seconds(value: bytes) -> int | None:
    """Seconds since the epoch for an HTTP-date (any of its three forms), or None."""
    try:
        parsed = parsedate_tz(value.decode("latin-1"))
        return None if parsed is None else int(mktime_tz(parsed))
    except (ValueError, OverflowError, IndexError, TypeError):
        return None


def _number(digits: bytes) -> int:
    return int(digits) if len(digits) <= 18 else _HUGE


def parse_range(value: bytes, size: int) -> tuple[int, int] | None:
    """``(first, last)`` (inclusive) for a single satisfiable byte range,
    :data:`UNSATISFIABLE`, or None when the field is to be ignored.

    >>> parse_range(b"bytes=0-9", 100), parse_range(b"bytes=-10", 100)
    ((0, 9), (90, 99))
    >>> parse_range(b"bytes=100-", 100) == UNSATISFIABLE, parse_range(b"bytes=5-1", 100)
    (True, None)
    """
    unit, eq, spec = value.partition(b"=")
    if not eq or unit.strip().lower() != b"bytes" or b"," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition(b"-")
    first_s, last_s = first_s.strip(), last_s.strip()
    if not dash or not (first_s or last_s) or (first_s and not first_s.isdigit()) or (
            last_s and not last_s.isdigit()) or not (first_s + last_s).isascii():
        return None
    if not first_s:  # suffix: the last n bytes
        n = _number(last_s)
        if n == 0:
            return UNSATISFIABLE
        if size == 0:
            return None  # satisfiable, yet no byte to send: the whole (empty) file
        return max(size - n, 0), size - 1
    first = _number(first_s)
    last = _number(last_s) if last_s else _HUGE
    if last < first:
        return None
    if first >= size:
        return UNSATISFIABLE
    return first, min(last, size - 1)


def _tags(value: bytes) -> list[bytes]:
    return [t.strip() for t in value.split(b",")]


def _weak_match(field: bytes, etag: bytes) -> bool:
    if field.strip() == b"*":
        return True
    opaque = etag[2:] if etag.startswith(b"W/") else etag
    return any((tag[2:] if tag.startswith(b"W/") else tag) == opaque for tag in _tags(field))


def _strong_match(field: bytes, etag: bytes) -> bool:
    if field.strip() == b"*":
        return True
    return not etag.startswith(b"W/") and any(tag == etag for tag in _tags(field))


def evaluate(headers: dict[bytes, bytes], etag: bytes, mtime: int, size: int,
             is_get: bool, now: float | None = None) -> tuple[int, int, int]:
    """``(status, first, end)``: 200, 206 (bytes ``[first, end)``), 304, 412 or 416.

    ``headers`` are the request's (lower-case names); ``etag`` the strong entity tag
    and ``mtime`` the modification time in whole seconds of what would be sent;
    ``now`` the server's clock (``time.time()`` when None).

    >>> evaluate({b"if-match": b'"other"'}, b'"abc"', 0, 10, True)
    (412, 0, 0)
    >>> evaluate({b"if-modified-since": b"Fri, 01 Jan 2100 00:00:00 GMT"}, b'"a"', 0, 10,
    ...          True, now=0)
    (200, 0, 10)
    """
    im = headers.get(b"if-match")
    if im is not None:
        if not _strong_match(im, etag):
            return 412, 0, 0
    else:
        ius = headers.get(b"if-unmodified-since")
        if ius is not None:
            since = http_date_seconds(ius)
            if since is not None and mtime > since:
                return 412, 0, 0
    inm = headers.get(b"if-none-match")
    if inm is not None:
        if _weak_match(inm, etag):
            return 304, 0, 0
    else:
        ims = headers.get(b"if-modified-since")
        if ims is not None:
            since = http_date_seconds(ims)
            if (since is not None and mtime <= since
                    and since <= (time.time() if now is None else now)):
                return 304, 0, 0
    rng = headers.get(b"range")
    if rng is None or not is_get:
        return 200, 0, size
    if_range = headers.get(b"if-range")
    if if_range is not None:
        validator = if_range.strip()
        if validator.startswith(b'"') or validator.startswith(b"W/"):
            if validator != etag:  # strong comparison: a weak tag never matches
                return 200, 0, size
        elif http_date_seconds(validator) != mtime:
            return 200, 0, size
    parsed = parse_range(rng, size)
    if parsed is None:
        return 200, 0, size
    if parsed == UNSATISFIABLE:
        return 416, 0, 0
    return 206, parsed[0], parsed[1] + 1
