"""``zcio send FILE HOST:PORT`` and ``zcio recv PORT DEST``: one file over TCP, verified.

The sender announces the file (base name, size, SHA-256 of the whole file; see
``_wire`` for the bytes), the receiver answers with how much it already has, the
sender moves the rest with ``zcio.transfer`` (sendfile; read/write to a peer on this
host, where the engine measured it faster; ``--path`` forces one) and the receiver
splices it into ``DEST/.NAME.zcio-part``.  The receiver then reads the whole partial
file back, and only if its digest matches renames it to ``DEST/NAME``
(``os.replace``, after ``fdatasync``) and tells the sender, whose exit status is 0
only then.  A mismatch deletes the partial file; every other failure (a killed peer,
a full disk) keeps it for the next attempt, which resumes where it stopped.  A final
name never holds a truncated or unverified file.

The receiver's state lives beside the partial file, in ``DEST/.NAME.zcio-head``: the
sender's header, so a prefix is reused only for the same name, size and digest.

Errors are one line on stderr and exit status 1 (``zcio send: connection refused:
127.0.0.1:1``); usage errors exit 2.  The sender hashes the file before it connects
(the header carries the digest), so on a large file an unreachable receiver is found
after that pass.  ``--json``: ``send`` prints one JSON document;
``recv`` prints JSON Lines, one object per event (``listening``, ``received``,
``failed``) so a script can read the port before anything else happens.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import socket
import stat
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from .._byte_buffer import ByteBuffer
from .._errors import TransferError, ZcioError
from .._file_channel import FileChannel, OpenOption
from .._metrics import Measurement, measure
from .._socket_channel import ServerSocketChannel, SocketChannel
from .._transfer import transfer
from ._common import HOST_PORT, SIZE, Progress, emit_json, fail_line, progress
from ._wire import (
    NEED_DATA,
    SHA256,
    Abort,
    Accept,
    Header,
    Mismatch,
    ProtocolError,
    Receiver,
    Sender,
    Verified,
    check_name,
    new_digest,
    partial_name,
    resume_offset,
    sidecar_name,
)

__all__ = ["send", "recv"]

CHUNK = 16 << 20  # bytes per transfer call: progress and the sender's check for an ABORT
HASH_CHUNK = 1 << 20
DRAIN_SECONDS = 5.0  # how long a failing receiver keeps reading so its ABORT is seen
SEND_PATHS = ("sendfile", "splice", "mmap_write", "read_write")  # file -> socket
RECV_PATHS = ("splice", "read_write")  # socket -> file
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


class TransferFailed(ZcioError):
    """The transfer did not complete; the message is the one line the user sees."""


# -- small I/O helpers -----------------------------------------------------------------


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _readable(fd: int, timeout: float | None) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(int(timeout * 1000), 0)))


def _read_event(proto: Sender | Receiver, ch: SocketChannel, timeout: float | None,
                what: str, peer: str) -> Any:
    """Read exactly what ``proto`` needs until it has an event; ``timeout`` in total."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while (event := proto.next_event()) is NEED_DATA:
        left = None if deadline is None else deadline - time.monotonic()
        if not _readable(ch.fileno(), left):
            raise TimeoutError(errno.ETIMEDOUT, f"timed out waiting for {what}", peer)
        buf = ByteBuffer.allocate(proto.needed())
        n = ch.read(buf)
        proto.receive_data(b"" if n < 0 else bytes(buf.array()[:n]))
    return event


def _write_all(ch: SocketChannel, data: bytes) -> None:
    buf = ByteBuffer.wrap(data)
    while buf.has_remaining():
        ch.write(buf)


def _digest(fc: FileChannel, size: int, algorithm: int, bar: Progress, path: str) -> bytes:
    """The digest of ``fc``'s first ``size`` bytes, read back with pread."""
    h, buf, pos, fd = new_digest(algorithm), bytearray(HASH_CHUNK), 0, fc.fileno()
    with memoryview(buf) as view:
        while pos < size:
            n = os.preadv(fd, [view[: min(HASH_CHUNK, size - pos)]], pos)
            if n == 0:
                raise OSError(errno.ENODATA, f"file ended at {pos} of {size} bytes", path)
            h.update(view[:n])
            pos += n
            bar.advance(n)
    return bytes(h.digest())


def _chunked(total: int, offset: int, what: str, step: Callable[[int], int],
             after: Callable[[int], None]) -> Measurement:
    """Call ``step(n)`` until ``total - offset`` bytes moved, under ``measure()``."""
    with progress(total, what) as bar, measure() as m:
        bar.advance(offset)
        left = total - offset
        while left:
            n = step(min(CHUNK, left))
            left -= n
            bar.advance(n)
            after(total - offset - left)
    return m


def _strerror(e: OSError) -> str:
    """The kernel's words, without TransferError's per-call count."""
    cause = e.__cause__ if isinstance(e, TransferError) and e.__cause__ else e
    return getattr(cause, "strerror", None) or str(cause)


def _main_path(m: Measurement) -> str:
    moved = {p.path: p.kernel_bytes + p.user_bytes for p in m.paths.values()
             if not p.path.startswith("socket_")}
    return max(moved, key=lambda p: moved[p]) if any(moved.values()) else "none"


def _report(m: Measurement, header: Header, offset: int) -> dict[str, Any]:
    moved = header.size - offset
    return {
        "name": header.name, "bytes": header.size, "resumed_from": offset,
        "moved": moved, "seconds": round(m.wall_seconds, 6),
        "gb_per_s": round(moved / m.wall_seconds / 1e9, 3) if m.wall_seconds else None,
        "path": _main_path(m),
        "paths": {p.path: {"syscalls": p.syscalls, "kernel_bytes": p.kernel_bytes,
                           "user_bytes": p.user_bytes} for p in m.paths.values()},
        "checksum": f"{header.algorithm_name}:{header.digest.hex()}", "verified": True,
    }


def _human(verb: str, r: dict[str, Any], where: str) -> str:
    resumed = (f" ({r['moved']:,} moved, resumed from {r['resumed_from']:,})"
               if r["resumed_from"] else "")
    speed = f" ({r['gb_per_s']} GB/s)" if r["gb_per_s"] is not None else ""
    return (f"{verb} {r['name']} {where}: {r['bytes']:,} bytes{resumed} in "
            f"{r['seconds']:.3f} s{speed} via {r['path']}; "
            f"{r['checksum'].split(':')[0]} verified")


# -- send ------------------------------------------------------------------------------


def _open_source(file: str) -> FileChannel:
    st = os.stat(file)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), file)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", file)
    return FileChannel.open(file)


def _connect(host: str, port: int, timeout: float) -> SocketChannel:
    where = _where(host, port)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as e:
        raise OSError(errno.EHOSTUNREACH, f"cannot resolve host ({e.strerror})", host) from None
    except ConnectionRefusedError:
        raise ConnectionRefusedError(errno.ECONNREFUSED, "connection refused", where) from None
    except TimeoutError:
        raise TimeoutError(errno.ETIMEDOUT, "connection timed out", where) from None
    except OSError as e:
        raise OSError(e.errno, f"cannot connect ({e.strerror})", where) from None
    try:
        return SocketChannel.from_socket(sock)  # blocking, the timeout dropped
    except BaseException:
        sock.close()
        raise


def _lost(ch: SocketChannel, proto: Sender, where: str, error: OSError) -> TransferFailed:
    """The connection broke mid-body: the receiver's ABORT if it sent one, else why."""
    with contextlib.suppress(OSError, ProtocolError):
        event = _read_event(proto, ch, 1.0, "the receiver's reason", where)
        if isinstance(event, Abort):
            return TransferFailed(f"receiver {where} failed: {event.reason}")
    sent = proto.header.size - proto.remaining
    return TransferFailed(f"connection to {where} lost after {sent:,} of "
                          f"{proto.header.size:,} bytes ({_strerror(error)})")


@click.command("send")
@click.argument("file", type=click.Path(path_type=str))
@click.argument("address", metavar="HOST:PORT", type=HOST_PORT)
@click.option("--name", help="Name on the receiver (default: FILE's base name).")
@click.option("--rate", type=SIZE, help="Limit to this many bytes a second (e.g. 50m).")
@click.option("--path", "force_path", type=click.Choice(SEND_PATHS),
              help="Force one transfer path (default: the engine's choice; sendfile, or "
              "read/write to a peer on this host, where it measures faster).")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=10.0,
              show_default=True, help="Seconds to wait to connect and for the first answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def send(file: str, address: tuple[str, int], name: str | None, rate: int | None,
         force_path: str | None, timeout: float, as_json: bool) -> None:
    """Send FILE to a `zcio recv` at HOST:PORT, resuming where an earlier try stopped.

    Exits 0 only once the receiver has checked the SHA-256 of the whole file and
    given it its name.
    """
    if rate is not None and rate <= 0:
        raise click.BadParameter("must be more than 0", param_hint="'--rate'")
    host, port = address
    where = _where(host, port)
    started = time.perf_counter()
    with _open_source(file) as fc:
        size = fc.size()
        label = check_name(name if name is not None else os.path.basename(file))
        with progress(size, f"checksum {label}") as bar:
            header = Header(label, size, _digest(fc, size, SHA256, bar, file))
        proto = Sender(header)
        with _connect(host, port, timeout) as ch:
            try:
                _write_all(ch, proto.start())
                event = _read_event(proto, ch, timeout, "the receiver's answer", where)
                if isinstance(event, Abort):
                    raise TransferFailed(f"receiver {where} refused: {event.reason}")
                assert isinstance(event, Accept)
                m = _send_body(fc, ch, proto, where, rate, force_path)
                event = _read_event(proto, ch, None, "the receiver's verdict", where)
            except ProtocolError as e:
                raise ProtocolError(f"{where}: {e}") from None
            except OSError as e:
                if e.filename is None and not isinstance(e, ZcioError):
                    raise OSError(e.errno, e.strerror, where) from None  # say who
                raise
    if isinstance(event, Mismatch):
        raise TransferFailed(f"receiver {where} discarded {label}: {event.reason}")
    if isinstance(event, Abort):
        raise TransferFailed(f"receiver {where} failed: {event.reason}")
    assert isinstance(event, Verified)
    report = _report(m, header, proto.offset)
    report.update(to=where, total_seconds=round(time.perf_counter() - started, 6))
    if as_json:
        emit_json(report)
    else:
        click.echo(_human("sent", report, f"to {where}"))


def _send_body(fc: FileChannel, ch: SocketChannel, proto: Sender, where: str,
               rate: int | None, force_path: str | None) -> Measurement:
    chunk = CHUNK if rate is None else max(64 << 10, min(CHUNK, rate // 10))
    fc.position(proto.offset)
    t0 = time.monotonic()

    def step(n: int) -> int:
        n = min(n, chunk)
        try:
            moved = transfer(fc, ch, count=n, path=force_path)
        except TransferError as e:
            proto.body_sent(e.transferred)
            raise _lost(ch, proto, where, e) from None
        except OSError as e:
            raise _lost(ch, proto, where, e) from None
        proto.body_sent(moved)
        return moved

    def after(done: int) -> None:
        if proto.remaining and _readable(ch.fileno(), 0):  # it spoke early: an ABORT
            raise _lost(ch, proto, where,
                        OSError(errno.ECONNABORTED, "the receiver closed the connection"))
        if rate is not None:
            time.sleep(max(done / rate - (time.monotonic() - t0), 0))

    return _chunked(proto.header.size, proto.offset, f"send {proto.header.name}", step, after)


# -- recv ------------------------------------------------------------------------------


def _check_dest(dest: str) -> None:
    if not stat.S_ISDIR(os.stat(dest).st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), dest)
    if not os.access(dest, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dest)


def _listen(host: str, port: int) -> ServerSocketChannel:
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                   flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise OSError(errno.EHOSTUNREACH, f"cannot resolve host ({e.strerror})", host) from None
    server = ServerSocketChannel.open(family)
    try:
        server.bind(addr)
    except OSError as e:
        server.close()
        raise OSError(e.errno, e.strerror, _where(host, port)) from None
    return server


class _Session:
    """One incoming connection: header, resume decision, body, verification, rename."""

    def __init__(self, ch: SocketChannel, dest: str, peer: str, max_size: int | None,
                 timeout: float, force_path: str | None) -> None:
        self.ch, self.dest, self.peer = ch, dest, peer
        self.max_size, self.timeout, self.force_path = max_size, timeout, force_path
        self.proto = Receiver()
        self.accepted = False

    def abort(self, reason: str, error: BaseException) -> BaseException:
        """Tell the sender why (best effort) and return ``error`` to raise.

        Closing with unread bytes would send a reset, which can destroy the ABORT before
        the sender reads it: so shut down this direction and read until the sender hangs
        up, for a while (longer mid-body, where a whole chunk may be on its way).
        """
        with contextlib.suppress(OSError, ProtocolError):
            wait = DRAIN_SECONDS if self.proto.remaining else 1.0
            _write_all(self.ch, self.proto.abort(reason))
            self.ch.shutdown_output()
            deadline, buf = time.monotonic() + wait, ByteBuffer.allocate(1 << 16)
            while _readable(self.ch.fileno(), deadline - time.monotonic()):
                if self.ch.read(buf.clear()) < 0:
                    break
        return error

    def run(self) -> dict[str, Any]:
        try:
            header = _read_event(self.proto, self.ch, self.timeout, "a header", self.peer)
        except ProtocolError as e:
            raise self.abort(str(e), ProtocolError(f"{self.peer}: {e}")) from None
        except TimeoutError as e:
            raise self.abort(str(e.strerror), e) from None
        assert isinstance(header, Header)
        if self.max_size is not None and header.size > self.max_size:
            text = f"{header.name} is {header.size:,} bytes, over --max-size {self.max_size:,}"
            raise self.abort(text, TransferFailed(f"{self.peer}: {text}"))
        part = os.path.join(self.dest, partial_name(header.name))
        existed = os.path.lexists(part)
        with FileChannel.open(part, OpenOption.READ, OpenOption.WRITE,
                              OpenOption.CREATE) as fc:
            if fc.try_lock() is None:
                text = f"{header.name} is being received by another zcio recv"
                raise self.abort(text, TransferFailed(f"{self.peer}: {text}"))
            try:
                return self._receive(header, fc, part)
            except BaseException:
                if not existed and not self.accepted:  # refused: leave no litter
                    for path in (part, os.path.join(self.dest, sidecar_name(header.name))):
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                raise

    def _receive(self, header: Header, fc: FileChannel, part: str) -> dict[str, Any]:
        head = os.path.join(self.dest, sidecar_name(header.name))
        try:
            with open(head, "rb") as f:
                sidecar: bytes | None = f.read(4096)
        except FileNotFoundError:
            sidecar = None
        offset = resume_offset(header, sidecar, fc.size())
        try:
            _check_room(self.dest, header.size - offset)
            if offset == 0:  # a different file, or none: start over, then record which
                fc.truncate(0)
                with open(head, "wb") as f:
                    f.write(header.encode())
        except OSError as e:
            where = e.filename if e.filename else head
            raise self.abort(f"{e.strerror}: {where}",
                             OSError(e.errno, e.strerror, where)) from None
        _write_all(self.ch, self.proto.accept(offset))
        self.accepted = True
        fc.position(offset)
        m = _chunked(header.size, offset, f"recv {header.name}", self._step(fc, part),
                     lambda done: None)
        with progress(header.size, f"verify {header.name}") as bar:
            ok = _digest(fc, header.size, header.algorithm, bar, part) == header.digest
        final = os.path.join(self.dest, header.name)
        if not ok:
            for path in (part, head):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            text = (f"{header.algorithm_name} of the {header.size:,} bytes received does "
                    "not match the sender's")
            with contextlib.suppress(OSError):
                _write_all(self.ch, self.proto.verdict(False, text))
            raise TransferFailed(f"{self.peer}: {text}; {header.name} discarded")
        try:
            fc.force(False)  # the data is on disk before the name points at it
            os.replace(part, final)
        except OSError as e:
            raise self.abort(f"{e.strerror}: {final}",
                             OSError(e.errno, e.strerror, final)) from None
        with contextlib.suppress(OSError):
            os.unlink(head)
            _fsync_dir(self.dest)
        with contextlib.suppress(OSError):  # the file is safe even if the sender left
            _write_all(self.ch, self.proto.verdict(True))
        report = _report(m, header, offset)
        report.update({"from": self.peer, "saved_to": final})
        return report

    def _step(self, fc: FileChannel, part: str) -> Callable[[int], int]:
        def step(n: int) -> int:
            try:
                moved = transfer(self.ch, fc, count=n, path=self.force_path)
            except OSError as e:
                got = e.transferred if isinstance(e, TransferError) else 0
                self.proto.body_received(got)
                raise self._failed(e, part) from None
            self.proto.body_received(moved)
            return moved
        return step

    def _failed(self, e: OSError, part: str) -> BaseException:
        header = self.proto.header
        assert header is not None
        got = header.size - self.proto.remaining
        strerror = _strerror(e)
        if e.errno in _DISK_ERRORS:
            text = f"{strerror} after {got:,} of {header.size:,} bytes"
            return self.abort(text, OSError(e.errno, f"{text}; kept for resuming", part))
        return TransferFailed(f"connection from {self.peer} lost after {got:,} of "
                              f"{header.size:,} bytes ({strerror}); {part} kept for resuming")


def _check_room(dest: str, need: int) -> None:
    """ENOSPC now if ``dest``'s file system has less than ``need`` bytes free.

    Not fallocate: a reservation that fails may keep what it got (ext4 does, up to a
    full disk), and one that succeeds lets any sender's header claim disk space.
    """
    st = os.statvfs(dest)
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                      f"{dest} (needs {need:,} more bytes, has {free:,})")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _error_text(e: BaseException) -> str:
    """What ``fail_line`` prints, without the prefix."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e) or type(e).__name__


def _emit_line(as_json: bool, event: str, data: dict[str, Any], text: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"event": event, **data}, sort_keys=True) + "\n")
    else:
        sys.stdout.write(text + "\n")
    sys.stdout.flush()


@click.command("recv")
@click.argument("port", type=click.IntRange(0, 65535))
@click.argument("dest", type=click.Path(path_type=str))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--keep", is_flag=True, help="Serve one connection after another until "
              "interrupted (default: exit after one).")
@click.option("--max-size", type=SIZE, help="Refuse files larger than this (e.g. 10g).")
@click.option("--path", "force_path", type=click.Choice(RECV_PATHS),
              help="Force one transfer path (default: splice).")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=30.0,
              show_default=True, help="Seconds a sender has to send its header.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one per event.")
def recv(port: int, dest: str, host: str, keep: bool, max_size: int | None,
         force_path: str | None, timeout: float, as_json: bool) -> None:
    """Receive files from `zcio send` on PORT (0: any) into the directory DEST (splice).

    The first line on stdout says where it listens.  A file gets its name only after
    its SHA-256 matched; an interrupted transfer leaves DEST/.NAME.zcio-part for the
    sender's next attempt to resume.  An existing DEST/NAME is replaced.
    """
    _check_dest(dest)
    with _listen(host, port) as server:
        bound: Any = server.local_address()
        where = _where(bound[0], bound[1])
        _emit_line(as_json, "listening", {"host": bound[0], "port": bound[1]},
                   f"listening on {where}")
        while True:
            ch = server.accept()
            assert ch is not None
            with ch:
                remote: Any = ch.remote_address()
                peer = _where(remote[0], remote[1])
                try:
                    try:
                        report = _Session(ch, dest, peer, max_size, timeout,
                                          force_path).run()
                    except OSError as e:
                        if e.filename is None and not isinstance(e, ZcioError):
                            raise OSError(e.errno, e.strerror, peer) from None  # say who
                        raise
                except (OSError, ZcioError) as e:
                    if not keep:
                        raise
                    fail_line(e, "zcio recv")
                    if as_json:
                        _emit_line(True, "failed", {"from": peer, "error": _error_text(e)}, "")
                    continue
            _emit_line(as_json, "received", report,
                       _human("received", report, f"from {peer} into {report['saved_to']}"))
            if not keep:
                return
