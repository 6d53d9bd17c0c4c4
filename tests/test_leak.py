"""The leak detector at each level: one report per leaked buffer, naming where it came from.

A pooled buffer garbage-collected with references outstanding is reported through
``logging`` (logger ``zcio.leak``, ERROR) and a LeakWarning, once, naming the allocation
site (this file and line) and, at ADVANCED and PARANOID, its last accesses
(``touch(hint)``, retain, release).  Whether reported or not, its memory goes back to
the pool.  Every test restores the level it found.
"""

from __future__ import annotations

import gc
import logging
import re
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

import zcio
from zcio import LeakLevel, LeakWarning, PooledAllocator

SIZE = 4096  # the 4096 class: cheap slabs
FILE = __file__


def here() -> int:
    """The line number of the caller's line."""
    return sys._getframe(1).f_lineno


def site(line: int) -> str:
    """How a report names an allocation or access at ``line`` of this file."""
    return f'File "{FILE}", line {line}, in '


def live_pooled() -> int:
    return PooledAllocator.default().pool_infos()[0].count


@dataclass
class Reports:
    """Leak reports seen so far, through logging and through warnings."""

    caplog: pytest.LogCaptureFixture
    caught: list[warnings.WarningMessage]

    def logs(self) -> list[str]:
        return [r.getMessage() for r in self.caplog.records if r.name == "zcio.leak"]

    def warnings(self) -> list[str]:
        return [str(w.message) for w in self.caught if issubclass(w.category, LeakWarning)]

    def all(self) -> list[str]:
        """The reports, after checking each went out once through both channels."""
        logs = self.logs()
        assert logs == self.warnings()
        assert all(r.levelno == logging.ERROR for r in self.caplog.records
                   if r.name == "zcio.leak")
        return logs


@pytest.fixture(autouse=True)
def _gc_freeze() -> Iterator[None]:
    """Speed only (as in test_contract): the leak check's gc.collect() scans what the test
    made, not pytest's own objects."""
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def level() -> Iterator[Callable[[LeakLevel | str], None]]:
    before = zcio.leak_detection()
    yield zcio.set_leak_detection
    zcio.set_leak_detection(before)


@pytest.fixture
def reports(caplog: pytest.LogCaptureFixture) -> Iterator[Reports]:
    """Collects leak reports; warnings are recorded, not raised, for the whole test."""
    caplog.set_level(logging.ERROR, logger="zcio.leak")
    before = live_pooled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield Reports(caplog, caught)
        gc.collect()  # leaks of the test are reported here at the latest, still recorded
    assert live_pooled() == before, "a leaked buffer's memory did not go back to the pool"


def leak(buf: zcio.ByteBuffer) -> None:
    """Consume the caller's reference (the caller must ``del`` its own names)."""
    del buf


# -- levels --------------------------------------------------------------------------------


def test_set_leak_detection_takes_levels_and_names(level: Callable[..., None]) -> None:
    level("paranoid")
    assert zcio.leak_detection() is LeakLevel.PARANOID
    level(LeakLevel.DISABLED)
    assert zcio.leak_detection() is LeakLevel.DISABLED
    level("Advanced")
    assert zcio.leak_detection() is LeakLevel.ADVANCED
    with pytest.raises(zcio.IllegalArgumentError, match="verbose"):
        level("verbose")
    assert zcio.leak_detection() is LeakLevel.ADVANCED
    level(0)  # the IntEnum's numbers too
    assert zcio.leak_detection() is LeakLevel.DISABLED


def test_disabled_reports_nothing_but_returns_the_memory(
    level: Callable[..., None], reports: Reports
) -> None:
    level(LeakLevel.DISABLED)
    alloc = PooledAllocator.default()
    before = live_pooled()
    for _ in range(300):
        alloc.allocate(SIZE).touch("x").retain()  # dropped at once with refCnt 2
    gc.collect()
    assert reports.all() == []
    assert live_pooled() == before


def test_paranoid_reports_a_leak_once_naming_the_allocation_site(
    level: Callable[..., None], reports: Reports
) -> None:
    level(LeakLevel.PARANOID)
    alloc = PooledAllocator.default()
    before = live_pooled()
    line = here() + 1
    buf = alloc.allocate(SIZE)
    buf.put(0, b"leaked")
    assert live_pooled() == before + 1
    del buf
    gc.collect()
    (report,) = reports.all()
    assert report.startswith(f"LEAK: pooled buffer of {SIZE} bytes (refCnt 1) "
                             "was garbage-collected without release()")
    assert site(line) in report
    assert "test_paranoid_reports_a_leak_once_naming_the_allocation_site" in report
    assert "alloc.allocate(SIZE)" in report  # the source line itself
    assert live_pooled() == before
    gc.collect()
    assert len(reports.all()) == 1  # never again


def test_paranoid_reports_every_leak_once_each(
    level: Callable[..., None], reports: Reports
) -> None:
    level(LeakLevel.PARANOID)
    alloc = PooledAllocator.default()
    first = second = 0
    for _ in range(3):
        first = here() + 1
        kept = [alloc.allocate(SIZE)]
        second = here() + 1
        kept.append(alloc.allocate(SIZE + 1))
        del kept
    third = here() + 1
    bufs = [alloc.allocate(100 + i) for i in range(5)]
    del bufs
    gc.collect()
    found = reports.all()
    assert len(found) == 11
    assert [sum(site(line) in r for r in found) for line in (first, second, third)] == [3, 3, 5]


def accesses(report: str) -> list[str]:
    """The recorded accesses of a report, most recent first."""
    found = re.findall(r"^Recent access #(\d+): (.*):$", report, re.MULTILINE)
    assert [int(n) for n, _ in found] == list(range(1, len(found) + 1))
    return [what for _, what in found]


def test_paranoid_lists_touch_hints_and_count_changes(
    level: Callable[..., None], reports: Reports
) -> None:
    level(LeakLevel.PARANOID)
    alloc = PooledAllocator.default()
    alloc_line = here() + 1
    buf = alloc.allocate(SIZE)
    touch_line = here() + 1
    buf.touch("decoded header")
    buf.retain(2)
    release_line = here() + 1
    buf.release()
    buf.touch({"stage": 3})
    del buf
    gc.collect()
    (report,) = reports.all()
    assert "(refCnt 2)" in report
    assert site(alloc_line) in report.split("\nRecent access #")[0]
    assert accesses(report) == [
        "touch({'stage': 3})",
        "release(1)",
        "retain(2)",
        "touch('decoded header')",
    ]
    records = report.split("\nRecent access #")
    assert site(release_line) in records[2]
    assert site(touch_line) in records[4]


def test_touch_through_a_derived_buffer_is_recorded(
    level: Callable[..., None], reports: Reports
) -> None:
    level(LeakLevel.PARANOID)
    buf = PooledAllocator.default().allocate(SIZE)
    line = here() + 1
    buf.slice(0, 8).touch("via slice")
    buf.as_int_buffer().retain()
    del buf
    gc.collect()
    (report,) = reports.all()
    assert accesses(report) == ["retain(1)", "touch('via slice')", "slice()"]  # latest first
    assert site(line) in report.split("\nRecent access #")[2]


def test_access_records_include_slices_as_documented(
    level: Callable[..., None], reports: Reports
) -> None:
    """zcio._leak documents that ADVANCED and PARANOID record "retain, release, slices,
    touch(hint)"; a slice made from a leaked buffer should be among its records."""
    level(LeakLevel.PARANOID)
    buf = PooledAllocator.default().allocate(SIZE)
    part = buf.slice(0, 8)
    del buf, part
    gc.collect()
    (report,) = reports.all()
    assert any("slice" in what for what in accesses(report)), report


def test_access_records_keep_the_last_four(
    level: Callable[..., None], reports: Reports
) -> None:
    level(LeakLevel.PARANOID)
    buf = PooledAllocator.default().allocate(SIZE)
    for hint in "abcdef":
        buf.touch(hint)
    del buf
    gc.collect()
    (report,) = reports.all()
    for hint in "cdef":
        assert f"touch({hint!r})" in report
    for hint in "ab":
        assert f"touch({hint!r})" not in report
    assert report.index("#1: touch('f')") < report.index("#4: touch('c')")


def test_simple_samples_some_leaks_reports_each_once_and_returns_all_memory(
    level: Callable[..., None], reports: Reports
) -> None:
    level(LeakLevel.SIMPLE)
    alloc = PooledAllocator.default()
    before = live_pooled()
    n = 2048  # one in 128 sampled: 16 expected; none at all has odds of e**-16
    per_leak = []
    for i in range(n):
        line = here() + 1
        buf = alloc.allocate(SIZE)
        buf.touch(f"hint-{i}")
        del buf  # no cycles: collected here and now
        per_leak.append(len(reports.logs()))
    found = reports.all()
    counts = [b - a for a, b in zip([0, *per_leak], per_leak, strict=False)]
    assert set(counts) <= {0, 1}  # each leak reported at most once ...
    assert 1 <= len(found) <= 64  # ... some, but sampled (mean 16)
    for report in found:
        assert site(line) in report
        assert "Recent access" not in report  # SIMPLE records no accesses
    assert live_pooled() == before  # the silent ones went back too
    gc.collect()
    assert len(reports.all()) == len(found)


def test_advanced_samples_and_lists_the_sampled_buffer_s_own_hints(
    level: Callable[..., None], reports: Reports
) -> None:
    level(LeakLevel.ADVANCED)
    alloc = PooledAllocator.default()
    before = live_pooled()
    for i in range(2048):
        line = here() + 1
        buf = alloc.allocate(SIZE)
        for step in range(6):
            buf.touch(f"buf{i}-step{step}")
        del buf
    found = reports.all()
    assert 1 <= len(found) <= 64
    for report in found:
        assert site(line) in report
        i = int(report.split("#1: touch('buf", 1)[1].split("-", 1)[0])
        hints = [f"touch('buf{i}-step{s}')" for s in range(6)]
        assert [h in report for h in hints] == [False, False, True, True, True, True]
        assert "touch('buf" not in report.replace(f"touch('buf{i}-", "")  # only its own
    assert live_pooled() == before


def test_a_released_buffer_is_never_reported(
    level: Callable[..., None], reports: Reports
) -> None:
    level(LeakLevel.PARANOID)
    alloc = PooledAllocator.default()
    for _ in range(10):
        buf = alloc.allocate(SIZE).touch("ok").retain()
        part = buf.retained_slice(0, 10)
        buf.release(2)
        part.release()
        del buf, part
    with alloc.allocate(SIZE):
        pass
    gc.collect()
    assert reports.all() == []


def test_derived_buffers_keep_a_leak_alive_until_the_last_is_gone(
    level: Callable[..., None], reports: Reports
) -> None:
    level(LeakLevel.PARANOID)
    line = here() + 1
    buf = PooledAllocator.default().allocate(SIZE)
    part = buf.retained_slice(0, 16)
    view = buf.as_int_buffer()
    del buf
    gc.collect()
    assert reports.all() == []  # still reachable: not a leak yet
    del part
    gc.collect()
    assert reports.all() == []
    del view
    gc.collect()
    (report,) = reports.all()
    assert "(refCnt 2)" in report and site(line) in report


def test_the_level_at_allocation_decides(
    level: Callable[..., None], reports: Reports
) -> None:
    alloc = PooledAllocator.default()
    level(LeakLevel.PARANOID)
    line = here() + 1
    tracked = alloc.allocate(SIZE)
    level(LeakLevel.DISABLED)
    untracked = alloc.allocate(SIZE)
    level(LeakLevel.PARANOID)
    del tracked, untracked
    gc.collect()
    (report,) = reports.all()
    assert site(line) in report


def test_a_leak_whose_memory_a_view_still_reaches_is_reported_and_quarantined(
    level: Callable[..., None], reports: Reports
) -> None:
    level(LeakLevel.PARANOID)
    alloc = PooledAllocator.default()
    line = here() + 1
    buf = alloc.allocate(SIZE)
    address = buf.address()
    held = buf.memoryview()[0:4]  # sliced further: zcio cannot revoke it
    del buf
    gc.collect()
    (report,) = reports.all()
    assert site(line) in report
    other = alloc.allocate(SIZE)
    assert other.address() != address  # quarantined, not reused
    other.put(0, bytes(SIZE))
    held[0] = 0x7F  # still writable memory, but no longer anyone's buffer
    assert bytes(other) == bytes(SIZE)
    other.release()
    del held


def test_a_leak_in_another_thread_is_reported_once(
    level: Callable[..., None], reports: Reports
) -> None:
    level(LeakLevel.PARANOID)
    lines: list[int] = []

    def work() -> None:
        lines.append(here() + 1)
        buf = PooledAllocator.default().allocate(SIZE)
        buf.touch("in thread")
        del buf

    t = threading.Thread(target=work)
    t.start()
    t.join()
    gc.collect()
    (report,) = reports.all()
    assert site(lines[0]) in report and "touch('in thread')" in report


def test_a_leak_is_returned_to_the_pool_even_when_leak_warnings_are_errors() -> None:
    """pytest runs this project with ``-W error::ResourceWarning`` (pyproject): a leak
    report must not cost the pool its slot.  In a subprocess, so that a slot lost for good
    cannot fail every later test's leak check."""
    code = textwrap.dedent("""
        import gc, logging, zcio
        logging.basicConfig(level=logging.CRITICAL)
        zcio.set_leak_detection("paranoid")
        alloc = zcio.PooledAllocator(chunk_size=1 << 16, name="t")
        buf = alloc.allocate(100)
        del buf
        gc.collect()
        alloc.trim()
        live = alloc.pool_infos()[0]
        print(live.count, live.memory_used, zcio.buffer_pools()[0].count)
    """)
    out = subprocess.run([sys.executable, "-W", "error::ResourceWarning", "-c", code],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["0", "0", "0"], out.stdout + out.stderr
