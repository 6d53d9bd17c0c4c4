"""Type aliases used in annotations only (never imported at run time)."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:  # pragma: no cover - 3.11
    from typing_extensions import Buffer

__all__ = ["Buffer"]
