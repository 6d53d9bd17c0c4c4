"""Pickling and copy.copy/deepcopy of every buffer kind: one clear TypeError.

A buffer is indexes over memory that may be direct, mapped, pooled or shared with
other buffers, under one reference count: neither a pickle nor a copy can say which of
those to keep, so ``Buffer.__reduce_ex__`` refuses both and names the explicit ways
(``bytes(buf)``, ``buf.memoryview()``, ``buf.duplicate()``; ``get(list)`` for typed
views).  The buffer is left as it was: indexes, content, reference count.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from buffer_kinds import ALL_KINDS, BufferKind, pattern
from zcio import Buffer, ByteBuffer, FileChannel, MapMode, OpenOption

WAYS: list[Callable[[Any], object]] = [
    pickle.dumps,
    lambda b: pickle.dumps(b, protocol=0),
    lambda b: pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL),
    copy.copy,
    copy.deepcopy,
]
WAY_IDS = ["pickle", "pickle-0", "pickle-highest", "copy", "deepcopy"]
TYPED_VIEWS = ["as_char_buffer", "as_short_buffer", "as_int_buffer", "as_long_buffer",
               "as_float_buffer", "as_double_buffer"]


def assert_refused(buf: Buffer, way: Callable[[Any], object], *names: str) -> None:
    state = (buf.position(), buf.limit(), buf.capacity(), buf.ref_cnt())
    with pytest.raises(TypeError) as e:
        way(buf)
    text = str(e.value)
    assert text.startswith(f"{type(buf).__name__} objects cannot be pickled or copied")
    assert "_struct" not in text and "memoryview object" not in text
    for name in names:
        assert name in text
    assert (buf.position(), buf.limit(), buf.capacity(), buf.ref_cnt()) == state


@pytest.fixture
def made() -> Iterator[list[ByteBuffer]]:
    bufs: list[ByteBuffer] = []
    yield bufs
    for b in bufs:
        if b.ref_cnt() > 0:
            b.release()


@pytest.mark.parametrize("way", WAYS, ids=WAY_IDS)
@pytest.mark.parametrize("kind", ALL_KINDS, ids=str)
def test_every_byte_buffer_kind(kind: BufferKind, way: Callable[[Any], object],
                                made: list[ByteBuffer]) -> None:
    buf, writer = kind.fresh_with_writer(16, pattern(16))
    made.append(buf)
    buf.position(3)
    assert_refused(buf, way, "bytes(buf)", "buf.memoryview()", "buf.duplicate()")
    assert bytes(buf) == pattern(16)[3:]  # the content is untouched
    if writer is not None and writer is not buf:
        made.append(writer)


@pytest.mark.parametrize("way", WAYS, ids=WAY_IDS)
@pytest.mark.parametrize("view", TYPED_VIEWS)
@pytest.mark.parametrize("direct", [False, True], ids=["heap", "direct"])
def test_every_typed_view(view: str, direct: bool, way: Callable[[Any], object]) -> None:
    with (ByteBuffer.allocate_direct(64) if direct else ByteBuffer.allocate(64)) as bb:
        assert_refused(getattr(bb, view)(), way, "buf.get(dst)", "buf.duplicate()")


@pytest.mark.parametrize("way", WAYS, ids=WAY_IDS)
def test_mapped(tmp_path: Path, way: Callable[[Any], object]) -> None:
    (tmp_path / "f").write_bytes(pattern(4096))
    with FileChannel.open(tmp_path / "f", OpenOption.READ, OpenOption.WRITE) as fc, \
            fc.map(MapMode.READ_WRITE, 0, 4096) as mapped:
        assert_refused(mapped, way, "buf.memoryview()")
        assert_refused(mapped.as_long_buffer(), way, "buf.get(dst)")
        assert bytes(mapped) == pattern(4096)


def test_the_suggested_ways_work() -> None:
    with ByteBuffer.wrap(bytearray(b"abcdef")) as buf:
        assert pickle.loads(pickle.dumps(bytes(buf))) == b"abcdef"
        with buf.memoryview() as view:
            assert view.tobytes() == b"abcdef"
        assert bytes(buf.duplicate()) == b"abcdef"
        ints = buf.as_short_buffer()
        dst = [0] * ints.remaining()
        ints.get(dst)
        assert dst == [0x6162, 0x6364, 0x6566]
