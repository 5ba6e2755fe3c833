"""`breastssl train -c RECIPE [--set a.b=v ...] [--dry-run]`: train any registered strategy on your data.

A thin wrapper over :func:`breastssl.run.train.run_train`: the recipe's ``strategy.name`` picks the method family
(DBT slices, mammography self-training, ultrasound mean teacher, CoMoTo detection), whose typed run config checks
every key. ``--dry-run`` builds the data, model, strategy and sampler, draws one batch, computes one loss and
prints what would be trained, writing nothing: what to run before submitting a cluster job. Resumes from the
newest checkpoint in ``train.out_dir``; launch with ``torchrun`` for several processes or GPUs.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import SetOpt, console


def _print_summary(summary: dict, out_dir: str) -> None:
    console.print(f"[bold]{summary['strategy']}[/] ({summary['family']}) {summary['steps']} steps → {out_dir}")
    if summary["family"] == "dbt":
        level = summary["primary_level"]
        overall = summary["levels"][level]["overall"]
        console.print(f"{level}-level AUC {overall['auc']} [{overall.get('ci_low')}, {overall.get('ci_high')}]")
    if "headline" in summary:  # a recipe's one-line result (e.g. FROC mean sensitivity)
        console.print(summary["headline"])


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        config: Path = typer.Option(..., "--config", "-c", help="run recipe YAML (configs/*_run_*.yaml)"),
        set_: list[str] = SetOpt,
        dry_run: bool = typer.Option(False, "--dry-run", help="check recipe and data, draw one batch, train nothing"),
    ) -> None:
        """Train a model with any registered strategy (see `breastssl strategies`), then score the test split.

        Writes the run folder (train.out_dir): config.yaml, checkpoints, metrics.jsonl, model.json,
        metrics.json and test predictions; `breastssl predict --run` and `breastssl export --run` read it.
        """
        from ..engine import cleanup_distributed
        from ..run.config import load_run_config
        from ..run.train import run_train

        cfg = load_run_config(config, set_)
        try:
            summary = run_train(cfg, dry=dry_run)
        finally:
            cleanup_distributed()
        if dry_run:
            console.print_json(json.dumps(summary, default=str))
            console.print("[green]dry run: recipe and data are valid; nothing was trained or written")
            return
        _print_summary(summary, cfg.train.out_dir)
