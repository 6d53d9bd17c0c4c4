"""zcio's version: the one place it is written.

The package metadata reads it at build time (pyproject.toml, ``[tool.setuptools.dynamic]``)
and ``zcio.__version__`` re-exports it, so the two cannot disagree.
"""

__version__ = "0.1.0"
