"""``zcio send FILE HOST:PORT`` and ``zcio recv PORT DEST``: one file over TCP, verified.

The commands are ``zcio.send_file`` and ``zcio.FileReceiver`` (``zcio._send``,
``zcio._recv``; the protocol in ``zcio._wire``) with options, progress bars and output.
The sender announces the file (name, size, SHA-256), the receiver answers with how much
it already has, the rest moves by sendfile (read/write to a peer on this host, where
the engine measured it faster; ``--path`` forces one) and is spliced into
``DEST/.NAME.zcio-part``, which gets its name only once its digest matched: ``send``
exits 0 only then.  A failure keeps the partial file for the next attempt to resume.

Errors are one line on stderr and exit status 1 (``zcio send: connection refused:
127.0.0.1:1``); usage errors exit 2.  ``--json``: ``send`` prints one JSON document;
``recv`` prints JSON Lines, one object per event (``listening``, ``received``,
``failed``) so a script can read the port before anything else happens.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import click

from .._recv import RECV_PATHS, FileReceiver
from .._send import SEND_PATHS, send_file
from .._session import ReceiveResult, SendResult, where
from ._common import HOST_PORT, PATH, SIZE, ProgressBars, emit_json, fail_line, human_rate

__all__ = ["send", "recv"]


def _report(r: SendResult | ReceiveResult) -> dict[str, Any]:
    """The JSON fields of a verified transfer, both sides."""
    return {
        "name": r.name, "bytes": r.size, "resumed_from": r.resumed_from,
        "moved": r.moved, "seconds": round(r.seconds, 6),
        "gb_per_s": round(r.gb_per_s, 3) if r.gb_per_s is not None else None,
        "path": r.path,
        "paths": {p.path: {"syscalls": p.syscalls, "kernel_bytes": p.kernel_bytes,
                           "user_bytes": p.user_bytes} for p in r.paths.values()},
        "checksum": r.checksum, "verified": True,
    }


def _human(verb: str, r: dict[str, Any], where: str) -> str:
    resumed = (f" ({r['moved']:,} moved, resumed from {r['resumed_from']:,})"
               if r["resumed_from"] else "")
    speed = f" ({human_rate(r['moved'], r['seconds'])})" if r["seconds"] else ""
    return (f"{verb} {r['name']} {where}: {r['bytes']:,} bytes{resumed} in "
            f"{r['seconds']:.3f} s{speed} via {r['path']}; "
            f"{r['checksum'].split(':')[0]} verified")


# -- send ------------------------------------------------------------------------------


@click.command("send")
@click.argument("file", type=PATH)
@click.argument("address", metavar="HOST:PORT", type=HOST_PORT)
@click.option("--name", help="Name on the receiver (default: FILE's base name).")
@click.option("--rate", type=SIZE, help="Limit to this many bytes a second (e.g. 50m).")
@click.option("--path", "force_path", type=click.Choice(SEND_PATHS),
              help="Force one transfer path (default: the engine's choice; sendfile, or "
              "read/write to a peer on this host, where it measures faster).")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=10.0,
              show_default=True, help="Seconds to wait to connect, for an answer, and "
              "for progress while sending (the verdict may take size/48 MiB/s longer).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def send(file: str, address: tuple[str, int], name: str | None, rate: int | None,
         force_path: str | None, timeout: float, as_json: bool) -> None:
    """Send FILE to a `zcio recv` at HOST:PORT, resuming where an earlier try stopped.

    Exits 0 only once the receiver has checked the SHA-256 of the whole file and
    given it its name.
    """
    if rate is not None and rate <= 0:
        raise click.BadParameter("must be more than 0", param_hint="'--rate'")
    with ProgressBars() as bars:
        result = send_file(file, address, name=name, rate=rate, path=force_path,
                           timeout=timeout, progress=bars)
    report = _report(result)
    report.update(to=result.address, total_seconds=round(result.total_seconds, 6))
    if as_json:
        emit_json(report)
    else:
        click.echo(_human("sent", report, f"to {result.address}"))


# -- recv ------------------------------------------------------------------------------


def _error_text(e: BaseException) -> str:
    """What ``fail_line`` prints, without the prefix."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e) or type(e).__name__


_OUTPUT = threading.Lock()  # one line at a time from concurrent sessions


def _emit_line(as_json: bool, event: str, data: dict[str, Any], text: str) -> None:
    """One event on stdout."""
    with _OUTPUT:
        if as_json:
            sys.stdout.write(json.dumps({"event": event, **data}, sort_keys=True) + "\n")
        else:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _received(as_json: bool, r: ReceiveResult) -> None:
    report = _report(r)
    report.update({"from": r.peer, "saved_to": r.saved_to})
    _emit_line(as_json, "received", report,
               _human("received", report, f"from {r.peer} into {r.saved_to}"))


def _failed(as_json: bool, peer: str, e: BaseException) -> None:
    with _OUTPUT:
        fail_line(e, "zcio recv")
    if as_json:
        _emit_line(True, "failed", {"from": peer, "error": _error_text(e)}, "")


@click.command("recv")
@click.argument("port", type=click.IntRange(0, 65535))
@click.argument("dest", type=PATH)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--keep", is_flag=True, help="Serve senders until interrupted, several at "
              "once (default: exit after one).")
@click.option("--max-senders", type=click.IntRange(1), default=8, show_default=True,
              help="With --keep: senders served at once; more are refused, busy.")
@click.option("--max-size", type=SIZE, help="Refuse files larger than this (e.g. 10g).")
@click.option("--overwrite", is_flag=True, help="Replace an existing DEST/NAME (default: "
              "refuse it before any byte moves).")
@click.option("--dotfiles", is_flag=True, help="Accept names that start with a dot.")
@click.option("--keep-partial", type=click.FloatRange(0), default=7.0, show_default=True,
              help="Days a sender's partial file is kept for resuming after its last "
              "byte; older ones are removed when recv starts or takes a connection.")
@click.option("--path", "force_path", type=click.Choice(RECV_PATHS),
              help="Force one transfer path (default: splice).")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=10.0,
              show_default=True, help="Seconds a sender may stay silent: before its header, "
              "and mid-body (then it is dropped and its partial file kept).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one per event.")
def recv(port: int, dest: str, host: str, keep: bool, max_senders: int,
         max_size: int | None, overwrite: bool, dotfiles: bool, keep_partial: float,
         force_path: str | None, timeout: float, as_json: bool) -> None:
    """Receive files from `zcio send` on PORT (0: any) into the directory DEST (splice).

    The first line on stdout says where it listens.  A file gets its name only after
    its SHA-256 matched; an interrupted transfer leaves DEST/.NAME.zcio-part for the
    sender's next attempt to resume.  An existing DEST/NAME is refused unless
    --overwrite.
    """
    # Bars for one sender only: concurrent sessions would fight over the terminal.
    with ProgressBars(enabled=not keep) as bars, FileReceiver(
            dest, host=host, port=port, max_senders=max_senders, max_size=max_size,
            overwrite=overwrite, dotfiles=dotfiles, keep_partial=keep_partial * 86400.0,
            path=force_path, timeout=timeout, progress=None if keep else bars) as receiver:
        bound_host, bound_port = receiver.address
        _emit_line(as_json, "listening", {"host": bound_host, "port": bound_port},
                   f"listening on {where(bound_host, bound_port)}")
        if keep:
            receiver.serve_forever(lambda r: _received(as_json, r),
                                   lambda peer, e: _failed(as_json, peer, e))
        else:
            _received(as_json, receiver.accept_one())
