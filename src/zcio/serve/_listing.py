"""Directory listings (``--list``): an HTML page of a directory's entries.

Entries are read from the directory's descriptor (``scandir``), sorted by name,
directories first with a trailing ``/``.  Dotfiles are left out unless served; so is
any entry that would not be served (a symlink leading outside the root, a FIFO, a
device), checked with the same safe resolution as a request.  Names are HTML-escaped
in the text and percent-encoded in the links, so no file name can inject markup.

A large directory takes long to list (50,000 entries: ~0.3 s), far longer than one
connection may hold the server's loop.  :func:`listing_steps` is therefore a generator
that does a bounded piece of the work per ``next()`` (:data:`STEP` entries) and
returns the page at the end: the loop runs a few steps per turn, between its other
connections, and drops the generator (closing the directory) if the client goes.
:class:`ListingCache` keeps finished pages by the directory's identity (device, inode,
modification and status-change time), so a repeated request costs one ``stat``.  A
file's size shown in a cached page is as of the listing: writing to a file does not
change its directory's modification time.
"""

from __future__ import annotations

import heapq
import html
import os
import stat
from collections.abc import Callable, Generator
from urllib.parse import quote

__all__ = ["listing_page", "listing_steps", "ListingCache", "STEP"]

#: Entries read, or rows rendered, per step of :func:`listing_steps` (well under 1 ms).
STEP = 32


def _display(name: str) -> str:
    """``name`` for the page's text: non-UTF-8 bytes (kept by ``os`` as surrogate
    escapes) become U+FFFD, markup is escaped."""
    return html.escape(name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def listing_page(dir_fd: int, url_path: str, rel: str, dotfiles: bool,
                 visible: Callable[[str], bool]) -> bytes:
    """The HTML listing of the directory open as ``dir_fd`` (which stays open), in one
    go; see :func:`listing_steps` for the arguments."""
    steps = listing_steps(dir_fd, url_path, rel, dotfiles, visible)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            page: bytes = done.value
            return page


def listing_steps(dir_fd: int, url_path: str, rel: str, dotfiles: bool,
                  visible: Callable[[str], bool]) -> Generator[None, None, bytes]:
    """The listing of the directory open as ``dir_fd`` (which stays open), built
    :data:`STEP` entries per ``next()``; the page is the generator's return value.

    ``url_path`` is the decoded request path (ending in ``/``), ``rel`` the directory
    relative to the root, ``visible(rel_name)`` says whether an entry is served.
    """
    # Sorting 50,000 rows at once takes ~0.1 s: each step sorts the rows it read (a
    # run), and the page is rendered from a lazy merge of the runs, a step at a time.
    runs: list[list[tuple[bool, str, int]]] = []
    rows: list[tuple[bool, str, int]] = []
    with os.scandir(dir_fd) as it:
        for count, entry in enumerate(it, 1):
            if count % STEP == 0:
                rows.sort()
                runs.append(rows)
                rows = []
                yield
            name = entry.name
            if name.startswith(".") and not dotfiles:
                continue
            child = f"{rel}/{name}" if rel else name
            try:
                if entry.is_symlink() and not visible(child):
                    continue
                st = entry.stat()
            except OSError:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if not (is_dir or stat.S_ISREG(st.st_mode)):
                continue
            rows.append((not is_dir, name, st.st_size))
    rows.sort()
    runs.append(rows)
    yield
    title = _display(url_path)
    out = [f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of {title}'
           f"</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n"]
    if url_path != "/":
        out.append('<li><a href="../">../</a></li>\n')
    for count, (is_file, name, size) in enumerate(heapq.merge(*runs), 1):
        if count % STEP == 0:
            yield
        shown = name + ("" if is_file else "/")
        href = quote(name.encode("utf-8", "surrogateescape"), safe="") + (
            "" if is_file else "/")
        text = _display(shown)
        size_text = f" ({size} bytes)" if is_file else ""
        out.append(f'<li><a href="{href}">{text}</a>{size_text}</li>\n')
    out.append("</ul></body></html>\n")
    return "".join(out).encode("utf-8")


DirKey = tuple[int, int, int, int]


def dir_identity(st: os.stat_result) -> DirKey:
    """What a directory's listing depends on: device, inode, modification time (entries
    added, removed, renamed) and status-change time (permissions)."""
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns


class ListingCache:
    """Finished listing pages by directory path and identity, at most ``max_bytes`` in
    all (oldest dropped first).  A page larger than the whole budget is not kept."""

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self._pages: dict[str, tuple[DirKey, bytes]] = {}
        self._bytes = 0

    def get(self, rel: str, key: DirKey) -> bytes | None:
        """The page for ``rel`` if it was built for a directory with identity ``key``."""
        entry = self._pages.get(rel)
        if entry is None or entry[0] != key:
            return None
        return entry[1]

    def put(self, rel: str, key: DirKey, page: bytes) -> None:
        self._drop(rel)
        if len(page) > self.max_bytes:
            return
        while self._pages and self._bytes + len(page) > self.max_bytes:
            self._drop(next(iter(self._pages)))
        self._pages[rel] = (key, page)
        self._bytes += len(page)

    def _drop(self, rel: str) -> None:
        entry = self._pages.pop(rel, None)
        if entry is not None:
            self._bytes -= len(entry[1])
