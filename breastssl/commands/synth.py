"""`breastssl synth`: write a synthetic dataset (DICOM or .npy) with its manifest."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import UserError
from .common import OverwriteOpt, SetOpt, console, progress_bar


def run_synth(
    modality: str,
    out: Path,
    n: int,
    seed: int,
    fmt: str = "dicom",
    preview: bool = False,
    config: Path | None = None,
    overrides: list[str] | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> dict:
    """Generate a dataset; shared by the CLI command and the demo."""
    from ..config import load_config, save_config
    from ..data.synth import get_generator
    from ..data.synth.writer import generate_dataset

    try:
        cfg_cls, factory = get_generator(modality)
    except KeyError:
        raise UserError(f"unknown modality {modality!r}; choose dbt, mammo or us") from None
    except ImportError as exc:
        raise UserError(f"the {modality} generator is not available in this build ({exc})") from None
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    cfg = load_config(cfg_cls, config, overrides or [])
    splits = getattr(cfg, "splits", None)
    with progress_bar(f"synth {modality}", disable=quiet) as update:
        stats = generate_dataset(
            factory(cfg),
            out,
            n,
            seed,
            fmt,
            splits=splits,
            workers=workers,
            preview=preview,
            overwrite=overwrite,
            config=cfg.model_dump(mode="json"),
            progress=update,
        )
    save_config(cfg, Path(out) / "synth_config.yaml")
    return stats


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
