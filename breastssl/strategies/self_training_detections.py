"""Per-image detections of one self-training run, kept so that its FROC can be bootstrapped (DESIGN §11).

``froc_swept`` (self_training_lesions) reduces a run's maps to one curve; a CI over test cases needs the
pieces that curve is summed from, image by image, so that every bootstrap replicate can re-weigh them
without re-reading the maps. The pieces, at the run's lesion threshold t:

* every region of {p ≥ t} (connected component, scored by its maximum): its image and whether it hits a
  lesion (IoU > 0.2; a hitting region is never a false positive, whatever its score);
* every GT lesion: its image and the best score of a region hitting it (−inf: missed at t);

and at each lower region threshold g of the sweep only the curve's last point matters (all regions kept),
so per image: false-positive regions and lesions hit. The matching is the one of ``froc_2d_maps``; a test
checks that :func:`weighted_froc` with unit weights equals ``froc_swept``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..metrics import FPPI_TARGETS
from ..metrics.froc import interpolate_sensitivity, regions_from_map
from .self_training_lesions import FROC_GRID

METRIC_NAMES: tuple[str, ...] = (*(f"{t:g}" for t in FPPI_TARGETS), "mean")  # columns of weighted_froc


@dataclass
class Detections:
    """One run's detections on one evaluation set of N images (P regions at t, L lesions, G lower thresholds)."""

    image_ids: np.ndarray  # (N,) str, the evaluation set's order
    n_lesions: np.ndarray  # (N,) int, GT lesions per image
    threshold: float  # t: the regions below are {p ≥ t}
    region_image: np.ndarray  # (P,) int, image of each region
    region_score: np.ndarray  # (P,) float, its maximum probability
    region_hit: np.ndarray  # (P,) bool, hits some lesion (IoU > iou)
    lesion_image: np.ndarray  # (L,) int, image of each lesion
    lesion_score: np.ndarray  # (L,) float, best score of a region hitting it, -inf when none does
    grid: np.ndarray  # (G,) float, lower region thresholds, descending
    grid_fp: np.ndarray  # (G, N) int, false-positive regions per image at each lower threshold
    grid_hit: np.ndarray  # (G, N) int, lesions hit per image at each lower threshold

    def save(self, path: str | Path) -> None:
        """One ``.npz`` (written to a temporary name first, so a killed run leaves no half file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in self.__dict__.items()})
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Detections:
        with np.load(path, allow_pickle=False) as z:
            return cls(**{k: (z[k].item() if k == "threshold" else z[k]) for k in z.files})


def _match(prob: np.ndarray, mask: np.ndarray, threshold: float, iou: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Regions of prob (H, W) at ``threshold`` against the lesions of mask (H, W), as in ``froc_2d_maps``.

    Returns region scores (R,), the hit matrix (R, K) bool (IoU > iou) and K, the number of lesions.
    """
    plab, regions = regions_from_map(prob, threshold)
    glab, n_g = ndimage.label(np.asarray(mask) > 0)
    n_p = len(regions)
    joint = np.bincount((plab * (n_g + 1) + glab).ravel(), minlength=(n_p + 1) * (n_g + 1)).reshape(n_p + 1, n_g + 1)
    inter = joint[1:, 1:]
    union = joint[1:, :].sum(1)[:, None] + joint[:, 1:].sum(0)[None, :] - inter
    return regions["score"].to_numpy(float), inter / np.maximum(union, 1) > iou, n_g


def image_detections(
    maps: np.ndarray,
    masks: np.ndarray,
    threshold: float,
    image_ids: Sequence[str],
    grid: Sequence[float] = FROC_GRID,
    iou_threshold: float = 0.2,
) -> Detections:
    """The :class:`Detections` of maps (N, H, W) against masks (N, H, W) at lesion threshold t over ``grid``."""
    lower = np.array(sorted((g for g in grid if g < threshold), reverse=True), float)
    n = len(maps)
    r_img, r_score, r_hit, l_img, l_score = [], [], [], [], []
    n_les = np.zeros(n, int)
    g_fp, g_hit = np.zeros((len(lower), n), int), np.zeros((len(lower), n), int)
    for i, (prob, mask) in enumerate(zip(maps, masks, strict=True)):
        scores, hit, n_les[i] = _match(prob, mask, threshold, iou_threshold)
        r_img.append(np.full(len(scores), i))
        r_score.append(scores)
        r_hit.append(hit.any(axis=1))
        l_img.append(np.full(n_les[i], i))
        l_score.append(
            np.where(hit, scores[:, None], -np.inf).max(axis=0) if len(scores) else np.full(n_les[i], -np.inf)
        )
        for j, g in enumerate(lower):
            _, hit_g, _ = _match(prob, mask, g, iou_threshold)
            g_fp[j, i], g_hit[j, i] = int((~hit_g.any(axis=1)).sum()), int(hit_g.any(axis=0).sum())
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    return Detections(np.asarray(image_ids, str), n_les, float(threshold), cat(r_img, int), cat(r_score, float),
                      cat(r_hit, bool), cat(l_img, int), cat(l_score, float), lower, g_fp, g_hit)  # fmt: skip


def _weighted_counts(scores: np.ndarray, images: np.ndarray, thresholds: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ w[image] over the items with score ≥ each threshold: (B, K) from scores (M,), images (M,), w (B, N)."""
    order = np.argsort(scores, kind="stable")
    cum = np.zeros((w.shape[0], len(order) + 1))
    np.cumsum(w[:, images[order]], axis=1, out=cum[:, 1:])
    first = np.searchsorted(scores[order], thresholds, side="left")  # items from here on score ≥ threshold
    return cum[:, -1:] - cum[:, first]


def weighted_froc(det: Detections, weights: np.ndarray, chunk: int = 250) -> np.ndarray:
    """Sensitivity at 0.1/0.2/0.5/1 FPPI and their mean under each row of image weights (B, N): (B, 5).

    A replicate weighs image i by w_i (its resampling count): sensitivity = Σ w·hits / Σ w·lesions,
    FPPI = Σ w·FP / Σ w. The curve is ``froc_swept``'s: the score sweep of the regions at t (one point per
    distinct score, from (0, 0)), then one point per lower threshold, upper envelope, linear interpolation.
    One sort of the scores serves every replicate; replicates are processed ``chunk`` at a time to bound memory.
    """
    weights = np.atleast_2d(np.asarray(weights, float))
    thresholds = np.unique(det.region_score)[::-1]  # distinct scores, descending: ties are one operating point
    fp = ~det.region_hit
    out = np.zeros((len(weights), len(METRIC_NAMES)))
    for lo in range(0, len(weights), chunk):
        w = weights[lo : lo + chunk]
        total, lesions = w.sum(axis=1), w @ det.n_lesions
        fppi = np.c_[np.zeros(len(w)), _weighted_counts(det.region_score[fp], det.region_image[fp], thresholds, w)]
        sens = np.c_[np.zeros(len(w)), _weighted_counts(det.lesion_score, det.lesion_image, thresholds, w)]
        fppi = np.c_[fppi, w @ det.grid_fp.T] / total[:, None]
        sens = np.c_[sens, w @ det.grid_hit.T] / lesions[:, None]
        for b in range(len(w)):
            order = np.argsort(fppi[b], kind="stable")
            at = interpolate_sensitivity(fppi[b][order], np.maximum.accumulate(sens[b][order]), FPPI_TARGETS)
            vals = [at[t] for t in FPPI_TARGETS]
            out[lo + b] = [*vals, float(np.mean(vals))]
    return out
