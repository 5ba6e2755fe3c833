"""Predicting with any run folder: the table of predictors per method family (``breastssl predict --run``).

Each predictor is called as ``function(run, inputs, out, top_slices=, batch_size=, device=, overwrite=,
clinical=)`` and takes what it needs (``**_`` for the rest); it returns a DataFrame and writes its files under
``out``: its own tables, and the views, regions and sources of :mod:`breastssl.inference.findings`. ``clinical``
(:class:`breastssl.inference.clinical.ClinicalOutputs`, or None) asks for the DICOM SR / SEG exports: the predictor
calls its ``check(paths)`` once it knows its inputs and its ``write(tmp_out)`` inside its atomic write of ``out``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserError

RUN_PREDICTORS = {
    "dbt": "breastssl.inference.dbt_predict:predict_dbt",
    "mammo": "breastssl.inference.mammo_predict:predict_run",
    "us": "breastssl.inference.us_predict:predict_run",
    "comoto": "breastssl.inference.comoto_predict:predict_run",
}


def load_function(spec: str) -> Callable[..., Any]:
    """The function named by a ``"module:function"`` entry."""
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def run_family(run: str | Path) -> str:
    """The method family of a run folder (or of a checkpoint inside one): from model.json, else DBT (older runs)."""
    from .folder import read_card, run_dir_of

    run_dir, _ = run_dir_of(run)
    if (run_dir / "model.json").is_file():
        return str(read_card(run_dir)["family"])
    if (run_dir / "config.yaml").is_file():
        return "dbt"
    raise UserError(f"run {run}: not a run folder of `breastssl train` (no model.json or config.yaml)")


def predict_run(
    run: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    device: str = "cpu",
    dicom_sr: str | Path | None = None,
    dicom_seg: str | Path | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Run the trained model of ``run`` on ``inputs`` (files, folders or manifests); files go under ``out``.

    ``dicom_sr`` / ``dicom_seg``: folders for one DICOM Structured Report per study / one DICOM Segmentation per
    source image (DICOM inputs only; SEG only for families with a segmentation head), written atomically with
    ``out`` (an existing folder needs ``overwrite=True``).
    """
    from ..inference.clinical import clinical_outputs
    from .folder import run_dir_of

    family = run_family(run)
    fn = load_function(RUN_PREDICTORS[family])
    sr, seg = (Path(p) if p is not None else None for p in (dicom_sr, dicom_seg))
    name = run_dir_of(run)[0].resolve().name
    with clinical_outputs(name, family, Path(out), sr, seg, bool(options.get("overwrite", False))) as clinical:
        return fn(Path(run), [Path(p) for p in inputs], Path(out), device=device, clinical=clinical, **options)
