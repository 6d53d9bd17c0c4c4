"""How ``zcio bench`` shows its results: one table for a person (rich), and a chart."""

from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING, Any

from ._methods import GB, MIB, MMAP_WINDOW

if TYPE_CHECKING:
    from ._run import Outcome, Run

__all__ = ["render_table", "draw_plot"]

_NOTE_WIDTH = 100
GIB = 1 << 30  # what a person reads is binary, as every size and speed of the CLI


def _gibps(gb_per_s: float) -> float:
    """A measured GB/s (the JSON's unit, 10^9 bytes) in GiB/s."""
    return gb_per_s * GB / GIB


def _per_gib(per_gb: float) -> float:
    """A measured cost per GB (10^9 bytes) per GiB."""
    return per_gb * GIB / GB


def _size(n: int) -> str:
    if n % MIB == 0:
        return f"{n // MIB} MiB"
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n} bytes"


def _headline(run: Run) -> tuple[str, str]:
    what = (f"a {_size(run.size)} page-cached file sent over loopback TCP to a receiver process"
            if run.to == "socket" else
            f"a {_size(run.size)} page-cached file copied to a new file ({run.file_system})")
    rounds = f"{run.rounds} round{'s' if run.rounds > 1 else ''}, medians"
    return (f"zcio bench: {what}",
            f"{rounds}; Linux {run.kernel}, {run.cpus} CPUs; every transfer verified "
            f"(size and CRC-32)")


def _who(run: Run) -> str:
    return "the sender" if run.to == "socket" else "the copying process"


def _row(o: Outcome) -> list[str]:
    m = o.method
    model = [f"{m.model.dma} + {m.model.cpu}", m.model.switches]
    s = o.summary()
    if s is None:
        return [m.label, "FAILED" if o.status == "failed" else "n/a", "", "", "", "", *model]
    return [m.label, f"{_gibps(s['gb_per_s']):.2f}",
            f"{_per_gib(s['user_cpu_s_per_gb']):.3f} + "
            f"{_per_gib(s['system_cpu_s_per_gb']):.3f}",
            f"{s['voluntary_switches']:.0f} / {s['involuntary_switches']:.0f}",
            f"{s['syscalls']:.0f}", f"{s['user_space_crossings']:.2f}x", *model]


def _notes(run: Run, plot: str | None) -> list[tuple[str, str]]:
    """(term, explanation) pairs printed under the table."""
    size = _size(run.size)
    socket = run.to == "socket"
    span = ("from the first byte sent to the receiver's report that all of it arrived"
            if socket else "from the start of the copy to its last byte written (to the "
            "page cache, not synced)")
    notes = [
        ("GiB/s", f"{size} / wall time {span}; GiB = 2^30 bytes (--json: GB, 10^9)."
         + (" The receiver checks every byte (CRC-32), which caps the speed at what one "
            "core can receive and check." if socket else "")),
        ("CPU s/GiB", f"{_who(run)}'s CPU seconds per GiB (getrusage), in user and in system "
         "mode" + ("; the receiver's CPU is not in it." if socket else ".")),
        ("switches", f"{_who(run)}'s scheduler context switches per {size}: voluntary (it "
         "waited) and involuntary (it was preempted)."),
        ("syscalls", f"system calls per {size}, counted by zcio. The posts' \"context "
         "switches\" are user/kernel mode switches, two per system call: set the model's "
         "switches beside 2 x syscalls."),
        ("crossed", "bytes the CPU copied between the kernel and this process, as a "
         "multiple of the file, counted by zcio: 2.00x = read in, then written out (the "
         "model's 2 CPU copies); 1.00x = copied once; 0.00x = the bytes never entered user "
         "space. Copies the kernel makes inside itself are not seen here."),
        ("model", "the posts' copies of each byte, DMA + CPU, and their mode switches. "
         + ("Loopback has no NIC, so no DMA happens at all, and the receiving kernel copies "
            "every byte out of the socket whatever the sender did: zero-copy gains less "
            "here than on a real network." if socket else
            "The source is page-cached and the copy is not synced, so no DMA happens "
            "while it is measured.")),
    ]
    for o in run.outcomes:
        notes.extend(_method_notes(run, o))
    notes.append(("buffers", f"{_size(run.chunk)} for read/write"
                  + (" and MSG_ZEROCOPY (--chunk)" if socket else " (zcio's relay buffer)")
                  + f"; mmap+write maps {_size(MMAP_WINDOW)} windows, as the JDK's "
                  "transferTo does."))
    if not run.page_cached:
        notes.append(("warning", "the test file was not wholly in the page cache: disk "
                      "reads are in the numbers."))
    if plot is not None:
        notes.append(("chart", plot))
    return notes


def _method_notes(run: Run, o: Outcome) -> list[tuple[str, str]]:
    m = o.method
    if o.status == "failed":
        return [(m.label, f"FAILED, not a result: {o.reason}")]
    if o.status == "unavailable":
        return [(m.label, f"not available here: {o.reason}")]
    text = f"model: {m.model.note}." if m.model.note else ""
    if m.key == "msg_zerocopy":
        sends, copied = o.totals("zerocopy_sends"), o.totals("zerocopy_copied")
        text += (f" The kernel reported {copied} of {sends} sends copied anyway "
                 "(SO_EE_CODE_ZEROCOPY_COPIED)"
                 + (": over loopback it always copies." if copied == sends else "."))
    elif m.key == "copy_file_range":
        if o.samples and all(s.details.get("reflinked") for s in o.samples):
            text += " Here it reflinked: the copy shares the source's blocks."
        else:
            text += f" No reflink on {run.file_system}: the kernel copied the bytes."
    return [(m.label, text.strip())] if text else []


def render_table(run: Run, plot: str | None) -> None:
    """Print the headline, the table and its notes on stdout."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    tty = sys.stdout.isatty()
    console = Console(highlight=False, width=None if tty else 200, soft_wrap=False)
    title, subtitle = _headline(run)
    console.print(f"[bold]{title}[/bold]\n{subtitle}\n")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("method", no_wrap=True)
    for name in ("GiB/s", "CPU s/GiB\nuser + sys", "switches\nvol. / invol.", "syscalls",
                 "crossed\nuser space"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("model copies\nDMA + CPU", justify="center", style="cyan", no_wrap=True)
    table.add_column("model\nswitches", style="cyan", no_wrap=True)
    for o in run.outcomes:
        style = "red" if o.status == "failed" else "dim" if o.status != "ok" else None
        table.add_row(*_row(o), style=style)
    console.print(table)
    width = min(console.width, _NOTE_WIDTH)
    term = max(len(t) for t, _ in _notes(run, plot)) + 2
    for name, text in _notes(run, plot):
        console.print(textwrap.fill(text, width, initial_indent=name.ljust(term),
                                    subsequent_indent=" " * term), markup=False)


# -- the chart --------------------------------------------------------------------------


def draw_plot(run: Run, path: str) -> None:
    """Draw GiB/s (with every round as a dot) and CPU s/GiB (user + system) per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outcomes = list(reversed(run.outcomes))  # the first method on top
    labels = [_plot_label(o) for o in outcomes]
    ys = range(len(outcomes))
    fig, (speed, cpu) = plt.subplots(1, 2, figsize=(12, 1.2 + 0.75 * len(outcomes)),
                                     sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    title, _ = _headline(run)
    rounds = (f"{run.rounds} rounds (bars: medians, dots: rounds)" if run.rounds > 1
              else "1 round")
    fig.suptitle(f"{title.removeprefix('zcio bench: ')}\n{rounds}; Linux {run.kernel}, "
                 f"{run.cpus} CPUs", fontsize=11)
    gbps = [_gibps(_get(o, "gb_per_s")) for o in outcomes]
    colors = [_color(_get(o, "user_space_crossings")) for o in outcomes]
    speed.barh(ys, gbps, color=colors, height=0.6)
    for y, o in zip(ys, outcomes, strict=True):
        speed.plot([_gibps(s.gbps) for s in o.samples], [y] * len(o.samples), "o", color="black",
                   markersize=3, alpha=0.6)
    ends = [max([v, *(_gibps(s.gbps) for s in o.samples)])
            for v, o in zip(gbps, outcomes, strict=True)]
    _annotate(speed, outcomes, gbps, ends, "{:.2f}")
    speed.set_xlabel("GiB/s (higher is better)")
    speed.set_title("speed", loc="left", fontsize=10)
    speed.set_yticks(list(ys), labels)
    user = [_per_gib(_get(o, "user_cpu_s_per_gb")) for o in outcomes]
    system = [_per_gib(_get(o, "system_cpu_s_per_gb")) for o in outcomes]
    cpu.barh(ys, user, color="#dd8452", height=0.6, label="user")
    cpu.barh(ys, system, left=user, color="#c44e52", height=0.6, label="system")
    total = [u + s for u, s in zip(user, system, strict=True)]
    _annotate(cpu, outcomes, total, total, "{:.3f}")
    cpu.set_xlabel("CPU seconds per GiB (lower is better)")
    cpu.set_title(f"{_who(run)}'s CPU", loc="left", fontsize=10)
    cpu.legend(loc="lower right", bbox_to_anchor=(1, 1), ncol=2, fontsize=8, frameon=False)
    for ax in (speed, cpu):
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
        ax.margins(x=0.18)
    fig.text(0.01, 0.01, "Bar colour: how often each byte crossed user space (zcio's count): "
             "dark blue 2x, light blue 1x, green never. Every transfer verified by size and "
             "CRC-32." + (" Loopback: no DMA, and the receiver copies every byte."
                          if run.to == "socket" else ""), fontsize=8, color="#555555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_label(o: Outcome) -> str:
    s = o.summary()
    crossed = f"user space {s['user_space_crossings']:.2f}x" if s else o.status.upper()
    return f"{o.method.label}\nmodel {o.method.model.dma} DMA + {o.method.model.cpu} CPU; {crossed}"


def _color(crossings: float) -> str:
    return "#4c72b0" if crossings >= 1.5 else "#8fb0d9" if crossings >= 0.5 else "#55a868"


def _get(o: Outcome, key: str) -> float:
    s = o.summary()
    return s[key] if s else 0.0


def _annotate(ax: Any, outcomes: list[Outcome], values: list[float], at: list[float],
              fmt: str) -> None:
    for y, (o, v, x) in enumerate(zip(outcomes, values, at, strict=True)):
        if o.status == "ok":
            ax.text(x, y, "  " + fmt.format(v), va="center", fontsize=8)
        else:
            word = "FAILED" if o.status == "failed" else "not available"
            ax.text(0, y, " " + word, va="center", fontsize=8,
                    color="#c44e52" if o.status == "failed" else "#777777")
