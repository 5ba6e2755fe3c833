"""`breastssl ingest`: build a manifest (and lesions table) from a dataset layout or a DICOM folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer

from ..errors import DataError, UserError
from ..fsutil import atomic_file
from .common import console


def run_ingest(fmt: str, root: Path, out: Path, labels: Path | None = None, skip_bad: bool = False) -> dict:
    """Run an adapter and write ``out`` (+ ``lesions.<ext>`` and ``skipped.csv`` beside it); returns counts."""
    from ..data.datasets import ingest
    from ..data.schema import validate_lesions, validate_manifest

    if out.suffix not in {".parquet", ".pq", ".csv"}:
        raise UserError(f"--out must end in .parquet or .csv, not {out.name!r}")
    result = ingest(fmt, root, labels, skip_bad)
    manifest, lesions = result.tables()
    if manifest.empty:
        raise DataError(
            f"{root}: no usable images found for --format {fmt}" + (" (all skipped)" if result.skipped else "")
        )
    # paths in the manifest are relative to the root; rewrite them relative to the manifest's folder
    out.parent.mkdir(parents=True, exist_ok=True)
    root_abs, out_dir = root.resolve(), out.parent.resolve()
    manifest["path"] = [_relocate(p, root_abs, out_dir) for p in manifest["path"].astype(str)]
    if "mask_path" in lesions.columns and len(lesions):
        lesions["mask_path"] = [
            _relocate(p, root_abs, out_dir) if isinstance(p, str) and p else p for p in lesions["mask_path"]
        ]
    validate_manifest(manifest, out_dir, f"manifest built from {root}")
    validate_lesions(lesions, manifest, f"lesions built from {root}")
    lesions_path = out.with_name("lesions" + out.suffix)
    with atomic_file(out) as tmp_m, atomic_file(lesions_path) as tmp_l:
        _write(manifest, tmp_m, out.suffix)
        _write(lesions, tmp_l, out.suffix)
    skipped = out.with_name("skipped.csv")
    if result.skipped:
        with atomic_file(skipped) as tmp:
            pd.DataFrame(result.skipped, columns=["file", "reason"]).to_csv(tmp, index=False)
    return {
        "images": len(manifest),
        "lesions": len(lesions),
        "skipped": len(result.skipped),
        "skipped_csv": str(skipped),
    }


def _write(df: pd.DataFrame, path: Path, suffix: str) -> None:
    if suffix in {".parquet", ".pq"}:
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)


def _relocate(p: str, root: Path, out_dir: Path) -> str:
    import os

    full = Path(p) if Path(p).is_absolute() else root / p
    return os.path.relpath(full, out_dir)


def register(app: typer.Typer) -> None:
    @app.command()
    def ingest(
        fmt: str = typer.Option(
            ..., "--format", "-f", help="folder | bcs-dbt | cbis-ddsm | vindr-mammo | busi | inbreast"
        ),
        root: Path = typer.Option(..., "--root", help="dataset root folder"),
        out: Path = typer.Option(..., "--out", "-o", help="manifest to write (.parquet or .csv)"),
        labels: Path = typer.Option(None, "--labels", help="labels CSV to join (folder format)"),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="skip unreadable files; list them in skipped.csv"),
    ) -> None:
        """Build a manifest from a public dataset layout or a folder of DICOM files.

        Writes the manifest, lesions.<ext> beside it, and skipped.csv (file, reason) if --skip-bad skipped anything.
        """
        stats = run_ingest(fmt, root, out, labels, skip_bad)
        console.print(f"wrote {stats['images']} images and {stats['lesions']} lesions to {out}")
        if stats["skipped"]:
            console.print(f"skipped {stats['skipped']} bad inputs, listed in {stats['skipped_csv']}")
