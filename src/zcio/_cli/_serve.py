"""``zcio serve [DIR]``: serve a directory over HTTP/1.1, file bodies by sendfile.

The server is ``zcio.serve.FileServer``; this is its command line.  It prints one line
once it accepts connections (``--json``: JSON Lines, a ``listening`` object with
``url``, ``host``, ``port``, ``root``, ``workers`` and ``pid``, then a ``stopped``
one), writes the access log (Common Log Format) to stderr unless ``--access-log FILE``
or ``--quiet``, and on SIGTERM, SIGINT or SIGHUP stops accepting, finishes the
responses in flight and exits 0.  Workers (``--workers N``) die with the master, even
when it is killed with SIGKILL.

Errors are one line on stderr: a port in use or an address that cannot be bound exits
1 (``zcio: Address already in use: 127.0.0.1:8000``); bad options exit 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
from collections.abc import Iterator
from typing import TextIO

import click

from ..serve import FileServer
from ._common import PATH

__all__ = ["serve"]


def _raise_fd_limit(wanted: int) -> None:
    """Lift the soft RLIMIT_NOFILE towards ``wanted`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@contextlib.contextmanager
def _log_stream(access_log: str | None, quiet: bool) -> Iterator[TextIO | None]:
    if quiet or access_log in ("off", ""):
        yield None
    elif access_log in (None, "-"):
        yield sys.stderr
    else:
        assert access_log is not None
        with open(access_log, "a", encoding="utf-8", buffering=1 << 16) as f:
            yield f


@click.command("serve")
@click.argument("directory", default=".", type=PATH)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 or :: for every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: any free one; the line printed says which).")
@click.option("--workers", "-w", default=1, show_default=True, type=click.IntRange(1, 512),
              help="Processes sharing the port (SO_REUSEPORT); one per core uses them all.")
@click.option("--list", "list_directories", is_flag=True,
              help="List directories that have no index.html.")
@click.option("--follow-symlinks", is_flag=True,
              help="Follow symlinks that lead outside DIRECTORY.")
@click.option("--dotfiles", is_flag=True, help="Serve files and directories named .*")
@click.option("--precompressed/--no-precompressed", default=True, show_default=True,
              help="Serve NAME.br / NAME.gz to clients that accept them.")
@click.option("--access-log", metavar="FILE", default="-", show_default=True,
              help="Where the access log goes: a file, '-' (stderr) or 'off'.")
@click.option("--quiet", "-q", is_flag=True, help="No access log.")
@click.option("--max-connections", default=4096, show_default=True,
              type=click.IntRange(1, None), help="Open connections per worker.")
@click.option("--idle-timeout", default=15.0, show_default=True,
              type=click.FloatRange(0, None, min_open=True),
              help="Seconds a keep-alive connection may wait for its next request.")
@click.option("--request-timeout", default=10.0, show_default=True,
              type=click.FloatRange(0, None, min_open=True),
              help="Seconds from a request's first byte to its last.")
@click.option("--send-timeout", default=30.0, show_default=True,
              type=click.FloatRange(0, None, min_open=True),
              help="Seconds a response may make no progress (a client not reading).")
@click.option("--shutdown-timeout", default=10.0, show_default=True,
              type=click.FloatRange(0, None, min_open=True),
              help="Seconds a graceful stop waits for responses in flight.")
@click.option("--json", "as_json", is_flag=True,
              help="Announce the address as one JSON object on stdout.")
def serve(directory: str, host: str, port: int, workers: int, list_directories: bool,
          follow_symlinks: bool, dotfiles: bool, precompressed: bool, access_log: str,
          quiet: bool, max_connections: int, idle_timeout: float, request_timeout: float,
          send_timeout: float, shutdown_timeout: float, as_json: bool) -> None:
    """Serve DIRECTORY (default: the current one) over HTTP/1.1 until SIGTERM/SIGINT/SIGHUP."""
    # Missing, not a directory, unreadable: one line and exit 1, before anything starts.
    os.close(os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    _raise_fd_limit(max_connections + 256)
    with _log_stream(access_log, quiet) as log:
        try:
            server = FileServer(
                directory, host, port, workers=workers, list_directories=list_directories,
                dotfiles=dotfiles, follow_symlinks=follow_symlinks,
                precompressed=precompressed, access_log=log,
                max_connections=max_connections, idle_timeout=idle_timeout,
                request_timeout=request_timeout, send_timeout=send_timeout,
                shutdown_timeout=shutdown_timeout)
        except OSError as e:
            if not e.filename:
                e.filename = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise
        with server:
            bound_host, bound_port = server.address

            def announce() -> None:
                if as_json:
                    sys.stdout.write(json.dumps({
                        "event": "listening", "url": server.url, "host": bound_host,
                        "port": bound_port, "root": server.root.path, "workers": workers,
                        "pid": os.getpid()}) + "\n")
                else:
                    plural = "s" if workers > 1 else ""
                    click.echo(f"zcio serve: {server.root.path} at {server.url} "
                               f"({workers} worker{plural}; Ctrl-C stops)")
                sys.stdout.flush()

            status = server.serve_forever(handle_signals=True, ready=announce)
    if as_json:
        sys.stdout.write(json.dumps({"event": "stopped", "status": status}) + "\n")
    sys.exit(status)
