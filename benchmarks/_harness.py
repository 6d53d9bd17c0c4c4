"""The measurement harness shared by ``buffer_ops.py`` and ``pool.py``.

Not run by itself: the scripts import it as ``_harness`` (a script's own directory is
``sys.path[0]`` when it is run as ``python benchmarks/NAME.py``).

A benchmark is a group of cases (subjects and their anchors) that touch the same
memory.  A round times one short loop (well under a millisecond) of every case in the
group with ``perf_counter_ns``, in a fresh random order, so subject and anchor are
interleaved and share whatever the machine is doing; loops that short mostly run
undisturbed, so the median is robust to preemption on a loaded machine.  Each case's
ns/op is the median over the rounds, and a ratio is formed from two medians of the
same run.  Nothing is subtracted: loop overhead stays in every case.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Literal

import zcio

Kind = Literal["time", "speed", "abs"]


def _nothing() -> None:
    pass


@dataclass
class Case:
    """One timed loop: ``run()`` performs ``ops`` operations.

    ``prepare()`` runs untimed before every timed loop (and warm-up loop), ``restore()``
    after it: state a loop consumes (buffer positions) or settings it needs (the leak
    level) without timing them.
    """

    name: str
    ops: int
    run: Callable[[], None]
    prepare: Callable[[], None] = _nothing
    restore: Callable[[], None] = _nothing
    samples: list[float] = field(default_factory=list)  # ns/op, one per round

    @property
    def median(self) -> float:
        return median(self.samples)


@dataclass(frozen=True)
class Compare:
    """A result row.

    kind "time": ratio = subject / anchor time per op (lower is better), goal a maximum.
    kind "speed": ratio = anchor / subject time per op (higher is better), goal a minimum.
    kind "abs": no anchor; goal a maximum in ns per op.
    No anchor and no goal: an information-only row.
    """

    subject: str
    anchor: str | None = None
    kind: Kind = "time"
    goal: float | None = None


@dataclass
class Group:
    title: str
    cases: list[Case]
    compares: list[Compare]
    cleanup: Callable[[], None] = _nothing


# -- running --------------------------------------------------------------------------


@contextmanager
def _gc_disabled() -> Iterator[None]:
    """As timeit: no cyclic collection inside a timed loop (refcounting still frees)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def run_group(group: Group, rounds: int) -> None:
    """Warm up every case, then time ``rounds`` interleaved rounds.

    A round times one short loop of every case, in a fresh random order (fixed seed)
    so that no case is systematically the one a periodic disturbance hits.  Loops are
    kept short (well under a scheduler time slice) so that most of them run
    undisturbed and the median over rounds is the undisturbed cost.  A case's
    ``prepare``/``restore`` run around its loop, outside the timing.
    """
    cases = group.cases
    rng = random.Random(1729)
    clock = time.perf_counter_ns
    order = list(range(len(cases)))
    with _gc_disabled():
        for _ in range(3):
            for case in cases:
                case.prepare()
                case.run()  # warm-up: specialisation, page faults, allocator state
                case.restore()
    for _ in range(rounds):
        rng.shuffle(order)
        with _gc_disabled():
            for i in order:
                case = cases[i]
                case.prepare()
                t0 = clock()
                case.run()
                t1 = clock()
                case.restore()
                case.samples.append((t1 - t0) / case.ops)
        gc.collect()


# -- results --------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    group: str
    name: str
    median_ns: float
    anchor: str | None
    anchor_median_ns: float | None
    kind: Kind
    ratio: float | None  # ratio of the two medians, as ``kind`` defines it
    paired_ratio: float | None  # median of the per-round ratios (robustness check)
    goal: float | None
    met: bool | None


def _ratio(kind: Kind, subject: float, anchor: float) -> float:
    return anchor / subject if kind == "speed" else subject / anchor


def rows_of(group: Group) -> list[Row]:
    by_name = {c.name: c for c in group.cases}
    rows = []
    for cmp in group.compares:
        s = by_name[cmp.subject]
        if cmp.anchor is None:  # information only, or an absolute budget in ns/op
            met = None if cmp.goal is None else s.median <= cmp.goal
            rows.append(Row(group.title, s.name, s.median, None, None, cmp.kind,
                            None, None, cmp.goal, met))
            continue
        a = by_name[cmp.anchor]
        ratio = _ratio(cmp.kind, s.median, a.median)
        paired = median(
            _ratio(cmp.kind, x, y) for x, y in zip(s.samples, a.samples, strict=True)
        )
        met = None
        if cmp.goal is not None:
            met = ratio >= cmp.goal if cmp.kind == "speed" else ratio <= cmp.goal
        rows.append(Row(group.title, s.name, s.median, a.name, a.median, cmp.kind,
                        ratio, paired, cmp.goal, met))
    return rows


def _fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    return f"{ns:,.0f}" if ns >= 100 else f"{ns:.1f}"


def _goal_text(row: Row) -> str:
    if row.goal is None:
        return "-"
    if row.kind == "abs":
        return f"<= {_fmt_ns(row.goal)} ns"
    return f"{row.kind} {'>=' if row.kind == 'speed' else '<='} {row.goal:.2f}"


def format_table(rows: Sequence[Row]) -> str:
    header = ("benchmark", "median ns/op", "anchor", "anchor ns/op", "ratio", "goal", "met?")
    body: list[tuple[str, ...] | str] = []
    group = None
    for row in rows:
        if row.group != group:
            group = row.group
            body.append(f"-- {group}")
        ratio = "-" if row.ratio is None else f"{row.ratio:.3f} {row.kind}"
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        body.append((row.name, _fmt_ns(row.median_ns), row.anchor or "-",
                     _fmt_ns(row.anchor_median_ns), ratio, _goal_text(row), met))
    cells = [header] + [b for b in body if isinstance(b, tuple)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    right = {1, 3, 4}

    def line(cols: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cols, widths, strict=True))
        ).rstrip()

    out = [line(header), line(tuple("-" * w for w in widths))]
    out += [b if isinstance(b, str) else line(b) for b in body]
    return "\n".join(out)


def machine_info(*, processor: bool = False, leak_detection: bool = False) -> dict[str, Any]:
    """The machine, Python and zcio; ``processor`` and ``leak_detection`` add those keys
    (each script keeps the keys its JSON has always had, in the same order)."""
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = None
    info: dict[str, Any] = {
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    if processor:
        info["processor"] = platform.processor()
    info |= {"cpu_count": os.cpu_count(), "cpus_usable": usable, "zcio": zcio.__version__}
    if leak_detection:
        info["leak_detection"] = zcio.leak_detection().name
    info["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return info


# -- command line ---------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None, description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="a fast smoke run (5 rounds); numbers unreliable")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds per benchmark (default 200, 5 with --quick)")
    p.add_argument("--json", metavar="PATH", help="also write results and machine info to PATH")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 5 if args.quick else 200
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None, *, benchmark: str, description: str,
         builders: Sequence[Callable[[], Group]], settings: dict[str, Any],
         processor: bool = False, leak_detection: bool = False) -> int:
    """Parse the command line, run every group ``builders`` make (cleaning each up),
    print the table, and with ``--json`` write it with the samples and machine info.

    ``benchmark`` names the JSON document; ``settings`` (the script's own: work per
    loop, sizes) go into its ``settings`` between the run's rounds and the method's
    notes; ``processor``/``leak_detection`` as ``machine_info``.  With
    ``leak_detection`` the level is also printed in the header.
    """
    args = parse_args(argv, description)
    info = machine_info(processor=processor, leak_detection=leak_detection)
    header = (f"zcio {info['zcio']}, Python {platform.python_version()}, {info['platform']}, "
              f"{info['cpu_count']} CPUs")
    if leak_detection:
        header += f"; leak detection {info['leak_detection']}"
    print(header)
    print(f"{args.rounds} interleaved rounds per benchmark{' (--quick)' if args.quick else ''}; "
          "medians; loop overhead NOT subtracted on either side (same loop shape both sides)")
    rows: list[Row] = []
    samples: dict[str, dict[str, list[float]]] = {}
    t_start = time.perf_counter()
    for build in builders:
        group = build()
        try:
            run_group(group, args.rounds)
        finally:
            group.cleanup()
        rows += rows_of(group)
        samples[group.title] = {c.name: c.samples for c in group.cases}
    elapsed = time.perf_counter() - t_start
    print()
    print(format_table(rows))
    print()
    print("ratio: 'time' = subject ns / anchor ns (lower is better); "
          "'speed' = anchor ns / subject ns (higher is better).")
    goals = [r for r in rows if r.met is not None]
    print(f"goals met: {sum(bool(r.met) for r in goals)}/{len(goals)}; "
          f"ran in {elapsed:.1f} s")
    if args.json:
        doc = {
            "benchmark": benchmark,
            "machine": info,
            "settings": {
                "rounds": args.rounds,
                "quick": args.quick,
                **settings,
                "loop_overhead_subtracted": False,
                "ratio": "ratio of medians; paired_ratio = median of per-round ratios",
            },
            "results": [r.__dict__ for r in rows],
            "samples_ns_per_op": samples,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0
