"""Receiving files from senders into one directory: ``zcio.FileReceiver``.

A sender (``zcio.send_file``, ``zcio send``) announces a file; the receiver answers with
how much it already has, splices the rest into ``DEST/.NAME.zcio-part``, then reads the
whole partial file back, and only if its digest matches renames it to ``DEST/NAME``
(``os.replace``, after ``fdatasync``) and tells the sender.  A mismatch deletes the
partial file; every other failure (a killed peer, a full disk, a stall, ``close()``)
keeps it for the next attempt, which resumes where it stopped.  A final name never
holds a truncated or unverified file.

The receiver's state lives beside the partial file, in ``DEST/.NAME.zcio-head``: the
sender's header, so a prefix is reused only for the same name, size and digest.

The receiver works only inside DEST, through a descriptor of it: every name is opened,
created, renamed and removed relative to it without following a symbolic link, so a
link planted at ``.NAME.zcio-part``, ``.NAME.zcio-head`` or ``NAME`` cannot send bytes
elsewhere (a link, a special file or a file with other hard links there is refused
with a clear error).  Before any byte of the body it refuses, leaving nothing behind: a
NAME that exists (unless ``overwrite``) or is a directory, a dotfile NAME (unless
``dotfiles``), a size over ``max_size`` or over the free space of DEST's file system.
Leftovers of senders that gave up are kept for resuming for ``keep_partial`` seconds
after their last byte, then removed when the receiver takes a connection.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from . import _scratch
from ._byte_buffer import ByteBuffer
from ._dest_dir import (
    DestDir,
    check_room,
    open_dest,
    partial_name,
    resume_offset,
    sidecar_name,
)
from ._errors import (
    AsynchronousCloseError,
    ClosedChannelError,
    IllegalArgumentError,
    TransferError,
    ZcioError,
)
from ._file_channel import FileChannel
from ._progress import Meter, ProgressCallback
from ._session import (
    ReceiveResult,
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
from ._socket_channel import ServerSocketChannel, SocketChannel
from ._transfer import transfer
from ._wire import (
    Header,
    ProtocolError,
    Receiver,
)

__all__ = ["FileReceiver", "RECV_PATHS"]

RECV_PATHS = ("splice", "read_write")  # socket -> file
DRAIN_SECONDS = 5.0  # how long a failing receiver keeps reading so its ABORT is seen
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


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
        raise OSError(e.errno, e.strerror, where(host, port)) from None
    return server


class _Session:
    """One incoming connection: header, resume decision, body, verification, rename."""

    def __init__(self, ch: SocketChannel, dest: DestDir, peer: str, max_size: int | None,
                 timeout: float, force_path: str | None,
                 progress: ProgressCallback | None) -> None:
        self.ch, self.dest, self.peer = ch, dest, peer
        self.max_size, self.timeout, self.force_path = max_size, timeout, force_path
        self.progress = progress
        self.proto = Receiver()
        self.accepted = False
        self.watchdog: Watchdog | None = None

    def abort(self, reason: str, error: BaseException) -> BaseException:
        """Tell the sender why (best effort) and return ``error`` to raise.

        Closing with unread bytes would send a reset, which can destroy the ABORT before
        the sender reads it: so shut down this direction and read until the sender hangs
        up, for a while (longer mid-body, where a whole chunk may be on its way).
        """
        with contextlib.suppress(OSError, ProtocolError):
            wait = DRAIN_SECONDS if self.proto.remaining else 1.0
            write_all(self.ch, self.proto.abort(reason))
            self.ch.shutdown_output()
            deadline, buf = time.monotonic() + wait, ByteBuffer.allocate(1 << 16)
            while readable(self.ch.fileno(), deadline - time.monotonic()):
                if self.ch.read(buf.clear()) < 0:
                    break
        return error

    def report(self) -> ReceiveResult:
        """Run the session; its report.  An error without a file name names the peer."""
        try:
            return self.run()
        except OSError as e:
            if e.filename is None and not isinstance(e, ZcioError):
                raise OSError(e.errno, e.strerror, self.peer) from None  # say who
            raise

    def run(self) -> ReceiveResult:
        try:
            header = read_event(self.proto, self.ch, self.timeout, "a header", self.peer)
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
            check_room(dest, header.size - min(have, header.size))
        except OSError as e:
            return f"{e.strerror}: {e.filename}"
        return None

    def _receive(self, header: Header, fc: FileChannel, part: str) -> ReceiveResult:
        dest, head_name = self.dest, sidecar_name(header.name)
        head = dest.shown(head_name)
        try:
            sidecar: bytes | None = None
            if dest.lstat(head_name) is not None:
                with open(dest.open(head_name, os.O_RDONLY), "rb") as f:
                    sidecar = f.read(4096)
            offset = resume_offset(header, sidecar, fc.size())
            check_room(dest, header.size - offset)
            if offset == 0:  # a different file, or none: start over, then record which
                fc.truncate(0)
                with open(dest.open(head_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                          "wb") as f:
                    f.write(header.encode())
        except OSError as e:
            where = e.filename if e.filename else head
            raise self.abort(f"{e.strerror}: {where}",
                             OSError(e.errno, e.strerror, where)) from None
        write_all(self.ch, self.proto.accept(offset))
        self.accepted = True
        fc.position(offset)
        with Watchdog(self.ch, self.timeout, lambda: os.fstat(fc.fileno()).st_size) as dog:
            self.watchdog = dog
            bar = Meter(self.progress, "recv", header.name, header.size, offset)
            m = chunked(header.size, offset, bar, self._step(fc, part), lambda done: None)
        bar = Meter(self.progress, "verify", header.name, header.size)
        ok = digest(fc, header.size, header.algorithm, bar, part) == header.digest
        final = dest.shown(header.name)
        if not ok:
            dest.unlink(partial_name(header.name))
            dest.unlink(head_name)
            text = (f"{header.algorithm_name} of the {header.size:,} bytes received does "
                    "not match the sender's")
            with contextlib.suppress(OSError):
                write_all(self.ch, self.proto.verdict(False, text))
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
            write_all(self.ch, self.proto.verdict(True))
        return ReceiveResult(**result_fields(m, header, offset), peer=self.peer,
                             saved_to=final)

    def _step(self, fc: FileChannel, part: str) -> Callable[[int], int]:
        def step(n: int) -> int:
            try:
                moved = transfer(self.ch, fc, count=n, path=self.force_path)
                if moved == 0:  # the sender hung up (or was dropped) before the end
                    raise OSError(errno.ECONNRESET, "the sender closed the connection")
            except OSError as e:
                got = (e.transferred if isinstance(e, TransferError) else
                       e.moved if isinstance(e, AsynchronousCloseError) else 0)
                self.proto.body_received(got)
                raise self._failed(e, part) from None
            self.proto.body_received(moved)
            return moved
        return step

    def _failed(self, e: OSError, part: str) -> BaseException:
        header = self.proto.header
        assert header is not None
        got = header.size - self.proto.remaining
        why = "the receiver was closed" if isinstance(e, ClosedChannelError) else strerror(e)
        if self.watchdog is not None and self.watchdog.fired:
            why = f"stalled: nothing for {self.timeout:g} s"
        if e.errno in _DISK_ERRORS:
            text = f"{why} after {got:,} of {header.size:,} bytes"
            return self.abort(text, OSError(e.errno, f"{text}; kept for resuming", part))
        return TransferFailed(f"connection from {self.peer} lost after {got:,} of "
                              f"{header.size:,} bytes ({why}); {part} kept for resuming")


class FileReceiver:
    """Receives files from senders into the directory ``dest``, each verified.

    Binds and listens on ``(host, port)`` when created (``port=0``: the kernel picks
    one), so :attr:`address` is known before any sender is taken.  Then either
    :meth:`accept_one` (one sender, in the calling thread) or :meth:`serve_forever`
    (each sender in its own thread, at most ``max_senders`` at once; more are refused
    "busy").  :meth:`close` (or leaving the ``with`` block) stops it from any thread.

    Options: ``max_size`` refuses larger files; ``overwrite`` replaces an existing
    DEST/NAME (default: refused before any byte moves); ``dotfiles`` accepts names that
    start with a dot; ``keep_partial`` is how many seconds a sender's partial file is
    kept for resuming after its last byte; ``path`` forces one of ``RECV_PATHS``
    (default: the engine's choice, splice); ``timeout`` is how long a sender may stay
    silent before its header and mid-body (then it is dropped, its partial file kept).
    ``progress`` gets ``"recv"`` and ``"verify"`` events, from the session's thread.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as dest, FileReceiver(dest) as receiver:
    ...     receiver.address[0]
    '127.0.0.1'

    Syscalls: ``open(O_DIRECTORY)`` of DEST, ``socket``/``bind``/``listen``; then per
    sender ``accept4`` and the session's calls (see the module).  Errors creating it
    (DEST missing or not writable, the port taken) are OSErrors naming DEST or
    ``host:port``, and leave nothing open.
    """

    def __init__(self, dest: str, *, host: str = "127.0.0.1", port: int = 0,
                 max_senders: int = 8, max_size: int | None = None, overwrite: bool = False,
                 dotfiles: bool = False, keep_partial: float = 7 * 86400.0,
                 path: str | None = None, timeout: float = 10.0,
                 progress: ProgressCallback | None = None) -> None:
        if max_senders < 1:
            raise IllegalArgumentError(f"max_senders {max_senders} must be at least 1")
        if not timeout > 0:
            raise IllegalArgumentError(f"timeout {timeout} must be more than 0")
        if not keep_partial >= 0:
            raise IllegalArgumentError(f"keep_partial {keep_partial} must be at least 0")
        if path is not None and path not in RECV_PATHS:
            raise IllegalArgumentError(f"unknown path {path!r}; one of {', '.join(RECV_PATHS)}")
        fd = open_dest(dest)
        try:
            self._server = _listen(host, port)
        except BaseException:
            os.close(fd)
            raise
        self._dest = DestDir(dest, fd, overwrite, dotfiles, keep_partial)
        self.max_senders, self.max_size, self.timeout = max_senders, max_size, timeout
        self._path, self._progress = path, progress
        self._slots = threading.BoundedSemaphore(max_senders)
        self._busy = threading.Condition()  # guards the three below
        self._users = 0  # accepts and sessions running: DEST's descriptor stays open
        self._active: set[SocketChannel] = set()
        self._closed = False

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) it listens on; the port is the real one when asked for 0."""
        bound: Any = self._server.local_address()
        if bound is None:
            raise ClosedChannelError(errno.EBADF, "the receiver is closed")
        return bound[0], bound[1]

    def accept_one(self) -> ReceiveResult:
        """Wait for one sender and receive its file in this thread; its result.

        Raises TransferFailed, ProtocolError or the OSError of what failed (naming the
        sender or the file), as ``send_file`` would on the other side;
        ClosedChannelError if the receiver is (or gets) closed while waiting.
        """
        ch, peer = self._accept()
        try:
            with ch:
                return self._session(ch, peer).report()
        finally:
            self._leave(ch)

    def serve_forever(self, on_result: Callable[[ReceiveResult], None] | None = None,
                      on_error: Callable[[str, BaseException], None] | None = None) -> None:
        """Take senders until :meth:`close`, each in its own thread; then return.

        ``on_result(result)`` runs for each file received, ``on_error(peer, error)`` for
        each session that failed with an OSError or ZcioError, both in the session's
        thread.  A sender over ``max_senders`` is refused (ABORT "busy") without a call.
        """
        while True:
            try:
                ch, peer = self._accept()
            except ClosedChannelError:
                if self._closed:
                    return
                raise
            if not self._slots.acquire(blocking=False):
                try:
                    with ch:
                        self._session(ch, peer).abort(
                            f"busy: {self.max_senders} senders already", TransferFailed(""))
                finally:
                    self._leave(ch)
                continue
            threading.Thread(target=self._serve_one, args=(ch, peer, on_result, on_error),
                             name=f"zcio-recv {peer}", daemon=True).start()

    def _serve_one(self, ch: SocketChannel, peer: str,
                   on_result: Callable[[ReceiveResult], None] | None,
                   on_error: Callable[[str, BaseException], None] | None) -> None:
        try:
            with ch:
                result = self._session(ch, peer).report()
        except (OSError, ZcioError) as e:
            if on_error is not None:
                on_error(peer, e)
        else:
            if on_result is not None:
                on_result(result)
        finally:
            _scratch.release_thread()  # before close() can see this session end
            self._slots.release()
            self._leave(ch)

    def _session(self, ch: SocketChannel, peer: str) -> _Session:
        return _Session(ch, self._dest, peer, self.max_size, self.timeout, self._path,
                        self._progress)

    def _accept(self) -> tuple[SocketChannel, str]:
        """The next sender, counted as a user of DEST until ``_leave``.

        Syscalls: DEST's ``getdents``/``unlink`` of expired partial files, ``accept4``.
        """
        with self._busy:
            if self._closed:
                raise ClosedChannelError(errno.EBADF, "the receiver is closed")
            self._users += 1
        try:
            self._dest.expire_partials()
            ch = self._server.accept()
        except BaseException:
            self._leave(None)
            raise
        assert ch is not None
        with self._busy:
            self._active.add(ch)
            closed = self._closed
        if closed:  # close() ran meanwhile and could not see this channel
            _cut(ch)
        remote: Any = ch.remote_address()
        return ch, where(remote[0], remote[1])

    def _leave(self, ch: SocketChannel | None) -> None:
        with self._busy:
            if ch is not None:
                self._active.discard(ch)
            self._users -= 1
            self._busy.notify_all()

    def close(self) -> None:
        """Stop: no more senders; transfers in flight are cut (each keeps its partial
        file for resuming, and ``accept_one``/``on_error`` report the lost connection);
        returns once every session has ended.  A second call does nothing.

        Syscalls: ``close`` of the listening socket (waking a blocked ``accept``),
        ``shutdown`` of each connection in flight, ``close`` of DEST's descriptor.
        """
        with self._busy:
            if self._closed:
                return
            self._closed = True
            active = list(self._active)
        self._server.close()
        for ch in active:
            _cut(ch)
        with self._busy:
            self._busy.wait_for(lambda: self._users == 0)
        os.close(self._dest.fd)

    def __enter__(self) -> FileReceiver:
        return self

    def __del__(self) -> None:
        if getattr(self, "_closed", True):  # closed, or __init__ failed before opening
            return
        warnings.warn(f"unclosed FileReceiver for {self._dest.path!r}", ResourceWarning,
                      source=self, stacklevel=1)
        with contextlib.suppress(OSError, ZcioError):
            self._server.close()
        with contextlib.suppress(OSError):
            os.close(self._dest.fd)

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cut(ch: SocketChannel) -> None:
    """End a connection in flight: the session using it fails as for a lost peer.

    A shutdown would not do: Linux keeps delivering what a sender still sends after
    ``SHUT_RD``.  The channel's asynchronous close wakes the session's thread out of any
    blocking call, and its every later call raises ClosedChannelError (the partial file
    keeps what was written).  Syscalls: the channel's ``close`` (see ``Channel.close``).
    """
    with contextlib.suppress(OSError, ZcioError):
        ch.close()
