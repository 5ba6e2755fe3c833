"""DBT volume detection: a 2D detector on every slice, merged across slices by 3D-aware NMS (CoMoTo, seed 003).

:func:`merge_slices` turns per-slice boxes into volume boxes. Greedy, highest score first: the best remaining
box seeds a lesion; every remaining box that overlaps the seed in 2D (IoU ≥ ``iou_thresh``) on the seed's slice
or on a chain of neighbouring slices (consecutive slices at most ``max_gap`` apart, walking up and down from the
seed) joins it and is suppressed. The volume box is the seed's 2D box with ``Z`` = first slice of the group,
``Depth`` = number of slices it spans (last − first + 1), ``Score`` = the seed's (the maximum of the group).

Output columns are the BCS-DBT challenge's CSV: ``PatientID, StudyUID, View, X, Y, Width, Height, Z, Depth,
Score`` (X, Y = top-left corner in stored pixels), which ``breastssl.metrics.froc_dbt`` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

PRED_COLUMNS = ["PatientID", "StudyUID", "View", "X", "Y", "Width", "Height", "Z", "Depth", "Score"]
SLICE_COLUMNS = ["slice", "x1", "y1", "x2", "y2", "score"]


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """box (4,) xyxy vs others (N, 4) → (N,) IoU."""
    w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def merge_slices(dets: pd.DataFrame, iou_thresh: float = 0.3, max_gap: int = 1) -> pd.DataFrame:
    """Per-slice detections (columns ``slice, x1, y1, x2, y2, score``) of ONE volume → volume boxes.

    Returns columns ``X, Y, Width, Height, Z, Depth, Score``, highest score first. See the module doc.
    """
    if len(dets) == 0:
        return pd.DataFrame(columns=["X", "Y", "Width", "Height", "Z", "Depth", "Score"])
    order = np.argsort(-dets["score"].to_numpy(float), kind="stable")
    z = dets["slice"].to_numpy(int)[order]
    boxes = dets[["x1", "y1", "x2", "y2"]].to_numpy(float)[order]
    scores = dets["score"].to_numpy(float)[order]
    free = np.ones(len(z), bool)
    rows = []
    for seed in range(len(z)):
        if not free[seed]:
            continue
        overlap = free & (_iou(boxes[seed], boxes) >= iou_thresh)
        overlap[seed] = True
        group = overlap & (z == z[seed])  # same slice: plain 2D NMS
        for step in (1, -1):  # walk up, then down, while neighbouring slices keep overlapping
            last = z[seed]
            while True:
                near = overlap & (np.abs(z - last) <= max_gap) & ((z - last) * step > 0)
                if not near.any():
                    break
                group |= near
                last = z[near].max() if step > 0 else z[near].min()
        free &= ~group
        first, end = int(z[group].min()), int(z[group].max())
        x1, y1, x2, y2 = boxes[seed]
        rows.append((x1, y1, x2 - x1, y2 - y1, first, end - first + 1, scores[seed]))
    return pd.DataFrame(rows, columns=["X", "Y", "Width", "Height", "Z", "Depth", "Score"])


@torch.inference_mode()
def detect_volume(model: nn.Module, stack: Tensor, batch_size: int = 32) -> pd.DataFrame:
    """stack (D, H, W) in [0, 1] → per-slice detections (``slice, x1, y1, x2, y2, score``) in stack pixels."""
    was_training = model.training
    model.eval()
    frames = []
    device = next(model.parameters()).device
    for start in range(0, stack.shape[0], batch_size):
        out = model(stack[start : start + batch_size, None].to(device))
        for k, det in enumerate(out["detections"]):
            b = det["boxes"].float().cpu().numpy().reshape(-1, 4)
            s = det["scores"].float().cpu().numpy()
            frames.append(pd.DataFrame({"slice": start + k, "x1": b[:, 0], "y1": b[:, 1], "x2": b[:, 2]} | {
                "y2": b[:, 3], "score": s}))  # fmt: skip
    model.train(was_training)
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SLICE_COLUMNS)


def predict_volumes(
    model: nn.Module,
    volumes: Iterable[tuple[dict, np.ndarray]],
    scale: Callable[[dict], tuple[float, float]] | None = None,
    iou_thresh: float = 0.3,
    max_gap: int = 1,
    max_per_volume: int = 20,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Volume predictions in the BCS-DBT format for (manifest row, stack (D, H, W) at model size) pairs.

    ``scale(row)`` → (sx, sy), model pixels per stored pixel: boxes are mapped back to stored pixels.
    ``batch_size``: slices per forward pass.
    StudyUID = the row's ``exam_id`` (``image_id`` without one); View = laterality + view, lower case ("lcc").
    """
    frames = []
    for row, stack in volumes:
        dets = detect_volume(model, torch.from_numpy(stack), batch_size)
        merged = merge_slices(dets, iou_thresh, max_gap).head(max_per_volume)
        sx, sy = scale(row) if scale is not None else (1.0, 1.0)
        merged[["X", "Width"]] = merged[["X", "Width"]].astype(float) / sx
        merged[["Y", "Height"]] = merged[["Y", "Height"]].astype(float) / sy
        merged.insert(0, "View", f"{row.get('laterality', '')}{row.get('view', '')}".lower() or "-")
        merged.insert(0, "StudyUID", str(row.get("exam_id", row.get("image_id"))))
        merged.insert(0, "PatientID", str(row.get("patient_id", "")))
        frames.append(merged)
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True)[PRED_COLUMNS] if frames else pd.DataFrame(columns=PRED_COLUMNS)
