"""``benchmarks/run_all.py``: one quick run of buffer_ops end to end, then --compare.

The run uses ``--quick`` (numbers meaningless): what is checked is the shape of the
results file, that the chart is a well-formed PNG, that comparing a file with itself
flags nothing, and that a worse ratio and a failing benchmark are reported.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
RUN_ALL = ROOT / "benchmarks" / "run_all.py"


def run_all(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUN_ALL), *args], capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=ROOT)


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("zcio_bench_run_all", RUN_ALL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def strict_json(path: Path) -> Any:
    def no_constants(name: str) -> None:
        raise AssertionError(f"{path.name} holds {name}: not strict JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constants)


def check_png(path: Path) -> tuple[int, int]:
    """Walk every chunk: signature, CRCs, IHDR first, IEND last, IDAT inflates."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds, idat = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        kinds.append(kind)
        if kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert pos == len(data) and kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    width, height = struct.unpack(">II", data[16:24])
    raw = zlib.decompress(idat)
    assert len(raw) > width * height  # filter byte per row + pixels
    return width, height


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-results")
    t0 = time.monotonic()
    proc = run_all("--quick", "--only", "buffer_ops", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 60
    files = sorted(out.iterdir())
    assert [f.suffix for f in files] == [".json", ".png"], files
    assert files[0].stem == files[1].stem and files[0].name.startswith("results-")
    assert "buffer_ops" in proc.stdout and "goals met" in proc.stdout  # the summary
    return files[0]


def test_results_file(results: Path) -> None:
    doc = strict_json(results)
    assert doc["format"] == "zcio-bench-results/1"
    assert doc["quick"] is True and doc["chart"] == results.with_suffix(".png").name
    m = doc["machine"]
    for key in ("kernel", "cpu_model", "cpu_count", "python", "zcio_commit",
                "load_before", "load_after"):
        assert key in m, key
    assert len(m["load_before"]) == 3 and len(m["load_after"]) == 3
    [bench] = doc["benchmarks"]
    assert bench["name"] == "buffer_ops" and bench["status"] == "ok"
    assert bench["exit_status"] == 0 and bench["runtime_s"] > 0
    assert bench["json"]["benchmark"] == "buffer_ops" and bench["json"]["settings"]["quick"]
    ratios = bench["ratios"]
    # every row of buffer_ops' own table with an anchor, nothing else
    assert len(ratios) == sum(r["anchor"] is not None for r in bench["json"]["results"])
    assert len({r["key"] for r in ratios}) == len(ratios)
    for r in ratios:
        assert {"name", "value", "anchor", "ratio", "goal", "met"} <= r.keys()
        assert r["ratio"] > 0 and r["value"] > 0 and r["better"] in ("lower", "higher")
    goals = [r for r in ratios if r["goal"] is not None]
    assert len(goals) == 8  # 4 x get/put_int <= 2x struct, 4 x bulk >= 0.8x memoryview
    for r in goals:
        assert r["met"] == (r["ratio"] <= r["goal"] if r["better"] == "lower"
                            else r["ratio"] >= r["goal"])


def test_chart_is_png(results: Path) -> None:
    width, height = check_png(results.with_suffix(".png"))
    assert width > 800 and height > 400


def test_compare_with_itself(results: Path) -> None:
    proc = run_all("--compare", str(results), str(results))
    assert proc.returncode == 0, proc.stderr
    assert "REGRESSION" not in proc.stdout and "goal lost" not in proc.stdout
    assert " 0 regressions" in proc.stdout
    n = len(strict_json(results)["benchmarks"][0]["ratios"])
    assert f"{n} ratios compared" in proc.stdout


def test_compare_flags_a_regression(results: Path, tmp_path: Path) -> None:
    doc = strict_json(results)
    ratios = doc["benchmarks"][0]["ratios"]
    lower = next(r for r in ratios if r["better"] == "lower" and r["goal"] is not None)
    higher = next(r for r in ratios if r["better"] == "higher")
    lower["ratio"] *= 1.2  # 20 % more time: worse
    higher["ratio"] *= 1.05  # 5 % faster: within the noise band, not flagged
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(doc), encoding="utf-8")
    proc = run_all("--compare", str(results), str(newer))
    assert proc.returncode == 0, proc.stderr
    assert " 1 regressions" in proc.stdout
    flagged = [line for line in proc.stdout.splitlines() if "REGRESSION" in line]
    assert flagged and all(lower["name"] in line for line in flagged)


def test_failing_benchmark_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    mod = load_module()
    script = tmp_path / "broken.py"
    script.write_text('import sys\n# options: "--json" "--quick"\n'
                      'print("starting")\nsys.exit("broken: it fell over")\n')
    monkeypatch.setattr(mod, "BENCHMARKS", (
        mod.Bench("broken", str(script)),
        mod.Bench("gone", str(tmp_path / "gone.py")),
        mod.Bench("buffer_ops", "buffer_ops.py"),
    ))
    out = tmp_path / "out"
    assert mod.main(["--quick", "--out", str(out), "--no-chart"]) == 1
    assert "FAILED: broken" in capsys.readouterr().err
    [path] = out.glob("results-*.json")
    broken, gone, ok = strict_json(path)["benchmarks"]
    assert broken["status"] == "failed" and broken["exit_status"] == 1
    assert "broken: it fell over" in broken["stderr_tail"]
    assert broken["stdout"].strip() == "starting" and broken["json"] is None
    assert gone["status"] == "skipped" and "does not exist" in gone["reason"]
    assert ok["status"] == "ok" and ok["ratios"]  # the runner went on
