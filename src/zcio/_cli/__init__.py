"""The ``zcio`` command line: bench, cp, send, recv, info, serve.

Every command takes ``--json`` for scripts.  Bad input gets one clear line on stderr
and a non-zero exit status, never a traceback: usage errors exit 2 (click's rule),
failures (a missing file, a full disk, an unreachable port) exit 1, an interrupt 130.

The command line is an extra: ``pip install 'zcio[cli]'``, and ``'zcio[serve]'`` for
``zcio serve``.  This module imports neither click nor any command, so the ``zcio``
script of a lean install still runs and says in one line which extra to install::

    zcio serve needs the serve extra (httptools is not installed): pip install 'zcio[serve]'

and exits 1: the command line was right, the installation lacks a part, which is a
failure (1), not a usage error (2).  A command's module is imported only when that
command runs (``_app.LazyGroup``), so ``zcio --version`` imports no command, no rich
and no httptools.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

#: Module -> the commands it defines; a module is imported when one of them runs.
_COMMANDS = {"_bench": ["bench"], "_cp": ["cp"], "_info": ["info"],
             "_transfer_cmds": ["send", "recv"], "_serve": ["serve"]}

#: The extras of pyproject.toml's [project.optional-dependencies] that commands need,
#: each with the top-level modules it installs (tests/test_packaging.py checks the two
#: agree), and the extra of each command that needs more than ``cli``.
EXTRAS = {"cli": ("click", "rich"), "serve": ("click", "rich", "httptools")}
_EXTRA_OF_COMMAND = {"serve": "serve"}


def command_names() -> list[str]:
    """Every command's name, sorted."""
    return sorted(name for names in _COMMANDS.values() for name in names)


def command_of(args: list[str]) -> str | None:
    """The command an argument list runs (its first non-option), if it is one."""
    word = next((a for a in args if not a.startswith("-")), None)
    return word if word in command_names() else None


def missing_extra(error: ModuleNotFoundError, command: str | None) -> str | None:
    """The extra ``command`` needs if ``error`` is one of its modules missing, else None.

    Any other missing module is a bug in zcio, and its traceback is the report.
    """
    extra = _EXTRA_OF_COMMAND.get(command or "", "cli")
    return extra if (error.name or "").partition(".")[0] in EXTRAS[extra] else None


def extra_hint(command: str | None, extra: str, error: ModuleNotFoundError) -> str:
    """The one line that says which extra to install, e.g. ``zcio serve needs ...``."""
    who = f"zcio {command}" if command else "zcio"
    module = (error.name or "").partition(".")[0]
    return f"{who} needs the {extra} extra ({module} is not installed): pip install 'zcio[{extra}]'"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: every error is one line on stderr, never a traceback."""
    args = sys.argv[1:] if argv is None else argv
    command = command_of(args)
    try:
        from ._app import run  # click: the cli extra

        status = run(args, command)
    except ModuleNotFoundError as e:  # at import, or when a command first needs a module
        extra = missing_extra(e, command)
        if extra is None:
            raise
        print(extra_hint(command, extra, e), file=sys.stderr)
        status = 1
    sys.exit(status)
