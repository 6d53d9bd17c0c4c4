"""``zcio serve`` against nginx, a C floor, aiohttp's FileResponse and http.server, by wrk.

Run by hand, not by CI::

    .venv/bin/python benchmarks/serve.py [--duration 10] [--rounds 2] [--workers 1,2]
        [--servers zcio,nginx,c-anchor,aiohttp,http.server] [--quick] [--json PATH]

Needs ``wrk`` and ``nginx`` (``apt-get install wrk nginx-light``), ``gcc``, and ``aiohttp``
(``pip install aiohttp``; a benchmark anchor only, not a dependency).  A server whose
tool is missing is skipped, with a note.

Two cases, on loopback, each server at each worker count:

* a 1 KiB file, 64 keep-alive connections: requests per second;
* a 100 MiB file, 4 keep-alive connections: GB/s (10**9 bytes, from completed
  responses).

wrk runs with one thread (``-t1``), so the client costs the same for every server.
Each measurement is preceded by an untimed warm-up of two seconds.  The server's CPU
per request is the CPU time (user + system, ``/proc/PID/stat``) of every process of
the server (master and workers) over the timed run, divided by the requests wrk
completed: loopback's receive work done in softirq on the server's CPU counts, as it
would on a real machine's.  Rounds repeat everything; figures are medians.

The servers:

* zcio: ``zcio serve DIR --workers N --quiet`` (no access log);
* nginx: ``worker_processes N``, ``sendfile on``, ``tcp_nopush on``, ``tcp_nodelay on``,
  ``access_log off``, keep-alive without limit, and ``open_file_cache`` on (its best for
  small files: descriptors and stat results kept, revalidated each second, as zcio
  caches small files too);
* c-anchor: ``anchors/serve_epoll.c`` (``gcc -O2`` on the spot), the floor: one thread,
  epoll, the 1 KiB file and its head in memory, one ``sendmsg`` per request, no routing,
  no validation, no limits; small case only (it serves that file for any target);
* aiohttp: ``web.FileResponse`` behind one route, ``access_log=None``, N processes with
  ``reuse_port``;
* http.server: ``python -m http.server`` (HTTP/1.0: one connection per request, as it
  ships); with N > 1, N processes of a ``ThreadingHTTPServer`` with
  ``allow_reuse_port`` (http.server itself has no workers).

Every server is checked first: both files (the anchor: the small one) must come back
byte-exact.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import _harness
from _harness import Better, Ratio, quotient, ratio_row

from zcio._bench._machine import load_average, machine_info
from zcio._bench._table import text_table

SMALL, LARGE = "1k.bin", "100m.bin"
SMALL_SIZE, LARGE_SIZE = 1024, 100 << 20
CASES = {"small": (SMALL, SMALL_SIZE, 64), "large": (LARGE, LARGE_SIZE, 4)}
TICK = os.sysconf("SC_CLK_TCK")
ANCHOR = "c-anchor"
ANCHOR_SOURCE = Path(__file__).resolve().parent / "anchors" / "serve_epoll.c"

# The real entry point; registers the command if the CLI does not list it yet.
_ZCIO = ("import sys, zcio._cli as c; c._COMMANDS.setdefault('_serve', ['serve']); "
         "c.main(sys.argv[1:])")

_AIOHTTP = textwrap.dedent("""
    import os, sys
    from aiohttp import web
    root, port = sys.argv[1], int(sys.argv[2])
    async def handle(request):
        return web.FileResponse(os.path.join(root, request.match_info["name"]))
    app = web.Application()
    app.router.add_get("/{name}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, reuse_port=True,
                print=None)
""")

_HTTP_SERVER_REUSEPORT = textwrap.dedent("""
    import functools, http.server, sys
    class Server(http.server.ThreadingHTTPServer):
        allow_reuse_port = True
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
    with Server(("127.0.0.1", int(sys.argv[2])), handler) as s:
        s.serve_forever()
""")


@dataclass
class Result:
    server: str
    workers: int
    case: str
    requests: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    note: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def gbps(self) -> float:
        size = CASES[self.case][1]
        return self.requests * size / self.seconds / 1e9 if self.seconds else 0.0

    @property
    def cpu_per_request(self) -> float:
        return self.cpu_seconds / self.requests if self.requests else float("nan")


@dataclass
class Server:
    name: str
    workers: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    port: int = 0
    tmp: Path | None = None

    def pids(self) -> list[int]:
        """Every process of the server: those started and all their descendants."""
        found: list[int] = []
        todo = [p.pid for p in self.procs]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        todo += [int(k) for k in f.read().split()]
            except OSError:
                pass
        return found

    def cpu(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICK

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGQUIT if self.name == "nginx" else signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_conf(tmp: Path, root: Path, port: int, workers: int) -> Path:
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""\
        {user}worker_processes {workers};
        pid {tmp}/nginx.pid;
        error_log {tmp}/error.log warn;
        events {{ worker_connections 4096; }}
        http {{
            default_type application/octet-stream;
            sendfile on; tcp_nopush on; tcp_nodelay on;
            access_log off;
            open_file_cache max=1000 inactive=60s; open_file_cache_valid 1s;
            open_file_cache_min_uses 1; open_file_cache_errors on;
            keepalive_timeout 65; keepalive_requests 100000000;
            client_body_temp_path {tmp}/client_body; proxy_temp_path {tmp}/proxy;
            fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi;
            scgi_temp_path {tmp}/scgi;
            server {{ listen 127.0.0.1:{port} reuseport; root {root}; }}
        }}
        """))
    return conf


def start(name: str, workers: int, root: Path) -> Server:
    port = free_port()
    server = Server(name, workers, port=port)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if name == "zcio":
        server.procs.append(subprocess.Popen(
            [sys.executable, "-c", _ZCIO, "serve", str(root), "--port", str(port),
             "--workers", str(workers), "--quiet"], **quiet))
    elif name == "nginx":
        server.tmp = Path(tempfile.mkdtemp(prefix="zcio-bench-nginx-"))
        conf = nginx_conf(server.tmp, root, port, workers)
        server.procs.append(subprocess.Popen(
            ["nginx", "-p", str(server.tmp), "-c", str(conf), "-g",
             "daemon off; master_process on;"], **quiet))
    elif name == ANCHOR:  # one thread whatever ``workers`` says: the floor per request
        server.tmp = Path(tempfile.mkdtemp(prefix="zcio-bench-anchor-"))
        binary = server.tmp / "serve_epoll"
        subprocess.run(["gcc", "-O2", "-o", str(binary), str(ANCHOR_SOURCE)], check=True)
        server.procs.append(subprocess.Popen([str(binary), str(port), str(root / SMALL)],
                                             **quiet))
    elif name == "aiohttp":
        for _ in range(workers):
            server.procs.append(subprocess.Popen(
                [sys.executable, "-c", _AIOHTTP, str(root), str(port)], **quiet))
    elif name == "http.server":
        if workers == 1:
            server.procs.append(subprocess.Popen(
                [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                 str(root), str(port)], **quiet))
        else:
            for _ in range(workers):
                server.procs.append(subprocess.Popen(
                    [sys.executable, "-c", _HTTP_SERVER_REUSEPORT, str(root), str(port)],
                    **quiet))
    else:
        raise ValueError(name)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if fetch(port, SMALL)[0] == 200:
                time.sleep(0.3 if workers > 1 else 0.05)  # the other workers too
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{name} did not start")


def fetch(port: int, name: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/" + name)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def check(server: Server, root: Path) -> None:
    for name in (SMALL,) if server.name == ANCHOR else (SMALL, LARGE):
        status, body = fetch(server.port, name)
        want = (root / name).read_bytes()
        if status != 200 or hashlib.sha256(body).digest() != hashlib.sha256(want).digest():
            raise RuntimeError(f"{server.name} sent a wrong {name}: {status}, {len(body)}")


_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")


def wrk(port: int, name: str, connections: int, seconds: float) -> tuple[int, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
         f"http://127.0.0.1:{port}/{name}"],
        capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    m = _REQUESTS.search(out)
    if m is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m[3]]
    return int(m[1]), float(m[2]) * scale


def measure(server: Server, case: str, seconds: float) -> Result:
    name, _, connections = CASES[case]
    wrk(server.port, name, connections, 2)  # warm-up, untimed
    cpu0 = server.cpu()
    requests, elapsed = wrk(server.port, name, connections, seconds)
    cpu1 = server.cpu()
    return Result(server.name, server.workers, case, requests, elapsed, cpu1 - cpu0)


def available(name: str) -> str | None:
    """Why a server cannot run here, or None."""
    if name == "nginx" and shutil.which("nginx") is None:
        return "nginx is not installed (apt-get install nginx-light)"
    if name == ANCHOR and shutil.which("gcc") is None:
        return "gcc is not installed"
    if name == "aiohttp":
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            return "aiohttp is not installed (pip install aiohttp)"
    return None


def median_result(results: list[Result]) -> Result:
    first = results[0]
    rates = sorted(results, key=lambda r: r.rps)
    mid = rates[len(rates) // 2]
    return Result(first.server, first.workers, first.case, mid.requests, mid.seconds,
                  mid.cpu_seconds if len(results) < 3 else
                  statistics.median(r.cpu_per_request for r in results) * mid.requests)


def table(results: dict[tuple[str, int, str], Result], servers: list[str],
          workers: list[int]) -> str:
    """Each server's figures, then zcio's against each other server's."""
    rows: list[tuple[str, ...]] = []
    for w in workers:
        for s in servers:
            small, large = results.get((s, w, "small")), results.get((s, w, "large"))
            if small is None and large is None:
                continue
            rows.append((s, str(w), _fig(small, "rps", 1, ",.0f"),
                         _fig(small, "cpu_per_request", 1e6, ".1f"),
                         _fig(large, "gbps", 1, ".2f"),
                         _fig(large, "cpu_per_request", 1e3, ".1f")))
    against: list[tuple[str, ...]] = []
    for w in workers:
        z_small, z_large = results.get(("zcio", w, "small")), results.get(("zcio", w, "large"))
        for s in servers:
            small, large = results.get((s, w, "small")), results.get((s, w, "large"))
            if s == "zcio" or (small is None and large is None):
                continue
            against.append((s, str(w), _vs(z_small, small, "rps"),
                            _vs(z_small, small, "cpu_per_request"),
                            _vs(z_large, large, "gbps"),
                            _vs(z_large, large, "cpu_per_request")))
    right = range(1, 6)
    return (text_table(("server", "workers", "1 KiB req/s", "CPU us/req", "100 MiB GB/s",
                        "CPU ms/req"), rows, right) + "\n\n"
            + text_table(("zcio vs", "workers", "1 KiB req/s", "1 KiB CPU/req", "100 MiB GB/s",
                          "100 MiB CPU/req"), against, right))


def _times(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def _fig(r: Result | None, figure: str, scale: float, spec: str) -> str:
    return "-" if r is None else format(getattr(r, figure) * scale, spec)


def _vs(z: Result | None, other: Result | None, figure: str) -> str:
    if z is None or other is None:
        return "-"
    return _times(quotient(getattr(z, figure), getattr(other, figure)))


# (case, anchor server, figure, label, better, goal, note): the rows ``ratios`` writes
SPEC: list[tuple[str, str, str, str, Better, float | None, str]] = [
    ("small", "aiohttp", "rps", "1 KiB req/s", "higher", 3.0, "the issue's goal"),
    ("small", "nginx", "rps", "1 KiB req/s", "higher", 1.0, "issue 13's goal"),
    ("small", "nginx", "cpu_per_request", "1 KiB CPU/request", "lower", 1.0,
     "issue 13's goal"),
    ("small", ANCHOR, "cpu_per_request", "1 KiB CPU/request", "lower", None,
     "information: the floor"),
    ("large", "nginx", "gbps", "100 MiB GB/s", "higher", 0.9, "the issue's goal"),
    ("large", "nginx", "cpu_per_request", "100 MiB CPU/request", "lower", 1.1,
     "the issue's goal"),
]
UNITS = {"rps": "req/s", "gbps": "GB/s", "cpu_per_request": "CPU s/req"}


def ratios(results: dict[tuple[str, int, str], Result], workers: list[int]) -> list[Ratio]:
    """zcio against each anchor server, per worker count, from the medians."""
    out: list[Ratio] = []
    for w in sorted(workers):
        group = f"{w} worker{'s' if w > 1 else ''}"
        for case, anchor, figure, label, better, goal, note in SPEC:
            z, a = results.get(("zcio", w, case)), results.get((anchor, w, case))
            if z is None or a is None:
                continue
            zv, av = getattr(z, figure), getattr(a, figure)
            out.append(ratio_row(group, f"zcio {label} vs {anchor}, {group}", value=zv,
                                 anchor=anchor, anchor_value=av, unit=UNITS[figure],
                                 ratio=quotient(zv, av), better=better, goal=goal,
                                 note=note))
    return out


def goal_line(r: Ratio) -> str:
    ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x"
    if r["goal"] is None:
        return f"{r['name']}: {ratio} ({r['note']})"
    met = {None: "n/a", True: "met", False: "NOT met"}[r["met"]]
    return f"{r['name']}: {ratio} (goal {r['goal_op']} {r['goal']:g}): {met}"


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per wrk run (default 10; 1 with --quick)")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--servers", default="zcio,nginx,c-anchor,aiohttp,http.server")
    p.add_argument("--cases", default="small,large")


def main(argv: list[str] | None = None) -> None:
    # options "--quick", "--rounds", "--json" (run_all.py looks for them in this file)
    args = _harness.parse_args(argv, (__doc__ or "").split("\n")[0], rounds=2, quick_rounds=1,
                               quick_help="1 s runs, 1 round", extra=_options)
    if args.duration is None:
        args.duration = 1.0 if args.quick else 10.0
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/serve.py needs wrk (apt-get install wrk)")
    workers = [int(w) for w in args.workers.split(",")]
    servers, cases = args.servers.split(","), args.cases.split(",")
    notes = {s: why for s in servers if (why := available(s))}
    servers = [s for s in servers if s not in notes]
    for s, why in notes.items():
        print(f"skipped {s}: {why}", file=sys.stderr)
    info = machine_info()
    load_before = load_average()
    samples: dict[tuple[str, int, str], list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="zcio-bench-serve-") as tmp:
        root = Path(tmp) / "www"
        root.mkdir()
        os.chmod(tmp, 0o755)
        (root / SMALL).write_bytes(os.urandom(SMALL_SIZE))
        with open(root / LARGE, "wb") as f:
            for _ in range(LARGE_SIZE >> 20):
                f.write(os.urandom(1 << 20))
        (root / LARGE).read_bytes()  # into the page cache
        for rnd in range(args.rounds):
            order = _harness.round_order(servers, rnd)
            for w in workers:
                for s in order:
                    server = start(s, w, root)
                    try:
                        if rnd == 0:
                            check(server, root)
                        for case in cases:
                            if s == ANCHOR and case != "small":
                                continue
                            r = measure(server, case, args.duration)
                            samples.setdefault((s, w, case), []).append(r)
                            print(f"round {rnd + 1}: {s:11} x{w} {case:5} "
                                  f"{r.rps:10,.1f} req/s {r.gbps:6.2f} GB/s "
                                  f"cpu/req {r.cpu_per_request * 1e6:10.1f} us",
                                  file=sys.stderr)
                    finally:
                        server.stop()
                        if server.tmp is not None:
                            shutil.rmtree(server.tmp, ignore_errors=True)
    results = {k: median_result(v) for k, v in samples.items()}
    print(f"\n{_harness.header(info)}; load before {' '.join(map(str, load_before))}; "
          f"wrk -t1, {args.duration:g} s runs, median of {args.rounds} round(s)\n")
    print(table(results, servers, workers))
    print()
    rows = ratios(results, workers)
    for row in rows:
        print(goal_line(row))
    if args.json:
        _harness.write_json(
            args.json, benchmark="serve", machine=info | {"load_before": load_before},
            settings={"duration": args.duration, "rounds": args.rounds, "quick": args.quick,
                      "workers": workers, "servers": servers, "cases": cases,
                      "skipped": notes},
            results=[asdict(r) | {"rps": r.rps, "gbps": r.gbps,
                                  "cpu_per_request": r.cpu_per_request}
                     for rs in samples.values() for r in rs],
            ratios=rows)


if __name__ == "__main__":
    main()
