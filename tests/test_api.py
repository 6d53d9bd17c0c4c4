"""The public surface: every name in __all__ resolves, nothing private leaks, one error tree."""

from __future__ import annotations

import inspect

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
