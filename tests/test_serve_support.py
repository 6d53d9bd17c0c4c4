"""What the ``zcio serve`` tests share: a served tree, servers that always stop, clients.

No tests here.  Every server listens on 127.0.0.1 at an ephemeral port, runs in a
background thread, and is closed by the fixture whatever the test did; every client
socket has a timeout, so nothing can hang.
"""

from __future__ import annotations

import functools
import http.client
import os
import random
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zcio.serve import FileServer

TIMEOUT = 10.0
SMALL = bytes(range(256)) * 4  # 1 KiB: cached, one gather write
MEDIUM_SIZE = 200 << 10  # above the cache's file limit: header + sendfile
LARGE_SIZE = 8 << 20
SPARSE_SIZE = 24 << 20
SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT"


@functools.lru_cache(maxsize=16)
def pattern(size: int, seed: int = 1) -> bytes:
    """Deterministic bytes that differ at nearby offsets (so a misplaced range shows)."""
    block = bytes((i * 131 + seed * 7 + (i >> 8)) & 0xFF for i in range(65536))
    reps = size // len(block) + 1
    return (block * reps)[:size]


def make_blobs(where: Path) -> Path:
    """The big files, made once per session and hard-linked into each tree."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "medium.bin").write_bytes(pattern(MEDIUM_SIZE, 2))
    (where / "large.bin").write_bytes(pattern(LARGE_SIZE, 3))
    with open(where / "sparse.bin", "wb") as f:  # data, a 22 MiB hole, data
        f.write(pattern(1 << 20, 4))
        f.seek(SPARSE_SIZE - (1 << 20))
        f.write(pattern(1 << 20, 5))
    return where


def make_www(base: Path, blobs: Path | None = None) -> Path:
    """The served tree under ``base/www``, with a secret beside it (outside)."""
    www = base / "www"
    www.mkdir()
    blobs = blobs or make_blobs(base / "blobs")
    for name in ("medium.bin", "large.bin", "sparse.bin"):
        try:  # never modified by a test: shared, read-only
            os.link(blobs / name, www / name)
        except OSError:
            shutil.copyfile(blobs / name, www / name)
    (base / "secret.txt").write_bytes(SECRET)
    (base / "outside").mkdir()
    (base / "outside" / "passwd").write_bytes(SECRET)
    (www / "empty.txt").write_bytes(b"")
    (www / "small.bin").write_bytes(SMALL)
    (www / "index.html").write_bytes(b"<h1>home</h1>\n")
    (www / "page.html").write_bytes(b"<p>page</p>\n")
    (www / "style.css").write_bytes(b"p{}\n")
    (www / "app.js").write_bytes(b"console.log('identity');\n" * 10)
    (www / "app.js.br").write_bytes(b"BROTLI-BYTES")
    (www / "app.js.gz").write_bytes(b"GZIP-BYTES")
    (www / "data.json").write_bytes(b"{}")
    (www / "image.png").write_bytes(b"\x89PNG....")
    (www / "noext").write_bytes(b"x")
    (www / "sub").mkdir()
    (www / "sub" / "index.html").write_bytes(b"sub index\n")
    (www / "sub" / "deep.txt").write_bytes(b"deep\n")
    (www / "noindex").mkdir()
    (www / "noindex" / "a.txt").write_bytes(b"a")
    (www / "noindex" / "<b>&\"x\".txt").write_bytes(b"b")
    (www / "noindex" / ".hidden").write_bytes(b"h")
    (www / "space name.txt").write_bytes(b"spaced\n")
    (www / ".env").write_bytes(SECRET)
    (www / ".git").mkdir()
    (www / ".git" / "config").write_bytes(SECRET)
    os.symlink("small.bin", www / "link-inside")
    os.symlink(str(www / "small.bin"), www / "abs-link-inside")
    os.symlink("../secret.txt", www / "link-outside")
    os.symlink(str(base / "secret.txt"), www / "abs-link-outside")
    os.symlink("../outside", www / "dir-outside")
    os.symlink("sub", www / "dir-inside")
    os.mkfifo(www / "fifo")
    return www


@pytest.fixture(scope="session")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_blobs(tmp_path_factory.mktemp("serve-blobs"))


@pytest.fixture
def www(tmp_path: Path, blobs: Path) -> Path:
    return make_www(tmp_path, blobs)


class Served:
    """A running server and ways to talk to it."""

    def __init__(self, server: FileServer) -> None:
        self.server = server
        self.host, self.port = server.address
        self.root = Path(server.root.path)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET",
            ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = self.connection()
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def raw(self, data: bytes, wait: float = TIMEOUT) -> bytes:
        """Send ``data`` on a new connection, read until the server closes it."""
        with socket.create_connection((self.host, self.port), timeout=wait) as s:
            s.sendall(data)
            return read_all(s)


def read_all(s: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    """The status code of a raw response (0 if there is none)."""
    if not response.startswith(b"HTTP/1.1 "):
        return 0
    return int(response[9:12])


class Reader:
    """Reads response after response from one socket (pipelining): one buffered file,
    shared by every ``http.client.HTTPResponse``."""

    def __init__(self, s: socket.socket) -> None:
        self._fp = s.makefile("rb")

    def makefile(self, *args: Any, **kwargs: Any) -> Any:
        return _Unclosable(self._fp)

    def next(self, method: str = "GET") -> http.client.HTTPResponse:
        resp = http.client.HTTPResponse(self, method=method)  # type: ignore[arg-type]
        resp.begin()
        return resp

    def close(self) -> None:
        self._fp.close()


class _Unclosable:
    """A file whose close() leaves the real one open for the next response."""

    def __init__(self, fp: Any) -> None:
        self._fp = fp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)

    def close(self) -> None:
        pass

    def flush(self) -> None:
        """Nothing to flush on a reader; and a response collected after the Reader
        closed the real file (3.13's HTTPResponse.close flushes) must not fail."""


def read_response(s: socket.socket, method: str = "GET") -> http.client.HTTPResponse:
    """Parse one response from ``s`` (nothing may follow it: see Reader for that)."""
    resp = http.client.HTTPResponse(s, method=method)
    resp.begin()
    return resp


@pytest.fixture
def serve(www: Path) -> Iterator[Callable[..., Served]]:
    """``serve(**options)`` starts a FileServer on ``www`` in a thread; all are closed."""
    started: list[FileServer] = []

    def start(root: Path | None = None, **options: Any) -> Served:
        server = FileServer(root or www, "127.0.0.1", 0, **options)
        started.append(server)
        server.start()
        return Served(server)

    yield start
    for server in started:
        server.close()


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


MUTATION_BYTES = b"GET HEAD/1.:\r\n\t Hostx-%?#\x00\x7f\xff" + bytes(range(0x21, 0x7F, 5))


def mutated(rng: random.Random, base: bytes) -> bytes:
    """``base`` with one to three bytes deleted, inserted or replaced (from
    MUTATION_BYTES, near what HTTP parsers trip on)."""
    data = bytearray(base)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(data) + 1)
        op = rng.randrange(3)
        if op == 0 and i < len(data):
            del data[i]
        elif op == 1:
            data[i:i] = bytes([rng.choice(MUTATION_BYTES)])
        elif i < len(data):
            data[i] = rng.choice(MUTATION_BYTES)
    return bytes(data)
