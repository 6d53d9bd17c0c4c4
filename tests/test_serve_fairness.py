"""No client can stall the others: each attack runs beside a well-behaved probe client
whose latency is measured.

The server runs as its own process (``zcio serve --list``), so that the test's threads
share no interpreter lock with it.  The bar (issue: a hostile client does its worst, a
well-behaved client's p99 stays under 50 ms) is asserted against a baseline measured in
the same run: on a machine so loaded that the probe alone sees tens of milliseconds, the
bar moves with it, never out of sight of it.  A try that misses is repeated, at most
three times (see ``_assert_stalls_nobody``): a real stall misses every try.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from test_serve_cli import Running, start, started
from test_serve_support import SMALL, TIMEOUT, blobs, www

__all__ = ["blobs", "started", "www"]

ENTRIES = 20_000  # a listing of this many takes ~0.1 s to build: far over one turn
BAR = 0.050


@pytest.fixture
def big_dir(www: Path) -> Iterator[Path]:
    big = www / "big"
    big.mkdir()
    fd = os.open(big, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(ENTRIES):
            os.close(os.open(f"entry-{i:06d}.txt", os.O_CREAT | os.O_WRONLY, 0o644,
                             dir_fd=fd))
    finally:
        os.close(fd)
    yield big


class Probe:
    """A keep-alive client asking for /small.bin every 5 ms; its latencies."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT * 2)

    def _run(self) -> None:
        request = b"GET /small.bin HTTP/1.1\r\nHost: probe\r\n\r\n"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as c:
                while not self._stop.is_set():
                    t0 = time.perf_counter()
                    c.sendall(request)
                    got = b""
                    while not got.endswith(SMALL):
                        chunk = c.recv(65536)
                        if not chunk:
                            raise ConnectionError("the server closed the probe")
                        got += chunk
                    self.latencies.append(time.perf_counter() - t0)
                    self._stop.wait(0.005)
        except BaseException as e:  # reported by the test
            self.error = e

    def p99(self) -> float:
        assert self.error is None, f"the probe failed: {self.error!r}"
        assert len(self.latencies) >= 20, len(self.latencies)
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _measure(run: Running, attack: Callable[[], None], seconds: float = 1.5) -> float:
    """The probe's p99 while ``attack`` runs (and for ``seconds`` at least)."""
    with Probe(run.port) as probe:
        time.sleep(0.1)
        t_end = time.monotonic() + seconds
        attack()
        time.sleep(max(0.0, t_end - time.monotonic()))
    return probe.p99()


def _burst(port: int, request: bytes, count: int) -> None:
    """Pipeline ``count`` requests and close at once, reading nothing."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
        c.sendall(request * count)


def _bar(baseline: float, p99: float) -> float:
    """The bar for ``p99``; both figures are printed (``pytest -s`` shows them)."""
    print(f"probe p99 {p99 * 1e3:.1f} ms under attack, {baseline * 1e3:.1f} ms before")
    return max(BAR, 5 * baseline)


ATTEMPTS = 3


def _assert_stalls_nobody(run: Running, attack: Callable[[], None]) -> None:
    """The probe's p99 under ``attack`` stays under the bar of a baseline measured just
    before, in at least one of ATTEMPTS tries.

    A server that really stalls (serves the whole expensive request in one turn) misses
    the bar in every try, by the request's full cost; a machine so overloaded that the
    scheduler parks the server once in a try (seen on a 2-core CI machine with a load
    average of 8) misses it in that try only.
    """
    seen = []
    for _ in range(ATTEMPTS):
        baseline = _measure(run, lambda: None, seconds=0.8)
        p99 = _measure(run, attack)
        if p99 < _bar(baseline, p99):
            return
        seen.append(f"p99 {p99 * 1e3:.1f} ms (baseline {baseline * 1e3:.1f})")
    raise AssertionError("the probe stalled in every try: " + "; ".join(seen))


@pytest.fixture
def server(started: list[subprocess.Popen[bytes]], www: Path, big_dir: Path) -> Running:
    return start(started, str(www), "--list", "-q")


def test_a_burst_of_listings_then_close_stalls_nobody(server: Running) -> None:
    listing = b"GET /big/ HTTP/1.1\r\nHost: x\r\n\r\n"

    def attack() -> None:
        for _ in range(6):  # six such connections, as in the report
            _burst(server.port, listing, 50)

    _assert_stalls_nobody(server, attack)
    status, body, _ = server.get("/big/")
    assert status == 200 and body.count(b"<li>") == ENTRIES + 1  # "../" too


def test_listings_rebuilt_every_time_stall_nobody(server: Running, big_dir: Path) -> None:
    """Each request finds the directory changed, so no cache helps: the build itself is
    sliced."""
    names = itertools.count()

    def attack() -> None:
        def churn() -> None:
            for _ in range(8):  # a new entry each time, in every try
                (big_dir / f"new-{next(names)}").write_bytes(b"")
                status, _, _ = server.get("/big/")
                assert status == 200
        thread = threading.Thread(target=churn)
        thread.start()
        thread.join(TIMEOUT * 4)

    _assert_stalls_nobody(server, attack)


def test_a_pipelined_flood_of_small_requests_stalls_nobody(server: Running) -> None:
    small = b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n"

    def attack() -> None:
        for _ in range(4):
            _burst(server.port, small, 2000)

    _assert_stalls_nobody(server, attack)
