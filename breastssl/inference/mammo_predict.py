"""``breastssl predict --run RUN`` for a mammography self-training run of ``breastssl train`` (family ``mammo``).

The run folder's ``model.json`` (:mod:`breastssl.run.folder`) gives the architecture, the input size, the lesion
threshold t and the CRF settings of the mining; the weights are the newest checkpoint's student (or the checkpoint
file given as RUN). Prediction is :func:`breastssl.inference.predict_mammo.predict_images`, the same as
``--modality mg --model FILE`` does for the experiment's run folders: every image is prepared as in training
(chest wall left, cropped to the breast, resized to ``input.size``) and is its own contralateral partner (bare
files carry no exam structure). OUT gets ``<stem>_prob.npy``, ``<stem>_mask.png`` and ``predictions.csv`` (one
row per region at t: x, y, w, h in the prepared frame, score = the region's maximum, and the image score), the
views, ``regions.csv`` (8-connected regions at t, boxes in source and model pixels) and ``sources.csv`` of
:mod:`breastssl.inference.findings` (image_id = the file's stem), and ``predictions.json`` (run, family, modality,
threshold); it is written under a temporary name, so a failed prediction leaves nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError

DEFAULT_THRESHOLD = 0.25  # SelfTrainingConfig.lesion_threshold's default, for a card that lacks it


def predict_run(
    run: str | Path,
    inputs: list[Path],
    out: str | Path,
    device: str = "cpu",
    overwrite: bool = False,
    region_threshold: float | None = None,
    clinical: Any = None,
    **_: Any,
) -> pd.DataFrame:
    """Lesion maps, CRF masks and regions of every image of ``inputs`` with the model of ``run``; returns the table.

    ``region_threshold``: t of masks and regions (None: the run's ``lesion_threshold``). ``clinical``: the DICOM
    exports to write with OUT (:mod:`breastssl.inference.clinical`), or None. Other keyword arguments of
    ``breastssl predict`` (``top_slices``, ``batch_size``) do not apply to mammograms and are ignored.
    """
    from ..fsutil import atomic_dir
    from ..run.folder import load_family_run
    from ..strategies.self_training import CRFConfig
    from .findings import FindingsWriter
    from .geometry import from_preprocess
    from .predict_mammo import SUFFIXES, files_of, predict_images

    loaded = load_family_run(run, "mammo", device)
    card = loaded.card
    files = files_of([Path(p) for p in inputs])
    if not files:
        raise UserError(f"no image files ({', '.join(sorted(SUFFIXES))}) in {', '.join(map(str, inputs))}")
    if clinical is not None:
        clinical.check(files)
    size = tuple(int(v) for v in card["input"]["size"])
    mask = card.get("mask", {})
    t = float(region_threshold if region_threshold is not None else card.get("lesion_threshold", DEFAULT_THRESHOLD))
    # the mining's CRF (and its smallest region), in this process: one image at a time, a pool would only add start-up
    crf_cfg = CRFConfig(**mask["crf"]) if "crf" in mask else None
    crf = crf_cfg.params(workers=1) if crf_cfg is not None else None
    min_area = crf_cfg.min_area if crf_cfg is not None else 1
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        findings = FindingsWriter(tmp)

        def record(f: Path, meta: dict[str, Any], image: np.ndarray, geo: Any, prob: np.ndarray) -> None:
            source = {"image_id": f.stem, "exam_id": None, "laterality": meta.get("laterality") or "",
                      "view": meta.get("view") or "", "modality": "MG", "path": str(f), "n_slices": 1}  # fmt: skip
            findings.add_image(source, image, prob, from_preprocess(geo), float(prob.max()))
            findings.add_map_regions(f.stem, prob, 0, t)

        df = predict_images(loaded.model, size, t, files, tmp, device, crf, min_area, on_image=record)
        findings.close()
        info = {"run": str(loaded.run_dir.resolve()), "checkpoint": str(loaded.checkpoint), "family": "mammo",
                "modality": "MG", "strategy": card.get("strategy"), "input_size": list(size),
                "threshold": t}  # fmt: skip
        (tmp / "predictions.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        if clinical is not None:
            clinical.write(tmp)
    return df
