"""``zcio serve`` against hostile input: the server never leaks, crashes or stalls.

Traversal in every encoding, symlinks and special files, oversized and malformed
requests, bad ranges, random garbage, a slowloris, clients that vanish or stop reading,
a thousand idle connections and a connection cap.  After each attack a well-behaved
client must still get a correct response, quickly.
"""

from __future__ import annotations

import random
import resource
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from test_serve_support import (
    SECRET,
    SMALL,
    TIMEOUT,
    Reader,
    Served,
    blobs,
    read_all,
    serve,
    status_of,
    wait_until,
    www,
)
from zcio.serve._http import CLOSED, NEED_DATA, Limits, Request, RequestError, ServerConnection
from zcio.serve._paths import PathError, target_path

__all__ = ["blobs", "serve", "www"]

Serve = Callable[..., Served]


def assert_healthy(s: Served, within: float = 2.0) -> None:
    """A well-behaved client gets a correct response, fast."""
    t0 = time.monotonic()
    status, _, body = s.get("/small.bin")
    assert status == 200 and body == SMALL
    assert time.monotonic() - t0 < within


# -- traversal -----------------------------------------------------------------------------

TRAVERSALS = [
    b"/../secret.txt", b"/../../../../../../etc/passwd", b"/%2e%2e/secret.txt",
    b"/%2E%2E/secret.txt", b"/.%2e/secret.txt", b"/%2e./secret.txt",
    b"/..%2fsecret.txt", b"/%2e%2e%2fsecret.txt", b"/%2e%2e%2Fsecret.txt",
    b"/sub/../../secret.txt", b"/sub/%2e%2e/%2e%2e/secret.txt", b"/./../secret.txt",
    b"/..\\secret.txt", b"/%5c..%5csecret.txt", b"/%252e%252e/secret.txt",
    b"/..;/secret.txt", b"/%c0%ae%c0%ae/secret.txt", b"/%uff0e%uff0e/secret.txt",
    b"/secret.txt%00.html", b"/%00", b"/small.bin%00", b"//../secret.txt",
    b"/sub/..%00/secret.txt", b"http://x/../secret.txt", b"http://x/%2e%2e/secret.txt",
    b"/link-outside", b"/abs-link-outside", b"/dir-outside/passwd",
    b"/dir-outside/../secret.txt", b"/.env", b"/.git/config", b"/%2eenv", b"/%2egit/config",
    b"/sub/.%2e/.env", b"/fifo", b"/..", b"/.", b"/%2e", b"/%2e%2e", b"*", b"secret.txt",
    b"/noindex/.hidden",
]


@pytest.mark.parametrize("target", TRAVERSALS, ids=lambda t: t.decode("latin-1"))
def test_no_path_escapes_the_root(serve: Serve, target: bytes) -> None:
    s = serve(list_directories=True)
    reply = s.raw(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target)
    assert status_of(reply) in (400, 404), reply[:200]
    assert SECRET not in reply
    assert_healthy(s)


def test_traversal_in_the_path_core() -> None:
    for target in TRAVERSALS:
        try:
            rel, _ = target_path(target)
        except PathError:
            continue
        assert ".." not in rel.split("/") and not rel.startswith("/")
        assert "\0" not in rel


def test_symlinks_inside_are_followed_outside_only_when_asked(serve: Serve) -> None:
    s = serve()
    assert s.get("/link-inside")[2] == SMALL
    assert s.get("/abs-link-inside")[2] == SMALL  # absolute, but inside
    assert s.get("/dir-inside/deep.txt")[2] == b"deep\n"
    assert s.get("/link-outside")[0] == 404
    follow = serve(follow_symlinks=True)
    assert follow.get("/link-outside")[2] == SECRET
    assert follow.get("/abs-link-outside")[2] == SECRET
    assert follow.get("/dir-outside/passwd")[2] == SECRET
    assert follow.get("/../secret.txt")[0] == 400  # still no way up by the path


def test_a_symlink_swapped_after_caching_is_not_followed_out(serve: Serve) -> None:
    s = serve()
    link = s.root / "swap"
    link.symlink_to("small.bin")
    assert s.get("/swap")[2] == SMALL  # cached now
    link.unlink()
    link.symlink_to(s.root.parent / "secret.txt")
    status, _, body = s.get("/swap")
    assert status == 404 and SECRET not in body


def test_dotfiles_when_asked(serve: Serve) -> None:
    s = serve(dotfiles=True)
    assert s.get("/.env")[2] == SECRET
    assert s.get("/.git/config")[2] == SECRET
    assert s.get("/%2e%2e/secret.txt")[0] == 400


def test_special_files_never_stall(serve: Serve, www: Path) -> None:
    s = serve()
    t0 = time.monotonic()
    assert s.get("/fifo")[0] == 404
    assert time.monotonic() - t0 < 2
    (www / "noread.txt").write_bytes(b"x")
    (www / "noread.txt").chmod(0)
    status = s.get("/noread.txt")[0]
    assert status in (200, 403)  # root reads anything
    assert_healthy(s)


# -- limits --------------------------------------------------------------------------------


def test_oversized_request_line_gets_414(serve: Serve) -> None:
    s = serve()
    reply = s.raw(b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(reply) == 414 and b"Connection: close" in reply
    assert_healthy(s)


@pytest.mark.parametrize("head", [
    b"X-Big: " + b"v" * 20000 + b"\r\n",
    b"".join(b"X-%d: v\r\n" % i for i in range(200)),
    b"X-" + b"n" * 20000 + b": v\r\n",
], ids=["long value", "many fields", "long name"])
def test_oversized_headers_get_431(serve: Serve, head: bytes) -> None:
    s = serve()
    reply = s.raw(b"GET / HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
    assert status_of(reply) == 431
    assert_healthy(s)


def test_an_endless_header_in_small_pieces_is_cut_off(serve: Serve) -> None:
    s = serve()
    with socket.create_connection((s.host, s.port), timeout=TIMEOUT) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        sent = 0
        try:
            while sent < 1 << 20:
                c.sendall(b"v" * 997)
                sent += 997
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_all(c)
    assert sent < 1 << 20 or status_of(reply) == 431
    assert status_of(reply) in (0, 431)
    assert_healthy(s)


def test_core_limits_are_exact() -> None:
    lim = Limits(max_target=100, max_header_bytes=200, max_headers=3, max_body=10)

    def event(data: bytes) -> object:
        conn = ServerConnection(lim)
        for i in range(0, len(data), 7):  # in pieces, as a socket may deliver it
            conn.receive_data(data[i:i + 7])
        return conn.next_event()

    ok = event(b"GET /" + b"a" * 99 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(ok, Request) and len(ok.target) == 100
    bad = event(b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(bad, RequestError) and bad.status == 414
    assert isinstance(event(b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n"), Request)
    bad = event(b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
    assert isinstance(bad, RequestError) and bad.status == 431
    bad = event(b"GET / HTTP/1.1\r\nHost: x\r\nA: " + b"v" * 200 + b"\r\n\r\n")
    assert isinstance(bad, RequestError) and bad.status == 431
    body = event(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
    assert isinstance(body, Request)
    bad = event(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n01234567890")
    assert isinstance(bad, RequestError) and bad.status == 413


def test_core_events_in_order_then_closed() -> None:
    conn = ServerConnection()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\nGET /c HTTP/1.1\r\n\r\n")
    a, b = conn.next_event(), conn.next_event()
    assert isinstance(a, Request) and a.target == b"/a" and a.keep_alive
    assert isinstance(b, Request) and b.target == b"/b" and not b.keep_alive
    assert conn.next_event() is CLOSED  # nothing after Connection: close is read
    conn = ServerConnection()
    conn.receive_data(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nBROKEN\r\n\r\n")
    first, second = conn.next_event(), conn.next_event()
    assert isinstance(first, Request) and isinstance(second, RequestError)
    assert conn.next_event() is CLOSED
    conn = ServerConnection()
    conn.receive_data(b"GET /a HTTP/1.1\r\nHo")
    assert conn.in_request and conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED


# -- malformed requests ------------------------------------------------------------------

MALFORMED = [
    b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET /\r\n\r\n", b"GET / HTTP/1.1\n\n",
    b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", b"GET / HTTP/0.9\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header: x\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n folded: x\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(64),
    b"\r\n\r\n\r\n\x00\x00\x00", b"GET / HTTP/1.1\r\nHost: x\r\n\x00: y\r\n\r\n",
    b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("data", MALFORMED, ids=lambda d: repr(d[:24]))
def test_malformed_requests_get_400_class_answers(serve: Serve, data: bytes) -> None:
    s = serve(request_timeout=1.0, idle_timeout=1.0)
    reply = s.raw(data, wait=5)
    assert status_of(reply) in (0, 400, 405, 505), reply[:200]
    assert assert_healthy(s) is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"])
def test_other_methods_get_405(serve: Serve, method: str) -> None:
    s = serve()
    status, headers, _ = s.get("/small.bin", method=method)
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    conn = s.connection()  # a body is read and the connection stays usable
    conn.request(method, "/small.bin", body=b"x" * 1000)
    assert conn.getresponse().read()
    conn.request("GET", "/small.bin")
    assert conn.getresponse().read() == SMALL
    conn.close()


def test_connect_and_upgrade_are_answered_then_closed(serve: Serve) -> None:
    s = serve()
    reply = s.raw(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert status_of(reply) in (400, 405)
    reply = s.raw(b"GET /small.bin HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n"
                  b"Upgrade: websocket\r\n\r\n\x81\x85garbage")
    assert status_of(reply) == 200 and reply.endswith(SMALL)
    assert_healthy(s)


def test_a_too_large_body_gets_413(serve: Serve) -> None:
    s = serve()
    reply = s.raw(b"GET /small.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
                  + b"x" * 100000)
    assert status_of(reply) == 413
    assert_healthy(s)


@pytest.mark.parametrize("spec", ["bytes=" + "9" * 5000 + "-", "bytes=-" + "9" * 5000,
                                  "bytes=0-" + "9" * 5000, "bytes=" + "0-1," * 2000 + "5-6",
                                  "bytes=\t0-1", "bytes=0x10-0x20", "bytes=1e3-"])
def test_hostile_ranges(serve: Serve, spec: str) -> None:
    s = serve()
    status, _, body = s.get("/small.bin", {"Range": spec})
    assert status in (200, 206, 416)
    if status == 200:
        assert body == SMALL
    assert_healthy(s)


def test_random_garbage_never_hurts(serve: Serve) -> None:
    s = serve(request_timeout=1.0, idle_timeout=1.0)
    rng = random.Random(20261122)  # fixed seed: the same bytes every run
    prefixes = [b"", b"GET ", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n"]
    for i in range(60):
        data = rng.choice(prefixes) + rng.randbytes(rng.randrange(1, 3000))
        reply = s.raw(data, wait=3)
        assert status_of(reply) in (0, 200, 400, 404, 405, 413, 414, 431, 505), (i, data)
    assert_healthy(s)


# -- slow, vanishing and greedy clients ----------------------------------------------------


def test_slowloris_is_timed_out_while_others_are_served(serve: Serve) -> None:
    s = serve(request_timeout=1.0, idle_timeout=5.0)
    slow = socket.create_connection((s.host, s.port), timeout=TIMEOUT)
    slow.sendall(b"GET /small.bin HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < 4:
        try:
            slow.sendall(b"X")  # one byte at a time: never completes
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        assert_healthy(s, within=0.5)
        time.sleep(0.1)
        if s.server.connections == 0:
            closed = True
            break
    elapsed = time.monotonic() - t0
    slow.close()
    assert closed and elapsed < 3.0, elapsed


def test_idle_keep_alive_connections_time_out(serve: Serve) -> None:
    s = serve(idle_timeout=0.5)
    with socket.create_connection((s.host, s.port), timeout=TIMEOUT) as c:
        t0 = time.monotonic()
        assert c.recv(10) == b""
        assert 0.3 < time.monotonic() - t0 < 3


def test_a_client_vanishing_mid_body(serve: Serve) -> None:
    s = serve()
    for _ in range(5):
        c = socket.create_connection((s.host, s.port), timeout=TIMEOUT)
        c.sendall(b"GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        c.recv(100000)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # a reset, with most of the body unsent
    for _ in range(3):
        c = socket.create_connection((s.host, s.port), timeout=TIMEOUT)
        c.sendall(b"GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        c.close()  # a plain close before reading anything
    assert wait_until(lambda: s.server.connections == 0, 5)
    assert_healthy(s)
    assert s.get("/large.bin")[2] == (s.root / "large.bin").read_bytes()


def test_a_client_that_stops_reading_is_dropped(serve: Serve) -> None:
    s = serve(send_timeout=0.5)
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.settimeout(TIMEOUT)
    c.connect((s.host, s.port))
    c.sendall(b"GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
    time.sleep(0.2)
    assert_healthy(s)
    assert wait_until(lambda: s.server.connections == 0, 5)
    c.close()


def test_many_pipelined_requests(serve: Serve) -> None:
    s = serve()
    n = 500
    with socket.create_connection((s.host, s.port), timeout=TIMEOUT) as c:
        c.sendall(b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n" * n)
        reader = Reader(c)
        for _ in range(n):
            assert reader.next().read() == SMALL
        reader.close()


@pytest.fixture
def many_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2300:
        pytest.skip("needs 2300 file descriptors")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_idle_connections(serve: Serve, many_fds: None) -> None:
    s = serve(idle_timeout=30)
    idle = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection((s.host, s.port), timeout=TIMEOUT))
        assert wait_until(lambda: s.server.connections == 1000, 10)
        for _ in range(20):
            assert_healthy(s, within=1.0)
        conn = s.connection()
        for _ in range(50):
            conn.request("GET", "/medium.bin")
            assert len(conn.getresponse().read()) == 200 << 10
        conn.close()
    finally:
        for c in idle:
            c.close()
    assert wait_until(lambda: s.server.connections == 0, 10)


def test_the_connection_cap_evicts_idle_connections(serve: Serve) -> None:
    s = serve(max_connections=10, idle_timeout=30)
    idle = [socket.create_connection((s.host, s.port), timeout=TIMEOUT) for _ in range(10)]
    try:
        assert wait_until(lambda: s.server.connections == 10, 5)
        for _ in range(5):
            assert_healthy(s)
        assert s.server.connections <= 10
        assert read_all(idle[0]) == b""  # the oldest idle one made room
    finally:
        for c in idle:
            c.close()


def test_the_cap_waits_when_nothing_is_idle(serve: Serve) -> None:
    s = serve(max_connections=2, idle_timeout=30, request_timeout=1.0)
    t0 = time.monotonic()  # the busy requests' timeout runs from about here (accept)
    busy = [socket.create_connection((s.host, s.port), timeout=TIMEOUT) for _ in range(2)]
    try:
        for c in busy:
            c.sendall(b"GET /small.bin HTTP/1.1\r\n")  # mid-request: not idle
        # Both counted *and* seen mid-request: a connection whose bytes the server has not
        # read yet still looks idle, and the cap rightly evicts it to make room.
        assert wait_until(lambda: s.server.connections == 2 and s.server._loop is not None
                          and all(c.started is not None
                                  for c in list(s.server._loop._conns.values())), 5)
        assert_healthy(s, within=5.0)  # accepted once a slow one timed out
        # Served no earlier than a busy request's 1 s timeout allowed (measured from the
        # busy connections, not from wait_until, which may itself take most of that second).
        assert time.monotonic() - t0 > 0.8
    finally:
        for c in busy:
            c.close()


def test_the_protocol_core_imports_no_io() -> None:
    """The sans-IO rule (STYLE.md): bytes in, events out; no socket, os or mmap."""
    import ast

    import zcio.serve._http as core
    import zcio.serve._ranges as ranges

    for module in (core, ranges):
        assert module.__file__ is not None
        tree = ast.parse(Path(module.__file__).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & {"socket", "os", "mmap", "select", "selectors"}, module


def test_without_openat2_the_fallback_keeps_the_root(serve: Serve) -> None:
    """Kernels before 5.6 (or a seccomp filter) lack openat2: realpath checks stand in."""
    s = serve()
    s.server.root.use_openat2 = False
    assert s.get("/link-inside")[2] == SMALL
    assert s.get("/abs-link-inside")[2] == SMALL
    assert s.get("/dir-inside/deep.txt")[2] == b"deep\n"
    for target in ("/link-outside", "/abs-link-outside", "/dir-outside/passwd", "/fifo"):
        status, _, body = s.get(target)
        assert status == 404 and SECRET not in body, target
    assert s.get("/%2e%2e/secret.txt")[0] == 400
