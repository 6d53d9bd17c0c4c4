"""The one part of the build pyproject.toml cannot say: zcio's optional C extension.

``zcio._native`` (native/*.c) is the compiled accelerator: the SIGBUS guard for
zcio's accesses to mapped memory (guard.c) and the buffer core's fast paths (core.c).  It
is optional: where no C compiler (or no Python headers) exists, the build warns and
installs zcio without it, and zcio runs pure Python, unguarded (``zcio info`` says so;
``ZCIO_PURE_PYTHON=1`` forces that at run time).  Everything else about the package is
in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "zcio._native",
            sources=[f"native/{part}.c" for part in ("native", "guard", "core")],
            depends=["native/native.h"],
            extra_compile_args=["-O2"],
            optional=True,  # no compiler: warn, build the pure package
        )
    ]
)
