"""Arrow and numpy over zcio memory, zero-copy both ways (zcio._arrow).

``buf.to_arrow()`` is a ``pyarrow.Buffer`` at the buffer's own address that keeps the
memory alive past ``release()``, as any export; ``ByteBuffer.wrap`` takes a mutable
Arrow buffer without a copy; ``numpy.frombuffer`` reads a buffer in place.  The
release-while-Arrow-holds matrix could read freed memory if it were wrong, so it runs
in a child interpreter (this file as a script) and the test checks a clean exit.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import traceback

import numpy as np
import pytest

import zcio
from buffer_kinds import BASE_KINDS, BufferKind, pattern
from zcio import (
    ByteBuffer,
    CompositeBuffer,
    MissingDependencyError,
    PooledAllocator,
    ReleasedBufferError,
    UnsupportedOperationError,
)
from zcio._memory import buffer_address

pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (zcio[arrow])")

PEP688 = sys.version_info >= (3, 12)
N = 64


def narrowed(kind: BufferKind) -> tuple[ByteBuffer, bytes]:
    """A buffer of ``kind`` at position 3; a composite narrowed to its first component."""
    buf = kind.fresh(N, pattern(N)).position(3)
    if not kind.contiguous:
        assert isinstance(buf, CompositeBuffer)
        buf.limit(3 + len(buf.memoryviews()[0]))
    return buf, bytes(buf)


def usage() -> list[tuple[str, int, int, int]]:
    gc.collect()
    PooledAllocator.default().trim()
    return [(p.name, p.count, p.total_capacity, p.memory_used) for p in zcio.buffer_pools()
            if p.name in ("direct", "mapped") or p.count]


@pytest.mark.parametrize("kind", BASE_KINDS, ids=str)
def test_to_arrow_is_the_buffers_memory(kind: BufferKind) -> None:
    buf, rest = narrowed(kind)
    arrow = buf.to_arrow()
    with buf.memoryview() as view:
        assert arrow.address == buffer_address(view)
    assert arrow.size == len(rest) and arrow.to_pybytes() == rest
    assert arrow.is_mutable == (not kind.is_read_only)
    assert buf.position() == 3  # indexes untouched
    if not kind.is_read_only:
        buf.put(3, 0x5A)
        assert arrow.to_pybytes()[0] == 0x5A  # the same bytes, not a copy
    del arrow
    buf.release()


def test_to_arrow_of_a_composite_over_several_components() -> None:
    comp = CompositeBuffer.of(ByteBuffer.wrap(bytearray(b"ab")), ByteBuffer.wrap(bytearray(b"c")))
    with pytest.raises(UnsupportedOperationError):
        comp.to_arrow()
    arrows = [p.to_arrow() for p in comp.nio_buffers()]
    assert [a.to_pybytes() for a in arrows] == [b"ab", b"c"]
    del arrows
    comp.release()


def test_to_arrow_of_a_released_buffer() -> None:
    buf = ByteBuffer.allocate_direct(8)
    buf.release()
    with pytest.raises(ReleasedBufferError):
        buf.to_arrow()


def test_without_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow: ImportError
    with ByteBuffer.allocate(4) as buf, pytest.raises(MissingDependencyError) as e:
        buf.to_arrow()
    assert isinstance(e.value, ImportError) and "zcio[arrow]" in str(e.value)


def test_wrap_a_mutable_arrow_buffer_without_a_copy() -> None:
    arrow = pa.allocate_buffer(32)
    buf = ByteBuffer.wrap(arrow)
    assert not buf.is_read_only() and buf.capacity() == 32
    assert buf.address() == arrow.address
    buf.put(0, b"zcio")
    assert arrow.to_pybytes()[:4] == b"zcio"
    buf.release()
    frozen = ByteBuffer.wrap(pa.py_buffer(b"immutable"))
    assert frozen.is_read_only() and bytes(frozen) == b"immutable"
    frozen.release()


@pytest.mark.parametrize("kind", BASE_KINDS, ids=str)
def test_numpy_frombuffer(kind: BufferKind) -> None:
    buf, rest = narrowed(kind)
    source = buf if PEP688 else buf.memoryview()  # 3.11: no buffer protocol for classes
    arr = np.frombuffer(source, dtype=np.uint8)  # type: ignore[call-overload, unused-ignore]
    assert arr.tobytes() == rest
    assert arr.ctypes.data == buf.address() + 3 if kind.contiguous else True
    if not kind.is_read_only:
        buf.put(3, 0x11)
        assert arr[0] == 0x11
    del arr, source
    buf.release()


def test_release_while_arrow_holds_it() -> None:
    """Every kind: release() with an Arrow buffer alive leaves Arrow's bytes valid and
    the memory counted; once Arrow lets go the pools are back where they were."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-X", "faulthandler", __file__], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FAIL" not in proc.stdout, proc.stdout[-3000:]
    assert proc.stdout.count("ok ") == len(BASE_KINDS), proc.stdout[-3000:]


def _release_matrix() -> int:
    failed = 0
    baseline = usage()
    for kind in BASE_KINDS:
        try:
            buf, rest = narrowed(kind)
            arrow = buf.to_arrow()
            buf.release()
            assert arrow.to_pybytes() == rest, "Arrow's bytes changed after release()"
            if kind.is_direct:  # the block (a slab for a pooled slot) is still mapped
                held = [u for u in usage() if u[0] == kind.pool]
                assert held and held[0][1] >= 1, (kind.pool, usage())
            reused = kind.fresh(N, bytes(N))  # a released slot must not come back
            assert arrow.to_pybytes() == rest, "a new buffer overwrote Arrow's bytes"
            reused.release()
            del arrow
            print("ok", kind.name)
        except Exception:
            failed += 1
            print("FAIL", kind.name, traceback.format_exc())
    if usage() != baseline:  # once Arrow let go of everything, nothing is left
        failed += 1
        print("FAIL pools", usage(), baseline)
    return failed


if __name__ == "__main__":
    sys.exit(1 if _release_matrix() else 0)
