"""The HTTP/1.1 protocol core of ``zcio serve``: bytes in, events out (sans-IO, as h11).

This module imports no socket, ``os`` or ``mmap`` code: the I/O layer (``_server``)
reads bytes from wherever it likes, hands them to :meth:`ServerConnection.receive_data`,
and takes events from :meth:`ServerConnection.next_event`:

* :class:`Request`: one complete request (method, target, version, headers, and whether
  the connection may stay open after its response);
* :class:`RequestError`: the bytes cannot be a request the server answers (malformed,
  too large, a version or method it does not speak): answer ``status`` and close;
* ``CONTINUE``: the request waits for ``100 Continue`` before sending its body
  (``Expect: 100-continue``); the I/O layer sends :data:`CONTINUE_LINE`;
* ``NEED_DATA``: nothing complete yet; ``CLOSED``: the peer ended its side and every
  request was taken.

A request that announces a body the server will refuse (a method other than GET and
HEAD with ``Expect: 100-continue``, or a ``Content-Length`` over the limit) is refused
as soon as its head is complete, without waiting for the body: 405 or 413, then close.
An HTTP/0.9 request line (no version) is refused at once with 505; llhttp would
otherwise wait for a header section that such a client never sends.

Parsing is done by llhttp (Node.js's parser, through ``httptools``), with one shortcut:
the common request, whole in one read (what a browser or a benchmark sends for a file),
is matched by one regular expression, :data:`_SIMPLE`, that accepts a strict subset of
what llhttp accepts: ``GET`` or ``HEAD`` of an origin-form target of RFC 3986
characters over ``HTTP/1.1``, header fields of token names and visible-ASCII values,
a single ``Host``, no field repeated, and none of the fields that frame a body or
change the connection (``Content-Length``, ``Transfer-Encoding``, ``Connection``,
``Upgrade``, ``Expect``), within the limits.  It makes the same :class:`Request` that
llhttp's callbacks would (a test holds the two to that), without the five callbacks;
anything else, or anything over a limit, goes to llhttp, which answers it as before.
Pipelined requests come out one by one, in order.  After a request that ends the
connection (``Connection: close``, HTTP/1.0 without keep-alive, an upgrade) or after an
error, further bytes are ignored: nothing the peer sends can reach the file layer
except through a complete, valid :class:`Request`.

Limits (:class:`Limits`), checked as bytes arrive so that memory stays bounded whatever
the peer sends: the request target (414), the header section (431: total bytes and
count), and a body on a GET (413; a body is read and discarded).  llhttp keeps a header
it has not finished inside itself; every byte fed while a head is incomplete is counted
too, so an endless header is refused after at most ``max_target + max_header_bytes``
bytes, in whatever pieces it arrives.

Responses: :func:`response_head` encodes a status line and header fields.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

try:
    import httptools
except ModuleNotFoundError as e:  # a lean install: say which extra, as the CLI does
    raise ModuleNotFoundError(
        "zcio.serve needs the serve extra (httptools is not installed): "
        "pip install 'zcio[serve]'", name=e.name) from None

__all__ = ["NEED_DATA", "CLOSED", "CONTINUE", "CONTINUE_LINE", "Limits", "Request",
           "RequestError", "ServerConnection", "response_head", "REASONS"]


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA = _Sentinel("NEED_DATA")
CLOSED = _Sentinel("CLOSED")
CONTINUE = _Sentinel("CONTINUE")
CONTINUE_LINE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of a request the server reads before refusing it."""

    max_target: int = 8192  #: bytes of the request target (414 above)
    max_header_bytes: int = 16384  #: bytes of all header fields (431 above)
    max_headers: int = 100  #: number of header fields (431 above)
    max_body: int = 65536  #: bytes of a request body, read and discarded (413 above)


class Request:
    """One complete request.  ``headers`` maps lower-case names to values; repeated
    fields are joined with ``", "`` (RFC 9110 5.3)."""

    __slots__ = ("method", "target", "version", "headers", "keep_alive")

    def __init__(self, method: bytes, target: bytes, version: str,
                 headers: dict[bytes, bytes], keep_alive: bool) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive

    def __repr__(self) -> str:
        return (f"Request({self.method!r}, {self.target!r}, HTTP/{self.version}, "
                f"keep_alive={self.keep_alive})")


class RequestError:
    """The peer sent something the server cannot answer as a request: answer ``status``
    and close the connection."""

    __slots__ = ("status", "detail")

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail

    def __repr__(self) -> str:
        return f"RequestError({self.status}, {self.detail!r})"


Event = Request | RequestError | _Sentinel

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
#: One whole simple request (see the module docstring): method, target, header fields.
_SIMPLE = re.compile(
    rb"(GET|HEAD) (/[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*) HTTP/1\.1\r\n"
    rb"((?:" + _TCHAR + rb"+: ?[\x21-\x7e](?:[ \x21-\x7e]*[\x21-\x7e])?\r\n)*)\r\n")
_FIELD = re.compile(rb"(" + _TCHAR + rb"+): ?([^\r]*)\r\n")
#: Fields that leave the simple request to llhttp: they frame a body or change the
#: connection.
_NOT_SIMPLE = frozenset((b"content-length", b"transfer-encoding", b"connection",
                         b"upgrade", b"expect"))
_SIMPLE_MAX = 8192  # bytes: a longer read goes to llhttp


class _Refused(Exception):
    """Raised from a parser callback to stop llhttp; carries the answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class ServerConnection:
    """The server side of one HTTP/1.1 connection, as a parser-driven state machine.

    ``receive_data(b"")`` says the peer closed its side.  ``in_request`` is true while a
    request has begun but is not complete (the I/O layer times this, against slow
    clients); ``done`` is true once no further request can come.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._parser = httptools.HttpRequestParser(self)
        self._events: deque[Request | RequestError | _Sentinel] = deque()
        self._eof = False
        self._done = False  # a final request or an error: ignore what follows
        self._in_head = False
        self.in_request = False
        self._head_bytes = 0
        self._target: list[bytes] = []
        self._target_len = 0
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._body_bytes = 0
        self._method = b""
        self._version = ""

    @property
    def done(self) -> bool:
        return self._done or self._eof

    def at_rest(self) -> bool:
        """Between requests, with nothing received that is not taken: the next bytes
        begin a request (and may be one simple request, see ``_simple``)."""
        return not (self.in_request or self._events or self._done or self._eof)

    # -- input -------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the peer; ``b""`` means it closed its side."""
        if self._done:
            return
        if not data:
            self._eof = True
            return
        if not self.in_request and len(data) <= _SIMPLE_MAX and self._simple(data):
            return
        if self._in_head:  # llhttp may buffer a partial header: count every byte
            self._head_bytes += len(data)
            lim = self.limits
            if self._head_bytes > lim.max_target + lim.max_header_bytes:
                # on_url refuses a long target as it arrives, so this is a header
                self._fail(431, "request head too large")
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An upgrade (or CONNECT) request: answered as a plain request, then closed.
            if self._events and isinstance(self._events[-1], Request):
                self._events[-1].keep_alive = False
                self._done = True
            else:
                self._fail(400, "upgrade without a complete request")
        except httptools.HttpParserCallbackError as e:
            refused = e.__context__
            if isinstance(refused, _Refused):
                self._fail(refused.status, str(refused))
            else:  # pragma: no cover - our callbacks raise nothing else
                self._fail(400, "bad request")
        except httptools.HttpParserError as e:
            if not self._done:
                self._fail(400, str(e) or "malformed request")
            return
        if (self._in_head and self._target and self._parser.get_http_version() == "0.0"
                and b"\n" in bytes(data)):
            # The request line ended without a version: HTTP/0.9 (see the docstring).
            self._fail(505, "HTTP/0.9 is not supported")

    def _simple(self, data: bytes | bytearray | memoryview) -> bool:
        """Take ``data`` as one simple request (see the module docstring) if it is
        one, within the limits: True when its Request is queued; False and nothing
        changed otherwise (llhttp is at a message boundary, as before)."""
        m = _SIMPLE.fullmatch(data)
        if m is None:
            return False
        method, target, fields = m.groups()
        lim = self.limits
        if len(target) > lim.max_target:
            return False
        headers: dict[bytes, bytes] = {}
        size = 0
        for name, value in _FIELD.findall(fields):
            name = name.lower()
            if name in headers or name in _NOT_SIMPLE:
                return False
            headers[name] = value
            size += len(name) + len(value) + 4
        if (b"host" not in headers or size > lim.max_header_bytes
                or len(headers) > lim.max_headers):
            return False
        self._events.append(Request(method, target, "1.1", headers, True))
        return True

    def _fail(self, status: int, detail: str) -> None:
        self._events.append(RequestError(status, detail))
        self._done = True
        self._in_head = self.in_request = False

    def next_event(self) -> Event:
        """The next event: a Request, a RequestError, CONTINUE, NEED_DATA or CLOSED."""
        if self._events:
            return self._events.popleft()
        if self._eof or self._done:
            return CLOSED
        return NEED_DATA

    # -- llhttp callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = self.in_request = True
        self._head_bytes = 0
        self._target = []
        self._target_len = 0
        self._headers = {}
        self._header_bytes = 0
        self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._target_len += len(url)
        if self._target_len > self.limits.max_target:
            raise _Refused(414, f"request target longer than {self.limits.max_target} bytes")
        self._target.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        lim = self.limits
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > lim.max_header_bytes:
            raise _Refused(431, f"header fields longer than {lim.max_header_bytes} bytes")
        headers = self._headers
        if len(headers) >= lim.max_headers:
            raise _Refused(431, f"more than {lim.max_headers} header fields")
        name = name.lower()
        old = headers.get(name)
        if old is None:
            headers[name] = value
        elif name == b"host":
            raise _Refused(400, "more than one Host field")
        else:
            headers[name] = old + b", " + value

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        parser = self._parser
        self._method = parser.get_method()
        self._version = parser.get_http_version()
        if self._version not in ("1.1", "1.0"):
            raise _Refused(505, f"HTTP/{self._version} is not supported")
        if self._version == "1.1" and b"host" not in self._headers:
            raise _Refused(400, "HTTP/1.1 request without Host")
        headers = self._headers
        length = headers.get(b"content-length")
        expect = (self._version == "1.1"
                  and headers.get(b"expect", b"").lower() == b"100-continue"
                  and (length not in (None, b"0") or b"transfer-encoding" in headers))
        if expect and self._method not in (b"GET", b"HEAD"):
            raise _Refused(405, f"{self._method.decode('latin-1')} is not allowed")
        if length is not None and int(length.partition(b",")[0]) > self.limits.max_body:
            raise _Refused(413, f"request body longer than {self.limits.max_body} bytes")
        if expect:
            self._events.append(CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body:
            raise _Refused(413, f"request body longer than {self.limits.max_body} bytes")

    def on_message_complete(self) -> None:
        target = self._target[0] if len(self._target) == 1 else b"".join(self._target)
        keep_alive = self._parser.should_keep_alive()
        self._events.append(Request(self._method, target, self._version, self._headers,
                                    keep_alive))
        self.in_request = False
        if not keep_alive:
            self._done = True


# -- responses ---------------------------------------------------------------------------

REASONS = {
    200: "OK", 206: "Partial Content", 301: "Moved Permanently", 304: "Not Modified",
    400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 412: "Precondition Failed", 413: "Content Too Large",
    414: "URI Too Long", 416: "Range Not Satisfiable", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\nServer: zcio\r\nDate: ".encode()
                 for code, reason in REASONS.items()}
_KEEP = b"\r\n"
_CLOSE = b"Connection: close\r\n\r\n"


def response_head(status: int, date: bytes, fields: bytes, keep_alive: bool) -> bytes:
    """The status line and header section of a response.

    ``date`` is an IMF-fixdate; ``fields`` are complete header lines, each ending in
    CRLF (``Content-Length`` among them whenever the status has content).  A response
    that ends the connection says ``Connection: close``.
    """
    return b"".join((_STATUS_LINES[status], date, b"\r\n", fields,
                     _KEEP if keep_alive else _CLOSE))
