"""FileChannel.map and MappedByteBuffer, checked against os.pread on the same file.

Covers the three modes, unaligned positions, growing the file, the Java argument and
channel-mode checks, load/is_loaded/force, the ``mapped`` pool's accounting through
release, garbage collection, slices and user memoryviews, and (in a subprocess) the
SIGBUS that touching a truncated mapping raises, caught as MappedRegionError (the
other access kinds are in test_mapped_guard.py).
"""

from __future__ import annotations

import errno
import gc
import os
import select
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import zcio
from faults import Faults
from zcio import (
    ByteBuffer,
    ClosedChannelError,
    FileChannel,
    IllegalArgumentError,
    IndexOutOfBoundsError,
    MapMode,
    MappedByteBuffer,
    NonReadableChannelError,
    NonWritableChannelError,
    OpenOption,
    ReadOnlyBufferError,
    ReleasedBufferError,
    _guard,
    _mapped,
    _syscalls,
)

READ, WRITE, APPEND = OpenOption.READ, OpenOption.WRITE, OpenOption.APPEND
PAGE = os.sysconf("SC_PAGE_SIZE")


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that differ from their neighbours, so misplaced bytes show."""
    return bytes((i * 7 + seed + i // 251) & 0xFF for i in range(n))


def thunks(*calls: Callable[[], object]) -> tuple[Callable[[], object], ...]:
    """Calls to try one by one (typed, so each lambda is checked)."""
    return calls


def pages(n: int) -> int:
    return -(-n // PAGE) * PAGE


def mapped_pool() -> tuple[int, int, int]:
    (pool,) = [p for p in zcio.buffer_pools() if p.name == "mapped"]
    return pool.count, pool.total_capacity, pool.memory_used


def pread(path: Path, n: int, offset: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, n, offset)
    finally:
        os.close(fd)


DATA = pattern(5 * PAGE + 321, seed=11)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "mapped.bin"
    p.write_bytes(DATA)
    return p


@pytest.fixture
def rw(path: Path) -> Iterator[FileChannel]:
    with FileChannel.open(path, READ, WRITE) as ch:
        yield ch


@pytest.fixture
def ro(path: Path) -> Iterator[FileChannel]:
    with FileChannel.open(path, READ) as ch:
        yield ch


# -- the three modes -----------------------------------------------------------------------


def test_read_only_mapping(ro: FileChannel, path: Path) -> None:
    with ro.map(MapMode.READ_ONLY, 0, len(DATA)) as buf:
        assert isinstance(buf, MappedByteBuffer)
        assert buf.mode() is MapMode.READ_ONLY
        assert buf.is_direct() and buf.is_read_only()
        assert (buf.position(), buf.limit(), buf.capacity()) == (0, len(DATA), len(DATA))
        assert bytes(buf) == DATA == pread(path, len(DATA), 0)
        assert buf.get(PAGE + 5) == DATA[PAGE + 5]
        assert buf.get_int(100) == struct.unpack_from(">i", DATA, 100)[0]
        for call in thunks(lambda: buf.put(0, 1), lambda: buf.put(b"xx"),
                           lambda: buf.put_int(0, 7)):
            with pytest.raises(ReadOnlyBufferError):
                call()
        mv = buf.memoryview()
        assert mv.readonly
        with pytest.raises(TypeError):
            mv[0] = 1
        mv.release()
        assert buf.force() is buf  # nothing to write: a no-op
    assert path.read_bytes() == DATA


def test_read_write_mapping_reaches_the_file(rw: FileChannel, path: Path) -> None:
    with rw.map(MapMode.READ_WRITE, 0, len(DATA)) as buf:
        assert buf.mode() is MapMode.READ_WRITE and not buf.is_read_only()
        buf.put(10, 0xAB)
        buf.put_int(PAGE * 3 + 1, 0x01020304)
        mv = buf.memoryview()
        mv[PAGE * 4 : PAGE * 4 + 3] = b"xyz"
        mv.release()
        # MAP_SHARED: another reader sees the change at once, before any msync.
        assert pread(path, 1, 10) == b"\xab"
        assert pread(path, 4, PAGE * 3 + 1) == b"\x01\x02\x03\x04"
        assert pread(path, 3, PAGE * 4) == b"xyz"
        assert buf.force() is buf
        assert buf.force(PAGE * 3 + 1, 4) is buf
        assert buf.force(len(DATA) - 1, 1) is buf
        assert buf.force(len(DATA), 0) is buf
        dst = ByteBuffer.allocate(3)
        assert rw.read(dst, PAGE * 4) == 3 and bytes(dst.flip()) == b"xyz"
    expected = bytearray(DATA)
    expected[10] = 0xAB
    expected[PAGE * 3 + 1 : PAGE * 3 + 5] = b"\x01\x02\x03\x04"
    expected[PAGE * 4 : PAGE * 4 + 3] = b"xyz"
    assert path.read_bytes() == bytes(expected)


def test_private_mapping_never_reaches_the_file(rw: FileChannel, path: Path) -> None:
    with rw.map(MapMode.PRIVATE, 0, len(DATA)) as priv, \
            rw.map(MapMode.READ_ONLY, 0, len(DATA)) as other:
        assert priv.mode() is MapMode.PRIVATE and not priv.is_read_only()
        priv.put(0, b"private!")
        priv.put(PAGE * 2, 0xFF)
        assert priv.get(0, bytearray(8)) is priv
        assert bytes(priv.duplicate().limit(8)) == b"private!"
        assert priv.force() is priv  # nothing to write: a no-op
        assert bytes(other) == DATA  # another mapping sees the original
        assert pread(path, len(DATA), 0) == DATA
    assert path.read_bytes() == DATA


@pytest.mark.parametrize("mode", list(MapMode), ids=lambda m: m.value)
@pytest.mark.parametrize(
    ("position", "size"),
    [(0, 1), (1, 100), (PAGE - 1, 2), (PAGE, PAGE), (PAGE + 1, 5000), (12345, 7000),
     (len(DATA) - 1, 1), (len(DATA), 0)],
)
def test_unaligned_positions_give_the_right_bytes(
    rw: FileChannel, path: Path, mode: MapMode, position: int, size: int
) -> None:
    with rw.map(mode, position, size) as buf:
        assert buf.capacity() == size
        assert bytes(buf) == DATA[position : position + size]
        if size and mode is MapMode.READ_WRITE:
            buf.put(size - 1, 0x5A)  # the last byte lands at the right file offset
            assert pread(path, 1, position + size - 1) == b"\x5a"
    assert rw.size() == len(DATA)


def test_unaligned_offset_counts_in_memory_used(rw: FileChannel) -> None:
    assert mapped_pool() == (0, 0, 0)
    position, size = 12345, PAGE - 6  # the offset pushes it onto a second page
    a = rw.map(MapMode.READ_ONLY, position, size)
    assert mapped_pool() == (1, size, pages(size + position % PAGE))
    b = rw.map(MapMode.READ_WRITE, PAGE, 3 * PAGE)
    assert mapped_pool() == (2, size + 3 * PAGE, pages(size + position % PAGE) + 3 * PAGE)
    a.release()
    assert mapped_pool() == (1, 3 * PAGE, 3 * PAGE)
    b.release()
    assert mapped_pool() == (0, 0, 0)


def test_size_zero_mapping(rw: FileChannel) -> None:
    with rw.map(MapMode.READ_WRITE, 7, 0) as buf:
        assert isinstance(buf, MappedByteBuffer)
        assert (buf.capacity(), buf.remaining(), bytes(buf)) == (0, 0, b"")
        _, capacity, used = mapped_pool()
        assert (capacity, used) == (0, 0)
        assert buf.load() is buf and buf.is_loaded()
        assert buf.force() is buf
        with pytest.raises(IndexOutOfBoundsError):
            buf.force(0, 1)
    assert mapped_pool() == (0, 0, 0)
    assert rw.size() == len(DATA)


def test_size_zero_mapping_past_the_end(tmp_path: Path) -> None:
    """Java 17 (OpenJDK 17.0.15) extends the file to position + size even when size is 0,
    and a read-only channel refuses with "Channel not open for writing - cannot extend
    file to required size".
    """
    path = tmp_path / "small.bin"
    path.write_bytes(b"0123456789")
    with FileChannel.open(path, READ) as ch, pytest.raises(OSError):
        ch.map(MapMode.READ_ONLY, 100, 0)
    with FileChannel.open(path, READ, WRITE) as ch, ch.map(MapMode.READ_WRITE, 5000, 0):
        assert ch.size() == 5000


# -- growing the file ------------------------------------------------------------------------


@pytest.mark.parametrize("reserve", [False, True], ids=["sparse", "reserve"])
@pytest.mark.parametrize("mode", list(MapMode), ids=lambda m: m.value)
def test_mapping_past_the_end_grows(tmp_path: Path, mode: MapMode, reserve: bool) -> None:
    path = tmp_path / "grow.bin"
    path.write_bytes(b"head")
    end = 3 * PAGE + 10
    with FileChannel.open(path, READ, WRITE) as ch, \
            ch.map(mode, PAGE + 3, end - PAGE - 3, reserve=reserve) as buf:
        assert ch.size() == end == os.stat(path).st_size
        assert buf.reserved() is reserve  # ext4 can fallocate
        blocks = os.stat(path).st_blocks * 512
        if reserve:  # the mapped part past the old end: [PAGE + 3, end)
            assert blocks >= pages(end) - PAGE, "blocks were not allocated"
        else:
            assert blocks <= PAGE, "a sparse grow allocated blocks"
        assert bytes(buf) == bytes(end - PAGE - 3)  # the grown part reads zeros
        if mode is not MapMode.READ_ONLY:
            buf.put(buf.capacity() - 1, 0x77)
            buf.force()
    data = path.read_bytes()
    assert data[:4] == b"head" and len(data) == end
    assert data[-1] == (0x77 if mode is MapMode.READ_WRITE else 0)


@pytest.mark.parametrize("reserve", [False, True], ids=["sparse", "reserve"])
def test_mapping_far_past_the_end_does_not_fill_the_gap(tmp_path: Path, reserve: bool) -> None:
    """Issue 9, item 4: 4 KiB mapped at 1 GiB of an empty file took 1 GiB of disk
    (fallocate from the old end).  Java grows the file sparse; reserving covers the
    mapped range only."""
    path = tmp_path / "far.bin"
    path.touch()
    with FileChannel.open(path, READ, WRITE) as ch, \
            ch.map(MapMode.READ_WRITE, 1 << 30, PAGE, reserve=reserve) as buf:
        assert ch.size() == (1 << 30) + PAGE
        assert os.stat(path).st_blocks * 512 <= (PAGE if reserve else 0) + (64 << 10)
        buf.put(0, 1)


@pytest.mark.parametrize("where", ["fallocate", "mmap"])
def test_failed_map_leaves_size_and_blocks(tmp_path: Path, where: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A map that fails after growing the file (ENOSPC half way through fallocate, or an
    mmap refused) cuts it back: size and blocks as before (Java leaves it grown)."""
    path = tmp_path / "fail.bin"
    path.write_bytes(b"x" * 100)
    before = os.stat(path)

    def half_then_enospc(real: Callable[..., None], fd: int, offset: int, length: int,
                         mode: int = 0) -> None:
        real(fd, offset, length // 2, mode)
        raise OSError(errno.ENOSPC, "No space left on device")

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    layer = Faults({"fallocate": [half_then_enospc] if where == "fallocate" else []})
    if where == "mmap":
        monkeypatch.setattr(_mapped.mmap, "mmap", refuse)
    with _syscalls.override(layer), FileChannel.open(path, READ, WRITE) as ch:
        with pytest.raises(OSError) as info:
            ch.map(MapMode.READ_WRITE, 50, 1 << 20, reserve=True)
        assert info.value.errno == (errno.ENOSPC if where == "fallocate" else errno.ENOMEM)
        assert ch.size() == 100
    after = os.stat(path)
    assert (after.st_size, after.st_blocks) == (before.st_size, before.st_blocks)
    assert path.read_bytes() == b"x" * 100
    assert mapped_pool() == (0, 0, 0)


def test_overflowing_end_is_an_argument_error(path: Path) -> None:
    """position + size past 2**63 - 1: IllegalArgumentError before any syscall, as Java's
    "Position + size overflow" (it was an OSError from fallocate)."""
    layer = Faults({})
    with FileChannel.open(path, READ, WRITE) as ch, _syscalls.override(layer):
        for position, size in [((1 << 63) - 10, 100), ((1 << 63) - 1, 1), (1 << 63, 0)]:
            with pytest.raises(IllegalArgumentError, match="overflow"):
                ch.map(MapMode.READ_ONLY, position, size)
        assert ch.size() == len(DATA)
    assert layer.calls == []


def test_mapping_past_the_end_from_read_only_channel(ro: FileChannel, path: Path) -> None:
    with pytest.raises(OSError) as info:
        ro.map(MapMode.READ_ONLY, len(DATA) - 10, 11)
    assert not isinstance(info.value, zcio.ZcioError)
    assert str(len(DATA)) in str(info.value)
    assert ro.size() == len(DATA) == path.stat().st_size
    assert mapped_pool() == (0, 0, 0)


# -- argument and channel checks ---------------------------------------------------------------


@pytest.mark.parametrize("mode", [MapMode.READ_WRITE, MapMode.PRIVATE], ids=lambda m: m.value)
def test_writable_modes_need_a_writable_channel(ro: FileChannel, mode: MapMode) -> None:
    with pytest.raises(NonWritableChannelError):
        ro.map(mode, 0, 10)
    assert mapped_pool() == (0, 0, 0)


@pytest.mark.parametrize("options", [(WRITE,), (APPEND,)], ids=["write", "append"])
@pytest.mark.parametrize("mode", list(MapMode), ids=lambda m: m.value)
def test_mapping_needs_a_readable_channel(
    path: Path, options: tuple[OpenOption, ...], mode: MapMode
) -> None:
    with FileChannel.open(path, *options) as ch, pytest.raises(NonReadableChannelError):
        ch.map(mode, 0, 10)


@pytest.mark.parametrize(("position", "size"), [(-1, 10), (0, -1), (-PAGE, -1)])
@pytest.mark.parametrize("mode", list(MapMode), ids=lambda m: m.value)
def test_negative_position_or_size(
    rw: FileChannel, mode: MapMode, position: int, size: int
) -> None:
    with pytest.raises(IllegalArgumentError):
        rw.map(mode, position, size)
    assert rw.size() == len(DATA)


def test_mode_must_be_a_map_mode(rw: FileChannel) -> None:
    with pytest.raises(TypeError):
        rw.map("READ_ONLY", 0, 1)  # type: ignore[arg-type]


def test_mapping_outlives_its_channel(path: Path) -> None:
    ch = FileChannel.open(path, READ, WRITE)
    buf = ch.map(MapMode.READ_WRITE, PAGE, 100)
    ch.close()
    with pytest.raises(ClosedChannelError):
        ch.map(MapMode.READ_ONLY, 0, 1)
    buf.put(0, 0x42)  # as Java: a mapping does not depend on the channel
    assert bytes(buf)[1:] == DATA[PAGE + 1 : PAGE + 100]
    buf.force()
    buf.release()
    assert pread(path, 1, PAGE) == b"\x42"


# -- load, is_loaded, force --------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MapMode), ids=lambda m: m.value)
def test_load_then_is_loaded(rw: FileChannel, mode: MapMode) -> None:
    with rw.map(mode, 123, len(DATA) - 123) as buf:
        assert buf.load() is buf
        assert buf.is_loaded()
        part = buf.slice(PAGE * 2, 10)
        assert isinstance(part, MappedByteBuffer)
        assert part.load() is part and part.is_loaded()


@pytest.mark.parametrize("mode", list(MapMode), ids=lambda m: m.value)
@pytest.mark.parametrize(("index", "length"), [(-1, 1), (0, -1), (0, 4 * PAGE + 1), (4 * PAGE, 1)])
def test_force_out_of_range(rw: FileChannel, mode: MapMode, index: int, length: int) -> None:
    """Java 17: IndexOutOfBoundsException for every mode, checked against the capacity."""
    with rw.map(mode, 1, 4 * PAGE) as buf:
        buf.limit(10)  # the limit does not matter
        assert buf.force(0, 4 * PAGE) is buf
        with pytest.raises(IndexOutOfBoundsError):
            buf.force(index, length)


# -- accounting and lifetime -------------------------------------------------------------------


def test_release_returns_the_pool_to_zero(rw: FileChannel) -> None:
    buf = rw.map(MapMode.READ_WRITE, 100, 2 * PAGE)
    assert mapped_pool() == (1, 2 * PAGE, 3 * PAGE)
    buf.release()
    assert mapped_pool() == (0, 0, 0)
    assert buf.is_released()
    for call in thunks(lambda: buf.get(0), lambda: bytes(buf), lambda: buf.load(),
                 lambda: buf.is_loaded(), lambda: buf.force(), lambda: buf.slice(),
                 lambda: buf.memoryview()):
        with pytest.raises(ReleasedBufferError):
            call()
    buf.release()  # idempotent
    assert mapped_pool() == (0, 0, 0)


def test_with_block_releases(rw: FileChannel) -> None:
    with rw.map(MapMode.READ_ONLY, 0, PAGE) as buf:
        assert mapped_pool() == (1, PAGE, PAGE)
    assert buf.is_released()
    assert mapped_pool() == (0, 0, 0)


def test_garbage_collection_returns_the_pool_to_zero(rw: FileChannel) -> None:
    buf = rw.map(MapMode.READ_ONLY, 5, 1000)
    assert mapped_pool() == (1, 1000, PAGE)
    del buf
    gc.collect()
    assert mapped_pool() == (0, 0, 0)


@pytest.mark.parametrize("mode", list(MapMode), ids=lambda m: m.value)
def test_slice_is_mapped_and_keeps_the_mapping_alive(rw: FileChannel, mode: MapMode) -> None:
    buf = rw.map(mode, 10, 3 * PAGE)
    part = buf.slice(PAGE, 50)
    assert isinstance(part, MappedByteBuffer)
    assert part.mode() is mode and part.is_read_only() is (mode is MapMode.READ_ONLY)
    for derived in (buf.duplicate(), buf.as_read_only_buffer(), buf.slice()):
        assert isinstance(derived, MappedByteBuffer)
    del buf, derived
    gc.collect()
    assert mapped_pool() == (1, 3 * PAGE, 4 * PAGE)  # the slice holds the mapping
    assert bytes(part) == DATA[10 + PAGE : 10 + PAGE + 50]
    del part
    gc.collect()
    assert mapped_pool() == (0, 0, 0)


def test_release_revokes_slices(rw: FileChannel) -> None:
    buf = rw.map(MapMode.READ_WRITE, 0, 2 * PAGE)
    part = buf.slice(100, 10)
    assert isinstance(part, MappedByteBuffer)
    dup = buf.duplicate()
    mv = part.memoryview()
    buf.release()
    assert mapped_pool() == (0, 0, 0)
    assert part.is_released() and dup.is_released()
    for call in thunks(lambda: part.get(0), lambda: part.put(0, 1), lambda: bytes(dup),
                 lambda: part.force()):
        with pytest.raises(ReleasedBufferError):
            call()
    with pytest.raises(ValueError):  # the view zcio handed out was revoked
        bytes(mv)


def test_user_sliced_memoryview_keeps_the_mapping_alive(rw: FileChannel) -> None:
    buf = rw.map(MapMode.READ_ONLY, 3, 2 * PAGE)
    mv = buf.memoryview()
    sub = mv[PAGE : PAGE + 16]  # exported further by the user: zcio cannot revoke it
    del mv
    buf.release()
    assert buf.is_released()
    gc.collect()
    assert mapped_pool() == (1, 2 * PAGE, 3 * PAGE)  # still mapped, still counted
    assert bytes(sub) == DATA[3 + PAGE : 3 + PAGE + 16]
    del sub
    gc.collect()
    assert mapped_pool() == (0, 0, 0)


# -- truncation under a mapping: SIGBUS ----------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys
    from zcio import FileChannel, MapMode, MappedRegionError
    path, page, index = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ch = FileChannel.open(path)
    buf = ch.map(MapMode.READ_ONLY, 0, 3 * page)
    print("mapped", buf.get(2 * page), flush=True)
    sys.stdin.readline()  # the parent truncates the file meanwhile
    print("touching", index, flush=True)
    try:
        value = buf.get(index)
    except MappedRegionError as e:
        print("error", e.errno, flush=True)
    else:
        print("read", value, flush=True)
    print("alive", buf.get(5), flush=True)
    """
)


def _run_truncated(path: Path, index: int) -> tuple[int, list[str]]:
    """Map 3 pages in a child, truncate the file to 1 page + 10 bytes, touch ``index``."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), str(PAGE), str(index)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        ready, _, _ = select.select([child.stdout], [], [], 10)
        assert ready, "the child did not map the file in time"
        first = child.stdout.readline().split()
        assert first == ["mapped", str(DATA[2 * PAGE])], child.stderr
        os.truncate(path, PAGE + 10)
        out, err = child.communicate("go\n", timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert "Traceback" not in err, err
    return child.returncode, out.split("\n")


@pytest.mark.skipif(not _guard.available(),
                    reason="the SIGBUS guard (zcio._native) is not in use here")
def test_touching_a_page_past_a_truncated_end_raises_mapped_region_error(path: Path) -> None:
    """Observed (Linux 6.x, ext4): after another process truncates the file to
    ``PAGE + 10`` bytes, reading byte ``2 * PAGE`` of a 3-page READ_ONLY mapping (a page
    wholly past the new end) makes the kernel send SIGBUS.  zcio's guard turns it into
    MappedRegionError (errno EFAULT); the child goes on and exits cleanly.
    """
    code, lines = _run_truncated(path, 2 * PAGE)
    assert code == 0
    assert f"touching {2 * PAGE}" in lines
    assert f"error {errno.EFAULT}" in lines
    assert f"alive {DATA[5]}" in lines
    assert not any(line.startswith("read") for line in lines)


@pytest.mark.parametrize(
    ("index", "expected"),
    [(5, DATA[5]), (PAGE + 9, DATA[PAGE + 9]), (PAGE + 10, 0), (2 * PAGE - 1, 0)],
    ids=["first-page", "last-byte", "just-past-end", "end-of-last-page"],
)
def test_touching_within_the_new_last_page_is_fine(
    path: Path, index: int, expected: int
) -> None:
    """Bytes inside the new size read the data; bytes past the new end but inside its last
    page read zeros (the kernel zero-fills the tail of the page); no signal.
    """
    code, lines = _run_truncated(path, index)
    assert code == 0
    assert f"read {expected}" in lines
