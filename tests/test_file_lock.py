"""FileLock: OFD locks, the in-process overlap table, and locking between two processes.

What the kernel holds is checked independently with ``fcntl(F_OFD_GETLK)`` from another
open file description; the cross-process tests run a child Python that locks the same
file with zcio and reports over a pipe.  Every wait is bounded (subprocess timeouts, a
child that gives up after 10 s), so a broken lock cannot hang the suite.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from zcio import (
    ByteBuffer,
    ClosedChannelError,
    FileChannel,
    FileLock,
    IllegalArgumentError,
    MapMode,
    NonReadableChannelError,
    NonWritableChannelError,
    OpenOption,
    OverlappingFileLockError,
)
from zcio._file_lock import MAX_LOCK_SIZE

READ, WRITE, APPEND = OpenOption.READ, OpenOption.WRITE, OpenOption.APPEND
_FLOCK = struct.Struct("hhqqi4x")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "locked.bin"
    p.write_bytes(b"0123456789" * 10)
    return p


@pytest.fixture
def rw(path: Path) -> Iterator[FileChannel]:
    with FileChannel.open(path, READ, WRITE) as ch:
        yield ch


def kernel_conflict(path: Path, position: int, size: int, shared: bool = False
                    ) -> tuple[str, int, int] | None:
    """The lock the kernel says blocks ``[position, +size)`` for another open file.

    Returns (kind, start, length) with length 0 meaning "to the end", or None.
    """
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        kind = fcntl.F_RDLCK if shared else fcntl.F_WRLCK
        probe = _FLOCK.pack(kind, os.SEEK_SET, position, size, 0)
        got = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, probe)
    finally:
        os.close(fd)
    l_type, _, start, length, _ = _FLOCK.unpack(got)
    if l_type == fcntl.F_UNLCK:
        return None
    return ("shared" if l_type == fcntl.F_RDLCK else "exclusive"), start, length


# -- accessors and the kernel's view -------------------------------------------------------------


def test_exclusive_lock_accessors_and_kernel_state(rw: FileChannel, path: Path) -> None:
    lock = rw.lock(10, 20)
    assert isinstance(lock, FileLock)
    assert lock.channel() is rw
    assert (lock.position(), lock.size()) == (10, 20)
    assert not lock.is_shared() and lock.is_valid()
    assert repr(lock) == "zcio.FileLock[10:20 exclusive valid]"
    assert kernel_conflict(path, 0, 100) == ("exclusive", 10, 20)
    assert kernel_conflict(path, 0, 10) is None
    assert kernel_conflict(path, 30, 10) is None
    lock.release()
    assert not lock.is_valid()
    assert repr(lock) == "zcio.FileLock[10:20 exclusive invalid]"
    assert kernel_conflict(path, 0, 100) is None
    lock.release()  # idempotent


def test_default_lock_covers_everything(rw: FileChannel, path: Path) -> None:
    with rw.lock() as lock:
        assert (lock.position(), lock.size(), lock.is_shared()) == (0, MAX_LOCK_SIZE, False)
        assert MAX_LOCK_SIZE == (1 << 63) - 1  # Java's Long.MAX_VALUE
        assert kernel_conflict(path, 0, 1) == ("exclusive", 0, 0)  # 0: to the end of file
        assert kernel_conflict(path, 1 << 50, 1) is not None  # however the file grows
    assert not lock.is_valid()
    assert kernel_conflict(path, 0, 0) is None


def test_shared_lock(rw: FileChannel, path: Path) -> None:
    lock = rw.try_lock(0, 50, shared=True)
    assert lock is not None
    assert lock.is_shared() and lock.is_valid()
    assert kernel_conflict(path, 0, 100) == ("shared", 0, 50)  # blocks a writer
    assert kernel_conflict(path, 0, 100, shared=True) is None  # not a reader
    lock.close()  # close is release
    assert not lock.is_valid()
    assert kernel_conflict(path, 0, 100) is None


def test_try_lock_exclusive(rw: FileChannel, path: Path) -> None:
    lock = rw.try_lock(5, 1)
    assert lock is not None and not lock.is_shared() and lock.is_valid()
    assert kernel_conflict(path, 0, 0) == ("exclusive", 5, 1)
    lock.release()


def test_lock_beyond_the_end_of_file(rw: FileChannel, path: Path) -> None:
    with rw.lock(1 << 40, 10) as lock:
        assert lock.is_valid()
        assert kernel_conflict(path, 0, 0) == ("exclusive", 1 << 40, 10)
    assert rw.size() == 100


@pytest.mark.parametrize(
    ("position", "size", "expected"),
    [(0, 10, False), (0, 11, True), (15, 1, True), (29, 1, True), (30, 5, False),
     (0, 100, True), (10, 0, False), (29, 0, True), (9, 1, False), (5, 6, True)],
)
def test_overlaps(rw: FileChannel, position: int, size: int, expected: bool) -> None:
    with rw.lock(10, 20) as lock:
        assert lock.overlaps(position, size) is expected


def test_overlaps_of_a_lock_to_the_end(rw: FileChannel) -> None:
    """Java 17: lock(10, Long.MAX_VALUE - 10).overlaps(20, 1) is true."""
    with rw.lock(10, MAX_LOCK_SIZE - 10) as lock:
        assert lock.overlaps(20, 1)
        assert lock.overlaps(1 << 62, 1)
        assert not lock.overlaps(0, 10)


def test_channel_close_invalidates_and_releases(path: Path) -> None:
    ch = FileChannel.open(path, READ, WRITE)
    excl = ch.lock(0, 10)
    shared = ch.lock(20, 10, shared=True)
    assert kernel_conflict(path, 0, 100) is not None
    ch.close()
    assert not excl.is_valid() and not shared.is_valid()
    assert kernel_conflict(path, 0, 100) is None
    for _ in range(2):  # Java 17: ClosedChannelException, the lock released or not
        with pytest.raises(ClosedChannelError):
            excl.release()
    with FileChannel.open(path, READ, WRITE) as other, other.lock(0, 100) as again:
        assert again.is_valid()  # the table forgot the closed channel's locks


def test_with_block_after_the_channel_closed(path: Path) -> None:
    """Leaving a lock's ``with`` block after the channel closed raises nothing: the
    close released it (Java's try-with-resources would throw ClosedChannelException)."""
    ch = FileChannel.open(path, READ, WRITE)
    with ch.lock(0, 10) as lock:
        ch.close()
    assert not lock.is_valid()


def test_close_releases_the_kernel_lock_while_a_mapping_lives(path: Path) -> None:
    """A mapping keeps the open file alive past the channel's close, and with it an OFD
    lock the close alone would not drop: the JDK unlocks each lock before closing, so
    must zcio, or a later try_lock fails and lock() waits forever (here: a child
    process checks, bounded)."""
    path.write_bytes(b"x" * 100)
    ch = FileChannel.open(path, READ, WRITE)
    mapping = ch.map(MapMode.READ_WRITE, 0, 100)
    try:
        ch.lock(0, 10)
        ch.close()
        assert kernel_conflict(path, 0, 100) is None
        with FileChannel.open(path, READ, WRITE) as other:
            lock = other.try_lock(0, 10)
            assert lock is not None and lock.is_valid()
            lock.release()
    finally:
        mapping.release()


def test_closing_another_descriptor_keeps_the_lock(rw: FileChannel, path: Path) -> None:
    """OFD locks belong to the open file: closing some other descriptor of the file in
    this process does not drop them (the POSIX F_SETLK trap)."""
    with rw.lock(0, 10):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        os.close(fd)
        assert kernel_conflict(path, 0, 10) == ("exclusive", 0, 10)


# -- the in-process overlap table -------------------------------------------------------------


@pytest.mark.parametrize(("shared_a", "shared_b"), [(False, False), (True, True), (False, True)])
def test_overlapping_lock_in_this_process(
    path: Path, rw: FileChannel, shared_a: bool, shared_b: bool
) -> None:
    with rw.lock(10, 20, shared=shared_a) as held, FileChannel.open(path, READ, WRITE) as other:
        for ch in (rw, other):
            with pytest.raises(OverlappingFileLockError):
                ch.lock(25, 10, shared=shared_b)
            with pytest.raises(OverlappingFileLockError):
                ch.try_lock(0, 11, shared=shared_b)
        assert held.is_valid()
        with other.lock(30, 10, shared=shared_b) as adjacent, rw.lock(0, 10) as below:
            assert adjacent.is_valid() and below.is_valid()
    with rw.lock(10, 20) as again:  # released: the range is free again
        assert again.is_valid()


def test_overlap_table_is_per_file_not_per_path(tmp_path: Path, path: Path) -> None:
    link = tmp_path / "hardlink.bin"
    os.link(path, link)
    with FileChannel.open(path, READ, WRITE) as a, FileChannel.open(link, READ, WRITE) as b, \
            a.lock(0, 10):
        with pytest.raises(OverlappingFileLockError):
            b.try_lock(5, 1)
        other = tmp_path / "other.bin"
        other.write_bytes(b"x")
        with FileChannel.open(other, READ, WRITE) as c, c.lock(0, 10) as lock:
            assert lock.is_valid()


def test_zero_size_lock_does_not_block_the_rest_of_the_file(path: Path, rw: FileChannel) -> None:
    """Java 17 (OpenJDK 17.0.15): lock(0, 0) has size 0 and overlaps nothing; another
    channel's tryLock(5, 5) then succeeds.  zcio must not hand fcntl l_len = 0, which the
    kernel reads as "to the end of file"."""
    with rw.lock(0, 0) as empty, FileChannel.open(path, READ, WRITE) as other:
        assert empty.size() == 0 and not empty.overlaps(5, 5)
        lock = other.try_lock(5, 5)
        assert lock is not None, "the size-0 lock covered the whole file in the kernel"
        lock.release()


# -- argument and channel-mode checks --------------------------------------------------------


@pytest.mark.parametrize("options", [(WRITE,), (APPEND,)], ids=["write", "append"])
def test_shared_lock_needs_a_readable_channel(path: Path, options: tuple[OpenOption, ...]) -> None:
    with FileChannel.open(path, *options) as ch:
        with pytest.raises(NonReadableChannelError):
            ch.lock(0, 10, shared=True)
        with pytest.raises(NonReadableChannelError):
            ch.try_lock(shared=True)
        with ch.lock(0, 10) as excl:  # exclusive is fine on a write-only channel
            assert excl.is_valid()
    assert kernel_conflict(path, 0, 0) is None


def test_exclusive_lock_needs_a_writable_channel(path: Path) -> None:
    with FileChannel.open(path, READ) as ch:
        with pytest.raises(NonWritableChannelError):
            ch.lock(0, 10)
        with pytest.raises(NonWritableChannelError):
            ch.try_lock()
        with pytest.raises(NonWritableChannelError):  # Java checks the mode first
            ch.lock(-1, 10)
        with ch.lock(0, 10, shared=True) as shared:
            assert shared.is_valid()
    assert kernel_conflict(path, 0, 0) is None


@pytest.mark.parametrize(("position", "size"), [(-1, 10), (0, -1), (-5, -5)])
@pytest.mark.parametrize("wait", [True, False], ids=["lock", "try_lock"])
def test_negative_position_or_size(
    rw: FileChannel, path: Path, position: int, size: int, wait: bool
) -> None:
    call = rw.lock if wait else rw.try_lock
    with pytest.raises(IllegalArgumentError, match="negative"):
        call(position, size)
    assert kernel_conflict(path, 0, 0) is None
    with rw.lock() as whole:  # nothing was left in the overlap table
        assert whole.is_valid()


def test_region_must_end_by_long_max(rw: FileChannel, path: Path) -> None:
    """Java 17 (OpenJDK 17.0.15): lock/tryLock(1L << 62, 1L << 62), (Long.MAX_VALUE, 1)
    and (5, Long.MAX_VALUE) throw IllegalArgumentException("Negative position + size"):
    the long sum overflows.  Python ints do not, so zcio must check the bound itself,
    for the "to the end" size too; a position past Long.MAX_VALUE must not reach
    struct.pack either.
    """
    for position, size in [(1 << 62, 1 << 62), (MAX_LOCK_SIZE, 1), (1 << 63, 1),
                           (5, MAX_LOCK_SIZE), (1, MAX_LOCK_SIZE)]:
        for call in (rw.lock, rw.try_lock):
            with pytest.raises(IllegalArgumentError):
                call(position, size)
    assert kernel_conflict(path, 0, 0) is None


# -- between two processes ------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import select, sys, time
    from zcio import FileChannel, OpenOption
    path, shared, how = sys.argv[1], sys.argv[2] == "shared", sys.argv[3]
    ch = FileChannel.open(path, OpenOption.READ, OpenOption.WRITE)
    lock = ch.lock(0, 100, shared=shared)
    print("locked", lock.is_shared(), flush=True)
    if select.select([sys.stdin], [], [], 10)[0]:  # give up after 10 s, never hang
        sys.stdin.readline()
        time.sleep(0.4)
    released = time.monotonic()
    if how == "release":
        lock.release()
    else:
        ch.close()
    print("released", released, flush=True)
    select.select([sys.stdin], [], [], 10)
    """
)


@contextmanager
def child_holding(
    path: Path, shared: bool, how: str = "release"
) -> Iterator[subprocess.Popen[str]]:
    """A child process that holds a lock on [0, 100) of ``path`` until told to let go."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), "shared" if shared else "exclusive", how],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        assert select.select([child.stdout], [], [], 10)[0], "the child did not lock in time"
        assert child.stdout.readline().split() == ["locked", str(shared)]
        yield child
    finally:
        try:
            _, err = child.communicate(timeout=10)  # EOF on stdin: the child lets go
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
        assert child.returncode == 0, err


def let_go(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()


def released_at(child: subprocess.Popen[str]) -> float:
    assert child.stdout is not None
    assert select.select([child.stdout], [], [], 10)[0]
    word, when = child.stdout.readline().split()
    assert word == "released"
    return float(when)


@pytest.mark.parametrize("how", ["release", "close"])
def test_exclusive_lock_in_another_process(rw: FileChannel, path: Path, how: str) -> None:
    with child_holding(path, shared=False, how=how) as child:
        assert rw.try_lock() is None
        assert rw.try_lock(50, 10, shared=True) is None
        assert rw.try_lock(99, 1) is None
        beyond = rw.try_lock(100, 10)  # outside the child's range
        assert beyond is not None
        beyond.release()
        assert kernel_conflict(path, 0, 1) == ("exclusive", 0, 100)

        let_go(child)  # the child waits 0.4 s, then releases (or closes its channel)
        start = time.monotonic()
        lock = rw.lock(0, 100)
        acquired = time.monotonic()
        assert acquired - start >= 0.2, "lock() did not wait for the other process"
        assert acquired >= released_at(child)
        assert lock.is_valid()
        lock.release()


def test_shared_locks_coexist_across_processes(rw: FileChannel, path: Path) -> None:
    with child_holding(path, shared=True) as child:
        shared = rw.try_lock(0, 100, shared=True)
        assert shared is not None and shared.is_valid()
        shared.release()
        with rw.lock(10, 10, shared=True) as waited_for_nothing:
            assert waited_for_nothing.is_shared()
        assert rw.try_lock(0, 100) is None  # but not with an exclusive one
        let_go(child)
        start = time.monotonic()
        with rw.lock(0, 100) as excl:
            assert time.monotonic() - start >= 0.2
            assert not excl.is_shared()
        released_at(child)


def test_lock_held_here_blocks_another_process(rw: FileChannel, path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from zcio import FileChannel, OpenOption
        with FileChannel.open(sys.argv[1], OpenOption.READ, OpenOption.WRITE) as ch:
            print(ch.try_lock(0, 10), ch.try_lock(5, 1, shared=True))
            lock = ch.try_lock(10, 10)
            print(lock)
        """
    )
    with rw.lock(0, 10):
        done = subprocess.run([sys.executable, "-c", script, str(path)],
                              capture_output=True, text=True, timeout=10, check=True)
    assert done.stdout.splitlines() == ["None None", "zcio.FileLock[10:10 exclusive valid]"]
    rw.write(ByteBuffer.wrap(b"still usable"), 0)
