"""`breastssl predict`: run a trained model on new images.

Two kinds of model:

- ``--model FILE`` with ``--modality us|mg``: a model file; each modality's predictor lives in its own
  module (``PREDICTORS``: modality → "module:function", called as ``function(model, inputs, out)``);
- ``--run RUN`` (``--modality dbt``, the default with ``--run``): a ``breastssl train`` run directory,
  whose ``config.yaml`` and newest checkpoint rebuild the model (``RUN_PREDICTORS``, called as
  ``function(run, inputs, out, top_slices=, batch_size=, device=, overwrite=)``).

Add a modality with one line in the table it belongs to.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..errors import UserError
from .common import console

PREDICTORS = {
    "us": "breastssl.inference.us_predict:predict",
    "mg": "breastssl.postprocess.predict_mammo:predict",
}
RUN_PREDICTORS = {
    "dbt": "breastssl.inference.dbt_predict:predict_dbt",
}


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
            None, "--modality", "-m", help=f"one of: {', '.join([*PREDICTORS, *RUN_PREDICTORS])} (--run: dbt)"
        ),
        model: Path = typer.Option(None, "--model", help="trained model file (us: us_model.pt of the experiment)"),
        run: Path = typer.Option(None, "--run", help="dbt: a `breastssl train` run directory (config + checkpoint)"),
        out: Path = typer.Option(Path("predictions"), "--out", "-o", help="output folder"),
        top_slices: int = typer.Option(3, "--top-slices", help="dbt: heatmap PNGs of this many best slices per stack"),
        batch_size: int = typer.Option(64, "--batch-size", help="dbt: slices per forward pass"),
        device: str = typer.Option("cpu", "--device", help="dbt: torch device, e.g. cpu or cuda"),
        overwrite: bool = typer.Option(False, "--overwrite", help="dbt: replace an existing output folder"),
        onnx: Path = typer.Option(
            None, "--onnx", help="dbt: run this ONNX export of the run (`breastssl export`) with onnxruntime"
        ),
    ) -> None:
        """Predict on new images.

        us / mg (--model FILE): boxes with scores, predictions.csv and overlay PNGs.

        dbt (--run RUN): slice/stack/breast/exam scores, predictions.json, heatmap PNGs of the top slices.
        Slices are preprocessed and scores aggregated exactly as the run was trained and evaluated.
        """
        if (model is None) == (run is None):
            raise UserError("give either --model FILE (us, mg) or --run RUN_DIR (dbt)")
        if run is not None:
            modality = modality or "dbt"
            if modality not in RUN_PREDICTORS:
                kinds = ", ".join(RUN_PREDICTORS)
                raise UserError(f"--run works with --modality {kinds}, not {modality!r} (use --model)")
            fn = _load(RUN_PREDICTORS[modality])
            extra: dict[str, Any] = {}
            if onnx is not None:
                if not onnx.is_file():
                    raise UserError(f"--onnx {onnx}: file does not exist (make it with `breastssl export --run`)")
                from ..export import OnnxModel

                extra["model"] = OnnxModel(onnx)
            stacks = fn(run, list(inputs), out, top_slices=top_slices, batch_size=batch_size, device=device,
                        overwrite=overwrite, **extra)  # fmt: skip
            console.print(f"{len(stacks)} stacks of {stacks['exam_id'].nunique()} exams scored → {out}/")
            console.print("  slices.csv, stacks.csv, breasts.csv, exams.csv, predictions.json, heatmaps/")
            return
        if onnx is not None:
            raise UserError("--onnx runs an exported DBT run: give it with --run RUN_DIR")
        if modality is None:
            raise UserError(f"--model needs --modality, one of {', '.join(PREDICTORS)}")
        if modality in RUN_PREDICTORS:
            raise UserError(f"--modality {modality} predicts with a training run: use --run RUN_DIR")
        if modality not in PREDICTORS:
            raise UserError(f"unknown modality {modality!r}; choose one of {', '.join(PREDICTORS)}")
        if not model.is_file():
            raise UserError(f"--model {model}: file does not exist")
        df = _load(PREDICTORS[modality])(model, list(inputs), out)
        console.print(f"{len(df)} predictions → {out / 'predictions.csv'}")
