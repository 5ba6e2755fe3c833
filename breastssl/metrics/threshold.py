"""Operating-point metrics (sensitivity, specificity, accuracy, Youden) and classification-report scores.

A case is called positive when ``score >= threshold``. Degenerate input (the class a rate is taken
over is absent) gives NaN with a warning.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ._checks import as_labels, as_scores, degenerate
from .roc import roc_curve_points


def _called(y: object, score: object, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    yy = as_labels(y)
    return yy, as_scores(score, yy.size) >= threshold


def _rate(hits: np.ndarray, of: np.ndarray, what: str) -> float:
    if not of.any():
        warnings.warn(f"{what} is undefined: no cases of the class it is taken over; returning NaN", stacklevel=3)
        return math.nan
    return float(hits[of].mean())


def sensitivity(y: object, score: object, threshold: float) -> float:
    """True-positive rate at ``threshold``. y, score: ``(n,)``."""
    yy, called = _called(y, score, threshold)
    return _rate(called, yy == 1, "sensitivity")


def specificity(y: object, score: object, threshold: float) -> float:
    """True-negative rate at ``threshold``. y, score: ``(n,)``."""
    yy, called = _called(y, score, threshold)
    return _rate(~called, yy == 0, "specificity")


def accuracy(y: object, score: object, threshold: float) -> float:
    """Fraction of cases called correctly at ``threshold``. y, score: ``(n,)``."""
    yy, called = _called(y, score, threshold)
    if yy.size == 0:
        warnings.warn("accuracy of an empty set is undefined; returning NaN", stacklevel=2)
        return math.nan
    return float((called == (yy == 1)).mean())


def sensitivity_at_specificity(y: object, score: object, target: float) -> float:
    """Highest sensitivity over the ROC's operating points whose specificity is ≥ ``target``."""
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target specificity must be in [0, 1], got {target}")
    yy = as_labels(y)
    if degenerate(yy, "sensitivity at specificity"):
        return math.nan
    fpr, tpr, _ = roc_curve_points(yy, score)
    ok = (1.0 - fpr) >= target - 1e-12
    return float(tpr[ok].max())


def youden_threshold(y: object, score: object) -> tuple[float, float]:
    """``(threshold, J)`` maximising J = sensitivity + specificity − 1 (the highest such threshold)."""
    yy = as_labels(y)
    if degenerate(yy, "the Youden threshold"):
        return math.nan, math.nan
    fpr, tpr, thr = roc_curve_points(yy, score)
    j = tpr - fpr
    best = int(np.argmax(j[1:])) + 1  # skip the +inf threshold (nothing called positive)
    return float(thr[best]), float(j[best])


def classification_report_metrics(y_true: object, y_pred: object) -> dict[str, float]:
    """Accuracy, macro-average F1 and support-weighted F1 of multi-class labels (a report labeller).

    y_true, y_pred: ``(n,)`` labels of any hashable type. Classes are those seen in either array; a
    class never predicted and never true cannot occur, one with zero precision and recall has F1 0.
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must be 1-D of the same shape, got {t.shape} and {p.shape}")
    if t.size == 0:
        warnings.warn("classification metrics of an empty set are undefined; returning NaN", stacklevel=2)
        return {"accuracy": math.nan, "macro_f1": math.nan, "weighted_f1": math.nan}
    classes, codes = np.unique(np.concatenate([t, p]), return_inverse=True)
    ct, cp = codes[: t.size], codes[t.size :]
    k = classes.size
    tp = np.bincount(ct[ct == cp], minlength=k).astype(float)
    support = np.bincount(ct, minlength=k).astype(float)
    predicted = np.bincount(cp, minlength=k).astype(float)
    denom = support + predicted
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(k), where=denom > 0)
    return {
        "accuracy": float(tp.sum() / t.size),
        "macro_f1": float(f1.mean()),
        "weighted_f1": float((f1 * support).sum() / support.sum()),
    }
