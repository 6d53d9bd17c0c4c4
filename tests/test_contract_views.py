"""The ByteBuffer contract (Java 17) over every buffer kind: typed views.

Sections 13 of the contract; what the files share is in
``contract_helpers`` and ``conftest`` (see ``contract_helpers`` for how kinds are
registered).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from buffer_kinds import (
    BufferKind,
    pattern,
)
from contract_helpers import (
    BE,
    IAE,
    INF,
    IOOB,
    NAN,
    OVER,
    RO,
    UNDER,
    UOE,
    VIEWS,
    Made,
    ViewSpec,
    content,
    every_kind,
    every_view,
    indexes,
    other,
    same,
    same_list,
    to_int32,
    view_snapshot,
    writable_kinds,
)
from zcio import (
    ByteBuffer,
    ByteOrder,
    TypedBuffer,
)

# == 13. typed views =======================================================================


def ref_view_mismatch(spec: ViewSpec, a: list[Any], b: list[Any]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if not spec.java_same(a[i], b[i]):
            return i
    return -1 if len(a) == len(b) else n


def ref_view_compare(spec: ViewSpec, a: list[Any], b: list[Any]) -> int:
    i = ref_view_mismatch(spec, a, b)
    if 0 <= i < min(len(a), len(b)):
        return spec.java_compare(a[i], b[i])
    return len(a) - len(b)


def ref_view_hash(spec: ViewSpec, values: list[Any]) -> int:
    h = 1
    for v in reversed(values):
        h = to_int32(31 * h + spec.java_hash_term(v))
    return h


def elements(view: TypedBuffer) -> list[Any]:
    return [view.get(i) for i in range(view.limit())]


@every_kind
@every_view
def test_view_geometry_and_content(kind: BufferKind, spec: ViewSpec, mk: Made) -> None:
    data = pattern(21)
    buf = mk.fresh(kind, 21, data).position(1).limit(20)
    view = spec.view(buf)
    n = 19 // spec.size
    assert isinstance(view, spec.cls)
    assert indexes(view) == (0, n, -1, n)
    assert view.order() is kind.order
    assert view.is_read_only() is kind.is_read_only
    assert view.is_direct() is kind.is_direct
    assert indexes(buf) == (1, 20, -1, 21)
    expected = [spec.unpack(kind.order, data, 1 + i * spec.size) for i in range(n)]
    assert same_list(elements(view), expected)
    assert same_list([view.get() for _ in range(n)], expected)
    assert view.position() == n
    with pytest.raises(UNDER):
        view.get()
    for bad in (n, -1):
        with pytest.raises(IOOB):
            view.get(bad)
    assert indexes(view) == (n, n, -1, n)
    assert spec.view(buf.position(20)).capacity() == 0
    assert spec.view(buf.position(21 - spec.size + 1).limit(21)).capacity() == 0


@every_kind
@every_view
def test_view_keeps_its_order(kind: BufferKind, spec: ViewSpec, mk: Made) -> None:
    data = pattern(16)
    buf = mk.fresh(kind, 16, data)
    for order in ByteOrder:
        view = spec.view(buf.order(order))
        buf.order(other(order))
        assert view.order() is order
        for derived in (
            view.slice(),
            view.slice(0, 1),
            view.duplicate(),
            view.as_read_only_buffer(),
        ):
            assert derived.order() is order
        assert same(view.get(0), spec.unpack(order, data, 0))


@every_kind
@every_view
def test_view_has_its_own_indexes(kind: BufferKind, spec: ViewSpec, mk: Made) -> None:
    buf = mk.fresh(kind, 34).position(2)
    view = spec.view(buf)
    n = 32 // spec.size
    view.position(1)
    assert buf.position() == 2
    view.get()
    assert (view.position(), buf.position()) == (2, 2)
    buf.position(4).limit(30).mark()
    assert indexes(view) == (2, n, -1, n)
    view.mark().limit(3)
    buf.reset()
    assert indexes(view) == (2, 3, 2, n)
    assert indexes(buf) == (4, 30, 4, 34)
    view.clear()
    assert indexes(view) == (0, n, -1, n)


@writable_kinds
@every_view
def test_view_put_and_get(kind: BufferKind, spec: ViewSpec, mk: Made) -> None:
    cap = 2 + 5 * 8 + 1
    data = pattern(cap)
    buf = mk.fresh(kind, cap, data).position(2)
    view = spec.view(buf)
    n = (cap - 2) // spec.size
    expected = bytearray(data)
    for k, v in enumerate(spec.samples):
        assert view.put(v) is view
        assert view.position() == k + 1
        at = 2 + k * spec.size
        expected[at : at + spec.size] = spec.pack(kind.order, [v])
    assert content(buf) == expected  # the byte buffer sees the writes
    assert buf.position() == 2
    assert view.put(n - 1, spec.samples[0]) is view
    at = 2 + (n - 1) * spec.size
    expected[at : at + spec.size] = spec.pack(kind.order, [spec.samples[0]])
    assert content(buf) == expected
    assert view.position() == 4
    assert same_list([view.get(k) for k in range(4)], list(spec.samples))
    view.flip()
    assert same_list([view.get() for _ in range(4)], list(spec.samples))
    # writes through the byte buffer show in the view
    buf.put(2, spec.pack(kind.order, [spec.samples[3]]))
    assert same(view.get(0), spec.samples[3])
    view.clear().position(n)
    before = view_snapshot(view)
    with pytest.raises(OVER):
        view.put(spec.samples[0])
    for bad in (n, -1):
        with pytest.raises(IOOB):
            view.put(bad, spec.samples[0])
    assert view_snapshot(view) == before
    if spec.name == "char":
        view.put(0, 66)
        assert view.get(0) == "B"


@writable_kinds
@every_view
def test_view_bulk_get_and_put(kind: BufferKind, spec: ViewSpec, mk: Made) -> None:
    buf = mk.fresh(kind, 8 * spec.size)
    view = spec.view(buf)
    s = spec.samples
    vals = [s[0], s[1], s[2], s[3], s[0]]
    assert view.put(vals) is view
    assert view.position() == 5
    view.put(vals[1:3])
    assert view.position() == 7
    before = view_snapshot(view)
    with pytest.raises(OVER):
        view.put([s[0], s[1]])
    assert view_snapshot(view) == before
    view.put(0, vals, 2, 3)
    assert view.position() == 7
    expected = [s[2], s[3], s[0], s[3], s[0], s[1], s[2], view.get(7)]
    assert same_list(elements(view), expected)
    before = view_snapshot(view)
    with pytest.raises(IOOB):
        view.put(6, [s[0], s[1], s[2]])
    with pytest.raises(IOOB):
        view.put(0, vals, 4, 3)
    assert view_snapshot(view) == before
    dst: list[Any] = [None] * 4
    view.position(1)
    assert view.get(dst) is view
    assert same_list(dst, expected[1:5])
    assert view.position() == 5
    view.get(dst, 1, 2)
    assert same_list(dst, [expected[1], expected[5], expected[6], expected[4]])
    assert view.position() == 7
    with pytest.raises(UNDER):
        view.get([None, None])
    assert view.position() == 7
    view.get(2, dst, 0, 3)
    assert same_list(dst[:3], expected[2:5])
    assert view.position() == 7
    with pytest.raises(IOOB):
        view.get(7, [None, None])
    assert view.position() == 7


@writable_kinds
@every_view
def test_view_relative_bulk_put_with_offset_and_length(
    kind: BufferKind, spec: ViewSpec, mk: Made
) -> None:
    """Java's ``put(src[], offset, length)``: the relative form takes a range too."""
    view = spec.view(mk.fresh(kind, 4 * spec.size))
    s = list(spec.samples)
    view.position(1)
    assert view.put(s, 1, 2) is view
    assert view.position() == 3
    assert same_list(elements(view)[1:3], s[1:3])
    view.put(s, 3)  # the rest of src
    assert view.position() == 4
    assert same(view.get(3), s[3])
    before = view_snapshot(view.position(3))
    with pytest.raises(OVER):
        view.put(s, 0, 2)
    with pytest.raises(IOOB):
        view.put(s, 3, 2)
    assert view_snapshot(view) == before


@writable_kinds
@every_view
def test_view_put_from_a_view(kind: BufferKind, spec: ViewSpec, mk: Made) -> None:
    buf = mk.fresh(kind, 8 * spec.size)
    view = spec.view(buf)
    src_bytes = ByteBuffer.wrap(bytearray(spec.pack(BE, list(spec.samples))))
    src = spec.view(src_bytes)
    src.position(1)
    view.position(2)
    assert view.put(src) is view
    assert (view.position(), src.position()) == (5, 4)
    assert same_list(elements(view)[2:5], list(spec.samples[1:]))
    with pytest.raises(IAE):
        view.put(view)
    src.position(0)
    before = view_snapshot(view)
    with pytest.raises(OVER):
        view.put(src)  # 4 remaining in src, 3 in view
    assert src.position() == 0
    assert view_snapshot(view) == before
    # overlapping: a duplicate of the view itself
    dup = view.duplicate().position(2).limit(5)
    view.position(3)
    view.put(dup)
    assert same_list(elements(view)[3:6], list(spec.samples[1:]))


@writable_kinds
@every_view
def test_view_bulk_put_is_atomic_for_invalid_values(
    kind: BufferKind, spec: ViewSpec, mk: Made
) -> None:
    """A failed call changes no index and no content, also when a value is invalid."""
    buf = mk.fresh(kind, 8 * spec.size, pattern(8 * spec.size))
    view = spec.view(buf)
    bad = "x" if spec.floating else ("ab" if spec.name == "char" else 1 << 70)
    before = view_snapshot(view)
    with pytest.raises((IAE, TypeError)):
        view.put([spec.samples[0], spec.samples[1], bad])
    assert view_snapshot(view) == before
    with pytest.raises((IAE, TypeError)):
        view.put(2, [spec.samples[0], bad])
    assert view_snapshot(view) == before


@writable_kinds
@every_view
def test_view_compact(kind: BufferKind, spec: ViewSpec, mk: Made) -> None:
    buf = mk.fresh(kind, 4 * spec.size + 1).position(1)
    view = spec.view(buf)
    s = list(spec.samples)
    view.put(s)
    view.position(1).mark().limit(3)
    assert view.compact() is view
    assert indexes(view) == (2, 4, -1, 4)
    assert same_list(elements(view), [s[1], s[2], s[2], s[3]])


@every_kind
@every_view
def test_view_equals_compare_hash(kind: BufferKind, spec: ViewSpec, mk: Made) -> None:
    s = list(spec.samples)
    pairs: list[tuple[list[Any], list[Any]]] = [
        ([], []),
        ([], [s[0]]),
        (s[:3], s[:3]),
        (s[:3], [s[0], s[1], s[3]]),
        (s[:2], s[:3]),
        ([s[1], s[0]], [s[0], s[1]]),
        (s, list(reversed(s))),
    ]
    extremes: dict[str, list[tuple[list[Any], list[Any]]]] = {
        "char": [(["\uffff"], ["\x00"])],
        "short": [([32767], [-32768])],  # Short.compare: x - y = 65535
        "int": [([2**31 - 1], [-(2**31)])],  # Integer.compare: 1, no overflow
        "long": [([2**63 - 1], [-(2**63)])],
        "float": [([NAN], [NAN]), ([-0.0], [0.0]), ([NAN], [INF]), ([1.0, NAN], [1.0, 2.0])],
        "double": [([NAN], [NAN]), ([-0.0], [0.0]), ([NAN], [INF]), ([1.0, NAN], [1.0, 2.0])],
    }
    pairs += extremes[spec.name]
    pairs += [(b, a) for a, b in pairs]
    for a, b in pairs:
        junk = [s[3]]
        raw_a = spec.pack(kind.order, junk + a)
        x = spec.view(mk.fresh(kind, len(raw_a), raw_a)).position(1)
        y = spec.view(ByteBuffer.wrap(bytearray(spec.pack(other(kind.order), b))).order(
            other(kind.order)
        ))
        eq = ref_view_mismatch(spec, a, b) < 0
        assert x.equals(y) is eq, (a, b)
        assert (x == y) is eq
        assert (x != y) is (not eq)
        assert x.compare_to(y) == ref_view_compare(spec, a, b), (a, b)
        assert y.compare_to(x) == ref_view_compare(spec, b, a), (a, b)
        assert x.mismatch(y) == ref_view_mismatch(spec, a, b), (a, b)
        assert x.hash_code() == ref_view_hash(spec, a), a
        assert y.hash_code() == ref_view_hash(spec, b), b
        assert x.position() == 1
    view = spec.view(mk.fresh(kind, 16))
    assert view.equals(view.duplicate()) is True
    assert view.equals(bytes(16)) is False
    other_spec = VIEWS[(VIEWS.index(spec) + 1) % len(VIEWS)]
    assert view.equals(other_spec.view(mk.fresh(kind, 16))) is False


def test_view_reference_values_from_java() -> None:
    """Spot checks of the references against values computed with Java 17."""
    long_spec, float_spec = VIEWS[3], VIEWS[4]
    # LongBuffer.wrap(new long[]{-1L << 32 | 5}).hashCode() == 31 + 5
    assert ref_view_hash(long_spec, [(-1 << 32) | 5]) == 36
    # FloatBuffer.wrap(new float[]{Float.NaN, 1e20f}).hashCode() == 31*(31+MAX)+0
    assert ref_view_hash(float_spec, [NAN, 1e20]) == to_int32(31 * (31 + 2**31 - 1))
    assert ref_view_compare(float_spec, [NAN], [INF]) == 1
    assert ref_view_compare(float_spec, [-0.0], [0.0]) == 0


@every_kind
@every_view
def test_view_read_only(kind: BufferKind, spec: ViewSpec, mk: Made) -> None:
    buf = mk.fresh(kind, 4 * spec.size, spec.pack(kind.order, list(spec.samples)))
    view = spec.view(buf)
    targets = [view.as_read_only_buffer()]
    if kind.is_read_only:
        targets.append(view)
    src = spec.view(ByteBuffer.allocate(spec.size))
    for ro in targets:
        assert ro.is_read_only() is True
        assert same_list(elements(ro), list(spec.samples))
        before = view_snapshot(ro)
        mutators: list[Callable[[TypedBuffer], object]] = [
            lambda v: v.put(spec.samples[0]),
            lambda v: v.put(0, spec.samples[0]),
            lambda v: v.put([spec.samples[0]]),
            lambda v: v.put(0, [spec.samples[0]]),
            lambda v: v.put(src),
            lambda v: v.compact(),
        ]
        for call in mutators:
            with pytest.raises(RO):
                call(ro)
            assert view_snapshot(ro) == before
        assert src.position() == 0
        with pytest.raises(IAE):
            ro.put(ro)  # Java checks src == this before read-only
    if not kind.is_read_only:
        view.put(0, spec.samples[2])
        assert same(targets[0].get(0), spec.samples[2])


@every_kind
@every_view
def test_view_has_no_array(kind: BufferKind, spec: ViewSpec, mk: Made) -> None:
    view = spec.view(mk.fresh(kind, 16))
    assert view.has_array() is False
    for call in (view.array, view.array_offset):
        with pytest.raises(UOE) as info:
            call()
        assert type(info.value) is UOE


@every_kind
@every_view
def test_view_slice_and_duplicate(kind: BufferKind, spec: ViewSpec, mk: Made) -> None:
    s = list(spec.samples)
    buf, writer = mk.pair(kind, 4 * spec.size, spec.pack(kind.order, s))
    view = spec.view(buf)
    view.position(1).mark().position(2).limit(4)
    sl = view.slice()
    assert indexes(sl) == (0, 2, -1, 2)
    assert same_list(elements(sl), s[2:4])
    sl2 = view.slice(1, 2)
    assert same_list(elements(sl2), s[1:3])
    with pytest.raises(IOOB):
        view.slice(3, 2)  # past the limit
    d = view.duplicate()
    assert indexes(d) == (2, 4, 1, 4)
    d.reset()
    assert view.position() == 2
    for derived in (sl, sl2, d):
        assert derived.is_read_only() is kind.is_read_only
        assert derived.is_direct() is kind.is_direct
    if writer is not None:
        sample = spec.pack(kind.order, [s[0]])
        writer.put(2 * spec.size, sample)
        assert same(sl.get(0), s[0])
        assert same(sl2.get(1), s[0])
    if not kind.is_read_only:
        sl2.put(0, s[3])
        assert same(view.get(1), s[3])
        assert same(d.get(1), s[3])


@every_kind
def test_char_buffer_str(kind: BufferKind, mk: Made) -> None:
    text = "Hello, w\u00f6rld \u20ac\uffff"
    encoded = text.encode("utf-16-be" if kind.order is BE else "utf-16-le")
    buf = mk.fresh(kind, 2 * len(text), encoded)
    view = buf.as_char_buffer()
    assert str(view) == text
    view.position(2).limit(5)
    assert str(view) == text[2:5]
    assert indexes(view) == (2, 5, -1, len(text))
    assert len(view) == 3
    assert str(view.position(5)) == ""


def test_empty_heap_buffer_alignment_matches_java() -> None:
    """CPython 3.13 gives every empty bytearray one static, odd address; Java's empty
    array is aligned like any other.  Found by the JDK differential test on 3.13."""
    assert ByteBuffer.allocate(0).alignment_offset(0, 8) == 0
    assert ByteBuffer.allocate(0).alignment_offset(3, 8) == 3
