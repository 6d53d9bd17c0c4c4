"""Pipe channels and splice/tee/vmsplice, checked against plain os.read/os.write.

Fault-injection tests swap the syscall layer (``zcio._syscalls.override``) for one that
moves fewer bytes, raises EINTR once, or reports EAGAIN, and check that counts and
positions say exactly what moved: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import zcio
from zcio import _syscalls
from zcio._errors import ClosedChannelError, IllegalArgumentError
from zcio._metrics import PathStats, metrics
from zcio._pipe import (
    SPLICE_F_GIFT,
    Pipe,
    SinkChannel,
    SourceChannel,
    pipe_max_size,
    splice,
    tee,
    vmsplice,
)
from zcio._selectable import OP_READ, OP_WRITE
from zcio._syscalls import IOV_MAX

ByteBuffer = zcio.ByteBuffer
PAGE = os.sysconf("SC_PAGE_SIZE")


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that differ from their neighbours, so misplaced bytes show."""
    return bytes((i * 7 + seed + i // 251) & 0xFF for i in range(n))


def read_exactly(fd: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        assert chunk, f"EOF after {len(out)} of {n} bytes"
        out += chunk
    return bytes(out)


def read_available(fd: int) -> bytes:
    """Everything the pipe holds now (the fd is made non-blocking for the call)."""
    was = os.get_blocking(fd)
    os.set_blocking(fd, False)
    out = bytearray()
    try:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.set_blocking(fd, was)
    return bytes(out)


def consumed(bufs: Sequence[ByteBuffer]) -> bytes:
    """The bytes before each buffer's position, concatenated (what a read filled)."""
    return b"".join(bytes(b.duplicate().flip()) for b in bufs)


class Delta:
    """Counter deltas of one metrics path around a block."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.before = metrics.path(path)

    @property
    def value(self) -> PathStats:
        return metrics.path(self.path) - self.before


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    with Pipe.open() as p:
        yield p


@pytest.fixture
def data_file(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    data = pattern(10_000, seed=3)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd, data
    finally:
        os.close(fd)


@pytest.fixture
def out_file(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "dst.bin", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)


# -- opening and closing ---------------------------------------------------------------


def test_open_gives_blocking_cloexec_ends_of_one_pipe() -> None:
    with Pipe.open() as p:
        src, snk = p.source(), p.sink()
        assert isinstance(src, SourceChannel) and isinstance(snk, SinkChannel)
        assert p.source() is src and p.sink() is snk
        assert src.is_blocking() and snk.is_blocking()
        assert src.valid_ops() == OP_READ and snk.valid_ops() == OP_WRITE
        assert not os.get_inheritable(src.fileno()) and not os.get_inheritable(snk.fileno())
        assert os.fstat(src.fileno()).st_ino == os.fstat(snk.fileno()).st_ino
        assert "SourceChannel" in repr(p)
    assert not src.is_open() and not snk.is_open()
    p.close()  # idempotent


def test_closed_end_refuses_io() -> None:
    p = Pipe.open()
    p.close()
    buf = ByteBuffer.allocate(4)
    with pytest.raises(ClosedChannelError):
        p.source().read(buf)
    with pytest.raises(ClosedChannelError):
        p.sink().write(buf)
    with pytest.raises(ClosedChannelError):
        p.sink().pipe_size()
    with pytest.raises(ClosedChannelError):
        splice(p.source(), p.sink(), 1)
    with pytest.raises(ClosedChannelError):
        vmsplice(p.sink(), b"x")


def test_configure_blocking_sets_o_nonblock(pipe: Pipe) -> None:
    assert pipe.source().configure_blocking(False) is pipe.source()
    assert not os.get_blocking(pipe.source().fileno())
    pipe.source().configure_blocking(True)
    assert os.get_blocking(pipe.source().fileno())


# -- read and write against os.read / os.write ---------------------------------------


def test_write_then_os_read(pipe: Pipe) -> None:
    data = pattern(1000)
    src = ByteBuffer.wrap(data)
    assert pipe.sink().write(src) == 1000
    assert src.position() == 1000 and src.limit() == 1000
    assert read_exactly(pipe.source().fileno(), 1000) == data


def test_os_write_then_read(pipe: Pipe) -> None:
    data = pattern(300, seed=1)
    assert os.write(pipe.sink().fileno(), data) == 300
    dst = ByteBuffer.allocate(1000)
    dst.position(5)
    assert pipe.source().read(dst) == 300  # a pipe read returns what is there
    assert dst.position() == 305 and dst.limit() == 1000
    assert bytes(dst.flip())[5:] == data


def test_read_smaller_buffer_leaves_the_rest_in_the_pipe(pipe: Pipe) -> None:
    data = pattern(100)
    os.write(pipe.sink().fileno(), data)
    dst = ByteBuffer.allocate(30)
    assert pipe.source().read(dst) == 30
    assert bytes(dst.flip()) == data[:30]
    assert read_available(pipe.source().fileno()) == data[30:]


def test_direct_buffers(pipe: Pipe) -> None:
    data = pattern(5000, seed=9)
    with ByteBuffer.allocate_direct(5000) as src, ByteBuffer.allocate_direct(5000) as dst:
        src.put(data).flip()
        assert pipe.sink().write(src) == 5000
        n = 0
        while n < 5000:
            n += pipe.source().read(dst)
        assert bytes(dst.flip()) == data


def test_eof_is_minus_one_after_the_data(pipe: Pipe) -> None:
    os.write(pipe.sink().fileno(), b"tail")
    pipe.sink().close()
    dst = ByteBuffer.allocate(10)
    assert pipe.source().read(dst) == 4
    assert pipe.source().read(dst) == -1
    assert dst.position() == 4
    assert pipe.source().read([ByteBuffer.allocate(2), ByteBuffer.allocate(2)]) == -1
    assert os.read(pipe.source().fileno(), 10) == b""  # what os.read says: EOF


def test_no_room_returns_zero_without_a_syscall(pipe: Pipe) -> None:
    d = Delta("pipe_read")
    assert pipe.source().read(ByteBuffer.allocate(0)) == 0
    assert pipe.source().read([ByteBuffer.allocate(0)] * 3) == 0
    assert d.value.syscalls == 0
    dw = Delta("pipe_write")
    assert pipe.sink().write(ByteBuffer.allocate(0)) == 0
    assert pipe.sink().write([]) == 0
    assert dw.value.syscalls == 0


def test_read_into_read_only_buffer_is_refused(pipe: Pipe) -> None:
    os.write(pipe.sink().fileno(), b"abc")
    with pytest.raises(IllegalArgumentError):
        pipe.source().read(ByteBuffer.allocate(4).as_read_only_buffer())
    assert read_available(pipe.source().fileno()) == b"abc"  # nothing consumed


def test_nonblocking_read_of_empty_pipe_is_zero(pipe: Pipe) -> None:
    pipe.source().configure_blocking(False)
    with pytest.raises(BlockingIOError):  # what os.read does on the same descriptor
        os.read(pipe.source().fileno(), 1)
    d = Delta("pipe_read")
    dst = ByteBuffer.allocate(8)
    assert pipe.source().read(dst) == 0
    assert pipe.source().read([dst]) == 0
    assert dst.position() == 0
    assert d.value.syscalls == 2 and d.value.user_bytes == 0


def test_nonblocking_write_to_full_pipe_matches_os_write(pipe: Pipe) -> None:
    size = pipe.pipe_size()
    data = pattern(3 * size)
    with Pipe.open() as other:
        os.set_blocking(other.sink().fileno(), False)
        expected = os.write(other.sink().fileno(), data)
    pipe.sink().configure_blocking(False)
    src = ByteBuffer.wrap(data)
    n = pipe.sink().write(src)
    assert n == expected == size
    assert src.position() == n
    assert pipe.sink().write(src) == 0  # full
    assert pipe.sink().write([src]) == 0
    assert src.position() == n
    assert read_exactly(pipe.source().fileno(), n) == data[:n]


def test_blocking_write_waits_for_the_reader(pipe: Pipe) -> None:
    data = pattern(1 << 20, seed=5)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(read_exactly(pipe.source().fileno(),
                                                                     len(data))))
    reader.start()
    try:
        src = ByteBuffer.wrap(data)
        assert pipe.sink().write(src) == len(data)
        assert not src.has_remaining()
    finally:
        reader.join(10)
    assert got == [data]


def test_blocking_read_waits_for_a_writer(pipe: Pipe) -> None:
    timer = threading.Timer(0.05, lambda: os.write(pipe.sink().fileno(), b"late"))
    timer.start()
    try:
        dst = ByteBuffer.allocate(10)
        assert pipe.source().read(dst) == 4
        assert bytes(dst.flip()) == b"late"
    finally:
        timer.join()


# -- scatter / gather ------------------------------------------------------------------


def test_gather_write_of_more_than_iov_max_buffers(pipe: Pipe) -> None:
    count = IOV_MAX * 2 + 10
    chunks = [pattern(5, seed=i) for i in range(count)]
    bufs = [ByteBuffer.wrap(c) for c in chunks]
    bufs.insert(7, ByteBuffer.allocate(0))  # empty buffers are skipped, not counted
    d = Delta("pipe_write")
    assert pipe.sink().write(bufs) == 5 * count
    assert all(not b.has_remaining() for b in bufs)
    assert d.value.syscalls == 3 and d.value.user_bytes == 5 * count
    assert read_exactly(pipe.source().fileno(), 5 * count) == b"".join(chunks)


def test_gather_write_offset_and_length(pipe: Pipe) -> None:
    bufs = [ByteBuffer.wrap(bytes([i]) * 3) for i in range(6)]
    assert pipe.sink().write(bufs, 2, 3) == 9
    assert [b.position() for b in bufs] == [0, 0, 3, 3, 3, 0]
    assert read_available(pipe.source().fileno()) == b"\2\2\2\3\3\3\4\4\4"
    with pytest.raises(IndexError):
        pipe.sink().write(bufs, 4, 3)
    with pytest.raises(TypeError):
        pipe.sink().write([b"raw bytes"])  # type: ignore[list-item]


@pytest.mark.parametrize(("size", "taken", "x_at", "y_at"),
                         [(5000, PAGE, PAGE, 0), (3000, PAGE, PAGE - 3010, 10),
                          (2000, 4010, 2000, 10)])
def test_a_pipe_taking_part_of_a_buffer_listed_twice_sets_it_as_java_does(
        pipe: Pipe, size: int, taken: int, x_at: int, y_at: int) -> None:
    """A one-page pipe takes a page of [x, y(10), x], through whichever path runs (the
    compiled one for these plain buffers): x's position is its last share's, as JDK 17
    sets it (measured there with the same pipe: 4,096 of 5,000 x at 4,096, y at 0;
    of 3,000, x at 1,086; of 2,000, 4,010 taken, x at 2,000)."""
    pipe.sink().set_pipe_size(PAGE)
    pipe.sink().configure_blocking(False)
    x, y = ByteBuffer.wrap(pattern(size, seed=1)), ByteBuffer.wrap(pattern(10, seed=2))
    assert pipe.sink().write([x, y, x]) == taken
    assert (x.position(), y.position()) == (x_at, y_at)
    assert read_available(pipe.source().fileno()) == (
        pattern(size, seed=1) + pattern(10, seed=2) + pattern(size, seed=1))[:taken]


def test_scatter_read_fills_at_most_iov_max_buffers_per_call(pipe: Pipe) -> None:
    count = IOV_MAX + 476
    data = pattern(3 * count, seed=2)
    os.write(pipe.sink().fileno(), data)
    bufs = [ByteBuffer.allocate(3) for _ in range(count)]
    bufs.insert(0, ByteBuffer.allocate(0))  # no room: skipped, not counted
    assert pipe.source().read(bufs) == 3 * IOV_MAX
    assert pipe.source().read(bufs) == 3 * (count - IOV_MAX)
    assert pipe.source().read(bufs) == 0  # no room left anywhere
    assert consumed(bufs) == data


def test_scatter_read_offset_and_length(pipe: Pipe) -> None:
    os.write(pipe.sink().fileno(), b"abcdefgh")
    bufs = [ByteBuffer.allocate(3) for _ in range(4)]
    assert pipe.source().read(bufs, 1, 2) == 6
    assert [b.position() for b in bufs] == [0, 3, 3, 0]
    assert consumed(bufs) == b"abcdef"
    with pytest.raises(IndexError):
        pipe.source().read(bufs, 3, 2)


def test_scatter_read_partial_fill(pipe: Pipe) -> None:
    os.write(pipe.sink().fileno(), b"12345")
    bufs = [ByteBuffer.allocate(2), ByteBuffer.allocate(2), ByteBuffer.allocate(2)]
    assert pipe.source().read(bufs) == 5
    assert [b.position() for b in bufs] == [2, 2, 1]
    assert consumed(bufs) == b"12345"


# -- pipe size ---------------------------------------------------------------------------


def test_pipe_size_get_and_set(pipe: Pipe) -> None:
    fd = pipe.sink().fileno()
    assert pipe.sink().pipe_size() == fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    granted = pipe.sink().set_pipe_size(100_000)
    assert granted == 131_072  # rounded up to a power of two pages
    assert pipe.source().pipe_size() == pipe.sink().pipe_size() == pipe.pipe_size() == granted
    assert pipe.source().set_pipe_size(1) == PAGE  # at least one page
    with pytest.raises(IllegalArgumentError):
        pipe.sink().set_pipe_size(0)
    with pytest.raises(TypeError):
        pipe.sink().set_pipe_size(4096.0)  # type: ignore[arg-type]


def test_open_with_size() -> None:
    with Pipe.open(size=PAGE * 3) as p:
        assert p.pipe_size() == PAGE * 4
        p.sink().close()
        assert p.pipe_size() == PAGE * 4  # asked through the source


def test_shrinking_below_the_data_held_is_ebusy(pipe: Pipe) -> None:
    os.write(pipe.sink().fileno(), pattern(4 * PAGE))
    with pytest.raises(OSError) as info:
        pipe.sink().set_pipe_size(PAGE)
    assert info.value.errno == errno.EBUSY
    assert "smaller than the data" in str(info.value)
    assert len(read_available(pipe.source().fileno())) == 4 * PAGE


def test_size_beyond_pipe_max_size_names_the_limit_for_unprivileged() -> None:
    """In a forked child without privileges (root drops to nobody first)."""
    limit = pipe_max_size()
    fds_before = set(os.listdir("/proc/self/fd"))
    with Pipe.open() as report:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                report.source().close()
                if os.geteuid() == 0:
                    os.setgroups([])
                    os.setresgid(65534, 65534, 65534)
                    os.setresuid(65534, 65534, 65534)
                try:
                    Pipe.open(size=limit * 2).close()
                    msg = "granted"
                except PermissionError as e:
                    msg = f"{e.errno} {e.strerror}"
                report.sink().write(ByteBuffer.wrap(msg.encode()))
                code = 0
            finally:
                os._exit(code)
        report.sink().close()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        dst = ByteBuffer.allocate(500)
        while report.source().read(dst) > 0:
            pass
        msg = bytes(dst.flip()).decode()
    assert msg.startswith(f"{errno.EPERM} pipe size {limit * 2} > /proc/sys/fs/pipe-max-size "
                          f"{limit}"), msg
    assert set(os.listdir("/proc/self/fd")) == fds_before


# -- splice ----------------------------------------------------------------------------


def test_splice_file_pipe_file_with_and_without_positions(
    pipe: Pipe, data_file: tuple[int, bytes], out_file: int
) -> None:
    src_fd, data = data_file
    # With a position the file's own offset stays.
    assert splice(src_fd, pipe.sink(), 100, src_position=10) == 100
    assert os.lseek(src_fd, 0, os.SEEK_CUR) == 0
    # Without one it advances by the count.
    assert splice(src_fd, pipe.sink(), 50) == 50
    assert os.lseek(src_fd, 0, os.SEEK_CUR) == 50
    assert splice(pipe.source(), out_file, 150, dst_position=1000) == 150
    assert os.lseek(out_file, 0, os.SEEK_CUR) == 0
    assert os.pread(out_file, 150, 1000) == data[10:110] + data[:50]
    assert splice(src_fd, pipe.sink(), 70) == 70
    assert splice(pipe.source(), out_file, 1000) == 70  # what the pipe holds
    assert os.lseek(out_file, 0, os.SEEK_CUR) == 70
    assert os.pread(out_file, 70, 0) == data[50:120]
    assert os.lseek(src_fd, 0, os.SEEK_CUR) == 120


def test_splice_whole_file_through_a_pipe(
    pipe: Pipe, data_file: tuple[int, bytes], out_file: int
) -> None:
    src_fd, data = data_file
    pos = 0
    d = Delta("splice")
    calls = 0
    while True:
        n = splice(src_fd, pipe.sink(), 4096, src_position=pos, more=True)
        calls += 1
        if n == 0:
            break
        moved = 0
        while moved < n:
            moved += splice(pipe.source(), out_file, n - moved)
            calls += 1
        pos += n
    assert pos == len(data)
    assert os.pread(out_file, len(data) + 1, 0) == data
    assert d.value == PathStats("splice", calls, calls, 2 * len(data), 0)


def test_splice_at_end_of_input_is_zero(
    pipe: Pipe, data_file: tuple[int, bytes], out_file: int
) -> None:
    src_fd, data = data_file
    assert splice(src_fd, pipe.sink(), 10, src_position=len(data)) == 0
    assert splice(src_fd, pipe.sink(), 0) == 0
    pipe.sink().close()
    assert splice(pipe.source(), out_file, 10) == 0  # empty pipe, no writer: EOF


def test_splice_with_a_socketpair(pipe: Pipe) -> None:
    data = pattern(50_000, seed=4)
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        sender = threading.Thread(target=a.sendall, args=(data,))
        sender.start()
        total = 0
        while total < len(data):
            n = splice(b, pipe.sink(), len(data) - total)  # socket -> pipe
            assert n > 0
            m = 0
            while m < n:
                m += splice(pipe.source(), c, n - m)  # pipe -> socket
            total += n
        sender.join()
        assert read_all_socket(d, len(data)) == data
        a.shutdown(socket.SHUT_WR)
        assert splice(b, pipe.sink(), 100) == 0  # peer shut down: end of input


def read_all_socket(s: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk
        out += chunk
    return bytes(out)


def test_splice_nonblocking_on_empty_pipe_raises_blocking(
    pipe: Pipe, out_file: int
) -> None:
    d = Delta("splice")
    with pytest.raises(BlockingIOError):
        splice(pipe.source(), out_file, 10, nonblock=True)
    pipe.source().configure_blocking(False)  # a non-blocking channel sets the flag too
    with pytest.raises(BlockingIOError):
        splice(pipe.source(), out_file, 10)
    assert d.value == PathStats("splice", 2, 2, 0, 0)
    assert os.fstat(out_file).st_size == 0


def test_splice_needs_a_pipe_and_valid_arguments(
    data_file: tuple[int, bytes], out_file: int, pipe: Pipe
) -> None:
    src_fd, _ = data_file
    with pytest.raises(OSError) as info:
        splice(src_fd, out_file, 10)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        splice(pipe.source(), out_file, 10, src_position=0)  # a pipe has no position
    assert info.value.errno == errno.ESPIPE
    with pytest.raises(IllegalArgumentError):
        splice(src_fd, pipe.sink(), -1)
    with pytest.raises(IllegalArgumentError):
        splice(src_fd, pipe.sink(), 1, src_position=-1)
    with pytest.raises(IllegalArgumentError):
        splice(-1, pipe.sink(), 1)
    with pytest.raises(TypeError):
        splice(True, pipe.sink(), 1)


# -- tee -------------------------------------------------------------------------------


def test_tee_leaves_the_data_in_the_source(pipe: Pipe) -> None:
    data = pattern(3000, seed=6)
    os.write(pipe.sink().fileno(), data)
    d = Delta("tee")
    with Pipe.open() as copy:
        assert tee(pipe.source(), copy.sink(), 10_000) == 3000
        assert tee(pipe.source().fileno(), copy.sink().fileno(), 100) == 100
        assert read_available(copy.source().fileno()) == data + data[:100]
        with pytest.raises(BlockingIOError):
            tee(copy.source(), pipe.sink(), 10, nonblock=True)  # copy is empty now
        copy.sink().close()
        assert tee(copy.source(), pipe.sink(), 10) == 0  # empty, no writer: EOF
    assert d.value == PathStats("tee", 4, 4, 3100, 0)
    assert read_available(pipe.source().fileno()) == data


def test_tee_between_non_pipes_is_einval(pipe: Pipe, out_file: int) -> None:
    os.write(pipe.sink().fileno(), b"x")
    with pytest.raises(OSError) as info:
        tee(pipe.source(), out_file, 1)
    assert info.value.errno == errno.EINVAL


def test_missing_libc_call_is_enosys_with_the_cause(
    pipe: Pipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    cause = "tee is not provided by this OS or its libc"
    monkeypatch.setattr(_syscalls, "_tee", None)
    monkeypatch.setitem(_syscalls._CAUSES, "tee", cause)
    with Pipe.open() as copy, pytest.raises(OSError) as info:
        tee(pipe.source(), copy.sink(), 1)
    assert info.value.errno == errno.ENOSYS and cause in str(info.value)
    assert not _syscalls.is_available("tee")


# -- vmsplice --------------------------------------------------------------------------


def test_vmsplice_from_a_direct_buffer(pipe: Pipe) -> None:
    data = pattern(3 * PAGE, seed=7)
    d = Delta("vmsplice")
    with ByteBuffer.allocate_direct(3 * PAGE + 100) as buf:
        buf.put(b"x" * 100).put(data).flip().position(100)
        assert vmsplice(pipe.sink(), buf) == 3 * PAGE
        assert buf.position() == buf.limit() == 3 * PAGE + 100
        assert read_exactly(pipe.source().fileno(), 3 * PAGE) == data
    assert d.value == PathStats("vmsplice", 1, 1, 3 * PAGE, 0)


def test_vmsplice_from_a_bytearray_and_mixed_sources(pipe: Pipe) -> None:
    ba = bytearray(pattern(1000, seed=8))
    heap = ByteBuffer.wrap(bytearray(b"heap-buffer"), 5, 6)
    with ByteBuffer.allocate_direct(16) as direct:
        direct.put(b"direct").flip()
        n = vmsplice(pipe.sink(), [ba, heap, b"", b"const", direct])
        assert n == 1000 + 6 + 5 + 6
        assert heap.position() == heap.limit() and direct.position() == direct.limit()
        # Read before anything is freed or modified: the pipe holds references only.
        assert read_exactly(pipe.source().fileno(), n) == bytes(ba) + b"buffer" + b"const" + (
            b"direct")


def test_vmsplice_references_the_pages_instead_of_copying(pipe: Pipe) -> None:
    """The documented hazard: modifying the memory before the read changes the data."""
    with ByteBuffer.allocate_direct(PAGE) as buf:
        buf.put(b"a" * PAGE).flip()
        assert vmsplice(pipe.sink(), buf) == PAGE
        buf.put(0, b"XYZ")
        assert read_exactly(pipe.source().fileno(), 5) == b"XYZaa"
        read_exactly(pipe.source().fileno(), PAGE - 5)


def test_vmsplice_gift_needs_page_aligned_memory(pipe: Pipe) -> None:
    with ByteBuffer.allocate_direct(2 * PAGE) as buf:
        buf.put(pattern(2 * PAGE)).flip()
        buf.position(1)
        d = Delta("vmsplice")
        with pytest.raises(IllegalArgumentError, match="page-aligned"):
            vmsplice(pipe.sink(), buf, gift=True)
        assert buf.position() == 1 and d.value.syscalls == 0
        buf.position(0)
        assert vmsplice(pipe.sink(), buf, gift=True) == 2 * PAGE
        assert buf.position() == 2 * PAGE
        assert read_exactly(pipe.source().fileno(), 2 * PAGE) == pattern(2 * PAGE)
    assert SPLICE_F_GIFT == 8


def test_vmsplice_nonblocking_into_a_full_pipe(pipe: Pipe) -> None:
    size = pipe.pipe_size()
    with ByteBuffer.allocate_direct(2 * size) as buf:
        buf.put(pattern(2 * size)).flip()
        pipe.sink().configure_blocking(False)
        n = vmsplice(pipe.sink(), buf)
        assert 0 < n <= size and buf.position() == n
        assert vmsplice(pipe.sink(), buf) == 0  # full: nothing taken
        assert vmsplice(pipe.sink().fileno(), buf, nonblock=True) == 0
        assert buf.position() == n
        assert read_exactly(pipe.source().fileno(), n) == pattern(2 * size)[:n]


# -- fault injection -------------------------------------------------------------------


class Faults(_syscalls.Syscalls):
    """A syscall layer whose calls move at most ``limit`` bytes and fail on demand.

    ``fail``: per method name, a list of exceptions raised by the next calls (then the
    real call runs).  ``calls`` records each call's method and byte count asked.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.fail: dict[str, list[OSError]] = {}
        self.calls: list[tuple[str, int]] = []

    def _maybe_fail(self, name: str, asked: int) -> None:
        self.calls.append((name, asked))
        pending = self.fail.get(name)
        if pending:
            raise pending.pop(0)

    def _cut(self, views: Sequence[memoryview]) -> list[memoryview]:
        if self.limit is None:
            return list(views)
        out, left = [], self.limit
        for v in views:
            if left <= 0:
                break
            out.append(v[:left])
            left -= len(out[-1])
        return out

    def readv(self, fd: int, bufs: Sequence[memoryview]) -> int:
        self._maybe_fail("readv", sum(len(b) for b in bufs))
        return super().readv(fd, self._cut(bufs))

    def write(self, fd: int, buf: memoryview) -> int:
        self._maybe_fail("write", len(buf))
        return super().write(fd, self._cut([buf])[0])

    def writev(self, fd: int, bufs: Sequence[memoryview]) -> int:
        self._maybe_fail("writev", sum(len(b) for b in bufs))
        return super().writev(fd, self._cut(bufs))

    def splice(self, src: int, dst: int, count: int, offset_src: int | None = None,
               offset_dst: int | None = None, flags: int = 0) -> int:
        self._maybe_fail("splice", count)
        count = count if self.limit is None else min(count, self.limit)
        return super().splice(src, dst, count, offset_src, offset_dst, flags)

    def tee(self, src: int, dst: int, count: int, flags: int = 0) -> int:
        self._maybe_fail("tee", count)
        count = count if self.limit is None else min(count, self.limit)
        return super().tee(src, dst, count, flags)

    def vmsplice(self, fd: int, addresses: Sequence[tuple[int, int]], flags: int = 0) -> int:
        self._maybe_fail("vmsplice", sum(n for _, n in addresses))
        if self.limit is not None:
            cut, left = [], self.limit
            for a, n in addresses:
                if left <= 0:
                    break
                cut.append((a, min(n, left)))
                left -= min(n, left)
            addresses = cut
        return super().vmsplice(fd, addresses, flags)


class CopyingVmsplice(Faults):
    """vmsplice simulated by copying each segment with write(2): any number of segments
    fits in the pipe, so chunking by IOV_MAX can be checked with real data."""

    def vmsplice(self, fd: int, addresses: Sequence[tuple[int, int]], flags: int = 0) -> int:
        self._maybe_fail("vmsplice", sum(n for _, n in addresses))
        assert len(addresses) <= IOV_MAX
        return os.write(fd, b"".join(ctypes.string_at(a, n) for a, n in addresses))


def test_short_gather_write_advances_exactly_what_moved(pipe: Pipe) -> None:
    chunks = [pattern(10, seed=i) for i in range(5)]
    bufs = [ByteBuffer.wrap(c) for c in chunks]
    with _syscalls.override(Faults(limit=23)):
        assert pipe.sink().write(bufs) == 23
    assert [b.position() for b in bufs] == [10, 10, 3, 0, 0]
    assert pipe.sink().write(bufs) == 27  # the rest, nothing repeated
    assert read_available(pipe.source().fileno()) == b"".join(chunks)


def test_short_single_write_and_read(pipe: Pipe) -> None:
    data = pattern(100)
    src = ByteBuffer.wrap(data)
    dst = ByteBuffer.allocate(100)
    with _syscalls.override(Faults(limit=30)):
        assert pipe.sink().write(src) == 30
        assert src.position() == 30
        assert pipe.source().read(dst) == 30
        assert dst.position() == 30
    assert pipe.sink().write(src) == 70
    assert pipe.source().read(dst) == 70
    assert bytes(dst.flip()) == data


def test_short_scatter_read_leaves_the_rest_in_the_pipe(pipe: Pipe) -> None:
    data = pattern(40, seed=1)
    os.write(pipe.sink().fileno(), data)
    bufs = [ByteBuffer.allocate(8) for _ in range(5)]
    with _syscalls.override(Faults(limit=13)):
        assert pipe.source().read(bufs) == 13
    assert [b.position() for b in bufs] == [8, 5, 0, 0, 0]
    assert pipe.source().read(bufs) == 27
    assert consumed(bufs) == data


def test_eintr_is_retried_without_loss_or_duplication(pipe: Pipe) -> None:
    layer = Faults()
    for name in ("readv", "write", "writev", "splice", "tee", "vmsplice"):
        layer.fail[name] = [InterruptedError(errno.EINTR, "interrupted")]
    data = pattern(64)
    third = data[32:48]  # vmsplice'd memory must stay alive until it is read
    with _syscalls.override(layer), Pipe.open() as copy:
        assert pipe.sink().write(ByteBuffer.wrap(data[:16])) == 16
        assert pipe.sink().write([ByteBuffer.wrap(data[16:32])]) == 16
        assert vmsplice(pipe.sink(), third) == 16
        assert tee(pipe.source(), copy.sink(), 100) == 48
        assert splice(copy.source(), pipe.sink(), 100) == 48
        dst = ByteBuffer.allocate(200)
        assert pipe.source().read(dst) == 96
    assert bytes(dst.flip()) == data[:48] * 2
    assert all(not v for v in layer.fail.values())  # every fault fired once
    assert [c[0] for c in layer.calls].count("readv") == 2


def test_eagain_on_a_later_gather_chunk_returns_the_count_so_far(pipe: Pipe) -> None:
    count = IOV_MAX + 5
    bufs = [ByteBuffer.wrap(bytes([i & 0xFF]) * 2) for i in range(count)]
    calls = 0  # the first chunk goes through, the second reports EAGAIN

    class SecondFails(Faults):
        def writev(self, fd: int, views: Sequence[memoryview]) -> int:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise BlockingIOError(errno.EAGAIN, "full")
            return super().writev(fd, views)

    with _syscalls.override(SecondFails()):
        assert pipe.sink().write(bufs) == 2 * IOV_MAX
    assert [b.position() for b in bufs] == [2] * IOV_MAX + [0] * 5
    assert pipe.sink().write(bufs) == 10
    expected = b"".join(bytes([i & 0xFF]) * 2 for i in range(count))
    assert read_available(pipe.source().fileno()) == expected


def test_error_after_progress_returns_count_error_before_raises(pipe: Pipe) -> None:
    bufs = [ByteBuffer.wrap(b"ab") for _ in range(IOV_MAX + 1)]
    calls = 0

    class Eio(Faults):
        def writev(self, fd: int, views: Sequence[memoryview]) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                return super().writev(fd, views)
            raise OSError(errno.EIO, "I/O error")

    with _syscalls.override(Eio()):
        assert pipe.sink().write(bufs) == 2 * IOV_MAX  # first chunk stands
        with pytest.raises(OSError) as info:
            pipe.sink().write(bufs)  # nothing moved yet in this call: the error itself
    assert info.value.errno == errno.EIO
    assert bufs[-1].position() == 0
    read_exactly(pipe.source().fileno(), 2 * IOV_MAX)


def test_injected_eagain_on_read_and_write_is_zero(pipe: Pipe) -> None:
    layer = Faults()
    layer.fail["readv"] = [BlockingIOError(errno.EAGAIN, "empty")]
    layer.fail["write"] = [BlockingIOError(errno.EAGAIN, "full")]
    layer.fail["writev"] = [BlockingIOError(errno.EAGAIN, "full")]
    src = ByteBuffer.wrap(b"abc")
    dst = ByteBuffer.allocate(3)
    with _syscalls.override(layer):
        assert pipe.sink().write(src) == 0
        assert pipe.sink().write([src]) == 0
        assert src.position() == 0
        os.write(pipe.sink().fileno(), b"xyz")
        assert pipe.source().read(dst) == 0
        assert dst.position() == 0
        assert pipe.source().read(dst) == 3
    assert bytes(dst.flip()) == b"xyz"


def test_short_splices_move_each_byte_once(
    pipe: Pipe, data_file: tuple[int, bytes], out_file: int
) -> None:
    src_fd, data = data_file
    with _syscalls.override(Faults(limit=777)):
        pos, out = 123, 0
        while pos < len(data):
            n = splice(src_fd, pipe.sink(), 5000, src_position=pos)
            assert 0 < n <= 777
            pos += n
            while n:
                m = splice(pipe.source(), out_file, n)  # own offset advances
                out += m
                n -= m
        assert os.lseek(src_fd, 0, os.SEEK_CUR) == 0
        assert os.lseek(out_file, 0, os.SEEK_CUR) == out == len(data) - 123
        # Without a position the source's own offset advances by exactly each count.
        got = splice(src_fd, pipe.sink(), 5000)
        assert got == 777 and os.lseek(src_fd, 0, os.SEEK_CUR) == 777
    assert os.pread(out_file, len(data), 0) == data[123:]
    assert read_available(pipe.source().fileno()) == data[:777]


def test_injected_eagain_on_splice_moves_nothing(
    pipe: Pipe, data_file: tuple[int, bytes]
) -> None:
    src_fd, data = data_file
    layer = Faults()
    layer.fail["splice"] = [BlockingIOError(errno.EAGAIN, "again")]
    d = Delta("splice")
    with _syscalls.override(layer):
        with pytest.raises(BlockingIOError):
            splice(src_fd, pipe.sink(), 100)
        assert os.lseek(src_fd, 0, os.SEEK_CUR) == 0
        assert splice(src_fd, pipe.sink(), 100) == 100
    assert d.value == PathStats("splice", 2, 2, 100, 0)
    assert read_available(pipe.source().fileno()) == data[:100]


def test_short_vmsplice_advances_positions_across_sources(pipe: Pipe) -> None:
    a = ByteBuffer.wrap(bytearray(b"0123456789"))
    raw = b"abcdefghij"
    c = ByteBuffer.wrap(bytearray(b"KLMNOPQRST"))
    with _syscalls.override(Faults(limit=14)):
        assert vmsplice(pipe.sink(), [a, raw, c]) == 14
    assert a.position() == 10 and c.position() == 0  # 4 of the 14 came from raw
    assert vmsplice(pipe.sink(), [a, raw[4:], c]) == 16
    assert c.position() == 10
    assert read_exactly(pipe.source().fileno(), 30) == b"0123456789abcdefghijKLMNOPQRST"


def test_vmsplice_chunks_by_iov_max_and_stops_at_eagain(pipe: Pipe) -> None:
    count = IOV_MAX + 76
    bufs = [ByteBuffer.wrap(bytearray(pattern(10, seed=i))) for i in range(count)]
    expected = b"".join(pattern(10, seed=i) for i in range(count))
    layer = CopyingVmsplice()
    d = Delta("vmsplice")
    with _syscalls.override(layer):
        assert vmsplice(pipe.sink(), bufs) == 10 * count
    assert [n for _, n in layer.calls] == [10 * IOV_MAX, 760]
    assert d.value == PathStats("vmsplice", 2, 2, 10 * count, 0)
    assert all(not b.has_remaining() for b in bufs)
    assert read_available(pipe.source().fileno()) == expected
    for b in bufs:
        b.rewind()
    layer = CopyingVmsplice()
    layer.fail["vmsplice"] = [BlockingIOError(errno.EAGAIN, "full")]
    with _syscalls.override(layer):
        assert vmsplice(pipe.sink(), bufs) == 0
    assert all(b.position() == 0 for b in bufs)

    class SecondFails(CopyingVmsplice):
        def vmsplice(self, fd: int, addresses: Sequence[tuple[int, int]],
                     flags: int = 0) -> int:
            if self.calls:
                self.calls.append(("vmsplice", 0))
                raise OSError(errno.EIO, "I/O error")
            return super().vmsplice(fd, addresses, flags)

    with _syscalls.override(SecondFails()):
        assert vmsplice(pipe.sink(), bufs) == 10 * IOV_MAX  # the first chunk stands
    assert [b.position() for b in bufs] == [10] * IOV_MAX + [0] * 76
    assert read_available(pipe.source().fileno()) == expected[: 10 * IOV_MAX]


# -- metrics -----------------------------------------------------------------------------


def test_read_and_write_record_user_bytes(pipe: Pipe) -> None:
    r, w = Delta("pipe_read"), Delta("pipe_write")
    pipe.sink().write(ByteBuffer.wrap(b"12345"))
    pipe.source().read(ByteBuffer.allocate(3))
    assert w.value == PathStats("pipe_write", 1, 1, 0, 5)
    assert r.value == PathStats("pipe_read", 1, 1, 0, 3)
