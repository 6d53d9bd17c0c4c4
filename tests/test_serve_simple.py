"""The simple-request shortcut of ``zcio.serve._http`` against llhttp, its reference.

Whatever bytes arrive, a connection with the shortcut must produce exactly the events
that llhttp alone produces (same requests, same fields, same errors, same order), and
the shortcut must actually be taken for the common request.
"""

from __future__ import annotations

import random

import pytest

from test_serve_support import mutated
from zcio.serve._http import Limits, Request, RequestError, ServerConnection

SIMPLE = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


def _llhttp_only(limits: Limits | None = None) -> ServerConnection:
    conn = ServerConnection(limits)
    conn._simple = lambda data: False  # type: ignore[method-assign]
    return conn


def _events(conn: ServerConnection, pieces: list[bytes]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for piece in pieces:
        conn.receive_data(memoryview(bytearray(piece)))
        while True:
            ev = conn.next_event()
            if isinstance(ev, Request):
                out.append(("request", ev.method, ev.target, ev.version, ev.headers,
                            ev.keep_alive))
            elif isinstance(ev, RequestError):
                out.append(("error", ev.status))
            else:
                out.append((repr(ev),))
                break
    out.append((conn.in_request, conn.done))
    return out


def _same(pieces: list[bytes], limits: Limits | None = None) -> list[tuple[object, ...]]:
    got = _events(ServerConnection(limits), pieces)
    want = _events(_llhttp_only(limits), pieces)
    assert got == want, pieces
    return got


def test_the_common_request_takes_the_shortcut() -> None:
    conn = ServerConnection()
    taken: list[bool] = []
    simple = conn._simple

    def spy(data: bytes | bytearray | memoryview) -> bool:
        taken.append(simple(data))
        return taken[-1]

    conn._simple = spy  # type: ignore[method-assign]
    events = _events(conn, [SIMPLE, b"HEAD /a?b=c HTTP/1.1\r\nhost:x\r\nAccept: */*\r\n\r\n"])
    assert taken == [True, True]
    assert events[0] == ("request", b"GET", b"/1k.bin", "1.1", {b"host": b"127.0.0.1:8080"},
                         True)
    assert events[2] == ("request", b"HEAD", b"/a?b=c", "1.1",
                         {b"host": b"x", b"accept": b"*/*"}, True)


@pytest.mark.parametrize("byte", range(0x21, 0x7F))
def test_every_visible_byte_in_the_target(byte: int) -> None:
    _same([b"GET /a%cb HTTP/1.1\r\nHost: x\r\n\r\n" % byte, SIMPLE])


@pytest.mark.parametrize("byte", [*range(0, 0x21), *range(0x7F, 0x100, 7)])
def test_other_bytes_in_a_field_value_and_name(byte: int) -> None:
    _same([b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a%cb\r\n\r\n" % byte, SIMPLE])
    _same([b"GET / HTTP/1.1\r\nHost: x\r\nX-%c: ab\r\n\r\n" % byte, SIMPLE])


@pytest.mark.parametrize("request_", [
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A:  two spaces\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A: trailing \r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A:\ttab\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A:\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A : v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nhOST: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nAccept: a\r\naccept: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nAccept: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    b"GET /\r\n\r\n",
    b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\n\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHo",
    b"GET / HTTP/1.1\r\nHost: x\r\n",
])
def test_requests_near_the_shortcut(request_: bytes) -> None:
    _same([request_, SIMPLE])
    _same([SIMPLE, request_, SIMPLE])


@pytest.mark.parametrize("limits", [
    Limits(max_target=7), Limits(max_target=8), Limits(max_headers=1),
    Limits(max_headers=2), Limits(max_header_bytes=len(b"host") + 1 + 4),
    Limits(max_header_bytes=len(b"host") + 1 + 3),
])
def test_limits_are_the_same_either_way(limits: Limits) -> None:
    _same([b"GET /abcdef HTTP/1.1\r\nHost: x\r\n\r\n", SIMPLE], limits)
    _same([b"GET /abcdefg HTTP/1.1\r\nHost: x\r\nAccept: y\r\n\r\n", SIMPLE], limits)


def test_the_shortcut_leaves_llhttp_at_a_message_boundary() -> None:
    body = b"GET /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd"
    events = _same([SIMPLE, body, SIMPLE, SIMPLE[:10], SIMPLE[10:], SIMPLE, b""])
    assert [e[2] for e in events if e[0] == "request"] == [b"/1k.bin", b"/b", b"/1k.bin",
                                                           b"/1k.bin", b"/1k.bin"]


def test_random_mutations_of_simple_requests() -> None:
    rng = random.Random(1913)
    bases = [SIMPLE, b"HEAD /a/b?c=d HTTP/1.1\r\nhost:h\r\nAccept-Encoding: gzip, br\r\n"
                     b"Range: bytes=0-1\r\n\r\n"]
    for _ in range(3000):
        _same([mutated(rng, rng.choice(bases)), SIMPLE])
