"""The ByteBuffer contract (Java 17) over every buffer kind: index rules and single bytes.

Sections 1, 2 of the contract; what the files share is in
``contract_helpers`` and ``conftest`` (see ``contract_helpers`` for how kinds are
registered).
"""

from __future__ import annotations

import pytest

from buffer_kinds import (
    BufferKind,
    pattern,
)
from contract_helpers import (
    IAE,
    IOOB,
    OVER,
    UNDER,
    Made,
    content,
    every_kind,
    indexes,
    signed,
    writable_kinds,
)
from zcio import (
    InvalidMarkError,
)

# == 1. index rules ======================================================================


@every_kind
def test_natural_state_after_creation(kind: BufferKind, mk: Made) -> None:
    buf = mk.make(kind, 10, pattern(10))
    assert (buf.position(), buf.limit()) == kind.natural_bounds(10)
    assert buf.capacity() == 10
    assert buf.mark_value() == -1
    assert buf.order() is kind.order
    assert buf.is_read_only() is kind.is_read_only
    assert buf.is_direct() is kind.is_direct
    assert content(buf) == pattern(10)


@every_kind
def test_fresh_indexes(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8)
    assert indexes(buf) == (0, 8, -1, 8)
    assert buf.remaining() == 8
    assert len(buf) == 8
    assert buf.has_remaining() is True
    empty = mk.fresh(kind, 0)
    assert indexes(empty) == (0, 0, -1, 0)
    assert empty.has_remaining() is False
    assert len(empty) == 0


@every_kind
def test_position_setter(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8)
    assert buf.position(3) is buf
    assert buf.position() == 3
    assert (buf.remaining(), len(buf), buf.has_remaining()) == (5, 5, True)
    buf.position(8)
    assert (buf.remaining(), len(buf), buf.has_remaining()) == (0, 0, False)
    for bad in (9, -1, 1 << 40):
        with pytest.raises(IAE):
            buf.position(bad)
        assert indexes(buf) == (8, 8, -1, 8)
    buf.limit(4)
    with pytest.raises(IAE):
        buf.position(5)  # checked against the limit, not the capacity
    assert indexes(buf) == (4, 4, -1, 8)


@every_kind
def test_position_setter_discards_only_a_greater_mark(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8)
    buf.position(5).mark()
    buf.position(5)
    assert buf.mark_value() == 5
    buf.position(7)
    assert buf.mark_value() == 5
    buf.position(4)
    assert buf.mark_value() == -1
    with pytest.raises(InvalidMarkError):
        buf.reset()


@every_kind
def test_limit_setter(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8)
    buf.position(6).mark()
    assert buf.limit(7) is buf
    assert indexes(buf) == (6, 7, 6, 8)
    buf.limit(6)  # mark == new limit: kept
    assert indexes(buf) == (6, 6, 6, 8)
    buf.limit(4)  # position clamped, mark discarded
    assert indexes(buf) == (4, 4, -1, 8)
    buf.limit(8)
    assert indexes(buf) == (4, 8, -1, 8)
    for bad in (9, -1):
        with pytest.raises(IAE):
            buf.limit(bad)
        assert indexes(buf) == (4, 8, -1, 8)
    buf.limit(0)
    assert indexes(buf) == (0, 0, -1, 8)


@every_kind
def test_index_setters_reject_non_integers(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8)
    for bad in (1.0, "1", True):
        with pytest.raises(TypeError):
            buf.position(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            buf.limit(bad)  # type: ignore[arg-type]
    assert indexes(buf) == (0, 8, -1, 8)


@every_kind
def test_mark_and_reset(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8)
    with pytest.raises(InvalidMarkError):
        buf.reset()
    assert indexes(buf) == (0, 8, -1, 8)
    assert buf.position(2).mark() is buf
    assert buf.mark_value() == 2
    buf.position(6)
    assert buf.reset() is buf
    assert indexes(buf) == (2, 8, 2, 8)
    buf.position(7).reset()  # the mark survives a reset
    assert indexes(buf) == (2, 8, 2, 8)
    buf.position(4).mark()  # mark() moves the mark
    buf.position(5).reset()
    assert buf.position() == 4


@every_kind
def test_clear_flip_rewind(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8, pattern(8))
    buf.position(5).mark()
    buf.limit(6)
    assert buf.clear() is buf
    assert indexes(buf) == (0, 8, -1, 8)
    buf.position(5).mark()
    assert buf.flip() is buf
    assert indexes(buf) == (0, 5, -1, 8)
    buf.position(3).mark()
    assert buf.rewind() is buf
    assert indexes(buf) == (0, 5, -1, 8)
    assert content(buf) == pattern(8)  # none of them touches the content


# == 2. single bytes ======================================================================


@every_kind
def test_relative_get_is_signed(kind: BufferKind, mk: Made) -> None:
    data = bytes([0, 1, 127, 128, 255, 200, 5, 64])
    buf = mk.fresh(kind, 8, data)
    assert [buf.get() for _ in range(8)] == [signed(b) for b in data]
    assert buf.position() == 8
    with pytest.raises(UNDER):
        buf.get()
    assert indexes(buf) == (8, 8, -1, 8)


@every_kind
def test_absolute_get(kind: BufferKind, mk: Made) -> None:
    data = bytes([0x80, 0xFF, 0x7F, 0, 1, 0xFE, 0x81, 0x10])
    buf = mk.fresh(kind, 8, data)
    buf.position(3)
    assert [buf.get(i) for i in range(8)] == [signed(b) for b in data]
    assert buf.position() == 3
    for bad in (8, -1, 100):
        with pytest.raises(IOOB):
            buf.get(bad)
    buf.limit(4)
    assert buf.get(3) == 0
    with pytest.raises(IOOB):
        buf.get(4)  # checked against the limit, not the capacity
    assert indexes(buf) == (3, 4, -1, 8)


@every_kind
def test_get_unsigned_byte(kind: BufferKind, mk: Made) -> None:
    data = bytes([0x80, 0xFF, 0x7F, 0])
    buf = mk.fresh(kind, 4, data)
    assert [buf.get_unsigned_byte(i) for i in range(4)] == list(data)
    assert buf.position() == 0
    assert [buf.get_unsigned_byte() for _ in range(4)] == list(data)
    assert buf.position() == 4
    with pytest.raises(UNDER):
        buf.get_unsigned_byte()
    with pytest.raises(IOOB):
        buf.get_unsigned_byte(4)
    assert buf.position() == 4


@writable_kinds
def test_relative_put(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8)
    assert buf.put(-128) is buf
    buf.put(-1).put(0).put(127).put(128).put(255)
    assert buf.position() == 6
    assert content(buf) == bytes([128, 255, 0, 127, 128, 255, 0, 0])
    for bad in (256, -129, 1000):
        with pytest.raises(IAE):
            buf.put(bad)
    assert buf.position() == 6
    buf.put(1).put(2)
    with pytest.raises(OVER):
        buf.put(3)
    assert indexes(buf) == (8, 8, -1, 8)
    assert content(buf) == bytes([128, 255, 0, 127, 128, 255, 1, 2])


@writable_kinds
def test_absolute_put(kind: BufferKind, mk: Made) -> None:
    buf = mk.fresh(kind, 8)
    buf.position(2)
    assert buf.put(0, -1) is buf
    buf.put(7, 200).put(3, 127)
    assert buf.position() == 2
    assert content(buf) == bytes([255, 0, 0, 127, 0, 0, 0, 200])
    for bad_index in (8, -1):
        with pytest.raises(IOOB):
            buf.put(bad_index, 1)
    for bad_value in (256, -129):
        with pytest.raises(IAE):
            buf.put(0, bad_value)
    buf.limit(4)
    with pytest.raises(IOOB):
        buf.put(4, 1)  # checked against the limit
    assert indexes(buf) == (2, 4, -1, 8)
    assert content(buf) == bytes([255, 0, 0, 127, 0, 0, 0, 200])
