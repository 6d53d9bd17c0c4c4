"""Buffer exports never outlive their memory: every consumer x every kind x every order.

A consumer takes a buffer's bytes without copying: ``memoryview(buf)``, numpy,
ctypes (the buffer protocol, PEP 688, Python 3.12+), or, on every version, the
``memoryview()`` zcio hands out and what is built on it.  Whatever order things happen
in (release then use, use then release, release while the export lives then drop it,
release twice, release then allocate again so that the memory could be reused), the
export either still reads the buffer's own bytes (it keeps the memory alive: unmap
deferred, a pooled slot quarantined, the pools still counting it) or raises because zcio
revoked it.  Once the export is gone the pools are back to zero.

The bug this guards against segfaulted (or read another buffer's bytes), so every
consumer runs its whole matrix in a child interpreter (this file run as a script); the
test asserts a clean exit and no failed case.  On 3.11 a Python class cannot export a
buffer at all: there the buffer-protocol consumers must fail with TypeError.
"""

from __future__ import annotations

import array
import ctypes
import functools
import gc
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zcio
from buffer_kinds import BASE_KINDS, BufferKind, pattern
from zcio import (
    ByteBuffer,
    CompositeBuffer,
    FileChannel,
    IllegalReferenceCountError,
    MapMode,
    OpenOption,
    PooledAllocator,
    ReleasedBufferError,
)

PEP688 = sys.version_info >= (3, 12)
N = 64  # capacity of every buffer under test
BASELINE = [("direct", 0, 0, 0), ("mapped", 0, 0, 0)]


def usage() -> list[tuple[str, int, int, int]]:
    """As the conftest's leak check sees the pools: trimmed, collected."""
    gc.collect()
    PooledAllocator.default().trim()
    return [(p.name, p.count, p.total_capacity, p.memory_used) for p in zcio.buffer_pools()
            if p.name in ("direct", "mapped") or p.count]


# -- mapped kinds (buffer_kinds has none: they need a file) ---------------------------------

_DIR = Path(tempfile.gettempdir())


def _mapped(mode: MapMode) -> Callable[[int, bytes], tuple[ByteBuffer, ByteBuffer | None]]:
    def build(capacity: int, content: bytes) -> tuple[ByteBuffer, ByteBuffer | None]:
        path = _DIR / f"zcio-exports-{os.getpid()}.bin"
        path.write_bytes(b"\xee" * 3 + content)
        try:
            with FileChannel.open(path, OpenOption.READ, OpenOption.WRITE) as ch:
                buf = ch.map(mode, 3, capacity)  # an unaligned start: a sliced mapping
        finally:
            path.unlink()
        return buf, None if mode is MapMode.READ_ONLY else buf

    return build


KINDS: list[BufferKind] = [
    *BASE_KINDS,
    BufferKind("mapped-read-write", _mapped(MapMode.READ_WRITE), True, False),
    BufferKind("mapped-private", _mapped(MapMode.PRIVATE), True, False),
    BufferKind("mapped-read-only", _mapped(MapMode.READ_ONLY), True, True),
]


def make(kind: BufferKind, seed: int = 0) -> tuple[ByteBuffer, bytes]:
    """A buffer of ``kind`` and its remaining bytes; a composite's [position, limit) is
    narrowed to its first component (a zero-copy export needs one block)."""
    buf = kind.fresh(N, pattern(N, seed))
    if not kind.contiguous:
        views = buf.memoryviews()  # type: ignore[attr-defined]
        assert len(views) > 1
        buf.limit(buf.position() + len(views[0]))
    return buf, bytes(buf)


# -- consumers ------------------------------------------------------------------------------

KEPT, REVOKED, TRANSIENT = "kept", "revoked", "transient"


@dataclass(frozen=True)
class Consumer:
    """A way to take a buffer's bytes.  ``take`` returns a handle (a holding consumer)
    or the bytes it copied (a transient one); ``read`` gives a handle's bytes."""

    name: str
    take: Callable[[ByteBuffer], Any]
    read: Callable[[Any], bytes] = bytes
    holds: str = KEPT  # KEPT: the export keeps the memory alive; REVOKED: zcio revokes it
    protocol: bool = True  # through the buffer protocol (3.12+), not memoryview()
    writes: bool = False  # needs a writable buffer
    expect: Callable[[bytes], bytes] = lambda rest: rest


def _sliced_memoryview(buf: ByteBuffer) -> memoryview:
    whole = memoryview(buf)  # type: ignore[arg-type, unused-ignore]
    part = whole[1:]
    whole.release()  # the slice alone holds the export now
    return part


def _recv_into(buf: ByteBuffer) -> bytes:
    a, b = socket.socketpair()
    with a, b:
        n = len(buf.memoryview())
        a.sendall(bytes(range(n)))
        got = b.recv_into(buf)  # type: ignore[arg-type, unused-ignore]
    return bytes([got]) + bytes(buf)


def _pack_into(buf: ByteBuffer) -> bytes:
    struct.pack_into("4s", buf, 0, b"wxyz")  # type: ignore[arg-type, unused-ignore]
    return bytes(buf)


def _array(buf: ByteBuffer) -> bytes:
    arr = array.array("B")
    arr.frombytes(buf)  # type: ignore[arg-type, unused-ignore]
    return arr.tobytes()


def _asarray(buf: ByteBuffer) -> Any:
    arr = np.asarray(buf)
    if arr.dtype == object:  # 3.11: no buffer protocol, so numpy holds the object itself
        raise TypeError("not a buffer: numpy made an object array")
    return arr


def _c_chars(mv: Any) -> Any:
    return (ctypes.c_char * len(memoryview(mv))).from_buffer(mv)


CONSUMERS: list[Consumer] = [
    # holding the export: the buffer protocol
    Consumer("memoryview", memoryview),
    Consumer("memoryview-slice", _sliced_memoryview, expect=lambda rest: rest[1:]),
    Consumer("numpy.frombuffer", lambda b: np.frombuffer(b, dtype=np.uint8),  # type: ignore[call-overload, unused-ignore]
             read=lambda a: a.tobytes()),
    Consumer("numpy.asarray", _asarray, read=lambda a: a.tobytes()),
    Consumer("ctypes.from_buffer", _c_chars, read=lambda c: c.raw, writes=True),
    # holding what memoryview() returned: every version
    Consumer("buf.memoryview", lambda b: b.memoryview(), holds=REVOKED, protocol=False),
    Consumer("buf.memoryview-slice", lambda b: b.memoryview()[1:], protocol=False,
             expect=lambda rest: rest[1:]),
    Consumer("numpy.frombuffer(buf.memoryview)",
             lambda b: np.frombuffer(b.memoryview(), dtype=np.uint8),
             read=lambda a: a.tobytes(), protocol=False),
    Consumer("ctypes.from_buffer(buf.memoryview)", lambda b: _c_chars(b.memoryview()),
             read=lambda c: c.raw, protocol=False, writes=True),
    # transient: the export lasts one call
    Consumer("struct.unpack_from", lambda b: struct.unpack_from("4s", b)[0],
             holds=TRANSIENT, expect=lambda rest: rest[:4]),
    Consumer("struct.pack_into", _pack_into, holds=TRANSIENT, writes=True,
             expect=lambda rest: b"wxyz" + rest[4:]),
    Consumer("socket.recv_into", _recv_into, holds=TRANSIENT, writes=True,
             expect=lambda rest: bytes([len(rest)]) + bytes(range(len(rest)))),
    Consumer("array.frombytes", _array, holds=TRANSIENT),
    Consumer("bytes", bytes, holds=TRANSIENT, protocol=False),
]

ORDERS = ["release-then-use", "use-then-release", "release-while-held-then-drop",
          "release-twice", "release-then-reallocate"]


# -- the matrix, run in the child -----------------------------------------------------------


class CaseFailure(AssertionError):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise CaseFailure(what)


def expect_released(call: Callable[[], object], what: str,
                    errors: tuple[type[Exception], ...] = ()) -> None:
    """``call`` must raise: ReleasedBufferError from zcio, the ValueError of a
    memoryview zcio revoked, or one of ``errors``."""
    allowed: tuple[type[Exception], ...] = (ReleasedBufferError, ValueError, *errors)
    try:
        call()
    except allowed:
        return
    raise CaseFailure(f"{what}: no error after release")


def release(buf: ByteBuffer, kind: BufferKind, twice: bool) -> None:
    check(buf.release() is True, "release() did not free the block")
    if not twice:
        return
    if kind.strict:
        try:
            buf.release()
        except IllegalReferenceCountError:
            return
        raise CaseFailure("a strict second release did not raise")
    check(buf.release() is False, "a lenient second release was not a no-op")


def run_case(consumer: Consumer, kind: BufferKind, order: str) -> str:
    """One case; returns what happened (for the log).  Raises CaseFailure."""
    buf, rest = make(kind)
    wanted = consumer.expect(rest)
    refused = (consumer.protocol and not PEP688) or (consumer.writes and kind.is_read_only)
    if refused:  # no export at all: 3.11 has no protocol; a read-only buffer, no writer
        try:
            consumer.take(buf)
        except TypeError:
            buf.release()
            return "refused"
        raise CaseFailure("took a buffer it must refuse")
    if consumer.holds == TRANSIENT:
        return _transient(consumer, kind, order, buf, wanted)
    handle = consumer.take(buf)
    if order == "use-then-release":
        check(consumer.read(handle) == wanted, "wrong bytes before release")
        release(buf, kind, twice=False)
        return "used"  # the handle goes with this frame
    release(buf, kind, twice=order == "release-twice")
    if consumer.holds == REVOKED:
        check(usage() == BASELINE, f"revoked, yet memory still held: {usage()}")
        expect_released(functools.partial(consumer.read, handle), "a revoked view")
        return "revoked"
    if kind.is_direct:  # the export pins the block: still mapped, still counted
        check(usage() != BASELINE, "the block was freed under a live export")
    others: list[tuple[ByteBuffer, bytes]] = []  # buffers made after, and their bytes
    if order == "release-then-reallocate":  # the memory may be handed out again...
        for seed in range(1, 5):
            other, other_rest = make(kind, seed)
            if not other.is_read_only():
                other_rest = b"\x5a" * other.remaining()
                other.put(other.position(), other_rest)
            others.append((other, other_rest))
    got = consumer.read(handle)  # ...never while the export lives
    check(got == wanted, f"the export reads other bytes: {got[:8]!r} != {wanted[:8]!r}")
    if order == "release-then-reallocate":
        _scribble(handle)
        check(all(bytes(o) == r for o, r in others), "another buffer's bytes changed")
        for o, _ in others:
            o.release()
    del handle
    return "kept"


def _scribble(handle: Any) -> None:
    """Write through the export (if writable): it must land in its own memory only."""
    view = memoryview(handle)
    if not view.readonly:
        flat = view.cast("B")
        flat[:] = b"\x11" * len(flat)


def _transient(consumer: Consumer, kind: BufferKind, order: str, buf: ByteBuffer,
               wanted: bytes) -> str:
    if order == "use-then-release":
        got = consumer.take(buf)
        check(got == wanted, f"wrong bytes: {got[:8]!r} != {wanted[:8]!r}")
        release(buf, kind, twice=False)
        return "used"
    release(buf, kind, twice=order == "release-twice")
    # CPython's argument parsing ("w*", "y*") turns the exporter's error into TypeError
    expect_released(lambda: consumer.take(buf), consumer.name, (TypeError,))
    return "refused after release"


def child_main(consumer_name: str) -> int:
    """Run one consumer's matrix; print one line per case; exit status 1 on failure."""
    import faulthandler

    faulthandler.enable()
    gc.freeze()  # what the imports made is not garbage: each collect skips it (~1 ms, not 60)
    (consumer,) = [c for c in CONSUMERS if c.name == consumer_name]
    failed = 0
    for kind in KINDS:
        for order in ORDERS:
            print(f"case {kind.name} {order}", flush=True)  # the last line, if it crashes
            try:
                outcome = run_case(consumer, kind, order)
                after = usage()
                check(after == BASELINE, f"leaked after the export went: {after}")
            except Exception:  # report every case, then fail
                failed += 1
                print(f"FAIL {kind.name} {order}: {traceback.format_exc()}", flush=True)
                gc.collect()
                continue
            print(f"ok {kind.name} {order}: {outcome}", flush=True)
    print(f"done {failed} failed", flush=True)
    return 1 if failed else 0


# -- the tests (parent side) ----------------------------------------------------------------

_SRC = str(Path(zcio.__file__).resolve().parent.parent)
_TESTS = str(Path(__file__).resolve().parent)


def run_child(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([_SRC, _TESTS]))
    return subprocess.run([sys.executable, "-X", "faulthandler", __file__, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("consumer", [c.name for c in CONSUMERS])
def test_every_kind_and_release_order(consumer: str) -> None:
    """A clean exit (no SIGSEGV, no SIGBUS), and every case either kept its bytes, was
    revoked, or was refused as it must be."""
    out = run_child(consumer)
    tail = "\n".join(out.stdout.splitlines()[-3:])
    assert out.returncode == 0, f"exit {out.returncode} at:\n{tail}\n{out.stderr[-3000:]}"
    lines = out.stdout.splitlines()
    assert lines[-1] == "done 0 failed", out.stdout[-3000:]
    assert sum(line.startswith("ok ") for line in lines) == len(KINDS) * len(ORDERS)


@pytest.mark.skipif(not PEP688, reason="__buffer__ (PEP 688) needs Python 3.12")
def test_numpy_holds_the_export_not_the_buffer() -> None:
    """The mechanism: with ``__release_buffer__`` defined numpy keeps a memoryview of
    the export as the array's base; without it, the ByteBuffer and a raw pointer."""
    buf = ByteBuffer.allocate_direct(16)
    arr = np.frombuffer(buf, dtype=np.uint8)  # type: ignore[call-overload, unused-ignore]
    assert isinstance(arr.base, memoryview)
    buf.release()
    assert [p.count for p in zcio.buffer_pools() if p.name == "direct"] == [1]
    assert arr.tobytes() == bytes(16)
    del arr
    gc.collect()


@pytest.mark.skipif(not PEP688, reason="__buffer__ (PEP 688) needs Python 3.12")
def test_letting_go_of_an_export_reclaims_a_quarantined_slot_at_once() -> None:
    pool = PooledAllocator(name="exports-reclaim")
    buf = pool.allocate(1000)
    address = buf.address()
    arr = np.frombuffer(buf, dtype=np.uint8)  # type: ignore[call-overload, unused-ignore]
    buf.release()
    assert len(pool._quarantine) == 1
    del arr  # __release_buffer__: the slot leaves quarantine now, not on a later need
    assert pool._quarantine == []
    again = pool.allocate(1000)
    assert again.address() == address
    again.release()
    pool.trim()


@pytest.mark.skipif(not PEP688, reason="__buffer__ (PEP 688) needs Python 3.12")
def test_a_composite_export_keeps_its_pooled_component_out_of_reuse() -> None:
    """A composite exports one component's view; releasing the composite releases
    that pooled component, whose slot must wait (here: until ``trim``)."""
    pool = PooledAllocator(name="exports-composite")
    comp = CompositeBuffer.of(pool.allocate(100).put(pattern(100)).flip(),
                              ByteBuffer.allocate_direct(10))
    arr = np.frombuffer(comp.limit(100), dtype=np.uint8)  # type: ignore[call-overload, unused-ignore]
    comp.release()
    others = [pool.allocate(100).put(b"\x5a" * 100) for _ in range(4)]
    assert arr.tobytes() == pattern(100)
    arr[:] = 0x11
    assert all(bytes(o.flip()) == b"\x5a" * 100 for o in others)
    for o in others:
        o.release()
    del arr
    pool.trim()
    assert [p.memory_used for p in pool.pool_infos()] == [0, 0]


@pytest.mark.skipif(not PEP688, reason="__buffer__ (PEP 688) needs Python 3.12")
def test_release_during_a_blocking_recv_into_misdirects_nothing() -> None:
    """``recv_into(buf)`` blocks without the GIL, holding an export; another thread
    releases the buffer and allocates again meanwhile.  The bytes must land in the
    old (quarantined) slot, never in the new buffer."""
    pool = PooledAllocator(name="exports-recv")
    raced = 0
    for attempt in range(5):  # bounded: the release must come while recv blocks
        a, b = socket.socketpair()
        buf = pool.allocate(64)
        started = threading.Event()
        result: list[object] = []

        def receive(target: ByteBuffer = buf, sock: socket.socket = b,
                    box: list[object] = result, go: threading.Event = started) -> None:
            go.set()
            try:
                box.append(sock.recv_into(target))  # type: ignore[arg-type, unused-ignore]
            except ReleasedBufferError as e:  # released before recv took the buffer
                box.append(e)

        reader = threading.Thread(target=receive)
        reader.start()
        started.wait(10)
        time.sleep(0.02 * (attempt + 1))
        buf.release()
        fresh = [pool.allocate(64).put(0, b"\x00" * 64) for _ in range(4)]
        a.sendall(b"\x77" * 64)
        reader.join(10)
        assert not reader.is_alive()
        a.close()
        b.close()
        assert all(bytes(f.clear()) == b"\x00" * 64 for f in fresh)
        for f in fresh:
            f.release()
        if isinstance(result[0], int):  # received into the released, quarantined slot
            assert 0 < result[0] <= 64
            raced += 1
        else:
            assert isinstance(result[0], ReleasedBufferError), result
    pool.trim()
    assert raced, "the release never came while recv_into was blocked"


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))


@pytest.mark.skipif(sys.version_info < (3, 12), reason="__buffer__ (PEP 688) is 3.12+")
def test_wrap_takes_a_python_class_that_exports_through_dunder_buffer() -> None:
    """Its memoryview's ``obj`` is CPython's internal wrapper, which exports nothing
    itself: asking it whether the bytes lie in a file once raised TypeError."""

    class Exporter:
        def __init__(self) -> None:
            self.data = bytearray(b"abcdefgh")

        def __buffer__(self, flags: int) -> memoryview:
            return memoryview(self.data)

        def __release_buffer__(self, view: memoryview) -> None:
            pass

    exporter = Exporter()
    buf = ByteBuffer.wrap(exporter)  # type: ignore[arg-type]
    assert buf.get(0) == ord("a") and buf.capacity() == 8
    buf.put(0, ord("z"))
    assert exporter.data[0] == ord("z")
    buf.release()
