"""The click application behind ``zcio``: one group whose commands load when they run.

Imported by ``zcio._cli.main`` only, once click (the cli extra) is known to be needed.
"""

from __future__ import annotations

import importlib

import click

from .._errors import ZcioError
from .._version import __version__
from . import _COMMANDS, command_names, missing_extra
from ._common import fail_line

__all__ = ["LazyGroup", "cli", "run"]


class LazyGroup(click.Group):
    """A group that imports a command's module when the command is resolved.

    Click's "lazy loading subcommands" pattern: ``zcio --version`` or ``zcio cp`` pay
    for no other command's imports (``zcio serve`` brings httptools and the server).
    ``zcio --help`` imports every command for its one-line help; a command whose extra
    is missing is listed with the line that installs it, and running it raises the
    ``ModuleNotFoundError`` that ``main`` turns into that line.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return command_names()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = next((m for m, names in _COMMANDS.items() if cmd_name in names), None)
        if module is None:
            return None
        try:
            command: click.Command = getattr(
                importlib.import_module(f"{__package__}.{module}"), cmd_name)
        except ModuleNotFoundError as e:
            extra = missing_extra(e, cmd_name)
            if extra is None:
                raise
            return _unavailable(cmd_name, extra, e)
        return command


def _unavailable(name: str, extra: str, error: ModuleNotFoundError) -> click.Command:
    """A stand-in for a command whose extra is missing: listed, and failing when run."""

    def fail() -> None:
        raise error

    return click.Command(
        name, callback=fail, short_help=f"needs the {extra} extra: pip install 'zcio[{extra}]'",
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zcio")
def cli() -> None:
    """zcio: zero-copy I/O for Python, measured."""


def run(args: list[str], command: str | None) -> int:
    """Run the command line; return the exit status.  Errors become one line on stderr."""
    prefix = f"zcio {command}" if command else "zcio"
    try:
        status = cli.main(args=args, prog_name="zcio", standalone_mode=False)
    except click.UsageError as e:  # click would print usage and a hint: one line instead
        click.echo(f"{prefix}: {e.format_message()}", err=True)
        return 2
    except click.ClickException as e:
        click.echo(f"{prefix}: {e.format_message()}", err=True)
        return e.exit_code
    except (OSError, ZcioError, MemoryError) as e:
        fail_line(e, prefix)
        return 1
    except (KeyboardInterrupt, click.Abort):
        click.echo(f"{prefix}: interrupted", err=True)
        return 130
    return status if isinstance(status, int) else 0
