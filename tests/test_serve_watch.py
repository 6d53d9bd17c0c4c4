"""Change notices in place of the compiled hit path's stat (``zcio.serve._watch``).

A watched entry is answered without a stat, so every class of change to what its path
resolves to must reach the watcher as a notice, and a notice read by ``check`` must
drop the entry before the next request is answered.  Tried here: each kind of change
to the file, to a directory on its path and to the root; changes beside it that must
*not* cost the entry; entries that cannot be watched (a symlink on the path, a file
system inotify does not cover, the watch limit); lost notices (queue overflow); the
mount table; watches given back; and, through a running server, a request sent after
each kind of change, every time.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from test_serve_native_hit import exchange, warm
from test_serve_support import Served, blobs, read_response, serve, www
from zcio import _accel
from zcio.serve import _files, _watch
from zcio.serve._files import VERIFY_EVERY, FileCache, Representation, same_bytes
from zcio.serve._http import Request
from zcio.serve._paths import Root
from zcio.serve._respond import Responder
from zcio.serve._watch import Watcher, watch_budget

__all__ = ["blobs", "serve", "www"]

native = _accel.native
pytestmark = pytest.mark.skipif(native is None, reason="zcio._native is not in use "
                                f"({_accel.unavailability_cause()})")
DEEP = b"GET /sub/deep.txt HTTP/1.1\r\nHost: x\r\n\r\n"


class Watched:
    """A responder whose cache is watched, as the server's loop sets it up."""

    def __init__(self, www: Path) -> None:
        self.root = Root(str(www))
        self.cache = FileCache()
        watcher = Watcher.open(self.root.path)
        assert watcher is not None
        self.watcher = watcher
        self.cache.watch(watcher)
        self.r = Responder(self.root, self.cache)

    def rep(self, target: bytes) -> Representation | None:
        return self.cache.entries.get((target, None))

    def hit(self, data: bytes = DEEP) -> bool:
        return type(exchange(self.r, data)[0]) is tuple

    def close(self) -> None:
        self.cache.watch(None)
        self.watcher.close()
        self.root.close()


@pytest.fixture
def watched(www: Path) -> Iterator[Watched]:
    w = Watched(www)
    warm(w.r, b"/sub/deep.txt", b"/small.bin", b"/sub/index.html")
    rep = w.rep(b"/sub/deep.txt")
    assert rep is not None and rep.watched
    yield w
    w.close()


def _inotify_watches(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return sum(1 for line in f if line.startswith("inotify wd:"))


# -- every change is a notice ----------------------------------------------------------

def _replace(p: Path) -> None:
    tmp = p.with_name(p.name + ".new")
    tmp.write_bytes(b"new\n")
    os.replace(tmp, p)


def _append(p: Path) -> None:
    with open(p, "ab") as f:
        f.write(b"more")


def _same_size_in_place(p: Path) -> None:
    with open(p, "r+b") as f:  # same size, and perhaps the same clock tick: stat-blind
        f.write(b"DEEP")


def _through_a_link_outside(p: Path) -> None:
    with open(p.parent.parent.parent / "deep-link", "r+b") as f:
        f.write(b"D")


def _dir_replaced(p: Path) -> None:
    sub = p.parent
    shutil.copytree(sub, sub.with_name("sub.copy"))
    os.rename(sub, sub.with_name("sub.old"))
    os.rename(sub.with_name("sub.copy"), sub)


def _dir_symlinked(p: Path) -> None:
    sub = p.parent
    shutil.copytree(sub, sub.with_name("sub.copy"))
    os.rename(sub, sub.with_name("sub.old"))
    os.symlink("sub.copy", sub)


FILE_CHANGES: dict[str, Callable[[Path], object]] = {
    "chmod": lambda p: p.chmod(0o600),
    "touched": lambda p: os.utime(p, ns=(0, 0)),
    "appended": _append,
    "truncated": lambda p: os.truncate(p, 1),
    "rewritten in place": _same_size_in_place,
    "replaced by rename": _replace,
    "unlinked": lambda p: p.unlink(),
    "renamed away": lambda p: p.rename(p.with_name("moved.txt")),
    "linked elsewhere": lambda p: os.link(p, p.parent.parent / "noindex" / "again"),
    "written through a link outside": _through_a_link_outside,
    "xattr": lambda p: os.setxattr(p, "user.zcio", b"1"),
}
DIR_CHANGES: dict[str, Callable[[Path], object]] = {
    "directory chmod": lambda p: p.parent.chmod(0o700),
    "directory renamed away": lambda p: p.parent.rename(p.parent.with_name("gone")),
    "directory replaced": _dir_replaced,
    "directory replaced by a symlink": _dir_symlinked,
    "root chmod": lambda p: p.parent.parent.chmod(0o700),
    "root touched": lambda p: os.utime(p.parent.parent, ns=(0, 0)),
}


@pytest.mark.parametrize("change", list(FILE_CHANGES) + list(DIR_CHANGES))
def test_every_change_is_a_notice_and_drops_the_entry(watched: Watched, www: Path,
                                                      change: str) -> None:
    deep = www / "sub" / "deep.txt"
    if change == "written through a link outside":  # made before the entry is watched
        watched.close()
        os.link(deep, www.parent / "deep-link")
        watched = Watched(www)
        warm(watched.r, b"/sub/deep.txt")
    rep = watched.rep(b"/sub/deep.txt")
    assert rep is not None and rep.watched
    assert watched.hit()
    (FILE_CHANGES | DIR_CHANGES)[change](deep)
    # Trusted until the notice is read: the stat is really skipped ...
    assert watched.hit()
    watched.watcher.check()
    # ... and the notice drops the entry: the next request reads the file again.
    assert not rep.watched
    assert watched.rep(b"/sub/deep.txt") is None
    assert not watched.hit()
    if change == "written through a link outside":
        watched.close()


QUIET: dict[str, Callable[[Path], object]] = {
    "a sibling written": lambda p: (p.parent / "index.html").write_bytes(b"other\n"),
    "a sibling's mode": lambda p: (p.parent / "index.html").chmod(0o600),
    "a file created beside it": lambda p: (p.parent / "new.txt").write_bytes(b"n"),
    "a sibling renamed": lambda p: (p.parent / "index.html").rename(p.parent / "i.html"),
    "a file created in the root": lambda p: (p.parent.parent / "log").write_bytes(b"l"),
    "another directory's file": lambda p: (p.parent.parent / "noindex" / "a.txt"
                                           ).write_bytes(b"changed"),
    "the file read": lambda p: p.read_bytes(),
}


@pytest.mark.parametrize("change", list(QUIET))
def test_changes_beside_the_entry_leave_it_watched(watched: Watched, www: Path,
                                                   change: str) -> None:
    """A log written in the served tree must not cost every cached file its entry."""
    QUIET[change](www / "sub" / "deep.txt")
    watched.watcher.check()
    rep = watched.rep(b"/sub/deep.txt")
    assert rep is not None and rep.watched
    assert watched.hit()


def test_lost_notices_drop_every_entry(watched: Watched, www: Path) -> None:
    """Queue overflow: the kernel dropped notices, so nothing watched can be trusted."""
    with open("/proc/sys/fs/inotify/max_queued_events") as f:
        limit = int(f.read())
    if limit > 1 << 17:
        pytest.skip(f"max_queued_events is {limit}: too many writes to overflow it")
    assert watched.rep(b"/small.bin") is not None
    # Alternate two files so that no notice merges with the one before it.
    a, b = (www / "sub" / "index.html"), (www / "page.html")
    warm(watched.r, b"/page.html")
    fa, fb = os.open(a, os.O_WRONLY), os.open(b, os.O_WRONLY)
    try:
        for _ in range(limit // 2 + 16):
            os.write(fa, b"x")
            os.write(fb, b"y")
    finally:
        os.close(fa)
        os.close(fb)
    watched.watcher.check()
    assert len(watched.watcher) == 0
    assert watched.cache.entries == {}


_MOUNT_CHILD = """
import os, subprocess, sys
from zcio.serve._files import FileCache
from zcio.serve._http import Request
from zcio.serve._paths import Root
from zcio.serve._respond import Responder
from zcio.serve._watch import Watcher, watch_budget
www = sys.argv[1]
root = Root(www)
cache = FileCache()
watcher = Watcher.open(root.path)
cache.watch(watcher)
r = Responder(root, cache)
for _ in range(2):  # the first caches it, the second (its first hit) watches it
    r.respond(Request(b"GET", b"/small.bin", "1.1", {b"host": b"x"}, True), b"d", True)
assert cache.entries[(b"/small.bin", None)].watched
watcher.check()
assert len(cache) == 1  # nothing happened yet
subprocess.run(["mount", "-t", "tmpfs", "zcio-test", os.path.join(www, "noindex")],
               check=True)
watcher.check()
assert len(cache) == 0 and len(watcher) == 0, (len(cache), len(watcher))
print("dropped")
"""


def test_a_mount_drops_every_entry(www: Path) -> None:
    """A mount over a directory changes what paths resolve to without any inotify
    notice; the mount table's poll stands in.  Run in a mount namespace of its own
    (``unshare -m``): a mount in the machine's would reach every watcher on it."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs unshare(1) and root for a private mount namespace")
    probe = subprocess.run([unshare, "-m", "--propagation", "private", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m refused: {probe.stderr.decode().strip()}")
    done = subprocess.run([unshare, "-m", "--propagation", "private", sys.executable,
                           "-c", _MOUNT_CHILD, str(www)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "dropped"


# -- what is not watched ---------------------------------------------------------------

def test_a_symlink_on_the_path_keeps_the_stat(watched: Watched) -> None:
    before = watched.watcher.watches
    warm(watched.r, b"/dir-inside/deep.txt", b"/link-inside")
    for target in (b"/dir-inside/deep.txt", b"/link-inside"):
        rep = watched.rep(target)
        assert rep is not None and not rep.watched
    assert watched.watcher.watches == before  # what was placed for them was removed
    assert watched.hit(b"GET /dir-inside/deep.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    watched.cache.clear()
    assert not watched.watcher._refused  # refusals are forgotten with their entries


def test_a_file_read_once_is_not_watched(watched: Watched) -> None:
    """Watches are placed at an entry's first hit: a cache churning through files read
    once each pays nothing for them."""
    before = watched.watcher.watches
    watched.r.respond(Request(b"GET", b"/page.html", "1.1", {b"host": b"x"}, True),
                      b"d", True)
    rep = watched.rep(b"/page.html")
    assert rep is not None and not rep.watched
    assert watched.watcher.watches == before


def test_a_file_system_inotify_does_not_cover_keeps_the_stat(
        www: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_watch, "fs_type", lambda path: 0x6969)  # NFS
    w = Watched(www)
    try:
        warm(w.r, b"/sub/deep.txt")
        rep = w.rep(b"/sub/deep.txt")
        assert rep is not None and not rep.watched
        assert w.watcher.watches == 0
        assert w.hit()
        os.utime(www / "sub" / "deep.txt", ns=(0, 0))
        assert not w.hit()  # the stat saw it
    finally:
        w.close()


def test_the_watch_limit_keeps_the_stat(www: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = _watch._add_watch
    placed = []

    def add_watch(fd: int, path: bytes, mask: int) -> int:
        if path.endswith(b"deep.txt"):  # the directories fit, the file does not
            ctypes.set_errno(errno.ENOSPC)
            return -1
        wd = real(fd, path, mask)
        placed.append(wd)
        return int(wd)

    monkeypatch.setattr(_watch, "_add_watch", add_watch)
    w = Watched(www)
    try:
        warm(w.r, b"/sub/deep.txt")
        rep = w.rep(b"/sub/deep.txt")
        assert rep is not None and not rep.watched
        assert placed and w.watcher.watches == 0
        assert _inotify_watches(w.watcher._fd) == 0
        assert w.hit()
    finally:
        w.close()


def test_only_what_the_compiled_path_answers_is_watched(www: Path) -> None:
    """A precompressed sibling's entry is answered by the Python path only (it stats):
    no watch for it."""
    w = Watched(www)
    try:
        r = Responder(w.root, w.cache, precompressed=True)
        for _ in range(2):
            r.respond(Request(b"GET", b"/app.js", "1.1",
                              {b"host": b"x", b"accept-encoding": b"br"}, True), b"d", True)
        rep = w.cache.entries.get((b"/app.js", b"br"))
        assert rep is not None and not rep.watched
        assert w.watcher.watches == 0
    finally:
        w.close()


def test_bytes_torn_at_fill_are_dropped_not_watched(www: Path) -> None:
    """A write racing the fill within one clock tick leaves the identity as it was and
    the cached bytes torn; before this entry is trusted without a stat, the file is
    read again.  (Made here by swapping the cached bytes: a real race is not
    reproducible.)"""
    w = Watched(www)
    try:
        w.r.respond(Request(b"GET", b"/sub/deep.txt", "1.1", {b"host": b"x"}, True),
                    b"d", True)
        rep = w.rep(b"/sub/deep.txt")
        assert rep is not None and rep.body == b"deep\n"
        rep.body = b"DEEP\n"  # what a torn read would have left
        assert w.cache.get((b"/sub/deep.txt", None)) is None
        assert w.rep(b"/sub/deep.txt") is None and not rep.watched
        assert w.watcher.watches == 0
        warm(w.r, b"/sub/deep.txt")  # read again: right, and watched
        again = w.rep(b"/sub/deep.txt")
        assert again is not None and again.body == b"deep\n" and again.watched
    finally:
        w.close()


@pytest.mark.parametrize("watchable", [True, False], ids=["watched", "not watchable"])
def test_the_first_hit_a_second_after_the_fill_reads_the_file_once(
        www: Path, monkeypatch: pytest.MonkeyPatch, watchable: bool) -> None:
    """At an entry's first hit the watch is placed and the file read again after it;
    when that hit also comes a second or more after the fill, that read is the
    once-a-second one too: one read, not two.  An entry that cannot be watched is
    read by the hit itself."""
    if not watchable:
        monkeypatch.setattr(_watch, "fs_type", lambda path: 0x6969)  # NFS
    reads: list[bytes] = []

    def counted(path: str | bytes, rep: Representation, follow: bool = False) -> bool:
        reads.append(os.fsencode(path))
        return same_bytes(path, rep, follow)

    monkeypatch.setattr(_watch, "same_bytes", counted)
    monkeypatch.setattr(_files, "same_bytes", counted)
    w = Watched(www)
    try:
        w.r.respond(Request(b"GET", b"/sub/deep.txt", "1.1", {b"host": b"x"}, True),
                    b"d", True)
        rep = w.rep(b"/sub/deep.txt")
        assert rep is not None and not rep.watched and reads == []
        rep.checked -= VERIFY_EVERY  # as if a second had gone by
        before = time.monotonic()
        assert w.cache.get((b"/sub/deep.txt", None)) is rep
        assert len(reads) == 1 and reads[0].endswith(b"/sub/deep.txt")
        assert rep.watched is watchable and rep.checked >= before
        assert w.cache.get((b"/sub/deep.txt", None)) is rep  # within the second: none
        assert len(reads) == 1
    finally:
        w.close()


def test_the_watch_budget_is_a_share_of_the_user_s_limit() -> None:
    with open("/proc/sys/fs/inotify/max_user_watches") as f:
        limit = int(f.read())
    assert watch_budget() == max(16, min(8192, limit // 4))
    assert watch_budget(4) == max(16, min(8192, limit // 16))
    assert watch_budget(1 << 30) == 16


def test_entries_past_the_budget_keep_the_stat(watched: Watched, www: Path) -> None:
    """The user's watches are shared with every other program of theirs: past its
    budget the watcher places none, and the entry is checked by stat as before."""
    w = watched.watcher
    w.max_watches = w.watches + 1  # room for the file's watch, not for noindex/'s
    warm(watched.r, b"/noindex/a.txt")
    rep = watched.rep(b"/noindex/a.txt")
    assert rep is not None and not rep.watched
    assert w.watches <= w.max_watches
    data = b"GET /noindex/a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    assert watched.hit(data)
    os.utime(www / "noindex" / "a.txt", ns=(0, 0))
    assert not watched.hit(data)  # the stat saw it
    w.max_watches = 8192  # room again: the next first hit watches
    warm(watched.r, b"/noindex/a.txt")
    again = watched.rep(b"/noindex/a.txt")
    assert again is not None and again.watched


def test_watches_are_given_back(watched: Watched) -> None:
    assert watched.watcher.watches == _inotify_watches(watched.watcher._fd) > 0
    warm(watched.r, b"/page.html", b"/noindex/a.txt")
    assert watched.watcher.watches == _inotify_watches(watched.watcher._fd)
    watched.cache.clear()
    assert len(watched.watcher) == 0
    assert watched.watcher.watches == _inotify_watches(watched.watcher._fd) == 0


def test_eviction_and_replacement_forget_the_old_entry(www: Path) -> None:
    w = Watched(www)
    try:
        w.cache.max_entries = 2
        warm(w.r, b"/sub/deep.txt", b"/small.bin", b"/page.html")
        assert len(w.cache) == 2 and len(w.watcher) == 2
        gone = [r for r in w.watcher._reps if r not in w.cache.entries.values()]
        assert gone == []
    finally:
        w.close()


def test_closing_the_watcher_returns_entries_to_the_stat(watched: Watched,
                                                         www: Path) -> None:
    rep = watched.rep(b"/sub/deep.txt")
    assert rep is not None
    watched.cache.watch(None)
    watched.watcher.close()
    assert not rep.watched
    os.utime(www / "sub" / "deep.txt", ns=(0, 0))
    assert not watched.hit()


# -- through the server ----------------------------------------------------------------

def _get(c: socket.socket, target: bytes, method: bytes = b"GET") -> bytes:
    c.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    resp = read_response(c, method.decode())
    body = resp.read()
    return body if resp.status == 200 else b"%d" % resp.status


def test_a_request_sent_after_a_change_sees_it(serve: Callable[..., Served]) -> None:
    """Each round: change the file (each kind in turn); GET it (a miss that caches it
    and makes its response); HEAD it (the Python path's first hit: now watched); GET
    it again (a hit in C without a stat); then change it again.  Every answer is the
    content written last, including rewrites of the same size within one clock tick,
    which a stat cannot tell apart."""
    s = serve()
    f = s.root / "sub" / "v.txt"
    f.write_bytes(b"v0".ljust(32))

    def replace(body: bytes) -> None:
        f.with_name("v.new").write_bytes(body)
        os.replace(f.with_name("v.new"), f)

    def in_place(body: bytes) -> None:
        with open(f, "r+b") as out:
            out.write(body)

    def truncate_and_write(body: bytes) -> None:
        f.write_bytes(body)

    ways = [replace, in_place, truncate_and_write]
    loop = s.server._loop
    assert loop is not None
    entries = loop.responder.cache.entries
    watched = watched_hits = 0
    with socket.create_connection((s.host, s.port), timeout=10) as c:
        for k in range(1, 241):
            body = b"v%d" % k
            body = body.ljust(32)
            ways[k % 3](body)
            assert _get(c, b"/sub/v.txt") == body, k
            assert _get(c, b"/sub/v.txt", b"HEAD") == b"", k
            rep = entries.get((b"/sub/v.txt", None))
            watched += rep is not None and rep.watched
            hits = s.server.hits
            assert _get(c, b"/sub/v.txt") == body, k
            watched_hits += s.server.hits - hits
    # Else this tested the stat, not the notices.  (A round that crosses a second
    # makes its response again in Python: on a loaded machine rounds are slow.)
    assert watched >= 200 and watched_hits >= 100, (watched, watched_hits)


def test_a_write_through_a_mapping_reaches_the_compiled_hits(
        serve: Callable[..., Served]) -> None:
    """Writes through a shared mapping raise no notice, and the second to a dirty page
    moves no time either: the watched entry's compiled hits answer the response made
    for the current second, and the Python path, making it again for the next second,
    reads the bytes again.  Within a few seconds every GET answers the mapped bytes
    (never, before: the entry stayed watched and its identity unchanged)."""
    s = serve()
    f = s.root / "sub" / "m.txt"
    f.write_bytes(b"m0".ljust(64))
    loop = s.server._loop
    assert loop is not None
    entries = loop.responder.cache.entries
    with socket.create_connection((s.host, s.port), timeout=10) as c, \
            open(f, "r+b") as out, mmap.mmap(out.fileno(), 0) as m:
        assert _get(c, b"/sub/m.txt") == b"m0".ljust(64)
        for k, change in enumerate([b"m1", b"m2"], 1):
            assert _get(c, b"/sub/m.txt", b"HEAD") == b""  # a Python hit: watched
            rep = entries.get((b"/sub/m.txt", None))
            assert rep is not None and rep.watched
            m[0:2] = change  # k == 2: to the page k == 1 left dirty
            deadline = time.monotonic() + 10
            while _get(c, b"/sub/m.txt") != change.ljust(64):
                assert time.monotonic() < deadline, f"write {k} never answered"
                time.sleep(0.05)


def test_the_loop_sets_up_and_gives_back_its_watcher(serve: Callable[..., Served]) -> None:
    s = serve()
    with socket.create_connection((s.host, s.port), timeout=10) as c:
        assert _get(c, b"/small.bin")
        assert _get(c, b"/small.bin", b"HEAD") == b""  # the first hit in Python
        assert _get(c, b"/small.bin")
    loop = s.server._loop
    assert loop is not None and loop._watcher is not None
    cache = loop.responder.cache
    rep = cache.entries[(b"/small.bin", None)]
    assert rep.watched and cache.watcher is loop._watcher
    s.server.shutdown()
    assert not rep.watched and cache.watcher is None
