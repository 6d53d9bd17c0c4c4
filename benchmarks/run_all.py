"""Run every benchmark, keep one results file and a chart, compare with an earlier run.

Run by hand, not by CI::

    .venv/bin/python benchmarks/run_all.py [--quick] [--out DIR] [--only NAME ...]
        [--compare OLD.json]
    .venv/bin/python benchmarks/run_all.py --compare OLD.json NEW.json   # no run

Each benchmark (``buffer_ops``, ``pool``, ``channel_io``, ``transfer``, ``serve``) runs as its own
subprocess, one after the other, with ``--json`` into a temporary file (and
``--quick`` when given).  Their documents are collected into one file,
``DIR/results-YYYYmmdd-HHMMSS.json`` (default DIR: ``benchmarks/results/``), with
machine information (kernel, CPU, cores, Python, zcio's git commit, load average
before and after) and, per benchmark: status, exit status, run time, its stdout and
stderr's tail, its own JSON, and ``ratios``: the ratio rows the benchmark wrote itself
(``_harness.Ratio``; ``_legacy_ratios`` for documents from before the rows).  A chart
of those ratios against their goals goes next to it as ``results-YYYYmmdd-HHMMSS.png``.

A benchmark that fails is recorded (with the tail of its stderr) and the others still
run; the exit status is then 1.  A benchmark whose script is missing, lacks
``--json``/``--quick`` or whose tools are not installed is skipped, with the reason.

``--compare OLD.json`` prints, after the run, every ratio now against OLD's, with the
relative change, flagging changes of more than 10 % in the worse direction (and goals
no longer met).  With two files it compares NEW against OLD without running anything.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # imported by path (tests, compare_revs.py), not run
    sys.path.insert(0, str(HERE))

import _harness  # noqa: E402
from _harness import Ratio, finite  # noqa: E402

from zcio._bench import _machine  # noqa: E402
from zcio._bench._machine import load_average  # noqa: E402
from zcio._bench._table import text_table  # noqa: E402

REPO = HERE.parent
DEFAULT_OUT = HERE / "results"
FORMAT = "zcio-bench-results/1"
REGRESSION = 0.10  # a ratio this much worse (relative) than before is flagged
STDERR_TAIL = 40  # lines of stderr kept per benchmark
STDOUT_KEEP = 400  # lines of stdout kept per benchmark

Json = dict[str, Any]


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    needs: tuple[str, ...] = ()  # executables that must be on PATH


BENCHMARKS: tuple[Bench, ...] = (
    Bench("buffer_ops", "buffer_ops.py"),
    Bench("pool", "pool.py"),
    Bench("channel_io", "channel_io.py"),
    Bench("transfer", "transfer.py"),
    Bench("serve", "serve.py", needs=("wrk",)),
)
NAMES = [b.name for b in BENCHMARKS]


def extract(name: str, doc: Json) -> list[Ratio]:
    """A benchmark's ratio rows: the ``ratios`` it wrote itself; for a document from a
    revision before the benchmarks wrote rows, the rows ``_legacy_ratios`` derives from
    its results (what ``compare_revs.py`` needs to measure an older revision)."""
    if "ratios" in doc:
        return list(doc["ratios"])
    from _legacy_ratios import legacy_ratios

    return legacy_ratios(name, doc)


# -- machine ------------------------------------------------------------------------------


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                             timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine_info() -> Json:
    """``zcio._bench``'s machine description, and zcio's git commit here."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return _machine.machine_info() | {
        "zcio_commit": _git("rev-parse", "HEAD"),
        "zcio_describe": _git("describe", "--always", "--dirty"),
        "zcio_dirty": None if status is None else bool(status),
    }


# -- running ------------------------------------------------------------------------------


def skip_reason(bench: Bench) -> str | None:
    script = HERE / bench.script
    if not script.is_file():
        return f"{bench.script} does not exist"
    text = script.read_text(encoding="utf-8", errors="replace")
    missing = [flag for flag in ("--json", "--quick") if f'"{flag}"' not in text]
    if missing:
        return f"{bench.script} has no {' or '.join(missing)} option"
    for tool in bench.needs:
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_bench(bench: Bench, quick: bool, tmp: Path, timeout: float) -> Json:
    """Run one benchmark to completion (or its timeout); never raises for its failure."""
    script = HERE / bench.script
    shown = str(script.relative_to(REPO)) if script.is_relative_to(REPO) else str(script)
    entry: Json = {"name": bench.name, "script": shown,
                   "status": "skipped", "exit_status": None, "reason": None,
                   "runtime_s": None, "load_before": None, "load_after": None,
                   "stdout": "", "stderr_tail": "", "json": None, "ratios": [],
                   "ratios_error": None}
    why = skip_reason(bench)
    if why is not None:
        entry["reason"] = why
        return entry
    out_json = tmp / f"{bench.name}.json"
    argv = [sys.executable, str(script), "--json", str(out_json)]
    if quick:
        argv.append("--quick")
    entry["command"] = ["python", shown, "--json", "TMP.json", *argv[4:]]
    stdout_path, stderr_path = tmp / f"{bench.name}.out", tmp / f"{bench.name}.err"
    entry["load_before"] = load_average()
    t0 = time.perf_counter()
    with open(stdout_path, "wb") as so, open(stderr_path, "wb") as se:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=so, stderr=se,
                                cwd=REPO, start_new_session=True)
        timed_out = False
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: it and its children
            code = proc.wait()
        except BaseException:  # Ctrl-C: do not leave it running
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    entry["runtime_s"] = round(time.perf_counter() - t0, 3)
    entry["load_after"] = load_average()
    entry["exit_status"] = code
    entry["stdout"] = _tail(stdout_path.read_text(errors="replace"), STDOUT_KEEP)
    entry["stderr_tail"] = _tail(stderr_path.read_text(errors="replace"), STDERR_TAIL)
    problems = []
    if timed_out:
        problems.append(f"timed out after {timeout:g} s")
    elif code != 0:
        problems.append(f"exit status {code}")
    if out_json.is_file():
        try:
            entry["json"] = json.loads(out_json.read_text(encoding="utf-8"))
        except ValueError as e:
            problems.append(f"its JSON does not parse: {e}")
    elif not timed_out:
        problems.append("wrote no JSON")
    if entry["json"] is not None:
        try:
            entry["ratios"] = extract(bench.name, entry["json"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            entry["ratios_error"] = f"{type(e).__name__}: {e}"
    entry["status"] = "failed" if problems else "ok"
    entry["reason"] = "; ".join(problems) or None
    return entry


def goals_met(ratios: Iterable[Ratio]) -> tuple[int, int]:
    judged = [r for r in ratios if r["met"] is not None]
    return sum(bool(r["met"]) for r in judged), len(judged)


# -- output -------------------------------------------------------------------------------


def summary(doc: Json) -> str:
    rows = []
    for b in doc["benchmarks"]:
        met, judged = goals_met(b["ratios"])
        rt = b["runtime_s"]
        note = b["reason"] or ""
        if b["ratios_error"]:
            note = f"{note}; " if note else ""
            note += f"ratios not extracted: {b['ratios_error']}"
        rows.append((b["name"], b["status"].upper() if b["status"] == "failed" else b["status"],
                     "-" if b["exit_status"] is None else str(b["exit_status"]),
                     "-" if rt is None else f"{rt:.1f} s",
                     str(len(b["ratios"])) if b["status"] != "skipped" else "-",
                     f"{met}/{judged}" if judged else "-", note))
    return text_table(("benchmark", "status", "exit", "time", "ratios", "goals met", "note"), rows,
                 right={2, 3, 4, 5})


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _label(r: Ratio) -> str:
    """The subject and, unless its name already says, its anchor."""
    if r["anchor"] is None or " vs " in r["name"]:
        return r["name"]
    return f"{r['name']} vs {r['anchor']}"


def compare(old: Json, new: Json, threshold: float = REGRESSION,
            labels: tuple[str, str] = ("then", "now")) -> tuple[str, int]:
    """The table of every ratio in both documents; the number of regressions.

    A regression is a ratio more than ``threshold`` (relative) worse than before, in
    the direction its ``better`` gives.  ``labels`` name the two sides (``compare_revs``:
    the two revisions).
    """
    then, now = labels
    olds = {(b["name"], r["key"]): r for b in old["benchmarks"] for r in b["ratios"]}
    rows: list[tuple[str, ...] | str] = []
    flagged: list[str] = []
    n = regressions = improvements = lost = 0
    seen = set()
    for b in new["benchmarks"]:
        heading = None
        for r in b["ratios"]:
            k = (b["name"], r["key"])
            seen.add(k)
            o = olds.get(k)
            if o is None or not finite(o["ratio"]) or not finite(r["ratio"]) or not o["ratio"]:
                continue
            n += 1
            change = r["ratio"] / o["ratio"] - 1
            worse = change if r["better"] == "lower" else -change
            flags = []
            if worse > threshold:
                flags.append("REGRESSION")
                regressions += 1
            elif worse < -threshold:
                flags.append("better")
                improvements += 1
            if o["met"] is True and r["met"] is False:
                flags.append("goal lost")
                lost += 1
            elif o["met"] is False and r["met"] is True:
                flags.append("goal met")
            if heading != (b["name"], r["group"]):
                heading = (b["name"], r["group"])
                rows.append(f"-- {b['name']}: {r['group']}")
            arrow = "\u2193" if r["better"] == "lower" else "\u2191"
            goal = "-" if r["goal"] is None else f"{r['goal_op']} {r['goal']:g}"
            label = _short(_label(r), 80)
            rows.append((label, arrow, f"{o['ratio']:.3f}", f"{r['ratio']:.3f}",
                         f"{change:+.1%}", goal, " ".join(flags)))
            if "REGRESSION" in flags or "goal lost" in flags:
                flagged.append(f"  {b['name']}: {label}: {o['ratio']:.3f} -> "
                               f"{r['ratio']:.3f} ({change:+.1%}, {arrow}) {' '.join(flags)}")
    out = [text_table(("ratio", "", then, now, "change", "goal", "flag"), rows,
                 right={2, 3, 4})]
    out.append(f"\n{n} ratios compared (\u2193 lower is better, \u2191 higher is better): "
               f"{regressions} regressions (more than {threshold:.0%} worse), "
               f"{improvements} more than {threshold:.0%} better, {lost} goals lost")
    out += flagged
    only_old = sum(k not in seen for k in olds)
    only_new = sum(k not in olds for k in seen)
    if only_old or only_new:
        out.append(f"not compared: {only_old} ratios only {then}, {only_new} only {now}")
    notes = []
    if old.get("quick") != new.get("quick"):
        notes.append(f"--quick {then} {old.get('quick')}, {now} {new.get('quick')}")
    for key in ("cpu_model", "cpus_usable", "kernel", "python"):
        a, b2 = old.get("machine", {}).get(key), new.get("machine", {}).get(key)
        if a != b2:
            notes.append(f"{key} {then} {a!r}, {now} {b2!r}")
    if notes:
        out.append("caution, not like for like: " + "; ".join(notes))
    return "\n".join(out), regressions


_OPS = {"<=": "\u2264", ">=": "\u2265", "<": "<", ">": ">", None: ""}


def write_chart(doc: Json, path: Path) -> None:
    """One panel per benchmark run: a bar per ratio from 1 (parity with the anchor) to
    its value on a log scale, coloured by whether its goal is met, the goal a black
    tick; the ratio, goal and verdict in a column at the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker as ticker
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    colours = {True: "#2e8b57", False: "#d0433a", None: "#a9b1ba"}
    text_colours = {True: "#1f6b41", False: "#c0392b", None: "#333333"}
    panels = [b for b in doc["benchmarks"] if b["status"] != "skipped"]
    skipped = [b for b in doc["benchmarks"] if b["status"] == "skipped"]
    plotted = {b["name"]: [r for r in b["ratios"] if finite(r["ratio"]) and r["ratio"] > 0]
               for b in panels}
    # Layout in inches: a row per ratio, a gap between panels for ticks and the title.
    row, gap, top, bottom, width = 0.25, 0.85, 0.95, 0.85, 15.0
    sizes = [max(len(plotted[b["name"]]), 2) + 0.6 for b in panels] or [2.6]
    height = top + bottom + row * sum(sizes) + gap * (len(sizes) - 1)
    fig, axes = plt.subplots(len(sizes), 1, figsize=(width, height), squeeze=False,
                             gridspec_kw={"height_ratios": sizes})
    fig.subplots_adjust(left=0.39, right=0.80, top=1 - top / height, bottom=bottom / height,
                        hspace=gap / (row * sum(sizes) / len(sizes)))
    m = doc["machine"]
    commit = m.get("zcio_describe") or (m.get("zcio_commit") or "?")[:10]
    load = " ".join(f"{x:.2f}" for x in m.get("load_before") or []) or "?"
    quick = "   (--quick: a smoke run, numbers meaningless)" if doc["quick"] else ""
    fig.text(0.01, 1 - 0.15 / height, f"zcio benchmarks, {doc['created']}{quick}",
             fontsize=12, fontweight="bold", va="top")
    fig.text(0.01, 1 - 0.42 / height,
             f"commit {commit}; {m.get('cpu_model')}, {m.get('cpus_usable')} CPUs; kernel "
             f"{m.get('kernel')}; Python {m.get('python')}; load average before {load}",
             fontsize=9, va="top", color="#333333")
    for ax, b in zip(axes[:, 0], panels, strict=False):
        rows = plotted[b["name"]]
        met, judged = goals_met(b["ratios"])
        title = f"{b['name']}: {b['status']}"
        if b["runtime_s"] is not None:
            title += f", {b['runtime_s']:.1f} s"
        if judged:
            title += f", goals met {met}/{judged}"
        ax.set_title(title, loc="left", fontsize=10, fontweight="bold",
                     color=text_colours[False] if b["status"] == "failed" else "black")
        if not rows:
            msg = b["reason"] or b["ratios_error"] or "no ratios"
            tail = (b["stderr_tail"] or "").strip().splitlines()[-1:]
            ax.text(0.0, 0.5, _short("; ".join([msg, *tail]), 160), ha="left", va="center",
                    transform=ax.transAxes, fontsize=9, color=text_colours[False])
            ax.set_axis_off()
            continue
        n = len(rows)
        ys = list(range(n - 1, -1, -1))
        values = [r["ratio"] for r in rows]
        goals = [r["goal"] for r in rows if finite(r["goal"]) and r["goal"] > 0]
        ax.set_xscale("log")
        ax.set_xlim(min([*values, *goals, 1.0]) / 1.25, max([*values, *goals, 1.0]) * 1.25)
        ax.set_ylim(-0.8, n - 0.2)
        ax.barh(ys, [abs(v - 1) for v in values], left=[min(v, 1.0) for v in values],
                height=0.62, color=[colours[r["met"]] for r in rows], zorder=2)
        ax.axvline(1.0, color="#555555", lw=0.9, ls=":", zorder=1)
        right = blended_transform_factory(ax.transAxes, ax.transData)
        prev_group = None
        for y, r in zip(ys, rows, strict=True):
            if finite(r["goal"]) and r["goal"] > 0:
                ax.plot([r["goal"]] * 2, [y - 0.42, y + 0.42], color="black", lw=2.2,
                        solid_capstyle="butt", zorder=3)
            if prev_group is not None and r["group"] != prev_group:
                ax.axhline(y + 0.5, color="#c8c8c8", lw=0.7, zorder=0)
            prev_group = r["group"]
            arrow = "\u2193" if r["better"] == "lower" else "\u2191"
            goal = "" if r["goal"] is None else f"{_OPS[r['goal_op']]} {r['goal']:g}"
            verdict = {True: "met", False: "NOT met", None: ""}[r["met"]]
            ax.text(1.01, y, f"{arrow}{r['ratio']:8.2f}  {goal:<7} {verdict}",
                    transform=right, va="center", fontsize=8, family="monospace",
                    color=text_colours[r["met"]],
                    fontweight="bold" if r["met"] is False else "normal")
        ax.set_yticks(ys)
        ax.set_yticklabels([_short(_label(r), 84) for r in rows], fontsize=8)
        ax.tick_params(axis="y", length=0)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", which="major", color="#e2e2e2", lw=0.6, zorder=0)
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    legend = [Patch(color=colours[True], label="goal met"),
              Patch(color=colours[False], label="goal not met"),
              Patch(color=colours[None], label="no goal (information)"),
              Line2D([], [], color="black", lw=2.2, label="goal"),
              Line2D([], [], color="#555555", lw=0.9, ls=":", label="1 = same as the anchor")]
    fig.legend(handles=legend, loc="lower left", ncol=5, fontsize=8, frameon=False,
               bbox_to_anchor=(0.005, 0.3 / height))
    foot = ("ratio: subject against anchor in the same run, as each benchmark defines it; "
            "\u2193 lower is better (time, cost), \u2191 higher is better (speed); log "
            "scale, bars drawn from 1")
    if skipped:
        foot += ".   skipped: " + "; ".join(f"{b['name']} ({b['reason']})" for b in skipped)
    fig.text(0.01, 0.1 / height, foot, fontsize=7.5, va="bottom", color="#444444")
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Run every benchmark (each as a subprocess, --json), write one "
        "results file and a chart, and compare ratios with an earlier results file.")
    p.add_argument("--quick", action="store_true",
                   help="pass --quick to every benchmark (smoke run; numbers meaningless)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help="where results-*.json and results-*.png go (default benchmarks/results)")
    p.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME",
                   help=f"run only these benchmarks ({', '.join(NAMES)})")
    p.add_argument("--compare", nargs="+", type=Path, metavar="JSON",
                   help="OLD.json: after the run, compare its ratios with OLD's; "
                   "OLD.json NEW.json: compare NEW with OLD and run nothing")
    p.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="per benchmark, after which it is killed and failed (default 3600)")
    p.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    args = p.parse_args(argv)
    if args.compare is not None and len(args.compare) > 2:
        p.error("--compare takes OLD.json or OLD.json NEW.json")
    return args


def load_results(path: Path) -> Json:
    with open(path, encoding="utf-8") as f:
        doc: Json = json.load(f)
    if doc.get("format") != FORMAT:
        raise SystemExit(f"{path}: not a run_all.py results file (format {doc.get('format')!r})")
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare is not None and len(args.compare) == 2:
        old, new = (load_results(p) for p in args.compare)
        print(f"now: {args.compare[1]} ({new['created']}); then: {args.compare[0]} "
              f"({old['created']})\n")
        print(compare(old, new)[0])
        return 0
    old_doc = load_results(args.compare[0]) if args.compare else None

    selected = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"results-{stamp}"
    for i in range(1, 100):
        if not base.with_suffix(".json").exists():
            break
        base = args.out / f"results-{stamp}-{i}"
    machine = machine_info()
    machine["load_before"] = load_average()
    doc: Json = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "only": args.only,
        "argv": sys.argv[1:] if argv is None else list(argv),
        "machine": machine,
        "benchmarks": [],
        "chart": None,
    }
    print(f"zcio {machine['zcio_describe'] or '?'}; {machine['cpu_model']}, "
          f"{machine['cpus_usable']} CPUs; kernel {machine['kernel']}; Python "
          f"{machine['python']}; load {' '.join(map(str, machine['load_before']))}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zcio-run-all-") as tmp:
        for bench in selected:
            print(f"{bench.name:<11} ", end="", flush=True)
            entry = run_bench(bench, args.quick, Path(tmp), args.timeout)
            doc["benchmarks"].append(entry)
            if entry["status"] == "skipped":
                print(f"skipped: {entry['reason']}")
                continue
            print(f"{entry['status']} in {entry['runtime_s']:.1f} s"
                  + (f": {entry['reason']}" if entry["reason"] else ""))
            if entry["status"] == "failed" and entry["stderr_tail"]:
                tail = _tail(entry["stderr_tail"], 8)
                print("  | " + tail.replace("\n", "\n  | "), file=sys.stderr)
    machine["load_after"] = load_average()
    doc["runtime_s"] = round(time.perf_counter() - t0, 3)
    json_path, png_path = base.with_suffix(".json"), base.with_suffix(".png")
    if not args.no_chart:
        try:
            write_chart(doc, png_path)
            doc["chart"] = png_path.name
        except ImportError as e:
            print(f"no chart: {e} (pip install matplotlib)", file=sys.stderr)
    doc = _harness.strict(doc)
    tmp_path = json_path.with_suffix(".json.tmp")
    with open(tmp_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")
    os.replace(tmp_path, json_path)

    print()
    print(summary(doc))
    print(f"\nresults: {json_path}")
    if doc["chart"]:
        print(f"chart:   {png_path}")
    if old_doc is not None:
        print(f"\ncompared with {args.compare[0]} ({old_doc['created']}):\n")
        print(compare(old_doc, doc)[0])
    failed = [b["name"] for b in doc["benchmarks"] if b["status"] == "failed"]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
