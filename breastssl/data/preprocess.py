"""Preprocessing to training resolution: canonical orientation, breast crop, resize.

``prepare(image, size)`` returns the array and the :class:`Geometry` that produced it; the geometry
maps lesion boxes and masks from the stored image into the prepared one, so annotations follow the
pixels. Windowing is the reader's job (its output is already display values in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .dicom import Image, read_image
from .orientation import Flip, canonical_flip

BREAST_THRESHOLD = 0.05  # display value above which a pixel counts as breast (background is ~0)
CROP_MARGIN = 0.02  # fraction of the image size added around the breast box


@dataclass(frozen=True)
class Geometry:
    """Flip, then crop ``(y0, y1, x0, x1)`` of the flipped image, then resize to ``size`` (H, W)."""

    flip: Flip
    crop: tuple[int, int, int, int]
    size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """(sy, sx): output pixels per input pixel."""
        y0, y1, x0, x1 = self.crop
        return self.size[0] / (y1 - y0), self.size[1] / (x1 - x0)

    def boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Map (N, 4) ``x, y, w, h`` boxes of the stored image into the prepared image."""
        b = self.flip.boxes(boxes)
        sy, sx = self.scale
        b[:, 0] = (b[:, 0] - self.crop[2]) * sx
        b[:, 1] = (b[:, 1] - self.crop[0]) * sy
        b[:, 2] *= sx
        b[:, 3] *= sy
        return b

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """Map a (H, W) or (D, H, W) mask of the stored image (nearest neighbour, same dtype)."""
        m = self.flip.mask(np.asarray(mask))
        y0, y1, x0, x1 = self.crop
        m = m[..., y0:y1, x0:x1]
        rows = ((np.arange(self.size[0]) + 0.5) * (y1 - y0) / self.size[0]).astype(int)
        cols = ((np.arange(self.size[1]) + 0.5) * (x1 - x0) / self.size[1]).astype(int)
        return np.ascontiguousarray(m[..., rows[:, None], cols[None, :]])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Geometry:
        """The geometry :meth:`to_dict` described (as the cache index stores it)."""
        f = d["flip"]
        flip = Flip(tuple(f["shape"]), bool(f["horizontal"]), bool(f["vertical"]))
        return cls(flip, tuple(int(v) for v in d["crop"]), tuple(int(v) for v in d["size"]))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (stored in the cache index)."""
        d = asdict(self)
        d["flip"] = {"shape": list(self.flip.shape), "horizontal": self.flip.horizontal, "vertical": self.flip.vertical}
        return d


def breast_box(
    plane: np.ndarray, threshold: float = BREAST_THRESHOLD, margin: float = CROP_MARGIN
) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) bounding the pixels above ``threshold`` of a (H, W) plane, plus a margin.

    The whole image when no pixel is above the threshold.
    """
    h, w = plane.shape
    fg = plane > threshold
    if not fg.any():
        return 0, h, 0, w
    ys, xs = np.nonzero(fg.any(axis=1))[0], np.nonzero(fg.any(axis=0))[0]
    my, mx = int(round(margin * h)), int(round(margin * w))
    return max(0, ys[0] - my), min(h, ys[-1] + 1 + my), max(0, xs[0] - mx), min(w, xs[-1] + 1 + mx)


def resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of (H, W) or (D, H, W) float32 to ``size`` (bilinear, antialiased)."""
    import torch
    import torch.nn.functional as F

    if tuple(arr.shape[-2:]) == tuple(size):
        return np.ascontiguousarray(arr, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    lead = t.shape[:-2]
    t = t.reshape(1, -1, *t.shape[-2:])
    out = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*lead, *size).numpy()


def prepare(image: Image, size: tuple[int, int], crop: bool = True, orient: bool = True) -> tuple[np.ndarray, Geometry]:
    """Orient (chest wall left), crop to the breast (US: to the B-mode region) and resize an Image.

    Returns float32 (H', W'), (D, H', W') or (H', W', 3) and its :class:`Geometry`.
    """
    px = image.pixels
    colour = px.ndim >= 3 and px.shape[-1] == 3 and image.meta.get("photometric") != "MONOCHROME2"
    chw = np.moveaxis(px, -1, -3) if colour else px  # channels first for the spatial ops
    plane = chw if chw.ndim == 2 else chw.reshape(-1, *chw.shape[-2:]).max(axis=0)
    modality = str(image.meta.get("modality", "MG"))
    flip = canonical_flip(plane, modality, image.meta.get("patient_orientation")) if orient else Flip(plane.shape)
    flipped = flip.image(chw, channels_last=False)
    h, w = plane.shape
    box = (0, h, 0, w)
    if crop and modality == "US" and image.meta.get("us_region"):
        x0, y0, x1, y1 = image.meta["us_region"]
        box = (max(0, y0), min(h, y1 + 1), max(0, x0), min(w, x1 + 1))
        if box[1] <= box[0] or box[3] <= box[2]:
            box = (0, h, 0, w)
    elif crop and modality != "US":
        box = breast_box(flip.image(plane, channels_last=False))
    geo = Geometry(flip, tuple(int(v) for v in box), (int(size[0]), int(size[1])))
    out = resize(flipped[..., box[0] : box[1], box[2] : box[3]], geo.size)
    if colour:
        out = np.moveaxis(out, -3, -1)
    return np.ascontiguousarray(out, dtype=np.float32), geo


def prepare_row(
    row: Mapping[str, Any], root: str | Path, size: tuple[int, int], crop: bool = True
) -> tuple[np.ndarray, Geometry, dict[str, Any]]:
    """Read a manifest row's image (``path`` relative to ``root``) and :func:`prepare` it; also returns meta."""
    p = Path(str(row["path"]))
    image = read_image(p if p.is_absolute() else Path(root) / p, row)
    arr, geo = prepare(image, size, crop=crop)
    return arr, geo, image.meta
