"""One notion of "the model found a lesion" at a probability threshold t, for mining, evaluation and predict.

A dense CRF decides posterior > 0.5, while lesion regions are taken at p ≥ t; on focal-loss maps, whose
lesion probabilities stay well below 0.5, the two disagree. ``lesion_masks`` recalibrates the map so that t
sits at 0.5 (p' = σ(logit p − logit t)) before the CRF, then keeps only the CRF regions that hold a pixel
p ≥ t: every mask-positive image also has a region that the FROC (and ``predict``) reports at t.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .crf import CRFParams
from .crf_batch import crf_masks


def recalibrate(maps: np.ndarray, threshold: float) -> np.ndarray:
    """Maps (N, H, W) in [0, 1] shifted in logit space so that ``threshold`` becomes 0.5; float32, same shape."""
    p = np.clip(np.asarray(maps, dtype=np.float64), 1e-6, 1 - 1e-6)
    shift = np.log(threshold / (1 - threshold))
    return (1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) - shift)))).astype(np.float32)


def keep_supported(mask: np.ndarray, prob: np.ndarray, threshold: float) -> np.ndarray:
    """The connected regions of ``mask`` (H, W) bool holding at least one pixel with prob (H, W) ≥ threshold."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, bool)
    supported = np.zeros(n + 1, bool)
    supported[np.unique(labels[(prob >= threshold) & (labels > 0)])] = True
    supported[0] = False
    return supported[labels]


def lesion_masks(
    maps: np.ndarray, images: np.ndarray, params: CRFParams, min_area: int, threshold: float
) -> np.ndarray:
    """Mining masks (N, H, W) bool of maps (N, H, W) over images (N, H, W) at ``lesion_threshold``.

    CRF of the recalibrated maps (regions < min_area px removed), restricted to regions the map supports at t.
    """
    crf = crf_masks(recalibrate(maps, threshold), images, params, min_area)
    return np.stack([keep_supported(crf[i], maps[i], threshold) for i in range(len(maps))]).reshape(maps.shape)
