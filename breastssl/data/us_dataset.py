"""Ultrasound images for nodule detection: whole frames (grey, [0, 1]) with their nodule boxes.

The detector sees the whole stored frame, screen clutter included (the paper's background class is
"curves, text, color bars, etc."), at its stored resolution; the detector's own transform resizes.
Colour frames (RGB overlays on a grey B-mode) are reduced to luminance. Images are read once into
memory (ultrasound frames are small) and never augmented by the reader (DESIGN §4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .dicom import read_image

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) display values in [0, 1] → (H, W) float32 (ITU-R 601 luminance for colour)."""
    if pixels.ndim == 3 and pixels.shape[-1] == 3:
        return np.ascontiguousarray(pixels @ LUMA, dtype=np.float32)
    if pixels.ndim != 2:
        raise DataError(f"expected one ultrasound frame (H, W) or (H, W, 3), got shape {pixels.shape}")
    return np.ascontiguousarray(pixels, dtype=np.float32)


def read_frame(path: str | Path, row: Mapping[str, Any] | None = None) -> np.ndarray:
    """Read an ultrasound image (DICOM, .npy, PNG/JPEG) as a grey (H, W) float32 frame in [0, 1].

    A cine loop gives its first frame.
    """
    img = read_image(path, row)
    px = img.pixels
    if px.ndim == 4 or (px.ndim == 3 and px.shape[-1] != 3):
        px = px[0]
    return to_grey(px)


def load_frames(manifest: pd.DataFrame, root: str | Path) -> dict[str, np.ndarray]:
    """image_id → (H, W) frame for every manifest row (paths relative to ``root``)."""
    out: dict[str, np.ndarray] = {}
    for row in manifest.to_dict("records"):
        p = Path(str(row["path"]))
        out[str(row["image_id"])] = read_frame(p if p.is_absolute() else Path(root) / p, row)
    return out


def gt_boxes(lesions: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """image_id → (N, 4) float32 boxes x0, y0, x1, y1 from a lesions table's ``x, y, w, h`` (pixels)."""
    out: dict[str, np.ndarray] = {}
    if lesions is None or lesions.empty:
        return out
    for image_id, g in lesions.groupby(lesions["image_id"].astype(str)):
        xywh = g[["x", "y", "w", "h"]].to_numpy(dtype=np.float32)
        out[str(image_id)] = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    return out


def gt_labels(lesions: pd.DataFrame | None) -> dict[str, int]:
    """image_id → 1 (malignant) / 0 (benign) of the image's first lesion with a class."""
    if lesions is None or lesions.empty or "lesion_class" not in lesions:
        return {}
    les = lesions[lesions["lesion_class"].isin(["malignant", "benign"])]
    first = les.groupby(les["image_id"].astype(str))["lesion_class"].first()
    return {str(k): int(v == "malignant") for k, v in first.items()}


class DetectionDataset(Dataset):
    """Frames and boxes for detector training: ``{"image": (1, H, W), "boxes": (N, 4), "index"}``.

    ``flip`` mirrors the frame and its boxes left-right with probability 1/2 (the global torch RNG,
    which the engine seeds and restores on resume).
    """

    def __init__(
        self, ids: Sequence[str], frames: Mapping[str, np.ndarray], boxes: Mapping[str, np.ndarray], flip: bool = True
    ) -> None:
        missing = [i for i in ids if i not in frames]
        if missing:
            raise DataError(f"detection dataset: no frame loaded for image ids {missing[:5]}")
        self.ids = list(ids)
        self.frames = frames
        self.boxes = boxes
        self.flip = flip

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image_id = self.ids[i]
        frame = torch.from_numpy(self.frames[image_id])[None]
        boxes = torch.from_numpy(self.boxes.get(image_id, np.zeros((0, 4), np.float32)).copy())
        if self.flip and bool(torch.rand(()) < 0.5):
            w = frame.shape[-1]
            frame = frame.flip(-1)
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
        return {"image": frame.contiguous(), "boxes": boxes.reshape(-1, 4), "index": i}
