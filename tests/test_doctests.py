"""Every docstring example in the package runs, as written, and shows what it says.

One test per module (``zcio.__main__`` aside: importing it runs the command line), so
the conftest's leak check runs after each module's examples: an example that leaves a
descriptor or direct memory behind fails like any test.  A module that cannot be
imported fails here too, which is how a missing dependency of the test environment
shows.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import pytest

import zcio


def _unimportable(name: str) -> None:
    raise ImportError(f"cannot import {name} to collect its docstring examples")


# walk_packages would skip a subpackage that fails to import; onerror makes it fail.
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(zcio.__path__, prefix="zcio.", onerror=_unimportable)
    if not info.name.endswith(".__main__")
)


def _examples(module_name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [test for test in finder.find(module) if test.examples]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name: str) -> None:
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in _examples(module_name):
        runner.run(test, out=out.write)
    assert runner.failures == 0, out.getvalue()


def test_the_examples_are_found() -> None:
    """The finder sees the package's examples (the tests above are not vacuous)."""
    names = {test.name for name in MODULES for test in _examples(name)}
    for expected in ("zcio._byte_buffer.ByteBuffer", "zcio._composite.CompositeBuffer",
                     "zcio._pipe.Pipe", "zcio._socket_channel.SocketChannel",
                     "zcio._metrics.measure", "zcio.serve._file_server.FileServer",
                     "zcio._wire.Receiver"):
        assert expected in names
