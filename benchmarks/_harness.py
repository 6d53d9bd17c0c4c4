"""The harness every benchmark script shares: buffer_ops, pool, transfer and serve.

Not run by itself: the scripts import it as ``_harness`` (a script's own directory is
``sys.path[0]`` when it is run as ``python benchmarks/NAME.py``).  It gives them:

* the command line they all have (``--quick``, ``--rounds``, ``--json``; a script adds
  its own options): ``parse_args``;
* their **ratio rows** (``ratio_row``): every subject-versus-anchor figure a benchmark
  reports, structured (subject, anchor, both values and their unit, the ratio, which
  way is better, the goal as a number and how the ratio must compare with it), written
  by the benchmark itself into its JSON as ``ratios``.  ``run_all.py`` and
  ``compare_revs.py`` read these rows; nothing parses printed goal text;
* the JSON document (``write_json``) with ``zcio._bench``'s machine description;
* the interleaved round order of process-level benchmarks (``round_order``) and, for
  in-process micro-benchmarks, the timing itself (``Group``, ``run_group``, ``main``);
* the plain-text table printer (``zcio._bench._table.text_table``).

A micro-benchmark is a group of cases (subjects and their anchors) that touch the same
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
import math
import os
import platform
import random
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Literal, TypedDict, TypeVar

import zcio
from zcio._bench._machine import machine_info
from zcio._bench._run import rotation
from zcio._bench._table import text_table

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
    #: what a round's loops are timed with: elapsed time, or ``time.thread_time_ns``
    #: for a CPU figure (the channel_io benchmark's file rows)
    clock: Callable[[], int] = time.perf_counter_ns


# -- ratio rows -------------------------------------------------------------------------

Better = Literal["lower", "higher"]


class Ratio(TypedDict):
    """One subject-versus-anchor figure, as every benchmark writes it (``ratios``).

    ``ratio`` is the subject's figure over the anchor's (``value / anchor_value``, or
    its inverse for a speed measured as time: the benchmark says so in ``note``);
    ``better`` says which way is good ("lower": a time or cost ratio; "higher": a
    speed ratio).  ``goal`` is a number and ``goal_op`` how ``ratio`` must compare with
    it (None: information only); ``met`` the verdict.  ``value`` and ``anchor_value``
    are the two figures behind the ratio, in ``unit``.  ``key`` identifies the row
    across runs and revisions (``run_all.py --compare``, ``compare_revs.py``), so it
    must not hold anything that varies from run to run.
    """

    key: str
    group: str
    name: str
    value: float | None
    anchor: str | None
    anchor_value: float | None
    unit: str
    ratio: float | None
    better: Better
    goal: float | None
    goal_op: str | None
    met: bool | None
    paired_ratio: float | None
    note: str


def loopback_pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP loopback pair (client, peer) as the socket benchmarks use it:
    Nagle off, 1 MiB send and receive buffers on both ends."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    for s in (client, peer):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return client, peer


def meets(ratio: float, op: str, goal: float) -> bool:
    """Whether ``ratio op goal`` holds (op one of <=, <, >=, >)."""
    return {"<=": ratio <= goal, "<": ratio < goal, ">=": ratio >= goal,
            ">": ratio > goal}[op]


def finite(x: Any) -> bool:
    """Whether ``x`` is a number, neither NaN nor infinite."""
    return isinstance(x, int | float) and math.isfinite(x)


def ratio_row(group: str, name: str, *, value: float | None, anchor: str | None,
              anchor_value: float | None, unit: str, ratio: float | None, better: Better,
              goal: float | None = None, goal_op: str | None = None,
              paired_ratio: float | None = None, note: str = "",
              key: str | None = None) -> Ratio:
    """A ratio row; ``goal_op`` defaults to the direction ``better`` gives (<= or >=),
    ``met`` is computed, ``key`` defaults to "GROUP | NAME".  A ratio that is not a
    finite number (a zero or missing figure) is None, and so is its verdict."""
    if not finite(ratio):
        ratio = None
    if goal is not None and goal_op is None:
        goal_op = "<=" if better == "lower" else ">="
    met = None
    if goal is not None and ratio is not None and goal_op is not None:
        met = meets(ratio, goal_op, goal)
    return Ratio(key=key or f"{group} | {name}", group=group, name=name, value=value,
                 anchor=anchor, anchor_value=anchor_value, unit=unit, ratio=ratio,
                 better=better, goal=goal, goal_op=goal_op if goal is not None else None,
                 met=met, paired_ratio=paired_ratio, note=note)


def quotient(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or not (finite(a) and finite(b)) or b == 0:
        return None
    return a / b


T = TypeVar("T")


def round_order(items: Sequence[T], round_index: int) -> list[T]:
    """The order of one round of a process-level benchmark (transfer, serve): rotated
    by the round and reversed every other round (``zcio bench``'s ``rotation``)."""
    return rotation(items, round_index, reverse_odd=True)


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
    clock = group.clock
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


def ratios_of(rows: Sequence[Row]) -> list[Ratio]:
    """The ratio rows of a micro-benchmark's results: one per row with an anchor, and
    one per absolute budget (median / budget against a goal of 1); rows with neither
    are information only and have none."""
    out: list[Ratio] = []
    for r in rows:
        if r.anchor is None:
            if r.kind != "abs" or r.goal is None:
                continue
            out.append(ratio_row(
                r.group, r.name, key=f"{r.group} | {r.name} | vs budget", value=r.median_ns,
                anchor=f"budget {r.goal:,.0f} ns", anchor_value=r.goal, unit="ns/op",
                ratio=r.median_ns / r.goal, better="lower", goal=1.0,
                note="absolute goal, as median / budget"))
            continue
        out.append(ratio_row(
            r.group, r.name, key=f"{r.group} | {r.name} | vs {r.anchor}", value=r.median_ns,
            anchor=r.anchor, anchor_value=r.anchor_median_ns, unit="ns/op", ratio=r.ratio,
            better="higher" if r.kind == "speed" else "lower", goal=r.goal,
            paired_ratio=r.paired_ratio, note=f"{r.kind} ratio"))
    return out


def format_table(rows: Sequence[Row]) -> str:
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
    return text_table(("benchmark", "median ns/op", "anchor", "anchor ns/op", "ratio", "goal",
                       "met?"), body, right={1, 3, 4})


# -- command line and JSON ------------------------------------------------------------


def parse_args(argv: Sequence[str] | None, description: str, *, rounds: int = 200,
               quick_rounds: int = 5, quick_help: str = "",
               extra: Callable[[argparse.ArgumentParser], None] | None = None,
               ) -> argparse.Namespace:
    """The options every benchmark has: ``--quick`` (a smoke run), ``--rounds`` (default
    ``rounds``, ``quick_rounds`` with --quick) and ``--json PATH``; ``extra(parser)``
    adds the script's own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help=f"a fast smoke run ({quick_help or f'{quick_rounds} rounds'}); "
                   "numbers unreliable")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"interleaved rounds (default {rounds}, {quick_rounds} with --quick)")
    p.add_argument("--json", metavar="PATH",
                   help="also write results, ratio rows and machine info to PATH")
    if extra is not None:
        extra(p)
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = quick_rounds if args.quick else rounds
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def header(info: dict[str, Any]) -> str:
    """The first line every benchmark prints: zcio, Python, platform, CPUs."""
    return (f"zcio {info['zcio']}, Python {platform.python_version()}, {info['platform']}, "
            f"{info['cpu_count']} CPUs")


def write_json(path: str, *, benchmark: str, machine: dict[str, Any],
               settings: dict[str, Any], results: Any, ratios: Sequence[Ratio],
               **more: Any) -> None:
    """Write a benchmark's document: its name, the machine, its settings, its own
    results, its ratio rows, and ``more`` (e.g. samples); NaN and infinities as null."""
    doc = {"benchmark": benchmark, "machine": machine, "settings": settings,
           "results": results, "ratios": list(ratios), **more}
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(strict(doc), f, indent=2, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)
    print(f"wrote {path}")


def strict(x: Any) -> Any:
    """``x`` with NaN and infinities as None: strict JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: strict(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [strict(v) for v in x]
    return x


def main(argv: Sequence[str] | None, *, benchmark: str, description: str,
         builders: Sequence[Callable[[], Group]], settings: dict[str, Any],
         leak_detection: bool = False) -> int:
    """Parse the command line, run every group ``builders`` make (cleaning each up),
    print the table, and with ``--json`` write it with its ratio rows, the samples and
    machine info.

    ``benchmark`` names the JSON document; ``settings`` (the script's own: work per
    loop, sizes) go into its ``settings`` between the run's rounds and the method's
    notes.  With ``leak_detection`` the level is printed in the header and recorded
    in the machine description.
    """
    args = parse_args(argv, description)
    info = machine_info()
    top = header(info)
    if leak_detection:
        info["leak_detection"] = zcio.leak_detection().name
        top += f"; leak detection {info['leak_detection']}"
    print(top)
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
        write_json(args.json, benchmark=benchmark, machine=info, settings={
            "rounds": args.rounds, "quick": args.quick, **settings,
            "loop_overhead_subtracted": False,
            "ratio": "ratio of medians; paired_ratio = median of per-round ratios",
        }, results=[r.__dict__ for r in rows], ratios=ratios_of(rows),
            samples_ns_per_op=samples)
    return 0
