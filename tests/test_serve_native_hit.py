"""The compiled hit path of ``zcio serve`` (``native/serve.c``) against the Python path.

``serve_hit`` reads what a client sent and answers it only when the Python path would
send exactly the cached response made for this second.  The reference is the Python
path itself (``ServerConnection`` fed the same bytes at rest, then ``Responder.respond``):
every hit must be one it makes, byte for byte, and a miss must leave the bytes read to
the caller with nothing sent.  Requests come from hypothesis, the parser's
near-shortcut corpus, and random mutations; the file changing under the cache, the
date moving, and a peer that does not read or has gone are tried too.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_serve_support import (
    SMALL,
    Served,
    blobs,
    mutated,
    read_response,
    serve,
    wait_until,
    www,
)
from zcio import _accel
from zcio.serve._conn import OUT, Conn
from zcio.serve._files import FileCache
from zcio.serve._http import NEED_DATA, Limits, Request, ServerConnection
from zcio.serve._paths import Root
from zcio.serve._respond import Responder, Response
from zcio.serve._server import Loop

__all__ = ["blobs", "serve", "www"]

native = _accel.native
pytestmark = pytest.mark.skipif(native is None, reason="zcio._native is not in use "
                                f"({_accel.unavailability_cause()})")
DATE = b"Thu, 03 Dec 2026 08:00:00 GMT"
COMMON = b"GET /small.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


@pytest.fixture(params=[False, True], ids=["identity-only", "precompressed"])
def responder(request: pytest.FixtureRequest, www: Path) -> Iterator[Responder]:
    """A responder whose cache holds small.bin, page.html and app.js with their wires
    made for DATE."""
    root = Root(str(www))
    r = Responder(root, FileCache(), precompressed=request.param)
    warm(r, b"/small.bin", b"/page.html", b"/app.js")
    yield r
    root.close()


def warm(r: Responder, *targets: bytes) -> None:
    """Cache each target and make its wire for DATE: two requests each (the first
    caches, the second makes the wire)."""
    for target in targets:
        for _ in range(2):
            r.respond(Request(b"GET", target, "1.1", {b"host": b"x"}, True), DATE, True)


def _limits_of(r: Responder, lim: Limits) -> tuple[int, int, int, bool]:
    return lim.max_target, lim.max_header_bytes, lim.max_headers, r.precompressed


def exchange(r: Responder, data: bytes, date: bytes = DATE, limits: Limits | None = None,
             ) -> tuple[object, bytes]:
    """``data`` sent by a peer, serve_hit on the other end: its answer, what the peer
    received."""
    lim = limits or Limits()
    a, b = socket.socketpair()
    try:
        b.setblocking(False)
        a.sendall(data)
        got = native.serve_hit(b.fileno(), bytearray(65536), r.cache.entries, date,
                               _limits_of(r, lim))
        a.setblocking(False)
        try:
            received = a.recv(1 << 20)
        except BlockingIOError:
            received = b""
        return got, received
    finally:
        a.close()
        b.close()


def reference(r: Responder, data: bytes, date: bytes, limits: Limits | None = None,
              ) -> Response | None:
    """What the Python path does with ``data`` read at rest: the cached wire response it
    sends for it, or None when it does anything else."""
    proto = ServerConnection(limits or Limits())
    proto.receive_data(data)
    event = proto.next_event()
    if type(event) is not Request or proto.next_event() is not NEED_DATA \
            or proto.in_request or not event.keep_alive:
        return None
    response = r.respond(event, date, True)
    key = event.target.partition(b"?")[0]
    rep = r.cache.entries.get((key, None))
    if rep is None or rep.wire is None or rep.wire[1] is not response:
        return None
    return response


def check(r: Responder, data: bytes, date: bytes = DATE, limits: Limits | None = None,
          ) -> bool:
    """serve_hit on ``data`` agrees with the reference; True when it was a hit."""
    got, received = exchange(r, data, date, limits)
    if type(got) is tuple:
        ref = reference(r, data, date, limits)
        assert ref is not None, data
        assert got == (len(data), ref.head, len(ref.head)), data
        assert received == ref.head
        return True
    assert got == len(data), data
    assert received == b"", data
    return False


# -- what it takes ---------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    COMMON,
    b"GET /small.bin?v=1&x=%20 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /page.html HTTP/1.1\r\nhost:x\r\nUser-Agent: wrk/4 (a b)\r\nAccept: */*\r\n\r\n",
    b"GET /small.bin HTTP/1.1\r\nX-Long: " + b"v" * 4000 + b"\r\nHOST: x\r\n\r\n",
    b"GET /app.js HTTP/1.1\r\nHost: x\r\nCookie: a=b; c=d\r\n\r\n",
])
def test_the_common_requests_are_hits(responder: Responder, data: bytes) -> None:
    assert check(responder, data)


def test_accept_encoding_is_a_hit_only_when_no_sibling_is_served(responder: Responder
                                                                ) -> None:
    data = b"GET /app.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, br\r\n\r\n"
    assert check(responder, data) is (not responder.precompressed)


@pytest.mark.parametrize("field", [
    b"If-None-Match: *", b"If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT",
    b"if-match: \"x\"", b"If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT",
    b"Range: bytes=0-1", b"range: bytes=5-", b"If-Range: \"x\"", b"Connection: close",
    b"Connection: keep-alive", b"Content-Length: 0", b"Expect: 100-continue",
    b"Transfer-Encoding: chunked", b"Upgrade: h2c",
])
def test_fields_that_change_the_answer_are_left_to_python(responder: Responder,
                                                          field: bytes) -> None:
    data = b"GET /small.bin HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n"
    assert not check(responder, data)


@pytest.mark.parametrize("data", [
    b"HEAD /small.bin HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /small.bin HTTP/1.0\r\nHost: x\r\n\r\n",
    b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /medium.bin HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /small.bin HTTP/1.1\r\n\r\n",
    COMMON + COMMON,
    COMMON[:-1],
    COMMON + b"G",
])
def test_what_is_not_one_cached_get_is_left_to_python(responder: Responder,
                                                      data: bytes) -> None:
    assert not check(responder, data)


def test_another_second_is_left_to_python(responder: Responder) -> None:
    assert not check(responder, COMMON, b"Thu, 03 Dec 2026 08:00:01 GMT")
    assert not check(responder, COMMON, DATE[:-3] + b"gmt")


def test_the_limits_are_the_parser_s(responder: Responder) -> None:
    data = b"GET /small.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: y\r\n\r\n"
    size = len(b"host" + b"127.0.0.1:8080") + 4 + len(b"accept" + b"y") + 4
    exact = Limits(max_target=len("/small.bin"), max_headers=2, max_header_bytes=size)
    assert check(responder, data, limits=exact)
    for over in (replace(exact, max_target=exact.max_target - 1),
                 replace(exact, max_headers=1), replace(exact, max_header_bytes=size - 1)):
        assert not check(responder, data, limits=over)


# -- the differential ------------------------------------------------------------------

_METHODS = [b"GET", b"HEAD", b"get", b"POST", b"GET "]
_TARGETS = [b"/small.bin", b"/small.bin?x=1", b"/page.html", b"/app.js", b"/missing",
            b"/sub/", b"/sub", b"/small.bin#f", b"/sm%61ll.bin", b"/./small.bin",
            b"//small.bin", b"/small.bin?", b"*", b"http://x/small.bin", b"/sm\xffall"]
_VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"http/1.1", b""]
_FIELDS = [b"Host: x", b"host:x", b"HOST: 127.0.0.1", b"Accept: */*", b"accept: a",
           b"Accept-Encoding: gzip", b"Accept-Encoding: identity", b"Range: bytes=0-0",
           b"If-None-Match: *", b"Connection: close", b"X-A:  two", b"X-A: trail ",
           b"X-A:\ttab", b"X-A:", b"X-A : v", b" folded", b"X-\x7f: v", b"X-A: \x80",
           b"Content-Length: 0", b"X-Empty: a b c", b"If-Foo: 1", b"Ifx: 1"]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    line = b" ".join((draw(st.sampled_from(_METHODS)), draw(st.sampled_from(_TARGETS)),
                      draw(st.sampled_from(_VERSIONS))))
    fields = draw(st.lists(st.sampled_from(_FIELDS), max_size=6))
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    data = line + eol + b"".join(f + eol for f in fields) + eol
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=3)) + data[cut + draw(st.integers(0, 2)):]
    return data


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # www: read only
@given(data=requests())
def test_every_hit_is_the_python_path_s_response(www: Path, data: bytes) -> None:
    root = Root(str(www))
    try:
        r = Responder(root, FileCache())
        warm(r, b"/small.bin")
        check(r, data)
    finally:
        root.close()


def test_random_mutations_of_a_hit(responder: Responder) -> None:
    rng = random.Random(2026)
    hits = 0
    for _ in range(1500):
        hits += check(responder, mutated(rng, COMMON))
    assert hits > 50  # mutations inside the Host value or the query stay hits


def test_the_most_expensive_hit_costs_less_than_the_python_path(responder: Responder
                                                                ) -> None:
    """A client repeating the costliest request the hit path takes (8 KiB of ninety
    distinct header names of one length, the repeated-name search's worst case) makes
    the server work no harder than the Python path would for the same bytes.  Measured
    in the same run, medians of 300: a search comparing every pair of names byte by
    byte cost 5.5x the Python path here; comparing hashes first, 0.25x.  The bar is
    1x."""
    names = [b"X-%075d" % i for i in range(90)]
    data = (b"GET /small.bin HTTP/1.1\r\nHost: x\r\n"
            + b"".join(name + b": v\r\n" for name in names) + b"\r\n")
    assert len(data) <= 8192 and check(responder, data)  # a hit, as the Python path's
    a, b = socket.socketpair()
    try:
        b.setblocking(False)
        limits, buf = _limits_of(responder, Limits()), bytearray(65536)
        native_ns, python_ns = [], []
        for _ in range(300):
            a.sendall(data)
            t0 = time.perf_counter_ns()
            native.serve_hit(b.fileno(), buf, responder.cache.entries, DATE, limits)
            native_ns.append(time.perf_counter_ns() - t0)
            a.recv(1 << 16)
            t0 = time.perf_counter_ns()  # the Python path: parse, then respond
            proto = ServerConnection(Limits())
            proto.receive_data(data)
            event = proto.next_event()
            assert isinstance(event, Request)
            responder.respond(event, DATE, True)
            python_ns.append(time.perf_counter_ns() - t0)
    finally:
        a.close()
        b.close()
    assert statistics.median(native_ns) < statistics.median(python_ns)


# -- the file under the cache ----------------------------------------------------------

def _changed(www: Path, change: Callable[[Path], None]) -> None:
    root = Root(str(www))
    try:
        r = Responder(root, FileCache())
        warm(r, b"/small.bin")
        assert check(r, COMMON)
        time.sleep(0.01)  # a new ctime/mtime, even on a coarse clock
        change(www / "small.bin")
        assert not check(r, COMMON)
    finally:
        root.close()


def _replace(p: Path) -> None:
    tmp = p.with_name("small.new")
    tmp.write_bytes(SMALL)
    os.replace(tmp, p)


def _rewrite(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[0] ^= 0xFF
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("change", [
    lambda p: p.chmod(0o000), _replace, _rewrite, lambda p: p.unlink(),
    lambda p: os.utime(p, ns=(0, 0)), lambda p: p.write_bytes(SMALL + b"x"),
], ids=["chmod", "replaced", "rewritten", "unlinked", "touched", "grown"])
def test_a_changed_file_is_never_a_hit(www: Path, change: Callable[[Path], None]) -> None:
    _changed(www, change)


# -- the send --------------------------------------------------------------------------

def _filled(b: socket.socket) -> None:
    """Fill b's way to its peer: the next send would block."""
    b.setblocking(False)
    chunk = b"\0" * 512
    while True:
        try:
            b.send(chunk)
        except BlockingIOError:
            break


def test_a_peer_that_does_not_read_gets_the_head_queued(responder: Responder) -> None:
    a, b = socket.socketpair()
    try:
        _filled(b)
        a.sendall(COMMON)
        got = native.serve_hit(b.fileno(), bytearray(4096), responder.cache.entries, DATE,
                               _limits_of(responder, Limits()))
        assert type(got) is tuple and got[0] == len(COMMON) and got[2] == 0
    finally:
        a.close()
        b.close()


def test_a_peer_that_went_away_is_a_failed_send(responder: Responder) -> None:
    a, b = socket.socketpair()
    try:
        b.setblocking(False)
        a.sendall(COMMON)
        a.close()
        got = native.serve_hit(b.fileno(), bytearray(4096), responder.cache.entries, DATE,
                               _limits_of(responder, Limits()))
        assert type(got) is tuple and got[0] == len(COMMON) and got[2] == -1
    finally:
        b.close()


def test_nothing_to_read_and_a_bad_descriptor(responder: Responder) -> None:
    a, b = socket.socketpair()
    try:
        b.setblocking(False)
        args = (bytearray(64), responder.cache.entries, DATE, _limits_of(responder, Limits()))
        assert native.serve_hit(b.fileno(), *args) == -1
        a.close()
        assert native.serve_hit(b.fileno(), *args) == 0  # the peer closed
        fd = b.detach()
        os.close(fd)
        with pytest.raises(OSError) as e:
            native.serve_hit(fd, *args)
        assert e.value.errno == errno.EBADF
        with pytest.raises(TypeError):
            native.serve_hit(fd, bytes(64), *args[1:])
    finally:
        b.close()


def test_the_buffer_is_held_only_during_the_call(responder: Responder) -> None:
    """serve_hit holds an export of the bytearray while it reads into it (so nothing
    can resize it under the recv) and lets go on every way out."""
    for data, peer_closed in ((COMMON, False), (b"GET /missing HTTP/1.1\r\n", False),
                              (b"", False), (b"", True)):
        a, b = socket.socketpair()
        try:
            b.setblocking(False)
            if data:
                a.sendall(data)
            if peer_closed:
                a.close()
            ba = bytearray(4096)
            native.serve_hit(b.fileno(), ba, responder.cache.entries, DATE,
                             _limits_of(responder, Limits()))
            ba.extend(b"x")  # BufferError if an export were left behind
            fd = b.detach()
            os.close(fd)
            with pytest.raises(OSError):
                native.serve_hit(fd, ba, responder.cache.entries, DATE,
                                 _limits_of(responder, Limits()))
            ba.extend(b"y")
        finally:
            a.close()
            b.close()


def test_the_loop_queues_what_did_not_go_out(responder: Responder) -> None:
    listener = socket.socket()
    a, b = socket.socketpair()
    loop = Loop(listener, responder)
    try:
        conn = Conn(b, "peer", loop.limits)
        loop._conns[conn.fd] = conn
        loop._ep.register(conn.fd, conn.events)
        head = b"H" * 100
        loop._answered(conn, 40, head, 30)
        assert bytes(conn.out[0]) == head[30:] and conn.events == OUT
        assert (loop.requests, loop.hits, loop._reads, loop._read_bytes, loop._writes,
                loop._written) == (1, 1, 1, 40, 1, 30)
        conn.out.clear()
        loop._answered(conn, 40, head, 0)
        assert conn.out[0] is head and loop._writes == 1
        conn.out.clear()
        loop._answered(conn, 40, head, -1)
        assert conn.fd not in loop._conns  # closed, as after a failed send
    finally:
        loop.close()
        listener.close()
        a.close()


# -- the server ------------------------------------------------------------------------

def _keep_alive_gets(s: Served, n: int) -> list[bytes]:
    with socket.create_connection((s.host, s.port), timeout=10) as c:
        bodies = []
        for _ in range(n):
            c.sendall(b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            resp = read_response(c)
            bodies.append(resp.read())
        return bodies


def test_the_server_answers_hits_in_c(serve: Callable[..., Served]) -> None:
    s = serve()
    assert _keep_alive_gets(s, 30) == [SMALL] * 30
    # the first in each second makes the wire in Python
    assert s.server.hits >= 20, (s.server.hits, s.server.requests)
    assert s.server.requests == 30


def test_the_access_log_keeps_the_python_path(serve: Callable[..., Served]) -> None:
    import io
    s = serve(access_log=io.StringIO())
    assert _keep_alive_gets(s, 10) == [SMALL] * 10
    assert s.server.hits == 0


def test_a_client_that_stops_reading_gets_every_byte(serve: Callable[..., Served]) -> None:
    """Hits while the server's socket fills: partial sends are queued, the connection
    leaves rest, later requests wait for it; reading afterwards gets every response."""
    s = serve()
    request = b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.socket() as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.settimeout(10)
        c.connect((s.host, s.port))
        n = 300
        for _ in range(n):
            c.sendall(request)
            time.sleep(0.001)
        assert wait_until(lambda: s.server.requests > 2)
        got = bytearray()
        while got.count(b"HTTP/1.1 200 OK") < n or not got.endswith(SMALL):
            chunk = c.recv(1 << 16)
            assert chunk
            got += chunk
    parts = bytes(got).split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(parts) == n and all(p.endswith(b"\r\n\r\n" + SMALL) for p in parts)
    assert s.server.hits > 0
