"""``breastssl predict --modality mg``: a trained bilateral model on mammograms → maps, masks, regions, scores.

The model file is a checkpoint of a self-training run (``<run>/checkpoints/*.pt``); the architecture and
input size come from ``<run>/model.json``. Bare image files carry no exam structure, so each image is
its own contralateral partner (the model's single-view mode). Per image: ``<id>_prob.npy`` (H, W)
probabilities and ``<id>_mask.png`` (the dense-CRF mask), both in the prepared frame (chest wall left,
cropped, resized); ``predictions.csv`` lists the connected regions (x, y, w, h in that frame, score =
the region's maximum probability) and the image score (the map's maximum).

:func:`predict_images` is the part shared with ``breastssl predict --run RUN`` of a ``breastssl train`` run
(:mod:`breastssl.inference.mammo_predict`, which reads the architecture from the run's ``model.json``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import UserError
from ..metrics import regions_from_map
from ..postprocess.crf import CRFParams
from ..postprocess.lesion_masks import lesion_masks

SUFFIXES = {".dcm", ".npy", ".png", ".tif", ".tiff"}


def files_of(inputs: list[Path]) -> list[Path]:
    """The image files named by ``inputs`` (files, or folders searched for ``SUFFIXES``), in a stable order."""
    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"input {p} does not exist")
    return files


def region_rows(prob: np.ndarray, threshold: float, base: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per connected region of prob (H, W) ≥ ``threshold`` (``base`` + x, y, w, h, score = its maximum).

    An image without a region gets one row with NaN box and score, so every image appears in the table.
    """
    _, regions = regions_from_map(prob, threshold)
    if len(regions) == 0:
        return [{**base, "x": np.nan, "y": np.nan, "w": np.nan, "h": np.nan, "score": np.nan}]
    return [{**base, **r} for r in regions.to_dict("records")]


def predict_images(
    model: nn.Module,
    size: tuple[int, int],
    threshold: float,
    files: list[Path],
    out: Path,
    device: str | torch.device = "cpu",
    crf: CRFParams | None = None,
    min_area: int = 1,
    on_image: Callable[[Path, dict[str, Any], np.ndarray, Any, np.ndarray], None] | None = None,
) -> pd.DataFrame:
    """Run ``model`` (eval mode) on every image file; write maps, masks and ``predictions.csv`` into ``out``.

    Each image is prepared as in training (chest wall left, cropped to the breast, resized to ``size`` (H, W)) and
    is its own contralateral partner. Per image: ``<stem>_prob.npy`` (H, W) float32 probabilities, ``<stem>_mask.png``
    (the dense-CRF mask of the regions the map supports at ``threshold``; ``crf`` default: the default CRF in this
    process); ``predictions.csv``: one row per region (:func:`region_rows`) with ``image``, ``image_score`` (the
    map's maximum) and ``mask_pixels``. ``on_image(file, reader meta, prepared image (H, W), its
    :class:`~breastssl.data.preprocess.Geometry`, probabilities (H, W))`` is called for every image.
    """
    from PIL import Image

    from ..data.dicom import read_image
    from ..data.preprocess import prepare
    from ..fsutil import atomic_file

    params = crf if crf is not None else CRFParams(workers=1)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for f in files:
        image = read_image(f)
        arr, geo = prepare(image, size)
        x = torch.from_numpy(np.clip(arr, 0, 1))[None, None].to(device)
        with torch.no_grad():
            prob = torch.sigmoid(model(x)["mask_logits"].float())[0, 0].cpu().numpy()
        mask = lesion_masks(prob[None], arr[None], params, min_area, threshold)[0]
        np.save(out / f"{f.stem}_prob.npy", prob.astype(np.float32))
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / f"{f.stem}_mask.png")
        if on_image is not None:
            on_image(f, image.meta, np.clip(arr, 0, 1), geo, prob)
        base = {"image": str(f), "image_score": float(prob.max()), "mask_pixels": int(mask.sum())}
        rows += region_rows(prob, threshold, base)
    df = pd.DataFrame(rows)
    with atomic_file(out / "predictions.csv") as tmp:
        df.to_csv(tmp, index=False)
    return df


def predict(model_path: Path, inputs: list[Path], out: Path, region_threshold: float | None = None) -> pd.DataFrame:
    """Run the model on every image; write maps, masks and ``predictions.csv`` under ``out``.

    region_threshold: the lesion threshold t of masks and regions (None: the run's ``lesion_threshold`` from
    model.json, 0.25 for runs that predate it); the CRF mask holds the regions the map supports at t, as in mining.
    """
    from ..engine import load_checkpoint
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
    return predict_images(model, size, t, files_of(inputs), out)
