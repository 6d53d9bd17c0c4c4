"""``benchmarks/run_all.py``: one quick run of buffer_ops end to end, then --compare.

The run uses ``--quick`` (numbers meaningless): what is checked is the shape of the
results file, that the chart is a well-formed PNG, that comparing a file with itself
flags nothing, and that a worse ratio and a failing benchmark are reported.
"""

from __future__ import annotations

import importlib.util
import json
import os
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
    # 4 x get/put_int <= 2x struct, 4 x typed view get/put <= 1x a memoryview.cast
    # subscript, 4 x bulk >= 0.8x memoryview
    assert len(goals) == 12
    for r in goals:
        assert r["met"] == (r["ratio"] <= r["goal"] if r["better"] == "lower"
                            else r["ratio"] >= r["goal"])


def test_rows_are_the_benchmarks_own(results: Path) -> None:
    """run_all takes the rows buffer_ops wrote; an old document without them (a revision
    before the rows) gives the same rows through _legacy_ratios."""
    mod = load_module()  # puts benchmarks/ on sys.path
    [bench] = strict_json(results)["benchmarks"]
    own = bench["json"]
    assert bench["ratios"] == own["ratios"]
    old_style = {k: v for k, v in own.items() if k != "ratios"}
    assert mod.extract("buffer_ops", old_style) == own["ratios"]


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


# -- compare_revs.py ----------------------------------------------------------------------

COMPARE_REVS = ROOT / "benchmarks" / "compare_revs.py"
FAKE = '''"""A fake benchmark: two ratio rows, the first one's ratio set per commit."""
import json
import os
import sys

RATIO = {ratio}
out = sys.argv[sys.argv.index("--json") + 1]
assert "--quick" in sys.argv


def row(name, ratio):
    return {{"key": "fake | " + name, "group": "fake", "name": name, "value": ratio,
            "anchor": "anchor", "anchor_value": 1.0, "unit": "ns/op", "ratio": ratio,
            "better": "lower", "goal": 1.2, "goal_op": "<=", "met": ratio <= 1.2,
            "paired_ratio": None, "note": ""}}


with open(out, "w") as f:
    json.dump({{"benchmark": "fake", "ratios": [row("op vs anchor", RATIO),
                                               row("steady vs anchor", 0.5)]}}, f)
'''


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                           *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    """A repository with benchmarks/fake.py at two commits: ratio 1.0, then 1.5."""
    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    _git(repo, "init", "-q")
    for ratio in (1.0, 1.5):
        (repo / "benchmarks" / "fake.py").write_text(FAKE.format(ratio=ratio))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"ratio {ratio}")
    return repo


def compare_revs(repo: Path, tmp: Path, *revs: str) -> subprocess.CompletedProcess[str]:
    tmp.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(COMPARE_REVS), *revs, "--repo", str(repo), "--only", "fake",
         "--quick", "--repeats", "2"], capture_output=True, text=True, timeout=120,
        check=False, cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp)})


def test_compare_revs_flags_a_regression(fake_repo: Path, tmp_path: Path) -> None:
    proc = compare_revs(fake_repo, tmp_path / "tmp", "HEAD~1", "HEAD")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ABAB" in proc.stdout  # old and new alternate
    assert "no setup.py: nothing to build" in proc.stdout
    flagged = [line for line in proc.stdout.splitlines() if "REGRESSION" in line]
    assert flagged and all("op vs anchor" in line and "steady" not in line for line in flagged)
    assert "+50.0%" in proc.stdout and "goal lost" in proc.stdout
    assert " 1 regressions" in proc.stdout and "2 ratios compared" in proc.stdout
    # the temporary worktrees are gone, from the disk and from git's list
    assert list((tmp_path / "tmp").iterdir()) == []
    assert len(_git(fake_repo, "worktree", "list").splitlines()) == 1


def test_compare_revs_same_revision_is_clean(fake_repo: Path, tmp_path: Path) -> None:
    proc = compare_revs(fake_repo, tmp_path / "tmp", "HEAD", "HEAD")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 regressions" in proc.stdout and "REGRESSION" not in proc.stdout


def test_compare_revs_unknown_revision(fake_repo: Path, tmp_path: Path) -> None:
    proc = compare_revs(fake_repo, tmp_path / "tmp", "no-such-rev", "HEAD")
    assert proc.returncode == 2 and "no-such-rev" in proc.stderr
    assert list((tmp_path / "tmp").iterdir()) == []
