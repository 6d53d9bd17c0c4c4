"""``zcio send FILE HOST:PORT`` and ``zcio recv PORT DEST``: one file over TCP, verified.

The sender announces the file (base name, size, SHA-256 of the whole file; see ``_wire``
for the bytes; a file that says it holds 0 bytes, as procfs files do, is first read to
its end into a temporary file, which is what is announced and sent), the receiver
answers with how much it already has, the sender moves the rest with ``zcio.transfer``
(sendfile; read/write to a peer on this host, where the engine measured it faster;
``--path`` forces one) and the receiver splices it into ``DEST/.NAME.zcio-part``.  The
receiver then reads the whole partial file back, and only if its digest matches renames
it to ``DEST/NAME`` (``os.replace``, after ``fdatasync``) and tells the sender, whose
exit status is 0 only then.  A mismatch deletes the partial file; every other failure (a
killed peer, a full disk) keeps it for the next attempt, which resumes where it stopped.
A final name never holds a truncated or unverified file.

The receiver's state lives beside the partial file, in ``DEST/.NAME.zcio-head``: the
sender's header, so a prefix is reused only for the same name, size and digest.

The receiver works only inside DEST, through a descriptor of it: every name is opened,
created, renamed and removed relative to it without following a symbolic link, so a
link planted at ``.NAME.zcio-part``, ``.NAME.zcio-head`` or ``NAME`` cannot send bytes
elsewhere (a link, a special file or a file with other hard links there is refused
with a clear error).  Before any byte of the body it refuses, leaving nothing behind: a
NAME that exists (unless ``--overwrite``) or is a directory, a dotfile NAME (unless
``--dotfiles``), a size over ``--max-size`` or over the free space of DEST's file
system.  Leftovers of senders that gave up are kept for resuming for
``--keep-partial`` (default 7 days) after their last byte, then removed when recv
starts or takes a connection.

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
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from .._byte_buffer import ByteBuffer
from .._errors import TransferError, ZcioError
from .._file_channel import FileChannel
from .._metrics import Measurement, measure
from .._socket_channel import ServerSocketChannel, SocketChannel
from .._transfer import transfer
from ._common import (
    HOST_PORT,
    PATH,
    SIZE,
    Progress,
    copy_to_end,
    emit_json,
    fail_line,
    human_rate,
    progress,
)
from ._wire import (
    HEAD_SUFFIX,
    NEED_DATA,
    PART_SUFFIX,
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
VERIFY_RATE = 48 << 20  # bytes/s a receiver reads back at least: bounds the verdict wait
SEND_PATHS = ("sendfile", "splice", "mmap_write", "read_write")  # file -> socket
RECV_PATHS = ("splice", "read_write")  # socket -> file
_PAGE = os.sysconf("SC_PAGE_SIZE")
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


class _Watchdog:
    """Drops a connection whose body makes no progress for ``timeout`` seconds.

    ``progress()`` is a number that grows while bytes move (the partial file's size on
    the receiver, the bytes the receiver acknowledged on the sender).  A thread looks at
    it a few times per ``timeout``; when it has not grown for ``timeout`` seconds, the
    socket is shut down, so the transfer blocked on it ends with an error and the
    session fails as for a lost connection (a receiver keeps its partial file).
    ``fired`` says whether it did.
    """

    def __init__(self, ch: SocketChannel, timeout: float, progress: Callable[[], int]
                 ) -> None:
        self.ch, self.timeout, self.progress = ch, timeout, progress
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="zcio-watchdog",
                                        daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        last, since = -1, time.monotonic()
        while not self._stop.wait(min(self.timeout / 4, 1.0)):
            try:
                now_at = self.progress()
            except OSError:
                return
            if now_at != last:
                last, since = now_at, time.monotonic()
            elif time.monotonic() - since >= self.timeout:
                self.fired = True
                with contextlib.suppress(OSError):
                    self.ch.socket().shutdown(socket.SHUT_RDWR)
                return


def _bytes_acked(ch: SocketChannel) -> int:
    """Bytes of this TCP connection the peer acknowledged (``tcp_info.tcpi_bytes_acked``,
    Linux 4.1+).  Syscalls: ``getsockopt(TCP_INFO)``."""
    info = ch.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < 128:
        raise OSError(errno.ENOPROTOOPT, "tcp_info without tcpi_bytes_acked")
    return int.from_bytes(info[120:128], sys.byteorder)


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
    speed = f" ({human_rate(r['moved'], r['seconds'])})" if r["seconds"] else ""
    return (f"{verb} {r['name']} {where}: {r['bytes']:,} bytes{resumed} in "
            f"{r['seconds']:.3f} s{speed} via {r['path']}; "
            f"{r['checksum'].split(':')[0]} verified")


# -- send ------------------------------------------------------------------------------


def _open_source(file: str) -> FileChannel:
    """FILE, open for reading; or, when it says it holds 0 bytes, what read(2) gives.

    A header announces the size before the body, and procfs and some FUSE files say 0
    whatever they hold, sysfs a page: a file of 0 bytes, or of at most a page with no
    block on disk, is read to its end first, into an unnamed temporary file (in
    ``$TMPDIR``), which is what is hashed and sent.  Any other file whose data ends
    before its size fails the checksum pass with the offset where it ended; a
    non-regular file is refused.  Never an empty "verified" file for one that had bytes.

    Syscalls: ``stat``, ``open``, ``fstat``; for such a file ``mkstemp``+``unlink`` in
    ``$TMPDIR`` and ``pread``/``pwrite`` to the end (a full ``$TMPDIR`` fails, exit 1).
    """
    st = os.stat(file)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), file)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", file)
    fc = FileChannel.open(file)
    st = os.fstat(fc.fileno())
    if st.st_size != 0 and (st.st_blocks or st.st_size > _PAGE):
        return fc
    with fc:
        fd, name = tempfile.mkstemp(prefix=".zcio-send-")
        os.unlink(name)
        spool = FileChannel(fd, True, True, name)
        try:
            with progress(None, f"read {os.path.basename(file)}") as bar:
                copy_to_end(fc, spool, 0, bar)
        except BaseException as e:
            spool.close()
            if isinstance(e, OSError) and e.filename is None:
                raise OSError(e.errno, f"{e.strerror} (reading it into "
                                       f"{tempfile.gettempdir()})", file) from None
            raise
        return spool


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
                with _Watchdog(ch, timeout, lambda: _bytes_acked(ch)) as dog:
                    try:
                        m = _send_body(fc, ch, proto, where, rate, force_path)
                    except TransferFailed:
                        if dog.fired:
                            raise TransferFailed(
                                f"receiver {where} stalled: nothing acknowledged for "
                                f"{timeout:g} s after {size - proto.remaining:,} of "
                                f"{size:,} bytes") from None
                        raise
                # The receiver reads the whole file back before it answers.
                verdict_timeout = timeout + size / VERIFY_RATE
                event = _read_event(proto, ch, verdict_timeout, "the receiver's verdict",
                                    where)
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


def _open_dest(dest: str) -> int:
    """A descriptor of the directory DEST, which every name is resolved against."""
    if not stat.S_ISDIR(os.stat(dest).st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), dest)
    if not os.access(dest, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dest)
    return os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


@dataclass(frozen=True)
class _Dest:
    """DEST: its path (for messages), its descriptor, and what the receiver may do there."""

    path: str
    fd: int
    overwrite: bool = False
    dotfiles: bool = False
    keep_partial: float = 7 * 86400.0

    def shown(self, name: str) -> str:
        return os.path.join(self.path, name)

    def open(self, name: str, flags: int) -> int:
        """Open ``name`` in DEST without following a link; only a regular file with no
        other hard link (so nothing outside DEST can be reached through it).

        Syscalls: ``openat(O_NOFOLLOW | O_NONBLOCK)``, ``fstat``; ELOOP for a link,
        EINVAL for anything else refused, with the path.
        """
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644,
                         dir_fd=self.fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise OSError(errno.ELOOP, "a symbolic link is there; refused",
                              self.shown(name)) from None
            raise OSError(e.errno, e.strerror, self.shown(name)) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            what = "not a regular file" if not stat.S_ISREG(st.st_mode) else \
                f"a file with {st.st_nlink} hard links"
            raise OSError(errno.EINVAL, f"{what} is there; refused", self.shown(name))
        os.set_blocking(fd, True)
        return fd

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.lstat(name, dir_fd=self.fd)
        except FileNotFoundError:
            return None

    def unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def expire_partials(self, now: float | None = None) -> list[str]:
        """Remove partial and sidecar files untouched for ``keep_partial`` seconds; their
        names.  Only regular files whose names are the receiver's own are touched."""
        now = time.time() if now is None else now
        removed = []
        with os.scandir(self.fd) as entries:
            for entry in entries:
                name = entry.name
                if not (name.startswith(".") and name.endswith((PART_SUFFIX, HEAD_SUFFIX))):
                    continue
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and now - st.st_mtime > self.keep_partial:
                    self.unlink(name)
                    removed.append(name)
        return removed


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

    def __init__(self, ch: SocketChannel, dest: _Dest, peer: str, max_size: int | None,
                 timeout: float, force_path: str | None) -> None:
        self.ch, self.dest, self.peer = ch, dest, peer
        self.max_size, self.timeout, self.force_path = max_size, timeout, force_path
        self.proto = Receiver()
        self.accepted = False
        self.watchdog: _Watchdog | None = None

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

    def report(self) -> dict[str, Any]:
        """Run the session; its report.  An error without a file name names the peer."""
        try:
            return self.run()
        except OSError as e:
            if e.filename is None and not isinstance(e, ZcioError):
                raise OSError(e.errno, e.strerror, self.peer) from None  # say who
            raise

    def run(self) -> dict[str, Any]:
        try:
            header = _read_event(self.proto, self.ch, self.timeout, "a header", self.peer)
        except ProtocolError as e:
            raise self.abort(str(e), ProtocolError(f"{self.peer}: {e}")) from None
        except TimeoutError as e:
            raise self.abort(str(e.strerror), e) from None
        assert isinstance(header, Header)
        refusal = self._refusal(header)
        if refusal is not None:
            raise self.abort(refusal, TransferFailed(f"{self.peer}: {refusal}"))
        dest, part_name = self.dest, partial_name(header.name)
        existed = dest.lstat(part_name) is not None
        try:
            fd = dest.open(part_name, os.O_RDWR | os.O_CREAT)
        except OSError as e:
            raise self.abort(f"{e.strerror}: {e.filename}", e) from None
        part = dest.shown(part_name)
        with FileChannel(fd, True, True, part) as fc:
            if fc.try_lock() is None:
                text = f"{header.name} is being received by another zcio recv"
                raise self.abort(text, TransferFailed(f"{self.peer}: {text}"))
            try:
                return self._receive(header, fc, part)
            except BaseException:
                if not existed and not self.accepted:  # refused: leave no litter
                    dest.unlink(part_name)
                    dest.unlink(sidecar_name(header.name))
                raise

    def _refusal(self, header: Header) -> str | None:
        """Why ``header``'s file is refused before anything is created, or None."""
        dest, name = self.dest, header.name
        if self.max_size is not None and header.size > self.max_size:
            return f"{name} is {header.size:,} bytes, over --max-size {self.max_size:,}"
        if name.startswith(".") and not dest.dotfiles:
            return f"{name} is a dotfile name (recv --dotfiles takes them)"
        st = dest.lstat(name)
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                return f"{dest.shown(name)} is a directory"
            if not dest.overwrite:
                return f"{dest.shown(name)} exists (recv --overwrite replaces it)"
        part = dest.lstat(partial_name(name))
        have = part.st_size if part is not None and stat.S_ISREG(part.st_mode) else 0
        try:
            _check_room(dest, header.size - min(have, header.size))
        except OSError as e:
            return f"{e.strerror}: {e.filename}"
        return None

    def _receive(self, header: Header, fc: FileChannel, part: str) -> dict[str, Any]:
        dest, head_name = self.dest, sidecar_name(header.name)
        head = dest.shown(head_name)
        try:
            sidecar: bytes | None = None
            if dest.lstat(head_name) is not None:
                with open(dest.open(head_name, os.O_RDONLY), "rb") as f:
                    sidecar = f.read(4096)
            offset = resume_offset(header, sidecar, fc.size())
            _check_room(dest, header.size - offset)
            if offset == 0:  # a different file, or none: start over, then record which
                fc.truncate(0)
                with open(dest.open(head_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                          "wb") as f:
                    f.write(header.encode())
        except OSError as e:
            where = e.filename if e.filename else head
            raise self.abort(f"{e.strerror}: {where}",
                             OSError(e.errno, e.strerror, where)) from None
        _write_all(self.ch, self.proto.accept(offset))
        self.accepted = True
        fc.position(offset)
        with _Watchdog(self.ch, self.timeout, lambda: os.fstat(fc.fileno()).st_size) as dog:
            self.watchdog = dog
            m = _chunked(header.size, offset, f"recv {header.name}", self._step(fc, part),
                         lambda done: None)
        with progress(header.size, f"verify {header.name}") as bar:
            ok = _digest(fc, header.size, header.algorithm, bar, part) == header.digest
        final = dest.shown(header.name)
        if not ok:
            dest.unlink(partial_name(header.name))
            dest.unlink(head_name)
            text = (f"{header.algorithm_name} of the {header.size:,} bytes received does "
                    "not match the sender's")
            with contextlib.suppress(OSError):
                _write_all(self.ch, self.proto.verdict(False, text))
            raise TransferFailed(f"{self.peer}: {text}; {header.name} discarded")
        try:
            fc.force(False)  # the data is on disk before the name points at it
            st = dest.lstat(header.name)  # again: it may have appeared meanwhile
            if st is not None and (stat.S_ISDIR(st.st_mode) or not dest.overwrite):
                raise FileExistsError(errno.EEXIST, "appeared while receiving; kept "
                                      "for resuming with --overwrite", final)
            os.replace(partial_name(header.name), header.name, src_dir_fd=dest.fd,
                       dst_dir_fd=dest.fd)  # renameat: a link at NAME is replaced
        except OSError as e:
            raise self.abort(f"{e.strerror}: {final}",
                             OSError(e.errno, e.strerror, final)) from None
        with contextlib.suppress(OSError):
            dest.unlink(head_name)
            os.fsync(dest.fd)
        with contextlib.suppress(OSError):  # the file is safe even if the sender left
            _write_all(self.ch, self.proto.verdict(True))
        report = _report(m, header, offset)
        report.update({"from": self.peer, "saved_to": final})
        return report

    def _step(self, fc: FileChannel, part: str) -> Callable[[int], int]:
        def step(n: int) -> int:
            try:
                moved = transfer(self.ch, fc, count=n, path=self.force_path)
                if moved == 0:  # the sender hung up (or was dropped) before the end
                    raise OSError(errno.ECONNRESET, "the sender closed the connection")
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
        if self.watchdog is not None and self.watchdog.fired:
            strerror = f"stalled: nothing for {self.timeout:g} s"
        if e.errno in _DISK_ERRORS:
            text = f"{strerror} after {got:,} of {header.size:,} bytes"
            return self.abort(text, OSError(e.errno, f"{text}; kept for resuming", part))
        return TransferFailed(f"connection from {self.peer} lost after {got:,} of "
                              f"{header.size:,} bytes ({strerror}); {part} kept for resuming")


def _check_room(dest: _Dest, need: int) -> None:
    """ENOSPC now if ``dest``'s file system has less than ``need`` bytes free.

    Not fallocate: a reservation that fails may keep what it got (ext4 does, up to a
    full disk), and one that succeeds lets any sender's header claim disk space.
    """
    st = os.statvfs(dest.fd)
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                      f"{dest.path} (needs {need:,} more bytes, has {free:,})")


def _error_text(e: BaseException) -> str:
    """What ``fail_line`` prints, without the prefix."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e) or type(e).__name__


_OUTPUT = threading.Lock()  # one line at a time from concurrent sessions


def _emit_line(as_json: bool, event: str, data: dict[str, Any], text: str) -> None:
    """One event on stdout; ``received`` events say their own text when ``text`` is
    empty."""
    if not text and event == "received":
        text = _human("received", data, f"from {data['from']} into {data['saved_to']}")
    with _OUTPUT:
        if as_json:
            sys.stdout.write(json.dumps({"event": event, **data}, sort_keys=True) + "\n")
        else:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()


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
    where_dest = _Dest(dest, _open_dest(dest), overwrite, dotfiles, keep_partial * 86400.0)
    try:
        with _listen(host, port) as server:
            _serve(server, where_dest, keep, max_senders, max_size, force_path, timeout,
                   as_json)
    finally:
        os.close(where_dest.fd)


def _serve(server: ServerSocketChannel, dest: _Dest, keep: bool, max_senders: int,
           max_size: int | None, force_path: str | None, timeout: float,
           as_json: bool) -> None:
    """Accept senders: one, or (``keep``) up to ``max_senders`` at once, each in its own
    thread, until interrupted."""
    bound: Any = server.local_address()
    _emit_line(as_json, "listening", {"host": bound[0], "port": bound[1]},
               f"listening on {_where(bound[0], bound[1])}")
    slots = threading.BoundedSemaphore(max_senders)
    while True:
        dest.expire_partials()
        ch = server.accept()
        assert ch is not None
        remote: Any = ch.remote_address()
        peer = _where(remote[0], remote[1])
        session = _Session(ch, dest, peer, max_size, timeout, force_path)
        if not keep:
            with ch:
                _emit_line(as_json, "received", session.report(), "")
            return
        if not slots.acquire(blocking=False):
            with ch:
                session.abort(f"busy: {max_senders} senders already", TransferFailed(""))
            continue

        def serve_one(session: _Session = session, ch: SocketChannel = ch,
                      peer: str = peer) -> None:
            try:
                with ch:
                    report = session.report()
            except (OSError, ZcioError) as e:
                with _OUTPUT:
                    fail_line(e, "zcio recv")
                if as_json:
                    _emit_line(True, "failed", {"from": peer, "error": _error_text(e)}, "")
            else:
                _emit_line(as_json, "received", report, "")
            finally:
                slots.release()

        threading.Thread(target=serve_one, name=f"zcio-recv {peer}", daemon=True).start()
