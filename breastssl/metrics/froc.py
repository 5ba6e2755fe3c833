"""FROC for 2D detection (mammography, ultrasound): predicted regions against GT lesions (DESIGN §6).

Rules, all explicit because published implementations differ on them:

* a prediction *hits* a lesion when IoU > ``iou_threshold`` (0.2), or, with ``criterion="center"``,
  when the prediction's centre lies in the lesion's box (mask, for the map variant);
* a lesion counts once: it is detected at threshold t when any prediction scoring ≥ t hits it;
  further hits of it (duplicates, second detections) are neither TPs nor FPs — they are ignored;
* a prediction that hits no lesion is a false positive; it is never a TP, whatever its score;
* FP per image divides by **all** images, normal ones and those without predictions included;
* the curve has one point per distinct score (tied predictions enter together), from (0, 0) at
  threshold +inf down to the lowest score, whose point (every prediction kept) is always present;
* sensitivity at 0.1, 0.2, 0.5, 1 FPPI is linearly interpolated between operating points (for a
  repeated FPPI the highest sensitivity is used); beyond the curve's last FPPI it stays at the last
  point's value, since lowering the threshold further adds nothing.

Everything is sort + cumulative counts: O((P + H) log P) for P predictions and H candidate hits.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage

FPPI_TARGETS: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0)
BOX = ["x", "y", "w", "h"]


@dataclass
class FrocResult:
    """An FROC curve: ``thresholds``, ``fppi`` and ``sensitivity`` are ``(k + 1,)``, first point at +inf."""

    thresholds: np.ndarray
    fppi: np.ndarray
    sensitivity: np.ndarray
    n_images: int
    n_lesions: int
    sensitivity_at: dict[float, float] = field(default_factory=dict)

    @property
    def mean_sensitivity(self) -> float:
        return float(np.mean(list(self.sensitivity_at.values()))) if self.sensitivity_at else math.nan

    def to_dict(self) -> dict:
        return {
            "n_images": self.n_images,
            "n_lesions": self.n_lesions,
            "sensitivity_at_fppi": {f"{k:g}": v for k, v in self.sensitivity_at.items()},
            "mean_sensitivity": self.mean_sensitivity,
            "curve": {"fppi": self.fppi.tolist(), "sensitivity": self.sensitivity.tolist()},
        }


def interpolate_sensitivity(fppi: np.ndarray, sens: np.ndarray, targets: Sequence[float]) -> dict[float, float]:
    """Sensitivity at each FPPI in ``targets``, linear between points, flat past the last point."""
    fppi_u, last = np.unique(fppi[::-1], return_index=True)  # highest sensitivity at each repeated FPPI
    sens_u = sens[::-1][last] if fppi.size else np.zeros(0)
    # the curve is monotone, so the first occurrence in the reversed arrays is the highest sensitivity
    if fppi_u.size == 0:
        return {float(t): math.nan for t in targets}
    return {float(t): float(np.interp(t, fppi_u, sens_u)) for t in targets}


def froc_from_hits(
    scores: np.ndarray,
    hit_pred: np.ndarray,
    hit_lesion: np.ndarray,
    n_lesions: int,
    n_images: int,
    targets: Sequence[float] = FPPI_TARGETS,
) -> FrocResult:
    """FROC from prediction scores ``(P,)`` and the (prediction, lesion) index pairs ``(H,)`` that hit."""
    scores = np.asarray(scores, dtype=float)
    if n_images < 1:
        raise ValueError(f"FROC needs at least one image, got n_images={n_images}")
    is_fp = np.ones(scores.size, dtype=bool)
    is_fp[hit_pred] = False
    detected_at = np.full(n_lesions, -np.inf)  # the best score of a prediction hitting each lesion
    np.maximum.at(detected_at, hit_lesion, scores[hit_pred])
    thresholds = np.unique(scores)[::-1]  # distinct scores, descending: ties are one operating point
    fp_sorted = np.sort(scores[is_fp])
    det_sorted = np.sort(detected_at)
    n_fp = fp_sorted.size - np.searchsorted(fp_sorted, thresholds, side="left")
    n_tp = det_sorted.size - np.searchsorted(det_sorted, thresholds, side="left")
    fppi = np.r_[0.0, n_fp / n_images]
    if n_lesions == 0:
        warnings.warn("FROC sensitivity is undefined without lesions; returning NaN", stacklevel=2)
        sens = np.full(fppi.size, math.nan)
    else:
        sens = np.r_[0.0, n_tp / n_lesions]
    result = FrocResult(np.r_[np.inf, thresholds], fppi, sens, int(n_images), int(n_lesions))
    result.sensitivity_at = (
        {float(t): math.nan for t in targets} if n_lesions == 0 else interpolate_sensitivity(fppi, sens, targets)
    )
    return result


def _codes(ids: pd.Series, image_ids: pd.Index, what: str) -> np.ndarray:
    codes = image_ids.get_indexer(ids.astype(str))
    if (codes < 0).any():
        unknown = pd.unique(ids.astype(str)[codes < 0])
        raise ValueError(f"{what} name {unknown.size} image(s) not in image_ids, e.g. {list(unknown[:5])}")
    return codes


def _pairs_by_image(pred_codes: np.ndarray, gt_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (prediction, lesion) index pairs in the same image, without Python loops."""
    order = np.argsort(gt_codes, kind="mergesort")
    start = np.searchsorted(gt_codes[order], pred_codes, side="left")
    stop = np.searchsorted(gt_codes[order], pred_codes, side="right")
    count = stop - start
    pred_idx = np.repeat(np.arange(pred_codes.size), count)
    offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return pred_idx, order[np.repeat(start, count) + offset]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of boxes ``(n, 4)`` given as x, y, w, h."""
    ix = np.clip(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = ix * iy
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def froc_2d(
    predictions: pd.DataFrame,
    lesions: pd.DataFrame,
    image_ids: Sequence[str],
    iou_threshold: float = 0.2,
    criterion: str = "iou",
    targets: Sequence[float] = FPPI_TARGETS,
) -> FrocResult:
    """FROC of predicted boxes against lesion boxes.

    predictions: ``image_id, x, y, w, h, score`` (one row per predicted region); lesions: ``image_id,
    x, y, w, h``; image_ids: every evaluated image (the FPPI denominator), normals included.
    """
    p_idx, g_idx = match_2d(predictions, lesions, image_ids, iou_threshold, criterion)
    n_images = len(pd.unique(pd.Series(list(image_ids), dtype=str)))
    return froc_from_hits(predictions["score"].to_numpy(float), p_idx, g_idx, len(lesions), n_images, targets)


def match_2d(
    predictions: pd.DataFrame,
    lesions: pd.DataFrame,
    image_ids: Sequence[str],
    iou_threshold: float = 0.2,
    criterion: str = "iou",
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions ``(pred_idx, lesion_idx)``, both ``(H,)``, of every prediction–lesion pair that hits."""
    if criterion not in {"iou", "center"}:
        raise ValueError(f"criterion must be 'iou' or 'center', got {criterion!r}")
    for df, name, cols in ((predictions, "predictions", [*BOX, "score"]), (lesions, "lesions", BOX)):
        missing = [c for c in ["image_id", *cols] if c not in df.columns]
        if missing:
            raise ValueError(f"{name} lack column(s) {missing}; have {list(df.columns)}")
    index = pd.Index(pd.unique(pd.Series(list(image_ids), dtype=str)))
    scores = predictions["score"].to_numpy(dtype=float)
    if not np.isfinite(scores).all():
        raise ValueError(
            f"prediction scores must be finite; bad rows {np.flatnonzero(~np.isfinite(scores))[:5].tolist()}"
        )
    p_idx, g_idx = _pairs_by_image(
        _codes(predictions["image_id"], index, "predictions"), _codes(lesions["image_id"], index, "lesions")
    )
    pb = predictions[BOX].to_numpy(dtype=float)[p_idx]
    gb = lesions[BOX].to_numpy(dtype=float)[g_idx]
    if criterion == "iou":
        hit = box_iou(pb, gb) > iou_threshold
    else:
        cx, cy = pb[:, 0] + pb[:, 2] / 2, pb[:, 1] + pb[:, 3] / 2
        hit = (cx >= gb[:, 0]) & (cx <= gb[:, 0] + gb[:, 2]) & (cy >= gb[:, 1]) & (cy <= gb[:, 1] + gb[:, 3])
    return p_idx[hit], g_idx[hit]


def regions_from_map(prob: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, pd.DataFrame]:
    """Connected components of ``prob >= threshold`` (``(H, W)``), each scored by its maximum.

    Returns the label image ``(H, W)`` (0 = background, k = region k) and a table ``x, y, w, h, score``
    with one row per region, in label order.
    """
    labels, n = ndimage.label(np.asarray(prob) >= threshold)
    if n == 0:
        return labels, pd.DataFrame({c: np.zeros(0) for c in [*BOX, "score"]})
    slices = ndimage.find_objects(labels)
    y0 = np.array([s[0].start for s in slices], float)
    x0 = np.array([s[1].start for s in slices], float)
    h = np.array([s[0].stop for s in slices], float) - y0
    w = np.array([s[1].stop for s in slices], float) - x0
    score = np.asarray(ndimage.maximum(prob, labels, np.arange(1, n + 1)), float)
    return labels, pd.DataFrame({"x": x0, "y": y0, "w": w, "h": h, "score": score})


def froc_2d_maps(
    prob_maps: Sequence[np.ndarray],
    lesion_masks: Sequence[np.ndarray],
    threshold: float = 0.5,
    iou_threshold: float = 0.2,
    criterion: str = "iou",
    targets: Sequence[float] = FPPI_TARGETS,
) -> FrocResult:
    """FROC of probability maps ``(H, W)`` against lesion masks ``(H, W)`` (one pair per image).

    Predicted regions are connected components of ``prob >= threshold`` scored by their maximum;
    lesions are connected components of each mask. IoU is measured on pixels; ``criterion="center"``
    asks the region's centre of mass to fall on a pixel of the lesion.
    """
    if len(prob_maps) != len(lesion_masks):
        raise ValueError(f"{len(prob_maps)} probability maps but {len(lesion_masks)} lesion masks")
    scores, hp, hl = [], [], []
    n_pred = n_les = 0
    for i, (prob, mask) in enumerate(zip(prob_maps, lesion_masks, strict=True)):
        if np.shape(prob) != np.shape(mask):
            raise ValueError(f"image {i}: probability map {np.shape(prob)} and mask {np.shape(mask)} differ")
        plab, regions = regions_from_map(prob, threshold)
        glab, n_g = ndimage.label(np.asarray(mask) > 0)
        n_p = len(regions)
        if criterion == "iou":
            joint = np.bincount((plab * (n_g + 1) + glab).ravel(), minlength=(n_p + 1) * (n_g + 1))
            joint = joint.reshape(n_p + 1, n_g + 1)
            inter = joint[1:, 1:]
            union = joint[1:, :].sum(1)[:, None] + joint[:, 1:].sum(0)[None, :] - inter
            p, g = np.nonzero(inter / np.maximum(union, 1) > iou_threshold)
        else:
            com = ndimage.center_of_mass(np.ones_like(plab), plab, np.arange(1, n_p + 1)) if n_p else []
            at = np.array([glab[int(round(r)), int(round(c))] for r, c in com], dtype=int)
            p = np.flatnonzero(at > 0)
            g = at[p] - 1 if p.size else np.zeros(0, int)
        scores.append(regions["score"].to_numpy())
        hp.append(p + n_pred)
        hl.append(g + n_les)
        n_pred, n_les = n_pred + n_p, n_les + n_g
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    return froc_from_hits(cat(scores, float), cat(hp, int), cat(hl, int), n_les, len(prob_maps), targets)
