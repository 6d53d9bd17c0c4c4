"""Which implementation runs: the compiled accelerator ``zcio._native``, or pure Python.

``zcio._native`` is built from ``native/*.c`` at install time where a C compiler
exists.  It holds the SIGBUS guard for mapped memory (used by ``zcio._guard``) and the
buffer core's fast paths (``BufferState`` and ``accelerate``, used by ``zcio._state`` and
``zcio._indirect``).  The pure-Python modules are the reference implementation and the
fallback: with no compiled module, or with ``ZCIO_PURE_PYTHON=1`` in the environment at
import, ``native`` is None and :func:`unavailability_cause` says why (``zcio info``
shows it).  The choice is made once, here, for the whole process.
"""

from __future__ import annotations

import importlib
import inspect
import os
from types import ModuleType
from typing import Any

__all__ = ["native", "implementation", "unavailability_cause", "text_signature"]


def _load() -> tuple[ModuleType | None, str | None]:
    if os.environ.get("ZCIO_PURE_PYTHON") == "1":
        return None, "ZCIO_PURE_PYTHON=1 forces the pure-Python path"
    try:
        return importlib.import_module("zcio._native"), None
    except ImportError as e:
        return None, f"{e} (not built: no C compiler at install time?)"


native, _CAUSE = _load()


def implementation() -> str:
    """``"native"`` (the compiled accelerator is loaded) or ``"pure-python"``."""
    return "pure-python" if native is None else "native"


def unavailability_cause() -> str | None:
    """Why the compiled accelerator is not in use (None when it is)."""
    return _CAUSE


def text_signature(fn: Any) -> str:
    """``name($self, a, b=None, /)``: the signature line a compiled method's docstring
    starts with, so ``help()``, ``inspect`` and the API reference show the signature of
    the Python method it replaced."""
    sig = inspect.signature(fn)
    plain = sig.replace(
        parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
        return_annotation=sig.empty)
    return f"{fn.__name__}{plain}".replace("(self", "($self", 1)
