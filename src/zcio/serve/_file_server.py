"""``FileServer``: the public face of ``zcio serve``.

It checks its options, opens the served directory and binds the port when made (so
``port=0`` gives a known ``address`` at once), and serves with one event loop
(``workers=1``: in the calling thread, or a background one with :meth:`start`) or
with N forked worker processes sharing the port (``workers=N``).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Self, TextIO

from .._errors import IllegalArgumentError, IllegalStateError
from ._access_log import AccessLog
from ._files import FileCache
from ._http import Limits
from ._paths import Root
from ._respond import Responder
from ._server import Loop, Timeouts
from ._workers import STOP_SIGNALS, supervise

__all__ = ["FileServer"]


def _listen(host: str, port: int, reuse_port: bool, backlog: int,
            listen: bool = True) -> socket.socket:
    """A non-blocking TCP socket bound to ``host:port`` (IPv4 or IPv6), listening."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class FileServer:
    """An HTTP/1.1 static file server for the files under ``root``.

    File bodies go out by sendfile (zcio's transfer engine) and never pass through
    Python; small files are cached and sent with their headers in one write.  GET and
    HEAD, keep-alive and pipelining, ETag/Last-Modified with 304s, single ranges (206,
    416) with If-Range, ``index.html``, optional listings, precompressed ``.br``/``.gz``
    siblings, and an access log in the Common Log Format.  Nothing outside ``root``
    is served (see ``zcio.serve._paths``), nor dotfiles unless ``dotfiles=True``.

    >>> import http.client, pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     _ = pathlib.Path(root, "hello.txt").write_bytes(b"hi")
    ...     with FileServer(root, port=0).start() as server:   # in a background thread
    ...         client = http.client.HTTPConnection(*server.address)
    ...         client.request("GET", "/hello.txt")
    ...         response = client.getresponse()
    ...         print(response.status, response.read())
    ...         client.close()
    200 b'hi'

    ``serve_forever()`` serves in the calling thread until ``shutdown()`` (from another
    thread) or, with ``handle_signals=True``, SIGTERM/SIGINT: then it stops accepting,
    finishes the responses in flight, and returns.  With ``workers > 1`` it forks that
    many processes sharing the port (``SO_REUSEPORT``) and supervises them; signals
    stop them.

    Raises, when made: FileNotFoundError/NotADirectoryError for ``root``, OSError if
    the address cannot be bound, IllegalArgumentError (a ValueError) for bad options.
    """

    def __init__(self, root: str | os.PathLike[str] = ".", host: str = "127.0.0.1",
                 port: int = 8000, *, workers: int = 1, list_directories: bool = False,
                 dotfiles: bool = False, follow_symlinks: bool = False,
                 precompressed: bool = True, access_log: TextIO | None = None,
                 max_connections: int = 4096, idle_timeout: float = 15.0,
                 request_timeout: float = 10.0, send_timeout: float = 30.0,
                 shutdown_timeout: float = 10.0, max_request_target: int = 8192,
                 max_header_bytes: int = 16384, max_headers: int = 100,
                 cache_size: int = 64 << 20, cache_file_size: int = 64 << 10,
                 backlog: int = 1024) -> None:
        if workers < 1:
            raise IllegalArgumentError(f"workers must be at least 1, not {workers}")
        if max_connections < 1:
            raise IllegalArgumentError(
                f"max_connections must be at least 1, not {max_connections}")
        for name, value in (("idle_timeout", idle_timeout),
                            ("request_timeout", request_timeout),
                            ("send_timeout", send_timeout),
                            ("shutdown_timeout", shutdown_timeout)):
            if not value > 0:
                raise IllegalArgumentError(f"{name} must be positive, not {value}")
        if not 0 <= port < 65536:
            raise IllegalArgumentError(f"port {port} is not in 0..65535")
        path = os.fspath(root)
        if not os.path.isdir(path):
            if os.path.exists(path):
                raise NotADirectoryError(20, "Not a directory", path)
            raise FileNotFoundError(2, "No such file or directory", path)
        self.workers = workers
        self.limits = Limits(max_target=max_request_target,
                             max_header_bytes=max_header_bytes, max_headers=max_headers)
        self.timeouts = Timeouts(idle=idle_timeout, request=request_timeout,
                                 send=send_timeout, shutdown=shutdown_timeout)
        self.max_connections = max_connections
        self._options = {"dotfiles": dotfiles, "listing": list_directories,
                         "precompressed": precompressed}
        self._cache_args = (cache_file_size, cache_size)
        self._access_log = access_log
        self._backlog = backlog
        self._lock = threading.Lock()
        self._loop: Loop | None = None
        self._stop_requested = False
        self._serving = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self.root = Root(path, follow_symlinks=follow_symlinks)
        try:
            # One worker: listen now.  Several: find the port (0: any free one) with a
            # plain bind, so that a port in use fails here; each worker binds it later.
            sock = _listen(host, port, reuse_port=False, backlog=backlog,
                           listen=workers == 1)
        except BaseException:
            self.root.close()
            raise
        self._address: tuple[str, int] = sock.getsockname()[:2]
        if workers == 1:
            self._listener = sock
        else:
            sock.close()

    # -- where ---------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the server listens on."""
        return self._address

    @property
    def url(self) -> str:
        """``http://host:port/``."""
        host, port = self._address
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    @property
    def requests(self) -> int:
        """Responses queued by this process's loop so far (``workers=1``)."""
        loop = self._loop
        return loop.requests if loop is not None else 0

    @property
    def hits(self) -> int:
        """Of :attr:`requests`, those the compiled hit path answered (``workers=1``):
        0 without ``zcio._native`` (see ``zcio.serve._server``)."""
        loop = self._loop
        return loop.hits if loop is not None else 0

    @property
    def connections(self) -> int:
        """Connections open in this process's loop now (``workers=1``)."""
        loop = self._loop
        return loop.connections if loop is not None else 0

    # -- serving ----------------------------------------------------------------------

    def _new_loop(self, listener: socket.socket) -> Loop:
        file_size, total = self._cache_args
        responder = Responder(self.root, FileCache(max_file=file_size, max_bytes=total),
                              **self._options)
        log = AccessLog(self._access_log) if self._access_log is not None else None
        return Loop(listener, responder, limits=self.limits, timeouts=self.timeouts,
                    max_connections=self.max_connections, access_log=log,
                    workers=self.workers)

    def serve_forever(self, handle_signals: bool = False,
                      ready: Callable[[], None] | None = None) -> int:
        """Serve until stopped; returns an exit status (0 after a graceful stop).

        ``handle_signals``: SIGTERM and SIGINT stop the server gracefully (main thread
        only; always so with several workers).  ``ready`` is called once connections
        are accepted (with several workers: once every worker listens).
        """
        with self._lock:
            if not self._done.is_set():
                raise IllegalStateError("the server is already serving")
            if self.root.fd < 0:
                raise IllegalStateError("the server is closed")
            self._done.clear()
        try:
            if self.workers > 1:
                return supervise(self.workers, self._run_worker, ready)
            listener = self._listener
            if listener is None:
                raise IllegalStateError("the server has stopped; make a new one")
            self._run_loop(listener, handle_signals, ready)
            return 0
        finally:
            self._done.set()

    def _run_loop(self, listener: socket.socket, handle_signals: bool,
                  ready: Callable[[], None] | None) -> None:
        loop = self._new_loop(listener)
        saved: dict[int, Any] = {}
        try:
            if handle_signals:
                def stop(signum: int, frame: FrameType | None) -> None:
                    loop.request_stop()
                saved = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
            with self._lock:
                self._loop = loop
                if self._stop_requested:
                    loop.request_stop()
            self._serving.set()
            if ready is not None:
                ready()
            loop.run()
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
            with self._lock:
                self._loop = None
            loop.close()
            listener.close()  # a graceful stop closed it already; an error may not
            self._listener = None

    def _run_worker(self, ready_fd: int) -> int:
        """One worker process: its own SO_REUSEPORT listener and loop."""
        box: list[Loop] = []
        early: list[int] = []

        def stop(signum: int, frame: FrameType | None) -> None:
            if box:
                box[0].request_stop()
            else:
                early.append(signum)

        for sig in STOP_SIGNALS:
            signal.signal(sig, stop)
        host, port = self._address
        listener = _listen(host, port, reuse_port=True, backlog=self._backlog)
        loop = self._new_loop(listener)
        box.append(loop)
        if early:
            loop.request_stop()
        os.write(ready_fd, b".")
        try:
            loop.run()
        finally:
            loop.close()
            listener.close()
        return 0

    def start(self) -> Self:
        """Serve in a background (daemon) thread; ``shutdown()`` or ``close()`` ends it."""
        if self.workers != 1:
            raise IllegalStateError("start() runs one worker in a thread; use "
                                    "serve_forever() for several")
        self._serving.clear()
        thread = threading.Thread(target=self.serve_forever, name="zcio-serve", daemon=True)
        self._thread = thread
        thread.start()
        self._serving.wait(10.0)
        return self

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop gracefully: no new connections, finish the responses in flight, and wait
        (up to ``timeout`` seconds) until ``serve_forever`` has returned."""
        with self._lock:
            self._stop_requested = True
            if self._loop is not None:
                self._loop.request_stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if not thread.is_alive():
                self._thread = None
        elif thread is None:
            self._done.wait(timeout)

    def close(self) -> None:
        """Shut down (if serving) and release the port and the directory."""
        self.shutdown()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            listener.close()
        self.root.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FileServer({self.root.path!r}, {self.url!r}, workers={self.workers})"
