"""`breastssl predict`: run a trained model on new images.

Two kinds of model:

- ``--model FILE`` with ``--modality us|mg``: a model file; each modality's predictor lives in its own
  module (``PREDICTORS``: modality → "module:function", called as ``function(model, inputs, out)``);
- ``--run RUN``: a run folder of ``breastssl train`` (any method): its ``model.json`` names the family, whose
  predictor (``RUN_PREDICTORS``: family → "module:function") is called as
  ``function(run, inputs, out, top_slices=, batch_size=, device=, overwrite=, clinical=)`` (each takes what it
  needs) through :func:`breastssl.run.predict.predict_run`, which also opens the ``--dicom-sr`` / ``--dicom-seg``
  export folders (:mod:`breastssl.inference.clinical`); a DBT run folder written before ``model.json`` existed is
  read through its ``config.yaml``.

Add a family with one line in ``RUN_PREDICTORS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..errors import UserError
from ..run.predict import RUN_PREDICTORS, predict_run, run_family
from .common import console

PREDICTORS = {
    "us": "breastssl.inference.us_predict:predict",
    "mg": "breastssl.inference.predict_mammo:predict",
}


FAMILY_MODALITY = {"dbt": "dbt", "comoto": "dbt", "mammo": "mg", "us": "us"}  # what each family's runs read


def _load(spec: str) -> Callable[..., Any]:
    """The predictor function named by a "module:function" entry of either table."""
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def register(app: typer.Typer) -> None:
    @app.command()
    def predict(
        inputs: list[Path] = typer.Argument(
            ..., help="image files or folders; dbt: DICOM study folders, DICOM files or manifests (.csv/.parquet)"
        ),
        modality: str = typer.Option(
            None, "--modality", "-m", help=f"with --model: one of {', '.join(PREDICTORS)} (--run reads it from the run)"
        ),
        model: Path = typer.Option(None, "--model", help="trained model file (us: us_model.pt of the experiment)"),
        run: Path = typer.Option(None, "--run", help="a `breastssl train` run folder (any method)"),
        out: Path = typer.Option(Path("predictions"), "--out", "-o", help="output folder"),
        top_slices: int = typer.Option(
            3, "--top-slices", help="dbt: heatmap PNGs (and regions.csv regions) of this many best slices per stack"
        ),
        batch_size: int = typer.Option(64, "--batch-size", help="dbt: slices per forward pass"),
        device: str = typer.Option("cpu", "--device", help="--run: torch device, e.g. cpu or cuda"),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="--run: replace existing output folders (OUT, SR_OUT, SEG_OUT)"
        ),
        onnx: Path = typer.Option(
            None, "--onnx", help="dbt: run this ONNX export of the run (`breastssl export`) with onnxruntime"
        ),
        dicom_sr: Path = typer.Option(
            None, "--dicom-sr", help="--run, DICOM inputs: write one DICOM SR (TID 1500) of the findings per study here"
        ),
        dicom_seg: Path = typer.Option(
            None, "--dicom-seg", help="--run dbt / mammo, DICOM inputs: one DICOM SEG (lesion probability) per image"
        ),
    ) -> None:
        """Predict on new images.

        --run RUN (any method): DBT slice runs give slice/stack/breast/exam scores, predictions.json and heatmap
        PNGs of the top slices; mammography runs maps, masks and regions; ultrasound runs boxes with a malignancy
        probability; CoMoTo runs lesion boxes per DBT volume. Inputs are preprocessed exactly as the run was
        trained. Every --run family also writes views/, regions.csv and sources.csv (for `breastssl view`);
        --dicom-sr / --dicom-seg export DICOM Structured Reports and Segmentations for a PACS.
        --model FILE (us, mg): model files of the experiments.
        """
        if (model is None) == (run is None):
            raise UserError("give either --run RUN_DIR (any `breastssl train` run) or --model FILE (us, mg)")
        if run is not None:
            family = run_family(run)
            if modality is not None and modality != FAMILY_MODALITY[family]:
                raise UserError(f"--run {run} is a {family} run ({FAMILY_MODALITY[family]} images): --modality "
                                f"{modality!r} does not apply (leave --modality out with --run)")  # fmt: skip
            if onnx is not None and family != "dbt":
                raise UserError(f"--onnx runs an exported DBT slice run; {run} is a {family} run")
            extra: dict[str, Any] = {}
            if onnx is not None:
                if not onnx.is_file():
                    raise UserError(f"--onnx {onnx}: file does not exist (make it with `breastssl export --run`)")
                from ..export import OnnxModel

                extra["model"] = OnnxModel(onnx)
            result = predict_run(run, list(inputs), out, device=device, dicom_sr=dicom_sr, dicom_seg=dicom_seg,
                                 top_slices=top_slices, batch_size=batch_size, overwrite=overwrite,
                                 **extra)  # fmt: skip
            if family == "dbt":
                console.print(f"{len(result)} stacks of {result['exam_id'].nunique()} exams scored → {out}/")
                console.print("  slices.csv, stacks.csv, breasts.csv, exams.csv, predictions.json, heatmaps/")
            else:
                console.print(f"{family} run: {len(result)} predictions → {out / 'predictions.csv'}")
            for flag, folder in (("DICOM SR", dicom_sr), ("DICOM SEG", dicom_seg)):
                if folder is not None:
                    console.print(f"  {flag}: {len(list(folder.glob('*.dcm')))} file(s) → {folder}/")
            return
        if dicom_sr is not None or dicom_seg is not None:
            raise UserError("--dicom-sr / --dicom-seg export the findings of a training run: use them with --run")
        if onnx is not None:
            raise UserError("--onnx runs an exported DBT run: give it with --run RUN_DIR")
        if modality is None:
            raise UserError(f"--model needs --modality, one of {', '.join(PREDICTORS)}")
        if modality in RUN_PREDICTORS and modality not in PREDICTORS:  # us has both: the experiment's bundle too
            raise UserError(f"--modality {modality} predicts with a training run: use --run RUN_DIR")
        if modality not in PREDICTORS:
            raise UserError(f"unknown modality {modality!r}; choose one of {', '.join(PREDICTORS)}")
        if not model.is_file():
            raise UserError(f"--model {model}: file does not exist")
        df = _load(PREDICTORS[modality])(model, list(inputs), out)
        console.print(f"{len(df)} predictions → {out / 'predictions.csv'}")
