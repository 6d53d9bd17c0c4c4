"""What a served file looks like on the wire: type, validators, encodings, and a cache.

A :class:`Representation` is one file as the server sends it: its content type (from
the *requested* name's last extension, so ``app.js`` served from ``app.js.br`` is still
``text/javascript``), ``Content-Encoding`` for a precompressed sibling, a strong
``ETag`` (modification time in nanoseconds and size, hex) and ``Last-Modified``, and,
for a small file, its bytes.

The :class:`FileCache` keeps representations of files up to ``max_file`` bytes (and
at most ``max_bytes`` in all, oldest evicted first), keyed by the request's path and
encoding.  Each hit costs one ``stat``: a different inode, device, size, modification
time or status-change time drops the entry.  (The server's compiled hit path skips
that stat for an entry a :class:`~zcio.serve._watch.Watcher` covers: there a change
notice drops the entry; ``get`` here always stats.)  The status-change time moves with
every ``chmod``, ``chown``, ACL or link change, so a file made unreadable is never
served from memory: the next request opens it again and gets what opening it now gives (403), and
a directory made unsearchable fails the ``stat`` itself.  Because an entry is only
ever made by a safe open (see ``_paths``), and a hit requires the very same inode, a
symlink swapped in later to point elsewhere is a miss, never a leak.  Larger files are
opened per request and go out by sendfile; their bytes never enter Python.

What no stat and no notice shows: a write through a shared mapping moves the file's
times only at the first write to a clean page; later writes to the page while it is
dirty (until writeback, and on tmpfs for good) change nothing the kernel reports.  So
an entry's bytes are also read again and compared by the first hit at least
``VERIFY_EVERY`` seconds after they were last read (``get``): bytes that differ drop
the entry; the watcher's read when it places an entry's watch counts as such a read.
The compiled hit path serves the response the Python path made for the current
second, so what it sends is at most about two seconds behind such a write.

Precompressed siblings: for a client whose ``Accept-Encoding`` takes ``br`` or
``gzip`` (q > 0), ``NAME.br`` / ``NAME.gz`` are tried in the client's order of
preference (br first on a tie), and a response from one says
``Vary: Accept-Encoding``.  When a file has no sibling, its cache entry remembers the
directory's inode and modification time: while they hold, no sibling can have
appeared, so such clients are served from the cache too (two ``stat`` calls).
"""

from __future__ import annotations

import mimetypes
import os
import stat
import time
from email.utils import formatdate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._respond import Response
    from ._watch import Watcher

__all__ = ["content_type", "accepted_encodings", "Representation", "FileCache",
           "ENCODINGS"]

_MIME = mimetypes.MimeTypes()  # the standard table only: not the machine's files
_EXTRA = {
    ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
    ".webp": "image/webp", ".avif": "image/avif", ".woff": "font/woff",
    ".woff2": "font/woff2", ".md": "text/markdown", ".gz": "application/gzip",
    ".br": "application/octet-stream", ".zst": "application/zstd",
    ".webmanifest": "application/manifest+json", ".ico": "image/vnd.microsoft.icon",
}
_TYPES: dict[str, bytes] = {ext: t.encode() for ext, t in _MIME.types_map[True].items()}
_TYPES.update({ext: t.encode() for ext, t in _EXTRA.items()})
_DEFAULT_TYPE = b"application/octet-stream"

#: Content-Encoding token -> file suffix of the precompressed sibling.
ENCODINGS = {b"br": ".br", b"gzip": ".gz"}


def content_type(name: str) -> bytes:
    """The Content-Type for a file name, by its last extension (case-insensitive)."""
    dot = name.rfind(".")
    if dot < 0 or "/" in name[dot:]:
        return _DEFAULT_TYPE
    return _TYPES.get(name[dot:].lower(), _DEFAULT_TYPE)


def accepted_encodings(field: bytes | None) -> tuple[bytes, ...]:
    """The precompressed encodings a client takes, most preferred first.

    >>> accepted_encodings(b"gzip, deflate, br;q=0.9")
    (b'gzip', b'br')
    >>> accepted_encodings(b"br;q=0, gzip")
    (b'gzip',)
    """
    if not field:
        return ()
    found: list[tuple[float, int, bytes]] = []
    for part in field.split(b","):
        token, _, params = part.partition(b";")
        token = token.strip().lower()
        if token == b"*":
            token = b"br"  # "anything": the smallest we may have
        if token not in ENCODINGS:
            continue
        q = 1.0
        for param in params.split(b";"):
            key, eq, value = param.partition(b"=")
            if eq and key.strip().lower() == b"q":
                try:
                    q = float(value.strip()[:8])
                except ValueError:
                    q = 0.0
        if q > 0 and all(t != token for _, _, t in found):
            found.append((-q, 0 if token == b"br" else 1, token))
    return tuple(t for _, _, t in sorted(found))


def identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What must not change for a cached file: inode, device, size, modification time and
    status-change time (permissions, owner, links)."""
    return st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class Representation:
    """One file as sent: validators and the header fields every 200 repeats.

    ``fields`` holds Content-Type, Last-Modified, ETag, Accept-Ranges and, for a
    precompressed sibling, Content-Encoding and Vary, each line ending in CRLF;
    ``fields_200`` adds Content-Length; ``fields_304`` keeps the validators and Vary.
    ``body`` is the file's bytes when it is small enough to cache, else None; ``wire``
    the date and the Response (head and body in one buffer) of a 200 to a keep-alive
    HTTP/1.1 GET, made by the first such request in each second and shared by the
    others in it (nobody changes a Response once made).
    """

    __slots__ = ("rel", "full_path", "st", "key", "size", "mtime", "etag", "fields",
                 "fields_200", "fields_304", "body", "encoding", "dir_key", "wire",
                 "watched", "checked")

    def __init__(self, rel: str, full_path: str, st: os.stat_result, type_name: str,
                 encoding: bytes | None) -> None:
        self.rel = rel
        self.full_path = full_path
        self.st = st
        self.key = identity(st)
        self.size = st.st_size
        self.mtime = int(st.st_mtime)
        self.etag = b'"%x-%x"' % (st.st_mtime_ns, st.st_size)
        self.encoding = encoding
        validators = b"Last-Modified: %s\r\nETag: %s\r\n" % (
            formatdate(st.st_mtime, usegmt=True).encode(), self.etag)
        vary = b"" if encoding is None else b"Vary: Accept-Encoding\r\n"
        self.fields = b"".join((
            b"Content-Type: ", content_type(type_name), b"\r\n", validators,
            b"Accept-Ranges: bytes\r\n",
            b"" if encoding is None else b"Content-Encoding: " + encoding + b"\r\n", vary))
        self.fields_304 = validators + vary
        self.fields_200 = self.fields + b"Content-Length: %d\r\n" % self.size
        self.body: bytes | None = None
        self.wire: tuple[bytes, Response] | None = None
        #: For an identity entry: its directory's (inode, mtime) when no precompressed
        #: sibling was found there; while it holds, none was added (see dir_key()).
        self.dir_key: tuple[int, int] | None = None
        #: Set only by a :class:`~zcio.serve._watch.Watcher` while every change to the
        #: file would be a notice it has not yet read: the compiled hit path then skips
        #: its stat.  ``FileCache.get`` (the Python path) always stats.
        self.watched = False
        #: When ``body`` was last read from the file or found equal to it
        #: (``time.monotonic()``; set by ``FileCache.put`` and ``get``, and by the
        #: watcher when it places the watch).
        self.checked = 0.0

    def __repr__(self) -> str:
        return f"Representation({self.rel!r}, size={self.size}, cached={self.body is not None})"


def dir_key(full_path: str) -> tuple[int, int]:
    """(inode, mtime in ns) of the directory holding ``full_path``: creating, renaming or
    deleting a sibling there changes it.  Syscalls: ``stat``."""
    st = os.stat(os.path.dirname(full_path))
    return st.st_ino, st.st_mtime_ns


def read_small(fd: int, rep: Representation) -> bytes | None:
    """The whole file behind ``fd`` if it reads back exactly as ``rep`` says, else None.

    Syscalls: ``pread`` until the size is reached, then ``fstat`` to confirm that
    nothing changed while reading.
    """
    parts, got = [], 0
    while got < rep.size:
        chunk = os.pread(fd, rep.size - got, got)
        if not chunk:
            return None
        parts.append(chunk)
        got += len(chunk)
    if os.pread(fd, 1, got) or identity(os.fstat(fd)) != rep.key:
        return None
    return b"".join(parts)


#: Seconds an entry's bytes are served before a hit reads them again (see above).
VERIFY_EVERY = 1.0


def same_bytes(path: str | bytes, rep: Representation, follow: bool = False) -> bool:
    """True if the file at ``path`` reads back as ``rep.body``, unchanged; ``follow``:
    a symlink as the last component is followed (else it is an error: ELOOP).

    Syscalls: ``open`` (``O_NONBLOCK``; ``O_NOFOLLOW`` unless ``follow``),
    ``read_small``'s ``pread`` calls and ``fstat``, ``close``.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        return read_small(fd, rep) == rep.body
    finally:
        os.close(fd)


class FileCache:
    """Small files' representations with their bytes, bounded, checked on every hit."""

    def __init__(self, max_file: int = 64 << 10, max_bytes: int = 64 << 20,
                 max_entries: int = 16384) -> None:
        self.max_file = max_file
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._entries: dict[tuple[bytes, bytes | None], Representation] = {}
        self._bytes = 0
        #: Set by :meth:`watch` (the server's loop): each entry is watched from its
        #: first hit.
        self.watcher: Watcher | None = None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes of file content held."""
        return self._bytes

    @property
    def entries(self) -> dict[tuple[bytes, bytes | None], Representation]:
        """The entries themselves, for the compiled hit path (``native/serve.c``),
        which only reads them: the same dict for the cache's life."""
        return self._entries

    def get(self, key: tuple[bytes, bytes | None]) -> Representation | None:
        """The entry for ``key`` if its file is unchanged (one ``stat``; its bytes read
        again and compared when last read ``VERIFY_EVERY`` seconds ago or more), else
        None, the entry dropped."""
        rep = self._entries.get(key)
        if rep is None:
            return None
        try:
            st = os.stat(rep.full_path)
        except OSError:
            self._drop(key)
            return None
        if identity(st) != rep.key or not stat.S_ISREG(st.st_mode):
            self._drop(key)
            return None
        if self.watcher is not None and key[1] is None and not rep.watched:
            # On its first hit, so a file read once costs no watch; and only an identity
            # entry, the one kind the compiled hit path answers.  Placing the watch
            # reads the bytes again (and sets ``checked``): no second read below.
            self.watcher.add(key, rep)
            if self._entries.get(key) is not rep:  # its bytes were not the file's
                return None
        now = time.monotonic()
        if now - rep.checked >= VERIFY_EVERY:
            try:  # the path resolved as the stat above resolved it
                same = same_bytes(rep.full_path, rep, follow=True)
            except OSError:
                same = False
            if not same:
                self._drop(key)
                return None
            rep.checked = now
        return rep

    def put(self, key: tuple[bytes, bytes | None], rep: Representation) -> None:
        """Keep ``rep`` (whose ``body`` is set) under ``key``, evicting the oldest."""
        assert rep.body is not None
        self._drop(key)
        size = len(rep.body)
        if size > self.max_file or size > self.max_bytes:
            return
        entries = self._entries
        while entries and (self._bytes + size > self.max_bytes
                           or len(entries) >= self.max_entries):
            self._drop(next(iter(entries)))
        entries[key] = rep
        rep.checked = time.monotonic()
        self._bytes += size

    def _drop(self, key: tuple[bytes, bytes | None]) -> None:
        rep = self._entries.pop(key, None)
        if rep is not None and rep.body is not None:
            self._bytes -= len(rep.body)
        if rep is not None and self.watcher is not None:
            self.watcher.forget(rep)

    def clear(self) -> None:
        for key in list(self._entries):
            self._drop(key)

    def watch(self, watcher: Watcher | None) -> None:
        """Watch each entry from its first hit on with ``watcher`` (see ``_watch``), and
        drop each one a change notice concerns; None stops (the watcher is not closed)."""
        if self.watcher is not None:
            self.watcher.changed = None
        self.watcher = watcher
        if watcher is not None:
            watcher.changed = self._noticed

    def _noticed(self, key: tuple[bytes, bytes | None], rep: Representation) -> None:
        if self._entries.get(key) is rep:
            self._drop(key)
