"""Every subcommand's exit status: 2 for usage, 1 for what the file system or network refused.

Usage errors are what click reports about the command line itself (a bad option, a
missing argument, a value of the wrong form); anything found by asking the system (a
missing, unreadable or wrong kind of file, a refused connection) is a failure, 1, as for
GNU cp.  Each case is one line on stderr, ``zcio CMD: ...``, with no traceback.

Permission cases need a process the kernel refuses: as root, the children run without
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (``setpriv``), else mode 000 is enough.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from zcio._cli import main

ENV = {**os.environ, "ZCIO_NO_PROGRESS": "1"}
_NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
           "--inh-caps=-dac_override,-dac_read_search"]


def _unprivileged_prefix() -> list[str] | None:
    """How to run a child that mode bits apply to; None if this machine has no way."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    probe = subprocess.run([*_NO_DAC, "true"], capture_output=True, timeout=30, check=False)
    return _NO_DAC if probe.returncode == 0 else None


PREFIX = _unprivileged_prefix()


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    """``f`` (a file), ``unreadable`` (mode 000), ``closed/`` (a directory, mode 000)."""
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "unreadable").write_bytes(b"secret")
    (tmp_path / "unreadable").chmod(0)
    (tmp_path / "closed").mkdir()
    (tmp_path / "closed").chmod(0)
    yield tmp_path
    (tmp_path / "closed").chmod(0o700)  # so that pytest can remove it


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run(tree: Path, args: list[str], capsys: pytest.CaptureFixture[str],
        unprivileged: bool = False) -> Result:
    """``zcio ARGS``: in this process, or in a child that mode bits apply to."""
    argv = [a.format(t=tree) for a in args]
    if not unprivileged:
        with pytest.raises(SystemExit) as e:
            main(argv)
        out, err = capsys.readouterr()
        return Result(e.value.code if isinstance(e.value.code, int) else 1, out, err)
    if PREFIX is None:
        pytest.skip("running as root without a usable setpriv: mode bits do not apply")
    r = subprocess.run([*PREFIX, sys.executable, "-m", "zcio", *argv], capture_output=True,
                       text=True, env=ENV, timeout=60, check=False)
    return Result(r.returncode, r.stdout, r.stderr)


def assert_one_line(r: Result, command: str, words: str) -> None:
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"zcio {command}: "), r.stderr
    assert words in lines[0], r.stderr


USAGE = [  # (args, words): exit status 2
    (["cp", "{t}/f"], "Missing argument 'DST'"),
    (["cp", "--method", "teleport", "{t}/f", "{t}/g"], "'teleport' is not one of"),
    (["send", "{t}/f", "localhost"], "is not HOST:PORT"),
    (["send", "{t}/f", "127.0.0.1:9", "--rate", "fast"], "is not a size"),
    (["recv", "port", "{t}"], "'port' is not a valid integer"),
    (["info", "--verbose"], "No such option"),
    (["serve", "{t}", "--port", "-1"], "not in the range"),
    (["bench", "--size", "0"], "--size must be at least 1 byte"),
    (["bench", "--plot", "{t}/chart.txt"], "should end in .png"),
]

FAILURE = [  # (args, words, needs an unprivileged child): exit status 1
    (["cp", "{t}/missing", "{t}/g"], "No such file or directory: {t}/missing", False),
    (["cp", "{t}/unreadable", "{t}/g"], "Permission denied: {t}/unreadable", True),
    (["cp", "{t}/f", "{t}/closed/"], "Permission denied", True),
    (["cp", "{t}/f", "{t}/missing/g"], "No such file or directory", False),
    (["send", "{t}/missing", "127.0.0.1:9"], "No such file or directory: {t}/missing", False),
    (["send", "{t}/unreadable", "127.0.0.1:9"], "Permission denied: {t}/unreadable", True),
    (["send", "{t}/f", "127.0.0.1:1"], "connection refused", False),
    (["recv", "0", "{t}/missing"], "No such file or directory: {t}/missing", False),
    (["recv", "0", "{t}/f"], "Not a directory: {t}/f", False),
    (["recv", "0", "{t}/closed"], "Permission denied: {t}/closed", True),
    (["info", "{t}/missing"], "No such file or directory: {t}/missing", False),
    (["info", "{t}/closed/x"], "Permission denied: {t}/closed/x", True),
    (["serve", "{t}/missing", "--port", "0"], "No such file or directory: {t}/missing", False),
    (["serve", "{t}/f", "--port", "0"], "Not a directory: {t}/f", False),
    (["serve", "{t}/closed", "--port", "0"], "Permission denied: {t}/closed", True),
    (["bench", "--size", "64k", "--dir", "{t}/missing"], "No such file or directory", False),
    (["bench", "--size", "64k", "--dir", "{t}/closed"], "Permission denied", True),
    (["bench", "--size", "64k", "--plot", "{t}/missing/chart.png"], "does not exist", False),
    (["bench", "--size", "64k", "--plot", "{t}/closed/chart.png"], "Permission denied", True),
    (["bench", "--size", "64k", "--plot", "{t}"], "is a directory", False),
]


@pytest.mark.parametrize(("args", "words"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_exit_2(tree: Path, args: list[str], words: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    r = run(tree, args, capsys)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert_one_line(r, args[0], words)


@pytest.mark.parametrize(("args", "words", "unprivileged"), FAILURE,
                         ids=[" ".join(a) for a, _, _ in FAILURE])
def test_failures_exit_1(tree: Path, args: list[str], words: str, unprivileged: bool,
                         capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZCIO_NO_PROGRESS", "1")
    r = run(tree, args, capsys, unprivileged)
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""
    assert_one_line(r, args[0], words.format(t=tree))
    assert sorted(p.name for p in tree.iterdir()) == ["closed", "f", "unreadable"]


def test_unknown_command_is_usage(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = run(tree, ["teleport"], capsys)
    assert r.returncode == 2 and "No such command 'teleport'" in r.stderr
