"""Reflinks: refused cleanly where the file system cannot clone, shared where it can.

The "can" half needs a reflinking file system: as root with ``mkfs.btrfs`` (Debian's
btrfs-progs) a small btrfs image is loop-mounted for the module; elsewhere those tests
skip and say why.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import zcio
from zcio import _reflink


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def btrfs_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory on a fresh, loop-mounted btrfs (skips if that cannot be had)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a btrfs image needs root")
    if shutil.which("mkfs.btrfs") is None:
        pytest.skip("mkfs.btrfs not installed (apt-get install btrfs-progs)")
    base = tmp_path_factory.mktemp("btrfs")
    image, mnt = base / "fs.img", base / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(256 << 20)
    made = _run("mkfs.btrfs", "-q", str(image))
    if made.returncode != 0:
        pytest.skip(f"mkfs.btrfs failed: {made.stderr.strip()}")
    mounted = _run("mount", "-o", "loop", str(image), str(mnt))
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount btrfs here: {mounted.stderr.strip()}")
    try:
        yield mnt
    finally:
        if _run("umount", str(mnt)).returncode != 0:
            _run("umount", "-l", str(mnt))


def _reflinks(directory: Path) -> bool:
    ok, _ = _reflink.probe(directory)
    return ok


def _open_pair(src: Path, dst: Path) -> tuple[int, int]:
    return (os.open(src, os.O_RDONLY | os.O_CLOEXEC),
            os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def test_refused_where_the_file_system_cannot_clone(tmp_path: Path) -> None:
    if _reflinks(tmp_path):
        pytest.skip(f"{tmp_path} reflinks")
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(b"x" * 10000)
    a, b = _open_pair(src, dst)
    try:
        with zcio.measure() as m:
            assert _reflink.try_reflink(a, b) is False
            with pytest.raises(OSError) as e:
                _reflink.reflink(a, b)
        assert e.value.errno in _reflink.UNSUPPORTED
    finally:
        os.close(a)
        os.close(b)
    assert dst.read_bytes() == b""  # untouched
    stats = m.paths["reflink"]  # the attempts are counted as syscalls, not operations
    assert (stats.syscalls, stats.operations, stats.kernel_bytes) == (2, 0, 0)


def test_other_errors_are_raised(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(b"x" * 100)
    dst.write_bytes(b"")
    a = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    b = os.open(dst, os.O_RDONLY | os.O_CLOEXEC)  # not writable: EBADF, not "unsupported"
    try:
        with pytest.raises(OSError) as e:
            _reflink.try_reflink(a, b)
        assert e.value.errno == errno.EBADF
    finally:
        os.close(a)
        os.close(b)


def test_probe_answers_and_leaves_nothing(tmp_path: Path) -> None:
    ok, detail = _reflink.probe(tmp_path)
    assert isinstance(ok, bool)
    assert ("succeeded" if ok else "refused") in detail
    assert list(tmp_path.iterdir()) == []


def test_probe_of_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        _reflink.probe(tmp_path / "missing")


def test_clone_on_btrfs_shares_content_and_holes(btrfs_dir: Path) -> None:
    src, dst = btrfs_dir / "src", btrfs_dir / "dst"
    data = os.urandom(1 << 20)
    with open(src, "wb") as f:
        f.write(data)
        f.truncate(64 << 20)  # a 63 MiB hole after the data
    dst.write_bytes(b"old content, replaced")
    a, b = _open_pair(src, dst)
    try:
        with zcio.measure() as m:
            assert _reflink.try_reflink(a, b) is True
    finally:
        os.close(a)
        os.close(b)
    st = dst.stat()
    assert st.st_size == 64 << 20
    assert st.st_blocks * 512 < 4 << 20  # the hole stayed a hole
    with open(dst, "rb") as f:
        assert f.read(1 << 20) == data
        assert f.read(1 << 20) == bytes(1 << 20)
    stats = m.paths["reflink"]
    assert (stats.operations, stats.syscalls, stats.kernel_bytes) == (1, 1, 64 << 20)
    assert _reflink.probe(btrfs_dir) == (True, "FICLONE succeeded")
    src.unlink()
    dst.unlink()


def test_cross_file_system_is_unsupported(btrfs_dir: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", btrfs_dir / "cross"
    src.write_bytes(b"y" * 5000)
    a, b = _open_pair(src, dst)
    try:
        assert _reflink.try_reflink(a, b) is False  # EXDEV
    finally:
        os.close(a)
        os.close(b)
    dst.unlink()
