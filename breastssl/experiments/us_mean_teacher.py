"""`breastssl experiment us-mean-teacher`: the ultrasound two-stage method (seed 004, DESIGN §5.3).

This module only registers the command; the implementation (``_us_mean_teacher_impl``) imports torch and
torchvision, so it is loaded when the command runs, keeping every other CLI call fast.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("us-mean-teacher")
    def us_mean_teacher(
        config: Path = typer.Option(
            None, "--config", "-c", help="experiment YAML (e.g. configs/us_mean_teacher_demo.yaml)"
        ),
        set_: list[str] = typer.Option([], "--set", "-s", help="override key=value (repeatable)"),
    ) -> None:
        """Ultrasound two-stage method (seed 004): detector IoU, then semi-supervised vs supervised tables."""
        from ..config import load_config
        from ._us_mean_teacher_impl import USExperimentConfig, run

        cfg = load_config(USExperimentConfig, config, set_)
        run(cfg)
        typer.echo(f"report: {Path(cfg.out_dir) / 'report.html'}")
