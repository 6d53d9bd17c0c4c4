"""The transfer engine: every rung forced in turn, the fallbacks, Java's rules, and faults.

After every fault, counts and positions must say exactly what reached the target, and
the target must hold exactly those bytes (checked end to end), never more or twice.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import zcio
from faults import OK, Faults, short
from zcio import FileChannel, OpenOption, TransferError, _scratch, _syscalls, transfer
from zcio._syscalls import MAX_TRANSFER

R, W, C, T = OpenOption.READ, OpenOption.WRITE, OpenOption.CREATE, OpenOption.TRUNCATE_EXISTING
SIZE = 3_000_017  # not a multiple of any chunk or page size


@pytest.fixture
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def src_path(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "src"
    p.write_bytes(data)
    return p


class Drain:
    """A thread reading a socket or pipe fd to EOF, collecting what arrived."""

    def __init__(self, fd: int) -> None:
        self.fd, self.got = fd, bytearray()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while chunk := os.read(self.fd, 1 << 20):
            self.got += chunk

    def join(self) -> bytes:
        self.thread.join(10)
        assert not self.thread.is_alive()
        return bytes(self.got)


class Feed:
    """A thread writing ``data`` into a socket or pipe fd, then closing it."""

    def __init__(self, sock_or_fd: socket.socket | int, data: bytes) -> None:
        self.target, self.data = sock_or_fd, data
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            if isinstance(self.target, socket.socket):
                self.target.sendall(self.data)
            else:
                view = memoryview(self.data)
                while view:
                    view = view[os.write(self.target, view):]
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader went away on purpose (a fault test)
        finally:
            if isinstance(self.target, socket.socket):
                self.target.close()
            else:
                os.close(self.target)

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def paths_of(m: zcio.Measurement) -> set[str]:
    return {name for name, p in m.paths.items() if p.operations}


# -- every rung, forced, end to end ------------------------------------------------------


@pytest.mark.parametrize("path", [None, *zcio.TRANSFER_PATHS])
def test_file_to_file(tmp_path: Path, src_path: Path, data: bytes, path: str | None) -> None:
    dst_path = tmp_path / "dst"
    with FileChannel.open(src_path) as src, FileChannel.open(dst_path, W, C) as dst:
        src.position(10)
        with zcio.measure() as m:
            n = transfer(src, dst, path=path)
        assert n == SIZE - 10
        assert (src.position(), dst.position()) == (SIZE, SIZE - 10)
    assert dst_path.read_bytes() == data[10:]
    assert paths_of(m) == {path or "copy_file_range"}
    assert m.kernel_bytes + m.user_bytes >= n


@pytest.mark.parametrize("path", [None, "sendfile", "splice", "mmap_write", "read_write"])
def test_file_to_socket(sockets: tuple[socket.socket, socket.socket], src_path: Path,
                        data: bytes, path: str | None) -> None:
    a, b = sockets
    drain = Drain(b.fileno())
    with FileChannel.open(src_path) as src, zcio.measure() as m:
        assert transfer(src, a, path=path) == SIZE
    a.shutdown(socket.SHUT_WR)
    assert drain.join() == data
    assert paths_of(m) == {path or "sendfile"}
    stats = m.paths[path or "sendfile"]
    if path in (None, "sendfile", "splice"):
        assert (stats.kernel_bytes, stats.user_bytes) == (SIZE, 0)  # nothing crossed
    elif path == "mmap_write":
        assert (stats.kernel_bytes, stats.user_bytes) == (0, SIZE)  # one CPU copy
    else:
        assert (stats.kernel_bytes, stats.user_bytes) == (0, 2 * SIZE)  # in and out


@pytest.mark.parametrize("path", [None, "splice", "read_write"])
def test_socket_to_file(tmp_path: Path, sockets: tuple[socket.socket, socket.socket],
                        data: bytes, path: str | None) -> None:
    a, b = sockets
    feed = Feed(a, data)
    dst_path = tmp_path / "dst"
    with FileChannel.open(dst_path, W, C) as dst, zcio.measure() as m:
        dst.position(5)
        assert transfer(b, dst, path=path) == SIZE
        assert dst.position() == 5 + SIZE
    feed.join()
    assert dst_path.read_bytes() == bytes(5) + data
    assert paths_of(m) == {path or "splice"}


@pytest.mark.parametrize("path", [None, "splice", "read_write"])
def test_socket_to_socket(data: bytes, path: str | None) -> None:
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        feed, drain = Feed(a, data), Drain(d.fileno())
        with zcio.measure() as m:
            assert transfer(b, c, path=path) == SIZE
        c.shutdown(socket.SHUT_WR)
        feed.join()
        assert drain.join() == data
    assert paths_of(m) == {path or "splice"}


@pytest.mark.parametrize("path", [None, "sendfile", "splice", "mmap_write", "read_write"])
def test_file_to_pipe_and_pipe_to_file(tmp_path: Path, src_path: Path, data: bytes,
                                       path: str | None) -> None:
    r, w = os.pipe()
    try:
        drain = Drain(r)
        with FileChannel.open(src_path) as src, zcio.measure() as m:
            assert transfer(src, _Fd(w), path=path) == SIZE
        os.close(w)
        w = -1
        assert drain.join() == data
        assert paths_of(m) == {path or "sendfile"}
    finally:
        if w >= 0:
            os.close(w)
        os.close(r)
    r, w = os.pipe()
    feed = Feed(w, data)
    try:
        with FileChannel.open(tmp_path / "back", W, C) as dst:
            assert transfer(_Fd(r), dst, path=None if path is None else
                            ("splice" if path != "read_write" else "read_write")) == SIZE
        feed.join()
        assert (tmp_path / "back").read_bytes() == data
    finally:
        os.close(r)


class _Fd:
    """A bare descriptor as an endpoint: anything with ``fileno()`` works."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


class ObjectSink:
    """A channel-like object with only ``write(ByteBuffer)``: the engine relays to it."""

    def __init__(self) -> None:
        self.got = bytearray()

    def write(self, buf: zcio.ByteBuffer) -> int:
        n = buf.remaining()
        self.got += bytes(buf)
        buf.position(buf.limit())
        return n


def test_channel_objects_without_descriptors(src_path: Path, data: bytes) -> None:
    sink = ObjectSink()
    with FileChannel.open(src_path) as src, zcio.measure() as m:
        assert src.transfer_to(0, SIZE, sink) == SIZE
    assert bytes(sink.got) == data
    assert paths_of(m) == {"read_write"}


# -- Java's rules ------------------------------------------------------------------------


def test_transfer_to_rules(tmp_path: Path, src_path: Path, data: bytes) -> None:
    with FileChannel.open(src_path) as src, FileChannel.open(tmp_path / "d", W, C) as dst:
        src.position(7)
        with pytest.raises(zcio.IllegalArgumentError):
            src.transfer_to(-1, 10, dst)
        with pytest.raises(zcio.IllegalArgumentError):
            src.transfer_to(0, -1, dst)
        assert src.transfer_to(SIZE + 1, 10, dst) == 0  # past the end: nothing
        assert src.transfer_to(SIZE - 5, 100, dst) == 5  # cut to what the file has
        assert src.transfer_to(0, 10, dst) == 10
        assert src.position() == 7  # the source channel's position never moves
        assert dst.position() == 15  # the target's advances
    assert (tmp_path / "d").read_bytes() == data[-5:] + data[:10]


def test_transfer_from_rules(tmp_path: Path, src_path: Path, data: bytes) -> None:
    target = tmp_path / "d"
    target.write_bytes(b"0123456789")
    with FileChannel.open(src_path) as src, FileChannel.open(target, R, W) as dst:
        src.position(100)
        dst.position(3)
        assert dst.transfer_from(src, 11, 50) == 0  # position past this file's end
        assert dst.transfer_from(src, 10, 50) == 50
        assert src.position() == 150  # the source's position advances
        assert dst.position() == 3  # this channel's does not
        with pytest.raises(zcio.IllegalArgumentError):
            dst.transfer_from(src, -1, 1)
    assert target.read_bytes() == b"0123456789" + data[100:150]


def test_readability_writability_and_closed(tmp_path: Path, src_path: Path) -> None:
    with FileChannel.open(src_path) as ro, FileChannel.open(tmp_path / "w", W, C) as wo:
        with pytest.raises(zcio.NonWritableChannelError):
            ro.transfer_to(0, 1, ro)  # a read-only target
        with pytest.raises(zcio.NonReadableChannelError):
            wo.transfer_to(0, 1, wo)  # a write-only source
        with pytest.raises(zcio.NonWritableChannelError):
            ro.transfer_from(wo, 0, 1)  # a read-only destination
        closed = FileChannel.open(src_path)
        closed.close()
        with pytest.raises(zcio.ClosedChannelError):
            ro.transfer_to(0, 1, closed)
        with pytest.raises(zcio.ClosedChannelError):
            closed.transfer_to(0, 1, wo)


def test_forced_path_that_cannot_apply(sockets: tuple[socket.socket, socket.socket],
                                       src_path: Path) -> None:
    with FileChannel.open(src_path) as src:
        with pytest.raises(zcio.IllegalArgumentError, match="copy_file_range"):
            transfer(src, sockets[0], path="copy_file_range")
        with pytest.raises(zcio.IllegalArgumentError, match="unknown"):
            transfer(src, sockets[0], path="teleport")


def test_environment_forces_a_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   src_path: Path, data: bytes) -> None:
    monkeypatch.setenv("ZCIO_TRANSFER_PATH", "mmap_write")
    with FileChannel.open(src_path) as src, FileChannel.open(tmp_path / "d", W, C) as dst, \
            zcio.measure() as m:
        transfer(src, dst)
    assert paths_of(m) == {"mmap_write"}
    assert (tmp_path / "d").read_bytes() == data


# -- fallbacks ---------------------------------------------------------------------------


@pytest.mark.parametrize("err", [errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP])
def test_each_rung_falls_to_the_next(tmp_path: Path, src_path: Path, data: bytes,
                                     err: int) -> None:
    layer = Faults({"copy_file_range": [err], "sendfile": [err]})
    mmap_refused = _refuse_mmap(err)
    with _syscalls.override(layer), mmap_refused, FileChannel.open(src_path) as src, \
            FileChannel.open(tmp_path / "d", W, C) as dst, zcio.measure() as m:
        assert transfer(src, dst) == SIZE
    assert [c[0] for c in layer.calls[:2]] == ["copy_file_range", "sendfile"]
    assert paths_of(m) == {"read_write"}
    assert (tmp_path / "d").read_bytes() == data


class _refuse_mmap:
    """Make mmap() of the source fail with ``err`` so the ladder reaches read_write."""

    def __init__(self, err: int) -> None:
        self.err = err

    def __enter__(self) -> None:
        import mmap as mmap_module

        import zcio._rungs as engine

        self.saved = engine.mmap
        err = self.err

        class Refusing:
            ALLOCATIONGRANULARITY = mmap_module.ALLOCATIONGRANULARITY
            ACCESS_READ = mmap_module.ACCESS_READ
            MAP_SHARED, PROT_READ = mmap_module.MAP_SHARED, mmap_module.PROT_READ

            @staticmethod
            def mmap(*args: object, **kwargs: object) -> None:
                raise OSError(err, os.strerror(err))

        engine.mmap = Refusing  # type: ignore[assignment]

    def __exit__(self, *exc: object) -> None:
        import zcio._rungs as engine

        engine.mmap = self.saved


def test_forced_path_does_not_fall_back(tmp_path: Path, src_path: Path) -> None:
    layer = Faults({"copy_file_range": [errno.EXDEV]})
    with _syscalls.override(layer), FileChannel.open(src_path) as src, \
            FileChannel.open(tmp_path / "d", W, C) as dst:
        with pytest.raises(OSError) as info:
            transfer(src, dst, path="copy_file_range")
        assert info.value.errno == errno.EXDEV
        assert (src.position(), dst.position()) == (0, 0)


def test_error_after_progress_is_not_a_fallback(tmp_path: Path, src_path: Path,
                                                data: bytes) -> None:
    layer = Faults({"copy_file_range": [short(1000), errno.EXDEV]})
    with _syscalls.override(layer), FileChannel.open(src_path) as src, \
            FileChannel.open(tmp_path / "d", W, C) as dst:
        # The first rung moved bytes in an earlier step, then refused: the next step
        # falls back (nothing moved in it), and the transfer completes exactly once.
        assert transfer(src, dst) == SIZE
    assert (tmp_path / "d").read_bytes() == data


# -- faults ------------------------------------------------------------------------------


def test_eintr_is_retried_and_nothing_is_written_twice(
        sockets: tuple[socket.socket, socket.socket], src_path: Path, data: bytes) -> None:
    a, b = sockets
    layer = Faults({"sendfile": [errno.EINTR, short(1000), errno.EINTR, OK]})
    drain = Drain(b.fileno())
    with _syscalls.override(layer), FileChannel.open(src_path) as src:
        assert transfer(src, a) == SIZE
    a.shutdown(socket.SHUT_WR)
    assert zlib.crc32(drain.join()) == zlib.crc32(data)


@pytest.mark.parametrize("path", ["copy_file_range", "sendfile", "splice", "mmap_write",
                                  "read_write"])
def test_short_counts_add_up(tmp_path: Path, src_path: Path, data: bytes, path: str) -> None:
    name = {"mmap_write": "pwrite", "read_write": "pwrite"}.get(path, path)
    layer = Faults({name: [short(4097), short(1), short(65536)] * 3})
    with _syscalls.override(layer), FileChannel.open(src_path) as src, \
            FileChannel.open(tmp_path / "d", W, C) as dst:
        assert transfer(src, dst, path=path) == SIZE
        assert dst.position() == SIZE
    assert (tmp_path / "d").read_bytes() == data


def test_eagain_returns_what_moved_and_resumes_exactly(src_path: Path, data: bytes) -> None:
    a, b = socket.socketpair()
    with a, b, FileChannel.open(src_path) as src:
        a.setblocking(False)
        position, chunks = 0, []
        for _ in range(10_000):
            n = src.transfer_to(position, SIZE - position, a)
            assert n >= 0
            position += n
            while True:  # drain what arrived so far
                try:
                    chunk = b.recv(1 << 20, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                chunks.append(chunk)
            if position == SIZE:
                break
        assert position == SIZE
        a.close()
        while chunk := b.recv(1 << 20):
            chunks.append(chunk)
    assert b"".join(chunks) == data


def test_nonblocking_target_full_returns_zero(src_path: Path) -> None:
    a, b = socket.socketpair()
    with a, b, FileChannel.open(src_path) as src:
        a.setblocking(False)
        while True:
            try:
                a.send(b"x" * 65536)
            except BlockingIOError:
                break
        assert src.transfer_to(0, SIZE, a) == 0


def test_per_call_cap(tmp_path: Path) -> None:
    """A 5 GiB (sparse) file: no single syscall is asked for more than 0x7ffff000 bytes."""
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(5 << 30)

    def pretend(real: object, out_fd: int, in_fd: int, offset: int, count: int) -> int:
        return count  # the kernel "sent" everything it was asked for

    layer = Faults({"sendfile": [pretend] * 10})
    with open(os.devnull, "wb") as devnull, _syscalls.override(layer), \
            FileChannel.open(big) as src:
        assert src.transfer_to(0, 5 << 30, devnull) == 5 << 30
    counts = [args[3] for name, args in layer.calls if name == "sendfile"]
    assert counts == [MAX_TRANSFER, MAX_TRANSFER, (5 << 30) - 2 * MAX_TRANSFER]


def test_sendfile_at_an_offset_leaves_the_target_position_to_its_other_users(
        tmp_path: Path, src_path: Path, data: bytes, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """Another thread's relative write to the channel while its ``transfer_from``
    writes into it by sendfile lands at the channel's position, never inside the
    transfer (the rung once moved the shared position to the offset and back around
    each call)."""
    monkeypatch.setenv("ZCIO_TRANSFER_PATH", "sendfile")
    target = FileChannel.open(tmp_path / "d", R, W, C)
    target.write(zcio.ByteBuffer.wrap(bytes(2 * SIZE)), 0)
    target.position(10)

    def meanwhile(real: object, out_fd: int, in_fd: int, offset: int, count: int) -> int:
        target.write(zcio.ByteBuffer.wrap(b"other writer"))  # relative: at position
        return os.sendfile(out_fd, in_fd, offset, min(count, 1 << 20))

    layer = Faults({"sendfile": [meanwhile] * 8})
    with target, _syscalls.override(layer), FileChannel.open(src_path) as src:
        assert target.transfer_from(src, SIZE, SIZE) == SIZE
        writes = sum(1 for name, _ in layer.calls if name == "sendfile")
        assert writes == 3
        assert target.position() == 10 + 12 * writes
    got = (tmp_path / "d").read_bytes()
    assert got[SIZE:] == data
    assert got[10:10 + 12 * writes] == b"other writer" * writes


@pytest.mark.parametrize("how", ["transfer_to", "transfer"])
def test_a_source_shrinking_during_a_write_from_its_mapping_is_an_error(
        tmp_path: Path, src_path: Path, data: bytes, how: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The file shrinks to a size inside a page while write(2) copies out of the
    mapping: the page's bytes past the new end read as zeros and go out.  They cannot
    be taken back, so the transfer fails with ENODATA counting them (the JDK sends
    them as the file's, silently), from ``transfer_to`` too, never a bare count."""
    monkeypatch.setenv("ZCIO_TRANSFER_PATH", "mmap_write")
    cut = (1 << 20) + 100

    def shrink_then_write(real: Callable[..., int], fd: int, view: memoryview,
                          offset: int) -> int:
        os.truncate(src_path, cut)  # as another process would, mid-write
        return real(fd, view, offset)

    layer = Faults({"pwrite": [shrink_then_write]})
    with _syscalls.override(layer), FileChannel.open(src_path) as src, \
            FileChannel.open(tmp_path / "d", W, C) as dst, pytest.raises(TransferError) as info:
        if how == "transfer":
            transfer(src, dst)
        else:
            src.transfer_to(0, SIZE, dst)
    assert info.value.errno == errno.ENODATA
    sent = info.value.transferred
    assert sent > cut and "were not the file's" in str(info.value)
    got = (tmp_path / "d").read_bytes()
    assert len(got) == sent and got[:cut] == data[:cut] and not any(got[cut:])


def test_source_shrinking_midway_is_an_error_not_a_busy_loop(tmp_path: Path, src_path: Path,
                                                             data: bytes) -> None:
    def then_shrink(real: object, out_fd: int, in_fd: int, offset: int, count: int) -> int:
        n = os.sendfile(out_fd, in_fd, offset, min(count, 1000))
        os.truncate(src_path, 5000)
        return n

    layer = Faults({"sendfile": [then_shrink]})
    a, b = socket.socketpair()
    drain = Drain(b.fileno())
    started = time.monotonic()
    with a, b, _syscalls.override(layer), FileChannel.open(src_path) as src:
        with pytest.raises(TransferError) as info:
            transfer(src, a)
        assert info.value.transferred == 5000
        assert info.value.errno == errno.ENODATA
        assert src.position() == 5000
        a.shutdown(socket.SHUT_WR)
        assert drain.join() == data[:5000]
    assert time.monotonic() - started < 5


def test_enospc_midway_reports_exactly_what_landed(tmp_path: Path, src_path: Path,
                                                   data: bytes) -> None:
    layer = Faults({"copy_file_range": [short(123_457), errno.ENOSPC]})
    with _syscalls.override(layer), FileChannel.open(src_path) as src, \
            FileChannel.open(tmp_path / "d", W, C) as dst:
        with pytest.raises(TransferError) as info:
            transfer(src, dst)
        assert info.value.transferred == 123_457
        assert info.value.errno == errno.ENOSPC
        assert isinstance(info.value, OSError)
        assert (src.position(), dst.position()) == (123_457, 123_457)
    assert (tmp_path / "d").read_bytes() == data[:123_457]


def test_enospc_with_nothing_moved_is_the_plain_oserror(tmp_path: Path, src_path: Path) -> None:
    layer = Faults({"copy_file_range": [errno.ENOSPC]})
    with _syscalls.override(layer), FileChannel.open(src_path) as src, \
            FileChannel.open(tmp_path / "d", W, C) as dst:
        with pytest.raises(OSError) as info:
            transfer(src, dst)
        assert not isinstance(info.value, TransferError)
        assert info.value.errno == errno.ENOSPC
        assert (src.position(), dst.position()) == (0, 0)


def test_peer_reset(sockets: tuple[socket.socket, socket.socket], src_path: Path) -> None:
    a, b = sockets
    drain = Drain(b.fileno())
    layer = Faults({"sendfile": [short(777), errno.ECONNRESET]})
    with _syscalls.override(layer), FileChannel.open(src_path) as src:
        with pytest.raises(TransferError) as info:
            transfer(src, a)
        assert info.value.transferred == 777
        assert isinstance(info.value.__cause__, ConnectionResetError)
        assert src.position() == 777
    a.shutdown(socket.SHUT_WR)
    assert len(drain.join()) == 777


def test_splice_drain_failure_discards_the_pipe(tmp_path: Path, data: bytes) -> None:
    """Bytes already out of the source must never leak into a later transfer."""
    a, b = socket.socketpair()
    feed = Feed(a, data)
    calls = {"n": 0}

    def fail_second_drain(real: object, src: int, dst: int, count: int, off_src: object,
                          off_dst: object, flags: int) -> int:
        calls["n"] += 1
        if calls["n"] == 4:  # in, out, in, OUT: fails with bytes sitting in the pipe
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.splice(src, dst, count, off_src, off_dst, flags)  # type: ignore[arg-type]

    layer = Faults({"splice": [fail_second_drain] * 4})
    with b, _syscalls.override(layer), FileChannel.open(tmp_path / "d", W, C) as dst:
        pipe_before = _scratch.splice_pipe()
        with pytest.raises(TransferError) as info:
            transfer(b, dst, count=SIZE)
        first = info.value.transferred
        assert dst.position() == first
        assert pipe_before.closed  # the pipe with stale bytes is gone
        assert _scratch.splice_pipe() is not pipe_before
    feed.thread.join(10)
    assert (tmp_path / "d").read_bytes() == data[:first]


def test_scratch_buffer_is_bounded_and_visible(tmp_path: Path, src_path: Path) -> None:
    with FileChannel.open(src_path) as src, FileChannel.open(tmp_path / "d", W, C) as dst:
        transfer(src, dst, path="read_write")
        direct = zcio.buffer_pools()[0]
        assert (direct.count, direct.total_capacity) == (1, _scratch.CHUNK)
        transfer(src.position(0), dst, path="read_write")
        assert zcio.buffer_pools()[0].count == 1  # reused, not grown
    _scratch.clear()
    assert zcio.buffer_pools()[0].count == 0


def test_short_source_count_raises_with_the_count(sockets: tuple[socket.socket, socket.socket],
                                                  tmp_path: Path) -> None:
    a, b = sockets
    a.sendall(b"only this")
    a.shutdown(socket.SHUT_WR)
    with FileChannel.open(tmp_path / "d", W, C) as dst:
        with pytest.raises(TransferError) as info:
            transfer(b, dst, count=100)
        assert info.value.transferred == 9
        assert dst.position() == 9


def test_zcio_channels_as_endpoints(tmp_path: Path, src_path: Path, data: bytes) -> None:
    """SocketChannel (non-blocking: transfer() waits with poll) and Pipe channels."""
    with zcio.ServerSocketChannel.open().bind(("127.0.0.1", 0)) as server:
        client = zcio.SocketChannel.open(server.local_address())
        accepted = server.accept()
        assert accepted is not None
        with client, accepted, zcio.Pipe.open() as pipe:
            client.configure_blocking(False)
            drain = Drain(accepted.fileno())
            with FileChannel.open(src_path) as src, zcio.measure() as m:
                assert transfer(src, client) == SIZE
            client.shutdown_output()
            assert drain.join() == data
            assert paths_of(m) == {"mmap_write"}  # a loopback TCP peer: measured faster
            feed = Feed(os.dup(pipe.sink().fileno()), data)
            pipe.sink().close()
            with FileChannel.open(tmp_path / "d", W, C) as dst, zcio.measure() as m:
                assert transfer(pipe.source(), dst) == SIZE
            feed.join()
            assert paths_of(m) == {"splice"}
    assert (tmp_path / "d").read_bytes() == data


def test_loopback_tcp_peer_prefers_mmap_write_remote_keeps_sendfile(src_path: Path) -> None:
    """The default for a file to a TCP peer on this host is mmap+write (measured: one
    user-space copy where the relay makes two); a Unix socket keeps sendfile; path=
    still forces either."""
    from zcio._endpoint import loopback_peer as _loopback_peer

    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        with client, peer:
            assert _loopback_peer(client.fileno())
            drain = Drain(peer.fileno())
            with FileChannel.open(src_path) as src, zcio.measure() as m:
                transfer(src, client, count=SIZE // 2)
                transfer(src, client, path="sendfile")
            client.shutdown(socket.SHUT_WR)
            assert len(drain.join()) == SIZE
    assert {name: p.operations for name, p in m.paths.items() if p.operations} == {
        "mmap_write": 1, "sendfile": 1}
    assert m.paths["mmap_write"].user_bytes == SIZE // 2  # each byte copied once
    assert m.paths["sendfile"].kernel_bytes == SIZE - SIZE // 2
    a, b = socket.socketpair()
    with a, b:
        assert not _loopback_peer(a.fileno())


# -- positions on every rung, and transfers within one file (issue 9) ------------------------

_RUNG_CALL = {"copy_file_range": "copy_file_range", "sendfile": "sendfile", "splice": "splice",
              "mmap_write": "pwrite", "read_write": "pwrite"}
SMALL = 200_003


def _other_fs_dir(tmp_path: Path) -> Iterator[Path]:
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        pytest.skip("no writable /dev/shm (tmpfs) for a source on another file system")
    d = Path(tempfile.mkdtemp(prefix="zcio-test-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d)


@pytest.fixture(params=["same-fs", "tmpfs"])
def source_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """Where the source file lives: next to the target, or on another file system."""
    if request.param == "same-fs":
        yield tmp_path
    else:
        yield from _other_fs_dir(tmp_path)


@pytest.mark.parametrize("path", [None, *zcio.TRANSFER_PATHS])
def test_transfer_from_moves_only_the_source_position(tmp_path: Path, source_dir: Path,
                                                      path: str | None) -> None:
    """Java: transferFrom advances the source's position by the count and leaves this
    channel's alone, whatever the path (the sendfile rung used to seek the target)."""
    data = os.urandom(SMALL)
    (source_dir / "s").write_bytes(data)
    (tmp_path / "d").write_bytes(b"0123456789")
    with FileChannel.open(source_dir / "s") as src, FileChannel.open(tmp_path / "d", R, W) as dst:
        src.position(1000)
        dst.position(7)
        try:
            n = _transfer_from(dst, src, 10, SMALL, path)
        except OSError as e:  # a forced rung that cannot serve these files (EXDEV...)
            assert e.errno in (errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP), e
            assert (src.position(), dst.position(), dst.size()) == (1000, 7, 10)
            return
        assert n == SMALL - 1000
        assert (src.position(), dst.position()) == (SMALL, 7)
    assert (tmp_path / "d").read_bytes() == b"0123456789" + data[1000:]


@pytest.mark.parametrize("path", zcio.TRANSFER_PATHS)
def test_transfer_from_positions_after_an_error_midway(tmp_path: Path, path: str) -> None:
    """ENOSPC after 1000 bytes on each rung: the count 1000 is returned (Java's partial
    rule: raise only if nothing moved), the source's position advanced by exactly that,
    this channel's unmoved."""
    data = os.urandom(SMALL)
    (tmp_path / "s").write_bytes(data)
    (tmp_path / "d").write_bytes(b"0123456789")
    call = _RUNG_CALL[path]
    script = [short(1000), OK, errno.ENOSPC] if path == "splice" else [short(1000), errno.ENOSPC]
    layer = Faults({call: script})
    with FileChannel.open(tmp_path / "s") as src, FileChannel.open(tmp_path / "d", R, W) as dst:
        src.position(500)
        dst.position(3)
        with _syscalls.override(layer):
            assert _transfer_from(dst, src, 10, SMALL, path) == 1000
        assert (src.position(), dst.position()) == (1500, 3)
    assert (tmp_path / "d").read_bytes() == b"0123456789" + data[500:1500]


def _transfer_from(dst: FileChannel, src: FileChannel, position: int, count: int,
                   path: str | None) -> int:
    from zcio._transfer import transfer_from

    return transfer_from(dst, src, position, count, path=path)


@pytest.mark.parametrize("path", [None, *zcio.TRANSFER_PATHS])
@pytest.mark.parametrize(("source_at", "target_at"),
                         [(0, 3), (0, 1_100_000), (10, 2), (1000, 1000), (5, 1_300_000)])
@pytest.mark.parametrize("direction", ["from", "to"])
def test_transfer_within_one_file_copies_the_original_bytes(
    tmp_path: Path, path: str | None, source_at: int, target_at: int, direction: str
) -> None:
    """A same-file transfer copies exactly the bytes the source had, as memmove: a
    target range ahead of and overlapping the source's must not re-read bytes just
    written (with a huge count it used to grow the file until the disk was full)."""
    size = 1_300_003  # more than one relay chunk
    data = bytes((i * 7 + i // 251) & 0xFF for i in range(size))
    f = tmp_path / "f"
    f.write_bytes(data)
    huge = 1 << 62
    if path == "copy_file_range" and source_at - size < target_at <= source_at:
        # Overlapping with the target behind (or on) the source: the kernel refuses
        # (EINVAL) and a forced rung does not fall back.  Nothing moves.
        with FileChannel.open(f, R, W) as ch, pytest.raises(OSError) as info:
            from zcio._transfer import transfer_to

            transfer_to(ch, source_at, huge, ch.position(target_at), path=path)
        assert info.value.errno == errno.EINVAL
        assert f.read_bytes() == data
        return
    with FileChannel.open(f, R, W) as ch, FileChannel.open(f, R, W) as other:
        if direction == "from":
            other.position(source_at)
            ch.position(17)
            n = _transfer_from(ch, other, target_at, huge, path)
            assert (other.position(), ch.position()) == (source_at + n, 17)
        else:
            from zcio._transfer import transfer_to

            ch.position(target_at)
            n = transfer_to(ch, source_at, huge, ch, path=path)
            assert ch.position() == target_at + n
    assert n == size - source_at
    expected = bytearray(data)
    expected[target_at : target_at + n] = data[source_at:]
    assert f.read_bytes() == bytes(expected)


def test_transfer_from_checks_in_java_order(tmp_path: Path, src_path: Path) -> None:
    """Java 17: this closed, source closed, NonWritable, IllegalArgument, past the end
    (0), and only then NonReadable for a file source."""
    (tmp_path / "d").write_bytes(b"01")
    with FileChannel.open(tmp_path / "d") as ro, FileChannel.open(tmp_path / "d", W) as wo:
        closed = FileChannel.open(src_path)
        closed.close()
        with pytest.raises(zcio.ClosedChannelError):
            ro.transfer_from(closed, -1, 1)  # before NonWritable and the argument
        with pytest.raises(zcio.NonWritableChannelError):
            ro.transfer_from(ro, -1, 1)  # before the argument
        with pytest.raises(zcio.IllegalArgumentError):
            wo.transfer_from(wo, -1, 1)  # before the source's NonReadable
        assert wo.transfer_from(wo, 3, 1) == 0  # past the end: 0 before NonReadable
        with pytest.raises(zcio.NonReadableChannelError):
            wo.transfer_from(wo, 0, 1)


def test_splice_drain_refused_leaves_a_file_source_unread(tmp_path: Path) -> None:
    """file -> pipe worked, pipe -> file failed with nothing written: the source's offset
    goes back (the bytes are discarded with the pipe), and the error is the plain one."""
    data = os.urandom(SMALL)
    (tmp_path / "s").write_bytes(data)
    layer = Faults({"splice": [OK, errno.ENOSPC]})
    with FileChannel.open(tmp_path / "s") as src, FileChannel.open(tmp_path / "d", W, C) as dst:
        src.position(10)
        with _syscalls.override(layer), pytest.raises(OSError) as info:
            transfer(src, dst, path="splice")
        assert not isinstance(info.value, TransferError)
        assert info.value.errno == errno.ENOSPC
        assert (src.position(), dst.position(), dst.size()) == (10, 0, 0)
        assert transfer(src, dst, path="splice") == SMALL - 10  # nothing stale in the pipe
    assert (tmp_path / "d").read_bytes() == data[10:]


def test_splice_into_an_append_file_is_a_rung_that_cannot_serve(tmp_path: Path) -> None:
    """splice refuses an O_APPEND target (EINVAL) after the source's bytes went into the
    pipe: forced, that is an error with nothing moved; by default the next rung runs."""
    data = os.urandom(SMALL)
    (tmp_path / "s").write_bytes(data)
    (tmp_path / "d").write_bytes(b"head")
    with FileChannel.open(tmp_path / "s") as src, \
            FileChannel.open(tmp_path / "d", OpenOption.APPEND) as dst:
        from zcio._transfer import transfer_to

        with pytest.raises(OSError) as info:
            transfer_to(src, 5, SMALL, dst, path="splice")
        assert info.value.errno == errno.EINVAL
        assert not isinstance(info.value, TransferError)  # nothing moved
        assert (src.position(), dst.size()) == (0, 4)
        assert src.transfer_to(5, SMALL, dst) == SMALL - 5
        assert (src.position(), dst.position()) == (0, SMALL - 1)
    assert (tmp_path / "d").read_bytes() == b"head" + data[5:]


@pytest.mark.parametrize("fail", [False, True], ids=["ok", "enospc"])
@pytest.mark.parametrize("path", zcio.TRANSFER_PATHS)
def test_transfer_to_positions_on_every_rung(tmp_path: Path, path: str, fail: bool) -> None:
    """Java: transferTo leaves this channel's position and advances the target's by the
    count; after ENOSPC midway (here after 1000 bytes), by exactly what landed, and that
    count is returned (Java's partial rule)."""
    data = os.urandom(SMALL)
    (tmp_path / "s").write_bytes(data)
    (tmp_path / "d").write_bytes(b"0123456789")
    call = _RUNG_CALL[path]
    script = [short(1000), OK, errno.ENOSPC] if path == "splice" else [short(1000), errno.ENOSPC]
    layer = Faults({call: script if fail else []})
    with FileChannel.open(tmp_path / "s") as src, FileChannel.open(tmp_path / "d", R, W) as dst:
        from zcio._transfer import transfer_to

        src.position(77)
        dst.position(4)
        with _syscalls.override(layer):
            if fail:
                moved = transfer_to(src, 500, SMALL, dst, path=path)
                assert moved == 1000
            else:
                moved = transfer_to(src, 500, SMALL, dst, path=path)
                assert moved == SMALL - 500
        assert (src.position(), dst.position()) == (77, 4 + moved)
    assert (tmp_path / "d").read_bytes() == b"0123" + data[500 : 500 + moved]


class _ChunkReader:
    """A channel object without a descriptor: ``read(ByteBuffer)`` in short pieces."""

    def __init__(self, data: bytes, piece: int = 7) -> None:
        self.data, self.at, self.piece = data, 0, piece

    def read(self, buf: zcio.ByteBuffer) -> int:
        if self.at >= len(self.data):
            return -1
        n = min(buf.remaining(), len(self.data) - self.at, self.piece)
        buf.put(self.data[self.at : self.at + n])
        self.at += n
        return n


def test_a_channel_object_source_delivers_its_own_bytes(tmp_path: Path) -> None:
    """The relay reads through ``obj.read(buf)``, which moves the buffer's position: the
    bytes written must be the ones read, not what lies after them."""
    data = os.urandom(100_003)
    with FileChannel.open(tmp_path / "d", W, OpenOption.CREATE) as dst:
        assert zcio.transfer(_ChunkReader(data), dst, len(data)) == len(data)
        assert dst.position() == len(data)
    assert (tmp_path / "d").read_bytes() == data


# -- the engine: rungs, endpoints, import layering (issue 12) --------------------------------


def test_relay_keeps_what_it_read_until_written(src_path: Path, data: bytes) -> None:
    """A non-blocking target that takes less than a chunk: the relay writes the rest of
    what it read later, never reading it again: exactly 2x the file crosses user space."""
    a, b = socket.socketpair()
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        a.setblocking(False)
        drain = Drain(b.fileno())
        with FileChannel.open(src_path) as src, zcio.measure() as m:
            assert transfer(src, a, path="read_write") == SIZE
        a.shutdown(socket.SHUT_WR)
        assert drain.join() == data
    stats = m.paths["read_write"]
    assert stats.user_bytes == 2 * SIZE  # read once, written once
    chunks = -(-SIZE // _scratch.CHUNK)
    assert stats.syscalls > 2 * chunks  # more writes than reads: partial writes happened


def test_loopback_probe_is_cached_per_socket_not_per_number(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe runs once per socket; a number reused by another socket is probed anew."""
    from zcio import _endpoint

    probes: list[str] = []
    real = _endpoint._is_loopback

    def counting(host: str) -> bool:
        probes.append(host)
        return real(host)

    monkeypatch.setattr(_endpoint, "_is_loopback", counting)
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        with peer:
            number = client.fileno()
            assert _endpoint.classify(client, writing=True).loopback
            assert _endpoint.classify(client, writing=True).loopback
            assert len(probes) == 1
            x, y = socket.socketpair()  # a Unix socket, put on the very same number
            with x, y:
                os.dup2(x.fileno(), number)
                end = _endpoint.classify(client, writing=True)
                assert end.fd == number and end.kind == "socket"
                assert not end.loopback
            client.close()


def test_no_import_cycle_between_file_channel_and_the_engine() -> None:
    """_file_channel imports the engine at module level; the engine's modules never
    import _file_channel at run time (only for type checking)."""
    import ast

    src = Path(zcio.__file__).parent

    def runtime_imports(module: str) -> tuple[set[str], set[str]]:
        tree = ast.parse((src / f"{module}.py").read_text())
        top, nested = set(), set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                top.add(node.module)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and inner.module:
                        nested.add(inner.module)
        return top, nested

    top, nested = runtime_imports("_file_channel")
    assert "_transfer" in top and "_transfer" not in nested
    for engine in ("_transfer", "_endpoint", "_rungs"):
        top, nested = runtime_imports(engine)
        assert "_file_channel" not in top | nested, engine


@pytest.mark.parametrize(("op", "path"), [("from_socket", "-"), ("to_socket", "splice")])
def test_a_transfer_interrupted_anywhere_leaves_no_bytes_for_the_next(op: str, path: str
                                                                     ) -> None:
    """A raising signal handler at the entry of any call of a splice through the
    thread's scratch pipe: the thread's next transfer, of another stream, delivers
    that stream's bytes only (the pipe once kept the interrupted transfer's)."""
    child = Path(__file__).with_name("transfer_child.py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(zcio.__file__).resolve().parents[1]), str(child.parent)]))
    run = subprocess.run([sys.executable, "-X", "faulthandler", str(child), op, path],
                         capture_output=True, text=True, timeout=240, env=env, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["failures"] == []
    assert out["interrupted"] >= 40  # every call on the way was a place to interrupt


class _TruncatesFirst(Faults):
    """A syscall layer whose first copy_file_range truncates the file first, as
    another process would in the middle of the transfer."""

    def __init__(self, path: Path, size: int) -> None:
        super().__init__({})
        self.path, self.size, self.done = path, size, False

    def copy_file_range(self, *args: object) -> int:
        if not self.done:
            self.done = True
            os.truncate(self.path, self.size)
        return int(super().copy_file_range(*args))


@pytest.mark.parametrize("at", [1 << 20, 5 << 20], ids=["overlapping ahead", "disjoint ahead"])
def test_a_copy_within_a_file_that_shrinks_writes_none_of_its_holes(tmp_path: Path,
                                                                   at: int) -> None:
    """The file shrinks to 1.5 MiB as the copy of its first 2 MiB starts; writes
    further on would extend it again over a hole.  The copy goes backwards in 1 MiB
    chunks and stops at the first short one, its count saying what moved (the range's
    tail), and never writes the hole's zeros as the file's bytes (it did: the count
    said 2 MiB, and the bytes past the cut came back as zeros)."""
    mib = 1 << 20
    original = (bytes(range(1, 252)) * (6 * mib // 251 + 1))[: 6 * mib]  # never 0
    path = tmp_path / "f"
    path.write_bytes(original)
    cut = mib + mib // 2
    with FileChannel.open(path) as src, FileChannel.open(path, R, W) as dst:
        dst.position(at)
        with _syscalls.override(_TruncatesFirst(path, cut)):
            moved = src.transfer_to(0, 2 * mib, dst)
        assert dst.position() == at + moved
    assert moved == cut - mib  # the last chunk, [1 MiB, 2 MiB), cut short at 1.5 MiB
    data = path.read_bytes()
    assert data[:cut] == original[:cut]
    assert data[at + mib:at + mib + moved] == original[mib:cut]  # where it went
    assert len(data) == at + mib + moved  # nothing written past it
