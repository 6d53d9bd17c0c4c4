"""Directory listings (``--list``): an HTML page of a directory's entries.

Entries are read from the directory's descriptor (``scandir``), sorted by name,
directories first with a trailing ``/``.  Dotfiles are left out unless served; so is
any entry that would not be served (a symlink leading outside the root, a FIFO, a
device), checked with the same safe resolution as a request.  Names are HTML-escaped
in the text and percent-encoded in the links, so no file name can inject markup.
"""

from __future__ import annotations

import html
import os
import stat
from collections.abc import Callable
from urllib.parse import quote

__all__ = ["listing_page"]


def _display(name: str) -> str:
    """``name`` for the page's text: non-UTF-8 bytes (kept by ``os`` as surrogate
    escapes) become U+FFFD, markup is escaped."""
    return html.escape(name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def listing_page(dir_fd: int, url_path: str, rel: str, dotfiles: bool,
                 visible: Callable[[str], bool]) -> bytes:
    """The HTML listing of the directory open as ``dir_fd`` (which stays open).

    ``url_path`` is the decoded request path (ending in ``/``), ``rel`` the directory
    relative to the root, ``visible(rel_name)`` says whether an entry is served.
    """
    rows: list[tuple[bool, str, int, float]] = []
    with os.scandir(dir_fd) as it:
        for entry in it:
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
            rows.append((not is_dir, name, st.st_size, st.st_mtime))
    rows.sort()
    title = _display(url_path)
    out = [f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of {title}'
           f"</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n"]
    if url_path != "/":
        out.append('<li><a href="../">../</a></li>\n')
    for is_file, name, size, _mtime in rows:
        shown = name + ("" if is_file else "/")
        href = quote(name.encode("utf-8", "surrogateescape"), safe="") + (
            "" if is_file else "/")
        text = _display(shown)
        size_text = f" ({size} bytes)" if is_file else ""
        out.append(f'<li><a href="{href}">{text}</a>{size_text}</li>\n')
    out.append("</ul></body></html>\n")
    return "".join(out).encode("utf-8")
