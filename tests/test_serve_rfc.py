"""``zcio serve`` against RFC 9110/9112 and real clients: the gaps a review found.

``Expect: 100-continue`` answered (or refused) at once, HTTP/0.9 refused at once,
directory names that are not UTF-8, and a permission change that must be seen even for
a file served from memory.  Each test ends with a well-behaved request.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from test_serve_support import SMALL, TIMEOUT, Served, blobs, serve, status_of, www
from zcio.serve._files import FileCache
from zcio.serve._http import CONTINUE, CONTINUE_LINE, Request, RequestError, ServerConnection
from zcio.serve._paths import Root
from zcio.serve._respond import Responder

__all__ = ["blobs", "serve", "www"]

Serve = Callable[..., Served]
CURL = shutil.which("curl")


def _exchange(s: Served, data: bytes, wait: float = 5.0) -> tuple[bytes, float]:
    """Send ``data``, read until the server closes or ``wait`` passes: (reply, seconds
    until the first byte of the reply)."""
    with socket.create_connection((s.host, s.port), timeout=TIMEOUT) as c:
        c.sendall(data)
        t0 = time.monotonic()
        c.settimeout(wait)
        chunks: list[bytes] = []
        first = -1.0
        while True:
            try:
                chunk = c.recv(65536)
            except TimeoutError:
                break
            if first < 0:
                first = time.monotonic() - t0
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks), first


# -- Expect: 100-continue ------------------------------------------------------------------


def test_expect_continue_on_a_refused_method_gets_405_before_the_body(serve: Serve) -> None:
    s = serve()
    reply, first = _exchange(s, b"PUT /up.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                                b"Expect: 100-continue\r\n\r\n")
    assert status_of(reply) == 405, reply
    assert b"Allow: GET, HEAD\r\n" in reply and b"Connection: close\r\n" in reply
    assert first < 2.0  # at once, not after a body that is never sent
    assert s.get("/small.bin")[2] == SMALL


def test_expect_continue_with_a_body_over_the_limit_gets_413_before_it(serve: Serve) -> None:
    s = serve()
    reply, first = _exchange(s, b"GET /small.bin HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n")
    assert status_of(reply) == 413 and first < 2.0
    assert s.get("/small.bin")[2] == SMALL


def test_expect_continue_on_an_accepted_request_gets_100_then_the_response(
        serve: Serve) -> None:
    s = serve()
    with socket.create_connection((s.host, s.port), timeout=TIMEOUT) as c:
        c.sendall(b"GET /small.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert c.recv(len(CONTINUE_LINE)) == CONTINUE_LINE
        c.sendall(b"body")
        c.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := c.recv(65536):
            reply += chunk
    assert status_of(reply) == 200 and reply.endswith(SMALL)


def test_the_core_emits_continue_only_for_a_body_it_will_read() -> None:
    def first_event(data: bytes) -> object:
        conn = ServerConnection()
        conn.receive_data(data)
        return conn.next_event()

    head = b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
    assert first_event(head + b"Content-Length: 3\r\n\r\n") is CONTINUE
    assert isinstance(first_event(head + b"\r\n"), Request)  # no body: nothing to wait for
    old = b"GET / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
    assert isinstance(first_event(old), Request)  # HTTP/1.0 knows no 100 (RFC 9110 10.1.1)
    refused = first_event(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                          b"Content-Length: 3\r\n\r\n")
    assert isinstance(refused, RequestError) and refused.status == 405


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl_upload_is_refused_without_its_one_second_wait(serve: Serve,
                                                            tmp_path: Path) -> None:
    s = serve()
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(2 << 20))  # curl sends Expect: 100-continue for this
    t0 = time.monotonic()
    done = subprocess.run([CURL, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-T",
                           str(upload), f"http://{s.host}:{s.port}/up.bin"],
                          capture_output=True, timeout=60)
    took = time.monotonic() - t0
    assert done.stdout == b"405"
    assert took < 0.9, f"curl waited {took:.2f} s for a 100 Continue"


# -- HTTP/0.9 and HTTP/1.0 ------------------------------------------------------------------


def test_an_http09_request_line_is_answered_at_once(serve: Serve) -> None:
    s = serve()
    reply, first = _exchange(s, b"GET /small.bin\r\n")
    assert status_of(reply) == 505 and b"Connection: close" in reply
    assert 0 <= first < 2.0
    assert s.get("/small.bin")[2] == SMALL


# -- listings ------------------------------------------------------------------------------


def test_a_listing_of_a_directory_whose_name_is_not_utf8(serve: Serve) -> None:
    s = serve(list_directories=True)
    listed = os.fsencode(s.root) + b"/listed"
    name = b"caf\xe9-latin1"
    os.makedirs(listed + b"/" + name)
    with open(listed + b"/" + name + b"/inside\xff.txt", "wb") as f:
        f.write(b"x")
    reply, _ = _exchange(s, b"GET /listed/caf%E9-latin1/ HTTP/1.1\r\nHost: x\r\n"
                            b"Connection: close\r\n\r\n")
    assert status_of(reply) == 200, reply[:200]
    assert b"caf\xef\xbf\xbd-latin1" in reply  # U+FFFD in the title, valid UTF-8
    assert b'href="inside%FF.txt"' in reply  # the link keeps the real bytes
    status, _, page = s.get("/listed/")
    assert status == 200 and b'href="caf%E9-latin1/"' in page


# -- permission changes --------------------------------------------------------------------


def _as_nobody_in_child(work: Callable[[], int]) -> int:
    """Run ``work`` in a forked child that has dropped root (if it had it); its result."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 99
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
            code = work()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_cached_file_made_unreadable_is_refused_at_once() -> None:
    """chmod 000 on a small file served from memory, to a server running unprivileged:
    the next request gets 403, as opening the file now would."""
    base = tempfile.mkdtemp(prefix="zcio-chmod-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        if os.geteuid() == 0:
            os.chown(base, 65534, 65534)

        def work() -> int:
            path = os.path.join(base, "small.txt")
            with open(path, "wb") as f:
                f.write(b"secret-ish")
            root = Root(base)
            try:
                responder = Responder(root, FileCache())
                request = Request(b"GET", b"/small.txt", "1.1", {b"host": b"x"}, True)
                first = responder.respond(request, b"now", True)
                assert responder.cache.get((b"/small.txt", None)) is not None  # in memory
                os.chmod(path, 0)
                second = responder.respond(request, b"now", True)
                os.chmod(path, 0o644)
                third = responder.respond(request, b"now", True)
            finally:
                root.close()
            statuses = (first.status, second.status, third.status)
            return 0 if statuses == (200, 403, 200) else 10 + second.status % 100

        assert _as_nobody_in_child(work) == 0
    finally:
        shutil.rmtree(base)


def test_a_request_that_finds_no_descriptor_gets_503_not_500(
        www: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    root = Root(str(www))
    try:
        responder = Responder(root, FileCache())

        def no_fd(*args: object) -> None:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

        monkeypatch.setattr(root, "open_file", no_fd)
        request = Request(b"GET", b"/large.bin", "1.1", {b"host": b"x"}, True)
        response = responder.respond(request, b"now", True)
        assert response.status == 503 and b"Retry-After: 1\r\n" in response.head
        assert responder.out_of_fds and response.fd == -1
    finally:
        root.close()
