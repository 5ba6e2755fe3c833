"""`breastssl demo`: the whole pipeline on embedded synthetic data.

Today: generate a small DBT, mammography and ultrasound dataset as real DICOM, validate the manifests,
read every image back through the same DICOM readers that real archives go through, and print a summary.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from .common import OverwriteOpt, console


def read_back(root: Path) -> dict:
    """Validate ``root``'s manifest and read every file through :func:`read_image`; return a summary."""
    from ..data.dicom import read_image
    from ..data.schema import load_dataset

    manifest, lesions = load_dataset(root / "manifest.csv")
    mismatched, shapes = 0, set()
    for row in manifest.to_dict("records"):
        img = read_image(root / row["path"], row)
        shapes.add(tuple(img.pixels.shape[-3:] if img.pixels.ndim == 4 else img.pixels.shape))
        mismatched += img.meta.get("laterality") not in (None, "", row["laterality"])
    return {
        "images": len(manifest),
        "lesions": 0 if lesions is None else len(lesions),
        "vendors": ", ".join(sorted(manifest["vendor"].unique())),
        "labels": manifest["breast_label"].value_counts().to_dict(),
        "laterality_mismatch": int(mismatched),
        "example_shape": sorted(shapes)[0],
    }


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="folder for the demo's data and outputs"),
        seed: int = typer.Option(0, "--seed", help="random seed of the synthetic data"),
        n: int = typer.Option(40, "--n", help="exams (DBT, mammography) and images (ultrasound)"),
        overwrite: bool = OverwriteOpt,
    ) -> None:
        """Generate DBT, mammography and ultrasound data as DICOM, read it back, and summarise it."""
        from .synth import run_synth

        table = Table(title=f"breastssl demo data in {out}/data")
        for col in ("modality", "images", "lesions", "vendors / sites", "breast labels", "pixels (read back)"):
            table.add_column(col)
        for modality in ("dbt", "mammo", "us"):
            target = out / "data" / modality
            run_synth(modality, target, n, seed, "dicom", preview=True, overwrite=overwrite)
            s = read_back(target)
            if s["laterality_mismatch"]:
                console.print(
                    f"[red]{modality}: {s['laterality_mismatch']} images whose tags disagree with the manifest"
                )
            labels = ", ".join(f"{k} {v}" for k, v in s["labels"].items())
            table.add_row(
                modality,
                str(s["images"]),
                str(s["lesions"]),
                s["vendors"],
                labels,
                "×".join(map(str, s["example_shape"])),
            )
        console.print(table)
        console.print(f"previews: {out}/data/<modality>/preview.png; statistics: {out}/data/<modality>/dataset.json")
