"""``breastssl predict --modality mg``: a trained bilateral model on mammograms → maps, masks, regions, scores.

The model file is a checkpoint of a self-training run (``<run>/checkpoints/*.pt``); the architecture and
input size come from ``<run>/model.json``. Bare image files carry no exam structure, so each image is
its own contralateral partner (the model's single-view mode). Per image: ``<id>_prob.npy`` (H, W)
probabilities and ``<id>_mask.png`` (the dense-CRF mask), both in the prepared frame (chest wall left,
cropped, resized); ``predictions.csv`` lists the connected regions (x, y, w, h in that frame, score =
the region's maximum probability) and the image score (the map's maximum).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import UserError
from ..metrics import regions_from_map
from .crf import CRFParams
from .lesion_masks import lesion_masks

SUFFIXES = {".dcm", ".npy", ".png", ".tif", ".tiff"}


def _files(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"input {p} does not exist")
    return files


def predict(model_path: Path, inputs: list[Path], out: Path, region_threshold: float | None = None) -> pd.DataFrame:
    """Run the model on every image; write maps, masks and ``predictions.csv`` under ``out``.

    region_threshold: the lesion threshold t of masks and regions (None: the run's ``lesion_threshold`` from
    model.json, 0.25 for runs that predate it); the CRF mask holds the regions the map supports at t, as in mining.
    """
    from ..data.dicom import read_image
    from ..data.preprocess import prepare
    from ..engine import load_checkpoint
    from ..fsutil import atomic_file
    from ..models import create_model

    spec_path = model_path.parent.parent / "model.json"
    if not spec_path.is_file():
        raise UserError(f"--model {model_path}: no model.json in its run dir {model_path.parent.parent}")
    spec = json.loads(spec_path.read_text())
    model = create_model(spec["name"], **spec["kwargs"])
    model.load_state_dict(load_checkpoint(model_path)["model"])
    model.eval()
    size = tuple(spec["size"])
    t = float(region_threshold if region_threshold is not None else spec.get("lesion_threshold", 0.25))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    from PIL import Image

    for f in _files(inputs):
        arr, _ = prepare(read_image(f), size)
        x = torch.from_numpy(np.clip(arr, 0, 1))[None, None]
        with torch.no_grad():
            prob = torch.sigmoid(model(x)["mask_logits"].float())[0, 0].numpy()
        mask = lesion_masks(prob[None], arr[None], CRFParams(workers=1), 1, t)[0]
        np.save(out / f"{f.stem}_prob.npy", prob.astype(np.float32))
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / f"{f.stem}_mask.png")
        _, regions = regions_from_map(prob, t)
        base = {"image": str(f), "image_score": float(prob.max()), "mask_pixels": int(mask.sum())}
        if len(regions) == 0:
            rows.append({**base, "x": np.nan, "y": np.nan, "w": np.nan, "h": np.nan, "score": np.nan})
        rows += [{**base, **r} for r in regions.to_dict("records")]
    df = pd.DataFrame(rows)
    with atomic_file(out / "predictions.csv") as tmp:
        df.to_csv(tmp, index=False)
    return df
