"""Sending one file to a receiver, resumed and verified: ``zcio.send_file``.

The sender announces the file (base name, size, SHA-256 of the whole file; see
``zcio._wire`` for the bytes; a file that says it holds 0 bytes, as procfs files do, is
first read to its end into a temporary file, which is what is announced and sent), the
receiver answers with how much it already has, and the sender moves the rest with
``zcio.transfer`` (sendfile; read/write to a peer on this host, where the engine
measured it faster; ``path=`` forces one).  The receiver reads the whole file back and
answers only once its digest matched and the file has its final name: ``send_file``
returns only then.

The sender hashes the file before it connects (the header carries the digest), so on a
large file an unreachable receiver is found after that pass.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import sys
import tempfile
import time

from ._copy import copy_to_end
from ._errors import IllegalArgumentError, TransferError, ZcioError
from ._file_channel import FileChannel
from ._metrics import Measurement
from ._progress import Meter, ProgressCallback
from ._session import (
    CHUNK,
    SendResult,
    TransferFailed,
    Watchdog,
    chunked,
    digest,
    read_event,
    readable,
    result_fields,
    strerror,
    where,
    write_all,
)
from ._socket_channel import SocketChannel
from ._transfer import transfer
from ._wire import (
    SHA256,
    Abort,
    Accept,
    Header,
    Mismatch,
    ProtocolError,
    Sender,
    Verified,
    check_name,
)

__all__ = ["send_file", "SEND_PATHS", "VERIFY_RATE"]

VERIFY_RATE = 48 << 20  # bytes/s a receiver reads back at least: bounds the verdict wait
SEND_PATHS = ("sendfile", "splice", "mmap_write", "read_write")  # file -> socket
_PAGE = os.sysconf("SC_PAGE_SIZE")


def send_file(source: str, address: tuple[str, int], *, name: str | None = None,
              rate: int | None = None, path: str | None = None, timeout: float = 10.0,
              progress: ProgressCallback | None = None) -> SendResult:
    """Send the file ``source`` to a receiver (``FileReceiver``, ``zcio recv``) at
    ``address`` = ``(host, port)``; return once it verified and saved it.

    ``name``: the name on the receiver (default: ``source``'s base name; a safe base
    name, else ProtocolError).  ``rate``: at most this many bytes a second.  ``path``:
    force one transfer path (one of ``SEND_PATHS``).  ``timeout``: seconds to wait to
    connect, for each answer, and for progress while sending (the verdict may take
    ``size / 48 MiB/s`` longer: the receiver reads the file back).  ``progress`` gets
    ``"read"`` (a pseudo file spooled first), ``"checksum"`` and ``"send"`` events; a
    resumed send starts at the bytes the receiver had.

    Raises TransferFailed (refused, discarded after a mismatch, lost, stalled; the
    receiver keeps what it got for the next call to resume), ProtocolError (the peer is
    not a zcio receiver), or the OSError of the step that failed, naming the file or
    ``host:port``.

    Syscalls: ``stat``/``open``/``fstat`` of ``source`` (and ``mkstemp``, ``unlink``,
    ``pread``/``pwrite`` to spool a file that says 0 bytes), ``pread`` for the checksum,
    ``connect``, ``write``/``read`` for the messages, then ``zcio.transfer`` per 16 MiB
    (or less under ``rate``), each of which may move less than asked: what moved is
    counted and the loop goes on from there; ``getsockopt(TCP_INFO)`` for the stall
    watchdog.  ``source``'s descriptor is private: no caller position changes.
    """
    if rate is not None and rate <= 0:
        raise IllegalArgumentError(f"rate {rate} must be more than 0")
    if path is not None and path not in SEND_PATHS:
        raise IllegalArgumentError(f"unknown path {path!r}; one of {', '.join(SEND_PATHS)}")
    host, port = address
    peer = where(host, port)
    started = time.perf_counter()
    with _open_source(source, progress) as fc:
        size = fc.size()
        label = check_name(name if name is not None else os.path.basename(source))
        bar = Meter(progress, "checksum", label, size)
        header = Header(label, size, digest(fc, size, SHA256, bar, source))
        proto = Sender(header)
        with _connect(host, port, timeout) as ch:
            try:
                write_all(ch, proto.start())
                event = read_event(proto, ch, timeout, "the receiver's answer", peer)
                if isinstance(event, Abort):
                    raise TransferFailed(f"receiver {peer} refused: {event.reason}")
                assert isinstance(event, Accept)
                with Watchdog(ch, timeout, lambda: _bytes_acked(ch)) as dog:
                    try:
                        m = _send_body(fc, ch, proto, peer, rate, path, progress)
                    except TransferFailed:
                        if dog.fired:
                            raise TransferFailed(
                                f"receiver {peer} stalled: nothing acknowledged for "
                                f"{timeout:g} s after {size - proto.remaining:,} of "
                                f"{size:,} bytes") from None
                        raise
                # The receiver reads the whole file back before it answers.
                verdict_timeout = timeout + size / VERIFY_RATE
                event = read_event(proto, ch, verdict_timeout, "the receiver's verdict",
                                   peer)
            except ProtocolError as e:
                raise ProtocolError(f"{peer}: {e}") from None
            except OSError as e:
                if e.filename is None and not isinstance(e, ZcioError):
                    raise OSError(e.errno, e.strerror, peer) from None  # say who
                raise
    if isinstance(event, Mismatch):
        raise TransferFailed(f"receiver {peer} discarded {label}: {event.reason}")
    if isinstance(event, Abort):
        raise TransferFailed(f"receiver {peer} failed: {event.reason}")
    assert isinstance(event, Verified)
    return SendResult(**result_fields(m, header, proto.offset), address=peer,
                      total_seconds=time.perf_counter() - started)


def _send_body(fc: FileChannel, ch: SocketChannel, proto: Sender, peer: str,
               rate: int | None, force_path: str | None,
               progress: ProgressCallback | None) -> Measurement:
    chunk = CHUNK if rate is None else max(64 << 10, min(CHUNK, rate // 10))
    fc.position(proto.offset)
    t0 = time.monotonic()

    def step(n: int) -> int:
        n = min(n, chunk)
        try:
            moved = transfer(fc, ch, count=n, path=force_path)
        except TransferError as e:
            proto.body_sent(e.transferred)
            raise _lost(ch, proto, peer, e) from None
        except OSError as e:
            raise _lost(ch, proto, peer, e) from None
        proto.body_sent(moved)
        return moved

    def after(done: int) -> None:
        if proto.remaining and readable(ch.fileno(), 0):  # it spoke early: an ABORT
            raise _lost(ch, proto, peer,
                        OSError(errno.ECONNABORTED, "the receiver closed the connection"))
        if rate is not None:
            time.sleep(max(done / rate - (time.monotonic() - t0), 0))

    header = proto.header
    bar = Meter(progress, "send", header.name, header.size, proto.offset)
    return chunked(header.size, proto.offset, bar, step, after)


def _lost(ch: SocketChannel, proto: Sender, peer: str, error: OSError) -> TransferFailed:
    """The connection broke mid-body: the receiver's ABORT if it sent one, else why."""
    with contextlib.suppress(OSError, ProtocolError):
        event = read_event(proto, ch, 1.0, "the receiver's reason", peer)
        if isinstance(event, Abort):
            return TransferFailed(f"receiver {peer} failed: {event.reason}")
    sent = proto.header.size - proto.remaining
    return TransferFailed(f"connection to {peer} lost after {sent:,} of "
                          f"{proto.header.size:,} bytes ({strerror(error)})")


def _bytes_acked(ch: SocketChannel) -> int:
    """Bytes of this TCP connection the peer acknowledged (``tcp_info.tcpi_bytes_acked``,
    Linux 4.1+).  Syscalls: ``getsockopt(TCP_INFO)``."""
    info = ch.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < 128:
        raise OSError(errno.ENOPROTOOPT, "tcp_info without tcpi_bytes_acked")
    return int.from_bytes(info[120:128], sys.byteorder)


def _open_source(file: str, progress: ProgressCallback | None) -> FileChannel:
    """FILE, open for reading; or, when it says it holds 0 bytes, what read(2) gives.

    A header announces the size before the body, and procfs and some FUSE files say 0
    whatever they hold, sysfs a page: a file of 0 bytes, or of at most a page with no
    block on disk, is read to its end first, into an unnamed temporary file (in
    ``$TMPDIR``), which is what is hashed and sent.  Any other file whose data ends
    before its size fails the checksum pass with the offset where it ended; a
    non-regular file is refused.  Never an empty "verified" file for one that had bytes.

    Syscalls: ``stat``, ``open``, ``fstat``; for such a file ``mkstemp``+``unlink`` in
    ``$TMPDIR`` and ``pread``/``pwrite`` to the end (a full ``$TMPDIR`` fails).
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
            copy_to_end(fc, spool, 0, Meter(progress, "read", os.path.basename(file), None))
        except BaseException as e:
            spool.close()
            if isinstance(e, OSError) and e.filename is None:
                raise OSError(e.errno, f"{e.strerror} (reading it into "
                                       f"{tempfile.gettempdir()})", file) from None
            raise
        return spool


def _connect(host: str, port: int, timeout: float) -> SocketChannel:
    peer = where(host, port)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as e:
        raise OSError(errno.EHOSTUNREACH, f"cannot resolve host ({e.strerror})", host) from None
    except ConnectionRefusedError:
        raise ConnectionRefusedError(errno.ECONNREFUSED, "connection refused", peer) from None
    except TimeoutError:
        raise TimeoutError(errno.ETIMEDOUT, "connection timed out", peer) from None
    except OSError as e:
        raise OSError(e.errno, f"cannot connect ({e.strerror})", peer) from None
    try:
        return SocketChannel.from_socket(sock)  # blocking, the timeout dropped
    except BaseException:
        sock.close()
        raise
