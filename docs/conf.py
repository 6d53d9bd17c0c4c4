"""Sphinx configuration: the API reference from zcio's docstrings (``make docs``).

The docstrings are reST (``literal`` markup, ``:class:`` roles), which autodoc renders
as written; the prose pages are Markdown through myst-parser, and the Java-to-Python
table and the deliberate differences are included from README.md, written once.

Every public name (``zcio.__all__``, ``zcio.aio.__all__``, ``zcio.serve.__all__``) must
be documented somewhere: a missing one is a warning, and ``make docs`` turns warnings
into errors.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # the working tree's zcio, as PYTHONPATH=src

import zcio  # noqa: E402

project = "zcio"
author = "the zcio developers"
copyright = "the zcio developers"
release = version = zcio.__version__

extensions = ["sphinx.ext.autodoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_inherit_docstrings = True
autoclass_content = "class"
# ``from __future__ import annotations`` keeps hints as text; show them unqualified.
python_use_unqualified_type_names = True
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"zcio {release}"
html_theme_options = {
    "description": "Zero-copy I/O for Python",
    "fixed_sidebar": True,
    "page_width": "1160px",  # room for the tables and the signatures
}

PUBLIC_MODULES = ("zcio", "zcio.aio", "zcio.serve")

logger = logging.getLogger(__name__)


def _public_names() -> dict[int, str]:
    """id(object) -> its public dotted name, for the classes of the public modules."""
    names: dict[int, str] = {}
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type):
                names.setdefault(id(obj), f"{modname}.{name}")
    return names


def _public_bases(app: Sphinx, name: str, obj: Any, options: Any, bases: list[Any]) -> None:
    """Show base classes by their public names (zcio.Buffer, not zcio._buffer.Buffer);
    a private base (zcio._typed._FloatingBuffer) by its nearest public ancestor."""
    public = _public_names()
    shown: list[Any] = []
    for base in bases:
        if isinstance(base, type) and base.__module__.startswith("zcio"):
            ancestor = next((c for c in base.__mro__ if id(c) in public), None)
            if ancestor is None:
                continue
            base = f":class:`~{public[id(ancestor)]}`"
        if base not in shown:
            shown.append(base)
    bases[:] = shown or [object]


def _check_all_documented(app: Sphinx, env: Any) -> None:
    """Warn for each public name that no page documents."""
    documented = set(env.get_domain("py").objects)
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            if f"{modname}.{name}" not in documented:
                logger.warning("%s.%s is public but not in the API reference", modname, name)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("env-check-consistency", _check_all_documented)
    return {"parallel_read_safe": True}
