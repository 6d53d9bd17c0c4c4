"""``zcio.copy_file`` as a library call, without the command line (test_cli_cp.py has
the command's cases: modes, signals, pseudo files, faults)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_cli_cp import write_sparse
from zcio import TRANSFER_PATHS, CopyResult, IllegalArgumentError, ProgressEvent, copy_file

MiB = 1 << 20


@pytest.mark.parametrize("method", ["auto", "copy_file_range", "read_write"])
def test_a_sparse_file_keeps_its_holes_and_says_which_path_ran(tmp_path: Path,
                                                               method: str) -> None:
    src, dst = tmp_path / "sparse", tmp_path / "copy"
    write_sparse(src, 64 * MiB, [(8 * MiB, os.urandom(MiB)), (40 * MiB, b"x" * 100)])
    block = os.statvfs(tmp_path).f_bsize
    events: list[ProgressEvent] = []
    r = copy_file(str(src), str(dst), method=method, progress=events.append)
    assert isinstance(r, CopyResult) and (r.src, r.dst) == (str(src), str(dst))
    assert dst.read_bytes() == src.read_bytes()
    assert (r.size, r.data_bytes, r.holes) == (64 * MiB, MiB + block, 63 * MiB - block)
    assert dst.stat().st_blocks <= src.stat().st_blocks + MiB // 512  # holes stay holes
    assert dst.stat().st_blocks * 512 < 4 * MiB
    assert r.paths and set(r.paths) <= {"reflink", *TRANSFER_PATHS}
    if method != "auto":
        assert list(r.paths) == [method]
    moved = sum(s.kernel_bytes + s.user_bytes for s in r.paths.values())
    assert r.paths.get("reflink") or moved >= r.data_bytes
    if "reflink" not in r.paths:  # a reflink moves nothing and reports no progress
        assert events[0] == ProgressEvent("cp", "copy", 0, MiB + block)
        assert events[-1].done == MiB + block
        assert [e.done for e in events] == sorted(e.done for e in events)


def test_into_a_directory_and_an_unknown_method(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello")
    (tmp_path / "into").mkdir()
    r = copy_file(str(src), str(tmp_path / "into"))
    assert r.dst == str(tmp_path / "into" / "a.txt")
    assert (tmp_path / "into" / "a.txt").read_bytes() == b"hello"
    with pytest.raises(IllegalArgumentError, match="unknown method 'teleport'"):
        copy_file(str(src), str(tmp_path / "b"), method="teleport")
    with pytest.raises(IllegalArgumentError, match="same file"):
        copy_file(str(src), str(src))
    assert not (tmp_path / "b").exists() and sorted(os.listdir(tmp_path)) == ["a.txt", "into"]
