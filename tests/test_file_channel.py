"""FileChannel against Java 17's FileChannel, checked with plain os calls on the same file.

Every read and write is compared with what ``os.pread``/``os.lseek``/``os.fstat`` say
about the file; fault-injection tests swap the syscall layer (``zcio._syscalls.override``)
for one that takes fewer bytes, raises EINTR once or reports ENOSPC, and check that the
counts and every position say exactly what reached the file.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import gc
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import zcio
from zcio import (
    AlignmentError,
    ByteBuffer,
    ClosedChannelError,
    FileChannel,
    IllegalArgumentError,
    IndexOutOfBoundsError,
    MapMode,
    NonReadableChannelError,
    NonWritableChannelError,
    OpenOption,
    _syscalls,
)
from zcio._syscalls import IOV_MAX, Syscalls

READ, WRITE, APPEND = OpenOption.READ, OpenOption.WRITE, OpenOption.APPEND
CREATE, CREATE_NEW = OpenOption.CREATE, OpenOption.CREATE_NEW
TRUNCATE_EXISTING, DELETE_ON_CLOSE = OpenOption.TRUNCATE_EXISTING, OpenOption.DELETE_ON_CLOSE


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that differ from their neighbours, so misplaced bytes show."""
    return bytes((i * 7 + seed + i // 251) & 0xFF for i in range(n))


def make_file(tmp_path: Path, data: bytes, name: str = "f.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@contextmanager
def raw_fd(path: Path, flags: int = os.O_RDONLY) -> Iterator[int]:
    """A plain descriptor on ``path``, to check the file independently of the channel."""
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def thunks(*calls: Callable[[], object]) -> tuple[Callable[[], object], ...]:
    """Calls to try one by one (typed, so each lambda is checked)."""
    return calls


def wrap(data: bytes) -> ByteBuffer:
    return ByteBuffer.wrap(bytearray(data))


def filled(buf: ByteBuffer) -> bytes:
    """The bytes before the buffer's position (what a read put there)."""
    return bytes(buf.duplicate().flip())


def fd_is_open(fd: int) -> bool:
    """Whether ``fd`` is open (checked without opening anything that could reuse it)."""
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError as e:
        assert e.errno == errno.EBADF
        return False
    return True


def file_offset(ch: FileChannel) -> int:
    return os.lseek(ch.fileno(), 0, os.SEEK_CUR)


# -- open options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "access", "readable", "writable", "append"),
    [
        ((), os.O_RDONLY, True, False, False),
        ((READ,), os.O_RDONLY, True, False, False),
        ((WRITE,), os.O_WRONLY, False, True, False),
        ((READ, WRITE), os.O_RDWR, True, True, False),
        ((APPEND,), os.O_WRONLY, False, True, True),
        ((WRITE, APPEND), os.O_WRONLY, False, True, True),
    ],
    ids=["default", "read", "write", "read-write", "append", "write-append"],
)
def test_open_access_mode_follows_java_rules(
    tmp_path: Path,
    options: tuple[OpenOption, ...],
    access: int,
    readable: bool,
    writable: bool,
    append: bool,
) -> None:
    path = make_file(tmp_path, b"0123456789")
    with FileChannel.open(path, *options) as ch:
        flags = fcntl.fcntl(ch.fileno(), fcntl.F_GETFL)
        assert flags & os.O_ACCMODE == access
        assert bool(flags & os.O_APPEND) is append
        assert not os.get_inheritable(ch.fileno())
        assert (ch.is_readable(), ch.is_writable(), ch.is_append()) == (readable, writable, append)
        assert not ch.is_direct()
    assert path.read_bytes() == b"0123456789"  # no option truncated the file


@pytest.mark.parametrize(
    "options",
    [(READ, APPEND), (READ, WRITE, APPEND), (APPEND, TRUNCATE_EXISTING),
     (WRITE, APPEND, TRUNCATE_EXISTING)],
    ids=["read+append", "read+write+append", "append+truncate", "write+append+truncate"],
)
def test_illegal_option_combinations(tmp_path: Path, options: tuple[OpenOption, ...]) -> None:
    path = tmp_path / "never.bin"
    with pytest.raises(IllegalArgumentError, match="not allowed"):
        FileChannel.open(path, CREATE, *options)
    assert not path.exists()  # refused before open(2)


def test_options_must_be_open_option_members(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x")
    with pytest.raises(TypeError):
        FileChannel.open(path, "read")  # type: ignore[arg-type]


def test_create_applies_only_when_writing(tmp_path: Path) -> None:
    path = tmp_path / "new.bin"
    with pytest.raises(FileNotFoundError):
        FileChannel.open(path, READ, CREATE)  # ignored for reading, as Java
    with pytest.raises(FileNotFoundError):
        FileChannel.open(path, WRITE)
    with FileChannel.open(path, WRITE, CREATE) as ch:
        assert ch.size() == 0
    assert path.exists()
    path.write_bytes(b"keep")
    with FileChannel.open(path, WRITE, CREATE):  # an existing file is opened as it is
        pass
    assert path.read_bytes() == b"keep"


def test_create_new(tmp_path: Path) -> None:
    path = tmp_path / "new.bin"
    with FileChannel.open(path, WRITE, CREATE_NEW) as ch:
        assert ch.write(wrap(b"abc")) == 3
    assert path.read_bytes() == b"abc"
    with pytest.raises(FileExistsError):
        FileChannel.open(path, WRITE, CREATE_NEW)
    with pytest.raises(FileExistsError):
        FileChannel.open(path, WRITE, CREATE, CREATE_NEW)  # CREATE_NEW wins over CREATE
    with FileChannel.open(path, READ, CREATE_NEW) as ch:  # ignored when only reading
        assert ch.size() == 3


def test_truncate_existing_applies_only_when_writing(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"0123456789")
    with FileChannel.open(path, READ, TRUNCATE_EXISTING) as ch:
        assert ch.size() == 10
    assert path.read_bytes() == b"0123456789"
    with FileChannel.open(path, WRITE, TRUNCATE_EXISTING) as ch:
        assert ch.size() == 0
    assert path.stat().st_size == 0


def test_delete_on_close_unlinks_at_open_and_keeps_the_data(tmp_path: Path) -> None:
    data = pattern(5000)
    path = make_file(tmp_path, data)
    with FileChannel.open(path, READ, WRITE, DELETE_ON_CLOSE) as ch:
        assert list(tmp_path.iterdir()) == []  # gone from the directory right after open
        assert os.fstat(ch.fileno()).st_nlink == 0
        dst = ByteBuffer.allocate(6000)
        assert ch.read(dst) == 5000
        assert filled(dst) == data
        assert ch.write(wrap(b"more")) == 4
        assert ch.size() == 5004
        again = ByteBuffer.allocate(4)
        assert ch.read(again, 5000) == 4 and filled(again) == b"more"
    assert list(tmp_path.iterdir()) == []


def test_delete_on_close_creates_then_unlinks(tmp_path: Path) -> None:
    path = tmp_path / "scratch.bin"
    with FileChannel.open(path, WRITE, CREATE_NEW, DELETE_ON_CLOSE) as ch:
        assert not path.exists()
        assert ch.write(wrap(b"xyz")) == 3
    assert not path.exists()


@pytest.mark.parametrize(
    ("option", "sync_bits"),
    [(OpenOption.SYNC, os.O_SYNC), (OpenOption.DSYNC, os.O_DSYNC)],
    ids=["sync", "dsync"],
)
def test_sync_flags_are_set(tmp_path: Path, option: OpenOption, sync_bits: int) -> None:
    path = make_file(tmp_path, b"")
    with FileChannel.open(path, WRITE, option) as ch:
        flags = fcntl.fcntl(ch.fileno(), fcntl.F_GETFL)
        assert flags & os.O_SYNC == sync_bits  # O_SYNC includes the O_DSYNC bit on Linux
        assert ch.write(wrap(b"durable")) == 7
    assert path.read_bytes() == b"durable"
    with FileChannel.open(path, WRITE) as ch:
        assert fcntl.fcntl(ch.fileno(), fcntl.F_GETFL) & (os.O_SYNC | os.O_DSYNC) == 0


@pytest.mark.parametrize(("mode", "umask", "expected"),
                         [(0o640, 0o022, 0o640), (0o777, 0o022, 0o755), (0o666, 0o077, 0o600)])
def test_mode_is_the_created_files_permission_less_umask(
    tmp_path: Path, mode: int, umask: int, expected: int
) -> None:
    path = tmp_path / "perm.bin"
    old = os.umask(umask)
    try:
        with FileChannel.open(path, WRITE, CREATE_NEW, mode=mode):
            pass
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == expected


@pytest.mark.parametrize(
    ("flags", "readable", "writable"),
    [(os.O_RDONLY, True, False), (os.O_WRONLY, False, True), (os.O_RDWR, True, True)],
    ids=["rdonly", "wronly", "rdwr"],
)
def test_from_fd_takes_access_from_the_descriptor(
    tmp_path: Path, flags: int, readable: bool, writable: bool
) -> None:
    path = make_file(tmp_path, b"0123456789")
    with raw_fd(path, flags) as fd, FileChannel.from_fd(fd) as ch:
        assert ch.fileno() != fd
        assert (ch.is_readable(), ch.is_writable()) == (readable, writable)
        assert not os.get_inheritable(ch.fileno())


def test_from_fd_duplicate_shares_position_and_survives_either_close(tmp_path: Path) -> None:
    path = make_file(tmp_path, pattern(100))
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        ch = FileChannel.from_fd(fd)
        os.lseek(fd, 10, os.SEEK_SET)
        assert ch.position() == 10
        dst = ByteBuffer.allocate(5)
        assert ch.read(dst) == 5
        assert os.lseek(fd, 0, os.SEEK_CUR) == 15  # one open file, one position
        assert filled(dst) == pattern(100)[10:15]
        ch.close()
        assert os.read(fd, 3) == pattern(100)[15:18]  # the caller's descriptor lives on
        ch2 = FileChannel.from_fd(fd)
    finally:
        os.close(fd)
    with ch2:  # and the channel's duplicate survives the caller closing theirs
        assert ch2.position() == 18
        dst = ByteBuffer.allocate(4)
        assert ch2.read(dst) == 4 and filled(dst) == pattern(100)[18:22]
        assert ch2.write(wrap(b"ZZ")) == 2
    assert path.read_bytes()[22:24] == b"ZZ"


def test_from_file_flushes_the_python_file_first(tmp_path: Path) -> None:
    path = tmp_path / "py.bin"
    with open(path, "w+b") as f:
        f.write(b"buffered in python")
        assert path.stat().st_size == 0  # still in the io buffer
        with FileChannel.from_file(f) as ch:
            assert ch.size() == 18
            assert ch.position() == 18
            assert ch.is_readable() and ch.is_writable()
            assert ch.write(wrap(b"!")) == 1
        f.seek(0)
        assert f.read() == b"buffered in python!"  # the file object still works


# -- reading -------------------------------------------------------------------------------


@pytest.fixture
def data_path(tmp_path: Path) -> Path:
    return make_file(tmp_path, pattern(10_000, seed=5), "data.bin")


@pytest.mark.parametrize("direct", [False, True], ids=["heap", "direct"])
def test_relative_read_matches_os_pread(data_path: Path, direct: bool) -> None:
    dst = ByteBuffer.allocate_direct(4096) if direct else ByteBuffer.allocate(4096)
    with FileChannel.open(data_path) as ch, raw_fd(data_path) as fd, dst:
        assert ch.read(dst) == 4096
        assert (dst.position(), dst.limit()) == (4096, 4096)
        assert ch.position() == 4096 == file_offset(ch)
        assert filled(dst) == os.pread(fd, 4096, 0)

        dst.clear().position(100).limit(300)  # only [position, limit) is filled
        assert ch.read(dst) == 200
        assert (dst.position(), dst.limit()) == (300, 300)
        assert ch.position() == 4296
        whole = bytes(dst.duplicate().clear())
        assert whole[100:300] == os.pread(fd, 200, 4096)
        assert whole[:100] == os.pread(fd, 100, 0)  # untouched from the first read


def test_relative_read_to_eof_then_minus_one(data_path: Path) -> None:
    with FileChannel.open(data_path) as ch, raw_fd(data_path) as fd:
        ch.position(9000)
        dst = ByteBuffer.allocate(3000)
        assert ch.read(dst) == 1000  # short: only what is left
        assert dst.position() == 1000 and ch.position() == 10_000
        assert filled(dst) == os.pread(fd, 1000, 9000)
        assert ch.read(dst) == -1
        assert dst.position() == 1000 and ch.position() == 10_000
        full = ByteBuffer.allocate(0)
        assert ch.read(full) == 0  # no room: 0, not -1, even at end of file
        ch.position(20_000)
        assert ch.read(dst) == -1
        assert ch.position() == 20_000


def test_positional_read_leaves_the_channel_position(data_path: Path) -> None:
    with FileChannel.open(data_path) as ch, raw_fd(data_path) as fd:
        ch.position(7)
        dst = ByteBuffer.allocate(1000)
        dst.position(10)
        assert ch.read(dst, 5000) == 990
        assert dst.position() == 1000
        assert ch.position() == 7 == file_offset(ch)
        assert bytes(dst.duplicate().clear())[10:] == os.pread(fd, 990, 5000)
        dst.clear()
        assert ch.read(dst, 9500) == 500
        assert filled(dst) == os.pread(fd, 500, 9500)
        assert ch.read(dst, 10_000) == -1  # at the end
        assert ch.read(dst, 1 << 40) == -1  # past the end
        assert dst.position() == 500
        assert ch.read(ByteBuffer.allocate(0), 1 << 40) == 0  # no room beats end of file
        assert ch.position() == 7


def test_positional_read_negative_position(data_path: Path) -> None:
    with FileChannel.open(data_path) as ch:
        dst = ByteBuffer.allocate(4)
        with pytest.raises(IllegalArgumentError):
            ch.read(dst, -1)
        assert dst.position() == 0 and ch.position() == 0


def test_read_into_read_only_buffer_is_refused(data_path: Path) -> None:
    with FileChannel.open(data_path) as ch:
        ro = ByteBuffer.allocate(8).as_read_only_buffer()
        for call in thunks(lambda: ch.read(ro), lambda: ch.read(ro, 0),
                     lambda: ch.read([ByteBuffer.allocate(2), ro])):
            with pytest.raises(IllegalArgumentError):
                call()
        with pytest.raises(IllegalArgumentError):  # even with no room, as Java
            ch.read(ByteBuffer.allocate(0).as_read_only_buffer())
        assert ro.position() == 0 and ch.position() == 0


@pytest.mark.parametrize("options", [(WRITE,), (APPEND,)], ids=["write", "append"])
def test_read_on_write_only_channel(data_path: Path, options: tuple[OpenOption, ...]) -> None:
    with FileChannel.open(data_path, *options) as ch:
        dst = ByteBuffer.allocate(4)
        for call in thunks(lambda: ch.read(dst), lambda: ch.read(dst, 0), lambda: ch.read([dst])):
            with pytest.raises(NonReadableChannelError):
                call()
        assert dst.position() == 0


def test_scatter_read_fills_buffers_in_order(data_path: Path) -> None:
    data = data_path.read_bytes()
    with FileChannel.open(data_path) as ch:
        ch.position(9988)  # 12 bytes left
        bufs = [ByteBuffer.allocate(4), ByteBuffer.allocate(0), ByteBuffer.allocate(5),
                ByteBuffer.allocate(6)]
        assert ch.read(bufs) == 12
        assert [b.position() for b in bufs] == [4, 0, 5, 3]
        assert b"".join(filled(b) for b in bufs) == data[9988:]
        assert ch.position() == 10_000
        assert ch.read(bufs) == -1
        assert [b.position() for b in bufs] == [4, 0, 5, 3]


def test_scatter_read_offset_and_length(data_path: Path) -> None:
    data = data_path.read_bytes()
    with FileChannel.open(data_path) as ch:
        bufs = [ByteBuffer.allocate(3) for _ in range(5)]
        assert ch.read(bufs, 1, 2) == 6
        assert [b.position() for b in bufs] == [0, 3, 3, 0, 0]
        assert filled(bufs[1]) + filled(bufs[2]) == data[:6]
        assert ch.read(bufs, 4) == 3  # offset to the end
        assert filled(bufs[4]) == data[6:9]
        assert ch.read(bufs, 0, 0) == 0
        assert ch.position() == 9


def test_scatter_gather_bad_offset_or_length(data_path: Path) -> None:
    """Java: IndexOutOfBoundsException("Range [3, 3 + 3) out of bounds for length 5")."""
    bufs = [ByteBuffer.allocate(3) for _ in range(5)]
    with FileChannel.open(data_path, READ, WRITE) as ch:
        for offset, length in [(-1, 1), (3, 3), (0, 6), (2, -1), (6, None)]:
            with pytest.raises(IndexOutOfBoundsError):
                ch.read(bufs, offset, length)
            with pytest.raises(IndexOutOfBoundsError):
                ch.write(bufs, offset, length)
        assert ch.position() == 0 and [b.position() for b in bufs] == [0] * 5


class Counting(Syscalls):
    """Records how many buffers each readv/writev was given."""

    def __init__(self) -> None:
        self.readv_sizes: list[int] = []
        self.writev_sizes: list[int] = []

    def readv(self, fd: int, bufs: Sequence[memoryview]) -> int:
        self.readv_sizes.append(len(bufs))
        return super().readv(fd, bufs)

    def writev(self, fd: int, bufs: Sequence[memoryview]) -> int:
        self.writev_sizes.append(len(bufs))
        return super().writev(fd, bufs)


def test_scatter_read_fills_at_most_iov_max_buffers_per_call(tmp_path: Path) -> None:
    """As Java's IOUtil: at most IOV_MAX buffers *with room* per readv.

    Java 17, 1500 two-byte buffers over a 4000-byte file: 2048, then 952, then 0.
    """
    assert IOV_MAX == 1024
    data = pattern(4000)
    path = make_file(tmp_path, data)
    bufs = [ByteBuffer.allocate(2) for _ in range(1500)]
    layer = Counting()
    with FileChannel.open(path) as ch, _syscalls.override(layer):
        assert ch.read(bufs) == 2 * IOV_MAX
        assert [b.position() for b in bufs] == [2] * IOV_MAX + [0] * (1500 - IOV_MAX)
        assert ch.position() == 2048
        assert b"".join(filled(b) for b in bufs[:IOV_MAX]) == data[:2048]
        # The next call goes on with the buffers that still have room.
        assert ch.read(bufs) == 952
        assert [b.position() for b in bufs] == [2] * 1500
        assert b"".join(filled(b) for b in bufs) == data[:3000]
        assert ch.position() == 3000
        assert ch.read(bufs) == 0  # every buffer full
    assert layer.readv_sizes == [IOV_MAX, 1500 - IOV_MAX]


def test_read_metrics(data_path: Path) -> None:
    with FileChannel.open(data_path) as ch, zcio.measure() as m:
        assert ch.read(ByteBuffer.allocate(300)) == 300
        assert ch.read(ByteBuffer.allocate(50), 9990) == 10
    stats = m.paths["file_read"]
    assert (stats.operations, stats.syscalls, stats.user_bytes) == (2, 2, 310)


# -- writing -------------------------------------------------------------------------------


@pytest.fixture
def empty_path(tmp_path: Path) -> Path:
    return make_file(tmp_path, b"", "out.bin")


def test_relative_write_matches_os_pread(empty_path: Path) -> None:
    with FileChannel.open(empty_path, READ, WRITE) as ch, raw_fd(empty_path) as fd:
        src = wrap(pattern(5000))
        assert ch.write(src) == 5000
        assert src.position() == 5000 == src.limit()
        assert ch.position() == 5000 == file_offset(ch)
        assert os.pread(fd, 6000, 0) == pattern(5000)
        part = wrap(b"0123456789")
        part.position(2).limit(5)
        assert ch.write(part) == 3
        assert part.position() == 5
        assert ch.position() == 5003 == ch.size() == os.fstat(fd).st_size
        assert os.pread(fd, 10, 4998) == pattern(5000)[4998:] + b"234"
        assert ch.write(part) == 0  # nothing remaining
        assert ch.position() == 5003


def test_write_from_direct_buffer(empty_path: Path) -> None:
    with FileChannel.open(empty_path, WRITE) as ch, ByteBuffer.allocate_direct(100) as src:
        src.put(pattern(100)).flip()
        assert ch.write(src) == 100
        assert src.position() == 100
    assert empty_path.read_bytes() == pattern(100)


def test_positional_write_leaves_the_position_and_grows_with_a_hole(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"0123456789")
    with FileChannel.open(path, READ, WRITE) as ch, raw_fd(path) as fd:
        ch.position(3)
        src = wrap(b"abc")
        assert ch.write(src, 5) == 3
        assert src.position() == 3
        assert ch.position() == 3 == file_offset(ch)
        assert os.pread(fd, 100, 0) == b"01234abc89"
        far = wrap(b"tail")
        assert ch.write(far, 100_000) == 4
        assert ch.position() == 3
        assert ch.size() == 100_004 == os.fstat(fd).st_size
        assert os.pread(fd, 100_000 - 10, 10) == bytes(100_000 - 10)  # the hole reads zeros
        assert os.pread(fd, 10, 100_000) == b"tail"
        with pytest.raises(IllegalArgumentError):
            ch.write(wrap(b"x"), -1)
        assert ch.write(wrap(b""), 7) == 0


def test_gather_write_with_offset_and_length(empty_path: Path) -> None:
    with FileChannel.open(empty_path, WRITE) as ch:
        a, b, c, d = wrap(b"AAAA"), wrap(b""), wrap(b"0123456"), wrap(b"zz")
        c.position(1).limit(5)
        assert ch.write([a, b, c, d], 0, 3) == 8
        assert [x.position() for x in (a, b, c, d)] == [4, 0, 5, 0]
        assert ch.position() == 8
        assert ch.write([a, b, c, d], 3) == 2
        assert d.position() == 2
        assert ch.write([a, b, c, d]) == 0  # nothing left anywhere
    assert empty_path.read_bytes() == b"AAAA1234zz"


def test_gather_write_of_more_than_iov_max_buffers_writes_all(empty_path: Path) -> None:
    srcs = [wrap(pattern(3, seed=i)) for i in range(1500)]
    layer = Counting()
    with FileChannel.open(empty_path, WRITE) as ch, _syscalls.override(layer), \
            zcio.measure() as m:
        assert ch.write(srcs) == 4500
        assert all(s.position() == 3 for s in srcs)
        assert ch.position() == 4500
    assert layer.writev_sizes == [IOV_MAX, 1500 - IOV_MAX]
    assert empty_path.read_bytes() == b"".join(pattern(3, seed=i) for i in range(1500))
    assert (m.paths["file_write"].syscalls, m.paths["file_write"].user_bytes) == (2, 4500)


@pytest.mark.parametrize("options", [(), (READ,)], ids=["default", "read"])
def test_write_on_read_only_channel(tmp_path: Path, options: tuple[OpenOption, ...]) -> None:
    path = make_file(tmp_path, b"0123")
    with FileChannel.open(path, *options) as ch:
        src = wrap(b"xy")
        for call in thunks(lambda: ch.write(src), lambda: ch.write(src, 0),
                     lambda: ch.write([src]), lambda: ch.truncate(1)):
            with pytest.raises(NonWritableChannelError):
                call()
        assert src.position() == 0
    assert path.read_bytes() == b"0123"


def test_append_mode_writes_at_the_end(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"0123456789")
    with FileChannel.open(path, APPEND) as ch:
        assert ch.position() == 10  # the size, in append mode
        assert ch.write(wrap(b"ab")) == 2
        assert ch.position() == 12 == ch.size()
        ch.position(3)  # allowed, but the next write still goes to the end
        assert ch.position() == 12
        assert ch.write(wrap(b"cd")) == 2
        assert ch.write([wrap(b"e"), wrap(b"f")]) == 2
        assert ch.position() == 16
        assert ch.write(wrap(b"gh"), 0) == 2  # Linux appends a pwrite on O_APPEND too
        assert ch.size() == 18
    assert path.read_bytes() == b"0123456789abcdefgh"


def test_position_get_set_and_past_the_end(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"0123456789")
    with FileChannel.open(path, READ, WRITE) as ch, raw_fd(path) as fd:
        assert ch.position() == 0
        assert ch.position(4) is ch
        assert ch.position() == 4 == file_offset(ch)
        dst = ByteBuffer.allocate(2)
        assert ch.read(dst) == 2 and filled(dst) == b"45"
        ch.position(20)  # past the end: allowed, the file does not change
        assert ch.position() == 20 and ch.size() == 10
        assert ch.read(ByteBuffer.allocate(2)) == -1
        assert ch.write(wrap(b"X")) == 1  # grows the file, a hole between
        assert ch.position() == 21 and ch.size() == 21
        assert os.pread(fd, 100, 0) == b"0123456789" + bytes(10) + b"X"
        with pytest.raises(IllegalArgumentError):
            ch.position(-1)
        assert ch.position() == 21


def test_size_follows_the_file(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"12345")
    with FileChannel.open(path, WRITE) as ch:
        assert ch.size() == 5 == os.fstat(ch.fileno()).st_size
        os.truncate(path, 2)  # changed behind the channel's back
        assert ch.size() == 2
        ch.write(wrap(b"abcdefgh"), 10)
        assert ch.size() == 18 == path.stat().st_size


def test_truncate_rules(tmp_path: Path) -> None:
    """Java 17: smaller cuts and clamps the position; larger leaves file and position."""
    path = make_file(tmp_path, b"0123456789")
    with FileChannel.open(path, READ, WRITE) as ch:
        ch.position(8)
        assert ch.truncate(3) is ch
        assert ch.size() == 3 and ch.position() == 3 == file_offset(ch)
        assert path.read_bytes() == b"012"
        ch.position(20)
        ch.truncate(100)
        assert ch.size() == 3 and ch.position() == 20  # larger: the file stays alone
        ch.position(1)
        ch.truncate(2)
        assert ch.size() == 2 and ch.position() == 1  # position inside: unchanged
        ch.position(5)
        ch.truncate(2)
        assert ch.position() == 2  # same size, position past it: clamped
        with pytest.raises(IllegalArgumentError):
            ch.truncate(-1)
        assert ch.size() == 2
        ch.truncate(0)
        assert ch.size() == 0 and ch.position() == 0


@pytest.mark.parametrize(
    ("options", "call"),
    [
        ((READ,), lambda ch: ch.truncate(-1)),
        ((WRITE,), lambda ch: ch.read(ByteBuffer.allocate(4), -1)),
        ((READ,), lambda ch: ch.map(MapMode.READ_WRITE, -1, 10)),
    ],
    ids=["truncate-on-read-only", "read-at-on-write-only", "map-rw-on-read-only"],
)
def test_argument_checks_come_before_mode_checks(
    tmp_path: Path, options: tuple[OpenOption, ...], call: Callable[[FileChannel], Any]
) -> None:
    """Java 17 (checked on OpenJDK 17.0.15) throws IllegalArgumentException here first:
    "Negative size" / "Negative position", not NonWritable/NonReadableChannelException.
    """
    path = make_file(tmp_path, b"0123456789")
    with FileChannel.open(path, *options) as ch, pytest.raises(IllegalArgumentError):
        call(ch)


@pytest.mark.parametrize("options", [(READ,), (WRITE,), (READ, WRITE)])
def test_force_runs_with_and_without_metadata(
    tmp_path: Path, options: tuple[OpenOption, ...]
) -> None:
    path = make_file(tmp_path, b"abc")
    with FileChannel.open(path, *options) as ch:
        if ch.is_writable():
            ch.write(wrap(b"XY"), 1)
        ch.force()
        ch.force(True)
        ch.force(False)
    assert path.read_bytes() == (b"aXY" if WRITE in options else b"abc")


# -- closing -------------------------------------------------------------------------------

CLOSED_CALLS: dict[str, Callable[[FileChannel], Any]] = {
    "fileno": lambda ch: ch.fileno(),
    "read": lambda ch: ch.read(ByteBuffer.allocate(1)),
    "read-at": lambda ch: ch.read(ByteBuffer.allocate(1), 0),
    "read-read-only-dst": lambda ch: ch.read(ByteBuffer.allocate(1).as_read_only_buffer()),
    "scatter": lambda ch: ch.read([ByteBuffer.allocate(1)]),
    "write": lambda ch: ch.write(wrap(b"x")),
    "write-at": lambda ch: ch.write(wrap(b"x"), 0),
    "gather": lambda ch: ch.write([wrap(b"x")]),
    "position": lambda ch: ch.position(),
    "set-position": lambda ch: ch.position(0),
    "set-position-negative": lambda ch: ch.position(-1),
    "size": lambda ch: ch.size(),
    "truncate": lambda ch: ch.truncate(0),
    "truncate-negative": lambda ch: ch.truncate(-1),
    "force": lambda ch: ch.force(),
    "force-data": lambda ch: ch.force(False),
    "lock": lambda ch: ch.lock(),
    "try-lock": lambda ch: ch.try_lock(0, 1, True),
    "map": lambda ch: ch.map(MapMode.READ_ONLY, 0, 1),
    "map-negative": lambda ch: ch.map(MapMode.READ_ONLY, -1, 1),
    "dio-alignment": lambda ch: ch.dio_alignment(),
}


def test_negative_position_is_checked_even_before_closed(tmp_path: Path) -> None:
    """JDK 17 checks a positional read's or write's position before ensureOpen()
    (checked with a Java program: both raise IllegalArgumentException when closed)."""
    ch = FileChannel.open(make_file(tmp_path, b"abc"), READ, WRITE)
    ch.close()
    with pytest.raises(zcio.IllegalArgumentError):
        ch.read(ByteBuffer.allocate(1), -1)
    with pytest.raises(zcio.IllegalArgumentError):
        ch.write(wrap(b"x"), -1)


@pytest.mark.parametrize("options", [(READ,), (READ, WRITE)], ids=["r", "rw"])
@pytest.mark.parametrize("name", list(CLOSED_CALLS))
def test_every_call_after_close_raises_closed_channel(
    tmp_path: Path, name: str, options: tuple[OpenOption, ...]
) -> None:
    """Java checks ensureOpen() before the argument and mode checks."""
    path = make_file(tmp_path, b"0123")
    ch = FileChannel.open(path, *options)
    ch.close()
    assert not ch.is_open()
    with pytest.raises(ClosedChannelError) as info:
        CLOSED_CALLS[name](ch)
    assert isinstance(info.value, OSError)
    assert path.read_bytes() == b"0123"


def test_close_is_idempotent_and_closes_the_descriptor(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x")
    ch = FileChannel.open(path)
    fd = ch.fileno()
    assert ch.is_open() and fd_is_open(fd)
    ch.close()
    assert not fd_is_open(fd)
    ch.close()
    assert not ch.is_open()
    assert "closed" in repr(ch)


def test_garbage_collected_open_channel_warns_and_closes(tmp_path: Path) -> None:
    path = make_file(tmp_path, b"x")
    ch = FileChannel.open(path)
    fd = ch.fileno()
    with pytest.warns(ResourceWarning, match="unclosed"):
        del ch
        gc.collect()
    assert not fd_is_open(fd)


def test_garbage_collected_channel_closes_even_when_the_warning_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As Python files do: the descriptor is closed whatever the warning filter does.

    The ``_channel`` docstring promises "closes itself and warns, as files do"; a file
    object closes its descriptor even under ``-W error::ResourceWarning`` (the warning
    becomes an unraisable exception, the close still happens).
    """
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    path = make_file(tmp_path, b"x")
    ch = FileChannel.open(path)
    fd = ch.fileno()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            del ch
            gc.collect()
        assert [type(u.exc_value) for u in unraisable] == [ResourceWarning]
        assert not fd_is_open(fd), "the descriptor leaked when the warning was an error"
    finally:
        if fd_is_open(fd):
            os.close(fd)  # so the leak shows here once, not again in the fixture


# -- fault injection -------------------------------------------------------------------------


class ShortWritevOnce(Syscalls):
    """The first writev takes only ``take`` bytes; later calls are real."""

    def __init__(self, take: int) -> None:
        self.take: int | None = take
        self.calls = 0

    def writev(self, fd: int, bufs: Sequence[memoryview]) -> int:
        self.calls += 1
        if self.take is not None:
            data, self.take = b"".join(bytes(b) for b in bufs)[: self.take], None
            return os.write(fd, data)
        return super().writev(fd, bufs)


class InterruptOnce(Syscalls):
    """The first writev/readv raises EINTR without moving anything."""

    def __init__(self) -> None:
        self.writev_calls = 0
        self.readv_calls = 0

    def writev(self, fd: int, bufs: Sequence[memoryview]) -> int:
        self.writev_calls += 1
        if self.writev_calls == 1:
            raise InterruptedError(errno.EINTR, "Interrupted system call")
        return super().writev(fd, bufs)

    def readv(self, fd: int, bufs: Sequence[memoryview]) -> int:
        self.readv_calls += 1
        if self.readv_calls == 1:
            raise InterruptedError(errno.EINTR, "Interrupted system call")
        return super().readv(fd, bufs)


class NoSpaceAfter(Syscalls):
    """writev/write succeed ``ok`` times, then fail with ENOSPC for good."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.calls = 0

    def _fail(self) -> bool:
        self.calls += 1
        return self.calls > self.ok

    def writev(self, fd: int, bufs: Sequence[memoryview]) -> int:
        if self._fail():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().writev(fd, bufs)

    def write(self, fd: int, buf: memoryview) -> int:
        if self._fail():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(fd, buf)


def test_short_gather_write_advances_exactly_what_the_kernel_took(empty_path: Path) -> None:
    srcs = [wrap(b"ab"), wrap(b"cdef"), wrap(b"gh")]
    layer = ShortWritevOnce(take=3)
    with FileChannel.open(empty_path, WRITE) as ch, _syscalls.override(layer):
        assert ch.write(srcs) == 3
        assert [s.position() for s in srcs] == [2, 1, 0]
        assert ch.position() == 3
        assert empty_path.read_bytes() == b"abc"
        assert ch.write(srcs) == 5  # the rest, nothing lost or repeated
        assert [s.position() for s in srcs] == [2, 4, 2]
    assert layer.calls == 2
    assert empty_path.read_bytes() == b"abcdefgh"


def test_short_single_write_advances_exactly_what_the_kernel_took(empty_path: Path) -> None:
    class ShortWrite(Syscalls):
        def write(self, fd: int, buf: memoryview) -> int:
            return os.write(fd, bytes(buf[:3]))

    src = wrap(b"0123456789")
    with FileChannel.open(empty_path, WRITE) as ch, _syscalls.override(ShortWrite()):
        assert ch.write(src) == 3
        assert src.position() == 3 and ch.position() == 3
    assert empty_path.read_bytes() == b"012"


def test_eintr_in_gather_write_is_retried_and_written_once(empty_path: Path) -> None:
    srcs = [wrap(b"hello "), wrap(b"world")]
    layer = InterruptOnce()
    with FileChannel.open(empty_path, WRITE) as ch, _syscalls.override(layer):
        assert ch.write(srcs) == 11
        assert [s.position() for s in srcs] == [6, 5]
        assert ch.position() == 11
    assert layer.writev_calls == 2
    assert empty_path.read_bytes() == b"hello world"


def test_eintr_in_scatter_read_is_retried(data_path: Path) -> None:
    bufs = [ByteBuffer.allocate(5), ByteBuffer.allocate(5)]
    layer = InterruptOnce()
    with FileChannel.open(data_path) as ch, _syscalls.override(layer):
        assert ch.read(bufs) == 10
        assert ch.position() == 10
    assert layer.readv_calls == 2
    assert filled(bufs[0]) + filled(bufs[1]) == data_path.read_bytes()[:10]


def test_enospc_on_the_first_chunk_raises_and_moves_nothing(empty_path: Path) -> None:
    srcs = [wrap(b"abc"), wrap(b"def")]
    single = wrap(b"xyz")
    with FileChannel.open(empty_path, WRITE) as ch, _syscalls.override(NoSpaceAfter(ok=0)):
        with pytest.raises(OSError) as info:
            ch.write(srcs)
        assert info.value.errno == errno.ENOSPC
        assert not isinstance(info.value, zcio.ZcioError)  # the builtin OSError
        assert [s.position() for s in srcs] == [0, 0]
        with pytest.raises(OSError) as info:
            ch.write(single)
        assert info.value.errno == errno.ENOSPC
        assert single.position() == 0
        assert ch.position() == 0 and ch.size() == 0


def test_enospc_on_the_second_iov_max_chunk_returns_the_first_chunk(empty_path: Path) -> None:
    srcs = [wrap(pattern(2, seed=i)) for i in range(1500)]
    with FileChannel.open(empty_path, WRITE) as ch, _syscalls.override(NoSpaceAfter(ok=1)):
        assert ch.write(srcs) == 2 * IOV_MAX
        assert [s.position() for s in srcs] == [2] * IOV_MAX + [0] * (1500 - IOV_MAX)
        assert ch.position() == 2048 == ch.size()
        with pytest.raises(OSError) as info:  # the error comes again on the next call
            ch.write(srcs)
        assert info.value.errno == errno.ENOSPC
        assert [s.position() for s in srcs] == [2] * IOV_MAX + [0] * (1500 - IOV_MAX)
        assert ch.position() == 2048
    assert empty_path.read_bytes() == b"".join(pattern(2, seed=i) for i in range(IOV_MAX))


# -- O_DIRECT ----------------------------------------------------------------------------------


@pytest.fixture
def direct_channel(tmp_path: Path) -> Iterator[FileChannel]:
    path = tmp_path / "direct.bin"
    try:
        ch = FileChannel.open(path, READ, WRITE, CREATE, OpenOption.DIRECT)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        pytest.skip(f"the file system under {tmp_path} refuses O_DIRECT (EINVAL at open)")
    with ch:
        yield ch


def heap_address(buf: ByteBuffer) -> int:
    array = buf.array()
    return ctypes.addressof(ctypes.c_char.from_buffer(array)) + buf.array_offset()


def test_direct_flag_and_alignment(direct_channel: FileChannel) -> None:
    ch = direct_channel
    assert ch.is_direct()
    assert fcntl.fcntl(ch.fileno(), fcntl.F_GETFL) & os.O_DIRECT
    mem_align, off_align, source = ch.dio_alignment()
    for n in (mem_align, off_align):
        assert n >= 1 and n & (n - 1) == 0 and n <= 65536
    if source.startswith("st_blksize"):
        assert mem_align == off_align == os.fstat(ch.fileno()).st_blksize
    else:
        assert source == "statx(STATX_DIOALIGN)"
    assert ch.dio_alignment() == (mem_align, off_align, source)


def test_direct_refuses_a_misaligned_heap_buffer(direct_channel: FileChannel) -> None:
    ch = direct_channel
    mem_align, off_align, _ = ch.dio_alignment()
    assert mem_align > 1, "nothing can be misaligned in memory"
    buf = ByteBuffer.allocate(2 * off_align + mem_align)
    start = 1 if heap_address(buf) % mem_align == 0 else 0
    buf.position(start).limit(start + off_align)
    for call in thunks(lambda: ch.write(buf), lambda: ch.write(buf, 0), lambda: ch.write([buf]),
                 lambda: ch.read(buf), lambda: ch.read(buf, 0), lambda: ch.read([buf])):
        with pytest.raises(AlignmentError, match=f"aligned to {mem_align}"):
            call()
    assert buf.position() == start and ch.position() == 0 and ch.size() == 0


def test_direct_refuses_unaligned_position_and_length(direct_channel: FileChannel) -> None:
    ch = direct_channel
    mem_align, off_align, source = ch.dio_alignment()
    with ByteBuffer.allocate_direct(4 * off_align + mem_align) as raw:
        buf = raw.aligned_slice(mem_align)
        buf.limit(off_align)
        with pytest.raises(AlignmentError, match=f"multiple of {off_align}") as info:
            ch.write(buf, off_align // 2 or 1)
        assert isinstance(info.value, IllegalArgumentError)
        assert source in str(info.value)
        with pytest.raises(AlignmentError, match=f"multiple of {off_align}"):
            ch.read(buf, 1)
        ch.position(1)
        with pytest.raises(AlignmentError, match="position 1 "):
            ch.write(buf)
        ch.position(0)
        buf.limit(off_align + 1)
        with pytest.raises(AlignmentError, match=f"length {off_align + 1} "):
            ch.write(buf)
        with pytest.raises(AlignmentError, match=f"length {off_align + 1} "):
            ch.read(buf, 0)
        assert buf.position() == 0 and ch.size() == 0


def test_direct_aligned_buffers_round_trip(direct_channel: FileChannel, tmp_path: Path) -> None:
    ch = direct_channel
    mem_align, off_align, _ = ch.dio_alignment()
    n = 4 * off_align
    data = pattern(n, seed=9)
    with ByteBuffer.allocate_direct(n + mem_align) as raw_src, \
            ByteBuffer.allocate_direct(n + mem_align) as raw_dst:
        src = raw_src.aligned_slice(mem_align)
        src.limit(n)
        assert src.address() % mem_align == 0
        src.put(data).flip()
        assert ch.write(src) == n  # relative, at 0
        assert ch.position() == n
        src.rewind()
        assert ch.write(src, 2 * n) == n  # positional, leaving a hole
        src.rewind().limit(off_align)
        rest = src.duplicate().limit(2 * off_align).position(off_align).slice()
        assert rest.address() % mem_align == 0
        assert ch.write([src, rest]) == 2 * off_align  # gather, after the first write
        with raw_fd(tmp_path / "direct.bin") as fd:
            on_disk = os.pread(fd, 4 * n, 0)
        assert on_disk == data + data[: 2 * off_align] + bytes(n - 2 * off_align) + data

        dst = raw_dst.aligned_slice(mem_align)
        dst.limit(n)
        assert ch.read(dst, 2 * n) == n
        assert filled(dst) == data
        dst.clear().limit(n)
        ch.position(0)
        assert ch.read(dst) == n and filled(dst) == data
        assert ch.position() == n
