"""One notion of "the model found a lesion" for mining and evaluation (seed 002): ``lesion_threshold`` t.

Mining: an image is mask-positive when its CRF mask holds a region that the map supports at t. The CRF's
unary is the map recalibrated so that t sits at 0.5 (p' = σ(logit p − logit t)): its own decision
(posterior > 0.5) then starts from the same boundary as the map's regions {p ≥ t}, and the pairwise terms
only clean it. CRF regions without a pixel p ≥ t are dropped, so every mask-positive image also has a
region the FROC would report at t. A CRF at a fixed 0.5 on focal-loss maps, whose lesion probabilities
stay well below 0.5 (α = 0.25 weighs positives by a third of negatives), sent NLP-positive images to FN
while the FROC, at 0.25, counted the same lesions as found.

Evaluation: the FROC curve is the score sweep of the regions {p ≥ t} (each scored by its maximum),
continued past its last point (every region at t kept) by lowering the region threshold over a grid:
each lower threshold adds one operating point, so the curve reaches FPPI beyond what a single extraction
threshold allows instead of plateauing. Lower thresholds grow and merge regions, so a point can lose
sensitivity (IoU ≤ 0.2) while adding false positives; the curve is the upper envelope (sensitivity at x
FPPI = the best of the operating points with ≤ x FPPI, as the flat tail of a single-threshold FROC
already assumes), and ``sweep`` keeps every point as measured. ``lesions_below`` counts the lesions the
model cannot find at t.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from ..metrics import FPPI_TARGETS, froc_2d_maps
from ..metrics.froc import interpolate_sensitivity
from ..postprocess.lesion_masks import keep_supported, lesion_masks, recalibrate

__all__ = ["FROC_GRID", "froc_swept", "keep_supported", "lesion_masks", "lesion_peaks", "lesions_below", "recalibrate"]

# region thresholds below t that extend the FROC curve (those ≥ t are ignored)
FROC_GRID: tuple[float, ...] = (0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02, 0.01)


def lesion_peaks(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Maximum probability (L,) inside each GT lesion (connected component of masks (N, H, W)), image by image."""
    peaks = []
    for prob, mask in zip(maps, masks, strict=True):
        labels, n = ndimage.label(np.asarray(mask) > 0)
        if n:
            peaks.append(np.asarray(ndimage.maximum(prob, labels, np.arange(1, n + 1)), float).reshape(n))
    return np.concatenate(peaks) if peaks else np.zeros(0)


def froc_swept(
    maps: np.ndarray,
    masks: np.ndarray,
    threshold: float,
    grid: Sequence[float] = FROC_GRID,
    iou_threshold: float = 0.2,
) -> dict[str, Any]:
    """FROC of maps (N, H, W) against masks (N, H, W) at lesion threshold t, extended over ``grid`` (see above).

    Returns ``sens`` (at 0.1/0.2/0.5/1 FPPI), ``mean``, ``curve`` (fppi, sensitivity: the upper envelope of all
    operating points, both non-decreasing), ``sweep`` (one operating point per region threshold, t first, as
    measured), ``n_images``, ``n_lesions``. Sensitivity is linear between the curve's points, flat past the last.
    """
    base = froc_2d_maps(list(maps), list(masks), threshold=threshold, iou_threshold=iou_threshold)
    fppi, sens = list(base.fppi), list(base.sensitivity)
    sweep = [{"threshold": threshold, "fppi": float(base.fppi[-1]), "sensitivity": float(base.sensitivity[-1])}]
    for t in sorted((t for t in grid if t < threshold), reverse=True):
        res = froc_2d_maps(list(maps), list(masks), threshold=t, iou_threshold=iou_threshold)
        # all regions at t are kept: the last point of that threshold's own curve
        fppi.append(float(res.fppi[-1]))
        sens.append(float(res.sensitivity[-1]))
        sweep.append({"threshold": t, "fppi": fppi[-1], "sensitivity": sens[-1]})
    order = np.argsort(fppi, kind="stable")
    env_fppi, env_sens = np.asarray(fppi)[order], np.maximum.accumulate(np.asarray(sens)[order])
    at = interpolate_sensitivity(env_fppi, env_sens, FPPI_TARGETS)
    return {
        "sens": {f"{t:g}": at[t] for t in FPPI_TARGETS},
        "mean": float(np.mean(list(at.values()))),
        "curve": {"fppi": env_fppi.tolist(), "sensitivity": env_sens.tolist()},
        "sweep": sweep,
        "n_images": base.n_images,
        "n_lesions": base.n_lesions,
    }


def lesions_below(maps: np.ndarray, masks: np.ndarray, threshold: float) -> float:
    """Share of GT lesions of masks (N, H, W) whose maximum probability in maps (N, H, W) is below ``threshold``."""
    peaks = lesion_peaks(maps, masks)
    return float((peaks < threshold).mean()) if peaks.size else float("nan")
