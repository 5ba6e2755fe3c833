"""`breastssl evaluate`: metrics.json and report.html from saved predictions (``reports.evaluate_files``)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..reports.evaluate_files import run_evaluate
from .common import OverwriteOpt, console


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        predictions: list[Path] = typer.Argument(..., help="prediction files (CSV/Parquet), one per model"),
        manifest: Path = typer.Option(..., "--manifest", "-m", help="manifest.csv/.parquet of the truth"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder for metrics.json and report.html"),
        lesions: Path = typer.Option(None, "--lesions", help="lesions table (default: lesions.* beside the manifest)"),
        level: str = typer.Option("image", "--level", help="image | breast | exam"),
        agg: str = typer.Option("max", "--agg", help="aggregation up the levels: max | mean | topk"),
        k: int = typer.Option(3, "--k", help="k of --agg topk"),
        by: list[str] = typer.Option([], "--by", help="subgroup column: vendor, site, lesion_class, ... (repeatable)"),
        compare: bool = typer.Option(False, "--compare", help="pairwise paired DeLong tests between the files"),
        split: str = typer.Option(None, "--split", help="evaluate only manifest rows of this split"),
        threshold: float = typer.Option(0.5, "--threshold", help="score threshold for sensitivity/specificity"),
        n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap resamples for sensitivity/specificity CIs"),
        iou: float = typer.Option(0.2, "--iou", help="2D FROC: IoU above which a box hits a lesion"),
        criterion: str = typer.Option("iou", "--criterion", help="2D FROC hit rule: iou | center"),
        seed: int = typer.Option(0, "--seed", help="bootstrap seed"),
        overwrite: bool = OverwriteOpt,
    ) -> None:
        """Compute AUC with DeLong CIs, sensitivity/specificity, FROC (2D or DBT) and pairwise DeLong tests
        from saved predictions, and write metrics.json and a self-contained report.html."""
        from ..errors import UserError

        if agg not in {"max", "mean", "topk"}:
            raise UserError(f"--agg must be max, mean or topk, not {agg!r}")
        if criterion not in {"iou", "center"}:
            raise UserError(f"--criterion must be iou or center, not {criterion!r}")
        if n_boot < 1:
            raise UserError(f"--n-boot must be at least 1, got {n_boot}")
        res = run_evaluate(
            predictions, manifest, out, lesions, overwrite,
            level=level, agg=agg, k=k, by=list(by), compare=compare, split=split,
            threshold=threshold, n_boot=n_boot, iou=iou, criterion=criterion, seed=seed,
        )  # fmt: skip
        for name, m in res["models"].items():
            r = m["roc"]
            console.print(f"{name}: AUC {r['auc']:.4f} ({r['auc_low']:.4f}–{r['auc_high']:.4f}) [{m['aggregation']}]")
        for c in res["comparisons"]:
            console.print(f"{c['a']} vs {c['b']}: ΔAUC {c['difference']:+.4f}, p = {c['p']:.4g}")
        console.print(f"wrote {out / 'metrics.json'} and {out / 'report.html'}")
