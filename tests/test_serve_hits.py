"""The cheap path of ``zcio serve``: a cached small file answered as one buffer.

The whole response (head and body) of a cached file's 200 to a keep-alive HTTP/1.1 GET
is kept per date; everything else about it (the date, HEAD, ranges, HTTP/1.0,
``Connection: close``, a changed file, the access log, the socket metrics) must come out
as it would without the shortcut.
"""

from __future__ import annotations

import io
import mmap
import os
import time
from collections.abc import Callable
from pathlib import Path

import zcio
from test_serve_support import SMALL, Served, blobs, serve, wait_until, www
from zcio.serve._files import VERIFY_EVERY, FileCache, identity
from zcio.serve._http import Request
from zcio.serve._paths import Root
from zcio.serve._respond import Responder, Response

__all__ = ["blobs", "serve", "www"]

Serve = Callable[..., Served]
DATE1 = b"Wed, 02 Dec 2026 21:00:00 GMT"
DATE2 = b"Wed, 02 Dec 2026 21:00:01 GMT"


def _get(responder: Responder, date: bytes, *, method: bytes = b"GET", version: str = "1.1",
         keep_alive: bool = True, fields: dict[bytes, bytes] | None = None) -> Response:
    headers = {b"host": b"x"} | (fields or {})
    return responder.respond(Request(method, b"/small.bin", version, headers, keep_alive),
                             date, keep_alive)


def _wire(response: Response) -> bytes:
    return bytes(response.head) + bytes(response.body)


def _split(wire: bytes) -> tuple[bytes, bytes]:
    head, _, body = wire.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", body


def test_a_cached_hit_is_one_buffer_with_the_current_date(www: Path) -> None:
    root = Root(str(www))
    try:
        responder = Responder(root, FileCache())
        miss = _get(responder, DATE1)  # opens, reads, caches
        hit1, hit2 = _get(responder, DATE1), _get(responder, DATE2)
        again = _get(responder, DATE1)
    finally:
        root.close()
    for r in (hit1, hit2, again):
        assert r.status == 200 and r.body == b"" and r.length == len(SMALL) and r.fd == -1
    assert _wire(hit1) == _wire(miss) == _wire(again)
    head2, body2 = _split(_wire(hit2))
    assert body2 == SMALL and b"Date: " + DATE2 + b"\r\n" in head2
    assert head2.replace(DATE2, DATE1) == _split(_wire(miss))[0]


def test_what_the_shortcut_does_not_take_is_answered_as_before(www: Path) -> None:
    root = Root(str(www))
    try:
        responder = Responder(root, FileCache())
        _get(responder, DATE1)
        hit = _wire(_get(responder, DATE1))  # the buffer exists now
        head = _get(responder, DATE1, method=b"HEAD")
        closing = _get(responder, DATE1, keep_alive=False)
        old = _get(responder, DATE1, version="1.0")
        ranged = _get(responder, DATE1, fields={b"range": b"bytes=1-3"})
        etag = _split(_wire(head))[0].split(b"ETag: ")[1].split(b"\r\n")[0]
        not_modified = _get(responder, DATE1, fields={b"if-none-match": etag})
        after = _get(responder, DATE1)
    finally:
        root.close()
    assert head.status == 200 and head.body == b"" and head.length == 0
    assert b"Content-Length: 1024\r\n" in head.head and head.head.endswith(b"\r\n\r\n")
    assert closing.head.endswith(b"Connection: close\r\n\r\n") and closing.body == SMALL
    assert old.head.endswith(b"Connection: keep-alive\r\n\r\n") and old.body == SMALL
    assert ranged.status == 206 and bytes(ranged.body) == SMALL[1:4]
    assert not_modified.status == 304 and not_modified.body == b""
    assert _wire(after) == hit  # none of them changed the shared one


def test_a_changed_file_is_not_answered_from_the_old_buffer(www: Path) -> None:
    root = Root(str(www))
    path = www / "small.bin"
    try:
        responder = Responder(root, FileCache())
        _get(responder, DATE1)
        before = _get(responder, DATE1)
        new = bytes(reversed(SMALL))
        path.write_bytes(new)
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        after = _get(responder, DATE1)
    finally:
        root.close()
    assert _split(_wire(before))[1] == SMALL
    assert _split(_wire(after))[1] == new


def test_a_write_through_a_mapping_is_answered_once_the_bytes_are_read_again(
        www: Path) -> None:
    """A write through a shared mapping to a page already dirty moves none of the
    file's times: the identity a hit checks stays.  The cache reads an entry's bytes
    again once they were last read VERIFY_EVERY seconds before, and answers the new
    bytes from then on (it answered the old ones for good before)."""
    root = Root(str(www))
    path = www / "small.bin"
    try:
        cache = FileCache()
        responder = Responder(root, cache)
        _get(responder, DATE1)
        with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
            m[0:1] = b"\x01"  # the first write to a clean page: the times move
            assert _split(_wire(_get(responder, DATE1)))[1] == b"\x01" + SMALL[1:]
            rep = cache.entries[(b"/small.bin", None)]
            m[1:2] = b"\x02"  # the page is dirty now: nothing moves
            assert identity(path.stat()) == rep.key
            rep.checked -= VERIFY_EVERY  # as if a second had gone by
            after = _get(responder, DATE2)
    finally:
        root.close()
    assert _split(_wire(after))[1] == b"\x01\x02" + SMALL[2:]


def test_reading_the_bytes_again_keeps_an_unchanged_entry(www: Path) -> None:
    """The once-a-second read of an entry's bytes keeps an entry whose file is as it
    was, the file served through a symlink too (opened as the stat resolves it)."""
    os.symlink("small.bin", www / "link.bin")
    root = Root(str(www))
    try:
        cache = FileCache()
        responder = Responder(root, cache)
        for target in (b"/small.bin", b"/link.bin"):
            ask = Request(b"GET", target, "1.1", {b"host": b"x"}, True)
            responder.respond(ask, DATE1, True)
            rep = cache.entries[(target, None)]
            rep.checked -= VERIFY_EVERY
            assert _split(_wire(responder.respond(ask, DATE2, True)))[1] == SMALL
            assert cache.entries[(target, None)] is rep, target
    finally:
        root.close()


def test_the_access_log_gives_a_cached_hit_its_size(serve: Serve) -> None:
    log = io.StringIO()
    s = serve(access_log=log)
    for _ in range(3):
        assert s.get("/small.bin")[2] == SMALL
    assert wait_until(lambda: log.getvalue().count("\n") >= 3)
    lines = log.getvalue().splitlines()
    assert all(line.endswith('"GET /small.bin HTTP/1.1" 200 1024') for line in lines), lines


def test_socket_calls_are_counted_once_per_call(serve: Serve) -> None:
    s = serve()
    assert s.get("/small.bin")[2] == SMALL  # warm: later requests are hits
    time.sleep(0.05)
    reads, writes = zcio.metrics.path("socket_read"), zcio.metrics.path("socket_write")
    conn = s.connection()
    try:
        for _ in range(5):
            conn.request("GET", "/small.bin")
            assert conn.getresponse().read() == SMALL
    finally:
        conn.close()

    def counted() -> bool:
        r, w = zcio.metrics.path("socket_read"), zcio.metrics.path("socket_write")
        return (r.operations - reads.operations >= 5 and r.syscalls - reads.syscalls >= 5
                and w.operations - writes.operations >= 5
                and w.user_bytes - writes.user_bytes >= 5 * len(SMALL))

    assert wait_until(counted)
