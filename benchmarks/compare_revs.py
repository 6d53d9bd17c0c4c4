"""Before and after: every benchmark's ratios at two git revisions, measured together.

Run by hand, not by CI::

    .venv/bin/python benchmarks/compare_revs.py OLD_REV NEW_REV [--only NAME ...]
        [--quick] [--repeats N] [--threshold 0.10] [--repo PATH] [--timeout SECONDS]

For the bar "every benchmark at least as fast as before": each revision is checked
out into a temporary git worktree (``$TMPDIR/zcio-bench-revs-*/old`` and ``new``,
detached, removed at the end whatever happens), its C guard built there with the
running interpreter (``setup.py build_ext --inplace``; a tree without ``setup.py``
runs as it is, and a failed build is reported and that side runs pure Python), and
each benchmark is run from each tree with that tree's ``src`` first on
``PYTHONPATH``: old, new, old, new... (``--repeats`` pairs, default 2), one benchmark
after the other, so both revisions meet the same machine moment.

What is compared is each benchmark's own ratio rows (subject against anchor, same
run), never bare times: per row, the median over the repeats of each side.  A
revision whose scripts predate the ratio rows is read through ``_legacy_ratios``.
The table is ``run_all.py --compare``'s, with the revisions as its columns; a row
more than ``--threshold`` worse (relative, in the direction its ``better`` gives) is
flagged REGRESSION.  Exit status: 1 if any row regressed or any run failed, else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # imported by path (tests), not run
    sys.path.insert(0, str(HERE))

import run_all  # noqa: E402
from _harness import Ratio, meets  # noqa: E402

from zcio._bench._machine import load_average  # noqa: E402

Json = dict[str, Any]


# Build the revision's own extensions (setup.py's ext_modules, captured by running it
# with setup() replaced) in place, from setuptools alone: no project metadata read, so
# no pyproject.toml this setuptools may not understand.
_BARE_BUILD = """
import runpy, setuptools
from setuptools import Distribution
from setuptools.command.build_ext import build_ext
captured = {}
setuptools.setup = lambda **kw: captured.update(kw)
runpy.run_path("setup.py")
dist = Distribution({"name": "zcio", "ext_modules": captured.get("ext_modules", []),
                     "package_dir": {"": "src"}})
cmd = build_ext(dist)
cmd.inplace = True
cmd.ensure_finalized()
cmd.run()
"""


class RevError(Exception):
    """A revision could not be resolved, checked out or built."""


def _git(repo: Path, *args: str) -> str:
    r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                       timeout=120, check=False)
    if r.returncode:
        raise RevError(f"git {' '.join(args)}: {r.stderr.strip() or r.returncode}")
    return r.stdout.strip()


class Tree:
    """One revision checked out in a temporary worktree, its C guard built."""

    def __init__(self, repo: Path, rev: str, path: Path) -> None:
        self.repo, self.rev, self.path = repo, rev, path
        self.commit = _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}")
        self.label = f"{rev} ({self.commit[:10]})" if rev != self.commit else self.commit[:10]
        self.added = False
        self.build_note = ""

    def add(self) -> None:
        _git(self.repo, "worktree", "add", "--detach", "--quiet", str(self.path), self.commit)
        self.added = True

    def build(self) -> None:
        """Build the C extension in place with this interpreter: ``setup.py build_ext
        --inplace``; if setuptools cannot read that revision's pyproject.toml (an older
        setuptools and a newer metadata field), build setup.py's extensions without it.
        A failure is noted, and the tree runs pure Python (as zcio does wherever the
        extension cannot be built)."""
        if not (self.path / "setup.py").is_file():
            self.build_note = "no setup.py: nothing to build"
            return
        first = self._python(["setup.py", "build_ext", "--inplace"])
        if first is None:
            self.build_note = "C guard built"
            return
        if self._python(["-c", _BARE_BUILD]) is None:
            self.build_note = f"C guard built without pyproject.toml (setup.py: {first})"
        else:
            self.build_note = f"C guard NOT built, runs pure Python: {first}"

    def _python(self, args: list[str]) -> str | None:
        """Run this interpreter in the tree: None if it succeeded, else why not."""
        r = subprocess.run([sys.executable, *args], cwd=self.path, capture_output=True,
                           text=True, timeout=600, check=False)
        if r.returncode == 0:
            return None
        lines = (r.stderr or r.stdout).strip().splitlines()
        why = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "")
        return why.strip()[:200]

    def remove(self) -> None:
        if self.added:
            try:
                _git(self.repo, "worktree", "remove", "--force", str(self.path))
            except RevError:
                shutil.rmtree(self.path, ignore_errors=True)
                _git(self.repo, "worktree", "prune")
            self.added = False

    def script(self, name: str) -> Path:
        return self.path / "benchmarks" / f"{name}.py"

    def run(self, name: str, quick: bool, out: Path, timeout: float) -> list[Ratio]:
        """Run benchmark ``name`` of this tree once; its ratio rows.  RevError if it
        fails, times out or writes no JSON."""
        argv = [sys.executable, str(self.script(name)), "--json", str(out)]
        if quick:
            argv.append("--quick")
        env = dict(os.environ, PYTHONPATH=str(self.path / "src"))
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, cwd=self.path, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
            try:
                code = proc.wait(timeout)
            except BaseException:  # the timeout, or ^C: not left running
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-5:]
        if code != 0 or not out.is_file():
            raise RevError(f"{name} at {self.label}: exit status {code}"
                           + ("".join(f"\n  | {line}" for line in tail)))
        doc = json.loads(out.read_text(encoding="utf-8"))
        out.unlink()
        return run_all.extract(name, doc)


def _median_rows(runs: Sequence[list[Ratio]]) -> list[Ratio]:
    """Per key (in the first run's order), the row with its ratio the median over the
    runs that have it, and its verdict recomputed."""
    by_key: dict[str, list[Ratio]] = {}
    for rows in runs:
        for r in rows:
            by_key.setdefault(r["key"], []).append(r)
    out = []
    for rows in by_key.values():
        values = [r["ratio"] for r in rows if r["ratio"] is not None]
        row = Ratio(**rows[0])
        row["ratio"] = median(values) if values else None
        if row["goal"] is not None and row["goal_op"] and row["ratio"] is not None:
            row["met"] = meets(row["ratio"], row["goal_op"], row["goal"])
        out.append(row)
    return out


def measure(trees: tuple[Tree, Tree], names: Sequence[str], quick: bool, repeats: int,
            tmp: Path, timeout: float) -> tuple[list[Json], list[Json], list[str]]:
    """Run every benchmark ABAB; per side, run_all-style benchmark entries (name and
    median ratio rows), and the failures."""
    sides: tuple[list[Json], list[Json]] = ([], [])
    failures: list[str] = []
    for name in names:
        missing = [t.label for t in trees if not t.script(name).is_file()]
        if missing:
            failures.append(f"{name}: no benchmarks/{name}.py at {', '.join(missing)}")
            continue
        runs: tuple[list[list[Ratio]], list[list[Ratio]]] = ([], [])
        t0 = time.perf_counter()
        print(f"{name:<11} ", end="", flush=True)
        try:
            for rep in range(repeats):
                for side, tree in enumerate(trees):
                    runs[side].append(tree.run(name, quick, tmp / f"{name}-{side}-{rep}.json",
                                               timeout))
                    print("AB"[side], end="", flush=True)
        except (RevError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
            print(" failed")
            failures.append(f"{name}: {e}")
            continue
        print(f" {time.perf_counter() - t0:.1f} s")
        for side in (0, 1):
            sides[side].append({"name": name, "ratios": _median_rows(runs[side])})
    return sides[0], sides[1], failures


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Every benchmark's ratio rows at two git revisions, run alternately "
        "from two temporary worktrees; regressions flagged.")
    p.add_argument("old", metavar="OLD_REV")
    p.add_argument("new", metavar="NEW_REV")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help=f"these benchmarks (default: {', '.join(run_all.NAMES)}); any NAME "
                   "with a benchmarks/NAME.py at both revisions")
    p.add_argument("--quick", action="store_true",
                   help="pass --quick to every benchmark (smoke run; numbers meaningless)")
    p.add_argument("--repeats", type=int, default=2,
                   help="runs of each benchmark per revision, alternating (default 2)")
    p.add_argument("--threshold", type=float, default=run_all.REGRESSION,
                   help="flag a ratio this much worse, relative (default 0.10)")
    p.add_argument("--repo", type=Path, default=HERE.parent,
                   help="the git repository (default: the one holding this script)")
    p.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="per benchmark run (default 3600)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.only or [b.name for b in run_all.BENCHMARKS
                          if all(shutil.which(tool) for tool in b.needs)]
    tmp = Path(tempfile.mkdtemp(prefix="zcio-bench-revs-"))
    trees: tuple[Tree, Tree] | None = None
    try:
        try:
            trees = (Tree(args.repo, args.old, tmp / "old"),
                     Tree(args.repo, args.new, tmp / "new"))
            for letter, tree in zip("AB", trees, strict=True):
                tree.add()
                tree.build()
                print(f"{letter} = {tree.label}: {tree.build_note}")
        except (RevError, subprocess.TimeoutExpired) as e:
            print(f"compare_revs: {e}", file=sys.stderr)
            return 2
        machine = run_all.machine_info()
        print(f"{machine['cpu_model']}, {machine['cpus_usable']} CPUs; load "
              f"{' '.join(map(str, load_average()))}; {args.repeats} run(s) per "
              f"revision, alternating{' (--quick: numbers meaningless)' if args.quick else ''}")
        old, new, failures = measure(trees, names, args.quick, args.repeats, tmp, args.timeout)
    finally:
        for tree in trees or ():
            tree.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    labels = (trees[0].label, trees[1].label)
    print()
    text, regressions = run_all.compare(
        {"benchmarks": old, "quick": args.quick, "machine": machine},
        {"benchmarks": new, "quick": args.quick, "machine": machine},
        args.threshold, labels=labels)
    print(text)
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if regressions or failures else 0


if __name__ == "__main__":
    sys.exit(main())
