"""`breastssl view`: a self-contained HTML study viewer of a predictions folder (``reports.viewer``)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import OverwriteOpt, console, err_console


def register(app: typer.Typer) -> None:
    @app.command()
    def view(
        predictions: Path = typer.Argument(..., help="output folder of `breastssl predict --run`"),
        out: Path = typer.Option(None, "--out", "-o", help="the HTML file (default: PREDICTIONS/viewer.html)"),
        max_size: int = typer.Option(512, "--max-size", help="longest image side in the page, in pixels"),
        budget_mb: float = typer.Option(30.0, "--budget-mb", help="page size budget: quality and size drop to fit"),
        overwrite: bool = OverwriteOpt,
    ) -> None:
        """Write one self-contained viewer.html (no server, no network): the study list, each exam's views side
        by side with heatmap, boxes and scores, and for DBT a slice slider with the per-slice score curve."""
        from ..reports.viewer import build_viewer

        res = build_viewer(predictions, out, max_size=max_size, budget_mb=budget_mb, overwrite=overwrite)
        if not res.within_budget:
            err_console.print(f"warning: {res.path} is {res.n_bytes / 2**20:.1f} MB, over the {budget_mb} MB budget "
                              "even at the smallest size")  # fmt: skip
        console.print(f"wrote {res.path}: {res.n_exams} exam(s), {res.n_views} view(s), {res.n_bytes / 2**20:.1f} MB "
                      f"(images ≤ {res.max_size} px, JPEG quality {res.quality})")  # fmt: skip
