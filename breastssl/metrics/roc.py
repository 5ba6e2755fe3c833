"""AUC (Mann–Whitney) and DeLong's variance, confidence interval and paired test (DESIGN §6).

The variance uses the fast formulation of Sun & Xu (2014), "Fast implementation of DeLong's algorithm
for comparing the areas under correlated receiver operating characteristic curves", IEEE SPL 21(11):
every structural component comes from midranks, so one AUC with its variance costs three sorts,
O(n log n), and 10^6 cases take about a second. Higher scores mean "more likely positive".

Results equal pROC's ``roc.test(method="delong", paired=TRUE)`` and ``ci.auc(method="delong")``
(golden values in ``shared/reference/README.md``, pinned by the tests to 1e-9).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm, rankdata

from ._checks import as_labels, as_scores, degenerate


def midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x`` (any shape ``(..., n)``), ties getting the mean of their ranks."""
    return rankdata(x, method="average", axis=-1)


def _components(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs ``(k,)`` and DeLong placement values V10 ``(k, m)`` and V01 ``(k, n)`` for scores ``(k, N)``."""
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tx, ty = midranks(pos), midranks(neg)
    tz = midranks(np.concatenate([pos, neg], axis=1))
    auc = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (tz[:, :m] - tx) / n  # fraction of negatives below each positive (ties ½)
    v01 = 1.0 - (tz[:, m:] - ty) / m  # fraction of positives above each negative
    return auc, v10, v01


def _delong_cov(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs ``(k,)`` and their DeLong covariance matrix ``(k, k)``."""
    auc, v10, v01 = _components(y, scores)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(auc), len(auc)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(auc), len(auc)))
    return auc, s10 / m + s01 / n


def roc_auc(y: object, score: object) -> float:
    """Area under the ROC curve = P(score_pos > score_neg) + ½ P(tie).

    y: ``(n,)`` 0/1 labels; score: ``(n,)`` finite scores. One class only → NaN with a warning.
    """
    yy = as_labels(y)
    s = as_scores(score, yy.size)
    if degenerate(yy, "AUC"):
        return math.nan
    return float(_components(yy, s[None, :])[0][0])


def delong_variance(y: object, score: object) -> tuple[float, float]:
    """``(auc, variance)`` of one AUC by DeLong's method; NaNs (with a warning) for one class."""
    yy = as_labels(y)
    s = as_scores(score, yy.size)
    if degenerate(yy, "AUC variance"):
        return math.nan, math.nan
    auc, cov = _delong_cov(yy, s[None, :])
    return float(auc[0]), float(cov[0, 0])


def delong_ci(y: object, score: object, level: float = 0.95) -> tuple[float, float, float]:
    """``(auc, low, high)``: AUC ± z·SE with DeLong's SE, clipped to [0, 1] (as pROC's ``ci.auc``)."""
    _check_level(level)
    auc, var = delong_variance(y, score)
    if math.isnan(auc):
        return math.nan, math.nan, math.nan
    half = float(norm.ppf(0.5 + level / 2.0)) * math.sqrt(max(var, 0.0))
    return auc, max(0.0, auc - half), min(1.0, auc + half)


@dataclass(frozen=True)
class DelongTest:
    """Paired DeLong test of AUC(a) − AUC(b): two-sided ``p`` and the CI of the difference."""

    auc_a: float
    auc_b: float
    z: float
    p: float
    ci_low: float
    ci_high: float
    level: float = 0.95

    @property
    def difference(self) -> float:
        return self.auc_a - self.auc_b

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "difference": self.difference}


def delong_test(y: object, score_a: object, score_b: object, level: float = 0.95) -> DelongTest:
    """Paired two-sided DeLong test of two scores on the same cases (pROC ``roc.test``, paired).

    z = (A − B) / sqrt(var A + var B − 2 cov), p = 2 Φ(−|z|), CI = (A − B) ± z_level · SE (unclipped).
    One class only → all NaN with a warning. Identical scores (SE = 0, A = B) → z and p NaN.
    """
    _check_level(level)
    yy = as_labels(y)
    a = as_scores(score_a, yy.size, "score_a")
    b = as_scores(score_b, yy.size, "score_b")
    if degenerate(yy, "the DeLong test"):
        return DelongTest(*([math.nan] * 6), level=level)
    auc, cov = _delong_cov(yy, np.stack([a, b]))
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:
        warnings.warn("DeLong test: the AUC difference has zero variance; z and p are undefined", stacklevel=2)
        z = math.nan if diff == 0.0 else math.copysign(math.inf, diff)
    else:
        z = diff / se
    p = float(2.0 * norm.sf(abs(z))) if not math.isnan(z) else math.nan
    half = float(norm.ppf(0.5 + level / 2.0)) * se
    return DelongTest(float(auc[0]), float(auc[1]), z, p, float(diff - half), float(diff + half), level)


def roc_curve_points(y: object, score: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC operating points ``(fpr, tpr, thresholds)``, one per distinct score (ties enter together),
    starting at (0, 0) with threshold +inf and ending at (1, 1). Predicted positive: score ≥ threshold."""
    yy = as_labels(y)
    s = as_scores(score, yy.size)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], yy[order]
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True] if s.size else np.zeros(0, bool)
    tp = np.cumsum(y_sorted)[last_of_tie]
    fp = np.cumsum(1 - y_sorted)[last_of_tie]
    n_pos, n_neg = max(int(yy.sum()), 1), max(int(yy.size - yy.sum()), 1)
    thr = np.r_[np.inf, s_sorted[last_of_tie]]
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], thr


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
