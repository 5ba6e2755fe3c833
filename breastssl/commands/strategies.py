"""`breastssl strategies`: every registered training strategy, its method family, batch kind and config section."""

from __future__ import annotations

import typer

from .common import console


def register(app: typer.Typer) -> None:
    @app.command()
    def strategies() -> None:
        """List the strategies `breastssl train` can run (strategy.name in a recipe) and each one's demo recipe."""
        from rich.table import Table

        from ..strategies import list_strategies
        from ..strategies.registry import strategy_entry

        demo = {"dbt": "dbt_selectivekd_demo.yaml", "mammo": "mammo_self_training_run_demo.yaml",
                "us": "us_mean_teacher_run_demo.yaml", "comoto": "comoto_run_student_demo.yaml"}  # fmt: skip
        table = Table(title="registered strategies")
        for col in ("strategy", "family", "batch", "config section", "demo recipe (configs/)"):
            table.add_column(col)
        for name in list_strategies():
            e = strategy_entry(name)
            recipe = "comoto_run_teacher_demo.yaml" if name == "comoto_teacher" else demo.get(e.family, "")
            table.add_row(name, e.family, e.batch, e.config.__name__, recipe)
        console.print(table)
