"""What a benchmark records about the machine it ran on, written once.

``machine_info()`` is the one description of the machine, Python and zcio that
``zcio bench``, ``benchmarks/_harness.py`` (buffer_ops, pool), ``benchmarks/transfer.py``,
``benchmarks/serve.py`` and ``benchmarks/run_all.py`` put in their results;
``machine_counters()`` the whole machine's busy CPU time and context switches
(``/proc/stat``); ``mount_of()`` the mount holding a path (``/proc/self/mountinfo``).
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from typing import Any

from .._version import __version__

__all__ = ["machine_info", "machine_counters", "load_average", "mount_of", "read_text"]


def read_text(path: str) -> str | None:
    """A small text file's stripped content (``/proc``, ``/sys``), or None if unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def _mem_total() -> int | None:
    m = re.search(r"^MemTotal:\s+(\d+) kB", read_text("/proc/meminfo") or "", re.M)
    return int(m.group(1)) * 1024 if m else None


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, or [] where the system has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not Unix
        return []


def machine_info() -> dict[str, Any]:
    """The machine, Python and zcio: one dictionary, the same keys for every benchmark.

    ``python`` is the version (3.11.9), ``python_build`` the whole ``sys.version``;
    ``cpus_usable`` the CPUs this process may run on (its affinity).
    """
    cpu = _cpuinfo()
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = None
    cores = cpu.get("cpu cores", "")
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu.get("model name") or platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cores_per_socket": int(cores) if cores.isdigit() else None,
        "mem_total_bytes": _mem_total(),
        "python": platform.python_version(),
        "python_build": sys.version,
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "zcio": __version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


_TICK = os.sysconf("SC_CLK_TCK")


def machine_counters() -> tuple[float, int]:
    """(busy CPU seconds, context switches) of the whole machine since boot.

    Busy = user + nice + system + irq + softirq (not idle, iowait, steal), from
    ``/proc/stat``, counted in clock ticks.
    """
    text = read_text("/proc/stat") or ""
    cpu = [int(x) for x in text.split("\n", 1)[0].split()[1:]]
    busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6]
    m = re.search(r"^ctxt (\d+)", text, re.M)
    return busy / _TICK, int(m.group(1)) if m else 0


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_of(path: str) -> dict[str, str] | None:
    """The mount holding ``path``: type, source and mount point (/proc/self/mountinfo)."""
    real = os.path.realpath(path)
    dev = os.stat(real).st_dev
    want = f"{os.major(dev)}:{os.minor(dev)}"
    best: tuple[int, bool, dict[str, str]] | None = None
    for line in (read_text("/proc/self/mountinfo") or "").splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        point = _unescape(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if not inside or len(fields) < sep + 3:
            continue
        key = (len(point), fields[2] == want)
        if best is None or key >= best[:2]:
            best = (*key, {"type": fields[sep + 1], "source": _unescape(fields[sep + 2]),
                           "mount_point": point})
    return best[2] if best else None
