"""The ``zcio`` command line: bench, cp, send, recv, info, serve.

Every command takes ``--json`` for scripts.  Bad input gets one clear line on stderr
and a non-zero exit status, never a traceback: usage errors exit 2 (click's rule),
failures (a missing file, a full disk, an unreachable port) exit 1, an interrupt 130.
"""

from __future__ import annotations

import sys

import click

from .. import __version__
from .._errors import ZcioError
from ._common import fail_line


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zcio")
def cli() -> None:
    """zcio: zero-copy I/O for Python, measured."""


_COMMANDS = {"_bench": ["bench"], "_cp": ["cp"], "_info": ["info"],
             "_transfer_cmds": ["send", "recv"], "_serve": ["serve"]}


def _register() -> None:
    import importlib

    for module, names in _COMMANDS.items():
        mod = importlib.import_module(f"{__name__}.{module}")
        for name in names:
            cli.add_command(getattr(mod, name))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: every error is one line on stderr, never a traceback."""
    _register()
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if not a.startswith("-")), None)
    prefix = f"zcio {command}" if command in cli.commands else "zcio"
    try:
        status = cli.main(args=args, prog_name="zcio", standalone_mode=False)
    except click.UsageError as e:  # click would print usage and a hint: one line instead
        click.echo(f"{prefix}: {e.format_message()}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"{prefix}: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except (OSError, ZcioError, MemoryError) as e:
        fail_line(e, prefix)
        sys.exit(1)
    except (KeyboardInterrupt, click.Abort):
        click.echo(f"{prefix}: interrupted", err=True)
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)
