"""``zcio.serve.FileServer`` against real clients: http.client, urllib and curl.

Byte-exact bodies (empty, small, cached, large, sparse), HEAD, keep-alive and
pipelining, ranges and If-Range, conditional requests, content types, directories,
listings, precompressed siblings, the access log, the accounting, a file that changes
mid-send, graceful shutdown, and the delayed-ACK stall that must not happen.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

import pytest

import zcio
from test_serve_support import (
    LARGE_SIZE,
    MEDIUM_SIZE,
    SMALL,
    SPARSE_SIZE,
    TIMEOUT,
    Reader,
    Served,
    blobs,
    serve,
    wait_until,
    www,
)
from zcio.serve import FileServer

__all__ = ["blobs", "serve", "www"]  # the fixtures, re-exported for pytest

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")
Serve = Callable[..., Served]


# -- bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["empty.txt", "small.bin", "medium.bin", "large.bin",
                                  "sparse.bin", "index.html"])
def test_bodies_are_byte_exact(serve: Serve, name: str) -> None:
    s = serve()
    status, headers, body = s.get("/" + name)
    expected = (s.root / name).read_bytes()
    assert status == 200
    assert body == expected
    assert int(headers["Content-Length"]) == len(expected)
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Server"] == "zcio" and headers["Date"]


def test_sizes_cover_the_cases(www: Path) -> None:
    assert (www / "medium.bin").stat().st_size == MEDIUM_SIZE > 64 << 10
    assert (www / "large.bin").stat().st_size == LARGE_SIZE
    st = (www / "sparse.bin").stat()
    assert st.st_size == SPARSE_SIZE and st.st_blocks * 512 < SPARSE_SIZE // 2


def test_head_has_the_get_headers_and_no_body(serve: Serve) -> None:
    s = serve()
    for name in ("small.bin", "large.bin", "empty.txt"):
        _, get_headers, _ = s.get("/" + name)
        conn = s.connection()
        conn.request("HEAD", "/" + name)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
        for field in ("Content-Length", "Content-Type", "ETag", "Last-Modified"):
            assert resp.headers[field] == get_headers[field]
        conn.request("GET", "/small.bin")  # the connection is still in step
        assert conn.getresponse().read() == SMALL
        conn.close()


def test_large_bodies_go_by_sendfile_and_are_counted(serve: Serve) -> None:
    s = serve()
    before = zcio.metrics.path("sendfile")
    _, _, body = s.get("/large.bin")
    assert len(body) == LARGE_SIZE
    # Counted after each sendfile returns: the client may have the last bytes first.
    assert wait_until(lambda: zcio.metrics.path("sendfile").kernel_bytes
                      - before.kernel_bytes >= LARGE_SIZE)
    assert zcio.metrics.path("sendfile").user_bytes == before.user_bytes


# -- keep-alive, pipelining, no delayed-ACK stall ------------------------------------------


def test_keep_alive_reuses_one_connection(serve: Serve) -> None:
    s = serve()
    conn = s.connection()
    conn.request("GET", "/small.bin")
    assert conn.getresponse().read() == SMALL
    first = conn.sock
    for name in ("large.bin", "empty.txt", "nothing-here", "medium.bin", "small.bin"):
        conn.request("GET", "/" + name)
        resp = conn.getresponse()
        resp.read()
        assert conn.sock is first, name
    assert s.server.connections == 1
    conn.close()


def test_http10_closes_unless_keep_alive_asked(serve: Serve) -> None:
    s = serve()
    reply = s.raw(b"GET /small.bin HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in reply
    assert reply.endswith(SMALL)
    with socket.create_connection((s.host, s.port), timeout=TIMEOUT) as c:
        reader = Reader(c)
        c.sendall(b"GET /small.bin HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        resp = reader.next()
        # RFC 9112 9.3: an HTTP/1.0 client keeps the connection only if the response
        # says so; without it, wget and curl (1.0 mode) would wait for the close.
        assert resp.read() == SMALL and resp.getheader("Connection") == "keep-alive"
        c.sendall(b"GET /nothing HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        missing = reader.next()
        assert missing.status == 404 and missing.getheader("Connection") == "keep-alive"
        missing.read()
        c.sendall(b"GET /empty.txt HTTP/1.0\r\n\r\n")
        assert reader.next().read() == b""
        reader.close()


def test_pipelined_requests_are_answered_in_order(serve: Serve) -> None:
    s = serve()
    names = ["small.bin", "large.bin", "nothing", "medium.bin", "empty.txt", "small.bin"]
    data = b"".join(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % n.encode() for n in names)
    data += b"HEAD /large.bin HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection((s.host, s.port), timeout=TIMEOUT) as c:
        c.sendall(data)
        reader = Reader(c)
        for name in names:
            resp = reader.next()
            body = resp.read()
            if name == "nothing":
                assert resp.status == 404
            else:
                assert resp.status == 200 and body == (s.root / name).read_bytes(), name
        resp = reader.next("HEAD")
        assert resp.status == 200 and resp.getheader("Content-Length") == str(LARGE_SIZE)
        reader.close()


@pytest.mark.parametrize("name", ["small.bin", "medium.bin"])
def test_no_delayed_ack_stall(serve: Serve, name: str) -> None:
    """http.server stalls ~40 ms per keep-alive response (headers and body in separate
    small writes, Nagle against delayed ACK).  Here 100 responses take well under 1 s."""
    s = serve()
    conn = s.connection()
    conn.request("GET", "/" + name)
    conn.getresponse().read()
    t0 = time.perf_counter()
    for _ in range(100):
        conn.request("GET", "/" + name)
        conn.getresponse().read()
    elapsed = time.perf_counter() - t0
    conn.close()
    assert elapsed < 1.0, f"100 keep-alive responses took {elapsed:.2f} s"


# -- ranges ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["small.bin", "large.bin", "sparse.bin"])
@pytest.mark.parametrize(("spec", "first", "last"), [
    ("bytes=0-0", 0, 0), ("bytes=10-99", 10, 99), ("bytes=100-", 100, None),
    ("bytes=-100", -100, None), ("bytes=5-999999999999", 5, None),
    ("bytes = 7 - 8", 7, 8),
])
def test_single_ranges(serve: Serve, name: str, spec: str, first: int,
                       last: int | None) -> None:
    s = serve()
    data = (s.root / name).read_bytes()
    size = len(data)
    start = first if first >= 0 else size + first
    end = size - 1 if last is None else last
    status, headers, body = s.get("/" + name, {"Range": spec})
    assert status == 206
    assert headers["Content-Range"] == f"bytes {start}-{end}/{size}"
    assert body == data[start:end + 1]


def test_range_in_the_middle_of_a_sparse_hole(serve: Serve) -> None:
    s = serve()
    status, _, body = s.get("/sparse.bin", {"Range": "bytes=4194304-4198399"})
    assert status == 206 and body == bytes(4096)


@pytest.mark.parametrize("spec", ["bytes=1024-", "bytes=5000-6000", "bytes=-0",
                                  "bytes=99999999999999999999999999-"])
def test_unsatisfiable_ranges_get_416(serve: Serve, spec: str) -> None:
    s = serve()
    status, headers, body = s.get("/small.bin", {"Range": spec})
    assert status == 416 and body == b""
    assert headers["Content-Range"] == f"bytes */{len(SMALL)}"


@pytest.mark.parametrize("spec", ["bytes=5-1", "bytes=abc", "items=0-5", "bytes=0-1,5-6",
                                  "bytes=--1", "bytes=", "bytes=1-2-3", "bytes=+1-2",
                                  "bytes=\u00b2-\u00b3"])
def test_ignored_ranges_get_everything(serve: Serve, spec: str) -> None:
    s = serve()
    status, _, body = s.get("/small.bin", {"Range": spec})
    assert status == 200 and body == SMALL


def test_ranges_of_an_empty_file(serve: Serve) -> None:
    s = serve()
    assert s.get("/empty.txt", {"Range": "bytes=0-"})[0] == 416
    status, _, body = s.get("/empty.txt", {"Range": "bytes=-5"})
    assert status == 200 and body == b""


def test_head_ignores_range(serve: Serve) -> None:
    s = serve()
    status, headers, body = s.get("/small.bin", {"Range": "bytes=0-9"}, method="HEAD")
    assert status == 200 and headers["Content-Length"] == str(len(SMALL)) and body == b""


def test_if_range(serve: Serve) -> None:
    s = serve()
    _, headers, _ = s.get("/large.bin")
    etag, modified = headers["ETag"], headers["Last-Modified"]
    data = (s.root / "large.bin").read_bytes()
    status, _, body = s.get("/large.bin", {"Range": "bytes=0-9", "If-Range": etag})
    assert status == 206 and body == data[:10]
    status, _, body = s.get("/large.bin", {"Range": "bytes=0-9", "If-Range": modified})
    assert status == 206 and body == data[:10]
    for stale in ('"other"', "W/" + etag, "Mon, 01 Jan 2001 00:00:00 GMT", "garbage"):
        status, _, body = s.get("/large.bin", {"Range": "bytes=0-9", "If-Range": stale})
        assert status == 200 and len(body) == LARGE_SIZE, stale


# -- conditional requests ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["small.bin", "large.bin"])
def test_conditional_requests(serve: Serve, name: str) -> None:
    s = serve()
    past = time.time() - 7200  # so that a date after the file's time is not in the future
    os.utime(s.root / name, (past, past))
    status, headers, _ = s.get("/" + name)
    etag, modified = headers["ETag"], headers["Last-Modified"]
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', etag)
    mtime = (s.root / name).stat().st_mtime
    assert modified == formatdate(mtime, usegmt=True)
    for cond in ({"If-None-Match": etag}, {"If-None-Match": f'"x", {etag}'},
                 {"If-None-Match": "*"}, {"If-None-Match": "W/" + etag},
                 {"If-Modified-Since": modified},
                 {"If-Modified-Since": formatdate(mtime + 3600, usegmt=True)}):
        status, h, body = s.get("/" + name, cond)
        assert status == 304 and body == b"", cond
        assert h["ETag"] == etag and h["Last-Modified"] == modified
        assert h["Content-Length"] is None
    for cond in ({"If-None-Match": '"other"'},
                 {"If-Modified-Since": formatdate(mtime - 3600, usegmt=True)},
                 {"If-Modified-Since": "not a date"},
                 # later than the server's clock: invalid, so ignored (RFC 9110 13.1.3)
                 {"If-Modified-Since": formatdate(time.time() + 3600, usegmt=True)},
                 {"If-None-Match": '"other"', "If-Modified-Since": modified},
                 {"If-Match": etag}, {"If-Match": f'"x", {etag}'}, {"If-Match": "*"},
                 {"If-Unmodified-Since": modified},
                 {"If-Unmodified-Since": "not a date"},
                 {"If-Match": etag, "If-Unmodified-Since": formatdate(0, usegmt=True)}):
        status, _, body = s.get("/" + name, cond)
        assert status == 200 and body == (s.root / name).read_bytes(), cond
    # RFC 9110 13.2.2: If-Match (strong comparison), else If-Unmodified-Since, first.
    for cond in ({"If-Match": '"other"'}, {"If-Match": "W/" + etag},
                 {"If-Unmodified-Since": formatdate(mtime - 3600, usegmt=True)},
                 {"If-Match": '"other"', "If-None-Match": etag},
                 {"If-Match": '"other"', "Range": "bytes=0-0"}):
        status, h, body = s.get("/" + name, cond)
        assert status == 412 and body == b"", cond
        assert h["Content-Length"] == "0"


def test_a_changed_file_gets_a_new_etag_and_content(serve: Serve) -> None:
    s = serve()
    path = s.root / "page.html"
    _, h1, b1 = s.get("/page.html")
    path.write_bytes(b"<p>changed, and longer</p>\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    status, h2, b2 = s.get("/page.html", {"If-None-Match": h1["ETag"]})
    assert status == 200 and b2 == path.read_bytes() and h2["ETag"] != h1["ETag"]
    assert b1 != b2


# -- names, types, directories -------------------------------------------------------------


@pytest.mark.parametrize(("name", "ctype"), [
    ("index.html", "text/html"), ("style.css", "text/css"), ("app.js", "text/javascript"),
    ("data.json", "application/json"), ("image.png", "image/png"),
    ("noext", "application/octet-stream"), ("small.bin", "application/octet-stream"),
    ("app.js.gz", "application/gzip"),
])
def test_content_type_from_the_name(serve: Serve, name: str, ctype: str) -> None:
    status, headers, _ = serve().get("/" + name)
    assert status == 200 and headers["Content-Type"] == ctype


def test_directories(serve: Serve) -> None:
    s = serve()
    status, _, body = s.get("/")
    assert (status, body) == (200, b"<h1>home</h1>\n")
    assert s.get("/sub/")[2] == b"sub index\n"
    assert s.get("/dir-inside/")[2] == b"sub index\n"
    status, headers, _ = s.get("/sub?x=1")
    assert status == 301 and headers["Location"] == "/sub/?x=1"
    status, headers, _ = s.get("//sub")  # never a protocol-relative Location
    assert status == 301 and headers["Location"] == "/sub/"
    assert s.get("/noindex/")[0] == 404
    assert s.get("/small.bin/")[0] == 404
    assert s.get("/space%20name.txt")[2] == b"spaced\n"
    assert s.get("/sub/deep.txt?query#frag")[2] == b"deep\n"


def test_listing(serve: Serve) -> None:
    s = serve(list_directories=True)
    status, headers, body = s.get("/noindex/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert 'href="a.txt"' in page
    assert "&lt;b&gt;&amp;&quot;x&quot;.txt" in page and "<b>" not in page
    assert 'href="%3Cb%3E%26%22x%22.txt"' in page
    assert ".hidden" not in page
    assert s.get("/noindex/%3Cb%3E%26%22x%22.txt")[2] == b"b"
    root_page = s.get("/")[2]  # index.html wins over a listing
    assert root_page == b"<h1>home</h1>\n"
    (s.root / "index.html").unlink()
    page = s.get("/")[2].decode()
    for name in ("sub/", "small.bin", "link-inside", "dir-inside/"):
        assert f'href="{name}"' in page, name
    for hidden in (".env", ".git", "link-outside", "dir-outside", "fifo"):
        assert hidden not in page, hidden
    assert s.get("/", method="HEAD")[2] == b""


def test_precompressed_siblings(serve: Serve) -> None:
    s = serve()
    identity = (s.root / "app.js").read_bytes()
    cases = [("br", b"BROTLI-BYTES", "br"), ("gzip", b"GZIP-BYTES", "gzip"),
             ("gzip, deflate, br", b"BROTLI-BYTES", "br"),
             ("br;q=0.5, gzip", b"GZIP-BYTES", "gzip"), ("br;q=0", identity, None),
             ("deflate", identity, None), ("identity", identity, None)]
    for accept, body, encoding in cases:
        status, headers, got = s.get("/app.js", {"Accept-Encoding": accept})
        assert status == 200 and got == body, accept
        assert headers["Content-Encoding"] == encoding
        assert headers["Content-Type"] == "text/javascript"
        if encoding:
            assert headers["Vary"] == "Accept-Encoding"
    status, headers, got = s.get("/app.js", {"Accept-Encoding": "br", "Range": "bytes=0-5"})
    assert status == 206 and got == b"BROTLI"
    assert s.get("/small.bin", {"Accept-Encoding": "br, gzip"})[2] == SMALL
    off = serve(precompressed=False)
    assert off.get("/app.js", {"Accept-Encoding": "br"})[2] == identity


# -- real clients: urllib and curl --------------------------------------------------------


def test_urllib(serve: Serve) -> None:
    s = serve()
    base = s.server.url
    with urllib.request.urlopen(base + "large.bin", timeout=TIMEOUT) as r:
        assert r.read() == (s.root / "large.bin").read_bytes()
    req = urllib.request.Request(base + "small.bin", headers={"Range": "bytes=2-5"})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        assert r.status == 206 and r.read() == SMALL[2:6]
    with urllib.request.urlopen(base + "sub", timeout=TIMEOUT) as r:  # follows the 301
        assert r.read() == b"sub index\n" and r.url.endswith("/sub/")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "missing", timeout=TIMEOUT)
    assert e.value.code == 404
    e.value.close()


def _curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return subprocess.run([CURL, "-sS", "--max-time", "10", *args], capture_output=True,
                          timeout=20, check=False)


@needs_curl
def test_curl_range_and_bodies(serve: Serve, tmp_path: Path) -> None:
    s = serve()
    out = tmp_path / "out"
    r = _curl("-o", str(out), "-w", "%{http_code}", s.server.url + "sparse.bin")
    assert r.stdout == b"200" and out.read_bytes() == (s.root / "sparse.bin").read_bytes()
    r = _curl("-r", "1000-1999", "-o", str(out), "-w", "%{http_code}",
              s.server.url + "large.bin")
    assert r.stdout == b"206"
    assert out.read_bytes() == (s.root / "large.bin").read_bytes()[1000:2000]
    r = _curl("-r", "999999999-", "-w", "%{http_code}", "-o", os.devnull,
              s.server.url + "small.bin")
    assert r.stdout == b"416"


@needs_curl
def test_curl_conditional_keep_alive_and_head(serve: Serve, tmp_path: Path) -> None:
    s = serve()
    url = s.server.url + "medium.bin"
    r = _curl("-I", url)
    head = r.stdout.decode()
    assert head.startswith("HTTP/1.1 200") and f"Content-Length: {MEDIUM_SIZE}" in head
    etag = re.search(r"ETag: (\S+)", head)
    assert etag is not None
    r = _curl("-o", os.devnull, "-w", "%{http_code}", "-H", f"If-None-Match: {etag[1]}", url)
    assert r.stdout == b"304"
    r = _curl("-o", os.devnull, "-w", "%{http_code}", "-z",
              formatdate(time.time() + 60, usegmt=True), url)
    assert r.stdout == b"304"
    r = _curl("-v", "-o", os.devnull, "-o", os.devnull, url, s.server.url + "small.bin")
    assert r.returncode == 0
    assert re.search(rb"Re-?using existing connection", r.stderr), r.stderr[-500:]


# -- accounting, logging, changing files ---------------------------------------------------


def test_access_log_in_common_log_format(serve: Serve) -> None:
    log = io.StringIO()
    s = serve(access_log=log)
    s.get("/small.bin")
    s.get("/missing")
    s.get("/small.bin", method="HEAD")
    s.raw(b"GARBAGE\r\n\r\n")
    s.raw(b'GET /we"ird\\ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    assert wait_until(lambda: log.getvalue().count("\n") >= 5)
    lines = log.getvalue().splitlines()
    clf = re.compile(r'127\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                     r'"(?:[^"\\]|\\.)*" \d{3} (?:\d+|-)')
    for line in lines:
        assert clf.fullmatch(line), line
    assert lines[0].endswith('"GET /small.bin HTTP/1.1" 200 1024')
    assert lines[1].endswith('"GET /missing HTTP/1.1" 404 14')
    assert lines[2].endswith('"HEAD /small.bin HTTP/1.1" 200 -')
    assert lines[3].endswith('"-" 400 16')
    assert lines[4].endswith('"GET /we\\"ird\\\\ HTTP/1.1" 404 14'), lines[4]


def _slow_download(s: Served, name: str, rcvbuf: int = 4096, fields: bytes = b""
                   ) -> socket.socket:
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    c.settimeout(TIMEOUT)
    c.connect((s.host, s.port))
    c.sendall(b"GET /%s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (name.encode(), fields))
    return c


def _drain(c: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = c.recv(1 << 20)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("change", ["shrink", "rewrite", "grow", "touch"])
def test_a_file_changing_mid_send(serve: Serve, change: str) -> None:
    """Exactly the announced length goes out, as nginx does: a file that grows (a log
    being appended) or is touched completes; one that shrinks below it is cut short,
    and the client can tell by Content-Length."""
    s = serve()
    path = s.root / "big-changing.bin"
    size = 32 << 20
    original = os.urandom(size)
    path.write_bytes(original)
    with _slow_download(s, path.name, fields=b"Connection: close\r\n") as c:
        head = c.recv(65536)
        assert head.startswith(b"HTTP/1.1 200")
        time.sleep(0.05)
        if change == "shrink":
            os.truncate(path, 1 << 20)
        elif change == "rewrite":  # same size, new bytes at the start, a new mtime
            with open(path, "r+b") as f:
                f.write(b"X" * 4096)
            os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
        elif change == "grow":
            with open(path, "ab") as f:
                f.write(b"appended" * 100_000)
        else:
            os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
        rest = _drain(c)
    head_part, body = (head + rest).split(b"\r\n\r\n", 1)
    assert b"Content-Length: %d\r\n" % size in head_part
    if change == "shrink":
        assert len(body) < size
    else:
        assert len(body) == size
        assert body[8192:] == original[8192:]  # what nobody rewrote is the original
    assert s.get("/small.bin")[2] == SMALL  # the server goes on


def test_files_changed_between_requests_are_served_fresh(serve: Serve) -> None:
    s = serve()
    for i in range(3):
        data = os.urandom(100 + i * 50_000)
        (s.root / "fresh.bin").write_bytes(data)
        os.utime(s.root / "fresh.bin", ns=(0, i * 1_000_000_000))
        assert s.get("/fresh.bin")[2] == data


# -- stopping ------------------------------------------------------------------------------


def test_graceful_shutdown_finishes_in_flight_responses(www: Path) -> None:
    server = FileServer(www, port=0, idle_timeout=30)
    server.start()
    host, port = server.address
    s = Served(server)
    idle = socket.create_connection((host, port), timeout=TIMEOUT)
    conn = s.connection()
    conn.request("GET", "/small.bin")
    conn.getresponse().read()  # a keep-alive connection, idle now
    with _slow_download(s, "large.bin", rcvbuf=8192) as c:
        first = c.recv(65536)
        stopper = threading.Thread(target=server.shutdown)
        stopper.start()
        time.sleep(0.2)
        rest = _drain(c)
        stopper.join(TIMEOUT)
    assert not stopper.is_alive()
    response = first + rest
    head, body = response.split(b"\r\n\r\n", 1)
    assert b"Connection: close" not in head  # it began before the stop
    assert body == (www / "large.bin").read_bytes()
    assert idle.recv(10) == b""  # idle connections were closed
    idle.close()
    conn.close()
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=1).close()
    server.close()


def test_server_options_are_checked(tmp_path: Path, www: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FileServer(tmp_path / "missing", port=0)
    with pytest.raises(NotADirectoryError):
        FileServer(www / "small.bin", port=0)
    for bad in ({"workers": 0}, {"max_connections": 0}, {"idle_timeout": 0},
                {"request_timeout": -1}, {"port": 70000}):
        with pytest.raises(ValueError):
            FileServer(www, **bad)  # type: ignore[arg-type]
    with FileServer(www, port=0) as first:
        with pytest.raises(OSError):
            FileServer(www, port=first.address[1])
        assert first.url == f"http://127.0.0.1:{first.address[1]}/"
        assert "FileServer(" in repr(first)


def test_serve_forever_in_the_calling_thread(www: Path) -> None:
    server = FileServer(www, port=0)
    timer = threading.Timer(0.3, server.shutdown)
    timer.start()
    t0 = time.monotonic()
    assert server.serve_forever() == 0
    assert time.monotonic() - t0 < 5
    timer.join()
    server.close()


def test_ipv6_loopback(www: Path) -> None:
    try:
        server = FileServer(www, "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        server.start()
        assert server.url.startswith("http://[::1]:")
        with urllib.request.urlopen(server.url + "small.bin", timeout=TIMEOUT) as r:
            assert r.read() == SMALL


def test_a_sibling_added_later_is_found(serve: Serve) -> None:
    s = serve()
    for _ in range(3):  # identity, then from the cache
        status, headers, body = s.get("/page.html", {"Accept-Encoding": "br, gzip"})
        assert body == b"<p>page</p>\n" and headers["Content-Encoding"] is None
    (s.root / "page.html.gz").write_bytes(b"GZ")
    status, headers, body = s.get("/page.html", {"Accept-Encoding": "br, gzip"})
    assert status == 200 and body == b"GZ" and headers["Content-Encoding"] == "gzip"
    (s.root / "page.html.gz").unlink()
    assert s.get("/page.html", {"Accept-Encoding": "gzip"})[2] == b"<p>page</p>\n"
