"""Which of zcio's Python functions a call ran: how the tests tell a compiled path
(``zcio._native``: none ran) from the Python method it replaced."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import zcio

_PACKAGE = os.path.dirname(zcio.__file__)


def python_ran(fn: Callable[[], Any]) -> tuple[list[str], Any, BaseException | None]:
    """The names of zcio's Python functions that ran in ``fn()`` (but the metrics':
    the first count of a path goes through ``record()``), with its result or the
    exception it raised."""
    ran: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        code = frame.f_code
        if (event == "call" and code.co_filename.startswith(_PACKAGE)
                and not code.co_filename.endswith("_metrics.py")):
            ran.append(code.co_name)

    result, error = None, None
    sys.setprofile(profile)
    try:
        result = fn()
    except Exception as e:
        error = e
    finally:
        sys.setprofile(None)
    return ran, result, error
