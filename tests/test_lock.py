"""zcio._native.Lock against threading.Lock, and the compiled paths that read it.

The locks that Python code and the accelerator's C both take (a socket channel's read
and write locks, ``zcio.metrics``'s lock, the reference counts' lock) are
``zcio._native.Lock`` when the accelerator runs (``zcio._lock.new_lock``).  Every
contract test here runs on both kinds and asks for the same answers: the same results,
waits, exceptions and messages, signal handlers run during a wait.  Then the C paths:
each steps aside, to a Python path that waits, while another thread holds the lock.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from zcio import ByteBuffer, FileChannel, OpenOption, PooledAllocator, _memory, metrics
from zcio._accel import native
from zcio._lock import new_lock

KINDS: dict[str, Callable[[], Any]] = {"threading": threading.Lock}
if native is not None:
    KINDS["native"] = native.Lock

compiled = pytest.mark.skipif(native is None, reason="zcio._native is not loaded")


@pytest.fixture(params=["threading", "native"])
def make(request: pytest.FixtureRequest) -> Callable[[], Any]:
    if request.param not in KINDS:
        pytest.skip("zcio._native is not loaded")
    return KINDS[request.param]


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception as e:
        return "error", (type(e).__name__, str(e))


def test_new_lock_is_the_compiled_lock_when_the_accelerator_runs() -> None:
    lock = new_lock()
    assert type(lock) is (threading.Lock().__class__ if native is None else native.Lock)
    for held in (metrics._lock, _memory._RC_LOCK):
        assert type(held) is type(lock)


def test_acquire_release_and_locked(make: Callable[[], Any]) -> None:
    lock = make()
    assert not lock.locked() and "unlocked" in repr(lock)
    assert lock.acquire() is True and lock.locked() and repr(lock).startswith("<locked")
    assert lock.acquire(False) is False and lock.acquire(blocking=False) is False
    t0 = time.monotonic()
    assert lock.acquire(timeout=0.05) is False
    assert time.monotonic() - t0 >= 0.045
    assert lock.acquire(True, 0) is False  # a zero timeout does not wait
    assert lock.release() is None and not lock.locked()
    assert outcome(lock.release) == ("error", ("RuntimeError", "release unlocked lock"))
    assert lock.acquire(timeout=1) is True
    lock.release()


def test_with_takes_and_lets_go_even_on_error(make: Callable[[], Any]) -> None:
    lock = make()
    with lock as got:
        assert got is True and lock.locked()
    assert not lock.locked()
    with pytest.raises(KeyError), lock:
        raise KeyError("x")
    assert not lock.locked()


@pytest.mark.parametrize("kwargs", [
    {"blocking": False, "timeout": 1}, {"blocking": False, "timeout": 0.0},
    {"timeout": -2}, {"timeout": -0.5}, {"timeout": math.nan}, {"timeout": "1"},
    {"timeout": None}, {"timeout": -1}, {"timeout": -1.0}, {"blocking": 0, "timeout": -1},
    {"blocking": []}, {"blocking": 1.5}, {"blocking": 2 ** 70}, {"bogus": 1},
], ids=repr)
def test_arguments_are_checked_as_threading_lock_checks_them(kwargs: dict[str, Any]) -> None:
    answers = []
    for make in KINDS.values():
        lock = make()
        answers.append(outcome(lambda acquire=lock.acquire: acquire(**kwargs)))
        if lock.locked():
            lock.release()
    assert all(a == answers[0] for a in answers), answers
    lock = make()
    assert outcome(lambda: lock.acquire(1, 2, 3))[0] == "error"


@pytest.mark.parametrize("timeout", [1e300, 10 ** 30, float("inf")])
def test_a_timeout_too_large_is_an_overflow(make: Callable[[], Any], timeout: float) -> None:
    with pytest.raises(OverflowError):
        make().acquire(timeout=timeout)


def test_another_thread_waits_for_it_and_may_release_it(make: Callable[[], Any]) -> None:
    lock = make()
    lock.acquire()
    got = threading.Event()

    def waiter() -> None:
        assert lock.acquire()
        got.set()

    t = threading.Thread(target=waiter)
    t.start()
    assert not got.wait(0.1)
    lock.release()
    assert got.wait(10)
    t.join(10)
    assert lock.locked()
    threading.Thread(target=lock.release).start()  # any thread may release it
    deadline = time.monotonic() + 10
    while lock.locked() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not lock.locked()


@contextmanager
def alarm_every(seconds: float, handler: Callable[[int, Any], None]) -> Iterator[None]:
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)


def test_a_signal_handler_runs_during_a_wait_and_may_end_it(make: Callable[[], Any]) -> None:
    lock = make()
    lock.acquire()

    def boom(signum: int, frame: Any) -> None:
        raise ZeroDivisionError("from the handler")

    t0 = time.monotonic()
    with alarm_every(0.05, boom), pytest.raises(ZeroDivisionError):
        lock.acquire()
    assert time.monotonic() - t0 < 5
    assert lock.locked()  # still held by this thread, not taken twice
    lock.release()


def test_a_timed_wait_keeps_its_deadline_across_signals(make: Callable[[], Any]) -> None:
    lock = make()
    lock.acquire()
    ran: list[int] = []
    t0 = time.monotonic()
    with alarm_every(0.02, lambda signum, frame: ran.append(signum)):
        assert lock.acquire(timeout=0.3) is False
    took = time.monotonic() - t0
    assert len(ran) >= 3 and 0.28 <= took < 3, (len(ran), took)
    lock.release()


def test_weak_references_and_fork_reinit(make: Callable[[], Any]) -> None:
    lock = make()
    ref = weakref.ref(lock)
    assert ref() is lock
    lock.acquire()
    lock._at_fork_reinit()  # what zcio._fork does in a child
    assert not lock.locked() and lock.acquire(False)
    lock.release()
    del lock
    assert ref() is None


# -- the compiled paths step aside while another thread holds the lock ----------------


@contextmanager
def held_by_another_thread(lock: Any) -> Iterator[Callable[[], None]]:
    """``lock`` held by a helper thread until the returned function is called."""
    taken, let_go = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            taken.set()
            let_go.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert taken.wait(10)
    try:
        yield let_go.set
    finally:
        let_go.set()
        t.join(10)


def finishes_after_release(call: Callable[[], Any], lock: Any) -> Any:
    """Run ``call`` in a thread while another holds ``lock``: it must not finish before
    the lock is let go (it waits in the Python path), then must."""
    result: list[Any] = []
    with held_by_another_thread(lock) as let_go:
        t = threading.Thread(target=lambda: result.append(call()))
        t.start()
        t.join(0.2)
        assert t.is_alive() and not result, "finished while the lock was held"
        let_go()
        t.join(10)
    assert result
    return result[0]


@compiled
def test_the_compiled_count_waits_for_a_held_metrics_lock(tmp_path: Any) -> None:
    ch = FileChannel.open(tmp_path / "f", OpenOption.CREATE, OpenOption.WRITE)
    try:
        ch.write(ByteBuffer.wrap(b"x"))  # the path is counted: the C adds to it directly
        before = metrics.path("file_write")
        assert finishes_after_release(lambda: ch.write(ByteBuffer.wrap(b"abcd")),
                                      metrics._lock) == 4
        after = metrics.path("file_write") - before
        assert (after.operations, after.syscalls, after.user_bytes) == (1, 1, 4)
    finally:
        ch.close()


@compiled
def test_the_compiled_retain_waits_for_a_held_count_lock() -> None:
    buf = PooledAllocator.default().allocate(64)
    try:
        assert finishes_after_release(buf.retain, _memory._RC_LOCK) is buf
        assert buf.ref_cnt() == 2
        assert finishes_after_release(buf.release, _memory._RC_LOCK) is False
    finally:
        buf.release()
    assert buf.ref_cnt() == 0



# -- many threads at once: nothing lost -----------------------------------------------


def test_many_threads_taking_the_lock_lose_no_update(make: Callable[[], Any]) -> None:
    """Eight threads each add 1 to a shared count 300 times under the lock, letting go of
    the GIL inside (a read, a sleep(0), a write): any two inside at once lose an add."""
    lock, box = make(), [0]

    def work() -> None:
        for _ in range(300):
            with lock:
                v = box[0]
                time.sleep(0)
                box[0] = v + 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert box[0] == 8 * 300 and not lock.locked()


def test_timed_and_untimed_waiters_exclude_each_other_and_all_finish(
        make: Callable[[], Any]) -> None:
    """Six threads mixing blocking, timed (0 to 2 ms) and non-blocking acquires, the GIL
    let go inside: never two inside, every blocking one gets in, none is left asleep."""
    lock, inside, overlaps, got = make(), [0], [0], [0]

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(300):
            how = rng.randrange(3)
            took = (lock.acquire() if how == 0 else
                    lock.acquire(timeout=rng.random() / 500) if how == 1 else
                    lock.acquire(False))
            if not took:
                assert how != 0
                continue
            try:
                inside[0] += 1
                if inside[0] != 1:
                    overlaps[0] += 1
                time.sleep(0)
                inside[0] -= 1
                got[0] += 1
            finally:
                lock.release()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a waiter was never woken"
    assert overlaps[0] == 0 and got[0] >= 600 and not lock.locked()


def test_compiled_and_python_counts_from_many_threads_add_up(tmp_path: Any) -> None:
    """Four threads write through FileChannel.write (compiled: counted in C, on Counts,
    when the metrics lock is free) while four call Metrics.record (under the lock, in
    Python): every operation, syscall and byte is in the totals, in both modes."""
    path = "lock_stress_probe"
    before, probe = metrics.path("file_write"), metrics.path(path)
    chans = [FileChannel.open(tmp_path / f"f{i}", OpenOption.CREATE, OpenOption.WRITE)
             for i in range(4)]
    data = ByteBuffer.wrap(bytes(100))

    def writer(ch: FileChannel) -> None:
        for _ in range(400):
            assert ch.write(data.duplicate()) == 100

    def recorder() -> None:
        for _ in range(400):
            metrics.record(path, syscalls=2, user_bytes=3)

    threads = ([threading.Thread(target=writer, args=(c,)) for c in chans]
               + [threading.Thread(target=recorder) for _ in range(4)])
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads between almost any two bytecodes
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(interval)
        for c in chans:
            c.close()
    wrote, recorded = metrics.path("file_write") - before, metrics.path(path) - probe
    assert (wrote.operations, wrote.syscalls, wrote.user_bytes) == (1600, 1600, 160000)
    assert (recorded.operations, recorded.syscalls, recorded.user_bytes) == (1600, 3200, 4800)
