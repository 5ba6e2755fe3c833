"""`breastssl demo`: the whole pipeline on embedded synthetic data."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import OverwriteOpt, console


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="folder for the demo's data and outputs"),
        seed: int = typer.Option(0, "--seed"),
        n: int = typer.Option(40, "--n", help="exams (DBT, mammography) and images (ultrasound) to generate"),
        overwrite: bool = OverwriteOpt,
    ) -> None:
        """Generate a small multi-modality synthetic dataset (DBT, mammography, ultrasound) and summarise it."""
        from .synth import run_synth

        out.mkdir(parents=True, exist_ok=True)
        for modality in ("dbt", "mammo", "us"):
            target = out / "data" / modality
            try:
                stats = run_synth(modality, target, n, seed, "dicom", preview=True, overwrite=overwrite)
            except Exception as exc:  # a generator not yet built must not hide the others
                from ..errors import UserError

                if isinstance(exc, UserError) and "not available" in str(exc):
                    console.print(f"[yellow]{modality}: skipped ({exc})")
                    continue
                raise
            console.print(
                f"[bold]{modality}[/]: {stats['n_items']} items in {target} (preview: {target / 'preview.png'})"
            )
            console.print_json(data=stats["statistics"])
