"""Ultrasound prediction with a bundle written by `breastssl experiment us-mean-teacher`.

Used by `breastssl predict --modality us`: detector boxes, recognition-network malignancy probability,
``predictions.csv`` and overlay PNGs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..models.detection import create_detector


def _bundle_models(path: Path) -> tuple[Any, Any, dict]:
    from ..errors import DataError
    from ..models import create_model

    try:
        b = torch.load(path, map_location="cpu", weights_only=True)
        d, r = b["detector_cfg"], b["recognition_cfg"]
    except Exception as exc:  # noqa: BLE001  (any unreadable file is the user's input error)
        raise DataError(f"{path}: not an ultrasound model bundle ({type(exc).__name__}: {exc})") from None
    det = create_detector(d["backbone"], pretrained=False, min_size=d["min_size"], max_size=d["max_size"])
    det.load_state_dict(b["detector"])
    kw: dict[str, Any] = {"dropout": r["dropout"], "num_classes": 1}
    kw.update(
        {"width": r["width"]} if r["model"] == "recognition_cnn" else {"backbone": r["backbone"], "seg_decoder": False}
    )
    recog = create_model(r["model"], **kw)
    recog.load_state_dict(b["recognition"])
    return det.eval(), recog.eval(), r


def predict(
    model: Path, inputs: list[Path], out: Path, score_threshold: float = 0.5, max_boxes: int = 3
) -> pd.DataFrame:
    """Boxes with benign/malignant probability for ultrasound images (DICOM, .npy, PNG/JPEG) + overlay PNGs.

    Every box with a detector score ≥ ``score_threshold`` (at most ``max_boxes``; the top box when none
    reaches it) is cropped as in training and scored by the recognition network. Writes
    ``predictions.csv`` (file, x0, y0, x1, y1, det_score, p_malignant) and ``overlays/<name>.png``.
    """
    from PIL import Image, ImageDraw

    from ..data.us_crops import crop
    from ..data.us_dataset import read_frame
    from ..fsutil import atomic_file
    from ..strategies.mean_teacher import predict_proba

    det, recog, r = _bundle_models(Path(model))
    files = [
        f
        for p in inputs
        for f in (sorted(q for q in Path(p).rglob("*") if q.is_file()) if Path(p).is_dir() else [Path(p)])
    ]
    rows = []
    for f in files:
        frame = read_frame(f)
        with torch.no_grad():
            o = det([torch.from_numpy(frame)[None]])
        boxes, scores = o["boxes"][0].numpy(), o["scores"][0].numpy()
        keep = np.flatnonzero(scores >= score_threshold)[:max_boxes]
        keep = keep if len(keep) or not len(scores) else np.array([int(scores.argmax())])
        x = np.stack([crop(frame, boxes[k], r["crop_size"], r["margin"])[None] for k in keep]) if len(keep) else None
        probs = predict_proba(recog, torch.from_numpy(x)) if x is not None else np.zeros(0)
        rgb = Image.fromarray((np.clip(frame, 0, 1) * 255).astype(np.uint8)).convert("RGB")
        draw = ImageDraw.Draw(rgb)
        for k, p in zip(keep, probs, strict=True):
            b = boxes[k]
            draw.rectangle(list(map(float, b)), outline=(230, 40, 40) if p >= 0.5 else (40, 200, 60), width=1)
            draw.text((float(b[0]) + 2, max(0.0, float(b[1]) - 11)), f"{p:.2f}", fill=(255, 230, 0))
            rows.append({"file": str(f), "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3], "det_score": float(scores[k]),
                         "p_malignant": float(p)})  # fmt: skip
        with atomic_file(out / "overlays" / f"{f.stem}.png", "wb") as tmp:
            rgb.save(tmp, format="PNG")
    df = pd.DataFrame(rows, columns=["file", "x0", "y0", "x1", "y1", "det_score", "p_malignant"])
    with atomic_file(out / "predictions.csv") as tmp:
        df.to_csv(tmp, index=False)
    return df
