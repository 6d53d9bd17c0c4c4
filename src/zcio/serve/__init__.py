"""``zcio.serve``: a zero-copy HTTP/1.1 static file server (``zcio serve`` on the CLI).

File bodies go from the page cache to the socket by sendfile, through zcio's transfer
engine and its accounting; headers and small bodies go out in one gather write; a
head is never sent alone ahead of its body to wait on a delayed ACK.  Parsing is
llhttp's (through ``httptools``), driven by a sans-IO core.

Serving the directory ``public`` on port 8000 until SIGTERM or SIGINT::

    from zcio.serve import FileServer

    with FileServer("public", port=8000) as server:
        server.serve_forever(handle_signals=True)

(:class:`FileServer` shows one that serves from a background thread.)

Layout: ``_http`` (the sans-IO protocol core), ``_paths`` (targets to files, safely),
``_files`` (types, validators, the small-file cache), ``_ranges`` (conditional and
range requests), ``_listing``, ``_respond`` (request to response), ``_server`` (the
epoll loop), ``_workers`` (SO_REUSEPORT processes), ``_access_log``.
"""

from ._file_server import FileServer as FileServer

__all__ = ["FileServer"]
