"""The public surface: every name in __all__ resolves, nothing private leaks, one error tree."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import zcio


def test_every_public_name_resolves() -> None:
    for name in zcio.__all__:
        assert getattr(zcio, name) is not None, name
    assert sorted(zcio.__all__) == sorted(set(zcio.__all__))


def test_nothing_private_is_exported() -> None:
    public = {n for n in dir(zcio) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(zcio, n))}
    assert public - modules == set(zcio.__all__)
    assert all(not n.startswith("_") for n in zcio.__all__)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (zcio.BufferOverflowError, IndexError),
        (zcio.BufferUnderflowError, IndexError),
        (zcio.IndexOutOfBoundsError, IndexError),
        (zcio.IllegalArgumentError, ValueError),
        (zcio.IllegalStateError, ValueError),
        (zcio.InvalidMarkError, ValueError),
        (zcio.ReleasedBufferError, ValueError),
        (zcio.UnsupportedOperationError, TypeError),
        (zcio.ReadOnlyBufferError, TypeError),
        (zcio.OutOfDirectMemoryError, MemoryError),
    ],
)
def test_error_tree(error: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(error, zcio.ZcioError)
    assert issubclass(error, builtin)


def test_read_only_is_an_unsupported_operation_as_in_java() -> None:
    assert issubclass(zcio.ReadOnlyBufferError, zcio.UnsupportedOperationError)


def test_package_is_typed() -> None:
    import importlib.resources

    assert importlib.resources.files("zcio").joinpath("py.typed").is_file()


BUFFER_CLASSES = sorted((c for c in (getattr(zcio, n) for n in zcio.__all__)
                         if inspect.isclass(c) and issubclass(c, zcio.ByteBuffer)),
                        key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", BUFFER_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("factory", ["allocate", "allocate_direct", "wrap"])
def test_the_factories_make_the_class_they_name_or_refuse(cls: type, factory: str) -> None:
    """``allocate``/``allocate_direct``/``wrap`` called on a buffer class either make an
    instance of that class with the memory they promise, or (a kind whose memory they
    do not make: a mapping, a shared block, a composite) refuse with
    UnsupportedOperationError naming what makes one; never a mapped or shared buffer
    over a bytearray, whose own methods would then fail."""
    arg = bytearray(8) if factory == "wrap" else 8
    try:
        buf = getattr(cls, factory)(arg)
    except zcio.UnsupportedOperationError as e:
        assert cls is not zcio.ByteBuffer and "(" in str(e)
        return
    try:
        assert type(buf) is cls is zcio.ByteBuffer
        assert buf.is_direct() == (factory == "allocate_direct") and buf.capacity() == 8
    finally:
        buf.release()


def test_every_buffer_kind_names_itself_in_its_repr(tmp_path: Any) -> None:
    with zcio.FileChannel.open(tmp_path / "f", zcio.OpenOption.CREATE, zcio.OpenOption.READ,
                               zcio.OpenOption.WRITE) as ch:
        ch.write(zcio.ByteBuffer.wrap(bytes(8)))
        mapped = ch.map(zcio.MapMode.READ_ONLY, 0, 8)
    shared = zcio.ByteBuffer.allocate_shared(8)
    heap, direct = zcio.ByteBuffer.allocate(8), zcio.ByteBuffer.allocate_direct(8)
    try:
        assert [repr(b).split("[")[0] for b in (heap, direct, mapped, shared,
                                                 shared.as_read_only_buffer())] == [
            "zcio.HeapByteBuffer", "zcio.DirectByteBuffer", "zcio.MappedByteBufferR",
            "zcio.SharedByteBuffer", "zcio.SharedByteBufferR"]
    finally:
        for b in (heap, direct, mapped, shared):
            b.release()
