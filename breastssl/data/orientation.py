"""Laterality from the image, and normalisation to one canonical orientation: chest wall on the left.

Mammograms and DBT slices are stored with the chest wall on either side (by convention a left breast
has its chest wall on the image's left, a right breast on the right, but vendors and archives vary).
:func:`chest_wall_side` finds it from the pixels (the tissue is on the chest-wall side), and
:class:`Flip` is the transform that brings an image to the canonical orientation; the same object maps
lesion boxes and masks, so annotations follow the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_CONFIDENCE = 0.1  # |left − right| / (left + right) below this: the image does not say which side


def _plane(pixels: np.ndarray) -> np.ndarray:
    """A 2-D (H, W) summary of (H, W), (D, H, W) or (H, W, 3) pixels (mean over slices / channels)."""
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
        return arr.mean(axis=-1)
    if arr.ndim == 3:
        return arr.mean(axis=0)
    if arr.ndim != 2:
        raise ValueError(f"expected (H, W), (D, H, W) or (H, W, 3) pixels, got shape {arr.shape}")
    return arr


def chest_wall_side(pixels: np.ndarray) -> tuple[str, float]:
    """Which side of the image holds the chest wall, and how sure: ("left" | "right", confidence in [0, 1]).

    ``pixels`` are display values (bright = tissue, e.g. a reader's windowed output). The breast is
    attached to the chest wall along the whole image height and narrows toward the nipple, so the
    outer third with more signal is the chest-wall side.
    """
    plane = _plane(pixels)
    w = plane.shape[1]
    third = max(1, w // 3)
    left, right = float(plane[:, :third].mean()), float(plane[:, w - third :].mean())
    total = abs(left) + abs(right)
    confidence = abs(left - right) / total if total > 0 else 0.0
    return ("left" if left >= right else "right"), float(confidence)


def laterality_from_image(pixels: np.ndarray) -> tuple[str | None, float]:
    """L or R assuming the display convention (left breast: chest wall on the left); None if unclear."""
    side, conf = chest_wall_side(pixels)
    if conf < MIN_CONFIDENCE:
        return None, conf
    return ("L" if side == "left" else "R"), conf


def resolve_laterality(
    tag: str | None, pixels: np.ndarray, patient_orientation: list[str] | None = None
) -> tuple[str | None, str]:
    """Laterality and where it came from: ("L" | "R" | None, "tag" | "image" | "tag (image unclear)" | ...).

    A tag is trusted when the image agrees with it under the display convention, or when the file's
    PatientOrientation says the image is stored mirrored (row direction A for a right breast, P for a
    left one). A tag contradicted by a clear image with no such explanation is taken to be wrong.
    """
    from_image, conf = laterality_from_image(pixels)
    if tag is None:
        return from_image, "image" if from_image else "unknown"
    if from_image is None:
        return tag, "tag (image unclear)"
    if from_image == tag:
        return tag, "tag"
    row_dir = (patient_orientation or [""])[0].upper()[:1]
    if (tag == "R" and row_dir == "A") or (tag == "L" and row_dir == "P"):
        return tag, "tag (stored mirrored per PatientOrientation)"
    return from_image, f"image (tag {tag} contradicted by image)"


# The pectoral muscle shows on MLO-type views as a bright triangle in the upper chest-wall corner; on CC
# views that corner is air, skin edge or ordinary tissue. The ratio of that corner's mean to the breast's
# median separates the views; a tag is contradicted only on much stronger evidence than a missing tag needs.
MLO_VIEWS = {"MLO", "ML", "LM", "LMO", "SIO"}
CC_VIEWS = {"CC", "XCCL", "XCCM", "FB"}
RATIO_MLO, RATIO_CC = 1.1, 0.9  # no tag: MLO above, CC below, unclear between
OVERRIDE_MLO, OVERRIDE_CC = 1.5, 0.5  # a contradicting tag is overruled only beyond these


def pectoral_ratio(pixels: np.ndarray) -> float | None:
    """Mean of the upper chest-wall corner (12% × 10%) over the breast's median; None if unclear.

    ``pixels``: display values (bright = tissue), (H, W), (D, H, W) or (H, W, 3).
    """
    plane = _plane(pixels)
    side, conf = chest_wall_side(plane)
    if conf < MIN_CONFIDENCE or not np.isfinite(plane).all():
        return None
    if side == "right":
        plane = plane[:, ::-1]
    h, w = plane.shape
    top = float(plane.max())
    body = plane[plane > 0.1 * top] if top > 0 else plane[:0]
    if body.size < 16:
        return None
    corner = plane[: max(1, round(h * 0.12)), : max(1, round(w * 0.10))]
    return float(corner.mean() / (np.median(body) + 1e-6))


def view_from_image(pixels: np.ndarray) -> tuple[str | None, float | None]:
    """("MLO" | "CC" | None, the pectoral ratio) for a mammogram or DBT stack."""
    ratio = pectoral_ratio(pixels)
    if ratio is None or RATIO_CC <= ratio <= RATIO_MLO:
        return None, ratio
    return ("MLO" if ratio > RATIO_MLO else "CC"), ratio


def resolve_view(tag: str | None, pixels: np.ndarray) -> tuple[str | None, str]:
    """The view and where it came from: ("CC" | "MLO" | tag | None, "tag" | "image" | ...).

    A missing tag is filled from the image; a tag is kept unless the image strongly shows the other
    family (a pectoral muscle on a "CC", none at all on an "MLO").
    """
    guess, ratio = view_from_image(pixels)
    if tag is None:
        return guess, "image" if guess else "unknown"
    if ratio is not None and tag in CC_VIEWS and ratio > OVERRIDE_MLO:
        return "MLO", f"image (tag {tag} contradicted: pectoral muscle visible)"
    if ratio is not None and tag in MLO_VIEWS and ratio < OVERRIDE_CC:
        return "CC", f"image (tag {tag} contradicted: no pectoral muscle)"
    return tag, "tag"


@dataclass(frozen=True)
class Flip:
    """A horizontal and/or vertical flip of an (H, W) image plane; maps images, boxes and masks alike.

    ``shape`` is the (H, W) of the image it was computed for. Flips are their own inverse.
    """

    shape: tuple[int, int]
    horizontal: bool = False
    vertical: bool = False

    def image(self, arr: np.ndarray, channels_last: bool | None = None) -> np.ndarray:
        """Flip (H, W), (D, H, W) or (H, W, C) pixels; ``channels_last`` defaults to trailing dim in (3, 4)."""
        arr = np.asarray(arr)
        if channels_last is None:
            channels_last = arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[:2] == self.shape
        h_axis, w_axis = (arr.ndim - 3, arr.ndim - 2) if channels_last else (arr.ndim - 2, arr.ndim - 1)
        if arr.shape[h_axis] != self.shape[0] or arr.shape[w_axis] != self.shape[1]:
            raise ValueError(f"flip computed for shape {self.shape}, applied to an array of shape {arr.shape}")
        if self.horizontal:
            arr = np.flip(arr, axis=w_axis)
        if self.vertical:
            arr = np.flip(arr, axis=h_axis)
        return np.ascontiguousarray(arr)

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """Flip a (H, W) or (D, H, W) mask the same way as the image."""
        return self.image(mask, channels_last=False)

    def boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Map (N, 4) boxes ``x, y, w, h`` in pixel-edge coordinates (a pixel i spans [i, i+1))."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        h, w = self.shape
        if self.horizontal:
            b[:, 0] = w - (b[:, 0] + b[:, 2])
        if self.vertical:
            b[:, 1] = h - (b[:, 1] + b[:, 3])
        return b

    def points(self, xy: np.ndarray) -> np.ndarray:
        """Map (N, 2) points ``x, y`` in pixel-edge coordinates."""
        p = np.asarray(xy, dtype=np.float64).reshape(-1, 2).copy()
        if self.horizontal:
            p[:, 0] = self.shape[1] - p[:, 0]
        if self.vertical:
            p[:, 1] = self.shape[0] - p[:, 1]
        return p


def canonical_flip(pixels: np.ndarray, modality: str = "MG", patient_orientation: list[str] | None = None) -> Flip:
    """The flip that puts the chest wall on the left (identity for ultrasound).

    The horizontal flip follows the image (:func:`chest_wall_side`); a vertical flip is added when
    the file's PatientOrientation column direction is H (head), i.e. the image is stored upside down.
    """
    plane = _plane(pixels)
    shape = (int(plane.shape[0]), int(plane.shape[1]))
    if modality == "US":
        return Flip(shape)
    side, _ = chest_wall_side(plane)
    col_dir = (patient_orientation or ["", ""])[-1].upper()[:1] if patient_orientation else ""
    return Flip(shape, horizontal=side == "right", vertical=col_dir == "H")
