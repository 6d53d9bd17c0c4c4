"""The one part of the build pyproject.toml cannot say: zcio's optional C extension.

``zcio._cguard`` (src/zcio/_cguard.c) guards zcio's accesses to mapped memory against
SIGBUS.  It is optional: where no C compiler (or no Python headers) exists, the build
warns and installs zcio without it, and zcio runs pure Python, unguarded
(``zcio info`` says so).  Everything else about the package is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "zcio._cguard",
            sources=["src/zcio/_cguard.c"],
            optional=True,  # no compiler: warn, build the pure package
        )
    ]
)
