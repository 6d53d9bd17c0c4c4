"""``zcio info`` end to end: the human list, the JSON dict, and every answer checked
against what the test can ask the system itself."""

from __future__ import annotations

import importlib.util
import json
import mmap
import os
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import zcio
from test_reflink import btrfs_dir  # noqa: F401 - a fixture
from zcio._cli import _info

LABELS = ["release", "sendfile", "splice", "tee", "vmsplice", "copy_file_range",
          "MSG_ZEROCOPY", "io_uring", "type", "reflink (FICLONE)", "O_DIRECT alignment",
          "page size", "transparent huge pages", "RLIMIT_MEMLOCK", "direct-memory cap",
          "IOV_MAX", "pipe-max-size", "file -> file", "file -> socket", "socket -> file",
          "zcio cp under PATH"]


def zcio_info(*args: str | Path, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zcio", "info", *map(str, args)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **(env or {})})


def info_json(*args: str | Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    r = zcio_info("--json", *args, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def test_human_output_is_an_aligned_list_by_topic(tmp_path: Path) -> None:
    r = zcio_info(tmp_path)
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    titles = [line for line in lines if not line.startswith(" ")]
    assert titles == ["kernel", f"file system at {tmp_path}", "memory", "zcio will use"]
    rows = [line for line in lines if line.startswith("  ")]
    labels = [re.split(r"\s{2,}", row.strip(), maxsplit=1)[0] for row in rows]
    for label in LABELS:
        assert label in labels
    columns = {len(row) - len(row[2:].split("  ", 1)[1].lstrip()) for row in rows}
    assert len(columns) == 1  # every value starts in the same column
    assert re.search(rf"^  release\s+{re.escape(os.uname().release)} ", r.stdout, re.M)
    assert list(tmp_path.iterdir()) == []  # the probes cleaned up


def test_json_matches_the_system(tmp_path: Path) -> None:
    report = info_json(tmp_path, env={"ZCIO_MAX_DIRECT_MEMORY": "", "ZCIO_TRANSFER_PATH": ""})
    assert set(report) == {"kernel", "filesystem", "memory", "zcio_uses"}
    kernel, fs, mem, uses = (report["kernel"], report["filesystem"], report["memory"],
                             report["zcio_uses"])
    assert kernel["release"] == os.uname().release
    for name in _info.SYSCALLS:
        assert kernel[name]["available"] is zcio._syscalls.is_available(name)
    for name in ("msg_zerocopy", "io_uring"):
        assert isinstance(kernel[name]["available"], bool) and kernel[name]["detail"]
    assert fs["path"] == str(tmp_path)
    assert fs["mount"]["type"] and fs["mount"]["mount_point"]
    assert isinstance(fs["reflink"]["supported"], bool)
    if fs["o_direct"]["supported"]:
        assert fs["o_direct"]["memory_alignment"] > 0
        assert fs["o_direct"]["offset_alignment"] % fs["o_direct"]["memory_alignment"] == 0 \
            or fs["o_direct"]["memory_alignment"] % fs["o_direct"]["offset_alignment"] == 0
    assert mem["page_size"] == mmap.PAGESIZE
    assert mem["iov_max"] == os.sysconf("SC_IOV_MAX")
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    inf = resource.RLIM_INFINITY
    assert mem["rlimit_memlock"] == {"soft": None if soft == inf else soft,
                                     "hard": None if hard == inf else hard}
    assert mem["pipe_max_size"] == zcio.pipe_max_size()
    assert mem["direct_memory_cap"] == mmap.PAGESIZE * os.sysconf("SC_PHYS_PAGES") // 4
    assert mem["direct_memory_cap_source"].startswith("default")
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists():
        assert f"[{mem['transparent_huge_pages']}]" in thp.read_text()
    assert uses["file_to_file"] == "copy_file_range"  # Linux and CPython 3.8+ have it
    assert uses["file_to_socket"] == "sendfile"
    assert uses["socket_to_file"] == "splice"
    assert uses["cp_under_path"] == ("reflink" if fs["reflink"]["supported"]
                                     else "copy_file_range")
    assert uses["forced_by_ZCIO_TRANSFER_PATH"] is None
    assert list(tmp_path.iterdir()) == []


def test_environment_is_reported(tmp_path: Path) -> None:
    report = info_json(tmp_path, env={"ZCIO_MAX_DIRECT_MEMORY": "256m",
                                      "ZCIO_TRANSFER_PATH": "read_write"})
    assert report["memory"]["direct_memory_cap"] == 256 << 20
    assert report["memory"]["direct_memory_cap_source"] == "ZCIO_MAX_DIRECT_MEMORY=256m"
    uses = report["zcio_uses"]
    assert uses["forced_by_ZCIO_TRANSFER_PATH"] == "read_write"
    assert uses["file_to_file"] == uses["socket_to_file"] == "read_write"
    r = zcio_info(tmp_path, env={"ZCIO_TRANSFER_PATH": "read_write"})
    assert "ZCIO_TRANSFER_PATH=read_write" in r.stdout


def test_path_may_be_a_file_and_defaults_to_cwd(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_bytes(b"x")
    assert info_json(f)["filesystem"]["path"] == str(f)
    r = subprocess.run([sys.executable, "-m", "zcio", "info", "--json"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60, check=False)
    assert json.loads(r.stdout)["filesystem"]["path"] == str(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_reflink_on_btrfs(btrfs_dir: Path) -> None:  # noqa: F811
    report = info_json(btrfs_dir)
    assert report["filesystem"]["mount"]["type"] == "btrfs"
    assert report["filesystem"]["reflink"] == {"supported": True,
                                               "detail": "FICLONE succeeded"}
    assert report["zcio_uses"]["cp_under_path"] == "reflink"
    assert list(btrfs_dir.iterdir()) == []


def test_read_only_file_system_answers_unknown(tmp_path: Path) -> None:
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        report = info_json(mnt)
        human = zcio_info(mnt).stdout
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    assert report["filesystem"]["reflink"]["supported"] is None
    assert "Read-only file system" in report["filesystem"]["reflink"]["detail"]
    assert report["filesystem"]["o_direct"]["supported"] is None
    assert re.search(r"reflink \(FICLONE\)\s+unknown \(cannot tell: Read-only file system\)",
                     human)


def test_missing_path_is_one_line(tmp_path: Path) -> None:
    r = zcio_info(tmp_path / "nope")
    assert r.returncode == 1
    assert r.stderr == f"zcio info: No such file or directory: {tmp_path / 'nope'}\n"
    r = zcio_info("--json", tmp_path / "nope")
    assert r.returncode == 1 and r.stdout == "" and len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize("args", [["a", "b"], ["--bogus"]])
def test_usage_errors_are_one_line(args: list[str]) -> None:
    r = zcio_info(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("zcio info: ")


def test_mount_of_picks_the_innermost_mount(tmp_path: Path) -> None:
    root = _info.mount_of("/")
    assert root is not None and root["mount_point"] == "/"
    proc = _info.mount_of("/proc/self")
    assert proc is not None and proc["type"] == "proc"


def test_msg_zerocopy_is_the_library_probe() -> None:
    """zcio info asks zcio._zerocopy's probe, so the two cannot disagree."""
    from zcio import _zerocopy

    ok, detail = _info.msg_zerocopy()
    assert ok is _zerocopy.is_available()
    assert detail == (_zerocopy.unavailability_cause() or "setsockopt(SO_ZEROCOPY) accepted")


def test_the_implementation_in_use_is_reported(tmp_path: Path) -> None:
    """``zcio info`` names the implementation that runs: the compiled accelerator
    where it is built, pure Python (with the reason) under ZCIO_PURE_PYTHON=1."""
    # Not _accel.implementation(): this process may itself run under
    # ZCIO_PURE_PYTHON=1 (CI's second pass); what the child gets is whether it is built.
    built = importlib.util.find_spec("zcio._native") is not None
    native = info_json(tmp_path, env={"ZCIO_PURE_PYTHON": ""})["zcio_uses"]
    pure = info_json(tmp_path, env={"ZCIO_PURE_PYTHON": "1"})["zcio_uses"]
    assert native["implementation"]["name"] == ("native" if built else "pure-python")
    assert pure["implementation"] == {
        "name": "pure-python", "detail": "ZCIO_PURE_PYTHON=1 forces the pure-Python path"}
    assert pure["mapped_memory_guard"]["available"] is False
