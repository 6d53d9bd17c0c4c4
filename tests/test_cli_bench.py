"""``zcio bench``: end to end in a subprocess, and its verification in process.

The end-to-end runs use a 4 MiB file and one round: the numbers are meaningless, but
every method must run (or say why it cannot), be verified, and be accounted for.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import warnings
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import zcio
from zcio._bench import _methods as _bench_methods
from zcio._bench._methods import Failed, Method, Model, Unavailable
from zcio._bench._source import make_source
from zcio._bench._targets import Receiver, run_file, run_socket
from zcio._cli import _bench

MIB = 1 << 20

# How many times each byte crosses user space, by zcio's own count.
SOCKET_CROSSINGS = {"read_write_heap": 2.0, "read_write_direct": 2.0, "mmap_write": 1.0,
                    "sendfile": 0.0, "splice": 0.0, "msg_zerocopy": 1.0}
FILE_CROSSINGS = {"copy_file_range": 0.0, "sendfile": 0.0, "mmap_write": 1.0,
                  "read_write": 2.0}


def zcio_cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "zcio"] if code is None else [sys.executable, "-c", code]
    env = {**os.environ, "ZCIO_NO_PROGRESS": "1"}
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120,
                          env=env, check=False)


def bench_json(*args: str) -> dict[str, Any]:
    result = zcio_cli("bench", "--size", "4m", "--rounds", "1", "--json", *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def check_methods(data: dict[str, Any], crossings: dict[str, float]) -> None:
    assert data["command"] == "bench" and data["ok"] is True
    assert data["size"] == 4 * MIB and data["rounds"] == 1
    assert data["file"]["page_cached"] is True
    methods = {m["key"]: m for m in data["methods"]}
    assert set(methods) == set(crossings)
    for key, m in methods.items():
        model = m["model"]
        assert model["dma_copies"] >= 0 and model["cpu_copies"] >= 0 and model["mode_switches"]
        if m["status"] == "unavailable":
            assert m["available"] is False and m["reason"], key
            continue
        assert m["status"] == "ok" and m["verified"] is True and m["reason"] is None, key
        med = m["median"]
        assert med["gb_per_s"] > 0 and med["wall_seconds"] > 0 and med["syscalls"] > 0, key
        assert med["user_cpu_s_per_gb"] >= 0 and med["system_cpu_s_per_gb"] >= 0, key
        assert med["voluntary_switches"] >= 0 and med["involuntary_switches"] >= 0, key
        assert med["user_space_crossings"] == crossings[key], key
        assert med["user_bytes"] + med["kernel_bytes"] >= 4 * MIB, key
        assert len(m["rounds"]) == 1 and m["rounds"][0]["bytes"] == 4 * MIB


def test_socket_json() -> None:
    data = bench_json()
    assert data["to"] == "socket"
    check_methods(data, SOCKET_CROSSINGS)
    zc = next(m for m in data["methods"] if m["key"] == "msg_zerocopy")
    if zc["status"] == "ok":  # every send's completion arrived, copied or not
        assert zc["zerocopy"]["sends"] == zc["zerocopy"]["completed"] >= 4
        assert 0 <= zc["zerocopy"]["copied"] <= zc["zerocopy"]["sends"]
    sendfile = next(m for m in data["methods"] if m["key"] == "sendfile")
    assert sendfile["model"]["note"]  # 2 + 0 with a NIC that gathers


def test_file_json() -> None:
    data = bench_json("--to", "file")
    assert data["to"] == "file"
    check_methods(data, FILE_CROSSINGS)
    cfr = next(m for m in data["methods"] if m["key"] == "copy_file_range")
    assert isinstance(cfr["reflinked"], bool)


def test_table_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "bench.png"
    result = zcio_cli("bench", "--size", "1m", "--rounds", "2", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for word in ("GiB/s", "CPU s/GiB", "syscalls", "model", "read/write (heap)", "mmap+write",
                 "sendfile", "splice", "MSG_ZEROCOPY", "no DMA", "verified", str(out)):
        assert word in result.stdout, word
    png = out.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_plot_with_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.svg"
    data = bench_json("--to", "file", "--plot", str(out))
    assert data["plot"] == str(out)
    assert out.read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("args", [
    ["--size", "12 parsecs"],
    ["--size", "0"],
    ["--rounds", "0"],
    ["--rounds", "many"],
    ["--chunk", "1"],
    ["--to", "disk"],
    ["--plot", "{tmp}/missing/out.png"],
    ["--plot", "/proc/out.png"],  # a directory nobody can create files in, root included
    ["--plot", "{tmp}/out.txt"],
    ["--plot", "{tmp}"],
    ["--dir", "{tmp}/missing"],
    ["--size", "1000000t"],
    ["--no-such-option"],
])
def test_bad_input(args: list[str], tmp_path: Path) -> None:
    result = zcio_cli("bench", *(a.format(tmp=tmp_path) for a in args))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zcio bench: "), result.stderr
    assert result.stdout == ""
    assert not list(tmp_path.iterdir())  # nothing measured, nothing left behind


def test_plot_without_matplotlib(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['matplotlib'] = None; "
            "from zcio._cli import main; main()")
    result = zcio_cli("bench", "--plot", str(tmp_path / "out.png"), code=code)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "zcio bench: --plot needs matplotlib: pip install 'zcio[plot]'"]


# -- in process: a wrong answer is a failure, never a result -----------------------------


def _corrupting(flip_at: int | None, short: int = 0) -> Method:
    """A method that sends the file with one byte flipped, or ``short`` bytes too few."""

    def send(src: zcio.FileChannel, dst: Any, count: int, chunk: int) -> dict[str, int]:
        data = bytearray(count)
        src.read(zcio.ByteBuffer.wrap(data), 0)
        if flip_at is not None:
            data[flip_at] ^= 1
        buf = zcio.ByteBuffer.wrap(data).limit(count - short)
        while buf.has_remaining():
            dst.write(buf)
        return {}

    return Method("corrupt", "corrupt", Model(0, 0, "-"), send)


def _unavailable(src: zcio.FileChannel, dst: Any, count: int, chunk: int) -> dict[str, int]:
    raise Unavailable("not on this machine")


@pytest.fixture
def source(tmp_path: Path) -> tuple[str, int, int]:
    path = str(tmp_path / "source")
    crc, _ = make_source(path, 2 * MIB, 0, lambda n: None)
    return path, 2 * MIB, crc


def test_socket_run_catches_wrong_bytes(source: tuple[str, int, int]) -> None:
    path, size, crc = source
    good = _bench_methods.SOCKET_METHODS[0]
    with Receiver() as receiver:
        for bad in (_corrupting(size // 2), _corrupting(None, short=1)):
            with pytest.raises(Failed, match="expected 2097152 bytes"):
                run_socket(bad, receiver, path, size, MIB, (size, crc))
            sample = run_socket(good, receiver, path, size, MIB, (size, crc))  # still usable
            assert sample.nbytes == size and sample.user_bytes == 2 * size


def test_the_receiver_is_a_fresh_process_that_leaves_nothing_behind() -> None:
    """Started while another thread runs (waiting for a lock), the receiver copies none
    of this process (no fork: no DeprecationWarning on 3.12+), answers, and on close leaves no
    process, thread or descriptor of its own; a receiver that died is reported."""
    held = threading.Lock()
    held.acquire()
    t = threading.Thread(target=lambda: held.acquire(timeout=30))
    t.start()
    fds, threads = set(os.listdir("/proc/self/fd")), threading.active_count()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            receiver = Receiver()
        with receiver:
            receiver.expect()
            with socket.create_connection(receiver.address) as s:
                s.sendall(b"abc")
            assert receiver.report(10) == (3, zlib.crc32(b"abc"), "")
            pid = receiver._process.pid
        assert receiver._process.returncode is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert set(os.listdir("/proc/self/fd")) == fds
        assert threading.active_count() == threads
        with Receiver() as receiver:
            receiver._process.kill()
            receiver._process.wait()
            with pytest.raises(Failed, match="exited"):
                receiver.report(10)
    finally:
        held.release()
        t.join()


def test_file_run_catches_wrong_bytes(source: tuple[str, int, int], tmp_path: Path) -> None:
    path, size, crc = source
    copy = str(tmp_path / "copy")
    with pytest.raises(Failed, match="the copy has"):
        run_file(_corrupting(0), path, copy, size, MIB, (size, crc))
    assert not os.path.exists(copy)
    for method in _bench_methods.FILE_METHODS:
        assert run_file(method, path, copy, size, MIB, (size, crc)).nbytes == size
        assert not os.path.exists(copy)


def test_failed_method_fails_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    methods = [_bench_methods.SOCKET_METHODS[3], _corrupting(100),
               Method("gone", "gone", Model(0, 0, "-"), _unavailable)]
    monkeypatch.setattr(_bench, "SOCKET_METHODS", methods)
    result = CliRunner().invoke(_bench.bench, ["--size", "1m", "--rounds", "1", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    status = {m["key"]: (m["status"], m["verified"], m["median"]) for m in data["methods"]}
    assert status["sendfile"][:2] == ("ok", True)
    assert status["corrupt"] == ("failed", False, None)
    assert status["gone"] == ("unavailable", False, None)
    assert data["ok"] is False
    reasons = {m["key"]: m["reason"] for m in data["methods"]}
    assert "CRC-32" in reasons["corrupt"] and reasons["gone"] == "not on this machine"

    table = CliRunner().invoke(_bench.bench, ["--size", "1m", "--rounds", "1"])
    assert table.exit_code == 1
    assert "FAILED" in table.output and "not available here" in table.output


def test_table_speaks_binary_as_the_rest_of_the_cli() -> None:
    from zcio._bench._report import _gibps, _per_gib

    assert _gibps(1.073741824) == pytest.approx(1.0)  # 2^30 bytes a second
    assert _per_gib(1.0) == pytest.approx(1.073741824)


def test_rotation_interleaves_rounds() -> None:
    from zcio._bench._run import rotation

    items = ["a", "b", "c"]
    assert [rotation(items, r) for r in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    # reversed every other round: no item is always first or always last
    orders = [rotation(items, r, reverse_odd=True) for r in range(6)]
    assert orders[1] == ["a", "c", "b"]
    assert {o[0] for o in orders} == {o[-1] for o in orders} == set(items)
    assert rotation([], 3) == []


def test_text_table_aligns_and_keeps_headings() -> None:
    from zcio._bench._table import text_table

    out = text_table(("name", "n"), ["-- group", ("long name", "1"), ("x", "100")], right={1})
    assert out.splitlines() == [
        "name         n",
        "---------  ---",
        "-- group",
        "long name    1",
        "x          100",
    ]
