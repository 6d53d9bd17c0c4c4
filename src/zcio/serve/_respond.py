"""From a parsed request to the response to send: the static-file logic.

:meth:`Responder.respond` turns a :class:`~zcio.serve._http.Request` into a
:class:`Response`: the head (status line and fields), and the body as bytes in memory
(a cached small file, a listing, an error page) or as an open file and a byte range
for the I/O layer to send with sendfile.  It touches the file system (``stat``,
``openat2``, ``pread`` for the cache) but no socket.

What is answered:

* GET and HEAD; anything else 405 with ``Allow: GET, HEAD``.
* A directory without a trailing slash: 301 to the same path with one (built from the
  checked path, so ``//evil.example`` cannot become an open redirect).  With one: its
  ``index.html``, else a listing if enabled, else 404.
* A regular file: 200, 206, 304, 412 or 416 (see ``_ranges``), a precompressed sibling when
  the client takes it (see ``_files``).
* Bad paths: 400 (NUL, dot segments), 404 (missing, outside the root, dotfiles, FIFOs
  and devices), 403 (permission denied).
* No file descriptor left (EMFILE, ENFILE): 503 with ``Retry-After: 1``, and
  ``out_of_fds`` set for the I/O layer, which closes idle connections to make room.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Generator
from urllib.parse import quote

from ._files import (
    ENCODINGS,
    FileCache,
    Representation,
    accepted_encodings,
    dir_key,
    read_small,
)
from ._http import REASONS, Request, response_head
from ._listing import ListingCache, dir_identity, listing_steps
from ._paths import PathError, Root, target_path
from ._ranges import evaluate

__all__ = ["Response", "Responder"]


class Response:
    """What to send for one request.

    ``head`` then ``body`` (bytes-like, possibly empty) or, when ``fd >= 0``, ``count``
    bytes of that open file from ``offset`` (the I/O layer closes it).  When ``later``
    is set, the response is not ready: ``later`` is a generator that does a bounded
    piece of the work per ``next()`` and returns the real Response (a listing being
    built); closing it abandons the work and frees what it holds.  ``length`` is
    the body's size for the access log.  A cached small file's 200 to a keep-alive
    HTTP/1.1 GET comes as one buffer (``head`` holds the body too, ``body`` is empty,
    ``length`` is set), the same Response for every such request in a second: the
    I/O layer only reads a Response.
    """

    __slots__ = ("status", "head", "body", "fd", "offset", "count", "path",
                 "keep_alive", "length", "later")

    def __init__(self, status: int, head: bytes, body: bytes | memoryview = b"",
                 keep_alive: bool = True) -> None:
        self.status = status
        self.head = head
        self.body = body
        self.fd = -1
        self.offset = 0
        self.count = 0
        self.path = ""
        self.keep_alive = keep_alive
        self.length = len(body)
        self.later: Generator[None, None, Response] | None = None


def _say_keep_alive(response: Response) -> None:
    """Add ``Connection: keep-alive`` to a head that keeps an HTTP/1.0 connection."""
    if response.keep_alive:
        response.head = response.head[:-2] + b"Connection: keep-alive\r\n\r\n"


def _http10_later(steps: Generator[None, None, Response]) -> Generator[None, None, Response]:
    response = yield from steps
    _say_keep_alive(response)
    return response


_ERROR_TYPE = b"Content-Type: text/plain; charset=utf-8\r\n"
_ALLOW = b"Allow: GET, HEAD\r\n"
_RETRY = b"Retry-After: 1\r\n"


class Responder:
    """Answers requests for the files under one :class:`Root`."""

    def __init__(self, root: Root, cache: FileCache, *, dotfiles: bool = False,
                 listing: bool = False, precompressed: bool = True) -> None:
        self.root = root
        self.cache = cache
        self.dotfiles = dotfiles
        self.listing = listing
        self.precompressed = precompressed
        self.listings = ListingCache()
        #: Set when a request failed for want of a file descriptor (answered 503);
        #: the I/O layer clears it once it has made room.
        self.out_of_fds = False

    # -- simple responses ----------------------------------------------------------------

    def error(self, status: int, date: bytes, keep_alive: bool, with_body: bool = True,
              extra: bytes = b"") -> Response:
        """A short plain-text error page (none for HEAD)."""
        body = f"{status} {REASONS[status]}\n".encode()
        if status == 405:
            extra += _ALLOW
        fields = b"%sContent-Length: %d\r\n%s" % (_ERROR_TYPE, len(body), extra)
        return Response(status, response_head(status, date, fields, keep_alive),
                        body if with_body else b"", keep_alive)

    def _redirect(self, rel: str, target: bytes, date: bytes, req: Request,
                  keep_alive: bool) -> Response:
        query = target.partition(b"?")[2]
        location = b"/" + quote(os.fsencode(rel)).encode("ascii") + b"/"
        if query:
            location += b"?" + query
        return self.error(301, date, keep_alive, req.method == b"GET",
                          b"Location: " + location + b"\r\n")

    # -- the request -------------------------------------------------------------------

    def respond(self, req: Request, date: bytes, keep_alive: bool) -> Response:
        """The response to ``req``; ``keep_alive`` False makes it close the connection.

        An HTTP/1.0 client keeps the connection only when the response says
        ``Connection: keep-alive`` (RFC 9112 9.3), so such a response says it.
        """
        response = self._respond(req, date, keep_alive)
        if req.version != "1.0":
            return response
        if response.later is not None:
            response.later = _http10_later(response.later)
        else:
            _say_keep_alive(response)
        return response

    def _respond(self, req: Request, date: bytes, keep_alive: bool) -> Response:
        method = req.method
        if method == b"GET":
            is_get = True
        elif method == b"HEAD":
            is_get = False
        else:
            return self.error(405, date, keep_alive)
        target = req.target
        cut = target.find(b"?")
        key = target if cut < 0 else target[:cut]
        field = req.headers.get(b"accept-encoding")
        encodings = accepted_encodings(field) if field and self.precompressed else ()
        if not encodings:  # the fast path: a cached small file, one stat
            rep = self.cache.get((key, None))
            if rep is not None:
                return self._send(rep, req, is_get, date, keep_alive, -1)
        else:
            for enc in encodings:
                rep = self.cache.get((key, enc))
                if rep is not None:
                    return self._send(rep, req, is_get, date, keep_alive, -1)
            rep = self.cache.get((key, None))
            if rep is not None and rep.dir_key is not None:
                try:
                    unchanged = dir_key(rep.full_path) == rep.dir_key
                except OSError:
                    unchanged = False
                if unchanged:  # still no precompressed sibling
                    return self._send(rep, req, is_get, date, keep_alive, -1)
        try:
            return self._lookup(req, key, encodings, is_get, date, keep_alive)
        except PathError as e:
            return self.error(e.status, date, keep_alive, is_get)
        except (FileNotFoundError, NotADirectoryError):
            return self.error(404, date, keep_alive, is_get)
        except PermissionError:
            return self.error(403, date, keep_alive, is_get)
        except OSError as e:
            if e.errno in (errno.ENAMETOOLONG, errno.ELOOP, errno.EXDEV, errno.EINVAL):
                return self.error(404, date, keep_alive, is_get)
            if e.errno in (errno.EMFILE, errno.ENFILE):  # out of descriptors: try later
                self.out_of_fds = True
                return self.error(503, date, keep_alive, is_get, _RETRY)
            raise

    def _lookup(self, req: Request, key: bytes, encodings: tuple[bytes, ...], is_get: bool,
                date: bytes, keep_alive: bool) -> Response:
        root = self.root
        rel, slash = target_path(req.target, self.dotfiles)
        st = root.stat(rel)
        if stat.S_ISDIR(st.st_mode):
            if not slash:
                return self._redirect(rel, req.target, date, req, keep_alive)
            index = f"{rel}/index.html" if rel else "index.html"
            try:
                st = root.stat(index)
                if not stat.S_ISREG(st.st_mode):
                    raise FileNotFoundError(errno.ENOENT, "index is not a file", index)
            except (FileNotFoundError, NotADirectoryError):
                if self.listing:
                    return self._listing(rel, is_get, date, keep_alive)
                raise
            rel = index
        elif slash:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", rel)
        before = dir_key(root.full_path(rel)) if encodings else None  # before looking
        for enc in encodings:
            sibling = rel + ENCODINGS[enc]
            try:
                sst = root.stat(sibling)
            except OSError:
                continue
            if stat.S_ISREG(sst.st_mode):
                return self._file(key, enc, sibling, rel, sst, req, is_get, date, keep_alive)
        return self._file(key, None, rel, rel, st, req, is_get, date, keep_alive, before)

    def _file(self, key: bytes, enc: bytes | None, rel: str, type_name: str,
              st: os.stat_result, req: Request, is_get: bool, date: bytes,
              keep_alive: bool, no_siblings: tuple[int, int] | None = None) -> Response:
        """Respond with the file ``rel``.  ``no_siblings``: its directory's key from
        before its precompressed siblings were looked for, in vain (kept in the cache)."""
        fd, st = self.root.open_file(rel, st)
        try:
            rep = Representation(rel, self.root.full_path(rel), st, type_name, enc)
            rep.dir_key = no_siblings
            if rep.size <= self.cache.max_file:
                rep.body = read_small(fd, rep)
                if rep.body is not None:  # else it changed while being read: sendfile
                    self.cache.put((key, enc), rep)
                    os.close(fd)
                    fd = -1
            response = self._send(rep, req, is_get, date, keep_alive, fd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        if fd >= 0 and response.fd != fd:
            os.close(fd)
        return response

    def _send(self, rep: Representation, req: Request, is_get: bool, date: bytes,
              keep_alive: bool, fd: int) -> Response:
        """The response for ``rep``; it takes ``fd`` (if >= 0) only when it sends a body."""
        status, first, end = evaluate(req.headers, rep.etag, rep.mtime, rep.size, is_get)
        if status == 200 and rep.body is not None and is_get and keep_alive \
                and req.version == "1.1":  # the common case: one cached buffer
            wire = rep.wire
            if wire is None or wire[0] != date:
                response = Response(200, response_head(200, date, rep.fields_200, True)
                                    + rep.body, b"", True)
                response.length = rep.size
                wire = rep.wire = (date, response)
            return wire[1]
        if status == 200:
            head = response_head(200, date, rep.fields_200, keep_alive)
        elif status == 206:
            head = response_head(206, date, rep.fields + b"Content-Range: bytes %d-%d/%d\r\n"
                                 b"Content-Length: %d\r\n" % (first, end - 1, rep.size,
                                                              end - first), keep_alive)
        elif status == 304:
            return Response(304, response_head(304, date, rep.fields_304, keep_alive), b"",
                            keep_alive)
        elif status == 412:
            return Response(412, response_head(412, date, b"Content-Length: 0\r\n",
                                               keep_alive), b"", keep_alive)
        else:  # 416
            return Response(416, response_head(
                416, date, b"Content-Range: bytes */%d\r\nContent-Length: 0\r\n" % rep.size,
                keep_alive), b"", keep_alive)
        if not is_get or end == first:
            return Response(status, head, b"", keep_alive)
        if rep.body is not None:
            body = rep.body if end - first == rep.size else memoryview(rep.body)[first:end]
            return Response(status, head, body, keep_alive)
        response = Response(status, head, b"", keep_alive)
        response.fd, response.offset, response.count = fd, first, end - first
        response.path, response.length = rep.full_path, end - first
        return response

    def _listing(self, rel: str, is_get: bool, date: bytes, keep_alive: bool) -> Response:
        """The listing of directory ``rel``: from the cache if the directory is unchanged,
        else a Response whose ``later`` builds it step by step (the first step runs here,
        so that a directory that cannot be opened is an error response now)."""
        key = dir_identity(self.root.stat(rel))
        page = self.listings.get(rel, key)
        if page is not None:
            return self._listing_response(page, is_get, date, keep_alive)
        steps = self._build_listing(rel, key, is_get, date, keep_alive)
        try:
            next(steps)
        except StopIteration as done:  # small enough for one step
            finished: Response = done.value
            return finished
        response = Response(200, b"", b"", keep_alive)
        response.later = steps
        return response

    def _build_listing(self, rel: str, key: tuple[int, int, int, int], is_get: bool,
                       date: bytes, keep_alive: bool) -> Generator[None, None, Response]:
        fd = self.root.open_dir(rel)
        try:
            page = yield from listing_steps(fd, "/" + rel + ("/" if rel else ""), rel,
                                            self.dotfiles, self.root.visible)
        finally:
            os.close(fd)
        self.listings.put(rel, key, page)
        return self._listing_response(page, is_get, date, keep_alive)

    def _listing_response(self, page: bytes, is_get: bool, date: bytes, keep_alive: bool
                          ) -> Response:
        fields = (b"Content-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n"
                  % len(page))
        return Response(200, response_head(200, date, fields, keep_alive),
                        page if is_get else b"", keep_alive)
