"""Nodule crops: the detector's boxes (with a margin) become the recognition network's inputs (seed 004).

The paper's doctors drew boxes with "approximately 10 pixels" of background around the nodule; the
crop adds ``margin`` × the box size on each side (at least ``min_margin`` pixels), clipped to the frame,
then resizes to ``size`` × ``size`` and standardises each crop (zero mean, unit variance): the Gaussian
input noise of the mean teacher (0.15) is then relative to the crop's contrast, and site-level gain
differences do not reach the classifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from .preprocess import resize


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boxes (4,) x0, y0, x1, y1 (the paper's "ASC")."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def expand_box(
    box: Sequence[float], shape: tuple[int, int], margin: float = 0.15, min_margin: float = 4.0
) -> np.ndarray:
    """Box (4,) x0, y0, x1, y1 grown by ``max(margin × side, min_margin)`` per side, clipped to (H, W); integers."""
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = max(margin * (x1 - x0), min_margin), max(margin * (y1 - y0), min_margin)
    h, w = shape
    out = np.array([np.floor(x0 - mx), np.floor(y0 - my), np.ceil(x1 + mx), np.ceil(y1 + my)])
    out = np.clip(out, 0, [w, h, w, h])
    if out[2] - out[0] < 2:  # degenerate after clipping: keep at least 2 px
        out[0], out[2] = max(0, min(out[0], w - 2)), max(0, min(out[0], w - 2)) + 2
    if out[3] - out[1] < 2:
        out[1], out[3] = max(0, min(out[1], h - 2)), max(0, min(out[1], h - 2)) + 2
    return out.astype(np.int64)


def crop(
    frame: np.ndarray, box: Sequence[float], size: int, margin: float = 0.15, min_margin: float = 4.0
) -> np.ndarray:
    """A standardised (size, size) float32 crop of a (H, W) frame around ``box`` (see the module doc)."""
    x0, y0, x1, y1 = expand_box(box, frame.shape[:2], margin, min_margin)
    patch = resize(frame[y0:y1, x0:x1], (size, size))
    return ((patch - patch.mean()) / (patch.std() + 1e-6)).astype(np.float32)


@torch.no_grad()
def detect(
    detector: nn.Module, frames: Mapping[str, np.ndarray], ids: Sequence[str], batch_size: int = 8
) -> pd.DataFrame:
    """The top-scoring box of each frame: image_id, x0, y0, x1, y1, score (whole frame, score 0, if none)."""
    was = detector.training
    detector.eval()
    device = next(detector.parameters()).device
    rows: list[dict[str, Any]] = []
    ids = list(ids)
    for i in range(0, len(ids), batch_size):
        chunk = ids[i : i + batch_size]
        out = detector([torch.from_numpy(frames[k])[None].to(device) for k in chunk])
        for k, boxes, scores in zip(chunk, out["boxes"], out["scores"], strict=True):
            if len(scores):
                j = int(scores.argmax())
                b, s = boxes[j].cpu().numpy(), float(scores[j])
            else:
                h, w = frames[k].shape
                b, s = np.array([0.0, 0.0, w, h]), 0.0
            rows.append({"image_id": k, "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3], "score": s})
    detector.train(was)
    return pd.DataFrame(rows, columns=["image_id", "x0", "y0", "x1", "y1", "score"])


def make_crops(
    frames: Mapping[str, np.ndarray], boxes: pd.DataFrame, size: int = 32, margin: float = 0.15, min_margin: float = 4.0
) -> np.ndarray:
    """(N, 1, size, size) crops, one per row of ``boxes`` (image_id, x0, y0, x1, y1)."""
    out = np.zeros((len(boxes), 1, size, size), dtype=np.float32)
    for i, r in enumerate(boxes.itertuples(index=False)):
        out[i, 0] = crop(frames[str(r.image_id)], (r.x0, r.y0, r.x1, r.y1), size, margin, min_margin)
    return out


class CropDataset(Dataset):
    """Nodule crops for the recognition network: ``{"image": (1, S, S), "label", "sup_cls", "index"}``.

    ``labels`` (N,) 0/1 (any value where unlabelled), ``labelled`` (N,) bool. ``augment`` flips left-right
    and scales the contrast by U(0.9, 1.1) (the paper's "image flipping, random change in brightness"; the
    crops are standardised, so brightness acts as contrast), drawn from the global torch RNG.
    """

    def __init__(self, crops: np.ndarray, labels: np.ndarray, labelled: np.ndarray, augment: bool = True) -> None:
        if not (len(crops) == len(labels) == len(labelled)):
            raise ValueError(
                f"crops {crops.shape}, labels {np.shape(labels)}, labelled {np.shape(labelled)} differ in length"
            )
        self.crops = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32))
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.float32))
        self.labelled = torch.as_tensor(np.asarray(labelled, dtype=np.float32))
        self.augment = augment

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = self.crops[i]
        if self.augment:
            if bool(torch.rand(()) < 0.5):
                x = x.flip(-1)
            x = x * (0.9 + 0.2 * torch.rand(()))
        return {"image": x, "label": self.labels[i], "sup_cls": self.labelled[i], "index": i}
