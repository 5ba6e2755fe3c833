"""`breastssl predict --modality M --model FILE INPUT... --out DIR`: run a trained model on new images.

Each modality's predictor lives in its own module (``PREDICTORS``: modality → "module:function", called as
``function(model, inputs, out)``); add a modality with one line here.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import typer

from ..errors import UserError
from .common import console

PREDICTORS = {
    "us": "breastssl.inference.us_predict:predict",
    "mg": "breastssl.postprocess.predict_mammo:predict",
}


def register(app: typer.Typer) -> None:
    @app.command()
    def predict(
        inputs: list[Path] = typer.Argument(..., help="image files or folders"),
        modality: str = typer.Option(..., "--modality", "-m", help=f"one of: {', '.join(PREDICTORS)}"),
        model: Path = typer.Option(..., "--model", help="trained model (us: us_model.pt of the experiment)"),
        out: Path = typer.Option(Path("predictions"), "--out", "-o", help="output folder"),
    ) -> None:
        """Predict on new images: boxes with scores, predictions.csv and overlay PNGs."""
        if modality not in PREDICTORS:
            raise UserError(f"unknown modality {modality!r}; choose one of {', '.join(PREDICTORS)}")
        if not model.is_file():
            raise UserError(f"--model {model}: file does not exist")
        module, name = PREDICTORS[modality].split(":")
        df = getattr(importlib.import_module(module), name)(model, list(inputs), out)
        console.print(f"{len(df)} predictions → {out / 'predictions.csv'}")
