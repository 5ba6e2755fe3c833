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
    """Entry point of the console script; returns the exit status.

    Click runs in standalone mode (usage errors print their message and exit 2); a
    :class:`UserError` from a command prints one line and exits 2; anything else is a bug.
    """
    try:
        app(args=argv, prog_name="breastssl")
    except UserError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        return 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
