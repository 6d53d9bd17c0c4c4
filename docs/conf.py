"""Sphinx configuration: the API reference from zcio's docstrings (``make docs``).

The docstrings are reST (``literal`` markup, ``:class:`` roles), which autodoc renders
as written; the prose pages are Markdown through myst-parser, and the Java-to-Python
table and the deliberate differences are included from README.md, written once.

Every public name (``zcio.__all__``, ``zcio.aio.__all__``, ``zcio.serve.__all__``) must
be documented somewhere: a missing one is a warning, and ``make docs`` turns warnings
into errors.
"""

from __future__ import annotations

import functools
import importlib
import inspect
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


@functools.cache
def _public_names() -> dict[int, str]:
    """id(object) -> its public dotted name, for the classes and functions of the
    public modules."""
    names: dict[int, str] = {}
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) or inspect.isfunction(obj):
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


def _lookup(dotted: str, context: str | None) -> Any:
    """The object ``dotted`` names, absolute or relative to the module ``context``."""
    parts = dotted.split(".")
    starts = [(context, parts)] if context else []
    for i in range(len(parts) - 1, 0, -1):
        starts.append((".".join(parts[:i]), parts[i:]))
    for modname, rest in starts:
        try:
            obj: Any = importlib.import_module(modname)
            for part in rest:
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            continue
        return obj
    return None


def _link_to_public(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a role in a private module's docstring (``:class:`SourceChannel``` in
    zcio._pipe's) to the public name the same object is documented under
    (zcio.SourceChannel); a member (``Channel.close``) likewise."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    head, dot, member = target.rpartition(".")
    public = _public_names()
    for name, suffix in [(target, ""), *([(head, dot + member)] if head else [])]:
        obj = _lookup(name, node.get("py:module"))
        if obj is not None and id(obj) in public:
            resolved = public[id(obj)] + suffix
            domain = env.get_domain("py")
            if resolved in domain.objects:
                return domain.resolve_xref(
                    env, node["refdoc"], app.builder, "obj", resolved, node, contnode)
    return None


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
    app.connect("missing-reference", _link_to_public)
    return {"parallel_read_safe": True}
