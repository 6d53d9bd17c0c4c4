"""The one part of the build pyproject.toml cannot say: zcio's optional C extension.

``zcio._native`` (native/*.c) is the compiled accelerator: the SIGBUS guard for
zcio's accesses to mapped memory (guard.c), the buffer core's fast paths (core.c) and
the other parts native/native.h lists, one per file.  It is optional: where no C
compiler (or no Python headers) exists, the build warns and installs zcio without it,
and zcio runs pure Python, unguarded (``zcio info`` says so; ``ZCIO_PURE_PYTHON=1``
forces that at run time).  Everything else about the package is
in pyproject.toml.
"""

from glob import glob

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "zcio._native",
            sources=sorted(glob("native/*.c")),  # one part per file, see native/native.h
            depends=["native/native.h"],
            extra_compile_args=["-O2"],
            optional=True,  # no compiler: warn, build the pure package
        )
    ]
)
