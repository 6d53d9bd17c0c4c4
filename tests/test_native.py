"""The compiled fast paths (``zcio._native``) against the Python methods they replaced.

Each fast path handles only the common successful case and hands every other case to
the Python method (kept in ``zcio._indirect.REFERENCE``): the two must agree on every
call, result, exception type and message, and on the buffer's indexes and bytes
afterwards.  Random call sequences (hypothesis) run on two twin buffers, one through
the fast path and one through the reference, over every plain kind (heap, direct,
pooled, read-only, slices) and both byte orders, with values and indexes chosen to hit
both sides of every bound (exact ints, numpy ints, bools, floats with NaN payloads,
out-of-range and unsigned values, negative and past-the-limit indexes).

Skipped where the accelerator is not loaded (no compiler, or ZCIO_PURE_PYTHON=1): the
reference is then what runs, and the rest of the suite tests it.
"""

from __future__ import annotations

import inspect
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zcio
from zcio import ByteBuffer, ByteOrder, PooledAllocator, _accel
from zcio._indirect import REFERENCE

pytestmark = pytest.mark.skipif(_accel.native is None,
                                reason=f"zcio._native not in use: {_accel.unavailability_cause()}")

CAP = 24

GETS = ["get", "get_char", "get_short", "get_unsigned_short", "get_int", "get_unsigned_int",
        "get_long", "get_float", "get_double"]
PUTS = ["put", "put_char", "put_short", "put_int", "put_long", "put_float", "put_double"]


def _twins(kind: str, order: ByteOrder,
           fill: bytes) -> tuple[ByteBuffer, ByteBuffer, Callable[[], None]]:
    """Two buffers of one kind with the same bytes and indexes, and their cleanup."""
    made: list[ByteBuffer] = []
    alloc = PooledAllocator() if kind == "pooled" else None

    def one() -> ByteBuffer:
        if kind == "heap":
            b = ByteBuffer.allocate(CAP)
        elif kind == "direct":
            b = ByteBuffer.allocate_direct(CAP)
        elif kind == "pooled":
            assert alloc is not None
            b = alloc.allocate(CAP)
        elif kind == "slice":
            b = ByteBuffer.allocate(CAP + 8).position(5).slice()
        else:  # wrapped bytes: read-only
            b = ByteBuffer.wrap(bytes(fill))
        made.append(b)
        if not b.is_read_only():
            b.put(fill).clear()
        return b.order(order)

    def cleanup() -> None:
        for b in made:
            if not b.is_released():
                b.release()

    return one(), one(), cleanup


def _state(b: ByteBuffer) -> tuple[int, int, int, bytes]:
    return b.position(), b.limit(), b.mark_value(), bytes(b.duplicate().clear())


def _outcome(fn: Callable[..., Any], b: Any, args: tuple[Any, ...],
             state: Callable[[Any], Any] = _state) -> tuple[Any, ...]:
    try:
        r = fn(b, *args)
    except Exception as e:
        return ("raised", type(e), str(e), state(b))
    if r is b:
        r = "self"
    elif isinstance(r, float) and math.isnan(r):
        r = ("nan", struct.pack(">d", r))
    return ("returned", type(r), r, state(b))


indexes = st.one_of(st.integers(-3, CAP + 3), st.sampled_from([2**63, -(2**63) - 1]),
                    st.integers(0, CAP).map(np.int64), st.just(True), st.just(None),
                    st.just(1.0))
ints = st.one_of(st.integers(-(2**64), 2**64), st.sampled_from(
    [-129, -128, 127, 128, 255, 256, -32769, 32767, 65535, 65536, 2**31 - 1, 2**31, 2**32,
     2**63 - 1, 2**63]), st.integers(-5, 5).map(np.int32), st.booleans())
floats = st.one_of(st.floats(allow_nan=True, width=64),
                   st.sampled_from([struct.unpack(">d", struct.pack(">Q", 0x7FF0000000000001))[0],
                                    struct.unpack(">f", struct.pack(">I", 0x7F800001))[0],
                                    3.5e38, 3.4028235e38, -1e300, math.inf]),
                   st.integers(-3, 3))
chars = st.one_of(st.characters(), st.sampled_from(["\ud800", "ab", "", "\U0001f600"]),
                  st.integers(-1, 70000))
values = {"put": ints, "put_char": chars, "put_short": ints, "put_int": ints,
          "put_long": ints, "put_float": floats, "put_double": floats}


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, tuple[Any, ...]]:
    if draw(st.booleans()):
        name = draw(st.sampled_from(GETS))
        form = draw(st.sampled_from(["relative", "absolute"]))
        return name, (() if form == "relative" else (draw(indexes),))
    name = draw(st.sampled_from(PUTS))
    v = draw(values[name])
    if draw(st.booleans()):
        return name, (v,)
    return name, (draw(indexes), v)


@pytest.mark.parametrize("kind", ["heap", "direct", "pooled", "slice", "readonly"])
@pytest.mark.parametrize("order", [ByteOrder.BIG_ENDIAN, ByteOrder.LITTLE_ENDIAN],
                         ids=["big", "little"])
@settings(max_examples=150, deadline=None)
@given(fill=st.binary(min_size=CAP, max_size=CAP),
       seq=st.lists(calls(), min_size=1, max_size=25),
       start=st.integers(0, CAP), limit=st.integers(0, CAP))
def test_fast_path_matches_reference(kind: str, order: ByteOrder, fill: bytes,
                                     seq: list[tuple[str, tuple[Any, ...]]],
                                     start: int, limit: int) -> None:
    fast, ref, cleanup = _twins(kind, order, fill)
    try:
        for b in (fast, ref):
            b.limit(max(start, limit)).position(min(start, limit))
        for name, args in seq:
            got = _outcome(getattr(ByteBuffer, name), fast, args)
            want = _outcome(REFERENCE[name], ref, args)
            assert got == want, (name, args)
    finally:
        cleanup()


def test_every_hot_method_is_compiled() -> None:
    from zcio import _native  # type: ignore[attr-defined]
    assert set(REFERENCE) == set(_native.ACCELERATED) == set(GETS) | set(PUTS)
    for name in REFERENCE:
        assert type(getattr(ByteBuffer, name)).__name__ == "method_descriptor"
        fast = getattr(ByteBuffer, name)
        assert fast.__text_signature__.startswith("($self")
        assert fast.__doc__ == inspect.getdoc(REFERENCE[name])


@pytest.mark.parametrize("name", GETS + PUTS)
def test_released_buffer_takes_the_reference_error(name: str) -> None:
    b = ByteBuffer.allocate_direct(16)
    b.release()
    args: tuple[Any, ...] = () if name.startswith("get") else (
        ("x",) if name == "put_char" else (1.0,) if name in ("put_float", "put_double") else (1,))
    with pytest.raises(zcio.ReleasedBufferError):
        getattr(b, name)(*args)


def test_mapped_and_composite_never_take_the_fast_path(tmp_path: Any) -> None:
    """Indirect kinds (mapped memory behind the SIGBUS guard, composites) are handed to
    their Python methods: a truncated mapping raises MappedRegionError, not SIGBUS."""
    import subprocess
    import sys
    code = f"""
import os, zcio
p = {str(tmp_path / 'f')!r}
with open(p, 'wb') as f: f.write(b'x' * 8192)
ch = zcio.FileChannel.open(p, zcio.OpenOption.READ, zcio.OpenOption.WRITE)
m = ch.map(zcio.MapMode.READ_WRITE, 0, 8192)
os.truncate(p, 0)
for name in ('get_short', 'get_int', 'get_long', 'get_double', 'get'):
    try:
        getattr(m, name)(4100)
    except zcio.MappedRegionError:
        pass
    else:
        raise SystemExit('no error from ' + name)
print('ok')
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-500:])


# -- typed views ----------------------------------------------------------------------

VIEWS = ["as_char_buffer", "as_short_buffer", "as_int_buffer", "as_long_buffer",
         "as_float_buffer", "as_double_buffer"]
view_values = st.one_of(ints, floats, chars)


@st.composite
def view_calls(draw: st.DrawFn) -> tuple[str, tuple[Any, ...]]:
    if draw(st.booleans()):
        return "get", (() if draw(st.booleans()) else (draw(indexes),))
    v = draw(view_values)
    return "put", ((v,) if draw(st.booleans()) else (draw(indexes), v))


def _view_state(v: Any) -> tuple[int, int, int]:
    return v.position(), v.limit(), v.mark_value()


@pytest.mark.parametrize("kind", ["heap", "direct", "pooled", "slice", "readonly"])
@pytest.mark.parametrize("view", VIEWS)
@settings(max_examples=60, deadline=None)
@given(fill=st.binary(min_size=CAP, max_size=CAP), order=st.sampled_from(list(ByteOrder)),
       seq=st.lists(view_calls(), min_size=1, max_size=20), start=st.integers(0, 12))
def test_view_fast_path_matches_reference(kind: str, view: str, fill: bytes,
                                          order: ByteOrder,
                                          seq: list[tuple[str, tuple[Any, ...]]],
                                          start: int) -> None:
    from zcio._typed import VIEW_REFERENCE
    a, b, cleanup = _twins(kind, order, fill)
    try:
        fast = getattr(a.position(start % 3), view)()
        ref = getattr(b.position(start % 3), view)()
        for name, args in seq:
            cls = type(fast)
            got = _outcome(getattr(cls, name), fast, args, _view_state)
            want = _outcome(VIEW_REFERENCE[name], ref, args, _view_state)
            assert got == want, (name, args)
        assert bytes(a.clear()) == bytes(b.clear())
    finally:
        cleanup()


def test_views_over_mapped_memory_ask_the_memory(tmp_path: Any) -> None:
    """A view over a mapping has no memoryview of its own (None): the fast path hands it
    to the Python methods, which read through the SIGBUS guard."""
    p = tmp_path / "f"
    p.write_bytes(bytes(range(16)))
    with zcio.FileChannel.open(p, zcio.OpenOption.READ) as ch:
        m = ch.map(zcio.MapMode.READ_ONLY, 0, 16)
        v = m.as_int_buffer()
        assert v._mv is None
        assert v.get(1) == 0x04050607
        m.release()


def test_positions_across_the_index_int_table() -> None:
    """Positions below 65536 come from the compiled core's table of index ints, those
    above are made as usual (native.h index_int): relative gets and puts, and a
    channel's advance, walk across the edge with the same positions and values."""
    edge = 1 << 16
    data = bytes(range(256)) * ((edge * 4 + 64) // 256 + 1)
    buf = ByteBuffer.allocate_direct(len(data)).put(data).clear()
    try:
        buf.position(edge - 6)
        for _ in range(4):
            at = buf.position()
            assert buf.get_int() == struct.unpack_from(">i", data, at)[0]
            assert buf.position() == at + 4
        assert buf.position() == edge + 10
        ints = buf.clear().as_int_buffer().position(edge - 2)
        for k in range(4):
            assert ints.get() == struct.unpack_from(">i", data, (edge - 2 + k) * 4)[0]
        assert ints.position() == edge + 2
        ints.position(edge - 1).put(7).put(8)
        assert ints.position() == edge + 1 and ints.get(edge - 1) == 7 and ints.get(edge) == 8
        pipe = zcio.Pipe.open()
        try:
            src = ByteBuffer.wrap(bytearray(data)).position(edge - 3).limit(edge + 3)
            assert pipe.sink().write(src) == 6 and src.position() == edge + 3
            sink = ByteBuffer.allocate(edge + 8).position(edge - 1)
            assert pipe.source().read(sink) == 6 and sink.position() == edge + 5
        finally:
            pipe.sink().close()
            pipe.source().close()
    finally:
        buf.release()


# -- bulk get / put of bytes-like objects ---------------------------------------------

OBJECTS = ["bytes", "bytearray", "mv", "mv_readonly", "mv_slice", "mv_strided", "mv_int",
           "mv_2d", "mv_released", "numpy", "own", "buffer"]


def _bulk_object(spec: str, size: int, twin: ByteBuffer, views: list[memoryview]) -> Any:
    """The object a bulk call takes, made alike for each twin (``own``: a view of the
    twin's own memory, so copies may overlap; ``buffer``: another ByteBuffer)."""
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    if spec == "bytes":
        return data
    if spec == "bytearray":
        return bytearray(data)
    if spec == "numpy":
        return np.frombuffer(bytearray(data), dtype=np.uint8)
    if spec == "buffer":
        return ByteBuffer.wrap(bytearray(data))
    if spec == "own":
        mv = twin.duplicate().clear().memoryview()
    elif spec == "mv_readonly":
        mv = memoryview(data)
    elif spec == "mv_slice":
        mv = memoryview(bytearray(data + b"xyz"))[3:]
    elif spec == "mv_strided":
        mv = memoryview(bytearray(data * 2))[::2]
    elif spec == "mv_int":
        mv = memoryview(bytearray(data[: size // 4 * 4])).cast("i")
    elif spec == "mv_2d":
        half = max(size // 2, 1)  # no zeros in a cast shape
        mv = memoryview(bytearray((data + b"ab")[: half * 2])).cast("B", (2, half))
    else:
        mv = memoryview(bytearray(data))
        if spec == "mv_released":
            mv.release()
    views.append(mv)
    return mv


def _object_bytes(o: Any) -> Any:
    try:
        return bytes(o) if not isinstance(o, ByteBuffer) else bytes(o.duplicate().clear())
    except (ValueError, TypeError):
        return "unreadable"


bulk_args = st.one_of(st.just(None), st.integers(-2, CAP + 6), st.integers(0, 8).map(np.int64))


@st.composite
def bulk_calls(draw: st.DrawFn) -> tuple[str, bool, Any, str, int, tuple[Any, ...]]:
    extra = draw(st.lists(bulk_args, max_size=2))
    return (draw(st.sampled_from(["get", "put"])), draw(st.booleans()),
            draw(st.one_of(st.integers(-2, CAP + 2), st.just(np.int64(1)))),
            draw(st.sampled_from(OBJECTS)), draw(st.integers(0, CAP + 4)), tuple(extra))


@pytest.mark.parametrize("kind", ["heap", "direct", "pooled", "slice", "readonly"])
@settings(max_examples=150, deadline=None)
@given(fill=st.binary(min_size=CAP, max_size=CAP),
       seq=st.lists(bulk_calls(), min_size=1, max_size=12),
       start=st.integers(0, CAP), limit=st.integers(0, CAP))
def test_bulk_fast_path_matches_reference(kind: str, fill: bytes,
                                          seq: list[tuple[str, bool, Any, str, int,
                                                          tuple[Any, ...]]],
                                          start: int, limit: int) -> None:
    """get(dst, ...) / put(src, ...) and their absolute forms: the one-memmove fast path
    for flat bytes, bytearray and memoryview objects agrees with the reference on every
    result, error, index and byte (both sides), and hands everything else over."""
    fast, ref, cleanup = _twins(kind, ByteOrder.BIG_ENDIAN, fill)
    views: list[memoryview] = []
    try:
        for b in (fast, ref):
            b.limit(max(start, limit)).position(min(start, limit))
        for op, absolute, index, spec, size, extra in seq:
            outcomes = []
            for b, fn in ((fast, getattr(ByteBuffer, op)), (ref, REFERENCE[op])):
                obj = _bulk_object(spec, size, b, views)
                args = ((index,) if absolute else ()) + (obj,) + extra
                outcomes.append((_outcome(fn, b, args), _object_bytes(obj)))
            assert outcomes[0] == outcomes[1], (op, absolute, index, spec, size, extra)
    finally:
        for mv in views:
            mv.release()
        cleanup()


def test_bulk_fast_path_is_taken() -> None:
    """The flat forms never reach the reference: a bulk put and get of 1 MiB cost a
    memmove, not the Python method's views and checks (counted by replacing it)."""
    from zcio._native import BufferState  # type: ignore[attr-defined]
    data = bytes(range(256)) * 4
    b = ByteBuffer.allocate(4096)
    out = bytearray(1024)
    assert isinstance(b, BufferState)
    b.put(data).put(0, memoryview(data), 0, 16).flip()
    b.get(out)
    assert out == data and b.position() == 1024
    b.clear().get(8, out, 4, 100)
    assert out[4:104] == data[8:108] and b.position() == 0


def test_a_zero_length_bulk_copy_at_the_end_of_a_strided_view_is_a_no_op() -> None:
    """A one-item view with a stride is contiguous, but CPython flags its empty slice
    as not: the reference once sliced it and raised TypeError where the fast path
    copied nothing (found by hypothesis)."""
    b = ByteBuffer.allocate(8)
    for get, put in ((ByteBuffer.get, ByteBuffer.put), (REFERENCE["get"], REFERENCE["put"])):
        dst = memoryview(bytearray(2))[::2]
        assert get(b, dst, 1) is b and b.position() == 0
        assert put(b, dst, 1) is b and b.position() == 0
