"""Issue 13's tool choice, measured: the same hot path built four ways.

``accel/model.py`` is the shape of zcio's hot path cut to what the tools compile (a
buffer's index state with relative and absolute ``get_int``/``put_int``, and a pool of
64 KiB slots under a reference count).  This script builds it

- as plain Python (the reference),
- with **mypyc** (the same file, compiled),
- with **Cython** in pure-Python mode (the same file, with ``accel/model.pxd`` declaring
  the C types of its attributes),
- by hand as a **C extension** (``accel/cbuf.c``, the same API),

into a temporary directory, and times each against the anchors issue 13 names: a bare
``struct.unpack_from``/``pack_into`` on the same memory and ``bytearray(65536)``.  A tool
that is not installed is reported and skipped (``pip install cython mypy``).

    python benchmarks/accel_prototypes.py [--quick] [--json PATH]
"""

from __future__ import annotations

import importlib
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import _harness
from _harness import Case, Compare, Group

HERE = Path(__file__).resolve().parent / "accel"
N = 1000  # operations per timed loop
SLOT = 65536

_SETUP = {
    "c": """
        from setuptools import Extension, setup
        setup(name="cbuf", ext_modules=[Extension("cbuf", ["cbuf.c"],
              extra_compile_args=["-O2"])])
    """,
    "cython": """
        from Cython.Build import cythonize
        from setuptools import setup
        setup(name="model_cy", ext_modules=cythonize(["model_cy.py"], language_level=3,
              compiler_directives={"boundscheck": False, "wraparound": False,
              "annotation_typing": False}, quiet=True))
    """,
    "mypyc": """
        from mypyc.build import mypycify
        from setuptools import setup
        setup(name="model_mypyc",
              ext_modules=mypycify(["--ignore-missing-imports", "model_mypyc.py"]))
    """,
}
_SOURCES = {"c": {"cbuf.c": "cbuf.c"},
            "cython": {"model.py": "model_cy.py", "model.pxd": "model_cy.pxd"},
            "mypyc": {"model.py": "model_mypyc.py"}}
_MODULE = {"c": "cbuf", "cython": "model_cy", "mypyc": "model_mypyc"}


def build(tool: str, where: Path) -> ModuleType | str:
    """Build one variant in ``where``; the module, or why it could not be built."""
    d = where / tool
    d.mkdir()
    for src, dst in _SOURCES[tool].items():
        shutil.copy(HERE / src, d / dst)
    (d / "setup.py").write_text(textwrap.dedent(_SETUP[tool]))
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=d,
                       capture_output=True, text=True)
    if r.returncode:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:]
        return f"build failed: {tail[0] if tail else r.returncode}"
    sys.path.insert(0, str(d))
    try:
        return importlib.import_module(_MODULE[tool])
    finally:
        sys.path.remove(str(d))


def _get_rel(buf: Any) -> Callable[[], None]:
    def run() -> None:
        get = buf.get_int
        for _ in range(N):
            get()
    return run


def _get_abs(buf: Any) -> Callable[[], None]:
    def run() -> None:
        get = buf.get_int
        for i in range(0, 4 * N, 4):
            get(i)
    return run


def _put_rel(buf: Any) -> Callable[[], None]:
    def run() -> None:
        put = buf.put_int
        for i in range(N):
            put(i)
    return run


def _put_abs(buf: Any) -> Callable[[], None]:
    def run() -> None:
        put = buf.put_int
        for i in range(0, 4 * N, 4):
            put(i, i)
    return run


def _alloc(pool: Any) -> Callable[[], None]:
    def run() -> None:
        allocate = pool.allocate
        for _ in range(N):
            allocate().release()
    return run


def groups(variants: dict[str, Any]) -> list[Callable[[], Group]]:
    mem = bytearray(4 * N)
    mv = memoryview(mem)
    i32 = struct.Struct(">i")
    unpack, pack = i32.unpack_from, i32.pack_into

    def anchor_get() -> None:
        for i in range(0, 4 * N, 4):
            unpack(mv, i)

    def anchor_put() -> None:
        for i in range(0, 4 * N, 4):
            pack(mv, i, i)

    def anchor_alloc() -> None:
        for _ in range(N):
            bytearray(SLOT)

    def typed(title: str, make: Callable[[Any], Callable[[], None]], anchor: str,
              anchor_run: Callable[[], None]) -> Callable[[], Group]:
        def builder() -> Group:
            cases = [Case(anchor, N, anchor_run)]
            compares = []
            for name, mod in variants.items():
                buf = mod.Pool(4 * N, 1).allocate() if name == "c" else mod.Buf(
                    memoryview(bytearray(4 * N)))
                cases.append(Case(name, N, make(buf), prepare=buf.clear))
                compares.append(Compare(name, anchor, "time", 1.0))
            return Group(title, cases, compares)
        return builder

    def alloc() -> Group:
        cases = [Case("bytearray(65536)", N, anchor_alloc)]
        compares = []
        for name, mod in variants.items():
            cases.append(Case(name, N, _alloc(mod.Pool(SLOT, 4))))
            compares.append(Compare(name, "bytearray(65536)", "time", 1.0))
        return Group("pool allocate(64 KiB) + release", cases, compares)

    return [
        typed("relative get_int()", _get_rel, "struct.unpack_from", anchor_get),
        typed("absolute get_int(i)", _get_abs, "struct.unpack_from", anchor_get),
        typed("relative put_int(v)", _put_rel, "struct.pack_into", anchor_put),
        typed("absolute put_int(i, v)", _put_abs, "struct.pack_into", anchor_put),
        alloc,
    ]


def check(mod: Any, reference: Any) -> None:
    """Every variant computes what the reference does (both orders of calls)."""
    for m in (mod, reference):
        b = m.Pool(16, 1).allocate()
        b.put_int(-2).put_int(0x7FFFFFFF).put_int(8, -(2**31))
        assert (b.get_int(0), b.get_int(4), b.get_int(8)) == (-2, 0x7FFFFFFF, -(2**31))
        b.clear()
        assert [b.get_int() for _ in range(4)][:3] == [-2, 0x7FFFFFFF, -(2**31)]
        assert b.position() == 16
        assert b.release() is True


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    import model
    variants: dict[str, Any] = {"python": model}
    skipped = {}
    with tempfile.TemporaryDirectory(prefix="zcio-accel-") as tmp:
        for tool in ("mypyc", "cython", "c"):
            got = build(tool, Path(tmp))
            if isinstance(got, str):
                skipped[tool] = got
            else:
                check(got, model)
                variants[tool] = got
        for tool, why in skipped.items():
            print(f"{tool}: skipped ({why})")
        return _harness.main(
            argv, benchmark="accel_prototypes",
            description="The hot path built as Python, mypyc, Cython and C, against struct "
            "and bytearray (interleaved rounds, medians, same-run ratios).",
            builders=groups(variants),
            settings={"per_loop": N, "variants": list(variants), "skipped": skipped,
                      "cc": sysconfig.get_config_var("CC"), "pid": os.getpid()},
        )


if __name__ == "__main__":
    sys.exit(main())
