"""Ultrasound prediction: detector boxes, recognition-network malignancy probability, ``predictions.csv`` and overlays.

Two sources of the two networks, one prediction code (:func:`predict_frames`):

- ``breastssl predict --run RUN``: a run folder of ``breastssl train`` (family ``us``; :func:`predict_run`), read
  with :func:`breastssl.run.folder.load_run`; crop settings from its ``model.json``;
- ``breastssl predict --modality us --model us_model.pt``: the bundle of ``breastssl experiment us-mean-teacher``
  (:func:`predict`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import DataError, UserError
from ..models.detection import create_detector

COLUMNS = ["file", "x0", "y0", "x1", "y1", "det_score", "p_malignant"]


def load_bundle(path: Path) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """(detector, recognition network, recognition settings) of an experiment's ``us_model.pt``, in eval mode."""
    from ..models import create_model

    try:
        b = torch.load(path, map_location="cpu", weights_only=True)
        d, r = b["detector_cfg"], b["recognition_cfg"]
    except Exception as exc:  # noqa: BLE001  (any unreadable file is the user's input error)
        raise DataError(f"{path}: not an ultrasound model bundle ({type(exc).__name__}: {exc})") from None
    # no download (the bundle holds the weights), but the input normalisation the detector was trained with
    det = create_detector(d["backbone"], pretrained=False, imagenet_norm=bool(d.get("pretrained", False)),
                          min_size=d["min_size"], max_size=d["max_size"])  # fmt: skip
    det.load_state_dict(b["detector"])
    kw: dict[str, Any] = {"dropout": r["dropout"], "num_classes": 1}
    kw.update(
        {"width": r["width"]} if r["model"] == "recognition_cnn" else {"backbone": r["backbone"], "seg_decoder": False}
    )
    recog = create_model(r["model"], **kw)
    recog.load_state_dict(b["recognition"])
    return det.eval(), recog.eval(), r


def image_files(inputs: Sequence[Path]) -> list[Path]:
    """Every file named in ``inputs``, folders expanded recursively (sorted)."""
    return [
        f
        for p in inputs
        for f in (sorted(q for q in Path(p).rglob("*") if q.is_file()) if Path(p).is_dir() else [Path(p)])
    ]


@torch.no_grad()
@torch.no_grad()
def score_frame(
    det: nn.Module,
    recog: nn.Module,
    frame: np.ndarray,
    crop_size: int,
    margin: float,
    score_threshold: float = 0.5,
    max_boxes: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kept boxes (K, 4) xyxy of one (H, W) grey frame in [0, 1], their detector scores (K,) and malignancy
    probabilities (K,): every box with a score ≥ ``score_threshold`` (at most ``max_boxes``; the top box when none
    reaches it), cropped as in training and scored by the recognition network."""
    from ..data.us_crops import crop
    from ..run.early_stopping import predict_proba

    o = det([torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32))[None].to(next(det.parameters()).device)])
    boxes, scores = o["boxes"][0].cpu().numpy(), o["scores"][0].cpu().numpy()
    keep = np.flatnonzero(scores >= score_threshold)[:max_boxes]
    keep = keep if len(keep) or not len(scores) else np.array([int(scores.argmax())])
    x = np.stack([crop(frame, boxes[k], crop_size, margin)[None] for k in keep]) if len(keep) else None
    probs = predict_proba(recog, torch.from_numpy(x)) if x is not None else np.zeros(0, np.float32)
    return boxes[keep].reshape(-1, 4), scores[keep], probs


def predict_frames(
    det: nn.Module,
    recog: nn.Module,
    files: Sequence[Path],
    out: Path,
    crop_size: int,
    margin: float,
    score_threshold: float = 0.5,
    max_boxes: int = 3,
    threshold: float = 0.5,
    on_image: Callable[[Path, np.ndarray, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
) -> pd.DataFrame:
    """Boxes with a malignancy probability for each ultrasound image file (DICOM, .npy, PNG/JPEG), + overlay PNGs.

    Every box with a detector score ≥ ``score_threshold`` (at most ``max_boxes``; the top box when none reaches
    it) is cropped as in training (``crop_size``, ``margin``) and scored by the recognition network (eval mode,
    on its device). Writes ``out/predictions.csv`` (:data:`COLUMNS`) and ``out/overlays/<name>.png`` (red:
    p ≥ ``threshold``, green otherwise); returns the table. ``on_image(file, frame (H, W), boxes (K, 4) xyxy,
    detector scores (K,), malignancy probabilities (K,))`` is called for every image.
    """
    from PIL import Image, ImageDraw

    from ..data.us_dataset import read_frame
    from ..fsutil import atomic_file

    rows = []
    for f in files:
        frame = read_frame(f)  # (H, W) grey in [0, 1]
        boxes, scores, probs = score_frame(det, recog, frame, crop_size, margin, score_threshold, max_boxes)
        if on_image is not None:
            on_image(f, frame, boxes, scores, probs)
        rgb = Image.fromarray((np.clip(frame, 0, 1) * 255).astype(np.uint8)).convert("RGB")
        draw = ImageDraw.Draw(rgb)
        for b, sc, p in zip(boxes, scores, probs, strict=True):
            draw.rectangle(list(map(float, b)), outline=(230, 40, 40) if p >= threshold else (40, 200, 60), width=1)
            draw.text((float(b[0]) + 2, max(0.0, float(b[1]) - 11)), f"{p:.2f}", fill=(255, 230, 0))
            rows.append({"file": str(f), "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3], "det_score": float(sc),
                         "p_malignant": float(p)})  # fmt: skip
        with atomic_file(out / "overlays" / f"{f.stem}.png", "wb") as tmp:
            rgb.save(tmp, format="PNG")
    df = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_file(out / "predictions.csv") as tmp:
        df.to_csv(tmp, index=False)
    return df


def predict(
    model: Path, inputs: list[Path], out: Path, score_threshold: float = 0.5, max_boxes: int = 3
) -> pd.DataFrame:
    """:func:`predict_frames` with the experiment's bundle ``model`` (``us_model.pt``); writes into ``out``."""
    det, recog, r = load_bundle(Path(model))
    return predict_frames(det, recog, image_files(inputs), Path(out), int(r["crop_size"]), float(r["margin"]),
                          score_threshold, max_boxes)  # fmt: skip


def predict_run(
    run: Path,
    inputs: list[Path],
    out: Path,
    device: str = "cpu",
    overwrite: bool = False,
    score_threshold: float = 0.5,
    max_boxes: int = 3,
    clinical: Any = None,
    **_: Any,
) -> pd.DataFrame:
    """:func:`predict_frames` with the detector and recognition network of a ``breastssl train`` run folder.

    ``out`` appears complete or not at all (an existing non-empty ``out`` needs ``overwrite``). Besides
    ``predictions.csv`` and the overlays it holds the views, ``regions.csv`` (one row per box, score = the malignancy
    probability, ``det_score`` the detector's) and ``sources.csv`` of :mod:`breastssl.inference.findings`
    (image_id = the file's stem; the image score = its boxes' highest probability) and ``predictions.json``.
    ``clinical``: the DICOM exports to write with OUT (:mod:`breastssl.inference.clinical`; SR only), or None.
    Other keywords of ``breastssl predict`` (``top_slices``, ``batch_size``) are for other families and ignored.
    """
    from ..fsutil import atomic_dir
    from ..run.folder import load_family_run
    from .findings import FindingsWriter
    from .geometry import make_geometry

    loaded = load_family_run(run, "us", device)
    if not {"detector", "recognition"} <= set(loaded.models):
        raise UserError(f"run {loaded.run_dir}: holds {', '.join(loaded.models)}, not an ultrasound detector and "
                        "recognition network")  # fmt: skip
    files = image_files(inputs)
    if not files:
        raise UserError(f"no image files in {', '.join(map(str, inputs))}")
    if clinical is not None:
        clinical.check(files)
    pre, outputs = loaded.card["preprocessing"], loaded.card.get("outputs", {})
    threshold = float(outputs.get("threshold", 0.5))
    with atomic_dir(out, overwrite=overwrite) as tmp:
        findings = FindingsWriter(tmp)

        def record(f: Path, frame: np.ndarray, boxes: np.ndarray, scores: np.ndarray, probs: np.ndarray) -> None:
            source = {"image_id": f.stem, "exam_id": None, "laterality": _laterality(f), "view": "US",
                      "modality": "US", "path": str(f), "n_slices": 1}  # fmt: skip
            best = float(np.max(probs)) if len(probs) else float("nan")
            # the detector sees the stored frame: model frame = source frame
            findings.add_image(source, frame, None, make_geometry(frame.shape[-2:]), best)
            xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]) if len(boxes) else np.zeros((0, 4))
            findings.add_boxes(f.stem, xywh, probs, extra={"det_score": [float(s) for s in scores]})

        df = predict_frames(loaded.models["detector"], loaded.models["recognition"], files, tmp,
                            int(pre["crop_size"]), float(pre["crop_margin"]), score_threshold, max_boxes, threshold,
                            on_image=record)  # fmt: skip
        findings.close()
        info = {"run": str(loaded.run_dir.resolve()), "checkpoint": str(loaded.checkpoint), "family": "us",
                "modality": "US", "strategy": loaded.card.get("strategy"), "threshold": threshold,
                "score_threshold": score_threshold, "max_boxes": max_boxes}  # fmt: skip
        (tmp / "predictions.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        if clinical is not None:
            clinical.write(tmp)
        return df


def _laterality(path: Path) -> str:
    """L or R from a DICOM file's laterality tags; U (unknown) otherwise, as ingest says for ultrasound."""
    from ..data.dicom_meta import laterality_from_tags
    from ..data.dicom_pixels import is_dicom_file, read_dataset

    return (laterality_from_tags(read_dataset(path, stop_before_pixels=True)) if is_dicom_file(path) else None) or "U"
