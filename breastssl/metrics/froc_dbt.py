"""FROC of 3D detections in DBT volumes by the BCS-DBT challenge rule (DESIGN §6).

Our own vectorised implementation of the semantics of the challenge's published evaluation
(``evaluate``, ``_froc``, ``_is_tp`` and ``_distance`` in ``duke_dbt_data.py`` of
mazurowski-lab/duke-dbt-data); it matches that code on the same inputs, behaviour by behaviour:

1. **Keys.** A view is identified by ``(StudyUID, View)``; ``PatientID`` is not used for matching.
2. **Hit.** A prediction (X, Y, Width, Height, Z, Depth) hits a GT box (X, Y, Width, Height, Slice) of
   the same view when the 2D distance between box centres ≤ max(½ GT diagonal, 100 px) **and**
   |Z + Depth/2 − Slice| ≤ VolumeSlices/4, where VolumeSlices is taken from the view's first box.
   Both comparisons are inclusive.
3. **Several GT boxes in a view.** A prediction hitting several boxes is assigned to the one at the
   smallest *3D* centre distance (x, y and z − Slice, in pixels/slices); on an exact tie, the box
   that comes first in the boxes table.
4. **Predictions in views without boxes** (normal, benign-free, or unknown views) are FPs.
5. **Each GT counted once.** At a threshold, TPs = distinct GT boxes assigned to a kept prediction;
   further predictions assigned to an already-found box are ignored (neither TP nor FP).
6. **Threshold sweep.** The thresholds are max(Score)+1, the score of every TP prediction (repeats
   kept) and min(Score)−1 over *all* predictions, taken in descending order; a prediction is kept when
   Score ≥ threshold, so tied scores enter together. The sweep stops after the first point whose
   FP/volume exceeds the largest evaluation rate (that point is kept).
7. **Interpolation.** ``numpy.interp`` over the swept (FP/volume, sensitivity) points, so rates
   beyond the last point take its sensitivity.
8. **"all" vs "positive".** Sensitivity at 2 FP/volume over *all* volumes: FPs from every
   prediction, divided by the number of rows of ``labels``. At 1, 2, 3, 4 FP/volume over *positive*
   volumes: only predictions in views that have boxes, divided by the number of ``labels`` rows whose
   view has boxes. Sensitivity always divides by the number of rows of ``boxes``.

Deviations, where the published code would crash or give no number: no predictions → sensitivity
0; no boxes or no (positive) volumes → NaN with a warning. Non-finite values raise ``ValueError``.
Matching and the sweep are sorts, ``searchsorted`` and cumulative counts; no loop over rows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .froc import _pairs_by_image

PRED_COLUMNS = ["StudyUID", "View", "X", "Y", "Width", "Height", "Z", "Depth", "Score"]
BOX_COLUMNS = ["StudyUID", "View", "Slice", "X", "Y", "Width", "Height", "VolumeSlices"]
LABEL_COLUMNS = ["StudyUID", "View"]
FPS_ALL: tuple[float, ...] = (2.0,)
FPS_POSITIVE: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
MIN_DIST = 100.0


def _check(df: pd.DataFrame, cols: list[str], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lack column(s) {missing}; have {list(df.columns)}")
    num = [c for c in cols if c not in ("StudyUID", "View")]
    values = df[num].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} hold missing or non-finite numbers in rows {np.flatnonzero(bad)[:5].tolist()}")


def _keys(df: pd.DataFrame) -> pd.Series:
    return df["StudyUID"].astype(str) + "\x1f" + df["View"].astype(str)


def match_dbt(predictions: pd.DataFrame, boxes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Assign each prediction to the GT box it hits: ``(tp, gtid)``, both ``(P,)``; ``gtid`` is the box's
    row position (−1 when the prediction is a false positive). Rules 1–4 of the module docstring."""
    box_keys = _keys(boxes)
    views = pd.Index(pd.unique(box_keys))
    g_view = views.get_indexer(box_keys)
    p_view = views.get_indexer(_keys(predictions))  # -1: view without boxes, so no candidate pairs
    p_idx, g_idx = _pairs_by_image(p_view, g_view)  # per prediction, boxes in table order
    f = np.float64
    px = predictions["X"].to_numpy(f) + predictions["Width"].to_numpy(f) / 2
    py = predictions["Y"].to_numpy(f) + predictions["Height"].to_numpy(f) / 2
    pz = predictions["Z"].to_numpy(f) + predictions["Depth"].to_numpy(f) / 2
    bw, bh = boxes["Width"].to_numpy(f), boxes["Height"].to_numpy(f)
    bx, by = boxes["X"].to_numpy(f) + bw / 2, boxes["Y"].to_numpy(f) + bh / 2
    bz = boxes["Slice"].to_numpy(f)
    first_box = np.full(views.size, boxes.shape[0])
    np.minimum.at(first_box, g_view, np.arange(boxes.shape[0]))
    offset = (boxes["VolumeSlices"].to_numpy(f) / 4)[first_box]  # the view's first box decides
    dx, dy = px[p_idx] - bx[g_idx], py[p_idx] - by[g_idx]
    dz = pz[p_idx] - bz[g_idx]
    radius = np.maximum(np.sqrt(bw**2 + bh**2)[g_idx] / 2.0, MIN_DIST)
    hit = (np.sqrt(dx * dx + dy * dy) <= radius) & (np.abs(dz) <= offset[g_view[g_idx]])
    p_hit, g_hit = p_idx[hit], g_idx[hit]
    dist3 = np.sqrt(dx[hit] ** 2 + dy[hit] ** 2 + dz[hit] ** 2)
    order = np.lexsort((dist3, p_hit))  # by prediction, then distance; stable, so table order breaks ties
    first = np.unique(p_hit[order], return_index=True)[1]
    gtid = np.full(len(predictions), -1, dtype=np.int64)
    gtid[p_hit[order][first]] = g_hit[order][first]
    return gtid >= 0, gtid


def _sweep(
    scores: np.ndarray,
    tp: np.ndarray,
    gtid: np.ndarray,
    keep: np.ndarray,
    thresholds: np.ndarray,
    n_volumes: int,
    n_boxes: int,
    fps_eval: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Swept (FP/volume, sensitivity) points for the predictions in ``keep``, rules 5–6."""
    fp_scores = np.sort(scores[keep & ~tp])
    found = np.full(n_boxes, -np.inf)  # best score of a kept TP prediction per GT box
    sel = keep & tp
    np.maximum.at(found, gtid[sel], scores[sel])
    found.sort()
    n_fp = fp_scores.size - np.searchsorted(fp_scores, thresholds, side="left")
    n_tp = found.size - np.searchsorted(found, thresholds, side="left")
    fps = n_fp / n_volumes
    tpr = n_tp / n_boxes
    over = np.flatnonzero(fps > max(fps_eval))
    stop = over[0] + 1 if over.size else fps.size
    return fps[:stop], tpr[:stop]


def _curves(predictions: pd.DataFrame, boxes: pd.DataFrame, labels: pd.DataFrame) -> dict:
    _check(predictions, PRED_COLUMNS, "predictions")
    _check(boxes, BOX_COLUMNS, "boxes")
    _check(labels, LABEL_COLUMNS, "labels")
    scores = predictions["Score"].to_numpy(np.float64)
    tp, gtid = match_dbt(predictions, boxes)
    if scores.size:
        thresholds = np.sort(np.r_[scores.max() + 1.0, scores[tp], scores.min() - 1.0])[::-1]
    else:
        thresholds = np.zeros(0)
    box_views = set(_keys(boxes))
    in_positive = _keys(predictions).isin(box_views).to_numpy()
    n_all, n_pos = len(labels), int(_keys(labels).isin(box_views).sum())
    out = {}
    for name, keep, n_vol, fps_eval in (
        ("all", np.ones(scores.size, bool), n_all, FPS_ALL),
        ("positive", in_positive, n_pos, FPS_POSITIVE),
    ):
        if n_vol == 0 or len(boxes) == 0:
            warnings.warn(f"DBT FROC ({name} volumes): no volumes or no boxes; sensitivity is NaN", stacklevel=3)
            out[name] = (np.zeros(0), np.zeros(0), [math.nan] * len(fps_eval))
            continue
        if scores.size == 0:
            out[name] = (np.zeros(1), np.zeros(1), [0.0] * len(fps_eval))
            continue
        fps, tpr = _sweep(scores, tp, gtid, keep, thresholds, n_vol, len(boxes), fps_eval)
        out[name] = (fps, tpr, [float(np.interp(x, fps, tpr)) for x in fps_eval])
    return out


def froc_dbt(predictions: pd.DataFrame, boxes: pd.DataFrame, labels: pd.DataFrame) -> dict[str, float]:
    """BCS-DBT challenge FROC: sensitivity at 2 FP/volume (all volumes), at 1–4 FP/volume (positive
    volumes) and their mean. Tables use the challenge's CSV column names (see module docstring).

    predictions: ``StudyUID, View, X, Y, Width, Height, Z, Depth, Score`` (``PatientID`` optional);
    boxes: ``StudyUID, View, Slice, X, Y, Width, Height, VolumeSlices``; labels: one row per volume.
    """
    curves = _curves(predictions, boxes, labels)
    result = {"sensitivity_at_2_fps_all": curves["all"][2][0]}
    for x, y in zip(FPS_POSITIVE, curves["positive"][2], strict=True):
        result[f"sensitivity_at_{int(x)}_fps_positive"] = y
    result["mean_sensitivity_positive"] = float(np.mean(curves["positive"][2]))
    return result


def froc_dbt_curves(
    predictions: pd.DataFrame, boxes: pd.DataFrame, labels: pd.DataFrame
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The swept ``(fps_per_volume, sensitivity)`` points for ``"all"`` and ``"positive"`` volumes."""
    return {k: (v[0], v[1]) for k, v in _curves(predictions, boxes, labels).items()}


# -- weighted FROC: volume weights for the seeds × test-volumes bootstrap (DESIGN §11) ----------------------
# A bootstrap replicate of the test volumes is a vector of resampling counts per volume. One run's detections are
# matched once and reduced to per-volume counts at every candidate threshold; each replicate is then a weighted sum
# of those counts (one matrix product for all replicates), and with integer weights it equals ``froc_dbt`` on the
# volumes repeated that many times (under distinct keys). Unit weights give ``froc_dbt`` itself.


@dataclass(frozen=True)
class VolumeCounts:
    """One run's detections as counts per test volume (V, the rows of ``labels``) and threshold (T, descending).

    Thresholds: +inf, every distinct score of a TP prediction, −inf; a prediction is kept when its score ≥ the
    threshold, so the columns are the swept points of ``froc_dbt`` (rule 6) up to repeated identical points.
    """

    thresholds: np.ndarray  # (T,) descending
    fp: np.ndarray  # (V, T) false-positive predictions of the volume with score ≥ threshold
    found: np.ndarray  # (V, T) GT boxes of the volume whose best TP prediction has score ≥ threshold
    tp_at: np.ndarray  # (V, T) TP predictions of the volume with score == threshold (a point exists only then)
    boxes: np.ndarray  # (V,) GT boxes of the volume
    positive: np.ndarray  # (V,) bool, the volume has GT boxes


def _cumulative(volume: np.ndarray, column: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Counts (V, T) of items entering at ``column`` of their ``volume``, accumulated along the thresholds."""
    counts = np.zeros(shape)
    np.add.at(counts, (volume, column), 1.0)
    return np.cumsum(counts, axis=1)


def dbt_volume_counts(predictions: pd.DataFrame, boxes: pd.DataFrame, labels: pd.DataFrame) -> VolumeCounts:
    """Match ``predictions`` to ``boxes`` once (rules 1–5) and count per volume of ``labels`` (one row a volume).

    Every prediction and box must lie in a volume of ``labels``: a weight is a volume's, so there is none for
    the others (``froc_dbt`` would count such predictions as FPs of no volume).
    """
    _check(predictions, PRED_COLUMNS, "predictions")
    _check(boxes, BOX_COLUMNS, "boxes")
    _check(labels, LABEL_COLUMNS, "labels")
    volumes = pd.Index(_keys(labels))
    if volumes.has_duplicates:
        raise ValueError("labels hold a volume (StudyUID, View) more than once")
    p_vol, g_vol = volumes.get_indexer(_keys(predictions)), volumes.get_indexer(_keys(boxes))
    if (p_vol < 0).any() or (g_vol < 0).any():
        raise ValueError("predictions or boxes in volumes that labels lack: a weighted FROC cannot weight them")
    scores = predictions["Score"].to_numpy(np.float64)
    tp, gtid = match_dbt(predictions, boxes)
    thresholds = np.r_[np.inf, np.unique(scores[tp])[::-1], -np.inf]

    def entry(s: np.ndarray) -> np.ndarray:
        """The first column whose threshold the scores s pass (s ≥ threshold; thresholds descend)."""
        return np.searchsorted(-thresholds, -s, side="left")

    shape = (len(volumes), len(thresholds))
    best = np.full(len(boxes), -np.inf)  # rule 5: a box counts from its best TP prediction's score on
    np.maximum.at(best, gtid[tp], scores[tp])
    hit = best > -np.inf
    tp_at = np.zeros(shape)
    np.add.at(tp_at, (p_vol[tp], entry(scores[tp])), 1.0)
    n_boxes = np.bincount(g_vol, minlength=len(volumes)).astype(float)
    return VolumeCounts(
        thresholds=thresholds,
        fp=_cumulative(p_vol[~tp], entry(scores[~tp]), shape),
        found=_cumulative(g_vol[hit], entry(best[hit]), shape),
        tp_at=tp_at,
        boxes=n_boxes,
        positive=n_boxes > 0,
    )


def _interp_points(fps: np.ndarray, tpr: np.ndarray, fps_eval: Sequence[float]) -> list[float]:
    """Sensitivities at ``fps_eval`` of swept points (rules 6–7): cut after the first point beyond the largest."""
    over = np.flatnonzero(fps > max(fps_eval))
    stop = over[0] + 1 if over.size else fps.size
    return [float(np.interp(x, fps[:stop], tpr[:stop])) for x in fps_eval]


def weighted_froc_dbt(counts: VolumeCounts, weights: np.ndarray) -> dict[str, np.ndarray]:
    """``froc_dbt``'s readings under each row of volume weights (B, V): a dict of (B,) arrays, same keys.

    Sensitivity = Σ w·found / Σ w·boxes, FP/volume = Σ w·FP / Σ w (over all volumes, or positive ones), at the
    thresholds where a TP prediction of positive weight sits (as if zero-weight volumes were absent). NaN where a
    replicate has no boxes or no (positive) volumes of positive weight.
    """
    w = np.atleast_2d(np.asarray(weights, np.float64))
    if w.shape[1] != counts.boxes.size:
        raise ValueError(f"weights hold {w.shape[1]} volumes, the counts {counts.boxes.size}")
    n_boxes = w @ counts.boxes
    found = w @ counts.found  # (B, T)
    active = (w @ counts.tp_at) > 0
    active[:, [0, -1]] = True  # nothing kept / everything kept
    out: dict[str, np.ndarray] = {}
    for name, wv, fps_eval in (("all", w, FPS_ALL), ("positive", w * counts.positive, FPS_POSITIVE)):
        n_vol, fp = wv.sum(axis=1), wv @ counts.fp
        values = np.full((len(w), len(fps_eval)), np.nan)
        for b in np.flatnonzero((n_vol > 0) & (n_boxes > 0)):
            keep = active[b]
            values[b] = _interp_points(fp[b, keep] / n_vol[b], found[b, keep] / n_boxes[b], fps_eval)
        out[name] = values
    result = {"sensitivity_at_2_fps_all": out["all"][:, 0]}
    for i, x in enumerate(FPS_POSITIVE):
        result[f"sensitivity_at_{int(x)}_fps_positive"] = out["positive"][:, i]
    result["mean_sensitivity_positive"] = out["positive"].mean(axis=1)
    return result
