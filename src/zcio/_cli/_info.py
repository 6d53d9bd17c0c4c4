"""``zcio info [PATH]``: what this machine offers for zero-copy I/O, and what zcio uses.

Everything is asked of the running kernel, not guessed from its version: reflinks and
O_DIRECT by trying them on two temporary files beside PATH (removed at once),
MSG_ZEROCOPY by ``setsockopt(SO_ZEROCOPY)``, io_uring by ``io_uring_setup`` with zero
entries (EINVAL: present; ENOSYS: absent; EPERM: disabled or blocked by seccomp).
It also says which implementation runs (the compiled accelerator ``zcio._native`` or
pure Python) and whether zcio's accesses to mapped files are guarded against SIGBUS (by
that module), and why not.
Nothing else is written anywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import resource
import secrets
from typing import Any

import click

from .. import _accel, _guard, _reflink, _syscalls, _zerocopy
from .._bench._machine import mount_of
from .._bench._machine import read_text as _read
from .._direct import PAGE_SIZE, max_direct_memory, parse_size
from .._errors import ZcioError
from .._pipe import pipe_max_size
from .._transfer import default_ladder
from ._common import PATH, emit_json, human_size

__all__ = ["info", "gather"]

SYSCALLS = ("sendfile", "splice", "tee", "vmsplice", "copy_file_range", "fallocate",
            "mincore", "statx")
SYS_IO_URING_SETUP = 425  # the same on every architecture but alpha
_THP = "/sys/kernel/mm/transparent_hugepage/enabled"
_IO_URING_DISABLED = "/proc/sys/kernel/io_uring_disabled"


# -- probes ----------------------------------------------------------------------------


def msg_zerocopy() -> tuple[bool, str]:
    """Whether a TCP socket accepts SO_ZEROCOPY (needed for send(MSG_ZEROCOPY)): the
    library's own probe, ``zcio._zerocopy.unavailability_cause``."""
    cause = _zerocopy.unavailability_cause()
    return cause is None, cause or "setsockopt(SO_ZEROCOPY) accepted"


def io_uring() -> tuple[bool, str]:
    """Whether io_uring can be used: ``io_uring_setup(0, &params)`` must fail with EINVAL."""
    disabled = _read(_IO_URING_DISABLED)
    note = f", io_uring_disabled={disabled}" if disabled is not None else ""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
    fd = libc.syscall(ctypes.c_long(SYS_IO_URING_SETUP), ctypes.c_uint(0), params)
    if fd >= 0:  # no kernel accepts zero entries, but never leak the ring
        os.close(fd)
        return True, f"io_uring_setup(0) accepted{note}"
    err = ctypes.get_errno()
    if err == errno.EINVAL:
        return True, f"io_uring_setup(0): EINVAL{note}"
    if err == errno.ENOSYS:
        return False, f"io_uring_setup(0): ENOSYS, not in this kernel{note}"
    if err == errno.EPERM:
        return False, f"io_uring_setup(0): EPERM, disabled or blocked{note}"
    return False, f"io_uring_setup: {os.strerror(err)}{note}"


def o_direct(directory: str, path: str) -> dict[str, Any]:
    """O_DIRECT under ``directory``: supported?, alignments and where they came from."""
    name = os.path.join(directory, f".zcio-odirect-probe-{secrets.token_hex(6)}")
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_DIRECT | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o600)
    except OSError as e:
        created = False
        if e.errno == errno.EINVAL:
            return {"supported": False, "detail": f"open(O_DIRECT): {e.strerror}"}
        try:  # a read-only directory: a file given as PATH can still be asked
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
        except OSError:
            return {"supported": None, "detail": f"cannot tell: {e.strerror}"}
    else:
        created = True
    try:
        mem, off, source = _syscalls.dio_alignment(fd)
    finally:
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                os.unlink(name)
    return {"supported": True, "memory_alignment": mem, "offset_alignment": off,
            "detail": source}


def reflink(directory: str) -> dict[str, Any]:
    try:
        ok, detail = _reflink.probe(directory)
    except OSError as e:
        return {"supported": None, "detail": f"cannot tell: {e.strerror}"}
    return {"supported": ok, "detail": detail}


def _first_rung(src_kind: str, dst_kind: str, loopback_peer: bool = False) -> str:
    """The first path of zcio.transfer's default ladder that this system has."""
    ladder, _ = default_ladder(src_kind, dst_kind, loopback_peer)
    for path in ladder:
        if path in ("mmap_write", "read_write") or _syscalls.is_available(path):
            return path
    return "read_write"


def _direct_cap_source(cap: int) -> str:
    env = os.environ.get("ZCIO_MAX_DIRECT_MEMORY")
    if env:
        with contextlib.suppress(ZcioError):
            if parse_size(env) == cap:
                return f"ZCIO_MAX_DIRECT_MEMORY={env}"
        return "set_max_direct_memory()"
    try:
        default = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError):
        default = 1 << 30
    return "default: a quarter of physical memory" if cap == default \
        else "set_max_direct_memory()"


def _limit(value: int) -> int | None:
    return None if value == resource.RLIM_INFINITY else value


# -- the report ------------------------------------------------------------------------


def gather(path: str) -> dict[str, dict[str, Any]]:
    """Everything ``zcio info`` reports, as a JSON-ready dict of topics.

    Raises OSError if ``path`` does not exist.  Sizes are bytes; ``None`` means
    unlimited (limits) or unknown (probes that could not run, with a ``detail``).
    """
    os.stat(path)  # FileNotFoundError, named, for a missing PATH
    directory = path if os.path.isdir(path) else (os.path.dirname(path) or ".")
    uname = os.uname()

    ref = reflink(directory)
    forced = os.environ.get("ZCIO_TRANSFER_PATH") or None
    file_to_file = _first_rung("file", "file")
    uses: dict[str, Any] = {
        "file_to_file": forced or file_to_file,
        "file_to_socket": forced or _first_rung("file", "socket"),
        "file_to_loopback_tcp": forced or _first_rung("file", "socket", loopback_peer=True),
        "socket_to_file": forced or _first_rung("socket", "file"),
        "socket_to_socket": forced or _first_rung("socket", "socket"),
        "cp_under_path": "reflink" if ref["supported"] else file_to_file,
        "forced_by_ZCIO_TRANSFER_PATH": forced,
        "mapped_memory_guard": {"available": _guard.available(),
                                "detail": _guard.unavailability_cause()
                                or "zcio._native: a truncated mapping raises "
                                   "MappedRegionError"},
        "implementation": {"name": _accel.implementation(),
                           "detail": _accel.unavailability_cause()
                           or "zcio._native: compiled fast paths, pure Python as reference"},
    }

    zc_ok, zc_detail = msg_zerocopy()
    ur_ok, ur_detail = io_uring()
    kernel: dict[str, Any] = {"release": uname.release, "machine": uname.machine}
    for name in SYSCALLS:
        kernel[name] = {"available": _syscalls.is_available(name),
                        "detail": _syscalls.unavailability_cause(name)}
    kernel["msg_zerocopy"] = {"available": zc_ok, "detail": zc_detail}
    kernel["io_uring"] = {"available": ur_ok, "detail": ur_detail}

    thp_text = _read(_THP)
    thp = re.search(r"\[(\w+)\]", thp_text) if thp_text else None
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    try:
        pipe_max: int | None = pipe_max_size()
    except (OSError, ValueError):
        pipe_max = None
    cap = max_direct_memory()
    memory: dict[str, Any] = {
        "page_size": PAGE_SIZE,
        "transparent_huge_pages": thp.group(1) if thp else None,
        "rlimit_memlock": {"soft": _limit(soft), "hard": _limit(hard)},
        "direct_memory_cap": cap,
        "direct_memory_cap_source": _direct_cap_source(cap),
        "iov_max": _syscalls.IOV_MAX,
        "pipe_max_size": pipe_max,
    }

    return {
        "kernel": kernel,
        "filesystem": {"path": os.path.abspath(path), "mount": mount_of(path),
                       "reflink": ref, "o_direct": o_direct(directory, path)},
        "memory": memory,
        "zcio_uses": uses,
    }


def _yes_no(probe: dict[str, Any]) -> str:
    answer = {True: "yes", False: "no", None: "unknown"}[probe.get("available",
                                                               probe.get("supported"))]
    return f"{answer} ({probe['detail']})" if probe.get("detail") else answer


def _size_or(value: int | None, none: str) -> str:
    return none if value is None else human_size(value)


def render(report: dict[str, dict[str, Any]]) -> str:
    """The human form: topics, each an aligned two-column list."""
    k, fs, mem, uses = (report["kernel"], report["filesystem"], report["memory"],
                        report["zcio_uses"])
    mount = fs["mount"]
    od = fs["o_direct"]
    if od["supported"]:
        direct = (f"memory {od['memory_alignment']}, offset/length "
                  f"{od['offset_alignment']} ({od['detail']})")
    else:
        direct = _yes_no(od)
    lock = mem["rlimit_memlock"]
    sections: list[tuple[str, list[tuple[str, str]]]] = [
        ("kernel", [("release", f"{k['release']} ({k['machine']})"),
                    *[(name, _yes_no(k[name])) for name in SYSCALLS],
                    ("MSG_ZEROCOPY", _yes_no(k["msg_zerocopy"])),
                    ("io_uring", _yes_no(k["io_uring"]))]),
        (f"file system at {fs['path']}", [
            ("type", f"{mount['type']} ({mount['source']} on {mount['mount_point']})"
             if mount else "unknown"),
            ("reflink (FICLONE)", _yes_no(fs["reflink"])),
            ("O_DIRECT alignment", direct)]),
        ("memory", [
            ("page size", human_size(mem["page_size"])),
            ("transparent huge pages", mem["transparent_huge_pages"] or "not available"),
            ("RLIMIT_MEMLOCK", f"{_size_or(lock['soft'], 'unlimited')} "
                               f"(hard {_size_or(lock['hard'], 'unlimited')})"),
            ("direct-memory cap", f"{human_size(mem['direct_memory_cap'])} "
                                  f"({mem['direct_memory_cap_source']})"),
            ("IOV_MAX", str(mem["iov_max"])),
            ("pipe-max-size", _size_or(mem["pipe_max_size"], "unknown"))]),
        ("zcio will use", [
            ("file -> file", uses["file_to_file"]),
            ("file -> socket", uses["file_to_socket"]),
            ("file -> TCP on this host", f"{uses['file_to_loopback_tcp']} (measured faster "
             "on loopback)"),
            ("socket -> file", uses["socket_to_file"]),
            ("socket -> socket", uses["socket_to_socket"]),
            ("zcio cp under PATH", uses["cp_under_path"]),
            ("implementation", uses["implementation"]["name"] + (
                f" ({uses['implementation']['detail']})"
                if uses["implementation"]["name"] != "native" else "")),
            ("SIGBUS guard for mappings", _yes_no(uses["mapped_memory_guard"])),
            *([("forced by", f"ZCIO_TRANSFER_PATH={uses['forced_by_ZCIO_TRANSFER_PATH']}")]
              if uses["forced_by_ZCIO_TRANSFER_PATH"] else [])]),
    ]
    width = max(len(label) for _, rows in sections for label, _ in rows)
    lines = []
    for title, rows in sections:
        lines.append(title)
        lines.extend(f"  {label:<{width}}  {value}" for label, value in rows)
    return "\n".join(lines)


@click.command("info")
@click.argument("path", default=".", type=PATH)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def info(path: str, as_json: bool) -> None:
    """What this machine offers for zero-copy I/O, and what zcio will use.

    PATH (default: the current directory) picks the file system whose reflink and
    O_DIRECT support is probed, with two temporary files that are removed at once.
    """
    report = gather(path)
    if as_json:
        emit_json(report)
    else:
        click.echo(render(report))
