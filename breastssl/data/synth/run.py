"""Generate a synthetic dataset into a folder: what ``breastssl synth``, the demo and the experiments call."""

from __future__ import annotations

from pathlib import Path

from ...console import progress_bar
from ...errors import UserError


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
    from ...config import load_config, save_config
    from . import get_generator
    from .writer import generate_dataset

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
