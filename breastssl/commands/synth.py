"""`breastssl synth`: write a synthetic dataset (DICOM or .npy) with its manifest (``data.synth.run.run_synth``)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..data.synth.run import run_synth
from ..errors import UserError
from .common import OverwriteOpt, SetOpt, console


def register(app: typer.Typer) -> None:
    @app.command()
    def synth(
        modality: str = typer.Argument(..., help="dbt | mammo | us"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder (must not exist unless --overwrite)"),
        n: int = typer.Option(100, "--n", help="number of exams (dbt, mammo) or images (us)"),
        seed: int = typer.Option(0, "--seed", help="random seed; the same seed gives identical files"),
        fmt: str = typer.Option("dicom", "--format", help="dicom (real DICOM objects) or npy (fast path)"),
        preview: bool = typer.Option(False, "--preview", help="also write preview.png, a montage per class and vendor"),
        config: Path = typer.Option(None, "--config", "-c", help="generator config YAML"),
        set_: list[str] = SetOpt,
        workers: int = typer.Option(None, "--workers", help="processes (default: all cores)"),
        overwrite: bool = OverwriteOpt,
    ) -> None:
        """Generate a synthetic multi-vendor dataset with manifest.csv, lesions.csv and dataset.json.

        DBT: four-view exams of three vendors (Hologic annotated, GE and Siemens breast-level labels).
        mammo: four-view exams with lesion masks and a radiology report per exam.
        us: B-mode images from two sites with nodule boxes and screen clutter.
        """
        if fmt not in {"dicom", "npy"}:
            raise UserError(f"--format must be dicom or npy, not {fmt!r}")
        stats = run_synth(modality, out, n, seed, fmt, preview, config, set_, workers, overwrite)
        console.print(f"wrote {stats['n_items']} {modality} items to {out}")
        console.print_json(data=stats["statistics"])
