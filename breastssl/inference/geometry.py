"""Between the model's frame and the stored (source) image: boxes, points and maps, in pure NumPy.

A prediction is made on the image as the model saw it: the stored image, flipped to the canonical orientation,
cropped and resized (:class:`breastssl.data.preprocess.Geometry`; DBT stacks are resized only, ultrasound frames
are used as stored). The *geometry* dict of ``breastssl predict``'s ``views/<id>.npz`` files describes that
transform in plain JSON::

    {"source_shape": [rows, cols], "flip": {"horizontal": bool, "vertical": bool},
     "crop": [y0, y1, x0, x1], "size": [h, w]}

meaning: the source image (rows × cols) is flipped, then cropped to rows ``y0:y1`` and columns ``x0:x1`` of the
flipped image, then resized to (h, w). Coordinates are pixel-edge coordinates (pixel ``i`` spans ``[i, i + 1)``,
the convention of DICOM SCOORD), so a box ``x, y, w, h`` covers columns ``x … x + w`` and rows ``y … y + h``.
The functions here undo the transform: :func:`model_to_source_boxes`, :func:`model_to_source_points` and
:func:`map_to_source` (a probability map or mask back on the source pixel grid).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

Geometry = dict[str, Any]  # the JSON dict described in the module docstring


def make_geometry(
    source_shape: tuple[int, int],
    size: tuple[int, int] | None = None,
    crop: tuple[int, int, int, int] | None = None,
    horizontal: bool = False,
    vertical: bool = False,
) -> Geometry:
    """A geometry dict; ``size`` defaults to the crop's size (no resize), ``crop`` to the whole image."""
    rows, cols = int(source_shape[0]), int(source_shape[1])
    y0, y1, x0, x1 = (0, rows, 0, cols) if crop is None else (int(v) for v in crop)
    if not (0 <= y0 < y1 <= rows and 0 <= x0 < x1 <= cols):
        raise ValueError(f"crop {[y0, y1, x0, x1]} does not lie inside a {rows} × {cols} image")
    h, w = (y1 - y0, x1 - x0) if size is None else (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {[h, w]}")
    return {"source_shape": [rows, cols], "flip": {"horizontal": bool(horizontal), "vertical": bool(vertical)},
            "crop": [y0, y1, x0, x1], "size": [h, w]}  # fmt: skip


def from_preprocess(geo: Any) -> Geometry:
    """The dict of a :class:`breastssl.data.preprocess.Geometry` (its flip carries the source shape)."""
    return make_geometry(geo.flip.shape, geo.size, geo.crop, geo.flip.horizontal, geo.flip.vertical)


def _parts(g: Mapping[str, Any]) -> tuple[int, int, int, int, int, int, float, float, bool, bool]:
    """rows, cols, y0, x0, y1, x1, sy, sx (model pixels per source pixel), horizontal, vertical."""
    rows, cols = (int(v) for v in g["source_shape"])
    y0, y1, x0, x1 = (int(v) for v in g["crop"])
    h, w = (int(v) for v in g["size"])
    flip = g.get("flip") or {}
    hor, ver = bool(flip.get("horizontal")), bool(flip.get("vertical"))
    return rows, cols, y0, x0, y1, x1, h / (y1 - y0), w / (x1 - x0), hor, ver


def source_to_model_boxes(boxes: np.ndarray, g: Mapping[str, Any]) -> np.ndarray:
    """(N, 4) ``x, y, w, h`` boxes of the source image → the model frame (as ``Geometry.boxes`` maps them)."""
    rows, cols, y0, x0, _, _, sy, sx, hor, ver = _parts(g)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    if hor:
        b[:, 0] = cols - (b[:, 0] + b[:, 2])
    if ver:
        b[:, 1] = rows - (b[:, 1] + b[:, 3])
    b[:, 0] = (b[:, 0] - x0) * sx
    b[:, 1] = (b[:, 1] - y0) * sy
    b[:, 2] *= sx
    b[:, 3] *= sy
    return b


def model_to_source_boxes(boxes: np.ndarray, g: Mapping[str, Any]) -> np.ndarray:
    """(N, 4) ``x, y, w, h`` boxes of the model frame → (N, 4) boxes in source pixels (the inverse of the above)."""
    rows, cols, y0, x0, _, _, sy, sx, hor, ver = _parts(g)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, 0] = b[:, 0] / sx + x0
    b[:, 1] = b[:, 1] / sy + y0
    b[:, 2] /= sx
    b[:, 3] /= sy
    if hor:  # a flip is its own inverse, and the flipped image has the source's shape
        b[:, 0] = cols - (b[:, 0] + b[:, 2])
    if ver:
        b[:, 1] = rows - (b[:, 1] + b[:, 3])
    return b


def model_to_source_points(points: np.ndarray, g: Mapping[str, Any]) -> np.ndarray:
    """(N, 2) ``x, y`` points (pixel-edge coordinates) of the model frame → (N, 2) source coordinates."""
    rows, cols, y0, x0, _, _, sy, sx, hor, ver = _parts(g)
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2).copy()
    p[:, 0] = p[:, 0] / sx + x0
    p[:, 1] = p[:, 1] / sy + y0
    if hor:
        p[:, 0] = cols - p[:, 0]
    if ver:
        p[:, 1] = rows - p[:, 1]
    return p


def _axis(n_source: int, start: int, stop: int, scale: float, flipped: bool) -> tuple[np.ndarray, np.ndarray]:
    """For each source index along one axis: its continuous model coordinate (pixel centres at integers) and
    whether it lies inside the crop ``start:stop`` (of the flipped image)."""
    idx = np.arange(n_source)
    idx = n_source - 1 - idx if flipped else idx
    # the resize maps pixel centres as F.interpolate(align_corners=False) does: u = (i + 0.5) · scale − 0.5
    return (idx - start + 0.5) * scale - 0.5, (idx >= start) & (idx < stop)


def map_to_source(arr: np.ndarray, g: Mapping[str, Any], mode: str | None = None) -> np.ndarray:
    """A model-frame map (h, w) or stack (S, h, w) → the same on the source grid (rows, cols) or (S, rows, cols).

    ``mode``: "bilinear" (the default for float maps, e.g. probabilities) or "nearest" (the default for integer
    and boolean masks, which keep their dtype). Source pixels outside the crop are 0.
    """
    a = np.asarray(arr)
    rows, cols, y0, x0, y1, x1, sy, sx, hor, ver = _parts(g)
    h, w = (int(v) for v in g["size"])
    if a.shape[-2:] != (h, w):
        raise ValueError(f"map of shape {a.shape} does not match the geometry's model size {[h, w]}")
    mode = mode or ("bilinear" if a.dtype.kind == "f" else "nearest")
    ry, in_y = _axis(rows, y0, y1, sy, ver)
    rx, in_x = _axis(cols, x0, x1, sx, hor)
    if mode == "nearest":
        iy = np.clip(np.floor(ry + 0.5), 0, h - 1).astype(int)
        ix = np.clip(np.floor(rx + 0.5), 0, w - 1).astype(int)
        out = a[..., iy[:, None], ix[None, :]]
    elif mode == "bilinear":
        a = a.astype(np.float32, copy=False)
        cy, cx = np.clip(ry, 0, h - 1), np.clip(rx, 0, w - 1)  # border pixels are clamped, as in the resize
        iy0, ix0 = np.floor(cy).astype(int), np.floor(cx).astype(int)
        iy1, ix1 = np.minimum(iy0 + 1, h - 1), np.minimum(ix0 + 1, w - 1)
        wy, wx = (cy - iy0).astype(np.float32)[:, None], (cx - ix0).astype(np.float32)[None, :]
        top = a[..., iy0[:, None], ix0[None, :]] * (1 - wx) + a[..., iy0[:, None], ix1[None, :]] * wx
        bottom = a[..., iy1[:, None], ix0[None, :]] * (1 - wx) + a[..., iy1[:, None], ix1[None, :]] * wx
        out = top * (1 - wy) + bottom * wy
    else:
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    keep = in_y[:, None] & in_x[None, :]
    return np.where(keep, out, np.zeros((), out.dtype)).astype(out.dtype, copy=False)


def save_view(path: Path, image: np.ndarray, prob: np.ndarray | None, g: Mapping[str, Any]) -> None:
    """Write a ``views/<id>.npz``: ``image`` and ``prob`` (S, h, w) or (h, w) in [0, 1] as uint8 × 255."""
    arrays: dict[str, np.ndarray] = {"image": _uint8(image), "geometry": np.array(json.dumps(dict(g)))}
    if prob is not None:
        arrays["prob"] = _uint8(prob)
    with open(path, "wb") as fh:  # a file object: np.savez_compressed would add ".npz" to a name without it
        np.savez_compressed(fh, **arrays)


def _uint8(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8).reshape(-1, *a.shape[-2:])


def load_view(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, Geometry]:
    """``(image, prob or None, geometry)`` of a ``views/<id>.npz``: uint8 (S, h, w) arrays as stored
    (divide by 255 for probabilities) and the geometry dict."""
    with np.load(path, allow_pickle=False) as z:
        image = z["image"]
        prob = z["prob"] if "prob" in z.files else None
        g = json.loads(str(z["geometry"]))
    return image, prob, g
