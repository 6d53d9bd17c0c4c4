"""``zcio cp`` end to end: ``python -m zcio cp`` in a subprocess, checked byte for byte.

Every failure must be one line on stderr, a non-zero status, no traceback, DST as it
was and no temporary file left.  The full disk is a 1 MiB tmpfs where mounting is
allowed (root), and in-process everywhere with a fault layer raising ENOSPC; Ctrl-C
and SIGTERM are injected the same way.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from faults import OK, Faults, short
from test_reflink import btrfs_dir  # noqa: F401 - a fixture
from zcio import ProgressEvent, _copy, _syscalls, copy_file
from zcio._cli import _common, _cp, main
from zcio._cli._common import human_rate

MIB = 1 << 20
ZCIO_PATHS = {"copy_file_range", "sendfile", "splice", "mmap_write", "read_write"}
FORCED = [("copy_file_range", "copy_file_range"), ("sendfile", "sendfile"),
          ("splice", "splice"), ("mmap", "mmap_write"), ("read_write", "read_write")]


def zcio(*args: str | Path, umask: int = -1) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zcio", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False,
                          umask=umask)


def cp_json(*args: str | Path) -> dict[str, Any]:
    r = zcio("cp", "--json", *args)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def assert_one_line_failure(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("zcio cp: ")
    for word in words:
        assert word in lines[0]


def temp_files(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if ".zcio-" in p.name]


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def write_sparse(path: Path, size: int, pieces: list[tuple[int, bytes]]) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in pieces:
            f.seek(offset)
            f.write(data)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "src.bin"
    p.write_bytes(os.urandom(3 * MIB + 17))
    return p


# -- copies that work --------------------------------------------------------------------


def test_large_file_in_chunks_by_checksum(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as f:
        for _ in range(65):
            f.write(os.urandom(MIB))
        f.write(b"tail")  # 65 MiB + 4: two transfer chunks
    out = cp_json(big, tmp_path / "copy")
    assert sha(tmp_path / "copy") == sha(big)
    assert out["size"] == out["bytes"] == big.stat().st_size
    assert out["holes"] == 0 and out["method"] == "auto"
    assert out["paths"] and set(out["paths"]) <= ZCIO_PATHS | {"reflink"}
    assert sum(s["kernel_bytes"] for s in out["paths"].values()) > 0  # zero-copy here
    assert out["seconds"] > 0 and out["gb_per_s"] > 0
    assert temp_files(tmp_path) == []


def test_human_output_names_the_path(src: Path, tmp_path: Path) -> None:
    r = zcio("cp", src, tmp_path / "dst")
    assert r.returncode == 0 and r.stderr == ""
    first = r.stdout.splitlines()[0]
    assert first.startswith(f"{src} -> {tmp_path / 'dst'}: 3.0 MiB in ")
    assert re.search(r" \d+(\.\d+)? [KMGT]iB/s by ", first), first  # binary, as the sizes
    assert any(path in first for path in ZCIO_PATHS | {"reflink"})


@pytest.mark.parametrize(("method", "path"), FORCED)
def test_every_forced_method(src: Path, tmp_path: Path, method: str, path: str) -> None:
    out = cp_json("--method", method, src, tmp_path / "dst")
    assert list(out["paths"]) == [path]
    assert out["method"] == method
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()
    stats = out["paths"][path]
    moved = stats["kernel_bytes"] + stats["user_bytes"]
    assert moved >= src.stat().st_size


def test_forced_reflink_that_cannot_run_is_an_error(src: Path, tmp_path: Path) -> None:
    from zcio import _reflink

    if _reflink.probe(tmp_path)[0]:
        pytest.skip(f"{tmp_path} reflinks")
    r = zcio("cp", "--method", "reflink", src, tmp_path / "dst")
    assert_one_line_failure(r, "reflink refused", "dst")
    assert r.returncode == 1
    assert not (tmp_path / "dst").exists()
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("method", ["auto", "copy_file_range", "sendfile", "mmap",
                                    "read_write"])
def test_sparse_file_keeps_its_holes(tmp_path: Path, method: str) -> None:
    sparse = tmp_path / "sparse"
    pieces = [(5 * MIB, os.urandom(100_000)), (40 * MIB + 3, b"middle"),
              (63 * MIB, os.urandom(MIB))]
    write_sparse(sparse, 80 * MIB, pieces)  # holes at the start, between, and the end
    out = cp_json("--method", method, sparse, tmp_path / "copy")
    copy = tmp_path / "copy"
    assert copy.stat().st_size == 80 * MIB
    assert sha(copy) == sha(sparse)
    assert copy.stat().st_blocks * 512 <= sparse.stat().st_blocks * 512 + MIB
    assert copy.stat().st_blocks * 512 < 4 * MIB
    assert out["holes"] > 70 * MIB and out["bytes"] + out["holes"] == 80 * MIB


def test_file_of_holes_only(tmp_path: Path) -> None:
    hole = tmp_path / "hole"
    write_sparse(hole, 10 * MIB, [])
    out = cp_json(hole, tmp_path / "copy")
    assert (tmp_path / "copy").stat().st_size == 10 * MIB
    assert (tmp_path / "copy").stat().st_blocks == 0
    assert out["bytes"] == 0 and out["holes"] == 10 * MIB


@pytest.mark.parametrize("method", ["auto", "sendfile", "read_write"])
def test_empty_file(tmp_path: Path, method: str) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    out = cp_json("--method", method, empty, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b""
    assert out["size"] == out["bytes"] == 0
    r = zcio("cp", "--method", method, empty, tmp_path / "again")
    assert r.returncode == 0 and "0 B in" in r.stdout


def test_preserve_mode_and_times(src: Path, tmp_path: Path) -> None:
    os.chmod(src, 0o640)
    atime_ns, mtime_ns = 1_111_111_111_123_456_789, 1_234_567_890_987_654_321
    os.utime(src, ns=(atime_ns, mtime_ns))
    out = cp_json("-p", src, tmp_path / "dst")
    st = (tmp_path / "dst").stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_mtime_ns == mtime_ns
    assert st.st_atime_ns == atime_ns
    assert (st.st_uid, st.st_gid) == (src.stat().st_uid, src.stat().st_gid)
    assert out["preserved"] is True


def test_without_preserve_a_new_file_gets_src_mode_less_umask(src: Path,
                                                               tmp_path: Path) -> None:
    os.chmod(src, 0o754)
    os.utime(src, ns=(10**18, 10**18))
    r = zcio("cp", src, tmp_path / "dst", umask=0o027)
    assert r.returncode == 0, r.stderr
    st = (tmp_path / "dst").stat()
    assert stat.S_IMODE(st.st_mode) == 0o750  # as cp: 0o754 & ~0o027
    assert st.st_mtime_ns != 10**18


def test_without_preserve_an_existing_dst_keeps_its_mode(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    dst.write_bytes(b"old")
    os.chmod(dst, 0o600)
    assert zcio("cp", src, dst).returncode == 0
    assert dst.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(dst.stat().st_mode) == 0o600


def test_dst_directory_copies_under_src_name(src: Path, tmp_path: Path) -> None:
    into = tmp_path / "into"
    into.mkdir()
    out = cp_json(src, into)
    assert out["dst"] == str(into / "src.bin")
    assert (into / "src.bin").read_bytes() == src.read_bytes()
    assert temp_files(into) == []


def test_dst_symlink_is_written_through(src: Path, tmp_path: Path) -> None:
    real, link = tmp_path / "real", tmp_path / "link"
    real.write_bytes(b"old")
    link.symlink_to(real)
    assert zcio("cp", src, link).returncode == 0
    assert link.is_symlink() and real.read_bytes() == src.read_bytes()


def test_sync(src: Path, tmp_path: Path) -> None:
    out = cp_json("--sync", src, tmp_path / "dst")
    assert out["synced"] is True
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()


def test_reflink_on_btrfs(btrfs_dir: Path) -> None:  # noqa: F811
    src = btrfs_dir / "src"
    write_sparse(src, 32 * MIB, [(MIB, os.urandom(MIB))])
    out = cp_json(src, btrfs_dir / "auto")
    assert list(out["paths"]) == ["reflink"]
    forced = cp_json("--method", "reflink", src, btrfs_dir / "forced")
    assert list(forced["paths"]) == ["reflink"]
    for name in ("auto", "forced"):
        copy = btrfs_dir / name
        assert sha(copy) == sha(src)
        assert copy.stat().st_blocks * 512 < 4 * MIB
        copy.unlink()
    src.unlink()


# -- bad input ---------------------------------------------------------------------------


def test_missing_src(tmp_path: Path) -> None:
    r = zcio("cp", tmp_path / "nope", tmp_path / "dst")
    assert_one_line_failure(r, "No such file or directory", "nope")
    assert r.returncode == 1
    assert list(tmp_path.iterdir()) == []


def test_src_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    r = zcio("cp", tmp_path / "d", tmp_path / "dst")
    assert_one_line_failure(r, "Is a directory")
    assert not (tmp_path / "dst").exists()


def test_src_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    r = zcio("cp", tmp_path / "fifo", tmp_path / "dst")
    assert_one_line_failure(r, "not a regular file")


def test_dst_directory_missing(src: Path, tmp_path: Path) -> None:
    r = zcio("cp", src, tmp_path / "no" / "dst")
    assert_one_line_failure(r, "No such file or directory", str(tmp_path / "no" / "dst"))
    r = zcio("cp", src, f"{tmp_path / 'no'}/")
    assert_one_line_failure(r, "Not a directory")
    assert temp_files(tmp_path) == []


def test_same_file(src: Path, tmp_path: Path) -> None:
    before = sha(src)
    for dst in (src, tmp_path):  # the file itself, and its own directory
        r = zcio("cp", src, dst)
        assert_one_line_failure(r, "are the same file")
    os.link(src, tmp_path / "hard")
    assert_one_line_failure(zcio("cp", src, tmp_path / "hard"), "are the same file")
    assert sha(src) == before
    assert temp_files(tmp_path) == []


def test_dst_names_a_directory_inside_dst(src: Path, tmp_path: Path) -> None:
    (tmp_path / "into" / "src.bin").mkdir(parents=True)
    r = zcio("cp", src, tmp_path / "into")
    assert_one_line_failure(r, "cannot overwrite a directory")


@pytest.mark.parametrize("args", [["--method", "teleport"], ["--bogus"], []])
def test_usage_errors_are_one_line(src: Path, tmp_path: Path, args: list[str]) -> None:
    files = [str(src), str(tmp_path / "dst")] if args else [str(src)]
    r = zcio("cp", *args, *files)
    assert_one_line_failure(r)
    assert r.returncode == 2
    assert not (tmp_path / "dst").exists()


@contextmanager
def mounted_tmpfs(mnt: Path, options: str) -> Iterator[Path]:
    """A tmpfs at ``mnt`` (skips where mounting is not allowed)."""
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a disk that fills."""
    with mounted_tmpfs(tmp_path / "tiny", "size=1m") as mnt:
        yield mnt


def test_read_only_destination(src: Path, tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as mnt:
        r = zcio("cp", src, mnt / "dst")
        assert_one_line_failure(r, "Read-only file system", str(mnt / "dst"))


@pytest.mark.parametrize("method", ["auto", "read_write"])
def test_full_disk_leaves_nothing(src: Path, tiny_tmpfs: Path, method: str) -> None:
    r = zcio("cp", "--method", method, src, tiny_tmpfs / "dst")
    assert_one_line_failure(r, "No space left on device", "dst")
    assert r.returncode == 1
    assert list(tiny_tmpfs.iterdir()) == []


def test_full_disk_leaves_an_existing_dst_as_it_was(src: Path, tiny_tmpfs: Path) -> None:
    dst = tiny_tmpfs / "dst"
    dst.write_bytes(b"precious")
    r = zcio("cp", src, dst)
    assert_one_line_failure(r, "No space left on device")
    assert [p.name for p in tiny_tmpfs.iterdir()] == ["dst"]
    assert dst.read_bytes() == b"precious"


# -- in process: faults, Ctrl-C, SIGTERM, progress ---------------------------------------


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(["cp", *args])
    code = e.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


def _interrupt(real: Any, *args: Any) -> Any:
    raise KeyboardInterrupt


def _sigterm(real: Any, *args: Any) -> Any:
    os.kill(os.getpid(), signal.SIGTERM)
    return real(*args)


@pytest.mark.parametrize(("method", "script", "status", "message"), [
    ("auto", {"copy_file_range": [short(MIB), errno.ENOSPC]}, 1, "No space left on device"),
    ("read_write", {"pwrite": [OK, errno.ENOSPC]}, 1, "No space left on device"),
    ("sendfile", {"sendfile": [errno.EIO]}, 1, "Input/output error"),
    ("read_write", {"pwrite": [OK, _interrupt]}, 130, "zcio cp: interrupted"),
    ("read_write", {"pwrite": [OK, _sigterm]}, 128 + signal.SIGTERM, "Terminated"),
])
def test_failure_mid_copy_leaves_dst_as_it_was(
        src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str,
        script: dict[str, list[Any]], status: int, message: str) -> None:
    dst = tmp_path / "dst"
    dst.write_bytes(b"precious")
    faults = Faults(script)
    old = signal.getsignal(signal.SIGTERM)
    with _syscalls.override(faults):
        code, err = run_main(["--method", method, str(src), str(dst)], capsys)
    assert signal.getsignal(signal.SIGTERM) == old  # the handler was put back
    assert any(name in script for name, _ in faults.calls)  # the fault struck
    assert code == status
    assert "Traceback" not in err and message in err
    assert len([line for line in err.splitlines() if line]) == 1  # click adds a blank
    # line after ^C, closing the terminal's echo of it
    assert dst.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src.bin"]


def test_progress_advances_chunk_by_chunk(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sparse = tmp_path / "sparse"
    block = os.statvfs(tmp_path).f_bsize  # extents are whole blocks
    write_sparse(sparse, 20 * MIB, [(0, os.urandom(3 * MIB)), (10 * MIB, b"z" * 1000)])
    seen: list[ProgressEvent] = []
    monkeypatch.setattr(_copy, "CHUNK", MIB)
    result = copy_file(str(sparse), str(tmp_path / "copy"), progress=seen.append)
    total = 3 * MIB + block
    assert seen == [ProgressEvent("cp", "copy", done, total)
                    for done in (0, MIB, 2 * MIB, 3 * MIB, total)]
    assert result.data_bytes == 3 * MIB + block and result.holes == 17 * MIB - block
    assert sha(tmp_path / "copy") == sha(sparse)


def test_data_extents(tmp_path: Path) -> None:
    p = tmp_path / "f"
    write_sparse(p, 10 * MIB, [(2 * MIB, b"a" * 10), (8 * MIB, b"b" * 10)])
    fd = os.open(p, os.O_RDONLY)
    try:
        extents = list(_copy.data_extents(fd, 10 * MIB))
        assert list(_copy.data_extents(fd, 0)) == []
    finally:
        os.close(fd)
    block = os.statvfs(p).f_bsize
    assert extents == [(2 * MIB, block), (8 * MIB, block)]


def test_human_size() -> None:
    assert [_cp.human_size(n) for n in (0, 1023, 1024, 1536, 4096, 3 * MIB + 17, 1 << 40)] \
        == ["0 B", "1023 B", "1 KiB", "1.5 KiB", "4 KiB", "3.0 MiB", "1 TiB"]
    assert human_rate(200 * MIB, 1.0) == "200 MiB/s"
    assert human_rate(3 << 30, 2.0) == "1.50 GiB/s"
    assert human_rate(10, 0.0) == "-"


def test_progress_bar_is_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bar says MiB and MiB/s as the summary does (rich's defaults are MB, MB/s)."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, force_terminal=True, color_system=None)
    monkeypatch.setattr(_common, "_stderr_console", lambda: console)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.delenv("ZCIO_NO_PROGRESS", raising=False)
    bar = _common.Progress(400 * MIB, "cp x", enabled=True)
    assert bar._bar is not None
    task = bar._bar.tasks[0]
    bar.advance(200 * MIB)
    download, speed = bar._bar.columns[2:4]
    assert str(download.render(task)) == "200.0/400.0 MiB"
    task.finished_speed = 200 * MIB + 100 * 1024
    assert str(speed.render(task)) == "200.1 MiB/s"


# -- sources whose size is not their length: pseudo files, files growing or shrinking ---

#: Files whose stat size is not their length: procfs says 0 bytes, sysfs a page.  Their
#: content does not change between two reads.
PSEUDO_FILES = ["/proc/version", "/proc/sys/kernel/ostype", "/sys/devices/system/cpu/online"]


def pseudo_file(path: str) -> bytes:
    """The content of a pseudo file, after checking its size is not its length."""
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here (procfs or sysfs not mounted)")
    data = Path(path).read_bytes()
    assert data and os.stat(path).st_size != len(data)
    return data


@pytest.mark.parametrize("method", ["auto", "sendfile", "splice", "read_write"])
@pytest.mark.parametrize("path", PSEUDO_FILES)
def test_pseudo_file_is_read_to_its_end(tmp_path: Path, path: str, method: str) -> None:
    data = pseudo_file(path)
    out = cp_json("--method", method, path, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == data
    assert out["size"] == out["bytes"] == len(data)
    assert out["paths"]  # a path that moved the bytes, not "nothing to copy"
    r = zcio("cp", path, tmp_path / "again")
    assert r.returncode == 0 and "nothing to copy" not in r.stdout
    assert (tmp_path / "again").read_bytes() == data


def _changing_source(monkeypatch: pytest.MonkeyPatch, change: Any) -> list[int]:
    """Run ``change()`` before the copy's first transfer call; the calls' counts."""
    real, calls = _copy.transfer, []

    def transfer(src: Any, dst: Any, count: int, *, path: str | None = None) -> int:
        if not calls:
            change()
        calls.append(count)
        return real(src, dst, count, path=path)

    monkeypatch.setattr(_copy, "transfer", transfer)
    monkeypatch.setattr(_copy, "CHUNK", MIB)
    return calls


def test_growing_source_is_copied_to_its_end(src: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    more = os.urandom(12345)

    def grow() -> None:
        with open(src, "ab") as f:
            f.write(more)

    calls = _changing_source(monkeypatch, grow)
    result = copy_file(str(src), str(tmp_path / "copy"))
    assert calls  # the copy ran while the file grew
    assert (tmp_path / "copy").read_bytes() == src.read_bytes()
    assert result.size == result.data_bytes == 3 * MIB + 17 + len(more)


@pytest.mark.parametrize("new_size", [MIB + 5, 3 * MIB, 0])
@pytest.mark.parametrize("method", ["auto", "read_write"])
def test_shrinking_source_fails_and_leaves_dst(src: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch,
                                              new_size: int, method: str) -> None:
    dst = tmp_path / "dst"
    dst.write_bytes(b"precious")
    _changing_source(monkeypatch, lambda: os.truncate(src, new_size))
    code, err = run_main(["--method", method, str(src), str(dst)], capsys)
    assert code == 1 and "Traceback" not in err
    assert f"file shrank while being copied (from {3 * MIB + 17:,} to {new_size:,} bytes)" \
        in err and str(src) in err
    assert dst.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src.bin"]


def test_shrinking_into_a_trailing_hole_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """No data is read past the last extent: only the size at the end can tell."""
    sparse = tmp_path / "sparse"
    write_sparse(sparse, 20 * MIB, [(0, os.urandom(MIB))])
    _changing_source(monkeypatch, lambda: os.truncate(sparse, 10 * MIB))
    code, err = run_main([str(sparse), str(tmp_path / "copy")], capsys)
    assert code == 1 and f"(from {20 * MIB:,} to {10 * MIB:,} bytes)" in err
    assert not (tmp_path / "copy").exists() and temp_files(tmp_path) == []
