"""The ``breastssl`` command line: a thin front over the library.

Each command lives in ``breastssl/commands/<name>.py``. User errors (:class:`UserError`) print one
clear message and exit with status 2, without a traceback; anything else is a bug and keeps it.
"""

from __future__ import annotations

import importlib
import sys

import typer

from . import __version__
from .commands import COMMANDS
from .errors import UserError

app = typer.Typer(
    name="breastssl",
    help="Annotation-efficient breast cancer CAD: semi-supervised training, evaluation and inference "
    "for mammography, DBT and ultrasound. Run `breastssl demo` to see it work end to end.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"breastssl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """breastssl: annotation-efficient breast cancer CAD."""


for _name in COMMANDS:
    importlib.import_module(f"breastssl.commands.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    try:
        app(args=argv, standalone_mode=False)
    except UserError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.secho("aborted", err=True)
        return 1
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        return 130
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
