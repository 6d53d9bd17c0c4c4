"""zcio's transfer paths against C, Java and Python anchors: file to socket, file to file.

Run by hand, not by CI (CI runs ``--quick`` only to check that the script works)::

    .venv/bin/python benchmarks/transfer.py [--size 1g] [--rounds N] [--quick] [--json PATH]

File to socket: a page-cached file (default 1 GiB of random bytes) goes to a loopback
TCP socket whose other end is a separate receiver process (``recv_into`` a 1 MiB
buffer until EOF, counting bytes).  Every sender runs as its own child process: each
zcio path, C loops (sendfile; splice through a pipe of 1 MiB and of the default
64 KiB; read/write with 1 MiB and 64 KiB) built with ``gcc -O2`` on the spot from
``benchmarks/anchors/``, Java 17 ``FileChannel.transferTo`` (``javac`` on the spot),
Python's ``socket.sendfile`` and a plain Python read/write loop.

File to file: the same file copied in its own directory by ``zcio.transfer`` (each
path), ``cp`` and ``shutil.copyfile``; the copy is deleted after each run, before any
writeback starts, and each timed copy follows an untimed one (see ``Runner._prime``).

Each child opens its file and connects first, says "ready" and waits for "go"; the
clock runs from "go" to the receiver's report of EOF (file to socket) or to the
child's "done" (``cp``: to its exit).  Per run: wall time, the whole machine's busy
CPU time and context switches (``/proc/stat`` deltas: loopback's kernel work is
spread over sender, receiver and softirq), the CPU time of sender plus receiver
(getrusage, precise; immune to other load on the machine) and the sender's own CPU
and context switches (measured by the sender around "ready".."done"; ``cp``: wait4).

A first, untimed pass runs every method once with the receiver computing CRC-32 of
what arrived (for file copies: the CRC of the copy), compared with the file's: a fast
wrong answer must not win.  Timed runs check the byte count.  Then ``--rounds``
rounds each run every method once, the order rotating (and reversing every other
round) as in buffer_ops.py; figures are medians over the rounds, ratios are ratios of
medians from the same run.  GB is 10**9 bytes.  ``--pin`` fixes where sender and
receiver run (by default the scheduler decides, and on loopback that matters: see
benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import IO, Any, Literal

import _harness
from _harness import Better, Ratio, quotient, ratio_row

import zcio
from zcio._bench._machine import machine_counters, machine_info, read_text
from zcio._bench._source import file_crc, make_source, page_cached
from zcio._bench._table import text_table

KIB = 1 << 10
MIB = 1 << 20
GB = 10**9
CHUNK = 1 * MIB  # Python loops' buffer, the receiver's buffer, the big C chunk and pipe
SMALL = 64 * KIB  # the "every 64 KiB loop" comparison
HERE = os.path.dirname(os.path.abspath(__file__))
ANCHORS = os.path.join(HERE, "anchors")
SUBJECT = "zcio.transfer (default)"

Section = Literal["socket", "file"]
Kind = Literal["zcio", "C", "Java", "Python", "tool"]


# -- the methods ----------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One sender.  ``argv`` builds its command line from the run's context."""

    name: str
    section: Section
    kind: Kind
    argv: Callable[[Context], list[str]]
    needs: str | None = None  # "gcc" or "java": n/a when that toolchain is missing


@dataclass
class Context:
    """What a run needs: files, the receiver's port, built anchors."""

    src: str
    dst: str
    port: int = 0
    c_bin: str | None = None
    java_dir: str | None = None


def _py(key: str) -> Callable[[Context], list[str]]:
    def argv(ctx: Context) -> list[str]:
        sec = PY_SENDERS[key][0]
        target = ["--port", str(ctx.port)] if sec == "socket" else ["--dest", ctx.dst]
        return [sys.executable, os.path.abspath(__file__), "--sender", key,
                "--file", ctx.src, *target]
    return argv


def _c(mode: str, chunk: int, pipe: int = 0) -> Callable[[Context], list[str]]:
    def argv(ctx: Context) -> list[str]:
        assert ctx.c_bin is not None
        return [ctx.c_bin, mode, ctx.src, str(ctx.port), str(chunk), str(pipe)]
    return argv


def _java(ctx: Context) -> list[str]:
    assert ctx.java_dir is not None
    return ["java", "-cp", ctx.java_dir, "TransferTo", ctx.src, str(ctx.port)]


def _cp(ctx: Context) -> list[str]:
    # sh says ready, waits for go, then *becomes* cp: no extra process in the window.
    return ["/bin/sh", "-c", 'echo ready; read go; exec cp "$0" "$1"', ctx.src, ctx.dst]


# Python senders, run in a child as ``transfer.py --sender KEY``:
# key -> (section, setup(file, target) -> the timed action returning bytes moved).
Setup = Callable[[str, Any], Callable[[], int]]


def _warm_zcio(file: str) -> None:
    """Make zcio's per-thread scratch (1 MiB relay buffer, 1 MiB splice pipe) now.

    The C loops allocate and touch their buffer and size their pipe before "ready";
    zcio makes its scratch on first use and keeps it per thread, so a long-lived
    sender pays that once.  Moving 1 MiB to /dev/null through each creates them here,
    outside the clock, and faults the buffer in.
    """
    with zcio.FileChannel.open(file) as src, open(os.devnull, "wb", buffering=0) as null:
        for path in ("read_write", "splice"):
            zcio.transfer(src, null, min(CHUNK, src.size() - src.position()), path=path)


def _zcio_setup(path: str | None) -> Setup:
    def setup(file: str, target: Any) -> Callable[[], int]:
        _warm_zcio(file)
        src = zcio.FileChannel.open(file)
        return lambda: zcio.transfer(src, target, path=path)
    return setup


def _transfer_to_setup(file: str, target: Any) -> Callable[[], int]:
    _warm_zcio(file)
    src = zcio.FileChannel.open(file)

    def run() -> int:
        pos, size = 0, src.size()
        while pos < size:
            n = src.transfer_to(pos, size - pos, target)
            if n <= 0:
                break
            pos += n
        return pos
    return run


def _socket_sendfile_setup(file: str, target: Any) -> Callable[[], int]:
    f = open(file, "rb")  # noqa: SIM115 - closed when the child exits
    return lambda: target.sendfile(f)


def _py_rw_setup(file: str, target: Any) -> Callable[[], int]:
    f = open(file, "rb", buffering=0)  # noqa: SIM115 - closed when the child exits
    buf = bytearray(CHUNK)
    mv = memoryview(buf)
    mv[:] = b"\1" * CHUNK  # fault the buffer in before the clock starts, as the C loop

    def run() -> int:
        total, readinto, sendall = 0, f.readinto, target.sendall
        while n := readinto(buf):
            sendall(mv[:n])
            total += n
        return total
    return run


def _shutil_setup(file: str, target: Any) -> Callable[[], int]:
    def run() -> int:
        shutil.copyfile(file, target)
        return os.path.getsize(target)
    return run


PY_SENDERS: dict[str, tuple[Section, Setup]] = {
    "zcio-default": ("socket", _zcio_setup(None)),
    **{f"zcio-{p}": ("socket", _zcio_setup(p))
       for p in ("sendfile", "splice", "mmap_write", "read_write")},
    "zcio-transfer-to": ("socket", _transfer_to_setup),
    "socket-sendfile": ("socket", _socket_sendfile_setup),
    "py-rw": ("socket", _py_rw_setup),
    "file-zcio-default": ("file", _zcio_setup(None)),
    **{f"file-zcio-{p}": ("file", _zcio_setup(p))
       for p in ("sendfile", "splice", "mmap_write", "read_write")},
    "file-shutil": ("file", _shutil_setup),
}

METHODS: list[Method] = [
    Method(SUBJECT, "socket", "zcio", _py("zcio-default")),
    *[Method(f"zcio.transfer path={p}", "socket", "zcio", _py(f"zcio-{p}"))
      for p in ("sendfile", "splice", "mmap_write", "read_write")],
    Method("zcio FileChannel.transfer_to loop", "socket", "zcio", _py("zcio-transfer-to")),
    Method("C sendfile loop (whole rest per call)", "socket", "C", _c("sendfile", 0), "gcc"),
    Method("C splice loop, 1 MiB pipe", "socket", "C", _c("splice", CHUNK, CHUNK), "gcc"),
    Method("C splice loop, 64 KiB pipe (default)", "socket", "C", _c("splice", CHUNK, 0),
           "gcc"),
    Method("C read/write loop, 1 MiB", "socket", "C", _c("rw", CHUNK), "gcc"),
    Method("C read/write loop, 64 KiB", "socket", "C", _c("rw", SMALL), "gcc"),
    Method("Java 17 FileChannel.transferTo", "socket", "Java", _java, "java"),
    Method("Python socket.sendfile", "socket", "Python", _py("socket-sendfile")),
    Method("Python read/write loop, 1 MiB", "socket", "Python", _py("py-rw")),
    Method(SUBJECT, "file", "zcio", _py("file-zcio-default")),
    *[Method(f"zcio.transfer path={p}", "file", "zcio", _py(f"file-zcio-{p}"))
      for p in ("sendfile", "splice", "mmap_write", "read_write")],
    Method("cp", "file", "tool", _cp),
    Method("shutil.copyfile", "file", "Python", _py("file-shutil")),
]


# -- child processes --------------------------------------------------------------------


def sender_main(key: str, file: str, port: int | None, dest: str | None) -> int:
    """A Python sender: set up, "ready", wait for "go", move the file, report."""
    section, setup = PY_SENDERS[key]
    sock: socket.socket | None = None
    if section == "socket":
        assert port is not None
        sock = socket.create_connection(("127.0.0.1", port))
        target: Any = sock
    elif key == "file-shutil":
        target = dest
    else:
        assert dest is not None
        target = zcio.FileChannel.open(dest, zcio.OpenOption.WRITE, zcio.OpenOption.CREATE,
                                       zcio.OpenOption.TRUNCATE_EXISTING)
    action = setup(file, target)
    out = sys.stdout
    with zcio.measure() as m:  # getrusage and zcio's path counters, as C's getrusage
        out.write("ready\n")
        out.flush()
        sys.stdin.buffer.read(1)
        moved = action()
        if sock is not None:
            sock.close()
        elif hasattr(target, "close"):
            target.close()
    info = ",".join(f"{p}:{s.syscalls}" for p, s in sorted(m.paths.items())) or "-"
    out.write(f"done {moved} {m.user_cpu_seconds + m.system_cpu_seconds:.6f} "
              f"{m.voluntary_switches} {m.involuntary_switches} {info}\n")
    out.flush()
    return 0


def receiver_main() -> int:
    """Accept one connection per command line ("count" or "crc"), read it to EOF, report.

    Reports "got BYTES CRC CPU_SECONDS" (CRC -1 when not asked for): CPU is this
    process's getrusage delta over the connection.
    """
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    print(server.getsockname()[1], flush=True)
    buf = bytearray(CHUNK)
    mv = memoryview(buf)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        conn, _ = server.accept()
        want_crc = cmd == "crc"
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        total = crc = 0
        recv_into = conn.recv_into
        while n := recv_into(buf):
            total += n
            if want_crc:
                crc = zlib.crc32(mv[:n], crc)
        conn.close()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
        print(f"got {total} {crc if want_crc else -1} {cpu:.6f}", flush=True)
    return 0


# -- measuring one run ----------------------------------------------------------------


@dataclass
class Sample:
    """One run of one method."""

    wall: float  # seconds, "go" to the end
    nbytes: int
    machine_cpu: float  # busy CPU seconds of the whole machine (/proc/stat)
    machine_ctxt: int  # context switches of the whole machine (/proc/stat)
    sender_cpu: float
    sender_switches: tuple[int, int]  # voluntary, involuntary
    receiver_cpu: float  # 0 for file copies
    info: str  # the sender's own note (paths and syscalls, calls, pipe size)

    @property
    def gbps(self) -> float:
        return self.nbytes / self.wall / GB


class BenchError(Exception):
    """A run failed."""


class WrongBytes(BenchError):
    """A run delivered the wrong number of bytes."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise TimeoutError("a run took too long")


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _pinner(cpus: set[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that pins the child (and every thread it starts) to ``cpus``."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def _reap(proc: subprocess.Popen[bytes]) -> tuple[int, resource.struct_rusage]:
    """wait4 the child: its exit code and whole-life rusage."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


def _parse_done(line: bytes, who: str) -> tuple[int, float, int, int, str]:
    parts = line.decode(errors="replace").split()
    if len(parts) < 5 or parts[0] != "done":
        raise BenchError(f"{who}: expected 'done ...', got {line!r}")
    return int(parts[1]), float(parts[2]), int(parts[3]), int(parts[4]), " ".join(parts[5:])


class Runner:
    """Starts the receiver, runs one method at a time, collects Samples."""

    def __init__(self, ctx: Context, size: int, timeout: int,
                 pin: tuple[set[int], set[int]] | None = None) -> None:
        self.ctx, self.size, self.timeout = ctx, size, timeout
        self.sender_cpus = pin[0] if pin else None
        self.receiver_cpus = pin[1] if pin else None
        self._start_receiver()

    def _start_receiver(self) -> None:
        self.recv = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--receiver"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     preexec_fn=_pinner(self.receiver_cpus))
        assert self.recv.stdout is not None
        self.ctx.port = int(self.recv.stdout.readline())

    def close(self) -> None:
        if self.recv.poll() is None:
            with suppress(OSError):
                assert self.recv.stdin is not None
                self.recv.stdin.write(b"quit\n")
                self.recv.stdin.close()
            try:
                self.recv.wait(10)
            except subprocess.TimeoutExpired:
                self.recv.kill()
                self.recv.wait()

    def _receiver_cmd(self, cmd: str) -> None:
        assert self.recv.stdin is not None
        self.recv.stdin.write(cmd.encode() + b"\n")
        self.recv.stdin.flush()

    def _receiver_report(self) -> tuple[int, int, float]:
        assert self.recv.stdout is not None
        line = self.recv.stdout.readline()
        parts = line.split()
        if len(parts) != 4 or parts[0] != b"got":
            raise BenchError(f"receiver: expected 'got ...', got {line!r}")
        return int(parts[1]), int(parts[2]), float(parts[3])

    def _await_receiver(self, sender_out: IO[bytes]) -> tuple[tuple[int, int, float], bytes]:
        """The receiver's report, and the sender's "done" line if it came first.

        A sender that exits without connecting would leave the receiver waiting forever.
        """
        done = b""
        with selectors.DefaultSelector() as sel:
            assert self.recv.stdout is not None
            sel.register(self.recv.stdout, selectors.EVENT_READ, "receiver")
            sel.register(sender_out, selectors.EVENT_READ, "sender")
            while True:
                for key, _ in sel.select():
                    if key.data == "receiver":
                        return self._receiver_report(), done
                    done = sender_out.readline()
                    if not done:
                        raise BenchError("the sender exited before the receiver saw EOF")
                    sel.unregister(sender_out)

    def _prime(self) -> None:
        """Untimed: copy the source once (copy_file_range) and delete the copy.

        The timed copy then finds as much free memory as it needs already in the guest:
        on a VM that hands free memory back to the host (free page reporting, balloon),
        the first run to allocate fresh page cache after a pause otherwise pays the
        host's page faults, several times its own cost, whichever method it is.
        """
        with suppress(FileNotFoundError):
            os.unlink(self.ctx.dst)
        fi = os.open(self.ctx.src, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fo = os.open(self.ctx.dst, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                moved = 0
                while moved < self.size:
                    n = os.copy_file_range(fi, fo, self.size - moved)
                    if n == 0:
                        break
                    moved += n
            finally:
                os.close(fo)
        finally:
            os.close(fi)
        os.unlink(self.ctx.dst)

    def run(self, method: Method, crc: bool = False) -> tuple[Sample, int | None]:
        """One run; returns the sample and, if ``crc``, the CRC-32 of what arrived."""
        sock = method.section == "socket"
        if not sock:
            try:
                self._prime()
            except OSError as e:
                with suppress(FileNotFoundError):
                    os.unlink(self.ctx.dst)
                raise BenchError(f"{method.name}: the priming copy failed: {e}") from e
        if sock:
            self._receiver_cmd("crc" if crc else "count")
        with tempfile.TemporaryFile() as err, _deadline(self.timeout):
            proc = subprocess.Popen(method.argv(self.ctx), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err,
                                    preexec_fn=_pinner(self.sender_cpus))
            assert proc.stdin is not None and proc.stdout is not None
            try:
                if proc.stdout.readline() != b"ready\n":
                    raise BenchError("did not say 'ready'")
                cpu0, ctxt0 = machine_counters()
                t0 = time.perf_counter()
                proc.stdin.write(b"go\n")  # a whole line: sh's `read` wants one
                proc.stdin.flush()
                if sock:
                    (got, got_crc, recv_cpu), done = self._await_receiver(proc.stdout)
                elif method.kind == "tool":
                    code, usage = _reap(proc)
                else:
                    done = proc.stdout.readline()
                t1 = time.perf_counter()
                cpu1, ctxt1 = machine_counters()
                if sock or method.kind != "tool":
                    moved, s_cpu, vol, invol, info = _parse_done(
                        done or proc.stdout.readline(), method.name)
                    code, usage = _reap(proc)
                else:  # cp: what wait4 says about its whole life (sh, then cp)
                    moved, s_cpu = os.path.getsize(self.ctx.dst), usage.ru_utime + usage.ru_stime
                    vol, invol, info = usage.ru_nvcsw, usage.ru_nivcsw, "wait4"
                if code != 0:
                    raise BenchError(f"exit status {code}")
            except BaseException as e:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if sock:  # it may be waiting for a connection or a report: start afresh
                    self.recv.kill()
                    self.recv.wait()
                    self._start_receiver()
                err.seek(0)
                msg = err.read().decode(errors="replace").strip()
                raise BenchError(f"{method.name}: {e}" + (f"\n{msg}" if msg else "")) from e
        if sock:
            if got != self.size or moved != self.size:
                raise WrongBytes(f"{method.name}: receiver got {got} bytes, sender says "
                                 f"{moved}, file has {self.size}")
            result_crc = got_crc if crc else None
        else:
            if moved != self.size:
                raise WrongBytes(f"{method.name}: copy has {moved} bytes, not {self.size}")
            result_crc = file_crc(self.ctx.dst)[1] if crc else None
            os.unlink(self.ctx.dst)
            recv_cpu = 0.0
        return Sample(t1 - t0, self.size, cpu1 - cpu0, ctxt1 - ctxt0, s_cpu, (vol, invol),
                      recv_cpu, info), result_crc


# -- setup -----------------------------------------------------------------------------


def build_anchors(tmp: str, only: set[str]) -> tuple[str | None, str | None, dict[str, str]]:
    """Compile the C and Java anchors; (C binary, Java class dir, why each is missing)."""
    missing: dict[str, str] = {}
    c_bin = java_dir = None
    if "gcc" in only:
        if shutil.which("gcc") is None:
            missing["gcc"] = "gcc not found"
        else:
            out = os.path.join(tmp, "send_loop")
            r = subprocess.run(["gcc", "-O2", "-Wall", "-o", out,
                                os.path.join(ANCHORS, "send_loop.c")],
                               capture_output=True, text=True)
            if r.returncode:
                missing["gcc"] = f"gcc failed: {r.stderr.strip()}"
            else:
                c_bin = out
    if "java" in only:
        if shutil.which("javac") is None or shutil.which("java") is None:
            missing["java"] = "java/javac not found"
        else:
            jdir = os.path.join(tmp, "java")
            r = subprocess.run(["javac", "-d", jdir, os.path.join(ANCHORS, "TransferTo.java")],
                               capture_output=True, text=True)
            if r.returncode:
                missing["java"] = f"javac failed: {r.stderr.strip()}"
            else:
                java_dir = jdir
    return c_bin, java_dir, missing


def background_load(seconds: float = 1.0) -> float:
    """Busy CPUs (0..cpu_count) while this benchmark sleeps: other load on the machine."""
    c0, _ = machine_counters()
    time.sleep(seconds)
    c1, _ = machine_counters()
    return (c1 - c0) / seconds


def _version(argv: list[str]) -> str | None:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (r.stdout + r.stderr).strip()
    return text.splitlines()[0] if text else None


def tools_info() -> dict[str, Any]:
    """What this benchmark adds to the machine description: the anchors' tools and the
    kernel's pipe and TCP buffer limits."""
    return {
        "gcc": _version(["gcc", "--version"]),
        "java": _version(["java", "-version"]),
        "cp": _version(["cp", "--version"]),
        "pipe_max_size": read_text("/proc/sys/fs/pipe-max-size"),
        "tcp_wmem": read_text("/proc/sys/net/ipv4/tcp_wmem"),
        "tcp_rmem": read_text("/proc/sys/net/ipv4/tcp_rmem"),
    }


# -- results ---------------------------------------------------------------------------


@dataclass
class Result:
    method: Method
    samples: list[Sample] = field(default_factory=list)
    crc_ok: bool | None = None
    error: str | None = None
    wrong: bool = False  # delivered wrong bytes (CRC or count)

    def med(self, f: Callable[[Sample], float]) -> float:
        return median(f(s) for s in self.samples)

    @property
    def gbps(self) -> float:
        return self.med(lambda s: s.gbps)

    @property
    def cpu_per_gb(self) -> float:  # the whole machine's
        return self.med(lambda s: s.machine_cpu / (s.nbytes / GB))

    @property
    def procs_cpu_per_gb(self) -> float:  # sender + receiver
        return self.med(lambda s: (s.sender_cpu + s.receiver_cpu) / (s.nbytes / GB))

    @property
    def sender_cpu_per_gb(self) -> float:
        return self.med(lambda s: s.sender_cpu / (s.nbytes / GB))

    @property
    def ctxt(self) -> float:
        return self.med(lambda s: s.machine_ctxt)

    @property
    def sender_switches(self) -> float:
        return self.med(lambda s: sum(s.sender_switches))

    def summary(self) -> dict[str, Any]:
        ok = bool(self.samples)
        return {
            "method": self.method.name, "section": self.method.section,
            "kind": self.method.kind, "crc_ok": self.crc_ok, "error": self.error,
            "wrong_bytes": self.wrong,
            "gb_per_s": self.gbps if ok else None,
            "best_gb_per_s": max(s.gbps for s in self.samples) if ok else None,
            "machine_cpu_s_per_gb": self.cpu_per_gb if ok else None,
            "procs_cpu_s_per_gb": self.procs_cpu_per_gb if ok else None,
            "sender_cpu_s_per_gb": self.sender_cpu_per_gb if ok else None,
            "machine_ctxt": self.ctxt if ok else None,
            "sender_switches": self.sender_switches if ok else None,
            "unattributed_cpu_s": (self.med(lambda s: s.machine_cpu - s.sender_cpu
                                            - s.receiver_cpu) if ok else None),
            "samples": [asdict(s) for s in self.samples],
        }


def _r(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def fastest(results: Sequence[Result], kind: Kind) -> Result | None:
    done = [r for r in results if r.method.kind == kind and r.samples]
    return max(done, key=lambda r: r.gbps) if done else None


def socket_table(results: Sequence[Result]) -> str:
    c, java = fastest(results, "C"), fastest(results, "Java")
    rows: list[tuple[str, ...]] = []
    for r in sorted((r for r in results if r.samples), key=lambda r: -r.gbps):
        rows.append((
            r.method.name, f"{r.gbps:.2f}", f"{r.cpu_per_gb:.3f}", f"{r.procs_cpu_per_gb:.3f}",
            f"{r.sender_cpu_per_gb:.3f}", f"{r.ctxt:,.0f}", f"{r.sender_switches:,.0f}",
            _r(r.gbps / c.gbps if c else None), _r(r.cpu_per_gb / c.cpu_per_gb if c else None),
            _r(r.gbps / java.gbps if java else None)))
    for r in results:
        if not r.samples:
            rows.append((r.method.name, "n/a", *["-"] * 8))
    return text_table(("file -> loopback socket", "GB/s", "CPU s/GB", "procs s/GB",
                       "sender s/GB", "ctxsw", "sender ctxsw", "x C", "CPU x C", "x Java"), rows,
                      right=range(1, 10))


def file_table(results: Sequence[Result]) -> str:
    cp = next((r for r in results if r.method.kind == "tool" and r.samples), None)
    rows: list[tuple[str, ...]] = []
    for r in sorted((r for r in results if r.samples), key=lambda r: -r.gbps):
        rows.append((r.method.name, f"{r.gbps:.2f}", f"{r.cpu_per_gb:.3f}",
                     f"{r.sender_cpu_per_gb:.3f}", f"{r.ctxt:,.0f}",
                     _r(r.gbps / cp.gbps if cp else None)))
    for r in results:
        if not r.samples:
            rows.append((r.method.name, "n/a", *["-"] * 4))
    return text_table(("file -> file (same fs)", "GB/s", "CPU s/GB", "sender s/GB", "ctxsw",
                       "x cp"), rows, right=range(1, 6))


def _paired(a: Result | None, b: Result | None, f: Callable[[Sample], float]) -> float | None:
    """Median over rounds of f(a's sample) / f(b's sample) in the same round."""
    if a is None or b is None:
        return None
    return median(f(x) / f(y) for x, y in zip(a.samples, b.samples, strict=True))


SOCK, FILE = "file -> socket", "file -> file"


def ratios(sock: Sequence[Result], files: Sequence[Result]) -> list[Ratio]:
    """This benchmark's ratio rows: the issue's goals for the default path, then, for
    information, every other zcio method's GB/s against the fastest C path (socket) or
    ``cp`` (file).  Named without the run's fastest C path, so they match across runs;
    the anchor's own name is in ``anchor``."""
    subj = next((r for r in sock if r.method.name == SUBJECT and r.samples), None)
    c, java = fastest(sock, "C"), fastest(sock, "Java")
    fsubj = next((r for r in files if r.method.name == SUBJECT and r.samples), None)
    cp = next((r for r in files if r.method.kind == "tool" and r.samples), None)

    def row(group: str, name: str, s: Result | None, a: Result | None, figure: str,
            per_sample: Callable[[Sample], float], unit: str, better: Better,
            goal: float | None = None, goal_op: str | None = None,
            note: str = "") -> Ratio:
        value = None if s is None else getattr(s, figure)
        anchor_value = None if a is None else getattr(a, figure)
        return ratio_row(group, name, value=value, anchor=None if a is None else a.method.name,
                         anchor_value=anchor_value, unit=unit,
                         ratio=quotient(value, anchor_value), better=better, goal=goal,
                         goal_op=goal_op, paired_ratio=_paired(s, a, per_sample), note=note)

    def speed(x: Sample) -> float:
        return x.gbps

    def machine(x: Sample) -> float:
        return x.machine_cpu

    def procs(x: Sample) -> float:
        return x.sender_cpu + x.receiver_cpu

    out = [
        row(SOCK, "file->socket GB/s vs fastest C path", subj, c, "gbps", speed, "GB/s",
            "higher", 0.95),
        row(SOCK, "file->socket machine CPU/GB vs fastest C path", subj, c, "cpu_per_gb",
            machine, "CPU s/GB", "lower", 1.10),
        row(SOCK, "file->socket sender+receiver CPU/GB vs fastest C path", subj, c,
            "procs_cpu_per_gb", procs, "CPU s/GB", "lower", 1.10,
            note="immune to other load"),
        row(SOCK, "file->socket GB/s vs Java transferTo", subj, java, "gbps", speed, "GB/s",
            "higher", 1.0, ">", note="ahead of Java"),
        row(FILE, "file->file GB/s vs cp", fsubj, cp, "gbps", speed, "GB/s", "higher", 0.95),
    ]
    for group, results, anchor, label in ((SOCK, sock, c, "fastest C path"),
                                          (FILE, files, cp, "cp")):
        for r in results:
            if r.method.kind == "zcio" and r.method.name != SUBJECT and r.samples and anchor:
                out.append(row(group, f"{r.method.name} GB/s vs {label}", r, anchor, "gbps",
                               speed, "GB/s", "higher", note="information"))
    return out


def goal_line(r: Ratio) -> str:
    """A goal row as the run prints it."""
    met = {None: "n/a", True: "yes", False: "NO"}[r["met"]]
    ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
    paired = "" if r["paired_ratio"] is None else f", per-round median {r['paired_ratio']:.2f}"
    anchor = f" ({r['anchor']})" if r["anchor"] else ""
    return (f"  {r['name']}{anchor}: {ratio} (goal {r['goal_op']} {r['goal']:.2f})  "
            f"met? {met}{paired}")


# -- main ------------------------------------------------------------------------------


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", default=None,
                   help="source file size, e.g. 256m, 1g (default 1g; 32m with --quick)")
    p.add_argument("--dir", default=None,
                   help="directory for the source file and copies (default: the temp dir)")
    p.add_argument("--only", default=None, metavar="WORDS",
                   help="comma-separated substrings (case-sensitive): run only the methods "
                   "whose name has one, e.g. 'zcio,C '")
    p.add_argument("--pin", choices=("none", "split", "same"), default="none",
                   help="CPU placement: split = senders on the first usable CPU, the "
                   "receiver on the second; same = both on the first; none (default) = "
                   "the scheduler's choice")
    p.add_argument("--section", choices=("socket", "file", "both"), default="both",
                   help="run only file -> socket or file -> file (default both)")
    # internal: the child roles
    p.add_argument("--sender", help=argparse.SUPPRESS)
    p.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dest", help=argparse.SUPPRESS)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    # options "--quick", "--rounds", "--json" (run_all.py looks for them in this file)
    args = _harness.parse_args(
        argv, "zcio transfers (file -> loopback socket, file -> file) against C, Java and "
        "Python anchors (interleaved rounds, medians, ratios from the same run).",
        rounds=5, quick_rounds=1, quick_help="32 MiB, 1 round", extra=_options)
    args.size = zcio.parse_size(args.size or ("32m" if args.quick else "1g"))
    if args.size < 1:
        raise SystemExit("transfer.py: --size must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.receiver:
        return receiver_main()
    if args.sender:
        return sender_main(args.sender, args.file, args.port, args.dest)

    methods = [m for m in METHODS if args.section in ("both", m.section)]
    if args.only:
        words = [w.strip() for w in args.only.split(",") if w.strip()]
        methods = [m for m in methods if any(w in m.name for w in words)]
    info = machine_info() | tools_info()
    print(_harness.header(info))
    tmp = tempfile.mkdtemp(prefix="zcio-bench-", dir=args.dir)
    runner: Runner | None = None
    results = [Result(m) for m in methods]
    t_start = time.perf_counter()
    try:
        c_bin, java_dir, missing = build_anchors(tmp, {m.needs for m in methods if m.needs})
        for why in missing.values():
            print(f"n/a: {why}")
        ctx = Context(os.path.join(tmp, "source.bin"), os.path.join(tmp, "copy.bin"),
                      c_bin=c_bin, java_dir=java_dir)
        crc, _ = make_source(ctx.src, args.size)
        if file_crc(ctx.src) != (args.size, crc):  # reading it back also caches every page
            raise BenchError("the source file reads back wrong")
        cached = page_cached(ctx.src)
        load = background_load()
        print(f"source: {args.size / MIB:,.0f} MiB of random bytes in {tmp}, "
              f"page-cached: {'yes' if cached else 'NO'} (mincore); other load on the "
              f"machine before the run: {load:.2f} busy CPUs")
        print(f"{args.rounds} interleaved round(s){' (--quick)' if args.quick else ''}, "
              f"after one untimed CRC-checked pass; medians; CPU placement: {args.pin}")
        timeout = max(120, int(args.size / (20 * MIB)))
        cpus = sorted(os.sched_getaffinity(0))
        pin = None
        if args.pin != "none" and len(cpus) >= (2 if args.pin == "split" else 1):
            pin = ({cpus[0]}, {cpus[1] if args.pin == "split" else cpus[0]})
        elif args.pin != "none":
            print(f"--pin {args.pin}: needs 2 usable CPUs; not pinning")
        runner = Runner(ctx, args.size, timeout, pin)
        live = []
        for r in results:  # the verification pass, which is also the warm-up
            if r.method.needs in missing:
                r.error = missing[r.method.needs]
                continue
            try:
                _, got = runner.run(r.method, crc=True)
            except BenchError as e:
                r.error, r.wrong = str(e), isinstance(e, WrongBytes)
                print(f"FAILED: {e}", file=sys.stderr)
                continue
            r.crc_ok = got == crc
            r.wrong = not r.crc_ok
            if not r.crc_ok:
                r.error = f"CRC mismatch: {got} != {crc}"
                print(f"WRONG BYTES: {r.method.name} ({r.method.section})", file=sys.stderr)
                continue
            live.append(r)
        for rnd in range(args.rounds):
            for r in _harness.round_order(live, rnd):
                try:
                    sample, _ = runner.run(r.method)
                except BenchError as e:  # drop the method: its rounds no longer pair up
                    r.error, r.wrong = f"round {rnd + 1}: {e}", isinstance(e, WrongBytes)
                    r.samples.clear()
                    live.remove(r)
                    print(f"FAILED: {e}", file=sys.stderr)
                    continue
                r.samples.append(sample)
                time.sleep(0.05)  # let the last run's exit and socket teardown settle
        still_cached = page_cached(ctx.src)
    finally:
        if runner is not None:
            runner.close()
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - t_start

    sock = [r for r in results if r.method.section == "socket"]
    files = [r for r in results if r.method.section == "file"]
    print()
    if sock:
        print(socket_table(sock))
        print()
    if files:
        print(file_table(files))
        print()
    print("CPU s/GB: the whole machine's busy CPU (/proc/stat, tick-sampled, includes any "
          "other load); procs s/GB: sender + receiver getrusage; sender s/GB and sender "
          "ctxsw: the sender's own (Java: every JVM thread); ctxsw: whole machine.  "
          "x C / CPU x C: against the fastest C path; x Java: against transferTo.")
    every = [x for r in results for x in r.samples]
    if every:
        other = median((x.machine_cpu - x.sender_cpu - x.receiver_cpu) / x.wall for x in every)
        print(f"busy CPUs besides sender and receiver during the runs (median): {other:.2f} "
              "(ksoftirqd, this script, and other load: near 0 on a quiet machine)")
    for r in results:
        if r.error:
            print(f"n/a or failed: {r.method.name} ({r.method.section}): {r.error}")
    rows = ratios(sock, files)
    print("goals:")
    for row in rows:
        if row["goal"] is not None:
            print(goal_line(row))
    wrong = [r for r in results if r.wrong]
    print(f"ran in {elapsed:.1f} s; source still page-cached at the end: "
          f"{'yes' if still_cached else 'NO'}")
    if args.json:
        _harness.write_json(args.json, benchmark="transfer", machine=info, settings={
            "size": args.size, "rounds": args.rounds, "quick": args.quick, "pin": args.pin,
            "chunk": CHUNK, "small_chunk": SMALL, "gb": GB,
            "background_busy_cpus": load, "page_cached": [cached, still_cached],
            "figures": "medians over rounds; ratios are ratios of medians",
        }, results=[r.summary() for r in results], ratios=rows)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
