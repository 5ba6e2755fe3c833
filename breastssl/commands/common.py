"""Options and helpers shared by CLI commands."""

from __future__ import annotations

import typer

from ..console import console, err_console, progress_bar  # noqa: F401  (the commands' console lives below them)

SetOpt = typer.Option([], "--set", "-s", help="config override key.path=value (repeatable)")
OverwriteOpt = typer.Option(False, "--overwrite", help="replace an existing output")
