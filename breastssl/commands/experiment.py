"""`breastssl experiment NAME`: the runs of one paper experiment, then one comparison report.

Sub-commands live in ``breastssl/experiments/<name>.py``, each with ``register(app)``; every module there is
registered, so adding an experiment needs no change here.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer


def register(app: typer.Typer) -> None:
    from .. import experiments

    sub = typer.Typer(name="experiment", help="Run a paper experiment and write its report.", no_args_is_help=True)
    for info in sorted(pkgutil.iter_modules(experiments.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{experiments.__name__}.{info.name}").register(sub)
    app.add_typer(sub, name="experiment")
